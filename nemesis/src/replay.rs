//! Replaying a recorded schedule: the faults of an earlier run, started and healed at the same
//! offsets from the start of the test, on the same nodes (or on the nodes that play the same
//! part today, see [`ReplayAim`]).
//!
//! A run's `results.json` lists every fault it applied ([`FaultRecord`]); each becomes a
//! [`PlannedFault`], which is also what a `[[faults]]` table of a test file holds, so a replay
//! (and a schedule that `faultline shrink` cut down) is an ordinary test definition.
//!
//! Timing: every start and heal has an absolute deadline (seconds since time zero), so a slow
//! step — a clock fault is verified on its nodes, which takes up to a few seconds; a killed node
//! is reaped before it restarts — delays only the steps that fell due meanwhile, never the
//! rest of the schedule. Each replayed fault records when it was issued (`issued_ms`), so how
//! late it came is visible next to the source's `at`. Clock changes are written at once and not
//! measured on their nodes (a measurement waits for libfaketime's cache, up to seconds, which
//! made the next fault of a replay 0.6 s late): a replay's clock records carry no measured
//! offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::inject::{wait, Active, Fault, FaultRecord, Injector, Origin};
use crate::{ClockMode, Cluster, FaultKind, Grudge, NemesisConfig};

/// How a replayed fault chooses its nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayAim {
    /// The default. Who leads is decided by randomized election timers that no seed fixes, so
    /// at the same offset the leader is usually another node than in the recorded run, and
    /// "kill n2" would now hit a follower. Each fault recorded the leader when it started; if
    /// another node leads when it is replayed, the two names are swapped in the fault (its
    /// nodes, grudge and clock offsets). The fault then does to today's leader what it did to
    /// the leader then — which is what exposes leader bugs — and followers stay followers.
    #[default]
    Leader,
    /// Exactly the recorded node names, whoever leads now (for bugs tied to a node's data or
    /// position rather than to its role).
    Literal,
}

impl ReplayAim {
    pub fn name(self) -> &'static str {
        match self {
            ReplayAim::Leader => "leader",
            ReplayAim::Literal => "literal",
        }
    }
}

impl std::str::FromStr for ReplayAim {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "leader" => Ok(ReplayAim::Leader),
            "literal" => Ok(ReplayAim::Literal),
            other => Err(format!("expected leader or literal, got {other:?}")),
        }
    }
}

