//! The Consul target. Consul is not installed where this was written, so:
//!
//! * request building and response parsing are tested against responses copied from Consul's
//!   API documentation (`tests/fixtures/consul/`, sources in its README);
//! * `a_live_three_server_cluster_serves_every_operation` runs a real 3-server cluster when a
//!   `consul` binary is on PATH, and otherwise prints `SKIPPED: no consul binary on PATH`.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faultline_targets::consul::wire::{self, Consistency, KvEntry};
use faultline_targets::consul::{self, ConsulClient, ConsulOptions};
use faultline_targets::process::{self, NodeProcess};
use faultline_targets::{NodeSpec, Outcome};
use faultline_workloads::{Op, Request};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// Says something even when the test harness captures output (it captures the print macros,
/// not direct writes to stderr).
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/consul")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

fn spec(i: u64, client: &str, peer: &str) -> NodeSpec {
    NodeSpec {
        name: format!("n{i}"),
        id: i,
        client_addr: addr(client),
        peer_addr: addr(peer),
        data_dir: PathBuf::from(format!("/data/n{i}")),
        log_path: PathBuf::from(format!("/logs/n{i}.log")),
    }
}

// ---- Request building ----

#[test]
fn urls_follow_the_kv_and_status_endpoints() {
    let a = addr("127.0.0.1:8500");
    assert_eq!(
        wire::read_url(a, "my-key", Consistency::Consistent),
        "http://127.0.0.1:8500/v1/kv/my-key?consistent"
    );
    assert_eq!(
        wire::read_url(a, "my-key", Consistency::Stale),
        "http://127.0.0.1:8500/v1/kv/my-key?stale"
    );
    assert_eq!(
        wire::put_url(a, "my-key", None),
        "http://127.0.0.1:8500/v1/kv/my-key"
    );
    assert_eq!(
        wire::put_url(a, "my-key", Some(0)),
        "http://127.0.0.1:8500/v1/kv/my-key?cas=0"
    );
    assert_eq!(
        wire::put_url(a, "my-key", Some(200)),
        "http://127.0.0.1:8500/v1/kv/my-key?cas=200"
    );
    // A key is one path segment whatever it contains.
    assert_eq!(
        wire::read_url(a, "a/b c?d", Consistency::Consistent),
        "http://127.0.0.1:8500/v1/kv/a%2Fb%20c%3Fd?consistent"
    );
    assert_eq!(
        wire::leader_url(a),
        "http://127.0.0.1:8500/v1/status/leader"
    );
    assert_eq!(wire::self_url(a), "http://127.0.0.1:8500/v1/agent/self");
    assert_eq!(
        wire::dump_url(a),
        "http://127.0.0.1:8500/v1/kv/?recurse&stale"
    );
    assert_eq!(wire::value_body(&json!([1, 2])), b"[1,2]");
    assert_eq!(wire::value_body(&json!(7)), b"7");
}

