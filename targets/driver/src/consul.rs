//! Consul as a target: N servers started from the `consul` binary (`consul agent -server
//! -bootstrap-expect N`), and a client that uses Consul's documented KV HTTP API
//! (<https://developer.hashicorp.com/consul/api-docs/kv>).
//!
//! **Not yet verified against a live Consul.** Consul could not be installed where this was
//! written: request building and response parsing are tested against the responses shown in
//! Consul's API documentation (`tests/consul.rs`, `tests/fixtures/consul/`), and the
//! integration test in `tests/consul.rs` runs only when a `consul` binary is on `PATH`.
//! Requires Consul 1.14 or newer (the launch disables the `grpc_tls` port that 1.14 added).
//!
//! # Operations
//!
//! Values are stored as the JSON text of the workload's value.
//!
//! * read: `GET /v1/kv/{key}?consistent` — the `consistent` mode, "strongly consistent without
//!   caveats" (<https://developer.hashicorp.com/consul/api-docs/features/consistency>); 404
//!   means the key does not exist.
//! * write: `PUT /v1/kv/{key}` with the value as body; the answer is `true` or `false`.
//! * cas from `a` to `b`: a consistent read of the value and its `ModifyIndex`; if the value is
//!   not `a`, the cas definitely failed (`cas-mismatch`, nothing was written); otherwise
//!   `PUT /v1/kv/{key}?cas={ModifyIndex}` (`cas=0` when `a` is `null`: "Consul will only put
//!   the key if it does not already exist"). `true` means it was applied, `false` that the key
//!   changed since the read (`cas-mismatch`). The cas takes effect at the PUT, when the key
//!   still holds `a` (its index is unchanged since the read).
//! * add / read-set: as for every target (`crate::add_via_cas`, `crate::as_set`).
//! * local read: `GET /v1/kv/{key}?stale`, answered by the server asked, from its own state.
//! * leader: `GET /v1/status/leader` (the leader's server RPC address) on each server, mapped
//!   back to a node by its peer address.
//!
//! # How an answer is classified
//!
//! For a write or cas PUT:
//! * **Fail**: the connection could not be made; `false`; 400, 403, 404, 405, 413 and 429
//!   (refused before reaching Raft: bad request, ACL, body too large, rate limited — Consul's
//!   HTTP handler maps those errors to these codes); a 500 saying `No cluster leader`: Consul
//!   only retries an RPC on that error because "no leader errors are always safe to retry
//!   since no state could have been changed" (`agent/consul/rpc.go`, `canRetry`), and writes
//!   are retried on nothing else, so that final error means no attempt reached a leader.
//! * **Info**: a timeout after sending, a connection lost before the answer, and every other
//!   error (`leadership lost while committing log`, `rpc error making call: EOF`, other 5xx).
//!
//! A read that does not return a value is **Fail** (it changed nothing), like etcd's.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faultline_workloads::{Op, Request};
use serde_json::{json, Value};

use crate::etcd::support;
use crate::process::Launch;
use crate::role::RoleReport;
use crate::{sanitize, Completion, NodeSpec, Outcome};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

const INSTALL_HINT: &str = "install Consul 1.14 or newer (HashiCorp's apt repository: \
     https://developer.hashicorp.com/consul/install) or pass --consul-bin PATH";

/// How to run Consul.
#[derive(Clone, Debug)]
pub struct ConsulOptions {
    /// The consul binary (see [`find_binary`]).
    pub binary: PathBuf,
}

/// The Serf LAN (gossip) port of `node`: its peer port + 1 (peer port - 1 for the one peer
/// port, 65535, that has no successor). Consul needs three ports per server: HTTP (the
/// node's client port), server RPC (its peer port, what `/v1/status/leader` reports) and Serf
/// LAN, TCP **and UDP**. The controller must keep this port free too: on loopback with
/// consecutive ports (client = base + 2i, peer = base + 2i + 1) it would be the next node's
/// client port, so Consul needs a stride of 3 there.
pub fn serf_lan_port(node: &NodeSpec) -> u16 {
    let peer = node.peer_addr.port();
    peer.checked_add(1).unwrap_or(peer - 1)
}

