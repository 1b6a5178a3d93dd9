//! The seeded fault schedule: quiet period, fault, quiet period, fault, ... until told to
//! stop, then every fault still active is healed. Which fault, aimed at what, hitting which
//! nodes, is drawn from the seed, so the same seed makes the same decisions (wall-clock
//! timing, and so the exact operations a fault overlaps, naturally varies).

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::{process, Aim, Cluster, FaultKind, NemesisConfig};

/// A fault as it was applied, for the run's results.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub id: u64,
    pub fault: FaultKind,
    pub aim: Aim,
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
        let leader = match aim {
            Aim::Leader => cluster.leader().await,
            _ => None,
        };
        let nodes = schedule.choose_nodes(aim, &cluster.nodes(), leader);
        let id = applied.len() as u64 + 1;
        let mut fr = FaultRecord {
            id,
            fault,
            aim,
            nodes: nodes.clone(),
            start_ms: since(Instant::now()),
            end_ms: None,
            errors: Vec::new(),
        };
        record(
            "start",
            json!({"id": id, "fault": fault.name(), "aim": aim.name(), "nodes": nodes}),
        );
        start(cluster, fault, &nodes, &mut fr.errors);
        tracing::info!(id, %fault, %aim, ?nodes, "fault started");
        let stopping = wait(config.interval, &mut stop).await;
        heal(cluster, fault, &nodes, &mut fr.errors).await;
        fr.end_ms = Some(since(Instant::now()));
        record(
            "stop",
            json!({"id": id, "fault": fault.name(), "nodes": nodes, "errors": fr.errors}),
        );
        tracing::info!(id, %fault, "fault healed");
        applied.push(fr);
        if stopping {
            break;
        }
    }
    applied
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

fn start<C: Cluster>(cluster: &C, fault: FaultKind, nodes: &[String], errors: &mut Vec<String>) {
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
            FaultKind::Pause => process::pause(pgid),
        };
        if let Err(e) = result {
            errors.push(format!("{node}: {e}"));
        }
    }
}

async fn heal<C: Cluster>(
    cluster: &C,
    fault: FaultKind,
    nodes: &[String],
    errors: &mut Vec<String>,
) {
    for node in nodes {
        let result = match fault {
            FaultKind::Kill => cluster.restart(node).await,
            FaultKind::Pause => match cluster.process_group(node) {
                Some(pgid) => process::resume(pgid),
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::warn!(node, error = %e, "could not heal a fault");
            errors.push(format!("{node}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn config(seed: u64) -> NemesisConfig {
        NemesisConfig {
            faults: vec![FaultKind::Kill, FaultKind::Pause],
            aims: Aim::ALL.to_vec(),
            interval: Duration::from_secs(1),
            seed,
        }
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
