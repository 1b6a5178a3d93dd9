//! The adaptive schedule: the default. Short fault *scenarios* separated by short quiet
//! periods, each scenario built to produce one situation in which consensus implementations
//! are known to go wrong, aimed at the node that leads *now* and reacting to the elections it
//! causes.
//!
//! # Why scenarios, and which
//!
//! A fault drawn uniformly from kind × aim × shape, held for seconds, mostly hits followers and
//! mostly produces situations every implementation survives. The bugs that matter need a
//! specific moment: an old leader still serving while a new one commits, a leader dying between
//! appending and replicating, a node restarting in the middle of an election, a stale node
//! campaigning. Each scenario below makes one such moment, from the failure mechanisms of the
//! Raft paper (Ongaro & Ousterhout, §5.2–5.4, §8, Figure 8) and of Jepsen's nemesis catalogue,
//! not from any one implementation's bugs:
//!
//! | scenario | what it does | the mechanism it exercises |
//! |---|---|---|
//! | `isolate-leader` | cut the leader off from its peers (clients still reach it) | a deposed leader that keeps serving reads or acknowledging writes (§8, leases) |
//! | `kill-leader` | SIGKILL the leader, restart it | acknowledged writes that only the leader held; recovery from the log |
//! | `pause-leader` | SIGSTOP the leader across an election, resume it | a leader that wakes up believing it still leads, with queued requests |
//! | `kill-new-leader` | kill the leader, then kill its successor the moment it is elected | a new leader's first entries, and entries of earlier terms it carries (Figure 8) |
//! | `lagging-election` | isolate a follower until it lags, then heal it and cut off the leader in one step | the election restriction (§5.4.1): a stale node must not win |
//! | `hub-election` | cut the leader off, and the followers off from each other but not from one of them (the hub): only the hub can gather a majority | the election restriction for a node missing only the newest entries, which the leader acknowledged before its followers knew them committed (with 4 nodes or more) |
//! | `power-loss` | kill every node at once, restart them together | everything persisted (term, vote, log) must survive, and nothing else may be assumed: no survivor remembers for the others |
//! | `crash-majority` | kill the leader and enough followers that no quorum survives, restart them together | a quorum rebuilt from crashed nodes meets survivors that kept their terms |
//! | `leader-and-follower` | isolate the leader and kill a follower together | electing a new leader with one vote fewer |
//! | `restart-during-election` | depose the leader, then restart a follower mid-election | votes must be durable: a restarted node must not vote twice in one term |
//! | `partition` | a shape from Jepsen's catalogue (halves, majorities-ring, bridge, one-way, ...) | non-transitive and asymmetric connectivity |
//! | `clock-leader` | skew the leader's clock (bump, strobe or drift) | leases and timeouts measured on a wrong clock |
//! | `pause-minority` | SIGSTOP a minority, resume it | slow followers, delayed messages delivered late |
//! | `latency`, `loss` | degrade every link (only when asked for) | timeouts and retransmission |
//!
//! Faults last from a fifth of a second to a few seconds (a restart timed into an election:
//! from 50 ms): longer than an election timeout, so they cause elections, but short enough that a minute holds a dozen or more scenarios.
//! Leader-aimed scenarios carry most of the weight. Only the fault kinds given with `--nemesis`
//! are used (a scenario needing another kind is left out, or uses a variant that does not need
//! it), and only the partition shapes given with `--partitions`.
//!
//! Every choice (scenario, nodes besides the leader, durations, shapes, offsets) comes from the
//! seed; the leader a scenario aims at is whichever node leads when it starts, which the seed
//! cannot decide.

use std::time::{Duration, Instant};

use rand::RngExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::inject::{clock_offsets, wait, Active, Fault, FaultRecord, Injector, Origin};
use crate::partition::{self, PartitionKind};
use crate::{ClockMode, Cluster, FaultKind, Grudge, Leader, NemesisConfig, Schedule};

/// Quiet time between two scenarios, in seconds (drawn uniformly): enough for a correct
/// cluster to elect a leader and serve again, short enough for 15–20 scenarios a minute.
const QUIET: (f64, f64) = (0.3, 1.5);
/// How long a scenario waits to learn who leads when nobody does (an election under way).
const FIND_LEADER: Duration = Duration::from_secs(2);
/// How long `kill-new-leader` waits for the successor to be elected.
const AWAIT_SUCCESSOR: Duration = Duration::from_secs(3);

/// A fault scenario (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    IsolateLeader,
    KillLeader,
    PauseLeader,
    KillNewLeader,
    LaggingElection,
    HubElection,
    PowerLoss,
    CrashMajority,
    LeaderAndFollower,
    RestartDuringElection,
    Partition,
    ClockLeader,
    PauseMinority,
    Latency,
    Loss,
}

