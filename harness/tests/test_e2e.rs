//! `faultline test` end to end: real `faultline node` processes on loopback, real faults, the
//! real results folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

#[test]
fn register_test_with_kills_and_pauses_is_valid_and_keeps_the_evidence() {
    let dir = scratch("register");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--nodes",
        "3",
        "--nemesis",
        "kill,pause",
        "--time-limit",
        "20",
        "--nemesis-interval",
        "3",
        "--seed",
        "11",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run_dir = latest_run(&results);
    for file in [
        "history.jsonl",
        "history.edn",
        "test.toml",
        "results.json",
        "faultline.log",
        "nodes/n1.log",
        "nodes/n2.log",
        "nodes/n3.log",
    ] {
        assert!(
            run_dir.join(file).is_file(),
            "{file} missing in {}",
            run_dir.display()
        );
    }
    let r = results_json(&run_dir);
    assert_eq!(r["verdict"], "valid");
    assert_eq!(r["seed"], 11);
    for f in ["read", "write", "cas"] {
        let ok = r["operations"][f]["ok"].as_u64().unwrap_or(0);
        assert!(ok >= 50, "only {ok} ok {f} operations: {}", r["operations"]);
    }
    let faults = r["faults"].as_array().expect("faults");
    assert!(faults.len() >= 2, "{faults:?}");
    assert!(r["unexpected_exits"].as_array().is_some_and(Vec::is_empty));
    // The history on disk re-checks the same way, and has the nemesis in it.
    let history = run_dir.join("history.jsonl");
    let text = std::fs::read_to_string(&history).unwrap();
    assert!(text.contains(r#""process":"nemesis""#));
    let again = run(&[
        "check",
        history.to_str().unwrap(),
        "--model",
        "cas-register",
    ]);
    assert_eq!(again.status.code(), Some(0));
    // The resolved definition names the seed, to repeat the run.
    let toml = std::fs::read_to_string(run_dir.join("test.toml")).unwrap();
    assert!(toml.contains("seed = 11"), "{toml}");
    assert!(node_processes(&results) == 0, "nodes left running");
}

#[test]
fn set_test_is_valid() {
    let dir = scratch("set");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--nodes",
        "3",
        "--workload",
        "set",
        "--nemesis",
        "pause",
        "--time-limit",
        "10",
        "--nemesis-interval",
        "2",
        "--recovery",
        "2",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = results_json(&latest_run(&results));
    let set = &r["checker"]["sets"][0]["report"];
    assert_eq!(set["verdict"], "valid");
    assert!(set["acknowledged"].as_u64().unwrap_or(0) > 50, "{set}");
    assert!(set["stable"].as_u64().unwrap_or(0) > 50, "{set}");
}

/// Starts a test in the background and returns it once its history exists.
fn start_test(results: &Path, time_limit: &str) -> std::process::Child {
    let child = faultline()
        .args([
            "test",
            "--nodes",
            "3",
            "--time-limit",
            time_limit,
            "--nemesis-interval",
            "2",
            "--results-dir",
            results.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faultline test");
    wait_for_history(results, "raft-register", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(4));
    child
}

fn only_run(results: &Path) -> PathBuf {
    std::fs::read_dir(results.join("raft-register"))
        .expect("run folder")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("one run")
}

#[test]
fn a_killed_controller_leaves_a_checkable_history_and_nothing_running() {
    let dir = scratch("sigkill");
    let results = dir.join("results");
    let mut child = start_test(&results, "60");
    child.kill().expect("SIGKILL the controller");
    let _ = child.wait();
    // The nodes die with their controller (parent-death signal); give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node_processes(&results) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let clean = run(&["clean"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    assert!(node_processes(&results) == 0, "node processes survived");
    let history = only_run(&results).join("history.jsonl");
    let out = run(&[
        "check",
        history.to_str().unwrap(),
        "--model",
        "cas-register",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["operations"]["ok"].as_u64().unwrap_or(0) > 100, "{v}");
}

#[test]
fn clean_kills_processes_a_dead_controller_left_behind() {
    // A process of a run whose controller is gone, as a custom target's helper might be.
    let mut stray = Command::new("sleep")
        .arg("300")
        .env("FAULTLINE_RUN", "test-stray")
        .env("FAULTLINE_CONTROLLER", "999999999")
        .spawn()
        .expect("start a stray process");
    let out = run(&["clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{}", stray.id())));
    let status = stray.wait().expect("wait");
    assert!(!status.success(), "the stray was not killed");
}

#[test]
fn ctrl_c_ends_the_faults_and_still_checks() {
    let dir = scratch("sigint");
    let results = dir.join("results");
    let child = start_test(&results, "60");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"));
    let r = results_json(&only_run(&results));
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["verdict"], "valid");
    assert!(node_processes(&results) == 0, "nodes left running");
}

#[test]
fn bad_definitions_exit_254_and_start_nothing() {
    let dir = scratch("config");
    let results = dir.join("results");
    let r = results.to_str().unwrap();
    let toml = dir.join("bad.toml");
    std::fs::write(&toml, "nodes = 3\nnemesis_intervall = 5\n").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--config", toml.to_str().unwrap()],
            "nemesis_intervall",
        ),
        (
            vec!["--workload", "bank"],
            "workload: unknown workload \"bank\"",
        ),
        (vec!["--nemesis", "kill,flood"], "nemesis"),
        (vec!["--nodes", "0"], "nodes"),
        (vec!["--target", "mongo"], "target"),
        (vec!["--raft-read-mode", "fast"], "read_mode"),
        // Loopback nodes bind host ports, so a taken one must be refused up front.
        (
            vec![
                "--net",
                "loopback",
                "--nemesis",
                "kill",
                "--base-port",
                &busy_port,
            ],
            &busy_port,
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["test", "--results-dir", r, "--time-limit", "5"];
        all.extend(args.iter().copied());
        let out = run(&all);
        assert_eq!(out.status.code(), Some(254), "{all:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{all:?}: {}", stderr(&out));
        assert!(node_processes(&results) == 0);
    }
    // A missing node binary.
    let toml = dir.join("missing.toml");
    std::fs::write(&toml, "[raft]\nbinary = \"/nonexistent/faultline\"\n").unwrap();
    let out = run(&[
        "test",
        "--config",
        toml.to_str().unwrap(),
        "--results-dir",
        r,
    ]);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("/nonexistent/faultline"),
        "{}",
        stderr(&out)
    );
    drop(busy);
}

#[test]
fn help_documents_every_flag_with_its_default() {
    let out = run(&["test", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--target",
        "--nodes",
        "--workload",
        "--concurrency",
        "--rate",
        "--time-limit",
        "--nemesis",
        "--nemesis-interval",
        "--schedule",
        "--max-recovery",
        "--seed",
        "--results-dir",
        "--raft-bug",
        "[default: 5]",
        "[default: partition,pause,kill,clock",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}

/// The `ack-before-commit` bug loses acknowledged writes when the leader dies before
/// replicating them; killing the leader often, under load, must expose it, and the explanation
/// must name the write that was lost. (Measured on the development machine: 5 of 5 seeds
/// invalid with these settings; 1 of 5 at 1,000 ops/s with a kill every 4 s.)
#[test]
fn ack_before_commit_is_caught_when_the_leader_is_killed() {
    let dir = scratch("ack-before-commit");
    let results = dir.join("results");
    let mut invalid = 0;
    let mut named_a_lost_write = false;
    for seed in ["1", "2", "3"] {
        let out = run(&[
            "test",
            "--nodes",
            "3",
            "--raft-bug",
            "ack-before-commit",
            "--nemesis",
            "kill",
            "--nemesis-targets",
            "leader",
            "--nemesis-interval",
            "1",
            "--rate",
            "0",
            "--time-limit",
            "12",
            "--recovery",
            "2",
            "--seed",
            seed,
            "--results-dir",
            results.to_str().unwrap(),
        ]);
        let r = results_json(&latest_run(&results));
        if out.status.code() == Some(1) {
            invalid += 1;
            assert_eq!(r["verdict"], "invalid");
            let explained = r["explanation"].as_array().expect("explanations");
            named_a_lost_write |= explained.iter().any(|s| {
                let s = s.as_str().unwrap_or("");
                s.contains("but write ") && s.contains(" completed after ")
            });
        } else {
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        }
        assert!(node_processes(&results) == 0, "nodes left running");
    }
    assert!(invalid >= 2, "only {invalid} of 3 seeds caught the bug");
    assert!(named_a_lost_write, "no explanation named a lost write");
}
