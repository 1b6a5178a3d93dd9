//! [`RawNode`]: the Raft state machine itself.

use std::collections::{BTreeMap, VecDeque};

use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::{
    Config, Entry, EntryKind, HardState, Message, MessageBody, NodeId, Role, SeededRng, Snapshot,
};
use bytes::Bytes;

/// A read confirmed by a quorum: once the state machine has applied `index`, the read tagged
/// `ctx` may be answered from it (ReadIndex, Raft thesis §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadState {
    pub ctx: u64,
    pub index: u64,
}

/// The request needs a leader and this node is not one. Nothing was done. `leader` is the
/// leader this node knows of in its current term, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotLeader {
    pub leader: Option<NodeId>,
}

/// Identifies what a [`Ready`] asked to persist, to be handed back to [`RawNode::advance`] once
/// it is durable: the last log entry at the time (index and term).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersistToken {
    pub index: u64,
    pub term: u64,
}

/// Everything the core wants done, in this order:
/// 1. send `messages` (they depend on nothing unpersisted; leaders' appends go out while the
///    leader writes its own log, Raft thesis §10.2.1);
/// 2. persist `snapshot`, then `entries` (replacing any stored entries from the first one's
///    index on), then `hard_state`; make them durable (fsync);
/// 3. only then send `persisted_messages` (votes and acknowledgements promise durability) and
///    call [`RawNode::advance`] with `persist_token`;
/// 4. apply `snapshot` (if any) and then `committed_entries` to the state machine, and answer
///    `read_states` once the state machine has applied their index. Committed entries are
///    always already durable here, so applying them before step 2 completes is safe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub snapshot: Option<Snapshot>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub persist_token: Option<PersistToken>,
}

impl Ready {
    /// True when storage has something to write.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PendingRead {
    ctx: u64,
    index: u64,
    /// The first read-confirmation round sent after this read was registered.
    seq: u64,
}

/// The Raft state machine. See the module documentation of [`crate::core`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawNode {
    cfg: Config,
    term: u64,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// Ticks since this core was created: the clock of the leader lease.
    ticks: u64,
    election_elapsed: u32,
    randomized_timeout: u32,
    heartbeat_elapsed: u32,
    /// Ticks since this node last heard from a leader of its term (or since it started, or, on
    /// a leader, since it last confirmed a quorum). While below `election_tick` the node ignores
    /// (pre-)vote requests for higher terms: that is what keeps a leader lease safe, and it stops
    /// a partitioned node from disrupting a healthy leader (thesis §4.2.3).
    since_leader_contact: u32,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    /// Index of the no-op this leader appended when elected.
    noop_index: u64,
    read_seq: u64,
    /// Rounds sent and not yet confirmed by a quorum, with the tick each was sent at.
    seq_ticks: VecDeque<(u64, u64)>,
    acked_round: u64,
    lease_start: Option<u64>,
    pending_reads: VecDeque<PendingRead>,
    read_round_wanted: bool,
    read_states: Vec<ReadState>,
    need_broadcast: bool,
    msgs: Vec<Message>,
    persisted_msgs: Vec<Message>,
    /// Hard state last handed to storage.
    persisted_hs: HardState,
    rng: SeededRng,
}

impl RawNode {
    /// A fresh node with an empty log.
    pub fn new(cfg: Config) -> Result<RawNode, String> {
        RawNode::recover(cfg, HardState::default(), None, Vec::new())
    }

    /// A node restarted from what storage recovered. The term is at least the last log term
    /// (a log entry of term `t` proves term `t` was reached).
    pub fn recover(
        cfg: Config,
        hs: HardState,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
    ) -> Result<RawNode, String> {
        cfg.validate()?;
        let log = RaftLog::recovered(snapshot, entries);
        // A hard state older than the log (never the case when both are persisted together) is
        // repaired from the log. The `forget-vote` bug has no hard state at all, and takes that
        // at its word: it restarts in term 0 with no vote, as an implementation that never
        // wrote them down would.
        let (term, vote) = if hs.term >= log.last_term() || cfg.bugs.forget_vote {
            (hs.term, hs.vote)
        } else {
            (log.last_term(), None)
        };
        let rng = SeededRng::new(cfg.seed);
        let mut node = RawNode {
            cfg,
            term,
            vote,
            role: Role::Follower,
            leader: None,
            log,
            ticks: 0,
            election_elapsed: 0,
            randomized_timeout: 0,
            heartbeat_elapsed: 0,
            since_leader_contact: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            noop_index: 0,
            read_seq: 0,
            seq_ticks: VecDeque::new(),
            acked_round: 0,
            lease_start: None,
            pending_reads: VecDeque::new(),
            read_round_wanted: false,
            read_states: Vec::new(),
            need_broadcast: false,
            msgs: Vec::new(),
            persisted_msgs: Vec::new(),
            persisted_hs: hs,
            rng,
        };
        node.reset_election_timer();
        Ok(node)
    }

