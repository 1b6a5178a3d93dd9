//! `faultline clean`: removes what a killed controller left behind: processes, network
//! namespaces and the host interface of a namespaced network, and the FUSE mounts of
//! `lose-unfsynced` data directories (each names its controller's pid in `/proc/mounts`).
//!
//! Node processes normally die with their controller (parent-death signal), but a node's own
//! children (a custom target's wrapper script, say) do not get that signal. Every process a
//! run starts carries `FAULTLINE_RUN=<run id>` and `FAULTLINE_CONTROLLER=<pid>` in its
//! environment; `clean` kills those whose controller is no longer running.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use faultline_targets::process::{processes_of_runs, CONTROLLER_ENV};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::exit::{EXIT_BAD_INPUT, EXIT_VALID};

#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Also kill processes of runs whose controller is still running.
    #[arg(long)]
    pub all: bool,
    /// Also clean these SSH hosts (`[user@]address[:port]`, comma-separated): every run
    /// faultline left there (node processes, its nftables table, its files) whose controller
    /// is not running on this machine, then the uploaded binaries.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Take the hosts and how to reach them from this test file's [hosts] table (a run's
    /// test.toml will do); --hosts and the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Hosts: the private key to log in with.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// Hosts: the known-hosts file their keys are checked against.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<std::path::PathBuf>,
    /// Hosts: an ssh configuration file to use instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<std::path::PathBuf>,
    /// Hosts: where faultline keeps its files on each host [default: /var/lib/faultline].
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<String>,
}

