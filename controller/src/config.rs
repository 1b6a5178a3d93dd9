//! The test definition: a TOML file (`--config`) and flags that override it.
//!
//! Everything has a default, so `faultline test` alone runs a sensible test. The fully resolved
//! definition (seed included) is written to the run's `test.toml`; giving that file back with
//! `--config` repeats the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_nemesis::replay::{PlannedFault, ReplayAim};
use faultline_nemesis::upgrade::UpgradeOrder;
use faultline_nemesis::{Aim, ClockMode, FaultKind, PartitionKind, ScheduleKind};
use faultline_workloads::WorkloadKind;
use serde::{Deserialize, Serialize};

/// A test definition as written in a TOML file. Every field is optional; unknown fields are
/// errors (a typo must not silently run a different test).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pub name: Option<String>,
    pub target: Option<String>,
    /// The custom target's definition file.
    pub target_config: Option<PathBuf>,
    pub nodes: Option<usize>,
    pub workload: Option<String>,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub time_limit: Option<f64>,
    pub op_timeout: Option<f64>,
    pub nemesis: Option<Vec<String>>,
    /// A named set of defaults for the keys below (`crash-storm`); keys given explicitly win.
    pub profile: Option<String>,
    pub schedule: Option<String>,
    pub nemesis_interval: Option<f64>,
    pub nemesis_targets: Option<Vec<String>>,
    pub partitions: Option<Vec<String>>,
    pub clock_modes: Option<Vec<String>>,
    pub clock_skew_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub loss: Option<f64>,
    pub net: Option<String>,
    pub net_range: Option<String>,
    pub recovery: Option<f64>,
    pub seed: Option<u64>,
    pub results_dir: Option<PathBuf>,
    pub base_port: Option<u16>,
    pub check_time_limit: Option<f64>,
    pub max_recovery: Option<f64>,
    /// Replay schedule: whether faults aimed at the recorded leader follow today's leader
    /// (`leader`, the default) or keep their node names (`literal`).
    pub replay_aim: Option<String>,
    /// The run this definition replays (for the reader and the results; not read back).
    pub replay_of: Option<String>,
    pub raft: Option<RaftSection>,
    pub etcd: Option<EtcdSection>,
    pub consul: Option<ConsulSection>,
    /// A fixed fault schedule (`[[faults]]` tables): with it the schedule is `replay`.
    pub faults: Option<Vec<PlannedFault>>,
    /// A rolling upgrade during the test (`[upgrade]`).
    pub upgrade: Option<UpgradeSection>,
    /// Run the nodes on these hosts over SSH (`[hosts]`), one node per host.
    pub hosts: Option<faultline_remote::HostsSection>,
}

/// `[upgrade]`: a rolling upgrade run alongside the faults (see `faultline_nemesis::upgrade`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSection {
    /// The binary the cluster starts on [default: the target's own binary].
    pub from: Option<PathBuf>,
    /// The binary to upgrade to, or a list for a multi-step path (one pass each).
    pub to: Option<Binaries>,
    /// Extra arguments for nodes running a `to` binary (flags only the new version knows).
    pub to_args: Option<Vec<String>>,
    /// followers-first, leader-first or random [default: followers-first].
    pub order: Option<String>,
    /// After the upgrade, move every node back to `from` [default: false].
    pub downgrade: Option<bool>,
    /// Seconds each pass holds the cluster mixed once a majority of its nodes moved [default: 0].
    pub stall: Option<f64>,
    /// Seconds after the start of the test before the first step [default: 5].
    pub start: Option<f64>,
    /// Seconds between a node rejoining and the next step [default: 2].
    pub gap: Option<f64>,
    /// Seconds between the end of one pass and the next (the downgrade) [default: 10].
    pub pass_gap: Option<f64>,
    /// Seconds a restarted node may take to rejoin before that is a finding [default: 60].
    pub rejoin_timeout: Option<f64>,
}

/// One binary, or several in order.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Binaries {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl Binaries {
    pub fn to_vec(&self) -> Vec<PathBuf> {
        match self {
            Binaries::One(p) => vec![p.clone()],
            Binaries::Many(v) => v.clone(),
        }
    }
}

/// A rolling upgrade, resolved (binaries are checked to exist; their versions are asked when
/// the test starts).
#[derive(Clone, Debug, PartialEq)]
pub struct UpgradeConfig {
    /// `None`: the target's own binary.
    pub from: Option<PathBuf>,
    pub to: Vec<PathBuf>,
    pub to_args: Vec<String>,
    pub order: UpgradeOrder,
    pub downgrade: bool,
    pub stall: Duration,
    pub start: Duration,
    pub gap: Duration,
    pub pass_gap: Duration,
    pub rejoin_timeout: Duration,
}

impl UpgradeSection {
    fn merged(self, over: UpgradeSection) -> UpgradeSection {
        UpgradeSection {
            from: over.from.or(self.from),
            to: over.to.or(self.to),
            to_args: over.to_args.or(self.to_args),
            order: over.order.or(self.order),
            downgrade: over.downgrade.or(self.downgrade),
            stall: over.stall.or(self.stall),
            start: over.start.or(self.start),
            gap: over.gap.or(self.gap),
            pass_gap: over.pass_gap.or(self.pass_gap),
            rejoin_timeout: over.rejoin_timeout.or(self.rejoin_timeout),
        }
    }

