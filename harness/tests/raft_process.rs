//! Real-process tests of the bundled Raft KV: `faultline node` processes on loopback.
//!
//! - a 3-node cluster survives `kill -9` of its leader: every acknowledged write stays
//!   readable, and the restarted node catches up through a snapshot install;
//! - bad input — malformed peer frames, garbage HTTP bodies, unknown routes, a corrupt WAL record
//!   in the middle of the log — gets a clear error, never a crash or silent loss.
//!
//! Every process is started through [`Cluster`], whose `Drop` kills and reaps it, so a failing
//! assertion leaves nothing running.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faultline_raft::client::{Client, Reply};
use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

struct NodeSpec {
    id: u64,
    client: String,
    peer: String,
}

/// A set of `faultline node` processes sharing one temporary directory.
struct Cluster {
    dir: PathBuf,
    specs: Vec<NodeSpec>,
    /// Address the other nodes dial for each node's peer port (a proxy, when set).
    dial: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
    extra_args: Vec<String>,
    client: Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn new(name: &str, n: u64, extra_args: &[&str]) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("faultline-raft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let specs = (1..=n)
            .map(|id| NodeSpec {
                id,
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
            })
            .collect();
        Cluster {
            dir,
            specs,
            dial: BTreeMap::new(),
            children: BTreeMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            client: Client::new(Duration::from_secs(5)),
        }
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("data{id}"))
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.log"))
    }

    fn addr(&self, id: u64) -> String {
        self.specs[id as usize - 1].client.clone()
    }

    fn command(&self, id: u64) -> Command {
        let peers: Vec<String> = self
            .specs
            .iter()
            .map(|s| format!("{}={}", s.id, self.dial.get(&s.id).unwrap_or(&s.peer)))
            .collect();
        let spec = &self.specs[id as usize - 1];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
        cmd.arg("node")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--client-addr", &spec.client, "--peer-addr", &spec.peer])
            .args(["--peers", &peers.join(",")])
            .args(&self.extra_args);
        cmd
    }

    fn start(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("log file");
        let child = self
            .command(id)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn faultline node");
        self.children.insert(id, child);
    }

    fn start_all(&mut self) {
        for id in 1..=self.specs.len() as u64 {
            self.start(id);
        }
    }

    /// `kill -9`.
    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn status(&self, id: u64) -> Option<Value> {
        self.client
            .status(&self.addr(id))
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
    }

    fn wait_for<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(x) = f() {
                return x;
            }
            if Instant::now() > until {
                let logs: Vec<String> = self
                    .specs
                    .iter()
                    .map(|s| std::fs::read_to_string(self.log_path(s.id)).unwrap_or_default())
                    .collect();
                panic!(
                    "timed out waiting for {what}; node logs:\n{}",
                    logs.join("\n----\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn leader(&self) -> u64 {
        self.wait_for("a leader", 20, || {
            self.children
                .keys()
                .copied()
                .find(|&id| self.status(id).is_some_and(|s| s["role"] == "leader"))
        })
    }

    /// Writes through whichever node leads, following redirects; returns the answer.
    fn put(&self, key: &str, value: &Value) -> Reply {
        let mut target = self.leader();
        for _ in 0..50 {
            match self.client.kv_put(&self.addr(target), key, value) {
                Ok(r) if r.status == 503 => {
                    std::thread::sleep(Duration::from_millis(50));
                    target = self.leader();
                }
                Ok(r) => return r,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    target = self.leader();
                }
            }
        }
        panic!("could not write {key}");
    }
}

