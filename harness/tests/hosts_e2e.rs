//! Nodes on SSH hosts: each "host" is a network namespace running its own sshd (see
//! `common::ssh_hosts`), reached over real SSH with a key pair and known-hosts file made for
//! the test. The bundled Raft and etcd run on them with partitions (nftables on each host),
//! pauses and kills; a killed controller's leftovers are removed by `faultline clean --hosts`;
//! unreachable hosts, wrong host keys and missing binaries are refused before anything starts.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use common::ssh_hosts::SshHosts;
use common::{check_named, latest, latest_run, scratch, stderr};

/// One run at a time: each starts a cluster, and the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn hosts(tag: &str) -> SshHosts {
    if let Some(why) = common::ssh_hosts::missing() {
        panic!("SSH test hosts cannot be made here: {why} (scripts/install-deps installs sshd)");
    }
    SshHosts::create(3, tag)
}

/// The flags that reach `hosts` (their key, their known-hosts file, no ~/.ssh/config).
fn ssh_flags(h: &SshHosts) -> Vec<String> {
    vec![
        "--hosts".into(),
        h.hosts_arg(),
        "--ssh-key".into(),
        h.key.display().to_string(),
        "--known-hosts".into(),
        h.known_hosts.display().to_string(),
        "--ssh-config".into(),
        "/dev/null".into(),
    ]
}

fn test_run(results: &Path, h: &SshHosts, args: &[&str]) -> Output {
    let mut cmd = common::faultline();
    cmd.arg("test")
        .arg("--results-dir")
        .arg(results)
        .args(ssh_flags(h))
        .args(args);
    cmd.output().expect("run faultline test")
}

/// Nothing of faultline left on host i: no process in its namespace but sshd's, no file
/// under its /var/lib/faultline, and its nftables ruleset as it was.
fn assert_host_clean(h: &SshHosts, i: usize, ruleset_before: &str, context: &str) {
    // The agents' supervisors and nodes are killed before the controller returns; give the
    // kernel a moment to reap them.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !h.leftovers_in(i).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        h.leftovers_in(i).is_empty(),
        "{context}: processes left on host {i}: {:?}",
        h.leftovers_in(i)
    );
    let files: Vec<_> = walk(&h.roots[i]);
    assert!(
        files.is_empty(),
        "{context}: files left on host {i}: {files:?}"
    );
    assert_eq!(
        h.nft_ruleset(i),
        ruleset_before,
        "{context}: host {i}'s nftables ruleset changed"
    );
}

/// Node processes of a run on host `i`: processes in its namespace marked with
/// `FAULTLINE_REMOTE_RUN`, other than the supervisors.
fn nodes_on(h: &SshHosts, i: usize) -> Vec<i32> {
    h.processes_in(i)
        .into_iter()
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let marked = environ
                .split(|&b| b == 0)
                .any(|v| v.starts_with(b"FAULTLINE_REMOTE_RUN="));
            let supervisor = String::from_utf8_lossy(&cmdline).contains("supervise");
            marked && !supervisor
        })
        .collect()
}

/// A controller started in the background, killed if the test fails before it ends.
struct Controller(Option<std::process::Child>);

