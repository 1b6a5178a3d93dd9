//! The `exec` client protocol (`docs/exec-protocol.md`): faultline runs the user's client
//! driver once per test and speaks JSON lines with it over stdin/stdout. Requests carry an id;
//! answers may come back in any order, so a driver can run many at once.
//!
//! A request the driver has not answered by its deadline is indeterminate (`info`): the driver
//! may have sent it. If the driver dies, requests it had received are indeterminate, and
//! requests it never received are definitely not executed.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline_workloads::Op;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use crate::role::RoleReport;
use crate::{Completion, NodeSpec, Outcome};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// The longest answer line read from a driver.
const MAX_LINE: usize = 16 << 20;

/// A running client driver.
#[derive(Clone)]
pub struct ExecClient {
    stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    nodes: Vec<NodeSpec>,
    child: Arc<Mutex<Option<Child>>>,
    /// Whether the driver answers `status` requests: [`STATUS_UNKNOWN`] until it first
    /// answers one, then [`STATUS_YES`] or [`STATUS_NO`].
    status_support: Arc<AtomicU8>,
    /// `status` requests the driver let time out before answering any.
    status_silences: Arc<AtomicU64>,
}

const STATUS_UNKNOWN: u8 = 0;
const STATUS_YES: u8 = 1;
const STATUS_NO: u8 = 2;
/// `status` requests that may time out, unanswered, before faultline stops asking a driver
/// that has never answered one (an older driver may ignore requests it does not know).
const STATUS_PATIENCE: u64 = 20;