/// kill -9 of the leader loses no acknowledged write, and the restarted node catches up — via a
/// snapshot, because the others compact past its log while it is down.
#[test]
fn raft_cluster_survives_kill_9_of_the_leader_and_the_restarted_node_catches_up_by_snapshot() {
    let mut c = Cluster::new("kill9", 3, &["--snapshot-threshold", "50"]);
    c.start_all();
    let mut acked: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..60 {
        let (k, v) = (format!("key{}", i % 40), json!({ "n": i }));
        let r = c.put(&k, &v);
        assert_eq!(r.status, 200, "{:?}", r.body);
        acked.insert(k, v);
    }
    let old = c.leader();
    let old_last = c
        .status(old)
        .map_or(0, |s| s["last_log_index"].as_u64().unwrap_or(0));
    c.kill(old);

    // The others elect a new leader and take many more writes: their snapshots move past
    // everything the killed node has.
    let new = c.leader();
    assert_ne!(new, old);
    for i in 60..260 {
        let (k, v) = (format!("key{}", i % 70), json!(i));
        let r = c.put(&k, &v);
        assert_eq!(r.status, 200, "{:?}", r.body);
        acked.insert(k, v);
    }
    let compacted = c
        .status(new)
        .map_or(0, |s| s["snapshot_index"].as_u64().unwrap_or(0));
    assert!(
        compacted > old_last,
        "leader compacted to {compacted}, killed node had {old_last}"
    );

    c.start(old);
    let target = c
        .status(new)
        .map_or(0, |s| s["commit_index"].as_u64().unwrap_or(0));
    let st = c.wait_for("the restarted node to catch up", 20, || {
        c.status(old)
            .filter(|s| s["applied_index"].as_u64().unwrap_or(0) >= target)
    });
    assert!(
        st["snapshots_installed"].as_u64().unwrap_or(0) >= 1,
        "the restarted node should have caught up through InstallSnapshot: {st}"
    );

    // Every acknowledged write is readable (linearizable reads through the leader).
    let leader = c.leader();
    for (k, v) in &acked {
        let r = c.client.kv_get(&c.addr(leader), k).expect("read");
        assert_eq!(r.value(), Some(v), "key {k}: {:?}", r.body);
    }
    // All three replicas converge to the same state.
    c.wait_for("identical replicas", 20, || {
        let s: Vec<Value> = (1..=3).filter_map(|id| c.status(id)).collect();
        let same = s.len() == 3
            && s.iter().all(|x| {
                x["applied_index"] == s[0]["applied_index"]
                    && x["state_digest"] == s[0]["state_digest"]
            });
        same.then_some(())
    });
}

