//! The `http-kv` client API (specified in `docs/http-kv.md`): request parsing and the mapping
//! from a replica's answer to a status code and a JSON body.
//!
//! The status code alone tells a client whether a request took effect: 2xx yes; 4xx and 503
//! definitely not (409 = a compare-and-set that executed but did not match, which changes
//! nothing); 500 and 504 unknown. Every error body repeats this as `"outcome"`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::events::{ClientReply, Event};
use crate::kv::NULL;
use crate::replica::{Request, Response as Answer};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Longest key accepted, in bytes (after percent-decoding).
pub const MAX_KEY: usize = 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct Api {
    pub events: mpsc::UnboundedSender<Event>,
    pub timeout: Duration,
}

/// Builds the router.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/kv/{key}", get(get_kv).put(put_kv))
        .route("/kv/{key}/cas", post(cas_kv))
        .route("/status", get(status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Whether a failed request is known not to have taken effect.
#[derive(Clone, Copy)]
enum Outcome {
    NotExecuted,
    Unknown,
}

fn error(
    status: StatusCode,
    code: &str,
    outcome: Outcome,
    message: String,
    extra: Map<String, Value>,
) -> Response {
    let mut body = Map::new();
    body.insert("error".into(), Value::String(code.into()));
    body.insert("message".into(), Value::String(message));
    body.insert(
        "outcome".into(),
        Value::String(
            match outcome {
                Outcome::NotExecuted => "not-executed",
                Outcome::Unknown => "unknown",
            }
            .into(),
        ),
    );
    body.extend(extra);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Value::Object(body).to_string(),
    )
        .into_response()
}

fn bad_request(message: String) -> Box<Response> {
    Box::new(error(
        StatusCode::BAD_REQUEST,
        "bad-request",
        Outcome::NotExecuted,
        message,
        Map::new(),
    ))
}

/// A 200 whose body is `{"value": V}` with `V` already canonical JSON text.
fn value_response(v: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"value\":{v}}}"),
    )
        .into_response()
}

/// Canonical JSON text of a value: object keys sorted, no insignificant whitespace. Two values
/// are equal for compare-and-set exactly when their canonical texts are equal.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    write_canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn key_of(path: Result<Path<String>, PathRejection>) -> Result<String, Box<Response>> {
    let Path(key) =
        path.map_err(|e| bad_request(format!("invalid key in the URL path: {}", e.body_text())))?;
    if key.is_empty() {
        return Err(bad_request("the key must not be empty".into()));
    }
    if key.len() > MAX_KEY {
        return Err(bad_request(format!(
            "key is {} bytes long; at most {MAX_KEY} are allowed",
            key.len()
        )));
    }
    Ok(key)
}

/// Parses a JSON object body that must have exactly the fields `fields`.
fn object_body(
    body: Result<Bytes, BytesRejection>,
    fields: &[&str],
) -> Result<Vec<Value>, Box<Response>> {
    let body = body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body-too-large"
        } else {
            "bad-request"
        };
        Box::new(error(
            status,
            code,
            Outcome::NotExecuted,
            format!("cannot read the request body: {}", e.body_text()),
            Map::new(),
        ))
    })?;
    let shape = fields
        .iter()
        .map(|f| format!("{f:?}: <any JSON>"))
        .collect::<Vec<_>>()
        .join(", ");
    let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "the body is not valid JSON ({e}); expected {{{shape}}}"
        ))
    })?;
    let Value::Object(mut m) = parsed else {
        return Err(bad_request(format!(
            "the body must be a JSON object {{{shape}}}"
        )));
    };
    let mut out = Vec::new();
    for f in fields {
        match m.remove(*f) {
            Some(v) => out.push(v),
            None => {
                return Err(bad_request(format!(
                    "the body has no {f:?} field; expected {{{shape}}}"
                )))
            }
        }
    }
    if let Some(extra) = m.keys().next() {
        return Err(bad_request(format!(
            "unexpected field {extra:?} in the body; expected {{{shape}}}"
        )));
    }
    Ok(out)
}

async fn submit(api: &Api, request: Request) -> Result<ClientReply, Box<Response>> {
    let (tx, rx) = oneshot::channel();
    if api
        .events
        .send(Event::Client { request, reply: tx })
        .is_err()
    {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            Outcome::NotExecuted,
            "the node is shutting down".into(),
            Map::new(),
        )));
    }
    // The Raft loop answers timeouts itself; this is only a safety net.
    match tokio::time::timeout(api.timeout + Duration::from_secs(1), rx).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            Outcome::Unknown,
            "the node stopped while handling the request".into(),
            Map::new(),
        ))),
        Err(_) => Ok(ClientReply::TimedOut),
    }
}

