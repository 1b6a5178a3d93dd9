//! The `faultline node` process: storage, peer transport and the HTTP API around one
//! [`Replica`], driven by a single tokio task (the Raft loop) that owns the replica.
//!
//! Time: the loop converts real monotonic time (`std::time::Instant`) into core ticks. Before it
//! handles any event it first catches the tick count up with the clock, so after the process
//! was stopped (SIGSTOP) and resumed, the core sees all the time that passed — a leader whose
//! lease expired meanwhile has already stepped down or lost the lease before it answers a read.
//! If the monotonic clock steps *backwards* (libfaketime, a VM migration, a broken clocksource),
//! the lease is expired at once and ticks go on from the new reading (see [`TickClock`]): the
//! lease is counted in ticks, and ticks that stalled until the clock regained the lost ground
//! would stretch it by the size of the step.
//!
//! Durability: a dedicated storage thread takes the replica's [`Persist`] batches in order,
//! writes whatever is queued, issues one `fdatasync` for all of it (group commit: concurrent
//! proposals share a sync), and only then sends the messages that promised durability and
//! reports back. Meanwhile the loop keeps going: leaders replicate in parallel with their own
//! write, and pipelines appends to followers.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::bugs::{BugHelp, Bugs};
use crate::core::{Config, NodeId};
use crate::events::{ClientReply, Event, Status};
use crate::http::{self, Api};
use crate::replica::{Persist, ReadMode, Replica, ReplicaConfig, ReqId, Response};
use crate::storage::Storage;
use crate::transport::{self, Identity, Inbound, Transport};

/// Command-line arguments of `faultline node`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// This node's id (a positive integer, unique in the cluster).
    /// Required (optional here only so that `--bug help` works alone).
    #[arg(long)]
    pub id: Option<u64>,
    /// Directory for the write-ahead log and snapshots (created if missing). Required.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to serve the http-kv API on (HOST:PORT). Required.
    #[arg(long)]
    pub client_addr: Option<String>,
    /// Address to accept connections from peers on (HOST:PORT). Required.
    #[arg(long)]
    pub peer_addr: Option<String>,
    /// The other members and the address to dial each at: ID=HOST:PORT,... (this node's own
    /// entry, if present, is ignored).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// How reads are made linearizable: read-index (a quorum round per batch of reads) or
    /// lease (leader lease, falling back to read-index).
    #[arg(long, default_value = "read-index")]
    pub read_mode: String,
    /// Switch on a deliberate bug (repeatable); `--bug help` lists them.
    #[arg(long = "bug")]
    pub bugs: Vec<String>,
    /// Length of one core tick.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Minimum election timeout (the actual one is drawn from [T, 2T)).
    #[arg(long, default_value_t = 150)]
    pub election_timeout_ms: u64,
    /// Heartbeat interval.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Clock-drift allowance subtracted from the leader lease (rounded up to whole ticks; must
    /// be shorter than the election timeout).
    #[arg(long, default_value_t = 30)]
    pub lease_drift_ms: u64,
    /// Take a snapshot every this many applied entries.
    #[arg(long, default_value_t = 1000)]
    pub snapshot_threshold: u64,
    /// Answer a request with "timeout, outcome unknown" after this long (at most one day).
    #[arg(long, default_value_t = 3000)]
    pub request_timeout_ms: u64,
    /// Cluster name checked in the peer handshake, so nodes of different clusters never talk
    /// (at most 256 bytes).
    #[arg(long, default_value = "faultline")]
    pub cluster_id: String,
}

/// Validated configuration.
struct Setup {
    id: NodeId,
    data_dir: PathBuf,
    client_addr: String,
    peer_addr: String,
    replica: ReplicaConfig,
    peers: HashMap<NodeId, String>,
    tick: Duration,
    request_timeout: Duration,
}

fn ticks(ms: u64, tick_ms: u64, flag: &str) -> anyhow::Result<u32> {
    let t = ms / tick_ms;
    u32::try_from(t).map_err(|_| anyhow::anyhow!("{flag} {ms} is too large"))
}

