//! Scripted scenarios, named after the sections of the Raft paper (and of Ongaro's thesis for
//! pre-vote, check-quorum and reads) whose rule they exercise. Each drives a few cores through a
//! tiny synchronous network; the randomized, faulty version of all this is `tests/simulation.rs`.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::*;
use crate::bugs::Bugs;

struct Cluster {
    nodes: Vec<RawNode>,
    /// Directed links that drop messages.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Entries each node handed to its state machine, in order.
    applied: Vec<Vec<Entry>>,
    delivered: usize,
}

fn config(id: NodeId, n: u64, check_quorum: bool) -> Config {
    let mut c = Config::new(id, (1..=n).collect());
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.lease_drift_ticks = 1;
    c.max_entries_per_msg = 2;
    c.check_quorum = check_quorum;
    c
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        Cluster::with(n, |_| {})
    }

    fn with(n: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        let nodes = (1..=n)
            .map(|id| {
                let mut c = config(id, n, false);
                tweak(&mut c);
                RawNode::new(c).unwrap()
            })
            .collect();
        Cluster {
            nodes,
            cut: BTreeSet::new(),
            applied: vec![Vec::new(); n as usize],
            delivered: 0,
        }
    }

    fn node(&mut self, id: NodeId) -> &mut RawNode {
        &mut self.nodes[id as usize - 1]
    }

    fn isolate(&mut self, id: NodeId) {
        for other in 1..=self.nodes.len() as u64 {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Persists and delivers until nothing moves (storage is synchronous here).
    fn stabilize(&mut self) {
        for _ in 0..10_000 {
            let mut msgs = Vec::new();
            for i in 0..self.nodes.len() {
                while self.nodes[i].has_ready() {
                    let rd = self.nodes[i].ready();
                    msgs.extend(rd.messages);
                    msgs.extend(rd.persisted_messages);
                    if let Some(t) = rd.persist_token {
                        self.nodes[i].advance(t);
                    }
                    self.applied[i].extend(rd.committed_entries);
                }
            }
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if !self.cut.contains(&(m.from, m.to)) {
                    self.delivered += 1;
                    let to = m.to as usize - 1;
                    self.nodes[to].step(m);
                }
            }
        }
        panic!("cluster did not stabilize");
    }

    fn elect(&mut self, id: NodeId) {
        self.node(id).campaign();
        self.stabilize();
        assert!(
            self.node(id).is_leader(),
            "n{id} should have won: {}",
            self.node(id).describe()
        );
    }

    fn propose(&mut self, id: NodeId, data: &str) -> (u64, u64) {
        let r = self
            .node(id)
            .propose(Bytes::from(data.to_string()))
            .unwrap();
        self.stabilize();
        r
    }

    fn tick_all(&mut self, n: u32) {
        for _ in 0..n {
            for node in &mut self.nodes {
                node.tick();
            }
            self.stabilize();
        }
    }

    fn log_terms(&mut self, id: NodeId) -> Vec<u64> {
        self.node(id).entries().map(|e| e.term).collect()
    }
}

#[test]
fn test_5_2_leader_election_elects_one_leader_and_everyone_follows_it() {
    let mut c = Cluster::new(3);
    c.elect(1);
    assert_eq!(c.node(1).term(), 1);
    for id in 2..=3 {
        assert_eq!(c.node(id).role(), Role::Follower);
        assert_eq!(c.node(id).leader(), Some(1));
        assert_eq!(c.node(id).vote(), Some(1));
    }
}

#[test]
fn test_5_2_leader_election_happens_by_itself_after_the_election_timeout() {
    let mut c = Cluster::new(3);
    c.tick_all(40);
    let leaders = (1..=3).filter(|&i| c.node(i).is_leader()).count();
    assert_eq!(leaders, 1);
}