impl ExecClient {
    /// Starts the driver `command`; its stderr goes to `log`.
    ///
    /// The driver runs in a process group of its own (so stopping it stops whatever it
    /// started) and carries `FAULTLINE_RUN=run_id` like the nodes, so `faultline clean` finds
    /// it if the controller dies.
    pub fn start(
        command: &[String],
        log: &Path,
        nodes: Vec<NodeSpec>,
        run_id: &str,
    ) -> Result<ExecClient, String> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| "client.program is empty".to_string())?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let mut cmd = Command::new(program);
        let controller = nix::unistd::getpid();
        // SAFETY: runs in the child between fork and exec, making only async-signal-safe
        // calls (prctl, getppid). The driver dies with the controller, like the nodes.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
                if nix::unistd::getppid() != controller {
                    return Err(std::io::Error::other("the controller exited"));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env(crate::process::RUN_ENV, run_id)
            .env(
                crate::process::CONTROLLER_ENV,
                std::process::id().to_string(),
            )
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the client driver {program:?}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| "the client driver has no stdout".to_string())?;
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let readers = pending.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            // A line that is too long, or not UTF-8, is skipped with a warning; only the end
            // of the driver's output (or a read error) ends the reader.
            loop {
                buf.clear();
                let n = match (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut buf)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if n == MAX_LINE && buf.last() != Some(&b'\n') {
                    tracing::warn!(
                        "the client driver wrote a line longer than {MAX_LINE} bytes; skipped"
                    );
                    let mut rest = Vec::new();
                    loop {
                        rest.clear();
                        match (&mut reader)
                            .take(MAX_LINE as u64)
                            .read_until(b'\n', &mut rest)
                            .await
                        {
                            Ok(0) | Err(_) => break,
                            Ok(_) if rest.last() == Some(&b'\n') => break,
                            Ok(_) => {}
                        }
                    }
                    continue;
                }
                let line = String::from_utf8_lossy(&buf);
                let Ok(answer) = serde_json::from_str::<Value>(&line) else {
                    tracing::warn!(line = %faultline_line(&line), "the client driver wrote something that is not a JSON answer");
                    continue;
                };
                let Some(id) = answer.get("id").and_then(Value::as_u64) else {
                    tracing::warn!("the client driver answered without an id");
                    continue;
                };
                let waiter = readers.lock().ok().and_then(|mut p| p.remove(&id));
                if let Some(tx) = waiter {
                    let _ = tx.send(answer);
                }
            }
            // The driver is gone: waiters see their channel close.
            if let Ok(mut p) = readers.lock() {
                p.clear();
            }
        });
        Ok(ExecClient {
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            nodes,
            child: Arc::new(Mutex::new(Some(child))),
            status_support: Arc::new(AtomicU8::new(STATUS_UNKNOWN)),
            status_silences: Arc::new(AtomicU64::new(0)),
        })
    }

    /// One read, write or cas (or `read-local`) on `node`.
    pub async fn simple(
        &self,
        node: &str,
        key: &str,
        f: &str,
        value: Value,
        deadline: Instant,
    ) -> Completion {
        let done = |outcome| Completion {
            outcome,
            node: node.to_string(),
        };
        let Some(spec) = self.nodes.iter().find(|n| n.name == node) else {
            return done(Outcome::Fail(format!("unknown node {node}")));
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        // Forgets the request however this future ends, also when the caller drops it (its
        // own timeout): an answer that never comes must not stay in `pending` for good.
        let _forget = Forget {
            pending: &self.pending,
            id,
        };
        let request = json!({
            "id": id, "f": f, "key": key, "value": value,
            "node": node, "addr": spec.client_addr.to_string(),
        });
        let mut line = request.to_string();
        line.push('\n');
        // Bounded by the deadline: a driver that stops reading its stdin must not hang the
        // workers once the pipe is full.
        let write = async {
            let mut stdin = self.stdin.lock().await;
            match stdin.as_mut() {
                Some(s) => s.write_all(line.as_bytes()).await.is_ok() && s.flush().await.is_ok(),
                None => false,
            }
        };
        match tokio::time::timeout_at(deadline.into(), write).await {
            Ok(true) => {}
            Ok(false) => {
                return done(Outcome::Fail(
                    "the client driver is not running".to_string(),
                ));
            }
            Err(_) => {
                // Part of the request may have reached the driver.
                return done(Outcome::Info(
                    "timed out writing the request to the client driver".to_string(),
                ));
            }
        }
        let answer = match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => return done(Outcome::Info("the client driver died".to_string())),
            Err(_) => return done(Outcome::Info("timeout".to_string())),
        };
        let error = answer
            .get("error")
            .map(|e| {
                e.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            })
            .unwrap_or_default();
        // A driver that followed a redirect may say which node answered.
        let answered_by = answer
            .get("node")
            .and_then(Value::as_str)
            .and_then(|n| self.nodes.iter().find(|s| s.name == n))
            .map(|s| s.name.clone());
        let outcome = match answer.get("type").and_then(Value::as_str) {
            Some("ok") => Outcome::Ok(answer.get("value").cloned().unwrap_or(Value::Null)),
            Some("fail") => Outcome::Fail(if error.is_empty() {
                "fail".into()
            } else {
                error
            }),
            Some("info") => Outcome::Info(if error.is_empty() {
                "info".into()
            } else {
                error
            }),
            other => Outcome::Info(format!(
                "the client driver answered with type {other:?}, not ok, fail or info"
            )),
        };
        Completion {
            outcome,
            node: answered_by.unwrap_or_else(|| node.to_string()),
        }
    }

    /// `node`'s state fingerprint through the driver's optional `fingerprint` request (see
    /// `docs/exec-protocol.md`): an object with `position` and `fingerprint`, or `None` (a
    /// driver without it answers `unsupported`).
    pub async fn fingerprint(&self, node: &str, timeout: Duration) -> Option<Value> {
        let done = self
            .simple(
                node,
                "",
                "fingerprint",
                Value::Null,
                Instant::now() + timeout,
            )
            .await;
        match done.outcome {
            Outcome::Ok(v) if v.is_object() => Some(v),
            _ => None,
        }
    }

    /// `node`'s role, term and leader through the driver's optional `status` request (see
    /// `docs/exec-protocol.md`). A driver that answers `unsupported` is not asked again, nor
    /// one that has let [`STATUS_PATIENCE`] requests go unanswered without ever answering one.
    pub async fn status(&self, node: &str, timeout: Duration) -> Option<RoleReport> {
        if self.status_support.load(Ordering::Relaxed) == STATUS_NO {
            return None;
        }
        let done = self
            .simple(node, "", "status", Value::Null, Instant::now() + timeout)
            .await;
        match done.outcome {
            Outcome::Ok(v) => {
                self.status_support.store(STATUS_YES, Ordering::Relaxed);
                crate::role::from_status_json(&v, &self.nodes)
            }
            // The protocol's way of saying "this driver cannot": never asked again.
            Outcome::Fail(e) if e == "unsupported" => {
                self.status_support.store(STATUS_NO, Ordering::Relaxed);
                None
            }
            // An answer, even a failure (the node is down), shows the driver knows `status`.
            Outcome::Fail(_) => None,
            Outcome::Info(e) => {
                if e == "timeout"
                    && self.status_support.load(Ordering::Relaxed) == STATUS_UNKNOWN
                    && self.status_silences.fetch_add(1, Ordering::Relaxed) + 1 >= STATUS_PATIENCE
                {
                    self.status_support.store(STATUS_NO, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// Performs a workload operation (`Op`) through the driver.
    pub async fn execute_op(
        &self,
        node: &str,
        key: &str,
        op: &Op,
        deadline: Instant,
    ) -> Completion {
        let (f, value) = match op {
            Op::Read | Op::ReadSet => ("read", Value::Null),
            Op::Write(v) => ("write", v.clone()),
            Op::Cas { from, to } => ("cas", json!([from, to])),
            Op::Add(_) => {
                return Completion {
                    outcome: Outcome::Fail("add is done with read and cas".to_string()),
                    node: node.to_string(),
                }
            }
        };
        let mut c = self.simple(node, key, f, value, deadline).await;
        // A write or cas that took effect reports its input, as in the history.
        if let Outcome::Ok(_) = &c.outcome {
            if !matches!(op, Op::Read | Op::ReadSet) {
                c.outcome = Outcome::Ok(op.input());
            }
        }
        c
    }

    /// Stops the driver.
    pub fn stop(&self) {
        if let Ok(mut c) = self.child.lock() {
            if let Some(mut child) = c.take() {
                // The whole group: a wrapper script's children go too.
                if let Some(pid) = child.id() {
                    let _ = crate::process::kill_group(pid as i32);
                }
                let _ = child.start_kill();
            }
        }
    }
}

fn faultline_line(line: &str) -> String {
    crate::sanitize(line, 200)
}

/// Removes a request from the pending table when dropped (see [`ExecClient::simple`]).
struct Forget<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&self.id);
        }
    }
}