/// Longest `--request-timeout-ms` accepted: a day is already far beyond any useful timeout, and
/// a bound keeps deadline arithmetic (`Instant + Duration`) from overflowing.
const MAX_REQUEST_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

fn setup(args: &NodeArgs, bugs: Bugs) -> anyhow::Result<Setup> {
    let missing = |flag: &str| anyhow::anyhow!("{flag} is required (see `faultline node --help`)");
    let id = args.id.ok_or_else(|| missing("--id"))?;
    let data_dir = args.data_dir.clone().ok_or_else(|| missing("--data-dir"))?;
    let client_addr = args
        .client_addr
        .clone()
        .ok_or_else(|| missing("--client-addr"))?;
    let peer_addr = args
        .peer_addr
        .clone()
        .ok_or_else(|| missing("--peer-addr"))?;
    if id == 0 {
        anyhow::bail!("--id must be a positive integer (0 is reserved)");
    }
    if args.cluster_id.len() > transport::MAX_CLUSTER_ID {
        anyhow::bail!(
            "--cluster-id is {} bytes long; at most {} are allowed (it travels in the peer handshake, which is kept small)",
            args.cluster_id.len(),
            transport::MAX_CLUSTER_ID
        );
    }
    let mut peers = HashMap::new();
    for item in &args.peers {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((id, addr)) = item.split_once('=') else {
            anyhow::bail!("--peers: {item:?} is not ID=HOST:PORT");
        };
        let id: u64 = id.trim().parse().map_err(|_| {
            anyhow::anyhow!("--peers: {id:?} in {item:?} is not a node id (a positive integer)")
        })?;
        if id == 0 {
            anyhow::bail!("--peers: node id 0 is reserved");
        }
        let addr = addr.trim();
        if addr.is_empty() || !addr.contains(':') {
            anyhow::bail!("--peers: {addr:?} for node {id} is not HOST:PORT");
        }
        if id == args.id.unwrap_or(0) {
            continue;
        }
        if peers.insert(id, addr.to_string()).is_some() {
            anyhow::bail!("--peers names node {id} twice");
        }
    }
    let read_mode = match args.read_mode.as_str() {
        "read-index" => ReadMode::ReadIndex,
        "lease" => ReadMode::Lease,
        other => anyhow::bail!("--read-mode {other:?}: expected read-index or lease"),
    };
    if args.tick_ms == 0 {
        anyhow::bail!("--tick-ms must be at least 1");
    }
    let mut voters: Vec<NodeId> = peers.keys().copied().collect();
    voters.push(id);
    voters.sort_unstable();
    let mut core = Config::new(id, voters);
    core.election_tick = ticks(
        args.election_timeout_ms,
        args.tick_ms,
        "--election-timeout-ms",
    )?;
    core.heartbeat_tick = ticks(args.heartbeat_ms, args.tick_ms, "--heartbeat-ms")?;
    // Whole ticks, rounded up (a partial tick of drift still needs a tick of margin). No
    // multiplication back to milliseconds, so no overflow for any u64 the flag can hold.
    let drift_ticks = args.lease_drift_ms.div_ceil(args.tick_ms);
    core.lease_drift_ticks = match u32::try_from(drift_ticks) {
        Ok(t) if t < core.election_tick => t,
        _ => anyhow::bail!(
            "--lease-drift-ms {} is too large: the drift allowance must be shorter than the \
             election timeout (--election-timeout-ms {})",
            args.lease_drift_ms,
            args.election_timeout_ms
        ),
    };
    core.bugs = bugs;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    core.seed = nanos ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    core.validate().map_err(|e| {
        anyhow::anyhow!(
            "{e} (check --id, --peers, --election-timeout-ms, --heartbeat-ms and --tick-ms)"
        )
    })?;
    if read_mode == ReadMode::Lease
        && u64::from(core.election_tick) <= 2 + u64::from(core.lease_drift_ticks)
    {
        anyhow::bail!("--read-mode lease needs --election-timeout-ms well above --lease-drift-ms plus two ticks");
    }
    if args.snapshot_threshold == 0 {
        anyhow::bail!("--snapshot-threshold must be at least 1");
    }
    if args.request_timeout_ms > MAX_REQUEST_TIMEOUT_MS {
        anyhow::bail!(
            "--request-timeout-ms {} is too large (at most {MAX_REQUEST_TIMEOUT_MS}, one day)",
            args.request_timeout_ms
        );
    }
    Ok(Setup {
        id,
        data_dir,
        client_addr,
        peer_addr,
        replica: ReplicaConfig {
            core,
            read_mode,
            snapshot_threshold: args.snapshot_threshold,
        },
        peers,
        tick: Duration::from_millis(args.tick_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
    })
}

/// Runs one node until it is killed (or gets SIGINT/SIGTERM). `--bug help` prints the list of
/// bugs and returns.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    if args.bugs.iter().any(|b| b == "help") {
        print!("{BugHelp}");
        return Ok(());
    }
    let mut bugs = Bugs::default();
    for b in &args.bugs {
        bugs.enable(b).map_err(|e| anyhow::anyhow!("--bug: {e}"))?;
    }
    let setup = setup(&args, bugs)?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        tokio::select! {
            r = serve(args.cluster_id.clone(), setup) => r,
            r = shutdown_signal() => {
                tracing::info!("shutting down on signal");
                r
            }
        }
    })
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot install a SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