#[test]
fn test_5_2_election_timeouts_are_randomized_within_one_to_two_timeouts() {
    let mut seen = BTreeSet::new();
    for seed in 0..50 {
        let mut cfg = config(1, 3, false);
        cfg.seed = seed;
        let mut n = RawNode::new(cfg).unwrap();
        let mut ticks = 0;
        while n.role() == Role::Follower {
            n.tick();
            ticks += 1;
        }
        assert!((10..20).contains(&ticks), "{ticks}");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts should vary: {seen:?}");
}

#[test]
fn test_5_2_a_node_votes_at_most_once_per_term() {
    let mut c = Cluster::new(3);
    c.isolate(3);
    c.elect(1); // n2 votes for n1 in term 1
    let m = Message {
        from: 3,
        to: 2,
        term: 1,
        body: MessageBody::Vote {
            last_index: 5,
            last_term: 1,
        },
    };
    c.node(2).step(m);
    let rd = c.node(2).ready();
    let resp = rd.persisted_messages.iter().find(|m| m.to == 3).unwrap();
    assert_eq!(resp.body, MessageBody::VoteResp { reject: true });
}

#[test]
fn test_5_2_votes_and_terms_are_persisted_before_the_vote_is_sent() {
    let mut n = RawNode::new(config(2, 3, false)).unwrap();
    n.step(Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Vote {
            last_index: 0,
            last_term: 0,
        },
    });
    let rd = n.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(1)
        })
    );
    assert!(
        rd.messages.is_empty(),
        "a vote must not leave before it is durable"
    );
    assert_eq!(rd.persisted_messages.len(), 1);
}

#[test]
fn test_5_3_log_replication_commits_once_a_majority_stores_the_entry() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    let (index, term) = c.propose(1, "x");
    assert_eq!(c.node(1).commit_index(), index, "n1 and n2 are a majority");
    assert!(c.node(3).last_index() < index);
    c.heal();
    // The appends to n3 were lost; the leader notices no progress and probes again.
    c.tick_all(25);
    assert_eq!(c.node(3).entry(index).map(|e| e.term), Some(term));
    for i in 0..3 {
        assert_eq!(
            c.applied[i].last().map(|e| e.data.clone()),
            Some(Bytes::from("x"))
        );
    }
}

#[test]
fn test_5_3_a_leader_does_not_commit_without_a_majority() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    let (index, _) = c.propose(1, "x");
    assert!(c.node(1).commit_index() < index);
}

#[test]
fn test_5_3_log_matching_conflicting_suffix_is_replaced_by_the_leaders() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    for i in 0..5 {
        c.propose(1, &format!("lost{i}"));
    }
    c.heal();
    c.isolate(1);
    c.elect(2);
    c.propose(2, "kept");
    c.heal();
    c.tick_all(5);
    let leader_log = c.log_terms(2);
    assert_eq!(
        c.log_terms(1),
        leader_log,
        "n1's uncommitted term-1 suffix was replaced"
    );
    assert!(c.applied[0].iter().all(|e| !e.data.starts_with(b"lost")));
}

#[test]
fn test_5_3_fast_backtracking_skips_a_whole_conflicting_term_per_round_trip() {
    let mut c = Cluster::with(3, |cfg| cfg.max_entries_per_msg = 1000);
    c.elect(1);
    c.isolate(1);
    for i in 0..50 {
        c.node(1).propose(Bytes::from(format!("lost{i}"))).unwrap();
    }
    c.stabilize();
    c.heal();
    c.isolate(1);
    c.elect(2);
    c.heal();
    let before = c.delivered;
    c.tick_all(2);
    assert_eq!(c.log_terms(1), c.log_terms(2));
    // One entry per round trip would need ~50 rejections; by term it needs a couple.
    assert!(
        c.delivered - before < 30,
        "{} messages",
        c.delivered - before
    );
}

#[test]
fn test_5_4_1_election_restriction_denies_votes_to_a_stale_log() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    c.propose(1, "x");
    c.heal();
    c.isolate(1);
    // n3 lacks the committed entry; n2 must not vote for it.
    c.node(3).campaign();
    c.stabilize();
    assert!(!c.node(3).is_leader());
    c.elect(2);
}

#[test]
fn test_5_4_1_vote_without_log_check_bug_elects_a_stale_log() {
    let mut c = Cluster::with(3, |cfg| {
        cfg.bugs = Bugs::only("vote-without-log-check").unwrap()
    });
    c.elect(1);
    c.isolate(3);
    let (index, term) = c.propose(1, "x");
    c.heal();
    c.isolate(1);
    c.elect(3);
    c.propose(3, "y");
    assert_ne!(
        c.node(2).term_at(index),
        Some(term),
        "the committed entry was overwritten on n2"
    );
}

