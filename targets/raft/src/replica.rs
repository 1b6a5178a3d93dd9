//! A replica: the Raft core plus the key-value state machine plus the bookkeeping that turns
//! client requests into proposals and read requests and committed entries back into answers.
//!
//! Still deterministic and free of I/O: the node ([`crate::node`]) drives it with real time,
//! sockets and disks, and the simulation ([`crate::sim`]) drives it with a simulated network and
//! in-memory storage. Keeping the request bookkeeping and every switchable bug here means the
//! simulation exercises the same code that answers real clients.

use std::collections::BTreeMap;

use crate::bugs::Bugs;
use crate::core::{
    Config, Entry, EntryKind, HardState, Message, NodeId, PersistToken, RawNode, Snapshot,
};
use crate::kv::{Applied, Command, KvState};

/// Identifies a client request, chosen by the caller; answers carry it back.
pub type ReqId = u64;

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    Cas {
        key: String,
        from: String,
        to: String,
    },
}

/// The answer to a request. Each variant says whether the request definitely took effect,
/// definitely did not, or cannot be known (see `docs/http-kv.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A read's result (canonical JSON; `"null"` when unset).
    Value(String),
    /// A put committed and was applied.
    Written,
    /// A compare-and-set committed and matched.
    CasOk,
    /// A compare-and-set committed but the value was not the expected one; nothing changed.
    CasMismatch { current: String },
    /// This node is not the leader (or stopped being leader before a read was confirmed).
    /// Definitely not executed.
    NotLeader { leader: Option<NodeId> },
    /// The write's log slot was taken by another leader's entry: it can never commit.
    /// Definitely not executed.
    Dropped,
    /// The write may or may not have taken effect (a snapshot from the leader covered its slot,
    /// so this node cannot tell which entry was there).
    Unknown,
}

/// How reads are made linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// Confirm leadership with a quorum round for every batch of reads (Raft thesis §6.4).
    ReadIndex,
    /// Answer from a leader lease while it lasts; fall back to ReadIndex otherwise (§6.4.1).
    Lease,
}

impl ReadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadMode::ReadIndex => "read-index",
            ReadMode::Lease => "lease",
        }
    }
}

/// What storage recovered after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

/// Replica configuration.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub core: Config,
    pub read_mode: ReadMode,
    /// Take a snapshot once this many entries were applied since the last one.
    pub snapshot_threshold: u64,
}

/// What storage must do for one [`ReplicaReady`], in this order: install `snapshot` (a snapshot
/// from the leader: the log restarts after it), append `entries` (replacing stored entries from
/// the first one's index on), write `hard_state`, then store `compact` as the new snapshot and
/// drop the entries it covers. Then make it durable, send `persisted_messages`, and hand
/// `token` (if any) to [`Replica::advance`].
#[derive(Clone, Debug, Default)]
pub struct Persist {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub compact: Option<Snapshot>,
    pub persisted_messages: Vec<Message>,
    pub token: Option<PersistToken>,
}

impl Persist {
    /// True when there is something to write (and so to fsync).
    pub fn writes(&self) -> bool {
        self.snapshot.is_some()
            || !self.entries.is_empty()
            || self.hard_state.is_some()
            || self.compact.is_some()
    }
}

/// Output of [`Replica::ready`].
#[derive(Clone, Debug, Default)]
pub struct ReplicaReady {
    /// Send now.
    pub messages: Vec<Message>,
    pub persist: Persist,
    /// Answers to send to clients.
    pub responses: Vec<(ReqId, Response)>,
    /// The committed entries applied to the state machine in this step (for observers such as
    /// the simulation's safety checks; the node ignores them).
    pub applied: Vec<Entry>,
    /// The replica cannot go on (see [`Replica::ready`]); everything else in this `Ready` is
    /// empty and must not be acted upon: the caller must stop this replica and discard it.
    pub fatal: Option<String>,
}

#[derive(Clone, Debug)]
struct PendingWrite {
    term: u64,
    req: ReqId,
    /// Already answered (the `ack-before-commit` bug).
    answered: bool,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Replica {
    core: RawNode,
    kv: KvState,
    bugs: Bugs,
    read_mode: ReadMode,
    snapshot_threshold: u64,
    /// Proposed writes by log index.
    writes: BTreeMap<u64, PendingWrite>,
    /// Reads registered with the core, by read context.
    reads_by_ctx: BTreeMap<u64, (ReqId, String)>,
    /// Reads confirmed by a quorum (or covered by the lease), waiting for `index` to be applied.
    reads_waiting: Vec<(u64, ReqId, String)>,
    next_ctx: u64,
    responses: Vec<(ReqId, Response)>,
    /// The `skip-apply-on-restart` bug is armed.
    skip_next_apply: bool,
    /// This replica was recovered from durable state (not created empty).
    restarted: bool,
    snapshots_installed: u64,
    snapshots_taken: u64,
    /// Set when the replica hit a state it cannot go on from; every later `ready` repeats it.
    failed: Option<String>,
}

impl Replica {
    /// A brand-new replica with empty state.
    pub fn new(cfg: ReplicaConfig) -> Result<Replica, String> {
        let mut r = Replica::recover(cfg, Recovered::default())?;
        r.skip_next_apply = false;
        r.restarted = false;
        Ok(r)
    }

