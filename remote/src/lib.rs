//! # faultline-remote
//!
//! Runs a test's nodes on other machines over SSH, the way Jepsen drives its database nodes:
//! the controller stays where it is (clients, history, checks), and each host gets a copy of
//! faultline that starts the node, signals it, applies partitions as nftables rules in a table
//! of the run's own, sets libfaketime clocks, and hands back logs at the end.
//!
//! * [`hosts`]: `--hosts` and the `[hosts]` table.
//! * [`protocol`]: what the controller and a host's agent say to each other.
//! * [`agent`]: the host's side (`faultline host ...`).
//! * [`fleet`]: the controller's side, over the system's `ssh` (one multiplexed connection per
//!   host, through the `openssh` crate).

pub mod agent;
pub mod fleet;
pub mod hosts;
pub mod protocol;

pub use fleet::{clean_hosts, Fleet, HostReport, Needs};
pub use hosts::{Host, HostsConfig, HostsSection, KnownHosts};
