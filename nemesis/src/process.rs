//! Process faults: signals to a node's whole process group, so a node that forks helpers
//! (a custom target's wrapper script, say) is hit as a whole.

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Sends `signal` to process group `pgid`. A group that no longer exists is not an error:
/// the node already died, which is what a kill wanted and what a resume cannot change.
pub fn signal_group(pgid: i32, signal: Signal) -> Result<(), String> {
    if pgid <= 1 {
        // Never signal init or "every process we may signal" by accident.
        return Err(format!("refusing to signal process group {pgid}"));
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(format!("cannot send {signal} to process group {pgid}: {e}")),
    }
}

/// SIGKILL: the node dies at once, with no chance to flush anything.
pub fn kill(pgid: i32) -> Result<(), String> {
    signal_group(pgid, Signal::SIGKILL)
}

/// SIGSTOP: the node freezes mid-instruction; its sockets stay open, its timers stop.
pub fn pause(pgid: i32) -> Result<(), String> {
    signal_group(pgid, Signal::SIGSTOP)
}

/// SIGCONT: a paused node carries on, as if no time had passed from its point of view.
pub fn resume(pgid: i32) -> Result<(), String> {
    signal_group(pgid, Signal::SIGCONT)
}
