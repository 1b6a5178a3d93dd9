//! The bundled Raft key-value store (`faultline node`): a real, durable Raft cluster with
//! switchable bugs, used as faultline's reference system under test and as the reference
//! implementation of the `http-kv` protocol (`docs/http-kv.md`).
//!
//! Layers, from the inside out:
//! - [`core`]: the deterministic Raft state machine (no I/O, no clock, no threads);
//! - [`kv`]: the replicated key-value state machine;
//! - [`replica`]: core + state machine + client-request bookkeeping + the switchable [`bugs`],
//!   still deterministic, so the [`sim`]ulation tests exactly what answers clients;
//! - [`storage`]: write-ahead log and snapshots on disk;
//! - [`transport`], [`events`], [`http`], [`node`]: the process — TCP links to peers, the
//!   inbox of the Raft loop, the HTTP API, and the tokio event loop that turns real time into
//!   ticks.

pub mod bench;
pub mod bugs;
pub mod client;
pub mod codec;
pub mod core;
pub mod events;
pub mod http;
pub mod kv;
pub mod node;
pub mod replica;
pub mod sim;
pub mod storage;
pub mod transport;

pub use node::{run, NodeArgs};

/// The version this build reports (`faultline --version`). A `next-release` build (cargo
/// feature) is the "next version" of the bundled Raft that rolling-upgrade tests move a
/// cluster to: it also reads the next command format (see [`kv::Command::encode_next`]) and
/// has the `eager-new-format` upgrade bug.
#[cfg(not(feature = "next-release"))]
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "next-release")]
pub const BUILD_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+next");
