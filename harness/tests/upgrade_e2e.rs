//! Rolling upgrades end to end, on real binaries:
//!
//! * the bundled Raft moved between two real builds of itself (this one, and the
//!   `next-release` build that `scripts/build-next` makes) and back, under partitions and
//!   kills; and the next build's upgrade bug (`eager-new-format`) caught and explained;
//! * a custom target whose command takes the binary as `{binary}`;
//! * etcd 3.4 (Debian) moved to etcd 3.5 (the official binary, which `scripts/install-deps`
//!   fetches from PyPI) under partitions and pauses, and a downgrade back to 3.4 after the
//!   cluster version moved to 3.5, which 3.4 refuses: a finding, not a faultline error.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The runs share the host's namespaces, ports and two cores: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `next-release` build of faultline: `FAULTLINE_NEXT_BINARY` (scripts/test sets it after
/// building it), else target/next/faultline if a developer built it.
fn next_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FAULTLINE_NEXT_BINARY") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FAULTLINE_NEXT_BINARY={} does not exist (run scripts/build-next)",
            p.display()
        );
        return Some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/next/faultline");
    if p.is_file() {
        return Some(p);
    }
    eprintln!("SKIPPED: no next-release build of faultline (run scripts/build-next)");
    None
}

/// etcd 3.5's binary, where scripts/install-deps puts it.
fn etcd35() -> Option<PathBuf> {
    let p = std::env::var_os("FAULTLINE_ETCD35")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/faultline/etcd-3.5.1/etcd"));
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var_os("FAULTLINE_REQUIRE_ETCD").is_none(),
        "etcd 3.5 is required (FAULTLINE_REQUIRE_ETCD is set) but {} is missing \
         (scripts/install-deps fetches it)",
        p.display()
    );
    eprintln!(
        "SKIPPED: no etcd 3.5 at {} (run scripts/install-deps)",
        p.display()
    );
    None
}

fn no_network_left() {
    let left = fl_namespaces();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}

/// `faultline test --results-dir RESULTS ARGS`; returns the exit code and the run's results.
fn test_run(results: &Path, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["test", "--results-dir", results.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run(&all);
    let err = stderr(&out);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "the run ended with {code}, not a verdict:\n{err}"
    );
    assert_eq!(
        processes_mentioning(results),
        0,
        "processes of the run left behind"
    );
    no_network_left();
    (code, latest(results), err)
}