async fn serve(cluster_id: String, setup: Setup) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = setup.data_dir.clone();
    let id = setup.id;
    let (mut storage, recovered) =
        tokio::task::spawn_blocking(move || Storage::open(&data_dir, id))
            .await
            .map_err(|e| anyhow::anyhow!("storage recovery crashed: {e}"))?
            .map_err(|e| anyhow::anyhow!("--data-dir {}: {e}", setup.data_dir.display()))?;
    storage.skip_fsync = setup.replica.core.bugs.skip_fsync;
    let recovered_entries = recovered.entries.len();
    let recovered_snapshot = recovered.snapshot.as_ref().map_or(0, |s| s.index);
    let replica = Replica::recover(setup.replica.clone(), recovered).map_err(|e| {
        anyhow::anyhow!(
            "--data-dir {}: cannot recover: {e}",
            setup.data_dir.display()
        )
    })?;

    let client_listener = TcpListener::bind(&setup.client_addr).await.map_err(|e| {
        anyhow::anyhow!("--client-addr {:?}: cannot listen: {e}", setup.client_addr)
    })?;
    let peer_listener = TcpListener::bind(&setup.peer_addr)
        .await
        .map_err(|e| anyhow::anyhow!("--peer-addr {:?}: cannot listen: {e}", setup.peer_addr))?;
    let client_addr = transport::local(&client_listener);
    tracing::info!(
        id,
        client = %client_addr,
        peer = %transport::local(&peer_listener),
        term = replica.core().term(),
        entries = recovered_entries,
        snapshot_index = recovered_snapshot,
        bugs = ?setup.replica.core.bugs.names(),
        "node started"
    );

    let me = Identity {
        cluster: cluster_id,
        id,
        client_addr: client_addr.clone(),
    };
    let transport = transport::start_outbound(&me, &setup.peers);
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
    let members = setup.replica.core.voters.clone();
    let max_catch_up = 16 * u64::from(setup.replica.core.election_tick);
    tokio::spawn(transport::serve_inbound(
        peer_listener,
        me,
        members.clone(),
        inbound_tx,
    ));

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let storage_tx = start_storage_thread(storage, transport.clone(), events_tx.clone())?;

    let api = Api {
        events: events_tx.clone(),
        timeout: setup.request_timeout,
    };
    let router = http::router(api);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(client_listener, router).await {
            tracing::error!(error = %e, "the http-kv server stopped");
        }
    });

    let mut raft = RaftLoop {
        replica,
        transport,
        storage_tx,
        pending: HashMap::new(),
        deadlines: VecDeque::new(),
        next_req: 1,
        started,
        clock: TickClock::new(started, setup.tick, max_catch_up),
        request_timeout: setup.request_timeout,
        client_addrs: HashMap::new(),
        client_addr,
        members,
    };
    raft.run(events_rx, inbound_rx).await
}

