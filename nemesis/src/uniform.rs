//! The uniform schedule: quiet period, fault, quiet period, fault, ... each `interval` long.
//! Every fault's kind, aim and shape is drawn uniformly from the configured ones. It is the
//! schedule faultline had first, kept for tests that want one fault at a time at a steady
//! rhythm (`--schedule uniform`, or any of `--nemesis-interval` / `--nemesis-targets`).

use std::time::Instant;

use serde_json::Value;
use tokio::sync::watch;

use crate::inject::{clock_offsets, wait, Fault, FaultRecord, Injector, Origin};
use crate::partition;
use crate::{Cluster, FaultKind, NemesisConfig, Schedule};

pub async fn run<C: Cluster>(
    cluster: &C,
    config: &NemesisConfig,
    test_start: Instant,
    record: &(dyn Fn(&str, Value) + Send + Sync),
    mut stop: watch::Receiver<bool>,
) -> Vec<FaultRecord> {
    let mut schedule = Schedule::new(config);
    let mut injector = Injector::new(cluster, test_start, record);
    loop {
        if wait(config.interval.max(config.min_quiet), &mut stop).await {
            break;
        }
        let Some((kind, aim)) = schedule.next_fault() else {
            // No faults configured: idle until told to stop.
            let _ = stop.wait_for(|s| *s).await;
            break;
        };
        let leader = match (kind, aim) {
            (FaultKind::Partition, _) | (_, crate::Aim::Leader) => cluster.leader().await,
            _ => None,
        };
        let all = cluster.nodes();
        let aimed = matches!(
            kind,
            FaultKind::Kill | FaultKind::Pause | FaultKind::LoseUnfsynced | FaultKind::Clock
        );
        let fault = match kind {
            FaultKind::Kill => Fault::Kill(schedule.choose_nodes(aim, &all, leader)),
            FaultKind::LoseUnfsynced => {
                Fault::LoseUnfsynced(schedule.choose_nodes(aim, &all, leader))
            }
            FaultKind::Pause => Fault::Pause(schedule.choose_nodes(aim, &all, leader)),
            FaultKind::Partition => {
                let shape = schedule.next_partition();
                let grudge = partition::grudge(shape, &all, leader.as_deref(), schedule.rng());
                Fault::Partition {
                    shape: shape.name().to_string(),
                    grudge,
                }
            }
            FaultKind::Clock => {
                let nodes = schedule.choose_nodes(aim, &all, leader);
                let mode = schedule.next_clock_mode();
                let offsets_ms = clock_offsets(&mut schedule, config, &nodes);
                Fault::Clock {
                    mode,
                    nodes,
                    offsets_ms,
                }
            }
            FaultKind::Latency => Fault::Latency {
                latency: config.latency,
                jitter: config.latency / 2,
            },
            FaultKind::Loss => Fault::Loss(config.loss),
        };
        let origin = Origin {
            aim: aimed.then_some(aim),
            ..Origin::default()
        };
        let active = injector.start(fault, origin).await;
        let stopping = injector.hold(&active, config.interval, &mut stop).await;
        injector.heal(active).await;
        if stopping {
            break;
        }
    }
    injector.into_records()
}
