//! Network partitions and clock faults on real process clusters: network namespaces and
//! nftables (as root), the userspace proxy (as anyone), libfaketime clocks. These tests need
//! root, iproute2, nftables and libfaketime, which `scripts/test` installs; CI runs as root.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

/// These tests share the host's network state (and one compares it before and after), so
/// they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn history(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("history.jsonl"))
        .expect("history")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Everything on the host a run could leave behind or change.
fn host_state() -> String {
    let cmd = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("host command");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let links: String = cmd(&["ip", "-o", "link", "show"])
        .lines()
        .map(|l| l.split('@').next().unwrap_or(l).to_string() + "\n")
        .filter(|l| l.contains(" fl"))
        .collect();
    format!(
        "routes:\n{}\nnft:\n{}\nnetns:\n{}\nlinks:\n{}",
        cmd(&["ip", "route", "show", "table", "all"]),
        cmd(&["nft", "list", "ruleset"]),
        cmd(&["ip", "netns", "list"])
            .lines()
            .filter(|l| l.starts_with("fl-"))
            .collect::<Vec<_>>()
            .join("\n"),
        links,
    )
}

/// Partition windows from a history: (start time, end time, grudge).
fn partitions(h: &[Value]) -> Vec<(u64, u64, BTreeMap<String, Vec<String>>)> {
    let mut open = BTreeMap::new();
    let mut out = Vec::new();
    for e in h.iter().filter(|e| e["process"] == "nemesis") {
        let id = e["value"]["id"].as_u64().unwrap_or(0);
        if e["f"] == "start" && e["value"]["fault"] == "partition" {
            let grudge: BTreeMap<String, Vec<String>> =
                serde_json::from_value(e["value"]["grudge"].clone()).unwrap_or_default();
            open.insert(id, (e["time"].as_u64().unwrap_or(0), grudge));
        } else if e["f"] == "stop" {
            if let Some((start, grudge)) = open.remove(&id) {
                out.push((start, e["time"].as_u64().unwrap_or(0), grudge));
            }
        }
    }
    out
}

#[test]
fn isolating_the_leader_of_five_nodes_blocks_its_writes_and_a_new_leader_takes_over() {
    let _serial = serial();
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let dir = scratch("isolate");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--nodes",
        "5",
        "--net",
        "netns",
        "--nemesis",
        "partition",
        "--partitions",
        "isolate-leader",
        "--nemesis-interval",
        "3",
        "--time-limit",
        "20",
        "--seed",
        "3",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run_dir = latest_run(&results);
    let h = history(&run_dir);
    let windows = partitions(&h);
    assert!(windows.len() >= 2, "{windows:?}");
    let mut invoked: BTreeMap<String, &Value> = BTreeMap::new();
    let mut new_leader_writes = 0;
    for e in &h {
        let p = e["process"].to_string();
        if e["type"] == "invoke" {
            invoked.insert(p, e);
            continue;
        }
        let Some(inv) = invoked.get(&p) else { continue };
        if e["type"] != "ok" || !(e["f"] == "write" || e["f"] == "cas") {
            continue;
        }
        let (t0, node) = (
            inv["time"].as_u64().unwrap_or(0),
            e["node"].as_str().unwrap_or(""),
        );
        for (start, end, grudge) in &windows {
            // The isolated node is the one that hears nobody.
            let isolated: Vec<&String> = grudge
                .iter()
                .filter(|(_, b)| b.len() == 4)
                .map(|(n, _)| n)
                .collect();
            if t0 > *start && t0 < *end {
                assert!(
                    !isolated.contains(&&node.to_string()),
                    "the isolated leader {node} acknowledged a write invoked during the partition: {e}"
                );
                new_leader_writes += 1;
            }
        }
    }
    assert!(
        new_leader_writes > 20,
        "the majority side accepted only {new_leader_writes} writes"
    );
    assert_eq!(results_json(&run_dir)["verdict"], "valid");
    assert_eq!(node_processes(&results), 0);
    no_network_left(&["isolate-leader"], &out);
}

/// Runs `seeds` tests with `args` and returns how many were invalid, checking that no run left
/// a node or a network namespace behind.
fn runs_of(name: &str, args: &[&str], seeds: &[&str]) -> (usize, Vec<String>) {
    let results = scratch(name).join("results");
    invalid_runs(&results, args, seeds, |all, out| {
        assert_eq!(node_processes(&results), 0);
        no_network_left(all, out);
    })
}

/// Every run here ends before the next starts and nothing else runs meanwhile: none may leave
/// a network namespace behind. (A CI run once found two networks of earlier 5-node runs left
/// at the start of the clean-up test; this says which run and shows what it printed.)
fn no_network_left(args: &[&str], out: &std::process::Output) {
    let left = fl_namespaces();
    assert!(
        left.is_empty(),
        "{args:?} left namespaces {left:?}; it printed: {}",
        stderr(out)
    );
}