#[test]
fn test_5_4_2_earlier_term_entries_commit_only_with_a_current_term_entry() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    let (old_index, _) = c.propose(1, "old");
    assert!(c.node(1).commit_index() < old_index);
    // n1 restarts (keeping its durable state) and is re-elected in term 2.
    let n1 = c.node(1);
    let (hs, entries) = (n1.hard_state(), n1.entries().cloned().collect());
    c.nodes[0] = RawNode::recover(config(1, 3, false), hs, None, entries).unwrap();
    c.heal();
    c.isolate(3);
    c.node(1).campaign();
    c.stabilize();
    assert!(c.node(1).is_leader());
    let n1 = c.node(1);
    assert!(
        n1.commit_index() > old_index,
        "the old entry commits together with the no-op"
    );
    assert_eq!(n1.term_at(n1.commit_index()), Some(n1.term()));
}

#[test]
fn test_5_5_duplicated_and_stale_appends_never_truncate() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, "a");
    let old = Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            commit: 0,
            read_seq: 0,
        },
    };
    c.propose(1, "b");
    let last = c.node(2).last_index();
    c.node(2).step(old.clone());
    c.node(2).step(old);
    c.stabilize();
    assert_eq!(c.node(2).last_index(), last);
}

#[test]
fn test_8_a_new_leader_appends_a_noop_of_its_term() {
    let mut c = Cluster::new(3);
    c.elect(2);
    let e = c.node(2).entry(1).unwrap().clone();
    assert_eq!((e.kind, e.term), (EntryKind::Noop, 1));
    assert_eq!(c.node(2).commit_index(), 1);
}

#[test]
fn test_6_2_check_quorum_an_isolated_leader_steps_down() {
    let mut c = Cluster::with(3, |cfg| cfg.check_quorum = true);
    c.tick_all(40);
    let leader = (1..=3).find(|&i| c.node(i).is_leader()).unwrap();
    c.isolate(leader);
    c.tick_all(25);
    assert!(!c.node(leader).is_leader());
}

#[test]
fn test_9_6_prevote_a_partitioned_node_does_not_inflate_terms() {
    let mut c = Cluster::with(3, |cfg| cfg.check_quorum = true);
    c.tick_all(40);
    let leader = (1..=3).find(|&i| c.node(i).is_leader()).unwrap();
    let term = c.node(leader).term();
    let other = if leader == 3 { 2 } else { 3 };
    c.isolate(other);
    c.tick_all(100);
    assert_eq!(
        c.node(other).term(),
        term,
        "pre-vote kept the isolated node's term"
    );
    c.heal();
    c.tick_all(20);
    assert!(
        c.node(leader).is_leader(),
        "the healthy leader was not disrupted"
    );
    assert_eq!(c.node(leader).term(), term);
}

#[test]
fn test_6_4_read_index_is_released_only_after_a_quorum_confirms_leadership() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, "x");
    c.isolate(1);
    c.node(1).read_index(7).unwrap();
    c.stabilize();
    let mut released = Vec::new();
    while c.node(1).has_ready() {
        released.extend(c.node(1).ready().read_states);
    }
    assert!(
        released.is_empty(),
        "an isolated leader must not confirm a read"
    );
    c.heal();
    c.node(1).read_index(8).unwrap();
    let commit = c.node(1).commit_index();
    let mut got = Vec::new();
    for _ in 0..10 {
        while c.node(1).has_ready() {
            let rd = c.node(1).ready();
            got.extend(rd.read_states);
            for m in rd.messages.into_iter().chain(rd.persisted_messages) {
                let to = m.to;
                c.node(to).step(m);
            }
        }
        for id in 2..=3 {
            while c.node(id).has_ready() {
                let rd = c.node(id).ready();
                for m in rd.messages.into_iter().chain(rd.persisted_messages) {
                    c.node(1).step(m);
                }
            }
        }
    }
    assert!(
        got.iter().any(|r| r.ctx == 8 && r.index >= commit),
        "{got:?}"
    );
    assert!(
        c.node(2).read_index(9).is_err(),
        "followers do not serve reads"
    );
}

