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

/// Sends a signal to a process group somewhere else (a node on another host).
pub type Signaller = Arc<dyn Fn(i32, Signal) -> Result<(), String> + Send + Sync>;

/// A running (or exited) node process.
#[derive(Clone)]
pub struct NodeProcess {
    pub pid: i32,
    /// Its process group (equal to `pid`: the node leads its own group).
    pub pgid: i32,
    exit: Arc<Mutex<Option<ExitStatus>>>,
    /// For a process on another host: how to signal it (its pid means nothing here).
    remote: Option<Signaller>,
}

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcess")
            .field("pid", &self.pid)
            .field("remote", &self.remote.is_some())
            .field("exit", &self.exit_status())
            .finish()
    }
}

impl NodeProcess {
    /// A process on another host: `exit` is filled in when it exits there, `signal` reaches
    /// its process group.
    pub fn remote(pid: i32, exit: Arc<Mutex<Option<ExitStatus>>>, signal: Signaller) -> Self {
        NodeProcess {
            pid,
            pgid: pid,
            exit,
            remote: Some(signal),
        }
    }

    /// Whether it runs on another host.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// How it exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit.lock().ok().and_then(|s| *s)
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` to the node's whole process group (a failure is logged).
    pub fn signal(&self, signal: Signal) {
        if let Err(e) = self.try_signal(signal) {
            tracing::debug!(pid = self.pid, error = e, "signal not delivered");
        }
    }

    /// Sends `signal` to the node's whole process group; a group already gone is not an
    /// error.
    pub fn try_signal(&self, signal: Signal) -> Result<(), String> {
        if self.pgid <= 1 {
            return Err(format!("{} is not a process group", self.pgid));
        }
        if let Some(remote) = &self.remote {
            return remote(self.pgid, signal);
        }
        match nix::sys::signal::killpg(Pid::from_raw(self.pgid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(format!("cannot signal process group {}: {e}", self.pgid)),
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
        remote: None,
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
