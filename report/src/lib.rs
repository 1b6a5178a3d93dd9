//! Reports of a run: `report.html` (one self-contained page with the verdict, the
//! counterexamples, plots and a timeline on one time axis), the plots as standalone SVG files,
//! `junit.xml` for CI systems, and `faultline serve`'s web UI over a results folder ([`serve`]).
//!
//! Reports are made from the files of a run folder (or any history file) with the checker's
//! types; nothing here knows the controller that wrote them.
//!
//! `faultline test` writes them at the end of every run ([`write_report_or_warn`]);
//! `faultline report` rebuilds them for a run folder, or makes them for any history file
//! (checking it first with `--model`), e.g. one recorded by Jepsen.

use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_checker::format::Format;
use faultline_checker::text::for_terminal;
use faultline_checker::{ModelSpec, NilReads};

pub mod campaign;
mod counterexample;
pub mod escape;
pub mod html;
mod junit;
mod load;
mod plots;
pub mod serve;
mod timeline;

pub use load::Inputs;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes report.html, latency-raw.svg, latency-quantiles.svg, rate.svg and junit.xml.

Examples:
  faultline report results/latest
  faultline report jepsen/history.edn --model cas-register --output /tmp/report")]
pub struct ReportArgs {
    /// A run folder (RESULTS_DIR/NAME/TIMESTAMP), or a history file (JSONL, Jepsen EDN or
    /// Jepsen log).
    #[arg(value_name = "RUN_DIR|HISTORY")]
    pub input: PathBuf,
    /// Folder to write the report into [default: the run folder, or the history's folder].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The verdict and statistics to show [default: results.json in the run folder].
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Check the history with this model, instead of taking the verdict from results.json
    /// (register, cas-register, kv-append, multi-register, mutex, set, fifo-queue).
    #[arg(long, short = 'm', value_name = "MODEL")]
    pub model: Option<String>,
    /// Initial value for --model, as JSON or EDN [default: the model's].
    #[arg(long, value_name = "VALUE", allow_hyphen_values = true)]
    pub initial: Option<String>,
    /// History format: auto, jsonl, edn or jepsen-log.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub format: String,
    /// With --model, what an `ok` read of nil means: auto, unknown or value (as for
    /// `faultline check`).
    #[arg(long, default_value = "auto", value_name = "MEANING")]
    pub nil_reads: String,
}

/// What was written, for messages and benchmarks.
pub struct Written {
    pub html: PathBuf,
    pub html_bytes: u64,
    pub operations: usize,
}

/// Builds every report file of the run folder `run_dir` from its `history.jsonl`,
/// `results.json`, `test.toml`, `nodes/` and `failures/`.
pub fn write_report(run_dir: &Path) -> Result<(), String> {
    write_run_report(run_dir).map(|_| ())
}

/// [`write_report`] for the end of `faultline test`: a report that cannot be written is a
/// warning, never a reason to lose the verdict or change the exit code.
pub fn write_report_or_warn(run_dir: &Path) {
    let started = Instant::now();
    match write_run_report(run_dir) {
        Ok(w) => {
            tracing::info!(
                bytes = w.html_bytes,
                ms = started.elapsed().as_millis() as u64,
                "report written"
            );
        }
        Err(e) => {
            tracing::warn!("cannot write the report: {e}");
            eprintln!("  warning: cannot write the report: {}", for_terminal(&e));
        }
    }
}

fn write_run_report(run_dir: &Path) -> Result<Written, String> {
    let results = run_dir.join("results.json");
    let inputs = Inputs {
        dir: run_dir.to_path_buf(),
        history: run_dir.join("history.jsonl"),
        format: Some(Format::Jsonl),
        results: results.is_file().then_some(results),
        model: None,
        nil_reads: None,
    };
    build(&inputs, run_dir)
}

