//! The seeded fault schedule: quiet period, fault, quiet period, fault, ... until told to
//! stop, then every fault still active is healed. Which fault, aimed at what, hitting which
//! nodes, is drawn from the seed, so the same seed makes the same decisions (wall-clock
//! timing, and so the exact operations a fault overlaps, naturally varies).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::partition::{self, PartitionKind};
use crate::{process, Aim, ClockMode, Cluster, FaultKind, Grudge, NemesisConfig};

/// A fault as it was applied, for the run's results.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub id: u64,
    pub fault: FaultKind,
    /// What a process or clock fault aimed at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aim: Option<Aim>,
    /// The partition shape, or the clock mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The nodes affected (for a partition: those that cannot hear someone).
    pub nodes: Vec<String>,
    /// Milliseconds since the test started.
    pub start_ms: f64,
    pub end_ms: Option<f64>,
    /// Problems applying or healing it (a node that could not be restarted, ...).
    pub errors: Vec<String>,
}

/// The decisions of a nemesis, drawn from its seed.
pub struct Schedule {
    rng: ChaCha8Rng,
    faults: Vec<FaultKind>,
    aims: Vec<Aim>,
    partitions: Vec<PartitionKind>,
    clock_modes: Vec<ClockMode>,
}

impl Schedule {
    pub fn new(config: &NemesisConfig) -> Schedule {
        Schedule {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            faults: config.faults.clone(),
            aims: if config.aims.is_empty() {
                Aim::ALL.to_vec()
            } else {
                config.aims.clone()
            },
            partitions: if config.partitions.is_empty() {
                PartitionKind::ALL.to_vec()
            } else {
                config.partitions.clone()
            },
            clock_modes: if config.clock_modes.is_empty() {
                ClockMode::ALL.to_vec()
            } else {
                config.clock_modes.clone()
            },
        }
    }

    /// The next partition shape.
    pub fn next_partition(&mut self) -> PartitionKind {
        self.partitions[self.rng.random_range(0..self.partitions.len())]
    }

    /// The next clock fault.
    pub fn next_clock_mode(&mut self) -> ClockMode {
        self.clock_modes[self.rng.random_range(0..self.clock_modes.len())]
    }

    /// A clock offset: between a quarter of the configured skew and all of it, either way.
    pub fn skew_ms(&mut self, config: &NemesisConfig) -> f64 {
        let max = config.clock_skew.as_secs_f64() * 1e3;
        let magnitude = self.rng.random_range(max / 4.0..=max.max(1.0));
        if self.rng.random_bool(0.5) {
            magnitude
        } else {
            -magnitude
        }
    }

    /// The next fault and its aim, or `None` when no faults are configured.
    pub fn next_fault(&mut self) -> Option<(FaultKind, Aim)> {
        if self.faults.is_empty() {
            return None;
        }
        let fault = self.faults[self.rng.random_range(0..self.faults.len())];
        let aim = self.aims[self.rng.random_range(0..self.aims.len())];
        Some((fault, aim))
    }

    /// The nodes an aim hits. `leader` is the current leader, if known.
    pub fn choose_nodes(
        &mut self,
        aim: Aim,
        nodes: &[String],
        leader: Option<String>,
    ) -> Vec<String> {
        let n = nodes.len();
        if n == 0 {
            return Vec::new();
        }
        let count = match aim {
            Aim::One => 1,
            Aim::Minority => ((n - 1) / 2).max(1),
            Aim::Majority => n / 2 + 1,
            Aim::All => n,
            Aim::Leader => {
                if let Some(l) = leader.filter(|l| nodes.contains(l)) {
                    return vec![l];
                }
                1
            }
        };
        let mut pool = nodes.to_vec();
        // A partial Fisher-Yates shuffle, then keep the node order stable for readability.
        for i in 0..count.min(n) {
            let j = self.rng.random_range(i..n);
            pool.swap(i, j);
        }
        let mut chosen: Vec<String> = pool.into_iter().take(count.min(n)).collect();
        chosen.sort_by_key(|c| nodes.iter().position(|x| x == c));
        chosen
    }
}

