//! The host's side: `faultline host ...`, run by the copy of faultline the controller uploads
//! to each host.
//!
//! * `host agent` serves one run for the controller over its SSH channel (requests on stdin,
//!   replies and exit events on stdout; see [`crate::protocol`]). The nodes do not depend on
//!   it: if the channel breaks, they keep running, and a new agent picks up where the old one
//!   left off (exit statuses are files).
//! * `host supervise` (started by the agent, detached in a session of its own) starts one node
//!   in its own process group, writes its pid, waits for it and writes how it exited.
//! * `host runs` and `host clean` are what `faultline clean --hosts` uses.
//!
//! Everything a run leaves on a host is under `<dir>/runs/<run id>/` (with `run.json` saying
//! whose it is), in its nftables table, and in processes carrying `FAULTLINE_REMOTE_RUN` and
//! `FAULTLINE_HOST` in their environment: what `clean` looks for.

use std::io::{BufRead as _, Read as _, Seek as _, Write as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::protocol::{
    nft_delete_script, Hello, ListedFile, Message, Request, HOST_ENV, NODE_ENV, REMOTE_RUN_ENV,
};

#[derive(Debug, clap::Args)]
pub struct HostArgs {
    #[command(subcommand)]
    command: HostCommand,
}

#[derive(Debug, clap::Subcommand)]
enum HostCommand {
    /// Serve one run for its controller (stdin/stdout).
    Agent {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        run: String,
        #[arg(long)]
        host: String,
        /// The run's nftables table.
        #[arg(long)]
        table: String,
        /// Who runs the test: `HOSTNAME PID BOOT-ID` of the controller.
        #[arg(long)]
        controller: String,
    },
    /// Start a program in a process group of its own and record its pid and exit.
    Supervise {
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        pid_file: PathBuf,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// The runs on this host (their run.json), as a JSON list.
    Runs {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Remove runs: their processes, nftables tables and files; with
    /// --remove-binaries, also the uploaded faultline binaries once no run is left.
    Clean {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host: String,
        #[arg(long)]
        run: Vec<String>,
        #[arg(long)]
        remove_binaries: bool,
    },
}

/// What `run.json` says about a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub run: String,
    pub host: String,
    pub table: String,
    /// `HOSTNAME PID BOOT-ID` of the controller.
    pub controller: String,
    pub started_unix_ms: u128,
    /// Whether the run's agent still runs (its controller's connection is open), as `host
    /// runs` found it; not stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent_alive: bool,
}

/// Runs a `faultline host` subcommand.
pub fn run(args: HostArgs) -> Result<(), String> {
    match args.command {
        HostCommand::Agent {
            dir,
            run,
            host,
            table,
            controller,
        } => serve(Agent::open(dir, run, host, table, controller)?),
        HostCommand::Supervise {
            run_dir,
            pid_file,
            command,
        } => supervise(&run_dir, &pid_file, &command),
        HostCommand::Runs { dir } => {
            println!(
                "{}",
                serde_json::to_string(&list_runs(&dir)).unwrap_or_default()
            );
            Ok(())
        }
        HostCommand::Clean {
            dir,
            host,
            run,
            remove_binaries,
        } => {
            let mut errors = Vec::new();
            for r in &run {
                match clean_run(&dir, &host, r, false) {
                    Ok(n) => println!("{r}: {n} processes killed, table and files removed"),
                    Err(e) => errors.push(format!("{r}: {e}")),
                }
            }
            if remove_binaries && list_runs(&dir).is_empty() {
                remove_binaries_in(&dir);
            }
            match errors.is_empty() {
                true => Ok(()),
                false => Err(errors.join("; ")),
            }
        }
    }
}

/// Removes the binaries faultline uploaded to `dir/bin` (`faultline-<hash>`, `node-<hash>`)
/// and then the folders if they are empty: never anything else, whatever `dir` is.
fn remove_binaries_in(dir: &Path) {
    // `faultline-<hash>`, `node-<hash>`, and what an interrupted upload left
    // (`<name>.part.<pid>`).
    let ours = |name: &str| {
        let name = match name.split_once(".part.") {
            Some((n, pid)) if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) => n,
            Some(_) => return false,
            None => name,
        };
        ["faultline-", "node-"].iter().any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|hash| hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
        })
    };
    // A binary another run is executing right now (uploaded, its agent not yet started) stays.
    let bin = dir.join("bin");
    for e in std::fs::read_dir(&bin).into_iter().flatten().flatten() {
        if ours(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    // Only if empty: a folder the user keeps other things in stays (and `dir` itself is the
    // user's choice: it stays).
    let _ = std::fs::remove_dir(&bin);
    let _ = std::fs::remove_dir(runs_dir(dir));
}

fn runs_dir(dir: &Path) -> PathBuf {
    dir.join("runs")
}

/// Run ids are file names: nothing that could climb out of `runs/`.
fn check_run_id(run: &str) -> Result<(), String> {
    let ok = !run.is_empty()
        && run != "."
        && run != ".."
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:+".contains(c));
    match ok {
        true => Ok(()),
        false => Err(format!("{run:?} is not a run id")),
    }
}

fn list_runs(dir: &Path) -> Vec<RunRecord> {
    let mut runs = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs_dir(dir)) else {
        return runs;
    };
    for e in entries.flatten() {
        // Only folders with a record faultline wrote (it is written first, when the folder is
        // made): nothing else under `runs/` is ever taken for a run.
        let record = std::fs::read_to_string(e.path().join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok())
            .filter(|r| *r.run == *e.file_name().to_string_lossy());
        if let Some(mut r) = record {
            r.agent_alive = agent_of(&e.path(), &r.run).is_some();
            runs.push(r);
        }
    }
    runs
}

