//! Targets other than the default: custom targets (http-kv and exec), the final convergence
//! check, and bad target definitions.

use std::path::Path;

mod common;
use common::*;

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_bundled_raft_as_a_custom_http_kv_target() {
    let dir = scratch("custom-httpkv");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--target",
        "custom",
        "--target-config",
        &example("raft-as-custom.toml"),
        "--nodes",
        "3",
        "--nemesis",
        "kill,pause",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "10",
        "--recovery",
        "2",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = latest(&results);
    assert_eq!(r["verdict"], "valid");
    assert_eq!(r["target"], "custom (raft-as-custom)");
    assert!(
        r["target_version"]
            .as_str()
            .is_some_and(|v| v.contains("faultline")),
        "{}",
        r["target_version"]
    );
    assert!(r["operations"]["write"]["ok"].as_u64().unwrap_or(0) > 50);
    // Replicas were compared after the test, and agree.
    let c = &r["convergence"];
    assert!(c["keys"].as_u64().unwrap_or(0) > 0, "{c}");
    assert!(c["divergent"].as_array().is_some_and(Vec::is_empty), "{c}");
    assert_eq!(processes_mentioning(&results), 0);
}

#[test]
fn the_bundled_raft_through_an_exec_client_driver() {
    let dir = scratch("custom-exec");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--target",
        "custom",
        "--target-config",
        &example("raft-as-custom-exec.toml"),
        "--nodes",
        "3",
        "--nemesis",
        "pause",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "10",
        "--recovery",
        "2",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = latest(&results);
    assert_eq!(r["verdict"], "valid");
    for f in ["read", "write", "cas"] {
        assert!(
            r["operations"][f]["ok"].as_u64().unwrap_or(0) > 20,
            "{}",
            r["operations"]
        );
    }
    assert!(r["convergence"]["divergent"]
        .as_array()
        .is_some_and(Vec::is_empty));
    // The driver answers the optional `fingerprint` request: compared, and equal.
    let f = &r["fingerprints"];
    assert_eq!(f["compared"], true, "{f}");
    assert_eq!(f["members"].as_array().map(Vec::len), Some(3), "{f}");
    assert!(f["members"][0]["values"]["fingerprint"].is_string(), "{f}");
    assert_eq!(processes_mentioning(&results), 0);
}

/// `skip-apply-on-restart` makes a restarted node skip one committed command. On the set
/// workload every later compare-and-set then fails on that node alone, so its set stays
/// different: the convergence check must report it, with the key and the elements that differ.
#[test]
fn a_node_whose_data_differs_is_reported_as_divergence() {
    let dir = scratch("divergence");
    let results = dir.join("results");
    let mut reported = None;
    // One kill (4 s to 8 s), so the restarted node catches up, skips a command and stays
    // diverged: a second kill of the same node could heal it with the leader's snapshot.
    for seed in ["2", "3", "4", "5"] {
        let out = run(&[
            "test",
            "--nodes",
            "3",
            "--workload",
            "set",
            "--raft-bug",
            "skip-apply-on-restart",
            "--nemesis",
            "kill",
            "--nemesis-targets",
            "one",
            "--nemesis-interval",
            "4",
            "--time-limit",
            "12",
            "--recovery",
            "2",
            "--seed",
            seed,
            "--results-dir",
            results.to_str().unwrap(),
        ]);
        let r = latest(&results);
        if r["convergence"]["divergent"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            reported = Some(r);
            break;
        }
    }
    let r = reported.expect("no seed produced a divergence");
    assert_eq!(r["verdict"], "invalid");
    let d = &r["convergence"]["divergent"][0];
    assert_eq!(d["key"], "set");
    assert_eq!(d["values"].as_object().map(|m| m.len()), Some(3), "{d}");
    let sentence = r["explanation"][0].as_str().unwrap_or("");
    assert!(
        sentence.starts_with("divergence: for key set, n") && sentence.contains("lacks"),
        "{sentence}"
    );
    // The fingerprint comparison sees it too: the replicas stand at one applied index and the
    // odd one out has another state digest, shown in the report's table.
    let f = &r["fingerprints"];
    assert_eq!(f["compared"], true, "{f}");
    let differing: Vec<&str> = f["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["differs"] == true)
        .filter_map(|m| m["node"].as_str())
        .collect();
    assert!(!differing.is_empty(), "{f}");
    assert!(f["members"][0]["values"]["state digest"].is_string(), "{f}");
    let run_dir = results.join(std::fs::read_link(results.join("latest")).expect("latest"));
    let report = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html");
    assert!(
        report.contains("id=\"fingerprints\"") && report.contains(">differs<"),
        "the report has no fingerprint table marking the odd member"
    );
    // Each check keeps its own answer, and CI sees the divergence as its own failing case.
    let convergence = check_named(&r, "convergence");
    assert_eq!(convergence["verdict"], "invalid", "{convergence}");
    let junit = std::fs::read_to_string(
        results
            .join(std::fs::read_link(results.join("latest")).expect("latest"))
            .join("junit.xml"),
    )
    .expect("junit.xml");
    let case = junit
        .split("<testcase")
        .find(|c| c.contains("name=\"convergence\""))
        .expect("a convergence test case");
    assert!(
        case.contains("<failure type=\"invalid\" message=\"divergence:"),
        "{junit}"
    );
}

#[test]
fn bad_target_definitions_are_clear_errors_and_start_nothing() {
    let dir = scratch("bad-targets");
    let results = dir.join("results");
    let r = results.to_str().unwrap();
    let write = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let missing = write(
        "missing.toml",
        "command = [\"/nonexistent/mydb\", \"--id\", \"{id}\"]\n[client]\nprotocol = \"http-kv\"\n",
    );
    let placeholder = write(
        "placeholder.toml",
        "command = [\"sleep\", \"{nodeid}\"]\n[client]\nprotocol = \"http-kv\"\n",
    );
    let protocol = write(
        "protocol.toml",
        "command = [\"sleep\", \"30\"]\n[client]\nprotocol = \"grpc\"\n",
    );
    let unknown_key = write(
        "unknown.toml",
        "command = [\"sleep\", \"30\"]\nreadyy = 3\n[client]\nprotocol = \"http-kv\"\n",
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--target-config", &missing],
            "/nonexistent/mydb was not found".into(),
        ),
        (
            vec!["--target-config", &placeholder],
            "unknown placeholder {nodeid}".into(),
        ),
        (vec!["--target-config", &protocol], "client.protocol".into()),
        (vec!["--target-config", &unknown_key], "readyy".into()),
        (vec![], "--target-config".into()),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "test",
            "--target",
            "custom",
            "--results-dir",
            r,
            "--nemesis",
            "none",
        ];
        args.extend(extra.iter().copied());
        let out = run(&args);
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&needle), "{args:?}: {}", stderr(&out));
    }
    // A node that never answers: the run stops with the nodes named, and kills them.
    let silent = write(
        "silent.toml",
        "command = [\"sleep\", \"600\"]\n[ready]\nhttp_get = \"/status\"\ntimeout = 2\n[client]\nprotocol = \"http-kv\"\n",
    );
    let out = run(&[
        "test",
        "--target",
        "custom",
        "--target-config",
        &silent,
        "--nodes",
        "3",
        "--nemesis",
        "none",
        "--time-limit",
        "5",
        "--results-dir",
        r,
    ]);
    assert_eq!(out.status.code(), Some(254), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("n1, n2, n3 did not become ready"),
        "{}",
        stderr(&out)
    );
    assert_eq!(processes_mentioning(&results), 0, "sleep 600 survived");
}
