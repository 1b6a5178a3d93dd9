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
}

pub fn run(args: CleanArgs) -> ExitCode {
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
        if !found {
            println!("faultline clean: nothing left behind");
        }
        if failed {
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        return ExitCode::from(EXIT_VALID);
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
            return ExitCode::from(if failed { EXIT_BAD_INPUT } else { EXIT_VALID });
        }
        if Instant::now() >= deadline {
            eprintln!("faultline clean: processes still alive: {left:?}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
