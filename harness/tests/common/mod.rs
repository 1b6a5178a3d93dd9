//! Helpers shared by the end-to-end tests: running the real `faultline` binary, scratch
//! folders, reading a run's results, and finding processes a run left behind.
//!
//! Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod browser;
pub mod ssh_hosts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The `faultline` binary under test.
pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

/// Runs `faultline ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    faultline().args(args).output().expect("run faultline")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh, empty folder for one test, named after the test binary and `name` (and this
/// process, so concurrent `cargo test` runs never share one).
pub fn scratch(name: &str) -> PathBuf {
    let binary = module_path!().split("::").next().unwrap_or("tests");
    let dir =
        std::env::temp_dir().join(format!("faultline-{binary}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The newest run in a results folder (what `results/latest` points at).
pub fn latest_run(results: &Path) -> PathBuf {
    let target = std::fs::read_link(results.join("latest")).expect("results/latest is a symlink");
    results.join(target)
}

/// A run's `results.json`.
pub fn results_json(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).expect("results.json"))
        .expect("results.json is JSON")
}

/// The newest run's `results.json`.
pub fn latest(results: &Path) -> Value {
    results_json(&latest_run(results))
}

/// The check named `name` in a run's `results.json` (its own JUnit case); fails the test when
/// the run has no such check.
pub fn check_named(results: &Value, name: &str) -> Value {
    results["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} check in {}", results["checks"]))
}

/// Waits until a run of `name` under `results` has started recording (its `history.jsonl`
/// exists), failing the test after `patience`.
pub fn wait_for_history(results: &Path, name: &str, patience: std::time::Duration) {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let started = std::fs::read_dir(results.join(name))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("history.jsonl").is_file());
        if started {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the test never started recording"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// faultline's network namespaces on this host now (`fl-...`), as `ip netns list` names them.
pub fn fl_namespaces() -> Vec<String> {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with("fl-"))
        .map(str::to_string)
        .collect()
}

/// How many processes have `needle` (a run's folder) in their command line: whatever a
/// run started — nodes, etcd members, a custom target's commands — names its folder.
pub fn processes_mentioning(needle: &Path) -> usize {
    processes_where(needle, |_| true)
}

/// How many `faultline node` processes have `needle` in their command line.
pub fn node_processes(needle: &Path) -> usize {
    processes_where(needle, |cmdline| cmdline.contains(" node "))
}

fn processes_where(needle: &Path, also: impl Fn(&str) -> bool) -> usize {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .is_ok_and(|c| c.contains(&needle) && also(&c))
        })
        .count()
}

/// Runs `faultline test --results-dir RESULTS --seed S ARGS` for each seed; returns how many
/// runs were invalid and their explanations. A run that ends otherwise than valid or invalid
/// fails the test; `after(args, output)` checks what each run must leave (nothing running,
/// nothing mounted, ...).
#[allow(dead_code)] // not every test binary counts verdicts
pub fn invalid_runs(
    results: &Path,
    args: &[&str],
    seeds: &[&str],
    mut after: impl FnMut(&[&str], &Output),
) -> (usize, Vec<String>) {
    let mut invalid = 0;
    let mut explanations = Vec::new();
    for seed in seeds {
        let mut all = vec![
            "test",
            "--results-dir",
            results.to_str().unwrap(),
            "--seed",
            seed,
        ];
        all.extend_from_slice(args);
        let out = run(&all);
        match out.status.code() {
            Some(1) => {
                invalid += 1;
                let r = latest(results);
                explanations.extend(
                    r["explanation"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string)),
                );
            }
            Some(0) => {}
            other => panic!("{all:?} exited {other:?}: {}", stderr(&out)),
        }
        after(&all, &out);
    }
    (invalid, explanations)
}
