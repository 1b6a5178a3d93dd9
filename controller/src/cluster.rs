//! The cluster under test as the controller holds it: node specs, their processes, and the
//! operations a nemesis may perform on them.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faultline_nemesis::clock;
use faultline_nemesis::net::Network;
use faultline_nemesis::proxy::Proxy;
use faultline_nemesis::{ClockReading, Grudge, Leader};

use faultline_nemesis::upgrade::Rejoin;
use faultline_targets::client::{Client, Readiness};
use faultline_targets::process::{self, Launch, NodeProcess};
use faultline_targets::NodeSpec;
use nix::sys::signal::Signal;

/// The network a run's nodes are on, and their clocks.
pub struct Net {
    /// Network namespaces (partitions as nftables rules), if any.
    pub network: Option<Network>,
    /// The userspace proxy between peers (partitions, latency, loss), if any.
    pub proxy: Option<Proxy>,
    /// Each node's libfaketime control file, when clock faults are on.
    pub clock_files: Vec<Option<PathBuf>>,
    /// Each node's data directory as a FUSE filesystem that can lose power (when
    /// `lose-unfsynced` is on; empty otherwise).
    pub disks: Vec<Mutex<Option<faultline_faultfs::Disk>>>,
    /// The SSH hosts the nodes run on (node i on host i), if any: then processes, partitions,
    /// clock files and logs are theirs.
    pub remote: Option<std::sync::Arc<faultline_remote::Fleet>>,
}

/// The nodes of a run and their processes.
pub struct Cluster {
    net: Net,
    pub nodes: Vec<NodeSpec>,
    /// How each node is started, per version of the rolling upgrade's path: `launches[i][v]`
    /// (one version when there is no upgrade).
    launches: Vec<Vec<Launch>>,
    /// The version each node runs (index into its launches), and their names.
    running: Mutex<Vec<usize>>,
    pub versions: Vec<String>,
    /// One lifecycle change at a time per node: a fault's restart and an upgrade's swap must
    /// not both start a process for it.
    lifecycle: Vec<tokio::sync::Mutex<()>>,
    /// What upgrade steps are doing (see [`Steps`]).
    steps: Mutex<Steps>,
    /// Nodes (by index) a kill or power loss took down whose heal has not restarted them
    /// yet: the heal, not an upgrade step, starts them again.
    heal_pending: Mutex<HashSet<usize>>,
    procs: Mutex<Vec<Option<NodeProcess>>>,
    /// Processes (pids) killed on purpose: their exit is not a crash. By pid, not by node, so
    /// a restart racing with the crash check can never make a killed process look crashed.
    killed: Mutex<HashSet<i32>>,
    /// Nodes seen exiting when nobody killed them: (node, how, when).
    crashes: Mutex<Vec<(String, String)>>,
    /// Processes whose unexpected exit is already in `crashes` (a node restarted after a
    /// crash is a new process, and its own crash is reported too).
    crashed_pids: Mutex<std::collections::HashSet<i32>>,
    pub client: Client,
    /// Every node's role as last sampled (kept up to date by the status sampler).
    pub observed: std::sync::Arc<super::view::Observed>,
    /// Where nodes say who leads, and report their state.
    leader_path: Option<String>,
    status_path: Option<String>,
    /// How nodes are stopped: this signal, then SIGKILL after the grace period.
    stop_signal: Signal,
    stop_grace: Duration,
    readiness: Readiness,
    /// Whether nodes report a role (and so a leader they know) that rejoining can be judged
    /// by; otherwise a node has rejoined once it is ready.
    reports_roles: bool,
}

/// Upgrade steps in progress.
#[derive(Default)]
struct Steps {
    /// Nodes (by index) a step is replacing, from the swap until the step has judged them.
    nodes: HashSet<usize>,
    /// Processes started for those nodes meanwhile (pid → node): their exit is the step's
    /// finding (a refused start), not a crash.
    probation: std::collections::HashMap<i32, usize>,
}

/// What the cluster needs to know about its target.
pub struct TargetInfo {
    pub client: Client,
    pub leader_path: Option<String>,
    pub status_path: Option<String>,
    pub stop: (Signal, Duration),
    pub readiness: Readiness,
    pub reports_roles: bool,
}

