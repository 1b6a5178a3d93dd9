//! `faultline campaign FILE`: many tests as one gate. A campaign file names a base test
//! definition, axes to vary it along (the cells are their cross product) and seeds per cell;
//! every (cell, seed) is an ordinary `faultline test` run with its own folder, and the
//! campaign folder gets one `campaign.json` over all of them (the report crate renders
//! `junit.xml` and `campaign.html` from it).
//!
//! ```toml
//! name = "nightly"          # the campaign folder: OUTPUT/NAME/STAMP
//! seeds = 3                 # per cell: seeds 1, 2, 3 (or a list: [11, 42])
//! budget = "20m"            # no run starts that could not finish within it
//! parallel = 1              # runs at once
//! until_fail = false        # stop starting runs after the first invalid one
//! [test]                    # the base definition: any `faultline test` key
//! time_limit = 30
//! [matrix]                  # axes: each key takes each listed value in turn
//! "raft.bugs" = [[], ["ack-before-commit"]]
//! [[cells]]                 # one more axis, of whole overrides (named)
//! name = "kills"
//! nemesis = ["kill"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use faultline_controller::config::TestFile;
use serde::Deserialize;
use serde_json::{json, Value};

use faultline_checker::text::for_terminal;

use crate::runner::{self, human, signals, Finished, Job, Running};

/// `faultline campaign` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit code: 0 when every run is valid, 1 when any is invalid, 2 when \
none is invalid but some are unknown, errored or did not run (budget, Ctrl-C), 254 for a bad \
campaign file.

Example:
  faultline campaign examples/ci/campaign.toml --parallel 2 --budget 10m

