//! The controller of `faultline test`: starts a cluster, drives clients while faults hit it,
//! records everything, checks the history, and stores the evidence in a run folder.
//!
//! The binary parses the command line into [`TestArgs`] and calls [`run`]; the report is
//! written through a function it passes in, so the controller knows nothing of reports and the
//! reports nothing of the controller (they meet in the run folder's files). Nodes of the
//! bundled Raft are started as `<this program> node ...`: the program calling [`run`] must be
//! the `faultline` binary.

use std::path::PathBuf;

use faultline_checker::Verdict;

mod cluster;
pub mod config;
mod convergence;
mod efficacy;
mod election;
mod health;
mod lifecycle;
mod recorder;
mod results;

pub use results::{create_stamped_dir, utc_stamp, WriteReport};
mod status_sampler;
mod target;
mod view;

use config::TestFile;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Every flag overrides the same key of the --config file; a flag or key left out takes the \
default shown. The resolved definition (seed included) is saved as test.toml in the run's \
folder: `faultline test --config results/latest/test.toml` repeats the run.

Exit codes: 0 valid, 1 invalid, 2 unknown, 254 error (bad configuration, cluster that \
would not start, ...).

Examples:
  faultline test
  faultline test --nodes 3 --nemesis kill,pause --time-limit 20
  faultline test --nemesis partition --partitions isolate-leader,halves --raft-bug stale-read
  faultline test --raft-bug ack-before-commit --nemesis kill --nemesis-targets leader
  faultline test --target etcd --nodes 3 --upgrade-to /opt/etcd-3.5/etcd --upgrade-downgrade")]
