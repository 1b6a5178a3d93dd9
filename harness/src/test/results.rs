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
use faultline_checker::{check_history, CheckOptions, History, Outcome, Report, Verdict};
use faultline_nemesis::FaultRecord;
use faultline_workloads::Checker;
use serde_json::{json, Value};

use super::cluster::Cluster;
use super::config::TestConfig;
use crate::exit::{EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID};

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
    pub total: Duration,
    pub history: PathBuf,
    pub recorded: bool,
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
    Err(format!("too many runs of {} in one second", config.name))
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

/// Checks the recorded history, writes every results file, prints the summary, and returns the
/// exit code of the verdict.
pub async fn finish(
    config: &TestConfig,
    run_dir: &Path,
    cluster: &Arc<Cluster>,
    summary: RunSummary,
) -> Result<u8, String> {
    // Check what is on disk: that is the evidence, and proves the file is complete.
    let history = if summary.recorded {
        let parsed = format::read_path(
            &summary.history,
            Some(format::Format::Jsonl),
            Independent::No,
        )
        .map_err(|e| format!("the recorded history cannot be read back: {e}"))?;
        std::fs::write(
            run_dir.join("history.edn"),
            edn::write(&parsed.history.events),
        )
        .map_err(|e| format!("cannot write history.edn: {e}"))?;
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
    // A divergence is a violation whatever the history says.
    let mut checked = checked;
    if let Some(sentence) = summary.convergence.as_ref().and_then(|c| c.sentence()) {
        checked.verdict = Verdict::Invalid;
        checked.sentences.insert(0, sentence);
    }
    let ops = history.operations().map_err(|e| e.to_string())?;
    let stats = statistics(&history, &ops);
    let results = json!({
        "name": config.name,
        "seed": config.seed,
        "target": summary.target,
        "target_version": summary.target_version,
        "workload": config.workload.to_string(),
        "started": utc_stamp(SystemTime::now() - summary.total),
        "duration_s": summary.total.as_secs_f64(),
        "clients_ran_s": summary.clients_ran.as_secs_f64(),
        "interrupted": summary.interrupted,
        "verdict": checked.verdict.as_str(),
        "explanation": checked.sentences,
        "checker": checked.json,
        "checks": checks,
        "operations": stats.counts,
        "client": client_stats(&summary),
        "latency_ms": stats.latency,
        "faults": summary.faults,
        "convergence": summary.convergence,
        "unexpected_exits": cluster.crashes().iter().map(|(n, how)| json!({"node": n, "status": how})).collect::<Vec<_>>(),
        "nodes": cluster.nodes,
        "config": config.to_file(),
        "faultline_version": env!("CARGO_PKG_VERSION"),
    });
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(run_dir.join("results.json"), text + "\n")
        .map_err(|e| format!("cannot write results.json: {e}"))?;
    point_latest(config, run_dir);
    crate::report::write_report_or_warn(run_dir);

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
    for (node, how) in cluster.crashes() {
        eprintln!("  note: node {node} exited unexpectedly ({how})");
    }
    eprintln!("  results: {}", run_dir.display());
    Ok(match checked.verdict {
        Verdict::Valid => EXIT_VALID,
        Verdict::Invalid => EXIT_INVALID,
        Verdict::Unknown => EXIT_UNKNOWN,
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
