//! The bundled Raft key-value store as a target: each node is `faultline node` (this very
//! binary), speaking `http-kv`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::httpkv::HttpKvClient;
use crate::process::Launch;
use crate::NodeSpec;

/// Options of the bundled Raft that a test may set.
#[derive(Clone, Debug, Default)]
pub struct RaftOptions {
    /// `--bug` names to switch on in every node.
    pub bugs: Vec<String>,
    /// `read-index` (default) or `lease`.
    pub read_mode: Option<String>,
}

/// How to launch `node`. `peers` says where it must dial each other node: their peer
/// addresses, or proxies in between.
pub fn launch(
    exe: &Path,
    node: &NodeSpec,
    peers: &[(u64, SocketAddr)],
    opts: &RaftOptions,
    run_id: &str,
) -> Launch {
    let peers: Vec<String> = peers
        .iter()
        .filter(|(id, _)| *id != node.id)
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    let mut args = vec![
        "node".to_string(),
        "--id".to_string(),
        node.id.to_string(),
        "--data-dir".to_string(),
        node.data_dir.display().to_string(),
        "--client-addr".to_string(),
        node.client_addr.to_string(),
        "--peer-addr".to_string(),
        node.peer_addr.to_string(),
        "--peers".to_string(),
        peers.join(","),
    ];
    if let Some(mode) = &opts.read_mode {
        args.push("--read-mode".to_string());
        args.push(mode.clone());
    }
    for bug in &opts.bugs {
        args.push("--bug".to_string());
        args.push(bug.clone());
    }
    Launch {
        program: exe.to_path_buf(),
        args,
        env: Vec::new(),
        log: node.log_path.clone(),
        run_id: run_id.to_string(),
        netns: None,
    }
}

/// The node that claims to lead in the highest term, from each node's `/status`.
pub async fn leader(client: &HttpKvClient, nodes: &[NodeSpec]) -> Option<String> {
    let mut best: Option<(u64, String)> = None;
    for node in nodes {
        let Some(status) = client.status(node, Duration::from_millis(500)).await else {
            continue;
        };
        if status.get("role").and_then(Value::as_str) != Some("leader") {
            continue;
        }
        let term = status.get("term").and_then(Value::as_u64).unwrap_or(0);
        if best.as_ref().is_none_or(|(t, _)| term > *t) {
            best = Some((term, node.name.clone()));
        }
    }
    best.map(|(_, n)| n)
}

/// Waits until every node answers `/status` and one of them leads, or `timeout` passes.
/// On timeout, says which nodes never answered.
pub async fn wait_ready(
    client: &HttpKvClient,
    nodes: &[NodeSpec],
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut silent = Vec::new();
        for node in nodes {
            if client
                .status(node, Duration::from_millis(300))
                .await
                .is_none()
            {
                silent.push(node.name.clone());
            }
        }
        if silent.is_empty() {
            if let Some(l) = leader(client, nodes).await {
                return Ok(l);
            }
        }
        if Instant::now() >= deadline {
            return Err(if silent.is_empty() {
                format!("no leader was elected within {} s", timeout.as_secs())
            } else {
                format!(
                    "{} did not answer on their client address within {} s",
                    silent.join(", "),
                    timeout.as_secs()
                )
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
