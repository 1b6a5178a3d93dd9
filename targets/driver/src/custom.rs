//! Custom targets: any system, described in a TOML file (`docs/custom-targets.md`).
//!
//! The file says how to start node *i* (a command template, executed without a shell), how to
//! tell it is ready, how to stop it, and which client protocol it speaks: `http-kv`
//! (`docs/http-kv.md`) or `exec` (a client driver of the user's, spoken to over stdin/stdout in
//! JSON lines, `docs/exec-protocol.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::process::Launch;
use crate::NodeSpec;

/// Placeholders a command template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "id",
    "index",
    "name",
    "addr",
    "client_port",
    "peer_port",
    "peers",
    "data_dir",
    "faultline",
    "dir",
    "binary",
];

/// A custom target file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSpec {
    /// A name for reports (default: the file name).
    pub name: Option<String>,
    /// How to start node i: program and arguments, with placeholders.
    pub command: Vec<String>,
    /// Extra environment for the nodes (values may use placeholders).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ports used when each node has its own address (network namespaces). On loopback,
    /// faultline picks free ports per node and these are ignored.
    pub client_port: Option<u16>,
    pub peer_port: Option<u16>,
    /// How one peer is written in `{peers}` (placeholders of that peer) [default:
    /// "{id}={addr}:{peer_port}"].
    pub peer_format: Option<String>,
    /// Separator between peers in `{peers}` [default: ","].
    pub peer_separator: Option<String>,
    /// Whether `{peers}` lists the node itself too [default: false].
    pub peers_include_self: Option<bool>,
    #[serde(default)]
    pub ready: ReadySpec,
    #[serde(default)]
    pub stop: StopSpec,
    pub client: ClientSpec,
    /// A command printing the system's version, recorded in the results (optional).
    pub version_command: Option<Vec<String>>,
}

/// How to tell a node is ready.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadySpec {
    /// Ready when `GET http://ADDR:CLIENT_PORT<path>` answers 2xx (for http-kv targets the
    /// default is `/status`).
    pub http_get: Option<String>,
    /// Ready when the client port accepts TCP connections (the default for exec targets).
    pub tcp: Option<bool>,
    /// Seconds to wait for every node [default: 30].
    pub timeout: Option<f64>,
}

/// How to stop a node.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopSpec {
    /// Signal asking the node to stop [default: SIGTERM]; SIGKILL follows after `grace`.
    pub signal: Option<String>,
    /// Seconds to wait after `signal` [default: 5].
    pub grace: Option<f64>,
}

/// The client protocol.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// `http-kv` or `exec`.
    pub protocol: String,
    /// For `exec`: the driver program and its arguments (placeholder `{faultline}` allowed).
    pub program: Option<Vec<String>>,
    /// For `http-kv`: a path whose JSON says `"role": "leader"` on the leader (default
    /// `/status`; set to "" if the system has none).
    pub leader_path: Option<String>,
}

/// What a custom target file resolves to.
#[derive(Clone, Debug)]
pub struct Custom {
    pub spec: CustomSpec,
    pub source: PathBuf,
    pub protocol: Protocol,
    pub stop_signal: nix::sys::signal::Signal,
    pub grace: Duration,
    pub ready_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpKv,
    Exec(Vec<String>),
}

