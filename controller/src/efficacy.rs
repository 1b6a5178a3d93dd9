//! Fault efficacy: what each fault actually did to the cluster, so that a green run can be
//! read as "the cluster was stressed and survived" and not "nothing happened".
//!
//! Computed after the run from three records that are already kept: the faults (start, end,
//! nodes, grudge), the status samples (who led which term, when), and the history (which
//! operations completed, where, when). For each fault:
//!
//! * the leader and term before it started and when it was healed (from the samples), and
//!   whether the fault **hit the leader**: a process or clock fault on it, or a partition
//!   that left it unable to exchange messages with a majority;
//! * the **new leaders** seen while it was in force or before the next fault, and how long
//!   after its start the first one appeared (the election time);
//! * for a partition, the nodes on the **minority side** (those that cannot reach a majority
//!   both ways) and how the writes sent to them while it lasted ended: a correct system
//!   acknowledges none;
//! * the **recovery time**: from the moment no fault is in force any more (its own heal, or
//!   the heal of the last fault overlapping it) until the cluster next completed a write;
//! * whether it had **no observable effect**: no leader change, no change of term, no client
//!   operation failed or timed out while it lasted.
//!
//! The same numbers feed the `--max-recovery` availability check.

use std::collections::{BTreeMap, BTreeSet};

use faultline_nemesis::{FaultKind, FaultRecord, Grudge};
use serde::Serialize;

use super::election::{tenures, Sample};

/// A client operation, as much of it as efficacy needs.
#[derive(Clone, Debug)]
pub struct OpTimes {
    /// A read (`read`, `read-set`...): recovery waits for a write.
    pub is_read: bool,
    /// Ended `ok`; otherwise it failed, timed out, or never completed.
    pub ok: bool,
    /// Ended `fail`: the system said it did not happen (a definite refusal).
    pub failed: bool,
    /// Failed only because its precondition did not hold (a cas that found another value):
    /// an answer from a working cluster, not an error.
    pub mismatch: bool,
    pub invoke_ns: u64,
    /// `None`: never completed.
    pub complete_ns: Option<u64>,
    pub node: Option<String>,
}

/// A leader as the samples showed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeenLeader {
    pub node: String,
    pub term: Option<u64>,
}

/// How the writes sent to a partition's minority side ended.
#[derive(Clone, Debug, Serialize)]
pub struct MinoritySide {
    pub nodes: Vec<String>,
    /// Writes invoked on those nodes while the partition lasted, acknowledged before it ended.
    pub acknowledged: usize,
    /// ...definitely refused (`fail`): what a correct system answers, or...
    pub refused: usize,
    /// ...timed out, left unanswered, or acknowledged only after the heal began: these may
    /// or may not have taken effect, so they say nothing either way.
    pub unanswered: usize,
}

/// What one fault did.
#[derive(Clone, Debug, Serialize)]
pub struct Efficacy {
    pub id: u64,
    pub leader_before: Option<SeenLeader>,
    pub leader_after: Option<SeenLeader>,
    /// `None` when no leader was known before the fault.
    pub hit_leader: Option<bool>,
    /// New leaderships (node, term) first seen from the fault's start until the next fault.
    pub new_leaders: Vec<SeenLeader>,
    /// From the fault's start to the first new leader's first sample.
    pub election_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minority: Option<MinoritySide>,
    /// Client operations that failed or timed out while the fault was in force (a cas that
    /// found another value is an answer, not an error).
    pub client_errors: usize,
    /// When no fault was in force any more (ms since the start).
    pub quiet_from_ms: f64,
    /// The same, exactly, for comparisons.
    #[serde(skip)]
    pub quiet_from_ns: u64,
    /// From `quiet_from_ms` to the first write completed after it; `None` when none was
    /// completed before the next fault or the end of the test (see `recovery_note`).
    pub recovery_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_note: Option<String>,
    /// No leader change, no change of term, no client operation failed while it lasted.
    pub no_observable_effect: bool,
}

