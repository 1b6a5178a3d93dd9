//! The linearization search for one key's history.
//!
//! # The algorithm
//! Wing & Gong's depth-first search, with Lowe's cache of visited configurations (as in
//! Porcupine and Knossos's `wgl`), written for speed and for histories with many indeterminate
//! operations:
//!
//! * **The entry list.** Every `ok` operation contributes a *call* entry and a *return* entry,
//!   every indeterminate operation only a call entry (it never returns: it may take effect at
//!   any later moment). Entries sit in one doubly linked list in real-time order. An operation
//!   may be linearized next iff its call entry comes before the first return entry still in the
//!   list: any operation that returned earlier has already been linearized. Linearizing an
//!   operation *lifts* its entries out of the list; backtracking puts them back in reverse
//!   order, in O(1) (dancing links).
//!
//! * **Configurations and the cache.** A search node is (set of linearized operations, model
//!   state, chain start — see below). Reaching a configuration already explored cannot lead
//!   anywhere new, so the search skips it. The set is identified by a 128-bit Zobrist
//!   fingerprint: each operation has a random 128-bit key and the set's fingerprint is the XOR
//!   of its members' keys, updated in O(1) when an operation is lifted or put back (Porcupine
//!   copies and re-hashes a whole bitset instead). Fingerprints are stored in a bounded
//!   [`VisitedSet`]. Two distinct configurations share a fingerprint with probability 2^-128
//!   per pair (about 10^-25 for a billion stored configurations); that is the only way the
//!   cache could wrongly skip a configuration.
//!
//! * **Success** is reached when every `ok` operation is linearized: indeterminate operations
//!   left over are taken not to have happened.
//!
//! # Indeterminate operations: just-in-time chains
//! Lost responses are where checkers give up, because an indeterminate operation can be placed
//! anywhere after its call, so each one doubles the number of orders. faultline limits where
//! they are tried, by four rules, each sound (it never hides a valid linearization):
//!
//! 1. **Chains must matter.** In any linearization, group the indeterminate operations into
//!    *chains*: maximal runs of them, each followed by an `ok` operation `o` (a chain at the very
//!    end can be dropped: nothing observes it). If `o` is allowed in the state before the chain
//!    and ends in the same state as after it, the chain can be removed without changing any
//!    other operation's view, and removing operations never breaks real-time order. So the
//!    search only completes a chain with an `ok` operation whose result the chain changes
//!    (made possible, or led to a different state). The configuration therefore records the
//!    state where the current chain started.
//! 2. **No no-op moves.** An indeterminate operation that leaves the state unchanged (or
//!    returns it to where its chain started) can be dropped from any linearization.
//! 3. **Blind writes only start chains.** A blind write (`Model::overwrites`) in the middle of
//!    a chain erases what the chain did before it, so that part of the chain can be dropped.
//! 4. **Identical operations are interchangeable.** Indeterminate operations with identical
//!    effect (same function and values, e.g. two lost `write 3`s) differ only in their call
//!    time. Once both are callable, swapping them in a linearization keeps it valid: the earlier
//!    one may take the later one's place (it was called even earlier), and the later one the
//!    earlier one's place if that place comes after its call. So the search only ever uses the
//!    earliest unused operation of a class, and the used ones of each class form a prefix.
//!
//! Together with each model's `simplify` (which drops indeterminate operations nothing can
//! observe), these rules make histories with hundreds of lost responses tractable.
//!
//! # Reads: take them at once, and never move past them
//! Histories with many concurrent writers (Porcupine's kv tests: 50 clients appending to ten
//! keys) make the search try the writers in every order until a read says which one was
//! right. Two more sound rules cut that down:
//!
//! 5. **Reads first.** Outside a chain, an `ok` read (`Model::is_read`) that is callable and
//!    allowed in the current state is linearized at once, and nothing else is tried from that
//!    configuration. If any linearization extends the current prefix, moving the read to the
//!    front of its remainder gives another: the read sees the same state (it changes nothing
//!    and is allowed now), no one else sees the read, and real time still holds (callable
//!    means no operation still to place returned before the read was called). So if the
//!    configuration after the read fails, this one fails too.
//! 6. **No hopeless growth.** Some objects only grow until a blind write (a kv string under
//!    appends and puts, a set under adds). A pending `ok` read will see either a growth of the
//!    current state or a growth of what some blind write placed before it leaves. A move to a
//!    state from which the read can see neither (`Model::may_read_later`) cannot be part of
//!    any linearization: the read must still be placed. The test looks at the reads the search
//!    must place soonest (those callable now and those among the next few returns), which is
//!    where a wrong order shows first.
//!
//! # The frontier
//! When the search fails, the operation it could never get past is the culprit: among all
//! configurations explored, the one whose first unlinearized `ok` operation returns latest is
//! the *frontier*, and that operation cannot be linearized after any valid order of the
//! operations that returned before it. The linearized operations at the frontier are the
//! longest partial linearization reported to the user.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::visited::VisitedSet;