/// One fault of a schedule to replay: what to do, to whom, and when. Times are seconds since
/// time zero (the moment the cluster was ready and the clients started).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedFault {
    /// When the fault is started.
    pub at: f64,
    /// When its healing begins (absent: held to the end of the test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal: Option<f64>,
    pub fault: FaultKind,
    /// A partition's shape, or a clock fault's mode (`bump`, `strobe`, `drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The nodes killed, paused or whose clock is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// A partition: for each node, the nodes it cannot hear from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grudge: Option<Grudge>,
    /// A clock fault: each node's offset in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets_ms: Option<BTreeMap<String, f64>>,
    /// A latency fault's delay and jitter; a loss fault's fraction of messages dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The leader when the fault started in the recorded run (re-resolution swaps it with the
    /// leader of the moment, see [`ReplayAim::Leader`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Where it came from: the recorded fault's id, scenario and target (for the reader, and
    /// to group a scenario's faults when shrinking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl PlannedFault {
    /// The fault a record describes, to be applied again at the time it was issued. Records
    /// written before faultline kept clock offsets and network settings cannot be replayed.
    pub fn from_record(r: &FaultRecord) -> Result<PlannedFault, String> {
        let at = r.issued_ms.unwrap_or(r.start_ms) / 1e3;
        let planned = PlannedFault {
            at: round_us(at),
            heal: r.heal_ms.map(|h| round_us(h / 1e3)),
            fault: r.fault,
            kind: r.kind.clone(),
            nodes: match r.fault {
                // A partition's nodes are derived from its grudge; a network fault's are
                // every node.
                FaultKind::Partition | FaultKind::Latency | FaultKind::Loss => Vec::new(),
                _ => r.nodes.clone(),
            },
            grudge: r.grudge.clone(),
            offsets_ms: r.offsets_ms.clone(),
            latency_ms: r.latency_ms,
            jitter_ms: r.jitter_ms,
            loss: r.loss,
            leader: r.leader_at_start.as_ref().map(|l| l.node.clone()),
            source_id: Some(r.replay_of.unwrap_or(r.id)),
            scenario: r.scenario.clone(),
            scenario_id: r.scenario_id,
            target: r.target.clone(),
        };
        planned
            .fault_on(&[])
            .map_err(|e| format!("fault {}: {e}", r.id))?;
        Ok(planned)
    }

    /// Checks the fault against the cluster's node names; errors say what is wrong.
    pub fn validate(&self, nodes: &[String]) -> Result<(), String> {
        if !self.at.is_finite() || !(0.0..=MAX_SECONDS).contains(&self.at) {
            return Err(format!(
                "at: must be seconds from 0 to {MAX_SECONDS} (a week), got {}",
                self.at
            ));
        }
        if let Some(h) = self.heal {
            if !h.is_finite() || h < self.at || h > MAX_SECONDS {
                return Err(format!(
                    "heal: must be a time in seconds no earlier than at ({}) and at most \
                     {MAX_SECONDS}, got {h}",
                    self.at
                ));
            }
        }
        if let Some(k) = &self.kind {
            let ok = !k.is_empty()
                && k.len() <= 40
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(format!(
                    "kind: a name of letters, digits, '-', '_' and '.' (at most 40), got {k:?}"
                ));
            }
        }
        self.fault_on(nodes).map(|_| ())
    }

    /// The fault to start. `nodes` (the cluster's node names, in order) is checked against
    /// every name the fault mentions; empty skips that check.
    pub fn fault_on(&self, nodes: &[String]) -> Result<Fault, String> {
        let known = |n: &String| -> Result<(), String> {
            if nodes.is_empty() || nodes.contains(n) {
                Ok(())
            } else {
                Err(format!(
                    "names node {n:?}, but the cluster's nodes are {}",
                    nodes.join(", ")
                ))
            }
        };
        let need_nodes = || -> Result<Vec<String>, String> {
            if self.nodes.is_empty() {
                return Err(format!("a {} fault needs nodes", self.fault.name()));
            }
            for n in &self.nodes {
                known(n)?;
            }
            Ok(self.nodes.clone())
        };
        match self.fault {
            FaultKind::Kill => Ok(Fault::Kill(need_nodes()?)),
            FaultKind::Pause => Ok(Fault::Pause(need_nodes()?)),
            FaultKind::LoseUnfsynced => Ok(Fault::LoseUnfsynced(need_nodes()?)),
            FaultKind::Partition => {
                let grudge = self
                    .grudge
                    .clone()
                    .ok_or("a partition needs a grudge (for each node, whom it cannot hear)")?;
                for (n, cut) in &grudge {
                    known(n)?;
                    for c in cut {
                        known(c)?;
                    }
                }
                Ok(Fault::Partition {
                    shape: self.kind.clone().unwrap_or_else(|| "custom".to_string()),
                    grudge,
                })
            }
            FaultKind::Clock => {
                let mode: ClockMode = self
                    .kind
                    .as_deref()
                    .ok_or("a clock fault needs its mode as kind (bump, strobe or drift)")?
                    .parse()?;
                let offsets = self.offsets_ms.as_ref().ok_or(
                    "a clock fault needs offsets_ms (each node's offset in milliseconds); runs \
                     recorded before faultline kept them cannot be replayed",
                )?;
                let nodes = need_nodes()?;
                let mut values = Vec::new();
                for n in &nodes {
                    let v = offsets
                        .get(n)
                        .ok_or_else(|| format!("offsets_ms has no offset for {n}"))?;
                    if !v.is_finite() || v.abs() > 3_600_000.0 {
                        return Err(format!("offsets_ms: {n}: {v} is not a usable offset"));
                    }
                    values.push(*v);
                }
                Ok(Fault::Clock {
                    mode,
                    nodes,
                    offsets_ms: values,
                })
            }
            FaultKind::Latency => {
                let ms = |v: Option<f64>, key: &str| -> Result<Duration, String> {
                    match v {
                        Some(v) if v.is_finite() && (0.0..=3_600_000.0).contains(&v) => {
                            Ok(Duration::from_secs_f64(v / 1e3))
                        }
                        Some(v) => Err(format!("{key}: {v} is not a number of milliseconds")),
                        None => Err(format!("a latency fault needs {key}")),
                    }
                };
                Ok(Fault::Latency {
                    latency: ms(self.latency_ms, "latency_ms")?,
                    jitter: ms(self.jitter_ms.or(Some(0.0)), "jitter_ms")?,
                })
            }
            FaultKind::Loss => match self.loss {
                Some(l) if (0.0..=1.0).contains(&l) => Ok(Fault::Loss(l)),
                Some(l) => Err(format!("loss: must be a fraction from 0 to 1, got {l}")),
                None => Err("a loss fault needs loss (the fraction of messages dropped)".into()),
            },
        }
    }

    /// The nodes a reader should see named: a partition's isolated side, or the nodes hit.
    pub fn victims(&self) -> Vec<String> {
        match (&self.fault, &self.grudge) {
            (FaultKind::Partition, Some(g)) => {
                // The nodes cut off from the most others: for an isolation, the one node.
                let most = g.values().map(Vec::len).max().unwrap_or(0);
                g.iter()
                    .filter(|(_, cut)| cut.len() == most && most > 0)
                    .map(|(n, _)| n.clone())
                    .collect()
            }
            (FaultKind::Latency | FaultKind::Loss, _) => Vec::new(),
            _ => self.nodes.clone(),
        }
    }

    /// In words, for a shrink's summary: "isolate n3 (leader) at 1.2 s for 0.8 s".
    pub fn describe(&self) -> String {
        let who = self.victims();
        let mut names: Vec<String> = who
            .iter()
            .map(|n| {
                if self.leader.as_ref() == Some(n) {
                    format!("{n} (leader)")
                } else {
                    n.clone()
                }
            })
            .collect();
        if names.is_empty() {
            names.push("every link".to_string());
        }
        let what = match (self.fault, self.kind.as_deref()) {
            (FaultKind::Partition, Some("isolate")) => "isolate".to_string(),
            (FaultKind::Partition, Some(shape)) => format!("partition ({shape}) cutting off"),
            (FaultKind::Clock, Some(mode)) => format!("clock {mode} on"),
            (FaultKind::Latency, _) => {
                format!("delay messages by {} ms on", self.latency_ms.unwrap_or(0.0))
            }
            (FaultKind::Loss, _) => format!(
                "drop {:.0}% of messages on",
                self.loss.unwrap_or(0.0) * 100.0
            ),
            (k, _) => k.name().to_string(),
        };
        let length = match self.heal {
            Some(h) => format!(" for {:.1} s", h - self.at),
            None => String::new(),
        };
        format!("{what} {} at {:.1} s{length}", names.join(", "), self.at)
    }

    /// The same fault with `a` and `b` swapped wherever they appear.
    fn swapped(&self, a: &str, b: &str) -> PlannedFault {
        let swap = |n: &String| -> String {
            if n == a {
                b.to_string()
            } else if n == b {
                a.to_string()
            } else {
                n.clone()
            }
        };
        let mut out = self.clone();
        out.nodes = self.nodes.iter().map(swap).collect();
        out.grudge = self.grudge.as_ref().map(|g| {
            g.iter()
                .map(|(n, cut)| (swap(n), cut.iter().map(swap).collect()))
                .collect()
        });
        out.offsets_ms = self
            .offsets_ms
            .as_ref()
            .map(|o| o.iter().map(|(n, v)| (swap(n), *v)).collect());
        out
    }
}

