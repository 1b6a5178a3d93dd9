//! Which hosts a run uses and how to reach them: `--hosts` and the `[hosts]` table.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[hosts]` in a test file. Every key is optional except `addresses` (or `--hosts`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostsSection {
    /// `[user@]address[:port]` of each host, one node per host, in node order.
    pub addresses: Option<Vec<String>>,
    /// Login user when an address names none [default: ssh's own choice, usually yours].
    pub user: Option<String>,
    /// SSH port when an address names none [default: ssh's own choice, usually 22].
    pub port: Option<u16>,
    /// Private key to log in with [default: ssh's own keys and agent].
    pub key: Option<PathBuf>,
    /// `strict` (the host's key must already be known: the default), `accept-new` (learn
    /// unknown keys, refuse changed ones) or `off`.
    pub known_hosts: Option<String>,
    /// The known-hosts file to check keys against [default: ssh's own].
    pub known_hosts_file: Option<PathBuf>,
    /// An ssh configuration file to use instead of ~/.ssh/config (`/dev/null` for none).
    pub ssh_config: Option<PathBuf>,
    /// Run faultline's commands on the hosts through `sudo -n` [default: when the login user is
    /// not root]. Partitions need root on the host.
    pub sudo: Option<bool>,
    /// Where faultline keeps its files on each host [default: /var/lib/faultline].
    pub dir: Option<String>,
    /// The node binary as installed on the hosts (etcd, a custom target's): used instead of
    /// uploading the controller's copy.
    pub binary: Option<String>,
    /// Leave the run's files, the uploaded binaries and the logs on the hosts [default: false].
    pub keep: Option<bool>,
    /// A host clock further than this from the controller's (milliseconds) is warned about
    /// [default: 100].
    pub clock_warn_ms: Option<f64>,
}

impl HostsSection {
    /// Values from `over` replace those of `self`.
    pub fn merged(self, over: HostsSection) -> HostsSection {
        HostsSection {
            addresses: over.addresses.or(self.addresses),
            user: over.user.or(self.user),
            port: over.port.or(self.port),
            key: over.key.or(self.key),
            known_hosts: over.known_hosts.or(self.known_hosts),
            known_hosts_file: over.known_hosts_file.or(self.known_hosts_file),
            ssh_config: over.ssh_config.or(self.ssh_config),
            sudo: over.sudo.or(self.sudo),
            dir: over.dir.or(self.dir),
            binary: over.binary.or(self.binary),
            keep: over.keep.or(self.keep),
            clock_warn_ms: over.clock_warn_ms.or(self.clock_warn_ms),
        }
    }

    /// Checks and resolves the section; errors name the key.
    pub fn resolve(&self) -> Result<HostsConfig, String> {
        let addresses = self.addresses.clone().unwrap_or_default();
        if addresses.is_empty() {
            return Err("hosts.addresses (or --hosts): no host given".to_string());
        }
        let mut hosts = Vec::new();
        for a in &addresses {
            let host = Host::parse(a).map_err(|e| format!("hosts: {e}"))?;
            if hosts.iter().any(|h: &Host| h.name == host.name) {
                return Err(format!(
                    "hosts: {} is named twice (one node per host)",
                    host.name
                ));
            }
            hosts.push(host);
        }
        let known_hosts = match self.known_hosts.as_deref() {
            None | Some("strict") => KnownHosts::Strict,
            Some("accept-new") => KnownHosts::AcceptNew,
            Some("off") => KnownHosts::Off,
            Some(other) => {
                return Err(format!(
                    "hosts.known_hosts: {other:?} is not a policy; use strict, accept-new or off"
                ))
            }
        };
        for (key, path) in [
            ("hosts.key", &self.key),
            ("hosts.known_hosts_file", &self.known_hosts_file),
            ("hosts.ssh_config", &self.ssh_config),
        ] {
            if let Some(p) = path {
                if !p.exists() {
                    return Err(format!("{key}: {} does not exist", p.display()));
                }
            }
        }
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| "/var/lib/faultline".to_string());
        let trimmed = dir.trim_end_matches('/');
        let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
        let plain = dir.starts_with('/')
            && !parts.is_empty()
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != "..")
            && !dir.chars().any(char::is_control);
        if !plain {
            return Err(format!(
                "hosts.dir: {dir:?} must be an absolute path below / with no empty, '.' or '..' \
                 parts (faultline keeps its files under it and removes what it made there)"
            ));
        }
        if let Some(b) = &self.binary {
            if !b.starts_with('/') {
                return Err(format!(
                    "hosts.binary: {b:?} must be an absolute path on the hosts"
                ));
            }
        }
        let clock_warn_ms = self.clock_warn_ms.unwrap_or(100.0);
        if !(clock_warn_ms.is_finite() && clock_warn_ms > 0.0) {
            return Err(format!(
                "hosts.clock_warn_ms: {clock_warn_ms} must be a positive number of milliseconds"
            ));
        }
        Ok(HostsConfig {
            hosts,
            user: self.user.clone(),
            port: self.port,
            key: self.key.clone(),
            known_hosts,
            known_hosts_file: self.known_hosts_file.clone(),
            ssh_config: self.ssh_config.clone(),
            sudo: self.sudo,
            dir: trimmed.to_string(),
            binary: self.binary.clone(),
            keep: self.keep.unwrap_or(false),
            clock_warn: Duration::from_secs_f64(clock_warn_ms / 1e3),
        })
    }
}

/// How host keys are checked (ssh's `StrictHostKeyChecking`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownHosts {
    Strict,
    AcceptNew,
    Off,
}

impl KnownHosts {
    pub fn name(self) -> &'static str {
        match self {
            KnownHosts::Strict => "strict",
            KnownHosts::AcceptNew => "accept-new",
            KnownHosts::Off => "off",
        }
    }
}

