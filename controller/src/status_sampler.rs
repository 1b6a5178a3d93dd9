//! Samples every node's role, term and leader during a run: into the shared [`Observed`] view
//! (which the nemesis aims by) and into `nodes/status.jsonl` (which the election check and the
//! report's timeline read).
//!
//! One JSON object per line, on the history's clock:
//!
//! ```json
//! {"time":1250000000,"node":"n2","role":"leader","term":3,"leader":"n2"}
//! {"time":1250000000,"node":"n3","role":null,"term":null,"leader":null}
//! ```
//!
//! `time` is nanoseconds since the test started (when the sample was asked for), `leader` the
//! node this node believes leads, `role` `null` when the node did not answer within the
//! sample's timeout (killed, paused or cut off), and `"consistent": false` marks a report whose
//! role and term were read separately (see [`RoleReport::consistent`]). During a rolling
//! upgrade each line also has the `version` the node runs (its binary's, not what it says).
//!
//! # Rate
//! Every node is asked every [`INTERVAL`] (50 ms). The point is to see every leadership, even
//! a short one: two nodes leading one term is a violation whenever it happens, and seeing it
//! needs one sample of each leader during its tenure. A node that wins an election keeps its
//! role until a message of a higher term reaches it, which (unless one is already in flight)
//! takes an election timeout of some other node: 150 ms at the least for the bundled Raft, 500
//! ms for etcd as faultline runs it. At 50 ms every such tenure is seen two or more times. The
//! cost is one request per node every 50 ms (100 per second for 5 nodes): small for the
//! bundled Raft and custom targets; for etcd, `/debug/vars` is the whole expvar dump (a few
//! kilobytes), still cheap next to 20 clients working flat out.
//!
//! # What is written
//! A line is written when a node's answer differs from the last line written for it, for every
//! sample that claims leadership (so each leader claim can be counted), and at least once a
//! second otherwise. Nothing is lost by the rest: an unchanged follower says nothing new.
//!
//! A sampler that cannot write its file logs a warning and stops writing; the run goes on.

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline_targets::role::RoleReport;
use faultline_targets::NodeSpec;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::view::Observed;