/// Kills a run's processes on `host`, deletes its table and (unless `keep`) its files.
/// Returns how many processes were killed.
fn clean_run(dir: &Path, host: &str, run: &str, keep: bool) -> Result<usize, String> {
    check_run_id(run)?;
    let run_dir = runs_dir(dir).join(run);
    let record = std::fs::read_to_string(run_dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok());
    // The processes carry the host name the run used, which may not be the one given now.
    let host = record
        .as_ref()
        .map(|r| r.host.as_str())
        .filter(|h| !h.is_empty())
        .unwrap_or(host);
    kill_agent_of(&run_dir, run);
    let killed = kill_run(run, host);
    let mut errors = Vec::new();
    // Only a table the run made (a run that never partitioned has none).
    let made_table = run_dir.join(TABLE_MADE).exists();
    if let Some(table) = record
        .map(|r| r.table)
        .filter(|t| !t.is_empty() && made_table)
    {
        if let Err(e) = nft(&nft_delete_script(&table)) {
            errors.push(format!("cannot delete nftables table {table}: {e}"));
        }
    }
    if !keep {
        if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("cannot remove {}: {e}", run_dir.display()));
            }
        }
    }
    match errors.is_empty() {
        true => Ok(killed),
        false => Err(errors.join("; ")),
    }
}

/// Nodes this run started that are gone without an exit file (the host rebooted, their
/// supervisor was killed): their exit is recorded as a SIGKILL, so the controller does not
/// take them for running.
fn record_lost_exits(run_dir: &Path, run: &str) {
    let marker = format!("{REMOTE_RUN_ENV}={run}");
    for e in std::fs::read_dir(run_dir.join("pids"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(pid) = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|t| t.trim().strip_prefix("pid ")?.parse::<i32>().ok())
        else {
            continue;
        };
        let exit = run_dir.join("exits").join(pid.to_string());
        let alive = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()));
        if !alive && !exit.exists() {
            let _ = std::fs::write(&exit, "9");
        }
    }
}

/// A file in a run's folder saying the run made its nftables table.
const TABLE_MADE: &str = "table-made";