/// How to launch server `node` of `cluster`:
///
/// `consul agent -server -bootstrap-expect N -node NAME -data-dir DIR -bind PEER_IP
/// -client CLIENT_IP -http-port CLIENT_PORT -server-port PEER_PORT -serf-lan-port SERF_PORT
/// -serf-wan-port -1 -dns-port -1 -grpc-port -1 -retry-join OTHER_IP:OTHER_SERF_PORT ...
/// -retry-interval 1s`, plus configuration fragments (`-hcl`) that:
/// * disable the gRPC TLS port (Consul 1.14+ opens 8503 on every server, which would collide
///   between servers sharing an address);
/// * set `performance.raft_multiplier = 1` (Consul's fastest Raft timing, the documented
///   production setting) so leaders are elected and replaced quickly;
/// * turn off autopilot's dead-server cleanup, so a killed server stays a voter and comes
///   back as one (a static membership, like etcd's);
/// * turn off the update check (no network calls to HashiCorp).
///
/// `run_id` only marks the process; Consul servers find each other through `-retry-join`.
pub fn launch(opts: &ConsulOptions, node: &NodeSpec, cluster: &[NodeSpec], run_id: &str) -> Launch {
    let mut args: Vec<String> = [
        "agent",
        "-server",
        "-bootstrap-expect",
        &cluster.len().to_string(),
        "-node",
        &node.name,
        "-data-dir",
        &node.data_dir.display().to_string(),
        "-bind",
        &node.peer_addr.ip().to_string(),
        "-client",
        &node.client_addr.ip().to_string(),
        "-http-port",
        &node.client_addr.port().to_string(),
        "-server-port",
        &node.peer_addr.port().to_string(),
        "-serf-lan-port",
        &serf_lan_port(node).to_string(),
        "-serf-wan-port",
        "-1",
        "-dns-port",
        "-1",
        "-grpc-port",
        "-1",
        "-retry-interval",
        "1s",
        "-disable-host-node-id",
        "-log-level",
        "info",
        "-hcl",
        "ports { grpc_tls = -1 }",
        "-hcl",
        "performance { raft_multiplier = 1 }",
        "-hcl",
        "autopilot { cleanup_dead_servers = false }",
        "-hcl",
        "disable_update_check = true",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for other in cluster.iter().filter(|n| n.name != node.name) {
        args.push("-retry-join".to_string());
        args.push(SocketAddr::new(other.peer_addr.ip(), serf_lan_port(other)).to_string());
    }
    Launch {
        program: opts.binary.clone(),
        args,
        env: Vec::new(),
        log: node.log_path.clone(),
        run_id: run_id.to_string(),
        netns: None,
    }
}

/// `binary version`, parsed: the Consul version (e.g. `1.17.0`), or an error saying what is
/// wrong and how to fix it.
pub fn version(binary: &Path) -> Result<String, String> {
    support::read_version(
        binary,
        &["version"],
        VERSION_TIMEOUT,
        "a Consul version",
        parse_version,
        INSTALL_HINT,
    )
}

/// The version in `consul version`'s output (`Consul v1.17.0`, first line).
pub fn parse_version(output: &str) -> Option<String> {
    support::version_after(output, "Consul v")
}

/// The consul binary to use: `explicit` (from `--consul-bin`) if given, which must be an
/// executable file; otherwise `consul` on `PATH`.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    support::find_binary("consul", "--consul-bin", explicit, INSTALL_HINT)
}

/// Request building and response parsing, kept apart from the I/O so they can be tested
/// against the responses in Consul's documentation.
pub mod wire {
    use std::net::SocketAddr;

    use base64::Engine as _;
    use serde_json::Value;

    use crate::{sanitize, Outcome};

