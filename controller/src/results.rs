//! The results store: `RESULTS_DIR/NAME/TIMESTAMP/` with the history (JSONL and Jepsen EDN),
//! the resolved test definition, the verdict and statistics, the controller's log and one log
//! per node; `RESULTS_DIR/latest` points at the newest run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faultline_checker::format::{self, edn, jsonl, Independent};
use faultline_checker::set_full::{check_sets, SetReport};
use faultline_checker::text::for_terminal;
use faultline_checker::{
    check_history, CheckOptions, Event, EventType, History, Outcome, Process, Report, Verdict,
};
use faultline_nemesis::upgrade::UpgradeReport;
use faultline_nemesis::FaultRecord;
use faultline_workloads::Checker;
use serde_json::{json, Value};

use super::cluster::Cluster;
use super::config::TestConfig;
use super::efficacy::{self, Efficacy, OpTimes};
use super::{election, health, status_sampler};

/// What the run produced, for the results.
pub struct RunSummary {
    /// The final convergence check (`None` when it was not run).
    pub convergence: Option<super::convergence::Convergence>,
    /// The target's name and version, as it reported them.
    pub target: String,
    pub target_version: Option<String>,
    /// Every workload operation's latency as its client measured it (recording included).
    pub client_latencies_us: Vec<u32>,
    pub checker: Checker,
    pub faults: Vec<FaultRecord>,
    pub interrupted: bool,
    pub clients_ran: Duration,
    /// When the clients were told to stop (since the start): no operation began after it.
    pub stop_sent: Duration,
    pub total: Duration,
    pub history: PathBuf,
    pub recorded: bool,
    /// Why the final reads were skipped for lack of a working cluster, if they were.
    pub not_recovered: Option<String>,
    /// What the rolling upgrade did, if there was one.
    pub upgrade: Option<faultline_nemesis::upgrade::UpgradeReport>,
    /// The SSH hosts the nodes ran on (empty when they ran here).
    pub hosts: Vec<faultline_remote::HostReport>,
}

/// The replicas' fingerprints as the report's table shows them: one row per member with its
/// position, what was compared, whether it differs, and the last faults that hit it (the
/// likeliest cause of a divergence).
fn fingerprint_rows(summary: &RunSummary) -> Value {
    let Some(f) = summary.convergence.as_ref().map(|c| &c.fingerprints) else {
        return Value::Null;
    };
    let rows: Vec<Value> = f
        .members
        .iter()
        .map(|(node, m)| {
            let mut hits: Vec<&FaultRecord> = summary
                .faults
                .iter()
                .filter(|r| r.nodes.iter().any(|n| n == node))
                .collect();
            hits.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
            let last: Vec<String> = hits
                .iter()
                .rev()
                .take(3)
                .rev()
                .map(|r| {
                    format!(
                        "#{} {}{} at {:.1} s",
                        r.id,
                        r.fault.name(),
                        r.kind
                            .as_deref()
                            .map(|k| format!(" ({k})"))
                            .unwrap_or_default(),
                        r.start_ms / 1e3
                    )
                })
                .collect();
            json!({
                "node": node,
                "position": m.position,
                "values": m.values,
                "differs": f.differ.contains(node),
                "last_faults": last,
            })
        })
        .collect();
    json!({
        "compared": f.compared,
        "compared_fields": f.compared_fields,
        "note": f.note,
        "members": rows,
    })
}

/// Creates `RESULTS_DIR/NAME/<UTC timestamp>/` (with a suffix if two runs start in the same
/// second).
pub fn create_run_dir(config: &TestConfig) -> Result<PathBuf, String> {
    let base = config.results_dir.join(&config.name);
    std::fs::create_dir_all(&base).map_err(|e| {
        format!(
            "cannot create the results folder {}: {e} (choose another with --results-dir)",
            base.display()
        )
    })?;
    create_stamped_dir(&base, &format!("runs of {}", config.name))
}

