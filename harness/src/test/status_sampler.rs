//! Samples every node's `GET /status` during a run into `nodes/status.jsonl`, so the report
//! can draw who led which term on the same time axis as the operations and the faults.
//!
//! One JSON object per line and sample, on the history's clock:
//!
//! ```json
//! {"time":1250000000,"node":"n2","role":"leader","term":3,"leader":"n2"}
//! {"time":1250000000,"node":"n3","role":null,"term":null,"leader":null}
//! ```
//!
//! `time` is nanoseconds since the test started (when the sample was asked for), `leader` the
//! name of the node this node believes leads its term, and `role` is `null` when the node did
//! not answer within the sample's timeout (killed, paused or cut off).
//!
//! Sampling is slow on purpose (every 250 ms, one small request per node): the point is to
//! see elections and leader changes, not to load the cluster under test. A sampler that cannot
//! write its file logs a warning and stops; the run goes on.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_targets::NodeSpec;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Time between two samples of one node.
pub const INTERVAL: Duration = Duration::from_millis(250);
/// How long a node gets to answer one sample (a paused node never does; the samples it
/// misses meanwhile are skipped, not queued).
const TIMEOUT: Duration = Duration::from_millis(400);

/// A running sampler; [`StatusSampler::stop`] ends it (dropping it does too).
pub struct StatusSampler {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl StatusSampler {
    /// Starts sampling each of `nodes` into `path` (created, or appended to), with times
    /// measured from `start`: the instant the history's times count from. `fetch` asks one
    /// node for its state (`Cluster::node_state`: the target's status endpoint), `None` when
    /// it does not answer.
    pub fn start<F, Fut>(
        nodes: Vec<NodeSpec>,
        start: Instant,
        path: PathBuf,
        fetch: F,
    ) -> StatusSampler
    where
        F: Fn(NodeSpec) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Option<Value>> + Send + 'static,
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
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), "no status samples: {e}");
                return StatusSampler {
                    stop,
                    tasks: Vec::new(),
                };
            }
        };
        let names: Arc<HashMap<u64, String>> =
            Arc::new(nodes.iter().map(|n| (n.id, n.name.clone())).collect());
        let tasks = nodes
            .into_iter()
            .map(|node| {
                tokio::spawn(sample_node(
                    fetch.clone(),
                    node,
                    names.clone(),
                    start,
                    file.clone(),
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

async fn sample_node<F, Fut>(
    fetch: F,
    node: NodeSpec,
    names: Arc<HashMap<u64, String>>,
    start: Instant,
    file: Arc<std::fs::File>,
    mut stopped: watch::Receiver<bool>,
) where
    F: Fn(NodeSpec) -> Fut,
    Fut: Future<Output = Option<Value>>,
{
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // A closed channel (the sampler was dropped) stops it too.
            r = stopped.changed() => if r.is_err() || *stopped.borrow() { break },
        }
        let asked = start.elapsed();
        let status = tokio::time::timeout(TIMEOUT, fetch(node.clone()))
            .await
            .ok()
            .flatten();
        let line = sample_line(asked, &node.name, status.as_ref(), &names);
        // One write per line on an append-only file: lines from different nodes never mix.
        if let Err(e) = (&*file).write_all(line.as_bytes()) {
            tracing::warn!(node = node.name, "status samples stopped: {e}");
            break;
        }
    }
}

/// One line of `status.jsonl` (with its newline).
fn sample_line(
    asked: Duration,
    node: &str,
    status: Option<&Value>,
    names: &HashMap<u64, String>,
) -> String {
    let get = |k: &str| status.and_then(|s| s.get(k));
    let leader = get("leader").and_then(Value::as_u64).map(|id| {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("id {id}"))
    });
    let mut line = json!({
        "time": asked.as_nanos().min(u128::from(u64::MAX)) as u64,
        "node": node,
        "role": get("role").and_then(Value::as_str),
        "term": get("term").and_then(Value::as_u64),
        "leader": leader,
    })
    .to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use faultline_targets::httpkv::HttpKvClient;

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
    fn a_lost_answer_is_a_null_role_and_leader_ids_become_names() {
        let names: HashMap<u64, String> = [(2, "n2".to_string())].into();
        let answered = json!({"id": 1, "role": "follower", "term": 4, "leader": 2});
        let line = sample_line(Duration::from_millis(1500), "n1", Some(&answered), &names);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({"time": 1_500_000_000u64, "node": "n1", "role": "follower", "term": 4, "leader": "n2"})
        );
        let lost = sample_line(Duration::from_millis(1750), "n1", None, &names);
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
        runtime.block_on(async {
            let client = HttpKvClient::new(nodes.clone()).unwrap();
            let start = Instant::now();
            let fetch = move |n: NodeSpec| {
                let client = client.clone();
                async move { client.status(&n, Duration::from_millis(300)).await }
            };
            let sampler = StatusSampler::start(nodes, start, path.clone(), fetch);
            tokio::time::sleep(Duration::from_secs(3)).await;
            sampler.stop().await;
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let n1: Vec<&Value> = lines.iter().filter(|v| v["node"] == "n1").collect();
        let n9: Vec<&Value> = lines.iter().filter(|v| v["node"] == "n9").collect();
        // About 3 s / 250 ms samples each; timing on a loaded machine varies.
        assert!(
            n1.len() >= 6 && n1.len() <= 14,
            "{} samples of n1",
            n1.len()
        );
        assert!(n9.len() >= 6, "{} samples of n9", n9.len());
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
