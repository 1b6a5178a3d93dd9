//! # faultline-nemesis
//!
//! The faults faultline injects, and the seeded schedule that injects them. A nemesis acts on
//! a [`Cluster`] — whatever the harness says the nodes are — so it works the same against the
//! bundled Raft, etcd or a custom system, and never depends on how a target is started.
//!
//! Every fault has a start and an end, both recorded in the history (by the caller, through
//! the `record` callback) so a report can shade the window and a reader can tell which
//! operations ran under which fault.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod process;
pub mod schedule;

pub use schedule::{run, FaultRecord, Schedule};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the node's processes; restart them (same data directory) when the fault ends.
    Kill,
    /// SIGSTOP the node's processes; SIGCONT when the fault ends.
    Pause,
}

impl FaultKind {
    pub const NAMES: &'static [&'static str] = &["kill", "pause"];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kill" => Ok(FaultKind::Kill),
            "pause" => Ok(FaultKind::Pause),
            other => Err(format!(
                "unknown nemesis {other:?}; the nemeses are: {}",
                FaultKind::NAMES.join(", ")
            )),
        }
    }
}

/// Which nodes a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aim {
    /// One node, chosen at random.
    One,
    /// A random minority (at most (n-1)/2 nodes, at least one).
    Minority,
    /// A random majority (n/2 + 1 nodes).
    Majority,
    /// Every node.
    All,
    /// The node that currently claims to lead (falls back to a random node when none does).
    Leader,
}

impl Aim {
    pub const NAMES: &'static [&'static str] = &["one", "minority", "majority", "all", "leader"];
    pub const ALL: &'static [Aim] = &[
        Aim::One,
        Aim::Minority,
        Aim::Majority,
        Aim::All,
        Aim::Leader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Aim::One => "one",
            Aim::Minority => "minority",
            Aim::Majority => "majority",
            Aim::All => "all",
            Aim::Leader => "leader",
        }
    }
}

impl fmt::Display for Aim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Aim {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Aim::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown nemesis target {s:?}; the targets are: {}",
                    Aim::NAMES.join(", ")
                )
            })
    }
}

/// The cluster as a nemesis sees it. Implemented by the harness.
pub trait Cluster: Send + Sync {
    /// Node names, in a stable order.
    fn nodes(&self) -> Vec<String>;
    /// The node that currently claims to be the leader, if the target can tell.
    fn leader(&self) -> impl std::future::Future<Output = Option<String>> + Send;
    /// The process group of a running node (every process of the node is in it).
    fn process_group(&self, node: &str) -> Option<i32>;
    /// Tells the harness a node was killed on purpose (so it is not reported as a crash).
    fn killed(&self, node: &str);
    /// Starts a killed node again, with its data directory intact.
    fn restart(&self, node: &str) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// How faults are scheduled.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// Fault kinds to choose from (empty: no faults).
    pub faults: Vec<FaultKind>,
    /// Targets to choose from.
    pub aims: Vec<Aim>,
    /// Length of each fault, and of each quiet period between faults.
    pub interval: Duration,
    pub seed: u64,
}
