//! Real network partitions for processes on one machine: each node runs in its own network
//! namespace, and a partition is a set of nftables rules inside the nodes' namespaces.
//!
//! # Topology
//! ```text
//!   host namespace                 hub namespace              node namespaces
//!   fl<tag>  10.77.K.254 ──veth── host ─┐
//!                                       br0 ── n1 ──veth── eth0 10.77.K.1   (fl-<tag>-n1)
//!                                        └──── n2 ──veth── eth0 10.77.K.2   (fl-<tag>-n2) ...
//! ```
//! The bridge lives in a namespace of its own, so bridged traffic never crosses the host's
//! firewall, and the host gains exactly one interface (and its connected route) for the length
//! of the run. The controller talks to every node from the host side, and partitions never
//! drop traffic to or from the host address: clients are never cut off, as in Jepsen.
//!
//! # Partitions
//! A partition is a *grudge*: for each node, the nodes it cannot hear from. It is applied as
//! one nftables transaction per node namespace (table `inet faultline`, chain `input`: drop
//! packets from those nodes' addresses), and healed by flushing that chain. Nothing is ever
//! added to the host's own ruleset.
//!
//! # Naming and cleanup
//! Every name carries the run's tag (8 hex digits), and the tag's state file under
//! `/run/faultline/` records the controller's pid, so `faultline clean` can tell what belongs
//! to a dead run.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

/// Where state files of live runs' networks are kept.
pub const STATE_DIR: &str = "/run/faultline/net";
/// Prefix of every namespace faultline creates.
pub const NS_PREFIX: &str = "fl-";
/// Prefix of the host-side interface faultline creates.
pub const HOST_IF_PREFIX: &str = "fl";

/// For each node, the nodes it cannot hear from.
pub type Grudge = BTreeMap<String, Vec<String>>;

/// The namespaces, interfaces and addresses of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Network {
    pub tag: String,
    pub nodes: Vec<String>,
    hub: String,
    namespaces: Vec<String>,
    host_if: String,
    pub host_ip: Ipv4Addr,
    ips: Vec<Ipv4Addr>,
    prefix_len: u8,
}

