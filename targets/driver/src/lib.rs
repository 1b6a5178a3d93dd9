//! # faultline-targets
//!
//! How faultline starts, stops and talks to each system under test. A target says how to
//! launch node *i* and how a client performs a workload's operations against it; everything
//! else (when to start, kill or pause a node, what to record) is the harness's business.
//!
//! * [`process`]: running node processes so that they can never outlive the controller.
//! * [`httpkv`]: the `http-kv` client protocol (`docs/http-kv.md`), spoken by the bundled Raft
//!   and by custom targets.
//! * [`raft`]: the bundled Raft key-value store (`faultline node`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

pub mod httpkv;
pub mod process;
pub mod raft;

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