impl Controller {
    fn start(results: &Path, h: &SshHosts, args: &[&str]) -> Controller {
        let child = common::faultline()
            .arg("test")
            .arg("--results-dir")
            .arg(results)
            .args(ssh_flags(h))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start faultline test");
        Controller(Some(child))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().expect("SIGKILL the controller");
            let _ = c.wait();
        }
    }

    fn wait(&mut self) -> Output {
        self.0
            .take()
            .expect("a running controller")
            .wait_with_output()
            .expect("faultline test")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push(format!("{}/", p.display()));
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn raft_on_ssh_hosts_with_partitions_pauses_and_kills_is_valid() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let h = hosts("rv");
    // A rule of the host's own, which must survive the run untouched.
    let own = h.ssh(
        0,
        "nft add table inet hostown && nft add chain inet hostown input '{ type filter hook input priority 0; policy accept; }' && nft add rule inet hostown input tcp dport 9 accept",
    );
    assert!(own.status.success(), "{}", stderr(&own));
    let before: Vec<String> = (0..3).map(|i| h.nft_ruleset(i)).collect();
    let results = scratch("raft-valid");
    let out = test_run(
        &results,
        &h,
        &[
            "--time-limit",
            "24",
            "--nemesis",
            "partition,pause,kill,clock",
            "--schedule",
            "uniform",
            "--nemesis-interval",
            "1",
            "--seed",
            "7",
        ],
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let r = latest(&results);
    assert_eq!(r["verdict"], "valid", "{text}");
    assert_eq!(check_named(&r, "cluster-health")["verdict"], "valid");
    // Every host, its node and its clock.
    let hosts = r["hosts"].as_array().expect("results.json hosts");
    assert_eq!(hosts.len(), 3, "{}", r["hosts"]);
    for (i, host) in hosts.iter().enumerate() {
        assert_eq!(host["name"], h.addresses[i]);
        assert_eq!(host["node"], format!("n{}", i + 1));
        let offset = host["clock_offset_ms"].as_f64().expect("an offset");
        assert!(offset.abs() < 50.0, "same machine, same clock: {offset}");
        assert!(host["warning"].is_null());
    }
    // Faults of each kind ran, on the hosts' processes and tables.
    let kinds: Vec<&str> = r["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["fault"].as_str())
        .collect();
    for k in ["partition", "pause", "kill", "clock"] {
        assert!(kinds.contains(&k), "no {k} fault ran: {kinds:?}");
    }
    let errors: Vec<&serde_json::Value> = r["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["errors"].as_array().is_some_and(|e| !e.is_empty()))
        .collect();
    assert!(errors.is_empty(), "faults with errors: {errors:?}");
    // The nodes' logs and data listings came back.
    let run = latest_run(&results);
    for n in ["n1", "n2", "n3"] {
        let log =
            std::fs::read_to_string(run.join("nodes").join(format!("{n}.log"))).unwrap_or_default();
        assert!(!log.is_empty(), "{n}'s log was not copied back");
        let listing = std::fs::read_to_string(run.join("nodes").join(format!("{n}.data.json")))
            .expect("a data listing");
        assert!(listing.contains("\"bytes\""), "{listing}");
    }
    for (i, b) in before.iter().enumerate() {
        assert_host_clean(&h, i, b, "after a run");
    }
    assert!(before[0].contains("hostown"));
}

#[test]
fn stale_read_bug_is_caught_on_ssh_hosts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let h = hosts("sr");
    let results = scratch("stale-read");
    let mut invalid = 0;
    let mut explanations = Vec::new();
    for seed in ["1", "2"] {
        let out = test_run(
            &results,
            &h,
            &[
                "--raft-bug",
                "stale-read",
                "--nemesis",
                "partition",
                "--partitions",
                "isolate-leader",
                "--nemesis-interval",
                "2",
                "--schedule",
                "uniform",
                "--concurrency",
                "12",
                "--time-limit",
                "15",
                "--seed",
                seed,
            ],
        );
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(1)),
            "seed {seed}: {code:?}\n{}",
            stderr(&out)
        );
        if code == Some(1) {
            invalid += 1;
            explanations.push(latest(&results)["explanation"].to_string());
        }
    }
    assert!(invalid >= 1, "stale-read caught in none of 2 seeds");
    assert!(
        explanations.iter().any(|s| s.contains("read of")),
        "{explanations:?}"
    );
}