/// Runs `ip ARGS` (or `nft`), failing with its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e} (is iproute2/nftables installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip ARGS`, tried up to three times; the last error if it never succeeded.
fn retried(args: &[&str]) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        match run("ip", args) {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::debug!(attempt, error = %e, "ip failed");
                last = e;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Err(last)
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Runs an nftables script inside namespace `ns`, as one transaction.
fn nft_in(ns: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft in {ns}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("cannot feed nft in {ns}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft in {ns}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process may create namespaces (root, or CAP_NET_ADMIN + CAP_SYS_ADMIN).
pub fn can_create() -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(
            "network namespaces and nftables need root (run faultline test as root), or \
             choose --net proxy, which needs no privileges"
                .to_string(),
        )
    }
}

impl Network {
    /// Creates the namespaces, bridge and addresses for `nodes`, in a /24 of `range` (a /16
    /// such as 10.77.0.0) that no route of the host uses yet.
    pub fn create(tag: &str, nodes: &[String], range: Ipv4Addr) -> Result<Network, String> {
        can_create()?;
        if nodes.len() > 250 {
            return Err("at most 250 nodes per network".to_string());
        }
        // Two runs at once (a campaign, parallel tests) must not both pick the same free /24:
        // the choice and the host address that claims it happen under one lock.
        let _claim = subnet_lock()?;
        let third = free_subnet(tag, range)?;
        let [a, b, _, _] = range.octets();
        let ip = |last: u8| Ipv4Addr::new(a, b, third, last);
        let net = Network {
            tag: tag.to_string(),
            nodes: nodes.to_vec(),
            hub: format!("{NS_PREFIX}{tag}-hub"),
            namespaces: nodes
                .iter()
                .map(|n| format!("{NS_PREFIX}{tag}-{n}"))
                .collect(),
            host_if: format!("{HOST_IF_PREFIX}{tag}"),
            host_ip: ip(254),
            ips: (0..nodes.len()).map(|i| ip(i as u8 + 1)).collect(),
            prefix_len: 24,
        };
        net.write_state()?;
        if let Err(e) = net.build() {
            net.destroy();
            return Err(e);
        }
        Ok(net)
    }

    fn build(&self) -> Result<(), String> {
        let hub = self.hub.as_str();
        run("ip", &["netns", "add", hub])?;
        for ns in &self.namespaces {
            run("ip", &["netns", "add", ns])?;
        }
        run("ip", &["-n", hub, "link", "set", "lo", "up"])?;
        run("ip", &["-n", hub, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", hub, "link", "set", "br0", "up"])?;
        // The host's way in.
        let host_if = self.host_if.as_str();
        run(
            "ip",
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", "host", "netns", hub,
            ],
        )?;
        let host_cidr = format!("{}/{}", self.host_ip, self.prefix_len);
        run("ip", &["addr", "add", &host_cidr, "dev", host_if])?;
        run("ip", &["link", "set", host_if, "up"])?;
        run("ip", &["-n", hub, "link", "set", "host", "master", "br0"])?;
        run("ip", &["-n", hub, "link", "set", "host", "up"])?;
        for (i, ns) in self.namespaces.iter().enumerate() {
            let port = format!("p{}", i + 1);
            run(
                "ip",
                &[
                    "-n", hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns,
                ],
            )?;
            run("ip", &["-n", hub, "link", "set", &port, "master", "br0"])?;
            run("ip", &["-n", hub, "link", "set", &port, "up"])?;
            let cidr = format!("{}/{}", self.ips[i], self.prefix_len);
            run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            nft_in(
                ns,
                "table inet faultline {\n  chain input {\n    type filter hook input priority 0; policy accept;\n  }\n}\n",
            )?;
        }
        Ok(())
    }

    /// The address of node `i` (0-based).
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.ips[i]
    }

    /// The namespace file node `i` runs in.
    pub fn netns_path(&self, i: usize) -> PathBuf {
        Path::new("/run/netns").join(&self.namespaces[i])
    }

    /// Applies a grudge: node `n` drops every packet from the nodes in `grudge[n]`; nodes not
    /// mentioned hear everyone. Replaces any partition in force.
    pub fn partition(&self, grudge: &Grudge) -> Result<(), String> {
        let mut errors = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let blocked: Vec<String> = grudge
                .get(node)
                .into_iter()
                .flatten()
                .filter_map(|other| self.nodes.iter().position(|n| n == other))
                .map(|j| self.ips[j].to_string())
                .collect();
            let mut script = String::from("flush chain inet faultline input\n");
            if !blocked.is_empty() {
                script.push_str(&format!(
                    "add rule inet faultline input ip saddr {{ {} }} drop\n",
                    blocked.join(", ")
                ));
            }
            // Every node gets its rules even if one fails: stopping at the first failure
            // would leave the others with the old grudge (and a failed heal would keep them
            // partitioned through recovery).
            if let Err(e) = nft_in(&self.namespaces[i], &script) {
                errors.push(format!("{node}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<(), String> {
        self.partition(&Grudge::new())
    }

    /// Deletes everything this network created (best effort: whatever is left is reported by
    /// and removable with `faultline clean`).
    pub fn destroy(&self) {
        // Deleting a namespace deletes the interfaces in it, and a veth pair goes with either
        // end, so the host interface disappears with the hub.
        // Each step is tried again a few times: a loaded host can fail to start `ip` for a
        // moment, and what is not removed here is only found by `faultline clean`.
        let mut left = Vec::new();
        if let Err(e) = retried(&["link", "del", &self.host_if]) {
            if link_exists(&self.host_if) {
                left.push(format!("interface {} ({e})", self.host_if));
            }
        }
        for ns in self.namespaces.iter().chain(std::iter::once(&self.hub)) {
            if let Err(e) = retried(&["netns", "del", ns]) {
                if Path::new("/run/netns").join(ns).exists() {
                    left.push(format!("namespace {ns} ({e})"));
                }
            }
        }
        if left.is_empty() {
            let _ = std::fs::remove_file(state_path(&self.tag));
        } else {
            tracing::warn!(
                tag = self.tag,
                left = left.join("; "),
                "network not fully removed: run `faultline clean`"
            );
            eprintln!(
                "  warning: could not remove {}: run `faultline clean`",
                left.join("; ")
            );
        }
    }

    fn write_state(&self) -> Result<(), String> {
        std::fs::create_dir_all(STATE_DIR)
            .map_err(|e| format!("cannot create {STATE_DIR}: {e}"))?;
        let state = serde_json::json!({
            "controller": std::process::id(),
            "network": self,
        });
        std::fs::write(state_path(&self.tag), state.to_string())
            .map_err(|e| format!("cannot write {}: {e}", state_path(&self.tag).display()))
    }
}

fn state_path(tag: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{tag}.json"))
}

/// An exclusive lock over choosing subnets, held until dropped (released by the kernel if the
/// process dies).
fn subnet_lock() -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    std::fs::create_dir_all(STATE_DIR).map_err(|e| format!("cannot create {STATE_DIR}: {e}"))?;
    let path = Path::new(STATE_DIR).join("subnet.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", path.display()))
}

/// A third octet in `range` whose /24 no host route uses, starting from one derived from the
/// tag so that concurrent runs spread out.
fn free_subnet(tag: &str, range: Ipv4Addr) -> Result<u8, String> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map_err(|e| format!("cannot list routes: {e} (is iproute2 installed?)"))?;
    let routes = route_prefixes(&String::from_utf8_lossy(&out.stdout));
    let [a, b, _, _] = range.octets();
    let start = tag
        .bytes()
        .fold(7u32, |h, c| h.wrapping_mul(31).wrapping_add(u32::from(c)));
    for k in 0..250u32 {
        let third = ((start + k) % 250) as u8;
        let candidate = u32::from(Ipv4Addr::new(a, b, third, 0));
        if !routes
            .iter()
            .any(|&(net, len)| overlaps(candidate, 24, net, len))
        {
            return Ok(third);
        }
    }
    Err(format!(
        "no free /24 left in {a}.{b}.0.0/16; choose another --net-range"
    ))
}

/// The destinations of `ip -4 route show table all` as (network, prefix length), leaving out
/// default routes: a /24 of ours is more specific than a default route and takes nothing
/// from it, but any other route that overlaps it (a VPN's 10.0.0.0/8, another run's /24)
/// would be shadowed or shadow ours.
fn route_prefixes(routes: &str) -> Vec<(u32, u8)> {
    const TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    routes
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mut dest = words.next()?;
            if TYPES.contains(&dest) {
                dest = words.next()?;
            }
            let (addr, len) = match dest.split_once('/') {
                Some((addr, len)) => (addr, len.parse::<u8>().ok()?),
                None => (dest, 32),
            };
            let addr: Ipv4Addr = addr.parse().ok()?;
            (len > 0 && len <= 32).then_some((u32::from(addr), len))
        })
        .collect()
}