/// An interned model state.
pub(crate) type StateId = u32;

/// "Not inside a chain of indeterminate operations."
const NO_CHAIN: StateId = StateId::MAX;

/// List sentinel (both head and tail: the list is circular).
const HEAD: u32 = 0;

/// How the search advances a state: the model, seen through interned states.
pub(crate) trait Stepper {
    fn init(&mut self) -> StateId;
    /// The state after `op` from `state`, or `None` if the model does not allow it there.
    fn step(&mut self, state: StateId, op: usize) -> Option<StateId>;
    /// True once the stepper's own tables (interned states, memoised steps) have used up
    /// their memory budget: the search then stops with an unknown verdict.
    fn exhausted(&self) -> bool {
        false
    }
    /// Whether the read `op` (not yet linearized) can still be allowed in `state` or in a
    /// state grown from it without blind writes (see `Model::may_read_later`).
    fn may_read_later(&mut self, _state: StateId, _op: usize) -> bool {
        true
    }
}

/// The operations of one key, as the search sees them.
pub(crate) struct SearchOp {
    pub call: u32,
    /// `None`: indeterminate.
    pub ret: Option<u32>,
    /// For indeterminate operations: operations with the same class have identical effects.
    pub class: u32,
    /// A blind write (see `Model::overwrites`).
    pub blind: bool,
    /// An `ok` operation that never changes the state (see `Model::is_read`).
    pub read: bool,
}

/// Limits on one search.
pub(crate) struct Limits<'a> {
    pub deadline: Option<Instant>,
    /// Set by another thread to stop every search early (the verdict becomes unknown).
    pub cancel: &'a AtomicBool,
    /// Upper bound on the visited-set's memory, in bytes.
    pub cache_bytes: usize,
    /// Give up after this many steps (`u64::MAX`: never). Lets the caller share time fairly
    /// between keys by searching them in rounds of growing budgets.
    pub max_steps: u64,
    /// Whether a failed search must report the true frontier (see "The frontier"). Rule 6
    /// skips moves that cannot lead to a whole linearization but could lead further than the
    /// others before failing, so it is off when the frontier matters (explanations) and on
    /// when only the verdict does.
    pub exact_frontier: bool,
}

impl Limits<'_> {
    /// Whether the search must stop now whatever its own state: cancelled by another thread,
    /// or out of time.
    pub(crate) fn interrupted(&self) -> Option<Halt> {
        if self.cancel.load(Ordering::Relaxed) {
            Some(Halt::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Halt::Time)
        } else {
            None
        }
    }
}

/// Why a search stopped before deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    Time,
    Cancelled,
    /// The model's tables outgrew the memory budget.
    Memory,
    /// `max_steps` was reached.
    Steps,
}

/// Where the search could get no further.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frontier {
    /// The `ok` operation that could not be linearized (`None` if the search never reached a
    /// return entry, which only happens when it was stopped very early).
    pub blocked: Option<usize>,
    /// Operations linearized at that point, in order.
    pub linearized: Vec<usize>,
    /// The model state after them.
    pub state: StateId,
}

#[derive(Debug)]
pub(crate) enum SearchResult {
    /// A witness: every `ok` operation and the indeterminate ones that took effect, in order.
    Linearizable(Vec<usize>),
    NotLinearizable(Frontier),
    /// Stopped before deciding.
    Stopped(Frontier, Halt),
}

/// Counters for benchmarks and `--json` output.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SearchStats {
    pub steps: u64,
    pub cache_entries: usize,
    pub cache_evictions: u64,
    /// Moves rule 6 dropped: when none, a failed search's frontier is exact anyway.
    pub growth_prunes: u64,
}

impl SearchStats {
    /// Adds these counters to `total`.
    pub(crate) fn add_to(&self, total: &mut SearchStats) {
        total.steps += self.steps;
        total.cache_entries = total.cache_entries.max(self.cache_entries);
        total.cache_evictions += self.cache_evictions;
        total.growth_prunes += self.growth_prunes;
    }
}

struct Frame {
    op: u32,
    /// The call entry the op was chosen from; the scan resumes after it.
    entry: u32,
    state_before: StateId,
    chain_before: StateId,
    /// Which pass chose it (see `search`).
    pass: u8,
}

