//! The lifecycle of one test run.
//!
//! set up the run folder → start the nodes → wait until the cluster serves → run clients and
//! the nemesis until the time limit → end all faults → recovery → final reads → stop the
//! nodes → check → write the results.
//!
//! Ctrl-C (or SIGTERM) at any point ends the faults, stops the nodes, keeps what was recorded
//! and still checks it. Nodes cannot outlive the controller even if it is killed (see
//! `faultline_targets::process`).

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_checker::{EventType, Process, Verdict};
use std::net::SocketAddr;

use faultline_nemesis::clock;
use faultline_nemesis::net::Network;
use faultline_nemesis::proxy::Proxy;
use faultline_nemesis::{FaultKind, NemesisConfig};
use faultline_targets::client::Readiness;
use faultline_targets::NodeSpec;
use faultline_targets::Outcome;
use faultline_workloads::{Request, Rng, Workload};
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use tokio::sync::{watch, Mutex};

use super::cluster::{node_specs, Cluster, TargetInfo};
use super::config::{NetBackend, TestConfig};
use super::convergence;
use super::recorder::Recorder;
use super::results::{self, RunSummary};
use super::target::Target;

/// How long replicas may take to agree after the final reads before a difference counts as
/// divergence.
const CONVERGENCE_PATIENCE: Duration = Duration::from_secs(10);

/// Shared by the client workers.
struct Clients {
    cluster: Arc<Cluster>,
    recorder: Recorder,
    workload: Mutex<(Box<dyn Workload>, Rng)>,
    next_process: AtomicU64,
    op_timeout: Duration,
    limiter: Option<Limiter>,
}

/// A global, seeded rate limit: operations are spaced `period` apart on average, with seeded
/// jitter so clients do not march in lock step.
struct Limiter {
    next: Mutex<(Instant, Rng)>,
    period: Duration,
}

impl Limiter {
    /// Waits for this client's turn; false if told to stop meanwhile.
    async fn wait(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let at = {
            let mut guard = self.next.lock().await;
            let (next, rng) = &mut *guard;
            let at = (*next).max(Instant::now());
            *next = at + self.period.mul_f64(rng.random_range(0.5..1.5));
            at
        };
        let stopped = tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        !stopped && !*stop.borrow()
    }
}