/// Whether two prefixes share any address.
fn overlaps(a: u32, a_len: u8, b: u32, b_len: u8) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a & mask == b & mask
}

/// Networks whose controller is gone (or all, with `all`): (tag, namespaces, host interface).
pub fn leftovers(all: bool) -> Vec<(String, Vec<String>, String)> {
    let mut found = Vec::new();
    // Every namespace and host interface with our prefix, grouped by tag.
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(NS_PREFIX) {
                if let Some((tag, _)) = rest.split_once('-') {
                    tags.entry(tag.to_string()).or_default().push(name.clone());
                }
            }
        }
    }
    for (tag, namespaces) in tags {
        let controller_alive = std::fs::read_to_string(state_path(&tag))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("controller").and_then(serde_json::Value::as_u64))
            .is_some_and(controller_running);
        if all || !controller_alive {
            found.push((tag.clone(), namespaces, format!("{HOST_IF_PREFIX}{tag}")));
        }
    }
    found
}

/// Whether `pid` is still a running faultline (not merely some process that reused the pid
/// of a controller that died).
fn controller_running(pid: u64) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|&b| b == 0)
            .next()
            .is_some_and(|exe| exe.ends_with(b"faultline"))
    })
}

/// Deletes a leftover network (see [`leftovers`]).
pub fn remove_leftover(tag: &str, namespaces: &[String], host_if: &str) {
    let _ = run("ip", &["link", "del", host_if]);
    for ns in namespaces {
        let _ = run("ip", &["netns", "del", ns]);
    }
    let _ = std::fs::remove_file(state_path(tag));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_is_taken_by_any_route_that_overlaps_it() {
        let routes = route_prefixes(
            "default via 192.0.2.1 dev eth0\n\
             10.0.0.0/8 dev tun0 scope link\n\
             broadcast 10.77.3.255 dev flx table local proto kernel scope link src 10.77.3.254\n\
             local 127.0.0.0/8 dev lo table local\n",
        );
        assert_eq!(routes.len(), 3, "{routes:?}");
        let net = |a, b, c| u32::from(Ipv4Addr::new(a, b, c, 0));
        // Covered by the VPN's /8.
        assert!(routes
            .iter()
            .any(|&(n, l)| overlaps(net(10, 77, 9), 24, n, l)));
        // Not by the default route.
        assert!(!routes
            .iter()
            .any(|&(n, l)| overlaps(net(172, 30, 9), 24, n, l)));
        // A host route inside a /24 takes that /24 only.
        let host = u32::from(Ipv4Addr::new(10, 77, 3, 255));
        assert!(overlaps(net(10, 77, 3), 24, host, 32));
        assert!(!overlaps(net(10, 77, 4), 24, host, 32));
    }
}
