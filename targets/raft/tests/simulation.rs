//! The seeded simulation (see `faultline_raft::sim`): thousands of schedules of 3- and 5-node
//! clusters under message loss, delay, reordering, duplication, partitions, pauses and
//! crash/restart, checking Raft's safety properties after every step; and, for each switchable
//! bug, proof that some schedule catches it.
//!
//! `FAULTLINE_SIM_SCHEDULES=N` runs N schedules per configuration instead of the default.

use std::time::Instant;

use faultline_raft::bugs::Bugs;
use faultline_raft::replica::ReadMode;
use faultline_raft::sim::{run, ScriptStep, SimConfig, SimStats};

fn schedules(default: u64) -> u64 {
    std::env::var("FAULTLINE_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `count` schedules made by `make(seed)`; fails on the first violation.
fn run_clean(name: &str, count: u64, make: impl Fn(u64) -> SimConfig) {
    let start = Instant::now();
    let mut total = SimStats::default();
    for seed in 0..count {
        match run(make(seed)) {
            Ok(s) => {
                total.elections += s.elections;
                total.max_term = total.max_term.max(s.max_term);
                total.committed += s.committed;
                total.acked_writes += s.acked_writes;
                total.reads += s.reads;
                total.crashes += s.crashes;
                total.snapshots_installed += s.snapshots_installed;
                total.messages += s.messages;
            }
            Err(v) => panic!("{name}: violation in a correct build:\n{v}"),
        }
    }
    println!(
        "{name}: {count} schedules in {:.1?}: {total:?}",
        start.elapsed()
    );
    // The schedules must actually exercise the protocol, or passing means nothing.
    assert!(
        total.elections >= count,
        "{name}: too few elections: {total:?}"
    );
    assert!(
        total.acked_writes >= count,
        "{name}: too few acknowledged writes: {total:?}"
    );
    assert!(total.reads >= count, "{name}: too few reads: {total:?}");
    assert!(
        total.crashes > 0 && total.snapshots_installed > 0,
        "{name}: no crashes or snapshot installs: {total:?}"
    );
}

#[test]
fn simulation_3_nodes_read_index() {
    run_clean("3 nodes, read-index", schedules(1000), |seed| {
        SimConfig::new(3, seed)
    });
}

#[test]
fn simulation_5_nodes_read_index() {
    run_clean("5 nodes, read-index", schedules(600), |seed| {
        SimConfig::new(5, seed)
    });
}

#[test]
fn simulation_3_nodes_lease_reads() {
    run_clean("3 nodes, lease", schedules(1000), |seed| {
        let mut c = SimConfig::new(3, seed);
        c.read_mode = ReadMode::Lease;
        c
    });
}

#[test]
fn simulation_5_nodes_lease_reads() {
    run_clean("5 nodes, lease", schedules(400), |seed| {
        let mut c = SimConfig::new(5, seed);
        c.read_mode = ReadMode::Lease;
        c
    });
}

/// Harsher weather: more loss, longer delays, more crashes and partitions, one entry per
/// append (more interleavings of partial replication), tiny snapshot threshold.
#[test]
fn simulation_harsh_faults() {
    run_clean("3 and 5 nodes, harsh", schedules(600), |seed| {
        let mut c = SimConfig::new(if seed % 2 == 0 { 3 } else { 5 }, seed);
        c.loss = 0.2;
        c.duplicate = 0.1;
        c.max_delay = 8;
        c.partition_rate = 0.05;
        c.crash_rate = 0.02;
        c.pause_rate = 0.01;
        c.max_entries_per_msg = 1;
        c.snapshot_threshold = 7;
        c.heal_ticks = 800;
        c
    });
}

/// Replays one schedule of the harsh configuration: `FAULTLINE_SIM_SEED=N`.
#[test]
#[ignore]
fn replay_harsh_seed() {
    let seed: u64 = std::env::var("FAULTLINE_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut c = SimConfig::new(if seed % 2 == 0 { 3 } else { 5 }, seed);
    c.loss = 0.2;
    c.duplicate = 0.1;
    c.max_delay = 8;
    c.partition_rate = 0.05;
    c.crash_rate = 0.02;
    c.pause_rate = 0.01;
    c.max_entries_per_msg = 1;
    c.snapshot_threshold = 7;
    c.heal_ticks = 800;
    if let Err(v) = run(c) {
        panic!("{v}");
    }
}

/// Searches schedules with bug `name` switched on until one violates a property; fails if none
/// does within `max_seeds` (so the simulation demonstrably sees the bug).
fn bug_is_caught(name: &str, max_seeds: u64, tweak: impl Fn(&mut SimConfig)) {
    let start = Instant::now();
    for seed in 0..max_seeds {
        let mut c = SimConfig::new(if seed % 3 == 2 { 5 } else { 3 }, seed);
        c.bugs = Bugs::only(name).unwrap();
        tweak(&mut c);
        if let Err(v) = run(c) {
            println!(
                "--bug {name}: caught by schedule {} of {max_seeds} after {:.1?}: seed {} tick {}: {}",
                seed + 1,
                start.elapsed(),
                v.seed,
                v.tick,
                v.what
            );
            return;
        }
    }
    panic!("--bug {name}: no violation in {max_seeds} schedules");
}

#[test]
fn bug_stale_read_is_caught() {
    bug_is_caught("stale-read", 2000, |c| c.partition_rate = 0.05);
}

#[test]
fn bug_lease_ignores_drift_is_caught() {
    bug_is_caught("lease-ignores-drift", 2000, |c| {
        c.read_mode = ReadMode::Lease;
        c.partition_rate = 0.05;
    });
}

#[test]
fn bug_vote_without_log_check_is_caught() {
    bug_is_caught("vote-without-log-check", 2000, |_| {});
}

/// The Raft paper's Figure 8, scripted on 5 nodes: an entry of an old term (1) is replicated
/// to a majority by a later leader (term 3) before that leader's own no-op is, and the leader
/// crashes; a node holding a conflicting entry of term 2 then wins. A correct leader does not
/// count the old entry as committed, so nothing committed is lost; with `commit-any-term` it
/// does, and the new leader lacks a committed entry (leader completeness fails).
fn figure_8(bugs: Bugs) -> Result<SimStats, faultline_raft::sim::Violation> {
    use ScriptStep::*;
    let mut c = SimConfig::scripted(5, 8);
    c.bugs = bugs;
    c.max_entries_per_msg = 1;
    let script = vec![
        Campaign(1),
        UntilLeader(1, 50),
        Ticks(10),
        // (a) n1 (term 1) replicates x at index 2 to n2 only, then crashes.
        Cut(1, 3),
        Cut(1, 4),
        Cut(1, 5),
        Put(1, "k".into(), "\"x\"".into()),
        Ticks(5),
        Crash(1),
        Heal,
        // (b) n5 wins term 2 with votes from n3 and n4 and appends its no-op at index 2
        // locally only, then crashes.
        Campaign(5),
        UntilLeader(5, 50),
        Isolate(5),
        Ticks(2), // let its storage make the no-op durable
        Crash(5),
        Heal,
        // (c) n1 restarts and wins term 3 (n4 cut off); it brings n3 up to date one entry per
        // message, so index 2 (term 1) reaches a majority before its term-3 no-op does; it
        // crashes right after it considers index 2 committed.
        Cut(1, 4),
        Cut(1, 5),
        Restart(1),
        Campaign(1),
        Ticks(3),
        Campaign(1),
        UntilLeader(1, 50),
        UntilCommitted(1, 2, 50),
        Isolate(1),
        Crash(1),
        // (d) n5 restarts and campaigns: its last entry (term 2) beats n3's and n4's (term 1).
        Restart(5),
        Campaign(5),
        Ticks(3),
        Campaign(5),
        Ticks(30),
    ];
    faultline_raft::sim::run_script(c, &script)
}

#[test]
fn test_5_4_2_figure_8_is_safe_in_a_correct_build() {
    if let Err(v) = figure_8(Bugs::default()) {
        panic!("{v}");
    }
}

#[test]
fn bug_commit_any_term_is_caught() {
    let v = figure_8(Bugs::only("commit-any-term").unwrap())
        .expect_err("Figure 8 must catch commit-any-term");
    println!(
        "--bug commit-any-term: caught by the scripted Figure 8 schedule: {}",
        v.what
    );
    assert!(
        v.what.contains("leader completeness") || v.what.contains("state-machine safety"),
        "{v}"
    );
}

#[test]
fn bug_forget_vote_is_caught() {
    bug_is_caught("forget-vote", 2000, |c| c.crash_rate = 0.03);
}

#[test]
fn bug_ack_before_commit_is_caught() {
    bug_is_caught("ack-before-commit", 2000, |c| c.partition_rate = 0.05);
}

#[test]
fn bug_skip_apply_on_restart_is_caught() {
    bug_is_caught("skip-apply-on-restart", 2000, |_| {});
}

/// Without the lease-ignores-drift bug, the same lease schedules that catch it are clean: the
/// lease itself, not the schedule, is what breaks.
#[test]
fn lease_schedules_that_catch_the_bug_are_clean_without_it() {
    run_clean("3 and 5 nodes, lease, partitions", schedules(600), |seed| {
        let mut c = SimConfig::new(if seed % 3 == 2 { 5 } else { 3 }, seed);
        c.read_mode = ReadMode::Lease;
        c.partition_rate = 0.05;
        c
    });
}