impl Custom {
    /// Reads and checks a custom target file. Errors name the file, the line when known, the
    /// key and what is allowed.
    pub fn load(path: &Path) -> Result<Custom, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let spec: CustomSpec = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            match line {
                Some(l) => format!("{}:{l}: {}", path.display(), e.message().trim()),
                None => format!("{}: {}", path.display(), e.message().trim()),
            }
        })?;
        let at = |msg: String| format!("{}: {msg}", path.display());
        if spec.command.is_empty() {
            return Err(at("command: give the program and its arguments".to_string()));
        }
        for (i, arg) in spec.command.iter().enumerate() {
            check_template(arg).map_err(|e| at(format!("command[{i}]: {e}")))?;
        }
        for (k, v) in &spec.env {
            check_template(v).map_err(|e| at(format!("env.{k}: {e}")))?;
        }
        if let Some(f) = &spec.peer_format {
            check_template(f).map_err(|e| at(format!("peer_format: {e}")))?;
        }
        let protocol = match spec.client.protocol.as_str() {
            "http-kv" => Protocol::HttpKv,
            "exec" => match &spec.client.program {
                Some(p) if !p.is_empty() => {
                    for (i, arg) in p.iter().enumerate() {
                        check_template(arg).map_err(|e| at(format!("client.program[{i}]: {e}")))?;
                    }
                    Protocol::Exec(p.clone())
                }
                _ => {
                    return Err(at(
                        "client.program: the exec protocol needs the driver program to run"
                            .to_string(),
                    ))
                }
            },
            other => {
                return Err(at(format!(
                    "client.protocol: expected http-kv or exec, got {other:?}"
                )))
            }
        };
        let signal = spec.stop.signal.as_deref().unwrap_or("SIGTERM");
        let stop_signal = signal
            .parse::<nix::sys::signal::Signal>()
            .or_else(|_| format!("SIG{signal}").parse())
            .map_err(|_| {
                at(format!(
                    "stop.signal: unknown signal {signal:?} (e.g. SIGTERM, SIGINT)"
                ))
            })?;
        let seconds = |key: &str, v: Option<f64>, default: f64| -> Result<Duration, String> {
            let s = v.unwrap_or(default);
            if !s.is_finite() || s < 0.0 {
                return Err(at(format!("{key}: must be a number of seconds, got {s}")));
            }
            // Bounded, so deadlines computed from it cannot overflow.
            if s > 86_400.0 {
                return Err(at(format!("{key}: at most 86400 seconds (a day), got {s}")));
            }
            Ok(Duration::from_secs_f64(s))
        };
        Ok(Custom {
            grace: seconds("stop.grace", spec.stop.grace, 5.0)?,
            ready_timeout: seconds("ready.timeout", spec.ready.timeout, 30.0)?,
            stop_signal,
            protocol,
            source: path.to_path_buf(),
            spec,
        })
    }

    /// The name shown in reports.
    pub fn name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| {
            self.source
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "custom".to_string())
        })
    }

    /// The program the nodes run (for checks such as clock-fault support); `binary` as in
    /// [`Custom::launch`].
    pub fn program(&self, faultline: &Path, binary: Option<&Path>) -> PathBuf {
        let binary = binary.map(|b| b.display().to_string()).unwrap_or_default();
        PathBuf::from(
            self.global(&self.spec.command[0], faultline)
                .replace("{binary}", &binary),
        )
    }

    /// The version command, with `{faultline}`, `{dir}` and `{binary}` (a rolling upgrade's
    /// binary, when there is one) expanded.
    pub fn version_command(&self, faultline: &Path, binary: Option<&Path>) -> Option<Vec<String>> {
        let c = self.spec.version_command.as_ref()?;
        let binary = binary.map(|b| b.display().to_string()).unwrap_or_default();
        Some(
            c.iter()
                .map(|a| self.global(a, faultline).replace("{binary}", &binary))
                .collect(),
        )
    }

    /// Whether the node's command or environment names `{binary}`: the only way a rolling
    /// upgrade can give a custom target's nodes another binary.
    pub fn uses_binary(&self) -> bool {
        self.spec
            .command
            .iter()
            .chain(self.spec.env.values())
            .any(|t| t.contains("{binary}"))
    }

    /// Expands the placeholders that do not depend on a node: `{faultline}` and `{dir}` (the
    /// folder of the target file, so a file can refer to its neighbours).
    fn global(&self, template: &str, faultline: &Path) -> String {
        template
            .replace("{faultline}", &faultline.display().to_string())
            .replace("{dir}", &self.dir().display().to_string())
    }

    fn dir(&self) -> PathBuf {
        let dir = self.source.parent().unwrap_or(Path::new("."));
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
    }

    /// How to launch `node` of `cluster`; `faultline` is this binary (for `{faultline}`),
    /// `binary` the rolling upgrade's binary the node runs (for `{binary}`).
    pub fn launch(
        &self,
        node: &NodeSpec,
        cluster: &[NodeSpec],
        faultline: &Path,
        binary: Option<&Path>,
        run_id: &str,
    ) -> Launch {
        let binary = binary.map(|b| b.display().to_string()).unwrap_or_default();
        let peer_format = self
            .spec
            .peer_format
            .clone()
            .unwrap_or_else(|| "{id}={addr}:{peer_port}".to_string());
        let include_self = self.spec.peers_include_self.unwrap_or(false);
        let peers: Vec<String> = cluster
            .iter()
            .filter(|n| include_self || n.id != node.id)
            .map(|n| {
                expand(
                    &peer_format,
                    &values(n, faultline, &self.dir(), "", &binary),
                )
            })
            .collect();
        let peers = peers.join(self.spec.peer_separator.as_deref().unwrap_or(","));
        let vals = values(node, faultline, &self.dir(), &peers, &binary);
        let command: Vec<String> = self.spec.command.iter().map(|a| expand(a, &vals)).collect();
        Launch {
            program: PathBuf::from(&command[0]),
            args: command[1..].to_vec(),
            env: self
                .spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), expand(v, &vals)))
                .collect(),
            log: node.log_path.clone(),
            run_id: run_id.to_string(),
            netns: None,
        }
    }

    /// The exec driver's command line, with placeholders expanded.
    pub fn driver_command(&self, faultline: &Path) -> Option<Vec<String>> {
        match &self.protocol {
            Protocol::Exec(p) => Some(p.iter().map(|a| self.global(a, faultline)).collect()),
            Protocol::HttpKv => None,
        }
    }
}