impl Scenario {
    pub const ALL: &'static [Scenario] = &[
        Scenario::IsolateLeader,
        Scenario::KillLeader,
        Scenario::PauseLeader,
        Scenario::KillNewLeader,
        Scenario::LaggingElection,
        Scenario::HubElection,
        Scenario::PowerLoss,
        Scenario::CrashMajority,
        Scenario::LeaderAndFollower,
        Scenario::RestartDuringElection,
        Scenario::Partition,
        Scenario::ClockLeader,
        Scenario::PauseMinority,
        Scenario::Latency,
        Scenario::Loss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::IsolateLeader => "isolate-leader",
            Scenario::KillLeader => "kill-leader",
            Scenario::PauseLeader => "pause-leader",
            Scenario::KillNewLeader => "kill-new-leader",
            Scenario::LaggingElection => "lagging-election",
            Scenario::HubElection => "hub-election",
            Scenario::PowerLoss => "power-loss",
            Scenario::CrashMajority => "crash-majority",
            Scenario::LeaderAndFollower => "leader-and-follower",
            Scenario::RestartDuringElection => "restart-during-election",
            Scenario::Partition => "partition",
            Scenario::ClockLeader => "clock-leader",
            Scenario::PauseMinority => "pause-minority",
            Scenario::Latency => "latency",
            Scenario::Loss => "loss",
        }
    }

    /// How often the scenario is drawn, relative to the others.
    fn weight(self) -> f64 {
        match self {
            Scenario::IsolateLeader => 3.0,
            Scenario::KillLeader => 2.0,
            Scenario::LaggingElection => 2.0,
            Scenario::HubElection => 1.5,
            Scenario::PauseLeader => 1.5,
            Scenario::KillNewLeader => 1.5,
            Scenario::RestartDuringElection => 1.5,
            Scenario::Partition => 1.5,
            // A whole-cluster crash is the one fault after which nothing but what was
            // persisted exists anywhere; a run should see it a few times (about 1 scenario in 8).
            Scenario::PowerLoss => 2.5,
            Scenario::CrashMajority => 1.5,
            Scenario::LeaderAndFollower => 1.0,
            Scenario::ClockLeader => 1.0,
            Scenario::Latency => 1.0,
            Scenario::Loss => 1.0,
            Scenario::PauseMinority => 0.5,
        }
    }

    /// Whether the scenario can run with the configured fault kinds and partition shapes.
    pub fn available(self, faults: &[FaultKind], shapes: &[PartitionKind]) -> bool {
        let has = |k| faults.contains(&k);
        // A power loss is a kill that also drops unsynced writes: it serves wherever a kill does.
        let kills = has(FaultKind::Kill) || has(FaultKind::LoseUnfsynced);
        let isolate_leader =
            has(FaultKind::Partition) && shapes.contains(&PartitionKind::IsolateLeader);
        let isolate_one = has(FaultKind::Partition) && shapes.contains(&PartitionKind::IsolateOne);
        match self {
            Scenario::IsolateLeader => isolate_leader,
            Scenario::KillLeader
            | Scenario::KillNewLeader
            | Scenario::PowerLoss
            | Scenario::CrashMajority => kills,
            Scenario::PauseLeader | Scenario::PauseMinority => has(FaultKind::Pause),
            // Lag by isolation or by being down; depose the leader by isolation or a kill.
            Scenario::LaggingElection => kills || (isolate_one && isolate_leader),
            Scenario::HubElection => isolate_leader,
            Scenario::LeaderAndFollower => isolate_leader && kills,
            Scenario::RestartDuringElection => kills,
            Scenario::Partition => {
                has(FaultKind::Partition)
                    && shapes.iter().any(|s| *s != PartitionKind::IsolateLeader)
            }
            Scenario::ClockLeader => has(FaultKind::Clock),
            Scenario::Latency => has(FaultKind::Latency),
            Scenario::Loss => has(FaultKind::Loss),
        }
    }
}

/// The scenarios the configuration allows, with their weights.
pub fn menu(config: &NemesisConfig) -> Vec<(Scenario, f64)> {
    let shapes = if config.partitions.is_empty() {
        PartitionKind::ALL.to_vec()
    } else {
        config.partitions.clone()
    };
    Scenario::ALL
        .iter()
        .copied()
        .filter(|s| s.available(&config.faults, &shapes))
        .map(|s| (s, s.weight()))
        .collect()
}

/// Draws a scenario from `menu` by weight.
fn draw(schedule: &mut Schedule, menu: &[(Scenario, f64)]) -> Scenario {
    let total: f64 = menu.iter().map(|(_, w)| w).sum();
    let mut x = schedule
        .rng()
        .random_range(0.0..total.max(f64::MIN_POSITIVE));
    for (s, w) in menu {
        if x < *w {
            return *s;
        }
        x -= w;
    }
    menu[menu.len() - 1].0
}