/// Runs the test; returns its verdict, or why it could not be run.
pub async fn run(
    mut config: TestConfig,
    record: bool,
    write_report: results::WriteReport,
) -> Result<Verdict, String> {
    // Signals first: a Ctrl-C while namespaces are being made or the cluster is starting
    // must still stop the nodes and remove the namespaces (the guards below do that).
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_signal_handler(stop_tx.clone(), interrupted.clone());
    if config.net == NetBackend::Netns {
        faultline_nemesis::net::can_create()?;
    }
    let target = Target::from_config(&config)?;
    // On hosts, the node binary is checked there (libfaketime), not here.
    if config.nemesis.contains(&FaultKind::Clock) && config.hosts.is_none() {
        if let Err(e) = clock::check_binary(&target.node_program()) {
            // Asked for: refuse. Only defaulted: test the rest, and say why clock is missing
            // (test.toml then records the faults that really ran).
            if !config.nemesis_defaulted {
                return Err(format!("nemesis clock: {e}"));
            }
            config.notes.push(format!("clock faults left out: {e}"));
            config.nemesis.retain(|f| *f != FaultKind::Clock);
        }
    }
    if config.nemesis.contains(&FaultKind::LoseUnfsynced) {
        faultline_faultfs::check_available().map_err(|e| format!("nemesis lose-unfsynced: {e}"))?;
    }
    let run_dir = results::create_run_dir(&config)?;
    results::init_logging(&run_dir)?;
    std::fs::write(run_dir.join("test.toml"), config.to_toml())
        .map_err(|e| format!("cannot write {}: {e}", run_dir.join("test.toml").display()))?;
    let run_id = run_dir
        .file_name()
        .map(|s| format!("{}-{}", config.name, s.to_string_lossy()))
        .unwrap_or_else(|| config.name.clone());
    eprintln!(
        "faultline test {}: {} nodes of {}, {} workload, {} s, nemesis {}, seed {}",
        config.name,
        config.nodes,
        config.target,
        config.workload,
        config.time_limit.as_secs_f64(),
        if config.nemesis.is_empty() {
            "none".to_string()
        } else {
            config
                .nemesis
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(",")
        },
        config.seed
    );
    eprintln!("  results: {}", run_dir.display());
    for note in &config.notes {
        eprintln!("  note: {note}");
    }
    if config.net != NetBackend::Loopback {
        eprintln!("  network: {}", config.net.name());
    }
    if let Some(h) = &config.hosts {
        let names: Vec<&str> = h.hosts.iter().map(|h| h.name.as_str()).collect();
        eprintln!("  hosts: {}", names.join(", "));
    }
    tracing::info!(seed = config.seed, dir = %run_dir.display(), "test starting");

    // The network and the cluster.
    let names: Vec<String> = (1..=config.nodes).map(|i| format!("n{i}")).collect();
    let tag = run_tag(&run_id);
    let mut network = None;
    let mut proxy = None;
    let mut fleet: Option<FleetGuard> = None;
    let specs = match config.net {
        NetBackend::Hosts => {
            let hosts = config
                .hosts
                .as_ref()
                .ok_or_else(|| "internal: net hosts without hosts".to_string())?;
            let ports = target.namespace_ports();
            let needs = faultline_remote::Needs {
                nftables: config.nemesis.contains(&FaultKind::Partition),
                faketime: config.nemesis.contains(&FaultKind::Clock) && !config.nemesis_defaulted,
                node_binary: match config.target.as_str() {
                    "raft" => None,
                    _ => target.binary(),
                },
            };
            let connected = {
                let (hosts, run_id, tag, names) =
                    (hosts.clone(), run_id.clone(), tag.clone(), names.clone());
                tokio::task::spawn_blocking(move || {
                    // The run's id on the hosts has the tag too (it hashes this process's id): two
                    // runs started in one second from different results folders differ.
                    let remote_id = format!("{run_id}-{tag}");
                    faultline_remote::Fleet::connect(&hosts, &remote_id, &tag, &names, &needs)
                })
                .await
                .map_err(|e| format!("connecting to the hosts failed: {e}"))??
            };
            let connected = FleetGuard(Some(Arc::new(connected)));
            if let Some(f) = connected.fleet() {
                let reports = f.reports.lock().map(|r| r.clone()).unwrap_or_default();
                for r in reports {
                    eprintln!(
                        "  host {} ({}): clock {:+.1} ms (± {:.1} ms)",
                        r.name,
                        r.node,
                        r.clock_offset_ms,
                        r.clock_rtt_ms / 2.0
                    );
                    if let Some(w) = &r.warning {
                        eprintln!("  warning: {w}");
                        tracing::warn!(host = r.name, "{w}");
                    }
                }
                if config.nemesis.contains(&FaultKind::Clock)
                    && f.faketime.iter().any(Option::is_none)
                {
                    // Only defaulted here (asked-for clock faults were checked on connecting).
                    config.notes.push(
                        "clock faults left out: libfaketime is not installed on every host"
                            .to_string(),
                    );
                    config.nemesis.retain(|k| *k != FaultKind::Clock);
                    eprintln!("  note: clock faults left out: libfaketime is not on every host");
                    // test.toml records the faults that really run.
                    std::fs::write(run_dir.join("test.toml"), config.to_toml()).map_err(|e| {
                        format!("cannot write {}: {e}", run_dir.join("test.toml").display())
                    })?;
                }
            }
            let mut specs = Vec::new();
            for (i, (name, host)) in names.iter().zip(&hosts.hosts).enumerate() {
                let ip = resolve_host(&host.name)?;
                // The node listens on this address: it must be the host's own (not a NAT's,
                // not an ssh-config alias for another machine).
                let own = connected
                    .fleet()
                    .and_then(|f| f.addresses.get(i).cloned())
                    .unwrap_or_default();
                if !own.contains(&ip.to_string()) {
                    return Err(format!(
                        "host {}: it is {ip} from here, which is not one of its own addresses \
                         ({}); the node listens on the address clients and peers use, so give \
                         each host by an address it has",
                        host.name,
                        own.join(", ")
                    ));
                }
                let dir = connected
                    .fleet()
                    .map(|f| f.node_dir(name))
                    .unwrap_or_default();
                specs.push(NodeSpec {
                    name: name.clone(),
                    id: i as u64 + 1,
                    client_addr: SocketAddr::new(ip, ports.0),
                    peer_addr: SocketAddr::new(ip, ports.1),
                    data_dir: Path::new(&dir).join("data"),
                    log_path: run_dir.join("nodes").join(format!("{name}.log")),
                });
            }
            fleet = Some(connected);
            specs
        }
        NetBackend::Loopback => node_specs(
            config.nodes,
            config.base_port,
            target.extra_ports(),
            &run_dir,
        )?,
        NetBackend::Netns => {
            let ports = target.namespace_ports();
            let net = Network::create(&tag, &names, config.net_range)?;
            tracing::info!(tag, host = %net.host_ip, "network namespaces created");
            let specs = names
                .iter()
                .enumerate()
                .map(|(i, name)| NodeSpec {
                    name: name.clone(),
                    id: i as u64 + 1,
                    client_addr: SocketAddr::from((net.ip(i), ports.0)),
                    peer_addr: SocketAddr::from((net.ip(i), ports.1)),
                    data_dir: run_dir.join("nodes").join(name).join("data"),
                    log_path: run_dir.join("nodes").join(format!("{name}.log")),
                })
                .collect();
            network = Some(NetworkGuard(net));
            specs
        }
        NetBackend::Proxy if !target.supports_proxy() => {
            return Err(format!(
                "net: the userspace proxy cannot relay the {} target's peer links",
                target.name()
            ))
        }
        NetBackend::Proxy => {
            let specs = node_specs(
                config.nodes,
                config.base_port,
                target.extra_ports(),
                &run_dir,
            )?;
            let peer_addrs: Vec<SocketAddr> = specs.iter().map(|s| s.peer_addr).collect();
            proxy = Some(Proxy::start(&names, &peer_addrs, config.seed).await?);
            specs
        }
    };
    // Data directories that can lose power: each a FUSE mount over run_dir/disks/<node>.
    // Unmounted after the nodes stop, or by the drop of `disks` on an early return.
    let mut disks = Vec::new();
    if config.nemesis.contains(&FaultKind::LoseUnfsynced) {
        for spec in &specs {
            let backing = run_dir.join("disks").join(&spec.name);
            let disk = faultline_faultfs::Disk::mount(&backing, &spec.data_dir, &spec.name)?;
            disks.push(std::sync::Mutex::new(Some(disk)));
        }
        tracing::info!(
            count = disks.len(),
            "data directories mounted (lose-unfsynced)"
        );
    }
    let remote = fleet.as_ref().and_then(FleetGuard::fleet);
    let host_version = remote
        .as_ref()
        .and_then(|f| f.node_versions.iter().flatten().next().cloned())
        .map(|v| {
            v.strip_prefix("etcd Version: ")
                .map(str::to_string)
                .unwrap_or(v)
        });
    let clock_lib = match config.nemesis.contains(&FaultKind::Clock) {
        true if remote.is_some() => None,
        true => Some(clock::library()?),
        false => None,
    };
    // The rolling upgrade's path: each binary with the version it says it is.
    let path = upgrade_path(&target, &config)?;
    let mut launches = Vec::new();
    let mut clock_files = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let peers: Vec<(u64, SocketAddr)> = specs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, other)| {
                let addr = proxy
                    .as_ref()
                    .and_then(|p| p.listen_addr(i, j))
                    .unwrap_or(other.peer_addr);
                (other.id, addr)
            })
            .collect();
        let control = match &clock_lib {
            None if remote.is_some() && config.nemesis.contains(&FaultKind::Clock) => {
                let f = remote.as_ref().ok_or("internal: no hosts")?;
                let control = format!("{}.faketime", f.node_dir(&spec.name));
                f.set_clock(i, &control, 0.0)?;
                Some(std::path::PathBuf::from(control))
            }
            Some(_) => {
                let control = run_dir
                    .join("nodes")
                    .join(format!("{}.faketime", spec.name));
                std::fs::create_dir_all(run_dir.join("nodes")).map_err(|e| {
                    format!("cannot create {}: {e}", run_dir.join("nodes").display())
                })?;
                clock::write_offset(&control, 0.0)?;
                Some(control)
            }
            None => None,
        };
        // One launch per version of the path (the first is the target's own binary).
        let mut per_version = Vec::new();
        for (v, step) in path.iter().enumerate() {
            let mut launch = match v {
                0 => target.launch(spec, &specs, &peers, &run_id),
                _ => target.launch_on(
                    Some(&step.binary),
                    &step.args,
                    spec,
                    &specs,
                    &peers,
                    &run_id,
                ),
            };
            launch.netns = network.as_ref().map(|n| n.0.netns_path(i));
            if let (Some(lib), Some(control)) = (&clock_lib, &control) {
                launch.env.extend(clock::environment(lib, control));
            }
            if let Some(f) = &remote {
                // The program, its log and its clock are the host's.
                launch.program = std::path::PathBuf::from(&f.node_program);
                launch.log = std::path::PathBuf::from(format!("{}.log", f.node_dir(&spec.name)));
                if let (Some(Some(lib)), Some(control)) = (f.faketime.get(i), &control) {
                    launch
                        .env
                        .extend(clock::environment(Path::new(lib), control));
                }
            }
            per_version.push(launch);
        }
        clock_files.push(control);
        launches.push(per_version);
    }
    let net = super::cluster::Net {
        network: network.as_ref().map(|n| n.0.clone()),
        proxy,
        clock_files,
        disks,
        remote: remote.clone(),
    };
    let client = target.client(specs.clone(), &run_dir.join("client-driver.log"), &run_id)?;
    let info = TargetInfo {
        client,
        leader_path: target.leader_path().map(str::to_string),
        status_path: target.status_path().map(str::to_string),
        stop: target.stop(),
        readiness: target.readiness(),
        reports_roles: target.reports_roles(),
    };
    let versions: Vec<String> = path.iter().map(|p| p.version.clone()).collect();
    if versions.len() > 1 {
        eprintln!("  upgrade: {}", versions.join(" -> "));
    }
    let cluster = Arc::new(Cluster::new(specs, launches, versions, net, info)?);
    let outcome = drive(
        &config,
        &run_dir,
        cluster.clone(),
        &target.readiness(),
        record,
        Interrupt {
            stop_tx,
            stop_rx,
            interrupted,
        },
    )
    .await;
    // Whatever happened, no node survives this point.
    let c = cluster.clone();
    let _ = tokio::task::spawn_blocking(move || {
        c.stop_all();
        c.unmount_disks();
    })
    .await;
    cluster.client.stop();
    tracing::info!("nodes stopped");
    // And no namespace either (the guard also covers early returns above).
    drop(network);
    // The hosts: logs and listings copied back, then nothing of the run left on them.
    let hosts = match fleet.take() {
        Some(mut guard) => {
            let nodes: Vec<(String, std::path::PathBuf)> = cluster
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.log_path.clone()))
                .collect();
            tokio::task::spawn_blocking(move || guard.finish(&nodes))
                .await
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let mut summary = outcome?;
    summary.hosts = hosts;
    summary.target = target.name();
    summary.target_version = match path.len() {
        // The hosts' own binary says what it is there.
        1 => host_version.or_else(|| target.version()),
        _ => path.first().map(|p| p.version.clone()),
    };
    results::finish(&config, &run_dir, &cluster, summary, write_report).await
}