/// The run's faults in one line, and its numbers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub faults: usize,
    pub scenarios: usize,
    pub hit_leader: usize,
    /// Leaderships first seen after the first fault started.
    pub leader_changes: usize,
    /// Over the moments the cluster became free of faults (each counted once).
    pub recovery_p50_ms: Option<f64>,
    pub recovery_max_ms: Option<f64>,
    /// Quiet moments after which no write completed before the next fault.
    pub not_recovered: usize,
    pub no_observable_effect: usize,
    /// Writes acknowledged by a partition's minority side.
    pub minority_acknowledged: usize,
}

impl Summary {
    /// `12 faults (8 scenarios), 7 hit the leader, 9 leader changes, recovery p50 0.41 s / max
    /// 2.10 s, 2 with no observable effect`
    pub fn line(&self) -> String {
        let mut s = format!("{} fault{}", self.faults, plural(self.faults));
        if self.scenarios > 0 {
            s += &format!(" ({} scenario{})", self.scenarios, plural(self.scenarios));
        }
        s += &format!(
            ", {} hit the leader, {} leader change{}",
            self.hit_leader,
            self.leader_changes,
            plural(self.leader_changes)
        );
        if let (Some(p50), Some(max)) = (self.recovery_p50_ms, self.recovery_max_ms) {
            s += &format!(", recovery p50 {:.2} s / max {:.2} s", p50 / 1e3, max / 1e3);
        }
        if self.not_recovered > 0 {
            s += &format!(
                ", {} heal{} not followed by a write before the next fault",
                self.not_recovered,
                plural(self.not_recovered)
            );
        }
        s += &format!(", {} with no observable effect", self.no_observable_effect);
        if self.minority_acknowledged > 0 {
            s += &format!(
                ", {} write{} acknowledged by a minority side",
                self.minority_acknowledged,
                plural(self.minority_acknowledged)
            );
        }
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn ns(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6) as u64
}

/// The leader at `t`: among each node's last sample at or before `t`, the one claiming to
/// lead the highest term.
fn leader_at(samples: &[Sample], t: u64) -> Option<SeenLeader> {
    let mut last: BTreeMap<&str, &Sample> = BTreeMap::new();
    for s in samples.iter().take_while(|s| s.time_ns <= t) {
        last.insert(s.node.as_str(), s);
    }
    last.values()
        .filter(|s| s.role.as_deref() == Some("leader"))
        .max_by_key(|s| (s.term, s.time_ns))
        .map(|s| SeenLeader {
            node: s.node.clone(),
            term: s.term,
        })
}

/// Whether `a` can exchange messages with `b` both ways under `grudge`.
fn linked(grudge: &Grudge, a: &str, b: &str) -> bool {
    let hears = |x: &str, y: &str| !grudge.get(x).is_some_and(|cut| cut.iter().any(|c| c == y));
    a == b || (hears(a, b) && hears(b, a))
}

/// The nodes that cannot exchange messages with a majority (themselves included).
fn minority_side(grudge: &Grudge, nodes: &[String]) -> Vec<String> {
    let majority = nodes.len() / 2 + 1;
    nodes
        .iter()
        .filter(|a| nodes.iter().filter(|b| linked(grudge, a, b)).count() < majority)
        .cloned()
        .collect()
}

/// Efficacy of every fault, and the summary. `nodes` are the cluster's node names;
/// `clients_end_ns` is when the clients stopped (no write can complete after it).
pub fn assess(
    faults: &[FaultRecord],
    samples: &[Sample],
    ops: &[OpTimes],
    nodes: &[String],
    clients_end_ns: u64,
) -> (Vec<Efficacy>, Summary) {
    let all_tenures = tenures(samples);
    // When each leadership (node, term) was first seen.
    let mut first_seen: BTreeMap<(&str, Option<u64>), u64> = BTreeMap::new();
    for t in &all_tenures {
        let e = first_seen
            .entry((t.node.as_str(), t.term))
            .or_insert(t.from_ns);
        *e = (*e).min(t.from_ns);
    }
    // Busy periods: overlapping faults merged; each fault's quiet moment is the end of its
    // busy period, and the next busy period's start bounds the wait for recovery.
    let mut spans: Vec<(u64, u64)> = faults
        .iter()
        .map(|f| (ns(f.start_ms), ns(f.end_ms.unwrap_or(ms(clients_end_ns)))))
        .collect();
    spans.sort_unstable();
    let mut busy: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match busy.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => busy.push((s, e)),
        }
    }
    let mut writes: Vec<u64> = ops
        .iter()
        .filter(|o| o.ok && !o.is_read)
        .filter_map(|o| o.complete_ns)
        .collect();
    writes.sort_unstable();
    let first_write_from = |t: u64| writes.get(writes.partition_point(|&w| w < t)).copied();

    let mut out = Vec::with_capacity(faults.len());
    for (i, f) in faults.iter().enumerate() {
        let start = ns(f.start_ms);
        let end = ns(f.end_ms.unwrap_or(ms(clients_end_ns)));
        let b = busy
            .iter()
            .position(|&(s, e)| s <= start && start <= e)
            .unwrap_or(0);
        let quiet_from = busy.get(b).map_or(end, |p| p.1);
        let quiet_until = busy.get(b + 1).map_or(clients_end_ns, |p| p.0);
        // Leader changes are attributed until the next fault begins (or the test ends).
        let next_start = faults
            .iter()
            .skip(i + 1)
            .map(|g| ns(g.start_ms))
            .find(|&s| s >= end)
            .unwrap_or(clients_end_ns);
        let window_end = next_start.max(end);
        let before = leader_at(samples, start);
        let after = leader_at(samples, end);
        // Leaderships first seen while the fault lasted or before the next one began.
        let mut new: Vec<(u64, SeenLeader)> = first_seen
            .iter()
            .filter(|(_, &t)| t >= start && t <= window_end)
            .map(|(&(node, term), &t)| {
                let node = node.to_string();
                (t, SeenLeader { node, term })
            })
            .filter(|(_, l)| before.as_ref() != Some(l))
            .collect();
        new.sort_by_key(|(t, _)| *t);
        let election_ms = new.first().map(|(t, _)| ms(t - start));
        let new_leaders: Vec<SeenLeader> = new.into_iter().map(|(_, l)| l).collect();
        // Latency and loss degrade every link alike: they aim at no node, so at no leader.
        let aimless = matches!(f.fault, FaultKind::Latency | FaultKind::Loss);
        let hit_leader = before
            .as_ref()
            .filter(|_| !aimless)
            .map(|l| match &f.grudge {
                Some(g) => minority_side(g, nodes).contains(&l.node),
                None => f.nodes.contains(&l.node),
            });
        let minority = f.grudge.as_ref().map(|g| {
            let side = minority_side(g, nodes);
            // Until the heal began: writes answered while it was being undone do not count.
            let cut_until = f.heal_ms.map_or(end, ns);
            let (mut acknowledged, mut refused, mut unanswered) = (0, 0, 0);
            for o in ops
                .iter()
                .filter(|o| !o.is_read && o.invoke_ns >= start && o.invoke_ns < cut_until)
            {
                if !o.node.as_ref().is_some_and(|n| side.contains(n)) {
                    continue;
                }
                match o.complete_ns {
                    Some(c) if o.ok && c <= cut_until => acknowledged += 1,
                    Some(_) if o.failed => refused += 1,
                    _ => unanswered += 1,
                }
            }
            MinoritySide {
                nodes: side,
                acknowledged,
                refused,
                unanswered,
            }
        });
        let client_errors = ops
            .iter()
            .filter(|o| !o.ok && !o.mismatch)
            .filter(|o| {
                let t = o.complete_ns.unwrap_or(o.invoke_ns);
                t >= start && t <= end
            })
            .count();
        let (recovery_ms, recovery_note) = match first_write_from(quiet_from) {
            Some(w) if w < quiet_until.max(quiet_from) || quiet_until >= clients_end_ns => {
                (Some(ms(w - quiet_from)), None)
            }
            _ if quiet_until >= clients_end_ns => (
                None,
                Some(format!(
                    "no write completed between the heal and the end of the test ({:.2} s)",
                    ms(clients_end_ns.saturating_sub(quiet_from)) / 1e3
                )),
            ),
            _ => (
                None,
                Some(format!(
                    "no write completed before the next fault, {:.2} s after the heal",
                    ms(quiet_until.saturating_sub(quiet_from)) / 1e3
                )),
            ),
        };
        let no_observable_effect = new_leaders.is_empty()
            && before.as_ref().map(|l| l.term) == after.as_ref().map(|l| l.term)
            && client_errors == 0;
        out.push(Efficacy {
            id: f.id,
            leader_before: before,
            leader_after: after,
            hit_leader,
            new_leaders,
            election_ms,
            minority,
            client_errors,
            quiet_from_ms: ms(quiet_from),
            quiet_from_ns: quiet_from,
            recovery_ms,
            recovery_note,
            no_observable_effect,
        });
    }

    // A leadership counts once, from its first sample: a sample that timed out splits a
    // tenure in two, and the second half is not a new leader.
    let first_fault = faults.iter().map(|f| ns(f.start_ms)).min();
    let leader_changes = first_seen
        .values()
        .filter(|&&t| first_fault.is_some_and(|s| t >= s))
        .count();
    // Recovery once per quiet moment (overlapping faults share one).
    let mut per_quiet: BTreeMap<u64, (Option<f64>, bool)> = BTreeMap::new();
    for e in &out {
        per_quiet.insert(e.quiet_from_ns, (e.recovery_ms, e.recovery_note.is_some()));
    }
    let mut recoveries: Vec<f64> = per_quiet.values().filter_map(|(r, _)| *r).collect();
    recoveries.sort_by(f64::total_cmp);
    let quantile = |p: f64| {
        (!recoveries.is_empty())
            .then(|| recoveries[((recoveries.len() - 1) as f64 * p).round() as usize])
    };
    let not_recovered = per_quiet
        .iter()
        .filter(|(&q, (r, noted))| {
            r.is_none() && *noted && quiet_is_inside(q, &busy, clients_end_ns)
        })
        .count();
    let summary = Summary {
        faults: faults.len(),
        scenarios: faults
            .iter()
            .filter_map(|f| f.scenario_id)
            .collect::<BTreeSet<_>>()
            .len(),
        hit_leader: out.iter().filter(|e| e.hit_leader == Some(true)).count(),
        leader_changes,
        recovery_p50_ms: quantile(0.5),
        recovery_max_ms: quantile(1.0),
        not_recovered,
        no_observable_effect: out.iter().filter(|e| e.no_observable_effect).count(),
        minority_acknowledged: out
            .iter()
            .filter_map(|e| e.minority.as_ref())
            .map(|m| m.acknowledged)
            .sum(),
    };
    (out, summary)
}