/// One host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The address as given (without user and port): how histories and reports name it.
    pub name: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

impl Host {
    /// `[user@]address[:port]`; an IPv6 address with a port goes in brackets.
    pub fn parse(text: &str) -> Result<Host, String> {
        let text = text.trim();
        let (user, rest) = match text.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, text),
        };
        let (address, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: a '[' without its ']'"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{text:?}: unexpected {after:?} after the address")),
            };
            (addr, port)
        } else if rest.matches(':').count() == 1 {
            let (a, p) = rest.split_once(':').unwrap_or((rest, ""));
            (a, Some(p))
        } else {
            (rest, None)
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{text:?}: {p:?} is not a port"))
            })
            .transpose()?;
        let bad = |s: &str| {
            s.is_empty()
                || s.starts_with('-')
                || s.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "'\"`$;|&<>\\/".contains(c))
        };
        if bad(address) {
            return Err(format!("{text:?} is not a host address"));
        }
        if user.as_deref().is_some_and(bad) {
            return Err(format!("{text:?}: the user name is not valid"));
        }
        Ok(Host {
            name: address.to_string(),
            user,
            port,
        })
    }
}

/// The hosts of a run, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct HostsConfig {
    pub hosts: Vec<Host>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<PathBuf>,
    pub known_hosts: KnownHosts,
    pub known_hosts_file: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
    pub sudo: Option<bool>,
    pub dir: String,
    pub binary: Option<String>,
    pub keep: bool,
    pub clock_warn: Duration,
}

impl HostsConfig {
    /// Back to a section (for the run's test.toml).
    pub fn to_section(&self) -> HostsSection {
        HostsSection {
            addresses: Some(
                self.hosts
                    .iter()
                    .map(|h| {
                        let mut s = String::new();
                        if let Some(u) = &h.user {
                            s.push_str(u);
                            s.push('@');
                        }
                        match (h.port, h.name.contains(':')) {
                            (Some(p), true) => s.push_str(&format!("[{}]:{p}", h.name)),
                            (Some(p), false) => s.push_str(&format!("{}:{p}", h.name)),
                            (None, _) => s.push_str(&h.name),
                        }
                        s
                    })
                    .collect(),
            ),
            user: self.user.clone(),
            port: self.port,
            key: self.key.clone(),
            known_hosts: Some(self.known_hosts.name().to_string()),
            known_hosts_file: self.known_hosts_file.clone(),
            ssh_config: self.ssh_config.clone(),
            sudo: self.sudo,
            dir: Some(self.dir.clone()),
            binary: self.binary.clone(),
            keep: Some(self.keep),
            clock_warn_ms: Some(self.clock_warn.as_secs_f64() * 1e3),
        }
    }

    /// The login user of `host` (its own, the section's, or none: ssh decides).
    pub fn user_of(&self, host: &Host) -> Option<String> {
        host.user.clone().or_else(|| self.user.clone())
    }

    /// Whether commands on `host` go through sudo.
    pub fn sudo_for(&self, host: &Host) -> bool {
        self.sudo.unwrap_or_else(|| {
            let user = self
                .user_of(host)
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_default();
            user != "root"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_users_ports_and_ipv6() {
        let h = Host::parse("root@10.0.0.2:2222").unwrap();
        assert_eq!(
            (h.name.as_str(), h.user.as_deref(), h.port),
            ("10.0.0.2", Some("root"), Some(2222))
        );
        let h = Host::parse("db1.example.com").unwrap();
        assert_eq!(
            (h.name.as_str(), h.user, h.port),
            ("db1.example.com", None, None)
        );
        let h = Host::parse("[fd00::2]:22").unwrap();
        assert_eq!((h.name.as_str(), h.port), ("fd00::2", Some(22)));
        let h = Host::parse("fd00::2").unwrap();
        assert_eq!((h.name.as_str(), h.port), ("fd00::2", None));
        for bad in [
            "",
            "a b",
            "-oProxyCommand=x",
            "h:0",
            "h:99999",
            "[::1",
            "a;b",
            "u@",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn resolve_checks_every_key_and_round_trips() {
        let section = HostsSection {
            addresses: Some(vec!["root@10.0.0.2".into(), "10.0.0.3:2200".into()]),
            known_hosts: Some("accept-new".into()),
            dir: Some("/srv/fl/".into()),
            ..HostsSection::default()
        };
        let config = section.resolve().unwrap();
        assert_eq!(config.dir, "/srv/fl");
        assert_eq!(config.known_hosts, KnownHosts::AcceptNew);
        assert_eq!(config.to_section().resolve().unwrap(), config);
        assert!(!config.sudo_for(&config.hosts[0]));

        let err = |s: HostsSection| s.resolve().unwrap_err();
        assert!(err(HostsSection::default()).contains("no host"));
        let twice = HostsSection {
            addresses: Some(vec!["a".into(), "root@a".into()]),
            ..HostsSection::default()
        };
        assert!(err(twice).contains("named twice"));
        let policy = HostsSection {
            known_hosts: Some("yes".into()),
            ..section.clone()
        };
        assert!(err(policy).contains("hosts.known_hosts"));
        for bad in ["relative", "/", "//", "/usr/.", "/a//b", "/a/../b"] {
            let dir = HostsSection {
                dir: Some(bad.into()),
                ..section.clone()
            };
            assert!(err(dir).contains("hosts.dir"), "{bad:?} accepted");
        }
        let key = HostsSection {
            key: Some("/nonexistent/key".into()),
            ..section
        };
        assert!(err(key).contains("hosts.key: /nonexistent/key does not exist"));
    }
}