fn start_storage_thread(
    mut storage: Storage,
    transport: Transport,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<std::sync::mpsc::Sender<Persist>> {
    let (tx, rx) = std::sync::mpsc::channel::<Persist>();
    std::thread::Builder::new()
        .name("storage".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let mut result = Ok(());
                for p in &batch {
                    result = storage.write(p);
                    if result.is_err() {
                        break;
                    }
                }
                if result.is_ok() {
                    result = storage.sync();
                }
                if let Err(e) = result {
                    let _ = events.send(Event::StorageFailed(e.to_string()));
                    return;
                }
                // Durable: now the messages that promised it may leave.
                for p in batch {
                    for m in p.persisted_messages {
                        transport.send(m);
                    }
                    if events.send(Event::Persisted(p.token)).is_err() {
                        return;
                    }
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the storage thread: {e}"))?;
    Ok(tx)
}

/// Turns readings of the monotonic clock into core ticks.
///
/// Ticks are counted from a base reading: at reading `now`, `base_ticks + (now - base) / tick`
/// ticks are due in all, so the ticks missed while the process was stopped arrive all at once.
/// The monotonic clock can step backwards all the same (libfaketime, a VM migration, a broken
/// clocksource). Then the clock is re-based at the new reading, so ticks go on at the normal rate
/// from there instead of stalling until the clock regains the lost ground, and the caller is told
/// so it can expire the lease: the time between the previous reading and the step is lost to the
/// tick count, which therefore no longer bounds the real time since anything was sent.
///
/// A forward jump delivers its ticks, but at most `max_catch_up` of them (enough for every
/// timer in the core to fire, and a lease to run out, many times over): a clock set a year ahead
/// must not make the loop spin through billions of ticks. Ticks withheld that way also leave the
/// count behind real time, so they expire the lease too.
struct TickClock {
    tick: Duration,
    base: Instant,
    base_ticks: u64,
    /// The latest reading.
    last: Instant,
    /// Ticks delivered so far.
    done: u64,
    max_catch_up: u64,
}

/// What one clock reading asks of the core.
#[derive(Debug, PartialEq, Eq)]
struct ClockReading {
    /// Ticks to deliver now.
    ticks: u64,
    /// The clock went back by this much since the previous reading.
    stepped_back: Option<Duration>,
    /// More ticks were due than `max_catch_up`: the rest were dropped.
    clamped: bool,
}

impl TickClock {
    fn new(start: Instant, tick: Duration, max_catch_up: u64) -> TickClock {
        TickClock {
            tick: tick.max(Duration::from_nanos(1)),
            base: start,
            base_ticks: 0,
            last: start,
            done: 0,
            max_catch_up: max_catch_up.max(1),
        }
    }

    fn read(&mut self, now: Instant) -> ClockReading {
        if now < self.last {
            let back = self.last.duration_since(now);
            self.base = now;
            self.base_ticks = self.done;
            self.last = now;
            return ClockReading {
                ticks: 0,
                stepped_back: Some(back),
                clamped: false,
            };
        }
        self.last = now;
        let since = now.duration_since(self.base).as_nanos() / self.tick.as_nanos();
        let due = self
            .base_ticks
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
            .saturating_sub(self.done);
        let clamped = due > self.max_catch_up;
        let ticks = due.min(self.max_catch_up);
        self.done += ticks;
        if clamped {
            // Re-base so the dropped ticks are not owed later.
            self.base = now;
            self.base_ticks = self.done;
        }
        ClockReading {
            ticks,
            stepped_back: None,
            clamped,
        }
    }
}

/// Reads the clock at `now` and brings `replica` up to date with it: expires the lease if the
/// clock went backwards (or jumped further ahead than is caught up), then delivers the ticks due.
fn advance_clock(clock: &mut TickClock, replica: &mut Replica, now: Instant) {
    let r = clock.read(now);
    if let Some(back) = r.stepped_back {
        tracing::warn!(
            back_ms = back.as_millis() as u64,
            "the monotonic clock went backwards; the leader lease (if any) is expired and reads \
             go through ReadIndex until a new heartbeat round renews it"
        );
        replica.expire_lease();
    }
    if r.clamped {
        tracing::warn!(
            ticks = r.ticks,
            "far more time passed since the last clock reading than is worth replaying tick by \
             tick (a long pause, or the monotonic clock jumped ahead); catching up a bounded \
             number of ticks and expiring the leader lease (if any)"
        );
        replica.expire_lease();
    }
    for _ in 0..r.ticks {
        replica.tick();
    }
}

struct RaftLoop {
    replica: Replica,
    transport: Transport,
    storage_tx: std::sync::mpsc::Sender<Persist>,
    pending: HashMap<ReqId, oneshot::Sender<ClientReply>>,
    /// Request deadlines in submission order (all requests share one timeout).
    deadlines: VecDeque<(Instant, ReqId)>,
    next_req: ReqId,
    started: Instant,
    clock: TickClock,
    request_timeout: Duration,
    /// Peers' client addresses, learned from their handshakes.
    client_addrs: HashMap<NodeId, String>,
    client_addr: String,
    members: Vec<NodeId>,
}

enum Wake {
    Event(Event),
    Inbound(Inbound),
    Tick,
    Closed,
}

impl RaftLoop {
    async fn run(
        &mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut inbound: mpsc::UnboundedReceiver<Inbound>,
    ) -> anyhow::Result<()> {
        let mut interval = tokio::time::interval(self.clock.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let wake = tokio::select! {
                e = events.recv() => e.map_or(Wake::Closed, Wake::Event),
                m = inbound.recv() => m.map_or(Wake::Closed, Wake::Inbound),
                _ = interval.tick() => Wake::Tick,
            };
            // Time first: nothing below may act on a stale view of the clock.
            self.catch_up_ticks();
            match wake {
                Wake::Event(e) => self.handle_event(e)?,
                Wake::Inbound(m) => self.handle_inbound(m),
                Wake::Tick => {}
                Wake::Closed => return Ok(()),
            }
            // Batch everything else already waiting into the same ready (one WAL write, one
            // round of appends).
            for _ in 0..4096 {
                if let Ok(m) = inbound.try_recv() {
                    self.handle_inbound(m);
                } else if let Ok(e) = events.try_recv() {
                    self.handle_event(e)?;
                } else {
                    break;
                }
            }
            self.expire_requests();
            self.drain_ready()?;
        }
    }

    fn catch_up_ticks(&mut self) {
        advance_clock(&mut self.clock, &mut self.replica, Instant::now());
    }

    fn handle_inbound(&mut self, m: Inbound) {
        match m {
            Inbound::Message(m) => self.replica.step(m),
            Inbound::PeerClientAddr(id, addr) => {
                self.client_addrs.insert(id, addr);
            }
        }
    }

    fn handle_event(&mut self, e: Event) -> anyhow::Result<()> {
        match e {
            Event::Client { request, reply } => {
                let req = self.next_req;
                self.next_req += 1;
                self.pending.insert(req, reply);
                self.deadlines
                    .push_back((Instant::now() + self.request_timeout, req));
                self.replica.submit(req, request);
            }
            Event::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Event::LocalRead { key, reply } => {
                let _ = reply.send(self.replica.local_value(&key));
            }
            Event::Persisted(token) => {
                if let Some(t) = token {
                    self.replica.advance(t);
                }
            }
            Event::StorageFailed(e) => {
                anyhow::bail!(
                    "storage failed, stopping (a node that cannot persist must not take part): {e}"
                )
            }
        }
        Ok(())
    }

    fn expire_requests(&mut self) {
        let now = Instant::now();
        while self.deadlines.front().is_some_and(|(d, _)| *d <= now) {
            if let Some((_, req)) = self.deadlines.pop_front() {
                if let Some(tx) = self.pending.remove(&req) {
                    self.replica.forget(req);
                    let _ = tx.send(ClientReply::TimedOut);
                }
            }
        }
    }

    fn drain_ready(&mut self) -> anyhow::Result<()> {
        while self.replica.has_ready() {
            let rd = self.replica.ready();
            if let Some(why) = rd.fatal {
                // Nothing of this ready is sent or persisted: the durable state stays the
                // consistent one from before, which a restart recovers.
                anyhow::bail!(
                    "{why}; stopping (restart the node: it recovers its last durable state and \
                     fetches the snapshot again)"
                );
            }
            for m in rd.messages {
                self.transport.send(m);
            }
            let p = rd.persist;
            if p.writes() || !p.persisted_messages.is_empty() || p.token.is_some() {
                // The storage thread only stops after reporting a failure, which ends this loop.
                let _ = self.storage_tx.send(p);
            }
            for (req, resp) in rd.responses {
                if let Some(tx) = self.pending.remove(&req) {
                    let addr = match &resp {
                        Response::NotLeader { leader: Some(l) } => {
                            self.client_addrs.get(l).cloned()
                        }
                        _ => None,
                    };
                    let _ = tx.send(ClientReply::Done(resp, addr));
                }
            }
        }
        Ok(())
    }

    fn status(&self) -> Status {
        let c = self.replica.core();
        let leader = c.leader();
        let leader_client_addr = match leader {
            Some(l) if l == c.id() => Some(self.client_addr.clone()),
            Some(l) => self.client_addrs.get(&l).cloned(),
            None => None,
        };
        Status {
            id: c.id(),
            role: c.role().as_str(),
            term: c.term(),
            leader,
            leader_client_addr,
            commit_index: c.commit_index(),
            applied_index: self.replica.kv().applied(),
            last_log_index: c.last_index(),
            snapshot_index: c.snapshot_index(),
            wall_clock_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            monotonic_ms: self.started.elapsed().as_millis() as u64,
            read_mode: self.replica.read_mode().as_str(),
            bugs: self.replica.bugs().names(),
            snapshots_installed: self.replica.snapshots_installed(),
            snapshots_taken: self.replica.snapshots_taken(),
            state_digest: format!("{:016x}", self.replica.kv().digest()),
            keys: self.replica.kv().len(),
            pending_requests: self.pending.len(),
            client_addr: self.client_addr.clone(),
            members: self.members.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_tick_clock_delivers_the_ticks_missed_while_stopped_all_at_once() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, TICK, 1000);
        assert_eq!(c.read(t0 + ms(35)).ticks, 3);
        assert_eq!(c.read(t0 + ms(39)).ticks, 0);
        // A pause of two seconds: all 200 ticks at the first reading after it.
        let r = c.read(t0 + ms(2040));
        assert_eq!((r.ticks, r.stepped_back, r.clamped), (201, None, false));
    }

    /// A backward step is reported, and ticks go on at the normal rate from the new reading
    /// instead of stalling until the clock is back where it was (which would stretch the lease).
    #[test]
    fn the_tick_clock_reports_a_backward_step_and_keeps_ticking_after_it() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, TICK, 1000);
        assert_eq!(c.read(t0 + ms(1000)).ticks, 100);
        let r = c.read(t0 + ms(400));
        assert_eq!((r.ticks, r.stepped_back), (0, Some(ms(600))));
        assert_eq!(
            c.read(t0 + ms(450)).ticks,
            5,
            "ticking goes on after the step"
        );
        assert_eq!(c.read(t0 + ms(1100)).ticks, 65);
    }

    #[test]
    fn the_tick_clock_bounds_the_catch_up_after_a_huge_forward_jump() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, TICK, 1000);
        let year = Duration::from_secs(365 * 24 * 3600);
        let r = c.read(t0 + year);
        assert_eq!((r.ticks, r.clamped), (1000, true));
        // The dropped ticks are not owed later.
        assert_eq!(c.read(t0 + year + ms(20)).ticks, 2);
    }

    /// A one-node lease-mode leader, driven by the clock from `t0` for a second.
    fn lease_leader(t0: Instant) -> (Replica, TickClock) {
        let cfg = ReplicaConfig {
            core: Config::new(1, vec![1]),
            read_mode: ReadMode::Lease,
            snapshot_threshold: 1000,
        };
        let mut r = Replica::new(cfg).unwrap();
        let mut clock = TickClock::new(t0, TICK, 1000);
        for i in 0..=100 {
            advance_clock(&mut clock, &mut r, t0 + ms(10 * i));
            settle(&mut r);
        }
        assert!(r.core().is_leader());
        (r, clock)
    }

    /// Persists (instantly) and drops everything a replica has to say.
    fn settle(r: &mut Replica) {
        while r.has_ready() {
            let rd = r.ready();
            assert_eq!(rd.fatal, None);
            if let Some(t) = rd.persist.token {
                r.advance(t);
            }
        }
    }

    /// The node's side of lease safety under a backward clock step: the leader stops serving
    /// lease reads at once, and regains the lease only from a heartbeat round sent after the
    /// step, with ticks running normally again.
    #[test]
    fn a_backward_clock_step_expires_the_lease_until_a_new_round_renews_it() {
        let t0 = Instant::now();
        let (mut r, mut clock) = lease_leader(t0);
        assert!(
            r.core().lease_read_index().is_some(),
            "{}",
            r.core().describe()
        );
        // Back by half a second: with ticks stalled until the clock is back at t0+1s, the lease
        // would have stayed valid for that half second on top of its length.
        advance_clock(&mut clock, &mut r, t0 + ms(500));
        settle(&mut r);
        assert!(
            r.core().lease_read_index().is_none(),
            "no lease reads across a backward step"
        );
        for i in 1..=10 {
            advance_clock(&mut clock, &mut r, t0 + ms(500 + 10 * i));
            settle(&mut r);
        }
        assert!(
            r.core().lease_read_index().is_some(),
            "a heartbeat round after the step renews the lease"
        );
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn setup_with(extra: &[&str]) -> anyhow::Result<Setup> {
        let mut args = vec![
            "node",
            "--id",
            "1",
            "--data-dir",
            "/nonexistent",
            "--client-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let cli = Cli::try_parse_from(args)?;
        setup(&cli.node, Bugs::default())
    }

    #[test]
    fn absurd_lease_drift_timeout_and_cluster_id_values_are_flag_errors_not_overflows() {
        let max = u64::MAX.to_string();
        let near_max = (u64::MAX - 3).to_string();
        for (flag, value) in [
            ("--lease-drift-ms", max.as_str()),
            ("--lease-drift-ms", near_max.as_str()),
            ("--lease-drift-ms", "150"),
            ("--request-timeout-ms", max.as_str()),
        ] {
            for mode in ["read-index", "lease"] {
                let err = setup_with(&[flag, value, "--read-mode", mode])
                    .err()
                    .unwrap_or_else(|| panic!("{flag} {value} must be refused"))
                    .to_string();
                assert!(err.contains(flag), "{flag} {value}: {err}");
            }
        }
        let long_cluster = "c".repeat(transport::MAX_CLUSTER_ID + 1);
        let err = setup_with(&["--cluster-id", &long_cluster]).err().unwrap();
        assert!(err.to_string().contains("--cluster-id"), "{err}");
        let s = setup_with(&["--lease-drift-ms", "25", "--read-mode", "lease"]).unwrap();
        assert_eq!(
            s.replica.core.lease_drift_ticks, 3,
            "rounded up to whole ticks"
        );
    }
}