pub async fn run<C: Cluster>(
    cluster: &C,
    config: &NemesisConfig,
    test_start: Instant,
    record: &(dyn Fn(&str, Value) + Send + Sync),
    mut stop: watch::Receiver<bool>,
) -> Vec<FaultRecord> {
    let mut schedule = Schedule::new(config);
    let mut injector = Injector::new(cluster, test_start, record);
    let menu = menu(config);
    if menu.is_empty() {
        // No faults configured: idle until told to stop.
        let _ = stop.wait_for(|s| *s).await;
        return injector.into_records();
    }
    let mut number = 0;
    let mut leaders_seen = false;
    loop {
        let quiet = schedule.seconds(QUIET.0, QUIET.1).max(config.min_quiet);
        if wait(quiet, &mut stop).await {
            break;
        }
        number += 1;
        let scenario = draw(&mut schedule, &menu);
        let mut play = Play {
            injector: &mut injector,
            schedule: &mut schedule,
            config,
            stop: &mut stop,
            active: Vec::new(),
            scenario,
            number,
            leaders_seen: &mut leaders_seen,
        };
        let stopped = play.perform().await;
        let mut active = std::mem::take(&mut play.active);
        injector.heal_all(&mut active).await;
        if stopped {
            break;
        }
    }
    injector.into_records()
}

/// One scenario being played.
struct Play<'p, 'a, C: Cluster> {
    injector: &'p mut Injector<'a, C>,
    schedule: &'p mut Schedule,
    config: &'p NemesisConfig,
    stop: &'p mut watch::Receiver<bool>,
    /// Faults of this scenario still in force (healed at its end, whatever happens).
    active: Vec<Active>,
    scenario: Scenario,
    number: u64,
    /// Whether any scenario so far has seen a leader (see `await_new_leader`).
    leaders_seen: &'p mut bool,
}

/// Whether a scenario was interrupted by the end of the test.
type Stopped = bool;

impl<C: Cluster> Play<'_, '_, C> {
    fn cluster(&self) -> &C {
        self.injector.cluster()
    }

    fn nodes(&self) -> Vec<String> {
        self.cluster().nodes()
    }

    fn allowed(&self, k: FaultKind) -> bool {
        self.config.faults.contains(&k)
    }

    fn shape_allowed(&self, s: PartitionKind) -> bool {
        self.allowed(FaultKind::Partition)
            && (self.config.partitions.is_empty() || self.config.partitions.contains(&s))
    }

    /// Who leads now: as observed, or (during an election) the first leader to appear.
    async fn leader(&mut self) -> Option<Leader> {
        match self.cluster().observed_leader() {
            Some(l) => {
                *self.leaders_seen = true;
                Some(l)
            }
            None => self.await_new_leader(None, FIND_LEADER).await,
        }
    }

    /// Waits for a leader other than `old`, but no longer than the test lasts. A target that
    /// has never shown a leader (it reports no roles) is waited for in the first scenario
    /// only: waiting in every scenario would halve the faults a minute holds.
    async fn await_new_leader(
        &mut self,
        old: Option<&Leader>,
        timeout: Duration,
    ) -> Option<Leader> {
        if !*self.leaders_seen && self.number > 1 {
            return None;
        }
        let cluster = self.injector.cluster();
        let l = tokio::select! {
            l = cluster.await_new_leader(old, timeout) => l,
            _ = self.stop.wait_for(|s| *s) => None,
        };
        if l.is_some() {
            *self.leaders_seen = true;
        }
        l
    }

    /// The leader's name, or a node drawn at random when no leader can be found (the target
    /// may not say who leads).
    async fn leader_or_any(&mut self) -> (String, &'static str) {
        if let Some(l) = self.leader().await {
            if self.nodes().contains(&l.node) {
                return (l.node, "the leader");
            }
        }
        let nodes = self.nodes();
        let any = self.schedule.pick(&nodes).unwrap_or_default();
        (any, "a node (no leader observed)")
    }

    /// A node other than `not`, drawn at random.
    fn other_than(&mut self, not: &[String]) -> Option<String> {
        let others: Vec<String> = self
            .nodes()
            .into_iter()
            .filter(|n| !not.contains(n))
            .collect();
        self.schedule.pick(&others)
    }

    /// Starts a fault of this scenario; `None` (and nothing started) once the test is over.
    async fn start(&mut self, fault: Fault, target: impl Into<String>) -> Option<u64> {
        if *self.stop.borrow() {
            return None;
        }
        // Each kill is a power loss when only those are allowed, and half of them when both
        // are (the seed draws which; with neither allowed, no draw: schedules without power
        // losses stay as they were).
        let fault = match fault {
            Fault::Kill(nodes) if self.allowed(FaultKind::LoseUnfsynced) => {
                if !self.allowed(FaultKind::Kill) || self.schedule.rng().random_bool(0.5) {
                    Fault::LoseUnfsynced(nodes)
                } else {
                    Fault::Kill(nodes)
                }
            }
            other => other,
        };
        let origin = Origin {
            aim: None,
            scenario: Some((self.number, self.scenario.name().to_string())),
            target: Some(target.into()),
            ..Origin::default()
        };
        let active = self.injector.start(fault, origin).await;
        let id = active.id;
        self.active.push(active);
        Some(id)
    }