#[test]
fn killed_controller_leaves_nothing_after_clean_hosts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let h = hosts("kc");
    let before: Vec<String> = (0..3).map(|i| h.nft_ruleset(i)).collect();
    let results = scratch("killed");
    let mut controller = Controller::start(
        &results,
        &h,
        &[
            "--time-limit",
            "120",
            "--nemesis",
            "partition",
            "--seed",
            "3",
        ],
    );
    common::wait_for_history(&results, "raft-register", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    // While it runs: a node on every host, and the run's table.
    for i in 0..3 {
        assert_eq!(
            nodes_on(&h, i).len(),
            1,
            "host {i}: {:?}",
            h.leftovers_in(i)
        );
        assert!(
            h.nft_ruleset(i).contains("faultline_"),
            "no faultline table on host {i} during the run"
        );
    }
    controller.kill();
    // The nodes outlive their controller (a broken control link must not take them down)...
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        assert_eq!(
            nodes_on(&h, i).len(),
            1,
            "the node on host {i} died with the controller"
        );
    }
    // ... until clean.
    let mut clean = common::faultline();
    clean.arg("clean").args(ssh_flags(&h));
    let out = clean.output().expect("faultline clean");
    let text = format!("{}{}", common::stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    for a in &h.addresses {
        // The node and its supervisor.
        assert!(
            text.lines().any(
                |l| l.contains(&format!("host {a}: removed run raft-register-"))
                    && l.contains(": 2 processes killed")
            ),
            "{text}"
        );
    }
    for (i, b) in before.iter().enumerate() {
        assert_host_clean(&h, i, b, "after clean --hosts");
    }
    // A second clean finds nothing.
    let out = clean.output().expect("faultline clean");
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        !text.contains("removed run") && text.contains("no run to clean"),
        "{text}"
    );
    for (i, b) in before.iter().enumerate() {
        assert_host_clean(&h, i, b, "after a second clean --hosts");
    }
}

#[test]
fn unreachable_host_wrong_host_key_and_missing_binary_are_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = hosts("er");
    let before: Vec<String> = (0..3).map(|i| h.nft_ruleset(i)).collect();
    let results = scratch("refusals");
    let short = ["--time-limit", "5", "--nemesis", "kill"];

    // A host key that is not the one in the known-hosts file.
    let wrong = h.wrong_known_hosts();
    let mut flags = ssh_flags(&h);
    flags[5] = wrong.display().to_string();
    let mut cmd = common::faultline();
    cmd.arg("test")
        .arg("--results-dir")
        .arg(&results)
        .args(flags)
        .args(short);
    let out = cmd.output().expect("run faultline");
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(254), "{text}");
    assert!(
        text.contains(&format!("host {}: cannot connect over SSH", h.addresses[0]))
            && text.contains("host key does not match"),
        "{text}"
    );

    // A binary named on the hosts that is not there.
    let out = test_run(
        &results,
        &h,
        &[
            "--target",
            "etcd",
            "--host-binary",
            "/nonexistent/etcd",
            "--time-limit",
            "5",
            "--nemesis",
            "kill",
        ],
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(254), "{text}");
    assert!(
        text.contains("/nonexistent/etcd (hosts.binary) is not an executable file there"),
        "{text}"
    );

    // A host whose sshd is down.
    h.stop_sshd(2);
    let out = test_run(&results, &h, &short);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(254), "{text}");
    assert!(
        text.contains(&format!("host {}: cannot connect over SSH", h.addresses[2]))
            && text.contains("unreachable"),
        "{text}"
    );
    // Refused before anything started: nothing left on the hosts that were reached, nor on
    // the one reached by the first two attempts only.
    for (i, b) in before.iter().enumerate().take(2) {
        assert_host_clean(&h, i, b, "after refusals");
    }
    assert!(walk(&h.roots[2]).is_empty(), "{:?}", walk(&h.roots[2]));
    assert!(h.leftovers_in(2).is_empty(), "{:?}", h.leftovers_in(2));
}

