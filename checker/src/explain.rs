//! Explaining a failure: the culprit, a minimal failing window, and one sentence.
//!
//! # The window
//! Let `m` be the culprit: the operation the search could never get past. The operations
//! invoked before `m` returned form a history that is itself not linearizable with `m` as the
//! culprit (operations invoked later cannot be ordered before `m`, so they never helped). The
//! window is shrunk from there by delta debugging: drop a chunk of operations, keep the drop
//! if the rest is still not linearizable *with the same culprit* and without becoming a
//! trivial failure the pre-check would catch (e.g. by dropping the write whose value `m`
//! read, which would make the window fail for a different, misleading reason), nor dropping
//! what the model says could change the story (`Model::window_keeps_enough`: a release in
//! progress between two acquisitions). The result is small (usually 2 to 10 operations), and
//! each operation in it matters.
//!
//! Minimisation is bounded in time: each trial search is short, and a trial that runs out of
//! time counts as "still needed", so the window is always a correct counterexample, only
//! perhaps not the smallest.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::history::{History, Operation};
use crate::key::{replay, search_subset, summarize, KeyHistory, SubsetOutcome};
use crate::model::Model;
use crate::search::{Limits, SearchStats};
use crate::verdict::{Failure, LinearizationStep, UnknownKey};

/// A key found not linearizable, before it is explained.
pub(crate) struct Unexplained<M: Model> {
    pub kh: KeyHistory<M>,
    /// Index into `kh.ops` of the operation that cannot be linearized.
    pub culprit: usize,
    /// The longest partial linearization found (indices into `kh.ops`).
    pub linearized: Vec<usize>,
    /// Set when the pre-check found it: its sentence, and the culprit alone is the window.
    pub precheck: Option<String>,
    /// False when the search that found it was after the verdict only: its culprit and partial
    /// linearization may stop short of the true frontier, so they are searched again.
    pub frontier_exact: bool,
}

/// Budget for finding the exact culprit again when the check's search was after the verdict
/// only (see [`exact_frontier`]).
const CULPRIT_BUDGET: Duration = Duration::from_secs(5);
/// Budget for shrinking one key's window.
const WINDOW_BUDGET: Duration = Duration::from_secs(3);
/// Budget for one trial search while shrinking.
const TRIAL_BUDGET: Duration = Duration::from_millis(300);
/// Steps of the partial linearization included in reports.
const SHOWN_STEPS: usize = 100;

/// Turns a key found not linearizable into a reportable [`Failure`]; or, should the search
/// for its exact culprit find a linearization after all (a bug in faultline), into an unknown
/// key that says so rather than a verdict it cannot stand behind.
pub(crate) fn explain<M: Model>(
    model: &M,
    history: &History,
    operations: &[Operation],
    u: &Unexplained<M>,
    minimize: bool,
    limits: &Limits<'_>,
) -> Result<Failure, UnknownKey> {
    let kh = &u.kh;
    let key_text = kh.key.as_ref().map(crate::text::json_for_terminal);
    let (culprit, linearized) = exact_frontier(model, u, limits).map_err(|problem| UnknownKey {
        key: kh.key.clone(),
        reason: format!(
            "internal error: the check's two searches disagree ({problem}); please report \
             this history"
        ),
        linearized: 0,
        operations: kh.ops.len(),
    })?;
    let (window, sentence) = match &u.precheck {
        // Nothing could explain the culprit's result: it fails on its own.
        Some(sentence) => (vec![culprit], sentence.clone()),
        None => {
            let window = if minimize {
                minimal_window(model, kh, culprit, &linearized, limits)
            } else {
                vec![culprit]
            };
            let sentence = model
                .explain(&kh.view(key_text.as_deref(), &kh.ops), culprit, &kh.init)
                .unwrap_or_else(|| generic_sentence(model, kh, culprit, &linearized));
            (window, sentence)
        }
    };

    let states = replay(model, kh, &linearized);
    let shown_from = linearized.len().saturating_sub(SHOWN_STEPS);
    let partial_linearization = linearized[shown_from..]
        .iter()
        .zip(&states[shown_from.min(states.len())..])
        .map(|(&i, state)| LinearizationStep {
            op: summarize(history, &operations[kh.origin[i]]),
            description: model.describe_op(&kh.ops[i].op, &kh.values),
            state_after: model.describe_state(state, &kh.values),
        })
        .collect();

    let mut window_events = Vec::new();
    for &i in &window {
        let op = &operations[kh.origin[i]];
        window_events.push(op.invoke);
        window_events.extend(op.completion);
    }
    window_events.sort_unstable();

    Ok(Failure {
        key: kh.key.clone(),
        culprit: summarize(history, &operations[kh.origin[culprit]]),
        sentence,
        linearized_count: linearized.len(),
        partial_linearization,
        window: window
            .iter()
            .map(|&i| summarize(history, &operations[kh.origin[i]]))
            .collect(),
        window_events: window_events
            .into_iter()
            .map(|e| history.events[e].clone())
            .collect(),
    })
}