fn steps(r: &Value) -> Vec<Value> {
    r["upgrade"]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every node's status samples name both versions: the version lane has something to show.
fn versions_sampled(run: &Path, nodes: usize, versions: &[&str]) {
    let text = std::fs::read_to_string(run.join("nodes/status.jsonl")).expect("status.jsonl");
    for n in 1..=nodes {
        for v in versions {
            let needle = format!("\"node\":\"n{n}\"");
            let seen = text
                .lines()
                .any(|l| l.contains(&needle) && l.contains(&format!("\"version\":\"{v}\"")));
            assert!(seen, "no status sample of n{n} on {v}");
        }
    }
}

/// History events of the nemesis with function `f`.
fn nemesis_events(run: &Path, f: &str) -> usize {
    std::fs::read_to_string(run.join("history.jsonl"))
        .expect("history.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["process"] == "nemesis" && e["f"] == f)
        .count()
}

#[test]
fn the_bundled_raft_upgraded_and_downgraded_between_two_builds_under_faults_stays_valid() {
    let _serial = serial();
    let Some(next) = next_binary() else { return };
    let dir = scratch("raft-clean");
    let results = dir.join("results");
    // The TOML form, with a short pause between the passes.
    let config = dir.join("upgrade.toml");
    std::fs::write(
        &config,
        format!(
            "nodes = 3\ntime_limit = 25\nrecovery = 3\nnemesis = [\"partition\", \"kill\", \"upgrade\"]\n\
             seed = 1\n[upgrade]\nto = \"{}\"\ndowngrade = true\nstart = 3\ngap = 1\npass_gap = 3\n",
            next.display()
        ),
    )
    .unwrap();
    let (code, r, err) = test_run(&results, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let this = env!("CARGO_PKG_VERSION");
    let next_version = format!("{this}+next");
    let u = &r["upgrade"];
    assert_eq!(u["complete"], true, "{u}");
    assert_eq!(u["path"], serde_json::json!([this, next_version, this]));
    let steps = steps(&r);
    assert_eq!(steps.len(), 6, "{u}");
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["outcome"], "rejoined", "{s}");
        assert!(s["rejoin_ms"].as_f64().is_some(), "{s}");
        assert!(s["writes"]["longest_without_ok_write_ms"]
            .as_f64()
            .is_some());
        let (from, to) = if i < 3 {
            (this, next_version.as_str())
        } else {
            (next_version.as_str(), this)
        };
        assert_eq!(
            (s["from_version"].as_str(), s["to_version"].as_str()),
            (Some(from), Some(to))
        );
    }
    // Every node moved once each way.
    let mut moved: Vec<&str> = steps.iter().filter_map(|s| s["node"].as_str()).collect();
    moved.sort();
    assert_eq!(moved, vec!["n1", "n1", "n2", "n2", "n3", "n3"]);
    // The other faults went on during the upgrade.
    let (from, to) = (
        steps[0]["start_ms"].as_f64().unwrap(),
        steps[5]["end_ms"].as_f64().unwrap(),
    );
    let during = r["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["start_ms"].as_f64().is_some_and(|t| t > from && t < to))
        .count();
    assert!(during > 0, "no fault during the upgrade: {}", r["faults"]);
    assert_eq!(check_named(&r, "upgrade")["verdict"], "valid");
    let run_dir = latest_run(&results);
    versions_sampled(&run_dir, 3, &[this, &next_version]);
    assert_eq!(nemesis_events(&run_dir, "upgrade"), 6);
    assert_eq!(nemesis_events(&run_dir, "upgraded"), 6);
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("name=\"upgrade\""), "{junit}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html");
    assert!(
        html.contains("id=\"upgrade\"") && html.contains("\"vers\":[["),
        "the report has no upgrade table or version lane"
    );
    assert!(err.contains("upgrade: n") && err.contains(&format!("now on {next_version}")));
}

/// Measured on the development machine (3 nodes, 20 s, partitions and kills, the cluster held
/// mixed for 6 s): caught in 5 of 6 seeds (seeds 1–4 all caught); see the README's
/// rolling-upgrade section. Two of four must catch it: at 5 in 6 per seed, a pass
/// fails about 1.6% of the time by chance.
#[test]
fn an_upgrade_bug_of_the_next_build_is_caught_and_explained() {
    let _serial = serial();
    let Some(next) = next_binary() else { return };
    let results = scratch("raft-bug").join("results");
    let next = next.to_str().unwrap().to_string();
    let args = [
        "--nodes",
        "3",
        "--time-limit",
        "20",
        "--recovery",
        "3",
        "--nemesis",
        "partition,kill",
        "--upgrade-to",
        &next,
        "--upgrade-arg=--bug",
        "--upgrade-arg=eager-new-format",
        "--upgrade-start",
        "3",
        "--upgrade-stall",
        "6",
    ];
    let (caught, why) = invalid_runs(&results, &args, &["1", "2", "3", "4"], |_, out| {
        assert_eq!(processes_mentioning(&results), 0, "{}", stderr(out));
        no_network_left();
        // Explained: each failing run relates its failure to the upgrade (which versions ran
        // when it first went wrong, or which step failed).
        let r = latest(&results);
        if r["verdict"] == "invalid" {
            let explanation = r["explanation"].to_string();
            assert!(explanation.contains("upgrade: "), "{explanation}");
        }
    });
    assert!(caught >= 2, "caught in only {caught} of 4 seeds: {why:?}");
    // And a node on the old build says it could not read what a new leader wrote.
    let mut skipped = 0;
    for run in std::fs::read_dir(results.join("raft-register"))
        .unwrap()
        .flatten()
    {
        for n in 1..=3 {
            let log = std::fs::read_to_string(run.path().join(format!("nodes/n{n}.log")))
                .unwrap_or_default();
            skipped += log.matches("unknown command type 3").count();
        }
    }
    assert!(skipped > 0, "no old node reported the new format");
}

#[test]
fn a_custom_target_gets_each_version_as_its_binary_placeholder() {
    let _serial = serial();
    let Some(next) = next_binary() else { return };
    let dir = scratch("custom");
    let results = dir.join("results");
    let target = dir.join("raft-by-binary.toml");
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/raft-as-custom.toml"),
    )
    .unwrap();
    std::fs::write(&target, example.replace("{faultline}", "{binary}")).unwrap();
    let this = env!("CARGO_BIN_EXE_faultline");
    let next = next.to_str().unwrap();
    let base = [
        "--target",
        "custom",
        "--target-config",
        target.to_str().unwrap(),
        "--nodes",
        "3",
        "--time-limit",
        "12",
        "--recovery",
        "2",
        "--nemesis",
        "none",
    ];
    let mut args = base.to_vec();
    args.extend([
        "--upgrade-from",
        this,
        "--upgrade-to",
        next,
        "--upgrade-start",
        "2",
    ]);
    let (code, r, err) = test_run(&results, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["upgrade"]["complete"], true, "{}", r["upgrade"]);
    let versions = r["upgrade"]["path"].to_string();
    assert!(versions.contains("+next"), "{versions}");
    // Without an upgrade, {binary} has no value: refused before anything starts.
    let mut all = vec!["test", "--results-dir", results.to_str().unwrap()];
    all.extend_from_slice(&base);
    let out = run(&all);
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains("{binary}"), "{}", stderr(&out));
    // A binary that does not exist is named.
    let out = run(&[
        "test",
        "--upgrade-to",
        "/no/such/build",
        "--time-limit",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("upgrade.to: /no/such/build"),
        "{}",
        stderr(&out)
    );
}