/// Times in a schedule are kept to the microsecond: finer than any step takes, coarse enough
/// to read.
fn round_us(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

/// The latest time a schedule may name (a week, as for every duration of a test).
pub const MAX_SECONDS: f64 = 604_800.0;

/// One step of the replay: fault `i` starts, or fault `i` heals.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Heal(usize),
    Start(usize),
}

/// The steps in time order. At equal times starts come before heals, in their listed order:
/// a fault held for no time starts and then heals, and a scenario that starts one fault and
/// heals another in the same moment (the lagging election lets the lagging node back as it
/// cuts off the leader) never leaves a gap with neither in force.
fn timeline(plan: &[PlannedFault]) -> Vec<(f64, Step)> {
    let mut steps = Vec::new();
    for (i, f) in plan.iter().enumerate() {
        steps.push((f.at, Step::Start(i)));
        if let Some(h) = f.heal {
            steps.push((h, Step::Heal(i)));
        }
    }
    steps.sort_by(|(ta, a), (tb, b)| {
        ta.total_cmp(tb).then_with(|| match (a, b) {
            (Step::Start(_), Step::Heal(_)) => std::cmp::Ordering::Less,
            (Step::Heal(_), Step::Start(_)) => std::cmp::Ordering::Greater,
            _ => std::cmp::Ordering::Equal,
        })
    });
    steps
}

