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
use crate::explain;
use crate::history::{History, Operation, Outcome};
use crate::model::{
    FifoQueue, KvAppend, Model, ModelOp, ModelSpec, MultiRegister, Mutex, NilReads, RawOp,
    Register, SetModel,
};
use crate::search::{self, Halt, Limits, SearchOp, SearchResult, SearchStats, StateId, Stepper};
use crate::value::ValueTable;
use crate::verdict::{KeyVerdict, OpCounts, OpSummary, Report, SearchTotals, UnknownKey, Verdict};

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
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    for (i, op) in operations.iter().enumerate() {
        let key = history.events[op.invoke].key.as_ref();
        let text = key.map(|k| k.to_string()).unwrap_or_default();
        let slot = *index.entry(text).or_insert_with(|| {
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
    let decoded: Vec<Result<KeyHistory<M>, HistoryError>> = par_map(&pool, &order, |&p| {
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
    while !pending.is_empty() {
        let limits = Limits {
            deadline,
            cancel: &cancel,
            cache_bytes: per_thread_cache,
            max_steps: budget,
        };
        let round: Vec<(usize, KeyResult<M>)> = par_map(&pool, pending, |(rank, kh, precheck)| {
            let result = check_key(model, kh, precheck, &limits);
            if options.stop_at_first_failure && matches!(result.outcome, KeyOutcome::Invalid(_)) {
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
    };
    report.failures = par_map(&pool, failed, |f| {
        explain::explain(model, history, &operations, &f, options, &explain_limits)
    });
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

/// Step budget of the first search round (see `check`).
const FIRST_ROUND_STEPS: u64 = 1 << 16;

/// Maps `f` over `items` in parallel (in `pool`, or rayon's global pool), keeping order. A
/// single item is mapped on the calling thread: most histories have one key, and starting a
/// thread pool would cost more than checking it.
fn par_map<T, R, I>(
    pool: &Option<rayon::ThreadPool>,
    items: I,
    f: impl Fn(T) -> R + Sync + Send,
) -> Vec<R>
where
    I: IntoParallelIterator<Item = T> + IntoIterator<Item = T>,
    T: Send,
    R: Send,
{
    let items: Vec<T> = IntoIterator::into_iter(items).collect();
    if items.len() <= 1 {
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

/// A key found not linearizable, before it is explained.
pub(crate) struct Unexplained<M: Model> {
    pub kh: KeyHistory<M>,
    /// Index into `kh.ops` of the operation that cannot be linearized.
    pub culprit: usize,
    /// The longest partial linearization found (indices into `kh.ops`).
    pub linearized: Vec<usize>,
    /// Set when the pre-check found it: its sentence, and the culprit alone is the window.
    pub precheck: Option<String>,
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

/// One key's operations, decoded.
pub(crate) struct KeyHistory<M: Model> {
    pub key: Option<Value>,
    /// Decoded operations that may have taken effect (ok, info, unfinished), sorted by call.
    pub ops: Vec<ModelOp<M::Op>>,
    /// Decoded failed operations (for explanations only).
    pub failed: Vec<ModelOp<M::Op>>,
    /// `ops[i]` is `history.operations()[origin[i]]`.
    pub origin: Vec<usize>,
    pub values: ValueTable,
    pub init: M::State,
    /// Its `ok` reads whose value counts as unknown (nil under [`NilReads::Unknown`]).
    pub unknown_reads: usize,
}

impl<M: Model> KeyHistory<M> {
    /// What the model's pre-check and explanation see, for `ops` (all or part of `self.ops`).
    pub(crate) fn view<'a>(
        &'a self,
        key: Option<&'a str>,
        ops: &'a [ModelOp<M::Op>],
    ) -> crate::model::KeyView<'a, M::Op> {
        crate::model::KeyView {
            key,
            ops,
            failed: &self.failed,
            values: &self.values,
        }
    }
}

/// Decodes the operations of one key.
pub(crate) fn decode_key<M: Model>(
    model: &M,
    history: &History,
    operations: &[Operation],
    key: Option<&Value>,
    members: &[usize],
    nil_reads: NilReads,
) -> Result<KeyHistory<M>, HistoryError> {
    let mut values = ValueTable::new();
    let init = model.init(&mut values);
    let mut ops = Vec::with_capacity(members.len());
    let mut failed = Vec::new();
    let mut origin = Vec::with_capacity(members.len());
    let mut unknown_reads = 0;
    for &i in members {
        let op = &operations[i];
        let invoke = &history.events[op.invoke];
        let (output, ret) = match (op.outcome, op.completion) {
            (Outcome::Ok, Some(c)) => (Some(&history.events[c].value), Some(c as u32)),
            _ => (None, None),
        };
        let raw = RawOp {
            f: &invoke.f,
            input: &invoke.value,
            output,
            nil_reads,
        };
        let decoded = model.decode(&raw, &mut values).map_err(|msg| {
            let line = op
                .completion
                .filter(|_| output.is_some())
                .map_or(invoke.line, |c| history.events[c].line);
            HistoryError::at(&history.source, line, msg)
        })?;
        let decoded = ModelOp {
            op: decoded,
            call: op.invoke as u32,
            ret,
            line: invoke.line,
        };
        if output.is_some() {
            unknown_reads += model.unknown_reads(&decoded.op);
        }
        if op.outcome == Outcome::Fail {
            failed.push(decoded);
        } else {
            ops.push(decoded);
            origin.push(i);
        }
    }
    Ok(KeyHistory {
        key: key.cloned(),
        ops,
        failed,
        origin,
        values,
        init,
        unknown_reads,
    })
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

pub(crate) enum SubsetOutcome {
    Linearizable,
    /// `culprit` and `linearized` index into the key's `ops`.
    NotLinearizable {
        culprit: usize,
        linearized: Vec<usize>,
    },
    Stopped {
        linearized: Vec<usize>,
        halt: Halt,
    },
    /// The search produced a witness that does not hold up: a bug in faultline, reported as
    /// `unknown` rather than trusted.
    Broken(String),
}

/// Checks that `witness` (indices into `kept`) is a linearization: each ok operation exactly
/// once, real-time order respected, and every step allowed by the model.
fn verify_witness<M: Model>(
    model: &M,
    kh: &KeyHistory<M>,
    chosen: &[ModelOp<M::Op>],
    kept: &[usize],
    witness: &[usize],
) -> Result<(), String> {
    let mut seen = vec![false; kept.len()];
    let mut state = kh.init.clone();
    let mut latest_call = 0u32;
    for &k in witness {
        let op = &chosen[kept[k]];
        if std::mem::replace(&mut seen[k], true) {
            return Err(format!("operation {k} linearized twice"));
        }
        if op.ret.is_some_and(|r| r < latest_call) {
            return Err(format!(
                "operation {k} placed after one invoked after it returned"
            ));
        }
        latest_call = latest_call.max(op.call);
        state = model
            .step(&state, &op.op)
            .ok_or_else(|| format!("operation {k} is not allowed where it was placed"))?;
    }
    if let Some(k) = (0..kept.len()).find(|&k| !seen[k] && chosen[kept[k]].is_ok()) {
        return Err(format!("ok operation {k} missing from the linearization"));
    }
    Ok(())
}

/// Searches for a linearization of `kh.ops[subset]` (`subset` sorted). Applies the model's
/// simplification first.
pub(crate) fn search_subset<M: Model>(
    model: &M,
    kh: &KeyHistory<M>,
    subset: &[usize],
    limits: &Limits<'_>,
    stats: &mut SearchStats,
) -> SubsetOutcome {
    let chosen: Vec<ModelOp<M::Op>> = subset.iter().map(|&i| kh.ops[i].clone()).collect();
    let mut keep = vec![true; chosen.len()];
    model.simplify(&chosen, &kh.init, &mut keep);
    let kept: Vec<usize> = (0..chosen.len()).filter(|&i| keep[i]).collect();

    // Classes of interchangeable indeterminate operations: equal decoded operations.
    let mut classes: FxHashMap<&M::Op, u32> = FxHashMap::default();
    let search_ops: Vec<SearchOp> = kept
        .iter()
        .map(|&i| {
            let op = &chosen[i];
            let next = classes.len() as u32;
            let class = if op.ret.is_none() {
                *classes.entry(&op.op).or_insert(next)
            } else {
                0
            };
            SearchOp {
                call: op.call,
                ret: op.ret,
                class,
                blind: model.overwrites(&op.op),
            }
        })
        .collect();
    let kept_ops: Vec<&M::Op> = kept.iter().map(|&i| &chosen[i].op).collect();
    // The memory budget is shared between the visited set and the model's tables.
    let mut stepper =
        InternedStepper::new(model, &kept_ops, kh.init.clone(), limits.cache_bytes / 2);
    let limits = &Limits {
        cache_bytes: limits.cache_bytes / 2,
        ..*limits
    };
    let to_key = |k: usize| subset[kept[k]];
    let outcome = search::search(&search_ops, &mut stepper, limits, stats);
    match outcome {
        SearchResult::Linearizable(witness) => {
            // Trust, but verify: replaying the witness costs little next to finding it, and a
            // bug in the search must never turn into a wrong verdict.
            match verify_witness(model, kh, &chosen, &kept, &witness) {
                Ok(()) => SubsetOutcome::Linearizable,
                Err(problem) => SubsetOutcome::Broken(problem),
            }
        }
        SearchResult::NotLinearizable(frontier) => match frontier.blocked {
            Some(b) => SubsetOutcome::NotLinearizable {
                culprit: to_key(b),
                linearized: frontier.linearized.into_iter().map(to_key).collect(),
            },
            // A failed search always met a return entry; anything else is a bug.
            None => SubsetOutcome::Broken("the search failed without a culprit".to_string()),
        },
        SearchResult::Stopped(frontier, halt) => SubsetOutcome::Stopped {
            linearized: frontier.linearized.into_iter().map(to_key).collect(),
            halt,
        },
    }
}

/// Adapts a [`Model`] to the search: states are interned into small integers, so the search
/// stores and compares `u32`s and the model's own state type is touched only when stepping.
/// Steps can be memoised (after every backtrack the search retries the same candidates from
/// the same states); the memo switches itself off when it rarely hits. Both tables count
/// against a memory budget.
struct InternedStepper<'a, M: Model> {
    model: &'a M,
    ops: &'a [&'a M::Op],
    /// State by id, with its hash; `table` finds the id of a state (stored once, here).
    states: Vec<M::State>,
    hashes: Vec<u64>,
    table: hashbrown::HashTable<StateId>,
    /// (state, op) → next state, or `REFUSED`.
    memo: Option<FxHashMap<(StateId, u32), StateId>>,
    memo_hits: u64,
    memo_misses: u64,
    bytes: usize,
    budget: usize,
}

/// Memo marker for "the model does not allow this step".
const REFUSED: StateId = StateId::MAX - 1;
/// Rough cost of one hash-table entry beyond its key and value (control bytes, load factor).
const ENTRY_OVERHEAD: usize = 16;
/// After this many memo misses, keep the memo only if at least a third of lookups hit.
const MEMO_PROBATION: u64 = 1 << 14;

fn fx_hash<T: std::hash::Hash>(t: &T) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(t)
}

impl<'a, M: Model> InternedStepper<'a, M> {
    fn new(model: &'a M, ops: &'a [&'a M::Op], init: M::State, budget: usize) -> Self {
        let mut stepper = InternedStepper {
            model,
            ops,
            states: Vec::new(),
            hashes: Vec::new(),
            table: hashbrown::HashTable::new(),
            memo: model.memoize_steps().then(FxHashMap::default),
            memo_hits: 0,
            memo_misses: 0,
            bytes: 0,
            budget,
        };
        stepper.intern(init);
        stepper
    }

    fn intern(&mut self, state: M::State) -> StateId {
        let hash = fx_hash(&state);
        let states = &self.states;
        if let Some(&id) = self.table.find(hash, |&id| states[id as usize] == state) {
            return id;
        }
        let id = self.states.len() as StateId;
        self.bytes += self.model.state_bytes(&state) + 8 + 4 + ENTRY_OVERHEAD;
        self.states.push(state);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.table
            .insert_unique(hash, id, |&id| hashes[id as usize]);
        id
    }

    fn compute(&mut self, state: StateId, op: usize) -> Option<StateId> {
        let current = &self.states[state as usize];
        match self.model.observe(current, self.ops[op]) {
            Some(true) => return Some(state),
            Some(false) => return None,
            None => {}
        }
        let next = self.model.step(current, self.ops[op])?;
        if next == *current {
            return Some(state);
        }
        Some(self.intern(next))
    }
}

impl<M: Model> Stepper for InternedStepper<'_, M> {
    fn init(&mut self) -> StateId {
        0
    }

    #[inline]
    fn step(&mut self, state: StateId, op: usize) -> Option<StateId> {
        let key = (state, op as u32);
        let Some(memo) = &mut self.memo else {
            return self.compute(state, op);
        };
        if let Some(&next) = memo.get(&key) {
            self.memo_hits += 1;
            return (next != REFUSED).then_some(next);
        }
        self.memo_misses += 1;
        if self.memo_misses == MEMO_PROBATION && self.memo_hits < self.memo_misses / 2 {
            self.bytes -=
                memo.len() * (std::mem::size_of::<((StateId, u32), StateId)>() + ENTRY_OVERHEAD);
            self.memo = None;
            return self.compute(state, op);
        }
        let next = self.compute(state, op);
        if let Some(memo) = &mut self.memo {
            memo.insert(key, next.unwrap_or(REFUSED));
            self.bytes += std::mem::size_of::<((StateId, u32), StateId)>() + ENTRY_OVERHEAD;
        }
        next
    }

    fn exhausted(&self) -> bool {
        self.bytes > self.budget
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

/// Replays the given order through the model: the states after each operation, or `None` at
/// the first operation the model refuses (never, for an order the search produced).
pub(crate) fn replay<M: Model>(model: &M, kh: &KeyHistory<M>, order: &[usize]) -> Vec<M::State> {
    let mut state = kh.init.clone();
    let mut states = Vec::with_capacity(order.len());
    for &i in order {
        match model.step(&state, &kh.ops[i].op) {
            Some(s) => state = s,
            None => break,
        }
        states.push(state.clone());
    }
    states
}

/// Summarises an operation for reports.
pub(crate) fn summarize(history: &History, op: &Operation) -> OpSummary {
    let invoke = &history.events[op.invoke];
    let completion = op.completion.map(|c| &history.events[c]);
    OpSummary {
        index: invoke.index,
        line: invoke.line,
        process: op.process,
        f: invoke.f.clone(),
        key: invoke.key.clone(),
        value: invoke.value.clone(),
        result: completion
            .filter(|_| op.outcome == Outcome::Ok)
            .map(|c| c.value.clone()),
        outcome: op.outcome,
        completion_index: completion.map(|c| c.index),
        completion_line: completion.map(|c| c.line),
        node: invoke.node.clone(),
    }
}
