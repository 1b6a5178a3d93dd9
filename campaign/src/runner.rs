//! Running one `faultline test` as a child process and reading what it left.
//!
//! Campaigns and shrinking run every test as a separate `faultline test` process rather than
//! in this one: a run installs a process-wide log subscriber and signal handler (a second
//! Ctrl-C exits the process), prints a progress line, and could take the whole campaign down
//! if it failed badly; a child costs a few milliseconds against runs of many seconds.
//!
//! Each child gets its own process group, so a terminal's Ctrl-C reaches only the campaign,
//! which passes it on exactly once (a child that got it twice would stop without checking
//! what it recorded); and the kernel sends it SIGTERM if the campaign dies, which a test
//! treats as a Ctrl-C: it stops its cluster, checks and writes its results.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use nix::sys::signal::Signal;
use serde_json::Value;

/// A `faultline test` to run.
#[derive(Clone, Debug)]
pub struct Job {
    /// The test definition (`--config`).
    pub config: PathBuf,
    pub seed: u64,
    /// A results folder of its own: the run is the one folder it will hold.
    pub results_dir: PathBuf,
    /// Where the child's stdout and stderr go.
    pub log: PathBuf,
}

/// A running child.
pub struct Running {
    pub job: Job,
    child: Child,
    pub started: Instant,
    /// How many times a stop signal was passed on to it.
    pub signalled: u8,
}

/// What a finished run left: its folder and results, or why there are none.
#[derive(Clone, Debug)]
pub struct Finished {
    pub job: Job,
    pub exit: Option<i32>,
    pub wall_s: f64,
    /// The run's folder (RESULTS_DIR/NAME/STAMP), when it got that far.
    pub run_dir: Option<PathBuf>,
    /// Its `results.json`, when it wrote one.
    pub results: Option<Value>,
    /// The last lines of its output, for runs that ended without results.
    pub log_tail: String,
}

impl Finished {
    /// `valid`, `invalid`, `unknown`, or `error` (no results: the run could not be made or
    /// checked). A run stopped early that found nothing is `unknown`: it did not run its course.
    pub fn verdict(&self) -> String {
        let Some(r) = self.results.as_ref() else {
            return "error".to_string();
        };
        match r["verdict"].as_str() {
            Some("valid") if r["interrupted"] == true => "unknown".to_string(),
            Some(v) => v.to_string(),
            None => "error".to_string(),
        }
    }

    /// The names of the checks that failed.
    pub fn failed_checks(&self) -> Vec<String> {
        self.results.as_ref().map(failed_checks).unwrap_or_default()
    }
}

/// The names of the checks a run's `results.json` says failed.
pub fn failed_checks(results: &Value) -> Vec<String> {
    results["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["verdict"] == "invalid")
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// Starts `faultline test` (this very binary) for `job`.
pub fn start(job: Job) -> Result<Running, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the faultline binary to run tests with: {e}"))?;
    std::fs::create_dir_all(&job.results_dir)
        .map_err(|e| format!("cannot create {}: {e}", job.results_dir.display()))?;
    if let Some(parent) = job.log.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let log = std::fs::File::create(&job.log)
        .map_err(|e| format!("cannot create {}: {e}", job.log.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", job.log.display()))?;
    let parent = nix::unistd::getpid();
    let mut cmd = Command::new(exe);
    cmd.arg("test")
        .arg("--config")
        .arg(&job.config)
        .arg("--seed")
        .arg(job.seed.to_string())
        .arg("--results-dir")
        .arg(&job.results_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the campaign exited"));
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start faultline test: {e}"))?;
    Ok(Running {
        job,
        child,
        started: Instant::now(),
        signalled: 0,
    })
}

impl Running {
    /// Asks the run to stop: the first time it stops its clients and still checks what it
    /// recorded; the second time it stops at once.
    pub fn interrupt(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGINT);
        self.signalled += 1;
    }

    /// The finished run, if it has exited.
    pub fn poll(&mut self) -> Option<Finished> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(self.finish(status.code())),
            Ok(None) => None,
            Err(_) => Some(self.finish(None)),
        }
    }

    fn finish(&self, exit: Option<i32>) -> Finished {
        let run_dir = run_dir_in(&self.job.results_dir);
        let results = run_dir.as_ref().and_then(|d| {
            let text = std::fs::read_to_string(d.join("results.json")).ok()?;
            serde_json::from_str(&text).ok()
        });
        let log_tail = std::fs::read_to_string(&self.job.log)
            .map(|t| tail(&t, 6))
            .unwrap_or_default();
        Finished {
            job: self.job.clone(),
            exit,
            wall_s: self.started.elapsed().as_secs_f64(),
            run_dir,
            results,
            log_tail,
        }
    }
}

/// Runs `job` to its end, passing stop signals on: each SIGINT or SIGTERM this process gets
/// while the run is under way is passed to it (the first makes it stop and still check, the
/// second stops it at once), and a third leaves at once (the kernel then tells the run to
/// stop). `seen` is how many signals the caller had already dealt with when it decided to run
/// the job (so one that arrives while the run starts is passed on, not lost).
pub fn run(job: Job, seen: usize) -> Result<Finished, String> {
    let mut running = start(job)?;
    let mut handled = seen;
    loop {
        if let Some(f) = running.poll() {
            return Ok(f);
        }
        while handled < signals::received() {
            handled += 1;
            if running.signalled >= 2 {
                eprintln!("\nfaultline: stopped; the run under way is told to stop");
                std::process::exit(130);
            }
            running.interrupt();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The one run folder (NAME/STAMP) in a results folder that holds a single run.
fn run_dir_in(results_dir: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    for name in std::fs::read_dir(results_dir).ok()?.flatten() {
        if name.file_name().to_string_lossy().starts_with('.') || name.file_name() == "latest" {
            continue;
        }
        let Ok(stamps) = std::fs::read_dir(name.path()) else {
            continue;
        };
        for stamp in stamps.flatten() {
            if stamp.path().is_dir() {
                found.push(stamp.path());
            }
        }
    }
    found.sort();
    found.pop()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// "1m12s" for a number of seconds.
pub fn human(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// Reads a duration: seconds as a number, or with a unit (`90s`, `20m`, `1h`).
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration such as 90s, 20m or 1h, got {text:?}"))?;
    let scale = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use s, m or h")),
    };
    let s = n * scale;
    if !s.is_finite() || s <= 0.0 || s > 604_800.0 {
        return Err(format!(
            "{text:?}: a duration must be above 0 and at most a week"
        ));
    }
    Ok(s)
}

/// The signals (SIGINT, SIGTERM) received so far, counted by a handler that does nothing else.
pub mod signals {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RECEIVED: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn count(_: i32) {
        RECEIVED.fetch_add(1, Ordering::SeqCst);
    }

    /// Installs the handler for SIGINT and SIGTERM.
    pub fn install() -> Result<(), String> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let action = SigAction::new(
            SigHandler::Handler(count),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for s in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only increments an atomic.
            unsafe { sigaction(s, &action) }.map_err(|e| format!("cannot handle {s}: {e}"))?;
        }
        Ok(())
    }

    pub fn received() -> usize {
        RECEIVED.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_and_without_units() {
        assert_eq!(parse_duration("90").unwrap(), 90.0);
        assert_eq!(parse_duration("20m").unwrap(), 1200.0);
        assert_eq!(parse_duration("1.5h").unwrap(), 5400.0);
        assert!(parse_duration("3 days").unwrap_err().contains("unit"));
        assert!(parse_duration("-4s").is_err());
        assert_eq!(human(72.0), "1m12s");
        assert_eq!(human(3_725.0), "1h02m");
    }
}