/// Measured on the development machine, 20 s runs isolating the leader every 2 s with 20
/// clients: 5 of 5 seeds invalid with the bug (4 of 5 when halves are mixed in, 3 of 3 over
/// all six partition shapes in 30 s runs), and the clean build valid in every run.
#[test]
fn stale_read_bug_is_caught_by_partitions_and_the_clean_build_passes() {
    let _serial = serial();
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let args = [
        "--nodes",
        "5",
        "--net",
        "netns",
        "--nemesis",
        "partition",
        "--partitions",
        "isolate-leader",
        "--nemesis-interval",
        "2",
        "--concurrency",
        "20",
        "--time-limit",
        "20",
    ];
    let mut with_bug = args.to_vec();
    with_bug.extend(["--raft-bug", "stale-read"]);
    let (invalid, explanations) = runs_of("stale-read", &with_bug, &["1", "2", "3"]);
    assert!(
        invalid >= 2,
        "stale-read caught in only {invalid} of 3 seeds"
    );
    assert!(
        explanations.iter().any(|s| s.contains("read of")),
        "{explanations:?}"
    );
    let (invalid, explanations) = runs_of("clean-partitions", &args, &["1"]);
    assert_eq!(
        invalid, 0,
        "the clean build was reported invalid: {explanations:?}"
    );
}

/// Measured on the development machine: 3 of 3 seeds invalid with these settings (isolating
/// the leader every second; short client timeouts so clients keep reading from the old leader;
/// many clients); the clean lease build valid in 3 of 3 with the same settings.
#[test]
fn lease_ignores_drift_bug_is_caught_in_lease_mode() {
    let _serial = serial();
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let args = [
        "--nodes",
        "5",
        "--net",
        "netns",
        "--nemesis",
        "partition",
        "--partitions",
        "isolate-leader",
        "--nemesis-interval",
        "1",
        "--op-timeout",
        "0.25",
        "--concurrency",
        "20",
        "--rate",
        "0",
        "--raft-read-mode",
        "lease",
        "--time-limit",
        "15",
        "--recovery",
        "2",
    ];
    let mut with_bug = args.to_vec();
    with_bug.extend(["--raft-bug", "lease-ignores-drift"]);
    let (invalid, _) = runs_of("lease", &with_bug, &["1", "2", "3"]);
    assert!(
        invalid >= 2,
        "lease-ignores-drift caught in only {invalid} of 3 seeds"
    );
    let (invalid, explanations) = runs_of("clean-lease", &args, &["1"]);
    assert_eq!(
        invalid, 0,
        "the clean lease build was reported invalid: {explanations:?}"
    );
}

#[test]
fn clock_faults_are_applied_verified_and_recorded() {
    let _serial = serial();
    let dir = scratch("clock");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--nodes",
        "3",
        "--nemesis",
        "clock",
        "--clock-modes",
        "bump",
        "--clock-skew-ms",
        "800",
        "--nemesis-interval",
        "2.5",
        "--time-limit",
        "12",
        "--recovery",
        "1",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run_dir = latest_run(&results);
    let h = history(&run_dir);
    let starts: Vec<&Value> = h
        .iter()
        .filter(|e| {
            e["process"] == "nemesis" && e["f"] == "start" && e["value"]["fault"] == "clock"
        })
        .collect();
    assert!(!starts.is_empty());
    for s in starts {
        let offsets = s["value"]["offsets_ms"].as_object().expect("offsets");
        for (node, offset) in offsets {
            let asked = offset.as_f64().unwrap();
            let seen = s["value"]["measured_ms"][node]
                .as_f64()
                .expect("measured on the node");
            assert!(asked.abs() >= 200.0, "{s}");
            assert!(
                (seen - asked).abs() < 150.0,
                "{node}: asked {asked} ms, node shows {seen} ms"
            );
        }
    }
    // Every clock is back when the fault ends.
    for e in h
        .iter()
        .filter(|e| e["process"] == "nemesis" && e["f"] == "stop")
    {
        for (node, m) in e["value"]["measured_ms"].as_object().into_iter().flatten() {
            assert!(
                m.as_f64().unwrap_or(f64::MAX).abs() < 150.0,
                "{node} not reset: {e}"
            );
        }
    }
}