Ctrl-C stops starting runs and lets those under way stop and check what they recorded; a \
second Ctrl-C stops them at once; a third leaves at once (exit 130)."
)]
pub struct CampaignArgs {
    /// The campaign definition (TOML; see docs/campaign.md).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Runs at once [default: the file's `parallel`, else 1 on up to 4 cores, cores/4 above].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Time for the whole campaign, e.g. 600, 20m or 1h: no run starts that could not end
    /// within it [default: the file's `budget`, else none].
    #[arg(long, value_name = "DURATION")]
    pub budget: Option<String>,
    /// Stop starting runs after the first invalid one (runs under way finish).
    #[arg(long)]
    pub until_fail: bool,
    /// Where campaign folders go [default: the file's `output`, else results/campaigns].
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// A campaign file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignFile {
    name: Option<String>,
    seeds: Option<Seeds>,
    budget: Option<toml::Value>,
    parallel: Option<usize>,
    until_fail: Option<bool>,
    output: Option<PathBuf>,
    test: Option<toml::Table>,
    matrix: Option<toml::Table>,
    cells: Option<Vec<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seeds {
    Count(u64),
    List(Vec<u64>),
}

/// One cell of the matrix: a complete test definition.
#[derive(Clone, Debug)]
pub struct Cell {
    /// `c01-ack-before-commit`: a folder name.
    pub id: String,
    /// The axis values that make it, for people (`raft.bugs = ["ack-before-commit"]`).
    pub values: Vec<(String, String)>,
    pub test: TestFile,
    pub time_limit: f64,
}

/// What a campaign came to.
pub struct Outcome {
    pub dir: PathBuf,
    /// `valid`, `invalid` or `unknown` (see the exit codes).
    pub verdict: &'static str,
}

/// Reads and expands a campaign file; every cell is resolved (so a bad key fails before
/// anything runs). Errors name the file and the cell.
pub fn load(path: &Path) -> Result<(Settings, Vec<Cell>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: CampaignFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(l) => format!("{}:{l}: {}", path.display(), e.message().trim()),
            None => format!("{}: {}", path.display(), e.message().trim()),
        }
    })?;
    let at = |msg: String| format!("{}: {msg}", path.display());
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "campaign".to_string())
    });
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(at(format!(
            "name: use letters, digits, '.', '_' and '-' only (it names a folder), got {name:?}"
        )));
    }
    let seeds = match &file.seeds {
        None => vec![1],
        Some(Seeds::Count(0)) => return Err(at("seeds: at least 1".to_string())),
        Some(Seeds::Count(n)) if *n > 10_000 => {
            return Err(at(format!("seeds: at most 10000 per cell, got {n}")))
        }
        Some(Seeds::Count(n)) => (1..=*n).collect(),
        Some(Seeds::List(l)) if l.is_empty() => {
            return Err(at("seeds: give at least one seed".to_string()))
        }
        Some(Seeds::List(l)) => {
            let mut sorted = l.clone();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(at(format!(
                    "seeds: {} is listed twice (each seed of a cell is one run and one folder)",
                    w[0]
                )));
            }
            l.clone()
        }
    };
    if let Some(s) = seeds.iter().find(|s| **s > i64::MAX as u64) {
        return Err(at(format!("seeds: at most {}, got {s}", i64::MAX)));
    }
    let budget = match &file.budget {
        None => None,
        Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_))) => {
            Some(runner::parse_duration(&v.to_string()).map_err(|e| at(format!("budget: {e}")))?)
        }
        Some(toml::Value::String(s)) => {
            Some(runner::parse_duration(s).map_err(|e| at(format!("budget: {e}")))?)
        }
        Some(other) => {
            return Err(at(format!(
                "budget: a number of seconds or a duration such as \"20m\", got {other}"
            )))
        }
    };
    let base = file.test.clone().unwrap_or_default();
    // Axes: each matrix key, then the explicit cells as one more axis.
    // The number of cells, checked before any is made (six axes of 50 values would not fit).
    let mut count: usize = file.cells.as_ref().map_or(1, |c| c.len().max(1));
    for (key, values) in file.matrix.iter().flatten() {
        let n = values.as_array().map_or(1, |v| v.len().max(1));
        count = count.saturating_mul(n);
        if count > MAX_CELLS {
            return Err(at(format!(
                "matrix.{key}: the matrix would have more than {MAX_CELLS} cells (fewer axes \
                 or values)"
            )));
        }
    }
    let mut combos: Vec<(toml::Table, Vec<(String, String)>)> = vec![(base, Vec::new())];
    for (key, values) in file.matrix.iter().flatten() {
        let toml::Value::Array(values) = values else {
            return Err(at(format!(
                "matrix.{key}: give the values to try as a list, e.g. {key} = [a, b]"
            )));
        };
        if values.is_empty() {
            return Err(at(format!("matrix.{key}: the list of values is empty")));
        }
        let mut next = Vec::new();
        for (table, labels) in &combos {
            for v in values {
                let mut t = table.clone();
                set_dotted(&mut t, key, v.clone()).map_err(at)?;
                let mut l = labels.clone();
                l.push((key.clone(), v.to_string()));
                next.push((t, l));
            }
        }
        combos = next;
    }
    if let Some(cells) = &file.cells {
        if cells.is_empty() {
            return Err(at("cells: the list is empty".to_string()));
        }
        let mut next = Vec::new();
        for (table, labels) in &combos {
            for (i, cell) in cells.iter().enumerate() {
                let mut cell = cell.clone();
                let cell_name = match cell.remove("name") {
                    Some(toml::Value::String(s)) => s,
                    Some(other) => {
                        return Err(at(format!("cells[{}].name: a string, got {other}", i + 1)))
                    }
                    None => format!("cell{}", i + 1),
                };
                let mut t = table.clone();
                for (k, v) in cell {
                    merge(&mut t, &k, v);
                }
                let mut l = labels.clone();
                l.push(("cell".to_string(), cell_name));
                next.push((t, l));
            }
        }
        combos = next;
    }
    if combos.len() > MAX_CELLS {
        return Err(at(format!(
            "{} cells: at most {MAX_CELLS} (fewer axes or values)",
            combos.len()
        )));
    }
    let mut cells = Vec::new();
    for (i, (mut table, values)) in combos.into_iter().enumerate() {
        let slug = slug(&values);
        let id = if slug.is_empty() {
            format!("c{:02}", i + 1)
        } else {
            format!("c{:02}-{slug}", i + 1)
        };
        let describe = || {
            if values.is_empty() {
                format!("cell {id}")
            } else {
                format!(
                    "cell {id} ({})",
                    values
                        .iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        };
        if table.contains_key("seed") {
            return Err(at(format!(
                "{}: seed is set by the campaign (`seeds`), not per test",
                describe()
            )));
        }
        table.insert("name".into(), toml::Value::String(format!("{name}.{id}")));
        let test: TestFile = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| at(format!("{}: {}", describe(), e.message().trim())))?;
        let resolved = test
            .clone()
            .resolve()
            .map_err(|e| at(format!("{}: {e}", describe())))?;
        cells.push(Cell {
            id,
            values,
            time_limit: resolved.time_limit.as_secs_f64(),
            test,
        });
    }
    Ok((
        Settings {
            name,
            seeds,
            budget,
            parallel: file.parallel,
            until_fail: file.until_fail.unwrap_or(false),
            output: file.output,
        },
        cells,
    ))
}

