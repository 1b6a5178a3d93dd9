//! Rolling upgrades as a nemesis: nodes move from one version of the system to the next, one
//! at a time, while clients keep working and the other faults keep happening.
//!
//! Mixed-version clusters are where wire-format and storage-format bugs live: a new leader
//! writes a record an old follower cannot read, an old node rejects a message the new version
//! sends, a binary refuses the data directory the other version left behind. So the upgrade is
//! not a setup step before the test but a fault like the others, with a start and an end in the
//! history, run alongside the configured schedule.
//!
//! A *path* is a list of versions (`[from, to]`, or more for a multi-step upgrade). Each *pass*
//! moves every node to the next version of the path; with `downgrade`, a last pass moves them
//! all back to `from`. A *step* replaces one node: the controller stops it (its stop signal,
//! then SIGKILL), puts the pass's binary in place and starts it on the same data directory,
//! then the step waits until the node has *rejoined* (it answers and knows a leader). A node
//! that exits instead (a binary that refuses the data or the cluster version it finds) or does
//! not rejoin in time is a finding: the step records its exit status and the tail of its log,
//! the node is put back on the version it ran before, so the rest of the run can still be
//! checked, and no further step is taken (an operator stops a rollout there too).
//!
//! Which node goes next is drawn from the seed, with the leader placed by [`UpgradeOrder`]:
//! followers first and the leader last (what operators are told to do), the leader first (the
//! case that forces an election at once and makes a new-version node lead old ones early), or
//! no rule at all. Optionally the pass *stalls* for a while once a majority of its nodes has
//! moved (the new version can then lead old ones), to leave the cluster mixed under faults.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::inject::wait;
use crate::{Cluster, Leader};

/// Where the leader goes in each pass's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeOrder {
    /// Followers in a seeded order, the node leading at the time last.
    #[default]
    FollowersFirst,
    /// The node leading when the pass starts first, then the others in a seeded order.
    LeaderFirst,
    /// A seeded order, wherever the leader falls.
    Random,
}

impl UpgradeOrder {
    pub const NAMES: &'static [&'static str] = &["followers-first", "leader-first", "random"];

    pub fn name(self) -> &'static str {
        match self {
            UpgradeOrder::FollowersFirst => "followers-first",
            UpgradeOrder::LeaderFirst => "leader-first",
            UpgradeOrder::Random => "random",
        }
    }
}

impl fmt::Display for UpgradeOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for UpgradeOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "followers-first" => Ok(UpgradeOrder::FollowersFirst),
            "leader-first" => Ok(UpgradeOrder::LeaderFirst),
            "random" => Ok(UpgradeOrder::Random),
            other => Err(format!(
                "unknown upgrade order {other:?}; the orders are: {}",
                UpgradeOrder::NAMES.join(", ")
            )),
        }
    }
}

/// A rolling upgrade to run alongside the fault schedule.
#[derive(Clone, Debug)]
pub struct UpgradePlan {
    /// The version of each binary along the path, `from` first (as each binary reports it).
    pub versions: Vec<String>,
    pub order: UpgradeOrder,
    /// After the last pass, move every node back to `from`.
    pub downgrade: bool,
    /// How long each pass holds the cluster mixed once a majority of its nodes moved.
    pub stall: Duration,
    /// When the first step starts, from the start of the test.
    pub start_after: Duration,
    /// Quiet time between one node rejoining and the next step.
    pub gap: Duration,
    /// Quiet time after a pass, before the next one starts: long enough for the cluster to
    /// act on its new versions (etcd raises its cluster version a few seconds after every
    /// member runs the new one; a downgrade is only refused after that).
    pub pass_gap: Duration,
    /// How long a restarted node may take to rejoin before that counts as a finding.
    pub rejoin_timeout: Duration,
    pub seed: u64,
}