/// etcd 3.4 → 3.5 under partitions and pauses, then the same with a downgrade, which etcd
/// 3.4 refuses once the cluster version is 3.5. One test: both need the hosts' etcd ports.
#[test]
fn etcd_upgrades_from_3_4_to_3_5_under_faults_and_refuses_the_downgrade() {
    let _serial = serial();
    let Some(etcd35) = etcd35() else { return };
    let etcd35 = etcd35.to_str().unwrap().to_string();
    let base = [
        "--target",
        "etcd",
        "--nodes",
        "3",
        "--recovery",
        "3",
        "--nemesis",
        "partition,pause",
        "--seed",
        "1",
        "--upgrade-to",
        &etcd35,
    ];
    let results = scratch("etcd").join("results");
    let mut args = base.to_vec();
    args.extend(["--time-limit", "25"]);
    let (code, r, err) = test_run(&results, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["upgrade"]["complete"], true, "{}", r["upgrade"]);
    let steps = steps(&r);
    assert_eq!(steps.len(), 3);
    for s in &steps {
        assert!(
            s["from_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.4."))
                && s["to_version"] == "3.5.1"
                && s["outcome"] == "rejoined",
            "{s}"
        );
    }
    assert_eq!(r["fingerprints"]["compared"], true, "{}", r["fingerprints"]);
    assert!(!r["faults"].as_array().unwrap().is_empty());
    let from = steps[0]["from_version"].as_str().unwrap().to_string();
    versions_sampled(&latest_run(&results), 3, &[&from, "3.5.1"]);

    // The downgrade: after the pass to 3.5 (and a pause for the cluster version to move),
    // the first member put back on 3.4 exits.
    let mut args = base.to_vec();
    args.extend(["--time-limit", "45", "--upgrade-downgrade"]);
    let (code, r, err) = test_run(&results, &args);
    assert_eq!(code, 1, "{err}");
    let upgrade = check_named(&r, "upgrade");
    assert_eq!(upgrade["verdict"], "invalid", "{upgrade}");
    let finding = upgrade["explanation"][0].as_str().unwrap_or_default();
    assert!(
        finding.contains("exited (exit status: 1) after the downgrade to 3.4.")
            && finding.contains("invalid downgrade"),
        "{finding}"
    );
    let failed = steps_of_outcome(&r, "refused");
    assert_eq!(failed.len(), 1, "{}", r["upgrade"]);
    assert_eq!(failed[0]["direction"], "downgrade");
    assert_eq!(failed[0]["rolled_back"], "restarted on 3.5.1 and rejoined");
    assert!(failed[0]["log_tail"]
        .as_str()
        .is_some_and(|t| t.contains("invalid downgrade")));
    // Everything else was still checked, and the refusal is not also counted as a crash.
    assert_eq!(
        check_named(&r, "linearizable (cas-register)")["verdict"],
        "valid"
    );
    assert_eq!(check_named(&r, "cluster-health")["verdict"], "valid");
    assert!(err.contains("upgrade: n") && err.contains("exited (exit status: 1)"));
    let junit = std::fs::read_to_string(latest_run(&results).join("junit.xml")).unwrap();
    let case = junit
        .split("<testcase")
        .find(|c| c.contains("name=\"upgrade\""))
        .expect("an upgrade test case");
    assert!(case.contains("<failure"), "{case}");
}

fn steps_of_outcome(r: &Value, outcome: &str) -> Vec<Value> {
    steps(r)
        .into_iter()
        .filter(|s| s["outcome"] == outcome)
        .collect()
}