/// The campaign-wide settings of a file, checked.
#[derive(Debug)]
pub struct Settings {
    pub name: String,
    pub seeds: Vec<u64>,
    pub budget: Option<f64>,
    pub parallel: Option<usize>,
    pub until_fail: bool,
    pub output: Option<PathBuf>,
}

/// The most cells a campaign may have.
const MAX_CELLS: usize = 1000;

/// Sets `a.b.c = v` in `table`, creating the tables on the way; a table value is merged key
/// by key into a section already there (as a cell's is).
fn set_dotted(table: &mut toml::Table, key: &str, v: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("matrix.{key}: {p} is not a section"))?;
    }
    merge(t, parts[parts.len() - 1], v);
    Ok(())
}

/// Puts `v` at `key` of `table`, merging sections key by key (a cell's `[raft]` adds to the
/// base's `[raft]` instead of replacing it).
fn merge(table: &mut toml::Table, key: &str, v: toml::Value) {
    match (table.get_mut(key), v) {
        (Some(toml::Value::Table(base)), toml::Value::Table(over)) => {
            for (k, v) in over {
                merge(base, &k, v);
            }
        }
        (_, v) => {
            table.insert(key.to_string(), v);
        }
    }
}

/// A folder-safe summary of a cell's values: `ack-before-commit.kill`.
fn slug(values: &[(String, String)]) -> String {
    let mut out = String::new();
    for (_, v) in values {
        let mut part = String::new();
        for c in v.chars() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                part.push(c);
            } else if !part.ends_with('-') && !part.is_empty() {
                part.push('-');
            }
        }
        let part = part.trim_matches('-');
        let part = if part.is_empty() { "none" } else { part };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    out.chars()
        .take(60)
        .collect::<String>()
        .trim_end_matches(['.', '-'])
        .to_string()
}

/// A run of the campaign: finished, or never started.
struct RunRow {
    cell: usize,
    seed: u64,
    finished: Option<Finished>,
    /// Why it did not run (`budget`, `interrupted`, `until-fail`, `launch-error`).
    skipped: Option<&'static str>,
    /// Why it could not be started.
    launch_error: Option<String>,
}

