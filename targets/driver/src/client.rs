//! One client type for every target, so the controller drives them all the same way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultline_workloads::{Op, Request};
use serde_json::Value;

use crate::consul::ConsulClient;
use crate::etcd::EtcdClient;
use crate::exec::ExecClient;
use crate::httpkv::HttpKvClient;
use crate::role::RoleReport;
use crate::{Completion, NodeSpec};

/// The client of a target.
#[derive(Clone)]
pub enum Client {
    /// The bundled Raft, or a custom target speaking http-kv.
    HttpKv(HttpKvClient),
    /// A custom target's own client driver.
    Exec(ExecClient),
    /// etcd's v3 JSON gateway.
    Etcd(EtcdClient),
    /// Consul's KV HTTP API.
    Consul(ConsulClient),
}

/// How to tell that a cluster is ready, and who leads it.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// A node is ready when `GET <path>` on its client address answers 2xx.
    pub http_get: Option<String>,
    /// A node is ready when its client port accepts TCP connections.
    pub tcp: bool,
    /// A path whose JSON says `"role": "leader"` on the leader; the cluster is ready once
    /// one node does. `None`: no leader to wait for.
    pub leader_path: Option<String>,
    pub timeout: Duration,
}

impl Client {
    /// Performs a workload operation on `node`, giving up at `deadline`.
    pub async fn execute(&self, node: &str, request: &Request, deadline: Instant) -> Completion {
        match self {
            Client::HttpKv(c) => c.execute(node, request, deadline).await,
            Client::Exec(c) => {
                let key = request.key.as_str();
                let simple =
                    |n: String, op: Op| async move { c.execute_op(&n, key, &op, deadline).await };
                crate::execute_via(simple, node, request, deadline).await
            }
            Client::Etcd(c) => c.execute(node, request, deadline).await,
            Client::Consul(c) => c.execute(node, request, deadline).await,
        }
    }

    /// The node that says it leads (in the highest term), if the target can tell.
    pub async fn leader(&self, nodes: &[NodeSpec], leader_path: Option<&str>) -> Option<String> {
        let http = match self {
            Client::HttpKv(c) => c,
            Client::Exec(_) => return None,
            Client::Etcd(c) => return c.leader().await,
            Client::Consul(c) => return c.leader().await,
        };
        let path = leader_path?;
        let mut best: Option<(u64, String)> = None;
        for node in nodes {
            let Some(status) = http.get_json(node, path, Duration::from_millis(500)).await else {
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

    /// Waits until every node is ready and (when the target can tell) one of them leads.
    /// Returns the leader's name ("" if the target cannot tell); on timeout, names the nodes
    /// that never answered.
    pub async fn wait_ready(
        &self,
        nodes: &[NodeSpec],
        ready: &Readiness,
    ) -> Result<String, String> {
        // etcd and Consul say themselves when every member answers and one leads.
        match self {
            Client::Etcd(c) => return c.wait_ready(ready.timeout).await,
            Client::Consul(c) => return c.wait_ready(ready.timeout).await,
            Client::HttpKv(_) | Client::Exec(_) => {}
        }
        let deadline = Instant::now() + ready.timeout;
        loop {
            let mut silent = Vec::new();
            for node in nodes {
                if !self.node_ready(node, ready).await {
                    silent.push(node.name.clone());
                }
            }
            if silent.is_empty() {
                if ready.leader_path.is_none() {
                    return Ok(String::new());
                }
                if let Some(l) = self.leader(nodes, ready.leader_path.as_deref()).await {
                    return Ok(l);
                }
            }
            if Instant::now() >= deadline {
                return Err(if silent.is_empty() {
                    format!("no leader was elected within {} s", ready.timeout.as_secs())
                } else {
                    format!(
                        "{} did not become ready within {} s",
                        silent.join(", "),
                        ready.timeout.as_secs()
                    )
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether one node is ready as `ready` says (answers its readiness request, or accepts
    /// connections).
    pub async fn node_ready(&self, node: &NodeSpec, ready: &Readiness) -> bool {
        if let (Some(path), Client::HttpKv(c)) = (&ready.http_get, self) {
            return c.get_ok(node, path, Duration::from_millis(300)).await;
        }
        if ready.tcp || ready.http_get.is_some() {
            return tcp_open(node.client_addr).await;
        }
        true
    }

    /// The value of `key` in `node`'s own state, for comparing replicas. `Ok(None)`: this
    /// target cannot say (the comparison is skipped).
    pub async fn local_read(&self, node: &str, key: &str) -> Result<Option<Value>, String> {
        match self {
            Client::HttpKv(c) => c.local_read(node, key).await,
            Client::Exec(c) => {
                let deadline = Instant::now() + Duration::from_secs(2);
                let done = c
                    .simple(node, key, "read-local", Value::Null, deadline)
                    .await;
                match done.outcome {
                    crate::Outcome::Ok(v) => Ok(Some(v)),
                    crate::Outcome::Fail(e) if e.contains("unsupported") => Ok(None),
                    crate::Outcome::Fail(e) | crate::Outcome::Info(e) => Err(e),
                }
            }
            // Their drivers answer `None` for a key absent on that member: for comparing
            // replicas that is the value null (as http-kv reads it), not "cannot say".
            Client::Etcd(c) => Ok(Some(c.local_read(node, key).await?.unwrap_or(Value::Null))),
            Client::Consul(c) => Ok(Some(c.local_read(node, key).await?.unwrap_or(Value::Null))),
        }
    }

    /// The node's own view of its state (e.g. the bundled Raft's `/status`), for the results.
    pub async fn node_state(&self, node: &NodeSpec, status_path: Option<&str>) -> Option<Value> {
        match (self, status_path) {
            (Client::HttpKv(c), Some(path)) => {
                c.get_json(node, path, Duration::from_millis(500)).await
            }
            (Client::Etcd(c), _) => c.node_state(&node.name).await,
            (Client::Consul(c), _) => c.node_state(&node.name).await,
            _ => None,
        }
    }

    /// What the replica comparison reads from a node: its own state ([`Client::node_state`]),
    /// or, from an exec driver, the answer to the optional `fingerprint` request.
    pub async fn fingerprint_state(
        &self,
        node: &NodeSpec,
        status_path: Option<&str>,
    ) -> Option<Value> {
        match self {
            Client::Exec(c) => c.fingerprint(&node.name, Duration::from_secs(2)).await,
            _ => self.node_state(node, status_path).await,
        }
    }

    /// `node`'s role, term and leader as it reports them itself, within `timeout`; `None` when
    /// it does not answer or the target cannot tell (see [`crate::role`]). `status_path` is
    /// the http-kv status endpoint.
    pub async fn role(
        &self,
        node: &NodeSpec,
        status_path: Option<&str>,
        timeout: Duration,
    ) -> Option<RoleReport> {
        match self {
            Client::HttpKv(c) => {
                let v = c.get_json(node, status_path?, timeout).await?;
                crate::role::from_status_json(&v, c.nodes())
            }
            Client::Exec(c) => c.status(&node.name, timeout).await,
            Client::Etcd(c) => c.role(node, timeout).await,
            Client::Consul(c) => c.role(node, timeout).await,
        }
    }

    /// Stops anything the client runs (an exec driver).
    pub fn stop(&self) {
        if let Client::Exec(c) = self {
            c.stop();
        }
    }
}

async fn tcp_open(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}