/// Runs the schedule until `stop` turns true, then heals. `record(f, value)` is called for
/// each fault's start (`f = "start"`) and end (`f = "stop"`), to go into the history. Returns
/// every fault applied.
pub async fn run<C: Cluster>(
    cluster: &C,
    config: &NemesisConfig,
    test_start: Instant,
    record: &(dyn Fn(&str, serde_json::Value) + Send + Sync),
    mut stop: watch::Receiver<bool>,
) -> Vec<FaultRecord> {
    let mut schedule = Schedule::new(config);
    let mut applied = Vec::new();
    let since = |t: Instant| t.duration_since(test_start).as_secs_f64() * 1e3;
    loop {
        if wait(config.interval, &mut stop).await {
            break;
        }
        let Some((fault, aim)) = schedule.next_fault() else {
            // No faults configured: idle until told to stop.
            let _ = stop.wait_for(|s| *s).await;
            break;
        };
        let id = applied.len() as u64 + 1;
        let leader = match (fault, aim) {
            (FaultKind::Partition, _) | (_, Aim::Leader) => cluster.leader().await,
            _ => None,
        };
        let all = cluster.nodes();
        let mut fr = FaultRecord {
            id,
            fault,
            aim: matches!(fault, FaultKind::Kill | FaultKind::Pause | FaultKind::Clock)
                .then_some(aim),
            kind: None,
            nodes: Vec::new(),
            start_ms: since(Instant::now()),
            end_ms: None,
            errors: Vec::new(),
        };
        let mut detail = json!({"id": id, "fault": fault.name()});
        let active = match fault {
            FaultKind::Kill | FaultKind::Pause => {
                let nodes = schedule.choose_nodes(aim, &all, leader);
                start_process(cluster, fault, &nodes, &mut fr.errors);
                detail["aim"] = json!(aim.name());
                detail["nodes"] = json!(nodes);
                fr.nodes = nodes.clone();
                if fault == FaultKind::Kill {
                    Active::Killed(nodes)
                } else {
                    Active::Paused(nodes)
                }
            }
            FaultKind::Partition => {
                let kind = schedule.next_partition();
                let grudge = partition::grudge(kind, &all, leader.as_deref(), &mut schedule.rng);
                if let Err(e) = cluster.partition(&grudge) {
                    fr.errors.push(e);
                }
                detail["kind"] = json!(kind.name());
                detail["grudge"] = json!(grudge);
                fr.kind = Some(kind.name().to_string());
                fr.nodes = grudge.keys().cloned().collect();
                Active::Partition
            }
            FaultKind::Clock => {
                let nodes = schedule.choose_nodes(aim, &all, leader);
                let mode = schedule.next_clock_mode();
                let skews: Vec<f64> = nodes.iter().map(|_| schedule.skew_ms(config)).collect();
                let mut offsets = serde_json::Map::new();
                let mut measured = serde_json::Map::new();
                // All nodes at once: verifying one takes up to libfaketime's cache period, and
                // the fault should hit its nodes together, not one after another.
                let results = join_all(nodes.iter().zip(&skews).map(|(node, skew)| {
                    // A drift starts from zero; bump and strobe start at the full skew.
                    let first = if mode == ClockMode::Drift { 0.0 } else { *skew };
                    cluster.set_clock(node, first, true)
                }))
                .await;
                for ((node, skew), result) in nodes.iter().zip(&skews).zip(results) {
                    match result {
                        Ok(r) => {
                            measured.insert(node.clone(), json!(r.measured_ms));
                        }
                        Err(e) => fr.errors.push(format!("{node}: {e}")),
                    }
                    offsets.insert(node.clone(), json!(skew));
                }
                detail["aim"] = json!(aim.name());
                detail["mode"] = json!(mode.name());
                fr.kind = Some(mode.name().to_string());
                detail["nodes"] = json!(nodes);
                detail["offsets_ms"] = json!(offsets);
                detail["measured_ms"] = json!(measured);
                fr.nodes = nodes.clone();
                Active::Clock { mode, nodes, skews }
            }
            FaultKind::Latency | FaultKind::Loss => {
                let (latency, jitter, loss) = if fault == FaultKind::Latency {
                    (config.latency, config.latency / 2, 0.0)
                } else {
                    (Duration::ZERO, Duration::ZERO, config.loss)
                };
                if let Err(e) = cluster.degrade(latency, jitter, loss) {
                    fr.errors.push(e);
                }
                detail["latency_ms"] = json!(latency.as_secs_f64() * 1e3);
                detail["jitter_ms"] = json!(jitter.as_secs_f64() * 1e3);
                detail["loss"] = json!(loss);
                fr.nodes = all.clone();
                Active::Degraded
            }
        };
        detail["errors"] = json!(fr.errors);
        record("start", detail);
        tracing::info!(id, %fault, nodes = ?fr.nodes, "fault started");
        let stopping = hold(cluster, &active, config.interval, &mut stop).await;
        let mut end = json!({"id": id, "fault": fault.name()});
        let healed = heal(cluster, &active, &mut fr.errors).await;
        if let Some(m) = healed {
            end["measured_ms"] = m;
        }
        end["errors"] = json!(fr.errors);
        fr.end_ms = Some(since(Instant::now()));
        record("stop", end);
        tracing::info!(id, %fault, "fault healed");
        applied.push(fr);
        if stopping {
            break;
        }
    }
    applied
}