    /// Which servers may answer a read.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Consistency {
        /// `?consistent`: the leader, after confirming with a quorum that it still leads.
        Consistent,
        /// `?stale`: whichever server is asked, from its own state.
        Stale,
    }

    /// One key as `GET /v1/kv/{key}` returns it.
    #[derive(Clone, Debug, PartialEq)]
    pub struct KvEntry {
        pub key: String,
        /// The decoded value (Consul sends it base64-encoded; `null` for an empty value).
        pub value: Vec<u8>,
        pub create_index: u64,
        pub modify_index: u64,
    }

    impl KvEntry {
        /// The workload value stored here (faultline stores JSON text).
        pub fn json(&self) -> Result<Value, String> {
            serde_json::from_slice(&self.value).map_err(|_| {
                format!(
                    "the value at {:?} is not JSON: {:?}",
                    sanitize(&self.key, 80),
                    sanitize(&String::from_utf8_lossy(&self.value), 80)
                )
            })
        }
    }

    /// Percent-encodes a key as one URL path segment (Consul decodes the path before
    /// looking the key up).
    pub fn encode_key(key: &str) -> String {
        crate::httpkv::encode_key(key)
    }

    pub fn read_url(addr: SocketAddr, key: &str, consistency: Consistency) -> String {
        let mode = match consistency {
            Consistency::Consistent => "consistent",
            Consistency::Stale => "stale",
        };
        format!("http://{addr}/v1/kv/{}?{mode}", encode_key(key))
    }

    /// `PUT` URL: a plain write, or a check-and-set against `ModifyIndex` `cas` (0: only if
    /// the key does not exist).
    pub fn put_url(addr: SocketAddr, key: &str, cas: Option<u64>) -> String {
        match cas {
            None => format!("http://{addr}/v1/kv/{}", encode_key(key)),
            Some(index) => format!("http://{addr}/v1/kv/{}?cas={index}", encode_key(key)),
        }
    }

    /// Every key, from the server asked (for a digest of its whole store).
    pub fn dump_url(addr: SocketAddr) -> String {
        format!("http://{addr}/v1/kv/?recurse&stale")
    }

    pub fn leader_url(addr: SocketAddr) -> String {
        format!("http://{addr}/v1/status/leader")
    }

    pub fn self_url(addr: SocketAddr) -> String {
        format!("http://{addr}/v1/agent/self")
    }

    /// The body stored for a workload value: its JSON text.
    pub fn value_body(v: &Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    /// The entries of a KV read answer (a JSON array of entries).
    pub fn parse_entries(body: &[u8]) -> Result<Vec<KvEntry>, String> {
        let entries: Vec<Value> = serde_json::from_slice(body)
            .map_err(|e| format!("Consul's KV answer is not a JSON array: {e}"))?;
        entries
            .iter()
            .map(|e| {
                let index = |field: &str| {
                    e.get(field)
                        .and_then(Value::as_u64)
                        .ok_or_else(|| format!("a KV entry has no {field}"))
                };
                let value =
                    match e.get("Value") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .map_err(|e| format!("a KV value is not base64: {e}"))?,
                        Some(_) => return Err("a KV value is not a string".to_string()),
                    };
                Ok(KvEntry {
                    key: e
                        .get("Key")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    value,
                    create_index: index("CreateIndex")?,
                    modify_index: index("ModifyIndex")?,
                })
            })
            .collect()
    }

    /// The answer to a single-key read: the entry, `None` if the key does not exist (404),
    /// or what went wrong.
    pub fn parse_read(status: u16, body: &[u8]) -> Result<Option<KvEntry>, String> {
        match status {
            200 => Ok(parse_entries(body)?.into_iter().next()),
            404 => Ok(None),
            _ => Err(error_text(status, body)),
        }
    }

    /// The answer to a write or cas `PUT`: `true` applied, `false` not applied
    /// (`cas-mismatch`), anything else classified by [`classify_error`].
    pub fn parse_put(status: u16, body: &[u8]) -> Outcome {
        if status != 200 {
            return classify_error(status, body);
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Bool(true)) => Outcome::Ok(Value::Bool(true)),
            Ok(Value::Bool(false)) => Outcome::Fail("cas-mismatch".to_string()),
            // A 200 says Consul answered; without the body we cannot tell true from false.
            _ => Outcome::Info(format!(
                "unexpected PUT answer {:?}",
                sanitize(&String::from_utf8_lossy(body), 80)
            )),
        }
    }

    /// An error answer to a write (see the module documentation).
    pub fn classify_error(status: u16, body: &[u8]) -> Outcome {
        let text = error_text(status, body);
        match status {
            400 | 403 | 404 | 405 | 413 | 429 => Outcome::Fail(text),
            500 if String::from_utf8_lossy(body).trim() == "No cluster leader" => {
                Outcome::Fail(text)
            }
            _ => Outcome::Info(text),
        }
    }

    /// What an error answer says: Consul answers errors as plain text.
    pub fn error_text(status: u16, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", sanitize(text, 200))
        }
    }

    /// The answer of `GET /v1/status/leader`: the leader's server RPC address, or `None`
    /// when the server knows no leader (it answers `""`).
    pub fn parse_leader(body: &[u8]) -> Result<Option<SocketAddr>, String> {
        let text: String = serde_json::from_slice(body)
            .map_err(|_| "the leader answer is not a JSON string".to_string())?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            format!(
                "the leader answer {:?} is not an address",
                sanitize(&text, 80)
            )
        })
    }

    /// A server's role and term from `GET /v1/agent/self` (`Stats.raft.state`: `Leader`,
    /// `Follower`, `Candidate`, ...; `Stats.raft.term`, a string). `None` when the agent
    /// reports no Raft statistics (a client agent).
    pub fn parse_role(body: &[u8]) -> Option<(String, Option<u64>)> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let raft = &v["Stats"]["raft"];
        let state = raft.get("state")?.as_str()?.trim().to_ascii_lowercase();
        let term = raft.get("term").and_then(crate::role::as_u64);
        Some((state, term))
    }

    /// The parts of `GET /v1/agent/self` worth recording: node name and version (`Config`),
    /// and the Raft statistics (`Stats.raft`: applied/commit/last log index, term, state) when
    /// the agent reports them.
    pub fn parse_agent_self(body: &[u8]) -> Result<Value, String> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the agent/self answer is not JSON: {e}"))?;
        let config = &v["Config"];
        let raft = &v["Stats"]["raft"];
        let mut state = serde_json::json!({
            "node_name": config.get("NodeName").cloned().unwrap_or(Value::Null),
            "version": config.get("Version").cloned().unwrap_or(Value::Null),
        });
        for field in [
            "state",
            "term",
            "last_log_index",
            "commit_index",
            "applied_index",
            "last_snapshot_index",
        ] {
            if let Some(x) = raft.get(field) {
                // Consul prints these as strings; numbers read better in results.
                state[field] = match x.as_str().and_then(|s| s.parse::<u64>().ok()) {
                    Some(n) => Value::from(n),
                    None => x.clone(),
                };
            }
        }
        Ok(state)
    }
}