/// The culprit and longest partial linearization of a failure: as found, when the search that
/// found it kept the true frontier; else from a search that does (the verdict is already
/// known, so this costs explanation time, not check time). Should that search stop early
/// ([`CULPRIT_BUDGET`], memory), the first one's answer is kept: where that search got
/// stuck. Should it find a linearization, the two searches disagree: an error.
fn exact_frontier<M: Model>(
    model: &M,
    u: &Unexplained<M>,
    limits: &Limits<'_>,
) -> Result<(usize, Vec<usize>), String> {
    if u.frontier_exact || u.precheck.is_some() {
        return Ok((u.culprit, u.linearized.clone()));
    }
    let all: Vec<usize> = (0..u.kh.ops.len()).collect();
    let exact = Limits {
        exact_frontier: true,
        deadline: Some(Instant::now() + CULPRIT_BUDGET),
        ..*limits
    };
    match search_subset(model, &u.kh, &all, &exact, &mut SearchStats::default()) {
        SubsetOutcome::NotLinearizable {
            culprit,
            linearized,
        } => Ok((culprit, linearized)),
        SubsetOutcome::Stopped { .. } => Ok((u.culprit, u.linearized.clone())),
        SubsetOutcome::Linearizable => {
            Err("the search without rule 6 found a linearization".to_string())
        }
        SubsetOutcome::Broken(problem) => Err(problem),
    }
}

/// Shrinks the operations before `culprit` to a small window that still fails at `culprit`.
/// Returns indices into `kh.ops`, sorted, culprit included.
///
/// `linearized` is the longest partial linearization the search found (indices into
/// `kh.ops`). It gives the first candidates, tried before the generic shrinking: the part of it
/// after the last moment the object was back in its initial state (a free mutex, an empty
/// queue, a register rewritten to its initial value), alone and then with every operation it
/// left out. Dropping a prefix in call order, as the generic shrinking does, rarely works for
/// such models: it leaves an acquire without its release, or an enqueue without its dequeue,
/// and the trial fails earlier with another culprit. A cut where the state is the initial one
/// starts the window from a state the model also starts from.
pub(crate) fn minimal_window<M: Model>(
    model: &M,
    kh: &KeyHistory<M>,
    culprit: usize,
    linearized: &[usize],
    limits: &Limits<'_>,
) -> Vec<usize> {
    let Some(end) = kh.ops[culprit].ret else {
        return vec![culprit];
    };
    let started = Instant::now();
    let budget_end = started + WINDOW_BUDGET;
    let cancel = AtomicBool::new(false);
    let mut stats = SearchStats::default();
    let mut still_fails = |others: &[usize]| -> bool {
        let now = Instant::now();
        if now >= budget_end {
            return false;
        }
        let mut subset: Vec<usize> = others.to_vec();
        subset.push(culprit);
        subset.sort_unstable();
        if !model.window_keeps_enough(&kh.view(None, &kh.ops), &subset) {
            return false;
        }
        let ops: Vec<_> = subset.iter().map(|&i| kh.ops[i].clone()).collect();
        // Dropping the writer of what the culprit (or an operation before it) read would make
        // the window fail trivially, for a reason the real history does not have.
        if let Some((i, _)) = model.unexplained(&kh.view(None, &ops), &kh.init) {
            if ops[i].ret.is_some_and(|r| r <= end) {
                return false;
            }
        }
        let trial = Limits {
            deadline: Some((now + TRIAL_BUDGET).min(budget_end)),
            cancel: &cancel,
            cache_bytes: limits.cache_bytes.min(64 << 20),
            max_steps: u64::MAX,
            exact_frontier: true,
        };
        matches!(
            search_subset(model, kh, &subset, &trial, &mut stats),
            SubsetOutcome::NotLinearizable { culprit: c, .. } if c == culprit
        )
    };

    let before: Vec<usize> = (0..kh.ops.len())
        .filter(|&i| i != culprit && kh.ops[i].call < end)
        .collect();
    // What the partial linearization did since the object was last back in its initial
    // state, alone and with the operations it left out; shrunk on its own.
    let states = replay(model, kh, linearized);
    let cut = (0..=states.len())
        .rev()
        .find(|&j| j == 0 || states[j - 1] == kh.init)
        .unwrap_or(0);
    let mut from_cut: Option<Vec<usize>> = None;
    if cut > 0 {
        let mut since: Vec<usize> = linearized[cut..states.len()]
            .iter()
            .copied()
            .filter(|&i| i != culprit && kh.ops[i].call < end)
            .collect();
        since.sort_unstable();
        let placed: rustc_hash::FxHashSet<usize> = linearized.iter().copied().collect();
        let mut with_unplaced = since.clone();
        with_unplaced.extend(before.iter().copied().filter(|i| !placed.contains(i)));
        with_unplaced.sort_unstable();
        for candidate in [since, with_unplaced] {
            if candidate.len() < before.len() && still_fails(&candidate) {
                from_cut = Some(delta_debug(candidate, &mut still_fails));
                break;
            }
        }
    }
    let small_enough = |w: &Option<Vec<usize>>| w.as_ref().is_some_and(|w| w.len() <= 2);
    let mut best = from_cut;
    // By blocks: the partial linearization cut wherever the object is back in its initial
    // state (an acquire with its release, an enqueue with its dequeue). Dropping a whole block
    // leaves every later operation seeing the same states, where dropping one operation of it
    // would not; so shrink by blocks first, then by operations. Only when the initial state
    // recurs (no block holds half of the operations).
    let blocks = blocks_at_initial_state(kh, linearized, &states, &before);
    let largest = blocks.iter().map(Vec::len).max().unwrap_or(0);
    if !small_enough(&best) && largest >= 2 && largest * 2 <= before.len() {
        let flatten = |ids: &[usize]| -> Vec<usize> {
            let mut ops: Vec<usize> = ids.iter().flat_map(|&b| blocks[b].clone()).collect();
            ops.sort_unstable();
            ops
        };
        let kept = delta_debug((0..blocks.len()).collect(), &mut |ids: &[usize]| {
            still_fails(&flatten(ids))
        });
        let by_blocks = delta_debug(flatten(&kept), &mut still_fails);
        best = smaller(best, by_blocks);
    }
    // The generic way, unless a window of one or two operations was found: narrow to a
    // suffix (failures are usually local in time), then shrink. The smallest window wins.
    if !small_enough(&best) {
        let mut start = before.clone();
        let mut size = 8;
        while size < before.len() {
            let suffix = &before[before.len() - size..];
            if still_fails(suffix) {
                start = suffix.to_vec();
                break;
            }
            size *= 2;
        }
        best = smaller(best, delta_debug(start, &mut still_fails));
    }
    let mut window = best.unwrap_or(before);
    window.push(culprit);
    window.sort_unstable();
    window
}