    fn resolve(self, time_limit: Duration) -> Result<UpgradeConfig, String> {
        let to = self.to.map(|t| t.to_vec()).unwrap_or_default();
        if to.is_empty() {
            return Err("upgrade.to (--upgrade-to): give the binary to upgrade to".to_string());
        }
        let binaries = self.from.iter().map(|p| ("upgrade.from", p));
        for (key, path) in binaries.chain(to.iter().map(|p| ("upgrade.to", p))) {
            check_executable(key, path)?;
        }
        // Absolute, so test.toml repeats the run from any folder.
        let absolute = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        let to: Vec<PathBuf> = to.iter().map(absolute).collect();
        let from = self.from.as_ref().map(absolute);
        let secs = |key: &str, v: Option<f64>, default: f64, min: f64| {
            seconds(&format!("upgrade.{key}"), v, default, min)
        };
        let start = secs("start", self.start, 5.0, 0.0)?;
        if start >= time_limit {
            return Err(format!(
                "upgrade.start: {} s is not within the test's time limit ({} s)",
                start.as_secs_f64(),
                time_limit.as_secs_f64()
            ));
        }
        Ok(UpgradeConfig {
            from,
            to,
            to_args: self.to_args.unwrap_or_default(),
            order: match self.order {
                None => UpgradeOrder::default(),
                Some(o) => o.parse().map_err(|e| format!("upgrade.order: {e}"))?,
            },
            downgrade: self.downgrade.unwrap_or(false),
            stall: secs("stall", self.stall, 0.0, 0.0)?,
            start,
            gap: secs("gap", self.gap, 2.0, 0.0)?,
            pass_gap: secs("pass_gap", self.pass_gap, 10.0, 0.0)?,
            rejoin_timeout: secs("rejoin_timeout", self.rejoin_timeout, 60.0, 1.0)?,
        })
    }
}

impl UpgradeConfig {
    fn to_section(&self) -> UpgradeSection {
        UpgradeSection {
            from: self.from.clone(),
            to: Some(match self.to.as_slice() {
                [one] => Binaries::One(one.clone()),
                many => Binaries::Many(many.to_vec()),
            }),
            to_args: (!self.to_args.is_empty()).then(|| self.to_args.clone()),
            order: Some(self.order.to_string()),
            downgrade: Some(self.downgrade),
            stall: Some(self.stall.as_secs_f64()),
            start: Some(self.start.as_secs_f64()),
            gap: Some(self.gap.as_secs_f64()),
            pass_gap: Some(self.pass_gap.as_secs_f64()),
            rejoin_timeout: Some(self.rejoin_timeout.as_secs_f64()),
        }
    }
}

/// A duration key in seconds (`default` when left out), between `min` and a week.
fn seconds(key: &str, v: Option<f64>, default: f64, min: f64) -> Result<Duration, String> {
    let s = v.unwrap_or(default);
    if !s.is_finite() || s < min || s > MAX_SECONDS {
        return Err(format!(
            "{key}: must be a number of seconds, at least {min} and at most {MAX_SECONDS}, got {s}"
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A binary named in the test definition must be an executable file.
fn check_executable(key: &str, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(m) if m.is_file() => Err(format!(
            "{key}: {} is not executable (chmod +x it)",
            path.display()
        )),
        Ok(_) => Err(format!("{key}: {} is not a file", path.display())),
        Err(e) => Err(format!("{key}: {}: {e}", path.display())),
    }
}

/// `[etcd]`: options of the etcd target.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    /// The etcd binary (default: `etcd` on PATH).
    pub binary: Option<PathBuf>,
    /// Read with serializable (member-local, possibly stale) ranges instead of linearizable.
    pub serializable_reads: Option<bool>,
}

/// `[consul]`: options of the Consul target.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulSection {
    /// The consul binary (default: `consul` on PATH).
    pub binary: Option<PathBuf>,
}

/// `[raft]`: options of the bundled Raft target.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    pub bugs: Option<Vec<String>>,
    pub read_mode: Option<String>,
    /// The `faultline` binary whose `node` command runs the nodes (default: this one), to
    /// test another build of the bundled Raft.
    pub binary: Option<PathBuf>,
}

/// How nodes are networked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetBackend {
    /// All nodes on 127.0.0.1; no network faults.
    Loopback,
    /// One network namespace per node, partitions as nftables rules (needs root).
    Netns,
    /// Nodes on 127.0.0.1 with every peer link relayed by the controller (partitions,
    /// latency, loss; no privileges needed; bundled Raft only).
    Proxy,
    /// Nodes on SSH hosts, one per host; partitions as nftables rules on each host.
    Hosts,
}

impl NetBackend {
    pub fn name(self) -> &'static str {
        match self {
            NetBackend::Loopback => "loopback",
            NetBackend::Netns => "netns",
            NetBackend::Proxy => "proxy",
            NetBackend::Hosts => "hosts",
        }
    }
}

/// The targets `faultline test` can run.
pub const TARGETS: &[&str] = &["raft", "etcd", "consul", "custom"];

/// A fully resolved, validated test definition.
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub name: String,
    pub target: String,
    pub target_config: Option<PathBuf>,
    pub nodes: usize,
    pub workload: WorkloadKind,
    pub concurrency: usize,
    /// Operations per second across all clients; 0 means as fast as the clients can go.
    pub rate: f64,
    pub time_limit: Duration,
    pub op_timeout: Duration,
    pub nemesis: Vec<FaultKind>,
    /// True when `nemesis` is the default set rather than the user's list: a default fault the
    /// target cannot take is then left out with a note instead of refused.
    pub nemesis_defaulted: bool,
    /// Which schedule decides when faults happen and whom they hit.
    pub schedule: ScheduleKind,
    /// Uniform schedule: length of each fault and quiet period.
    pub nemesis_interval: Duration,
    pub nemesis_targets: Vec<Aim>,
    pub partitions: Vec<PartitionKind>,
    pub clock_modes: Vec<ClockMode>,
    pub clock_skew: Duration,
    pub latency: Duration,
    pub loss: f64,
    pub net: NetBackend,
    /// What was asked for (`auto`, or a backend name), to write back into test.toml.
    pub net_requested: String,
    /// First two octets of the addresses network namespaces use (a /16).
    pub net_range: std::net::Ipv4Addr,
    /// Notes for the user about choices made (e.g. a default fault left out).
    pub notes: Vec<String>,
    pub recovery: Duration,
    pub seed: u64,
    pub results_dir: PathBuf,
    /// First port to use on 127.0.0.1 (node i: base + 2i for clients, base + 2i + 1 for peers);
    /// 0 picks free ports.
    pub base_port: u16,
    pub check_time_limit: Duration,
    /// Availability as a check: a heal after which the cluster completes no write within this
    /// long fails the run (`None`: not checked).
    pub max_recovery: Option<Duration>,
    pub raft_bugs: Vec<String>,
    pub raft_read_mode: String,
    /// `None`: this very binary.
    pub raft_binary: Option<PathBuf>,
    pub etcd: EtcdSection,
    pub consul: ConsulSection,
    /// Replay schedule: the faults, how they are aimed, and the run they come from.
    pub replay: Vec<PlannedFault>,
    pub replay_aim: ReplayAim,
    pub replay_of: Option<String>,
    /// A rolling upgrade during the test.
    pub upgrade: Option<UpgradeConfig>,
    /// The SSH hosts the nodes run on, if any.
    pub hosts: Option<faultline_remote::HostsConfig>,
}

