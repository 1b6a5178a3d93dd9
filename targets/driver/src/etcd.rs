//! etcd as a target: members started from the `etcd` binary (Debian's `etcd-server`, or any
//! etcd 3.4/3.5 given with `--etcd-bin`) as a static cluster, and a client that speaks etcd's
//! v3 JSON gateway (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`, `/v3/maintenance/status`,
//! `/v3/maintenance/hashkv`) with `reqwest`.
//!
//! Keys and values travel base64-encoded, as the gateway requires; a value is stored as the
//! JSON text of the workload's value, so a read gives back exactly what was written.
//!
//! # How an answer is classified
//!
//! etcd's API guarantees say that "the client may be uncertain about the status of an
//! operation if it times out, or there is a network disruption between the client and the etcd
//! member", and that "etcd may also abort operations when there is a leader election [and]
//! does not send abort responses to clients' outstanding requests in this event"
//! (<https://etcd.io/docs/v3.4/learning/api_guarantees/>, "Operation completed"). So, for an
//! operation that changes state (write, cas):
//!
//! * **Fail** (definitely not applied):
//!   - the connection could not be made (nothing was sent);
//!   - a txn whose comparison did not hold (`"succeeded"` absent or false): `cas-mismatch`;
//!   - errors etcd raises *before* proposing to Raft, or when applying refuses the request:
//!     gRPC codes InvalidArgument (3), NotFound (5), AlreadyExists (6), PermissionDenied (7),
//!     ResourceExhausted (8: `too many requests`, `database space exceeded`),
//!     FailedPrecondition (9), OutOfRange (11), Unauthenticated (16) — the status-code meanings
//!     of <https://grpc.github.io/grpc/core/md_doc_statuscodes.html> and etcd's
//!     `api/v3rpc/rpctypes/error.go`;
//!   - `etcdserver: no leader`: raised by the server's interceptor before the request reaches
//!     the handler (`etcdserver/api/v3rpc/interceptor.go`);
//!   - `raft proposal dropped`: raft refused the proposal locally (no leader known, or a
//!     leader transfer in progress) so that "the proposer can be notified and fail fast"
//!     (`raft.ErrProposalDropped`); it never entered the log.
//! * **Info** (unknown): a timeout after the request was sent; a connection reset or closed
//!   before the answer; `etcdserver: request timed out` (and its `possibly due to previous
//!   leader failure` / `connection lost` variants); `etcdserver: leader changed`;
//!   `etcdserver: server stopped`; and any other error (unknown 5xx, gateway failures), since
//!   an unrecognised error cannot be proved harmless.
//!
//! A read changes nothing, so a read that did not return a value is always recorded as
//! **Fail**, whatever went wrong (Jepsen's etcd client does the same: a timed-out read is
//! `:fail`, a timed-out write `:info`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use faultline_workloads::{Op, Request};
use serde_json::{json, Value};

use crate::process::Launch;
use crate::role::RoleReport;
use crate::{sanitize, Completion, NodeSpec, Outcome};

/// Raft heartbeat interval given to every member, in milliseconds. etcd's tuning guide
/// (<https://etcd.io/docs/v3.4/tuning/>) asks for about the round-trip time between members;
/// loopback and network namespaces are far below a millisecond, so 50 ms is generous and
/// still lets failures be detected quickly.
pub const HEARTBEAT_MS: u64 = 50;
/// Election timeout, in milliseconds: ten heartbeats, as the tuning guide recommends, so a
/// killed or isolated leader is replaced in about half a second instead of etcd's default 1 s.
pub const ELECTION_MS: u64 = 500;

/// A connection that cannot be made in this time counts as refused (nothing was sent). Keeps
/// a partitioned member (packets dropped, not refused) from eating an operation's whole
/// timeout before the client learns that nothing happened.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a status probe (leader, readiness, node state) may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `etcd --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

const INSTALL_HINT: &str =
    "install etcd with `apt-get install etcd-server` (Debian/Ubuntu) or pass --etcd-bin PATH";

/// How to run etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// The etcd binary (see [`find_binary`]).
    pub binary: PathBuf,
    /// Read with serializable (member-local, possibly stale) ranges instead of linearizable
    /// ones: for showing that the checker catches stale reads.
    pub serializable_reads: bool,
}