#[test]
fn launch_gives_each_server_its_ports_and_the_others_to_join() {
    let cluster = [
        spec(1, "10.77.0.2:7001", "10.77.0.2:7002"),
        spec(2, "10.77.0.3:7001", "10.77.0.3:7002"),
        spec(3, "10.77.0.4:7001", "10.77.0.4:7002"),
    ];
    let opts = ConsulOptions {
        binary: PathBuf::from("/usr/bin/consul"),
    };
    let l = consul::launch(&opts, &cluster[1], &cluster, "run-1");
    assert_eq!(l.program, PathBuf::from("/usr/bin/consul"));
    assert_eq!(l.args[0], "agent");
    assert!(l.args.contains(&"-server".to_string()));
    let values = |flag: &str| -> Vec<String> {
        l.args
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    };
    let one = |flag: &str| {
        let v = values(flag);
        assert_eq!(v.len(), 1, "{flag}: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("-bootstrap-expect"), "3");
    assert_eq!(one("-node"), "n2");
    assert_eq!(one("-data-dir"), "/data/n2");
    assert_eq!(one("-bind"), "10.77.0.3");
    assert_eq!(one("-client"), "10.77.0.3");
    assert_eq!(one("-http-port"), "7001");
    assert_eq!(one("-server-port"), "7002");
    assert_eq!(one("-serf-lan-port"), "7003");
    assert_eq!(one("-serf-wan-port"), "-1");
    assert_eq!(one("-dns-port"), "-1");
    assert_eq!(one("-grpc-port"), "-1");
    assert_eq!(values("-retry-join"), ["10.77.0.2:7003", "10.77.0.4:7003"]);
    let hcl = values("-hcl");
    assert!(
        hcl.contains(&"ports { grpc_tls = -1 }".to_string()),
        "{hcl:?}"
    );
    assert!(hcl.contains(&"autopilot { cleanup_dead_servers = false }".to_string()));
    assert_eq!(l.log, PathBuf::from("/logs/n2.log"));
    assert_eq!(l.run_id, "run-1");

    assert_eq!(consul::serf_lan_port(&cluster[0]), 7003);
    let top = spec(4, "127.0.0.1:1000", "127.0.0.1:65535");
    assert_eq!(consul::serf_lan_port(&top), 65534);
}

// ---- Response parsing, against the documentation's responses ----

#[test]
fn the_documented_read_response_is_parsed() {
    let entry = wire::parse_read(200, &fixture("kv-read.json"))
        .expect("a valid read")
        .expect("an entry");
    assert_eq!(
        entry,
        KvEntry {
            key: "zip".to_string(),
            value: b"test".to_vec(),
            create_index: 100,
            modify_index: 200,
        }
    );
    // "test" is not what faultline writes: a clear error, not a panic or a wrong value.
    let err = entry.json().expect_err("not JSON");
    assert!(err.contains("\"zip\"") && err.contains("not JSON"), "{err}");

    let entry = wire::parse_read(200, &fixture("kv-read-json-value.json"))
        .expect("a valid read")
        .expect("an entry");
    assert_eq!(entry.json(), Ok(json!([1, 2])));
    assert_eq!(entry.modify_index, 200);
}

#[test]
fn a_missing_key_is_a_404_and_errors_are_text() {
    assert_eq!(wire::parse_read(404, b""), Ok(None));
    let err = wire::parse_read(500, b"No cluster leader").expect_err("an error");
    assert_eq!(err, "HTTP 500: No cluster leader");
    assert!(
        wire::parse_read(200, b"{}").is_err(),
        "an object is not a KV answer"
    );
    assert!(wire::parse_read(200, b"[{\"Key\":\"k\"}]")
        .unwrap_err()
        .contains("CreateIndex"));
    // An entry with an empty value has "Value": null.
    let entries =
        wire::parse_entries(br#"[{"Key":"k","CreateIndex":1,"ModifyIndex":2,"Value":null}]"#)
            .expect("valid");
    assert_eq!(entries[0].value, b"");
    // Control characters in a server's error never reach a terminal raw.
    let err = wire::error_text(500, b"bad\x1b[31m");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn put_answers_and_errors_are_classified() {
    assert_eq!(
        wire::parse_put(200, &fixture("kv-put.json")),
        Outcome::Ok(Value::Bool(true))
    );
    assert_eq!(
        wire::parse_put(200, b"false"),
        Outcome::Fail("cas-mismatch".to_string())
    );
    let fail = |o: Outcome| matches!(o, Outcome::Fail(_));
    let info = |o: Outcome| matches!(o, Outcome::Info(_));
    // Refused before reaching Raft.
    assert!(fail(wire::parse_put(500, b"No cluster leader")));
    assert!(fail(wire::parse_put(429, b"rate limit exceeded")));
    assert!(fail(wire::parse_put(403, b"Permission denied")));
    assert!(fail(wire::parse_put(413, b"Request body too large")));
    assert!(fail(wire::parse_put(400, b"Invalid CAS index")));
    // Possibly applied.
    assert!(info(wire::parse_put(
        500,
        b"leadership lost while committing log"
    )));
    assert!(info(wire::parse_put(500, b"rpc error making call: EOF")));
    assert!(info(wire::parse_put(500, b"timed out enqueuing operation")));
    assert!(info(wire::parse_put(503, b"")));
    assert!(info(wire::parse_put(200, b"maybe")));
}

#[test]
fn the_documented_leader_response_names_a_server_rpc_address() {
    assert_eq!(
        wire::parse_leader(&fixture("status-leader.json")),
        Ok(Some(addr("10.1.10.12:8300")))
    );
    // A server that knows no leader answers an empty string.
    assert_eq!(wire::parse_leader(b"\"\""), Ok(None));
    assert!(wire::parse_leader(b"10.1.10.12:8300").is_err());
    assert!(wire::parse_leader(b"\"not an address\"").is_err());
}

#[test]
fn the_documented_agent_self_response_gives_name_and_version() {
    let state = wire::parse_agent_self(&fixture("agent-self.json")).expect("valid");
    assert_eq!(state, json!({ "node_name": "foobar", "version": "1.0.0" }));
    // Live agents also report Raft statistics under Stats.raft, as strings.
    let with_raft = br#"{"Config":{"NodeName":"n1","Version":"1.17.0"},
        "Stats":{"raft":{"state":"Leader","term":"3","applied_index":"42","commit_index":"42",
        "last_log_index":"42","last_snapshot_index":"0","num_peers":"2"}}}"#;
    let state = wire::parse_agent_self(with_raft).expect("valid");
    assert_eq!(state["state"], "Leader");
    assert_eq!(state["term"], 3);
    assert_eq!(state["applied_index"], 42);
    assert!(wire::parse_agent_self(b"<html>").is_err());
}

#[test]
fn agent_self_gives_a_servers_role_and_term() {
    let with_raft = br#"{"Config":{"NodeName":"n1"},
        "Stats":{"raft":{"state":"Leader","term":"3","num_peers":"2"}}}"#;
    assert_eq!(
        wire::parse_role(with_raft),
        Some(("leader".to_string(), Some(3)))
    );
    let candidate = br#"{"Stats":{"raft":{"state":"Candidate","term":"12"}}}"#;
    assert_eq!(
        wire::parse_role(candidate),
        Some(("candidate".to_string(), Some(12)))
    );
    // The documented response of a client agent has no Raft statistics: no role.
    assert_eq!(wire::parse_role(&fixture("agent-self.json")), None);
    assert_eq!(wire::parse_role(b"<html>"), None);
}

#[test]
fn versions_and_binaries() {
    let doc = String::from_utf8(fixture("version.txt")).expect("utf-8");
    assert_eq!(consul::parse_version(&doc).as_deref(), Some("1.7.0"));
    assert_eq!(
        consul::parse_version("Consul v1.18.1+ent\n").as_deref(),
        Some("1.18.1+ent")
    );
    assert_eq!(consul::parse_version("etcd Version: 3.4.23"), None);

    let missing = Path::new("/nonexistent/bin/consul");
    let err = consul::version(missing).expect_err("missing");
    assert!(
        err.contains("/nonexistent/bin/consul") && err.contains("--consul-bin"),
        "{err}"
    );
    let err = consul::find_binary(Some(missing)).expect_err("missing");
    assert!(
        err.starts_with("--consul-bin /nonexistent/bin/consul: no such file"),
        "{err}"
    );
    if Path::new("/bin/true").exists() {
        let err = consul::version(Path::new("/bin/true")).expect_err("not consul");
        assert!(err.contains("did not print a Consul version"), "{err}");
    }
}

// ---- The client, against servers that are not there ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_are_refused_and_named() {
    // Ports that were free a moment ago: nothing listens there.
    let free: Vec<u16> = (0..6)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("free port"))
        .map(|l| l.local_addr().expect("address").port())
        .collect();
    let nodes: Vec<NodeSpec> = (0..3)
        .map(|i| {
            spec(
                i as u64 + 1,
                &format!("127.0.0.1:{}", free[2 * i]),
                &format!("127.0.0.1:{}", free[2 * i + 1]),
            )
        })
        .collect();
    let client = ConsulClient::new(nodes).expect("client");
    let err = client
        .wait_ready(Duration::from_millis(300))
        .await
        .expect_err("nobody answers");
    assert!(err.contains("n1, n2, n3 did not answer"), "{err}");
    assert_eq!(client.leader().await, None);
    assert_eq!(client.node_state("n1").await, None);
    let deadline = Instant::now() + Duration::from_secs(2);
    for op in [
        Op::Read,
        Op::Write(json!(1)),
        Op::Cas {
            from: Value::Null,
            to: json!(1),
        },
    ] {
        let request = Request {
            op,
            key: "k".to_string(),
        };
        let done = client.execute("n2", &request, deadline).await;
        assert_eq!(done.node, "n2");
        assert!(
            matches!(&done.outcome, Outcome::Fail(e) if e.starts_with("connection refused")),
            "{:?}",
            done.outcome
        );
    }
    assert!(client.local_read("n3", "k").await.is_err());
    assert!(client
        .local_read("n9", "k")
        .await
        .unwrap_err()
        .contains("unknown node"));
}