/// Creates `BASE/<UTC timestamp>/` in an existing `base`, with a suffix (`-1` ... `-99`) when
/// another process took that second's name first: creating the folder is the claim, so two
/// runs (or campaigns) never share one. `what` names them in the error ("runs of NAME").
pub fn create_stamped_dir(base: &Path, what: &str) -> Result<PathBuf, String> {
    let stamp = utc_stamp(SystemTime::now());
    for n in 0..100 {
        let name = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!("too many {what} in one second"))
}

/// `20261125T193000Z` for a time (UTC, basic ISO 8601: sorts and is safe in file names).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Sends the controller's tracing output to `faultline.log` in the run folder.
pub fn init_logging(run_dir: &Path) -> Result<(), String> {
    let path = run_dir.join("faultline.log");
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // A second test in the same process (tests do that) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// Writes the report of a finished run from its folder (called once `results.json` is there).
pub type WriteReport = fn(&Path);

/// Checks the recorded history, writes every results file and the report, prints the summary,
/// and returns the verdict.
pub async fn finish(
    config: &TestConfig,
    run_dir: &Path,
    cluster: &Arc<Cluster>,
    summary: RunSummary,
    write_report: WriteReport,
) -> Result<Verdict, String> {
    // Check what is on disk: that is the evidence, and proves the file is complete.
    let mut history = if summary.recorded {
        let parsed = format::read_path(
            &summary.history,
            Some(format::Format::Jsonl),
            Independent::No,
        )
        .map_err(|e| format!("the recorded history cannot be read back: {e}"))?;
        parsed.history
    } else {
        History::default()
    };

    eprintln!("  checking {} events", history.events.len());
    let checked = if summary.recorded {
        let checker = summary.checker.clone();
        let options = CheckOptions {
            time_limit: Some(config.check_time_limit),
            stop_at_first_failure: false,
            ..CheckOptions::default()
        };
        let h = history.clone();
        tokio::task::spawn_blocking(move || check(&checker, &h, &options))
            .await
            .map_err(|_| "the checker crashed".to_string())??
    } else {
        Checked {
            verdict: Verdict::Unknown,
            sentences: vec!["nothing was recorded (--no-record)".to_string()],
            json: Value::Null,
            report: None,
        }
    };
    // Failure windows, as histories that re-check on their own.
    if let Some(report) = checked.report.as_ref().filter(|r| !r.failures.is_empty()) {
        write_windows(run_dir, report);
    }

    let ops = history.operations().map_err(|e| e.to_string())?;
    let stats = statistics(&history, &ops);

    // What the faults did, who led when, and whether the cluster was really there.
    let (samples, samples_note) = election::read_samples(&run_dir.join("nodes/status.jsonl"));
    if let Some(note) = samples_note {
        tracing::warn!("{note}");
    }
    let election = election::check(&samples, status_sampler::INTERVAL.as_secs_f64() * 1e3);
    let op_times = op_times(&history, &ops);
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let clients_end_ns = summary.stop_sent.as_nanos().min(u128::from(u64::MAX)) as u64;
    let (efficacy, efficacy_summary) =
        efficacy::assess(&summary.faults, &samples, &op_times, &names, clients_end_ns);
    if summary.recorded && !efficacy.is_empty() {
        append_efficacy(&summary.history, &mut history, &efficacy)?;
    }
    let crashes: Vec<health::Crash> = cluster
        .crashes()
        .into_iter()
        .map(|(node, status)| health::Crash {
            log_tail: cluster.log_tail(&node, 5),
            node,
            status,
        })
        .collect();
    let ok_writes = op_times.iter().filter(|o| o.ok && !o.is_read).count();
    let mismatches = op_times.iter().filter(|o| o.mismatch).count();
    let health = health::check(
        crashes,
        // Without a history (--no-record) there is nothing to count.
        summary.recorded.then_some(health::Served {
            answered: stats.ok + mismatches,
            completed: stats.ok + stats.fail + stats.info,
            ok_writes,
        }),
        summary.not_recovered.as_deref(),
        summary.interrupted,
    );
    // Without a history (--no-record) there are no writes to judge recovery by.
    let slow = config.max_recovery.filter(|_| summary.recorded).map(|max| {
        efficacy::slow_recoveries(
            &summary.faults,
            &efficacy,
            &op_times,
            max.as_secs_f64() * 1e3,
            clients_end_ns,
        )
    });

    // Each check's own answer (one JUnit test case each), before they are combined.
    let mut checks = vec![json!({
        "name": check_name(&checked.json),
        "verdict": checked.verdict.as_str(),
        "explanation": checked.sentences,
    })];
    if let Some(c) = summary.convergence.as_ref() {
        let sentence = c.sentence();
        let (verdict, explanation) = match (&c.skipped, &sentence) {
            (_, Some(s)) => ("invalid", vec![s.clone()]),
            (Some(why), None) => ("skipped", vec![why.clone()]),
            (None, None) => ("valid", Vec::new()),
        };
        checks.push(json!({"name": "convergence", "verdict": verdict, "explanation": explanation}));
    }
    checks.push(json!({
        "name": "election",
        "verdict": election.verdict,
        "explanation": election.explanation,
    }));
    checks.push(json!({
        "name": "cluster-health",
        "verdict": health.verdict,
        "explanation": health.explanation,
    }));
    // The rolling upgrade: a step that failed (a refused start, a node that never rejoined)
    // is a finding of its own, with its own JUnit case.
    let upgrade_json = summary
        .upgrade
        .as_ref()
        .map(|u| upgrade_results(u, &op_times, clients_end_ns));
    // A step faultline itself could not carry out (it could not stop or start the node) says
    // nothing about the system: the upgrade is then unknown, not invalid.
    let failed_step = summary.upgrade.as_ref().and_then(|u| u.failure());
    let harness_error = failed_step.is_some_and(|s| s.outcome == "error");
    let upgrade_finding = failed_step.and_then(|s| s.finding());
    if let Some(u) = &summary.upgrade {
        let (verdict, explanation) = match (&upgrade_finding, u.complete) {
            (Some(f), _) if harness_error => ("unknown", vec![f.clone()]),
            (Some(f), _) => ("invalid", vec![f.clone()]),
            (None, true) => ("valid", vec![upgrade_line(u)]),
            (None, false) => (
                "skipped",
                vec![format!(
                    "the upgrade did not complete: {} of {} steps taken before the test ended",
                    u.steps.len(),
                    u.steps.len() + u.steps_left
                )],
            ),
        };
        checks.push(json!({"name": "upgrade", "verdict": verdict, "explanation": explanation}));
    }
    if let Some(slow) = &slow {
        checks.push(json!({
            "name": "availability",
            "verdict": if slow.is_empty() { "valid" } else { "invalid" },
            "explanation": slow.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        }));
    }
    // A divergence, two leaders in one term, an unhealthy cluster or a slow recovery is a
    // failure whatever the history says; their sentences come first.
    let mut checked = checked;
    let mut first: Vec<String> = Vec::new();
    if let Some(sentence) = summary.convergence.as_ref().and_then(|c| c.sentence()) {
        first.push(sentence);
    }
    if election.verdict == "invalid" {
        first.extend(
            election
                .explanation
                .iter()
                .map(|e| format!("election: {e}")),
        );
    }
    if health.verdict == "invalid" {
        first.extend(
            health
                .explanation
                .iter()
                .map(|e| format!("cluster-health: {e}")),
        );
    }
    if let Some(slow) = &slow {
        first.extend(slow.iter().map(|(_, e)| format!("availability: {e}")));
    }
    if let Some(f) = upgrade_finding.as_ref().filter(|_| !harness_error) {
        first.push(format!("upgrade: {f}"));
    }
    if !first.is_empty() {
        checked.verdict = Verdict::Invalid;
        first.append(&mut checked.sentences);
        checked.sentences = first;
    }
    if let Some(f) = upgrade_finding.as_ref().filter(|_| harness_error) {
        if checked.verdict == Verdict::Valid {
            checked.verdict = Verdict::Unknown;
        }
        checked.sentences.push(format!("upgrade (not judged): {f}"));
    }
    let faults: Vec<Value> = summary
        .faults
        .iter()
        .zip(efficacy.iter())
        .map(|(f, e)| {
            let mut v = json!(f);
            v["efficacy"] = json!(e);
            v
        })
        .collect();
    if summary.recorded {
        std::fs::write(run_dir.join("history.edn"), edn::write(&history.events))
            .map_err(|e| format!("cannot write history.edn: {e}"))?;
    }
    let found = Found {
        diverged: summary
            .convergence
            .as_ref()
            .and_then(|c| c.sentence())
            .is_some(),
        unhealthy: health.verdict == "invalid",
        slow_from: slow.iter().flatten().map(|(t, _)| *t).min(),
    };
    let first_violation_s = first_violation(&history, &checked, &election, found, clients_end_ns)
        .map(|ns| ns as f64 / 1e9);
    // During a rolling upgrade, which versions were running when things first went wrong.
    if let (Some(u), Some(at), Verdict::Invalid) =
        (&summary.upgrade, first_violation_s, checked.verdict)
    {
        if let Some(sentence) = versions_at(u, &names, at * 1e3) {
            checked.sentences.push(sentence);
        }
    }
    let efficacy_json = {
        let mut v = json!(efficacy_summary);
        v["line"] = json!(efficacy_summary.line());
        v
    };
    let results = json!({
        "name": config.name,
        "seed": config.seed,
        "schedule": config.schedule.name(),
        "replay_of": config.replay_of,
        "target": summary.target,
        "target_version": summary.target_version,
        "workload": config.workload.to_string(),
        "started": utc_stamp(SystemTime::now() - summary.total),
        "duration_s": summary.total.as_secs_f64(),
        "clients_ran_s": summary.clients_ran.as_secs_f64(),
        "interrupted": summary.interrupted,
        "verdict": checked.verdict.as_str(),
        "explanation": checked.sentences,
        "first_violation_s": first_violation_s,
        "checker": checked.json,
        "checks": checks,
        "operations": stats.counts,
        "client": client_stats(&summary),
        "latency_ms": stats.latency,
        "faults": faults,
        "efficacy": efficacy_json,
        "election": election,
        "health": health,
        "convergence": summary.convergence,
        "fingerprints": fingerprint_rows(&summary),
        "upgrade": upgrade_json,
        "hosts": (!summary.hosts.is_empty()).then_some(&summary.hosts),
        "unexpected_exits": cluster.crashes().iter().map(|(n, how)| json!({"node": n, "status": how})).collect::<Vec<_>>(),
        "nodes": cluster.nodes,
        "config": config.to_file(),
        "faultline_version": env!("CARGO_PKG_VERSION"),
    });
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(run_dir.join("results.json"), text + "\n")
        .map_err(|e| format!("cannot write results.json: {e}"))?;
    point_latest(config, run_dir);
    write_report(run_dir);

    let verdict_text = match checked.verdict {
        Verdict::Valid => "VALID",
        Verdict::Invalid => "INVALID",
        Verdict::Unknown => "UNKNOWN",
    };
    eprintln!(
        "\n{verdict_text}: {} ok, {} fail, {} info operations in {:.0} s; {} faults",
        stats.ok,
        stats.fail,
        stats.info,
        summary.clients_ran.as_secs_f64(),
        summary.faults.len()
    );
    for s in checked.sentences.iter().take(5) {
        eprintln!("  {}", for_terminal(s));
    }
    if !summary.faults.is_empty() {
        eprintln!("  faults: {}", efficacy_summary.line());
    }
    eprintln!("  results: {}", run_dir.display());
    Ok(checked.verdict)
}

/// `3.4.23 -> 3.5.1 -> 3.4.23: 6 steps, every node rejoined (slowest 1.8 s)`.
fn upgrade_line(u: &UpgradeReport) -> String {
    let slowest = u
        .steps
        .iter()
        .filter_map(|s| s.rejoin_ms)
        .fold(0.0f64, f64::max);
    format!(
        "{}: {} steps, every node rejoined (slowest in {:.1} s)",
        u.path.join(" -> "),
        u.steps.len(),
        slowest / 1e3
    )
}

/// Which version each node ran at `at_ms`, as a sentence about the first violation:
/// before the upgrade, with the cluster mixed (who ran what), or after it.
fn versions_at(u: &UpgradeReport, names: &[String], at_ms: f64) -> Option<String> {
    let first = u.path.first()?;
    let mut running: BTreeMap<&str, &str> =
        names.iter().map(|n| (n.as_str(), first.as_str())).collect();
    for s in &u.steps {
        if s.restarted_ms.is_some_and(|t| t <= at_ms) {
            running.insert(&s.node, &s.to_version);
        }
        // A failed step put the node back on its previous version when it ended.
        if !s.succeeded() && s.end_ms <= at_ms {
            running.insert(&s.node, &s.from_version);
        }
    }
    let mut by_version: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, version) in &running {
        by_version.entry(version).or_default().push(node);
    }
    let at = format!("the first violation (at {:.1} s)", at_ms / 1e3);
    let started = u.steps.first().is_some_and(|s| s.start_ms <= at_ms);
    Some(match by_version.len() {
        1 if !started => format!("upgrade: {at} came before the upgrade began"),
        1 => format!(
            "upgrade: {at} came with every node on {}",
            by_version.keys().next().copied().unwrap_or_default()
        ),
        _ => format!(
            "upgrade: {at} came while the cluster was mixed: {}",
            by_version
                .iter()
                .map(|(v, nodes)| format!("{} on {v}", nodes.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })
}

/// After each step: how long writes stopped succeeding around it.
const AVAILABILITY_AFTER_MS: f64 = 5_000.0;

/// results.json `upgrade`: the report, and for each step how writes fared from its start to
/// 5 s after its end: the longest stretch without a successful write that overlaps that
/// window, and how many writes failed or timed out in it.
fn upgrade_results(u: &UpgradeReport, ops: &[efficacy::OpTimes], clients_end_ns: u64) -> Value {
    let mut ok_writes: Vec<u64> = ops
        .iter()
        .filter(|o| o.ok && !o.is_read)
        .filter_map(|o| o.complete_ns)
        .collect();
    ok_writes.sort_unstable();
    let steps: Vec<Value> = u
        .steps
        .iter()
        // A step with no node stands for an upgrade that could not run at all.
        .filter(|s| !s.node.is_empty())
        .map(|s| {
            let from = (s.start_ms * 1e6) as u64;
            let to = (((s.end_ms + AVAILABILITY_AFTER_MS) * 1e6) as u64).min(clients_end_ns);
            // Stretches between consecutive successful writes, and from the window's edges.
            let mut marks: Vec<u64> = vec![from.min(to)];
            marks.extend(ok_writes.iter().copied().filter(|t| *t > from && *t < to));
            marks.push(to);
            let before = ok_writes.iter().rev().find(|t| **t <= from).copied();
            if let Some(b) = before {
                marks[0] = b;
            }
            let longest = marks
                .windows(2)
                .map(|w| w[1].saturating_sub(w[0]))
                .max()
                .unwrap_or(0);
            let in_window = |o: &&efficacy::OpTimes| {
                !o.is_read && o.invoke_ns >= from && o.invoke_ns < to && !o.ok && !o.mismatch
            };
            let failed = ops.iter().filter(in_window).filter(|o| o.failed).count();
            let unknown = ops.iter().filter(in_window).filter(|o| !o.failed).count();
            let mut v = json!(s);
            v["writes"] = json!({
                "window_ms": [s.start_ms, to as f64 / 1e6],
                "longest_without_ok_write_ms": (longest as f64 / 1e6).round(),
                "failed": failed,
                "indeterminate": unknown,
            });
            v
        })
        .collect();
    json!({
        "path": u.path,
        "order": u.order,
        "complete": u.complete,
        "steps_left": u.steps_left,
        "steps": steps,
        "line": if u.complete { Some(upgrade_line(u)) } else { None },
    })
}

struct Checked {
    verdict: Verdict,
    sentences: Vec<String>,
    json: Value,
    report: Option<Report>,
}

/// A check's name as CI systems show it: `linearizable (cas-register)`, `set`.
fn check_name(checker: &Value) -> String {
    let kind = checker
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("check");
    match checker.get("model").and_then(Value::as_str) {
        Some(model) => format!("{kind} ({model})"),
        None => kind.to_string(),
    }
}

fn check(checker: &Checker, history: &History, options: &CheckOptions) -> Result<Checked, String> {
    match checker {
        Checker::Linearizable(spec) => {
            let report = check_history(spec, history, options).map_err(|e| e.to_string())?;
            Ok(Checked {
                verdict: report.verdict,
                sentences: sentences(&report),
                json: json!({
                    "kind": "linearizable",
                    "model": spec.name(),
                    "report": report,
                }),
                report: Some(report),
            })
        }
        Checker::Set => {
            let sets = check_sets(history).map_err(|e| e.to_string())?;
            let verdict = Verdict::combine(
                sets.iter()
                    .map(|(_, r)| r.verdict.unwrap_or(Verdict::Unknown)),
            );
            let sentences = sets
                .iter()
                .filter(|(_, r)| r.verdict != Some(Verdict::Valid))
                .map(|(_, r): &(Option<Value>, SetReport)| r.sentence())
                .collect();
            Ok(Checked {
                verdict,
                sentences,
                json: json!({
                    "kind": "set",
                    "sets": sets.iter().map(|(k, r)| json!({"key": k, "report": r})).collect::<Vec<_>>(),
                }),
                report: None,
            })
        }
    }
}

fn sentences(report: &Report) -> Vec<String> {
    let mut out: Vec<String> = report
        .failures
        .iter()
        .map(|f| {
            let key = f
                .key
                .as_ref()
                .map(|k| format!("key {}: ", faultline_checker::text::json_for_terminal(k)))
                .unwrap_or_default();
            format!("{key}{}", f.sentence)
        })
        .collect();
    for u in &report.unknown {
        out.push(format!("a key was not decided: {}", u.reason));
    }
    out
}

/// Throughput and latency as the clients measured them (works without a history too).
fn client_stats(summary: &RunSummary) -> Value {
    let mut v = summary.client_latencies_us.clone();
    v.sort_unstable();
    let secs = summary.clients_ran.as_secs_f64().max(1e-9);
    let q = |p: f64| {
        v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map(|&us| f64::from(us) / 1e3)
    };
    json!({
        "operations": v.len(),
        "ops_per_s": v.len() as f64 / secs,
        "latency_ms": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": q(1.0)},
    })
}

struct Statistics {
    counts: Value,
    latency: Value,
    ok: usize,
    fail: usize,
    info: usize,
}

/// Operation counts by function and outcome, and latency quantiles of completed operations.
fn statistics(history: &History, ops: &[faultline_checker::Operation]) -> Statistics {
    let mut counts: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let (mut ok, mut fail, mut info) = (0, 0, 0);
    for op in ops {
        let invoke = &history.events[op.invoke];
        let outcome = match op.outcome {
            Outcome::Ok => {
                ok += 1;
                "ok"
            }
            Outcome::Fail => {
                fail += 1;
                "fail"
            }
            Outcome::Info | Outcome::Pending => {
                info += 1;
                "info"
            }
        };
        *counts
            .entry(invoke.f.clone())
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        if let (Outcome::Ok, Some(c)) = (op.outcome, op.completion) {
            if let (Some(a), Some(b)) = (invoke.time, history.events[c].time) {
                latencies
                    .entry(invoke.f.clone())
                    .or_default()
                    .push(b.saturating_sub(a) as f64 / 1e6);
            }
        }
    }
    let mut latency = serde_json::Map::new();
    for (f, mut v) in latencies {
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        latency.insert(
            f,
            json!({"count": v.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1.0)}),
        );
    }
    Statistics {
        counts: json!(counts),
        latency: Value::Object(latency),
        ok,
        fail,
        info,
    }
}

/// Points `RESULTS_DIR/latest` at this run (a relative symlink, replaced atomically).
fn point_latest(config: &TestConfig, run_dir: &Path) {
    let Some(stamp) = run_dir.file_name() else {
        return;
    };
    let target = Path::new(&config.name).join(stamp);
    let tmp = config
        .results_dir
        .join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let done = std::os::unix::fs::symlink(&target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, config.results_dir.join("latest")));
    if let Err(e) = done {
        tracing::warn!("cannot update results/latest: {e}");
    }
}

/// Writes each failure's window into `failures/`, for re-checking.
fn write_windows(run_dir: &Path, report: &Report) {
    let _ = std::fs::create_dir_all(run_dir.join("failures"));
    for (i, f) in report.failures.iter().enumerate() {
        let mut out = Vec::new();
        if jsonl::write(&mut out, &f.window_events).is_ok() {
            let _ = std::fs::write(
                run_dir.join("failures").join(format!("{i}.window.jsonl")),
                out,
            );
        }
    }
}

/// Each client operation's times, node and outcome, for efficacy.
fn op_times(history: &History, ops: &[faultline_checker::Operation]) -> Vec<OpTimes> {
    ops.iter()
        .map(|op| {
            let invoke = &history.events[op.invoke];
            let completion = op.completion.map(|c| &history.events[c]);
            OpTimes {
                is_read: invoke.f.starts_with("read"),
                ok: op.outcome == Outcome::Ok,
                failed: op.outcome == Outcome::Fail,
                mismatch: op.outcome == Outcome::Fail
                    && completion
                        .and_then(|c| c.error.as_ref())
                        .and_then(Value::as_str)
                        == Some("cas-mismatch"),
                invoke_ns: invoke.time.unwrap_or(0),
                complete_ns: completion.and_then(|c| c.time),
                // The node that answered (after redirects), else the one asked.
                node: completion
                    .and_then(|c| c.node.clone())
                    .or_else(|| invoke.node.clone()),
            }
        })
        .collect()
}

/// Appends one `efficacy` nemesis event per fault to the history (file and memory), stamped
/// with the history's last time: what each fault did, known only once the run is over.
fn append_efficacy(
    path: &Path,
    history: &mut History,
    efficacy: &[Efficacy],
) -> Result<(), String> {
    use std::io::Write as _;
    let first = history.events.last().map_or(0, |e| e.index + 1);
    let time = history.events.iter().filter_map(|e| e.time).max();
    let mut text = Vec::new();
    for (index, e) in (first..).zip(efficacy) {
        let event = Event {
            index,
            time,
            process: Process::Nemesis,
            kind: EventType::Info,
            f: "efficacy".to_string(),
            key: None,
            value: json!(e),
            node: None,
            error: None,
            line: history.events.len() + 1,
        };
        text.extend_from_slice(jsonl::event_line(&event).as_bytes());
        text.push(b'\n');
        history.events.push(event);
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
    file.write_all(&text)
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))
}