/// Whether a quiet moment is followed by another fault (not the end of the test): only then
/// does "no write before the next fault" say something about the cluster.
fn quiet_is_inside(quiet_ns: u64, busy: &[(u64, u64)], clients_end_ns: u64) -> bool {
    quiet_ns < clients_end_ns && busy.iter().any(|&(s, _)| s > quiet_ns)
}

/// A `--max-recovery` violation: the cluster completed no write within the bound after it
/// became free of faults, and the quiet time was long enough to tell. Each with the moment the
/// bound ran out (nanoseconds since the start).
pub fn slow_recoveries(
    faults: &[FaultRecord],
    efficacy: &[Efficacy],
    ops: &[OpTimes],
    max_ms: f64,
    clients_end_ns: u64,
) -> Vec<(u64, String)> {
    let mut writes: Vec<u64> = ops
        .iter()
        .filter(|o| o.ok && !o.is_read)
        .filter_map(|o| o.complete_ns)
        .collect();
    writes.sort_unstable();
    let mut reported = BTreeSet::new();
    let mut out = Vec::new();
    for (f, e) in faults.iter().zip(efficacy) {
        let quiet = e.quiet_from_ns;
        // Judged once per quiet moment, named after the fault whose heal began it.
        if f.end_ms.map(ns) != Some(quiet) || !reported.insert(quiet) {
            continue;
        }
        let next_fault = faults
            .iter()
            .map(|g| ns(g.start_ms))
            .filter(|&s| s >= quiet)
            .min()
            .unwrap_or(clients_end_ns)
            .min(clients_end_ns);
        let bound = quiet + ns(max_ms);
        if bound > next_fault {
            continue; // not quiet long enough to judge
        }
        let first = writes.get(writes.partition_point(|&w| w < quiet)).copied();
        if first.is_some_and(|w| w <= bound) {
            continue;
        }
        let after = match first {
            Some(w) if w < next_fault => {
                format!("the first came {:.2} s after it", ms(w - quiet) / 1e3)
            }
            _ if next_fault >= clients_end_ns => format!(
                "none came before the clients stopped, {:.2} s after it",
                ms(next_fault - quiet) / 1e3
            ),
            _ => format!(
                "none came before the next fault, {:.2} s after it",
                ms(next_fault - quiet) / 1e3
            ),
        };
        out.push((
            bound,
            format!(
                "no write completed within {:.3} s of the heal of fault {} ({}) at {:.2} s: {after}",
                max_ms / 1e3,
                f.id,
                label(f),
                ms(quiet) / 1e3,
            ),
        ));
    }
    out
}

