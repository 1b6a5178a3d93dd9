//! # faultline-targets
//!
//! How faultline starts, stops and talks to each system under test. A target says how to
//! launch node *i* and how a client performs a workload's operations against it; everything
//! else (when to start, kill or pause a node, what to record) is the controller's business.
//!
//! * [`process`]: running node processes so that they can never outlive the controller.
//! * [`client`]: one client type over every protocol below, and how to tell a node is ready.
//! * [`httpkv`]: the `http-kv` client protocol (`docs/http-kv.md`), spoken by the bundled Raft
//!   and by custom targets.
//! * [`exec`]: a user's own client-driver program, spoken to in JSON lines
//!   (`docs/exec-protocol.md`).
//! * [`etcd`], [`consul`]: their real HTTP APIs, and how to launch their servers.
//! * [`raft`]: the bundled Raft key-value store (`faultline node`).
//! * [`custom`]: a system described in a TOML file (`docs/custom-targets.md`).
//! * [`role`]: each node's role, term and leader as it reports them, in one form for every
//!   target.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

pub mod client;
pub mod consul;
pub mod custom;
pub mod etcd;
pub mod exec;
pub mod httpkv;
pub mod process;
pub mod raft;
pub mod role;

/// One node of a cluster under test.
#[derive(Clone, Debug, Serialize)]
pub struct NodeSpec {
    /// `n1`, `n2`, ...: the name used in histories and reports.
    pub name: String,
    /// 1-based index.
    pub id: u64,
    /// Where clients reach the node.
    pub client_addr: SocketAddr,
    /// Where peers reach the node.
    pub peer_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The node's own log (its stdout and stderr).
    pub log_path: PathBuf,
}

/// How an operation ended, as the client saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It took effect; the value is its result.
    Ok(Value),
    /// It definitely did not take effect (refused before executing, or a cas that did not
    /// match).
    Fail(String),
    /// It may or may not have taken effect (timeout after sending, server said unknown, ...).
    Info(String),
}

/// The answer to one operation: its outcome and the node that finally handled it (a client
/// may follow a redirect to the leader).
#[derive(Clone, Debug)]
pub struct Completion {
    pub outcome: Outcome,
    pub node: String,
}

/// Text from outside (a driver's output, a server's error) made safe for logs: control
/// characters escaped, length bounded.
pub fn sanitize(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max_chars)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Polls every node's view (`None` when a node did not answer) until all answer and
/// `leader_of` finds a leader among them; returns its name. On timeout the error names the
/// nodes that never answered, or says that no leader was elected, so the user knows which
/// log to open.
pub(crate) async fn wait_for_leader<V, F, Fut, L>(
    system: &str,
    endpoint: &str,
    timeout: std::time::Duration,
    poll: std::time::Duration,
    mut views: F,
    leader_of: L,
) -> Result<String, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<(String, Option<V>)>>,
    L: Fn(&[(String, Option<V>)]) -> Option<String>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = views().await;
        let silent: Vec<&str> = seen
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        if silent.is_empty() {
            if let Some(leader) = leader_of(&seen) {
                return Ok(leader);
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(if silent.is_empty() {
                format!(
                    "{system}: no leader was elected within {} s",
                    timeout.as_secs_f64()
                )
            } else {
                format!(
                    "{system}: {} did not answer on their {endpoint} within {} s (see their logs)",
                    silent.join(", "),
                    timeout.as_secs_f64()
                )
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Performs a workload `request` with a client that itself knows only read, write and cas
/// (`simple`, given the node to ask and the operation): a set add becomes a cas loop
/// ([`add_via_cas`]), a whole-set read a read of the key ([`as_set`]).
pub async fn execute_via<F, Fut>(
    mut simple: F,
    node: &str,
    request: &faultline_workloads::Request,
    deadline: std::time::Instant,
) -> Completion
where
    F: FnMut(String, faultline_workloads::Op) -> Fut,
    Fut: std::future::Future<Output = Completion>,
{
    use faultline_workloads::Op;
    match &request.op {
        Op::Add(x) => add_via_cas(simple, node, x, deadline).await,
        Op::ReadSet => as_set(simple(node.to_string(), Op::Read).await),
        op => simple(node.to_string(), op.clone()).await,
    }
}

/// Adds `x` to the JSON array stored at `key`, with the target's own read and cas: read it,
/// then cas it to the array plus `x`, until the cas succeeds or `deadline` passes. The add is
/// definitely not done if every cas was definitely refused, and unknown if any cas had an
/// unknown outcome (it may have gone through).
pub async fn add_via_cas<F, Fut>(
    mut simple: F,
    node: &str,
    x: &Value,
    deadline: std::time::Instant,
) -> Completion
where
    F: FnMut(String, faultline_workloads::Op) -> Fut,
    Fut: std::future::Future<Output = Completion>,
{
    use faultline_workloads::Op;
    let mut maybe_applied = false;
    let mut at = node.to_string();
    let mut last_error = String::from("timed out");
    while std::time::Instant::now() < deadline {
        let read = simple(at.clone(), Op::Read).await;
        at = read.node.clone();
        let current = match read.outcome {
            Outcome::Ok(v) => v,
            Outcome::Fail(e) | Outcome::Info(e) => {
                last_error = e;
                // A read changes nothing: try again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let mut items = match &current {
            Value::Null => Vec::new(),
            Value::Array(items) => items.clone(),
            other => {
                return Completion {
                    outcome: Outcome::Fail(format!(
                        "the set key holds {}, which is not an array",
                        sanitize(&other.to_string(), 80)
                    )),
                    node: at,
                }
            }
        };
        if items.contains(x) {
            // Only reachable if an earlier attempt with an unknown outcome went through.
            return Completion {
                outcome: Outcome::Ok(x.clone()),
                node: at,
            };
        }
        items.push(x.clone());
        let cas = Op::Cas {
            from: current,
            to: Value::Array(items),
        };
        let done = simple(at.clone(), cas).await;
        at = done.node.clone();
        match done.outcome {
            Outcome::Ok(_) => {
                return Completion {
                    outcome: Outcome::Ok(x.clone()),
                    node: at,
                }
            }
            Outcome::Fail(e) => last_error = e,
            Outcome::Info(e) => {
                maybe_applied = true;
                last_error = e;
            }
        }
    }
    Completion {
        outcome: if maybe_applied {
            Outcome::Info(last_error)
        } else {
            Outcome::Fail(last_error)
        },
        node: at,
    }
}

/// A whole-set read: `null` (never written) reads as the empty set.
pub fn as_set(mut c: Completion) -> Completion {
    if let Outcome::Ok(v) = &c.outcome {
        c.outcome = match v {
            Value::Null => Outcome::Ok(Value::Array(Vec::new())),
            Value::Array(_) => Outcome::Ok(v.clone()),
            other => Outcome::Fail(format!(
                "the set key holds {}, which is not an array",
                sanitize(&other.to_string(), 80)
            )),
        };
    }
    c
}

/// The first non-empty line `binary args` prints (stdout, then stderr), sanitised: how a
/// binary names its version (`faultline 0.1.0`, `mydb v2.3`). It is killed after 10 s.
pub fn first_line_of(binary: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let output = etcd::support::run_version(binary, args, std::time::Duration::from_secs(10))?;
    output
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| sanitize(l, 200))
        .ok_or_else(|| format!("{} {} printed nothing", binary.display(), args.join(" ")))
}