/// A client of a Consul cluster, shared by all workers (it pools connections).
#[derive(Clone)]
pub struct ConsulClient {
    http: reqwest::Client,
    nodes: Vec<NodeSpec>,
}

impl ConsulClient {
    pub fn new(nodes: Vec<NodeSpec>) -> Result<ConsulClient, String> {
        Ok(ConsulClient {
            http: support::http_client(CONNECT_TIMEOUT)?,
            nodes,
        })
    }

    /// Performs `request` on `node`, giving up at `deadline`. Consul servers forward writes
    /// and consistent reads to their leader themselves, so the node that handled it is
    /// always `node`.
    pub async fn execute(&self, node: &str, request: &Request, deadline: Instant) -> Completion {
        let key = request.key.as_str();
        let simple = |n: String, op: Op| async move { self.simple(&n, key, &op, deadline).await };
        crate::execute_via(simple, node, request, deadline).await
    }

    async fn simple(&self, node: &str, key: &str, op: &Op, deadline: Instant) -> Completion {
        let outcome = match self.addr_of(node) {
            None => Outcome::Fail(format!("unknown node {}", sanitize(node, 40))),
            Some(addr) => match op {
                Op::Read | Op::ReadSet => {
                    match self
                        .read(addr, key, wire::Consistency::Consistent, deadline)
                        .await
                    {
                        Ok(entry) => match entry.map(|e| e.json()).transpose() {
                            Ok(v) => Outcome::Ok(v.unwrap_or(Value::Null)),
                            Err(e) => Outcome::Fail(e),
                        },
                        Err(e) => Outcome::Fail(e),
                    }
                }
                Op::Write(v) => match self.put(addr, key, v, None, deadline).await {
                    Outcome::Ok(_) => Outcome::Ok(op.input()),
                    other => other,
                },
                Op::Cas { from, to } => self.cas(addr, key, from, to, deadline, op).await,
                Op::Add(_) => Outcome::Fail("add is not a single Consul request".to_string()),
            },
        };
        Completion {
            outcome,
            node: node.to_string(),
        }
    }

