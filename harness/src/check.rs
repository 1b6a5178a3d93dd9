//! `faultline check`: checks recorded histories for linearizability.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use faultline_checker::format::{self, Format, Independent};
use faultline_checker::text::{abbreviate, for_terminal, json_for_terminal};
use faultline_checker::{
    check_history, CheckOptions, Failure, ModelSpec, NilReads, Report, Verdict,
};
use serde_json::{json, Value};

use crate::exit::{exit_code, EXIT_BAD_INPUT};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 valid, 1 invalid (any history), 2 unknown (any history, none invalid), \
254 bad input or usage.

Examples:
  faultline check history.jsonl --model cas-register
  faultline check jepsen/history.edn --model cas-register --initial 0 --json
  faultline check etcd_*.log --model cas-register --time-limit 60")]
pub struct CheckArgs {
    /// History files to check (JSONL, Jepsen EDN, or Jepsen console log).
    #[arg(required = true, value_name = "HISTORY")]
    pub histories: Vec<PathBuf>,

    /// The sequential model to check against: register, cas-register, kv-append,
    /// multi-register, mutex, set, fifo-queue.
    #[arg(long, short = 'm', value_name = "MODEL")]
    pub model: String,

    /// Input format: auto, jsonl, edn or jepsen-log.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub format: String,

    /// Initial value of the object, as JSON or EDN (`nil`, `null`, `0`, `""`, `'{:x 0 :y 0}'`).
    /// Default: `null` for registers, `""` for kv-append, every register nil for
    /// multi-register.
    #[arg(long, value_name = "VALUE", allow_hyphen_values = true)]
    pub initial: Option<String>,

    /// What an `ok` read of nil means: `unknown` (a read whose value the client could not
    /// tell, legal in every state: Knossos's meaning, which Jepsen's verdicts use), `value` (it
    /// returned nil), or `auto`: `unknown` for Jepsen's formats (EDN, console logs), `value`
    /// for faultline's JSONL, whose recorder writes an unknown result as `info`.
    #[arg(long, default_value = "auto", value_name = "MEANING")]
    pub nil_reads: String,

    /// Print one JSON verdict per history (one per line) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Give up after this many seconds per history and answer `unknown` (default: no limit).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub time_limit: Option<f64>,

    /// Memory for the search's visited sets, in MiB. Past it old entries are forgotten (the
    /// verdict stays exact; the search may take longer).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub memory_limit: usize,

    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,

    /// Where to write each failure's minimal window (a small history that re-checks as
    /// invalid). Default: `faultline-windows` in the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub window_dir: Option<PathBuf>,

    /// EDN only: whether values are Jepsen `independent` [key value] tuples: auto, yes, no.
    #[arg(long, default_value = "auto", value_name = "WHEN")]
    pub independent: String,

    /// Skip minimising failure windows (faster on histories with many invalid keys).
    #[arg(long)]
    pub no_explain: bool,

    /// Check each history this many times and report the median check time (for
    /// benchmarks: the first check of a process pays for cold caches and thread start-up).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: usize,

    /// Keep checking every key after one is found not linearizable (by default the check
    /// stops there: the verdict is the same, the rest is reported as not checked).
    #[arg(long)]
    pub all_keys: bool,
}

