//! Starting and healing single faults. Both schedules ([`crate::uniform`], [`crate::adaptive`])
//! decide *what* to do; the [`Injector`] does it, records each fault's start and end in the
//! history (through the `record` callback) and keeps a [`FaultRecord`] of it for the results.
//!
//! Several faults may be in force at once (a scenario isolates the leader *and* kills a
//! follower). Process and clock faults on different nodes never interfere; partitions do,
//! because the network holds one grudge at a time: the injector keeps every partition in
//! force and applies their union, so healing one partition leaves the others as they were.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use nix::sys::signal::Signal;

use crate::{Aim, ClockMode, Cluster, FaultKind, Grudge, Leader, NemesisConfig};

/// A fault as it was applied, for the run's results. It holds everything needed to apply the
/// same fault again ([`crate::replay::PlannedFault`] is made from it), so a run's `faults` can
/// be replayed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRecord {
    pub id: u64,
    pub fault: FaultKind,
    /// What a uniform schedule's process or clock fault aimed at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aim: Option<Aim>,
    /// The partition shape, or the clock mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The nodes affected (for a partition: those that cannot hear someone).
    pub nodes: Vec<String>,
    /// A partition's grudge: for each node, the nodes it cannot hear from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grudge: Option<Grudge>,
    /// A clock fault's offset per node (the full skew; a drift reaches it at the heal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets_ms: Option<BTreeMap<String, f64>>,
    /// A latency fault's delay and jitter; a loss fault's fraction of messages dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The adaptive schedule's scenario this fault belongs to, and the scenario's number
    /// (faults of one scenario share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_id: Option<u64>,
    /// Whom the fault was meant for, in words (`the leader`, `the new leader`, `a lagging
    /// follower`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// In a replay: the id of the recorded fault this one repeats, and how its nodes were
    /// re-resolved (`n2 -> n4`: the source's leader n2 is swapped with today's leader n4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// The leader as observed when the fault started, and when it was healed.
    pub leader_at_start: Option<Leader>,
    pub leader_at_end: Option<Leader>,
    /// Milliseconds since the test started: when the schedule issued it (a clock fault takes
    /// up to a few seconds to be verified on its nodes), when it took effect, when its healing
    /// began, and when it was healed (a restarted node takes a while to come back).
    #[serde(default)]
    pub issued_ms: Option<f64>,
    pub start_ms: f64,
    pub heal_ms: Option<f64>,
    pub end_ms: Option<f64>,
    /// Problems applying or healing it (a node that could not be restarted, ...).
    pub errors: Vec<String>,
    /// A `lose-unfsynced` fault: what each node's disk lost ("1200 bytes of unsynced data in
    /// 1 files, 0 unsynced directory changes").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<BTreeMap<String, String>>,
}

/// A fault to start.
#[derive(Clone, Debug)]
pub enum Fault {
    /// SIGKILL these nodes; restart them when healed.
    Kill(Vec<String>),
    /// SIGSTOP these nodes; SIGCONT when healed.
    Pause(Vec<String>),
    /// SIGKILL these nodes and drop what their disks had not made durable; restart them when
    /// healed.
    LoseUnfsynced(Vec<String>),
    /// Apply this grudge (shape name for the record) on top of the partitions in force.
    Partition { shape: String, grudge: Grudge },
    /// Set these nodes' clocks (`offsets_ms` per node); reset when healed. Strobe and drift
    /// keep changing them while the fault is held.
    Clock {
        mode: ClockMode,
        nodes: Vec<String>,
        offsets_ms: Vec<f64>,
    },
    /// Delay every message between nodes (with jitter).
    Latency { latency: Duration, jitter: Duration },
    /// Drop this fraction of the messages between nodes.
    Loss(f64),
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill(_) => FaultKind::Kill,
            Fault::Pause(_) => FaultKind::Pause,
            Fault::LoseUnfsynced(_) => FaultKind::LoseUnfsynced,
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Clock { .. } => FaultKind::Clock,
            Fault::Latency { .. } => FaultKind::Latency,
            Fault::Loss(_) => FaultKind::Loss,
        }
    }
}

/// Where a fault comes from, for its record.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub aim: Option<Aim>,
    pub scenario: Option<(u64, String)>,
    pub target: Option<String>,
    /// A replayed fault: the recorded fault's id, and how its nodes were re-resolved.
    pub replay_of: Option<u64>,
    pub resolved: Option<String>,
}

/// A fault in force: its id and what healing it takes.
#[derive(Debug)]
pub struct Active {
    pub id: u64,
    record: usize,
    fault: Fault,
}

impl Active {
    pub fn fault_kind(&self) -> FaultKind {
        self.fault.kind()
    }

