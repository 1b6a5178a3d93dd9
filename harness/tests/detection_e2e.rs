//! The defaults find bugs: `faultline test --raft-bug BUG` with nothing else changed but the
//! time limit catches each bundled bug that a minute of real faults can trigger, in most
//! seeds, and the correct build passes every seed of the same tests. Also: what each fault did
//! (efficacy) is recorded, `--max-recovery` fails a run naming the fault, two leaders of one
//! term fail the `election` check, and a node that dies on its own fails `cluster-health`.
//!
//! Real clusters in network namespaces (as root, which CI is). Time limits are the shortest
//! that held on the development machine (see each test); `scripts/bench-detection` measures
//! the 60 s rates over 10 seeds (README, "Finding bugs with the defaults", has the table).
//!
//! Not here: `commit-any-term`, which a minute of faults on real processes almost never
//! triggers (README, "Finding bugs with the defaults", says why); the simulation tests of
//! `faultline-raft` catch it with a scripted Figure 8.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::*;

const SEEDS: &[&str] = &["1", "2", "3"];

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// One run of `faultline test` with the defaults and `args`; its exit code and results.
fn run_test(results: &Path, seed: &str, args: &[&str]) -> (i32, PathBuf, Value) {
    let mut all = vec![
        "test",
        "--results-dir",
        results.to_str().unwrap(),
        "--seed",
        seed,
    ];
    all.extend_from_slice(args);
    let out = run(&all);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "{all:?} exited {code}: {}",
        stderr(&out)
    );
    let dir = latest_run(results);
    let r = results_json(&dir);
    assert_eq!(node_processes(results), 0, "a node outlived its run");
    (code, dir, r)
}

/// The checks that find a bug in the data: a failed `cluster-health` or `availability` says
/// something else about a run.
const DETECTING: &[&str] = &["linearizable (cas-register)", "convergence", "election"];

/// Runs the bug over [`SEEDS`] with `time_limit`; asserts it is caught (by a check that looks
/// at the data) in at least 2.
fn caught_in_most_seeds(bug: &str, time_limit: &str) {
    caught_in_most_of(bug, time_limit, SEEDS);
}

