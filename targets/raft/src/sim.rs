//! A deterministic simulation of a whole cluster: replicas, a network that loses, delays,
//! reorders and duplicates messages and can be partitioned, storage that completes writes
//! asynchronously and loses whatever was not durable when a node crashes, process pauses
//! (like SIGSTOP: the clock keeps running, so a resumed node catches its ticks up at once),
//! and clients. Everything is driven by one seed, so a failing schedule replays exactly.
//!
//! After every step it checks Raft's safety properties (paper Figure 3) and the client-visible
//! guarantees built on them:
//! - **election safety**: at most one leader per term, over the whole run;
//! - **log matching**: if two logs hold an entry with the same index and term, they are
//!   identical up to it;
//! - **leader completeness**: a leader of a term holds every entry committed in earlier terms;
//! - **state-machine safety**: no two replicas apply different entries at one index, and
//!   replicas that applied the same prefix have the same state digest;
//! - **reads**: a read returns a committed value at least as new as every write acknowledged
//!   before the read was sent;
//! - and at the end, after healing everything: every acknowledged write is in the final
//!   committed log, no write reported as definitely-not-executed is, and all replicas converge
//!   to the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use crate::bugs::Bugs;
use crate::core::{Config, Entry, EntryKind, HardState, Message, Role, SeededRng, Snapshot};
use crate::kv::{Command, NULL};
use crate::replica::{
    Persist, ReadMode, Recovered, Replica, ReplicaConfig, ReplicaReady, ReqId, Request, Response,
};

/// Knobs of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// Ticks with faults and clients.
    pub fault_ticks: u64,
    /// Ticks after healing everything, for the cluster to converge.
    pub heal_ticks: u64,
    pub election_tick: u32,
    pub heartbeat_tick: u32,
    pub loss: f64,
    pub duplicate: f64,
    /// Messages take 0..=max_delay ticks (which also reorders them).
    pub max_delay: u64,
    /// Per-tick probability of changing the partition (or healing it).
    pub partition_rate: f64,
    pub crash_rate: f64,
    /// Per-tick probability of crashing whichever node currently leads (leaders that die
    /// mid-replication are what leave logs divergent).
    pub leader_crash_rate: f64,
    pub restart_rate: f64,
    pub pause_rate: f64,
    /// Per-tick probability of a client request.
    pub client_rate: f64,
    pub keys: u64,
    pub read_mode: ReadMode,
    pub bugs: Bugs,
    pub snapshot_threshold: u64,
    pub max_entries_per_msg: usize,
    pub check_quorum: bool,
}

/// One step of a scripted schedule (see [`run_script`]). Nodes are numbered from 1.
#[derive(Clone, Debug)]
pub enum ScriptStep {
    /// Cut the links between two nodes, both ways (messages in flight on them are lost).
    Cut(u64, u64),
    /// Cut every link of a node.
    Isolate(u64),
    /// Restore every link.
    Heal,
    Crash(u64),
    Restart(u64),
    /// Make a node start an election now.
    Campaign(u64),
    /// A client writes `key = value` at a node.
    Put(u64, String, String),
    /// Let time pass.
    Ticks(u64),
    /// Let time pass until the node leads (fails the script after `max` ticks).
    UntilLeader(u64, u64),
    /// Let time pass until the node's commit index reaches `index` (fails after `max` ticks).
    UntilCommitted(u64, u64, u64),
}

impl SimConfig {
    /// A configuration for scripted schedules: a reliable network with one tick of delay, no
    /// random faults or clients, elections only when the script forces them.
    pub fn scripted(nodes: usize, seed: u64) -> SimConfig {
        let mut c = SimConfig::new(nodes, seed);
        c.loss = 0.0;
        c.duplicate = 0.0;
        c.max_delay = 1;
        c.partition_rate = 0.0;
        c.crash_rate = 0.0;
        c.restart_rate = 0.0;
        c.pause_rate = 0.0;
        c.client_rate = 0.0;
        c.election_tick = 500;
        c.heartbeat_tick = 5;
        c.heal_ticks = 2000;
        c.check_quorum = false;
        c
    }