/// How a node came back after its binary was swapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejoin {
    /// It answers and knows a leader.
    Rejoined,
    /// Its process exited (`status`, as the OS reports it); `log_tail`: its last log lines.
    Exited { status: String, log_tail: String },
    /// It is running but had not rejoined when the timeout passed.
    TimedOut { log_tail: String },
    /// It is not running for a reason that has nothing to do with its version (a fault took
    /// it down and could not bring it back): the step cannot be judged.
    NotRunning(String),
}

/// One node replaced, as it happened (times in milliseconds since the test started).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UpgradeStep {
    pub id: u64,
    /// 1-based pass of the path this step belongs to.
    pub pass: usize,
    /// `upgrade` or `downgrade` (the pass back to `from`).
    pub direction: String,
    pub node: String,
    pub from_version: String,
    pub to_version: String,
    /// Whether the node was leading (as last observed) when the step began.
    pub was_leader: bool,
    pub leader_at_start: Option<Leader>,
    /// Time spent waiting for the node to be running (a kill or power loss in force on it).
    pub waited_ms: f64,
    pub start_ms: f64,
    /// When the new process was started (`None` if the swap itself failed).
    pub restarted_ms: Option<f64>,
    /// When the step ended: the node rejoined, exited, timed out, or the swap failed.
    pub end_ms: f64,
    /// From the restart to the node answering with a leader it knows.
    pub rejoin_ms: Option<f64>,
    /// `rejoined`, `refused` (the process exited), `not-rejoined` (timed out) or `error`
    /// (faultline could not stop or start the node; `errors` says why).
    pub outcome: String,
    /// A refused start or a timeout: the process's exit status and its last log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// After a failed step: how putting the node back on its previous version went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
    pub errors: Vec<String>,
}

impl UpgradeStep {
    pub fn succeeded(&self) -> bool {
        self.outcome == "rejoined"
    }

    /// One sentence for a failed step: the node, the step and what it said last.
    pub fn finding(&self) -> Option<String> {
        let what = match self.outcome.as_str() {
            "rejoined" => return None,
            "refused" => format!(
                "{} exited ({}) after the {} to {}",
                self.node,
                self.exit_status.as_deref().unwrap_or("unknown status"),
                self.direction,
                self.to_version
            ),
            "not-rejoined" => format!(
                "{} did not rejoin within the timeout after the {} to {}",
                self.node, self.direction, self.to_version
            ),
            _ if self.node.is_empty() => format!(
                "the rolling upgrade could not be carried out: {}",
                self.errors.join("; ")
            ),
            _ => format!(
                "the {} of {} to {} could not be carried out: {}",
                self.direction,
                self.node,
                self.to_version,
                self.errors.join("; ")
            ),
        };
        let last = self
            .log_tail
            .as_deref()
            .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
            .map(|l| format!(": {}", readable_log_line(l.trim())))
            .unwrap_or_default();
        Some(format!(
            "{what} (step {} of pass {}, from {}){last}",
            self.id, self.pass, self.from_version
        ))
    }
}

/// A structured log line (JSON, as etcd's zap logger writes) as a sentence: its message,
/// then its other fields, without the timestamp, level, caller and stack trace; any other
/// line as it is.
pub fn readable_log_line(line: &str) -> String {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let Some(msg) = fields.get("msg").and_then(Value::as_str) else {
        return line.to_string();
    };
    let rest: Vec<String> = fields
        .iter()
        .filter(|(k, _)| !["msg", "level", "ts", "caller", "stacktrace"].contains(&k.as_str()))
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect();
    if rest.is_empty() {
        msg.to_string()
    } else {
        format!("{msg} ({})", rest.join(", "))
    }
}

/// What a rolling upgrade did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UpgradeReport {
    /// The versions along the path, `from` first; with a downgrade, `from` again last.
    pub path: Vec<String>,
    pub order: String,
    pub steps: Vec<UpgradeStep>,
    /// Every planned step was taken and every node rejoined.
    pub complete: bool,
    /// Steps planned but not taken (the test ended first, or a step failed).
    pub steps_left: usize,
}

impl UpgradeReport {
    /// The failed step, if one failed (no step is taken after it).
    pub fn failure(&self) -> Option<&UpgradeStep> {
        self.steps.iter().find(|s| !s.succeeded())
    }
}