/// Parsed and validated options shared by every history of one invocation.
struct Plan {
    spec: ModelSpec,
    repeat: usize,
    format: Option<Format>,
    independent: Independent,
    options: CheckOptions,
    /// `None`: decided per file by its format (see [`Format::default_nil_reads`]).
    nil_reads: Option<NilReads>,
    window_dir: PathBuf,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("faultline check: {}", for_terminal(&msg));
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut verdicts = Vec::new();
    let mut bad_input = false;
    let stdout = std::io::stdout();
    for path in &args.histories {
        match check_one(path, &plan) {
            Ok(outcome) => {
                let mut out = stdout.lock();
                let written = if args.json {
                    writeln!(out, "{}", outcome.json)
                } else {
                    write!(out, "{}", outcome.text)
                };
                if written.is_err() {
                    return ExitCode::from(EXIT_BAD_INPUT);
                }
                verdicts.push(outcome.verdict);
            }
            Err(msg) => {
                bad_input = true;
                if args.json {
                    let line = json!({
                        "file": path.display().to_string(),
                        "verdict": "error",
                        "error": msg,
                    });
                    let _ = writeln!(stdout.lock(), "{line}");
                }
                eprintln!("faultline check: {}", for_terminal(&msg));
            }
        }
    }
    if bad_input {
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    ExitCode::from(exit_code(Verdict::combine(verdicts)))
}

fn plan(args: &CheckArgs) -> Result<Plan, String> {
    let initial = match &args.initial {
        None => None,
        Some(text) => Some(format::parse_value(text).map_err(|e| format!("--initial: {e}"))?),
    };
    let spec = ModelSpec::from_name(&args.model, initial).map_err(|e| format!("--model: {e}"))?;
    let format = match args.format.as_str() {
        "auto" => None,
        name => Some(Format::from_name(name).ok_or_else(|| {
            format!(
                "--format: unknown format {:?}; use auto, {}",
                name,
                Format::NAMES.join(", ")
            )
        })?),
    };
    let independent = match args.independent.as_str() {
        "auto" => Independent::Auto,
        "yes" => Independent::Yes,
        "no" => Independent::No,
        other => {
            return Err(format!(
                "--independent: expected auto, yes or no, got {other:?}"
            ))
        }
    };
    let nil_reads = match args.nil_reads.as_str() {
        "auto" => None,
        name => Some(NilReads::from_name(name).ok_or_else(|| {
            format!(
                "--nil-reads: expected auto, {}, got {:?}",
                NilReads::NAMES.join(" or "),
                name
            )
        })?),
    };
    let time_limit = match args.time_limit {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(format!(
                "--time-limit: must be a positive number of seconds, got {s}"
            ))
        }
    };
    if args.memory_limit == 0 {
        return Err("--memory-limit: must be at least 1 MiB".to_string());
    }
    if args.repeat == 0 {
        return Err("--repeat: must be at least 1".to_string());
    }
    Ok(Plan {
        spec,
        repeat: args.repeat,
        format,
        independent,
        options: CheckOptions {
            time_limit,
            memory_limit: args.memory_limit.saturating_mul(1 << 20),
            threads: args.threads,
            explain: !args.no_explain,
            stop_at_first_failure: !args.all_keys,
            nil_reads: NilReads::Value,
        },
        nil_reads,
        window_dir: args
            .window_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("faultline-windows")),
    })
}

struct Outcome {
    verdict: Verdict,
    text: String,
    json: Value,
}

