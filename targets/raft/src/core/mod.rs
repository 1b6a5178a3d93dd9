//! The Raft consensus core: a deterministic state machine in the shape of etcd's `raft` and
//! TiKV's `raft-rs`.
//!
//! [`RawNode`] takes messages ([`RawNode::step`]), clock ticks ([`RawNode::tick`]), client
//! proposals ([`RawNode::propose`]) and linearizable-read requests ([`RawNode::read_index`]) in,
//! and hands out a [`Ready`]: messages to send, entries and hard state to persist, a snapshot to
//! persist and apply, committed entries to apply, and confirmed read indexes. The caller persists
//! what the `Ready` asks, then calls [`RawNode::advance`] with the `Ready`'s [`PersistToken`].
//!
//! There is no I/O, no clock, no thread and no randomness inside except the seeded generator in
//! [`Config::seed`]: the same inputs always give the same outputs, which is what lets the
//! simulation and the stateright model check explore schedules reproducibly.
//!
//! The whole log since the last snapshot is kept in memory (snapshots are taken every few
//! thousand entries at most, so this is bounded); storage only has to make it durable.

mod log;
mod progress;
mod raft;
#[cfg(test)]
mod tests;

pub use raft::{NotLeader, PersistToken, RawNode, ReadState, Ready};

use bytes::Bytes;

use crate::bugs::Bugs;

/// A node's identifier inside one cluster. `0` is reserved ("nobody").
pub type NodeId = u64;

/// What an entry carries. A leader appends a [`EntryKind::Noop`] when it is elected, so that it
/// commits an entry of its own term quickly (Raft paper §8: it can only commit earlier-term
/// entries indirectly, by committing one of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// Appended by a new leader; carries no data and changes no state.
    Noop,
    /// An opaque command for the state machine.
    Command,
}

/// One log entry. Within a cluster, `(index, term)` identifies an entry uniquely (Log Matching
/// Property, Raft paper §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    pub data: Bytes,
}

/// The state that must be durable before any message that depends on it leaves the node: the
/// current term and whom this node voted for in it (Raft paper Figure 2, "Persistent state").
/// The commit index is deliberately not persisted: it is re-learned from the leader, and the
/// state machine is rebuilt from the snapshot plus the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
}

/// A snapshot of the state machine after applying every entry up to `index` (whose term is
/// `term`). `data` is opaque to the core.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub data: Bytes,
}

/// A message between two nodes. `term` is the sender's term, except in pre-vote messages, where
/// it is the term the sender would campaign in (its term + 1) and responses echo it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: MessageBody,
}

/// The kinds of messages (Raft paper Figure 2 plus pre-vote, heartbeats and snapshots).
///
/// `read_seq` is the leader's read-confirmation sequence number: a leader numbers its rounds of
/// messages, and a follower echoes the number it saw. When a quorum has echoed round `s`, every
/// read registered before round `s` was sent is known to have been served by a real leader
/// (ReadIndex, Raft thesis §6.4), and the leader's lease runs from when round `s` was sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" — sent without changing the sender's term (§9.6 of
    /// the Raft thesis), so a partitioned node cannot disrupt the cluster when it comes back.
    PreVote {
        last_index: u64,
        last_term: u64,
    },
    PreVoteResp {
        reject: bool,
    },
    /// RequestVote (§5.2).
    Vote {
        last_index: u64,
        last_term: u64,
    },
    VoteResp {
        reject: bool,
    },
    /// AppendEntries (§5.3).
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        read_seq: u64,
    },
    /// Answer to `Append` or `Snapshot`. On success `index` is the highest index now known to
    /// match the leader. On rejection `index` is the `prev_index` that did not match, and
    /// `hint_index`/`hint_term` let the leader skip a whole term of entries at once (fast
    /// backtracking, §5.3 "the follower can include the term of the conflicting entry").
    AppendResp {
        reject: bool,
        index: u64,
        hint_index: u64,
        hint_term: u64,
        read_seq: u64,
    },
    /// Leader liveness and commit propagation; `commit` is capped at what the follower is known
    /// to have, so a follower never commits entries it may not share with the leader.
    Heartbeat {
        commit: u64,
        read_seq: u64,
    },
    HeartbeatResp {
        read_seq: u64,
    },
    /// InstallSnapshot (§7), sent whole: snapshots here are small.
    Snapshot {
        snapshot: Snapshot,
        read_seq: u64,
    },
}