pub const DEFAULT_NODES: usize = 5;
/// Client workers: four per node of the default 5-node cluster, so a deposed leader that still
/// answers has several clients asking it (with two per node, `lease-ignores-drift` went
/// unnoticed in 1 of 8 minute-long runs, and was found later in the others).
pub const DEFAULT_CONCURRENCY: usize = 20;
/// Named sets of defaults (`profile`). `crash-storm`: a kill of one random member, a minority
/// or the leader every 2 s (1 s down, 1 s up), half of them losing unsynced writes where FUSE
/// is available, 30 clients with no rate limit: the load real durability bugs need.
pub const PROFILES: &[&str] = &["crash-storm"];
pub const DEFAULT_RATE: f64 = 200.0;
pub const DEFAULT_TIME_LIMIT: f64 = 60.0;
/// How long a client waits for an operation before recording it as `info`, by target: about
/// two election timeouts of the target as faultline runs it (the bundled Raft 150 ms, etcd 500
/// ms, Consul with `raft_multiplier = 1` about 1 s; custom targets: unknown, 1 s). Far above a
/// healthy cluster's latency, and short enough that a client waiting on a deposed leader comes
/// back within that leader's stale window to observe it: with 2 s, every client that a
/// follower had sent to an isolated leader was still stuck there when the window closed, and
/// `lease-ignores-drift` went unnoticed (0 of 3 runs; 8 of 8 at 0.25 s).
pub fn default_op_timeout(target: &str) -> f64 {
    match target {
        "raft" => 0.25,
        "consul" => 2.0,
        _ => 1.0,
    }
}
pub const DEFAULT_NEMESIS_INTERVAL: f64 = 10.0;
/// The longest duration any setting accepts (a week), so deadlines cannot overflow.
const MAX_SECONDS: f64 = 604_800.0;
pub const DEFAULT_RECOVERY: f64 = 5.0;
pub const DEFAULT_CHECK_TIME_LIMIT: f64 = 300.0;
pub const DEFAULT_CLOCK_SKEW_MS: f64 = 1000.0;
pub const DEFAULT_LATENCY_MS: f64 = 50.0;
pub const DEFAULT_LOSS: f64 = 0.2;