/// Runs `plan` on `cluster` until every pass is done, a step fails, or `stop` turns true (no
/// step starts after that; one under way is finished, so no node is left half-replaced).
/// `record(f, value)` puts each step's start (`f = "upgrade"`) and end (`"upgraded"`) in the
/// history.
pub async fn run<C: Cluster>(
    cluster: &C,
    plan: &UpgradePlan,
    test_start: Instant,
    record: &(dyn Fn(&str, Value) + Send + Sync),
    mut stop: watch::Receiver<bool>,
) -> UpgradeReport {
    let since = |t: Instant| t.duration_since(test_start).as_secs_f64() * 1e3;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let nodes = cluster.nodes();
    // Each pass: its direction and the version (index into `plan.versions`) it moves to.
    let mut passes: Vec<(&str, usize)> = (1..plan.versions.len()).map(|v| ("upgrade", v)).collect();
    if plan.downgrade && plan.versions.len() > 1 {
        passes.push(("downgrade", 0));
    }
    // `from`, then where each pass leads.
    let path = plan
        .versions
        .first()
        .into_iter()
        .chain(passes.iter().map(|(_, v)| &plan.versions[*v]))
        .cloned()
        .collect();
    let mut report = UpgradeReport {
        path,
        order: plan.order.name().to_string(),
        steps: Vec::new(),
        complete: false,
        steps_left: passes.len() * nodes.len(),
    };
    if wait(plan.start_after, &mut stop).await {
        return report;
    }
    let mut failed = false;
    'passes: for (pass, (direction, to)) in passes.iter().enumerate() {
        let mut remaining = nodes.clone();
        remaining.shuffle(&mut rng);
        // A majority on the new version: where a new-version node can lead old ones.
        let stall_after = nodes.len() / 2 + 1;
        let mut moved = 0;
        while !remaining.is_empty() {
            if *stop.borrow() {
                break 'passes;
            }
            let leader = cluster.observed_leader().map(|l| l.node);
            let at = match (plan.order, leader) {
                (UpgradeOrder::FollowersFirst, Some(l)) if remaining.len() > 1 => {
                    remaining.iter().position(|n| *n != l).unwrap_or(0)
                }
                (UpgradeOrder::LeaderFirst, Some(l)) if moved == 0 => {
                    remaining.iter().position(|n| *n == l).unwrap_or(0)
                }
                _ => 0,
            };
            let node = remaining.remove(at);
            let step = step(
                cluster,
                plan,
                report.steps.len() as u64 + 1,
                pass + 1,
                direction,
                &node,
                *to,
                test_start,
                record,
            )
            .await;
            report.steps_left -= 1;
            let ok = step.succeeded();
            report.steps.push(step);
            if !ok {
                failed = true;
                break 'passes;
            }
            moved += 1;
            if moved == stall_after && !plan.stall.is_zero() && !remaining.is_empty() {
                tracing::info!(
                    pass = pass + 1,
                    moved,
                    stall_s = plan.stall.as_secs_f64(),
                    "upgrade stalls with the cluster mixed"
                );
                record(
                    "upgrade-stall",
                    json!({"pass": pass + 1, "moved": moved, "stall_ms": plan.stall.as_secs_f64() * 1e3, "at_ms": since(Instant::now())}),
                );
                if wait(plan.stall, &mut stop).await {
                    break 'passes;
                }
            }
            let quiet = match (remaining.is_empty(), pass + 1 < passes.len()) {
                (false, _) => Some(plan.gap),
                (true, true) => Some(plan.pass_gap.max(plan.gap)),
                (true, false) => None,
            };
            if let Some(q) = quiet {
                if wait(q, &mut stop).await {
                    break 'passes;
                }
            }
        }
    }
    report.complete = !failed && report.steps_left == 0;
    report
}