/// How to launch member `node` of `cluster` (a static initial cluster: every member is named
/// after its node and knows every other member's peer URL from the start).
///
/// * client URL `http://{client_addr}`, peer URL `http://{peer_addr}` (listen and advertise);
/// * data directory `node.data_dir` (a restarted member finds its WAL there and rejoins;
///   `--initial-cluster-state new` is then ignored, as etcd documents);
/// * `--initial-cluster-token faultline-{run_id}`, so members of two runs can never join each
///   other's cluster;
/// * [`HEARTBEAT_MS`] / [`ELECTION_MS`] timeouts;
/// * the `zap` logger writing to stderr (the node's log), which etcd 3.4 and 3.5 both accept.
pub fn launch(opts: &EtcdOptions, node: &NodeSpec, cluster: &[NodeSpec], run_id: &str) -> Launch {
    let initial_cluster: Vec<String> = cluster
        .iter()
        .map(|n| format!("{}=http://{}", n.name, n.peer_addr))
        .collect();
    let client_url = format!("http://{}", node.client_addr);
    let peer_url = format!("http://{}", node.peer_addr);
    let args = [
        ("--name", node.name.clone()),
        ("--data-dir", node.data_dir.display().to_string()),
        ("--listen-client-urls", client_url.clone()),
        ("--advertise-client-urls", client_url),
        ("--listen-peer-urls", peer_url.clone()),
        ("--initial-advertise-peer-urls", peer_url),
        ("--initial-cluster", initial_cluster.join(",")),
        ("--initial-cluster-token", initial_cluster_token(run_id)),
        ("--initial-cluster-state", "new".to_string()),
        ("--heartbeat-interval", HEARTBEAT_MS.to_string()),
        ("--election-timeout", ELECTION_MS.to_string()),
        ("--logger", "zap".to_string()),
        ("--log-outputs", "stderr".to_string()),
    ];
    Launch {
        program: opts.binary.clone(),
        args: args
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_string(), value])
            .collect(),
        env: Vec::new(),
        log: node.log_path.clone(),
        run_id: run_id.to_string(),
        netns: None,
    }
}

/// The cluster token of a run: `faultline-` and the run id, restricted to characters that are
/// safe on a command line and in etcd's logs.
pub fn initial_cluster_token(run_id: &str) -> String {
    let id: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("faultline-{id}")
}

/// `binary --version`, parsed: the etcd version (e.g. `3.4.23`), or an error saying what is
/// wrong and how to fix it.
pub fn version(binary: &Path) -> Result<String, String> {
    support::read_version(
        binary,
        &["--version"],
        VERSION_TIMEOUT,
        "an etcd version",
        parse_version,
        INSTALL_HINT,
    )
}

/// The version in `etcd --version`'s output (`etcd Version: 3.4.23`).
pub fn parse_version(output: &str) -> Option<String> {
    support::version_after(output, "etcd Version:")
}

/// The etcd binary to use: `explicit` (from `--etcd-bin`) if given, which must be an
/// executable file; otherwise `etcd` on `PATH`.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    support::find_binary("etcd", "--etcd-bin", explicit, INSTALL_HINT)
}

/// A client of an etcd cluster, shared by all workers (it pools connections).
#[derive(Clone)]
pub struct EtcdClient {
    http: reqwest::Client,
    nodes: Vec<NodeSpec>,
    serializable_reads: bool,
    /// Member ids (as etcd prints them, decimal) to node names, learnt from each member's
    /// own status, so a reported leader id can be named.
    members: Arc<Mutex<HashMap<String, String>>>,
}

/// One member's `maintenance/status`, the parts we use.
#[derive(Clone, Debug)]
struct Status {
    member_id: String,
    leader_id: String,
    raft_term: u64,
    raw: Value,
}