    /// How often a clock fault that keeps moving (strobe, drift) must be updated; `None` for
    /// every other fault.
    pub fn clock_step(&self) -> Option<Duration> {
        match &self.fault {
            Fault::Clock {
                mode: ClockMode::Strobe,
                ..
            } => Some(Duration::from_millis(250)),
            Fault::Clock {
                mode: ClockMode::Drift,
                ..
            } => Some(Duration::from_millis(100)),
            _ => None,
        }
    }
}

/// Applies faults to a cluster and records them.
pub struct Injector<'a, C: Cluster> {
    cluster: &'a C,
    test_start: Instant,
    record: &'a (dyn Fn(&str, Value) + Send + Sync),
    /// Partitions in force, by fault id; the network holds their union.
    grudges: BTreeMap<u64, Grudge>,
    applied: Vec<FaultRecord>,
    /// Whether a clock change is measured on its nodes before the step counts as done (up to
    /// libfaketime's cache period and more: seconds).
    verify_clocks: bool,
}

impl<'a, C: Cluster> Injector<'a, C> {
    pub fn new(
        cluster: &'a C,
        test_start: Instant,
        record: &'a (dyn Fn(&str, Value) + Send + Sync),
    ) -> Injector<'a, C> {
        Injector {
            cluster,
            test_start,
            record,
            grudges: BTreeMap::new(),
            applied: Vec::new(),
            verify_clocks: true,
        }
    }

    /// Stops measuring clock changes on their nodes: for a replay, whose later steps have
    /// deadlines that a measurement of several seconds would make them miss. The offsets are
    /// still written at once; the records then have no measured offsets.
    pub fn without_clock_verification(mut self) -> Self {
        self.verify_clocks = false;
        self
    }

    pub fn cluster(&self) -> &'a C {
        self.cluster
    }

    /// Every fault started so far, in order.
    pub fn into_records(self) -> Vec<FaultRecord> {
        self.applied
    }

    fn since_start(&self) -> f64 {
        self.test_start.elapsed().as_secs_f64() * 1e3
    }

    /// Starts `fault` and records it.
    pub async fn start(&mut self, fault: Fault, origin: Origin) -> Active {
        let issued_ms = self.since_start();
        let id = self.applied.len() as u64 + 1;
        let kind = fault.kind();
        let leader = self.cluster.observed_leader();
        let mut fr = FaultRecord {
            id,
            fault: kind,
            aim: origin.aim,
            kind: None,
            nodes: Vec::new(),
            grudge: None,
            offsets_ms: None,
            latency_ms: None,
            jitter_ms: None,
            loss: None,
            scenario: origin.scenario.as_ref().map(|(_, name)| name.clone()),
            scenario_id: origin.scenario.as_ref().map(|(n, _)| *n),
            target: origin.target.clone(),
            replay_of: origin.replay_of,
            resolved: origin.resolved.clone(),
            leader_at_start: leader.clone(),
            leader_at_end: None,
            issued_ms: Some(issued_ms),
            start_ms: 0.0,
            heal_ms: None,
            end_ms: None,
            errors: Vec::new(),
            lost: None,
        };
        let mut detail = json!({"id": id, "fault": kind.name()});
        match &fault {
            Fault::Kill(nodes) | Fault::Pause(nodes) | Fault::LoseUnfsynced(nodes) => {
                let mut lost = serde_json::Map::new();
                let mut hit = Vec::new();
                for node in nodes {
                    let Some(pgid) = self.cluster.process_group(node) else {
                        fr.errors.push(format!("{node} was not running"));
                        continue;
                    };
                    let result = if kind == FaultKind::Pause {
                        self.cluster.signal_group(node, pgid, Signal::SIGSTOP)
                    } else {
                        self.cluster.killed(node);
                        self.cluster.signal_group(node, pgid, Signal::SIGKILL)
                    };
                    match result {
                        Ok(()) => hit.push(node),
                        Err(e) => fr.errors.push(format!("{node}: {e}")),
                    }
                }
                if kind == FaultKind::LoseUnfsynced {
                    // Every node killed first (one power cut for all of them), then each disk
                    // loses what it had not synced, once its process is gone: a process still
                    // running could write again in between.
                    for node in hit {
                        match self.cluster.lose_unfsynced(node).await {
                            Ok(what) => {
                                lost.insert(node.clone(), json!(what));
                            }
                            Err(e) => fr.errors.push(format!("{node}: {e}")),
                        }
                    }
                }
                if !lost.is_empty() {
                    detail["lost"] = Value::Object(lost.clone());
                    fr.lost = Some(
                        lost.into_iter()
                            .map(|(k, v)| (k, v.as_str().unwrap_or("").to_string()))
                            .collect(),
                    );
                }
                detail["nodes"] = json!(nodes);
                fr.nodes = nodes.clone();
            }
            Fault::Partition { shape, grudge } => {
                self.grudges.insert(id, grudge.clone());
                if let Err(e) = self.cluster.partition(&self.union()) {
                    fr.errors.push(e);
                }
                detail["kind"] = json!(shape);
                detail["grudge"] = json!(grudge);
                fr.kind = Some(shape.clone());
                fr.grudge = Some(grudge.clone());
                fr.nodes = grudge
                    .iter()
                    .filter(|(_, cut)| !cut.is_empty())
                    .map(|(n, _)| n.clone())
                    .collect();
            }
            Fault::Clock {
                mode,
                nodes,
                offsets_ms,
            } => {
                // All nodes at once: verifying one takes up to libfaketime's cache period, and
                // the fault should hit its nodes together, not one after another.
                let results = join_all(nodes.iter().zip(offsets_ms).map(|(node, skew)| {
                    // A drift starts from zero; bump and strobe start at the full skew.
                    let first = if *mode == ClockMode::Drift {
                        0.0
                    } else {
                        *skew
                    };
                    self.cluster.set_clock(node, first, self.verify_clocks)
                }))
                .await;
                let mut offsets = BTreeMap::new();
                let mut measured = serde_json::Map::new();
                for ((node, skew), result) in nodes.iter().zip(offsets_ms).zip(results) {
                    match result {
                        Ok(r) => {
                            measured.insert(node.clone(), json!(r.measured_ms));
                        }
                        Err(e) => fr.errors.push(format!("{node}: {e}")),
                    }
                    offsets.insert(node.clone(), *skew);
                }
                detail["mode"] = json!(mode.name());
                detail["nodes"] = json!(nodes);
                detail["offsets_ms"] = json!(offsets);
                detail["measured_ms"] = json!(measured);
                fr.offsets_ms = Some(offsets);
                fr.kind = Some(mode.name().to_string());
                fr.nodes = nodes.clone();
            }
            Fault::Latency { .. } | Fault::Loss(_) => {
                let (latency, jitter, loss) = match &fault {
                    Fault::Latency { latency, jitter } => (*latency, *jitter, 0.0),
                    Fault::Loss(loss) => (Duration::ZERO, Duration::ZERO, *loss),
                    _ => (Duration::ZERO, Duration::ZERO, 0.0),
                };
                if let Err(e) = self.cluster.degrade(latency, jitter, loss) {
                    fr.errors.push(e);
                }
                detail["latency_ms"] = json!(latency.as_secs_f64() * 1e3);
                detail["jitter_ms"] = json!(jitter.as_secs_f64() * 1e3);
                detail["loss"] = json!(loss);
                fr.latency_ms = Some(latency.as_secs_f64() * 1e3);
                fr.jitter_ms = Some(jitter.as_secs_f64() * 1e3);
                fr.loss = Some(loss);
                fr.nodes = self.cluster.nodes();
            }
        }
        if let Some(aim) = origin.aim {
            detail["aim"] = json!(aim.name());
        }
        if let Some((n, name)) = &origin.scenario {
            detail["scenario"] = json!(name);
            detail["scenario_id"] = json!(n);
        }
        if let Some(source) = origin.replay_of {
            detail["replay_of"] = json!(source);
        }
        if let Some(r) = &origin.resolved {
            detail["resolved"] = json!(r);
        }
        if let Some(t) = &origin.target {
            detail["target"] = json!(t);
        }
        if let Some(l) = &leader {
            detail["leader"] = json!(l);
        }
        detail["errors"] = json!(fr.errors);
        fr.start_ms = self.since_start();
        (self.record)("start", detail);
        tracing::info!(id, fault = %kind, nodes = ?fr.nodes, scenario = ?fr.scenario, "fault started");
        self.applied.push(fr);
        Active {
            id,
            record: self.applied.len() - 1,
            fault,
        }
    }

    /// The union of every partition in force.
    fn union(&self) -> Grudge {
        let mut all = Grudge::new();
        for g in self.grudges.values() {
            for (node, cut) in g {
                let entry = all.entry(node.clone()).or_default();
                for c in cut {
                    if !entry.contains(c) {
                        entry.push(c.clone());
                    }
                }
            }
        }
        all
    }

    /// Keeps `active` in force for `d` (strobing or drifting a clock meanwhile); returns
    /// whether the schedule was told to stop.
    pub async fn hold(
        &self,
        active: &Active,
        d: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let Some(step) = active.clock_step() else {
            return wait(d, stop).await;
        };
        // Tokio's clock, like `wait`'s, so the hold ends after `d` also under paused time.
        let started = tokio::time::Instant::now();
        loop {
            if wait(step.min(d.saturating_sub(started.elapsed())), stop).await {
                return true;
            }
            if started.elapsed() >= d {
                return false;
            }
            self.clock_tick(active, started.elapsed(), d).await;
        }
    }

    /// Moves a strobing or drifting clock fault to where it should be after `held` of its
    /// `d`: a strobe alternates between its offset and none every 250 ms, a drift grows
    /// linearly to its offset at `d`. Other faults are left alone.
    pub async fn clock_tick(&self, active: &Active, held: Duration, d: Duration) {
        let Fault::Clock {
            mode,
            nodes,
            offsets_ms,
        } = &active.fault
        else {
            return;
        };
        let Some(step) = active.clock_step() else {
            return;
        };
        let off = (held.as_nanos() / step.as_nanos().max(1)) % 2 == 1;
        let progress = (held.as_secs_f64() / d.as_secs_f64().max(1e-9)).min(1.0);
        for (node, skew) in nodes.iter().zip(offsets_ms) {
            let offset = match mode {
                ClockMode::Strobe if off => 0.0,
                ClockMode::Drift => skew * progress,
                _ => *skew,
            };
            // Best effort while strobing: a failure is reported when the fault heals.
            let _ = self.cluster.set_clock(node, offset, false).await;
        }
    }

    /// Ends `active` and records its end.
    pub async fn heal(&mut self, active: Active) {
        let heal_ms = self.since_start();
        let mut errors = Vec::new();
        let mut end = json!({"id": active.id, "fault": active.fault.kind().name()});
        match &active.fault {
            // Which fault it was decides the cure, not whether the process still shows as
            // running: a node killed an instant before the heal may not be reaped yet, and
            // resuming it instead of restarting it would leave it dead for the rest of the test.
            Fault::Kill(nodes) | Fault::Pause(nodes) | Fault::LoseUnfsynced(nodes) => {
                let killed = !matches!(active.fault, Fault::Pause(_));
                for node in nodes {
                    let result = match (killed, self.cluster.process_group(node)) {
                        (false, Some(pgid)) => {
                            self.cluster.signal_group(node, pgid, Signal::SIGCONT)
                        }
                        // A paused node that is gone (it crashed meanwhile) is restarted too.
                        _ => self.cluster.restart(node).await,
                    };
                    if let Err(e) = result {
                        tracing::warn!(node, error = %e, "could not heal a fault");
                        errors.push(format!("{node}: {e}"));
                    }
                }
            }
            Fault::Partition { .. } => {
                self.grudges.remove(&active.id);
                if let Err(e) = self.cluster.partition(&self.union()) {
                    errors.push(e);
                }
            }
            Fault::Clock { nodes, .. } => {
                let mut measured = serde_json::Map::new();
                let results = join_all(
                    nodes
                        .iter()
                        .map(|node| self.cluster.set_clock(node, 0.0, self.verify_clocks)),
                )
                .await;
                for (node, result) in nodes.iter().zip(results) {
                    match result {
                        Ok(r) => {
                            measured.insert(node.clone(), json!(r.measured_ms));
                        }
                        Err(e) => errors.push(format!("{node}: {e}")),
                    }
                }
                end["measured_ms"] = Value::Object(measured);
            }
            Fault::Latency { .. } | Fault::Loss(_) => {
                if let Err(e) = self.cluster.degrade(Duration::ZERO, Duration::ZERO, 0.0) {
                    errors.push(e);
                }
            }
        }
        let leader = self.cluster.observed_leader();
        if let Some(l) = &leader {
            end["leader"] = json!(l);
        }
        let end_ms = self.since_start();
        let fr = &mut self.applied[active.record];
        fr.errors.extend(errors);
        fr.heal_ms = Some(heal_ms);
        fr.end_ms = Some(end_ms);
        fr.leader_at_end = leader;
        end["errors"] = json!(fr.errors);
        (self.record)("stop", end);
        tracing::info!(id = active.id, fault = %fr.fault, "fault healed");
    }

    /// Heals every fault in `active`, the most recent first.
    pub async fn heal_all(&mut self, active: &mut Vec<Active>) {
        while let Some(a) = active.pop() {
            self.heal(a).await;
        }
    }
}

/// Sleeps for `d`, or until `stop` turns true; returns whether it was told to stop.
pub async fn wait(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// The clock offsets of a clock fault on `nodes`: each between a quarter of the configured
/// skew and all of it, either way.
pub fn clock_offsets(
    schedule: &mut crate::Schedule,
    config: &NemesisConfig,
    nodes: &[String],
) -> Vec<f64> {
    nodes.iter().map(|_| schedule.skew_ms(config)).collect()
}