/// Replaces one node: waits until it runs, swaps its binary, waits for it to rejoin, and
/// rolls it back if it does not.
#[allow(clippy::too_many_arguments)]
async fn step<C: Cluster>(
    cluster: &C,
    plan: &UpgradePlan,
    id: u64,
    pass: usize,
    direction: &str,
    node: &str,
    to: usize,
    test_start: Instant,
    record: &(dyn Fn(&str, Value) + Send + Sync),
) -> UpgradeStep {
    let since = || test_start.elapsed().as_secs_f64() * 1e3;
    // A node that a kill or power loss took down comes back when that fault heals: wait for
    // it, so the step replaces a running node (and the fault's restart does not race ours).
    let waiting = Instant::now();
    let deadline = waiting + WAIT_FOR_RUNNING;
    while cluster.process_group(node).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from = cluster.node_version(node).unwrap_or(0);
    let label = |v: usize| plan.versions.get(v).cloned().unwrap_or_default();
    let leader = cluster.observed_leader();
    let mut s = UpgradeStep {
        id,
        pass,
        direction: direction.to_string(),
        node: node.to_string(),
        from_version: label(from),
        to_version: label(to),
        was_leader: leader.as_ref().is_some_and(|l| l.node == node),
        leader_at_start: leader,
        waited_ms: waiting.elapsed().as_secs_f64() * 1e3,
        start_ms: since(),
        outcome: "error".to_string(),
        ..UpgradeStep::default()
    };
    record(
        "upgrade",
        json!({"id": id, "pass": pass, "direction": direction, "node": node,
               "from_version": s.from_version, "to_version": s.to_version,
               "was_leader": s.was_leader}),
    );
    tracing::info!(
        node,
        from = s.from_version,
        to = s.to_version,
        direction,
        "upgrade step"
    );
    match cluster.swap_version(node, to).await {
        Err(e) => s.errors.push(e),
        Ok(()) => {
            let restarted = since();
            s.restarted_ms = Some(restarted);
            match cluster.await_rejoin(node, plan.rejoin_timeout).await {
                Rejoin::Rejoined => {
                    s.outcome = "rejoined".to_string();
                    s.rejoin_ms = Some(since() - restarted);
                }
                Rejoin::Exited { status, log_tail } => {
                    s.outcome = "refused".to_string();
                    s.exit_status = Some(status);
                    s.log_tail = Some(log_tail);
                }
                Rejoin::TimedOut { log_tail } => {
                    s.outcome = "not-rejoined".to_string();
                    s.log_tail = Some(log_tail);
                }
                Rejoin::NotRunning(why) => s.errors.push(why),
            }
        }
    }
    s.end_ms = since();
    if !s.succeeded() {
        // Back to what it ran before, so the cluster can recover and the run be checked.
        let back = match cluster.swap_version(node, from).await {
            Err(e) => format!("could not restart it on {}: {e}", s.from_version),
            Ok(()) => match cluster.await_rejoin(node, plan.rejoin_timeout).await {
                Rejoin::Rejoined => format!("restarted on {} and rejoined", s.from_version),
                Rejoin::Exited { status, .. } => {
                    format!(
                        "restarted on {} but exited again ({status})",
                        s.from_version
                    )
                }
                Rejoin::TimedOut { .. } => format!(
                    "restarted on {} but had not rejoined after {} s",
                    s.from_version,
                    plan.rejoin_timeout.as_secs_f64()
                ),
                Rejoin::NotRunning(why) => format!("not restarted on {}: {why}", s.from_version),
            },
        };
        tracing::warn!(node, finding = ?s.finding(), rolled_back = back, "upgrade step failed");
        s.rolled_back = Some(back);
    }
    record(
        "upgraded",
        json!({"id": id, "node": node, "outcome": s.outcome,
               "from_version": s.from_version, "to_version": s.to_version,
               "rejoin_ms": s.rejoin_ms, "exit_status": s.exit_status,
               "rolled_back": s.rolled_back, "errors": s.errors}),
    );
    s
}