/// Reads `inputs` and writes the report files into `out_dir`. Each file is written to a
/// temporary name and renamed, so a reader (`faultline serve`) never sees half a report.
pub fn build(inputs: &Inputs, out_dir: &Path) -> Result<Written, String> {
    let mut run = load::load(inputs)?;
    run.links = same_folder(&inputs.dir, out_dir);
    // Marks for the failures drawn in full (more would hide the plots behind them).
    let marks: Vec<plots::Mark> = run
        .failures()
        .iter()
        .take(counterexample::DRAWN)
        .enumerate()
        .filter_map(|(n, f)| {
            let index = f.pointer("/culprit/index")?.as_u64()?;
            let op = run.op_by_index(index)?;
            Some(plots::Mark {
                time_ns: op.start_ns,
                label: format!("✗{}", n + 1),
            })
        })
        .collect();
    let plots = plots::render(&run, &marks)?;
    let timeline = timeline::build(&run, (plots.area_left, plots.area_right), plots::WIDTH);
    let timeline_json = escape::json_for_script(&timeline)?;
    let name = run
        .result("/name")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            inputs
                .history
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "history".to_string())
        });
    let stamp = run
        .results
        .as_ref()
        .and(run.dir.file_name())
        .map(|s| s.to_string_lossy().into_owned());
    let names = html::Names {
        title: name.clone(),
        stamp,
    };
    let page = html::render(&run, &names, &plots, &timeline_json);
    let junit = junit::render(&run, &format!("faultline.{name}"));

    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    for (file, text) in [
        ("latency-raw.svg", plots.latency_raw.as_str()),
        ("latency-quantiles.svg", plots.latency_quantiles.as_str()),
        ("rate.svg", plots.rate.as_str()),
        ("junit.xml", junit.as_str()),
        ("report.html", page.as_str()),
    ] {
        write_atomically(&out_dir.join(file), text.as_bytes())?;
    }
    Ok(Written {
        html: out_dir.join("report.html"),
        html_bytes: page.len() as u64,
        operations: run.ops.len(),
    })
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}

/// `faultline report`: writes the report and says where; or why it could not.
pub fn run(args: ReportArgs) -> Result<(), String> {
    let started = Instant::now();
    let (inputs, out) = plan(&args)?;
    let w = build(&inputs, &out)?;
    eprintln!(
        "report: {} ({:.1} MB, {} operations, {:.1} s)",
        for_terminal(&w.html.display().to_string()),
        w.html_bytes as f64 / 1e6,
        w.operations,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn plan(args: &ReportArgs) -> Result<(Inputs, PathBuf), String> {
    let meta =
        std::fs::metadata(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let format = match args.format.as_str() {
        "auto" => None,
        name => Some(Format::from_name(name).ok_or_else(|| {
            format!("--format {name}: unknown format (use auto, jsonl, edn or jepsen-log)")
        })?),
    };
    let model = match &args.model {
        Some(name) => {
            let initial = args
                .initial
                .as_deref()
                .map(faultline_checker::format::parse_value)
                .transpose()
                .map_err(|e| format!("--initial: {e}"))?;
            Some(ModelSpec::from_name(name, initial).map_err(|e| format!("--model: {e}"))?)
        }
        None if args.initial.is_some() => {
            return Err("--initial needs --model".to_string());
        }
        None => None,
    };
    if args.nil_reads != "auto" && args.model.is_none() {
        return Err("--nil-reads needs --model".to_string());
    }
    let nil_reads = match args.nil_reads.as_str() {
        "auto" => None,
        name => Some(
            NilReads::from_name(name)
                .ok_or_else(|| format!("--nil-reads {name}: expected auto, unknown or value"))?,
        ),
    };
    // `results/latest` is a symlink: name the run by the folder it points at.
    let input = std::fs::canonicalize(&args.input).unwrap_or_else(|_| args.input.clone());
    let (dir, history) = if meta.is_dir() {
        let h = input.join("history.jsonl");
        if !h.is_file() {
            return Err(format!(
                "{}: no history.jsonl in this folder (give a run folder of `faultline test`, \
                 or a history file)",
                args.input.display()
            ));
        }
        (input, h)
    } else {
        let dir = input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        (dir, input)
    };
    let results = match &args.results {
        Some(r) => Some(r.clone()),
        None if meta.is_dir() && model.is_none() => {
            let r = dir.join("results.json");
            r.is_file().then_some(r)
        }
        None => None,
    };
    let out = args.output.clone().unwrap_or_else(|| dir.clone());
    Ok((
        Inputs {
            dir,
            history,
            format,
            results,
            model,
            nil_reads,
        },
        out,
    ))
}