/// The pid of the agent recorded in `run_dir/agent.pid`, if it still runs as an agent of
/// `run` and is not this process.
fn agent_of(run_dir: &Path, run: &str) -> Option<i32> {
    let pid = std::fs::read_to_string(run_dir.join("agent.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())?;
    if pid <= 1 || pid == std::process::id() as i32 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_agent = args.windows(2).any(|w| w == [&b"host"[..], &b"agent"[..]])
        && args
            .windows(2)
            .any(|w| w[0] == b"--run" && w[1] == run.as_bytes());
    is_agent.then_some(pid)
}

/// Kills the run's recorded agent, if it still runs (and is not this process).
fn kill_agent_of(run_dir: &Path, run: &str) {
    if let Some(pid) = agent_of(run_dir, run) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Every process whose environment marks it as `run`'s on `host`: (pid, pgid).
fn run_processes(run: &str, host: &str) -> Vec<(i32, i32)> {
    let want_run = format!("{REMOTE_RUN_ENV}={run}");
    let want_host = format!("{HOST_ENV}={host}");
    let mut found = Vec::new();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        let has = |want: &str| vars.contains(&want.as_bytes());
        if has(&want_run) && has(&want_host) {
            let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                .map(|p| p.as_raw())
                .unwrap_or(pid);
            found.push((pid, pgid));
        }
    }
    found
}

/// SIGKILLs what still runs of `node` of `run` on `host` and waits up to 5 s for it to go.
fn kill_node(run: &str, host: &str, node: &str) {
    let want = format!("{NODE_ENV}={node}");
    let marked = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == want.as_bytes()))
    };
    let of_node = || -> Vec<(i32, i32)> {
        run_processes(run, host)
            .into_iter()
            .filter(|(pid, _)| marked(*pid))
            .collect()
    };
    let procs = of_node();
    if procs.is_empty() {
        return;
    }
    for (pid, pgid) in &procs {
        if *pgid > 1 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !of_node().is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs every process of `run` on `host` (their groups too) and waits up to 5 s for them
/// to go. Returns how many there were.
fn kill_run(run: &str, host: &str) -> usize {
    let procs = run_processes(run, host);
    for (pid, pgid) in &procs {
        if *pgid > 1 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !run_processes(run, host).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    procs.len()
}

fn nft_path() -> Option<String> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .map(|p| p.to_string())
}

fn nft(script: &str) -> Result<(), String> {
    let nft = nft_path().ok_or_else(|| "nft is not installed on this host".to_string())?;
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("cannot write to nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// One run's agent.
struct Agent {
    run: String,
    host: String,
    run_dir: PathBuf,
    out: Arc<Mutex<std::io::Stdout>>,
    started: Mutex<u64>,
}

impl Agent {
    fn open(
        dir: PathBuf,
        run: String,
        host: String,
        table: String,
        controller: String,
    ) -> Result<Agent, String> {
        check_run_id(&run)?;
        let run_dir = runs_dir(&dir).join(&run);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        // The record first: `clean` takes only folders that have one for runs.
        let record = run_dir.join("run.json");
        if let Some(other) = std::fs::read_to_string(&record)
            .ok()
            .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok())
            .filter(|r| r.controller != controller || r.host != host)
        {
            return Err(format!(
                "{} is another run's (controller {}, host {}); not taken over",
                run_dir.display(),
                other.controller,
                other.host
            ));
        }
        if !record.exists() {
            let r = RunRecord {
                run: run.clone(),
                host: host.clone(),
                table,
                controller,
                started_unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
                agent_alive: false,
            };
            let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
            let tmp = run_dir.join("run.json.tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, &record))
                .map_err(|e| format!("cannot write {}: {e}", record.display()))?;
        }
        for sub in ["exits", "pids"] {
            std::fs::create_dir_all(run_dir.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", run_dir.join(sub).display()))?;
        }
        // A reconnecting controller starts a new agent; the old one may linger behind a dead
        // connection: it goes.
        kill_agent_of(&run_dir, &run);
        record_lost_exits(&run_dir, &run);
        std::fs::write(run_dir.join("agent.pid"), std::process::id().to_string())
            .map_err(|e| format!("cannot write {}: {e}", run_dir.join("agent.pid").display()))?;
        Ok(Agent {
            run,
            host,
            run_dir,
            out: Arc::new(Mutex::new(std::io::stdout())),
            started: Mutex::new(0),
        })
    }

    fn say(&self, m: &Message) {
        say(&self.out, m);
    }

    fn handle(&self, request: Request) -> Result<Value, String> {
        match request {
            Request::Hello => Ok(json!(hello())),
            Request::Now => Ok(json!(now_ns())),
            Request::Start {
                node,
                program,
                args,
                env,
                data_dir,
                log,
            } => self.start(&node, &program, &args, &env, &data_dir, &log),
            Request::Signal { pgid, signal } => self.signal(pgid, signal).map(|()| json!(null)),
            Request::Nft { script } => {
                // Marked before it is made: a table that exists is always one `clean` deletes.
                std::fs::write(self.run_dir.join(TABLE_MADE), "")
                    .map_err(|e| format!("cannot mark the run's table: {e}"))?;
                nft(&script).map(|()| json!(null))
            }
            Request::Clock { path, offset_ms } => {
                faultline_nemesis::clock::write_offset(Path::new(&path), offset_ms)
                    .map(|()| json!(null))
            }
            Request::Tail { path, bytes } => tail(Path::new(&path), bytes)
                .map(|b| json!(base64::engine::general_purpose::STANDARD.encode(b))),
            Request::Listing { dir } => Ok(json!(listing(Path::new(&dir)))),
            Request::Finish { keep } => {
                let dir = self
                    .run_dir
                    .parent()
                    .and_then(Path::parent)
                    .ok_or_else(|| "the run folder has no parent".to_string())?;
                clean_run(dir, &self.host, &self.run, keep).map(|n| json!(n))
            }
        }
    }

    fn start(
        &self,
        node: &str,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        data_dir: &str,
        log: &str,
    ) -> Result<Value, String> {
        std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {data_dir}: {e}"))?;
        let log_path = Path::new(log);
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .map_err(|e| format!("cannot open {log}: {e}"))
        };
        let seq = {
            let mut s = self
                .started
                .lock()
                .map_err(|_| "the agent's counter is poisoned".to_string())?;
            *s += 1;
            *s
        };
        // Named by this agent too: an agent started after a reconnect counts from 1 again, and
        // must never read an older agent's file for its own start.
        let pid_file = self
            .run_dir
            .join("pids")
            .join(format!("{node}-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_file(&pid_file);
        // The controller starts a node only when it believes it down: whatever of it still
        // runs (a start whose answer was lost with the connection) goes first, or it would
        // hold the ports and escape every fault.
        kill_node(&self.run, &self.host, node);
        let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let mut cmd = Command::new(me);
        cmd.arg("host")
            .arg("supervise")
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--")
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(REMOTE_RUN_ENV, &self.run)
            .env(HOST_ENV, &self.host)
            .env(NODE_ENV, node)
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?);
        // SAFETY: setsid is async-signal-safe; the supervisor must not share the agent's
        // session (an SSH hangup would reach it).
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the supervisor: {e}"))?;
        // Reaped by a thread of its own (the supervisor lives as long as the node).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                let text = text.trim();
                if let Some(pid) = text
                    .strip_prefix("pid ")
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    return Ok(json!(pid));
                }
                if let Some(err) = text.strip_prefix("error ") {
                    return Err(err.to_string());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{node}'s supervisor did not report a pid within 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Signals a process group, but only one of this run: a pid the controller holds may have
    /// been reused by now.
    fn signal(&self, pgid: i32, signal: i32) -> Result<(), String> {
        if pgid <= 1 {
            return Err(format!("{pgid} is not a process group"));
        }
        let signal = nix::sys::signal::Signal::try_from(signal)
            .map_err(|e| format!("signal {signal}: {e}"))?;
        let environ = match std::fs::read(format!("/proc/{pgid}/environ")) {
            Ok(e) => e,
            // Gone already: nothing to signal.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "cannot tell whether process group {pgid} is this run's ({e}); not signalled"
                ))
            }
        };
        if environ.is_empty() {
            // A zombie about to be reaped.
            return Ok(());
        }
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        let run = format!("{REMOTE_RUN_ENV}={}", self.run);
        let host = format!("{HOST_ENV}={}", self.host);
        if !vars.contains(&run.as_bytes()) || !vars.contains(&host.as_bytes()) {
            return Err(format!(
                "process group {pgid} is not this run's; not signalled"
            ));
        }
        match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(format!("cannot signal process group {pgid}: {e}")),
        }
    }
}

fn say(out: &Mutex<std::io::Stdout>, m: &Message) {
    if let (Ok(mut out), Ok(line)) = (out.lock(), serde_json::to_string(m)) {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn serve(agent: Agent) -> Result<(), String> {
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let out = agent.out.clone();
        let exits = agent.run_dir.join("exits");
        std::thread::spawn(move || watch_exits(&exits, &out, &done))
    };
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => agent.handle(request),
            Err(e) => Err(format!("not a request: {e}")),
        };
        agent.say(&match reply {
            Ok(v) => Message::Reply(v),
            Err(e) => Message::Failed(e),
        });
    }
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    Ok(())
}