    /// A replica restarted from durable state.
    pub fn recover(cfg: ReplicaConfig, mut rec: Recovered) -> Result<Replica, String> {
        let bugs = cfg.core.bugs;
        if bugs.forget_vote {
            // The bug: term and vote are treated as volatile.
            rec.hard_state = HardState::default();
        }
        let kv = match &rec.snapshot {
            Some(s) => KvState::restore(&s.data)
                .map_err(|e| format!("snapshot at index {}: {e}", s.index))?,
            None => KvState::new(),
        };
        let core = RawNode::recover(cfg.core, rec.hard_state, rec.snapshot, rec.entries)?;
        Ok(Replica {
            core,
            kv,
            bugs,
            read_mode: cfg.read_mode,
            snapshot_threshold: cfg.snapshot_threshold.max(1),
            writes: BTreeMap::new(),
            reads_by_ctx: BTreeMap::new(),
            reads_waiting: Vec::new(),
            next_ctx: 1,
            responses: Vec::new(),
            skip_next_apply: bugs.skip_apply_on_restart,
            restarted: true,
            snapshots_installed: 0,
            snapshots_taken: 0,
            failed: None,
        })
    }

    pub fn core(&self) -> &RawNode {
        &self.core
    }
    pub fn kv(&self) -> &KvState {
        &self.kv
    }
    pub fn read_mode(&self) -> ReadMode {
        self.read_mode
    }
    pub fn bugs(&self) -> Bugs {
        self.bugs
    }
    /// Snapshots received from a leader and installed since this replica started.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }
    /// Snapshots this replica took of its own state since it started.
    pub fn snapshots_taken(&self) -> u64 {
        self.snapshots_taken
    }
    /// Requests still waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.writes.values().filter(|w| !w.answered).count()
            + self.reads_by_ctx.len()
            + self.reads_waiting.len()
    }

    pub fn tick(&mut self) {
        self.core.tick();
    }

    pub fn step(&mut self, m: Message) {
        self.core.step(m);
    }

    /// Ends the leader lease (see [`RawNode::expire_lease`]): the node's monotonic clock went
    /// backwards, so the ticks the lease is counted in no longer bound the real time elapsed.
    pub fn expire_lease(&mut self) {
        self.core.expire_lease();
    }

    /// Starts an election now (for tests and the model check).
    pub fn campaign(&mut self) {
        self.core.campaign();
    }

    /// Takes a client request. The answer comes out of a later [`Replica::ready`] (possibly the
    /// very next one).
    pub fn submit(&mut self, req: ReqId, request: Request) {
        if !self.core.is_leader() {
            let leader = self.core.leader();
            self.responses.push((req, Response::NotLeader { leader }));
            return;
        }
        match request {
            Request::Get { key } => self.submit_read(req, key),
            Request::Put { key, value } => self.submit_write(req, Command::Put { key, value }),
            Request::Cas { key, from, to } => {
                self.submit_write(req, Command::Cas { key, from, to })
            }
        }
    }

