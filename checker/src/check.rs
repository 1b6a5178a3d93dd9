//! Checking a whole history: split it by key, check the keys in parallel, explain failures.
//!
//! Splitting by key is sound by Herlihy & Wing's locality (P-compositionality, Horn &
//! Kroening): a history of independent objects is linearizable iff each object's sub-history
//! is. Each key is therefore an independent search, run on its own thread with its own value
//! table, state table and visited set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::error::HistoryError;
use crate::explain::{self, Unexplained};
use crate::history::{History, Operation, Outcome};
use crate::key::{decode_key, search_subset, KeyHistory, SubsetOutcome};
use crate::model::{
    FifoQueue, KvAppend, Model, ModelSpec, MultiRegister, Mutex, NilReads, Register, SetModel,
};
use crate::search::{Halt, Limits, SearchStats};
use crate::verdict::{KeyVerdict, OpCounts, Report, SearchTotals, UnknownKey, Verdict};

/// Budgets and switches for a check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Stop and answer `unknown` after this long (the whole check, all keys).
    pub time_limit: Option<Duration>,
    /// Memory for the searches' visited sets, in bytes, shared by all threads. Past it the sets
    /// forget old entries (sound; see `visited`), so memory stays bounded.
    pub memory_limit: usize,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Find a minimal failing window and a sentence for each invalid key.
    pub explain: bool,
    /// Stop checking other keys once one is found not linearizable (they are reported as not
    /// checked). The verdict is the same either way; this only saves time.
    pub stop_at_first_failure: bool,
    /// What an `ok` read of nil means (see [`NilReads`]): faultline's strict meaning unless
    /// asked otherwise.
    pub nil_reads: NilReads,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            time_limit: None,
            memory_limit: 1 << 30,
            threads: 0,
            explain: true,
            stop_at_first_failure: true,
            nil_reads: NilReads::Value,
        }
    }
}

/// Checks `history` against a built-in model.
pub fn check_history(
    spec: &ModelSpec,
    history: &History,
    options: &CheckOptions,
) -> Result<Report, HistoryError> {
    match spec {
        ModelSpec::Register { initial } => {
            check(&Register::plain(initial.clone()), history, options)
        }
        ModelSpec::CasRegister { initial } => {
            check(&Register::with_cas(initial.clone()), history, options)
        }
        ModelSpec::KvAppend { initial } => check(&KvAppend::new(initial.clone()), history, options),
        ModelSpec::MultiRegister { initial } => {
            check(&MultiRegister::new(initial.clone()), history, options)
        }
        ModelSpec::Mutex => check(&Mutex, history, options),
        ModelSpec::Set => check(&SetModel, history, options),
        ModelSpec::FifoQueue => check(&FifoQueue, history, options),
    }
}