const PASS_READ: u8 = 0;
const PASS_OK: u8 = 1;
const PASS_INFO: u8 = 2;

/// Runs the search. `ops` must be sorted by call; their calls and returns are distinct
/// positions in one event sequence.
pub(crate) fn search<S: Stepper>(
    ops: &[SearchOp],
    stepper: &mut S,
    limits: &Limits<'_>,
    stats: &mut SearchStats,
) -> SearchResult {
    let n = ops.len();
    // --- The entry list. Entry 0 is the sentinel; entries are numbered in time order. ---
    let mut timeline: Vec<(u32, u32, bool)> = Vec::with_capacity(2 * n); // (time, op, is_return)
    for (i, op) in ops.iter().enumerate() {
        timeline.push((op.call, i as u32, false));
        if let Some(r) = op.ret {
            timeline.push((r, i as u32, true));
        }
    }
    timeline.sort_unstable_by_key(|&(t, _, _)| t);
    let entries = timeline.len() + 1;
    let mut next: Vec<u32> = (1..=entries as u32).map(|e| e % entries as u32).collect();
    let mut prev: Vec<u32> = (0..entries as u32)
        .map(|e| (e + entries as u32 - 1) % entries as u32)
        .collect();
    let mut entry_op = vec![0u32; entries];
    let mut entry_is_return = vec![false; entries];
    let mut call_entry = vec![0u32; n];
    let mut return_entry = vec![0u32; n];
    for (k, &(_, op, is_ret)) in timeline.iter().enumerate() {
        let e = k + 1;
        entry_op[e] = op;
        entry_is_return[e] = is_ret;
        if is_ret {
            return_entry[op as usize] = e as u32;
        } else {
            call_entry[op as usize] = e as u32;
        }
    }

    // --- Classes of interchangeable indeterminate operations (rule 4). ---
    let classes = ops.iter().map(|o| o.class as usize + 1).max().unwrap_or(0);
    let mut class_members: Vec<Vec<u32>> = vec![Vec::new(); classes];
    for (i, op) in ops.iter().enumerate() {
        if op.ret.is_none() {
            class_members[op.class as usize].push(i as u32); // in call order: ops are sorted
        }
    }
    let mut class_used = vec![0usize; classes];

    // --- Zobrist keys. Deterministic, so runs are reproducible. ---
    let op_key: Vec<u128> = (0..n as u64).map(|i| mix128(i, 0x6f70)).collect();

    let mut visited = VisitedSet::new(limits.cache_bytes);
    let mut stack: Vec<Frame> = Vec::with_capacity(n);
    let mut state = stepper.init();
    let mut chain = NO_CHAIN;
    let mut fingerprint: u128 = 0;
    let mut ok_left = ops.iter().filter(|o| o.ret.is_some()).count();
    // Indeterminate operations not yet used: when none are left, the second pass is skipped.
    let mut info_left = n - ok_left;
    // `ok` reads not yet linearized: when none are left, the reads pass is skipped.
    let mut reads_left = ops.iter().filter(|o| o.read).count();
    let mut growth = GrowthCheck::new(ops);
    let mut growth_prunes: u64 = 0;

    // Frontier bookkeeping: `best_ops` holds the linearization at the best frontier so far;
    // `best_shared` is how much of the current stack is known to equal its prefix, so each new
    // frontier copies only what changed since the last one.
    let mut best = Frontier {
        blocked: None,
        linearized: Vec::new(),
        state,
    };
    let mut best_ret: i64 = -1;
    let mut best_shared = 0usize;

    let mut cursor = next[HEAD as usize];
    let mut pass = if reads_left > 0 { PASS_READ } else { PASS_OK };
    let mut steps: u64 = 0;

    let result = loop {
        if ok_left == 0 {
            break SearchResult::Linearizable(stack.iter().map(|f| f.op as usize).collect());
        }
        steps += 1;
        if steps & 0xfff == 0 {
            let halt = limits.interrupted().or_else(|| {
                if stepper.exhausted() {
                    Some(Halt::Memory)
                } else if steps >= limits.max_steps {
                    Some(Halt::Steps)
                } else {
                    None
                }
            });
            if let Some(halt) = halt {
                break SearchResult::Stopped(std::mem::take(&mut best), halt);
            }
        }
        let e = cursor as usize;
        if e == HEAD as usize || entry_is_return[e] {
            // End of the callable region.
            if pass == PASS_READ {
                // No read can be linearized at once: try every operation.
                pass = PASS_OK;
                cursor = next[HEAD as usize];
                continue;
            }
            if pass == PASS_OK {
                if e != HEAD as usize {
                    let blocked = entry_op[e] as usize;
                    let ret = i64::from(ops[blocked].ret.unwrap_or(u32::MAX));
                    if ret > best_ret {
                        best_ret = ret;
                        best.blocked = Some(blocked);
                        best.linearized.truncate(best_shared);
                        best.linearized
                            .extend(stack[best_shared..].iter().map(|f| f.op as usize));
                        best_shared = stack.len();
                        best.state = state;
                    }
                }
                // Last pass over the same region: indeterminate operations (rule 1 makes
                // them useful only as a prefix of some ok operation, so try those first).
                if info_left > 0 {
                    pass = PASS_INFO;
                    cursor = next[HEAD as usize];
                    continue;
                }
            }
            // Backtrack.
            let Some(frame) = stack.pop() else {
                break SearchResult::NotLinearizable(std::mem::take(&mut best));
            };
            best_shared = best_shared.min(stack.len());
            let o = frame.op as usize;
            if let Some(_r) = ops[o].ret {
                relink(&mut next, &mut prev, return_entry[o]);
                ok_left += 1;
            } else {
                class_used[ops[o].class as usize] -= 1;
                info_left += 1;
            }
            reads_left += usize::from(ops[o].read);
            growth.placed[o] = false;
            relink(&mut next, &mut prev, call_entry[o]);
            fingerprint ^= op_key[o];
            state = frame.state_before;
            chain = frame.chain_before;
            if frame.pass == PASS_READ {
                // The read taken at once led nowhere, so nothing else from here can either
                // (rule 5): give this configuration up too.
                cursor = HEAD;
                pass = PASS_INFO;
            } else {
                cursor = next[frame.entry as usize];
                pass = frame.pass;
            }
            continue;
        }

        let o = entry_op[e] as usize;
        let is_info = ops[o].ret.is_none();
        let mut moved = None;
        if pass == PASS_READ {
            // Rule 5: a read allowed now is taken now.
            if ops[o].read && stepper.step(state, o) == Some(state) {
                moved = Some((state, NO_CHAIN));
            }
        } else if is_info == (pass == PASS_INFO) {
            if is_info {
                let class = ops[o].class as usize;
                // Rule 4: only the earliest unused operation of its class; rule 3: a blind
                // write only starts a chain.
                if class_members[class][class_used[class]] as usize == o
                    && !(ops[o].blind && chain != NO_CHAIN)
                {
                    if let Some(s) = stepper.step(state, o as usize) {
                        // Rule 2: no no-op moves, no chain that returns to its start.
                        if s != state && s != chain {
                            let start = if chain == NO_CHAIN { state } else { chain };
                            moved = Some((s, start));
                        }
                    }
                }
            } else if let Some(s) = stepper.step(state, o) {
                // Rule 1: a chain must change what this ok operation does.
                if chain == NO_CHAIN || stepper.step(chain, o) != Some(s) {
                    moved = Some((s, NO_CHAIN));
                }
            }
        }
        // Rule 6: a move past what a pending read saw, with nothing left to reset it, is hopeless.
        if let Some((new_state, _)) = moved {
            if new_state != state
                && !limits.exact_frontier
                && growth.dooms_a_read(&next, &entry_op, &entry_is_return, o, new_state, stepper)
            {
                moved = None;
                growth_prunes += 1;
            }
        }
        if let Some((new_state, new_chain)) = moved {
            let new_fingerprint = fingerprint ^ op_key[o];
            let key = new_fingerprint ^ mix128(u64::from(new_state), 0x7374) ^ {
                if new_chain == NO_CHAIN {
                    0
                } else {
                    mix128(u64::from(new_chain), 0x6368)
                }
            };
            if visited.insert(key) {
                stack.push(Frame {
                    op: o as u32,
                    entry: e as u32,
                    state_before: state,
                    chain_before: chain,
                    pass,
                });
                unlink(&mut next, &mut prev, call_entry[o]);
                reads_left -= usize::from(ops[o].read);
                growth.placed[o] = true;
                if is_info {
                    class_used[ops[o].class as usize] += 1;
                    info_left -= 1;
                } else {
                    unlink(&mut next, &mut prev, return_entry[o]);
                    ok_left -= 1;
                }
                fingerprint = new_fingerprint;
                state = new_state;
                chain = new_chain;
                cursor = next[HEAD as usize];
                pass = if chain == NO_CHAIN && reads_left > 0 {
                    PASS_READ
                } else {
                    PASS_OK
                };
                continue;
            }
            if pass == PASS_READ {
                // The read taken at once leads to a configuration already explored, without
                // success: so does every other move from here (rule 5).
                cursor = HEAD;
                pass = PASS_INFO;
                continue;
            }
        }
        cursor = next[e];
    };
    stats.steps += steps;
    stats.growth_prunes += growth_prunes;
    stats.cache_entries = stats.cache_entries.max(visited.len());
    stats.cache_evictions += visited.evictions();
    result
}