/// A fault in force, with what healing it needs.
enum Active {
    /// Killed nodes, healed by restarting them.
    Killed(Vec<String>),
    /// Paused nodes, healed by SIGCONT.
    Paused(Vec<String>),
    Partition,
    Clock {
        mode: ClockMode,
        nodes: Vec<String>,
        skews: Vec<f64>,
    },
    Degraded,
}

/// Keeps a fault in force for `interval` (strobing or drifting clocks meanwhile); returns
/// whether the schedule was told to stop.
async fn hold<C: Cluster>(
    cluster: &C,
    active: &Active,
    interval: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let Active::Clock { mode, nodes, skews } = active else {
        return wait(interval, stop).await;
    };
    let started = Instant::now();
    let step = match mode {
        ClockMode::Bump => return wait(interval, stop).await,
        ClockMode::Strobe => Duration::from_millis(250),
        ClockMode::Drift => Duration::from_millis(100),
    };
    let mut flip = false;
    loop {
        if wait(step.min(interval.saturating_sub(started.elapsed())), stop).await {
            return true;
        }
        if started.elapsed() >= interval {
            return false;
        }
        flip = !flip;
        let progress = started.elapsed().as_secs_f64() / interval.as_secs_f64().max(1e-9);
        for (node, skew) in nodes.iter().zip(skews) {
            let offset = match mode {
                ClockMode::Strobe if flip => 0.0,
                ClockMode::Drift => skew * progress,
                _ => *skew,
            };
            // Best effort while strobing: a failure is reported when the fault heals.
            let _ = cluster.set_clock(node, offset, false).await;
        }
    }
}

