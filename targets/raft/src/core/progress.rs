//! What a leader knows about each follower's log (etcd's `Progress`): how far it matches, what
//! to send next, and whether to probe, stream (pipeline) or send a snapshot.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ProgressState {
    /// Unknown match: send one `Append` at a time and wait for the answer (or a heartbeat
    /// answer) before the next, backing `next` off on rejection.
    Probe,
    /// Known match: stream `Append`s without waiting (pipelining), up to `max_inflight`.
    Replicate,
    /// A snapshot at `pending_snapshot` is on its way; send nothing else until it is acked.
    Snapshot,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Progress {
    pub matched: u64,
    pub next: u64,
    pub state: ProgressState,
    /// In `Probe`: an `Append` is outstanding.
    pub probe_sent: bool,
    /// In `Replicate`: last index of each unacknowledged `Append`, oldest first.
    pub inflight: VecDeque<u64>,
    pub pending_snapshot: u64,
    /// Tick at which the pending snapshot was sent, or at which `matched` last advanced; used to
    /// notice a lost snapshot or a lost stream of appends and fall back to probing.
    pub last_progress_tick: u64,
    /// Heard from this follower since the last check-quorum round (§6.2 of the thesis).
    pub recent_active: bool,
    /// Highest read-confirmation round this follower echoed in the current term.
    pub acked_seq: u64,
}

impl Progress {
    pub fn new(next: u64, now: u64) -> Progress {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            pending_snapshot: 0,
            last_progress_tick: now,
            recent_active: false,
            acked_seq: 0,
        }
    }

    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            self.next = (self.matched + 1).max(self.pending_snapshot + 1);
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.pending_snapshot = 0;
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_snapshot(&mut self, index: u64, now: u64) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = index;
        self.probe_sent = false;
        self.inflight.clear();
        self.last_progress_tick = now;
    }

    /// An acknowledgement that the follower matches up to `n`. Returns whether it was news.
    pub fn maybe_update(&mut self, n: u64, now: u64) -> bool {
        let updated = n > self.matched;
        if updated {
            self.matched = n;
            self.last_progress_tick = now;
        }
        self.next = self.next.max(n + 1);
        self.probe_sent = false;
        while self.inflight.front().is_some_and(|&i| i <= n) {
            self.inflight.pop_front();
        }
        updated
    }

    /// A rejection of an `Append` whose `prev_index` was `rejected`; `match_hint` is the highest
    /// index that may match. Returns false for a stale rejection (one we already acted on).
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = rejected
            .min(match_hint.saturating_add(1))
            .max(self.matched + 1);
        self.probe_sent = false;
        true
    }

    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot => true,
        }
    }
}