/// A fault in force: when it started, and how long it is to be held.
struct Held {
    active: Active,
    began: tokio::time::Instant,
    held: Duration,
}

/// Plays `config.replay` until its last step, then holds what is still in force until `stop`
/// turns true, and heals it.
pub async fn run<C: Cluster>(
    cluster: &C,
    config: &NemesisConfig,
    test_start: Instant,
    record: &(dyn Fn(&str, Value) + Send + Sync),
    mut stop: watch::Receiver<bool>,
) -> Vec<FaultRecord> {
    let mut injector = Injector::new(cluster, test_start, record).without_clock_verification();
    let plan = &config.replay;
    let nodes = cluster.nodes();
    let mut active: BTreeMap<usize, Held> = BTreeMap::new();
    // Tokio's clock: the deadlines are since time zero, converted once.
    let zero = tokio::time::Instant::now()
        .checked_sub(test_start.elapsed())
        .unwrap_or_else(tokio::time::Instant::now);
    let deadline = |seconds: f64| {
        Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|d| zero.checked_add(d))
    };
    for (at, step) in timeline(plan) {
        // Times are validated to at most a week; one the clock cannot hold waits for the stop.
        let due = deadline(at);
        if hold_until(&injector, &active, due, &mut stop).await || due.is_none() {
            break;
        }
        match step {
            Step::Start(i) => {
                let (planned, resolved) = resolve(&plan[i], config.replay_aim, cluster);
                let fault = match planned.fault_on(&nodes) {
                    Ok(f) => f,
                    Err(e) => {
                        // Validated before the test started; kept as a warning, not a panic.
                        tracing::warn!(fault = i + 1, error = %e, "cannot replay a fault");
                        continue;
                    }
                };
                let origin = Origin {
                    aim: None,
                    scenario: planned
                        .scenario
                        .clone()
                        .map(|s| (planned.scenario_id.unwrap_or(0), s)),
                    target: planned.target.clone(),
                    replay_of: planned.source_id,
                    resolved,
                };
                let a = injector.start(fault, origin).await;
                let began = tokio::time::Instant::now();
                // A moving clock reaches its full offset at the heal, even when it started late.
                let held = planned
                    .heal
                    .and_then(deadline)
                    .map(|h| h.saturating_duration_since(began))
                    .unwrap_or(Duration::from_secs(60));
                active.insert(
                    i,
                    Held {
                        active: a,
                        began,
                        held,
                    },
                );
            }
            Step::Heal(i) => {
                if let Some(h) = active.remove(&i) {
                    injector.heal(h.active).await;
                }
            }
        }
    }
    hold_until(&injector, &active, None, &mut stop).await;
    let mut rest: Vec<Active> = active.into_values().map(|h| h.active).collect();
    injector.heal_all(&mut rest).await;
    injector.into_records()
}

/// Waits until `due` (with `None`: until told to stop), keeping the strobing and drifting
/// clocks in force moving. Returns whether it was told to stop.
async fn hold_until<C: Cluster>(
    injector: &Injector<'_, C>,
    active: &BTreeMap<usize, Held>,
    due: Option<tokio::time::Instant>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let now = tokio::time::Instant::now();
        let left = match due {
            Some(d) if d <= now => return *stop.borrow(),
            Some(d) => d - now,
            None => Duration::from_secs(3600),
        };
        let step = active
            .values()
            .filter_map(|h| h.active.clock_step())
            .min()
            .unwrap_or(left);
        if wait(step.min(left), stop).await {
            return true;
        }
        for h in active.values() {
            if h.active.clock_step().is_some() {
                injector
                    .clock_tick(&h.active, h.began.elapsed(), h.held)
                    .await;
            }
        }
    }
}