    /// A default run: moderate faults of every kind.
    pub fn new(nodes: usize, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            seed,
            fault_ticks: 300,
            heal_ticks: 400,
            election_tick: 10,
            heartbeat_tick: 2,
            loss: 0.05,
            duplicate: 0.03,
            max_delay: 3,
            partition_rate: 0.02,
            crash_rate: 0.008,
            leader_crash_rate: 0.0,
            restart_rate: 0.05,
            pause_rate: 0.005,
            client_rate: 0.6,
            keys: 4,
            read_mode: ReadMode::ReadIndex,
            bugs: Bugs::default(),
            snapshot_threshold: 25,
            max_entries_per_msg: 8,
            check_quorum: true,
        }
    }
}

/// A safety property failed.
#[derive(Clone, Debug)]
pub struct Violation {
    pub seed: u64,
    pub tick: u64,
    pub what: String,
    /// The last events before the violation, oldest first.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} tick {}: {}", self.seed, self.tick, self.what)?;
        for t in &self.trace {
            writeln!(f, "  {t}")?;
        }
        Ok(())
    }
}

/// Counts from a run, to show the schedule actually exercised things.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub elections: u64,
    pub max_term: u64,
    pub committed: u64,
    pub acked_writes: u64,
    pub reads: u64,
    pub crashes: u64,
    pub snapshots_installed: u64,
    pub messages: u64,
}

/// What storage holds for one node: exactly what survives a crash.
#[derive(Clone, Debug, Default)]
struct MemStore {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl MemStore {
    fn apply(&mut self, p: &Persist) {
        if let Some(s) = &p.snapshot {
            self.snapshot = Some(s.clone());
            self.entries.clear();
        }
        if let Some(first) = p.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(p.entries.iter().cloned());
        }
        if let Some(hs) = p.hard_state {
            self.hard_state = hs;
        }
        if let Some(s) = &p.compact {
            self.entries.retain(|e| e.index > s.index);
            self.snapshot = Some(s.clone());
        }
    }
}

struct SimNode {
    replica: Option<Replica>,
    store: MemStore,
    /// Storage writes in flight: completed in order at or after their tick.
    persisting: VecDeque<(u64, Persist)>,
    /// Paused until this tick (like SIGSTOP/SIGCONT); ticks missed are caught up on resume.
    paused_until: Option<u64>,
    missed_ticks: u64,
    /// Clock rate in thousandths of real time (clocks here run at 90-100% speed, within the
    /// drift allowance the lease leaves), and the fraction accumulated towards the next tick.
    clock_permille: u64,
    clock_acc: u64,
    inbox_while_paused: Vec<Message>,
}

struct InFlight {
    at: u64,
    msg: Message,
}

struct ClientOp {
    node: usize,
    invoked: u64,
    request: Request,
}

struct Sim {
    cfg: SimConfig,
    rng: SeededRng,
    nodes: Vec<SimNode>,
    net: Vec<InFlight>,
    /// Directed links that are cut.
    cut: BTreeSet<(u64, u64)>,
    now: u64,
    /// Event counter: orders invocations and completions.
    clock: u64,
    next_req: ReqId,
    next_value: u64,
    ops: HashMap<ReqId, ClientOp>,
    // --- observations ---
    leaders: BTreeMap<u64, u64>,
    /// index -> (term, data, term of the observer when first seen committed)
    committed: BTreeMap<u64, (u64, Bytes, u64)>,
    digests: BTreeMap<u64, u64>,
    /// canonical value -> index of the committed command that wrote it
    value_index: HashMap<String, u64>,
    /// per key: (ack time, value) of acknowledged writes
    acked: HashMap<String, Vec<(u64, String)>>,
    acked_commands: Vec<Bytes>,
    failed_commands: Vec<Bytes>,
    trace: VecDeque<String>,
    stats: SimStats,
    last_role: Vec<(Role, u64)>,
    /// `FAULTLINE_SIM_DEBUG` set: print events as they happen.
    debug: bool,
}

type Check = Result<(), String>;

