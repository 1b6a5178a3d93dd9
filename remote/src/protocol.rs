//! What the controller and a host's agent say to each other: one JSON object per line, requests
//! on the agent's stdin, replies (in request order) and exit events on its stdout.

use serde::{Deserialize, Serialize};

/// Environment variable marking every process a run starts on a host with the run's id. Not
/// `FAULTLINE_RUN`: a local `faultline clean` must never take a host's processes (the test
/// hosts share this machine's process table) for its own.
pub const REMOTE_RUN_ENV: &str = "FAULTLINE_REMOTE_RUN";
/// Environment variable naming the host (as the controller names it) a process belongs to.
pub const HOST_ENV: &str = "FAULTLINE_HOST";
/// Environment variable naming the node a process is (or supervises).
pub const NODE_ENV: &str = "FAULTLINE_NODE";

/// A request to the agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// What the host has: [`Hello`].
    Hello,
    /// The host's wall clock (ns since the epoch), for measuring its offset.
    Now,
    /// Starts a node under a supervisor (its own session and process group, the run's
    /// markers in its environment); replies with its pid (= its process group).
    Start {
        node: String,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        data_dir: String,
        log: String,
    },
    /// Sends `signal` to a process group of this run (refused for any other process).
    Signal { pgid: i32, signal: i32 },
    /// Applies an nftables script (one transaction).
    Nft { script: String },
    /// Writes a libfaketime control file: the offset in milliseconds.
    Clock { path: String, offset_ms: f64 },
    /// The last `bytes` bytes of a file (base64).
    Tail { path: String, bytes: u64 },
    /// Every file under `dir` with its size (for the run folder's data-directory listings).
    Listing { dir: String },
    /// Ends the run on this host: kills whatever of it still runs, deletes its nftables
    /// table and, unless `keep`, its files.
    Finish { keep: bool },
}

/// What a host has, as its agent found it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Hello {
    pub euid: u32,
    /// `uname -srm`-like text.
    pub kernel: String,
    /// The `nft` binary, if installed.
    pub nft: Option<String>,
    /// libfaketime's library, if installed.
    pub faketime: Option<String>,
    /// Whether /dev/fuse exists.
    pub fuse: bool,
    /// The host's IPv4 and IPv6 addresses (peers may connect from any of them).
    pub addresses: Vec<String>,
}

/// A line from the agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Message {
    /// The answer to the oldest request not yet answered.
    Reply(serde_json::Value),
    /// That request failed: why.
    Failed(String),
    /// A node process of the run exited (`status`: the raw wait status).
    Exit { pid: i32, status: i32 },
}

/// One file of a data-directory listing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListedFile {
    pub path: String,
    pub bytes: u64,
}

/// The nftables table of a run on a host: its own, so the host's rules are never touched.
pub fn nft_table(run_tag: &str) -> String {
    format!("faultline_{run_tag}")
}

/// The script that makes `table` drop what arrives at the host from `blocked` to or from the
/// nodes' `ports` (an empty list heals). Only the nodes' traffic: SSH, and whatever else the
/// hosts say to each other, still flows. Adding the table and chain first makes it work
/// whether or not they exist; the whole script is one transaction.
pub fn nft_partition_script(table: &str, blocked: &[String], ports: &[u16]) -> String {
    let mut script = format!(
        "add table inet {table}\n\
         add chain inet {table} input {{ type filter hook input priority filter - 10; policy accept; }}\n\
         flush chain inet {table} input\n"
    );
    let (v6, v4): (Vec<&String>, Vec<&String>) = blocked.iter().partition(|a| a.contains(':'));
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    for (family, list) in [("ip", v4), ("ip6", v6)] {
        if list.is_empty() || ports.is_empty() {
            continue;
        }
        let list: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
        // Connections to this host's node, and answers to the ones it makes.
        for direction in ["dport", "sport"] {
            script.push_str(&format!(
                "add rule inet {table} input {family} saddr {{ {} }} meta l4proto {{ tcp, udp }} \
                 th {direction} {{ {} }} drop\n",
                list.join(", "),
                ports.join(", ")
            ));
        }
    }
    script
}

/// The script that deletes `table` whether or not it exists (nft 1.0 has no `destroy`).
pub fn nft_delete_script(table: &str) -> String {
    format!("add table inet {table}\ndelete table inet {table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_scripts_are_one_table_of_our_own() {
        let s = nft_partition_script(
            "faultline_ab12",
            &["10.0.0.3".into(), "fd00::3".into()],
            &[7001, 7002],
        );
        assert!(s.contains(
            "add rule inet faultline_ab12 input ip saddr { 10.0.0.3 } meta l4proto { tcp, udp } \
             th dport { 7001, 7002 } drop"
        ));
        assert!(s.contains("ip saddr { 10.0.0.3 } meta l4proto { tcp, udp } th sport"));
        assert!(s.contains("ip6 saddr { fd00::3 }"));
        assert!(s.lines().all(|l| l.contains("inet faultline_ab12")));
        let heal = nft_partition_script("faultline_ab12", &[], &[7001, 7002]);
        assert!(heal.ends_with("flush chain inet faultline_ab12 input\n"));
        let json = serde_json::to_string(&Request::Signal { pgid: 7, signal: 9 }).unwrap();
        assert_eq!(json, r#"{"op":"signal","pgid":7,"signal":9}"#);
    }
}
