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

    // With no fault flags, etcd gets the default schedule with the faults it can take: clock
    // faults are left out with the reason (etcd is a Go program), not refused. Its members'
    // roles and terms are sampled (raft.status), so faults aim at its leader, their efficacy
    // is measured, and the election check runs.
    let out = run(&[
        "test",
        "--target",
        "etcd",
        "--nodes",
        "3",
        "--time-limit",
        "15",
        "--recovery",
        "2",
        "--seed",
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
    let election = check_named(&v, "election");
    assert_eq!(election["verdict"], "valid", "{election}");
    assert!(
        v["election"]["leaderships"].as_u64() >= Some(2),
        "{}",
        v["election"]
    );
    let status = std::fs::read_to_string(latest_run(&results).join("nodes/status.jsonl"))
        .expect("status samples");
    let leads = status
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|s| s["role"] == "leader" && s["term"].as_u64().is_some())
        .count();
    assert!(
        leads > 10,
        "{leads} samples of an etcd leader with its term"
    );
    let e = &v["efficacy"];
    assert!(e["hit_leader"].as_u64() >= Some(1), "{e}");
    assert!(e["leader_changes"].as_u64() >= Some(1), "{e}");
    // Aimed at the leader as it was observed: a kill or pause of it, or its isolation.
    let hit = |f: &serde_json::Value| {
        let leader = &f["leader_at_start"]["node"];
        let name = leader.as_str().unwrap_or("");
        f["target"] == "the leader"
            && (f["nodes"] == serde_json::json!([leader])
                || f["grudge"][name]
                    .as_array()
                    .is_some_and(|cut| cut.len() == 2))
    };
    let faults = v["faults"].as_array().expect("faults");
    assert!(
        faults.iter().any(hit),
        "faults were not aimed at etcd's leader: {}",
        v["faults"]
    );
    no_etcd_left(&results);

    campaign_and_replay_on_etcd(&dir);
    crash_storm_on_etcd(&dir);
}

/// The CI-gate commands on etcd: a campaign of one etcd cell (the default schedule: partitions,
/// pauses and kills aimed at its leader), then a replay of that campaign's run with the recorded
/// node names. Both valid; the replay applies the same faults (kinds, nodes, grudges) at the
/// same offsets, within 250 ms.
fn campaign_and_replay_on_etcd(dir: &Path) {
    let file = dir.join("etcd-gate.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"etcd-gate\"\nseeds = [3]\noutput = \"{}\"\n[test]\ntarget = \"etcd\"\n\
             nodes = 3\ntime_limit = 12\nrecovery = 2\n",
            dir.join("campaigns").display()
        ),
    )
    .expect("campaign file");
    let out = run(&["campaign", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let campaign = std::fs::read_dir(dir.join("campaigns").join("etcd-gate"))
        .expect("campaign folder")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("one campaign");
    let c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(campaign.join("campaign.json")).expect("campaign.json"),
    )
    .expect("JSON");
    assert_eq!(c["verdict"], "valid", "{c}");
    let source = campaign.join(c["runs"][0]["dir"].as_str().expect("the run"));
    let recorded = results_json(&source);
    assert_eq!(recorded["target"], "etcd");
    let junit = std::fs::read_to_string(campaign.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("name=\"seed 3\""), "{junit}");

    let results = dir.join("replays");
    let out = run(&[
        "test",
        "--replay",
        source.to_str().unwrap(),
        "--replay-aim",
        "literal",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let replayed = latest(&results);
    assert_eq!(replayed["target"], "etcd");
    assert_eq!(replayed["replay_of"], source.display().to_string());
    let before = recorded["faults"].as_array().expect("faults");
    let after = replayed["faults"].as_array().expect("faults");
    assert!(!before.is_empty());
    assert_eq!(before.len(), after.len(), "{after:?}");
    for (b, a) in before.iter().zip(after) {
        assert_eq!((&a["fault"], &a["grudge"]), (&b["fault"], &b["grudge"]));
        assert_eq!(a["nodes"], b["nodes"]);
        let (was, now) = (
            b["issued_ms"].as_f64().unwrap(),
            a["issued_ms"].as_f64().unwrap(),
        );
        assert!(
            now >= was - 1.0 && now <= was + 250.0,
            "{was} -> {now}: {a}"
        );
    }
    no_etcd_left(&results);
}

/// The crash-storm profile on etcd 3.4: kills of random members every 2 s under unlimited
/// load, first plain kills only, then with power losses (lose-unfsynced) among them. Both
/// valid, and the members' fingerprints compared (same applied index, same revision and
/// Hash). Measured on the development machine: valid, about 45,000 operations in 20 s, 10
/// faults (4 power losses) in the second run.
fn crash_storm_on_etcd(dir: &Path) {
    for (name, extra) in [
        ("storm-kill", vec!["--nemesis", "kill"]),
        ("storm-power", vec![]),
    ] {
        let results = dir.join(name);
        let mut args = vec![
            "test",
            "--target",
            "etcd",
            "--nodes",
            "3",
            "--profile",
            "crash-storm",
            "--time-limit",
            "15",
            "--seed",
            "3",
            "--results-dir",
            results.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let v = latest(&results);
        let f = &v["fingerprints"];
        assert_eq!(f["compared"], true, "{name}: {f}");
        assert_eq!(f["members"].as_array().map(Vec::len), Some(3), "{f}");
        for m in f["members"].as_array().unwrap() {
            assert!(m["values"]["revision"].is_string(), "{m}");
            assert!(
                m["values"]["Hash"].is_string() || m["values"]["HashKV"].is_string(),
                "{m}"
            );
        }
        let faults = v["faults"].as_array().expect("faults");
        assert!(faults.len() >= 4, "{name}: {faults:?}");
        let power = faults
            .iter()
            .filter(|f| f["fault"] == "lose-unfsynced")
            .count();
        if name == "storm-power" {
            assert!(power >= 1, "no power loss in the crash storm: {faults:?}");
        } else {
            assert_eq!(power, 0);
        }
        assert!(
            v["operations"]["write"]["ok"].as_u64().unwrap_or(0) > 1000,
            "{name}: unlimited load should write a lot: {}",
            v["operations"]
        );
        no_etcd_left(&results);
    }
}
