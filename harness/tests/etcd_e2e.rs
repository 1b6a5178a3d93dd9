//! `faultline test --target etcd` against real etcd 3.4 members from Debian's `etcd-server`
//! (installed by `scripts/test`), each in its own network namespace (root; CI runs as root).

use std::path::Path;
use std::process::Command;

mod common;
use common::*;

fn etcd_available() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("FAULTLINE_REQUIRE_ETCD").is_none(),
            "etcd is required (FAULTLINE_REQUIRE_ETCD is set) but not installed"
        );
        eprintln!("SKIPPED: etcd is not installed (apt-get install etcd-server)");
    }
    found
}

fn no_etcd_left(results: &Path) {
    assert_eq!(
        processes_mentioning(results),
        0,
        "etcd members left running"
    );
}

/// Both runs in one test: they share the host's network namespaces and ports.
#[test]
fn etcd_under_partitions_pauses_and_kills_is_valid_and_serializable_reads_are_caught() {
    if !etcd_available() {
        return;
    }
    let dir = scratch("etcd");
    let results = dir.join("results");
    let r = results.to_str().unwrap();
    let out = run(&[
        "test",
        "--target",
        "etcd",
        "--nodes",
        "3",
        "--net",
        "netns",
        "--nemesis",
        "partition,pause,kill",
        "--nemesis-interval",
        "3",
        "--time-limit",
        "30",
        "--seed",
        "1",
        "--results-dir",
        r,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v = latest(&results);
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["target"], "etcd");
    assert!(
        v["target_version"]
            .as_str()
            .is_some_and(|s| s.starts_with("3.")),
        "{}",
        v["target_version"]
    );
    assert!(
        v["operations"]["write"]["ok"].as_u64().unwrap_or(0) > 100,
        "{}",
        v["operations"]
    );
    let states = v["convergence"]["node_states"]
        .as_object()
        .expect("member states");
    assert_eq!(states.len(), 3);
    assert!(
        states.values().all(|s| s.get("revision").is_some()),
        "{states:?}"
    );
    no_etcd_left(&results);

    // Serializable reads are answered by a member from its own state, so a member cut off from
    // the majority serves stale values: the checker must say so.
    let mut caught = false;
    for seed in ["1", "2"] {
        let out = run(&[
            "test",
            "--target",
            "etcd",
            "--nodes",
            "3",
            "--net",
            "netns",
            "--nemesis",
            "partition",
            "--partitions",
            "isolate-leader,isolate-one",
            "--nemesis-interval",
            "3",
            "--time-limit",
            "30",
            "--etcd-serializable-reads",
            "--seed",
            seed,
            "--results-dir",
            r,
        ]);
        if out.status.code() == Some(1) {
            let v = latest(&results);
            let first = v["explanation"][0].as_str().unwrap_or("").to_string();
            assert!(first.contains("read of"), "{first}");
            caught = true;
            break;
        }
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        caught,
        "serializable reads under partitions were never flagged"
    );
    no_etcd_left(&results);

    // With no fault flags, etcd gets the default faults it can take: clock faults are left
    // out with the reason (etcd is a Go program), not refused.
    let out = run(&[
        "test",
        "--target",
        "etcd",
        "--nodes",
        "3",
        "--time-limit",
        "8",
        "--nemesis-interval",
        "2",
        "--recovery",
        "2",
        "--results-dir",
        r,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("clock faults left out") && err.contains("Go program"),
        "{err}"
    );
    let v = latest(&results);
    assert_eq!(v["verdict"], "valid", "{v}");
    let ran = v["config"]["nemesis"].as_array().expect("nemesis list");
    assert!(!ran.iter().any(|f| f == "clock"), "{ran:?}");
    no_etcd_left(&results);
}