pub fn run(args: CleanArgs) -> ExitCode {
    let hosts = match hosts_config(&args) {
        Ok(h) => h,
        Err(e) => {
            eprintln!(
                "faultline clean: {}",
                faultline_checker::text::for_terminal(&e)
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let local = clean_here(&args);
    let Some(hosts) = hosts else {
        return ExitCode::from(local);
    };
    let (done, errors) = faultline_remote::clean_hosts(&hosts, args.all);
    for line in done {
        println!(
            "faultline clean: {}",
            faultline_checker::text::for_terminal(&line)
        );
    }
    for e in &errors {
        eprintln!(
            "faultline clean: {}",
            faultline_checker::text::for_terminal(e)
        );
    }
    ExitCode::from(if errors.is_empty() {
        local
    } else {
        EXIT_BAD_INPUT
    })
}

/// The hosts to clean, if any were named (by flags or a test file's [hosts]).
fn hosts_config(args: &CleanArgs) -> Result<Option<faultline_remote::HostsConfig>, String> {
    let from_file = match &args.config {
        Some(path) => faultline_controller::config::TestFile::load(path)?.hosts,
        None => None,
    };
    let flags = faultline_remote::HostsSection {
        addresses: (!args.hosts.is_empty()).then(|| args.hosts.clone()),
        key: args.ssh_key.clone(),
        known_hosts_file: args.known_hosts.clone(),
        ssh_config: args.ssh_config.clone(),
        dir: args.hosts_dir.clone(),
        ..faultline_remote::HostsSection::default()
    };
    let section = match from_file {
        Some(f) => f.merged(flags),
        None if args.hosts.is_empty() => {
            if args.ssh_key.is_some()
                || args.known_hosts.is_some()
                || args.ssh_config.is_some()
                || args.hosts_dir.is_some()
            {
                return Err(
                    "--ssh-key, --known-hosts, --ssh-config and --hosts-dir need --hosts (or \
                     --config with a [hosts] table)"
                        .to_string(),
                );
            }
            return Ok(None);
        }
        None => flags,
    };
    section.resolve().map(Some)
}

/// What a killed controller left on this machine. Returns the exit code.
fn clean_here(args: &CleanArgs) -> u8 {
    // SSH connections to hosts of runs whose controller is gone (their masters end on their
    // own a minute after their last use; this ends them now and removes their folders).
    let stale_controls = stale_ssh_controls(args.all);
    let ssh_found = !stale_controls.is_empty();
    for (dir, sockets) in stale_controls {
        for socket in &sockets {
            let _ = std::process::Command::new("ssh")
                .arg("-S")
                .arg(socket)
                .args(["-O", "exit", "faultline-clean"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        println!(
            "faultline clean: removing SSH connection folder {}",
            faultline_checker::text::for_terminal(&dir.display().to_string())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Networks (namespaces, the host interface) of runs whose controller is gone.
    for (tag, namespaces, host_if) in faultline_nemesis::net::leftovers(args.all) {
        println!(
            "faultline clean: removing network {tag} ({} namespaces, interface {host_if})",
            namespaces.len()
        );
        faultline_nemesis::net::remove_leftover(&tag, &namespaces, &host_if);
    }
    // Data directories still mounted by a controller that is gone (a dead FUSE server's mount
    // only answers "transport endpoint is not connected": a lazy unmount always works).
    let mut found = false;
    let mut failed = false;
    for m in faultline_faultfs::mounted() {
        if is_alive(m.owner) && is_faultline(m.owner) && !args.all {
            continue;
        }
        found = true;
        let shown = faultline_checker::text::for_terminal(&m.mountpoint.display().to_string());
        match faultline_faultfs::force_unmount(&m.mountpoint) {
            Ok(()) => println!("faultline clean: unmounting data directory {shown}"),
            Err(e) => {
                failed = true;
                eprintln!(
                    "faultline clean: {}",
                    faultline_checker::text::for_terminal(&e)
                );
            }
        }
    }
    let me = std::process::id() as i32;
    let mut stray = Vec::new();
    for (pid, run) in processes_of_runs(None) {
        if pid == me {
            continue;
        }
        let controller = controller_of(pid);
        let alive = controller.is_some_and(is_faultline);
        if alive && !args.all {
            continue;
        }
        stray.push((pid, run));
    }
    if stray.is_empty() {
        if !found && !ssh_found {
            println!("faultline clean: nothing left behind");
        }
        if failed {
            return EXIT_BAD_INPUT;
        }
        return EXIT_VALID;
    }
    for (pid, run) in &stray {
        println!(
            "faultline clean: killing process {pid} of run {}",
            faultline_checker::text::for_terminal(run)
        );
        // Its group first (a node leads its own group), then the process itself.
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<i32> = stray
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| is_alive(*p))
            .collect();
        if left.is_empty() {
            println!("faultline clean: killed {} processes", stray.len());
            return if failed { EXIT_BAD_INPUT } else { EXIT_VALID };
        }
        if Instant::now() >= deadline {
            eprintln!("faultline clean: processes still alive: {left:?}");
            return EXIT_BAD_INPUT;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Control-socket folders (`/run/faultline/ssh/<pid>-...`) of controllers that are gone, with
/// the master sockets in them.
fn stale_ssh_controls(all: bool) -> Vec<(std::path::PathBuf, Vec<std::path::PathBuf>)> {
    let mut stale = Vec::new();
    let entries = std::fs::read_dir(faultline_remote::fleet::control_root());
    for e in entries.into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = name
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<i32>().ok());
        if let Some(pid) = owner {
            if pid as u32 == std::process::id() || (!all && is_alive(pid) && is_faultline(pid)) {
                continue;
            }
        }
        let sockets = std::fs::read_dir(e.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|c| c.path().join("master"))
            .filter(|m| m.exists())
            .collect();
        stale.push((e.path(), sockets));
    }
    stale
}

/// The controller pid recorded in a process's environment.
fn controller_of(pid: i32) -> Option<i32> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|&b| b == 0).find_map(|var| {
        let v = var.strip_prefix(format!("{CONTROLLER_ENV}=").as_bytes())?;
        std::str::from_utf8(v).ok()?.parse().ok()
    })
}

fn is_faultline(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .next()
                .is_some_and(|exe| exe.ends_with(b"faultline"))
        })
        .unwrap_or(false)
}

/// True while the process exists and is not a zombie.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
