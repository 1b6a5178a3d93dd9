//! # faultline-nemesis
//!
//! The faults faultline injects, and the seeded schedules that inject them. A nemesis acts on
//! a [`Cluster`] — whatever the controller says the nodes are, and who it last saw leading — so it
//! works the same against the bundled Raft, etcd or a custom system, and never depends on how
//! a target is started.
//!
//! * [`adaptive`]: the default schedule, short fault scenarios aimed at the leader and at
//!   elections; [`uniform`]: one fault at a time at a steady rhythm.
//! * [`inject`]: starting and healing single faults, and their records.
//! * [`process`], [`partition`] and [`net`], [`proxy`], [`clock`]: the faults themselves.
//!
//! Every fault has a start and an end, both recorded in the history (by the caller, through
//! the `record` callback) so a report can shade the window and a reader can tell which
//! operations ran under which fault.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod adaptive;
pub mod clock;
pub mod inject;
pub mod net;
pub mod partition;
pub mod process;
pub mod proxy;
pub mod replay;
pub mod schedule;
pub mod uniform;
pub mod upgrade;

pub use inject::FaultRecord;
pub use net::Grudge;
pub use partition::PartitionKind;
pub use schedule::Schedule;

/// Runs the configured schedule until `stop` turns true, then heals every fault still in
/// force. `record(f, value)` is called for each fault's start (`f = "start"`) and end
/// (`f = "stop"`), to go into the history. Returns every fault applied.
pub async fn run<C: Cluster>(
    cluster: &C,
    config: &NemesisConfig,
    test_start: std::time::Instant,
    record: &(dyn Fn(&str, serde_json::Value) + Send + Sync),
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<FaultRecord> {
    match config.schedule {
        ScheduleKind::Adaptive => adaptive::run(cluster, config, test_start, record, stop).await,
        ScheduleKind::Uniform => uniform::run(cluster, config, test_start, record, stop).await,
        ScheduleKind::Replay => replay::run(cluster, config, test_start, record, stop).await,
    }
}

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the node's processes; restart them (same data directory) when the fault ends.
    Kill,
    /// SIGSTOP the node's processes; SIGCONT when the fault ends.
    Pause,
    /// SIGKILL the node's processes *and* drop every write and directory change its data
    /// directory had not made durable (fsync), as a power loss would; restart the node on what
    /// a disk would have kept when the fault ends. Needs the data directories served through
    /// faultline's FUSE filesystem (root and /dev/fuse).
    LoseUnfsynced,
    /// A network partition from Jepsen's catalogue (see [`PartitionKind`]); healed at the end.
    Partition,
    /// Skew the clocks of some nodes (bump, strobe or drift; see [`ClockMode`]); reset at the
    /// end.
    Clock,
    /// Delay every message between nodes (with jitter). Needs the proxy network.
    Latency,
    /// Drop a fraction of the messages between nodes. Needs the proxy network.
    Loss,
}

impl FaultKind {
    pub const NAMES: &'static [&'static str] = &[
        "kill",
        "pause",
        "lose-unfsynced",
        "partition",
        "clock",
        "latency",
        "loss",
    ];
    pub const ALL: &'static [FaultKind] = &[
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::LoseUnfsynced,
        FaultKind::Partition,
        FaultKind::Clock,
        FaultKind::Latency,
        FaultKind::Loss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::LoseUnfsynced => "lose-unfsynced",
            FaultKind::Partition => "partition",
            FaultKind::Clock => "clock",
            FaultKind::Latency => "latency",
            FaultKind::Loss => "loss",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown nemesis {s:?}; the nemeses are: {}",
                    FaultKind::NAMES.join(", ")
                )
            })
    }
}

/// Which nodes a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aim {
    /// One node, chosen at random.
    One,
    /// A random minority (at most (n-1)/2 nodes, at least one).
    Minority,
    /// A random majority (n/2 + 1 nodes).
    Majority,
    /// Every node.
    All,
    /// The node that currently claims to lead (falls back to a random node when none does).
    Leader,
}