impl TestFile {
    /// Reads a test file; errors name the file, the line and the key.
    pub fn load(path: &Path) -> Result<TestFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let msg = e.message().trim().to_string();
            match line {
                Some(l) => format!("{}:{l}: {msg}", path.display()),
                None => format!("{}: {msg}", path.display()),
            }
        })
    }

    /// Values from `over` replace those of `self`.
    pub fn overridden_by(self, over: TestFile) -> TestFile {
        let raft = match (self.raft, over.raft) {
            (Some(a), Some(b)) => Some(RaftSection {
                bugs: b.bugs.or(a.bugs),
                read_mode: b.read_mode.or(a.read_mode),
                binary: b.binary.or(a.binary),
            }),
            (a, b) => b.or(a),
        };
        let etcd = match (self.etcd, over.etcd) {
            (Some(a), Some(b)) => Some(EtcdSection {
                binary: b.binary.or(a.binary),
                serializable_reads: b.serializable_reads.or(a.serializable_reads),
            }),
            (a, b) => b.or(a),
        };
        let consul = match (self.consul, over.consul) {
            (Some(a), Some(b)) => Some(ConsulSection {
                binary: b.binary.or(a.binary),
            }),
            (a, b) => b.or(a),
        };
        let upgrade = match (self.upgrade, over.upgrade) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            (a, b) => b.or(a),
        };
        let hosts = match (self.hosts, over.hosts) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            (a, b) => b.or(a),
        };
        TestFile {
            name: over.name.or(self.name),
            target: over.target.or(self.target),
            target_config: over.target_config.or(self.target_config),
            nodes: over.nodes.or(self.nodes),
            workload: over.workload.or(self.workload),
            concurrency: over.concurrency.or(self.concurrency),
            rate: over.rate.or(self.rate),
            time_limit: over.time_limit.or(self.time_limit),
            op_timeout: over.op_timeout.or(self.op_timeout),
            nemesis: over.nemesis.or(self.nemesis),
            profile: over.profile.or(self.profile),
            schedule: over.schedule.or(self.schedule),
            nemesis_interval: over.nemesis_interval.or(self.nemesis_interval),
            nemesis_targets: over.nemesis_targets.or(self.nemesis_targets),
            partitions: over.partitions.or(self.partitions),
            clock_modes: over.clock_modes.or(self.clock_modes),
            clock_skew_ms: over.clock_skew_ms.or(self.clock_skew_ms),
            latency_ms: over.latency_ms.or(self.latency_ms),
            loss: over.loss.or(self.loss),
            net: over.net.or(self.net),
            net_range: over.net_range.or(self.net_range),
            recovery: over.recovery.or(self.recovery),
            seed: over.seed.or(self.seed),
            results_dir: over.results_dir.or(self.results_dir),
            base_port: over.base_port.or(self.base_port),
            check_time_limit: over.check_time_limit.or(self.check_time_limit),
            max_recovery: over.max_recovery.or(self.max_recovery),
            replay_aim: over.replay_aim.or(self.replay_aim),
            replay_of: over.replay_of.or(self.replay_of),
            raft,
            etcd,
            consul,
            faults: over.faults.or(self.faults),
            upgrade,
            hosts,
        }
    }

    /// Fills the keys a profile sets and the file left out (see [`PROFILES`]); notes say what
    /// it left out and why.
    fn apply_profile(mut self) -> Result<(TestFile, Vec<String>), String> {
        let mut notes = Vec::new();
        match self.profile.as_deref() {
            None => {}
            Some("crash-storm") => {
                // Durability bugs need kills of random members every second or two, with and
                // without losing unsynced writes, under as much client load as the cluster takes.
                if self.nemesis.is_none() {
                    let mut kinds = vec!["kill".to_string()];
                    match faultline_faultfs::check_available() {
                        Ok(()) => kinds.push("lose-unfsynced".to_string()),
                        Err(e) => notes.push(format!("crash-storm without lose-unfsynced: {e}")),
                    }
                    self.nemesis = Some(kinds);
                }
                if self.schedule.is_none() && self.faults.is_none() {
                    self.schedule = Some("uniform".into());
                    self.nemesis_interval.get_or_insert(1.0);
                    self.nemesis_targets.get_or_insert_with(|| {
                        vec!["one".into(), "minority".into(), "leader".into()]
                    });
                }
                self.rate.get_or_insert(0.0);
                self.concurrency.get_or_insert(30);
            }
            Some(other) => {
                return Err(format!(
                    "profile: unknown profile {other:?}; the profiles are: {}",
                    PROFILES.join(", ")
                ))
            }
        }
        Ok((self, notes))
    }

    /// Applies defaults and checks every value; errors name the key and what is allowed.
    pub fn resolve(self) -> Result<TestConfig, String> {
        let (this, profile_notes) = self.apply_profile()?;
        let mut config = this.resolve_keys()?;
        config.notes.extend(profile_notes);
        Ok(config)
    }

    fn resolve_keys(self) -> Result<TestConfig, String> {
        let target = self.target.unwrap_or_else(|| "raft".to_string());
        if !TARGETS.contains(&target.as_str()) {
            return Err(format!(
                "target: unknown target {target:?}; the targets are: {}",
                TARGETS.join(", ")
            ));
        }
        let hosts = match &self.hosts {
            Some(h) => Some(h.resolve()?),
            None => None,
        };
        let nodes = match &hosts {
            Some(h) => {
                let n = self.nodes.unwrap_or(h.hosts.len());
                if n != h.hosts.len() {
                    return Err(format!(
                        "nodes: {n}, but hosts names {} hosts (one node per host)",
                        h.hosts.len()
                    ));
                }
                n
            }
            None => self.nodes.unwrap_or(DEFAULT_NODES),
        };
        if hosts.is_some() && !["raft", "etcd"].contains(&target.as_str()) {
            return Err(format!(
                "hosts: the {target} target cannot run on SSH hosts yet (the bundled Raft and \
                 etcd can)"
            ));
        }
        if hosts.is_some() && self.upgrade.is_some() {
            return Err("upgrade: rolling upgrades do not run on SSH hosts yet".to_string());
        }
        if !(1..=15).contains(&nodes) {
            return Err(format!("nodes: must be between 1 and 15, got {nodes}"));
        }
        let workload: WorkloadKind = self
            .workload
            .as_deref()
            .unwrap_or("register")
            .parse()
            .map_err(|e| format!("workload: {e}"))?;
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=1000).contains(&concurrency) {
            return Err(format!(
                "concurrency: must be between 1 and 1000, got {concurrency}"
            ));
        }
        let rate = self.rate.unwrap_or(DEFAULT_RATE);
        if !rate.is_finite() || rate < 0.0 || (rate > 0.0 && rate < 0.01) || rate > 1e7 {
            return Err(format!(
                "rate: must be 0 (unlimited) or operations per second between 0.01 and 10000000, got {rate}"
            ));
        }
        if let Some(seed) = self.seed {
            // test.toml must be able to hold it (TOML integers are signed 64-bit).
            if seed > i64::MAX as u64 {
                return Err(format!("seed: at most {}, got {seed}", i64::MAX));
            }
        }
        let time_limit = seconds("time_limit", self.time_limit, DEFAULT_TIME_LIMIT, 1.0)?;
        let op_timeout = seconds(
            "op_timeout",
            self.op_timeout,
            default_op_timeout(&target),
            0.05,
        )?;
        // The uniform schedule is the one `nemesis_interval` and `nemesis_targets` describe:
        // giving either (without a schedule) asks for it.
        let schedule = match self.schedule.as_deref() {
            Some(name) => name.parse().map_err(|e| format!("schedule: {e}"))?,
            None if self.faults.is_some() => ScheduleKind::Replay,
            None if self.nemesis_interval.is_some() || self.nemesis_targets.is_some() => {
                ScheduleKind::Uniform
            }
            None => ScheduleKind::Adaptive,
        };
        let replay = self.faults.clone().unwrap_or_default();
        match (schedule, self.faults.is_some()) {
            (ScheduleKind::Replay, false) => {
                return Err(
                    "schedule: replay needs the faults to replay ([[faults]] tables, \
                            or --replay RUN_DIR)"
                        .to_string(),
                )
            }
            (ScheduleKind::Replay, true) => {
                if self.nemesis_interval.is_some() || self.nemesis_targets.is_some() {
                    return Err("nemesis_interval and nemesis_targets apply to the uniform \
                                schedule, not to a replay"
                        .to_string());
                }
                let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
                for (i, f) in replay.iter().enumerate() {
                    f.validate(&names)
                        .map_err(|e| format!("faults[{}] (at {} s): {e}", i + 1, f.at))?;
                }
                // The network holds one latency-and-loss setting at a time (partitions, unlike
                // them, are combined): two such faults in force together would undo each other.
                let mut degrading: Vec<(usize, f64, f64)> = replay
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| matches!(f.fault, FaultKind::Latency | FaultKind::Loss))
                    .map(|(i, f)| (i + 1, f.at, f.heal.unwrap_or(f64::INFINITY)))
                    .collect();
                degrading.sort_by(|a, b| a.1.total_cmp(&b.1));
                if let Some(w) = degrading.windows(2).find(|w| w[1].1 < w[0].2) {
                    return Err(format!(
                        "faults[{}] and faults[{}]: latency and loss faults may not overlap \
                         (the network holds one such setting at a time)",
                        w[0].0, w[1].0
                    ));
                }
            }
            (other, true) => {
                return Err(format!(
                    "faults: a fixed fault schedule is replayed by the replay schedule, not \
                     the {other} one (leave schedule out, or set it to replay)"
                ))
            }
            (_, false) => {}
        }
        let replay_aim: ReplayAim = match self.replay_aim.as_deref() {
            None => ReplayAim::default(),
            Some(_) if schedule != ScheduleKind::Replay => {
                return Err(
                    "replay_aim (--replay-aim) applies to a replay (--replay RUN_DIR, or \
                     [[faults]] in the test file)"
                        .to_string(),
                )
            }
            Some(a) => a.parse().map_err(|e| format!("replay_aim: {e}"))?,
        };
        if schedule == ScheduleKind::Adaptive
            && (self.nemesis_interval.is_some() || self.nemesis_targets.is_some())
        {
            return Err(
                "nemesis_interval and nemesis_targets apply to the uniform schedule; the \
                 adaptive schedule chooses its own durations and aims at the leader (use \
                 --schedule uniform, or leave them out)"
                    .to_string(),
            );
        }
        let max_recovery = match self.max_recovery {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s <= MAX_SECONDS => {
                Some(Duration::from_secs_f64(s))
            }
            Some(s) => {
                return Err(format!(
                    "max_recovery: must be a number of seconds above 0 and at most \
                     {MAX_SECONDS}, got {s}"
                ))
            }
        };
        let nemesis_interval = seconds(
            "nemesis_interval",
            self.nemesis_interval,
            DEFAULT_NEMESIS_INTERVAL,
            0.1,
        )?;
        let recovery = seconds("recovery", self.recovery, DEFAULT_RECOVERY, 0.0)?;
        let check_time_limit = seconds(
            "check_time_limit",
            self.check_time_limit,
            DEFAULT_CHECK_TIME_LIMIT,
            0.1,
        )?;
        let mut notes = Vec::new();
        let nemesis_defaulted = self.nemesis.is_none() && schedule != ScheduleKind::Replay;
        let nemesis = match self.nemesis {
            // A replay needs exactly the kinds it replays.
            None if schedule == ScheduleKind::Replay => {
                let mut kinds = Vec::new();
                for f in &replay {
                    if !kinds.contains(&f.fault) {
                        kinds.push(f.fault);
                    }
                }
                kinds
            }
            None => {
                let mut d = vec![FaultKind::Partition, FaultKind::Pause, FaultKind::Kill];
                // On hosts, libfaketime must be on the hosts: known once they are reached.
                match faultline_nemesis::clock::library() {
                    _ if hosts.is_some() => d.push(FaultKind::Clock),
                    Ok(_) => d.push(FaultKind::Clock),
                    Err(e) => notes.push(format!("clock faults left out: {e}")),
                }
                d
            }
            Some(list) => {
                let mut out = Vec::new();
                for name in list.iter().filter(|n| !n.is_empty()) {
                    if name == "none" {
                        continue;
                    }
                    if name == "upgrade" {
                        if self.upgrade.as_ref().is_none_or(|u| u.to.is_none()) {
                            return Err("nemesis: upgrade needs the binaries to upgrade \
                                        between (--upgrade-to BIN and optionally \
                                        --upgrade-from BIN, or an [upgrade] table)"
                                .to_string());
                        }
                        continue;
                    }
                    let fault: FaultKind = name
                        .parse()
                        .map_err(|e| format!("nemesis: {e} (or none)"))?;
                    if !out.contains(&fault) {
                        out.push(fault);
                    }
                }
                out
            }
        };
        let nemesis_targets = match self.nemesis_targets {
            None => Aim::ALL.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for name in &list {
                    out.push(name.parse().map_err(|e| format!("nemesis_targets: {e}"))?);
                }
                if out.is_empty() {
                    return Err(format!(
                        "nemesis_targets: give at least one of {}",
                        Aim::NAMES.join(", ")
                    ));
                }
                out
            }
        };
        let list = |key: &str, v: Option<Vec<String>>| -> Result<Option<Vec<String>>, String> {
            match v {
                Some(l) if l.is_empty() => Err(format!("{key}: give at least one value")),
                other => Ok(other),
            }
        };
        let partitions = match list("partitions", self.partitions)? {
            None => PartitionKind::ALL.to_vec(),
            Some(l) => l
                .iter()
                .map(|p| p.parse().map_err(|e| format!("partitions: {e}")))
                .collect::<Result<_, String>>()?,
        };
        let clock_modes = match list("clock_modes", self.clock_modes)? {
            None => ClockMode::ALL.to_vec(),
            Some(l) => l
                .iter()
                .map(|m| m.parse().map_err(|e| format!("clock_modes: {e}")))
                .collect::<Result<_, String>>()?,
        };
        let millis = |key: &str, v: Option<f64>, default: f64| -> Result<Duration, String> {
            let ms = v.unwrap_or(default);
            if !ms.is_finite() || !(0.0..=3_600_000.0).contains(&ms) {
                return Err(format!(
                    "{key}: must be a number of milliseconds from 0 to 3600000, got {ms}"
                ));
            }
            Ok(Duration::from_secs_f64(ms / 1000.0))
        };
        let clock_skew = millis("clock_skew_ms", self.clock_skew_ms, DEFAULT_CLOCK_SKEW_MS)?;
        let latency = millis("latency_ms", self.latency_ms, DEFAULT_LATENCY_MS)?;
        let loss = self.loss.unwrap_or(DEFAULT_LOSS);
        if !(0.0..=1.0).contains(&loss) {
            return Err(format!(
                "loss: must be a fraction between 0 and 1, got {loss}"
            ));
        }
        if let Some((i, f)) = replay
            .iter()
            .enumerate()
            .find(|(_, f)| !nemesis.contains(&f.fault))
        {
            return Err(format!(
                "faults[{}] is a {} fault, but nemesis does not list {} (add it, or leave \
                 nemesis out: a replay then takes the kinds of its faults)",
                i + 1,
                f.fault,
                f.fault
            ));
        }
        if nemesis.contains(&FaultKind::Clock) && hosts.is_none() {
            if let Err(e) = faultline_nemesis::clock::library() {
                return Err(format!("nemesis: {e}"));
            }
        }
        if hosts.is_some() {
            for f in [
                FaultKind::LoseUnfsynced,
                FaultKind::Latency,
                FaultKind::Loss,
            ] {
                if nemesis.contains(&f) {
                    return Err(format!(
                        "nemesis {f}: not available with nodes on SSH hosts (kill, pause, \
                         partition and clock are)"
                    ));
                }
            }
        }
        let net_requested = self.net.unwrap_or_else(|| "auto".to_string());
        let wants_partition = nemesis.contains(&FaultKind::Partition);
        let wants_degrade =
            nemesis.contains(&FaultKind::Latency) || nemesis.contains(&FaultKind::Loss);
        let root = nix::unistd::geteuid().is_root();
        let net = match net_requested.as_str() {
            "auto" | "hosts" if hosts.is_some() => NetBackend::Hosts,
            other if hosts.is_some() => {
                return Err(format!(
                    "net: {other} runs every node on this machine; with hosts, the nodes are on \
                     their hosts' own network (leave net out, or set it to hosts)"
                ))
            }
            "hosts" => {
                return Err(
                    "net: hosts needs the hosts to run on (--hosts, or a [hosts] table)"
                        .to_string(),
                )
            }
            "auto" if wants_degrade => NetBackend::Proxy,
            "auto" if wants_partition && root => NetBackend::Netns,
            "auto" if wants_partition => {
                notes.push(
                    "not root: partitions use the userspace proxy instead of network namespaces"
                        .to_string(),
                );
                NetBackend::Proxy
            }
            "auto" => NetBackend::Loopback,
            "netns" => NetBackend::Netns,
            "proxy" => NetBackend::Proxy,
            "loopback" => NetBackend::Loopback,
            other => {
                return Err(format!(
                    "net: expected auto, netns, proxy or loopback, got {other:?}"
                ))
            }
        };
        if net == NetBackend::Loopback && (wants_partition || wants_degrade) {
            return Err(
                "net: partition, latency and loss faults need --net netns or --net proxy"
                    .to_string(),
            );
        }
        if net == NetBackend::Netns && wants_degrade {
            return Err(
                "net: latency and loss faults need --net proxy (the kernel here has no \
                        tc netem)"
                    .to_string(),
            );
        }
        let net_range: std::net::Ipv4Addr = self
            .net_range
            .as_deref()
            .unwrap_or("10.77.0.0")
            .parse()
            .map_err(|_| {
                "net_range: expected the first address of a /16, such as 10.77.0.0".to_string()
            })?;
        if net_range.octets()[2] != 0 || net_range.octets()[3] != 0 {
            return Err(format!(
                "net_range: expected the first address of a /16 (like 10.77.0.0), got {net_range}"
            ));
        }

        let raft = self.raft.unwrap_or_default();
        // Raft options do nothing for another target: say so rather than ignore them (a
        // report claiming a deliberate bug in an etcd run would mislead).
        if target != "raft"
            && (raft.bugs.as_ref().is_some_and(|b| !b.is_empty()) || raft.read_mode.is_some())
        {
            return Err(format!(
                "raft.bugs and raft.read_mode (--raft-bug, --raft-read-mode) apply only to \
                 --target raft, not {target}"
            ));
        }
        let bugs = raft.bugs.clone().unwrap_or_default();
        let raft_read_mode = match raft.read_mode {
            Some(mode) => mode,
            // A bug of lease reads exists only where reads use the lease.
            None if bugs.iter().any(|b| b == "lease-ignores-drift") => {
                notes.push(
                    "lease-ignores-drift is a bug of lease reads: the nodes read with \
                     --raft-read-mode lease"
                        .to_string(),
                );
                "lease".to_string()
            }
            None => "read-index".to_string(),
        };
        if !["read-index", "lease"].contains(&raft_read_mode.as_str()) {
            return Err(format!(
                "raft.read_mode: expected read-index or lease, got {raft_read_mode:?}"
            ));
        }
        let name = self.name.unwrap_or_else(|| format!("{target}-{workload}"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "name: use letters, digits, '.', '_' and '-' only (it names a folder), got {name:?}"
            ));
        }
        if target != "custom" && self.target_config.is_some() {
            return Err(
                "target_config: only the custom target takes a definition file".to_string(),
            );
        }
        if target != "raft" && net == NetBackend::Proxy {
            return Err(format!(
                "net: the userspace proxy relays the bundled Raft's peer protocol only; the \
                 {target} target needs --net netns (as root) for partitions, and cannot have \
                 latency or loss faults"
            ));
        }
        Ok(TestConfig {
            name,
            target,
            target_config: self.target_config,
            nodes,
            workload,
            concurrency,
            rate,
            time_limit,
            op_timeout,
            nemesis,
            nemesis_defaulted,
            schedule,
            nemesis_interval,
            nemesis_targets,
            partitions,
            clock_modes,
            clock_skew,
            latency,
            loss,
            net,
            net_requested,
            net_range,
            notes,
            recovery,
            seed: self.seed.unwrap_or_else(random_seed),
            results_dir: self.results_dir.unwrap_or_else(|| PathBuf::from("results")),
            base_port: self.base_port.unwrap_or(0),
            check_time_limit,
            max_recovery,
            raft_bugs: bugs,
            raft_read_mode,
            raft_binary: raft.binary,
            etcd: self.etcd.unwrap_or_default(),
            consul: self.consul.unwrap_or_default(),
            replay,
            replay_aim,
            replay_of: self.replay_of,
            upgrade: match self.upgrade {
                Some(u) => Some(u.resolve(time_limit)?),
                None => None,
            },
            hosts,
        })
    }
}

