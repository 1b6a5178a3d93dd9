//! Model check of the Raft core with stateright: three cores behind stateright actors, an
//! unordered network that may delay and reorder any message arbitrarily (which, for safety properties, also
//! covers loss), election and heartbeat timers that may fire at any moment, and each node
//! proposing one value when it leads. Breadth-first search to a bounded depth checks, in every
//! reachable state:
//! - election safety: no two nodes were ever leader in the same term;
//! - state-machine safety: no two nodes applied different entries at the same index.
//!
//! The depth defaults to a value that finishes in well under a minute on two cores;
//! `FAULTLINE_MODEL_DEPTH=N` explores deeper. The test prints states, depth and time.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::Bytes;
use faultline_raft::bugs::Bugs;
use faultline_raft::core::{Config, EntryKind, Message, RawNode};
use stateright::actor::{model_timeout, Actor, ActorModel, Id, Network, Out};
use stateright::{Checker, Expectation, HasDiscoveries, Model, UniformChooser};

const NODES: u64 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Msg(Message);

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    Election,
    Heartbeat,
}

/// Heartbeat rounds each node may send (each one is a new state; a couple suffice to spread
/// the commit index).
const HEARTBEATS: u8 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    node: RawNode,
    /// Terms in which this node was leader.
    led: Vec<u64>,
    /// (index, term) of every entry applied, in order.
    applied: Vec<(u64, u64)>,
    proposed: bool,
    heartbeats: u8,
}

struct RaftActor {
    bugs: Bugs,
}

fn drain(state: &mut State, o: &mut Out<RaftActor>) {
    // A node proposes one command (its id) the first time it leads.
    if state.node.is_leader() && !state.proposed {
        let v = Bytes::from(vec![state.node.id() as u8]);
        state.proposed = state.node.propose(v).is_ok();
    }
    while state.node.has_ready() {
        let rd = state.node.ready();
        // Storage is synchronous here: persist, then release everything.
        if let Some(t) = rd.persist_token {
            state.node.advance(t);
        }
        for m in rd.messages.into_iter().chain(rd.persisted_messages) {
            o.send(Id::from((m.to - 1) as usize), Msg(m));
        }
        state
            .applied
            .extend(rd.committed_entries.iter().map(|e| (e.index, e.term)));
    }
    if state.node.is_leader() && state.led.last() != Some(&state.node.term()) {
        state.led.push(state.node.term());
    }
    // Timers are armed only while they can do something (see `on_timeout`).
    if state.node.is_leader() {
        if state.heartbeats < HEARTBEATS {
            o.set_timer(Timer::Heartbeat, model_timeout());
        }
    } else {
        o.set_timer(Timer::Election, model_timeout());
    }
}

impl Actor for RaftActor {
    type Msg = Msg;
    type State = State;
    type Timer = Timer;
    type Random = ();
    type Storage = ();

    fn on_start(&self, id: Id, _storage: &Option<()>, o: &mut Out<Self>) -> State {
        let me = usize::from(id) as u64 + 1;
        let mut cfg = Config::new(me, (1..=NODES).collect());
        cfg.check_quorum = false;
        cfg.max_entries_per_msg = 1;
        cfg.bugs = self.bugs;
        let node = RawNode::new(cfg).unwrap_or_else(|e| panic!("model config: {e}"));
        o.set_timer(Timer::Election, model_timeout());
        State {
            node,
            led: Vec::new(),
            applied: Vec::new(),
            proposed: false,
            heartbeats: 0,
        }
    }

    fn on_msg(&self, _id: Id, state: &mut Cow<State>, _src: Id, msg: Msg, o: &mut Out<Self>) {
        let s = state.to_mut();
        s.node.step(msg.0);
        drain(s, o);
    }

    /// A timeout that would change nothing is not re-armed: stateright's random-walk checker
    /// records an ignored (no-op) action by an index its path replay cannot follow, so a
    /// no-op timeout in a recorded path makes reconstructing the path panic. `drain` re-arms
    /// each timer when it becomes useful again (election: on losing leadership; heartbeat:
    /// on winning it).
    fn on_timeout(&self, _id: Id, state: &mut Cow<State>, timer: &Timer, o: &mut Out<Self>) {
        match timer {
            Timer::Election if !state.node.is_leader() => {
                let s = state.to_mut();
                s.node.campaign();
                drain(s, o);
            }
            Timer::Heartbeat if state.node.is_leader() && state.heartbeats < HEARTBEATS => {
                let s = state.to_mut();
                s.heartbeats += 1;
                s.node.heartbeat();
                drain(s, o);
            }
            Timer::Election | Timer::Heartbeat => {}
        }
    }
}