/// Malformed frames on the peer port are logged and the connection dropped; the node keeps
/// serving.
#[test]
fn raft_malformed_peer_frames_are_rejected_without_harm() {
    let mut c = Cluster::new("frames", 3, &[]);
    c.start_all();
    let leader = c.leader();
    let peer = c.specs[leader as usize - 1].peer.clone();
    let frame = |kind: u8, payload: &[u8], crc_ok: bool| {
        let mut body = vec![kind];
        body.extend_from_slice(payload);
        let mut crc = crc32fast_hash(&body);
        if !crc_ok {
            crc ^= 1;
        }
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&crc.to_le_bytes());
        f.extend_from_slice(&body);
        f
    };
    let mut hello = Vec::new();
    hello.extend_from_slice(&1u32.to_le_bytes());
    hello.extend_from_slice(&9u32.to_le_bytes());
    hello.extend_from_slice(b"faultline");
    let other = if leader == 1 { 2u64 } else { 1 };
    hello.extend_from_slice(&other.to_le_bytes());
    hello.extend_from_slice(&leader.to_le_bytes());
    hello.extend_from_slice(&0u32.to_le_bytes());
    let mut wrong_cluster = hello.clone();
    wrong_cluster[8..17].copy_from_slice(b"otherclus");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        (
            "absurd length",
            [u32::MAX.to_le_bytes(), 0u32.to_le_bytes()].concat(),
        ),
        ("bad checksum", frame(1, &hello, false)),
        ("message before handshake", frame(2, &[0u8; 30], true)),
        ("wrong cluster", frame(1, &wrong_cluster, true)),
        (
            "malformed message after handshake",
            [frame(1, &hello, true), frame(2, &[7u8; 13], true)].concat(),
        ),
        ("truncated handshake", frame(1, &hello[..10], true)),
        // 32 MiB is under the 64 MiB frame limit, but no handshake is that big: refused from
        // the header, before the node allocates a buffer for it.
        (
            "oversized handshake",
            [(32u32 << 20).to_le_bytes(), 0u32.to_le_bytes()].concat(),
        ),
    ];
    for (name, bytes) in &cases {
        let mut s = TcpStream::connect(&peer).expect("connect to peer port");
        let _ = s.write_all(bytes);
        let _ = s.flush();
        drop(s);
        // Still alive and still the same healthy cluster.
        let r = c.put(&format!("after-{}", name.replace(' ', "-")), &json!(name));
        assert_eq!(r.status, 200, "after {name}: {:?}", r.body);
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(c.log_path(leader)).unwrap_or_default();
    for needle in [
        "frame length",
        "checksum",
        "expected a handshake",
        "cluster",
        "malformed message",
        "malformed handshake",
        "handshake frame length 33554432 outside 1..=1024",
    ] {
        assert!(
            log.contains(needle),
            "log should explain {needle:?}:\n{log}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
    assert!(c.status(leader).is_some());
}

fn crc32fast_hash(b: &[u8]) -> u32 {
    // CRC-32 (IEEE), bitwise: the test builds frames independently of the implementation.
    let mut crc = 0xFFFF_FFFFu32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Garbage bodies, unknown routes and methods, bad keys: each a 4xx with a JSON error saying
/// the request was not executed; unknown keys read as null.
#[test]
fn raft_http_bad_requests_get_clear_json_errors() {
    let mut c = Cluster::new("http", 1, &[]);
    c.start_all();
    let addr = c.addr(c.leader());
    let cl = &c.client;
    let check = |r: Result<Reply, String>, status: u16, error: &str| {
        let r = r.expect("request");
        assert_eq!(r.status, status, "{:?}", r.body);
        assert_eq!(r.body["error"], error, "{:?}", r.body);
        assert_eq!(r.body["outcome"], "not-executed", "{:?}", r.body);
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    check(
        cl.send("PUT", &addr, "/kv/a", "not json"),
        400,
        "bad-request",
    );
    check(cl.send("PUT", &addr, "/kv/a", "[1,2]"), 400, "bad-request");
    check(
        cl.send("PUT", &addr, "/kv/a", r#"{"valeu": 1}"#),
        400,
        "bad-request",
    );
    check(
        cl.send("PUT", &addr, "/kv/a", r#"{"value": 1, "extra": 2}"#),
        400,
        "bad-request",
    );
    check(
        cl.send("POST", &addr, "/kv/a/cas", r#"{"from": 1}"#),
        400,
        "bad-request",
    );
    check(
        cl.send("PUT", &addr, "/kv/a", "\u{0}\u{1}\u{2}"),
        400,
        "bad-request",
    );
    check(
        cl.send(
            "PUT",
            &addr,
            &format!("/kv/{}", "k".repeat(2000)),
            r#"{"value":1}"#,
        ),
        400,
        "bad-request",
    );
    // A body over the limit (1 MiB): the server answers once the limit is exceeded.
    let mut s = TcpStream::connect(&addr).expect("connect");
    write!(s, "PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 2 << 20)
        .expect("write");
    let _ = s.write_all(&vec![b' '; (1 << 20) + (64 << 10)]);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = String::new();
    let mut buf = [0u8; 4096];
    while !answer.contains("outcome") {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#""error":"body-too-large""#)
            && answer.contains(r#""outcome":"not-executed""#),
        "{answer}"
    );
    check(cl.get(&addr, "/kv/%FF%FE"), 400, "bad-request");
    check(cl.get(&addr, "/nope"), 404, "not-found");
    check(cl.get(&addr, "/kv/"), 404, "not-found");
    check(cl.get(&addr, "/kv/a/b/c"), 404, "not-found");
    check(
        cl.send("POST", &addr, "/kv/a", "{}"),
        405,
        "method-not-allowed",
    );
    // Unknown keys read as null; values round-trip canonically; CAS mismatch reports the value.
    let r = cl.kv_get(&addr, "never-written").expect("get");
    assert_eq!((r.status, r.value()), (200, Some(&Value::Null)));
    let r = cl
        .send(
            "PUT",
            &addr,
            "/kv/weird%2Fkey%20%E2%9C%93",
            r#"{"value": {"b": 1, "a": [true, null]}}"#,
        )
        .expect("put");
    assert_eq!(r.status, 200);
    let r = cl.kv_get(&addr, "weird/key ✓").expect("get");
    assert_eq!(r.value(), Some(&json!({"a": [true, null], "b": 1})));
    let r = cl
        .kv_cas(&addr, "weird/key ✓", &json!(5), &json!(6))
        .expect("cas");
    assert_eq!(r.status, 409);
    assert_eq!(r.body["outcome"], "not-executed");
    assert_eq!(r.body["current"], json!({"a": [true, null], "b": 1}));
    let r = cl
        .kv_cas(
            &addr,
            "weird/key ✓",
            &json!({"a": [true, null], "b": 1}),
            &json!(6),
        )
        .expect("cas");
    assert_eq!((r.status, r.value()), (200, Some(&json!(6))));
}

fn wal_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("wal-"))
        })
        .expect("a WAL file")
}

/// A torn tail is recovered from without losing acknowledged writes; a corrupt record in the
/// middle of the WAL stops the node with an error naming the file and offset.
#[test]
fn raft_wal_torn_tail_is_tolerated_but_mid_log_corruption_is_a_clear_startup_error() {
    let mut c = Cluster::new("wal", 1, &[]);
    c.start_all();
    for i in 0..20 {
        assert_eq!(c.put(&format!("k{i}"), &json!(i)).status, 200);
    }
    c.kill(1);
    let wal = wal_file(&c.data_dir(1));
    // A torn final write: append half a record.
    let mut data = std::fs::read(&wal).expect("wal");
    let good_len = data.len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&wal)
        .and_then(|mut f| f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]))
        .expect("append");
    c.start(1);
    let leader = c.leader();
    for i in 0..20 {
        let r = c
            .client
            .kv_get(&c.addr(leader), &format!("k{i}"))
            .expect("read");
        assert_eq!(
            r.value(),
            Some(&json!(i)),
            "acknowledged write k{i} survived the torn tail"
        );
    }
    c.kill(1);
    let log = std::fs::read_to_string(c.log_path(1)).unwrap_or_default();
    assert!(log.contains("torn final record"), "{log}");

    // Corrupt a byte in the middle of the log (followed by valid records).
    let wal = wal_file(&c.data_dir(1));
    data = std::fs::read(&wal).expect("wal");
    assert!(data.len() >= good_len);
    let offset = data.len() / 2;
    data[offset] ^= 0x5A;
    std::fs::write(&wal, &data).expect("write");
    let out = c.command(1).output().expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must refuse to start: {stderr}");
    assert_eq!(out.status.code(), Some(254), "{stderr}");
    assert!(
        stderr.contains(&wal.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("offset"), "names the offset: {stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing was truncated.
    assert_eq!(std::fs::read(&wal).expect("wal"), data);
}

/// Bad command lines are errors that name the flag.
#[test]
fn raft_node_bad_flags_name_the_flag() {
    let c = Cluster::new("flags", 1, &[]);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .arg("node")
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    let dir = c.dir.join("d").display().to_string();
    let base = [
        "--id",
        "1",
        "--data-dir",
        &dir,
        "--client-addr",
        "127.0.0.1:0",
        "--peer-addr",
        "127.0.0.1:0",
    ];
    for (extra, needle) in [
        (vec!["--peers", "2=nowhere"], "--peers"),
        (vec!["--peers", "x=127.0.0.1:1"], "--peers"),
        (vec!["--bug", "no-such-bug"], "--bug"),
        (vec!["--read-mode", "sometimes"], "--read-mode"),
        (vec!["--heartbeat-ms", "500"], "--heartbeat-ms"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra);
        let (code, text) = run(&args);
        assert_eq!(code, Some(254), "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    let (code, text) = run(&["--data-dir", &dir]);
    assert_eq!(code, Some(254));
    assert!(text.contains("--id"), "{text}");
    let (code, text) = run(&["--bug", "help"]);
    assert_eq!(code, Some(0));
    for b in faultline_raft::bugs::ALL_BUGS {
        assert!(text.contains(b.name), "{text}");
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} failed");
}

/// A TCP proxy in front of one node's peer port that can be cut: then it drops every
/// connection and refuses new ones, so the node hears nothing from its peers.
struct Proxy {
    addr: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (cut2, conns2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(&target) else {
                    continue;
                };
                let pairs = [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ];
                if let Ok(mut list) = conns2.lock() {
                    list.push(inbound);
                    list.push(outbound);
                }
                for pair in pairs {
                    if let (Ok(mut from), Ok(mut to)) = pair {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        Proxy { addr, cut, conns }
    }

    /// How many connections the proxy has carried so far.
    fn carried(&self) -> usize {
        self.conns.lock().map_or(0, |l| l.len() / 2)
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(list) = self.conns.lock() {
            for s in list.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// A lease-mode leader that was SIGSTOPped and cut off while the others elected a new leader and
/// took a write must not answer a read from its old lease when it is resumed: the node catches
/// its clock up before it looks at the request (nothing from its peers can tell it otherwise).
///
/// The timings make the outcome deterministic rather than a race. The lease is the election
/// timeout less two ticks and the drift allowance (500 - 20 - 30 = 450 ms of the node's ticks),
/// renewed by every 50 ms heartbeat round, so when the node is stopped it holds at least ~400 ms
/// of lease *in ticks*. The others cannot elect a new leader sooner than an election timeout
/// (500 ms) after they last heard from it, so by the time the read is sent the lease has expired
/// in real time. A node that did not catch its ticks up after SIGCONT would see its lease still
/// valid for hundreds of milliseconds and answer the stale value; this test then fails.
#[test]
fn raft_lease_reads_are_not_served_from_an_expired_lease_after_sigstop() {
    let mut c = Cluster::new(
        "sigstop",
        3,
        &[
            "--read-mode",
            "lease",
            "--tick-ms",
            "10",
            "--election-timeout-ms",
            "500",
            "--heartbeat-ms",
            "50",
            "--lease-drift-ms",
            "30",
        ],
    );
    let proxies: Vec<Proxy> = c
        .specs
        .iter()
        .map(|s| Proxy::start(s.peer.clone()))
        .collect();
    for (i, p) in proxies.iter().enumerate() {
        c.dial.insert(i as u64 + 1, p.addr.clone());
    }
    c.start_all();
    assert_eq!(c.put("k", &json!(1)).status, 200);
    let old = c.leader();
    let r = c.client.kv_get(&c.addr(old), "k").expect("read");
    assert_eq!(r.value(), Some(&json!(1)));
    // The peers really talk through the proxies (otherwise cutting one would isolate nothing):
    // the other two nodes each hold a link to the leader through its proxy.
    c.wait_for(
        "both other nodes linked to the leader through its proxy",
        10,
        || (proxies[old as usize - 1].carried() >= 2).then_some(()),
    );

    // Stop the old leader, then cut it off from its peers, so nothing it receives can depose
    // it: every link *to* it goes through its proxy. (Stopping first means its lease, counted
    // in its own ticks, is frozen at what it held while it was still being renewed.)
    signal(&c.children[&old], "-STOP");
    struct Cont(u32);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
        }
    }
    let _cont = Cont(c.children[&old].id());
    proxies[old as usize - 1].cut();
    let new = c.wait_for("a new leader", 20, || {
        (1..=3u64)
            .filter(|&id| id != old)
            .find(|&id| c.status(id).is_some_and(|s| s["role"] == "leader"))
    });
    let r = c
        .client
        .kv_put(&c.addr(new), "k", &json!(2))
        .expect("write");
    assert_eq!(r.status, 200, "{:?}", r.body);

    // The read reaches the stopped node's socket, then the node resumes.
    let addr = c.addr(old);
    let reader =
        std::thread::spawn(move || Client::new(Duration::from_secs(10)).kv_get(&addr, "k"));
    std::thread::sleep(Duration::from_millis(300));
    signal(&c.children[&old], "-CONT");
    let r = reader
        .join()
        .expect("reader thread")
        .expect("read answered");
    assert!(
        r.value() != Some(&json!(1)),
        "the resumed old leader served a stale read from an expired lease: {:?}",
        r.body
    );
    // Cut off, it cannot confirm a read with a quorum: the read fails definitely.
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        c.children.contains_key(&old) && c.status(old).is_some(),
        "the old leader is still running"
    );
}

/// A snapshot from the "leader" whose data does not decode stops the node with a clear error
/// instead of marking it applied over the old state (silent divergence); nothing of it was
/// persisted, so the node restarts from its old state.
#[test]
fn raft_a_snapshot_that_does_not_decode_stops_the_node_and_is_not_persisted() {
    let mut c = Cluster::new("badsnap", 3, &[]);
    // Only node 1 runs; the test plays node 2, a leader of term 7.
    c.start(1);
    c.wait_for("node 1 to serve", 20, || c.status(1));
    let peer = c.specs[0].peer.clone();
    let frame = |kind: u8, payload: &[u8]| {
        let mut body = vec![kind];
        body.extend_from_slice(payload);
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&crc32fast_hash(&body).to_le_bytes());
        f.extend_from_slice(&body);
        f
    };
    let mut hello = Vec::new();
    hello.extend_from_slice(&1u32.to_le_bytes()); // protocol version
    hello.extend_from_slice(&9u32.to_le_bytes());
    hello.extend_from_slice(b"faultline");
    hello.extend_from_slice(&2u64.to_le_bytes()); // from
    hello.extend_from_slice(&1u64.to_le_bytes()); // to
    hello.extend_from_slice(&0u32.to_le_bytes()); // client address ""
    let garbage = b"this is not a key-value snapshot";
    let mut snap = Vec::new();
    for v in [2u64, 1, 7] {
        snap.extend_from_slice(&v.to_le_bytes()); // from, to, term
    }
    snap.push(9); // InstallSnapshot
    for v in [1u64, 50, 7] {
        snap.extend_from_slice(&v.to_le_bytes()); // read_seq, index, term
    }
    snap.extend_from_slice(&(garbage.len() as u32).to_le_bytes());
    snap.extend_from_slice(garbage);
    let mut s = TcpStream::connect(&peer).expect("connect to peer port");
    s.write_all(&[frame(1, &hello), frame(2, &snap)].concat())
        .expect("send");

    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let exited = c
            .children
            .get_mut(&1)
            .and_then(|ch| ch.try_wait().ok().flatten());
        if let Some(st) = exited {
            break st;
        }
        let log = std::fs::read_to_string(c.log_path(1)).unwrap_or_default();
        assert!(
            Instant::now() < until,
            "node 1 kept running after an undecodable snapshot:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(s);
    let log = std::fs::read_to_string(c.log_path(1)).unwrap_or_default();
    assert_eq!(status.code(), Some(254), "{log}");
    assert!(
        log.contains("snapshot from the leader at index 50 (term 7) does not decode"),
        "{log}"
    );
    assert!(log.contains("stopping"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // Restarted, it has its old (empty) state: the snapshot was neither applied nor stored.
    c.start(1);
    let st = c.wait_for("node 1 to serve again", 20, || c.status(1));
    assert_eq!(st["snapshot_index"], 0, "{st}");
    assert_eq!(st["applied_index"], 0, "{st}");
    assert_eq!(st["snapshots_installed"], 0, "{st}");
}
