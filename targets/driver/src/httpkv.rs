//! The `http-kv` client (`docs/http-kv.md`): how faultline performs a workload's operations on
//! a node that speaks it (the bundled Raft, and custom targets).
//!
//! The protocol's status code says whether a request took effect: 2xx yes; 409 (a cas that
//! found another value) and other 4xx and 503 definitely not; 500 and 504 unknown. Transport
//! failures are classified the same way: a connection that could not be made means the
//! request was never sent (definitely not executed); a timeout or a connection lost after
//! sending means unknown. A node that is not the leader answers 503 with the leader's address,
//! and the client repeats the request there (safe: the first attempt definitely did nothing).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultline_workloads::{Op, Request};
use serde_json::{json, Value};

use crate::{Completion, NodeSpec, Outcome};

/// How many not-leader redirects one operation follows.
const MAX_REDIRECTS: usize = 3;

/// An http-kv client, shared by all workers (it pools connections).
#[derive(Clone)]
pub struct HttpKvClient {
    http: reqwest::Client,
    nodes: Vec<NodeSpec>,
}

/// One answer from a node.
enum Answer {
    /// The node answered with this status; the body, if it arrived whole and is JSON.
    Status(u16, Option<Value>),
    /// The request never reached the node.
    NotSent(String),
    /// The request may have reached the node; no answer.
    Lost(String),
}

impl HttpKvClient {
    pub fn new(nodes: Vec<NodeSpec>) -> Result<HttpKvClient, String> {
        // Never through an HTTP proxy from the environment: a proxy's own errors (502 for a
        // node that died mid-request) would read as the node's definite answers.
        // Nor through HTTP redirects: http-kv redirects with 503 and `leader_addr`, and a status
        // request that followed a redirect would report another node's role as this one's.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(HttpKvClient { http, nodes })
    }

    /// The nodes this client knows.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// Performs `request` on `node` (following redirects to the leader), giving up at
    /// `deadline`.
    pub async fn execute(&self, node: &str, request: &Request, deadline: Instant) -> Completion {
        let key = request.key.as_str();
        let simple = |n: String, op: Op| async move { self.simple(&n, key, &op, deadline).await };
        crate::execute_via(simple, node, request, deadline).await
    }