fn values(
    node: &NodeSpec,
    faultline: &Path,
    dir: &Path,
    peers: &str,
    binary: &str,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("id", node.id.to_string()),
        ("index", (node.id - 1).to_string()),
        ("name", node.name.clone()),
        ("addr", node.client_addr.ip().to_string()),
        ("client_port", node.client_addr.port().to_string()),
        ("peer_port", node.peer_addr.port().to_string()),
        ("peers", peers.to_string()),
        ("data_dir", node.data_dir.display().to_string()),
        ("faultline", faultline.display().to_string()),
        ("dir", dir.display().to_string()),
        ("binary", binary.to_string()),
    ])
}

/// Replaces every `{placeholder}`; `{{` and `}}` stand for literal braces.
fn expand(template: &str, values: &BTreeMap<&'static str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(tail.as_bytes()[0] as char);
            rest = &tail[2..];
            continue;
        }
        if let (Some(end), true) = (tail.find('}'), tail.starts_with('{')) {
            let name = &tail[1..end];
            match values.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..=end]),
            }
            rest = &tail[end + 1..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Checks that a template uses only known placeholders and balanced braces.
fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "unbalanced '}}' in {template:?} (write '}}}}' for a literal brace)"
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!("unclosed '{{' in {template:?}"));
        };
        let name = &tail[1..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} in {template:?}; the placeholders are: {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &tail[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_and_reject_unknown_placeholders() {
        let v = BTreeMap::from([("id", "3".to_string()), ("addr", "10.0.0.3".to_string())]);
        assert_eq!(expand("--node={id}@{addr}", &v), "--node=3@10.0.0.3");
        assert_eq!(expand("{{literal}} {id}", &v), "{literal} 3");
        assert!(check_template("--x={id}:{client_port}").is_ok());
        let e = check_template("--x={nodeid}").unwrap_err();
        assert!(e.contains("{nodeid}") && e.contains("{data_dir}"), "{e}");
        assert!(check_template("--x={id").unwrap_err().contains("unclosed"));
    }
}
