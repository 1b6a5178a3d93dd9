//! The `lose-unfsynced` fault end to end, on real FUSE mounts (CI runs as root with /dev/fuse):
//! the bundled Raft's `skip-fsync` bug is caught when nodes lose power and not when they are
//! only killed (the page cache survives a kill), the clean build survives power losses, and no
//! mount outlives a run, whether it ends normally, by Ctrl-C, or by SIGKILL and `faultline
//! clean`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The runs here share /proc/mounts (one test counts faultline's mounts): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// faultline's FUSE mounts now (their source is `faultline:<pid>:<node>`).
fn faultline_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("faultline:"))
        .map(str::to_string)
        .collect()
}

/// (invalid runs, their explanations) of `faultline test ARGS --seed S` over `seeds`; every
/// fault of every run applied without error, and nothing left running or mounted.
fn verdicts(name: &str, args: &[&str], seeds: &[&str]) -> (usize, Vec<String>) {
    let results = scratch(name).join("results");
    invalid_runs(&results, args, seeds, |_, _| {
        let r = latest(&results);
        for f in r["faults"].as_array().into_iter().flatten() {
            assert!(
                f["errors"].as_array().is_some_and(Vec::is_empty),
                "a fault went wrong: {f}"
            );
        }
        assert_eq!(node_processes(&results), 0);
        assert!(faultline_mounts().is_empty(), "{:?}", faultline_mounts());
    })
}

/// Measured on the development machine (3 nodes, 20 s, default schedule): with
/// `lose-unfsynced` the bug was caught in 3 of 3 seeds (lost acknowledged writes, diverged
/// replicas, two leaders in one term: a node that forgets its vote votes again), with plain
/// `kill` in 0 of 3; the clean build valid under `lose-unfsynced` in every run.
#[test]
fn skip_fsync_is_caught_by_lose_unfsynced_and_not_by_kill() {
    let _serial = serial();
    faultline_faultfs_available();
    let base = ["--nodes", "3", "--time-limit", "15", "--recovery", "3"];
    let with = |nemesis: &'static str, bug: bool| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(["--nemesis", nemesis]);
        if bug {
            a.extend(["--raft-bug", "skip-fsync"]);
        }
        a
    };
    let (caught, why) = verdicts(
        "skip-fsync-power",
        &with("lose-unfsynced", true),
        &["1", "2", "3"],
    );
    assert!(caught >= 2, "caught in only {caught} of 3 seeds: {why:?}");
    let (caught, why) = verdicts("skip-fsync-kill", &with("kill", true), &["1", "2"]);
    assert_eq!(caught, 0, "a plain kill lost unsynced data: {why:?}");
    let (invalid, why) = verdicts("clean-power", &with("lose-unfsynced", false), &["1", "2"]);
    assert_eq!(
        invalid, 0,
        "the clean build failed under power losses: {why:?}"
    );
}

fn faultline_faultfs_available() {
    assert!(
        nix::unistd::geteuid().is_root() && std::path::Path::new("/dev/fuse").exists(),
        "lose-unfsynced needs root and /dev/fuse (CI has both)"
    );
}