/// Runs the bug over `seeds` with `time_limit`; asserts it is caught (by a check that looks at
/// the data) in more than half of them.
fn caught_in_most_of(bug: &str, time_limit: &str, seeds: &[&str]) {
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let results = scratch(bug).join("results");
    let mut verdicts = Vec::new();
    let mut invalid = 0;
    for seed in seeds {
        let (code, _, r) = run_test(
            &results,
            seed,
            &["--raft-bug", bug, "--time-limit", time_limit],
        );
        let failed: Vec<&str> = r["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["verdict"] == "invalid")
            .filter_map(|c| c["name"].as_str())
            .collect();
        verdicts.push(format!(
            "seed {seed}: {} {failed:?} {}",
            r["verdict"],
            r["explanation"][0].as_str().unwrap_or("")
        ));
        if failed.iter().any(|c| DETECTING.contains(c)) {
            assert_eq!(code, 1);
            assert!(
                r["first_violation_s"].as_f64().is_some(),
                "an invalid run names when its first violation showed"
            );
            invalid += 1;
        }
    }
    assert!(
        invalid * 2 > seeds.len(),
        "{bug} caught in only {invalid} of {} seeds:\n{}",
        seeds.len(),
        verdicts.join("\n")
    );
}

// Time limits: the shortest that held on the development machine. First violations in 60 s
// runs (10 seeds each, `scripts/bench-detection`, with the hub-election scenario): stale-read
// 1.7–17.0 s (seeds 1–3: 5.2, 9.9, 17.0); ack-before-commit 1.4–36.6 s (6.2, 9.5, 36.6);
// lease-ignores-drift 1.6–29.4 s (6.2, 9.8, 4.9); vote-without-log-check 2.7–55.7 s, caught in
// 9 of 10 (seeds 1–5: 34.6, 39.7, 16.9, not caught, 2.7), so it gets the full minute and five
// seeds; skip-apply-on-restart needs one restart, and its divergence shows at the end.
// lease-ignores-drift gets 45 s: at 30 s a CI run on this machine caught it in only 1 of 3
// seeds (in 30 s one seed drew no clock fault at all, another a single clock bump on the leader
// that no read happened to expose).

#[test]
fn stale_read_is_caught_with_the_defaults() {
    caught_in_most_seeds("stale-read", "20");
}

#[test]
fn lease_ignores_drift_is_caught_with_the_defaults() {
    caught_in_most_seeds("lease-ignores-drift", "45");
}

/// Five seeds, caught in at least three: its rate is the lowest of the bugs tested here (7 and
/// 9 of 10 in the last two measurements), so three seeds needing two failed one CI run in
/// about ten; five needing three fail about one in thirty at a 0.85 rate.
#[test]
fn vote_without_log_check_is_caught_with_the_defaults() {
    caught_in_most_of("vote-without-log-check", "60", &["1", "2", "3", "4", "5"]);
}

#[test]
fn ack_before_commit_is_caught_with_the_defaults() {
    caught_in_most_seeds("ack-before-commit", "30");
}

#[test]
fn skip_apply_on_restart_is_caught_with_the_defaults() {
    caught_in_most_seeds("skip-apply-on-restart", "20");
}

/// The correct build, every seed of the tests above, at the time limit most of them use:
/// no check may fail (no false alarm from the checker, the election check, convergence or
/// cluster health).
#[test]
fn the_clean_build_passes_with_the_defaults() {
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let results = scratch("clean").join("results");
    for seed in SEEDS {
        let (code, dir, r) = run_test(&results, seed, &["--time-limit", "30"]);
        let failed: Vec<&Value> = r["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["verdict"] != "valid")
            .collect();
        assert_eq!(
            code,
            0,
            "seed {seed}: the clean build failed ({}): {failed:?}",
            dir.display()
        );
        assert!(failed.is_empty(), "seed {seed}: {failed:?}");
        // The run was really stressed: faults hit the leader and leaders changed.
        let e = &r["efficacy"];
        assert!(e["faults"].as_u64() >= Some(5), "{e}");
        assert!(e["hit_leader"].as_u64() >= Some(2), "{e}");
        assert!(e["leader_changes"].as_u64() >= Some(2), "{e}");
    }
}

/// `forget-vote` at the defaults: nodes restarted together come back in term 0 and elect
/// leaders of terms that already had one. The election check reports it on its own, naming
/// both nodes and the term, whatever the clients saw (in most runs they saw nothing wrong).
/// It needs a crash of every node, or of the leader with a majority (the `power-loss` and
/// `crash-majority` scenarios, about twice a minute): caught in 10 of 10 60 s runs, first
/// within 2.1–37.0 s (seeds 1–3: 34.1, 37.0, 13.0 s).
#[test]
fn forget_vote_is_caught_as_two_leaders_in_one_term() {
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let results = scratch("forget-vote").join("results");
    let mut found = Vec::new();
    let mut verdicts = Vec::new();
    for seed in SEEDS {
        let (_, dir, r) = run_test(
            &results,
            seed,
            &["--raft-bug", "forget-vote", "--time-limit", "60"],
        );
        verdicts.push(format!(
            "seed {seed}: {} {}",
            r["verdict"], r["explanation"][0]
        ));
        let check = check_named(&r, "election");
        if check["verdict"] != "invalid" {
            continue;
        }
        let same = &r["election"]["same_term"][0];
        let term = same["term"].as_u64().expect("the term");
        let mut nodes: Vec<&str> = same["leaders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["node"].as_str())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        assert!(nodes.len() >= 2, "{same}");
        let sentence = check["explanation"][0].as_str().unwrap_or("");
        for n in &nodes {
            assert!(sentence.contains(n), "{sentence} does not name {n}");
        }
        assert!(sentence.contains(&format!("term {term}")), "{sentence}");
        // Its own JUnit case, failing with the sentence; and the run is invalid.
        let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
        assert!(junit.contains("name=\"election\""), "{junit}");
        assert!(junit.contains(&format!("term {term}")), "{junit}");
        assert_eq!(r["verdict"], "invalid");
        assert!(r["first_violation_s"].as_f64().is_some());
        found.push(seed);
    }
    assert!(
        found.len() >= 2,
        "two leaders of one term were reported in only {found:?} of {SEEDS:?}:\n{}",
        verdicts.join("\n")
    );
}

/// A run with only leader kills (and every other setting at its default): efficacy shows the
/// kills hitting the leader, a new leader, and a finite recovery; `--max-recovery 0.001`
/// (no cluster completes a write within a millisecond of a heal) fails the run with its own
/// check, naming the fault.
#[test]
fn efficacy_is_recorded_and_max_recovery_fails_a_run_naming_the_fault() {
    assert!(is_root(), "network namespaces need root (CI runs as root)");
    let results = scratch("efficacy").join("results");
    let (code, dir, r) = run_test(
        &results,
        "4",
        &[
            "--nemesis",
            "kill",
            "--time-limit",
            "15",
            "--max-recovery",
            "0.001",
        ],
    );
    assert_eq!(code, 1, "the availability check should fail the run");
    let kills: Vec<&Value> = r["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["scenario"] == "kill-leader" || f["scenario"] == "kill-new-leader")
        .filter(|f| f["efficacy"]["hit_leader"] == true)
        .collect();
    assert!(!kills.is_empty(), "no kill hit the leader: {}", r["faults"]);
    for k in &kills {
        let e = &k["efficacy"];
        let before = e["leader_before"]["node"]
            .as_str()
            .expect("a leader before");
        assert_eq!(k["nodes"][0], before, "{k}");
        assert!(
            e["new_leaders"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["node"] != before)),
            "killing the leader changed no leader: {k}"
        );
        let election = e["election_ms"].as_f64().expect("an election time");
        assert!(election > 0.0 && election < 5_000.0, "{k}");
    }
    // A kill of the leader is followed by a write within seconds: a finite recovery time.
    assert!(
        kills.iter().any(|k| k["efficacy"]["recovery_ms"]
            .as_f64()
            .is_some_and(|ms| ms < 5_000.0)),
        "no leader kill has a finite recovery time: {kills:?}"
    );
    let summary = r["efficacy"]["line"].as_str().expect("a summary line");
    assert!(
        summary.contains("hit the leader") && summary.contains("recovery p50"),
        "{summary}"
    );
    // The availability check names the fault whose heal was not followed by a write in time.
    let check = check_named(&r, "availability");
    assert_eq!(check["verdict"], "invalid");
    let sentence = check["explanation"][0].as_str().unwrap_or("");
    assert!(
        sentence.contains("of the heal of fault") && sentence.contains("kill"),
        "{sentence}"
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("name=\"availability\""), "{junit}");
    // Efficacy is in the history too: one event per fault.
    let history = std::fs::read_to_string(dir.join("history.jsonl")).expect("history");
    let efficacy_events = history
        .lines()
        .filter(|l| l.contains("\"f\":\"efficacy\""))
        .count();
    assert_eq!(
        efficacy_events,
        r["faults"].as_array().map_or(0, Vec::len),
        "one efficacy event per fault"
    );
}

/// A custom target whose third node dies a few seconds into the test, on its own (as a node
/// that crashes on a port clash or a bad configuration does): the two others still serve, so
/// the history is linearizable, but the run must fail `cluster-health`, naming the node and
/// quoting its log.
#[test]
fn a_node_that_dies_on_its_own_fails_cluster_health() {
    let dir = scratch("crash");
    let results = dir.join("results");
    let target = dir.join("crashing.toml");
    std::fs::write(
        &target,
        r#"name = "crashing"
command = ["/bin/sh", "-c", "if [ {id} = 3 ]; then {faultline} node --id {id} --data-dir {data_dir} --client-addr {addr}:{client_port} --peer-addr {addr}:{peer_port} --peers {peers} & sleep 4; kill -9 $!; echo 'fatal: cannot bind {addr}: address already in use' >&2; exit 1; fi; exec {faultline} node --id {id} --data-dir {data_dir} --client-addr {addr}:{client_port} --peer-addr {addr}:{peer_port} --peers {peers}"]
peer_format = "{id}={addr}:{peer_port}"
client_port = 7001
peer_port = 7002
[ready]
tcp = true
timeout = 30
[client]
protocol = "http-kv"
leader_path = "/status"
"#,
    )
    .expect("target file");
    let out = run(&[
        "test",
        "--target",
        "custom",
        "--target-config",
        target.to_str().unwrap(),
        "--nodes",
        "3",
        "--nemesis",
        "none",
        "--time-limit",
        "8",
        "--recovery",
        "1",
        "--results-dir",
        results.to_str().unwrap(),
        "--seed",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = latest(&results);
    let check = check_named(&r, "cluster-health");
    assert_eq!(check["verdict"], "invalid", "{check}");
    let sentence = check["explanation"][0].as_str().unwrap_or("");
    assert!(
        sentence.contains("n3 exited unexpectedly") && sentence.contains("address already in use"),
        "{sentence}"
    );
    // The linearizability check itself passed: the failure is the cluster's health.
    assert_eq!(r["checks"][0]["verdict"], "valid", "{}", r["checks"]);
    assert!(stderr(&out).contains("INVALID"), "{}", stderr(&out));
    assert_eq!(processes_mentioning(&results), 0);
}
