//! The Raft loop's inbox: what the HTTP API and the storage thread send the loop of a
//! `faultline node` process, and what the loop answers. Its own module so that the HTTP layer
//! ([`crate::http`]) and the loop ([`crate::node`]) both depend on it, not on each other.

use serde::Serialize;
use tokio::sync::oneshot;

use crate::core::NodeId;
use crate::replica::{Request, Response};

/// What a client request's handler gets back.
#[derive(Debug)]
pub enum ClientReply {
    /// The replica's answer, with the leader's client address when it is `NotLeader` and known.
    Done(Response, Option<String>),
    TimedOut,
}

/// Inputs of the Raft loop.
pub enum Event {
    Client {
        request: Request,
        reply: oneshot::Sender<ClientReply>,
    },
    Status(oneshot::Sender<Status>),
    /// `GET /kv/{key}?local=true`: the value in this node's applied state.
    LocalRead {
        key: String,
        reply: oneshot::Sender<String>,
    },
    Persisted(Option<crate::core::PersistToken>),
    StorageFailed(String),
}

/// The body of `GET /status` (see `docs/http-kv.md`).
#[derive(Debug, Serialize)]
pub struct Status {
    pub id: NodeId,
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub leader_client_addr: Option<String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
    pub wall_clock_ms: u64,
    pub monotonic_ms: u64,
    pub read_mode: &'static str,
    pub bugs: Vec<&'static str>,
    pub snapshots_installed: u64,
    pub snapshots_taken: u64,
    pub state_digest: String,
    pub keys: usize,
    pub pending_requests: usize,
    pub client_addr: String,
    pub members: Vec<NodeId>,
}