/// What a power loss dropped is recorded with the fault, in the history and in results.json.
#[test]
fn each_power_loss_records_what_it_dropped() {
    let _serial = serial();
    faultline_faultfs_available();
    let results = scratch("power-record").join("results");
    let out = run(&[
        "test",
        "--nodes",
        "3",
        "--nemesis",
        "lose-unfsynced",
        "--raft-bug",
        "skip-fsync",
        "--time-limit",
        "8",
        "--recovery",
        "2",
        "--seed",
        "4",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    let r = latest(&results);
    let losses: Vec<&serde_json::Value> = r["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["fault"] == "lose-unfsynced")
        .collect();
    assert!(!losses.is_empty(), "{}", r["faults"]);
    for f in &losses {
        // Every node the fault hit (a node already down is named in its errors instead).
        let errors = f["errors"].to_string();
        let lost = f["lost"].as_object().cloned().unwrap_or_default();
        for node in f["nodes"].as_array().into_iter().flatten() {
            let node = node.as_str().unwrap_or("");
            match lost.get(node).and_then(|t| t.as_str()) {
                Some(text) => assert!(text.contains("bytes of unsynced data"), "{text}"),
                None => assert!(
                    errors.contains(&format!("{node} was not running")),
                    "{node} lost power without a record of what it lost: {f}"
                ),
            }
        }
    }
    // A build that never fsyncs its log loses data at some power loss.
    assert!(
        losses.iter().any(|f| f["lost"]
            .as_object()
            .unwrap()
            .values()
            .any(|t| !t.as_str().unwrap_or("").starts_with("0 bytes"))),
        "{losses:?}"
    );
}

fn start(results: &std::path::Path) -> std::process::Child {
    let child = faultline()
        .args([
            "test",
            "--nodes",
            "3",
            "--nemesis",
            "lose-unfsynced",
            "--time-limit",
            "60",
            "--results-dir",
            results.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    wait_for_history(results, "raft-register", Duration::from_secs(40));
    child
}

#[test]
fn no_mount_outlives_a_run_interrupted_or_killed() {
    let _serial = serial();
    faultline_faultfs_available();
    assert!(faultline_mounts().is_empty(), "{:?}", faultline_mounts());
    let dir = scratch("mounts");

    // Ctrl-C: the run stops, checks, and unmounts.
    let results = dir.join("interrupted");
    let child = start(&results);
    // (A power loss under way unmounts one for a moment.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while faultline_mounts().len() != 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(faultline_mounts().len(), 3, "{:?}", faultline_mounts());
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().expect("wait");
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    assert!(faultline_mounts().is_empty(), "{:?}", faultline_mounts());
    assert_eq!(node_processes(&results), 0);

    // SIGKILL: the mounts stay (their server died with the controller) until `clean`.
    let results = dir.join("killed");
    let mut child = start(&results);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while node_processes(&results) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(faultline_mounts().len(), 3, "{:?}", faultline_mounts());
    let out = run(&["clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("unmounting data directory"),
        "{}",
        stdout(&out)
    );
    assert!(faultline_mounts().is_empty(), "{:?}", faultline_mounts());
    // The data is still there, in the backing directories (a killed run has no `latest`).
    let run_dir = std::fs::read_dir(results.join("raft-register"))
        .expect("the run's folder")
        .flatten()
        .next()
        .expect("one run")
        .path();
    assert!(run_dir
        .join("disks/n1/data")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
}

#[test]
fn lose_unfsynced_is_refused_with_the_reason_where_it_cannot_work() {
    // Without root (as nobody, through util-linux's setpriv): refused before anything starts,
    // saying why. The binary is copied where nobody can reach it (the build folder may not be).
    let dir = scratch("refused");
    let exe = dir.join("faultline");
    std::fs::copy(env!("CARGO_BIN_EXE_faultline"), &exe).expect("copy the binary");
    use std::os::unix::fs::PermissionsExt;
    for p in [&dir, &exe] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let results = dir.join("results");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .arg("test")
        .args([
            "--nemesis",
            "lose-unfsynced",
            "--time-limit",
            "2",
            "--results-dir",
        ])
        .arg(&results)
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(254), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lose-unfsynced") && stderr(&out).contains("needs root"),
        "{}",
        stderr(&out)
    );
    assert!(!results.exists(), "a refused run must not leave a folder");
    // Unknown names are refused with the list of known ones.
    let out = run(&["test", "--profile", "storm", "--time-limit", "1"]);
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains("crash-storm"), "{}", stderr(&out));
    let out = run(&["test", "--nemesis", "lose-unsynced", "--time-limit", "1"]);
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains("lose-unfsynced"), "{}", stderr(&out));
}