impl Aim {
    pub const NAMES: &'static [&'static str] = &["one", "minority", "majority", "all", "leader"];
    pub const ALL: &'static [Aim] = &[
        Aim::One,
        Aim::Minority,
        Aim::Majority,
        Aim::All,
        Aim::Leader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Aim::One => "one",
            Aim::Minority => "minority",
            Aim::Majority => "majority",
            Aim::All => "all",
            Aim::Leader => "leader",
        }
    }
}

impl fmt::Display for Aim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Aim {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Aim::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown nemesis target {s:?}; the targets are: {}",
                    Aim::NAMES.join(", ")
                )
            })
    }
}

/// How a clock fault skews a node's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// Jump by ±skew, once.
    Bump,
    /// Flip between +skew and 0 every few hundred milliseconds.
    Strobe,
    /// Run fast or slow: the offset grows steadily to ±skew over the fault.
    Drift,
}

impl ClockMode {
    pub const ALL: &'static [ClockMode] = &[ClockMode::Bump, ClockMode::Strobe, ClockMode::Drift];

    pub fn name(self) -> &'static str {
        match self {
            ClockMode::Bump => "bump",
            ClockMode::Strobe => "strobe",
            ClockMode::Drift => "drift",
        }
    }
}

impl fmt::Display for ClockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ClockMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ClockMode::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown clock fault {s:?}; the clock faults are: bump, strobe, drift")
            })
    }
}

/// What a clock change did, as measured on the node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClockReading {
    /// The offset the node's wall clock showed against the controller's, in milliseconds,
    /// once the change took effect (`None` if the node could not be asked).
    pub measured_ms: Option<f64>,
}

/// A node that claims to lead, and the term it claims to lead (if the target reports terms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub node: String,
    pub term: Option<u64>,
}