// ---- A live cluster, when Consul is installed ----

/// A scratch directory and the server processes in it; dropping it kills every server and
/// waits for it to exit.
struct Servers {
    dir: PathBuf,
    procs: Vec<Option<NodeProcess>>,
}

impl Servers {
    fn kill(&mut self, i: usize) {
        if let Some(p) = self.procs[i].take() {
            p.signal(Signal::SIGKILL);
            let start = Instant::now();
            while p.is_running() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            say(&format!("server logs kept in {}", self.dir.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `n` servers on loopback: a free HTTP port each, and a free server RPC port whose successor
/// (Serf LAN, TCP and UDP) is free too. Everything is held until all are chosen.
fn live_specs(dir: &Path, n: usize) -> Vec<NodeSpec> {
    let mut held_tcp = Vec::new();
    let mut held_udp = Vec::new();
    let mut specs = Vec::new();
    while specs.len() < n {
        let http = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("free port");
        let rpc = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("free port");
        let rpc_port = rpc.local_addr().expect("address").port();
        let Some(serf) = rpc_port.checked_add(1) else {
            continue;
        };
        let (Ok(serf_tcp), Ok(serf_udp)) = (
            TcpListener::bind((Ipv4Addr::LOCALHOST, serf)),
            UdpSocket::bind((Ipv4Addr::LOCALHOST, serf)),
        ) else {
            continue;
        };
        let i = specs.len() as u64 + 1;
        let mut s = spec(
            i,
            &http.local_addr().expect("address").to_string(),
            &format!("127.0.0.1:{rpc_port}"),
        );
        s.data_dir = dir.join(&s.name).join("data");
        s.log_path = dir.join(format!("{}.log", s.name));
        specs.push(s);
        held_tcp.extend([http, rpc, serf_tcp]);
        held_udp.push(serf_udp);
    }
    specs
}

async fn run(client: &ConsulClient, node: &str, key: &str, op: Op) -> Outcome {
    let request = Request {
        op,
        key: key.to_string(),
    };
    client
        .execute(node, &request, Instant::now() + Duration::from_secs(10))
        .await
        .outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_three_server_cluster_serves_every_operation() {
    let Ok(binary) = consul::find_binary(None) else {
        say("SKIPPED: no consul binary on PATH (a_live_three_server_cluster_serves_every_operation)");
        return;
    };
    let version = consul::version(&binary).expect("consul version");
    say(&format!("consul {version} from {}", binary.display()));

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("faultline-consul-{}-{nanos}", std::process::id()));
    let nodes = live_specs(&dir, 3);
    let run_id = format!("consul-test-{}", std::process::id());
    let opts = ConsulOptions { binary };
    let mut servers = Servers {
        dir: dir.clone(),
        procs: Vec::new(),
    };
    let started = Instant::now();
    for node in &nodes {
        std::fs::create_dir_all(&node.data_dir).expect("a data directory");
        let launch = consul::launch(&opts, node, &nodes, &run_id);
        servers
            .procs
            .push(Some(process::spawn(launch).expect("start a consul server")));
    }
    let client = ConsulClient::new(nodes.clone()).expect("client");
    let leader = client
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("a ready cluster with a leader");
    say(&format!(
        "measured: 3 Consul servers answering with leader {leader} {:.2} s after spawning",
        started.elapsed().as_secs_f64()
    ));
    let follower = nodes
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != leader)
        .expect("a follower");

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

    // Every server's own copy converges (stale reads may lag the leader briefly).
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r1 = client.local_read(&node.name, "r1").await;
            let r2 = client.local_read(&node.name, "r2").await;
            if r1 == Ok(Some(json!(2))) && r2 == Ok(Some(json!(7))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: r1 {r1:?}, r2 {r2:?}",
                node.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(client.local_read(&node.name, "absent").await, Ok(None));
        let state = client.node_state(&node.name).await.expect("node state");
        say(&format!("measured: node_state({}) = {state}", node.name));
        assert_eq!(state["node_name"], json!(node.name));
        assert_eq!(state["kv_keys"], json!(3));
    }

    // Kill the leader: requests to it are refused; the others elect a new leader.
    let leader_index = nodes.iter().position(|n| n.name == leader).expect("leader");
    let killed_at = Instant::now();
    servers.kill(leader_index);
    let refused = run(&client, &leader, "r1", Op::Write(json!(10))).await;
    say(&format!(
        "measured: write sent to the killed leader -> {refused:?}"
    ));
    assert!(
        matches!(&refused, Outcome::Fail(e) if e.starts_with("connection refused")),
        "{refused:?}"
    );
    let new_leader = loop {
        match client.leader().await {
            Some(l) if l != leader => break l,
            _ if killed_at.elapsed() > Duration::from_secs(60) => {
                panic!("the survivors elected no leader within 60 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    say(&format!(
        "measured: new Consul leader {new_leader} {} ms after the kill",
        killed_at.elapsed().as_millis()
    ));
    assert_eq!(
        run(
            &client,
            &new_leader,
            "r1",
            Op::Cas {
                from: json!(2),
                to: json!(11)
            }
        )
        .await,
        Outcome::Ok(json!([2, 11]))
    );
    drop(servers);
    assert!(process::processes_of_runs(Some(&run_id)).is_empty());
}