/// How long a step waits for a node that a fault took down to be running again.
const WAIT_FOR_RUNNING: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A cluster whose nodes swap versions instantly; `refuse` names a (node, version) whose
    /// start fails.
    struct Versions {
        nodes: Vec<String>,
        leader: Mutex<Option<String>>,
        at: Mutex<BTreeMap<String, usize>>,
        refuse: Option<(String, usize)>,
        swaps: Mutex<Vec<(String, usize)>>,
    }

    impl Versions {
        fn new(n: usize, leader: &str) -> Versions {
            let nodes: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
            Versions {
                at: Mutex::new(nodes.iter().map(|n| (n.clone(), 0)).collect()),
                nodes,
                leader: Mutex::new(Some(leader.to_string())),
                refuse: None,
                swaps: Mutex::new(Vec::new()),
            }
        }
    }

    impl Cluster for Versions {
        fn nodes(&self) -> Vec<String> {
            self.nodes.clone()
        }
        async fn leader(&self) -> Option<String> {
            self.leader.lock().unwrap().clone()
        }
        fn observed_leader(&self) -> Option<Leader> {
            self.leader.lock().unwrap().clone().map(|node| Leader {
                node,
                term: Some(1),
            })
        }
        async fn await_new_leader(&self, _: Option<&Leader>, _: Duration) -> Option<Leader> {
            None
        }
        fn process_group(&self, _: &str) -> Option<i32> {
            Some(100)
        }
        fn killed(&self, _: &str) {}
        async fn lose_unfsynced(&self, _: &str) -> Result<String, String> {
            Ok(String::new())
        }
        async fn restart(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn partition(&self, _: &crate::Grudge) -> Result<(), String> {
            Ok(())
        }
        async fn set_clock(&self, _: &str, _: f64, _: bool) -> Result<crate::ClockReading, String> {
            Ok(crate::ClockReading::default())
        }
        fn degrade(&self, _: Duration, _: Duration, _: f64) -> Result<(), String> {
            Ok(())
        }
        fn node_version(&self, node: &str) -> Option<usize> {
            self.at.lock().unwrap().get(node).copied()
        }
        async fn swap_version(&self, node: &str, version: usize) -> Result<(), String> {
            self.swaps.lock().unwrap().push((node.to_string(), version));
            self.at.lock().unwrap().insert(node.to_string(), version);
            // The leader steps down when it is stopped; the first other node takes over.
            let mut leader = self.leader.lock().unwrap();
            if leader.as_deref() == Some(node) {
                *leader = self.nodes.iter().find(|n| *n != node).cloned();
            }
            Ok(())
        }
        async fn await_rejoin(&self, node: &str, _: Duration) -> Rejoin {
            let v = self.at.lock().unwrap()[node];
            match &self.refuse {
                Some((n, bad)) if n == node && *bad == v => Rejoin::Exited {
                    status: "exit status: 1".into(),
                    log_tail: "starting\nfatal: cluster version 3.5 is not supported\n".into(),
                },
                _ => Rejoin::Rejoined,
            }
        }
    }

    fn plan(order: UpgradeOrder, downgrade: bool) -> UpgradePlan {
        UpgradePlan {
            versions: vec!["3.4.23".into(), "3.5.1".into()],
            order,
            downgrade,
            stall: Duration::ZERO,
            start_after: Duration::ZERO,
            gap: Duration::ZERO,
            pass_gap: Duration::ZERO,
            rejoin_timeout: Duration::from_secs(1),
            seed: 7,
        }
    }

    async fn run_plan(cluster: &Versions, plan: &UpgradePlan) -> UpgradeReport {
        let (_tx, rx) = watch::channel(false);
        let events = Mutex::new(Vec::new());
        let record = |f: &str, v: Value| events.lock().unwrap().push((f.to_string(), v));
        let report = run(cluster, plan, Instant::now(), &record, rx).await;
        let events = events.into_inner().unwrap();
        // Every step is in the history: a start and an end each.
        let starts = events.iter().filter(|(f, _)| f == "upgrade").count();
        let ends = events.iter().filter(|(f, _)| f == "upgraded").count();
        assert_eq!((starts, ends), (report.steps.len(), report.steps.len()));
        report
    }

    #[tokio::test]
    async fn followers_move_first_and_the_leader_last_then_all_move_back() {
        let cluster = Versions::new(3, "n2");
        let report = run_plan(&cluster, &plan(UpgradeOrder::FollowersFirst, true)).await;
        assert!(report.complete, "{report:?}");
        assert_eq!(report.path, vec!["3.4.23", "3.5.1", "3.4.23"]);
        let first: Vec<&str> = report.steps[..3].iter().map(|s| s.node.as_str()).collect();
        assert_eq!(first[2], "n2", "the leader goes last: {first:?}");
        assert!(report.steps[2].was_leader && !report.steps[0].was_leader);
        assert!(report.steps[..3].iter().all(|s| s.to_version == "3.5.1"));
        assert!(report.steps[3..]
            .iter()
            .all(|s| s.direction == "downgrade" && s.to_version == "3.4.23"));
        assert_eq!(cluster.swaps.lock().unwrap().len(), 6);
        assert!(cluster.at.lock().unwrap().values().all(|v| *v == 0));
    }

    #[tokio::test]
    async fn the_leader_first_order_starts_with_the_leader() {
        let cluster = Versions::new(5, "n4");
        let report = run_plan(&cluster, &plan(UpgradeOrder::LeaderFirst, false)).await;
        assert!(report.complete);
        assert_eq!(report.steps[0].node, "n4");
        assert!(report.steps[0].was_leader);
        let mut moved: Vec<&str> = report.steps.iter().map(|s| s.node.as_str()).collect();
        moved.sort();
        assert_eq!(moved, vec!["n1", "n2", "n3", "n4", "n5"]);
    }

    #[tokio::test]
    async fn the_order_is_drawn_from_the_seed() {
        let order = |seed| async move {
            let cluster = Versions::new(5, "n1");
            let mut p = plan(UpgradeOrder::Random, false);
            p.seed = seed;
            let r = run_plan(&cluster, &p).await;
            r.steps.iter().map(|s| s.node.clone()).collect::<Vec<_>>()
        };
        assert_eq!(order(3).await, order(3).await);
        let differ = futures_util::future::join_all((4..10).map(order)).await;
        assert!(
            differ.iter().any(|o| *o != differ[0]),
            "six seeds, one order: {differ:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_start_stops_the_rollout_rolls_the_node_back_and_says_why() {
        let mut cluster = Versions::new(3, "n1");
        cluster.refuse = Some(("n3".into(), 0));
        let report = run_plan(&cluster, &plan(UpgradeOrder::FollowersFirst, true)).await;
        assert!(!report.complete);
        let failed = report.failure().expect("a failed step");
        assert_eq!(failed.direction, "downgrade");
        assert_eq!(failed.outcome, "refused");
        // Nothing after it: the downgrade stopped at n3, and n3 went back to 3.5.1.
        assert_eq!(report.steps.last().map(|s| s.id), Some(failed.id));
        assert!(report.steps_left > 0);
        assert_eq!(cluster.at.lock().unwrap()["n3"], 1);
        let finding = failed.finding().unwrap();
        assert!(
            finding.starts_with("n3 exited (exit status: 1) after the downgrade to 3.4.23")
                && finding.ends_with("fatal: cluster version 3.5 is not supported"),
            "{finding}"
        );
        let zap = r#"{"level":"fatal","ts":"2026-12-05T19:29:51.853Z","caller":"membership/cluster.go:795","msg":"invalid downgrade; server version is lower than determined cluster version","current-server-version":"3.4.23","determined-cluster-version":"3.5","stacktrace":"go.etcd.io/etcd/..."}"#;
        assert_eq!(
            readable_log_line(zap),
            "invalid downgrade; server version is lower than determined cluster version \
             (current-server-version 3.4.23, determined-cluster-version 3.5)"
        );
        assert_eq!(readable_log_line("plain {text"), "plain {text");
        assert_eq!(
            failed.rolled_back.as_deref(),
            Some("restarted on 3.5.1 and rejoined")
        );
    }
}