/// One version of a rolling upgrade's path.
struct PathStep {
    binary: std::path::PathBuf,
    version: String,
    /// Extra arguments for nodes on this version.
    args: Vec<String>,
}

/// The versions nodes can run: the target's own binary first, then the upgrade's `to`
/// binaries, each with the version it reports (a binary that cannot say is an error here,
/// before anything starts). Without an upgrade, just the first.
fn upgrade_path(target: &Target, config: &TestConfig) -> Result<Vec<PathStep>, String> {
    let Some(upgrade) = &config.upgrade else {
        return Ok(vec![PathStep {
            binary: target.binary().unwrap_or_default(),
            version: String::new(),
            args: Vec::new(),
        }]);
    };
    let from = target
        .binary()
        .ok_or_else(|| "upgrade.from: the binary the nodes start on is unknown".to_string())?;
    let mut path = Vec::new();
    for (i, binary) in std::iter::once(&from).chain(&upgrade.to).enumerate() {
        let key = if i == 0 { "upgrade.from" } else { "upgrade.to" };
        let mut version = target.version_of(binary).map_err(|e| {
            format!(
                "{key}: cannot tell the version of {}: {e}",
                binary.display()
            )
        })?;
        // Two binaries of one version (a rebuild) still need names told apart.
        if path.iter().any(|p: &PathStep| p.version == version) {
            version = format!("{version} ({})", binary.display());
        }
        path.push(PathStep {
            binary: binary.clone(),
            version,
            args: if i == 0 {
                Vec::new()
            } else {
                upgrade.to_args.clone()
            },
        });
    }
    Ok(path)
}

