//! The seeded decisions of a nemesis, which the schedules ([`crate::adaptive`],
//! [`crate::uniform`]) draw from. Which fault, aimed at what, hitting which nodes, for how long,
//! is drawn from the seed, so the same seed makes the same decisions given the same observations
//! (wall-clock timing, who wins an election, and so the exact operations a fault overlaps,
//! naturally vary).

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::partition::PartitionKind;
use crate::{Aim, ClockMode, FaultKind, NemesisConfig};

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

    /// The random source every decision comes from.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// The fault kinds configured.
    pub fn faults(&self) -> &[FaultKind] {
        &self.faults
    }

    /// The partition shapes configured.
    pub fn partitions(&self) -> &[PartitionKind] {
        &self.partitions
    }

    /// A duration drawn uniformly between `lo` and `hi` seconds.
    pub fn seconds(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(self.rng.random_range(lo..=hi.max(lo)))
    }

    /// One of `items`, drawn uniformly (`None` if empty).
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.random_range(0..items.len())].clone())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use crate::inject::{Fault, Injector, Origin};
    use crate::{ClockReading, Cluster, Grudge, Leader, ScheduleKind};

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn config(seed: u64) -> NemesisConfig {
        NemesisConfig {
            schedule: ScheduleKind::Uniform,
            faults: vec![FaultKind::Kill, FaultKind::Pause],
            aims: Aim::ALL.to_vec(),
            partitions: PartitionKind::ALL.to_vec(),
            clock_modes: ClockMode::ALL.to_vec(),
            clock_skew: Duration::from_secs(1),
            latency: Duration::from_millis(50),
            loss: 0.1,
            interval: Duration::from_secs(1),
            min_quiet: Duration::ZERO,
            seed,
            replay: Vec::new(),
            replay_aim: crate::replay::ReplayAim::Leader,
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
        fn observed_leader(&self) -> Option<Leader> {
            None
        }
        async fn await_new_leader(&self, _: Option<&Leader>, _: Duration) -> Option<Leader> {
            None
        }
        fn process_group(&self, _node: &str) -> Option<i32> {
            Some(self.pgid)
        }
        fn killed(&self, _node: &str) {}
        async fn lose_unfsynced(&self, _node: &str) -> Result<String, String> {
            Ok(String::new())
        }
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
        let record = |_: &str, _: serde_json::Value| {};
        let mut injector = Injector::new(&cluster, Instant::now(), &record);
        let killed = injector
            .start(Fault::Kill(vec!["n1".into()]), Origin::default())
            .await;
        // The "kill" went to a process that is still running (as an unreaped one would).
        injector.heal(killed).await;
        assert_eq!(*cluster.restarts.lock().unwrap(), vec!["n1".to_string()]);
        let paused = injector
            .start(Fault::Pause(vec!["n1".into()]), Origin::default())
            .await;
        injector.heal(paused).await;
        assert_eq!(
            cluster.restarts.lock().unwrap().len(),
            1,
            "a pause was restarted"
        );
        let records = injector.into_records();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.end_ms.is_some()));
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
