//! The system under test, as the controller sees it: how to launch each node, how to talk to
//! it, how to tell it is ready, how to stop it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_targets::client::{Client, Readiness};
use faultline_targets::custom::{Custom, Protocol};
use faultline_targets::exec::ExecClient;
use faultline_targets::httpkv::HttpKvClient;
use faultline_targets::process::Launch;
use faultline_targets::{consul, etcd, raft, NodeSpec};
use nix::sys::signal::Signal;

use super::config::TestConfig;

/// A target, resolved from the test definition.
pub enum Target {
    /// The bundled Raft store (`faultline node`).
    Raft {
        exe: PathBuf,
        opts: raft::RaftOptions,
    },
    /// A system described by a custom target file.
    Custom {
        custom: Box<Custom>,
        faultline: PathBuf,
        /// What `{binary}` stands for (a rolling upgrade's starting binary).
        binary: Option<PathBuf>,
    },
    /// etcd members, from the etcd binary.
    Etcd {
        opts: etcd::EtcdOptions,
        version: String,
    },
    /// Consul servers, from the consul binary (not yet verified against a live Consul).
    Consul {
        opts: consul::ConsulOptions,
        version: String,
    },
}

impl Target {
    /// Resolves the target of `config`; errors name the key or file at fault.
    pub fn from_config(config: &TestConfig) -> Result<Target, String> {
        let faultline = std::env::current_exe()
            .map_err(|e| format!("cannot find the faultline binary: {e}"))?;
        // A rolling upgrade starts the cluster on its `from` binary.
        let from = config.upgrade.as_ref().and_then(|u| u.from.clone());
        match config.target.as_str() {
            "raft" => {
                if from.is_some() && config.raft_binary.is_some() {
                    return Err(
                        "upgrade.from and raft.binary both name the binary the nodes \
                                start on: give one"
                            .to_string(),
                    );
                }
                let exe = match from.as_ref().or(config.raft_binary.as_ref()) {
                    Some(path) if !path.is_file() => {
                        return Err(format!(
                            "raft.binary: {} does not exist (give the path of a faultline binary)",
                            path.display()
                        ))
                    }
                    Some(path) => path.clone(),
                    None => faultline,
                };
                Ok(Target::Raft {
                    exe,
                    opts: raft::RaftOptions {
                        bugs: config.raft_bugs.clone(),
                        read_mode: Some(config.raft_read_mode.clone()),
                    },
                })
            }
            "custom" => {
                let path = config.target_config.as_ref().ok_or_else(|| {
                    "target_config: the custom target needs its definition file \
                     (--target-config FILE; see docs/custom-targets.md)"
                        .to_string()
                })?;
                let custom = Custom::load(path)?;
                match (custom.uses_binary(), config.upgrade.is_some(), &from) {
                    (false, true, _) => {
                        return Err(format!(
                            "{}: a rolling upgrade swaps the nodes' binary, so the command (or \
                             env) must use the {{binary}} placeholder",
                            custom.source.display()
                        ))
                    }
                    (true, false, _) => {
                        return Err(format!(
                            "{}: the command uses {{binary}}, which only a rolling upgrade sets \
                             (--upgrade-from BIN --upgrade-to BIN)",
                            custom.source.display()
                        ))
                    }
                    (true, true, None) => {
                        return Err("upgrade.from (--upgrade-from): a custom target has no \
                                    binary of its own; give the one the nodes start on"
                            .to_string())
                    }
                    _ => {}
                }
                let program = custom.program(&faultline, from.as_deref());
                check_program(&program, "command[0]", &custom.source)?;
                if let Some(driver) = custom.driver_command(&faultline) {
                    check_program(Path::new(&driver[0]), "client.program[0]", &custom.source)?;
                }
                Ok(Target::Custom {
                    custom: Box::new(custom),
                    faultline,
                    binary: from,
                })
            }
            "etcd" => {
                if from.is_some() && config.etcd.binary.is_some() {
                    return Err(
                        "upgrade.from and etcd.binary (--etcd-bin) both name the binary \
                                the members start on: give one"
                            .to_string(),
                    );
                }
                // The hosts' own etcd (`hosts.binary`) is asked for its version there.
                let on_hosts = config.hosts.as_ref().and_then(|h| h.binary.clone());
                let (binary, version) = match on_hosts {
                    Some(b) => (PathBuf::from(b), "on the hosts".to_string()),
                    None => {
                        let binary =
                            etcd::find_binary(from.as_deref().or(config.etcd.binary.as_deref()))?;
                        let version = etcd::version(&binary)?;
                        (binary, version)
                    }
                };
                Ok(Target::Etcd {
                    opts: etcd::EtcdOptions {
                        binary,
                        serializable_reads: config.etcd.serializable_reads.unwrap_or(false),
                    },
                    version,
                })
            }
            "consul" => {
                if from.is_some() && config.consul.binary.is_some() {
                    return Err(
                        "upgrade.from and consul.binary (--consul-bin) both name the \
                                binary the servers start on: give one"
                            .to_string(),
                    );
                }
                let binary =
                    consul::find_binary(from.as_deref().or(config.consul.binary.as_deref()))?;
                let version = consul::version(&binary)?;
                Ok(Target::Consul {
                    opts: consul::ConsulOptions { binary },
                    version,
                })
            }
            other => Err(format!("target: unknown target {other:?}")),
        }
    }

