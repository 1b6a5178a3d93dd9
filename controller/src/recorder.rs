//! The history recorder: every event goes through one channel to one writer thread, which
//! appends it to `history.jsonl` as a whole line.
//!
//! # Order is real time, conservatively
//! The file's line order is what the checker takes as real-time order, so it must never claim
//! that one operation finished before another began when it did not. Clients record an
//! invocation *before* sending the request and a completion *after* receiving the answer, and
//! the channel orders sends totally. If a completion line precedes an invocation line, the
//! answer had arrived before that request was sent: the precedence is real. (The converse may
//! not hold — a completion delayed in its task can land after an invocation that really came
//! later — which only makes two operations look concurrent: it can hide a violation in a
//! window of microseconds, never invent one.)
//!
//! # Durability
//! Lines are written within a few milliseconds of arriving (one write per batch of whole lines) and fsynced at least
//! every 100 ms and at the end, so a controller killed with SIGKILL leaves a valid JSONL file
//! up to its last line.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_checker::format::jsonl;
use faultline_checker::{Event, EventType, Process};
use serde_json::Value;

/// How often written lines are forced to disk.
const FSYNC_EVERY: Duration = Duration::from_millis(100);

/// How often the writer collects what the clients sent.
const DRAIN_EVERY: Duration = Duration::from_millis(5);

/// Counts of what was recorded, readable while the test runs.
#[derive(Default)]
pub struct Counts {
    pub invoke: AtomicU64,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

/// A handle for recording events; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
    start: Instant,
    pub counts: Arc<Counts>,
    /// When false, events are counted but not written (only for measuring the recorder's own
    /// cost in `scripts/bench-harness`).
    enabled: bool,
}

struct Pending {
    time: Duration,
    process: Process,
    kind: EventType,
    f: String,
    key: Option<Value>,
    value: Value,
    node: Option<String>,
    error: Option<Value>,
}

/// The writer thread; joining it flushes and fsyncs everything.
pub struct Writer {
    handle: std::thread::JoinHandle<Result<u64, String>>,
}

impl Recorder {
    /// Starts recording into `path` (created, must not exist). `start` is the test's time zero.
    pub fn create(
        path: &Path,
        start: Instant,
        enabled: bool,
    ) -> Result<(Recorder, Writer), String> {
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let (tx, rx) = mpsc::channel::<Pending>();
        let handle = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_loop(file, rx))
            .map_err(|e| format!("cannot start the history writer: {e}"))?;
        Ok((
            Recorder {
                tx,
                start,
                counts: Arc::new(Counts::default()),
                enabled,
            },
            Writer { handle },
        ))
    }

    /// Time since the test started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records one event, stamped now.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        process: Process,
        kind: EventType,
        f: &str,
        key: Option<&str>,
        value: Value,
        node: Option<&str>,
        error: Option<Value>,
    ) {
        let counter = match kind {
            EventType::Invoke => &self.counts.invoke,
            EventType::Ok => &self.counts.ok,
            EventType::Fail => &self.counts.fail,
            EventType::Info => &self.counts.info,
        };
        if process != Process::Nemesis {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if !self.enabled {
            return;
        }
        let pending = Pending {
            time: self.now(),
            process,
            kind,
            f: f.to_string(),
            key: key.map(|k| Value::String(k.to_string())),
            value,
            node: node.map(str::to_string),
            error,
        };
        if self.tx.send(pending).is_err() {
            tracing::error!("the history writer has stopped; an event was not recorded");
        }
    }

    /// Records a nemesis event (`f` = "start" or "stop").
    pub fn nemesis(&self, f: &str, value: Value) {
        self.record(
            Process::Nemesis,
            EventType::Info,
            f,
            None,
            value,
            None,
            None,
        );
    }
}

impl Writer {
    /// Waits until every event sent before all recorders were dropped is on disk. Returns the
    /// number of events written.
    pub fn finish(self) -> Result<u64, String> {
        self.handle
            .join()
            .map_err(|_| "the history writer crashed".to_string())?
    }
}

fn write_loop(mut file: File, rx: mpsc::Receiver<Pending>) -> Result<u64, String> {
    let mut index = 0u64;
    let mut last_time = 0u64;
    let mut last_sync = Instant::now();
    let mut dirty = false;
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut error: Option<String> = None;
    let mut disconnected = false;
    while !disconnected {
        // Poll instead of blocking on the channel: a blocked receiver makes every client's send
        // a futex wake and a context switch (two per operation), which on a small machine is
        // CPU taken from the nodes under test. Draining every few milliseconds turns that into
        // one wake-up per batch; order is unaffected (it is fixed by the sends) and durability
        // is unaffected (fsync runs every 100 ms either way).
        std::thread::sleep(DRAIN_EVERY);
        loop {
            let p = match rx.try_recv() {
                Ok(p) => p,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            };
            // Times are taken by the senders; keep the file's clock monotonic.
            let time = (p.time.as_nanos() as u64).max(last_time);
            last_time = time;
            let event = Event {
                index,
                time: Some(time),
                process: p.process,
                kind: p.kind,
                f: p.f,
                key: p.key,
                value: p.value,
                node: p.node,
                error: p.error,
                line: 0,
            };
            index += 1;
            batch.extend_from_slice(jsonl::event_line(&event).as_bytes());
            batch.push(b'\n');
        }
        if !batch.is_empty() {
            if let Err(e) = file.write_all(&batch) {
                error.get_or_insert(format!("cannot write the history: {e}"));
            }
            batch.clear();
            dirty = true;
        }
        if dirty && last_sync.elapsed() >= FSYNC_EVERY {
            if let Err(e) = file.sync_data() {
                error.get_or_insert(format!("cannot sync the history: {e}"));
            }
            last_sync = Instant::now();
            dirty = false;
        }
    }
    if let Err(e) = file.sync_all() {
        error.get_or_insert(format!("cannot sync the history: {e}"));
    }
    match error {
        Some(e) => Err(e),
        None => Ok(index),
    }
}