    /// Holds the faults in force for `d`, strobing or drifting any clock fault among them.
    async fn hold(&mut self, d: Duration) -> Stopped {
        match self
            .active
            .iter()
            .find(|a| matches!(a.fault_kind(), FaultKind::Clock))
        {
            Some(clock) => self.injector.hold(clock, d, self.stop).await,
            None => wait(d, self.stop).await,
        }
    }

    async fn heal(&mut self, id: Option<u64>) {
        let Some(id) = id else { return };
        if let Some(i) = self.active.iter().position(|a| a.id == id) {
            let a = self.active.remove(i);
            self.injector.heal(a).await;
        }
    }

    /// The leader cut off from everyone, and every other node hearing only `hub` (and `hub`
    /// hearing them all): only `hub` can gather a majority. A correct cluster elects `hub` only
    /// if its log is as up to date as a majority's, and otherwise no one until the heal.
    fn stale_hub(&self, leader: &str, hub: &str) -> Fault {
        let nodes = self.nodes();
        let mut grudge = Grudge::new();
        for a in &nodes {
            let cut: Vec<String> = nodes
                .iter()
                .filter(|b| *b != a)
                .filter(|b| a == leader || *b == leader || (a != hub && *b != hub))
                .cloned()
                .collect();
            grudge.insert(a.clone(), cut);
        }
        Fault::Partition {
            shape: "stale-hub".to_string(),
            grudge,
        }
    }

    fn isolate(&self, node: &str) -> Fault {
        let mut grudge = Grudge::new();
        let others: Vec<String> = self.nodes().into_iter().filter(|n| n != node).collect();
        for o in &others {
            grudge.entry(o.clone()).or_default().push(node.to_string());
        }
        grudge.insert(node.to_string(), others);
        Fault::Partition {
            shape: "isolate".to_string(),
            grudge,
        }
    }