/// Chooses node addresses on 127.0.0.1: consecutive ports from `base`, or free ports picked by
/// the kernel when `base` is 0. `extra` more ports after each peer port must be free too (TCP
/// and UDP: Consul's gossip). Fails, naming the port, if a chosen port is taken.
pub fn node_specs(
    count: usize,
    base: u16,
    extra: u16,
    run_dir: &Path,
) -> Result<Vec<NodeSpec>, String> {
    let mut specs = Vec::with_capacity(count);
    let mut held = Vec::new();
    let stride = 2 + extra;
    for i in 0..count {
        let (client, peer) = if base == 0 {
            // Keep each listener open until all are chosen, so no two nodes get one port.
            let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
            let client = port_of(&a)?;
            held.push(a);
            let mut peer = None;
            for _ in 0..100 {
                let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                    .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
                let p = port_of(&b)?;
                let extras: Result<Vec<_>, _> = (1..=extra)
                    .map(|k| reserve(p.checked_add(k).unwrap_or(0)))
                    .collect();
                held.push(b);
                if let Ok(mut extras) = extras {
                    held.append(&mut extras);
                    peer = Some(p);
                    break;
                }
            }
            let peer =
                peer.ok_or_else(|| "cannot find free consecutive ports on 127.0.0.1".to_string())?;
            (client, peer)
        } else {
            let client = base
                .checked_add(stride * i as u16)
                .and_then(|c| c.checked_add(stride))
                .map(|end| end - stride)
                .ok_or_else(|| format!("base_port: {base} leaves no room for {count} nodes"))?;
            for port in client..client + stride {
                reserve(port).map_err(|e| {
                    format!("base_port: port {port} on 127.0.0.1 is not free ({e}); choose another base port")
                })?;
            }
            (client, client + 1)
        };
        let name = format!("n{}", i + 1);
        specs.push(NodeSpec {
            id: i as u64 + 1,
            client_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, client)),
            peer_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, peer)),
            data_dir: run_dir.join("nodes").join(&name).join("data"),
            log_path: run_dir.join("nodes").join(format!("{name}.log")),
            name,
        });
    }
    drop(held);
    Ok(specs)
}

/// Checks that `port` is free on 127.0.0.1 for TCP and UDP, holding the TCP one.
fn reserve(port: u16) -> Result<TcpListener, String> {
    if port == 0 {
        return Err("no such port".to_string());
    }
    let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    Ok(tcp)
}

fn port_of(l: &TcpListener) -> Result<u16, String> {
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read a listener's port: {e}"))
}

impl Cluster {
    /// `launches[i]` starts node i on each version named in `versions` (one of each).
    pub fn new(
        nodes: Vec<NodeSpec>,
        launches: Vec<Vec<Launch>>,
        versions: Vec<String>,
        net: Net,
        target: TargetInfo,
    ) -> Result<Cluster, String> {
        if launches.len() != nodes.len() || launches.iter().any(|l| l.len() != versions.len()) {
            return Err("internal: one launch per node and version is needed".to_string());
        }
        Ok(Cluster {
            net,
            running: Mutex::new(vec![0; nodes.len()]),
            versions,
            lifecycle: nodes.iter().map(|_| tokio::sync::Mutex::new(())).collect(),
            steps: Mutex::new(Steps::default()),
            heal_pending: Mutex::new(HashSet::new()),
            readiness: target.readiness,
            reports_roles: target.reports_roles,
            client: target.client,
            observed: std::sync::Arc::new(super::view::Observed::default()),
            leader_path: target.leader_path,
            status_path: target.status_path,
            stop_signal: target.stop.0,
            stop_grace: target.stop.1,
            procs: Mutex::new(vec![None; nodes.len()]),
            killed: Mutex::new(HashSet::new()),
            crashes: Mutex::new(Vec::new()),
            crashed_pids: Mutex::new(std::collections::HashSet::new()),
            nodes,
            launches,
        })
    }

    /// The node that claims to lead, if the target can tell: as last sampled, or (before the
    /// sampler has seen one) by asking the nodes.
    pub async fn current_leader(&self) -> Option<String> {
        if let Some(l) = self.observed.leader() {
            return Some(l.node);
        }
        self.client
            .leader(&self.nodes, self.leader_path.as_deref())
            .await
    }

    /// A node's role, term and leader as it reports them now (for the status sampler).
    pub async fn role(&self, node: &NodeSpec) -> Option<faultline_targets::role::RoleReport> {
        self.client
            .role(
                node,
                self.status_path.as_deref(),
                super::status_sampler::TIMEOUT,
            )
            .await
    }

    /// A node's own report of its state, if the target gives one.
    pub async fn node_state(&self, node: &NodeSpec) -> Option<serde_json::Value> {
        self.client
            .node_state(node, self.status_path.as_deref())
            .await
    }

    /// What the replica comparison reads from `node` (see `Client::fingerprint_state`).
    pub async fn fingerprint_state(&self, node: &NodeSpec) -> Option<serde_json::Value> {
        self.client
            .fingerprint_state(node, self.status_path.as_deref())
            .await
    }