impl EtcdClient {
    pub fn new(nodes: Vec<NodeSpec>, serializable_reads: bool) -> Result<EtcdClient, String> {
        Ok(EtcdClient {
            http: support::http_client(CONNECT_TIMEOUT)?,
            nodes,
            serializable_reads,
            members: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Performs `request` on `node`, giving up at `deadline`. etcd members forward proposals
    /// to their leader themselves, so the node that handled it is always `node`.
    pub async fn execute(&self, node: &str, request: &Request, deadline: Instant) -> Completion {
        let key = request.key.as_str();
        let simple = |n: String, op: Op| async move { self.simple(&n, key, &op, deadline).await };
        crate::execute_via(simple, node, request, deadline).await
    }

    /// One read, write or cas.
    async fn simple(&self, node: &str, key: &str, op: &Op, deadline: Instant) -> Completion {
        let outcome = match self.addr_of(node) {
            None => Outcome::Fail(format!("unknown node {}", sanitize(node, 40))),
            Some(addr) => match op {
                Op::Read | Op::ReadSet => {
                    match self
                        .range(addr, key, self.serializable_reads, deadline)
                        .await
                    {
                        Ok(v) => Outcome::Ok(v.unwrap_or(Value::Null)),
                        Err(e) => Outcome::Fail(e),
                    }
                }
                Op::Write(v) => {
                    let body = json!({ "key": b64(key.as_bytes()), "value": b64(&json_text(v)) });
                    match support::post(&self.http, addr, "/v3/kv/put", &body, deadline).await {
                        // The gateway answers 200 only once the put is committed and applied.
                        support::Answer::Status(200, _) => Outcome::Ok(op.input()),
                        answer => classify_mutation(answer),
                    }
                }
                Op::Cas { from, to } => {
                    let body = cas_txn(key, from, to);
                    match support::post(&self.http, addr, "/v3/kv/txn", &body, deadline).await {
                        support::Answer::Status(200, body) => match json_of(&body) {
                            // proto3 JSON omits false: a txn whose comparison failed has no
                            // "succeeded" at all.
                            Some(resp) => {
                                if resp.get("succeeded").and_then(Value::as_bool) == Some(true) {
                                    Outcome::Ok(op.input())
                                } else {
                                    Outcome::Fail("cas-mismatch".to_string())
                                }
                            }
                            // Executed, but whether the comparison held was lost with the body.
                            None => Outcome::Info("the txn answer could not be read".to_string()),
                        },
                        answer => classify_mutation(answer),
                    }
                }
                Op::Add(_) => Outcome::Fail("add is not a single etcd request".to_string()),
            },
        };
        Completion {
            outcome,
            node: node.to_string(),
        }
    }

    /// A range of one key: its value (`None` if absent), or why there is none.
    async fn range(
        &self,
        addr: SocketAddr,
        key: &str,
        serializable: bool,
        deadline: Instant,
    ) -> Result<Option<Value>, String> {
        let mut body = json!({ "key": b64(key.as_bytes()) });
        if serializable {
            body["serializable"] = Value::Bool(true);
        }
        match support::post(&self.http, addr, "/v3/kv/range", &body, deadline).await {
            support::Answer::Status(200, body) => match json_of(&body) {
                Some(resp) => parse_range(&resp),
                None => Err("the range answer could not be read".into()),
            },
            support::Answer::Status(code, body) => Err(error_text(code, json_of(&body).as_ref())),
            support::Answer::NotSent(e) | support::Answer::Lost(e) => Err(e),
        }
    }

    fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.client_addr)
    }

    /// `maintenance/status` of `node`, if it answers within `timeout`.
    async fn status(&self, node: &NodeSpec, timeout: Duration) -> Option<Status> {
        let deadline = Instant::now() + timeout;
        let answer = support::post(
            &self.http,
            node.client_addr,
            "/v3/maintenance/status",
            &json!({}),
            deadline,
        )
        .await;
        let support::Answer::Status(200, body) = answer else {
            return None;
        };
        let status = parse_status(json_of(&body)?)?;
        if let Ok(mut members) = self.members.lock() {
            members.insert(status.member_id.clone(), node.name.clone());
        }
        Some(status)
    }

    /// The status of every node, probed concurrently (a dead member costs one timeout, not
    /// one per member).
    async fn statuses(&self, timeout: Duration) -> Vec<(String, Option<Status>)> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let client = self.clone();
            let node = node.clone();
            tasks.spawn(async move { (i, client.status(&node, timeout).await) });
        }
        let mut found: Vec<Option<Status>> = vec![None; self.nodes.len()];
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, status)) = done {
                found[i] = status;
            }
        }
        self.nodes
            .iter()
            .map(|n| n.name.clone())
            .zip(found)
            .collect()
    }

    /// The member that leads: one whose own status names itself as leader, in the highest
    /// term if several do (an old leader cut off from the others may still think it leads
    /// until it notices).
    pub async fn leader(&self) -> Option<String> {
        leader_of(&self.statuses(STATUS_TIMEOUT).await)
    }

    /// Waits until every member answers its status and one of them leads; returns the
    /// leader's name. On timeout, names the members that never answered (or says that no
    /// leader was elected).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<String, String> {
        crate::wait_for_leader(
            "etcd",
            "client address",
            timeout,
            Duration::from_millis(100),
            || self.statuses(STATUS_TIMEOUT),
            leader_of,
        )
        .await
    }

    /// A serializable read of `key` answered by exactly `node` from its own state, without
    /// asking the leader: what that replica holds. `Ok(None)` if the key is absent there.
    pub async fn local_read(&self, node: &str, key: &str) -> Result<Option<Value>, String> {
        let addr = self
            .addr_of(node)
            .ok_or_else(|| format!("unknown node {}", sanitize(node, 40)))?;
        self.range(addr, key, true, Instant::now() + Duration::from_secs(2))
            .await
    }

    /// `node`'s role, term and leader. From etcd's `raft.status` (published with `expvar` at
    /// `/debug/vars` on the client URL): raft builds that status in its own goroutine, so the
    /// role and the term are one snapshot. Where `/debug/vars` does not answer, the role and
    /// leader come from the maintenance status, without a term: its `raftTerm` is the term of
    /// the last entry the member *applied*, so a new leader reports its predecessor's term
    /// until its first entry is applied, and two leaders of one term would seem to appear.
    /// `None` if the member does not answer within `timeout`.
    pub async fn role(&self, node: &NodeSpec, timeout: Duration) -> Option<RoleReport> {
        let deadline = Instant::now() + timeout;
        let addr = node.client_addr;
        let answer = support::send(
            self.http.get(format!("http://{addr}/debug/vars")),
            addr,
            deadline,
        )
        .await
        .0;
        match answer {
            support::Answer::Status(200, body) => {
                let raft = json_of(&body)?.get("raft.status")?.clone();
                let (report, own_id) = parse_raft_status(&raft, |id| self.name_of_hex(id))?;
                if let (Some(id), Ok(mut members)) = (own_id, self.members.lock()) {
                    members.insert(id.to_string(), node.name.clone());
                }
                Some(report)
            }
            // No expvar handler (a build without it): the maintenance status.
            support::Answer::Status(404, _) => {
                let status = self
                    .status(node, deadline.saturating_duration_since(Instant::now()))
                    .await?;
                let leads = status.leader_id == status.member_id;
                let leader = match self.name_of(&status.leader_id) {
                    Value::String(s) => Some(s),
                    _ => None,
                };
                Some(RoleReport {
                    role: if leads { "leader" } else { "follower" }.to_string(),
                    term: None,
                    leader,
                    consistent: false,
                })
            }
            _ => None,
        }
    }

    /// A member's name from its raft id as `raft.status` prints it (hex), once learnt.
    fn name_of_hex(&self, hex: &str) -> Option<String> {
        let id = u64::from_str_radix(hex, 16).ok().filter(|&id| id != 0)?;
        let known = self
            .members
            .lock()
            .ok()
            .and_then(|m| m.get(&id.to_string()).cloned());
        Some(known.unwrap_or_else(|| format!("id {}", sanitize(hex, 20))))
    }

    /// `node`'s own view of its state, for the results: its member id, etcd version, the
    /// leader it knows, its store revision, Raft index/applied index/term, backend size, and a
    /// hash of its key-value store. The hash is `hashkv` at the member's own revision (equal
    /// on two members at the same revision unless their data differ) where the gateway offers
    /// it (etcd >= 3.5.10); older gateways, etcd 3.4 included, route both Hash and HashKV to
    /// `/v3/maintenance/hash` and answer with Hash (of the whole backend, comparable between
    /// members that have applied the same entries): `hash_kind` says which one it is.
    /// `None` if the member does not answer.
    pub async fn node_state(&self, node: &str) -> Option<Value> {
        let spec = self.nodes.iter().find(|n| n.name == node)?;
        let status = self.status(spec, STATUS_TIMEOUT).await?;
        let raw = &status.raw;
        let revision = num(&raw["header"]["revision"]);
        let leader = self.name_of(&status.leader_id);
        let mut state = json!({
            "member_id": status.member_id,
            "version": raw.get("version").cloned().unwrap_or(Value::Null),
            "leader": leader,
            "revision": revision,
            "raft_term": num(&raw["raftTerm"]),
            "raft_index": num(&raw["raftIndex"]),
            "raft_applied_index": num(&raw["raftAppliedIndex"]),
            "db_size": num(&raw["dbSize"]),
        });
        match self.hash(spec.client_addr, revision.unwrap_or(0)).await {
            Ok(hash) => {
                if let (Some(state), Some(hash)) = (state.as_object_mut(), hash.as_object()) {
                    state.extend(hash.clone());
                }
            }
            Err(e) => state["hash_error"] = Value::String(e),
        }
        Some(state)
    }

    /// `hashkv` at `revision`, or the gateway's `hash` where `hashkv` has no route.
    async fn hash(&self, addr: SocketAddr, revision: u64) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let body = json!({ "revision": revision.to_string() });
        let answer =
            support::post(&self.http, addr, "/v3/maintenance/hashkv", &body, deadline).await;
        let answer = match answer {
            support::Answer::Status(404, _) => {
                support::post(
                    &self.http,
                    addr,
                    "/v3/maintenance/hash",
                    &json!({}),
                    deadline,
                )
                .await
            }
            other => other,
        };
        match answer {
            support::Answer::Status(200, body) => match json_of(&body) {
                Some(resp) => parse_hash(&resp, revision),
                None => Err("the hash answer could not be read".into()),
            },
            support::Answer::Status(code, body) => Err(error_text(code, json_of(&body).as_ref())),
            support::Answer::NotSent(e) | support::Answer::Lost(e) => Err(e),
        }
    }

    /// The name of the member with etcd id `id`, or the id itself if no member has reported
    /// it; `null` for "no leader" (id 0).
    fn name_of(&self, id: &str) -> Value {
        if id.is_empty() || id == "0" {
            return Value::Null;
        }
        let known = self.members.lock().ok().and_then(|m| m.get(id).cloned());
        Value::String(known.unwrap_or_else(|| id.to_string()))
    }
}

