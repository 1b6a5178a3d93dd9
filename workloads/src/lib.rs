//! # faultline-workloads
//!
//! What clients do during a test. A workload is a seeded generator of operations plus the
//! checker that judges the history they produce. It knows nothing about the system under test:
//! the controller turns each [`Request`] into a call on the target's client.
//!
//! * [`register`]: reads, writes and compare-and-sets over many keys with unique write values,
//!   each key retired after a bounded number of operations (Jepsen's independent-key trick), so
//!   each key's history stays small and the linearizability check stays fast.
//! * [`set`]: unique adds to a set and reads of the whole set, judged element by element.

use std::fmt;
use std::str::FromStr;

use faultline_checker::ModelSpec;
use serde_json::Value;

pub mod register;
pub mod set;

/// The seeded random generator every workload draws from (ChaCha8: the same stream on every
/// platform and release, so a seed repeats a run).
pub type Rng = rand_chacha::ChaCha8Rng;

/// What a client is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub op: Op,
    /// The key acted on.
    pub key: String,
}

/// The operations a target's client must implement.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Linearizable read of a key; the result is its value (`null` if unset).
    Read,
    Write(Value),
    /// Set the key to `to` if it holds `from`.
    Cas {
        from: Value,
        to: Value,
    },
    /// Add an element to the set stored at the key (the client implements it with a
    /// read and a compare-and-set, retried until it succeeds or times out).
    Add(Value),
    /// Read the whole set stored at the key.
    ReadSet,
}

impl Op {
    /// The `f` recorded in the history.
    pub fn f(&self) -> &'static str {
        match self {
            Op::Read | Op::ReadSet => "read",
            Op::Write(_) => "write",
            Op::Cas { .. } => "cas",
            Op::Add(_) => "add",
        }
    }

    /// The `value` recorded at invocation.
    pub fn input(&self) -> Value {
        match self {
            Op::Read | Op::ReadSet => Value::Null,
            Op::Write(v) | Op::Add(v) => v.clone(),
            Op::Cas { from, to } => Value::Array(vec![from.clone(), to.clone()]),
        }
    }
}

/// How a workload's history is judged.
#[derive(Clone, Debug, PartialEq)]
pub enum Checker {
    /// Linearizability against a model, key by key.
    Linearizable(ModelSpec),
    /// The set checker (`faultline_checker::set_full`).
    Set,
}

/// A workload: a seeded stream of requests.
pub trait Workload: Send {
    /// The next request.
    fn next(&mut self, rng: &mut Rng) -> Request;
    /// The checker for the resulting history.
    fn checker(&self) -> Checker;
    /// Requests to run after the faults have stopped and the cluster has recovered, so every
    /// key ends with a read that sees its final state.
    fn final_reads(&self) -> Vec<Request>;
}

/// The workloads, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    Register,
    Set,
}

impl WorkloadKind {
    pub const NAMES: &'static [&'static str] = &["register", "set"];

    /// A fresh workload of this kind.
    pub fn build(self, concurrency: usize) -> Box<dyn Workload> {
        match self {
            WorkloadKind::Register => Box::new(register::RegisterWorkload::new(concurrency)),
            WorkloadKind::Set => Box::new(set::SetWorkload::new()),
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Set => "set",
        })
    }
}

impl FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" => Ok(WorkloadKind::Register),
            "set" => Ok(WorkloadKind::Set),
            other => Err(format!(
                "unknown workload {other:?}; the workloads are: {}",
                WorkloadKind::NAMES.join(", ")
            )),
        }
    }
}