#[test]
fn clock_faults_are_refused_for_binaries_libfaketime_cannot_fool() {
    let _serial = serial();
    let dir = scratch("static");
    let toml = dir.join("static.toml");
    // ldconfig is statically linked on glibc systems.
    std::fs::write(
        &toml,
        "nemesis = [\"clock\"]\n[raft]\nbinary = \"/sbin/ldconfig\"\n",
    )
    .unwrap();
    let out = run(&[
        "test",
        "--config",
        toml.to_str().unwrap(),
        "--results-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("statically linked"),
        "{}",
        stderr(&out)
    );
    // etcd (Debian's etcd-server, installed by scripts/test) is a Go program.
    if let Some(etcd) = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .find(|p| Path::new(p).exists())
    {
        std::fs::write(
            &toml,
            format!("nemesis = [\"clock\"]\n[raft]\nbinary = \"{etcd}\"\n"),
        )
        .unwrap();
        let out = run(&[
            "test",
            "--config",
            toml.to_str().unwrap(),
            "--results-dir",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(254));
        assert!(stderr(&out).contains("Go program"), "{}", stderr(&out));
    } else {
        eprintln!("etcd not installed: the Go-binary refusal was not checked");
    }
}

#[test]
fn the_proxy_network_partitions_delays_and_drops_without_root() {
    let _serial = serial();
    let dir = scratch("proxy");
    // World-writable, so the unprivileged user can store its results.
    let results = dir.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let _ = Command::new("chmod")
        .args(["-R", "a+rwx", dir.to_str().unwrap()])
        .status();
    let unprivileged = |args: &[&str]| -> Output {
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_faultline"));
            c
        } else {
            faultline()
        };
        cmd.args(args)
            .current_dir(&dir)
            .output()
            .expect("run faultline unprivileged")
    };
    let r = results.to_str().unwrap();
    // Network namespaces are refused, clearly.
    let out = unprivileged(&[
        "test",
        "--net",
        "netns",
        "--nemesis",
        "partition",
        "--results-dir",
        r,
        "--time-limit",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(254), "{}", stderr(&out));
    assert!(stderr(&out).contains("need root"), "{}", stderr(&out));
    // The proxy does partitions, latency and loss.
    let out = unprivileged(&[
        "test",
        "--nodes",
        "3",
        "--net",
        "proxy",
        "--nemesis",
        "partition,latency,loss",
        "--nemesis-interval",
        "2",
        "--latency-ms",
        "40",
        "--time-limit",
        "16",
        "--recovery",
        "2",
        "--results-dir",
        r,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run_dir = latest_run(&results);
    let rj = results_json(&run_dir);
    let faults: Vec<&str> = rj["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fault"].as_str().unwrap_or(""))
        .collect();
    assert!(faults.len() >= 3, "{faults:?}");
    for f in rj["faults"].as_array().unwrap() {
        assert!(f["errors"].as_array().is_some_and(Vec::is_empty), "{f}");
    }
    assert!(node_processes(&results) == 0);
}

fn start_and_wait_for_history(results: &Path, extra: &[&str]) -> std::process::Child {
    let mut args = vec![
        "test",
        "--nodes",
        "3",
        "--net",
        "netns",
        "--nemesis",
        "partition,pause",
        "--nemesis-interval",
        "1",
        "--time-limit",
        "60",
        "--results-dir",
    ];
    let r = results.to_str().unwrap().to_string();
    args.push(&r);
    args.extend_from_slice(extra);
    let child = faultline()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    wait_for_history(results, "raft-register", Duration::from_secs(40));
    // Long enough for a partition to be in force.
    std::thread::sleep(Duration::from_secs(4));
    child
}

#[test]
fn nothing_of_a_run_survives_it_and_the_host_is_untouched() {
    let _serial = serial();
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let before = host_state();
    let dir = scratch("cleanup");

    // A normal run.
    let results = dir.join("normal");
    let out = run(&[
        "test",
        "--nodes",
        "3",
        "--net",
        "netns",
        "--nemesis",
        "partition",
        "--nemesis-interval",
        "1",
        "--time-limit",
        "6",
        "--recovery",
        "1",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(host_state(), before, "a normal run changed the host");
    assert_eq!(node_processes(&results), 0);

    // Ctrl-C in the middle of a partition.
    let results = dir.join("interrupted");
    let child = start_and_wait_for_history(&results, &[]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(host_state(), before, "an interrupted run changed the host");
    assert_eq!(node_processes(&results), 0);

    // Ctrl-C while the namespaces are being made and the nodes start: the run ends (as an
    // error, or as an interrupted run if the cluster was already up) and leaves nothing.
    let results = dir.join("early");
    let child = faultline()
        .args([
            "test",
            "--nodes",
            "3",
            "--net",
            "netns",
            "--nemesis",
            "partition",
            "--results-dir",
            results.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().expect("wait");
    assert!(
        matches!(out.status.code(), Some(0) | Some(254)),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(host_state(), before, "an early Ctrl-C changed the host");
    assert_eq!(node_processes(&results), 0);

    // SIGKILL of the controller, then `faultline clean`.
    let results = dir.join("killed");
    let mut child = start_and_wait_for_history(&results, &[]);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_ne!(
        host_state(),
        before,
        "a killed run should leave its namespaces for clean"
    );
    let out = run(&["clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removing network"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while node_processes(&results) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node_processes(&results), 0);
    assert_eq!(
        host_state(),
        before,
        "faultline clean did not restore the host"
    );
}