/// A body as JSON, if it is.
fn json_of(body: &Option<Vec<u8>>) -> Option<Value> {
    body.as_deref().and_then(|b| serde_json::from_slice(b).ok())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes stored for a workload value: its JSON text.
fn json_text(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// A txn that puts `to` at `key` if it holds `from`; a `from` of `null` means "the key does not
/// exist", i.e. its create revision is 0.
fn cas_txn(key: &str, from: &Value, to: &Value) -> Value {
    let k = b64(key.as_bytes());
    let compare = if from.is_null() {
        json!({ "key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
    } else {
        json!({ "key": k, "target": "VALUE", "result": "EQUAL", "value": b64(&json_text(from)) })
    };
    json!({
        "compare": [compare],
        "success": [{ "request_put": { "key": k, "value": b64(&json_text(to)) } }],
    })
}

/// The value in a range answer: `None` if the key is absent, or an error if the stored bytes
/// are not a JSON value (something other than faultline wrote them).
fn parse_range(resp: &Value) -> Result<Option<Value>, String> {
    let Some(kv) = resp
        .get("kvs")
        .and_then(Value::as_array)
        .and_then(|kvs| kvs.first())
    else {
        return Ok(None);
    };
    // proto3 JSON omits empty fields: an empty value has no "value" at all.
    let encoded = kv.get("value").and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("etcd returned a value that is not base64: {e}"))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|_| {
        format!(
            "the stored value is not JSON: {:?}",
            sanitize(&String::from_utf8_lossy(&bytes), 80)
        )
    })
}

fn parse_status(raw: Value) -> Option<Status> {
    let member_id = id_text(&raw["header"]["member_id"])?;
    let leader_id = id_text(&raw["leader"]).unwrap_or_else(|| "0".to_string());
    let raft_term = num(&raw["raftTerm"]).unwrap_or(0);
    Some(Status {
        member_id,
        leader_id,
        raft_term,
        raw,
    })
}

/// Reads etcd's `raft.status` (`{"id": "8e9e05c52164694d", "term": 2, "lead": "8e9e...",
/// "raftState": "StateLeader", ...}`): the report (leader named by `name_of`) and the member's
/// own id, as the decimal text the maintenance API uses.
fn parse_raft_status(
    raft: &Value,
    name_of: impl Fn(&str) -> Option<String>,
) -> Option<(RoleReport, Option<u64>)> {
    let state = raft.get("raftState")?.as_str()?;
    let term = raft.get("term").and_then(crate::role::as_u64);
    let own = raft
        .get("id")
        .and_then(Value::as_str)
        .and_then(|h| u64::from_str_radix(h, 16).ok());
    let lead = raft.get("lead").and_then(Value::as_str).unwrap_or("0");
    let report = RoleReport {
        role: crate::role::etcd_role(state),
        term,
        leader: name_of(lead),
        consistent: true,
    };
    Some((report, own))
}

/// The leader among `statuses`: a member that names itself leader, highest term first.
fn leader_of(statuses: &[(String, Option<Status>)]) -> Option<String> {
    statuses
        .iter()
        .filter_map(|(name, s)| s.as_ref().map(|s| (name, s)))
        .filter(|(_, s)| s.leader_id == s.member_id)
        .max_by_key(|(_, s)| s.raft_term)
        .map(|(name, _)| name.clone())
}

fn parse_hash(resp: &Value, asked_revision: u64) -> Result<Value, String> {
    let hash = num(&resp["hash"]).ok_or_else(|| "the hash answer has no hash".to_string())?;
    // Only HashKV answers carry a compact revision (-1 before any compaction); Hash does not.
    Ok(match resp.get("compact_revision") {
        Some(compact) => json!({
            "hash": hash,
            "hash_kind": "hashkv",
            "hash_revision": asked_revision,
            "compact_revision": signed(compact),
        }),
        None => json!({
            "hash": hash,
            "hash_kind": "hash",
            "hash_revision": num(&resp["header"]["revision"]),
        }),
    })
}

/// An unsigned number the gateway may print as a number or (64-bit fields) as a string.
fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn signed(v: &Value) -> Value {
    match v {
        Value::Number(_) => v.clone(),
        Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// A member id as text (ids are 64-bit, printed as strings by the gateway).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The gateway's error message and gRPC code (`{"error": .., "code": .., "message": ..}`).
fn grpc_error(body: Option<&Value>) -> (Option<u64>, String) {
    let body = body.unwrap_or(&Value::Null);
    let code = body.get("code").and_then(Value::as_u64);
    let message = body
        .get("error")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| body.get("message").and_then(Value::as_str))
        .unwrap_or("");
    (code, message.to_string())
}

/// What an error answer says, for an operation that changed nothing anyway (a read).
fn error_text(http_status: u16, body: Option<&Value>) -> String {
    let (code, message) = grpc_error(body);
    match (message.is_empty(), code) {
        (false, _) => sanitize(&message, 200),
        (true, Some(code)) => format!("HTTP {http_status} (gRPC code {code})"),
        (true, None) => format!("HTTP {http_status}"),
    }
}

/// The outcome of a write or cas that did not get a 200 (see the module documentation).
fn classify_mutation(answer: support::Answer) -> Outcome {
    match answer {
        support::Answer::NotSent(e) => Outcome::Fail(e),
        support::Answer::Lost(e) => Outcome::Info(e),
        support::Answer::Status(status, body) => classify_error(status, json_of(&body).as_ref()),
    }
}

fn classify_error(http_status: u16, body: Option<&Value>) -> Outcome {
    let (code, message) = grpc_error(body);
    let text = error_text(http_status, body);
    let m = message.to_ascii_lowercase();
    // Checked first: these texts say the outcome is unknown whatever their code.
    if m.contains("request timed out")
        || m.contains("leader changed")
        || m.contains("server stopped")
    {
        return Outcome::Info(text);
    }
    if m.contains("raft proposal dropped") || m.contains("etcdserver: no leader") {
        return Outcome::Fail(text);
    }
    match code {
        Some(3 | 5 | 6 | 7 | 8 | 9 | 11 | 16) => Outcome::Fail(text),
        _ => Outcome::Info(text),
    }
}

/// Helpers shared with the Consul target (`crate::consul`): finding and asking a binary for
/// its version, and HTTP requests whose failures are told apart by whether anything was sent.
pub(crate) mod support {
    use std::io::Read as _;
    use std::net::SocketAddr;
    use std::os::unix::process::CommandExt as _;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use crate::sanitize;

    /// One answer from a node.
    pub enum Answer {
        /// An HTTP status, and the body if it could be read whole.
        Status(u16, Option<Vec<u8>>),
        /// The request never reached the node (nothing was sent).
        NotSent(String),
        /// The request may have reached the node; no answer came back.
        Lost(String),
    }

    /// The HTTP client of a target: pooled, no proxy (a proxy from the environment would turn
    /// "connection refused" into an answer from the proxy), and a connect timeout after which
    /// a node counts as unreachable.
    pub fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .no_proxy()
            // An answer is the node's own: a redirect would put another node's answer (or a
            // GET in place of a write) in its place.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))
    }

    /// POSTs `body` as JSON to `path` on `addr`, giving up at `deadline`.
    pub async fn post(
        http: &reqwest::Client,
        addr: SocketAddr,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Answer {
        let builder = http.post(format!("http://{addr}{path}")).json(body);
        send(builder, addr, deadline).await.0
    }

    /// Sends `builder`, giving up at `deadline`; also returns the response headers.
    pub async fn send(
        builder: reqwest::RequestBuilder,
        addr: SocketAddr,
        deadline: Instant,
    ) -> (Answer, Option<reqwest::header::HeaderMap>) {
        let Some(timeout) = deadline.checked_duration_since(Instant::now()) else {
            return (
                Answer::NotSent("timed out before sending".to_string()),
                None,
            );
        };
        match builder.timeout(timeout).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                // The status line arrived, so the status is the answer even if the body is
                // cut short; the caller decides whether it needed the body.
                let body = resp.bytes().await.ok().map(|b| b.to_vec());
                (Answer::Status(status, body), Some(headers))
            }
            // Checked before the timeout: a connect timeout is both, and nothing was sent.
            Err(e) if e.is_connect() => (
                Answer::NotSent(format!(
                    "connection refused ({addr}: {})",
                    sanitize(&short_error(&e), 120)
                )),
                None,
            ),
            Err(e) if e.is_timeout() => (Answer::Lost("timeout".to_string()), None),
            Err(e) => (
                Answer::Lost(format!(
                    "connection lost: {}",
                    sanitize(&short_error(&e), 120)
                )),
                None,
            ),
        }
    }

    /// The innermost cause of a reqwest error (the outer layers only say "error sending
    /// request").
    pub fn short_error(e: &reqwest::Error) -> String {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg = s.to_string();
            source = s.source();
        }
        msg
    }

    /// `explicit` if given (it must be an executable file), else `name` on `PATH`.
    pub fn find_binary(
        name: &str,
        flag: &str,
        explicit: Option<&Path>,
        hint: &str,
    ) -> Result<PathBuf, String> {
        if let Some(path) = explicit {
            return match executable(path) {
                Ok(()) => Ok(path.to_path_buf()),
                Err(why) => Err(format!("{flag} {}: {why}; {hint}", path.display())),
            };
        }
        let paths = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| executable(candidate).is_ok())
            .ok_or_else(|| format!("no `{name}` binary was found on PATH; {hint}"))
    }

    fn executable(path: &Path) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        })?;
        if !meta.is_file() {
            return Err("not a file".to_string());
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err("not executable".to_string());
        }
        Ok(())
    }

    /// `binary args`, run and parsed by `parse`, or an error saying what went wrong with
    /// `hint` on how to fix it (`what` names the expected output, e.g. "an etcd version").
    pub fn read_version(
        binary: &Path,
        args: &[&str],
        timeout: Duration,
        what: &str,
        parse: fn(&str) -> Option<String>,
        hint: &str,
    ) -> Result<String, String> {
        let output = run_version(binary, args, timeout).map_err(|e| format!("{e}; {hint}"))?;
        parse(&output).ok_or_else(|| {
            format!(
                "{} {} did not print {what} (it printed {:?}); {hint}",
                binary.display(),
                args.join(" "),
                crate::sanitize(output.trim(), 200)
            )
        })
    }

    /// The version on the first line of `output` that starts with `prefix`: a digit, then
    /// letters, digits, `.`, `-` or `+` only (so nothing odd reaches results or terminals).
    pub fn version_after(output: &str, prefix: &str) -> Option<String> {
        output.lines().find_map(|line| {
            let v = line.trim().strip_prefix(prefix)?.trim();
            let ok = v.chars().next().is_some_and(|c| c.is_ascii_digit())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
            ok.then(|| v.to_string())
        })
    }

    /// Runs `binary args` and returns what it printed (stdout, then stderr), killing it if it
    /// takes longer than `timeout`. The child dies with the thread that started it
    /// (`PR_SET_PDEATHSIG`), so even a controller killed meanwhile leaves nothing behind.
    pub fn run_version(binary: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
            });
        }
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{} does not exist", binary.display()),
            std::io::ErrorKind::PermissionDenied => {
                format!(
                    "{} cannot be executed (permission denied)",
                    binary.display()
                )
            }
            _ => format!("cannot run {}: {e}", binary.display()),
        })?;
        // Read both pipes on their own threads so a chatty child cannot block on a full pipe.
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let out = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = stdout.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = stderr.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} {} did not finish within {} s",
                        binary.display(),
                        args.join(" "),
                        timeout.as_secs()
                    ));
                }
                Err(e) => return Err(format!("cannot wait for {}: {e}", binary.display())),
            }
        }
        let mut text = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
        text.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(i: u64) -> NodeSpec {
        NodeSpec {
            name: format!("n{i}"),
            id: i,
            client_addr: SocketAddr::from(([127, 0, 0, 1], 2370 + i as u16)),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 2380 + i as u16)),
            data_dir: PathBuf::from(format!("/tmp/d{i}")),
            log_path: PathBuf::from(format!("/tmp/n{i}.log")),
        }
    }

    #[test]
    fn raft_status_is_one_consistent_report() {
        // As etcd 3.4.23 publishes it at /debug/vars (a single member that leads).
        let raft = json!({"id": "2e1259d415f2a040", "term": 2, "vote": "2e1259d415f2a040",
            "commit": 4, "lead": "2e1259d415f2a040", "raftState": "StateLeader", "applied": 4,
            "progress": {}, "leadtransferee": "0"});
        let (r, own) = parse_raft_status(&raft, |h| Some(format!("hex {h}"))).unwrap();
        assert_eq!(r.role, "leader");
        assert_eq!(r.term, Some(2));
        assert_eq!(r.leader.as_deref(), Some("hex 2e1259d415f2a040"));
        assert!(r.consistent);
        assert_eq!(own, Some(0x2e12_59d4_15f2_a040));
        let follower = json!({"id": "1", "term": "9", "lead": "0", "raftState": "StateFollower"});
        let (r, _) = parse_raft_status(&follower, |_| None).unwrap();
        assert_eq!(
            (r.role.as_str(), r.term, r.leader),
            ("follower", Some(9), None)
        );
        assert!(parse_raft_status(&json!({"term": 1}), |_| None).is_none());
    }

    #[test]
    fn launch_names_every_member_and_its_own_urls() {
        let cluster = [spec(1), spec(2), spec(3)];
        let opts = EtcdOptions {
            binary: PathBuf::from("/usr/bin/etcd"),
            serializable_reads: false,
        };
        let l = launch(&opts, &cluster[1], &cluster, "20261125T210232Z/x y");
        let arg = |flag: &str| {
            let i = l.args.iter().position(|a| a == flag).expect(flag);
            l.args[i + 1].clone()
        };
        assert_eq!(l.program, PathBuf::from("/usr/bin/etcd"));
        assert_eq!(arg("--name"), "n2");
        assert_eq!(arg("--data-dir"), "/tmp/d2");
        assert_eq!(arg("--listen-client-urls"), "http://127.0.0.1:2372");
        assert_eq!(arg("--advertise-client-urls"), "http://127.0.0.1:2372");
        assert_eq!(arg("--listen-peer-urls"), "http://127.0.0.1:2382");
        assert_eq!(
            arg("--initial-cluster"),
            "n1=http://127.0.0.1:2381,n2=http://127.0.0.1:2382,n3=http://127.0.0.1:2383"
        );
        assert_eq!(
            arg("--initial-cluster-token"),
            "faultline-20261125T210232Z-x-y"
        );
        assert_eq!(arg("--election-timeout"), "500");
        assert_eq!(l.log, PathBuf::from("/tmp/n2.log"));
    }

    #[test]
    fn versions_of_3_4_and_3_5_are_read() {
        let v34 = "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\n";
        assert_eq!(parse_version(v34).as_deref(), Some("3.4.23"));
        let v35 = "etcd Version: 3.5.9\nGit SHA: bdbbde998\nGo Version: go1.19.9\nGo OS/Arch: linux/amd64\n";
        assert_eq!(parse_version(v35).as_deref(), Some("3.5.9"));
        assert_eq!(parse_version("Consul v1.17.0"), None);
        assert_eq!(parse_version("etcd Version: \u{1b}[31mx"), None);
    }

    // Answers below were captured from etcd 3.4.23's gateway.
    #[test]
    fn range_answers_give_the_json_value_or_absent() {
        let absent: Value = serde_json::from_str(
            r#"{"header":{"cluster_id":"7266900810802666328","member_id":"4627081221937520288","revision":"1","raft_term":"2"}}"#,
        )
        .unwrap();
        assert_eq!(parse_range(&absent), Ok(None));
        let present: Value = serde_json::from_str(
            r#"{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(parse_range(&present), Ok(Some(json!(1))));
        let not_json: Value =
            serde_json::from_str(r#"{"kvs":[{"key":"Zm9v","value":"YmFy"}]}"#).unwrap();
        assert!(parse_range(&not_json).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn cas_from_null_compares_the_create_revision() {
        let txn = cas_txn("k", &Value::Null, &json!(5));
        assert_eq!(txn["compare"][0]["target"], "CREATE");
        assert_eq!(txn["compare"][0]["create_revision"], "0");
        let txn = cas_txn("k", &json!([1, 2]), &json!([1, 2, 3]));
        assert_eq!(txn["compare"][0]["target"], "VALUE");
        assert_eq!(txn["compare"][0]["value"], b64(b"[1,2]"));
        assert_eq!(txn["success"][0]["request_put"]["value"], b64(b"[1,2,3]"));
    }

    #[test]
    fn errors_are_definite_only_when_etcd_says_nothing_was_applied() {
        let body = |code: u64, msg: &str| json!({ "error": msg, "message": msg, "code": code });
        let fail = |o: Outcome| matches!(o, Outcome::Fail(_));
        let info = |o: Outcome| matches!(o, Outcome::Info(_));
        assert!(info(classify_error(
            503,
            Some(&body(14, "etcdserver: request timed out"))
        )));
        assert!(info(classify_error(
            503,
            Some(&body(
                14,
                "etcdserver: request timed out, possibly due to previous leader failure"
            ))
        )));
        assert!(info(classify_error(
            503,
            Some(&body(14, "etcdserver: leader changed"))
        )));
        assert!(info(classify_error(
            503,
            Some(&body(14, "etcdserver: server stopped"))
        )));
        assert!(info(classify_error(
            503,
            Some(&body(14, "transport is closing"))
        )));
        assert!(info(classify_error(500, None)));
        assert!(fail(classify_error(
            400,
            Some(&body(3, "etcdserver: key is not provided"))
        )));
        assert!(fail(classify_error(
            429,
            Some(&body(8, "etcdserver: too many requests"))
        )));
        assert!(fail(classify_error(
            500,
            Some(&body(2, "raft proposal dropped"))
        )));
        assert!(fail(classify_error(
            503,
            Some(&body(14, "etcdserver: no leader"))
        )));
        assert!(fail(classify_mutation(support::Answer::NotSent(
            "connection refused".into()
        ))));
        assert!(info(classify_mutation(support::Answer::Lost(
            "timeout".into()
        ))));
    }

    #[test]
    fn the_leader_is_a_member_that_names_itself_in_the_highest_term() {
        let st = |me: &str, leader: &str, term: u64| {
            Some(Status {
                member_id: me.into(),
                leader_id: leader.into(),
                raft_term: term,
                raw: Value::Null,
            })
        };
        let statuses = vec![
            ("n1".to_string(), st("1", "1", 2)),
            ("n2".to_string(), st("2", "3", 3)),
            ("n3".to_string(), st("3", "3", 3)),
        ];
        assert_eq!(leader_of(&statuses).as_deref(), Some("n3"));
        let headless = vec![
            ("n1".to_string(), st("1", "0", 4)),
            ("n2".to_string(), None),
        ];
        assert_eq!(leader_of(&headless), None);
    }

    #[test]
    fn hash_answers_say_which_hash_they_are() {
        let hash: Value = serde_json::from_str(
            r#"{"header":{"member_id":"4627081221937520288","revision":"4","raft_term":"2"},"hash":2347750025}"#,
        )
        .unwrap();
        let h = parse_hash(&hash, 4).unwrap();
        assert_eq!(h["hash_kind"], "hash");
        assert_eq!(h["hash"], 2347750025u64);
        let hashkv: Value = serde_json::from_str(
            r#"{"header":{"revision":"2"},"hash":3305255506,"compact_revision":"-1"}"#,
        )
        .unwrap();
        let h = parse_hash(&hashkv, 2).unwrap();
        assert_eq!(h["hash_kind"], "hashkv");
        assert_eq!(h["compact_revision"], -1);
    }
}