    /// The name recorded in results.
    pub fn name(&self) -> String {
        match self {
            Target::Raft { .. } => "raft".to_string(),
            Target::Custom { custom, .. } => format!("custom ({})", custom.name()),
            Target::Etcd { .. } => "etcd".to_string(),
            Target::Consul { .. } => "consul".to_string(),
        }
    }

    /// The target's version, when it can tell.
    pub fn version(&self) -> Option<String> {
        let command: Vec<String> = match self {
            Target::Raft { .. } => return Some(env!("CARGO_PKG_VERSION").to_string()),
            Target::Etcd { version, .. } | Target::Consul { version, .. } => {
                return Some(version.clone())
            }
            Target::Custom {
                custom,
                faultline,
                binary,
            } => custom.version_command(faultline, binary.as_deref())?,
        };
        let (program, args) = command.split_first()?;
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .next()
            .map(|l| faultline_targets::sanitize(l.trim(), 200))
    }

    /// The program each node runs (clock faults need to know whether libfaketime works on it).
    pub fn node_program(&self) -> PathBuf {
        match self {
            Target::Raft { exe, .. } => exe.clone(),
            Target::Custom {
                custom,
                faultline,
                binary,
            } => custom.program(faultline, binary.as_deref()),
            Target::Etcd { opts, .. } => opts.binary.clone(),
            Target::Consul { opts, .. } => opts.binary.clone(),
        }
    }

    /// Whether peer links can go through the userspace proxy (it speaks the bundled Raft's
    /// framing).
    pub fn supports_proxy(&self) -> bool {
        matches!(self, Target::Raft { .. })
    }

    /// Client and peer ports when each node has an address of its own.
    pub fn namespace_ports(&self) -> (u16, u16) {
        match self {
            Target::Raft { .. } => (7001, 7002),
            Target::Custom { custom, .. } => (
                custom.spec.client_port.unwrap_or(7001),
                custom.spec.peer_port.unwrap_or(7002),
            ),
            Target::Etcd { .. } => (2379, 2380),
            // Consul's HTTP API and server RPC; its Serf LAN port is the next one (8301).
            Target::Consul { .. } => (8500, 8300),
        }
    }

    /// Ports after its peer port that a node also needs free (Consul's Serf LAN port).
    pub fn extra_ports(&self) -> u16 {
        match self {
            Target::Consul { .. } => 1,
            _ => 0,
        }
    }

    /// How to launch `node`; `peers` says where it must dial each other node.
    pub fn launch(
        &self,
        node: &NodeSpec,
        cluster: &[NodeSpec],
        peers: &[(u64, SocketAddr)],
        run_id: &str,
    ) -> Launch {
        self.launch_on(None, &[], node, cluster, peers, run_id)
    }

    /// How to launch `node` on `binary` (a rolling upgrade's; `None`: the target's own) with
    /// `extra` arguments after the target's.
    pub fn launch_on(
        &self,
        binary: Option<&Path>,
        extra: &[String],
        node: &NodeSpec,
        cluster: &[NodeSpec],
        peers: &[(u64, SocketAddr)],
        run_id: &str,
    ) -> Launch {
        let mut launch = match self {
            Target::Raft { exe, opts } => {
                raft::launch(binary.unwrap_or(exe), node, peers, opts, run_id)
            }
            Target::Custom {
                custom,
                faultline,
                binary: own,
            } => custom.launch(node, cluster, faultline, binary.or(own.as_deref()), run_id),
            Target::Etcd { opts, .. } => {
                let mut opts = opts.clone();
                if let Some(b) = binary {
                    opts.binary = b.to_path_buf();
                }
                etcd::launch(&opts, node, cluster, run_id)
            }
            Target::Consul { opts, .. } => {
                let mut opts = opts.clone();
                if let Some(b) = binary {
                    opts.binary = b.to_path_buf();
                }
                consul::launch(&opts, node, cluster, run_id)
            }
        };
        launch.args.extend(extra.iter().cloned());
        launch
    }

    /// The binary the nodes start on.
    pub fn binary(&self) -> Option<PathBuf> {
        match self {
            Target::Custom { binary, .. } => binary.clone(),
            _ => Some(self.node_program()),
        }
    }