/// Runs a campaign; `write_report(dir)` renders its pages once `campaign.json` is written.
pub fn run(args: CampaignArgs, write_report: fn(&Path)) -> Result<Outcome, String> {
    let (settings, cells) = load(&args.file)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (parallel, source) = match (args.parallel, settings.parallel) {
        (Some(p), _) => (p, "--parallel".to_string()),
        (None, Some(p)) => (p, format!("{}: parallel", args.file.display())),
        (None, None) => ((cores / 4).clamp(1, 64), String::new()),
    };
    if parallel == 0 || parallel > 64 {
        return Err(format!("{source}: between 1 and 64, got {parallel}"));
    }
    if parallel > 1 && cells.iter().any(|c| c.test.hosts.is_some()) {
        return Err(
            "--parallel above 1 with hosts: two runs would share the hosts (their ports, and \
             each other's partitions); use --parallel 1"
                .to_string(),
        );
    }
    if parallel > 1 && cells.iter().any(|c| c.test.base_port.unwrap_or(0) != 0) {
        return Err(
            "--parallel above 1 with a fixed base_port: two runs would take the same \
                    ports (leave base_port out)"
                .to_string(),
        );
    }
    let budget = match &args.budget {
        Some(b) => Some(runner::parse_duration(b).map_err(|e| format!("--budget: {e}"))?),
        None => settings.budget,
    };
    let until_fail = args.until_fail || settings.until_fail;
    let output = args
        .output
        .or(settings.output.clone())
        .unwrap_or_else(|| PathBuf::from("results/campaigns"));
    let dir = make_dir(&output.join(&settings.name))?;
    if parallel * 2 > cores {
        eprintln!(
            "faultline campaign: {parallel} runs at once on {cores} cores: runs compete for \
             CPU, which makes timeouts and elections more likely than on their own"
        );
    }
    signals::install()?;
    // Each cell's definition, as a file a person can run again by hand.
    let cells_dir = dir.join("cells");
    std::fs::create_dir_all(&cells_dir)
        .map_err(|e| format!("cannot create {}: {e}", cells_dir.display()))?;
    let mut cell_files = Vec::new();
    for c in &cells {
        let path = cells_dir.join(format!("{}.toml", c.id));
        let text = toml::to_string(&c.test)
            .map_err(|e| format!("cannot write the definition of {}: {e}", c.id))?;
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        cell_files.push(path);
    }
    let mut rows: Vec<RunRow> = Vec::new();
    for (ci, _) in cells.iter().enumerate() {
        for s in &settings.seeds {
            rows.push(RunRow {
                cell: ci,
                seed: *s,
                finished: None,
                skipped: None,
                launch_error: None,
            });
        }
    }
    eprintln!(
        "faultline campaign {}: {} cells x {} seeds = {} runs, {parallel} at a time{}; folder {}",
        settings.name,
        cells.len(),
        settings.seeds.len(),
        rows.len(),
        budget.map_or(String::new(), |b| format!(", budget {}", human(b))),
        dir.display()
    );
    let started = Instant::now();
    let started_at = SystemTime::now();
    let mut next = 0;
    let mut running: Vec<(usize, Running)> = Vec::new();
    // Overhead of a run beyond its time limit (start, recovery, checks): measured as runs end.
    let mut overheads: Vec<f64> = Vec::new();
    let mut handled_signals = 0;
    let mut interrupted = false;
    let mut stop_reason: Option<&'static str> = None;
    let mut last_progress = Instant::now() - Duration::from_secs(60);
    let tty = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    loop {
        // Signals: the first stops launching and asks each run to stop and check; the second
        // asks again (runs stop at once); the third leaves at once.
        let received = signals::received();
        while handled_signals < received {
            handled_signals += 1;
            interrupted = true;
            stop_reason.get_or_insert("interrupted");
            if handled_signals >= 3 {
                eprintln!("\nfaultline campaign: stopped; runs under way are told to stop");
                std::process::exit(130);
            }
            eprintln!(
                "\nfaultline campaign: interrupted; {} (Ctrl-C again to stop them at once)",
                if running.is_empty() {
                    "writing the summary".to_string()
                } else {
                    format!(
                        "stopping {} run(s), which still check what they recorded",
                        running.len()
                    )
                }
            );
            for (_, r) in running.iter_mut() {
                r.interrupt();
            }
        }
        // Reap.
        let mut i = 0;
        while i < running.len() {
            if let Some(f) = running[i].1.poll() {
                let (row, _) = running.remove(i);
                let cell = &cells[rows[row].cell];
                if f.results.is_some() {
                    overheads.push(f.wall_s - cell.time_limit);
                }
                if until_fail && f.verdict() == "invalid" && stop_reason.is_none() {
                    stop_reason = Some("until-fail");
                }
                rows[row].finished = Some(f);
            } else {
                i += 1;
            }
        }
        // Launch.
        // Not after a signal this pass has not dealt with yet (the top of the loop will).
        while running.len() < parallel
            && next < rows.len()
            && stop_reason.is_none()
            && signals::received() == handled_signals
        {
            let row = &rows[next];
            let cell = &cells[row.cell];
            let overhead = if overheads.is_empty() {
                10.0
            } else {
                overheads.iter().sum::<f64>() / overheads.len() as f64
            };
            if let Some(b) = budget {
                if started.elapsed().as_secs_f64() + cell.time_limit + overhead > b {
                    stop_reason = Some("budget");
                    break;
                }
            }
            let job = Job {
                config: cell_files[row.cell].clone(),
                seed: row.seed,
                results_dir: dir
                    .join("runs")
                    .join(&cell.id)
                    .join(format!("s{}", row.seed)),
                log: dir
                    .join("logs")
                    .join(format!("{}-s{}.log", cell.id, row.seed)),
            };
            match runner::start(job) {
                Ok(r) => running.push((next, r)),
                Err(e) => {
                    // Not a bad campaign: the machine could not start a run (disk full, no
                    // processes left, ...). Stop launching and still sum up what ran.
                    eprintln!("\nfaultline campaign: {}", for_terminal(&e));
                    rows[next].launch_error = Some(e);
                    stop_reason = Some("launch-error");
                }
            }
            next += 1;
        }
        if running.is_empty() && (next >= rows.len() || stop_reason.is_some()) {
            break;
        }
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if last_progress.elapsed() >= every {
            last_progress = Instant::now();
            let line = progress_line(&rows, &cells, &running, started.elapsed(), budget);
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if tty {
        eprintln!();
    }
    for row in rows
        .iter_mut()
        .filter(|r| r.finished.is_none() && r.launch_error.is_none())
    {
        row.skipped = Some(stop_reason.unwrap_or("interrupted"));
    }
    let summary = summarize(
        &settings,
        &cells,
        &rows,
        &dir,
        SummaryInfo {
            file: &args.file,
            started_at,
            wall_s: started.elapsed().as_secs_f64(),
            budget,
            parallel,
            until_fail,
            interrupted,
            overheads: &overheads,
        },
    );
    // Runs happened: a summary that cannot be written is said, not a reason to lose the
    // verdict (the exit code still tells it).
    let path = dir.join("campaign.json");
    let written = serde_json::to_string_pretty(&summary)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(&path, text + "\n").map_err(|e| e.to_string()));
    match written {
        Ok(()) => write_report(&dir),
        Err(e) => eprintln!(
            "faultline campaign: cannot write {}: {}",
            path.display(),
            for_terminal(&e)
        ),
    }
    let verdict = match summary["verdict"].as_str() {
        Some("invalid") => "invalid",
        Some("valid") => "valid",
        _ => "unknown",
    };
    eprintln!("{}", summary["line"].as_str().unwrap_or(""));
    for c in summary["cells"].as_array().into_iter().flatten() {
        eprintln!(
            "  {:<40} {}",
            c["id"].as_str().unwrap_or(""),
            c["line"].as_str().unwrap_or("")
        );
    }
    eprintln!("campaign: {}", dir.display());
    Ok(Outcome { dir, verdict })
}

/// `OUTPUT/NAME/<stamp>` (with a suffix when two campaigns start in the same second).
fn make_dir(base: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(base).map_err(|e| {
        format!(
            "cannot create {}: {e} (choose another folder with --output)",
            base.display()
        )
    })?;
    faultline_controller::create_stamped_dir(base, &format!("campaigns in {}", base.display()))
}

fn progress_line(
    rows: &[RunRow],
    cells: &[Cell],
    running: &[(usize, Running)],
    elapsed: Duration,
    budget: Option<f64>,
) -> String {
    let done: Vec<&Finished> = rows.iter().filter_map(|r| r.finished.as_ref()).collect();
    let count = |v: &str| done.iter().filter(|f| f.verdict() == v).count();
    let now: Vec<String> = running
        .iter()
        .map(|(row, r)| {
            let cell = &cells[rows[*row].cell];
            format!(
                "{} s{} ({:.0}/{:.0} s)",
                cell.id,
                rows[*row].seed,
                r.started.elapsed().as_secs_f64(),
                cell.time_limit
            )
        })
        .collect();
    format!(
        "[{}{}] {}/{} runs: {} invalid, {} unknown, {} errors; running {}",
        human(elapsed.as_secs_f64()),
        budget.map_or(String::new(), |b| format!("/{}", human(b))),
        done.len(),
        rows.len(),
        count("invalid"),
        count("unknown"),
        count("error"),
        if now.is_empty() {
            "nothing".to_string()
        } else {
            now.join(", ")
        }
    )
}

struct SummaryInfo<'a> {
    file: &'a Path,
    started_at: SystemTime,
    wall_s: f64,
    budget: Option<f64>,
    parallel: usize,
    until_fail: bool,
    interrupted: bool,
    overheads: &'a [f64],
}