/// Maps a replica's answer (or a timeout) to HTTP. `written` is the value a successful write
/// leaves (echoed back).
fn answer(reply: ClientReply, written: Option<&str>) -> Response {
    match reply {
        ClientReply::Done(Answer::Value(v), _) => value_response(&v),
        ClientReply::Done(Answer::Written | Answer::CasOk, _) => value_response(written.unwrap_or(NULL)),
        ClientReply::Done(Answer::CasMismatch { current }, _) => {
            let mut extra = Map::new();
            extra.insert("current".into(), serde_json::from_str(&current).unwrap_or(Value::Null));
            error(
                StatusCode::CONFLICT,
                "cas-mismatch",
                Outcome::NotExecuted,
                "the current value is not the expected one; nothing was changed".into(),
                extra,
            )
        }
        ClientReply::Done(Answer::NotLeader { leader }, leader_addr) => {
            let mut extra = Map::new();
            extra.insert("leader".into(), leader.map_or(Value::Null, Value::from));
            extra.insert("leader_addr".into(), leader_addr.map_or(Value::Null, Value::String));
            let message = match leader {
                Some(l) => format!("this node is not the leader; node {l} is"),
                None => "this node is not the leader and knows of no leader right now; retry shortly".into(),
            };
            error(StatusCode::SERVICE_UNAVAILABLE, "not-leader", Outcome::NotExecuted, message, extra)
        }
        ClientReply::Done(Answer::Dropped, _) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "superseded",
            Outcome::NotExecuted,
            "leadership changed and another entry took this write's place in the log; it will never take effect".into(),
            Map::new(),
        ),
        ClientReply::Done(Answer::Unknown, _) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "indeterminate",
            Outcome::Unknown,
            "this node installed a snapshot covering the write and cannot tell whether it took effect".into(),
            Map::new(),
        ),
        ClientReply::TimedOut => error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            Outcome::Unknown,
            "no answer in time; the request may or may not take effect".into(),
            Map::new(),
        ),
    }
}

async fn get_kv(
    State(api): State<Api>,
    uri: axum::http::Uri,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let key = match key_of(path) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    if wants_local(&uri) {
        return local_read(&api, key).await;
    }
    match submit(&api, Request::Get { key }).await {
        Ok(reply) => answer(reply, None),
        Err(r) => *r,
    }
}

async fn put_kv(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = match key_of(path) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let value = match object_body(body, &["value"]) {
        Ok(v) => canonical(&v[0]),
        Err(r) => return *r,
    };
    match submit(
        &api,
        Request::Put {
            key,
            value: value.clone(),
        },
    )
    .await
    {
        Ok(reply) => answer(reply, Some(&value)),
        Err(r) => *r,
    }
}

async fn cas_kv(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = match key_of(path) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let (from, to) = match object_body(body, &["from", "to"]) {
        Ok(v) => (canonical(&v[0]), canonical(&v[1])),
        Err(r) => return *r,
    };
    match submit(
        &api,
        Request::Cas {
            key,
            from,
            to: to.clone(),
        },
    )
    .await
    {
        Ok(reply) => answer(reply, Some(&to)),
        Err(r) => *r,
    }
}

/// `?local=true`: the caller asks for this node's own applied state.
fn wants_local(uri: &axum::http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "local=true" || kv == "local=1"))
}

/// A read of this node's applied state, with no leadership check: any node answers, and the
/// answer may be stale. Meant for comparing replicas after a test, not for clients that want
/// linearizable reads.
async fn local_read(api: &Api, key: String) -> Response {
    let (tx, rx) = oneshot::channel();
    if api
        .events
        .send(Event::LocalRead { key, reply: tx })
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            Outcome::NotExecuted,
            "the node is shutting down".into(),
            Map::new(),
        );
    }
    match tokio::time::timeout(api.timeout, rx).await {
        Ok(Ok(v)) => value_response(&v),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Outcome::NotExecuted,
            "the node did not answer in time".into(),
            Map::new(),
        ),
    }
}

async fn status(State(api): State<Api>) -> Response {
    let (tx, rx) = oneshot::channel();
    if api.events.send(Event::Status(tx)).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            Outcome::NotExecuted,
            "the node is shutting down".into(),
            Map::new(),
        );
    }
    match tokio::time::timeout(api.timeout, rx).await {
        Ok(Ok(s)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!(s).to_string(),
        )
            .into_response(),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Outcome::NotExecuted,
            "the node did not report its status in time".into(),
            Map::new(),
        ),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not-found",
        Outcome::NotExecuted,
        format!(
            "no such route {:?}; routes are GET/PUT /kv/{{key}}, POST /kv/{{key}}/cas, GET /status",
            uri.path()
        ),
        Map::new(),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        Outcome::NotExecuted,
        format!("{} is not allowed on {:?}", method, uri.path()),
        Map::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let a: Value = serde_json::from_str(r#"{ "b": [1, {"y":2,"x":1}], "a": "s\"q" }"#).unwrap();
        assert_eq!(canonical(&a), r#"{"a":"s\"q","b":[1,{"x":1,"y":2}]}"#);
        assert_eq!(canonical(&Value::Null), NULL);
    }

    /// Pins what `docs/http-kv.md` says about numbers: integers that fit in 64 bits stay
    /// integers; every other number (fractions, exponents, integers beyond 64 bits) becomes a
    /// 64-bit float in its shortest round-trip spelling; numbers beyond the float range are not
    /// JSON values this server accepts.
    #[test]
    fn numbers_are_integers_within_64_bits_and_floats_otherwise() {
        let canon = |text: &str| canonical(&serde_json::from_str::<Value>(text).unwrap());
        for (given, stored) in [
            ("1", "1"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("18446744073709551615", "18446744073709551615"),
            ("1.0", "1.0"),
            ("1.50", "1.5"),
            ("1e2", "100.0"),
            ("18446744073709551616", "1.8446744073709552e+19"),
            ("123456789012345678901234567890", "1.2345678901234568e+29"),
        ] {
            assert_eq!(canon(given), stored, "{given}");
        }
        assert_ne!(canon("1"), canon("1.0"));
        assert!(serde_json::from_str::<Value>("1e400").is_err());
    }
}