/// The fault as it is to be applied now: with [`ReplayAim::Leader`], the recorded leader and
/// the leader observed now swap places. Also says what was swapped, for the record.
fn resolve<C: Cluster>(
    planned: &PlannedFault,
    aim: ReplayAim,
    cluster: &C,
) -> (PlannedFault, Option<String>) {
    if aim == ReplayAim::Literal {
        return (planned.clone(), None);
    }
    let (Some(then), Some(now)) = (planned.leader.as_ref(), cluster.observed_leader()) else {
        return (planned.clone(), None);
    };
    if *then == now.node || !cluster.nodes().contains(then) {
        return (planned.clone(), None);
    }
    let swapped = planned.swapped(then, &now.node);
    if swapped == *planned {
        // The fault touches neither: it hits the same followers either way.
        return (swapped, None);
    }
    let note = format!("{then} -> {}: the leader then, the leader now", now.node);
    (swapped, Some(note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(at: f64, heal: f64, node: &str, leader: &str) -> PlannedFault {
        PlannedFault {
            at,
            heal: Some(heal),
            fault: FaultKind::Kill,
            kind: None,
            nodes: vec![node.to_string()],
            grudge: None,
            offsets_ms: None,
            latency_ms: None,
            jitter_ms: None,
            loss: None,
            leader: Some(leader.to_string()),
            source_id: None,
            scenario: None,
            scenario_id: None,
            target: None,
        }
    }

    #[test]
    fn starts_come_before_heals_at_the_same_instant_and_steps_are_in_time_order() {
        let plan = vec![kill(2.0, 3.0, "n1", "n1"), kill(1.0, 2.0, "n2", "n1")];
        let steps: Vec<Step> = timeline(&plan).into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            steps,
            vec![Step::Start(1), Step::Start(0), Step::Heal(1), Step::Heal(0)]
        );
    }

    #[test]
    fn swapping_the_leader_moves_nodes_grudges_and_offsets() {
        let mut p = kill(1.0, 2.0, "n2", "n2");
        p.fault = FaultKind::Partition;
        p.kind = Some("isolate".into());
        p.nodes.clear();
        p.grudge = Some(Grudge::from([
            ("n1".to_string(), vec!["n2".to_string()]),
            ("n2".to_string(), vec!["n1".to_string(), "n3".to_string()]),
            ("n3".to_string(), vec!["n2".to_string()]),
        ]));
        let s = p.swapped("n2", "n3");
        let g = s.grudge.as_ref().unwrap();
        assert_eq!(g["n3"], vec!["n1".to_string(), "n2".to_string()]);
        assert_eq!(g["n1"], vec!["n3".to_string()]);
        assert_eq!(s.victims(), vec!["n3".to_string()]);
        assert_eq!(p.describe(), "isolate n2 (leader) at 1.0 s for 1.0 s");
        let mut c = kill(0.5, 1.0, "n1", "n1");
        c.fault = FaultKind::Clock;
        c.kind = Some("bump".into());
        c.offsets_ms = Some(BTreeMap::from([("n1".to_string(), -300.0)]));
        let s = c.swapped("n1", "n2");
        assert_eq!(s.nodes, vec!["n2".to_string()]);
        assert_eq!(s.offsets_ms.unwrap()["n2"], -300.0);
    }

    #[test]
    fn bad_planned_faults_are_refused_with_the_reason() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        let mut p = kill(1.0, 0.5, "n1", "n1");
        assert!(p.validate(&nodes).unwrap_err().contains("heal"));
        p.heal = Some(2.0);
        p.nodes = vec!["n7".into()];
        assert!(p.validate(&nodes).unwrap_err().contains("\"n7\""));
        p.nodes.clear();
        assert!(p.validate(&nodes).unwrap_err().contains("needs nodes"));
        p.fault = FaultKind::Clock;
        p.nodes = vec!["n1".into()];
        p.kind = Some("bump".into());
        assert!(p.validate(&nodes).unwrap_err().contains("offsets_ms"));
        p.fault = FaultKind::Loss;
        p.loss = Some(1.5);
        assert!(p.validate(&nodes).unwrap_err().contains("fraction"));
    }

    /// A cluster whose leader is whatever the test says, recording what is done to it.
    struct Scripted {
        leader: Option<String>,
        done: std::sync::Mutex<Vec<String>>,
    }

    impl Cluster for Scripted {
        fn nodes(&self) -> Vec<String> {
            vec!["n1".into(), "n2".into(), "n3".into()]
        }
        async fn leader(&self) -> Option<String> {
            self.leader.clone()
        }
        fn observed_leader(&self) -> Option<crate::Leader> {
            self.leader.clone().map(|node| crate::Leader {
                node,
                term: Some(2),
            })
        }
        async fn await_new_leader(
            &self,
            _: Option<&crate::Leader>,
            _: Duration,
        ) -> Option<crate::Leader> {
            None
        }
        fn process_group(&self, _: &str) -> Option<i32> {
            // No such process group: the kill fails (recorded as an error), harmlessly.
            Some(i32::MAX - 7)
        }
        fn killed(&self, node: &str) {
            self.done.lock().unwrap().push(format!("kill {node}"));
        }
        async fn lose_unfsynced(&self, node: &str) -> Result<String, String> {
            self.done
                .lock()
                .unwrap()
                .push(format!("lose-unfsynced {node}"));
            Ok(String::new())
        }
        async fn restart(&self, node: &str) -> Result<(), String> {
            self.done.lock().unwrap().push(format!("restart {node}"));
            Ok(())
        }
        fn partition(&self, grudge: &Grudge) -> Result<(), String> {
            let cut: Vec<String> = grudge
                .iter()
                .filter(|(_, c)| c.len() == 2)
                .map(|(n, _)| n.clone())
                .collect();
            self.done
                .lock()
                .unwrap()
                .push(format!("isolate {}", cut.join(",")));
            Ok(())
        }
        async fn set_clock(
            &self,
            n: &str,
            ms: f64,
            _: bool,
        ) -> Result<crate::ClockReading, String> {
            self.done.lock().unwrap().push(format!("clock {n} {ms}"));
            Ok(crate::ClockReading::default())
        }
        fn degrade(&self, _: Duration, _: Duration, _: f64) -> Result<(), String> {
            Ok(())
        }
    }

    fn config(plan: Vec<PlannedFault>, aim: ReplayAim) -> NemesisConfig {
        NemesisConfig {
            schedule: crate::ScheduleKind::Replay,
            faults: vec![FaultKind::Kill, FaultKind::Partition],
            aims: Vec::new(),
            partitions: Vec::new(),
            clock_modes: Vec::new(),
            clock_skew: Duration::from_secs(1),
            latency: Duration::ZERO,
            loss: 0.0,
            interval: Duration::from_secs(1),
            min_quiet: Duration::ZERO,
            seed: 1,
            replay: plan,
            replay_aim: aim,
        }
    }

    fn isolate(at: f64, heal: f64, node: &str, leader: &str) -> PlannedFault {
        let nodes = ["n1", "n2", "n3"];
        let mut grudge = Grudge::new();
        for n in nodes {
            let cut: Vec<String> = if n == node {
                nodes
                    .iter()
                    .filter(|o| **o != node)
                    .map(|o| o.to_string())
                    .collect()
            } else {
                vec![node.to_string()]
            };
            grudge.insert(n.to_string(), cut);
        }
        PlannedFault {
            fault: FaultKind::Partition,
            kind: Some("isolate".into()),
            nodes: Vec::new(),
            grudge: Some(grudge),
            ..kill(at, heal, node, leader)
        }
    }

    /// Replays two faults recorded when n1 led, on a cluster led by n3; returns what was done,
    /// and the records.
    async fn replay(aim: ReplayAim) -> (Vec<String>, Vec<FaultRecord>) {
        let plan = vec![
            isolate(0.10, 0.30, "n1", "n1"),
            kill(0.20, 0.25, "n2", "n1"),
        ];
        let cluster = Scripted {
            leader: Some("n3".into()),
            done: std::sync::Mutex::new(Vec::new()),
        };
        let record = |_: &str, _: Value| {};
        let (tx, rx) = watch::channel(false);
        let config = config(plan, aim);
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = tx.send(true);
        };
        let (records, ()) =
            tokio::join!(run(&cluster, &config, Instant::now(), &record, rx), stopper);
        let done = cluster.done.lock().unwrap().clone();
        (done, records)
    }

    #[tokio::test]
    async fn faults_are_replayed_at_their_offsets_on_the_nodes_that_play_the_same_part() {
        let (done, records) = replay(ReplayAim::Leader).await;
        // n1 led when the faults were recorded; n3 leads now: the isolation moves to n3, the
        // kill of a follower (n2) stays on n2.
        assert_eq!(
            done,
            vec!["isolate n3", "kill n2", "restart n2", "isolate "],
            "{records:?}"
        );
        assert_eq!(records.len(), 2);
        for (r, at) in records.iter().zip([100.0, 200.0]) {
            let issued = r.issued_ms.unwrap();
            // Never early; late by at most a scheduling hiccup.
            assert!(issued >= at && issued < at + 250.0, "{r:?}");
            assert_eq!(r.replay_of, None, "the plan had no source ids");
        }
        assert!(records[0]
            .resolved
            .as_deref()
            .unwrap()
            .starts_with("n1 -> n3"));
        assert_eq!(
            records[1].resolved, None,
            "n2 is neither leader: nothing to swap"
        );
        let (done, _) = replay(ReplayAim::Literal).await;
        assert_eq!(
            done,
            vec!["isolate n1", "kill n2", "restart n2", "isolate "]
        );
    }
}