    /// Consistent read of the value and its index, then a check-and-set at that index.
    async fn cas(
        &self,
        addr: SocketAddr,
        key: &str,
        from: &Value,
        to: &Value,
        deadline: Instant,
        op: &Op,
    ) -> Outcome {
        let entry = match self
            .read(addr, key, wire::Consistency::Consistent, deadline)
            .await
        {
            Ok(entry) => entry,
            // Nothing was written yet.
            Err(e) => return Outcome::Fail(e),
        };
        let (current, index) = match &entry {
            None => (Value::Null, 0),
            Some(e) => match e.json() {
                Ok(v) => (v, e.modify_index),
                Err(why) => return Outcome::Fail(why),
            },
        };
        if &current != from {
            return Outcome::Fail("cas-mismatch".to_string());
        }
        match self.put(addr, key, to, Some(index), deadline).await {
            Outcome::Ok(_) => Outcome::Ok(op.input()),
            other => other,
        }
    }

    async fn read(
        &self,
        addr: SocketAddr,
        key: &str,
        consistency: wire::Consistency,
        deadline: Instant,
    ) -> Result<Option<wire::KvEntry>, String> {
        let builder = self.http.get(wire::read_url(addr, key, consistency));
        match support::send(builder, addr, deadline).await.0 {
            support::Answer::Status(status, Some(body)) => wire::parse_read(status, &body),
            support::Answer::Status(status, None) => {
                Err(format!("HTTP {status}: the answer could not be read"))
            }
            support::Answer::NotSent(e) | support::Answer::Lost(e) => Err(e),
        }
    }

    async fn put(
        &self,
        addr: SocketAddr,
        key: &str,
        value: &Value,
        cas: Option<u64>,
        deadline: Instant,
    ) -> Outcome {
        let builder = self
            .http
            .put(wire::put_url(addr, key, cas))
            .body(wire::value_body(value));
        match support::send(builder, addr, deadline).await.0 {
            support::Answer::Status(status, Some(body)) => wire::parse_put(status, &body),
            support::Answer::Status(200, None) => {
                Outcome::Info("the PUT answer could not be read".to_string())
            }
            support::Answer::Status(status, None) => wire::classify_error(status, b""),
            support::Answer::NotSent(e) => Outcome::Fail(e),
            support::Answer::Lost(e) => Outcome::Info(e),
        }
    }

    fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.client_addr)
    }

    /// The node whose server RPC address is `addr`.
    fn node_at(&self, addr: SocketAddr) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.peer_addr == addr)
            .map(|n| n.name.clone())
    }

    /// Every node's answer to `/v1/status/leader` (`None`: no answer), probed concurrently.
    async fn leader_views(&self) -> Vec<(String, Option<Option<SocketAddr>>)> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let http = self.http.clone();
            let addr = node.client_addr;
            tasks.spawn(async move {
                let builder = http.get(wire::leader_url(addr));
                let answer = support::send(builder, addr, Instant::now() + STATUS_TIMEOUT)
                    .await
                    .0;
                let view = match answer {
                    support::Answer::Status(200, Some(body)) => wire::parse_leader(&body).ok(),
                    _ => None,
                };
                (i, view)
            });
        }
        let mut views = vec![None; self.nodes.len()];
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, view)) = done {
                views[i] = view;
            }
        }
        self.nodes
            .iter()
            .map(|n| n.name.clone())
            .zip(views)
            .collect()
    }

    /// The leader: a server that names itself leader; if several do (an isolated old leader
    /// that has not noticed yet), the one most servers name.
    fn leader_of(&self, views: &[(String, Option<Option<SocketAddr>>)]) -> Option<String> {
        let mut votes: HashMap<String, usize> = HashMap::new();
        for (_, view) in views {
            if let Some(Some(addr)) = view {
                if let Some(name) = self.node_at(*addr) {
                    *votes.entry(name).or_default() += 1;
                }
            }
        }
        views
            .iter()
            .filter(|(name, view)| {
                matches!(view, Some(Some(addr)) if self.node_at(*addr).as_deref() == Some(name))
            })
            .max_by_key(|(name, _)| votes.get(name).copied().unwrap_or(0))
            .map(|(name, _)| name.clone())
    }

    pub async fn leader(&self) -> Option<String> {
        let views = self.leader_views().await;
        self.leader_of(&views)
    }

    /// Waits until every server answers `/v1/status/leader` and one of them leads; returns
    /// the leader's name. On timeout, names the servers that never answered.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<String, String> {
        crate::wait_for_leader(
            "consul",
            "HTTP address",
            timeout,
            Duration::from_millis(200),
            || self.leader_views(),
            |views| self.leader_of(views),
        )
        .await
    }

    /// `node`'s role and term, from its Raft statistics. Consul reads the state and the term
    /// one after the other (hashicorp/raft's `Stats`), so the report is marked inconsistent: a
    /// leader stepping down can read as leader of the new term for an instant. A leader names
    /// itself; a follower's view of the leader is not asked for (one request per sample).
    pub async fn role(&self, node: &NodeSpec, timeout: Duration) -> Option<RoleReport> {
        let addr = node.client_addr;
        let answer = support::send(
            self.http.get(wire::self_url(addr)),
            addr,
            Instant::now() + timeout,
        )
        .await
        .0;
        let support::Answer::Status(200, Some(body)) = answer else {
            return None;
        };
        let (role, term) = wire::parse_role(&body)?;
        let leader = (role == "leader").then(|| node.name.clone());
        Some(RoleReport {
            role,
            term,
            leader,
            consistent: false,
        })
    }

    /// A stale read of `key` answered by exactly `node` from its own state. `Ok(None)` if the
    /// key does not exist there.
    pub async fn local_read(&self, node: &str, key: &str) -> Result<Option<Value>, String> {
        let addr = self
            .addr_of(node)
            .ok_or_else(|| format!("unknown node {}", sanitize(node, 40)))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        match self
            .read(addr, key, wire::Consistency::Stale, deadline)
            .await?
        {
            None => Ok(None),
            Some(entry) => entry.json().map(Some),
        }
    }

    /// `node`'s own view of its state: node name, version and Raft statistics from
    /// `/v1/agent/self`, and a digest of its whole KV store (a stale `?recurse` read, so the
    /// server's own data): `kv_index` (the `X-Consul-Index` it answered with), `kv_keys` and
    /// `kv_digest` (a hash of every key and value in key order; two servers holding the same
    /// data have the same digest within one run). `None` if the server does not answer.
    pub async fn node_state(&self, node: &str) -> Option<Value> {
        let addr = self.addr_of(node)?;
        let deadline = Instant::now() + STATUS_TIMEOUT;
        let answer = support::send(self.http.get(wire::self_url(addr)), addr, deadline)
            .await
            .0;
        let support::Answer::Status(200, Some(body)) = answer else {
            return None;
        };
        let mut state = wire::parse_agent_self(&body).unwrap_or_else(|e| json!({ "error": e }));
        let deadline = Instant::now() + Duration::from_secs(5);
        let (answer, headers) =
            support::send(self.http.get(wire::dump_url(addr)), addr, deadline).await;
        let index = headers
            .as_ref()
            .and_then(|h| h.get("X-Consul-Index"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let dump = match answer {
            support::Answer::Status(200, Some(body)) => wire::parse_entries(&body),
            support::Answer::Status(404, _) => Ok(Vec::new()),
            support::Answer::Status(status, body) => Err(wire::error_text(
                status,
                body.as_deref().unwrap_or_default(),
            )),
            support::Answer::NotSent(e) | support::Answer::Lost(e) => Err(e),
        };
        match dump {
            Ok(mut entries) => {
                entries.sort_by(|a, b| a.key.cmp(&b.key));
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                for e in &entries {
                    e.key.hash(&mut hasher);
                    e.value.hash(&mut hasher);
                }
                state["kv_index"] = json!(index);
                state["kv_keys"] = json!(entries.len());
                state["kv_digest"] = json!(format!("{:016x}", hasher.finish()));
            }
            Err(e) => state["kv_error"] = Value::String(e),
        }
        Some(state)
    }
}