pub struct TestArgs {
    /// A TOML test definition: keys as the long flags with '_' for '-', and a [raft] section
    /// with `bugs`, `read_mode` and `binary` (the faultline build whose nodes to test).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Name of the test: results go to RESULTS_DIR/NAME/TIMESTAMP [default: TARGET-WORKLOAD].
    #[arg(long)]
    pub name: Option<String>,
    /// System under test: raft (the bundled Raft store), etcd, consul, or custom (described
    /// by --target-config) [default: raft].
    #[arg(long)]
    pub target: Option<String>,
    /// The custom target's definition (TOML; see docs/custom-targets.md).
    #[arg(long, value_name = "FILE")]
    pub target_config: Option<PathBuf>,
    /// The etcd binary, for --target etcd [default: etcd on PATH].
    #[arg(long, value_name = "PATH")]
    pub etcd_bin: Option<PathBuf>,
    /// etcd: read with serializable (local, possibly stale) ranges instead of linearizable
    /// ones, to see the checker flag stale reads [default: off].
    #[arg(long)]
    pub etcd_serializable_reads: bool,
    /// The consul binary, for --target consul [default: consul on PATH].
    #[arg(long, value_name = "PATH")]
    pub consul_bin: Option<PathBuf>,
    /// Number of nodes [default: 5].
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Workload: register (read/write/cas over many keys) or set [default: register].
    #[arg(long)]
    pub workload: Option<String>,
    /// Concurrent client workers, spread over the nodes [default: 20].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Operations per second across all clients, 0 for no limit [default: 200].
    #[arg(long, value_name = "OPS_PER_S")]
    pub rate: Option<f64>,
    /// How long clients run, in seconds [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<f64>,
    /// Client timeout per operation, in seconds; a timeout is recorded as info [default: 0.25
    /// for raft, 1 for etcd and custom targets, 2 for consul].
    #[arg(long, value_name = "SECONDS")]
    pub op_timeout: Option<f64>,
    /// Faults, comma-separated: kill, pause, lose-unfsynced, partition, clock, latency, loss,
    /// upgrade (with --upgrade-to; giving that is enough), or none
    /// [default: partition,pause,kill,clock; clock only if libfaketime is installed].
    #[arg(long, value_delimiter = ',')]
    pub nemesis: Option<Vec<String>>,
    /// A named set of defaults; flags given explicitly win. crash-storm: kills of random
    /// members every 2 s (with lose-unfsynced too, where FUSE is available) under unlimited
    /// client load, for durability bugs.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// How faults are scheduled: adaptive (short scenarios aimed at the leader and at
    /// elections, reacting to the leader it observes), uniform (one fault at a time,
    /// --nemesis-interval long, aimed by --nemesis-targets) or replay (the [[faults]] of the
    /// --config file, or of --replay RUN_DIR) [default: adaptive; uniform when
    /// --nemesis-interval or --nemesis-targets is given; replay with faults].
    #[arg(long, value_name = "SCHEDULE")]
    pub schedule: Option<String>,
    /// Uniform schedule: length of each fault and of each quiet period, in seconds [default:
    /// 10].
    #[arg(long, value_name = "SECONDS")]
    pub nemesis_interval: Option<f64>,
    /// Uniform schedule: what faults aim at, comma-separated: one, minority, majority, all,
    /// leader [default: all five].
    #[arg(long, value_delimiter = ',')]
    pub nemesis_targets: Option<Vec<String>>,
    /// Partition shapes to choose from, comma-separated: isolate-one, isolate-leader, halves,
    /// majorities-ring, bridge, one-way [default: all six].
    #[arg(long, value_delimiter = ',')]
    pub partitions: Option<Vec<String>>,
    /// Clock faults to choose from, comma-separated: bump, strobe, drift [default: all three].
    #[arg(long, value_delimiter = ',')]
    pub clock_modes: Option<Vec<String>>,
    /// Largest clock offset a clock fault applies, in milliseconds [default: 1000].
    #[arg(long, value_name = "MS")]
    pub clock_skew_ms: Option<f64>,
    /// Message delay of the latency fault, in milliseconds (jitter: half of it) [default: 50].
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<f64>,
    /// Fraction of messages the loss fault drops [default: 0.2].
    #[arg(long, value_name = "FRACTION")]
    pub loss: Option<f64>,
    /// How nodes are networked: auto, netns (a network namespace per node, nftables
    /// partitions; needs root), proxy (peer links relayed by the controller; no privileges),
    /// or loopback (no network faults) [default: auto: netns as root, proxy otherwise, proxy
    /// for latency/loss, loopback without network faults].
    #[arg(long, value_name = "BACKEND")]
    pub net: Option<String>,
    /// Address range for network namespaces: the first address of a /16; each run takes a
    /// free /24 of it [default: 10.77.0.0].
    #[arg(long, value_name = "ADDR")]
    pub net_range: Option<String>,
    /// Quiet time after the faults end, before the final reads, in seconds [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub recovery: Option<f64>,
    /// Seed for every random choice (workload, schedule, rate) [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where runs are stored [default: results].
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// First port on 127.0.0.1 for the nodes (client base+2i, peer base+2i+1); 0 picks free
    /// ports [default: 0].
    #[arg(long, value_name = "PORT")]
    pub base_port: Option<u16>,
    /// Give the checker this many seconds before the verdict is unknown [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub check_time_limit: Option<f64>,
    /// Availability check: fail the run if, after a fault is healed (and no other is in
    /// force), the cluster completes no write within this many seconds [default: off].
    #[arg(long, value_name = "SECONDS")]
    pub max_recovery: Option<f64>,
    /// Switch on a deliberate bug in the bundled Raft (repeatable; `faultline node --bug help`
    /// lists them) [default: none].
    #[arg(long = "raft-bug", value_name = "NAME")]
    pub raft_bug: Vec<String>,
    /// Read mode of the bundled Raft: read-index or lease [default: read-index].
    #[arg(long, value_name = "MODE")]
    pub raft_read_mode: Option<String>,
    /// Repeat a recorded run's fault schedule: the same faults at the same offsets from the
    /// start, the same seed and settings (RUN_DIR's test.toml; other flags override them).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub replay: Option<PathBuf>,
    /// How a replay aims its faults: leader (a fault that hit the recorded leader hits
    /// today's leader: the names of the two swap) or literal (the recorded node names)
    /// [default: leader].
    #[arg(long, value_name = "HOW")]
    pub replay_aim: Option<String>,
    /// Rolling upgrade: the binary the cluster starts on [default: the target's binary:
    /// --etcd-bin, etcd on PATH, this faultline; a custom target's {binary}].
    #[arg(long, value_name = "BIN")]
    pub upgrade_from: Option<PathBuf>,
    /// Rolling upgrade: the binary to move every node to, one at a time, during the test
    /// (repeat, or separate by commas, for a multi-step path). Turns the upgrade nemesis on.
    #[arg(long, value_name = "BIN", value_delimiter = ',')]
    pub upgrade_to: Vec<PathBuf>,
    /// Rolling upgrade: an extra argument for nodes running a --upgrade-to binary (repeat for
    /// several).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub upgrade_arg: Vec<String>,
    /// Rolling upgrade: followers-first (the leader last), leader-first or random; the rest
    /// of the order is drawn from the seed [default: followers-first].
    #[arg(long, value_name = "ORDER")]
    pub upgrade_order: Option<String>,
    /// Rolling upgrade: after it completes, move every node back to --upgrade-from.
    #[arg(long)]
    pub upgrade_downgrade: bool,
    /// Rolling upgrade: hold the cluster mixed this many seconds once a majority of the nodes
    /// moved [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub upgrade_stall: Option<f64>,
    /// Rolling upgrade: seconds after the start before the first node is replaced [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub upgrade_start: Option<f64>,
    /// Run the nodes on these hosts over SSH, one node per host: `[user@]address[:port]`,
    /// separated by commas (or repeated). Uses the system's ssh: your keys, agent and
    /// ~/.ssh/config. Host keys must be known (see --known-hosts).
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Hosts: the private key to log in with [default: ssh's own].
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Hosts: the known-hosts file their keys are checked against (strictly, unless the
    /// [hosts] table says otherwise) [default: ssh's own].
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Hosts: an ssh configuration file to use instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Hosts: where faultline keeps its files on each host [default: /var/lib/faultline].
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<String>,
    /// Hosts: the node binary as installed on the hosts (etcd), instead of uploading the
    /// local one.
    #[arg(long, value_name = "PATH")]
    pub host_binary: Option<String>,
    /// Hosts: leave the run's files, logs and the uploaded binaries on the hosts.
    #[arg(long)]
    pub keep: bool,
    /// Do not write operations to the history (only for measuring the recorder's own cost).
    #[arg(long, hide = true)]
    pub no_record: bool,
}

impl TestArgs {
    fn as_file(&self) -> TestFile {
        let raft = (!self.raft_bug.is_empty() || self.raft_read_mode.is_some()).then(|| {
            config::RaftSection {
                bugs: (!self.raft_bug.is_empty()).then(|| self.raft_bug.clone()),
                read_mode: self.raft_read_mode.clone(),
                binary: None,
            }
        });
        TestFile {
            name: self.name.clone(),
            target: self.target.clone(),
            target_config: self.target_config.clone(),
            nodes: self.nodes,
            workload: self.workload.clone(),
            concurrency: self.concurrency,
            rate: self.rate,
            time_limit: self.time_limit,
            op_timeout: self.op_timeout,
            nemesis: self.nemesis.clone(),
            profile: self.profile.clone(),
            schedule: self.schedule.clone(),
            nemesis_interval: self.nemesis_interval,
            nemesis_targets: self.nemesis_targets.clone(),
            partitions: self.partitions.clone(),
            clock_modes: self.clock_modes.clone(),
            clock_skew_ms: self.clock_skew_ms,
            latency_ms: self.latency_ms,
            loss: self.loss,
            net: self.net.clone(),
            net_range: self.net_range.clone(),
            recovery: self.recovery,
            seed: self.seed,
            results_dir: self.results_dir.clone(),
            base_port: self.base_port,
            check_time_limit: self.check_time_limit,
            max_recovery: self.max_recovery,
            replay_aim: self.replay_aim.clone(),
            replay_of: None,
            raft,
            etcd: (self.etcd_bin.is_some() || self.etcd_serializable_reads).then(|| {
                config::EtcdSection {
                    binary: self.etcd_bin.clone(),
                    serializable_reads: self.etcd_serializable_reads.then_some(true),
                }
            }),
            consul: self.consul_bin.as_ref().map(|b| config::ConsulSection {
                binary: Some(b.clone()),
            }),
            faults: None,
            upgrade: self.upgrade_section(),
            hosts: self.hosts_section(),
        }
    }

    /// The `[hosts]` keys the flags give, if any.
    fn hosts_section(&self) -> Option<faultline_remote::HostsSection> {
        let given = !self.hosts.is_empty()
            || self.ssh_key.is_some()
            || self.known_hosts.is_some()
            || self.ssh_config.is_some()
            || self.hosts_dir.is_some()
            || self.host_binary.is_some()
            || self.keep;
        given.then(|| faultline_remote::HostsSection {
            addresses: (!self.hosts.is_empty()).then(|| self.hosts.clone()),
            key: self.ssh_key.clone(),
            known_hosts_file: self.known_hosts.clone(),
            ssh_config: self.ssh_config.clone(),
            dir: self.hosts_dir.clone(),
            binary: self.host_binary.clone(),
            keep: self.keep.then_some(true),
            ..faultline_remote::HostsSection::default()
        })
    }

    /// The `[upgrade]` keys the flags give, if any.
    fn upgrade_section(&self) -> Option<config::UpgradeSection> {
        let given = self.upgrade_from.is_some()
            || !self.upgrade_to.is_empty()
            || !self.upgrade_arg.is_empty()
            || self.upgrade_order.is_some()
            || self.upgrade_downgrade
            || self.upgrade_stall.is_some()
            || self.upgrade_start.is_some();
        given.then(|| config::UpgradeSection {
            from: self.upgrade_from.clone(),
            to: (!self.upgrade_to.is_empty())
                .then(|| config::Binaries::Many(self.upgrade_to.clone())),
            to_args: (!self.upgrade_arg.is_empty()).then(|| self.upgrade_arg.clone()),
            order: self.upgrade_order.clone(),
            downgrade: self.upgrade_downgrade.then_some(true),
            stall: self.upgrade_stall,
            start: self.upgrade_start,
            ..config::UpgradeSection::default()
        })
    }
}

/// The definition that replays the run in `run_dir`: its `test.toml` (seed and settings), with
/// its faults from `results.json` as the schedule (or the faults its `test.toml` already
/// replays, when that run was a replay itself).
pub fn replay_file(run_dir: &std::path::Path) -> Result<TestFile, String> {
    let toml_path = run_dir.join("test.toml");
    if !toml_path.is_file() {
        return Err(format!(
            "{}: no test.toml there; give a run's folder (RESULTS_DIR/NAME/TIMESTAMP)",
            run_dir.display()
        ));
    }
    // A stable name for the source: `results/latest` points at the replay once it runs.
    let run_dir =
        std::fs::canonicalize(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let mut file = TestFile::load(&toml_path)?;
    if file.faults.is_none() {
        let results_path = run_dir.join("results.json");
        let text = std::fs::read_to_string(&results_path).map_err(|e| {
            format!(
                "cannot read {}: {e} (a run that was killed before it wrote its \
                 results cannot be replayed)",
                results_path.display()
            )
        })?;
        let results: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", results_path.display()))?;
        let records: Vec<faultline_nemesis::FaultRecord> =
            serde_json::from_value(results["faults"].clone())
                .map_err(|e| format!("{}: faults: {e}", results_path.display()))?;
        let mut planned = Vec::new();
        for r in &records {
            planned.push(
                faultline_nemesis::replay::PlannedFault::from_record(r)
                    .map_err(|e| format!("{}: {e}", results_path.display()))?,
            );
        }
        file.faults = Some(planned);
    }
    // The kinds the schedule holds, not the source's whole list: a replay without clock faults
    // must not need libfaketime. The network stays what the source's list asked for, so a
    // schedule cut down to kills still runs in namespaces (or through the proxy) as before.
    if let Some(kinds) = file.nemesis.take() {
        let has = |k: &str| kinds.iter().any(|n| n == k);
        if file.net.as_deref().is_none_or(|n| n == "auto") {
            if has("latency") || has("loss") {
                file.net = Some("proxy".to_string());
            } else if has("partition") {
                let root = nix::unistd::geteuid().is_root();
                file.net = Some(if root { "netns" } else { "proxy" }.to_string());
            }
        }
    }
    file.schedule = Some("replay".to_string());
    file.nemesis_interval = None;
    file.nemesis_targets = None;
    file.replay_of = Some(run_dir.display().to_string());
    Ok(file)
}

/// Runs one test as `args` say: the verdict of the run, or why it could not be run (bad
/// configuration, a cluster that would not start, ...), in words for the user.
pub fn run(args: TestArgs, write_report: WriteReport) -> Result<Verdict, String> {
    let file = match (&args.config, &args.replay) {
        (Some(path), _) => TestFile::load(path)?,
        (None, Some(run_dir)) => replay_file(run_dir)?,
        (None, None) => TestFile::default(),
    };
    let config = file.overridden_by(args.as_file()).resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("faultline")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(lifecycle::run(config, !args.no_record, write_report))
}
