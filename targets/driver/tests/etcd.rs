//! The etcd target against a real 3-member etcd cluster (Debian's `etcd-server`, 3.4), started
//! on free loopback ports through `process::spawn`, as the controller starts it.
//!
//! Without an `etcd` binary on PATH these tests print `SKIPPED` and pass, unless
//! `FAULTLINE_REQUIRE_ETCD=1` (set by CI), in which case they fail.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faultline_targets::etcd::{self, EtcdClient, EtcdOptions};
use faultline_targets::process::{self, NodeProcess};
use faultline_targets::{NodeSpec, Outcome};
use faultline_workloads::{Op, Request};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// Says something even when the test harness captures output (it captures the print macros,
/// not direct writes to stderr): skips and measurements are always visible.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// The etcd binary, or `None` (after saying so) when it is missing and not required.
fn etcd_or_skip(test: &str) -> Option<PathBuf> {
    match etcd::find_binary(None) {
        Ok(path) => Some(path),
        Err(e) if std::env::var("FAULTLINE_REQUIRE_ETCD").as_deref() == Ok("1") => {
            panic!("FAULTLINE_REQUIRE_ETCD=1, but {e}")
        }
        Err(e) => {
            say(&format!("SKIPPED {test}: {e}"));
            None
        }
    }
}

/// A scratch directory and the member processes in it; dropping it kills every member
/// (SIGKILL to its process group), waits for it to exit, and removes the directory unless
/// the test failed (then it keeps the members' logs and says where).
struct Members {
    dir: PathBuf,
    procs: Vec<Option<NodeProcess>>,
}

impl Members {
    fn kill(&mut self, i: usize) -> Option<Duration> {
        let p = self.procs[i].take()?;
        let start = Instant::now();
        p.signal(Signal::SIGKILL);
        while p.is_running() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!p.is_running(), "member {i} survived SIGKILL");
        Some(start.elapsed())
    }
}

impl Members {
    fn signal(&self, i: usize, signal: Signal) {
        if let Some(p) = &self.procs[i] {
            p.signal(signal);
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            say(&format!("member logs kept in {}", self.dir.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn scratch_dir(test: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("faultline-{test}-{}-{nanos}", std::process::id()))
}

/// `n` members on free loopback ports (all listeners held until every port is chosen, so no
/// two members get the same one).
fn specs(dir: &Path, n: usize) -> Vec<NodeSpec> {
    let listeners: Vec<TcpListener> = (0..2 * n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("listener address").port())
        .collect();
    drop(listeners);
    (0..n)
        .map(|i| {
            let name = format!("n{}", i + 1);
            NodeSpec {
                id: i as u64 + 1,
                client_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * i])),
                peer_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * i + 1])),
                data_dir: dir.join(&name).join("data"),
                log_path: dir.join(format!("{name}.log")),
                name,
            }
        })
        .collect()
}

fn req(key: &str, op: Op) -> Request {
    Request {
        op,
        key: key.to_string(),
    }
}