    fn index(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == node)
    }

    /// How far node `i`'s host's clock is from the controller's (0 for a node here).
    fn host_clock_offset_ms(&self, i: usize) -> f64 {
        self.net
            .remote
            .as_ref()
            .and_then(|f| {
                f.reports
                    .lock()
                    .ok()
                    .and_then(|r| r.get(i).map(|h| h.clock_offset_ms))
            })
            .unwrap_or(0.0)
    }

    /// The test starts now (outages of SSH hosts are timed from here).
    pub fn mark_start(&self, start: Instant) {
        if let Some(f) = &self.net.remote {
            f.mark_start(start);
        }
    }

    /// Starts every node.
    pub fn start_all(&self) -> Result<(), String> {
        for n in &self.nodes {
            self.start(&n.name)?;
        }
        Ok(())
    }

    /// Node `i`'s process (running or not), as last started.
    fn current(&self, i: usize) -> Option<NodeProcess> {
        self.procs.lock().ok().and_then(|p| p[i].clone())
    }

    /// Whether process `pid` was killed on purpose (by a fault, or stopped by a step).
    fn was_killed(&self, pid: i32) -> bool {
        self.killed.lock().is_ok_and(|k| k.contains(&pid))
    }

    /// Whether a fault's heal is still to restart node `i`.
    fn heal_is_pending(&self, i: usize) -> bool {
        self.heal_pending.lock().is_ok_and(|h| h.contains(&i))
    }

    /// The rest of a fault's restart, under the node's lifecycle lock.
    async fn restart_locked(&self, i: usize) -> Result<(), String> {
        // A host that is away is waited for (it is reconnected to every second): a heal that
        // gave up would leave the node down for the rest of the run.
        let deadline = Instant::now() + HOST_PATIENCE;
        loop {
            match self.restart_once(i).await {
                Err(e)
                    if self.net.remote.is_some() && host_away(&e) && Instant::now() < deadline =>
                {
                    tracing::info!(
                        node = self.nodes[i].name,
                        error = e,
                        "heal waits for its host"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    async fn restart_once(&self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i].name;
        // Started meanwhile by someone else (an upgrade step, another fault's heal): a process
        // that runs and was not killed is the node, up already.
        if self
            .current(i)
            .is_some_and(|p| p.is_running() && !self.was_killed(p.pid))
        {
            return Ok(());
        }
        self.await_exit(node).await?;
        self.start(node).map(|_| ())
    }

    /// The rest of an upgrade step's swap, under the node's lifecycle lock.
    async fn swap_locked(&self, i: usize, version: usize) -> Result<(), String> {
        // A fault killed the node (the step waited for it, but the fault struck again): its
        // heal restarts it, on the version set here; starting it now would race that heal
        // (and a power loss's rollback of the disk).
        let fault_holds_it = self.heal_is_pending(i)
            && self
                .current(i)
                .is_none_or(|p| !p.is_running() || self.was_killed(p.pid));
        if !fault_holds_it {
            self.stop_one(i).await?;
        }
        if let Ok(mut r) = self.running.lock() {
            r[i] = version;
        }
        // A kill may also land while the old process is being stopped: then its heal starts
        // the node, not this step.
        if !fault_holds_it && !self.heal_is_pending(i) {
            self.start(&self.nodes[i].name)?;
        }
        Ok(())
    }

    /// An upgrade step is done with node `i`: processes started for it from now on are judged
    /// by the crash check again.
    fn end_step(&self, i: usize) {
        if let Ok(mut steps) = self.steps.lock() {
            steps.nodes.remove(&i);
            steps.probation.retain(|_, node| *node != i);
        }
    }

    /// Stops a running node as the target is stopped (resume, its stop signal, SIGKILL after
    /// the grace period) and waits until it is gone. Its exit is not a crash.
    async fn stop_one(&self, i: usize) -> Result<(), String> {
        let Some(p) = self.current(i) else {
            return Ok(());
        };
        if let Ok(mut k) = self.killed.lock() {
            k.insert(p.pid);
        }
        p.signal(Signal::SIGCONT);
        p.signal(self.stop_signal);
        let deadline = Instant::now() + self.stop_grace;
        while p.is_running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if p.is_running() {
            p.signal(Signal::SIGKILL);
        }
        self.await_exit(&self.nodes[i].name).await
    }

    /// Starts `node` on the version it is set to run; returns the new process's pid.
    fn start(&self, node: &str) -> Result<i32, String> {
        let i = self
            .index(node)
            .ok_or_else(|| format!("unknown node {node}"))?;
        if let Some(slot) = self.net.disks.get(i) {
            let serving = match slot.lock() {
                Ok(disk) => disk
                    .as_ref()
                    .map_or_else(|| Err("unmounted".to_string()), |d| d.serving()),
                Err(_) => Err("the disk's lock is poisoned".to_string()),
            };
            serving.map_err(|e| {
                format!("{node} was not started: its data directory is not served ({e})")
            })?;
        }
        let version = self.running.lock().map(|r| r[i]).unwrap_or(0);
        let launch = &self.launches[i][version];
        let proc = match &self.net.remote {
            Some(fleet) => off_runtime(|| fleet.spawn(i, node, launch))?,
            None => {
                std::fs::create_dir_all(&self.nodes[i].data_dir).map_err(|e| {
                    format!("cannot create {}: {e}", self.nodes[i].data_dir.display())
                })?;
                process::spawn(launch.clone())?
            }
        };
        tracing::info!(
            node,
            pid = proc.pid,
            version = self.versions[version],
            "node started"
        );
        let pid = proc.pid;
        // Started during an upgrade step (by the step, or by a fault's heal meanwhile): its
        // exit is judged by the step. On probation before anyone can see it, so the crash
        // check never gets there first.
        if let Ok(mut steps) = self.steps.lock() {
            if steps.nodes.contains(&i) {
                steps.probation.insert(pid, i);
            }
        }
        if let Ok(mut procs) = self.procs.lock() {
            procs[i] = Some(proc);
        }
        Ok(pid)
    }

    /// The version each node runs now, by node name (for the status samples).
    pub fn version_of(&self, node: &str) -> Option<String> {
        if self.versions.len() < 2 {
            return None;
        }
        let i = self.index(node)?;
        let v = self.running.lock().ok()?[i];
        self.versions.get(v).cloned()
    }

    /// Pids of the running nodes (for `faultline clean` and the results).
    pub fn pids(&self) -> Vec<(String, i32)> {
        let procs = self.procs.lock().map(|p| p.clone()).unwrap_or_default();
        self.nodes
            .iter()
            .zip(procs)
            .filter_map(|(n, p)| {
                p.filter(|p| p.is_running() && !p.is_remote())
                    .map(|p| (n.name.clone(), p.pid))
            })
            .collect()
    }

    /// Notes nodes that exited without being killed. Returns newly seen ones.
    pub fn reap_crashes(&self) -> Vec<(String, String)> {
        let procs = self.procs.lock().map(|p| p.clone()).unwrap_or_default();
        let killed = self.killed.lock().map(|k| k.clone()).unwrap_or_default();
        let mut fresh = Vec::new();
        let probation = self
            .steps
            .lock()
            .map(|s| s.probation.clone())
            .unwrap_or_default();
        for (n, p) in self.nodes.iter().zip(procs) {
            let Some(p) = p else { continue };
            let Some(status) = p.exit_status() else {
                continue;
            };
            if killed.contains(&p.pid) || probation.contains_key(&p.pid) {
                continue;
            }
            let fresh_exit = self
                .crashed_pids
                .lock()
                .map(|mut seen| seen.insert(p.pid))
                .unwrap_or(false);
            if fresh_exit {
                let how = format!("{status}");
                if let Ok(mut c) = self.crashes.lock() {
                    c.push((n.name.clone(), how.clone()));
                }
                fresh.push((n.name.clone(), how));
            }
        }
        fresh
    }

    pub fn crashes(&self) -> Vec<(String, String)> {
        self.crashes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Stops every node: resume (a stopped process cannot handle a signal), the target's stop
    /// signal, then SIGKILL whatever is still alive after its grace period.
    pub fn stop_all(&self) {
        let grace = self.stop_grace;
        let procs: Vec<NodeProcess> = self
            .procs
            .lock()
            .map(|p| p.iter().flatten().cloned().collect())
            .unwrap_or_default();
        for p in &procs {
            p.signal(Signal::SIGCONT);
            p.signal(self.stop_signal);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && procs.iter().any(NodeProcess::is_running) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in &procs {
            // Also reaches anything the node forked, which SIGTERM to the leader may not.
            p.signal(Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && procs.iter().any(NodeProcess::is_running) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Unmounts the nodes' FUSE data directories (after the nodes stopped). What was not
    /// synced stays in the backing directories: the run is over, nothing loses power now.
    pub fn unmount_disks(&self) {
        for (node, slot) in self.nodes.iter().zip(&self.net.disks) {
            let disk = slot.lock().ok().and_then(|mut d| d.take());
            if let Some(Err(e)) = disk.map(faultline_faultfs::Disk::unmount) {
                tracing::warn!(
                    node = node.name,
                    error = e,
                    "could not unmount the data directory"
                );
            }
        }
    }

    /// The tail of a node's log, for error messages.
    pub fn log_tail(&self, node: &str, lines: usize) -> String {
        self.log_tail_as(node, lines, str::to_string)
    }

    /// The tail of a node's log with structured (JSON) lines turned into sentences first
    /// (before long lines are cut: a JSON line cut short no longer parses).
    fn readable_log_tail(&self, node: &str, lines: usize) -> String {
        self.log_tail_as(node, lines, faultline_nemesis::upgrade::readable_log_line)
    }

    fn log_tail_as(&self, node: &str, lines: usize, each: impl Fn(&str) -> String) -> String {
        let Some(i) = self.index(node) else {
            return String::new();
        };
        // Lossy: a log is the node's bytes, not necessarily UTF-8; long lines (a stack trace
        // on one line) are cut, control characters escaped.
        let bytes = match &self.net.remote {
            // On its host (until the end of the run, when it is copied here).
            Some(fleet) => {
                let remote_log = self.launches[i][0].log.display().to_string();
                off_runtime(|| fleet.tail(i, &remote_log, 256 << 10))
                    .or_else(|_| std::fs::read(&self.nodes[i].log_path))
                    .unwrap_or_default()
            }
            None => std::fs::read(&self.nodes[i].log_path).unwrap_or_default(),
        };
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| faultline_targets::sanitize(&each(l), LOG_LINE_CHARS))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until a killed node's process has exited (sending SIGKILL again if it lingers),
    /// so its ports are free and nothing of it still writes to its data directory.
    async fn await_exit(&self, node: &str) -> Result<(), String> {
        if let Some(i) = self.index(node) {
            let old = self.current(i);
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut killed_again = false;
            while let Some(p) = old.as_ref().filter(|p| p.is_running()) {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{node}: its previous process (group {}) has not exited 10 s after \
                         SIGKILL (stuck in the kernel?)",
                        p.pgid
                    ));
                }
                if !killed_again && deadline - Instant::now() < Duration::from_secs(8) {
                    // The SIGKILL may not have landed (a group that changed, a missed
                    // signal): send it again before giving up.
                    let _ = off_runtime(|| p.try_signal(Signal::SIGKILL));
                    killed_again = true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }
}

impl faultline_nemesis::Cluster for Cluster {
    fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    async fn leader(&self) -> Option<String> {
        self.current_leader().await
    }

    fn observed_leader(&self) -> Option<Leader> {
        self.observed.leader()
    }

    async fn await_new_leader(&self, old: Option<&Leader>, timeout: Duration) -> Option<Leader> {
        self.observed.await_new_leader(old, timeout).await
    }

    fn process_group(&self, node: &str) -> Option<i32> {
        let i = self.index(node)?;
        let procs = self.procs.lock().ok()?;
        procs[i].as_ref().filter(|p| p.is_running()).map(|p| p.pgid)
    }

    fn signal_group(&self, node: &str, pgid: i32, signal: Signal) -> Result<(), String> {
        match self.index(node).and_then(|i| self.current(i)) {
            // On its host: only through its own handle (the number means nothing here).
            Some(p) if p.is_remote() => match p.pgid == pgid {
                true => off_runtime(|| p.try_signal(signal)),
                // Replaced meanwhile (a restart): the group meant is gone.
                false => Ok(()),
            },
            // Never a local signal to a number that came from a host.
            _ if self.net.remote.is_some() => Ok(()),
            _ => faultline_nemesis::process::signal_group(pgid, signal),
        }
    }

    fn killed(&self, node: &str) {
        let pid = self.index(node).and_then(|i| {
            let procs = self.procs.lock().ok()?;
            procs[i].as_ref().map(|p| p.pid)
        });
        // Pending first: whoever sees the pid killed must also see that a heal is coming.
        if let (Some(i), Ok(mut pending)) = (self.index(node), self.heal_pending.lock()) {
            pending.insert(i);
        }
        if let (Some(pid), Ok(mut k)) = (pid, self.killed.lock()) {
            k.insert(pid);
        }
    }

    async fn lose_unfsynced(&self, node: &str) -> Result<String, String> {
        let i = self
            .index(node)
            .ok_or_else(|| format!("unknown node {node}"))?;
        // Not while an upgrade step stops or starts the node: it must not start a process on
        // a disk that is losing power.
        let _one_at_a_time = self.lifecycle[i].lock().await;
        // An upgrade step may have started the node again while this waited for the lock:
        // the power cut hits whatever runs now.
        let current = self.current(i);
        if let Some(p) = current.filter(NodeProcess::is_running) {
            if !self.was_killed(p.pid) {
                faultline_nemesis::Cluster::killed(self, node);
                let _ = off_runtime(|| p.try_signal(Signal::SIGKILL));
            }
        }
        // The process must be gone first: what it writes after the power loss would land on
        // the new mount.
        self.await_exit(node).await?;
        if self.net.disks.is_empty() {
            return Err(
                "lose-unfsynced needs the data directories on faultline's filesystem, \
                        which this run did not mount"
                    .into(),
            );
        }
        let disks = &self.net.disks;
        // Unmounting and rolling back blocks (file I/O, waiting for the old session).
        let loss = tokio::task::block_in_place(|| {
            let mut slot = disks[i]
                .lock()
                .map_err(|_| "the disk's lock is poisoned".to_string())?;
            let disk = slot
                .as_mut()
                .ok_or_else(|| format!("{node}'s disk is not mounted"))?;
            disk.power_loss()
        })?;
        tracing::info!(node, %loss, "power loss");
        for skipped in &loss.skipped {
            tracing::warn!(node, skipped, "power loss: an undo step was skipped");
        }
        Ok(loss.to_string())
    }

    async fn restart(&self, node: &str) -> Result<(), String> {
        let i = self
            .index(node)
            .ok_or_else(|| format!("unknown node {node}"))?;
        let _one_at_a_time = self.lifecycle[i].lock().await;
        let result = self.restart_locked(i).await;
        // Done, whatever came of it: nobody else will bring the node back for this fault.
        if let Ok(mut pending) = self.heal_pending.lock() {
            pending.remove(&i);
        }
        result
    }

    fn node_version(&self, node: &str) -> Option<usize> {
        let i = self.index(node)?;
        self.running.lock().ok().map(|r| r[i])
    }

    async fn swap_version(&self, node: &str, version: usize) -> Result<(), String> {
        let i = self
            .index(node)
            .ok_or_else(|| format!("unknown node {node}"))?;
        if version >= self.versions.len() {
            return Err(format!("no version {version} in the upgrade path"));
        }
        let _one_at_a_time = self.lifecycle[i].lock().await;
        if let Ok(mut steps) = self.steps.lock() {
            steps.nodes.insert(i);
        }
        let swapped = self.swap_locked(i, version).await;
        if swapped.is_err() {
            // No rejoin to wait for: the step is over for this node.
            self.end_step(i);
        }
        swapped
    }

    async fn await_rejoin(&self, node: &str, timeout: Duration) -> Rejoin {
        let Some(i) = self.index(node) else {
            return Rejoin::TimedOut {
                log_tail: format!("unknown node {node}"),
            };
        };
        let mut deadline = Instant::now() + timeout;
        // A fault may hold the node down for a while; that time does not count, up to the
        // timeout once more (so a node nobody brings back cannot hold the run forever).
        let latest = deadline + timeout;
        // However this ends, the step is done with the node: processes started from now on
        // are judged by the crash check again.
        let release = || self.end_step(i);
        let mut last = Instant::now();
        let mut was_held = false;
        loop {
            // The node's process now: a fault may kill the new process and its heal start
            // another while this waits. An exit counts only if nobody killed it on purpose.
            let proc = self.current(i);
            let killed = proc.as_ref().is_some_and(|p| self.was_killed(p.pid));
            let heal_pending = self.heal_is_pending(i);
            let killed_by_fault = killed && heal_pending;
            if killed && !heal_pending && proc.as_ref().is_some_and(|p| !p.is_running()) {
                // A fault killed it and its heal could not bring it back (the fault's record
                // says why): nothing to judge the new version by.
                release();
                return Rejoin::NotRunning(
                    "a fault took the node down during the step and it was not restarted"
                        .to_string(),
                );
            }
            if killed_by_fault && Instant::now() >= latest {
                release();
                return Rejoin::NotRunning(format!(
                    "a fault held the node down for longer than {} s during the step",
                    timeout.as_secs_f64()
                ));
            }
            if killed_by_fault {
                // Down because of a fault, not the new binary.
                deadline = (deadline + last.elapsed()).min(latest);
            } else if was_held {
                // The heal restarted it: the new process gets the whole timeout.
                deadline = Instant::now() + timeout;
            }
            was_held = killed_by_fault;
            let exited = proc
                .as_ref()
                .and_then(NodeProcess::exit_status)
                .filter(|_| !killed_by_fault);
            if let Some(status) = exited {
                // Its exit is this step's finding: not also a crash.
                if let (Some(p), Ok(mut seen)) = (&proc, self.crashed_pids.lock()) {
                    seen.insert(p.pid);
                }
                release();
                // Give the log a moment: the process may exit before its last line lands.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Rejoin::Exited {
                    status: status.to_string(),
                    log_tail: self.readable_log_tail(node, REFUSAL_LOG_LINES),
                };
            }
            let spec = &self.nodes[i];
            let rejoined = if killed_by_fault {
                false
            } else if self.reports_roles {
                self.role(spec)
                    .await
                    .is_some_and(|r| r.is_leader() || r.leader.is_some())
            } else {
                self.client.node_ready(spec, &self.readiness).await
            };
            if rejoined {
                release();
                return Rejoin::Rejoined;
            }
            if Instant::now() >= deadline {
                release();
                return Rejoin::TimedOut {
                    log_tail: self.readable_log_tail(node, REFUSAL_LOG_LINES),
                };
            }
            last = Instant::now();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn partition(&self, grudge: &Grudge) -> Result<(), String> {
        if let Some(fleet) = &self.net.remote {
            // Each host drops what arrives from the hosts of the nodes it is cut off from
            // (from any of their addresses: a peer may dial out from another interface).
            let blocked: Vec<Vec<String>> = self
                .nodes
                .iter()
                .map(|n| {
                    let mut list: Vec<String> = grudge
                        .get(&n.name)
                        .into_iter()
                        .flatten()
                        .filter_map(|other| self.index(other))
                        .flat_map(|j| {
                            let mut a = fleet.addresses.get(j).cloned().unwrap_or_default();
                            a.push(self.nodes[j].peer_addr.ip().to_string());
                            a
                        })
                        .collect();
                    list.sort();
                    list.dedup();
                    list
                })
                .collect();
            // Only the nodes' own ports: SSH and the clients are never cut.
            let ports: Vec<u16> = self
                .nodes
                .iter()
                .flat_map(|n| [n.client_addr.port(), n.peer_addr.port()])
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            return off_runtime(|| fleet.partition(blocked, &ports));
        }
        if let Some(network) = &self.net.network {
            // `nft` runs once per node: let the runtime move client tasks off this worker
            // meanwhile (the test runtime is multi-threaded; elsewhere, just run it).
            return match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(|| network.partition(grudge))
                }
                _ => network.partition(grudge),
            };
        }
        if let Some(proxy) = &self.net.proxy {
            proxy.partition(grudge);
            return Ok(());
        }
        if grudge.is_empty() {
            return Ok(());
        }
        Err("partitions need --net netns or --net proxy".to_string())
    }

    async fn set_clock(
        &self,
        node: &str,
        offset_ms: f64,
        verify: bool,
    ) -> Result<ClockReading, String> {
        let i = self
            .index(node)
            .ok_or_else(|| format!("unknown node {node}"))?;
        let Some(Some(control)) = self.net.clock_files.get(i) else {
            return Err("clock faults are not set up for this run".to_string());
        };
        match &self.net.remote {
            Some(fleet) => {
                let path = control.display().to_string();
                off_runtime(|| fleet.set_clock(i, &path, offset_ms))?
            }
            None => clock::write_offset(control, offset_ms)?,
        }
        if !verify {
            return Ok(ClockReading::default());
        }
        // libfaketime re-reads the file at most every CACHE_SECONDS; wait until the node's own
        // clock shows the change (a paused or killed node cannot tell: say so, do not fail).
        let deadline = Instant::now() + Duration::from_secs(u64::from(clock::CACHE_SECONDS) + 2);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(measured) = self.clock_offset_ms(i).await {
                // On a host, less the host's own offset from the controller: what the fault
                // added is what is compared.
                let measured = measured - self.host_clock_offset_ms(i);
                last = Some(measured);
                if (measured - offset_ms).abs() < CLOCK_TOLERANCE_MS {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(ClockReading { measured_ms: last })
    }

    fn degrade(&self, latency: Duration, jitter: Duration, loss: f64) -> Result<(), String> {
        match &self.net.proxy {
            Some(proxy) => {
                proxy.degrade(latency, jitter, loss);
                Ok(())
            }
            None if latency.is_zero() && loss == 0.0 => Ok(()),
            None => Err("latency and loss faults need --net proxy".to_string()),
        }
    }
}

/// Runs a blocking call (an SSH round trip, `nft`) without holding up the tasks of a
/// multi-threaded runtime's worker; elsewhere, just runs it.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// How long a heal waits for the host of its node to come back.
const HOST_PATIENCE: Duration = Duration::from_secs(60);

/// Whether an error says the node's host is away (rather than the node refusing to start);
/// a kill that could not reach the host leaves its process to exit once it does.
fn host_away(e: &str) -> bool {
    [
        "is unreachable",
        "did not answer",
        "lost the connection",
        "has not exited",
    ]
    .iter()
    .any(|w| e.contains(w))
}

/// Longest log line kept in a log tail.
const LOG_LINE_CHARS: usize = 400;

/// Log lines kept of a node that refused to start or rejoin.
const REFUSAL_LOG_LINES: usize = 10;

/// How close a node's clock must come to the offset asked for, to count as applied.
const CLOCK_TOLERANCE_MS: f64 = 100.0;

impl Cluster {
    /// The node's wall clock minus the controller's, in milliseconds (half the round trip is
    /// added to the node's reading, which was taken mid-request).
    async fn clock_offset_ms(&self, i: usize) -> Option<f64> {
        let sent = SystemTime::now();
        let status = self.node_state(&self.nodes[i]).await?;
        let received = SystemTime::now();
        let node_ms = status.get("wall_clock_ms")?.as_f64()?;
        let ms = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64() * 1e3)
        };
        let (a, b) = (ms(sent)?, ms(received)?);
        Some(node_ms - (a + b) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_nemesis::Cluster as _;
    use faultline_targets::httpkv::HttpKvClient;

    /// One node whose versions are real processes: 0 and 1 serve HTTP on the node's client
    /// port (python3's http.server), 2 refuses to start (prints why, exits 3), 3 does not
    /// exist. A node has rejoined once its port accepts connections.
    fn one_node_cluster(dir: &Path) -> Cluster {
        let spec = node_specs(1, 0, 0, dir).unwrap().remove(0);
        let port = spec.client_addr.port().to_string();
        let log = spec.log_path.clone();
        let launch = |program: &str, args: Vec<String>| Launch {
            program: PathBuf::from(program),
            args,
            env: Vec::new(),
            log: log.clone(),
            run_id: "cluster-unit-test".into(),
            netns: None,
        };
        let serve = || {
            launch(
                "python3",
                ["-m", "http.server", &port, "--bind", "127.0.0.1"]
                    .map(String::from)
                    .to_vec(),
            )
        };
        let refuse = launch(
            "sh",
            vec![
                "-c".into(),
                "echo 'fatal: data directory is from a newer version' >&2; exit 3".into(),
            ],
        );
        let missing = launch("/no/such/binary", Vec::new());
        let info = TargetInfo {
            client: Client::HttpKv(HttpKvClient::new(vec![spec.clone()]).unwrap()),
            leader_path: None,
            status_path: None,
            stop: (Signal::SIGTERM, Duration::from_secs(2)),
            readiness: Readiness {
                http_get: None,
                tcp: true,
                leader_path: None,
                timeout: Duration::from_secs(10),
            },
            reports_roles: false,
        };
        let net = Net {
            network: None,
            proxy: None,
            clock_files: vec![None],
            disks: Vec::new(),
            remote: None,
        };
        let versions = ["a", "b", "refuses", "missing"].map(String::from).to_vec();
        Cluster::new(
            vec![spec],
            vec![vec![serve(), serve(), refuse, missing]],
            versions,
            net,
            info,
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upgrade_steps_judge_the_new_process_and_leave_faults_to_their_heals() {
        if std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: the test's nodes are python3 HTTP servers; python3 is missing");
            return;
        }
        let dir = std::env::temp_dir().join(format!("faultline-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = one_node_cluster(&dir);
        let patience = Duration::from_secs(10);
        c.start_all().unwrap();
        assert_eq!(c.await_rejoin("n1", patience).await, Rejoin::Rejoined);

        // A plain upgrade: the old process is stopped (not a crash), the new one rejoins.
        c.swap_version("n1", 1).await.unwrap();
        assert_eq!(c.await_rejoin("n1", patience).await, Rejoin::Rejoined);
        assert_eq!(c.version_of("n1").as_deref(), Some("b"));

        // A version that refuses to start: the step's finding, with its words, not a crash.
        c.swap_version("n1", 2).await.unwrap();
        // Probation: the crash check, running meanwhile, leaves the refusal to the step.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(c.reap_crashes().is_empty(), "{:?}", c.crashes());
        match c.await_rejoin("n1", patience).await {
            Rejoin::Exited { status, log_tail } => {
                assert!(status.contains('3'), "{status}");
                assert!(log_tail.contains("newer version"), "{log_tail}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        c.swap_version("n1", 1).await.unwrap();
        assert_eq!(c.await_rejoin("n1", patience).await, Rejoin::Rejoined);

        // A kill during the step (after the swap, before the node rejoined) is the fault's:
        // the step waits for the heal's restart, on the new version, and judges that.
        c.swap_version("n1", 0).await.unwrap();
        c.killed("n1");
        faultline_nemesis::process::kill(c.process_group("n1").unwrap()).unwrap();
        // Held down longer than the rejoin timeout itself: that time does not count.
        let heal = async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            c.restart("n1").await
        };
        let (rejoin, healed) = tokio::join!(c.await_rejoin("n1", Duration::from_secs(2)), heal);
        healed.unwrap();
        assert_eq!(rejoin, Rejoin::Rejoined);
        assert_eq!(c.version_of("n1").as_deref(), Some("a"));

        // A step that finds the node killed by a fault leaves the start to the heal; when the
        // heal cannot start it, the step cannot be judged (and is not a refusal).
        c.killed("n1");
        faultline_nemesis::process::kill(c.process_group("n1").unwrap()).unwrap();
        c.swap_version("n1", 3).await.unwrap();
        assert!(c.restart("n1").await.is_err());
        assert!(matches!(
            c.await_rejoin("n1", patience).await,
            Rejoin::NotRunning(_)
        ));

        // None of it was a crash.
        assert!(c.reap_crashes().is_empty(), "{:?}", c.crashes());
        c.stop_all();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