#[test]
fn test_6_4_1_a_lease_lasts_less_than_an_election_timeout_without_acks() {
    let mut c = Cluster::with(3, |cfg| cfg.check_quorum = true);
    c.tick_all(40);
    let leader = (1..=3).find(|&i| c.node(i).is_leader()).unwrap();
    c.tick_all(3);
    assert!(c.node(leader).lease_read_index().is_some());
    let lease = c.node(leader).lease_ticks();
    assert!(
        lease < 10,
        "lease {lease} must be shorter than the election timeout"
    );
    c.isolate(leader);
    for _ in 0..lease {
        c.node(leader).tick();
    }
    assert!(
        c.node(leader).lease_read_index().is_none(),
        "the lease expired without acks"
    );
}

/// What the node does when its monotonic clock steps backwards: the lease ends at once, and a
/// round that was already in flight when the clock stepped does not bring it back when its acks
/// arrive (its send tick is on the old, untrustworthy time line); a round sent afterwards does.
#[test]
fn test_6_4_1_an_expired_lease_is_not_revived_by_a_round_sent_before_it_expired() {
    let mut c = Cluster::with(3, |cfg| cfg.check_quorum = true);
    c.tick_all(40);
    let leader = (1..=3).find(|&i| c.node(i).is_leader()).unwrap();
    c.tick_all(3);
    // A heartbeat round leaves the leader but is not delivered yet.
    let mut in_flight = Vec::new();
    while in_flight.is_empty() {
        c.node(leader).tick();
        let rd = c.node(leader).ready();
        if let Some(t) = rd.persist_token {
            c.node(leader).advance(t);
        }
        in_flight.extend(
            rd.messages
                .into_iter()
                .filter(|m| matches!(m.body, MessageBody::Heartbeat { .. })),
        );
    }
    assert!(c.node(leader).lease_read_index().is_some());
    c.node(leader).expire_lease();
    assert!(
        c.node(leader).lease_read_index().is_none(),
        "expired at once"
    );
    for m in in_flight {
        let to = m.to;
        c.node(to).step(m);
    }
    c.stabilize();
    assert!(
        c.node(leader).lease_read_index().is_none(),
        "acks of a round sent before the clock stepped must not restore the lease"
    );
    // The next round, sent after the step, does.
    for _ in 0..2 {
        c.node(leader).tick();
        c.stabilize();
    }
    assert!(c.node(leader).is_leader());
    assert!(
        c.node(leader).lease_read_index().is_some(),
        "a fresh round renews the lease"
    );
}

#[test]
fn test_7_snapshot_install_catches_up_a_follower_behind_the_compacted_log() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    for i in 0..20 {
        c.propose(1, &format!("v{i}"));
    }
    let applied = c.node(1).applied_index();
    let term = c.node(1).term_at(applied).unwrap();
    c.node(1)
        .compact(Snapshot {
            index: applied,
            term,
            data: Bytes::from_static(b"state"),
        })
        .unwrap();
    assert_eq!(c.node(1).snapshot_index(), applied);
    c.heal();
    let mut installed = None;
    for _ in 0..30 {
        for n in &mut c.nodes {
            n.tick();
        }
        for i in 0..3 {
            while c.nodes[i].has_ready() {
                let rd = c.nodes[i].ready();
                if i == 2 && rd.snapshot.is_some() {
                    installed = rd.snapshot.clone();
                }
                if let Some(t) = rd.persist_token {
                    c.nodes[i].advance(t);
                }
                for m in rd.messages.into_iter().chain(rd.persisted_messages) {
                    let to = m.to as usize - 1;
                    c.nodes[to].step(m);
                }
            }
        }
    }
    assert_eq!(
        installed.map(|s| s.index),
        Some(applied),
        "{}",
        c.node(1).describe()
    );
    assert_eq!(c.node(3).last_index(), c.node(1).last_index());
    assert_eq!(c.node(3).commit_index(), c.node(1).commit_index());
}