    fn submit_read(&mut self, req: ReqId, key: String) {
        if self.bugs.stale_read {
            // The bug: a node that thinks it leads answers from whatever it has applied.
            let v = self.kv.get(&key).to_string();
            self.responses.push((req, Response::Value(v)));
            return;
        }
        if self.read_mode == ReadMode::Lease {
            if let Some(index) = self.core.lease_read_index() {
                self.reads_waiting.push((index, req, key));
                self.serve_reads();
                return;
            }
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        match self.core.read_index(ctx) {
            Ok(()) => {
                self.reads_by_ctx.insert(ctx, (req, key));
            }
            Err(e) => self
                .responses
                .push((req, Response::NotLeader { leader: e.leader })),
        }
    }

    /// The value of `key` in this replica's applied state (canonical JSON text; `null` if
    /// unset), with no leadership check.
    pub fn local_value(&self, key: &str) -> String {
        self.kv.get(key).to_string()
    }

    fn submit_write(&mut self, req: ReqId, cmd: Command) {
        let data = if self.bugs.eager_new_format {
            cmd.encode_next()
        } else {
            cmd.encode()
        };
        match self.core.propose(data) {
            Ok((index, term)) => {
                let mut answered = false;
                // The bug: answer a put as soon as the entry is in our own log. (Only puts: a
                // cas answered this early would have to be judged against state that has not
                // been applied yet, which is a different bug; a put's answer does not depend
                // on it, so what this bug loses is exactly acknowledged writes.)
                if self.bugs.ack_before_commit && matches!(cmd, Command::Put { .. }) {
                    let r = to_response(self.kv.evaluate(&cmd));
                    self.responses.push((req, r));
                    answered = true;
                }
                self.writes.insert(
                    index,
                    PendingWrite {
                        term,
                        req,
                        answered,
                    },
                );
            }
            Err(e) => self
                .responses
                .push((req, Response::NotLeader { leader: e.leader })),
        }
    }

    /// Forgets a request the caller gave up on (it answered the client itself, e.g. on timeout).
    pub fn forget(&mut self, req: ReqId) {
        self.writes.retain(|_, w| w.req != req);
        self.reads_by_ctx.retain(|_, (r, _)| *r != req);
        self.reads_waiting.retain(|(_, r, _)| *r != req);
    }

    pub fn has_ready(&self) -> bool {
        self.failed.is_some() || !self.responses.is_empty() || self.core.has_ready()
    }

    /// Collects everything to send, persist and answer. Applies committed entries and any
    /// snapshot from the leader to the state machine, and takes a snapshot when due.
    ///
    /// A snapshot from the leader that does not decode makes the replica fail: the `Ready` has
    /// only [`ReplicaReady::fatal`] set, and the caller must stop. By then the core has already
    /// adopted the snapshot (its log restarts after it, its commit index is past it), so this
    /// replica can neither apply it nor go on without it: marking the snapshot applied over the
    /// old state would be silent divergence, and unwinding the core is not possible. Stopping is
    /// safe because nothing of it is persisted or acknowledged (the snapshot is not handed to
    /// storage and its acknowledgement, a persisted message, is never sent): the durable state
    /// is still the consistent pre-snapshot one, and a restarted node asks the leader again.
    pub fn ready(&mut self) -> ReplicaReady {
        if let Some(why) = &self.failed {
            return ReplicaReady {
                fatal: Some(why.clone()),
                ..ReplicaReady::default()
            };
        }
        let rd = self.core.ready();
        if let Some(s) = &rd.snapshot {
            match KvState::restore(&s.data) {
                Ok(kv) => self.kv = kv,
                Err(e) => {
                    // Only a bug or a frame corrupted past its checksum gets here.
                    let why = format!(
                        "the snapshot from the leader at index {} (term {}) does not decode ({e}); \
                         this node cannot install it and must not go on without it",
                        s.index, s.term
                    );
                    self.failed = Some(why.clone());
                    return ReplicaReady {
                        fatal: Some(why),
                        ..ReplicaReady::default()
                    };
                }
            }
            self.snapshots_installed += 1;
            // The bug again: a restarted node that catches up by snapshot would otherwise be
            // healed by it, hiding the divergence the bug exists to show.
            if self.bugs.skip_apply_on_restart && self.restarted {
                self.skip_next_apply = true;
            }
            let covered: Vec<u64> = self.writes.range(..=s.index).map(|(&i, _)| i).collect();
            for i in covered {
                if let Some(w) = self.writes.remove(&i) {
                    if !w.answered {
                        self.responses.push((w.req, Response::Unknown));
                    }
                }
            }
        }
        for e in &rd.committed_entries {
            self.apply(e);
        }
        for rs in &rd.read_states {
            if let Some((req, key)) = self.reads_by_ctx.remove(&rs.ctx) {
                self.reads_waiting.push((rs.index, req, key));
            }
        }
        self.serve_reads();
        if !self.core.is_leader()
            && (!self.reads_by_ctx.is_empty() || !self.reads_waiting.is_empty())
        {
            // Unconfirmed reads of a deposed leader: reads change nothing, so failing them is
            // always a definite "not executed".
            let leader = self.core.leader();
            for (_, (req, _)) in std::mem::take(&mut self.reads_by_ctx) {
                self.responses.push((req, Response::NotLeader { leader }));
            }
            for (_, req, _) in std::mem::take(&mut self.reads_waiting) {
                self.responses.push((req, Response::NotLeader { leader }));
            }
        }
        let mut compact = None;
        let applied = self.kv.applied();
        if applied >= self.core.snapshot_index() + self.snapshot_threshold {
            if let Some(term) = self.core.term_at(applied) {
                let snap = Snapshot {
                    index: applied,
                    term,
                    data: self.kv.snapshot(),
                };
                match self.core.compact(snap.clone()) {
                    Ok(()) => {
                        self.snapshots_taken += 1;
                        compact = Some(snap);
                    }
                    Err(e) => tracing::error!(error = %e, "could not compact the log"),
                }
            }
        }
        ReplicaReady {
            messages: rd.messages,
            persist: Persist {
                snapshot: rd.snapshot,
                entries: rd.entries,
                hard_state: rd.hard_state,
                compact,
                persisted_messages: rd.persisted_messages,
                token: rd.persist_token,
            },
            responses: std::mem::take(&mut self.responses),
            applied: rd.committed_entries,
            fatal: None,
        }
    }

    /// Storage made a [`Persist`] durable.
    pub fn advance(&mut self, token: PersistToken) {
        self.core.advance(token);
    }

    fn apply(&mut self, e: &Entry) {
        let result = match e.kind {
            EntryKind::Noop => {
                self.kv.apply_noop(e.index, e.term);
                None
            }
            EntryKind::Command => match Command::decode(&e.data) {
                Ok(cmd)
                    if self.skip_next_apply
                        && matches!(self.kv.evaluate(&cmd), Applied::Written | Applied::CasOk) =>
                {
                    // The bug: the first command after a restart that changes the state is
                    // skipped (skipping one that changes nothing, such as a failing cas,
                    // would leave the data identical and the bug invisible).
                    self.skip_next_apply = false;
                    self.kv.skip(e.index);
                    None
                }
                Ok(cmd) => Some(self.kv.apply(e.index, e.term, &e.data, &cmd)),
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "committed entry does not decode; skipped");
                    self.kv.skip(e.index);
                    None
                }
            },
        };
        if let Some(w) = self.writes.remove(&e.index) {
            if !w.answered {
                let r = if w.term != e.term {
                    Response::Dropped
                } else {
                    result.map_or(Response::Unknown, to_response)
                };
                self.responses.push((w.req, r));
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.kv.applied();
        let mut i = 0;
        while i < self.reads_waiting.len() {
            if self.reads_waiting[i].0 <= applied {
                let (_, req, key) = self.reads_waiting.swap_remove(i);
                let v = self.kv.get(&key).to_string();
                self.responses.push((req, Response::Value(v)));
            } else {
                i += 1;
            }
        }
    }
}

fn to_response(a: Applied) -> Response {
    match a {
        Applied::Written => Response::Written,
        Applied::CasOk => Response::CasOk,
        Applied::CasMismatch { current } => Response::CasMismatch { current },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::core::MessageBody;

    fn follower() -> Replica {
        Replica::new(ReplicaConfig {
            core: Config::new(2, vec![1, 2, 3]),
            read_mode: ReadMode::ReadIndex,
            snapshot_threshold: 1000,
        })
        .unwrap()
    }

    fn snapshot_message(data: Bytes) -> Message {
        Message {
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Snapshot {
                snapshot: Snapshot {
                    index: 10,
                    term: 3,
                    data,
                },
                read_seq: 1,
            },
        }
    }

    /// §7, InstallSnapshot: a snapshot whose data does not decode stops the replica. It is not
    /// marked applied over the old state (silent divergence), not handed to storage, and not
    /// acknowledged to the leader.
    #[test]
    fn test_7_a_snapshot_that_does_not_decode_stops_the_replica_without_applying_or_acking_it() {
        let mut r = follower();
        r.step(snapshot_message(Bytes::from_static(b"not a kv snapshot")));
        assert!(r.has_ready());
        let rd = r.ready();
        let why = rd.fatal.expect("the replica must fail");
        assert!(
            why.contains("index 10") && why.contains("does not decode"),
            "{why}"
        );
        assert_eq!(r.kv().applied(), 0, "the old state is not marked applied");
        assert!(
            !rd.persist.writes(),
            "nothing is persisted: {:?}",
            rd.persist
        );
        assert!(rd.persist.persisted_messages.is_empty() && rd.messages.is_empty());
        assert!(rd.persist.token.is_none() && rd.responses.is_empty());
        // It stays failed: a caller that asks again gets the same answer, never a normal ready.
        assert!(r.has_ready());
        assert_eq!(r.ready().fatal, Some(why));
    }

    /// The same message with a well-formed snapshot installs it (the control for the test
    /// above).
    #[test]
    fn test_7_a_well_formed_snapshot_from_the_leader_is_installed_and_acknowledged() {
        let mut leader_state = KvState::new();
        leader_state.skip(10);
        let mut r = follower();
        r.step(snapshot_message(leader_state.snapshot()));
        let rd = r.ready();
        assert_eq!(rd.fatal, None);
        assert_eq!(r.kv().applied(), 10);
        assert_eq!(rd.persist.snapshot.map(|s| s.index), Some(10));
        assert!(rd.persist.persisted_messages.iter().any(|m| matches!(
            m.body,
            MessageBody::AppendResp {
                reject: false,
                index: 10,
                ..
            }
        )));
    }
}