    /// A single read, write or cas.
    pub async fn simple(&self, node: &str, key: &str, op: &Op, deadline: Instant) -> Completion {
        let mut target = node.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let Some(addr) = self.addr_of(&target) else {
                return Completion {
                    outcome: Outcome::Fail(format!("unknown node {target}")),
                    node: target,
                };
            };
            let answer = self.send(addr, key, op, deadline).await;
            let is_read = matches!(op, Op::Read | Op::ReadSet);
            let outcome = match answer {
                // Any 2xx took effect. A read's value must be in the body: a read whose answer
                // did not arrive whole changed nothing, so it fails rather than inventing null.
                Answer::Status(code @ 200..=299, body) if is_read => {
                    match body.as_ref().and_then(|b| b.get("value")) {
                        Some(v) => Outcome::Ok(v.clone()),
                        None => Outcome::Fail(format!("{code} without a readable value")),
                    }
                }
                Answer::Status(200..=299, _) => Outcome::Ok(op.input()),
                Answer::Status(503, Some(body)) if error_code(&body) == Some("not-leader") => {
                    match self.node_at(body.get("leader_addr").and_then(Value::as_str)) {
                        Some(leader) if leader != target => {
                            target = leader;
                            continue;
                        }
                        _ => Outcome::Fail("not-leader".to_string()),
                    }
                }
                Answer::Status(409, _) => Outcome::Fail("cas-mismatch".to_string()),
                Answer::Status(code, Some(body)) => classify(code, &body),
                // Only the body can say an error changed nothing; without it a write's
                // outcome is unknown.
                Answer::Status(code, None) if is_read => {
                    Outcome::Fail(format!("{code} with an unreadable body"))
                }
                Answer::Status(code, None) => {
                    Outcome::Info(format!("{code} with an unreadable body"))
                }
                Answer::NotSent(e) => Outcome::Fail(e),
                Answer::Lost(e) => Outcome::Info(e),
            };
            return Completion {
                outcome,
                node: target,
            };
        }
        Completion {
            outcome: Outcome::Fail("too many not-leader redirects".to_string()),
            node: target,
        }
    }

    async fn send(&self, addr: SocketAddr, key: &str, op: &Op, deadline: Instant) -> Answer {
        let Some(timeout) = deadline.checked_duration_since(Instant::now()) else {
            return Answer::NotSent("timed out before sending".to_string());
        };
        let url = format!("http://{addr}/kv/{}", encode_key(key));
        let builder = match op {
            Op::Read | Op::ReadSet => self.http.get(url),
            Op::Write(v) => self.http.put(url).json(&json!({ "value": v })),
            Op::Cas { from, to } => self
                .http
                .post(format!("{url}/cas"))
                .json(&json!({ "from": from, "to": to })),
            Op::Add(_) => return Answer::NotSent("add is not an http-kv request".to_string()),
        };
        match builder.timeout(timeout).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(body) => Answer::Status(status, serde_json::from_slice(&body).ok()),
                    // The status line arrived, so the status is the answer; the body is lost.
                    Err(_) => Answer::Status(status, None),
                }
            }
            Err(e) if e.is_connect() => Answer::NotSent(format!("connection refused ({addr})")),
            Err(e) if e.is_timeout() => Answer::Lost("timeout".to_string()),
            Err(e) => Answer::Lost(format!("connection lost: {}", short_error(&e))),
        }
    }

    fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.client_addr)
    }

    fn node_at(&self, addr: Option<&str>) -> Option<String> {
        let addr = addr?;
        self.nodes
            .iter()
            .find(|n| n.client_addr.to_string() == addr)
            .map(|n| n.name.clone())
    }

    /// `GET /kv/{key}?local=true` on exactly `node`: its own applied state. `Ok(None)` when the
    /// server does not support local reads (400), so the comparison is skipped.
    pub async fn local_read(&self, node: &str, key: &str) -> Result<Option<Value>, String> {
        let addr = self
            .addr_of(node)
            .ok_or_else(|| format!("unknown node {node}"))?;
        let resp = self
            .http
            .get(format!("http://{addr}/kv/{}?local=true", encode_key(key)))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| format!("{node} did not answer: {}", short_error(&e)))?;
        match resp.status().as_u16() {
            200 => {
                let body: Value = resp
                    .json()
                    .await
                    .map_err(|e| format!("{node} answered with a body that is not JSON: {e}"))?;
                Ok(Some(body.get("value").cloned().unwrap_or(Value::Null)))
            }
            400 => Ok(None),
            code => Err(format!("{node} answered {code} to a local read")),
        }
    }

    /// GET /status of a node, if it answers within `timeout`.
    pub async fn status(&self, node: &NodeSpec, timeout: Duration) -> Option<Value> {
        self.get_json(node, "/status", timeout).await
    }

    /// `GET <path>` on a node's client address: its JSON body, if it answers 2xx in time.
    pub async fn get_json(&self, node: &NodeSpec, path: &str, timeout: Duration) -> Option<Value> {
        let resp = self
            .http
            .get(format!("http://{}{path}", node.client_addr))
            .timeout(timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Whether `GET <path>` on a node's client address answers 2xx in time.
    pub async fn get_ok(&self, node: &NodeSpec, path: &str, timeout: Duration) -> bool {
        self.http
            .get(format!("http://{}{path}", node.client_addr))
            .timeout(timeout)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

fn error_code(body: &Value) -> Option<&str> {
    body.get("error").and_then(Value::as_str)
}

/// Any other error status with a JSON body: 500/504 or a body saying so is unknown, the rest
/// definitely not executed.
fn classify(code: u16, body: &Value) -> Outcome {
    let reason = error_code(body).unwrap_or("error").to_string();
    match code {
        500 | 504 => Outcome::Info(reason),
        _ if body.get("outcome").and_then(Value::as_str) == Some("unknown") => {
            Outcome::Info(reason)
        }
        _ => Outcome::Fail(format!("{code} {reason}")),
    }
}

fn short_error(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// Percent-encodes a key as one URL path segment.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_outcomes() {
        assert_eq!(
            classify(500, &json!({"error": "x"})),
            Outcome::Info("x".into())
        );
        assert_eq!(classify(504, &Value::Null), Outcome::Info("error".into()));
        assert_eq!(
            classify(400, &json!({"error": "bad-request"})),
            Outcome::Fail("400 bad-request".into())
        );
        assert_eq!(
            classify(503, &json!({"error": "unavailable", "outcome": "unknown"})),
            Outcome::Info("unavailable".into())
        );
    }

    /// A node that answers every request with `raw` (a whole HTTP response, possibly cut
    /// short) and closes the connection.
    async fn node_answering(raw: &'static str) -> HttpKvClient {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(raw.as_bytes()).await;
            }
        });
        let node = NodeSpec {
            name: "n1".into(),
            id: 1,
            client_addr: addr,
            peer_addr: addr,
            data_dir: std::env::temp_dir(),
            log_path: std::env::temp_dir().join("n1.log"),
        };
        HttpKvClient::new(vec![node]).expect("client")
    }

    async fn outcome(raw: &'static str, op: Op) -> Outcome {
        let client = node_answering(raw).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        client.simple("n1", "k", &op, deadline).await.outcome
    }

    #[tokio::test]
    async fn answers_become_outcomes_without_inventing_values() {
        let json = |s: &str| serde_json::from_str::<Value>(s).expect("json");
        // Any 2xx to a write took effect, whatever its body.
        assert_eq!(
            outcome("HTTP/1.1 204 No Content\r\n\r\n", Op::Write(json("7"))).await,
            Outcome::Ok(json("7"))
        );
        // A read's value comes from the body, or the read fails: never a made-up null.
        assert_eq!(
            outcome(
                "HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"value\": 5}\n",
                Op::Read
            )
            .await,
            Outcome::Ok(json("5"))
        );
        assert!(matches!(
            outcome(
                "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nnot json",
                Op::Read
            )
            .await,
            Outcome::Fail(_)
        ));
        // An error whose body was cut short cannot say the write did nothing.
        assert!(matches!(
            outcome(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\n\r\n{\"err",
                Op::Write(json("8"))
            )
            .await,
            Outcome::Info(_)
        ));
        // With the body saying so, it is a definite refusal.
        assert_eq!(
            outcome(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 23\r\n\r\n{\"error\":\"bad-request\"}",
                Op::Write(json("9"))
            )
            .await,
            Outcome::Fail("400 bad-request".into())
        );
    }

    #[test]
    fn keys_are_one_path_segment() {
        assert_eq!(encode_key("r12"), "r12");
        assert_eq!(encode_key("a/b c"), "a%2Fb%20c");
    }
}
