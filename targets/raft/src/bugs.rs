//! Switchable bugs: named, documented deviations from the Raft paper, each one a mistake a real
//! system has shipped. They are all off by default; `faultline node --bug NAME` turns one on so
//! that faultline's nemeses and checker can be shown to catch it.

use std::fmt;

/// Which bugs are switched on. `Default` is a correct build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs {
    pub stale_read: bool,
    pub lease_ignores_drift: bool,
    pub vote_without_log_check: bool,
    pub commit_any_term: bool,
    pub forget_vote: bool,
    pub ack_before_commit: bool,
    pub skip_apply_on_restart: bool,
    pub skip_fsync: bool,
    /// Only in a `next-release` build (see [`crate::kv::Command::encode_next`]).
    pub eager_new_format: bool,
}

/// One bug's name and what it does, as `--bug help` prints it.
pub struct BugInfo {
    pub name: &'static str,
    pub summary: &'static str,
}

/// Every bug, in the order `--bug help` lists them.
pub const ALL_BUGS: &[BugInfo] = &[
    BugInfo {
        name: "stale-read",
        summary: "A node that believes it is leader answers reads from its local state without confirming it still leads, and (as in systems without check-quorum) an isolated leader keeps believing it, so a deposed leader serves stale values.",
    },
    BugInfo {
        name: "lease-ignores-drift",
        summary: "Lease reads use a lease of four election timeouts, longer than followers promise not to elect a new leader, so a partitioned old leader keeps answering reads.",
    },
    BugInfo {
        name: "vote-without-log-check",
        summary: "Votes are granted without the election restriction (the candidate's log need not be up to date), so a leader can be elected without committed entries and overwrite them.",
    },
    BugInfo {
        name: "commit-any-term",
        summary: "A leader commits entries of earlier terms by counting replicas (the Raft paper's Figure 8), so a committed entry can later be overwritten.",
    },
    BugInfo {
        name: "forget-vote",
        summary: "The term and vote are not recovered after a restart: a restarted node starts again in term 0 with no vote, so it can vote twice in one term, and nodes restarted together hold elections in terms that already had a leader: two leaders in one term.",
    },
    BugInfo {
        name: "ack-before-commit",
        summary: "The leader answers a write (put) as soon as it appends it to its own log, before a quorum stores it, so an acknowledged write can be lost.",
    },
    BugInfo {
        name: "skip-apply-on-restart",
        summary: "After a restart (and after each snapshot it then installs) the node skips applying the first committed command that changes its state, so its data silently diverges from the other replicas'.",
    },
    BugInfo {
        name: "skip-fsync",
        summary: "The write-ahead log is written but not fsynced before the node acts on it (votes, acknowledges entries to the leader, answers clients), so a power loss takes back votes and entries it already promised. A plain kill loses nothing (the page cache survives the process): only lose-unfsynced shows it.",
    },
    #[cfg(feature = "next-release")]
    BugInfo {
        name: "eager-new-format",
        summary: "An upgrade bug, in the next-release build only: a leader writes puts in the next release's command format at once, while members still on the previous release (which cannot decode it, and skip the entry) remain in the cluster, so their data diverges from the upgraded members'.",
    },
];

impl Bugs {
    /// Switches on the bug called `name`; an unknown name is an error that lists the known ones.
    pub fn enable(&mut self, name: &str) -> Result<(), String> {
        let flag = match name {
            "stale-read" => &mut self.stale_read,
            "lease-ignores-drift" => &mut self.lease_ignores_drift,
            "vote-without-log-check" => &mut self.vote_without_log_check,
            "commit-any-term" => &mut self.commit_any_term,
            "forget-vote" => &mut self.forget_vote,
            "ack-before-commit" => &mut self.ack_before_commit,
            "skip-apply-on-restart" => &mut self.skip_apply_on_restart,
            "skip-fsync" => &mut self.skip_fsync,
            #[cfg(feature = "next-release")]
            "eager-new-format" => &mut self.eager_new_format,
            other => {
                let known: Vec<&str> = ALL_BUGS.iter().map(|b| b.name).collect();
                return Err(format!(
                    "unknown bug {other:?}; known bugs: {} (or `--bug help`)",
                    known.join(", ")
                ));
            }
        };
        *flag = true;
        Ok(())
    }

    /// A build with exactly the bug called `name`.
    pub fn only(name: &str) -> Result<Bugs, String> {
        let mut b = Bugs::default();
        b.enable(name)?;
        Ok(b)
    }

    /// The names of the bugs that are on.
    pub fn names(&self) -> Vec<&'static str> {
        #[allow(unused_mut)]
        let mut flags = vec![
            self.stale_read,
            self.lease_ignores_drift,
            self.vote_without_log_check,
            self.commit_any_term,
            self.forget_vote,
            self.ack_before_commit,
            self.skip_apply_on_restart,
            self.skip_fsync,
        ];
        #[cfg(feature = "next-release")]
        flags.push(self.eager_new_format);
        ALL_BUGS
            .iter()
            .zip(flags)
            .filter(|(_, on)| *on)
            .map(|(b, _)| b.name)
            .collect()
    }
}

/// The text `--bug help` prints.
pub struct BugHelp;

impl fmt::Display for BugHelp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Switchable bugs (all off by default; repeat --bug to combine):"
        )?;
        for b in ALL_BUGS {
            writeln!(f, "  {:<24} {}", b.name, b.summary)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_bug_can_be_enabled_and_is_named_back() {
        for b in ALL_BUGS {
            let bugs = Bugs::only(b.name).unwrap();
            assert_eq!(bugs.names(), vec![b.name]);
        }
        assert!(Bugs::only("no-such-bug")
            .unwrap_err()
            .contains("stale-read"));
        assert!(Bugs::default().names().is_empty());
    }
}