    // ----- accessors -----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    /// The leader of the current term as far as this node knows.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> u64 {
        self.log.committed
    }
    pub fn applied_index(&self) -> u64 {
        self.log.applied
    }
    pub fn persisted_index(&self) -> u64 {
        self.log.persisted
    }
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    pub fn last_term(&self) -> u64 {
        self.log.last_term()
    }
    pub fn snapshot_index(&self) -> u64 {
        self.log.snap_index
    }
    pub fn snapshot_term(&self) -> u64 {
        self.log.snap_term
    }
    pub fn ticks(&self) -> u64 {
        self.ticks
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
        }
    }
    /// The term of the entry at `index`, if the log still holds it (or it is the snapshot point).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.log.entry(index)
    }
    /// Entries after the snapshot, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.log.entries.iter()
    }
    /// The newest snapshot this node holds.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.log.snapshot.as_ref()
    }

    /// A one-line summary of this node's state for diagnostics (includes the leader's view of
    /// each follower).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "n{} {} term {} vote {:?} leader {:?} commit {} applied {} persisted {} last {}/{} snap {} elapsed {}/{} contact {} ticks {}",
            self.cfg.id,
            self.role.as_str(),
            self.term,
            self.vote,
            self.leader,
            self.log.committed,
            self.log.applied,
            self.log.persisted,
            self.log.last_index(),
            self.log.last_term(),
            self.log.snap_index,
            self.election_elapsed,
            self.randomized_timeout,
            self.since_leader_contact,
            self.ticks
        );
        for (id, p) in &self.progress {
            s.push_str(&format!(
                " | n{id} {:?} match {} next {} inflight {} probe_sent {} active {}",
                p.state,
                p.matched,
                p.next,
                p.inflight.len(),
                p.probe_sent,
                p.recent_active
            ));
        }
        s
    }

    /// How long a lease lasts, in ticks, from the moment a round of messages that a quorum
    /// answered was sent. Followers that received that round refuse to vote for anyone else for
    /// `election_tick` ticks of their own clock; tick boundaries cost up to one tick on each
    /// side, and `lease_drift_ticks` covers clocks that run at different rates. With the
    /// `lease-ignores-drift` bug the lease is four election timeouts, which outlives the
    /// followers' promise.
    pub fn lease_ticks(&self) -> u64 {
        let e = u64::from(self.cfg.election_tick);
        if self.cfg.bugs.lease_ignores_drift {
            4 * e
        } else {
            e.saturating_sub(2 + u64::from(self.cfg.lease_drift_ticks))
        }
    }

    /// If this node is a leader holding a valid lease and has committed an entry of its term,
    /// the index a lease read must wait for (its commit index); otherwise `None` and the read
    /// must go through [`RawNode::read_index`].
    pub fn lease_read_index(&self) -> Option<u64> {
        if self.role != Role::Leader
            || self.log.committed < self.noop_index
            || !self.cfg.check_quorum
        {
            return None;
        }
        let start = self.lease_start?;
        (self.ticks.saturating_sub(start) < self.lease_ticks()).then_some(self.log.committed)
    }

    /// Ends the leader lease now, and keeps the rounds already sent from starting a new one:
    /// only a round sent after this call, once a quorum answers it, gives a lease again.
    ///
    /// For the node to call when its monotonic clock went backwards. A lease is safe only while
    /// the leader's ticks keep up with real time; after a backward step the ticks counted since a
    /// round was sent may understate the real time that passed since (by however long the step
    /// hid), so neither the current lease nor any round already in flight can be trusted.
    /// Reads fall back to ReadIndex until a fresh round is confirmed.
    pub fn expire_lease(&mut self) {
        self.lease_start = None;
        self.seq_ticks.clear();
    }

    fn quorum(&self) -> usize {
        self.cfg.voters.len() / 2 + 1
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.cfg.voters.contains(&id)
    }

    // ----- inputs -----

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.since_leader_contact = self.since_leader_contact.saturating_add(1);
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed += 1;
            if self.election_elapsed >= self.randomized_timeout {
                self.election_elapsed = 0;
                self.campaign();
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        // The `stale-read` bug runs without check-quorum, as the systems that shipped it did:
        // an isolated leader keeps believing it leads, which is what lets it serve stale reads.
        let check_quorum = self.cfg.check_quorum && !self.cfg.bugs.stale_read;
        if self.election_elapsed >= self.cfg.election_tick && check_quorum {
            self.election_elapsed = 0;
            // Check quorum (thesis §6.2): a leader that has not heard from a majority for an
            // election timeout steps down, so clients go looking for the real leader.
            let active = 1 + self.progress.values().filter(|p| p.recent_active).count();
            // With the `lease-ignores-drift` bug the leader trusts its (too long) lease over
            // check-quorum, as systems that tie leadership to a lease do.
            let lease_holds =
                self.cfg.bugs.lease_ignores_drift && self.lease_read_index().is_some();
            if active < self.quorum() && !lease_holds {
                self.become_follower(self.term, None);
                return;
            }
            self.since_leader_contact = 0;
            for p in self.progress.values_mut() {
                p.recent_active = false;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            self.start_read_round();
        }
    }

    /// Starts an election now (what an election timeout does): a pre-vote round first, so a
    /// node that cannot win does not bump everyone's term (thesis §9.6).
    pub fn campaign(&mut self) {
        if self.role == Role::Leader {
            return;
        }
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        if self.votes_won() {
            self.campaign_for_real();
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for to in self.peers() {
            self.send_term(
                to,
                self.term + 1,
                MessageBody::PreVote {
                    last_index,
                    last_term,
                },
            );
        }
    }

    fn campaign_for_real(&mut self) {
        self.term += 1;
        self.vote = Some(self.cfg.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        if self.votes_won() {
            self.become_leader();
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for to in self.peers() {
            self.send(
                to,
                MessageBody::Vote {
                    last_index,
                    last_term,
                },
            );
        }
    }

    fn votes_won(&self) -> bool {
        self.votes.values().filter(|&&g| g).count() >= self.quorum()
    }

    fn votes_lost(&self) -> bool {
        self.votes.values().filter(|&&g| !g).count() >= self.quorum()
    }

    fn peers(&self) -> Vec<NodeId> {
        self.cfg
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.cfg.id)
            .collect()
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let e = self.cfg.election_tick;
        self.randomized_timeout = e + self.rng.below(u64::from(e)) as u32;
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_election_timer();
        self.heartbeat_elapsed = 0;
        self.votes.clear();
        self.progress.clear();
        self.pending_reads.clear();
        self.read_round_wanted = false;
        self.seq_ticks.clear();
        self.lease_start = None;
        self.need_broadcast = false;
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.since_leader_contact = 0;
        self.votes.clear();
        let next = self.log.last_index() + 1;
        let now = self.ticks;
        self.progress = self
            .peers()
            .into_iter()
            .map(|p| {
                let mut pr = Progress::new(next, now);
                pr.recent_active = true;
                (p, pr)
            })
            .collect();
        self.read_seq = 0;
        self.acked_round = 0;
        self.seq_ticks.clear();
        self.lease_start = None;
        self.pending_reads.clear();
        // The no-op (§8): commits everything from earlier terms as soon as it commits.
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            term: self.term,
            index,
            kind: EntryKind::Noop,
            data: Bytes::new(),
        });
        self.noop_index = index;
        self.need_broadcast = true;
    }

    /// Sends a round of heartbeats now, as the heartbeat timer does (for drivers that model
    /// timers as events instead of ticking, such as the model check).
    pub fn heartbeat(&mut self) {
        if self.role == Role::Leader {
            self.start_read_round();
        }
    }

    /// Appends a client command to the leader's log. Returns its `(index, term)`: the command
    /// took effect if and only if the entry committed at `index` has this `term`.
    pub fn propose(&mut self, data: Bytes) -> Result<(u64, u64), NotLeader> {
        if self.role != Role::Leader {
            return Err(NotLeader {
                leader: self.leader,
            });
        }
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            term: self.term,
            index,
            kind: EntryKind::Command,
            data,
        });
        self.need_broadcast = true;
        Ok((index, self.term))
    }

    /// Registers a linearizable read tagged `ctx`. Once a quorum confirms this node is still the
    /// leader, a [`ReadState`] with the index to wait for comes out of [`RawNode::ready`]. If the
    /// node loses leadership first, the read is dropped (the caller notices the role change).
    pub fn read_index(&mut self, ctx: u64) -> Result<(), NotLeader> {
        if self.role != Role::Leader {
            return Err(NotLeader {
                leader: self.leader,
            });
        }
        // Everything committed before this moment is at or below our commit index, or, while
        // our no-op is not yet committed, at or below the no-op.
        let index = self.log.committed.max(self.noop_index);
        self.pending_reads.push_back(PendingRead {
            ctx,
            index,
            seq: self.read_seq + 1,
        });
        self.read_round_wanted = true;
        Ok(())
    }

    /// Folds the log up to `snapshot.index` (which the state machine has applied) into the
    /// snapshot (§7).
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), String> {
        self.log.compact(snapshot)
    }

    /// Processes one message from a peer. Messages not addressed to this node or from strangers
    /// are ignored, so a misrouted message can never change state.
    pub fn step(&mut self, m: Message) {
        if m.to != self.cfg.id || m.from == self.cfg.id || !self.is_voter(m.from) {
            return;
        }
        // Absurd terms and indexes can only come from a corrupted or hostile peer; arithmetic on
        // them could overflow, so they are ignored outright.
        const ABSURD: u64 = u64::MAX / 2;
        let absurd = m.term > ABSURD
            || match &m.body {
                MessageBody::Snapshot { snapshot, .. } => snapshot.index > ABSURD,
                MessageBody::AppendResp {
                    index, hint_index, ..
                } => *index > ABSURD || *hint_index > ABSURD,
                MessageBody::Append { prev_index, .. } => *prev_index > ABSURD,
                _ => false,
            };
        if absurd {
            return;
        }
        let vote_request = matches!(
            m.body,
            MessageBody::PreVote { .. } | MessageBody::Vote { .. }
        );
        if m.term > self.term {
            if vote_request
                && self.cfg.check_quorum
                && self.since_leader_contact < self.cfg.election_tick
            {
                // We heard from a live leader recently (or just started): ignore, don't even
                // adopt the term (thesis §4.2.3, and what makes leases safe).
                return;
            }
            match m.body {
                MessageBody::PreVote { .. } => {}
                MessageBody::PreVoteResp { reject: false } => {}
                ref b if b.is_leader_message() => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                // Tell a stale leader about the newer term so it steps down.
                ref b if b.is_leader_message() => self.send(
                    m.from,
                    MessageBody::AppendResp {
                        reject: false,
                        index: 0,
                        hint_index: 0,
                        hint_term: 0,
                        read_seq: 0,
                    },
                ),
                MessageBody::PreVote { .. } => {
                    self.send(m.from, MessageBody::PreVoteResp { reject: true })
                }
                _ => {}
            }
            return;
        }
        match m.body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => self.handle_vote_request(m.from, m.term, true, last_index, last_term),
            MessageBody::Vote {
                last_index,
                last_term,
            } => self.handle_vote_request(m.from, m.term, false, last_index, last_term),
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::PreCandidate | Role::Candidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        pre: bool,
        last_index: u64,
        last_term: u64,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre && term > self.term);
        let log_ok =
            self.cfg.bugs.vote_without_log_check || self.log.is_up_to_date(last_index, last_term);
        let grant = can_vote && log_ok;
        if pre {
            let t = if grant { term } else { self.term };
            self.send_term(from, t, MessageBody::PreVoteResp { reject: !grant });
        } else {
            if grant {
                self.election_elapsed = 0;
                self.vote = Some(from);
            }
            self.send(from, MessageBody::VoteResp { reject: !grant });
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.body {
            ref b if b.is_leader_message() => {
                // A leader exists in our term (§5.2): recognize it.
                self.become_follower(m.term, Some(m.from));
                self.step_follower(m);
            }
            MessageBody::PreVoteResp { reject } if self.role == Role::PreCandidate => {
                self.votes.entry(m.from).or_insert(!reject);
                if self.votes_won() {
                    self.campaign_for_real();
                } else if self.votes_lost() {
                    self.become_follower(self.term, None);
                }
            }
            MessageBody::VoteResp { reject } if self.role == Role::Candidate => {
                self.votes.entry(m.from).or_insert(!reject);
                if self.votes_won() {
                    self.become_leader();
                } else if self.votes_lost() {
                    self.become_follower(self.term, None);
                }
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) {
        let from = m.from;
        if m.body.is_leader_message() {
            self.election_elapsed = 0;
            self.since_leader_contact = 0;
            self.leader = Some(from);
        }
        match m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                read_seq,
            } => self.handle_append(from, prev_index, prev_term, &entries, commit, read_seq),
            MessageBody::Heartbeat { commit, read_seq } => {
                self.log.commit_to(commit);
                self.send(from, MessageBody::HeartbeatResp { read_seq });
            }
            MessageBody::Snapshot { snapshot, read_seq } => {
                self.handle_snapshot(from, snapshot, read_seq)
            }
            _ => {}
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        commit: u64,
        read_seq: u64,
    ) {
        if prev_index < self.log.committed {
            let index = self.log.committed;
            self.send(
                from,
                MessageBody::AppendResp {
                    reject: false,
                    index,
                    hint_index: 0,
                    hint_term: 0,
                    read_seq,
                },
            );
            return;
        }
        match self.log.maybe_append(prev_index, prev_term, entries) {
            Some(Ok(last_new)) => {
                self.log.commit_to(commit.min(last_new));
                self.send(
                    from,
                    MessageBody::AppendResp {
                        reject: false,
                        index: last_new,
                        hint_index: 0,
                        hint_term: 0,
                        read_seq,
                    },
                );
            }
            // The leader asked us to rewrite a committed entry or sent a malformed batch: refuse
            // silently rather than lose committed history (cannot happen in correct Raft).
            Some(Err(_)) => {}
            None => {
                // Fast backtracking (§5.3): point the leader at the last index whose term is not
                // newer than the one it asked about, skipping whole terms of conflicting entries.
                let hint = prev_index.min(self.log.last_index());
                let hint_index = self.log.find_conflict_by_term(hint, prev_term);
                let hint_term = self.log.term(hint_index).unwrap_or(0);
                self.send(
                    from,
                    MessageBody::AppendResp {
                        reject: true,
                        index: prev_index,
                        hint_index,
                        hint_term,
                        read_seq,
                    },
                );
            }
        }
    }

    fn handle_snapshot(&mut self, from: NodeId, snap: Snapshot, read_seq: u64) {
        let index = if snap.index <= self.log.committed {
            self.log.committed
        } else if self.log.match_term(snap.index, snap.term) {
            // We already have the entries it covers: just learn they are committed.
            self.log.commit_to(snap.index);
            snap.index
        } else {
            let i = snap.index;
            self.log.restore(snap);
            i
        };
        self.send(
            from,
            MessageBody::AppendResp {
                reject: false,
                index,
                hint_index: 0,
                hint_term: 0,
                read_seq,
            },
        );
    }

    fn step_leader(&mut self, m: Message) {
        let from = m.from;
        let now = self.ticks;
        let last = self.log.last_index();
        match m.body {
            MessageBody::AppendResp {
                reject,
                index,
                hint_index,
                hint_term,
                read_seq,
            } => {
                let next_probe = if reject && hint_term > 0 {
                    self.log.find_conflict_by_term(hint_index, hint_term)
                } else {
                    hint_index
                };
                if !reject && index > last {
                    return; // claims entries we never sent
                }
                let Some(pr) = self.progress.get_mut(&from) else {
                    return;
                };
                pr.recent_active = true;
                if reject {
                    if pr.maybe_decr_to(index, next_probe) {
                        if pr.state == ProgressState::Replicate {
                            pr.become_probe();
                        }
                        self.send_append(from, true);
                    }
                } else {
                    let was_paused = pr.is_paused(self.cfg.max_inflight);
                    if pr.maybe_update(index, now) {
                        match pr.state {
                            ProgressState::Probe => pr.become_replicate(),
                            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => {
                                pr.become_replicate()
                            }
                            _ => {}
                        }
                        self.maybe_commit();
                        while self.send_append(from, false) {}
                    } else if was_paused {
                        while self.send_append(from, false) {}
                    }
                }
                self.ack_read_seq(from, read_seq);
            }
            MessageBody::HeartbeatResp { read_seq } => {
                let Some(pr) = self.progress.get_mut(&from) else {
                    return;
                };
                pr.recent_active = true;
                let stuck =
                    now.saturating_sub(pr.last_progress_tick) >= u64::from(self.cfg.election_tick);
                match pr.state {
                    ProgressState::Probe => pr.probe_sent = false,
                    // Appends or a snapshot were probably lost: fall back to probing.
                    ProgressState::Replicate if pr.matched < last && stuck => pr.become_probe(),
                    ProgressState::Snapshot if stuck => pr.become_probe(),
                    _ => {}
                }
                if pr.matched < last {
                    self.send_append(from, false);
                }
                self.ack_read_seq(from, read_seq);
            }
            _ => {}
        }
    }

    /// Sends the next batch of entries to `to` if its progress allows. Returns whether a
    /// message with entries (or a snapshot) was sent.
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let max_inflight = self.cfg.max_inflight;
        let now = self.ticks;
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&to) else {
            return false;
        };
        if pr.is_paused(max_inflight) {
            return false;
        }
        if pr.next > last + 1 {
            pr.next = last + 1;
        }
        let prev_index = pr.next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            // The entries it needs were compacted away: send the snapshot (§7).
            let Some(snapshot) = self.log.snapshot.clone() else {
                return false;
            };
            pr.become_snapshot(snapshot.index, now);
            let read_seq = self.read_seq;
            self.send(to, MessageBody::Snapshot { snapshot, read_seq });
            return true;
        };
        let entries = self.log.slice(
            pr.next,
            self.cfg.max_entries_per_msg,
            self.cfg.max_bytes_per_msg,
        );
        // An empty append still probes a follower whose match is unknown.
        if entries.is_empty() && !send_if_empty && pr.state != ProgressState::Probe {
            return false;
        }
        let sent_entries = !entries.is_empty();
        if let Some(last_sent) = entries.last().map(|e| e.index) {
            match pr.state {
                ProgressState::Replicate => {
                    if pr.inflight.is_empty() {
                        pr.last_progress_tick = now;
                    }
                    pr.next = last_sent + 1;
                    pr.inflight.push_back(last_sent);
                }
                _ => pr.probe_sent = true,
            }
        } else if pr.state == ProgressState::Probe {
            pr.probe_sent = true;
        }
        let commit = self.log.committed;
        let read_seq = self.read_seq;
        self.send(
            to,
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                read_seq,
            },
        );
        sent_entries
    }

    fn bcast_append(&mut self) {
        for to in self.peers() {
            while self.send_append(to, false) {}
        }
    }

    /// Commits the highest index a quorum has durably stored, but only if it is from the
    /// current term (§5.4.2: counting replicas of an older-term entry is unsafe, Figure 8).
    fn maybe_commit(&mut self) -> bool {
        let mut matched: Vec<u64> = self.progress.values().map(|p| p.matched).collect();
        matched.push(self.log.persisted);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let n = matched[self.quorum() - 1];
        if n > self.log.committed
            && (self.cfg.bugs.commit_any_term || self.log.term(n) == Some(self.term))
        {
            self.log.committed = n;
            true
        } else {
            false
        }
    }

    fn start_read_round(&mut self) {
        self.read_seq += 1;
        self.seq_ticks.push_back((self.read_seq, self.ticks));
        let read_seq = self.read_seq;
        let commit = self.log.committed;
        for to in self.peers() {
            let matched = self.progress.get(&to).map_or(0, |p| p.matched);
            self.send(
                to,
                MessageBody::Heartbeat {
                    commit: commit.min(matched),
                    read_seq,
                },
            );
        }
        self.advance_read_round();
    }

    fn ack_read_seq(&mut self, from: NodeId, seq: u64) {
        if let Some(pr) = self.progress.get_mut(&from) {
            if seq > pr.acked_seq && seq <= self.read_seq {
                pr.acked_seq = seq;
                self.advance_read_round();
            }
        }
    }

    /// Releases reads and extends the lease up to the newest round a quorum has echoed.
    fn advance_read_round(&mut self) {
        let mut acks: Vec<u64> = self.progress.values().map(|p| p.acked_seq).collect();
        acks.push(self.read_seq);
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let q = acks[self.quorum() - 1];
        if q <= self.acked_round {
            return;
        }
        self.acked_round = q;
        while let Some(&(s, t)) = self.seq_ticks.front() {
            if s > q {
                break;
            }
            self.lease_start = Some(self.lease_start.map_or(t, |l| l.max(t)));
            self.seq_ticks.pop_front();
        }
        while self.pending_reads.front().is_some_and(|r| r.seq <= q) {
            if let Some(r) = self.pending_reads.pop_front() {
                self.read_states.push(ReadState {
                    ctx: r.ctx,
                    index: r.index,
                });
            }
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_term(to, self.term, body);
    }

    fn send_term(&mut self, to: NodeId, term: u64, body: MessageBody) {
        let m = Message {
            from: self.cfg.id,
            to,
            term,
            body,
        };
        if m.body.is_leader_message() {
            self.msgs.push(m);
        } else {
            self.persisted_msgs.push(m);
        }
    }

    // ----- outputs -----

    /// Whether [`RawNode::ready`] has anything to hand out.
    pub fn has_ready(&self) -> bool {
        !self.msgs.is_empty()
            || !self.persisted_msgs.is_empty()
            || self.hard_state() != self.persisted_hs
            || self.log.unstable_from <= self.log.last_index()
            || self.log.pending_snapshot.is_some()
            || self.log.applied
                < self
                    .log
                    .committed
                    .min(self.log.persisted.max(self.log.snap_index))
            || !self.read_states.is_empty()
            || (self.role == Role::Leader && (self.need_broadcast || self.read_round_wanted))
    }

    /// Hands out everything pending (see [`Ready`] for what to do with it).
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            if self.need_broadcast {
                self.bcast_append();
            }
            if self.read_round_wanted {
                self.start_read_round();
            }
        }
        self.need_broadcast = false;
        self.read_round_wanted = false;

        let snapshot = self.log.pending_snapshot.take();
        if let Some(s) = &snapshot {
            self.log.applied = s.index;
        }
        let last = self.log.last_index();
        let entries: Vec<Entry> = (self.log.unstable_from..=last)
            .filter_map(|i| self.log.entry(i).cloned())
            .collect();
        self.log.unstable_from = last + 1;
        let hs = self.hard_state();
        let hard_state = (hs != self.persisted_hs).then_some(hs);
        self.persisted_hs = hs;
        let persist_token = (!entries.is_empty() || snapshot.is_some()).then(|| PersistToken {
            index: last,
            term: self.log.last_term(),
        });

        let hi = self
            .log
            .committed
            .min(self.log.persisted.max(self.log.snap_index));
        let committed_entries: Vec<Entry> = if hi > self.log.applied {
            (self.log.applied + 1..=hi)
                .filter_map(|i| self.log.entry(i).cloned())
                .collect()
        } else {
            Vec::new()
        };
        self.log.applied = self.log.applied.max(hi);

        Ready {
            messages: std::mem::take(&mut self.msgs),
            persisted_messages: std::mem::take(&mut self.persisted_msgs),
            hard_state,
            entries,
            snapshot,
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
            persist_token,
        }
    }

    /// Storage made a [`Ready`]'s writes durable. The log up to the token counts as persisted
    /// if it still holds that entry (a later conflict may have replaced it meanwhile); a leader
    /// then counts its own copy towards commitment.
    pub fn advance(&mut self, token: PersistToken) {
        if token.index >= self.log.snap_index
            && self.log.term(token.index) == Some(token.term)
            && token.index > self.log.persisted
        {
            self.log.persisted = token.index;
            if self.role == Role::Leader {
                self.maybe_commit();
            }
        }
    }
}