/// Ends the run on its hosts when dropped, however the run ends (an early return included).
struct FleetGuard(Option<Arc<faultline_remote::Fleet>>);

impl FleetGuard {
    fn fleet(&self) -> Option<Arc<faultline_remote::Fleet>> {
        self.0.clone()
    }

    /// Copies the nodes' logs (`(node, local log)`) back and cleans the hosts; returns each
    /// host's report.
    fn finish(
        &mut self,
        nodes: &[(String, std::path::PathBuf)],
    ) -> Vec<faultline_remote::HostReport> {
        let Some(fleet) = self.0.take() else {
            return Vec::new();
        };
        for problem in fleet.finish(nodes) {
            tracing::warn!(problem, "hosts");
            eprintln!(
                "  warning: {}",
                faultline_checker::text::for_terminal(&problem)
            );
        }
        let reports = fleet.reports.lock().map(|r| r.clone()).unwrap_or_default();
        reports
    }
}

impl Drop for FleetGuard {
    fn drop(&mut self) {
        if self.0.is_some() {
            let _ = self.finish(&[]);
        }
    }
}

/// A host's address for clients and peers (the first its name resolves to).
fn resolve_host(name: &str) -> Result<std::net::IpAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(ip);
    }
    (name, 0)
        .to_socket_addrs()
        .map_err(|e| format!("host {name}: cannot resolve it: {e}"))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("host {name}: its name resolves to no address"))
}