/// The failures found after the run, for [`first_violation`].
struct Found {
    diverged: bool,
    unhealthy: bool,
    /// When the first `--max-recovery` bound ran out.
    slow_from: Option<u64>,
}

/// When the first violation became visible, in nanoseconds since the start: the earliest
/// completion of an operation the checker could not place, the first read that missed a set
/// element, the first sample of a second leader in one term, the moment a recovery bound ran
/// out, or (a divergence or an unhealthy cluster is found after the run) the end of the
/// clients' run.
fn first_violation(
    history: &History,
    checked: &Checked,
    election: &election::ElectionReport,
    found: Found,
    clients_end_ns: u64,
) -> Option<u64> {
    let time_of = |index: u64| {
        history
            .events
            .binary_search_by_key(&index, |e| e.index)
            .ok()
            .and_then(|i| history.events[i].time)
    };
    let mut first: Option<u64> = None;
    let mut note = |t: Option<u64>| {
        if let Some(t) = t {
            first = Some(first.map_or(t, |f| f.min(t)));
        }
    };
    let failures = checked.report.as_ref().map(|r| r.failures.as_slice());
    for f in failures.unwrap_or_default() {
        note(
            f.culprit
                .completion_index
                .and_then(time_of)
                .or_else(|| time_of(f.culprit.index)),
        );
    }
    for s in &election.same_term {
        // The second leader's first sample is when two leaders of the term had been seen.
        let mut starts: Vec<(u64, &str)> = s
            .leaders
            .iter()
            .map(|t| (t.from_ns, t.node.as_str()))
            .collect();
        starts.sort_unstable();
        let second = starts
            .iter()
            .find(|(_, n)| *n != starts[0].1)
            .map(|(t, _)| *t);
        note(second);
    }
    // The set checker's lost and stale elements: the read that missed one.
    for set in checked.json["sets"].as_array().into_iter().flatten() {
        let report = &set["report"];
        for fate in ["lost", "stale"] {
            for e in report[fate].as_array().into_iter().flatten() {
                note(e["missing_from_read_index"].as_u64().and_then(time_of));
            }
        }
        let other = ["unexpected", "duplicated"]
            .iter()
            .any(|k| report[*k].as_array().is_some_and(|a| !a.is_empty()));
        if other {
            note(Some(clients_end_ns));
        }
    }
    note(found.slow_from);
    if found.diverged || found.unhealthy {
        note(Some(clients_end_ns));
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_nemesis::upgrade::UpgradeStep;

    fn step(
        id: u64,
        node: &str,
        to: &str,
        start_ms: f64,
        end_ms: f64,
        outcome: &str,
    ) -> UpgradeStep {
        UpgradeStep {
            id,
            pass: 1,
            direction: "upgrade".into(),
            node: node.into(),
            from_version: "3.4".into(),
            to_version: to.into(),
            start_ms,
            restarted_ms: Some(start_ms + 100.0),
            end_ms,
            outcome: outcome.into(),
            ..UpgradeStep::default()
        }
    }

    fn report(steps: Vec<UpgradeStep>) -> UpgradeReport {
        UpgradeReport {
            path: vec!["3.4".into(), "3.5".into()],
            order: "followers-first".into(),
            complete: steps.len() == 3,
            steps_left: 3 - steps.len(),
            steps,
        }
    }

    #[test]
    fn the_first_violation_is_placed_before_during_or_after_the_upgrade() {
        let names: Vec<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        let u = report(vec![
            step(1, "n2", "3.5", 1000.0, 1500.0, "rejoined"),
            step(2, "n3", "3.5", 3000.0, 3500.0, "rejoined"),
            step(3, "n1", "3.5", 5000.0, 5500.0, "rejoined"),
        ]);
        assert_eq!(
            versions_at(&u, &names, 500.0).unwrap(),
            "upgrade: the first violation (at 0.5 s) came before the upgrade began"
        );
        assert_eq!(
            versions_at(&u, &names, 3200.0).unwrap(),
            "upgrade: the first violation (at 3.2 s) came while the cluster was mixed: n1 on 3.4; \
             n2, n3 on 3.5"
        );
        assert_eq!(
            versions_at(&u, &names, 6000.0).unwrap(),
            "upgrade: the first violation (at 6.0 s) came with every node on 3.5"
        );
        // A refused step puts the node back when it ends.
        let refused = report(vec![
            step(1, "n2", "3.5", 1000.0, 1500.0, "rejoined"),
            step(2, "n3", "3.5", 3000.0, 3500.0, "refused"),
        ]);
        assert!(versions_at(&refused, &names, 4000.0)
            .unwrap()
            .ends_with("n1, n3 on 3.4; n2 on 3.5"));
    }

    #[test]
    fn write_availability_is_the_longest_stretch_without_a_successful_write() {
        let op = |invoke_ms: u64, complete_ms: u64, ok: bool, failed: bool| OpTimes {
            is_read: false,
            ok,
            failed,
            mismatch: false,
            invoke_ns: invoke_ms * 1_000_000,
            complete_ns: Some(complete_ms * 1_000_000),
            node: None,
        };
        // Writes succeed at 900 and 2600 ms around a step from 1000 to 1500 ms, two fail and
        // one times out in between; the window runs to 6500 ms (the clients to 7000).
        let ops = vec![
            op(800, 900, true, false),
            op(1100, 1200, false, true),
            op(1300, 1400, false, true),
            op(1450, 2450, false, false),
            op(2500, 2600, true, false),
            op(6000, 6100, true, false),
        ];
        let u = report(vec![step(1, "n2", "3.5", 1000.0, 1500.0, "rejoined")]);
        let v = upgrade_results(&u, &ops, 7_000_000_000);
        let w = &v["steps"][0]["writes"];
        assert_eq!(w["longest_without_ok_write_ms"], 3500.0, "{w}");
        assert_eq!(
            (w["failed"].as_u64(), w["indeterminate"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(v["complete"], false);
    }
}
