//! A small blocking http-kv client (used by the benchmark and by the process tests). One
//! [`Client`] keeps its connections alive; it is cheap to clone.

use std::time::Duration;

use serde_json::Value;

/// An http-kv answer: the status code and the parsed JSON body (`Null` if the body was not
/// JSON).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The `"value"` of a successful answer.
    pub fn value(&self) -> Option<&Value> {
        (self.status == 200)
            .then(|| self.body.get("value"))
            .flatten()
    }

    /// For a 503 not-leader answer, the leader's client address if the node knows it.
    pub fn leader_addr(&self) -> Option<&str> {
        if self.status != 503 {
            return None;
        }
        self.body.get("leader_addr").and_then(Value::as_str)
    }
}

/// Percent-encodes a key for use as one URL path segment.
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

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new(timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections_per_host(64)
            .build()
            .into();
        Client { agent }
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply, String> {
        let mut r = r.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    /// `GET http://addr/path`.
    pub fn get(&self, addr: &str, path: &str) -> Result<Reply, String> {
        Client::finish(self.agent.get(format!("http://{addr}{path}")).call())
    }

    /// `PUT`/`POST` with a JSON (or deliberately not JSON) body.
    pub fn send(&self, method: &str, addr: &str, path: &str, body: &str) -> Result<Reply, String> {
        let url = format!("http://{addr}{path}");
        let req = match method {
            "PUT" => self.agent.put(url),
            "POST" => self.agent.post(url),
            other => return Err(format!("unsupported method {other}")),
        };
        Client::finish(req.header("content-type", "application/json").send(body))
    }

    pub fn kv_get(&self, addr: &str, key: &str) -> Result<Reply, String> {
        self.get(addr, &format!("/kv/{}", encode_key(key)))
    }

    pub fn kv_put(&self, addr: &str, key: &str, value: &Value) -> Result<Reply, String> {
        let body = serde_json::json!({ "value": value }).to_string();
        self.send("PUT", addr, &format!("/kv/{}", encode_key(key)), &body)
    }

    pub fn kv_cas(&self, addr: &str, key: &str, from: &Value, to: &Value) -> Result<Reply, String> {
        let body = serde_json::json!({ "from": from, "to": to }).to_string();
        self.send("POST", addr, &format!("/kv/{}/cas", encode_key(key)), &body)
    }

    pub fn status(&self, addr: &str) -> Result<Reply, String> {
        self.get(addr, "/status")
    }

    /// Raw `POST` of a JSON body, for other systems' APIs (the etcd benchmark).
    pub fn post_json(&self, url: &str, body: &str) -> Result<Reply, String> {
        Client::finish(
            self.agent
                .post(url)
                .header("content-type", "application/json")
                .send(body),
        )
    }
}