/// Deletes a run's network namespaces when dropped, however the run ends.
struct NetworkGuard(Network);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        self.0.destroy();
        tracing::info!(tag = self.0.tag, "network namespaces removed");
    }
}

/// Eight hex digits naming a run's namespaces and interfaces (interface names are short).
fn run_tag(run_id: &str) -> String {
    let h = run_id
        .bytes()
        .chain(std::process::id().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("{:08x}", (h ^ (h >> 32)) as u32)
}

/// How a run learns it was interrupted: `stop` turns true on the first Ctrl-C or SIGTERM.
struct Interrupt {
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    interrupted: Arc<std::sync::atomic::AtomicBool>,
}

/// Everything between starting the nodes and stopping them.
async fn drive(
    config: &TestConfig,
    run_dir: &Path,
    cluster: Arc<Cluster>,
    readiness: &Readiness,
    record: bool,
    interrupt: Interrupt,
) -> Result<RunSummary, String> {
    let Interrupt {
        stop_tx,
        stop_rx,
        interrupted,
    } = interrupt;
    cluster.start_all()?;
    let ready = {
        let mut stop = stop_rx.clone();
        tokio::select! {
            r = cluster.client.wait_ready(&cluster.nodes, readiness) => r,
            _ = stop.wait_for(|s| *s) => {
                return Err("interrupted while the cluster was starting; nothing was recorded".to_string());
            }
        }
    };
    let leader = match ready {
        Ok(l) => l,
        Err(e) => {
            let crashed: Vec<String> = cluster
                .reap_crashes()
                .into_iter()
                .map(|(n, how)| format!("{n} exited ({how}):\n{}", cluster.log_tail(&n, 5)))
                .collect();
            return Err(if crashed.is_empty() {
                format!("the cluster did not start: {e}")
            } else {
                format!("the cluster did not start: {e}\n{}", crashed.join("\n"))
            });
        }
    };
    tracing::info!(leader, "cluster ready");

    let start = Instant::now();
    cluster.mark_start(start);
    let history_path = run_dir.join("history.jsonl");
    // Each node's own view (role, term, leader) over time, for the report's timeline.
    let sampled = cluster.clone();
    let sampler = super::status_sampler::StatusSampler::start(
        cluster.nodes.clone(),
        start,
        run_dir.join("nodes/status.jsonl"),
        cluster.observed.clone(),
        move |n| {
            let c = sampled.clone();
            async move { c.role(&n).await }
        },
        {
            let c = cluster.clone();
            move |node: &str| c.version_of(node)
        },
    );
    let (recorder, writer) = Recorder::create(&history_path, start, record)?;
    let mut seeds = Rng::seed_from_u64(config.seed);
    let workload = config.workload.build(config.concurrency);
    let checker = workload.checker();
    let clients = Arc::new(Clients {
        cluster: cluster.clone(),
        recorder: recorder.clone(),
        workload: Mutex::new((workload, Rng::seed_from_u64(seeds.random()))),
        next_process: AtomicU64::new(config.concurrency as u64),
        op_timeout: config.op_timeout,
        limiter: (config.rate > 0.0).then(|| Limiter {
            next: Mutex::new((Instant::now(), Rng::seed_from_u64(seeds.random()))),
            period: Duration::from_secs_f64(1.0 / config.rate),
        }),
    });

    // Clients, nemesis and progress, until the time limit or an interrupt.
    let mut workers = Vec::new();
    for w in 0..config.concurrency {
        let clients = clients.clone();
        let stop = stop_rx.clone();
        workers.push(tokio::spawn(worker(w, clients, stop)));
    }
    let nemesis_config = NemesisConfig {
        schedule: config.schedule,
        faults: config.nemesis.clone(),
        aims: config.nemesis_targets.clone(),
        partitions: config.partitions.clone(),
        clock_modes: config.clock_modes.clone(),
        clock_skew: config.clock_skew,
        latency: config.latency,
        loss: config.loss,
        interval: config.nemesis_interval,
        min_quiet: config.max_recovery.unwrap_or_default(),
        seed: seeds.random(),
        replay: config.replay.clone(),
        replay_aim: config.replay_aim,
    };
    // With nodes on SSH hosts, each fault's record also names the hosts it hit.
    let host_of: Option<std::collections::BTreeMap<String, String>> =
        config.hosts.as_ref().map(|h| {
            cluster
                .nodes
                .iter()
                .zip(&h.hosts)
                .map(|(n, h)| (n.name.clone(), h.name.clone()))
                .collect()
        });
    let nemesis = {
        let cluster = cluster.clone();
        let recorder = recorder.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let record = move |f: &str, v: Value| recorder.nemesis(f, with_hosts(v, &host_of));
            faultline_nemesis::run(cluster.as_ref(), &nemesis_config, start, &record, stop).await
        })
    };
    // The rolling upgrade, alongside the faults.
    let upgrade = config.upgrade.as_ref().map(|u| {
        let plan = faultline_nemesis::upgrade::UpgradePlan {
            versions: cluster.versions.clone(),
            order: u.order,
            downgrade: u.downgrade,
            stall: u.stall,
            start_after: u.start,
            gap: u.gap,
            pass_gap: u.pass_gap,
            rejoin_timeout: u.rejoin_timeout,
            seed: seeds.random(),
        };
        let cluster = cluster.clone();
        let recorder = recorder.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let record = move |f: &str, v: Value| {
                if f == "upgraded" {
                    say_upgrade_step(&v);
                }
                recorder.nemesis(f, v)
            };
            faultline_nemesis::upgrade::run(cluster.as_ref(), &plan, start, &record, stop).await
        })
    });
    let progress = tokio::spawn(progress(
        recorder.clone(),
        cluster.clone(),
        config.time_limit,
        stop_rx.clone(),
    ));
    {
        let mut stop = stop_rx.clone();
        tokio::select! {
            _ = tokio::time::sleep(config.time_limit) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    // No operation is invoked after this moment (recovery is judged up to it).
    let stop_sent = start.elapsed();
    let _ = stop_tx.send(true);
    let mut latencies: Vec<u32> = Vec::new();
    for w in workers {
        if let Ok(mut l) = w.await {
            latencies.append(&mut l);
        }
    }
    let faults = nemesis.await.unwrap_or_default();
    let upgrade = match upgrade {
        Some(task) => Some(task.await.unwrap_or_else(|e| {
            // Not expected; but a lost upgrade must not pass for a valid one.
            tracing::error!("the rolling upgrade task failed: {e}");
            faultline_nemesis::upgrade::UpgradeReport {
                steps: vec![faultline_nemesis::upgrade::UpgradeStep {
                    outcome: "error".to_string(),
                    errors: vec![format!("the rolling upgrade stopped: {e}")],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })),
        None => None,
    };
    if let Some(u) = &upgrade {
        if !u.complete && u.failure().is_none() {
            eprintln!(
                "  warning: the upgrade did not complete: {} of {} steps were not taken before \
                 the time limit (raise --time-limit, or lower upgrade.gap / --upgrade-stall)",
                u.steps_left,
                u.steps_left + u.steps.len()
            );
        }
    }
    let _ = progress.await;
    let clients_done = start.elapsed();
    tracing::info!(faults = faults.len(), "clients stopped, faults healed");

    // Recovery, final reads and the convergence check, unless the user asked to stop.
    let was_interrupted = interrupted.load(Ordering::Relaxed);
    let mut converged = None;
    let mut not_recovered = None;
    if !was_interrupted {
        if !config.recovery.is_zero() {
            eprintln!("  recovering for {} s", config.recovery.as_secs_f64());
            tokio::time::sleep(config.recovery).await;
        }
        match cluster.client.wait_ready(&cluster.nodes, readiness).await {
            Ok(_) => {
                final_reads(&clients, config.concurrency).await;
                let mut keys: Vec<String> = {
                    let guard = clients.workload.lock().await;
                    guard.0.final_reads().into_iter().map(|r| r.key).collect()
                };
                keys.sort();
                keys.dedup();
                eprintln!(
                    "  comparing {} keys across the {} nodes",
                    keys.len(),
                    cluster.nodes.len()
                );
                let c = convergence::check(&cluster, &keys, CONVERGENCE_PATIENCE).await;
                if let Some(s) = c.sentence() {
                    eprintln!("  {}", s);
                }
                converged = Some(c);
            }
            Err(e) => {
                tracing::warn!("no final reads: {e}");
                eprintln!("  warning: no final reads: the cluster did not recover ({e})");
                // Say so in the results (and as a skipped JUnit case), not only here.
                converged = Some(convergence::Convergence {
                    skipped: Some(format!("the cluster did not recover after the faults: {e}")),
                    ..convergence::Convergence::default()
                });
                not_recovered = Some(e);
            }
        }
    } else {
        eprintln!("  interrupted: faults healed; skipping recovery and final reads");
    }
    let crashes = cluster.reap_crashes();
    for (node, how) in &crashes {
        tracing::warn!(node, how, "node exited unexpectedly");
    }
    drop(clients);
    drop(recorder);
    sampler.stop().await;
    let events = writer.finish()?;
    tracing::info!(events, "history written");
    Ok(RunSummary {
        convergence: converged,
        target: String::new(),
        target_version: None,
        client_latencies_us: latencies,
        checker,
        faults,
        interrupted: was_interrupted,
        clients_ran: clients_done,
        stop_sent,
        total: start.elapsed(),
        history: history_path,
        recorded: record,
        not_recovered,
        upgrade,
        hosts: Vec::new(),
    })
}

/// A fault's record with `"hosts": {node: host}` for the nodes it names (when nodes run on SSH
/// hosts).
fn with_hosts(mut v: Value, host_of: &Option<std::collections::BTreeMap<String, String>>) -> Value {
    let Some(host_of) = host_of else { return v };
    let mut named = serde_json::Map::new();
    let mut add = |node: &str| {
        if let Some(h) = host_of.get(node) {
            named.insert(node.to_string(), Value::String(h.clone()));
        }
    };
    if let Some(nodes) = v.get("nodes").and_then(Value::as_array) {
        nodes.iter().filter_map(Value::as_str).for_each(&mut add);
    }
    if let Some(grudge) = v.get("grudge").and_then(Value::as_object) {
        grudge.keys().for_each(|n| add(n));
    }
    if let Some(node) = v.get("node").and_then(Value::as_str) {
        add(node);
    }
    if let (false, Some(obj)) = (named.is_empty(), v.as_object_mut()) {
        obj.insert("hosts".to_string(), Value::Object(named));
    }
    v
}

/// One line on the terminal per upgrade step, as it ends.
fn say_upgrade_step(v: &Value) {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let how = match v.get("outcome").and_then(Value::as_str) {
        Some("rejoined") => format!(
            "rejoined in {:.1} s",
            v.get("rejoin_ms").and_then(Value::as_f64).unwrap_or(0.0) / 1e3
        ),
        Some("refused") => format!("exited ({})", text("exit_status")),
        Some(other) => other.to_string(),
        None => "?".to_string(),
    };
    let line = format!(
        "upgrade: {} now on {}: {how}",
        text("node"),
        text("to_version")
    );
    let line = faultline_targets::sanitize(&line, 300);
    if std::io::stderr().is_terminal() {
        eprintln!("\r  {line}\x1b[K");
    } else {
        eprintln!("  {line}");
    }
}

/// One client worker: one logical process at a time, one operation in flight. Returns the
/// latency of each operation it completed, in microseconds, as the client measured it.
async fn worker(w: usize, ctx: Arc<Clients>, mut stop: watch::Receiver<bool>) -> Vec<u32> {
    let mut latencies = Vec::new();
    let nodes = &ctx.cluster.nodes;
    let node = nodes[w % nodes.len()].name.clone();
    let mut process = w as u64;
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(limiter) = &ctx.limiter {
            if !limiter.wait(&mut stop).await {
                break;
            }
        }
        let request = {
            let mut guard = ctx.workload.lock().await;
            let (workload, rng) = &mut *guard;
            workload.next(rng)
        };
        let started = Instant::now();
        let done = perform(&ctx, process, &node, &request).await;
        latencies.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        match done {
            Done::Indeterminate => {
                // Jepsen's rule: the worker continues as a fresh process.
                process = ctx.next_process.fetch_add(1, Ordering::Relaxed);
            }
            Done::Unavailable => {
                // No leader, or the node is down: a real client would back off briefly
                // rather than spin, and the history stays readable.
                let stopped = tokio::select! {
                    _ = tokio::time::sleep(UNAVAILABLE_BACKOFF) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                if stopped {
                    break;
                }
            }
            Done::Determinate => {}
        }
    }
    latencies
}

/// Pause after an operation refused because no node could serve it.
const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(50);

/// How an operation ended, as far as the worker is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Done {
    Determinate,
    /// Refused because the cluster could not serve it (no leader, node down).
    Unavailable,
    Indeterminate,
}

/// Records, performs and records one operation.
async fn perform(ctx: &Clients, process: u64, node: &str, request: &Request) -> Done {
    let f = request.op.f();
    let input = request.op.input();
    let p = Process::Client(process);
    ctx.recorder.record(
        p,
        EventType::Invoke,
        f,
        Some(&request.key),
        input.clone(),
        Some(node),
        None,
    );
    let done = ctx
        .cluster
        .client
        .execute(node, request, Instant::now() + ctx.op_timeout)
        .await;
    let (kind, value, error, result) = match done.outcome {
        Outcome::Ok(v) => (EventType::Ok, v, None, Done::Determinate),
        Outcome::Fail(e) => {
            let result = if e == "not-leader" || e.starts_with("connection refused") {
                Done::Unavailable
            } else {
                Done::Determinate
            };
            (EventType::Fail, input, Some(Value::String(e)), result)
        }
        Outcome::Info(e) => (
            EventType::Info,
            input,
            Some(Value::String(e)),
            Done::Indeterminate,
        ),
    };
    ctx.recorder.record(
        p,
        kind,
        f,
        Some(&request.key),
        value,
        Some(&done.node),
        error,
    );
    result
}

/// After recovery, one read of every key the workload used, so lost writes show.
async fn final_reads(ctx: &Arc<Clients>, concurrency: usize) {
    let reads = {
        let guard = ctx.workload.lock().await;
        guard.0.final_reads()
    };
    eprintln!("  final reads of {} keys", reads.len());
    let queue = Arc::new(Mutex::new(reads));
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let ctx = ctx.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let node = ctx.cluster.nodes[w % ctx.cluster.nodes.len()].name.clone();
            let mut process = ctx.next_process.fetch_add(1, Ordering::Relaxed);
            loop {
                let Some(request) = queue.lock().await.pop() else {
                    break;
                };
                if perform(&ctx, process, &node, &request).await == Done::Indeterminate {
                    process = ctx.next_process.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Ctrl-C and SIGTERM end the test early (the first ends it gracefully; the run still checks
/// what was recorded).
fn spawn_signal_handler(
    stop: watch::Sender<bool>,
    interrupted: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    // Registered here, before returning, not inside the task: a signal in between would
    // otherwise take its default action (or be ignored, for a background job).
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::spawn(async move {
        // Ctrl-C or SIGTERM, whichever comes first.
        async fn one(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    let _ = s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async fn either(int: &mut Option<Signal>, term: &mut Option<Signal>) {
            tokio::select! {
                _ = one(int) => {}
                _ = one(term) => {}
            }
        }
        either(&mut int, &mut term).await;
        interrupted.store(true, Ordering::Relaxed);
        eprintln!("\n  interrupted: ending faults, stopping nodes, checking what was recorded");
        let _ = stop.send(true);
        // A second interrupt means "now": the nodes die with this process (parent-death
        // signal); anything else left is for `faultline clean`.
        either(&mut int, &mut term).await;
        eprintln!(
            "\n  interrupted again: exiting now; run `faultline clean` (with --hosts HOSTS for \
             nodes on SSH hosts, which keep running) to remove what is left"
        );
        std::process::exit(130);
    });
}

/// A progress line on a terminal (rewritten in place), or a log line every 10 s otherwise.
async fn progress(
    recorder: Recorder,
    cluster: Arc<Cluster>,
    limit: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(10)
    };
    let mut last_ok = 0u64;
    let mut last_at = Instant::now();
    loop {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        for (node, how) in cluster.reap_crashes() {
            eprintln!("\n  warning: node {node} exited unexpectedly ({how}); see its log");
        }
        let c = &recorder.counts;
        let ok = c.ok.load(Ordering::Relaxed);
        let fail = c.fail.load(Ordering::Relaxed);
        let info = c.info.load(Ordering::Relaxed);
        let since_last = last_at.elapsed().as_secs_f64();
        if stopped && !tty && since_last < 1.0 {
            // The line just printed already has these counts; a rate over a few
            // milliseconds would only mislead.
            break;
        }
        let rate = (ok.saturating_sub(last_ok)) as f64 / since_last.max(1e-3);
        last_ok = ok;
        last_at = Instant::now();
        let leader = match cluster.observed.leader() {
            Some(l) => match l.term {
                Some(t) => format!("  leader {} (term {t})", l.node),
                None => format!("  leader {}", l.node),
            },
            None => String::new(),
        };
        let line = format!(
            "[{:>4.0}s/{:.0}s] ok {ok}  fail {fail}  info {info}  {rate:.0} ok/s  nodes up {}/{}{leader}",
            recorder.now().as_secs_f64(),
            limit.as_secs_f64(),
            cluster.pids().len(),
            cluster.nodes.len(),
        );
        if tty {
            eprint!("\r  {line}\x1b[K");
        } else {
            eprintln!("  {line}");
        }
        if stopped {
            if tty {
                eprintln!();
            }
            break;
        }
    }
}