    /// The version `binary` says it is, as this target's binaries say it: `etcd --version`'s
    /// version, `faultline --version`'s, a custom target's version command with `{binary}`
    /// (without one: the binary's file name).
    pub fn version_of(&self, binary: &Path) -> Result<String, String> {
        match self {
            Target::Raft { .. } => {
                let line = faultline_targets::first_line_of(binary, &["--version"])?;
                Ok(line
                    .strip_prefix("faultline ")
                    .map(str::to_string)
                    .unwrap_or(line))
            }
            Target::Etcd { .. } => etcd::version(binary),
            Target::Consul { .. } => consul::version(binary),
            Target::Custom {
                custom, faultline, ..
            } => match custom.version_command(faultline, Some(binary)) {
                Some(command) => {
                    let (program, args) = command
                        .split_first()
                        .ok_or_else(|| "version_command is empty".to_string())?;
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    faultline_targets::first_line_of(Path::new(program), &args)
                }
                None => Ok(binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| binary.display().to_string())),
            },
        }
    }

    /// A client for `nodes` (an exec driver is started now, logging to `log`, marked with
    /// `run_id` for `faultline clean`).
    pub fn client(&self, nodes: Vec<NodeSpec>, log: &Path, run_id: &str) -> Result<Client, String> {
        match self {
            Target::Raft { .. } => Ok(Client::HttpKv(HttpKvClient::new(nodes)?)),
            Target::Custom {
                custom, faultline, ..
            } => match custom.driver_command(faultline) {
                Some(command) => Ok(Client::Exec(ExecClient::start(
                    &command, log, nodes, run_id,
                )?)),
                None => Ok(Client::HttpKv(HttpKvClient::new(nodes)?)),
            },
            Target::Etcd { opts, .. } => Ok(Client::Etcd(etcd::EtcdClient::new(
                nodes,
                opts.serializable_reads,
            )?)),
            Target::Consul { .. } => Ok(Client::Consul(consul::ConsulClient::new(nodes)?)),
        }
    }

    /// How to tell the cluster is ready.
    pub fn readiness(&self) -> Readiness {
        match self {
            Target::Raft { .. } => Readiness {
                http_get: Some("/status".to_string()),
                tcp: false,
                leader_path: Some("/status".to_string()),
                timeout: Duration::from_secs(30),
            },
            Target::Custom { custom, .. } => {
                let http = custom.protocol == Protocol::HttpKv;
                Readiness {
                    http_get: custom.spec.ready.http_get.clone().or_else(|| {
                        (http && custom.spec.ready.tcp != Some(true)).then(|| "/status".to_string())
                    }),
                    tcp: custom.spec.ready.tcp.unwrap_or(!http),
                    leader_path: self.leader_path().map(str::to_string),
                    timeout: custom.ready_timeout,
                }
            }
            Target::Etcd { .. } | Target::Consul { .. } => Readiness {
                http_get: None,
                tcp: false,
                leader_path: None,
                timeout: Duration::from_secs(60),
            },
        }
    }

    /// Where a node says whether it leads, if anywhere.
    pub fn leader_path(&self) -> Option<&str> {
        match self {
            Target::Raft { .. } => Some("/status"),
            Target::Custom { custom, .. } => match &custom.protocol {
                Protocol::HttpKv => match custom.spec.client.leader_path.as_deref() {
                    Some("") => None,
                    Some(p) => Some(p),
                    None => Some("/status"),
                },
                Protocol::Exec(_) => None,
            },
            // Their clients know how to ask.
            Target::Etcd { .. } | Target::Consul { .. } => None,
        }
    }

    /// Whether every node reports its role and the leader it knows, so "rejoined" can mean
    /// "knows a leader" (an exec driver may or may not answer status requests: there a node
    /// has rejoined once it is ready).
    pub fn reports_roles(&self) -> bool {
        match self {
            Target::Raft { .. } | Target::Etcd { .. } | Target::Consul { .. } => true,
            Target::Custom { custom, .. } => {
                custom.protocol == Protocol::HttpKv && self.leader_path().is_some()
            }
        }
    }

    /// How to stop a node: a signal, then SIGKILL after the grace period.
    pub fn stop(&self) -> (Signal, Duration) {
        match self {
            Target::Raft { .. } => (Signal::SIGTERM, Duration::from_secs(3)),
            Target::Custom { custom, .. } => (custom.stop_signal, custom.grace),
            Target::Etcd { .. } | Target::Consul { .. } => {
                (Signal::SIGTERM, Duration::from_secs(5))
            }
        }
    }

    /// Where a node reports its own state, if anywhere.
    pub fn status_path(&self) -> Option<&str> {
        match self {
            Target::Raft { .. } => Some("/status"),
            Target::Custom { .. } => self.leader_path(),
            // Their clients report node states themselves.
            Target::Etcd { .. } | Target::Consul { .. } => None,
        }
    }
}

/// A program must exist (as a path, or on PATH) before anything is started.
fn check_program(program: &Path, key: &str, source: &Path) -> Result<(), String> {
    let found = if program.components().count() > 1 {
        program.is_file()
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "{}: {key}: {} was not found",
            source.display(),
            program.display()
        ))
    }
}
