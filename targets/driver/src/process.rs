//! Running node processes so that they can never outlive the controller.
//!
//! Each node runs in its own process group (so a nemesis can signal the node and anything it
//! forked, and a terminal's Ctrl-C reaches only the controller, which then shuts the cluster
//! down in order), with `PR_SET_PDEATHSIG = SIGKILL` (so if the controller dies, even by
//! SIGKILL, the kernel kills the node), and with `FAULTLINE_RUN` in its environment (so
//! `faultline clean` can find what a run left behind).
//!
//! The parent-death signal is tied to the *thread* that forked the child, not the process:
//! nodes are therefore always spawned from one dedicated thread that lives as long as the
//! controller (a tokio worker or blocking-pool thread may exit and take its children with it).

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Environment variable marking every process of a run with the run's id.
pub const RUN_ENV: &str = "FAULTLINE_RUN";
/// Environment variable holding the pid of the controller that started the process.
pub const CONTROLLER_ENV: &str = "FAULTLINE_CONTROLLER";

/// What to start.
#[derive(Clone, Debug)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go (appended to).
    pub log: PathBuf,
    pub run_id: String,
    /// A network namespace to run in (a file such as `/run/netns/NAME`), if any.
    pub netns: Option<PathBuf>,
}

/// A running (or exited) node process.
#[derive(Clone, Debug)]
pub struct NodeProcess {
    pub pid: i32,
    /// Its process group (equal to `pid`: the node leads its own group).
    pub pgid: i32,
    exit: Arc<Mutex<Option<ExitStatus>>>,
}

impl NodeProcess {
    /// How it exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit.lock().ok().and_then(|s| *s)
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` to the node's whole process group.
    pub fn signal(&self, signal: Signal) {
        if self.pgid > 1 {
            let _ = nix::sys::signal::killpg(Pid::from_raw(self.pgid), signal);
        }
    }
}

type SpawnJob = (Launch, mpsc::Sender<Result<NodeProcess, String>>);

/// SIGKILL to a whole process group (ESRCH if it is already gone).
pub fn kill_group(pgid: i32) -> Result<(), String> {
    nix::sys::signal::killpg(Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("cannot kill process group {pgid}: {e}"))
}

/// Starts `launch` from the spawner thread. The process is reaped by a watcher thread, which
/// records its exit status.
pub fn spawn(launch: Launch) -> Result<NodeProcess, String> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let started = std::thread::Builder::new()
            .name("node-spawner".into())
            .spawn(move || {
                for (launch, reply) in rx {
                    let _ = reply.send(spawn_here(&launch));
                }
            });
        if let Err(e) = started {
            tracing::error!("cannot start the node-spawner thread: {e}");
        }
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .map_err(|_| "the node spawner is broken".to_string())?
        .send((launch, tx))
        .map_err(|_| "the node spawner thread is gone".to_string())?;
    rx.recv()
        .map_err(|_| "the node spawner thread is gone".to_string())?
}

fn spawn_here(launch: &Launch) -> Result<NodeProcess, String> {
    let log = open_log(&launch.log)?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", launch.log.display()))?;
    // Opened here, before the fork: the child only has to call setns on it.
    let netns = match &launch.netns {
        Some(path) => Some(
            File::open(path)
                .map_err(|e| format!("cannot open network namespace {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env(RUN_ENV, &launch.run_id)
        .env(CONTROLLER_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (prctl, setns) on data prepared before the fork.
    let controller = nix::unistd::getpid();
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            // The controller may have died between the fork and the prctl: then the death
            // signal will never come, so do not start at all.
            if nix::unistd::getppid() != controller {
                return Err(std::io::Error::other("the controller exited"));
            }
            if let Some(ns) = &netns {
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", launch.program.display()))?;
    let pid = child.id() as i32;
    let exit = Arc::new(Mutex::new(None));
    let watched = exit.clone();
    std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            if let Ok(status) = child.wait() {
                if let Ok(mut slot) = watched.lock() {
                    *slot = Some(status);
                }
            }
        })
        .map_err(|e| format!("cannot watch process {pid}: {e}"))?;
    Ok(NodeProcess {
        pid,
        pgid: pid,
        exit,
    })
}

fn open_log(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Every live process whose environment carries `FAULTLINE_RUN` (any run, or `run_id`), with
/// that run id: what `faultline clean` looks for.
pub fn processes_of_runs(run_id: Option<&str>) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        for var in environ.split(|&b| b == 0) {
            if let Some(id) = var.strip_prefix(format!("{RUN_ENV}=").as_bytes()) {
                let id = String::from_utf8_lossy(id).into_owned();
                if run_id.is_none_or(|r| r == id) {
                    found.push((pid, id));
                }
            }
        }
    }
    found
}