#[test]
fn etcd_on_ssh_hosts_with_partitions_and_kills_is_valid() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let etcd = which("etcd").expect("etcd is installed (scripts/install-deps)");
    let h = hosts("et");
    // A folder of the user's as the hosts' dir, with files of theirs in bin/ and runs/: the
    // run must leave them alone.
    for root in &h.roots {
        for keep in ["shared/bin/keep", "shared/runs/mine/keep", "shared/keep"] {
            let p = root.join(keep);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, "the user's").expect("write");
        }
    }
    let before: Vec<String> = (0..3).map(|i| h.nft_ruleset(i)).collect();
    let results = scratch("etcd");
    let out = test_run(
        &results,
        &h,
        &[
            "--target",
            "etcd",
            "--etcd-bin",
            &etcd,
            "--time-limit",
            "20",
            "--nemesis",
            "partition,kill,pause",
            "--seed",
            "5",
            "--hosts-dir",
            "/var/lib/faultline/shared",
        ],
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let r = latest(&results);
    assert_eq!(r["verdict"], "valid", "{text}");
    assert_eq!(r["target"], "etcd");
    assert_eq!(r["hosts"].as_array().map(Vec::len), Some(3));
    let log =
        std::fs::read_to_string(latest_run(&results).join("nodes/n1.log")).unwrap_or_default();
    assert!(
        log.contains("etcd"),
        "n1's etcd log did not come back: {log:.300}"
    );
    for (i, b) in before.iter().enumerate() {
        let files = walk(&h.roots[i]);
        let ours: Vec<&String> = files
            .iter()
            .filter(|f| !f.ends_with("/keep") && !f.ends_with('/'))
            .collect();
        assert!(ours.is_empty(), "left on host {i}: {ours:?}");
        for keep in ["shared/bin/keep", "shared/runs/mine/keep", "shared/keep"] {
            assert!(
                h.roots[i].join(keep).is_file(),
                "host {i}: the user's {keep} is gone"
            );
        }
        assert!(h.leftovers_in(i).is_empty(), "{:?}", h.leftovers_in(i));
        assert_eq!(&h.nft_ruleset(i), b);
    }
}