/// Runs one simulated schedule. `Ok` carries statistics; `Err` the first violated property.
pub fn run(cfg: SimConfig) -> Result<SimStats, Violation> {
    let mut sim = Sim::new(cfg);
    match sim.run() {
        Ok(()) => Ok(sim.stats),
        Err(what) => Err(Violation {
            seed: sim.cfg.seed,
            tick: sim.now,
            what,
            trace: sim.trace.iter().cloned().collect(),
        }),
    }
}

/// Runs a scripted schedule, checking every property after every step as [`run`] does, then
/// heals the cluster and runs the final checks.
pub fn run_script(cfg: SimConfig, script: &[ScriptStep]) -> Result<SimStats, Violation> {
    let mut sim = Sim::new(cfg);
    let result = sim.script(script).and_then(|()| sim.heal_and_finish());
    match result {
        Ok(()) => Ok(sim.stats),
        Err(what) => Err(Violation {
            seed: sim.cfg.seed,
            tick: sim.now,
            what,
            trace: sim.trace.iter().cloned().collect(),
        }),
    }
}

impl Sim {
    fn script(&mut self, script: &[ScriptStep]) -> Check {
        for step in script {
            self.note(format!("script: {step:?}"));
            if self.debug {
                eprintln!("    {}", self.describe());
            }
            match step {
                ScriptStep::Cut(a, b) => {
                    self.cut.insert((*a, *b));
                    self.cut.insert((*b, *a));
                    self.purge_cut_links();
                }
                ScriptStep::Isolate(a) => {
                    for b in 1..=self.nodes.len() as u64 {
                        if b != *a {
                            self.cut.insert((*a, b));
                            self.cut.insert((b, *a));
                        }
                    }
                    self.purge_cut_links();
                }
                ScriptStep::Heal => self.cut.clear(),
                ScriptStep::Crash(a) => self.crash(*a as usize - 1),
                ScriptStep::Restart(a) => self.restart(*a as usize - 1)?,
                ScriptStep::Campaign(a) => {
                    let i = *a as usize - 1;
                    if let Some(r) = self.nodes[i].replica.as_mut() {
                        r.campaign();
                    }
                    self.process(i)?;
                }
                ScriptStep::Put(a, key, value) => {
                    let i = *a as usize - 1;
                    let req = self.next_req;
                    self.next_req += 1;
                    self.clock += 1;
                    let request = Request::Put {
                        key: key.clone(),
                        value: value.clone(),
                    };
                    self.ops.insert(
                        req,
                        ClientOp {
                            node: i,
                            invoked: self.clock,
                            request: request.clone(),
                        },
                    );
                    if let Some(r) = self.nodes[i].replica.as_mut() {
                        r.submit(req, request);
                    }
                    self.process(i)?;
                }
                ScriptStep::Ticks(n) => {
                    for _ in 0..*n {
                        self.step_tick(false)?;
                    }
                }
                ScriptStep::UntilLeader(a, max) => {
                    let i = *a as usize - 1;
                    let mut waited = 0;
                    while !self.nodes[i]
                        .replica
                        .as_ref()
                        .is_some_and(|r| r.core().is_leader())
                    {
                        if waited >= *max {
                            return Err(format!(
                                "script: n{a} did not become leader within {max} ticks:\n    {}",
                                self.describe()
                            ));
                        }
                        self.step_tick(false)?;
                        waited += 1;
                    }
                }
                ScriptStep::UntilCommitted(a, index, max) => {
                    let i = *a as usize - 1;
                    let mut waited = 0;
                    while self.nodes[i]
                        .replica
                        .as_ref()
                        .is_none_or(|r| r.core().commit_index() < *index)
                    {
                        if waited >= *max {
                            return Err(format!(
                                "script: n{a} did not commit index {index} within {max} ticks"
                            ));
                        }
                        self.step_tick(false)?;
                        waited += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops messages in flight on links that are now cut.
    fn purge_cut_links(&mut self) {
        let cut = &self.cut;
        self.net.retain(|m| !cut.contains(&(m.msg.from, m.msg.to)));
    }

    fn describe(&self) -> String {
        let states: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                n.replica
                    .as_ref()
                    .map_or(format!("n{} down", i + 1), |r| r.core().describe())
            })
            .collect();
        states.join("\n    ")
    }

    fn new(cfg: SimConfig) -> Sim {
        let rng = SeededRng::new(cfg.seed);
        let mut sim = Sim {
            nodes: Vec::new(),
            rng,
            net: Vec::new(),
            cut: BTreeSet::new(),
            now: 0,
            clock: 0,
            next_req: 1,
            next_value: 1,
            ops: HashMap::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            digests: BTreeMap::new(),
            value_index: HashMap::new(),
            acked: HashMap::new(),
            acked_commands: Vec::new(),
            failed_commands: Vec::new(),
            trace: VecDeque::new(),
            stats: SimStats::default(),
            last_role: Vec::new(),
            debug: std::env::var_os("FAULTLINE_SIM_DEBUG").is_some(),
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            let replica = Replica::new(sim.replica_config(i));
            sim.nodes.push(SimNode {
                replica: replica.ok(),
                store: MemStore::default(),
                persisting: VecDeque::new(),
                paused_until: None,
                missed_ticks: 0,
                clock_permille: 1000,
                clock_acc: 0,
                inbox_while_paused: Vec::new(),
            });
            sim.last_role.push((Role::Follower, 0));
        }
        for i in 0..sim.cfg.nodes {
            sim.nodes[i].clock_permille = 900 + sim.rng.below(101);
        }
        sim
    }

    fn replica_config(&self, i: usize) -> ReplicaConfig {
        let voters: Vec<u64> = (1..=self.cfg.nodes as u64).collect();
        let mut core = Config::new(i as u64 + 1, voters);
        core.election_tick = self.cfg.election_tick;
        core.heartbeat_tick = self.cfg.heartbeat_tick;
        core.lease_drift_ticks = 1;
        core.max_entries_per_msg = self.cfg.max_entries_per_msg;
        core.max_inflight = 16;
        core.seed = self.cfg.seed.wrapping_mul(31).wrapping_add(i as u64);
        core.bugs = self.cfg.bugs;
        core.check_quorum = self.cfg.check_quorum;
        ReplicaConfig {
            core,
            read_mode: self.cfg.read_mode,
            snapshot_threshold: self.cfg.snapshot_threshold,
        }
    }

    fn note(&mut self, s: String) {
        if self.trace.len() >= 60 {
            self.trace.pop_front();
        }
        if self.debug {
            eprintln!("t{} {s}", self.now);
        }
        self.trace.push_back(format!("t{} {s}", self.now));
    }

    fn run(&mut self) -> Check {
        for _ in 0..self.cfg.fault_ticks {
            self.faults()?;
            self.clients()?;
            self.step_tick(true)?;
        }
        self.heal_and_finish()
    }

    fn heal_and_finish(&mut self) -> Check {
        // Heal: everyone up, resumed and connected, a reliable network; no new faults or clients.
        self.cut.clear();
        self.cfg.loss = 0.0;
        self.cfg.duplicate = 0.0;
        self.cfg.max_delay = self.cfg.max_delay.min(1);
        self.note("heal".into());
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused_until.is_some() {
                self.resume(i)?;
            }
            if self.nodes[i].replica.is_none() {
                self.restart(i)?;
            }
        }
        let debug = std::env::var_os("FAULTLINE_SIM_DEBUG").is_some();
        for t in 0..self.cfg.heal_ticks {
            self.step_tick(false)?;
            if debug && t % 10 == 0 {
                for n in self.nodes.iter().filter_map(|n| n.replica.as_ref()) {
                    eprintln!("t{} {}", self.now, n.core().describe());
                }
            }
        }
        self.final_checks()
    }

    fn faults(&mut self) -> Check {
        let n = self.nodes.len();
        if self.rng.chance(self.cfg.partition_rate) {
            self.cut.clear();
            match self.rng.below(4) {
                0 => self.note("partition healed".into()),
                1 => {
                    // isolate one node
                    let x = self.rng.below(n as u64) + 1;
                    for y in 1..=n as u64 {
                        if y != x {
                            self.cut.insert((x, y));
                            self.cut.insert((y, x));
                        }
                    }
                    self.note(format!("isolate n{x}"));
                }
                2 => {
                    // random split
                    let side: Vec<bool> = (0..n).map(|_| self.rng.chance(0.5)).collect();
                    for a in 0..n {
                        for b in 0..n {
                            if side[a] != side[b] {
                                self.cut.insert((a as u64 + 1, b as u64 + 1));
                            }
                        }
                    }
                    self.note(format!("split {side:?}"));
                }
                _ => {
                    // one-way cuts
                    for _ in 0..n {
                        let a = self.rng.below(n as u64) + 1;
                        let b = self.rng.below(n as u64) + 1;
                        if a != b {
                            self.cut.insert((a, b));
                        }
                    }
                    self.note(format!("one-way cuts {:?}", self.cut));
                }
            }
        }
        if self.rng.chance(self.cfg.leader_crash_rate) {
            if let Some(i) = (0..n).find(|&i| {
                self.nodes[i]
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.core().is_leader())
            }) {
                self.crash(i);
            }
        }
        for i in 0..n {
            if self.nodes[i].replica.is_some() {
                if self.rng.chance(self.cfg.crash_rate) {
                    self.crash(i);
                } else if self.nodes[i].paused_until.is_none()
                    && self.rng.chance(self.cfg.pause_rate)
                {
                    let d = 1 + self.rng.below(3 * u64::from(self.cfg.election_tick));
                    self.nodes[i].paused_until = Some(self.now + d);
                    self.note(format!("pause n{} for {d}", i + 1));
                }
            } else if self.rng.chance(self.cfg.restart_rate) {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.replica = None;
        node.persisting.clear();
        node.paused_until = None;
        node.missed_ticks = 0;
        node.inbox_while_paused.clear();
        self.stats.crashes += 1;
        // Requests in flight at the crashed node are never answered (outcome unknown).
        self.ops.retain(|_, op| op.node != i);
        self.note(format!("crash n{}", i + 1));
    }

    fn restart(&mut self, i: usize) -> Check {
        let st = &self.nodes[i].store;
        let rec = Recovered {
            hard_state: st.hard_state,
            snapshot: st.snapshot.clone(),
            entries: st.entries.clone(),
        };
        let r = Replica::recover(self.replica_config(i), rec)
            .map_err(|e| format!("n{} cannot restart: {e}", i + 1))?;
        self.nodes[i].replica = Some(r);
        self.note(format!("restart n{}", i + 1));
        Ok(())
    }

    fn resume(&mut self, i: usize) -> Check {
        let missed = std::mem::take(&mut self.nodes[i].missed_ticks);
        self.nodes[i].paused_until = None;
        self.note(format!("resume n{} catching up {missed} ticks", i + 1));
        if let Some(r) = self.nodes[i].replica.as_mut() {
            for _ in 0..missed {
                r.tick();
            }
        }
        self.process(i)?;
        let inbox = std::mem::take(&mut self.nodes[i].inbox_while_paused);
        for m in inbox {
            self.deliver(i, m)?;
        }
        Ok(())
    }

    fn clients(&mut self) -> Check {
        if !self.rng.chance(self.cfg.client_rate) {
            return Ok(());
        }
        let n = self.nodes.len();
        // Mostly aim at a node that believes it leads (as a redirected client would).
        let leaders: Vec<usize> = (0..n)
            .filter(|&i| {
                self.nodes[i]
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.core().is_leader())
            })
            .collect();
        let i = if !leaders.is_empty() && self.rng.chance(0.8) {
            leaders[self.rng.below(leaders.len() as u64) as usize]
        } else {
            self.rng.below(n as u64) as usize
        };
        if self.nodes[i].replica.is_none() || self.nodes[i].paused_until.is_some() {
            return Ok(());
        }
        let key = format!("k{}", self.rng.below(self.cfg.keys));
        let request = match self.rng.below(10) {
            0..=3 => Request::Get { key },
            4..=8 => {
                let v = self.fresh_value();
                Request::Put { key, value: v }
            }
            _ => {
                let from = self.latest_value(&key);
                let to = self.fresh_value();
                Request::Cas { key, from, to }
            }
        };
        let req = self.next_req;
        self.next_req += 1;
        self.clock += 1;
        self.note(format!("client r{req} -> n{}: {request:?}", i + 1));
        self.ops.insert(
            req,
            ClientOp {
                node: i,
                invoked: self.clock,
                request: request.clone(),
            },
        );
        if let Some(r) = self.nodes[i].replica.as_mut() {
            r.submit(req, request);
        }
        self.process(i)
    }

    fn fresh_value(&mut self) -> String {
        let v = self.next_value;
        self.next_value += 1;
        v.to_string()
    }

    fn latest_value(&self, key: &str) -> String {
        self.acked
            .get(key)
            .and_then(|v| v.last())
            .map_or_else(|| NULL.to_string(), |(_, v)| v.clone())
    }

    fn step_tick(&mut self, faults: bool) -> Check {
        self.now += 1;
        let n = self.nodes.len();
        for i in 0..n {
            if self.nodes[i].replica.is_none() {
                continue;
            }
            if let Some(until) = self.nodes[i].paused_until {
                if self.now >= until {
                    self.resume(i)?;
                } else {
                    let node = &mut self.nodes[i];
                    node.clock_acc += node.clock_permille;
                    if node.clock_acc >= 1000 {
                        node.clock_acc -= 1000;
                        node.missed_ticks += 1;
                    }
                    continue;
                }
            }
            let node = &mut self.nodes[i];
            node.clock_acc += node.clock_permille;
            if node.clock_acc >= 1000 {
                node.clock_acc -= 1000;
                if let Some(r) = node.replica.as_mut() {
                    r.tick();
                }
                self.process(i)?;
            }
        }
        // Deliver what is due, in random order.
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.net.len() {
            if self.net[k].at <= self.now {
                due.push(self.net.swap_remove(k).msg);
            } else {
                k += 1;
            }
        }
        while !due.is_empty() {
            let m = due.swap_remove(self.rng.below(due.len() as u64) as usize);
            if self.cut.contains(&(m.from, m.to)) {
                continue;
            }
            let to = (m.to - 1) as usize;
            if to < n {
                self.deliver(to, m)?;
            }
        }
        // Complete storage writes that are due.
        for i in 0..n {
            while self.nodes[i]
                .persisting
                .front()
                .is_some_and(|(at, _)| *at <= self.now)
                && self.nodes[i].paused_until.is_none()
            {
                if let Some((_, p)) = self.nodes[i].persisting.pop_front() {
                    self.complete_persist(i, p)?;
                }
            }
        }
        let _ = faults;
        Ok(())
    }

    fn deliver(&mut self, i: usize, m: Message) -> Check {
        if self.nodes[i].replica.is_none() {
            return Ok(());
        }
        if self.nodes[i].paused_until.is_some() {
            self.nodes[i].inbox_while_paused.push(m);
            return Ok(());
        }
        self.stats.messages += 1;
        if let Some(r) = self.nodes[i].replica.as_mut() {
            r.step(m);
        }
        self.process(i)
    }

    fn send(&mut self, m: Message) {
        if self.cut.contains(&(m.from, m.to)) || self.rng.chance(self.cfg.loss) {
            return;
        }
        if self.rng.chance(self.cfg.duplicate) {
            let at = self.now + self.rng.below(self.cfg.max_delay + 1);
            self.net.push(InFlight { at, msg: m.clone() });
        }
        let at = self.now + self.rng.below(self.cfg.max_delay + 1);
        self.net.push(InFlight { at, msg: m });
    }

    fn complete_persist(&mut self, i: usize, p: Persist) -> Check {
        self.nodes[i].store.apply(&p);
        for m in p.persisted_messages {
            self.send(m);
        }
        if let (Some(t), Some(r)) = (p.token, self.nodes[i].replica.as_mut()) {
            r.advance(t);
        }
        self.process(i)
    }

    /// Drains a replica's output and checks every invariant.
    fn process(&mut self, i: usize) -> Check {
        loop {
            let Some(r) = self.nodes[i].replica.as_mut() else {
                return Ok(());
            };
            if !r.has_ready() {
                break;
            }
            let mut rd: ReplicaReady = r.ready();
            if let Some(why) = rd.fatal.take() {
                // The node would stop; in the simulation every snapshot is well-formed, so
                // this is a bug in the replica.
                return Err(format!("n{} failed: {why}", i + 1));
            }
            let applied_after = r.kv().applied();
            let digest = r.kv().digest();
            let term = r.core().term();
            if rd.persist.snapshot.is_some() {
                self.stats.snapshots_installed += 1;
            }
            let applied_entries = std::mem::take(&mut rd.applied);
            for e in applied_entries {
                self.observe_applied(i, &e, term)?;
            }
            if applied_after > 0 {
                match self.digests.get(&applied_after) {
                    Some(&d) if d != digest => {
                        return Err(format!(
                            "state-machine safety: n{} has digest {digest:x} at applied index {applied_after}, another replica had {d:x}",
                            i + 1
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.digests.insert(applied_after, digest);
                    }
                }
            }
            for m in rd.messages {
                self.send(m);
            }
            let p = rd.persist;
            if !p.writes() && self.nodes[i].persisting.is_empty() {
                for m in p.persisted_messages {
                    self.send(m);
                }
            } else {
                let at = self.now + self.rng.below(2);
                self.nodes[i].persisting.push_back((at, p));
            }
            for (req, resp) in rd.responses {
                self.on_response(req, resp)?;
            }
        }
        self.check_invariants()
    }

    fn observe_applied(&mut self, i: usize, e: &Entry, observer_term: u64) -> Check {
        match self.committed.get(&e.index) {
            Some((t, d, _)) => {
                if *t != e.term || *d != e.data {
                    return Err(format!(
                        "state-machine safety: n{} applied index {} term {} but another replica applied term {} there",
                        i + 1,
                        e.index,
                        e.term,
                        t
                    ));
                }
            }
            None => {
                self.committed
                    .insert(e.index, (e.term, e.data.clone(), observer_term));
                self.stats.committed = self.stats.committed.max(e.index);
                if e.kind == EntryKind::Command {
                    if let Ok(cmd) = Command::decode(&e.data) {
                        let v = match cmd {
                            Command::Put { value, .. } => value,
                            Command::Cas { to, .. } => to,
                        };
                        self.value_index.entry(v).or_insert(e.index);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_response(&mut self, req: ReqId, resp: Response) -> Check {
        let Some(op) = self.ops.remove(&req) else {
            return Ok(());
        };
        self.clock += 1;
        self.note(format!("reply r{req}: {resp:?}"));
        match (&op.request, &resp) {
            (Request::Put { key, value }, Response::Written)
            | (Request::Cas { key, to: value, .. }, Response::CasOk) => {
                self.acked
                    .entry(key.clone())
                    .or_default()
                    .push((self.clock, value.clone()));
                self.acked_commands.push(command_of(&op.request));
                self.stats.acked_writes += 1;
            }
            (
                Request::Put { .. } | Request::Cas { .. },
                Response::NotLeader { .. } | Response::Dropped,
            ) => {
                self.failed_commands.push(command_of(&op.request));
            }
            (Request::Get { key }, Response::Value(v)) => {
                self.stats.reads += 1;
                let idx = if v == NULL {
                    0
                } else {
                    match self.value_index.get(v) {
                        Some(&i) => i,
                        None => {
                            return Err(format!(
                                "read of {key} returned {v}, which no committed write wrote"
                            ))
                        }
                    }
                };
                let required = self
                    .acked
                    .get(key)
                    .into_iter()
                    .flatten()
                    .filter(|(t, _)| *t < op.invoked)
                    .filter_map(|(_, val)| self.value_index.get(val).copied())
                    .max()
                    .unwrap_or(0);
                if idx < required {
                    return Err(format!(
                        "stale read: r{req} at n{} read {key}={v} (written at index {idx}) but a write at index {required} was acknowledged before the read began",
                        op.node + 1
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_invariants(&mut self) -> Check {
        let n = self.nodes.len();
        let mut new_leaders = Vec::new();
        for i in 0..n {
            let Some(r) = self.nodes[i].replica.as_ref() else {
                continue;
            };
            let c = r.core();
            if c.role() == Role::Leader {
                match self.leaders.get(&c.term()) {
                    Some(&l) if l != c.id() => {
                        return Err(format!(
                            "election safety: n{l} and n{} are both leaders of term {}",
                            c.id(),
                            c.term()
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.leaders.insert(c.term(), c.id());
                        self.stats.elections += 1;
                        self.stats.max_term = self.stats.max_term.max(c.term());
                        new_leaders.push((c.id(), c.term()));
                    }
                }
                // Leader completeness.
                for (&idx, (term, _, seen_term)) in self.committed.range(c.snapshot_index() + 1..) {
                    if *seen_term < c.term() && c.term_at(idx) != Some(*term) {
                        return Err(format!(
                            "leader completeness: n{} leads term {} without entry {idx} (term {term}), committed by term {seen_term}",
                            c.id(),
                            c.term()
                        ));
                    }
                }
            }
            if self.last_role[i] != (c.role(), c.term()) {
                self.last_role[i] = (c.role(), c.term());
            }
        }
        for (id, t) in new_leaders {
            self.note(format!("n{id} leader of term {t}"));
        }
        // Log matching, pairwise.
        for a in 0..n {
            for b in a + 1..n {
                let (Some(ra), Some(rb)) = (
                    self.nodes[a].replica.as_ref(),
                    self.nodes[b].replica.as_ref(),
                ) else {
                    continue;
                };
                let (ca, cb) = (ra.core(), rb.core());
                let lo = ca.snapshot_index().max(cb.snapshot_index()) + 1;
                let hi = ca.last_index().min(cb.last_index());
                let mut matched = false;
                let mut idx = hi;
                while idx >= lo && idx > 0 {
                    let (ea, eb) = (ca.entry(idx), cb.entry(idx));
                    if let (Some(ea), Some(eb)) = (ea, eb) {
                        if ea.term == eb.term {
                            matched = true;
                            if ea.data != eb.data || ea.kind != eb.kind {
                                return Err(format!("log matching: n{} and n{} hold different entries at index {idx} term {}", a + 1, b + 1, ea.term));
                            }
                        } else if matched {
                            return Err(format!(
                                "log matching: n{} and n{} agree on a later entry but differ at index {idx}",
                                a + 1,
                                b + 1
                            ));
                        }
                    }
                    idx -= 1;
                }
            }
        }
        Ok(())
    }

    fn final_checks(&mut self) -> Check {
        let reps: Vec<&Replica> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .collect();
        let leader = reps
            .iter()
            .find(|r| r.core().is_leader())
            .map(|r| r.core().id());
        let Some(leader) = leader else {
            let states: Vec<String> = reps.iter().map(|r| r.core().describe()).collect();
            return Err(format!(
                "liveness: no leader after healing the cluster:\n    {}",
                states.join("\n    ")
            ));
        };
        let applied: Vec<u64> = reps.iter().map(|r| r.kv().applied()).collect();
        if applied.iter().any(|&a| a != applied[0]) {
            let states: Vec<String> = reps.iter().map(|r| r.core().describe()).collect();
            return Err(format!(
                "liveness: replicas did not converge after healing (leader n{leader}, applied {applied:?}):\n    {}",
                states.join("\n    ")
            ));
        }
        let first = reps[0].kv();
        for r in &reps[1..] {
            if r.kv() != first {
                return Err(format!(
                    "divergence: n{} and n{} applied up to {} but hold different states",
                    reps[0].core().id(),
                    r.core().id(),
                    applied[0]
                ));
            }
        }
        let committed: BTreeSet<&Bytes> = self.committed.values().map(|(_, d, _)| d).collect();
        for c in &self.acked_commands {
            if !committed.contains(c) {
                return Err(format!(
                    "lost write: acknowledged {:?} is not in the committed log",
                    Command::decode(c)
                ));
            }
        }
        for c in &self.failed_commands {
            if committed.contains(c) {
                return Err(format!(
                    "false failure: {:?} was reported as definitely not executed but committed",
                    Command::decode(c)
                ));
            }
        }
        Ok(())
    }
}

fn command_of(r: &Request) -> Bytes {
    match r {
        Request::Put { key, value } => Command::Put {
            key: key.clone(),
            value: value.clone(),
        }
        .encode(),
        Request::Cas { key, from, to } => Command::Cas {
            key: key.clone(),
            from: from.clone(),
            to: to.clone(),
        }
        .encode(),
        Request::Get { .. } => Bytes::new(),
    }
}