/// Time between two samples of one node.
pub const INTERVAL: Duration = Duration::from_millis(50);
/// How long a node gets to answer one sample (a paused node never does; the samples it
/// misses meanwhile are skipped, not queued).
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// Longest time between two lines of one node that says nothing new.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// A running sampler; [`StatusSampler::stop`] ends it (dropping it does too).
pub struct StatusSampler {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl StatusSampler {
    /// Starts sampling each of `nodes` into `observed` and `path` (created, or appended to),
    /// with times measured from `start`: the instant the history's times count from. `fetch`
    /// asks one node for its role (`Client::role`), `None` when it does not answer.
    pub fn start<F, Fut, V>(
        nodes: Vec<NodeSpec>,
        start: Instant,
        path: PathBuf,
        observed: Arc<Observed>,
        fetch: F,
        version_of: V,
    ) -> StatusSampler
    where
        F: Fn(NodeSpec) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Option<RoleReport>> + Send + 'static,
        V: Fn(&str) -> Option<String> + Clone + Send + Sync + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            });
        let file = match file {
            Ok(f) => Some(Arc::new(Mutex::new(f))),
            Err(e) => {
                tracing::warn!(path = %path.display(), "no status samples written: {e}");
                None
            }
        };
        let tasks = nodes
            .into_iter()
            .map(|node| {
                tokio::spawn(sample_node(
                    fetch.clone(),
                    version_of.clone(),
                    node,
                    start,
                    file.clone(),
                    observed.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        StatusSampler { stop, tasks }
    }

    /// Stops sampling and waits for the last samples to be written.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for mut t in self.tasks {
            // A sampler stuck past its timeout is stopped, so nothing is appended to
            // status.jsonl after the results are written.
            if tokio::time::timeout(TIMEOUT * 2, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

async fn sample_node<F, Fut, V>(
    fetch: F,
    version_of: V,
    node: NodeSpec,
    start: Instant,
    mut file: Option<Arc<Mutex<std::fs::File>>>,
    observed: Arc<Observed>,
    mut stopped: watch::Receiver<bool>,
) where
    F: Fn(NodeSpec) -> Fut,
    Fut: Future<Output = Option<RoleReport>>,
    V: Fn(&str) -> Option<String>,
{
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_written: Option<(Option<RoleReport>, Option<String>, Duration)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // A closed channel (the sampler was dropped) stops it too.
            r = stopped.changed() => if r.is_err() || *stopped.borrow() { break },
        }
        let asked = start.elapsed();
        // A margin over the request's own timeout, so the request ends on its own terms (and,
        // for an exec driver, counts as unanswered) rather than being cut off from outside.
        let report = tokio::time::timeout(TIMEOUT + TIMEOUT / 2, fetch(node.clone()))
            .await
            .ok()
            .flatten();
        observed.update(&node.name, asked, report.clone());
        let version = version_of(&node.name);
        let due = match &last_written {
            None => true,
            Some((last, last_version, at)) => {
                *last != report
                    || *last_version != version
                    || report.as_ref().is_some_and(RoleReport::is_leader)
                    || asked.saturating_sub(*at) >= KEEPALIVE
            }
        };
        if !due {
            continue;
        }
        let Some(f) = &file else { continue };
        let line = sample_line(asked, &node.name, report.as_ref(), version.as_deref());
        // One write per line on an append-only file: lines from different nodes never mix.
        let written = f
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(node = node.name, "status samples no longer written: {e}");
            file = None;
        }
        last_written = Some((report, version, asked));
    }
}

/// One line of `status.jsonl` (with its newline).
fn sample_line(
    asked: Duration,
    node: &str,
    report: Option<&RoleReport>,
    version: Option<&str>,
) -> String {
    let mut line = json!({
        "time": asked.as_nanos().min(u128::from(u64::MAX)) as u64,
        "node": node,
        "role": report.map(|r| r.role.as_str()),
        "term": report.and_then(|r| r.term),
        "leader": report.and_then(|r| r.leader.as_deref()),
    });
    if report.is_some_and(|r| !r.consistent) {
        line["consistent"] = json!(false);
    }
    if let Some(v) = version {
        line["version"] = json!(v);
    }
    let mut line = line.to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use faultline_targets::client::Client;
    use faultline_targets::httpkv::HttpKvClient;
    use serde_json::Value;

    /// `faultline node`'s own arguments, parsed as the binary parses them.
    #[derive(Parser)]
    struct NodeCli {
        #[command(flatten)]
        node: faultline_raft::NodeArgs,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
    }

    #[test]
    fn a_lost_answer_is_a_null_role() {
        let answered = RoleReport {
            role: "follower".into(),
            term: Some(4),
            leader: Some("n2".into()),
            consistent: true,
        };
        let line = sample_line(
            Duration::from_millis(1500),
            "n1",
            Some(&answered),
            Some("3.5.1"),
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({"time": 1_500_000_000u64, "node": "n1", "role": "follower", "term": 4, "leader": "n2",
                   "version": "3.5.1"})
        );
        let split = RoleReport {
            consistent: false,
            ..answered
        };
        let v: Value = serde_json::from_str(&sample_line(
            Duration::from_millis(1),
            "n1",
            Some(&split),
            None,
        ))
        .unwrap();
        assert_eq!(v["consistent"], false);
        let lost = sample_line(Duration::from_millis(1750), "n1", None, None);
        let v: Value = serde_json::from_str(&lost).unwrap();
        assert_eq!(
            v,
            json!({"time": 1_750_000_000u64, "node": "n1", "role": null, "term": null, "leader": null})
        );
    }

    /// Against a real node of the bundled Raft (a single-node cluster, run in this process: it
    /// elects itself), then against a port where nothing answers.
    #[test]
    fn samples_a_real_node_until_stopped() {
        let dir = std::env::temp_dir().join(format!("faultline-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (client_port, peer_port, dead_port) = (free_port(), free_port(), free_port());
        let cli = NodeCli::try_parse_from([
            "node".to_string(),
            "--id=1".to_string(),
            format!("--data-dir={}", dir.join("data").display()),
            format!("--client-addr=127.0.0.1:{client_port}"),
            format!("--peer-addr=127.0.0.1:{peer_port}"),
        ])
        .expect("node arguments");
        // The node runs until the test process exits (it has no stop handle of its own).
        std::thread::spawn(move || faultline_raft::run(cli.node));

        let spec = |name: &str, id: u64, port: u16| NodeSpec {
            name: name.to_string(),
            id,
            client_addr: format!("127.0.0.1:{port}").parse().unwrap(),
            peer_addr: format!("127.0.0.1:{peer_port}").parse().unwrap(),
            data_dir: dir.join("data"),
            log_path: dir.join("log"),
        };
        let nodes = vec![spec("n1", 1, client_port), spec("n9", 9, dead_port)];
        let path = dir.join("nodes").join("status.jsonl");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let observed = Arc::new(Observed::default());
        runtime.block_on(async {
            let client = Client::HttpKv(HttpKvClient::new(nodes.clone()).unwrap());
            let start = Instant::now();
            let fetch = move |n: NodeSpec| {
                let client = client.clone();
                async move { client.role(&n, Some("/status"), TIMEOUT).await }
            };
            let sampler = StatusSampler::start(
                nodes,
                start,
                path.clone(),
                observed.clone(),
                fetch,
                |_: &str| None,
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            sampler.stop().await;
        });
        // The view saw n1 lead, and n9 never answer.
        assert_eq!(observed.leader().map(|l| l.node), Some("n1".to_string()));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let n1: Vec<&Value> = lines.iter().filter(|v| v["node"] == "n1").collect();
        let n9: Vec<&Value> = lines.iter().filter(|v| v["node"] == "n9").collect();
        // A leader's every sample is written (up to 3 s / 50 ms of them; fewer on a loaded
        // machine, but far more than the keepalives). A silent node's only once a second
        // after the first.
        assert!(
            n1.len() >= 10 && n1.len() <= 61,
            "{} samples of n1",
            n1.len()
        );
        assert!((1..=5).contains(&n9.len()), "{} samples of n9", n9.len());
        assert!(
            n1.iter().any(|v| v["role"] == "leader"
                && v["leader"] == "n1"
                && v["term"].as_u64() >= Some(1)),
            "n1 never reported leading: {n1:?}"
        );
        assert!(n9
            .iter()
            .all(|v| v["role"].is_null() && v["term"].is_null()));
        let times: Vec<u64> = n1.iter().map(|v| v["time"].as_u64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        // Stopped means stopped: nothing is written afterwards.
        let len = text.len();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(std::fs::read_to_string(&path).unwrap().len(), len);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