/// `kill n3 (the leader)`, `partition isolate n1`, ...
pub fn label(f: &FaultRecord) -> String {
    let mut s = f.fault.to_string();
    if let Some(k) = &f.kind {
        s += " ";
        s += k;
    }
    if !f.nodes.is_empty() {
        s += " ";
        s += &f.nodes.join(",");
    }
    if let Some(t) = &f.target {
        s += &format!(" ({t})");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, node: &str, role: &str, term: u64) -> Sample {
        Sample {
            time_ns: ms * 1_000_000,
            node: node.into(),
            role: Some(role.into()),
            term: Some(term),
            leader: None,
            consistent: true,
        }
    }

    fn fault(id: u64, fault: FaultKind, nodes: &[&str], start: f64, end: f64) -> FaultRecord {
        FaultRecord {
            id,
            fault,
            aim: None,
            kind: None,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            grudge: None,
            offsets_ms: None,
            latency_ms: None,
            jitter_ms: None,
            loss: None,
            scenario: Some("kill-leader".into()),
            scenario_id: Some(id),
            target: Some("the leader".into()),
            replay_of: None,
            resolved: None,
            leader_at_start: None,
            leader_at_end: None,
            issued_ms: Some(start),
            start_ms: start,
            heal_ms: Some(end),
            end_ms: Some(end),
            errors: Vec::new(),
            lost: None,
        }
    }

    fn write(invoke_ms: u64, complete_ms: Option<u64>, ok: bool, node: &str) -> OpTimes {
        OpTimes {
            is_read: false,
            ok,
            failed: !ok && complete_ms.is_some(),
            mismatch: false,
            invoke_ns: invoke_ms * 1_000_000,
            complete_ns: complete_ms.map(|c| c * 1_000_000),
            node: Some(node.into()),
        }
    }

    fn names() -> Vec<String> {
        (1..=3).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn a_leader_kill_shows_the_election_and_the_recovery() {
        let samples = vec![
            sample(0, "n1", "leader", 1),
            sample(0, "n2", "follower", 1),
            sample(1250, "n2", "leader", 2),
            sample(1300, "n2", "leader", 2),
        ];
        let faults = vec![fault(1, FaultKind::Kill, &["n1"], 1000.0, 2000.0)];
        let ops = vec![
            write(900, Some(910), true, "n1"),
            write(1010, None, false, "n1"),
            write(2100, Some(2400), true, "n2"),
        ];
        let (e, s) = assess(&faults, &samples, &ops, &names(), 5_000_000_000);
        let e = &e[0];
        assert_eq!(e.hit_leader, Some(true));
        assert_eq!(
            e.leader_before.as_ref().map(|l| l.node.as_str()),
            Some("n1")
        );
        assert_eq!(
            e.new_leaders,
            vec![SeenLeader {
                node: "n2".into(),
                term: Some(2)
            }]
        );
        assert_eq!(e.election_ms, Some(250.0));
        assert_eq!(e.recovery_ms, Some(400.0));
        assert_eq!(e.client_errors, 1);
        assert!(!e.no_observable_effect);
        assert_eq!((s.hit_leader, s.leader_changes), (1, 1));
        assert_eq!(s.recovery_max_ms, Some(400.0));
        let line = s.line();
        assert!(line.starts_with("1 fault (1 scenario), 1 hit the leader, 1 leader change, recovery p50 0.40 s / max 0.40 s, 0 with no observable effect"), "{line}");
        // --max-recovery 0.001 s: the heal at 2.0 s waited 0.4 s for a write.
        let slow = slow_recoveries(&faults, std::slice::from_ref(e), &ops, 1.0, 5_000_000_000);
        assert_eq!(slow.len(), 1);
        assert!(
            slow[0].1.contains("fault 1 (kill n1 (the leader))") && slow[0].1.contains("0.40 s"),
            "{}",
            slow[0].1
        );
        assert_eq!(
            slow[0].0, 2_001_000_000,
            "the bound ran out 1 ms after the heal"
        );
        assert!(
            slow_recoveries(&faults, std::slice::from_ref(e), &ops, 500.0, 5_000_000_000)
                .is_empty()
        );
    }

    #[test]
    fn a_partition_minority_that_acknowledges_writes_is_counted() {
        let samples = vec![sample(0, "n1", "leader", 1)];
        let mut f = fault(1, FaultKind::Partition, &["n1", "n2", "n3"], 1000.0, 2000.0);
        let mut g = Grudge::new();
        g.insert("n1".into(), vec!["n2".into(), "n3".into()]);
        g.insert("n2".into(), vec!["n1".into()]);
        g.insert("n3".into(), vec!["n1".into()]);
        f.grudge = Some(g);
        let ops = vec![
            write(1100, Some(1150), true, "n1"), // acknowledged by the isolated leader
            write(1200, Some(1300), false, "n1"),
            write(1300, None, false, "n1"),      // timed out: unknown
            write(1200, Some(1250), true, "n2"), // majority side: fine
        ];
        let (e, s) = assess(&[f], &samples, &ops, &names(), 5_000_000_000);
        let m = e[0].minority.as_ref().unwrap();
        assert_eq!(m.nodes, vec!["n1".to_string()]);
        assert_eq!((m.acknowledged, m.refused, m.unanswered), (1, 1, 1));
        assert_eq!(e[0].hit_leader, Some(true));
        assert_eq!(s.minority_acknowledged, 1);
    }

    #[test]
    fn a_fault_nobody_noticed_is_marked_and_overlapping_faults_share_a_recovery() {
        let samples = vec![sample(0, "n1", "leader", 1), sample(0, "n3", "follower", 1)];
        let faults = vec![
            fault(1, FaultKind::Clock, &["n3"], 1000.0, 2000.0),
            fault(2, FaultKind::Pause, &["n2"], 1500.0, 3000.0),
            fault(3, FaultKind::Kill, &["n3"], 4000.0, 4500.0),
        ];
        let ops = vec![
            write(2500, None, false, "n2"), // stuck on the paused node: fault 2 was noticed
            write(3100, Some(3200), true, "n1"),
            write(3300, Some(3900), false, "n2"),
        ];
        let (e, s) = assess(&faults, &samples, &ops, &names(), 6_000_000_000);
        assert!(e[0].no_observable_effect);
        assert!(!e[1].no_observable_effect);
        assert_eq!(e[1].client_errors, 1);
        assert_eq!(e[0].hit_leader, Some(false));
        // Faults 1 and 2 overlap: both wait from 3.0 s, when the last of them healed.
        assert_eq!((e[0].quiet_from_ms, e[1].quiet_from_ms), (3000.0, 3000.0));
        assert_eq!(
            (e[0].recovery_ms, e[1].recovery_ms),
            (Some(200.0), Some(200.0))
        );
        // After fault 3 no write came before the clients stopped.
        assert_eq!(e[2].recovery_ms, None);
        assert!(e[2]
            .recovery_note
            .as_ref()
            .unwrap()
            .contains("end of the test"));
        assert_eq!(s.recovery_max_ms, Some(200.0));
        assert_eq!(s.not_recovered, 0);
        // Fault 3 (a kill of a follower no client was waiting on) went unnoticed too.
        assert_eq!(s.no_observable_effect, 2);
        // The end of the test is judged too when it came long enough after the heal.
        let slow = slow_recoveries(&faults, &e, &ops, 1000.0, 6_000_000_000);
        assert_eq!(slow.len(), 1, "{slow:?}");
        assert!(
            slow[0].1.contains("fault 3") && slow[0].1.contains("clients stopped"),
            "{slow:?}"
        );
    }
}