/// The smaller of two windows (the first when equal).
fn smaller(best: Option<Vec<usize>>, other: Vec<usize>) -> Option<Vec<usize>> {
    match best {
        Some(b) if b.len() <= other.len() => Some(b),
        _ => Some(other),
    }
}

/// The operations of `before`, grouped: the partial linearization `linearized` (whose states
/// after each step are `states`) split after every step that leaves the object in its initial
/// state, then every operation it did not place, alone.
fn blocks_at_initial_state<M: Model>(
    kh: &KeyHistory<M>,
    linearized: &[usize],
    states: &[M::State],
    before: &[usize],
) -> Vec<Vec<usize>> {
    let wanted: rustc_hash::FxHashSet<usize> = before.iter().copied().collect();
    let placed = &linearized[..states.len()];
    let mut blocks = Vec::new();
    let mut current = Vec::new();
    for (&i, state) in placed.iter().zip(states) {
        if wanted.contains(&i) {
            current.push(i);
        }
        if *state == kh.init && !current.is_empty() {
            blocks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    let placed: rustc_hash::FxHashSet<usize> = placed.iter().copied().collect();
    blocks.extend(
        before
            .iter()
            .filter(|i| !placed.contains(i))
            .map(|&i| vec![i]),
    );
    blocks
}

/// Delta debugging: removes chunks of `window` while `still_fails` holds, halving the chunk
/// size down to single operations. The result is 1-minimal: no single operation of it can go.
fn delta_debug(
    mut window: Vec<usize>,
    still_fails: &mut impl FnMut(&[usize]) -> bool,
) -> Vec<usize> {
    let mut chunk = (window.len() / 2).max(1);
    loop {
        let mut at = 0;
        while at < window.len() {
            let mut trial = window[..at].to_vec();
            trial.extend_from_slice(&window[(at + chunk).min(window.len())..]);
            if still_fails(&trial) {
                window = trial;
            } else {
                at += chunk;
            }
        }
        if chunk == 1 {
            return window;
        }
        chunk /= 2;
    }
}

/// The explanation when the model has no specific one: where the search got stuck.
pub(crate) fn generic_sentence<M: Model>(
    model: &M,
    kh: &KeyHistory<M>,
    culprit: usize,
    linearized: &[usize],
) -> String {
    let what = model.describe_op(&kh.ops[culprit].op, &kh.values);
    let on = kh
        .key
        .as_ref()
        .map(|k| format!(" on key {}", crate::text::json_for_terminal(k)))
        .unwrap_or_default();
    let states = replay(model, kh, linearized);
    let state = states
        .last()
        .map(|s| model.describe_state(s, &kh.values))
        .unwrap_or_else(|| model.describe_state(&kh.init, &kh.values));
    format!(
        "{what}{on} cannot take effect anywhere between its call and its return: no valid order \
         of the operations that could precede it allows it (the longest, {} operations, leaves \
         the {} at {state})",
        linearized.len(),
        model.name()
    )
}