#[test]
fn test_recovered_node_keeps_its_term_vote_and_log() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, "x");
    let n2 = c.node(2);
    let hs = n2.hard_state();
    let entries: Vec<Entry> = n2.entries().cloned().collect();
    let r = RawNode::recover(config(2, 3, false), hs, None, entries.clone()).unwrap();
    assert_eq!(r.hard_state(), hs);
    assert_eq!(r.entries().cloned().collect::<Vec<_>>(), entries);
    assert_eq!(r.commit_index(), 0, "commit is re-learned from the leader");
}

/// Every node of a 3-node cluster restarts after n1 led term 1; the bug's nodes come back
/// without their hard state (as `Replica::recover` gives it to them). Then n2 campaigns.
/// Returns the term n2 leads.
fn restart_all_then_elect_n2(bugs: Bugs) -> u64 {
    let mut c = Cluster::with(3, |cfg| cfg.bugs = bugs);
    c.elect(1);
    c.propose(1, "x");
    for id in 1..=3 {
        let n = c.node(id);
        let hs = if bugs.forget_vote {
            HardState::default()
        } else {
            n.hard_state()
        };
        let entries = n.entries().cloned().collect();
        let mut cfg = config(id, 3, false);
        cfg.bugs = bugs;
        c.nodes[id as usize - 1] = RawNode::recover(cfg, hs, None, entries).unwrap();
    }
    c.elect(2);
    c.node(2).term()
}

#[test]
fn test_5_2_a_restarted_cluster_never_reuses_a_term() {
    assert_eq!(restart_all_then_elect_n2(Bugs::default()), 2);
}

#[test]
fn test_5_2_forget_vote_bug_elects_a_second_leader_of_term_1() {
    assert_eq!(
        restart_all_then_elect_n2(Bugs::only("forget-vote").unwrap()),
        1,
        "n2 leads term 1, which n1 led before the restart"
    );
}

#[test]
fn test_bad_configurations_are_rejected() {
    assert!(RawNode::new(Config::new(0, vec![0, 1])).is_err());
    assert!(RawNode::new(Config::new(4, vec![1, 2, 3])).is_err());
    assert!(RawNode::new(Config::new(1, vec![1, 1, 2])).is_err());
    let mut c = Config::new(1, vec![1]);
    c.heartbeat_tick = c.election_tick;
    assert!(RawNode::new(c).is_err());
}

#[test]
fn test_messages_for_someone_else_or_from_strangers_are_ignored() {
    let mut n = RawNode::new(config(1, 3, false)).unwrap();
    let before = n.clone();
    n.step(Message {
        from: 9,
        to: 1,
        term: 5,
        body: MessageBody::Heartbeat {
            commit: 3,
            read_seq: 1,
        },
    });
    n.step(Message {
        from: 2,
        to: 3,
        term: 5,
        body: MessageBody::Heartbeat {
            commit: 3,
            read_seq: 1,
        },
    });
    assert_eq!(n, before);
}

#[test]
fn test_absurd_terms_and_indexes_from_a_peer_are_ignored() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let before = c.node(1).clone();
    for body in [
        MessageBody::AppendResp {
            reject: false,
            index: u64::MAX,
            hint_index: 0,
            hint_term: 0,
            read_seq: 0,
        },
        MessageBody::AppendResp {
            reject: true,
            index: 1,
            hint_index: u64::MAX,
            hint_term: 0,
            read_seq: 0,
        },
        MessageBody::AppendResp {
            reject: false,
            index: 1_000_000,
            hint_index: 0,
            hint_term: 0,
            read_seq: 0,
        },
    ] {
        c.node(1).step(Message {
            from: 2,
            to: 1,
            term: 1,
            body,
        });
    }
    assert_eq!(c.node(1).commit_index(), before.commit_index());
    c.node(2).step(Message {
        from: 1,
        to: 2,
        term: u64::MAX,
        body: MessageBody::Heartbeat {
            commit: 0,
            read_seq: 0,
        },
    });
    c.node(2).step(Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Snapshot {
            snapshot: Snapshot {
                index: u64::MAX,
                term: 1,
                data: Bytes::new(),
            },
            read_seq: 0,
        },
    });
    assert_eq!(c.node(2).term(), 1);
    assert!(c.node(2).snapshot().is_none());
    c.propose(1, "still works");
}