/// Checks `history` against any model.
pub fn check<M: Model>(
    model: &M,
    history: &History,
    options: &CheckOptions,
) -> Result<Report, HistoryError> {
    let started = Instant::now();
    let deadline = options.time_limit.map(|t| started + t);
    let operations = history.operations()?;
    let counts = OpCounts::of(&operations);

    // Partition by key, in order of first appearance. Failed operations did not happen; they
    // are kept aside only to be named in explanations.
    let mut partitions: Vec<(Option<Value>, Vec<usize>)> = Vec::new();
    let mut index: FxHashMap<KeyName<'_>, usize> = FxHashMap::default();
    for (i, op) in operations.iter().enumerate() {
        let key = history.events[op.invoke].key.as_ref();
        let slot = *index.entry(KeyName::of(key)).or_insert_with(|| {
            partitions.push((key.cloned(), Vec::new()));
            partitions.len() - 1
        });
        partitions[slot].1.push(i);
    }
    // Largest first, so one big key does not start last and finish alone.
    let mut order: Vec<usize> = (0..partitions.len()).collect();
    order.sort_by_key(|&p| std::cmp::Reverse(partitions[p].1.len()));

    let threads = if options.threads == 0 {
        rayon::current_num_threads()
    } else {
        options.threads
    };
    let per_thread_cache = (options.memory_limit / threads.max(1)).max(1 << 16);
    let cancel = AtomicBool::new(false);
    let pool = if options.threads == 0 {
        None
    } else {
        Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| {
                    HistoryError::whole(&history.source, format!("cannot start threads: {e}"))
                })?,
        )
    };

    // Phase 1: decode every key and run the cheap pre-check, so a violation it can see is
    // reported at once, whatever the other keys cost.
    // Decoding costs little per operation: threads pay off only for large histories.
    let parallel = operations.len() > PARALLEL_DECODE_OPS;
    let decoded: Vec<Result<KeyHistory<M>, HistoryError>> =
        par_map(&pool, parallel, &order, |&p| {
            let (key, members) = &partitions[p];
            decode_key::<M>(
                model,
                history,
                &operations,
                key.as_ref(),
                members,
                options.nil_reads,
            )
        });
    let mut pending = Vec::with_capacity(decoded.len());
    let mut unknown_reads = 0;
    for (rank, kh) in decoded.into_iter().enumerate() {
        let kh = kh?;
        unknown_reads += kh.unknown_reads;
        let key_text = kh.key.as_ref().map(crate::text::json_for_terminal);
        let precheck = model.unexplained(&kh.view(key_text.as_deref(), &kh.ops), &kh.init);
        if precheck.is_some() && options.stop_at_first_failure {
            cancel.store(true, Ordering::Relaxed);
        }
        pending.push((rank, kh, precheck));
    }

    // Phase 2: search the keys, in rounds of growing step budgets. One hard key must not
    // starve the others: an easy violation elsewhere is found in the first round, and with
    // budgets growing eightfold, repeating the earlier rounds' work costs under 15%.
    let mut results: Vec<(usize, KeyResult<M>)> = Vec::with_capacity(pending.len());
    let mut budget = FIRST_ROUND_STEPS;
    let mut parallel = false;
    while !pending.is_empty() {
        let limits = Limits {
            deadline,
            cancel: &cancel,
            cache_bytes: per_thread_cache,
            max_steps: budget,
            exact_frontier: false,
        };
        let round: Vec<(usize, KeyResult<M>)> =
            par_map(&pool, parallel, pending, |(rank, kh, precheck)| {
                let result = check_key(model, kh, precheck, &limits);
                if options.stop_at_first_failure && matches!(result.outcome, KeyOutcome::Invalid(_))
                {
                    cancel.store(true, Ordering::Relaxed);
                }
                (rank, result)
            });
        pending = Vec::new();
        for (rank, result) in round {
            match result.outcome {
                KeyOutcome::Unfinished(kh) => {
                    // Keep the effort spent so far in the totals; the key goes to the next
                    // round, which replaces this placeholder's outcome.
                    let placeholder = KeyResult {
                        outcome: KeyOutcome::Valid,
                        ..result
                    };
                    results.push((rank, placeholder));
                    pending.push((rank, kh, None));
                }
                outcome => results.push((rank, KeyResult { outcome, ..result })),
            }
        }
        budget = budget.saturating_mul(8);
        // The first round decides most keys of most histories in a few microseconds each:
        // waking threads would cost more. Keys still open after it are worth threads.
        parallel = true;
    }
    // Keep the per-key list in check order, one entry per key (the last round's decides).
    results.sort_by_key(|(rank, _)| *rank);
    let mut merged: Vec<KeyResult<M>> = Vec::with_capacity(results.len());
    let mut last_rank = None;
    for (rank, result) in results {
        if last_rank == Some(rank) {
            if let Some(prev) = merged.last_mut() {
                result.stats.add_to(&mut prev.stats);
                prev.outcome = result.outcome;
            }
        } else {
            merged.push(result);
        }
        last_rank = Some(rank);
    }
    let results = merged;
    let search_time = started.elapsed();

    let mut report = Report {
        verdict: Verdict::Valid,
        model: model.name().to_string(),
        keys: partitions.len(),
        counts,
        check_time: search_time,
        explain_time: Duration::ZERO,
        failures: Vec::new(),
        unknown: Vec::new(),
        per_key: Vec::new(),
        search: SearchTotals::default(),
        nil_reads: options.nil_reads,
        unknown_reads,
    };
    let mut failed = Vec::new();
    for result in results {
        report.search.add(&result.stats);
        report.per_key.push(KeyVerdict {
            key: result.key.clone(),
            operations: result.operations,
            verdict: match &result.outcome {
                KeyOutcome::Valid => Verdict::Valid,
                KeyOutcome::Invalid { .. } => Verdict::Invalid,
                KeyOutcome::Unknown(_) | KeyOutcome::Unfinished(_) => Verdict::Unknown,
            },
        });
        match result.outcome {
            KeyOutcome::Valid => {}
            KeyOutcome::Invalid(f) => failed.push(f),
            KeyOutcome::Unknown(u) => report.unknown.push(u),
            KeyOutcome::Unfinished(_) => {}
        }
    }

    // Phase 2: explain the failures (a minimal window and a sentence each). Not part of the
    // search time: it is extra work done only for invalid keys.
    let explained = Instant::now();
    let explain_limits = Limits {
        deadline: None,
        cancel: &AtomicBool::new(false),
        cache_bytes: per_thread_cache,
        max_steps: u64::MAX,
        exact_frontier: true,
    };
    let outcomes: Vec<Result<_, UnknownKey>> = par_map(&pool, true, failed, |f| {
        explain::explain(
            model,
            history,
            &operations,
            &f,
            options.explain,
            &explain_limits,
        )
    });
    for e in outcomes {
        match e {
            Ok(failure) => report.failures.push(failure),
            Err(unknown) => {
                if let Some(k) = report.per_key.iter_mut().find(|k| k.key == unknown.key) {
                    k.verdict = Verdict::Unknown;
                }
                report.unknown.push(unknown);
            }
        }
    }
    report.explain_time = explained.elapsed();
    report.failures.sort_by_key(|f| f.culprit.index);
    report.verdict = if !report.failures.is_empty() {
        Verdict::Invalid
    } else if !report.unknown.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Ok(report)
}