impl MessageBody {
    /// Messages only a leader sends. They may leave before the leader's own entries are durable
    /// (Raft thesis §10.2.1: the leader writes its log in parallel with replicating it).
    pub fn is_leader_message(&self) -> bool {
        matches!(
            self,
            MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::Snapshot { .. }
        )
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResp { .. } => "PreVoteResp",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResp { .. } => "VoteResp",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResp { .. } => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResp { .. } => "HeartbeatResp",
            MessageBody::Snapshot { .. } => "Snapshot",
        }
    }
}

/// A node's role (§5.1), plus the pre-candidate state of pre-vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// Static configuration of one core. Times are in ticks; the node decides how long a tick is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub id: NodeId,
    /// Every member of the cluster, this node included. Membership is fixed.
    pub voters: Vec<NodeId>,
    /// Minimum election timeout; the actual one is drawn from `[election_tick, 2*election_tick)`
    /// after every reset (§5.2: randomized timeouts make split votes rare). Also the check-quorum
    /// period and how long a follower that hears from a leader refuses to vote for others.
    pub election_tick: u32,
    /// A leader sends heartbeats this often.
    pub heartbeat_tick: u32,
    /// How many ticks of clock drift the leader lease leaves as a margin (see
    /// [`RawNode::lease_ticks`]).
    pub lease_drift_ticks: u32,
    /// At most this many entries in one `Append`.
    pub max_entries_per_msg: usize,
    /// At most about this many payload bytes in one `Append` (at least one entry is sent).
    pub max_bytes_per_msg: usize,
    /// At most this many unacknowledged `Append`s per follower while pipelining.
    pub max_inflight: usize,
    /// Check quorum (thesis §6.2): a leader steps down when it has not heard from a quorum for
    /// an election timeout, and a node that heard from a leader within an election timeout
    /// ignores vote requests. Always on in the node (leases depend on it); scripted tests turn it
    /// off so that elections happen exactly when the script forces them.
    pub check_quorum: bool,
    /// Seed for the election-timeout randomization.
    pub seed: u64,
    /// Deliberate deviations from the paper (all off in a correct build).
    pub bugs: Bugs,
}

impl Config {
    /// A configuration with the defaults the node uses, for node `id` of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            election_tick: 15,
            heartbeat_tick: 5,
            lease_drift_ticks: 3,
            max_entries_per_msg: 512,
            max_bytes_per_msg: 1 << 20,
            max_inflight: 256,
            check_quorum: true,
            seed: id,
            bugs: Bugs::default(),
        }
    }

    /// Checks the configuration for values the core cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("node id 0 is reserved; use ids from 1".into());
        }
        if !self.voters.contains(&self.id) {
            return Err(format!("node id {} is not in the list of members", self.id));
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.voters.len() {
            return Err("the list of members names a node twice".into());
        }
        if sorted.contains(&0) {
            return Err("node id 0 is reserved; use ids from 1".into());
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return Err(format!(
                "the election timeout ({} ticks) must be longer than the heartbeat interval ({} ticks), which must be at least 1",
                self.election_tick, self.heartbeat_tick
            ));
        }
        if self.max_entries_per_msg == 0 || self.max_inflight == 0 {
            return Err("max entries per message and max inflight must be at least 1".into());
        }
        Ok(())
    }
}

/// A small deterministic generator (SplitMix64). The core needs only a few random numbers for
/// election timeouts; keeping the generator inside the state (instead of a `rand` type) makes
/// the whole core `Clone + Hash + Eq`, which the stateright model check requires, and makes a
/// run reproducible from its seed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)`; `n` must be > 0 (returns 0 otherwise).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `p` (0.0..=1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / ((1u64 << 53) as f64) < p
    }
}
