//! The cluster under test as the controller holds it: node specs, their processes, and the
//! operations a nemesis may perform on them.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use faultline_targets::httpkv::HttpKvClient;
use faultline_targets::process::{self, Launch, NodeProcess};
use faultline_targets::{raft, NodeSpec};
use nix::sys::signal::Signal;

/// The nodes of a run and their processes.
pub struct Cluster {
    pub nodes: Vec<NodeSpec>,
    launches: Vec<Launch>,
    procs: Mutex<Vec<Option<NodeProcess>>>,
    /// Nodes killed on purpose and not restarted yet.
    killed: Mutex<HashSet<String>>,
    /// Nodes seen exiting when nobody killed them: (node, how, when).
    crashes: Mutex<Vec<(String, String)>>,
    pub client: HttpKvClient,
}

/// Chooses node addresses on 127.0.0.1: consecutive ports from `base`, or free ports picked by
/// the kernel when `base` is 0. Fails, naming the port, if a chosen port is taken.
pub fn node_specs(count: usize, base: u16, run_dir: &Path) -> Result<Vec<NodeSpec>, String> {
    let mut specs = Vec::with_capacity(count);
    let mut held = Vec::new();
    for i in 0..count {
        let (client, peer) = if base == 0 {
            // Keep each listener open until all are chosen, so no two nodes get one port.
            let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
            let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
            let ports = (port_of(&a)?, port_of(&b)?);
            held.push(a);
            held.push(b);
            ports
        } else {
            let client = base
                .checked_add(2 * i as u16)
                .ok_or_else(|| format!("base_port: {base} leaves no room for {count} nodes"))?;
            for port in [client, client + 1] {
                TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| {
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

fn port_of(l: &TcpListener) -> Result<u16, String> {
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read a listener's port: {e}"))
}

impl Cluster {
    pub fn new(nodes: Vec<NodeSpec>, launches: Vec<Launch>) -> Result<Cluster, String> {
        let client = HttpKvClient::new(nodes.clone())?;
        Ok(Cluster {
            procs: Mutex::new(vec![None; nodes.len()]),
            killed: Mutex::new(HashSet::new()),
            crashes: Mutex::new(Vec::new()),
            nodes,
            launches,
            client,
        })
    }

    fn index(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == node)
    }

    /// Starts every node.
    pub fn start_all(&self) -> Result<(), String> {
        for n in &self.nodes {
            self.start(&n.name)?;
        }
        Ok(())
    }

    fn start(&self, node: &str) -> Result<(), String> {
        let i = self
            .index(node)
            .ok_or_else(|| format!("unknown node {node}"))?;
        std::fs::create_dir_all(&self.nodes[i].data_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.nodes[i].data_dir.display()))?;
        let proc = process::spawn(self.launches[i].clone())?;
        tracing::info!(node, pid = proc.pid, "node started");
        if let Ok(mut procs) = self.procs.lock() {
            procs[i] = Some(proc);
        }
        Ok(())
    }

    /// Pids of the running nodes (for `faultline clean` and the results).
    pub fn pids(&self) -> Vec<(String, i32)> {
        let procs = self.procs.lock().map(|p| p.clone()).unwrap_or_default();
        self.nodes
            .iter()
            .zip(procs)
            .filter_map(|(n, p)| {
                p.filter(NodeProcess::is_running)
                    .map(|p| (n.name.clone(), p.pid))
            })
            .collect()
    }

    /// Notes nodes that exited without being killed. Returns newly seen ones.
    pub fn reap_crashes(&self) -> Vec<(String, String)> {
        let procs = self.procs.lock().map(|p| p.clone()).unwrap_or_default();
        let killed = self.killed.lock().map(|k| k.clone()).unwrap_or_default();
        let mut fresh = Vec::new();
        for (n, p) in self.nodes.iter().zip(procs) {
            let Some(p) = p else { continue };
            let Some(status) = p.exit_status() else {
                continue;
            };
            if killed.contains(&n.name) {
                continue;
            }
            let seen = self
                .crashes
                .lock()
                .map(|c| c.iter().any(|(node, _)| node == &n.name))
                .unwrap_or(true);
            if !seen {
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

    /// Stops every node: resume (a stopped process cannot handle SIGTERM), SIGTERM, then
    /// SIGKILL whatever is still alive after `grace`.
    pub fn stop_all(&self, grace: Duration) {
        let procs: Vec<NodeProcess> = self
            .procs
            .lock()
            .map(|p| p.iter().flatten().cloned().collect())
            .unwrap_or_default();
        for p in &procs {
            p.signal(Signal::SIGCONT);
            p.signal(Signal::SIGTERM);
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

    /// The tail of a node's log, for error messages.
    pub fn log_tail(&self, node: &str, lines: usize) -> String {
        let Some(i) = self.index(node) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&self.nodes[i].log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl faultline_nemesis::Cluster for Cluster {
    fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    async fn leader(&self) -> Option<String> {
        raft::leader(&self.client, &self.nodes).await
    }

    fn process_group(&self, node: &str) -> Option<i32> {
        let i = self.index(node)?;
        let procs = self.procs.lock().ok()?;
        procs[i].as_ref().filter(|p| p.is_running()).map(|p| p.pgid)
    }

    fn killed(&self, node: &str) {
        if let Ok(mut k) = self.killed.lock() {
            k.insert(node.to_string());
        }
    }

    async fn restart(&self, node: &str) -> Result<(), String> {
        // Let the old process be reaped first, so its ports are free.
        if let Some(i) = self.index(node) {
            let old = self.procs.lock().ok().and_then(|p| p[i].clone());
            let deadline = Instant::now() + Duration::from_secs(2);
            while old.as_ref().is_some_and(NodeProcess::is_running) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.start(node)?;
        if let Ok(mut k) = self.killed.lock() {
            k.remove(node);
        }
        Ok(())
    }
}