    /// Plays the scenario; its faults still in force are healed by the caller.
    async fn perform(&mut self) -> Stopped {
        match self.scenario {
            Scenario::IsolateLeader => {
                let (leader, who) = self.leader_or_any().await;
                let cut = self.isolate(&leader);
                self.start(cut, who).await;
                let d = self.schedule.seconds(0.5, 3.0);
                self.hold(d).await
            }
            Scenario::KillLeader => {
                let (leader, who) = self.leader_or_any().await;
                self.start(Fault::Kill(vec![leader]), who).await;
                let d = self.schedule.seconds(0.2, 2.0);
                self.hold(d).await
            }
            Scenario::PauseLeader => {
                let (leader, who) = self.leader_or_any().await;
                self.start(Fault::Pause(vec![leader]), who).await;
                let d = self.schedule.seconds(0.3, 3.0);
                self.hold(d).await
            }
            Scenario::KillNewLeader => {
                let old = self.leader().await;
                let (leader, who) = match &old {
                    Some(l) => (l.node.clone(), "the leader"),
                    None => self.leader_or_any().await,
                };
                self.start(Fault::Kill(vec![leader.clone()]), who).await;
                let successor = self
                    .await_new_leader(old.as_ref(), AWAIT_SUCCESSOR)
                    .await
                    .filter(|l| l.node != leader);
                if *self.stop.borrow() {
                    return true;
                }
                if let Some(next) = successor {
                    self.start(Fault::Kill(vec![next.node]), "the new leader, once elected")
                        .await;
                }
                let d = self.schedule.seconds(0.2, 1.5);
                self.hold(d).await
            }
            Scenario::LaggingElection => {
                let (leader, _) = self.leader_or_any().await;
                let Some(lagger) = self.other_than(std::slice::from_ref(&leader)) else {
                    return false;
                };
                let lag_by_partition = self.shape_allowed(PartitionKind::IsolateOne)
                    && (!(self.allowed(FaultKind::Kill) || self.allowed(FaultKind::LoseUnfsynced))
                        || self.schedule.rng().random_bool(0.7));
                let lag = if lag_by_partition {
                    self.isolate(&lagger)
                } else {
                    Fault::Kill(vec![lagger.clone()])
                };
                let lag_id = self.start(lag, "a follower, to make it lag").await;
                let d = self.schedule.seconds(1.0, 4.0);
                if self.hold(d).await {
                    return true;
                }
                // The leader may have changed meanwhile: depose whoever leads now, and let the
                // lagging node back in the same moment, so it is among the candidates.
                let leader = match self.leader().await {
                    Some(l) if l.node != lagger => l.node,
                    _ => leader,
                };
                let depose = if self.shape_allowed(PartitionKind::IsolateLeader) {
                    self.isolate(&leader)
                } else {
                    Fault::Kill(vec![leader])
                };
                self.start(depose, "the leader, as the lagging follower returns")
                    .await;
                self.heal(lag_id).await;
                let d = self.schedule.seconds(0.5, 2.0);
                self.hold(d).await
            }
            Scenario::HubElection => {
                // Under load some followers always lack the newest entries, which the leader
                // may already have acknowledged while its followers do not yet know them
                // committed. Cutting the leader off and letting only one follower reach a
                // majority makes that follower the next leader if (and only if) the cluster
                // ignores whether its log is up to date. With 3 nodes any two make a majority:
                // a plain isolation of the leader.
                let (leader, who) = self.leader_or_any().await;
                let fault = match self.other_than(std::slice::from_ref(&leader)) {
                    Some(hub) if self.nodes().len() >= 4 => self.stale_hub(&leader, &hub),
                    _ => self.isolate(&leader),
                };
                self.start(fault, who).await;
                let d = self.schedule.seconds(1.0, 3.0);
                self.hold(d).await
            }
            Scenario::PowerLoss => {
                let nodes = self.nodes();
                self.start(Fault::Kill(nodes), "every node").await;
                let d = self.schedule.seconds(0.2, 1.5);
                self.hold(d).await
            }
            Scenario::CrashMajority => {
                // The leader and enough followers that no quorum survives to carry on
                // without them.
                let nodes = self.nodes();
                let leader = self.leader().await.map(|l| l.node);
                let victims =
                    self.schedule
                        .choose_nodes(crate::Aim::Majority, &nodes, leader.clone());
                let victims = match leader.filter(|l| !victims.contains(l)) {
                    // choose_nodes aims a majority at random: swap one for the leader.
                    Some(l) => {
                        let mut v: Vec<String> = victims[1..].to_vec();
                        v.push(l);
                        v.sort_by_key(|x| nodes.iter().position(|n| n == x));
                        v
                    }
                    None => victims,
                };
                self.start(Fault::Kill(victims), "the leader and a majority with it")
                    .await;
                let d = self.schedule.seconds(0.2, 1.5);
                self.hold(d).await
            }
            Scenario::LeaderAndFollower => {
                let (leader, who) = self.leader_or_any().await;
                let cut = self.isolate(&leader);
                self.start(cut, who).await;
                if let Some(f) = self.other_than(std::slice::from_ref(&leader)) {
                    self.start(Fault::Kill(vec![f]), "a follower").await;
                }
                let d = self.schedule.seconds(0.5, 2.5);
                self.hold(d).await
            }
            Scenario::RestartDuringElection => {
                let (leader, who) = self.leader_or_any().await;
                let depose = if self.shape_allowed(PartitionKind::IsolateLeader)
                    && self.schedule.rng().random_bool(0.5)
                {
                    self.isolate(&leader)
                } else {
                    Fault::Kill(vec![leader.clone()])
                };
                self.start(depose, who).await;
                // Into the election: followers time out after an election timeout.
                let d = self.schedule.seconds(0.05, 0.4);
                if self.hold(d).await {
                    return true;
                }
                if let Some(f) = self.other_than(std::slice::from_ref(&leader)) {
                    let id = self
                        .start(Fault::Kill(vec![f]), "a follower, during the election")
                        .await;
                    let d = self.schedule.seconds(0.05, 0.4);
                    if self.hold(d).await {
                        return true;
                    }
                    self.heal(id).await;
                }
                let d = self.schedule.seconds(0.3, 1.5);
                self.hold(d).await
            }
            Scenario::Partition => {
                let shapes: Vec<PartitionKind> = self
                    .schedule
                    .partitions()
                    .iter()
                    .copied()
                    .filter(|s| *s != PartitionKind::IsolateLeader)
                    .collect();
                let Some(shape) = self.schedule.pick(&shapes) else {
                    return false;
                };
                let nodes = self.nodes();
                let leader = self.cluster().observed_leader().map(|l| l.node);
                let grudge =
                    partition::grudge(shape, &nodes, leader.as_deref(), self.schedule.rng());
                self.start(
                    Fault::Partition {
                        shape: shape.name().to_string(),
                        grudge,
                    },
                    "the network",
                )
                .await;
                let d = self.schedule.seconds(0.5, 3.0);
                self.hold(d).await
            }
            Scenario::ClockLeader => {
                let (leader, who) = self.leader_or_any().await;
                let modes = if self.config.clock_modes.is_empty() {
                    ClockMode::ALL.to_vec()
                } else {
                    self.config.clock_modes.clone()
                };
                let mode = self.schedule.pick(&modes).unwrap_or(ClockMode::Bump);
                let nodes = vec![leader];
                let offsets_ms = clock_offsets(self.schedule, self.config, &nodes);
                self.start(
                    Fault::Clock {
                        mode,
                        nodes,
                        offsets_ms,
                    },
                    who,
                )
                .await;
                let d = self.schedule.seconds(1.0, 3.0);
                self.hold(d).await
            }
            Scenario::PauseMinority => {
                let nodes = self.nodes();
                let victims = self
                    .schedule
                    .choose_nodes(crate::Aim::Minority, &nodes, None);
                self.start(Fault::Pause(victims), "a minority").await;
                let d = self.schedule.seconds(0.3, 2.0);
                self.hold(d).await
            }
            Scenario::Latency => {
                let fault = Fault::Latency {
                    latency: self.config.latency,
                    jitter: self.config.latency / 2,
                };
                self.start(fault, "every link").await;
                let d = self.schedule.seconds(1.0, 3.0);
                self.hold(d).await
            }
            Scenario::Loss => {
                self.start(Fault::Loss(self.config.loss), "every link")
                    .await;
                let d = self.schedule.seconds(1.0, 3.0);
                self.hold(d).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Aim, ClockReading, ScheduleKind};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    fn config(faults: &[FaultKind], partitions: &[PartitionKind]) -> NemesisConfig {
        NemesisConfig {
            schedule: ScheduleKind::Adaptive,
            faults: faults.to_vec(),
            aims: Aim::ALL.to_vec(),
            partitions: partitions.to_vec(),
            clock_modes: ClockMode::ALL.to_vec(),
            clock_skew: Duration::from_secs(1),
            latency: Duration::from_millis(50),
            loss: 0.1,
            interval: Duration::from_secs(1),
            min_quiet: Duration::ZERO,
            seed: 1,
            replay: Vec::new(),
            replay_aim: crate::replay::ReplayAim::Leader,
        }
    }

    fn names(menu: &[(Scenario, f64)]) -> Vec<&'static str> {
        menu.iter().map(|(s, _)| s.name()).collect()
    }

    #[test]
    fn the_menu_follows_the_configured_faults_and_shapes() {
        let all = menu(&config(
            &[
                FaultKind::Partition,
                FaultKind::Pause,
                FaultKind::Kill,
                FaultKind::Clock,
            ],
            PartitionKind::ALL,
        ));
        assert_eq!(
            names(&all),
            vec![
                "isolate-leader",
                "kill-leader",
                "pause-leader",
                "kill-new-leader",
                "lagging-election",
                "hub-election",
                "power-loss",
                "crash-majority",
                "leader-and-follower",
                "restart-during-election",
                "partition",
                "clock-leader",
                "pause-minority"
            ]
        );
        let kills = menu(&config(&[FaultKind::Kill], PartitionKind::ALL));
        assert_eq!(
            names(&kills),
            vec![
                "kill-leader",
                "kill-new-leader",
                "lagging-election",
                "power-loss",
                "crash-majority",
                "restart-during-election"
            ]
        );
        // Partitions restricted to halves: nothing that isolates one node.
        let halves = menu(&config(&[FaultKind::Partition], &[PartitionKind::Halves]));
        assert_eq!(names(&halves), vec!["partition"]);
        assert!(menu(&config(&[], PartitionKind::ALL)).is_empty());
    }

    #[test]
    fn draws_follow_the_seed_and_favour_the_leader() {
        let c = config(
            &[
                FaultKind::Partition,
                FaultKind::Pause,
                FaultKind::Kill,
                FaultKind::Clock,
            ],
            PartitionKind::ALL,
        );
        let m = menu(&c);
        let draws = |seed| {
            let mut s = Schedule::new(&NemesisConfig { seed, ..c.clone() });
            (0..400).map(|_| draw(&mut s, &m)).collect::<Vec<_>>()
        };
        assert_eq!(draws(5), draws(5));
        assert_ne!(draws(5), draws(6));
        let d = draws(5);
        let leader_aimed = d
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    Scenario::IsolateLeader
                        | Scenario::KillLeader
                        | Scenario::PauseLeader
                        | Scenario::KillNewLeader
                        | Scenario::LaggingElection
                        | Scenario::HubElection
                        | Scenario::LeaderAndFollower
                        | Scenario::RestartDuringElection
                        | Scenario::ClockLeader
                        | Scenario::PowerLoss
                        | Scenario::CrashMajority
                )
            })
            .count();
        // The leader-aimed scenarios carry 19 of the 21 units of weight.
        assert!(leader_aimed > 330, "{leader_aimed} of 400");
        for s in Scenario::ALL
            .iter()
            .filter(|s| m.iter().any(|(x, _)| x == *s))
        {
            assert!(d.contains(s), "{} never drawn", s.name());
        }
    }

    /// A cluster that elects its lowest-numbered reachable node whenever its leader is killed,
    /// paused or cut off from a majority; its nodes are real sleeping processes (the injector
    /// really signals them).
    struct Fake {
        names: Vec<String>,
        pgids: Vec<i32>,
        state: Mutex<FakeState>,
        /// Reports no roles (a custom target without a status request).
        silent: bool,
    }

    #[derive(Default)]
    struct FakeState {
        dead: BTreeSet<String>,
        paused: BTreeSet<String>,
        grudge: Grudge,
        clocks: BTreeMap<String, f64>,
        leader: Option<Leader>,
        term: u64,
    }

    impl Fake {
        fn new(n: usize) -> (Fake, Vec<std::process::Child>) {
            use std::os::unix::process::CommandExt as _;
            let children: Vec<std::process::Child> = (0..n)
                .map(|_| {
                    std::process::Command::new("sleep")
                        .arg("600")
                        .process_group(0)
                        .spawn()
                        .expect("start sleep")
                })
                .collect();
            let fake = Fake {
                names: (1..=n).map(|i| format!("n{i}")).collect(),
                pgids: children.iter().map(|c| c.id() as i32).collect(),
                state: Mutex::new(FakeState::default()),
                silent: false,
            };
            fake.elect();
            (fake, children)
        }

        fn usable(&self, s: &FakeState, node: &str) -> bool {
            let majority = self.names.len() / 2 + 1;
            let linked = |a: &str, b: &str| {
                let cut =
                    |x: &str, y: &str| s.grudge.get(x).is_some_and(|c| c.iter().any(|z| z == y));
                a == b || !(cut(a, b) || cut(b, a))
            };
            !s.dead.contains(node)
                && !s.paused.contains(node)
                && self
                    .names
                    .iter()
                    .filter(|o| !s.dead.contains(*o) && !s.paused.contains(*o) && linked(node, o))
                    .count()
                    >= majority
        }

        /// Re-elects if the leader can no longer lead.
        fn elect(&self) {
            let mut s = self.state.lock().unwrap();
            if s.leader.as_ref().is_some_and(|l| self.usable(&s, &l.node)) {
                return;
            }
            let next = self.names.iter().find(|n| self.usable(&s, n)).cloned();
            s.leader = next.map(|node| {
                s.term += 1;
                Leader {
                    node,
                    term: Some(s.term),
                }
            });
        }

        fn leader_now(&self) -> Option<Leader> {
            self.elect();
            let leader = self.state.lock().unwrap().leader.clone();
            leader.filter(|_| !self.silent)
        }
    }

    impl Cluster for Fake {
        fn nodes(&self) -> Vec<String> {
            self.names.clone()
        }
        async fn leader(&self) -> Option<String> {
            self.leader_now().map(|l| l.node)
        }
        fn observed_leader(&self) -> Option<Leader> {
            self.leader_now()
        }
        async fn await_new_leader(
            &self,
            old: Option<&Leader>,
            timeout: Duration,
        ) -> Option<Leader> {
            match self.leader_now() {
                Some(l) if old.is_none_or(|o| o.node != l.node || o.term < l.term) => Some(l),
                _ => {
                    tokio::time::sleep(timeout).await;
                    None
                }
            }
        }
        fn process_group(&self, node: &str) -> Option<i32> {
            let i = self.names.iter().position(|n| n == node)?;
            (!self.state.lock().unwrap().dead.contains(node)).then_some(self.pgids[i])
        }
        fn killed(&self, node: &str) {
            self.state.lock().unwrap().dead.insert(node.to_string());
        }
        async fn lose_unfsynced(&self, _node: &str) -> Result<String, String> {
            Ok(String::new())
        }
        async fn restart(&self, node: &str) -> Result<(), String> {
            let mut s = self.state.lock().unwrap();
            s.dead.remove(node);
            s.paused.remove(node);
            Ok(())
        }
        fn partition(&self, grudge: &Grudge) -> Result<(), String> {
            self.state.lock().unwrap().grudge = grudge.clone();
            Ok(())
        }
        async fn set_clock(
            &self,
            node: &str,
            offset_ms: f64,
            _: bool,
        ) -> Result<ClockReading, String> {
            self.state
                .lock()
                .unwrap()
                .clocks
                .insert(node.to_string(), offset_ms);
            Ok(ClockReading::default())
        }
        fn degrade(&self, _: Duration, _: Duration, _: f64) -> Result<(), String> {
            Ok(())
        }
    }

    /// Runs the schedule on `fake` for `seconds` of (virtual) time, then stops it and the
    /// fake's child processes; what it recorded.
    async fn run_for(
        fake: &Fake,
        config: &NemesisConfig,
        seconds: u64,
        children: &mut Vec<std::process::Child>,
    ) -> Vec<FaultRecord> {
        let (stop_tx, stop) = watch::channel(false);
        let record = |_: &str, _: Value| {};
        let stopper = async {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let _ = stop_tx.send(true);
        };
        let (records, ()) = tokio::join!(run(fake, config, Instant::now(), &record, stop), stopper);
        for mut c in children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        records
    }

    /// With `lose-unfsynced` allowed, the kill scenarios run and their kills become power losses
    /// (all of them when plain kills are not allowed, some of them when both are); every node
    /// that lost power is restarted by the end.
    #[tokio::test(start_paused = true)]
    async fn power_losses_take_the_place_of_kills() {
        let (fake, mut children) = Fake::new(5);
        let only = config(&[FaultKind::LoseUnfsynced], PartitionKind::ALL);
        assert_eq!(names(&menu(&only)).len(), 6, "{:?}", names(&menu(&only)));
        let records = run_for(&fake, &only, 300, &mut children).await;
        assert!(!records.is_empty());
        assert!(records.iter().all(|r| r.fault == FaultKind::LoseUnfsynced));
        assert!(fake.state.lock().unwrap().dead.is_empty());
        let both = config(
            &[FaultKind::Kill, FaultKind::LoseUnfsynced],
            PartitionKind::ALL,
        );
        let records = run_for(&fake, &both, 300, &mut children).await;
        let kinds: Vec<FaultKind> = records.iter().map(|r| r.fault).collect();
        assert!(
            kinds.contains(&FaultKind::Kill) && kinds.contains(&FaultKind::LoseUnfsynced),
            "{kinds:?}"
        );
    }

    /// Fifteen simulated minutes of the default schedule on a fake 5-node cluster: every fault is
    /// healed by the end, leader-aimed faults hit whoever led, `kill-new-leader` kills the
    /// successor, and the lagging follower is let back in only once the leader is cut off.
    #[tokio::test(start_paused = true)]
    async fn scenarios_aim_at_the_leader_and_heal_everything() {
        let (fake, mut children) = Fake::new(5);
        // Pauses are tracked by the fake through the records (the real signal goes to a
        // sleeping process).
        let config = config(
            &[
                FaultKind::Partition,
                FaultKind::Pause,
                FaultKind::Kill,
                FaultKind::Clock,
            ],
            PartitionKind::ALL,
        );
        let records = run_for(&fake, &config, 900, &mut children).await;
        let s = fake.state.lock().unwrap();
        assert!(s.dead.is_empty(), "still dead: {:?}", s.dead);
        assert!(
            s.grudge.values().all(Vec::is_empty),
            "still cut: {:?}",
            s.grudge
        );
        assert!(
            s.clocks.values().all(|&o| o == 0.0),
            "clocks: {:?}",
            s.clocks
        );
        drop(s);
        assert!(
            records.len() > 180,
            "{} faults in 15 minutes",
            records.len()
        );
        assert!(
            records
                .iter()
                .all(|r| r.end_ms.is_some() && r.errors.is_empty()),
            "{records:#?}"
        );
        let mut seen = BTreeSet::new();
        for (i, r) in records.iter().enumerate() {
            let scenario = r.scenario.clone().expect("a scenario");
            seen.insert(scenario.clone());
            if r.target.as_deref() == Some("the leader") {
                let leader = &r.leader_at_start.as_ref().expect("a leader").node;
                match r.fault {
                    FaultKind::Partition => {
                        let cut = r
                            .grudge
                            .as_ref()
                            .and_then(|g| g.get(leader))
                            .map_or(0, Vec::len);
                        assert_eq!(
                            cut, 4,
                            "{scenario}: the leader {leader} is not isolated: {r:?}"
                        );
                    }
                    _ => assert_eq!(&r.nodes, &vec![leader.clone()], "{scenario}: {r:?}"),
                }
            }
            if r.target.as_deref() == Some("the leader and a majority with it") {
                let leader = &r.leader_at_start.as_ref().expect("a leader").node;
                assert!(r.nodes.contains(leader) && r.nodes.len() == 3, "{r:?}");
            }
            if r.target.as_deref() == Some("every node") {
                assert_eq!(r.nodes.len(), 5, "{r:?}");
            }
            if r.target.as_deref() == Some("the new leader, once elected") {
                let first = &records[i - 1];
                assert_eq!(first.scenario_id, r.scenario_id);
                assert_ne!(first.nodes, r.nodes, "the successor is another node");
                assert_eq!(
                    r.leader_at_start.as_ref().map(|l| &l.node),
                    r.nodes.first(),
                    "the second kill hit the successor"
                );
            }
            if r.target.as_deref() == Some("a follower, to make it lag") {
                let Some(depose) = records
                    .get(i + 1)
                    .filter(|d| d.scenario_id == r.scenario_id)
                else {
                    continue; // the test ended during the lag
                };
                assert_eq!(depose.scenario_id, r.scenario_id);
                assert!(
                    r.end_ms >= Some(depose.start_ms),
                    "the lagging node came back before the leader was cut off"
                );
            }
        }
        for s in menu(&config) {
            assert!(
                seen.contains(s.0.name()),
                "{} never ran: {seen:?}",
                s.0.name()
            );
        }
    }

    /// A target that reports no roles is waited for once, not in every scenario: a simulated
    /// minute holds as many scenarios as with roles.
    #[tokio::test(start_paused = true)]
    async fn a_target_without_roles_is_not_waited_for_in_every_scenario() {
        let count = |silent: bool| async move {
            let (mut fake, mut children) = Fake::new(5);
            fake.silent = silent;
            let config = config(&[FaultKind::Kill, FaultKind::Pause], PartitionKind::ALL);
            let records = run_for(&fake, &config, 120, &mut children).await;
            records
                .iter()
                .filter_map(|r| r.scenario_id)
                .collect::<BTreeSet<_>>()
                .len()
        };
        let with_roles = count(false).await;
        let without = count(true).await;
        assert!(
            without * 10 >= with_roles * 8,
            "{without} scenarios without roles, {with_roles} with them"
        );
    }
}