fn which(program: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

/// Cuts host `i` off from the controller (both directions; the other hosts still reach it),
/// or (`cut = false`) joins it again.
fn cut_off(h: &SshHosts, i: usize, cut: bool) {
    let script = match cut {
        true => format!(
            "add table inet flhcut\n\
             add chain inet flhcut input {{ type filter hook input priority -50; policy accept; }}\n\
             add chain inet flhcut output {{ type filter hook output priority -50; policy accept; }}\n\
             add rule inet flhcut input ip saddr {0} drop\n\
             add rule inet flhcut output ip daddr {0} drop\n",
            h.controller_ip
        ),
        false => "delete table inet flhcut\n".to_string(),
    };
    let mut nft = std::process::Command::new("ip")
        .args(["netns", "exec", &h.namespaces[i], "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    use std::io::Write as _;
    nft.stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script");
    assert!(nft.wait().expect("nft").success(), "nft {script}");
}

#[test]
fn a_host_that_stops_answering_is_reported_and_healed_when_it_returns() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let h = hosts("ur");
    let before: Vec<String> = (0..3).map(|i| h.nft_ruleset(i)).collect();
    let results = scratch("unreachable");
    // Host 3 (n3) is cut off from about 5 s to 19 s: a pause and a partition of n3 start
    // before and end while it is away (their heals cannot reach it: they must be applied when
    // it is back); a kill and restart of n3 come after it is back (its restart must be the new
    // process, not one the agent before the outage knew).
    let schedule = results.join("schedule.toml");
    std::fs::write(
        &schedule,
        r#"schedule = "replay"
nemesis = ["pause", "partition", "kill"]
replay_aim = "literal"

[[faults]]
at = 2.0
heal = 8.0
fault = "pause"
nodes = ["n3"]

[[faults]]
at = 3.0
heal = 9.0
fault = "partition"
grudge = { n1 = ["n3"], n2 = ["n3"], n3 = ["n1", "n2"] }

[[faults]]
at = 25.0
heal = 27.0
fault = "kill"
nodes = ["n3"]
"#,
    )
    .expect("write the schedule");
    let schedule = schedule.display().to_string();
    let mut controller = Controller::start(
        &results,
        &h,
        &["--config", &schedule, "--time-limit", "33", "--seed", "11"],
    );
    common::wait_for_history(&results, "raft-register", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(5));
    cut_off(&h, 2, true);
    std::thread::sleep(Duration::from_secs(14));
    cut_off(&h, 2, false);
    // Back (about 19 s), before the kill (25 s): n3 runs again and host 3 drops nothing.
    std::thread::sleep(Duration::from_secs(4));
    let n3 = nodes_on(&h, 2);
    assert_eq!(n3.len(), 1, "{:?}", h.leftovers_in(2));
    let state = std::fs::read_to_string(format!("/proc/{}/stat", n3[0]))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
        })
        .flatten();
    assert_ne!(
        state,
        Some('T'),
        "n3 is still paused after its host came back"
    );
    let rules = h.nft_ruleset(2);
    assert!(
        rules.contains("faultline_") && !rules.contains("drop"),
        "host 3 still partitioned after it came back:\n{rules}"
    );
    let out = controller.wait();
    let text = stderr(&out);
    // Checked like any run (the bundled Raft is correct: valid).
    assert_eq!(out.status.code(), Some(0), "{text}");
    let r = latest(&results);
    let outages = r["hosts"][2]["unreachable"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(outages.len(), 1, "{}", r["hosts"]);
    let (down, up) = (outages[0][0].as_f64(), outages[0][1].as_f64());
    assert!(
        down.is_some_and(|d| d > 4_000.0) && up.is_some_and(|u| u > down.unwrap_or(0.0)),
        "{outages:?}"
    );
    for other in [0, 1] {
        assert_eq!(r["hosts"][other]["unreachable"], serde_json::json!([]));
    }
    // The kill after the host came back hit n3's node and the heal started a new one that
    // the cluster check saw running to the end.
    let kill = r["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["fault"] == "kill")
        .cloned()
        .expect("the kill ran");
    assert_eq!(kill["errors"], serde_json::json!([]), "{kill}");
    assert_eq!(check_named(&r, "cluster-health")["verdict"], "valid");
    // The faults that came while it was away say so.
    let away: Vec<&serde_json::Value> = r["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["fault"] != "kill")
        .collect();
    assert!(
        away.iter()
            .any(|f| f["errors"].to_string().contains("unreachable")),
        "{away:?}"
    );
    let report =
        std::fs::read_to_string(latest_run(&results).join("report.html")).expect("report.html");
    assert!(
        report.contains(&format!("host {} did not answer from", h.addresses[2])),
        "the report does not say the host was away"
    );
    // Whatever the faults did to it meanwhile was undone once it was back: the run ended
    // with its table deleted and its node stopped like the others.
    for (i, b) in before.iter().enumerate() {
        assert_host_clean(&h, i, b, "after a host came back");
    }
}

#[test]
fn ctrl_c_ends_the_run_on_every_host() {
    use std::os::unix::process::CommandExt as _;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let h = hosts("cc");
    let before: Vec<String> = (0..3).map(|i| h.nft_ruleset(i)).collect();
    let results = scratch("ctrl-c");
    // As a terminal does it: SIGINT to the controller's whole process group.
    let child = common::faultline()
        .arg("test")
        .arg("--results-dir")
        .arg(&results)
        .args(ssh_flags(&h))
        .args([
            "--time-limit",
            "120",
            "--nemesis",
            "partition,pause",
            "--seed",
            "4",
        ])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start faultline test");
    let mut controller = Controller(Some(child));
    common::wait_for_history(&results, "raft-register", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4));
    let pgid = controller
        .0
        .as_ref()
        .map(|c| c.id() as i32)
        .expect("running");
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::SIGINT)
        .expect("SIGINT");
    let out = controller.wait();
    let text = stderr(&out);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{:?}\n{text}",
        out.status
    );
    let r = latest(&results);
    assert_eq!(r["interrupted"], true, "{text}");
    // The SSH connections outlived the Ctrl-C: no host counted as away, logs came back.
    for host in r["hosts"].as_array().expect("hosts") {
        assert_eq!(host["unreachable"], serde_json::json!([]), "{text}");
    }
    let log =
        std::fs::read_to_string(latest_run(&results).join("nodes/n2.log")).unwrap_or_default();
    assert!(log.contains("node started"), "{log:.300}");
    for (i, b) in before.iter().enumerate() {
        assert_host_clean(&h, i, b, "after Ctrl-C");
    }
}