async fn run(client: &EtcdClient, node: &str, key: &str, op: Op) -> Outcome {
    let done = client
        .execute(node, &req(key, op), Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(
        done.node, node,
        "etcd requests are handled where they are sent"
    );
    done.outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_serve_every_operation_and_survive_losing_their_leader() {
    let Some(binary) = etcd_or_skip("three_members_serve_every_operation") else {
        return;
    };
    let version = etcd::version(&binary).expect("etcd --version");
    say(&format!("etcd {version} from {}", binary.display()));
    assert!(
        version.starts_with("3."),
        "unexpected etcd version {version}"
    );

    let dir = scratch_dir("etcd");
    let nodes = specs(&dir, 3);
    let run_id = format!("etcd-test-{}", std::process::id());
    let opts = EtcdOptions {
        binary: binary.clone(),
        serializable_reads: false,
    };
    let mut members = Members {
        dir: dir.clone(),
        procs: Vec::new(),
    };
    let started = Instant::now();
    for node in &nodes {
        let launch = etcd::launch(&opts, node, &nodes, &run_id);
        members
            .procs
            .push(Some(process::spawn(launch).expect("start an etcd member")));
    }
    let client = EtcdClient::new(nodes.clone(), false).expect("client");
    let leader = client
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("a ready cluster with a leader");
    say(&format!(
        "measured: 3 members answering with leader {leader} {:.2} s after spawning",
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(client.leader().await.as_deref(), Some(leader.as_str()));
    let follower = nodes
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != leader)
        .expect("a follower");

    // Register operations, sent to a follower (it forwards to the leader) and the leader.
    assert_eq!(
        run(&client, &follower, "r1", Op::Read).await,
        Outcome::Ok(Value::Null)
    );
    assert_eq!(
        run(&client, &follower, "r1", Op::Write(json!(1))).await,
        Outcome::Ok(json!(1))
    );
    assert_eq!(
        run(&client, &leader, "r1", Op::Read).await,
        Outcome::Ok(json!(1))
    );
    assert_eq!(
        run(
            &client,
            &leader,
            "r1",
            Op::Cas {
                from: json!(1),
                to: json!(2)
            }
        )
        .await,
        Outcome::Ok(json!([1, 2]))
    );
    assert_eq!(
        run(
            &client,
            &follower,
            "r1",
            Op::Cas {
                from: json!(1),
                to: json!(3)
            }
        )
        .await,
        Outcome::Fail("cas-mismatch".to_string())
    );
    assert_eq!(
        run(&client, &follower, "r1", Op::Read).await,
        Outcome::Ok(json!(2))
    );
    assert_eq!(
        run(
            &client,
            &follower,
            "r2",
            Op::Cas {
                from: Value::Null,
                to: json!(7)
            }
        )
        .await,
        Outcome::Ok(json!([null, 7]))
    );
    assert_eq!(
        run(
            &client,
            &leader,
            "r2",
            Op::Cas {
                from: Value::Null,
                to: json!(8)
            }
        )
        .await,
        Outcome::Fail("cas-mismatch".to_string())
    );
    assert_eq!(
        run(&client, &leader, "r2", Op::Read).await,
        Outcome::Ok(json!(7))
    );

    // The set workload: adds through different members, then whole-set reads.
    assert_eq!(
        run(&client, &leader, "s1", Op::ReadSet).await,
        Outcome::Ok(json!([]))
    );
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(
            run(&client, &node.name, "s1", Op::Add(json!(i))).await,
            Outcome::Ok(json!(i))
        );
    }
    assert_eq!(
        run(&client, &follower, "s1", Op::ReadSet).await,
        Outcome::Ok(json!([0, 1, 2]))
    );
    assert_eq!(
        run(&client, &follower, "r1", Op::ReadSet).await,
        Outcome::Fail("the set key holds 2, which is not an array".to_string())
    );

    // Each member's own copy. A linearizable read through a member first makes it apply
    // everything committed so far, so its local state is up to date.
    let mut states = Vec::new();
    for node in &nodes {
        assert_eq!(
            run(&client, &node.name, "s1", Op::Read).await,
            Outcome::Ok(json!([0, 1, 2]))
        );
        assert_eq!(
            client.local_read(&node.name, "r1").await,
            Ok(Some(json!(2)))
        );
        assert_eq!(
            client.local_read(&node.name, "r2").await,
            Ok(Some(json!(7)))
        );
        assert_eq!(client.local_read(&node.name, "absent").await, Ok(None));
        let state = client.node_state(&node.name).await.expect("node state");
        say(&format!("measured: node_state({}) = {state}", node.name));
        states.push(state);
    }
    for state in &states {
        assert_eq!(state["version"], json!(version));
        // Every member names the same leader (not necessarily the first one: a loaded
        // machine can cause an election).
        assert_eq!(state["leader"], states[0]["leader"], "{states:?}");
        assert!(state["hash"].is_u64(), "no hash in {state}");
        assert!(
            state["raft_term"].as_u64().is_some_and(|t| t >= 2),
            "{state}"
        );
        for field in ["revision", "hash", "hash_kind"] {
            assert_eq!(
                state[field], states[0][field],
                "{field} differs: {states:?}"
            );
        }
    }
    assert!(states[0]["revision"].as_u64().is_some_and(|r| r >= 6));
    assert!(client
        .local_read("n9", "r1")
        .await
        .unwrap_err()
        .contains("unknown node"));

    // Serializable reads (what --serializable-reads uses) answer from the member itself.
    let serializable = EtcdClient::new(nodes.clone(), true).expect("client");
    assert_eq!(
        run(&serializable, &follower, "r1", Op::Read).await,
        Outcome::Ok(json!(2))
    );

    // Pause a follower (SIGSTOP): its kernel still accepts the request, nobody answers. A
    // write that times out after being sent is unknown; a read that times out is a failure
    // (it changed nothing).
    let paused = nodes
        .iter()
        .position(|n| n.name == follower)
        .expect("follower spec");
    members.signal(paused, Signal::SIGSTOP);
    let short = Instant::now() + Duration::from_millis(700);
    let write = client
        .execute(&follower, &req("p1", Op::Write(json!(9))), short)
        .await;
    say(&format!(
        "measured: write to a paused member -> {:?}",
        write.outcome
    ));
    assert_eq!(write.outcome, Outcome::Info("timeout".to_string()));
    let short = Instant::now() + Duration::from_millis(700);
    let read = client.execute(&follower, &req("p1", Op::Read), short).await;
    assert_eq!(read.outcome, Outcome::Fail("timeout".to_string()));
    members.signal(paused, Signal::SIGCONT);
    // The write waited in the member's socket and may still be applied now that it runs
    // again (that is why it is unknown): key p1 holds null or 9, and nothing else uses it.
    let after = run(&client, &follower, "p1", Op::Read).await;
    say(&format!(
        "measured: read of the paused write's key after resuming -> {after:?}"
    ));
    assert!(
        after == Outcome::Ok(Value::Null) || after == Outcome::Ok(json!(9)),
        "{after:?}"
    );
    assert_eq!(
        run(&client, &follower, "r1", Op::Read).await,
        Outcome::Ok(json!(2))
    );

    // Kill the leader (asked afresh). An operation sent to it is refused (nothing was sent);
    // the survivors elect a new leader and keep serving.
    let leader = client.leader().await.expect("a leader before the kill");
    let follower = nodes
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != leader)
        .expect("a follower");
    let leader_index = nodes
        .iter()
        .position(|n| n.name == leader)
        .expect("leader spec");
    let killed_at = Instant::now();
    let reaped = members.kill(leader_index).expect("the leader was running");
    say(&format!(
        "measured: leader {leader} reaped {} ms after SIGKILL",
        reaped.as_millis()
    ));
    let refused = run(&client, &leader, "r1", Op::Write(json!(10))).await;
    say(&format!(
        "measured: write sent to the killed leader -> {refused:?}"
    ));
    match &refused {
        Outcome::Fail(e) => assert!(e.starts_with("connection refused"), "{e}"),
        other => panic!("a write to a dead member must be refused, got {other:?}"),
    }
    assert!(matches!(
        run(&client, &leader, "r1", Op::Read).await,
        Outcome::Fail(e) if e.starts_with("connection refused")
    ));
    assert!(client.node_state(&leader).await.is_none());
    assert!(client.local_read(&leader, "r1").await.is_err());

    // A write sent to a survivor right away is forwarded to the dead leader and lost; etcd
    // answers it only when its own request timeout (5 s + 2 elections) expires. Meanwhile the
    // survivors elect a new leader.
    let during = {
        let client = client.clone();
        let follower = follower.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let done = client
                .execute(
                    &follower,
                    &req("r3", Op::Write(json!(1))),
                    Instant::now() + Duration::from_secs(10),
                )
                .await;
            (done.outcome, sent.elapsed())
        })
    };
    let new_leader = loop {
        match client.leader().await {
            Some(l) if l != leader => break l,
            _ if killed_at.elapsed() > Duration::from_secs(30) => {
                panic!("the survivors elected no leader within 30 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    say(&format!(
        "measured: new leader {new_leader} {} ms after the kill",
        killed_at.elapsed().as_millis()
    ));
    let (during, took) = during.await.expect("the write task");
    say(&format!(
        "measured: write sent to survivor {follower} right after the kill -> {during:?} after {} ms",
        took.as_millis()
    ));
    assert!(
        !matches!(during, Outcome::Ok(_)),
        "a write forwarded to a dead leader cannot have succeeded"
    );
    if let Outcome::Fail(e) = &during {
        assert!(
            e.contains("proposal dropped"),
            "only a dropped proposal is definite: {e}"
        );
    }
    let other = nodes
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != leader && *n != new_leader)
        .expect("the third member");
    assert_eq!(
        run(
            &client,
            &other,
            "r1",
            Op::Cas {
                from: json!(2),
                to: json!(11)
            }
        )
        .await,
        Outcome::Ok(json!([2, 11]))
    );
    assert_eq!(
        run(&client, &new_leader, "r1", Op::Read).await,
        Outcome::Ok(json!(11))
    );
    let err = client
        .wait_ready(Duration::from_millis(300))
        .await
        .expect_err("a dead member is not ready");
    assert!(err.contains(&leader), "{err}");

    drop(members);
    assert!(
        process::processes_of_runs(Some(&run_id)).is_empty(),
        "etcd processes of this run survived the test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_binaries_and_silent_members_give_clear_errors() {
    let missing = Path::new("/nonexistent/bin/etcd");
    let err = etcd::version(missing).expect_err("a missing binary has no version");
    assert!(err.contains("/nonexistent/bin/etcd"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("apt-get install etcd-server"), "{err}");
    assert!(err.contains("--etcd-bin"), "{err}");

    let err = etcd::find_binary(Some(missing)).expect_err("a missing --etcd-bin");
    assert!(
        err.starts_with("--etcd-bin /nonexistent/bin/etcd: no such file"),
        "{err}"
    );
    let dir = std::env::temp_dir();
    let err = etcd::find_binary(Some(&dir)).expect_err("a directory is no binary");
    assert!(err.contains("not a file"), "{err}");

    // A program that is not etcd.
    let not_etcd = Path::new("/bin/true");
    if not_etcd.exists() {
        let err = etcd::version(not_etcd).expect_err("true is not etcd");
        assert!(err.contains("did not print an etcd version"), "{err}");
    }

    // Launching a missing binary fails at spawn, naming it.
    let scratch = scratch_dir("etcd-bad");
    let nodes = specs(&scratch, 3);
    let opts = EtcdOptions {
        binary: missing.to_path_buf(),
        serializable_reads: false,
    };
    let err =
        process::spawn(etcd::launch(&opts, &nodes[0], &nodes, "bad")).expect_err("no such binary");
    assert!(err.contains("/nonexistent/bin/etcd"), "{err}");
    let _ = std::fs::remove_dir_all(&scratch);

    // Members that never started: readiness names them, operations are refused.
    let client = EtcdClient::new(nodes.clone(), false).expect("client");
    let err = client
        .wait_ready(Duration::from_millis(300))
        .await
        .expect_err("nobody answers");
    assert!(err.contains("n1, n2, n3 did not answer"), "{err}");
    assert_eq!(client.leader().await, None);
    let done = client
        .execute(
            "n1",
            &req("k", Op::Write(json!(1))),
            Instant::now() + Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(&done.outcome, Outcome::Fail(e) if e.starts_with("connection refused")),
        "{:?}",
        done.outcome
    );
    let done = client
        .execute(
            "n7",
            &req("k", Op::Read),
            Instant::now() + Duration::from_secs(2),
        )
        .await;
    assert_eq!(done.outcome, Outcome::Fail("unknown node n7".to_string()));

    // The binary that is on PATH, if any, reports a version.
    if let Some(binary) = etcd_or_skip("bad_binaries (version of the real etcd)") {
        assert!(etcd::version(&binary).is_ok_and(|v| v.starts_with('3')));
    }
}