/// The cluster as a nemesis sees it. Implemented by the controller.
pub trait Cluster: Send + Sync {
    /// Node names, in a stable order.
    fn nodes(&self) -> Vec<String>;
    /// The node that currently claims to be the leader, if the target can tell.
    fn leader(&self) -> impl std::future::Future<Output = Option<String>> + Send;
    /// The leader as last observed, without asking the nodes now (the controller samples every
    /// node's role continuously): the node claiming to lead the highest term. `None` when no
    /// node claims to lead, or the target cannot tell.
    fn observed_leader(&self) -> Option<Leader>;
    /// Waits up to `timeout` until a leader other than `old` is observed (another node, or the
    /// same node in a higher term); returns it, or `None` on timeout. With `old` = `None`,
    /// any leader will do.
    fn await_new_leader(
        &self,
        old: Option<&Leader>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Option<Leader>> + Send;
    /// The process group of a running node (every process of the node is in it).
    fn process_group(&self, node: &str) -> Option<i32>;
    /// Sends `signal` to `pgid`, the node's process group as [`Cluster::process_group`] gave
    /// it, wherever the node runs (a node on another host has its process group there, not
    /// here). A group that exited meanwhile is not an error.
    fn signal_group(
        &self,
        _node: &str,
        pgid: i32,
        signal: nix::sys::signal::Signal,
    ) -> Result<(), String> {
        process::signal_group(pgid, signal)
    }
    /// Tells the controller a node was killed on purpose (so it is not reported as a crash).
    fn killed(&self, node: &str);
    /// Drops what a killed node's data directory had not made durable (see
    /// [`FaultKind::LoseUnfsynced`]); says what was lost.
    fn lose_unfsynced(
        &self,
        node: &str,
    ) -> impl std::future::Future<Output = Result<String, String>> + Send;
    /// Starts a killed node again, with its data directory intact.
    fn restart(&self, node: &str) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// Applies a grudge (replacing any partition in force); an empty grudge heals.
    fn partition(&self, grudge: &Grudge) -> Result<(), String>;
    /// Sets a node's clock offset (milliseconds, relative to real time; 0 resets it) and,
    /// when `verify`, measures its effect on the node.
    fn set_clock(
        &self,
        node: &str,
        offset_ms: f64,
        verify: bool,
    ) -> impl std::future::Future<Output = Result<ClockReading, String>> + Send;
    /// Delays every message between nodes by `latency` ± `jitter` and drops a fraction `loss`
    /// of them (zeroes restore the network).
    fn degrade(&self, latency: Duration, jitter: Duration, loss: f64) -> Result<(), String>;
    /// Which version of a rolling upgrade's path (an index into
    /// [`upgrade::UpgradePlan::versions`]) the node runs now; `None` without an upgrade.
    fn node_version(&self, _node: &str) -> Option<usize> {
        None
    }
    /// Stops the node (its stop signal, then SIGKILL after the grace period) and starts it
    /// again on the same data directory with the binary of `version`. Returns once the new
    /// process is started (see [`Cluster::await_rejoin`]).
    fn swap_version(
        &self,
        _node: &str,
        _version: usize,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        async { Err("this cluster cannot swap binaries".to_string()) }
    }
    /// Waits up to `timeout` until a node just started answers and knows a leader, or its
    /// process exits.
    fn await_rejoin(
        &self,
        _node: &str,
        _timeout: Duration,
    ) -> impl std::future::Future<Output = upgrade::Rejoin> + Send {
        async {
            upgrade::Rejoin::TimedOut {
                log_tail: String::new(),
            }
        }
    }
}

/// Which schedule decides when faults happen and whom they hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// Short, dense fault scenarios aimed at the leader and at elections, reacting to the
    /// leader and term the controller observes (see [`adaptive`]). The default.
    Adaptive,
    /// One fault at a time, each `interval` long, alternating with quiet periods of the same
    /// length; kind, aim and shape drawn uniformly (see [`uniform`]).
    Uniform,
    /// The faults of a recorded run, at the same offsets from the start (see [`replay`]).
    Replay,
}

impl ScheduleKind {
    pub const NAMES: &'static [&'static str] = &["adaptive", "uniform", "replay"];

    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Adaptive => "adaptive",
            ScheduleKind::Uniform => "uniform",
            ScheduleKind::Replay => "replay",
        }
    }
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adaptive" => Ok(ScheduleKind::Adaptive),
            "uniform" => Ok(ScheduleKind::Uniform),
            "replay" => Ok(ScheduleKind::Replay),
            other => Err(format!(
                "unknown schedule {other:?}; the schedules are: adaptive, uniform, replay"
            )),
        }
    }
}

/// How faults are scheduled.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// Which schedule.
    pub schedule: ScheduleKind,
    /// Fault kinds to choose from (empty: no faults).
    pub faults: Vec<FaultKind>,
    /// Targets to choose from (process and clock faults).
    pub aims: Vec<Aim>,
    /// Partition shapes to choose from.
    pub partitions: Vec<PartitionKind>,
    /// Clock faults to choose from.
    pub clock_modes: Vec<ClockMode>,
    /// Largest clock offset a clock fault applies.
    pub clock_skew: Duration,
    /// Message delay (and jitter, half of it) of a latency fault.
    pub latency: Duration,
    /// Fraction of messages a loss fault drops.
    pub loss: f64,
    /// Uniform schedule: length of each fault, and of each quiet period between faults.
    pub interval: Duration,
    /// The shortest quiet period either schedule leaves between faults (so that a recovery
    /// bound, `--max-recovery`, can be judged after every heal).
    pub min_quiet: Duration,
    pub seed: u64,
    /// Replay schedule: the faults to apply, and how their nodes are chosen.
    pub replay: Vec<replay::PlannedFault>,
    pub replay_aim: replay::ReplayAim,
}