/// `ordered`: per-link FIFO delivery (still reordering across links). The random-walk checker
/// needs it: it replays paths by action index, and the unordered network's iteration order is
/// not reproducible across replays.
fn model(bugs: Bugs, ordered: bool) -> ActorModel<RaftActor> {
    let network = if ordered {
        Network::new_ordered([])
    } else {
        Network::new_unordered_nonduplicating([])
    };
    ActorModel::new((), ())
        .actors((0..NODES).map(|_| RaftActor { bugs }))
        .init_network(network)
        .property(Expectation::Always, "election safety", |_, s| {
            let mut terms: Vec<u64> = s
                .actor_states
                .iter()
                .flat_map(|a| a.led.iter().copied())
                .collect();
            let n = terms.len();
            terms.sort_unstable();
            terms.dedup();
            terms.len() == n
        })
        .property(Expectation::Always, "state-machine safety", |_, s| {
            let a = &s.actor_states;
            (0..a.len()).all(|i| {
                (i + 1..a.len()).all(|j| {
                    a[i].applied
                        .iter()
                        .zip(a[j].applied.iter())
                        .all(|(x, y)| x == y)
                })
            })
        })
        .property(Expectation::Sometimes, "a command is committed", |_, s| {
            s.actor_states.iter().any(|a| {
                a.applied.iter().any(|&(i, _)| {
                    a.node
                        .entry(i)
                        .is_some_and(|e| e.kind == EntryKind::Command)
                })
            })
        })
}

fn depth() -> usize {
    std::env::var("FAULTLINE_MODEL_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn model_check_election_safety_and_state_machine_safety() {
    let start = Instant::now();
    let d = depth();
    let checker = model(Bugs::default(), false)
        .checker()
        .target_max_depth(d)
        .threads(2)
        .spawn_bfs()
        .join();
    println!(
        "stateright: 3 nodes, depth bound {d}: {} states ({} unique), max depth reached {}, in {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        start.elapsed()
    );
    checker.assert_no_discovery("election safety");
    checker.assert_no_discovery("state-machine safety");
    // The search got far enough to commit a client command (so the properties were exercised).
    assert!(
        checker.discovery("a command is committed").is_some(),
        "no command was committed within depth {d}"
    );
}

/// The same model catches the `vote-without-log-check` bug (so the properties can fail). Its
/// counterexample is deeper than the exhaustive bound, so this uses stateright's random-walk
/// simulation checker to depth 40.
#[test]
fn model_check_finds_vote_without_log_check() {
    let start = Instant::now();
    let bugs = Bugs::only("vote-without-log-check").unwrap_or_default();
    let checker = model(bugs, true)
        .checker()
        .target_max_depth(40)
        .finish_when(HasDiscoveries::AnyFailures)
        .timeout(Duration::from_secs(120))
        .threads(2)
        .spawn_simulation(7, UniformChooser)
        .join();
    let found = checker
        .discovery("state-machine safety")
        .or_else(|| checker.discovery("election safety"));
    println!(
        "stateright simulation with vote-without-log-check: {} states in {:.1?}; counterexample: {}",
        checker.state_count(),
        start.elapsed(),
        found.as_ref().map_or("none".to_string(), |p| format!("{} actions", p.clone().into_actions().len()))
    );
    assert!(
        found.is_some(),
        "the model check should catch vote-without-log-check"
    );
}

/// Beyond the exhaustive bound: random walks to depth 60 over the correct build for a fixed
/// time find no violation either.
#[test]
fn model_check_random_walks_to_depth_60() {
    let start = Instant::now();
    let checker = model(Bugs::default(), true)
        .checker()
        .target_max_depth(60)
        .finish_when(HasDiscoveries::AnyFailures)
        .timeout(Duration::from_secs(15))
        .threads(2)
        .spawn_simulation(11, UniformChooser)
        .join();
    println!(
        "stateright random walks to depth 60: {} states in {:.1?}",
        checker.state_count(),
        start.elapsed()
    );
    checker.assert_no_discovery("election safety");
    checker.assert_no_discovery("state-machine safety");
    assert!(checker.discovery("a command is committed").is_some());
}