/// `campaign.json`: every run and cell, with the verdict of the whole.
fn summarize(
    settings: &Settings,
    cells: &[Cell],
    rows: &[RunRow],
    dir: &Path,
    info: SummaryInfo<'_>,
) -> Value {
    let rel = |p: &Path| -> String {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .to_string()
    };
    let mut runs = Vec::new();
    for r in rows {
        let cell = &cells[r.cell];
        let mut v = json!({"cell": cell.id, "seed": r.seed});
        match (&r.finished, r.skipped) {
            (Some(f), _) => {
                let res = f.results.as_ref();
                v["status"] = json!(f.verdict());
                v["exit"] = json!(f.exit);
                v["wall_s"] = json!((f.wall_s * 10.0).round() / 10.0);
                v["log"] = json!(rel(&f.job.log));
                if let Some(d) = &f.run_dir {
                    v["dir"] = json!(rel(d));
                    if d.join("report.html").is_file() {
                        v["report"] = json!(rel(&d.join("report.html")));
                    }
                }
                v["failed_checks"] = json!(f.failed_checks());
                match res {
                    Some(res) => {
                        v["explanation"] = res["explanation"][0].clone();
                        if v["explanation"].is_null() && res["interrupted"] == true {
                            v["explanation"] = json!(
                                "stopped before its time limit (interrupted); nothing found in \
                                 what it recorded"
                            );
                        }
                        v["first_violation_s"] = res["first_violation_s"].clone();
                        v["duration_s"] = res["duration_s"].clone();
                        v["interrupted"] = res["interrupted"].clone();
                        v["efficacy"] = res["efficacy"].clone();
                        v["faults"] = json!(res["faults"].as_array().map_or(0, Vec::len));
                    }
                    None => {
                        v["explanation"] = json!(format!(
                            "the run ended (exit {}) without results: {}",
                            f.exit.map_or("by a signal".to_string(), |c| c.to_string()),
                            f.log_tail
                        ));
                    }
                }
            }
            (None, _) if r.launch_error.is_some() => {
                v["status"] = json!("error");
                v["explanation"] = json!(format!(
                    "could not be started: {}",
                    r.launch_error.as_deref().unwrap_or("")
                ));
            }
            (None, reason) => {
                v["status"] = json!("skipped");
                v["explanation"] = json!(match reason {
                    Some("budget") => "not run: the budget would not allow it",
                    Some("until-fail") =>
                        "not run: --until-fail stopped the campaign at the first invalid run",
                    Some("launch-error") => "not run: an earlier run could not be started",
                    _ => "not run: the campaign was interrupted",
                });
            }
        }
        runs.push(v);
    }
    let mut cell_rows = Vec::new();
    for (ci, cell) in cells.iter().enumerate() {
        let mine: Vec<&Value> = runs
            .iter()
            .zip(rows)
            .filter(|(_, r)| r.cell == ci)
            .map(|(v, _)| v)
            .collect();
        let n = |s: &str| mine.iter().filter(|v| v["status"] == s).count();
        let ran = mine.len() - n("skipped");
        let mut fv: Vec<f64> = mine
            .iter()
            .filter(|v| v["status"] == "invalid")
            .filter_map(|v| v["first_violation_s"].as_f64())
            .collect();
        fv.sort_by(f64::total_cmp);
        let pass_rate = (ran > 0).then(|| n("valid") as f64 / ran as f64);
        // "2/3 valid, 1 invalid": the other counts only when there are any.
        let mut line = format!("{}/{ran} valid", n("valid"));
        for (status, label) in [
            ("invalid", "invalid"),
            ("unknown", "unknown"),
            ("error", "errors"),
            ("skipped", "not run"),
        ] {
            if n(status) > 0 {
                line.push_str(&format!(", {} {label}", n(status)));
            }
        }
        cell_rows.push(json!({
            "id": cell.id,
            "values": cell.values.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<BTreeMap<String, Value>>(),
            "config": format!("cells/{}.toml", cell.id),
            "time_limit_s": cell.time_limit,
            "runs": mine.len(),
            "valid": n("valid"),
            "invalid": n("invalid"),
            "unknown": n("unknown"),
            "errors": n("error"),
            "skipped": n("skipped"),
            "pass_rate": pass_rate,
            "median_first_violation_s": fv.get(fv.len() / 2),
            "line": line,
        }));
    }
    let count = |s: &str| runs.iter().filter(|v| v["status"] == s).count();
    let verdict = if count("invalid") > 0 {
        "invalid"
    } else if count("unknown") + count("error") + count("skipped") > 0 || info.interrupted {
        "unknown"
    } else {
        "valid"
    };
    let axes: Vec<String> = cells
        .first()
        .map(|c| c.values.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let overhead = (!info.overheads.is_empty())
        .then(|| info.overheads.iter().sum::<f64>() / info.overheads.len() as f64);
    let line = format!(
        "campaign {}: {} — {} runs: {} valid, {} invalid, {} unknown, {} errors, {} not run, in {}",
        settings.name,
        verdict.to_uppercase(),
        runs.len(),
        count("valid"),
        count("invalid"),
        count("unknown"),
        count("error"),
        count("skipped"),
        human(info.wall_s)
    );
    json!({
        "name": settings.name,
        "file": info.file.display().to_string(),
        "started": faultline_controller::utc_stamp(info.started_at),
        "wall_s": (info.wall_s * 10.0).round() / 10.0,
        "budget_s": info.budget,
        "parallel": info.parallel,
        "until_fail": info.until_fail,
        "interrupted": info.interrupted,
        "seeds": settings.seeds,
        "axes": axes,
        "verdict": verdict,
        "line": line,
        "overhead_per_run_s": overhead.map(|o| (o * 10.0).round() / 10.0),
        "cells": cell_rows,
        "runs": runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fl-campaign-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_matrix_and_the_cells_multiply() {
        let p = write(
            r#"
name = "nightly"
seeds = 2
[test]
time_limit = 12
nemesis = ["kill"]
[raft]
read_mode = "lease"
[matrix]
"raft.bugs" = [[], ["ack-before-commit"]]
[[cells]]
name = "three"
nodes = 3
[[cells]]
name = "five"
"#,
        );
        // [raft] outside [test] is not a campaign key.
        assert!(
            load(&p).unwrap_err().contains("raft"),
            "{:?}",
            load(&p).err()
        );
        let p = write(
            r#"
name = "nightly"
seeds = [4, 9]
[test]
time_limit = 12
nemesis = ["kill"]
raft = { read_mode = "lease" }
[matrix]
"raft.bugs" = [[], ["ack-before-commit"]]
[[cells]]
name = "three"
nodes = 3
[[cells]]
name = "five"
"#,
        );
        let (settings, cells) = load(&p).unwrap();
        assert_eq!(settings.seeds, vec![4, 9]);
        let ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "c01-none.three",
                "c02-none.five",
                "c03-ack-before-commit.three",
                "c04-ack-before-commit.five"
            ]
        );
        let c = &cells[2];
        assert_eq!(c.test.nodes, Some(3));
        let raft = c.test.raft.as_ref().unwrap();
        assert_eq!(
            raft.bugs.as_deref(),
            Some(&["ack-before-commit".to_string()][..])
        );
        assert_eq!(
            raft.read_mode.as_deref(),
            Some("lease"),
            "merged, not replaced"
        );
        assert_eq!(
            c.test.name.as_deref(),
            Some("nightly.c03-ack-before-commit.three")
        );
        assert_eq!(c.time_limit, 12.0);
    }

    #[test]
    fn bad_campaigns_are_refused_naming_the_cell_and_key() {
        let p = write("[test]\ntime_limit = 5\n[matrix]\nnodes = [3, 99]\n");
        let e = load(&p).unwrap_err();
        assert!(e.contains("c02") && e.contains("nodes"), "{e}");
        let p = write("[test]\ntime_lmit = 5\n");
        let e = load(&p).unwrap_err();
        assert!(e.contains("time_lmit"), "{e}");
        let p = write("[matrix]\nnodes = 3\n");
        assert!(load(&p).unwrap_err().contains("as a list"));
        let p = write("budget = \"3 weeks\"\n");
        assert!(load(&p).unwrap_err().contains("budget"));
        let p = write("[test]\nseed = 4\n");
        assert!(load(&p).unwrap_err().contains("seeds"));
        let p = write("seeds = [3, 5, 3]\n");
        assert!(load(&p).unwrap_err().contains("twice"));
        let p = write("[matrix]\na = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nb = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nc = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nd = [1, 2]\n");
        assert!(load(&p).unwrap_err().contains("more than 1000 cells"));
    }
}