impl TestConfig {
    /// The definition as a test file, every value explicit: feeding it back repeats the test.
    pub fn to_file(&self) -> TestFile {
        TestFile {
            name: Some(self.name.clone()),
            target: Some(self.target.clone()),
            target_config: self.target_config.clone(),
            nodes: Some(self.nodes),
            workload: Some(self.workload.to_string()),
            concurrency: Some(self.concurrency),
            rate: Some(self.rate),
            time_limit: Some(self.time_limit.as_secs_f64()),
            op_timeout: Some(self.op_timeout.as_secs_f64()),
            nemesis: Some({
                let mut list: Vec<String> = self.nemesis.iter().map(|f| f.to_string()).collect();
                if self.upgrade.is_some() {
                    list.push("upgrade".to_string());
                }
                if list.is_empty() {
                    list.push("none".to_string());
                }
                list
            }),
            // The profile's values are all written out below.
            profile: None,
            schedule: Some(self.schedule.to_string()),
            // Only the uniform schedule has them (the adaptive one refuses them).
            nemesis_interval: (self.schedule == ScheduleKind::Uniform)
                .then_some(self.nemesis_interval.as_secs_f64()),
            nemesis_targets: (self.schedule == ScheduleKind::Uniform)
                .then(|| self.nemesis_targets.iter().map(|a| a.to_string()).collect()),
            partitions: Some(self.partitions.iter().map(|p| p.to_string()).collect()),
            clock_modes: Some(self.clock_modes.iter().map(|m| m.to_string()).collect()),
            clock_skew_ms: Some(self.clock_skew.as_secs_f64() * 1e3),
            latency_ms: Some(self.latency.as_secs_f64() * 1e3),
            loss: Some(self.loss),
            net: Some(self.net_requested.clone()),
            net_range: Some(self.net_range.to_string()),
            recovery: Some(self.recovery.as_secs_f64()),
            seed: Some(self.seed),
            results_dir: Some(self.results_dir.clone()),
            base_port: Some(self.base_port),
            check_time_limit: Some(self.check_time_limit.as_secs_f64()),
            max_recovery: self.max_recovery.map(|d| d.as_secs_f64()),
            raft: (self.target == "raft").then(|| RaftSection {
                bugs: Some(self.raft_bugs.clone()),
                read_mode: Some(self.raft_read_mode.clone()),
                binary: self.raft_binary.clone(),
            }),
            etcd: (self.target == "etcd").then(|| self.etcd.clone()),
            consul: (self.target == "consul").then(|| self.consul.clone()),
            replay_aim: (self.schedule == ScheduleKind::Replay)
                .then(|| self.replay_aim.name().to_string()),
            replay_of: self.replay_of.clone(),
            faults: (self.schedule == ScheduleKind::Replay).then(|| self.replay.clone()),
            upgrade: self.upgrade.as_ref().map(UpgradeConfig::to_section),
            hosts: self.hosts.as_ref().map(|h| h.to_section()),
        }
    }