/// What rule 6 needs to know beyond the entry list: which operations are placed, and, per read,
/// the blind writes that could reset the object to something it can still see.
struct GrowthCheck<'a> {
    ops: &'a [SearchOp],
    /// Blind writes, by call.
    blind: Vec<u32>,
    placed: Vec<bool>,
    /// Per read, once needed: the blind writes invoked before it returned that leave a state
    /// from which it can still be allowed.
    resets: Vec<Option<Vec<u32>>>,
}

/// How many return entries past the callable region rule 6 looks through for reads. Every
/// pending read could be tested (all must be placed), but the ones due soonest catch nearly
/// every hopeless move: on Porcupine's 50-client kv histories, looking 4 returns further cuts
/// the configurations explored 3-100x; looking at all of them costs more than it saves.
const GROWTH_LOOKAHEAD_RETURNS: usize = 4;

impl<'a> GrowthCheck<'a> {
    fn new(ops: &'a [SearchOp]) -> GrowthCheck<'a> {
        GrowthCheck {
            ops,
            blind: (0..ops.len() as u32)
                .filter(|&b| ops[b as usize].blind)
                .collect(),
            placed: vec![false; ops.len()],
            resets: vec![None; ops.len()],
        }
    }

    /// Whether the `ok` read `read` can never be allowed once the object is in `state`: not in
    /// a growth of `state`, nor in a growth of what a blind write not placed yet (and invoked
    /// before the read returned) leaves.
    fn hopeless<S: Stepper>(&mut self, stepper: &mut S, state: StateId, read: usize) -> bool {
        if stepper.may_read_later(state, read) {
            return false;
        }
        let ops = self.ops;
        let resets = self.resets[read].get_or_insert_with(|| {
            let ret = ops[read].ret.unwrap_or(u32::MAX);
            self.blind
                .iter()
                .copied()
                .filter(|&b| ops[b as usize].call < ret)
                .filter(|&b| {
                    // A blind write leaves the same state from every state.
                    stepper
                        .step(state, b as usize)
                        .is_some_and(|w| stepper.may_read_later(w, read))
                })
                .collect()
        });
        resets.iter().all(|&b| self.placed[b as usize])
    }

    /// Rule 6's test: whether a read the search must place soon (one callable now, or one
    /// among the next few returns) is hopeless after `op` leaves `state`.
    fn dooms_a_read<S: Stepper>(
        &mut self,
        next: &[u32],
        entry_op: &[u32],
        entry_is_return: &[bool],
        op: usize,
        state: StateId,
        stepper: &mut S,
    ) -> bool {
        let mut e = next[HEAD as usize] as usize;
        let mut returns = 0;
        while e != HEAD as usize {
            let other = entry_op[e] as usize;
            if other != op && self.ops[other].read && self.hopeless(stepper, state, other) {
                return true;
            }
            if entry_is_return[e] {
                returns += 1;
                if returns > GROWTH_LOOKAHEAD_RETURNS {
                    break;
                }
            }
            e = next[e] as usize;
        }
        false
    }
}

#[inline]
fn unlink(next: &mut [u32], prev: &mut [u32], e: u32) {
    let (p, n) = (prev[e as usize], next[e as usize]);
    next[p as usize] = n;
    prev[n as usize] = p;
}

/// Undoes the matching `unlink`; valid because lifts are undone in reverse order.
#[inline]
fn relink(next: &mut [u32], prev: &mut [u32], e: u32) {
    let (p, n) = (prev[e as usize], next[e as usize]);
    next[p as usize] = e;
    prev[n as usize] = e;
}

/// A 128-bit pseudo-random key for `x` (SplitMix64 finalizer, twice, with a domain tag).
#[inline]
pub(crate) fn mix128(x: u64, domain: u64) -> u128 {
    let hi = splitmix(x ^ domain.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let lo = splitmix(hi ^ x.rotate_left(32) ^ 0xd1b5_4a32_d192_ed03);
    (u128::from(hi) << 64) | u128::from(lo)
}

#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