/// Step budget of the first search round (see `check`), which runs on the calling thread.
const FIRST_ROUND_STEPS: u64 = 1 << 12;

/// Histories with more operations than this are decoded on several threads.
const PARALLEL_DECODE_OPS: usize = 1 << 13;

/// A key, as the partition compares keys: strings borrowed, other values by their JSON text
/// (so the string `"1"` and the number `1` stay different keys).
#[derive(PartialEq, Eq, Hash)]
enum KeyName<'a> {
    None,
    Str(&'a str),
    Other(String),
}

impl<'a> KeyName<'a> {
    fn of(key: Option<&'a Value>) -> KeyName<'a> {
        match key {
            None => KeyName::None,
            Some(Value::String(s)) => KeyName::Str(s),
            Some(other) => KeyName::Other(other.to_string()),
        }
    }
}

/// Maps `f` over `items`, keeping order: in parallel (in `pool`, or rayon's global pool) when
/// `parallel` is set and there is more than one item, else on the calling thread (most
/// histories have one key, and waking threads would cost more than checking it).
fn par_map<T, R, I>(
    pool: &Option<rayon::ThreadPool>,
    parallel: bool,
    items: I,
    f: impl Fn(T) -> R + Sync + Send,
) -> Vec<R>
where
    I: IntoParallelIterator<Item = T> + IntoIterator<Item = T>,
    T: Send,
    R: Send,
{
    let items: Vec<T> = IntoIterator::into_iter(items).collect();
    if !parallel || items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let run = || items.into_par_iter().map(&f).collect();
    match pool {
        Some(pool) => pool.install(run),
        None => run(),
    }
}

/// What a key's check concluded.
enum KeyOutcome<M: Model> {
    Valid,
    Invalid(Unexplained<M>),
    Unknown(UnknownKey),
    /// The round's step budget ran out: try again with a larger one.
    Unfinished(KeyHistory<M>),
}

struct KeyResult<M: Model> {
    key: Option<Value>,
    operations: usize,
    outcome: KeyOutcome<M>,
    stats: SearchStats,
}

fn check_key<M: Model>(
    model: &M,
    kh: KeyHistory<M>,
    precheck: Option<(usize, String)>,
    limits: &Limits<'_>,
) -> KeyResult<M> {
    let mut result = KeyResult {
        key: kh.key.clone(),
        operations: kh.ops.len(),
        outcome: KeyOutcome::Valid,
        stats: SearchStats::default(),
    };
    // A fast sound pre-check: an observation nothing could explain is a violation at once.
    if let Some((culprit, sentence)) = precheck {
        result.outcome = KeyOutcome::Invalid(Unexplained {
            kh,
            culprit,
            linearized: Vec::new(),
            precheck: Some(sentence),
            frontier_exact: true,
        });
        return result;
    }
    let unknown = |kh: &KeyHistory<M>, reason: String, linearized: usize| {
        KeyOutcome::Unknown(UnknownKey {
            key: kh.key.clone(),
            reason,
            linearized,
            operations: kh.ops.len(),
        })
    };
    if limits.cancel.load(Ordering::Relaxed) {
        result.outcome = unknown(&kh, describe_halt(Halt::Cancelled).to_string(), 0);
        return result;
    }
    let all: Vec<usize> = (0..kh.ops.len()).collect();
    match search_subset(model, &kh, &all, limits, &mut result.stats) {
        SubsetOutcome::Linearizable => {}
        SubsetOutcome::NotLinearizable {
            culprit,
            linearized,
        } => {
            result.outcome = KeyOutcome::Invalid(Unexplained {
                kh,
                culprit,
                linearized,
                precheck: None,
                // Without a move dropped by rule 6, the frontier is the true one.
                frontier_exact: limits.exact_frontier || result.stats.growth_prunes == 0,
            });
        }
        SubsetOutcome::Broken(problem) => {
            let reason = format!(
                "internal error: the linearization found does not verify ({problem}); please \
                 report this history"
            );
            result.outcome = unknown(&kh, reason, 0);
        }
        SubsetOutcome::Stopped {
            halt: Halt::Steps, ..
        } => {
            result.outcome = KeyOutcome::Unfinished(kh);
        }
        SubsetOutcome::Stopped { linearized, halt } => {
            result.outcome = unknown(&kh, describe_halt(halt).to_string(), linearized.len());
        }
    }
    result
}

/// Words for a user about why a key was not decided.
fn describe_halt(halt: Halt) -> &'static str {
    match halt {
        Halt::Time => "the time limit ran out",
        Halt::Memory => "the memory limit was reached (raise --memory-limit)",
        Halt::Cancelled => "not checked: another key was found not linearizable first",
        Halt::Steps => "the search step budget ran out",
    }
}

impl OpCounts {
    fn of(operations: &[Operation]) -> OpCounts {
        let mut c = OpCounts::default();
        for op in operations {
            c.total += 1;
            match op.outcome {
                Outcome::Ok => c.ok += 1,
                Outcome::Fail => c.fail += 1,
                Outcome::Info => c.info += 1,
                Outcome::Pending => c.pending += 1,
            }
        }
        c
    }
}