    /// TOML text of [`TestConfig::to_file`].
    pub fn to_toml(&self) -> String {
        let header = "# The resolved definition of this run. Repeat it with:\n#   faultline test --config test.toml\n";
        format!(
            "{header}{}",
            toml::to_string(&self.to_file())
                .unwrap_or_else(|e| format!("# the definition could not be written: {e}\n"))
        )
    }
}

/// A seed from the clock and the process id, for runs that did not give one (it is printed
/// and recorded, so the run can still be repeated).
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos ^ (u64::from(std::process::id()) << 32);
    // SplitMix64 finalizer, so close clocks give unrelated seeds; kept to 53 bits so the seed
    // survives tools that read JSON numbers as doubles.
    let mut z = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) >> 11
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve() {
        let c = TestFile::default().resolve().unwrap();
        assert_eq!(c.nodes, 5);
        assert!(c.nemesis.contains(&FaultKind::Kill) && c.nemesis.contains(&FaultKind::Partition));
        assert_eq!(c.name, "raft-register");
    }

    #[test]
    fn resolved_config_round_trips_through_toml() {
        let c = TestFile {
            seed: Some(42),
            nemesis: Some(vec!["pause".into()]),
            ..TestFile::default()
        }
        .resolve()
        .unwrap();
        let again: TestFile = toml::from_str(&c.to_toml()).unwrap();
        let again = again.resolve().unwrap();
        assert_eq!(again.seed, 42);
        assert_eq!(again.nemesis, vec![FaultKind::Pause]);
        assert_eq!(again.to_toml(), c.to_toml());
    }

    #[test]
    fn a_fault_schedule_is_replayed_and_round_trips_through_test_toml() {
        let text = "nodes = 3\n[[faults]]\nat = 1.5\nheal = 2.0\nfault = \"kill\"\nnodes = [\"n2\"]\n\
                    leader = \"n2\"\n[[faults]]\nat = 3.0\nheal = 4.0\nfault = \"partition\"\n\
                    kind = \"isolate\"\ngrudge = { n1 = [\"n2\", \"n3\"], n2 = [\"n1\"], n3 = [\"n1\"] }\n";
        let file: TestFile = toml::from_str(text).unwrap();
        let c = file.resolve().unwrap();
        assert_eq!(c.schedule, ScheduleKind::Replay);
        assert_eq!(c.nemesis, vec![FaultKind::Kill, FaultKind::Partition]);
        assert_eq!(c.replay_aim, ReplayAim::Leader);
        let again: TestFile = toml::from_str(&c.to_toml()).unwrap();
        let again = again.resolve().unwrap();
        assert_eq!(again.replay, c.replay);
        assert_eq!(again.to_toml(), c.to_toml());
        // A fault kind the nemesis list leaves out, a replay aim without a replay, a bad node.
        let e = TestFile {
            nemesis: Some(vec!["kill".into()]),
            ..toml::from_str(text).unwrap()
        }
        .resolve()
        .unwrap_err();
        assert!(e.contains("faults[2]") && e.contains("partition"), "{e}");
        let e = TestFile {
            replay_aim: Some("literal".into()),
            ..TestFile::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.contains("replay_aim"), "{e}");
        let e = toml::from_str::<TestFile>(&text.replace("nodes = [\"n2\"]", "nodes = [\"n7\"]"))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.contains("faults[1]") && e.contains("n7"), "{e}");
    }

    #[test]
    fn the_uniform_schedule_is_chosen_by_its_own_keys_and_round_trips() {
        let adaptive = TestFile::default().resolve().unwrap();
        assert_eq!(adaptive.schedule, ScheduleKind::Adaptive);
        assert_eq!(adaptive.op_timeout, Duration::from_millis(250));
        // test.toml of an adaptive run has neither key, so it reads back as adaptive.
        let again: TestFile = toml::from_str(&adaptive.to_toml()).unwrap();
        assert!(again.nemesis_interval.is_none() && again.nemesis_targets.is_none());
        assert_eq!(again.resolve().unwrap().schedule, ScheduleKind::Adaptive);
        for file in [
            TestFile {
                nemesis_interval: Some(2.0),
                ..TestFile::default()
            },
            TestFile {
                nemesis_targets: Some(vec!["leader".into()]),
                ..TestFile::default()
            },
            TestFile {
                schedule: Some("uniform".into()),
                ..TestFile::default()
            },
        ] {
            let c = file.resolve().unwrap();
            assert_eq!(c.schedule, ScheduleKind::Uniform);
            let text = c.to_toml();
            let again: TestFile = toml::from_str(&text).unwrap();
            let again = again.resolve().unwrap();
            assert_eq!(again.schedule, ScheduleKind::Uniform);
            assert_eq!(again.nemesis_interval, c.nemesis_interval);
            assert_eq!(again.to_toml(), text);
        }
        let err = TestFile {
            schedule: Some("adaptive".into()),
            nemesis_interval: Some(2.0),
            ..TestFile::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("uniform schedule"), "{err}");
        let err = TestFile {
            schedule: Some("random".into()),
            ..TestFile::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            err.starts_with("schedule:") && err.contains("adaptive, uniform"),
            "{err}"
        );
    }

    #[test]
    fn lease_bugs_read_with_the_lease_and_bounds_are_checked() {
        let c = TestFile {
            raft: Some(RaftSection {
                bugs: Some(vec!["lease-ignores-drift".into()]),
                ..RaftSection::default()
            }),
            ..TestFile::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.raft_read_mode, "lease");
        assert!(c.notes.iter().any(|n| n.contains("lease")), "{:?}", c.notes);
        for bad in [0.0, -1.0, f64::NAN, 1e30] {
            let err = TestFile {
                max_recovery: Some(bad),
                ..TestFile::default()
            }
            .resolve()
            .unwrap_err();
            assert!(err.starts_with("max_recovery:"), "{err}");
        }
        let etcd = TestFile {
            target: Some("etcd".into()),
            ..TestFile::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(etcd.op_timeout, Duration::from_secs(1));
    }

    #[test]
    fn an_upgrade_table_resolves_round_trips_and_names_bad_keys() {
        let exe = std::env::current_exe().unwrap();
        let exe = exe.display();
        let text = format!(
            "nodes = 3\nnemesis = [\"kill\", \"upgrade\"]\n[upgrade]\nfrom = \"{exe}\"\n\
             to = [\"{exe}\", \"{exe}\"]\norder = \"leader-first\"\ndowngrade = true\n\
             stall = 4\nto_args = [\"--bug\", \"x\"]\n"
        );
        let c = toml::from_str::<TestFile>(&text)
            .unwrap()
            .resolve()
            .unwrap();
        let u = c.upgrade.clone().unwrap();
        assert_eq!(c.nemesis, vec![FaultKind::Kill]);
        assert_eq!(u.to.len(), 2);
        assert_eq!(u.order, UpgradeOrder::LeaderFirst);
        assert!(u.downgrade);
        assert_eq!(u.stall, Duration::from_secs(4));
        assert_eq!(u.to_args, vec!["--bug", "x"]);
        assert_eq!(
            (u.start, u.gap),
            (Duration::from_secs(5), Duration::from_secs(2))
        );
        // test.toml keeps it, and says "upgrade" among the nemeses.
        let written = c.to_toml();
        assert!(written.contains("\"upgrade\""), "{written}");
        let again = toml::from_str::<TestFile>(&written)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(again.upgrade, c.upgrade);
        assert_eq!(again.to_toml(), written);
        // The upgrade nemesis without binaries, a missing binary, a bad order, a start past
        // the end of the test: each names its key.
        let e = TestFile {
            nemesis: Some(vec!["upgrade".into()]),
            ..TestFile::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            e.starts_with("nemesis: upgrade needs") && e.contains("--upgrade-to"),
            "{e}"
        );
        let with = |u: UpgradeSection| TestFile {
            upgrade: Some(u),
            ..TestFile::default()
        };
        let to = Some(Binaries::One(std::env::current_exe().unwrap()));
        let e = with(UpgradeSection {
            to: Some(Binaries::One("/no/such/etcd".into())),
            ..UpgradeSection::default()
        })
        .resolve()
        .unwrap_err();
        assert!(e.starts_with("upgrade.to: /no/such/etcd"), "{e}");
        let e = with(UpgradeSection {
            to: to.clone(),
            order: Some("oldest-first".into()),
            ..UpgradeSection::default()
        })
        .resolve()
        .unwrap_err();
        assert!(
            e.starts_with("upgrade.order:") && e.contains("leader-first"),
            "{e}"
        );
        let e = with(UpgradeSection {
            to: to.clone(),
            start: Some(90.0),
            ..UpgradeSection::default()
        })
        .resolve()
        .unwrap_err();
        assert!(e.starts_with("upgrade.start:"), "{e}");
        let e = with(UpgradeSection::default()).resolve().unwrap_err();
        assert!(e.starts_with("upgrade.to"), "{e}");
        let e = toml::from_str::<TestFile>("[upgrade]\ntoo = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("too"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_choices() {
        let err = TestFile {
            workload: Some("queue".into()),
            ..TestFile::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            err.starts_with("workload:") && err.contains("register, set"),
            "{err}"
        );
        let err = TestFile {
            nemesis: Some(vec!["kill".into(), "flood".into()]),
            ..TestFile::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            err.starts_with("nemesis:") && err.contains("kill, pause"),
            "{err}"
        );
        let err = toml::from_str::<TestFile>("nodez = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodez") && err.contains("nodes"), "{err}");
    }
}