fn check_one(path: &Path, plan: &Plan) -> Result<Outcome, String> {
    let parse_started = Instant::now();
    let parsed =
        format::read_path(path, plan.format, plan.independent).map_err(|e| e.to_string())?;
    let parse_time = parse_started.elapsed();
    let options = CheckOptions {
        nil_reads: plan
            .nil_reads
            .unwrap_or_else(|| parsed.format.default_nil_reads()),
        ..plan.options.clone()
    };
    let mut times = Vec::with_capacity(plan.repeat);
    let mut report = None;
    for _ in 0..plan.repeat {
        let r = check_history(&plan.spec, &parsed.history, &options).map_err(|e| e.to_string())?;
        times.push(r.check_time);
        report = Some(r);
    }
    let Some(mut report) = report else {
        return Err("--repeat: must be at least 1".to_string());
    };
    times.sort();
    report.check_time = times[times.len() / 2];

    let mut windows = Vec::new();
    for failure in &report.failures {
        windows.push(write_window(path, failure, plan)?);
    }
    let recheck = |p: &Path| {
        let mut cmd = format!(
            "faultline check {} --model {}",
            shell_quote(&p.display().to_string()),
            plan.spec.name()
        );
        if let Some(initial) = plan.spec.initial() {
            cmd.push_str(&format!(" --initial {}", shell_quote(&initial.to_string())));
        }
        // Windows are JSONL, whose default meaning of a read of nil is the strict one.
        if report.nil_reads != NilReads::Value && report.unknown_reads > 0 {
            cmd.push_str(&format!(" --nil-reads {}", report.nil_reads.name()));
        }
        cmd
    };
    let json = json!({
        "file": path.display().to_string(),
        "format": parsed.format.name(),
        "model": plan.spec.name(),
        "initial": plan.spec.initial(),
        "verdict": report.verdict.as_str(),
        "parse_ms": millis(parse_time),
        "check_ms": millis(report.check_time),
        "explain_ms": millis(report.explain_time),
        "operations": report.counts,
        "keys": report.keys,
        "nil_reads": report.nil_reads,
        "unknown_reads": report.unknown_reads,
        "failures": report.failures.iter().zip(&windows).map(|(f, w)| {
            let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("window_file".into(), json!(w.display().to_string()));
                m.insert("recheck".into(), json!(recheck(w)));
            }
            v
        }).collect::<Vec<_>>(),
        "unknown": report.unknown,
        "per_key": report.per_key,
        "search": report.search,
        "warnings": parsed.warnings,
        "peak_rss_kb": peak_rss_kb(),
    });
    let text = render_text(
        path,
        &parsed.warnings,
        &report,
        parse_time,
        &windows,
        &recheck,
    );
    Ok(Outcome {
        verdict: report.verdict,
        text,
        json,
    })
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Writes a failure's window as a JSONL history next to the others in the window directory.
fn write_window(history: &Path, failure: &Failure, plan: &Plan) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&plan.window_dir).map_err(|e| {
        format!(
            "cannot create the window directory {}: {e} (choose another with --window-dir)",
            plan.window_dir.display()
        )
    })?;
    let stem = history
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "history".to_string());
    let mut name = safe_file_part(&stem);
    if let Some(key) = &failure.key {
        name.push_str(".key-");
        name.push_str(&safe_file_part(&abbreviate(&key.to_string(), 40)));
    }
    name.push_str(".window.jsonl");
    let path = plan.window_dir.join(name);
    let mut out = Vec::new();
    let write = format::jsonl::write(&mut out, &failure.window_events)
        .and_then(|()| std::fs::write(&path, &out));
    write.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn safe_file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Quotes a word for a POSIX shell when needed, so printed commands can be pasted.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn render_text(
    path: &Path,
    warnings: &[String],
    report: &Report,
    parse_time: Duration,
    windows: &[PathBuf],
    recheck: &dyn Fn(&Path) -> String,
) -> String {
    let mut out = String::new();
    let name = for_terminal(&path.display().to_string());
    let verdict = match report.verdict {
        Verdict::Valid => "VALID (linearizable)",
        Verdict::Invalid => "INVALID (not linearizable)",
        Verdict::Unknown => "UNKNOWN (not decided)",
    };
    let c = &report.counts;
    out.push_str(&format!("{name}: {verdict}\n"));
    out.push_str(&format!(
        "  {} model, {} operations ({} ok, {} fail, {} info, {} unfinished), {} key{}; parsed in \
         {:.1} ms, checked in {:.1} ms\n",
        report.model,
        c.total,
        c.ok,
        c.fail,
        c.info,
        c.pending,
        report.keys,
        if report.keys == 1 { "" } else { "s" },
        millis(parse_time),
        millis(report.check_time),
    ));
    for w in warnings {
        out.push_str(&format!("  note: {}\n", for_terminal(w)));
    }
    if let Some(note) = report.unknown_reads_note() {
        out.push_str(&format!("  note: {note}\n"));
    }
    for (failure, window) in report.failures.iter().zip(windows) {
        let op = &failure.culprit;
        let key = failure
            .key
            .as_ref()
            .map(|k| format!("key {}: ", json_for_terminal(k)))
            .unwrap_or_default();
        let result = op
            .result
            .as_ref()
            .map(|r| format!(" → {}", abbreviate(&json_for_terminal(r), 60)))
            .unwrap_or_default();
        let input = if op.value.is_null() {
            String::new()
        } else {
            format!(" {}", abbreviate(&json_for_terminal(&op.value), 60))
        };
        out.push_str(&format!(
            "  {key}cannot linearize line {}: process {} {}{input}{result}\n",
            op.line,
            op.process,
            for_terminal(&op.f),
        ));
        out.push_str(&format!("    why: {}\n", for_terminal(&failure.sentence)));
        out.push_str(&format!(
            "    longest partial linearization: {} operations\n",
            failure.linearized_count
        ));
        out.push_str(&format!(
            "    window: {} operations in {}\n    re-check: {}\n",
            failure.window.len(),
            for_terminal(&window.display().to_string()),
            for_terminal(&recheck(window))
        ));
    }
    if report.failures.len() > 1 {
        out.push_str(&format!(
            "  {} of {} keys are not linearizable\n",
            report.failures.len(),
            report.keys
        ));
    }
    for u in &report.unknown {
        let key = u
            .key
            .as_ref()
            .map(|k| format!("key {}: ", json_for_terminal(k)))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {key}undecided: {} (placed {} of {} operations)\n",
            for_terminal(&u.reason),
            u.linearized,
            u.operations
        ));
    }
    out
}

/// Peak resident memory of this process in KiB (Linux), for benchmarks.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