/// Sleeps for `d`, or until `stop` turns true; returns whether it was told to stop.
async fn wait(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

fn start_process<C: Cluster>(
    cluster: &C,
    fault: FaultKind,
    nodes: &[String],
    errors: &mut Vec<String>,
) {
    for node in nodes {
        let Some(pgid) = cluster.process_group(node) else {
            errors.push(format!("{node} was not running"));
            continue;
        };
        let result = match fault {
            FaultKind::Kill => {
                cluster.killed(node);
                process::kill(pgid)
            }
            _ => process::pause(pgid),
        };
        if let Err(e) = result {
            errors.push(format!("{node}: {e}"));
        }
    }
}

/// Ends a fault. For clocks, returns the offsets measured after the reset.
async fn heal<C: Cluster>(
    cluster: &C,
    active: &Active,
    errors: &mut Vec<String>,
) -> Option<serde_json::Value> {
    match active {
        // Which fault it was decides the cure, not whether the process still shows as
        // running: a node killed an instant before the heal may not be reaped yet, and
        // resuming it instead of restarting it would leave it dead for the rest of the test.
        Active::Killed(nodes) | Active::Paused(nodes) => {
            for node in nodes {
                let result = match (active, cluster.process_group(node)) {
                    (Active::Paused(_), Some(pgid)) => process::resume(pgid),
                    // A paused node that is gone (it crashed meanwhile) is restarted too.
                    _ => cluster.restart(node).await,
                };
                if let Err(e) = result {
                    tracing::warn!(node, error = %e, "could not heal a fault");
                    errors.push(format!("{node}: {e}"));
                }
            }
            None
        }
        Active::Partition => {
            if let Err(e) = cluster.partition(&Grudge::new()) {
                errors.push(e);
            }
            None
        }
        Active::Clock { nodes, .. } => {
            let mut measured = serde_json::Map::new();
            let results =
                join_all(nodes.iter().map(|node| cluster.set_clock(node, 0.0, true))).await;
            for (node, result) in nodes.iter().zip(results) {
                match result {
                    Ok(r) => {
                        measured.insert(node.clone(), json!(r.measured_ms));
                    }
                    Err(e) => errors.push(format!("{node}: {e}")),
                }
            }
            Some(serde_json::Value::Object(measured))
        }
        Active::Degraded => {
            if let Err(e) = cluster.degrade(Duration::ZERO, Duration::ZERO, 0.0) {
                errors.push(e);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClockReading;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn config(seed: u64) -> NemesisConfig {
        NemesisConfig {
            faults: vec![FaultKind::Kill, FaultKind::Pause],
            aims: Aim::ALL.to_vec(),
            partitions: PartitionKind::ALL.to_vec(),
            clock_modes: ClockMode::ALL.to_vec(),
            clock_skew: Duration::from_secs(1),
            latency: Duration::from_millis(50),
            loss: 0.1,
            interval: Duration::from_secs(1),
            seed,
        }
    }

    /// A cluster whose one node always looks running (as a killed process does until it is
    /// reaped), recording the restarts asked for.
    struct Unreaped {
        pgid: i32,
        restarts: std::sync::Mutex<Vec<String>>,
    }

    impl Cluster for Unreaped {
        fn nodes(&self) -> Vec<String> {
            vec!["n1".to_string()]
        }
        async fn leader(&self) -> Option<String> {
            None
        }
        fn process_group(&self, _node: &str) -> Option<i32> {
            Some(self.pgid)
        }
        fn killed(&self, _node: &str) {}
        async fn restart(&self, node: &str) -> Result<(), String> {
            self.restarts
                .lock()
                .map_err(|e| e.to_string())?
                .push(node.to_string());
            Ok(())
        }
        fn partition(&self, _grudge: &Grudge) -> Result<(), String> {
            Ok(())
        }
        async fn set_clock(&self, _: &str, _: f64, _: bool) -> Result<ClockReading, String> {
            Ok(ClockReading::default())
        }
        fn degrade(&self, _: Duration, _: Duration, _: f64) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_kill_is_healed_by_a_restart_even_before_the_process_is_reaped() {
        use std::os::unix::process::CommandExt as _;
        // A real process group to stand for the node, so resuming it is harmless.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("start sleep");
        let cluster = Unreaped {
            pgid: sleeper.id() as i32,
            restarts: std::sync::Mutex::new(Vec::new()),
        };
        let mut errors = Vec::new();
        heal(&cluster, &Active::Killed(vec!["n1".into()]), &mut errors).await;
        assert_eq!(*cluster.restarts.lock().unwrap(), vec!["n1".to_string()]);
        heal(&cluster, &Active::Paused(vec!["n1".into()]), &mut errors).await;
        assert_eq!(
            cluster.restarts.lock().unwrap().len(),
            1,
            "a pause was restarted"
        );
        assert!(errors.is_empty(), "{errors:?}");
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }

    #[test]
    fn aims_hit_the_right_number_of_nodes() {
        let mut s = Schedule::new(&config(1));
        let five = nodes(5);
        assert_eq!(s.choose_nodes(Aim::One, &five, None).len(), 1);
        assert_eq!(s.choose_nodes(Aim::Minority, &five, None).len(), 2);
        assert_eq!(s.choose_nodes(Aim::Majority, &five, None).len(), 3);
        assert_eq!(s.choose_nodes(Aim::All, &five, None), five);
        assert_eq!(
            s.choose_nodes(Aim::Leader, &five, Some("n4".into())),
            vec!["n4".to_string()]
        );
        assert_eq!(s.choose_nodes(Aim::Leader, &five, None).len(), 1);
        let three = nodes(3);
        assert_eq!(s.choose_nodes(Aim::Minority, &three, None).len(), 1);
        assert_eq!(s.choose_nodes(Aim::Majority, &three, None).len(), 2);
    }

    #[test]
    fn the_same_seed_makes_the_same_decisions() {
        let decide = |seed| {
            let mut s = Schedule::new(&config(seed));
            (0..20)
                .map(|_| {
                    let (f, a) = s.next_fault().expect("faults configured");
                    (f, a, s.choose_nodes(a, &nodes(5), None))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(decide(3), decide(3));
        assert_ne!(decide(3), decide(4));
    }
}
