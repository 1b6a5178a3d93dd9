//! The in-memory Raft log: a snapshot-compacted prefix plus the entries after it, with the
//! cursors that track what has been handed to storage, what storage has made durable, what is
//! committed and what has been handed to the state machine.
//!
//! Invariants (checked by the simulation through the public accessors):
//! `snap_index <= applied <= committed`, `applied <= max(persisted, snap_index)`,
//! `entries[k].index == snap_index + 1 + k`, and `unstable_from <= last_index() + 1`.

use std::collections::VecDeque;

use super::{Entry, Snapshot};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RaftLog {
    /// Index and term of the last entry folded into the snapshot (0, 0 when none).
    pub snap_index: u64,
    pub snap_term: u64,
    /// Entries `snap_index + 1 ..= last_index()`.
    pub entries: VecDeque<Entry>,
    /// Highest index known to be committed.
    pub committed: u64,
    /// Highest index handed to the state machine (entries or snapshot).
    pub applied: u64,
    /// Highest index known to be durable on this node with the term it has now.
    pub persisted: u64,
    /// First index not yet handed to storage.
    pub unstable_from: u64,
    /// A snapshot received from the leader that storage and the state machine must take.
    pub pending_snapshot: Option<Snapshot>,
    /// The newest snapshot (taken locally or received), sent to followers that are too far
    /// behind.
    pub snapshot: Option<Snapshot>,
}

impl RaftLog {
    pub fn new() -> RaftLog {
        RaftLog {
            snap_index: 0,
            snap_term: 0,
            entries: VecDeque::new(),
            committed: 0,
            applied: 0,
            persisted: 0,
            unstable_from: 1,
            pending_snapshot: None,
            snapshot: None,
        }
    }

    /// A log recovered from storage: everything in it is durable; nothing after the snapshot is
    /// known to be committed yet.
    pub fn recovered(snapshot: Option<Snapshot>, entries: Vec<Entry>) -> RaftLog {
        let mut log = RaftLog::new();
        if let Some(snap) = snapshot {
            log.snap_index = snap.index;
            log.snap_term = snap.term;
            log.committed = snap.index;
            log.applied = snap.index;
            log.snapshot = Some(snap);
        }
        for e in entries {
            if e.index <= log.snap_index {
                continue;
            }
            if e.index != log.last_index() + 1 {
                // Storage guarantees contiguity; stop at a gap rather than build a broken log.
                break;
            }
            log.entries.push_back(e);
        }
        log.persisted = log.last_index();
        log.unstable_from = log.last_index() + 1;
        log
    }

    pub fn last_index(&self) -> u64 {
        self.entries.back().map_or(self.snap_index, |e| e.index)
    }

    pub fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.snap_term, |e| e.term)
    }

    /// The term of the entry at `index`, if the log still knows it.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snap_index {
            return Some(self.snap_term);
        }
        if index < self.snap_index || index > self.last_index() {
            return None;
        }
        self.entries
            .get((index - self.snap_index - 1) as usize)
            .map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snap_index {
            return None;
        }
        self.entries.get((index - self.snap_index - 1) as usize)
    }

    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// The election restriction (§5.4.1): a candidate's log is at least as up-to-date as ours if
    /// its last term is higher, or equal with an index at least as high.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The largest index `<= index` whose term is `<= term` (or the compaction point). Used on
    /// both sides of fast backtracking: everything above it can be skipped in one round trip.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> u64 {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t > term && i > self.snap_index => i -= 1,
                _ => return i,
            }
        }
    }

    /// Appends a leader's entries after `prev_index` if the log matches there (§5.3). Returns
    /// the index of the last new entry, or `None` when `prev` does not match. Entries that
    /// conflict with ours replace our suffix; entries we already have are skipped, so stale or
    /// duplicated messages never truncate anything. A conflict at or below the commit index
    /// cannot happen in correct Raft; such a message is refused (`Err`) instead of rewriting
    /// committed history.
    pub fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
    ) -> Option<Result<u64, u64>> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        let mut start = None;
        for (k, e) in entries.iter().enumerate() {
            if e.index != prev_index + 1 + k as u64 {
                return Some(Err(e.index)); // malformed: indexes are not contiguous
            }
            if e.index <= self.snap_index {
                continue; // compacted, hence committed, hence matching
            }
            if !self.match_term(e.index, e.term) {
                if e.index <= self.last_index() && e.index <= self.committed {
                    return Some(Err(e.index));
                }
                start = Some(k);
                break;
            }
        }
        if let Some(k) = start {
            let first = entries[k].index;
            if first <= self.snap_index {
                return Some(Err(first));
            }
            self.truncate_from(first);
            for e in &entries[k..] {
                self.entries.push_back(e.clone());
            }
        }
        Some(Ok(last_new))
    }

    /// Drops every entry at or after `index` (which is > snap_index).
    fn truncate_from(&mut self, index: u64) {
        let keep = (index - self.snap_index - 1) as usize;
        self.entries.truncate(keep);
        self.unstable_from = self.unstable_from.min(index);
        self.persisted = self.persisted.min(index - 1);
    }

    pub fn append(&mut self, e: Entry) {
        self.entries.push_back(e);
    }

    pub fn commit_to(&mut self, index: u64) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Entries `from ..` limited by count and bytes (at least one entry if any exists).
    pub fn slice(&self, from: u64, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut i = from;
        while i <= self.last_index() && out.len() < max_entries {
            let Some(e) = self.entry(i) else { break };
            bytes += e.data.len() + 24;
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            i += 1;
        }
        out
    }

    /// Replaces the whole log by a snapshot from the leader (§7).
    pub fn restore(&mut self, snap: Snapshot) {
        self.entries.clear();
        self.snap_index = snap.index;
        self.snap_term = snap.term;
        self.committed = snap.index;
        self.persisted = self.persisted.min(snap.index);
        self.unstable_from = snap.index + 1;
        self.snapshot = Some(snap.clone());
        self.pending_snapshot = Some(snap);
    }

    /// Folds entries up to `snap.index` into a snapshot the state machine took.
    pub fn compact(&mut self, snap: Snapshot) -> Result<(), String> {
        if snap.index <= self.snap_index {
            return Err(format!(
                "snapshot at {} is not newer than the current one at {}",
                snap.index, self.snap_index
            ));
        }
        if snap.index > self.applied {
            return Err(format!(
                "snapshot at {} is past the applied index {}",
                snap.index, self.applied
            ));
        }
        if self.term(snap.index) != Some(snap.term) {
            return Err(format!(
                "snapshot at {} has term {} but the log has {:?} there",
                snap.index,
                snap.term,
                self.term(snap.index)
            ));
        }
        let drop = (snap.index - self.snap_index) as usize;
        self.entries.drain(..drop);
        self.snap_index = snap.index;
        self.snap_term = snap.term;
        self.snapshot = Some(snap);
        Ok(())
    }
}