/// Reports each exit file once (all of them again after a reconnect: the controller keeps
/// the first).
fn watch_exits(exits: &Path, out: &Mutex<std::io::Stdout>, done: &AtomicBool) {
    let mut seen = std::collections::HashSet::new();
    while !done.load(Ordering::Relaxed) {
        if let Ok(entries) = std::fs::read_dir(exits) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(pid) = name.parse::<i32>() else {
                    continue;
                };
                if seen.contains(&pid) {
                    continue;
                }
                let Some(status) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                else {
                    continue;
                };
                seen.insert(pid);
                say(out, &Message::Exit { pid, status });
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `host supervise`: the node in its own process group, its pid and its exit in files.
fn supervise(run_dir: &Path, pid_file: &Path, command: &[String]) -> Result<(), String> {
    let write = |path: &Path, text: String| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let Some((program, args)) = command.split_first() else {
        return write(pid_file, "error no program to start".to_string());
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return write(pid_file, format!("error cannot start {program}: {e}")),
    };
    let pid = child.id() as i32;
    write(pid_file, format!("pid {pid}"))?;
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for {pid}: {e}"))?;
    write(
        &run_dir.join("exits").join(pid.to_string()),
        status.into_raw().to_string(),
    )
}

/// What the host has.
fn hello() -> Hello {
    let kernel = nix::sys::utsname::uname()
        .map(|u| {
            format!(
                "{} {} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy(),
                u.machine().to_string_lossy()
            )
        })
        .unwrap_or_default();
    let addresses = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            let mut list: Vec<String> = addrs
                .filter_map(|a| a.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|s| s.ip().to_string())
                        .or_else(|| a.as_sockaddr_in6().map(|s| s.ip().to_string()))
                })
                .filter(|a| a != "127.0.0.1" && a != "::1" && !a.starts_with("fe80"))
                .collect();
            list.sort();
            list.dedup();
            list
        })
        .unwrap_or_default();
    Hello {
        euid: nix::unistd::geteuid().as_raw(),
        kernel,
        nft: nft_path(),
        faketime: faultline_nemesis::clock::library()
            .ok()
            .map(|p| p.display().to_string()),
        fuse: Path::new("/dev/fuse").exists(),
        addresses,
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The last `bytes` bytes of a file.
fn tail(path: &Path, bytes: u64) -> Result<Vec<u8>, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(bytes)))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(out)
}

/// Every file under `dir` (at most 10 000), relative paths.
fn listing(dir: &Path) -> Vec<ListedFile> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            // Not followed: a link to a folder could loop.
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                todo.push(e.path());
            } else if out.len() < 10_000 {
                out.push(ListedFile {
                    path: e
                        .path()
                        .strip_prefix(dir)
                        .unwrap_or(&e.path())
                        .display()
                        .to_string(),
                    bytes: meta.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
