//! The history model: events exactly as they were recorded, and the operations paired from them.
//!
//! A history is a sequence of [`Event`]s in real-time order: the position of an event in the
//! file *is* its place in time (the `time` field is informative; order is authoritative). A
//! client operation is an `invoke` event followed later by at most one completion from the same
//! process:
//!
//! * `ok` — it took effect, with the completion's value as its result;
//! * `fail` — it did not take effect (the checker drops it);
//! * `info` — it may or may not have taken effect, at any moment after its invocation, even after
//!   operations that began much later. An invocation that never completes means the same.
//!
//! These are Jepsen's semantics, so histories from Jepsen and from faultline mean the same thing.

use std::fmt;

use serde_json::Value;

use crate::error::HistoryError;

/// Who performed an event: a client process (one operation in flight at a time) or the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A logical client process. Jepsen's rule applies: after an `info` completion the worker
    /// continues under a fresh process id, so each process id is a sequential thread.
    Client(u64),
    /// The fault injector. Its events are kept for reports and ignored by the checker.
    Nemesis,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

/// The `type` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An operation began.
    Invoke,
    /// The operation took effect; the event's value is its result.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// The operation may or may not have taken effect.
    Info,
}

impl EventType {
    /// The name used in JSONL and (as a keyword) in EDN.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }

    /// Parses a type name; `None` for anything else.
    pub fn parse(s: &str) -> Option<EventType> {
        match s {
            "invoke" => Some(EventType::Invoke),
            "ok" => Some(EventType::Ok),
            "fail" => Some(EventType::Fail),
            "info" => Some(EventType::Info),
            _ => None,
        }
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Unique and increasing within a history.
    pub index: u64,
    /// Nanoseconds since the start of the test (monotonic), when known.
    pub time: Option<u64>,
    pub process: Process,
    pub kind: EventType,
    /// The operation's function: `read`, `write`, `cas`, `append`, ...
    pub f: String,
    /// The object the operation acts on, for multi-key histories (checked key by key).
    pub key: Option<Value>,
    pub value: Value,
    /// The node the operation was sent to, when the recorder knew it.
    pub node: Option<String>,
    /// Why the operation failed or is indeterminate, when known.
    pub error: Option<Value>,
    /// 1-based line of the source file the event was read from (0 when built in memory).
    pub line: usize,
}

/// A parsed history: its events, and the name of the file they came from (for messages).
#[derive(Clone, Debug, Default)]
pub struct History {
    pub source: String,
    pub events: Vec<Event>,
}

/// How a client operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    /// Completed with `info`: indeterminate.
    Info,
    /// Never completed: indeterminate, exactly like `info`.
    Pending,
}

impl Outcome {
    /// True when the operation may or may not have taken effect.
    pub fn is_indeterminate(self) -> bool {
        matches!(self, Outcome::Info | Outcome::Pending)
    }
}

/// A client operation: an invocation paired with its completion. Indices point into
/// [`History::events`], so an operation costs a few words however large its values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    /// Position of the `invoke` event.
    pub invoke: usize,
    /// Position of the completion event, if there was one.
    pub completion: Option<usize>,
    pub outcome: Outcome,
}

impl History {
    /// Creates a history from events built in memory (lines are numbered by position).
    pub fn from_events(source: impl Into<String>, mut events: Vec<Event>) -> History {
        for (i, e) in events.iter_mut().enumerate() {
            if e.line == 0 {
                e.line = i + 1;
            }
        }
        History {
            source: source.into(),
            events,
        }
    }

    /// Pairs invocations with completions, enforcing the rules of a well-formed history: a
    /// process has at most one operation in flight, completes only what it invoked, and
    /// completes it with the same function (and key). Nemesis events are skipped.
    pub fn operations(&self) -> Result<Vec<Operation>, HistoryError> {
        let mut ops: Vec<Operation> = Vec::new();
        // process -> position in `ops` of its operation in flight. A small map: processes are
        // few compared with events, and Jepsen retires a process id after each `info`.
        let mut in_flight: rustc_hash::FxHashMap<u64, usize> = Default::default();
        for (pos, e) in self.events.iter().enumerate() {
            let Process::Client(p) = e.process else {
                continue;
            };
            match e.kind {
                EventType::Invoke => {
                    if let Some(&open) = in_flight.get(&p) {
                        let prev = &self.events[ops[open].invoke];
                        return Err(HistoryError::at(
                            &self.source,
                            e.line,
                            format!(
                                "process {p} invoked {:?} while its {:?} from line {} is still in \
                                 flight (a process runs one operation at a time; after a timeout \
                                 the worker must continue under a new process id)",
                                e.f, prev.f, prev.line
                            ),
                        ));
                    }
                    in_flight.insert(p, ops.len());
                    ops.push(Operation {
                        process: p,
                        invoke: pos,
                        completion: None,
                        outcome: Outcome::Pending,
                    });
                }
                EventType::Ok | EventType::Fail | EventType::Info => {
                    let Some(open) = in_flight.remove(&p) else {
                        return Err(HistoryError::at(
                            &self.source,
                            e.line,
                            format!(
                                "process {p} completed {:?} ({}) but has no operation in flight",
                                e.f,
                                e.kind.as_str()
                            ),
                        ));
                    };
                    let inv = &self.events[ops[open].invoke];
                    if inv.f != e.f {
                        return Err(HistoryError::at(
                            &self.source,
                            e.line,
                            format!(
                                "process {p} completed {:?} but invoked {:?} on line {}",
                                e.f, inv.f, inv.line
                            ),
                        ));
                    }
                    if e.key.is_some() && e.key != inv.key {
                        return Err(HistoryError::at(
                            &self.source,
                            e.line,
                            format!(
                                "process {p} completed an operation on key {} but invoked it on \
                                 key {} (line {})",
                                render_key(e.key.as_ref()),
                                render_key(inv.key.as_ref()),
                                inv.line
                            ),
                        ));
                    }
                    let op = &mut ops[open];
                    op.completion = Some(pos);
                    op.outcome = match e.kind {
                        EventType::Ok => Outcome::Ok,
                        EventType::Fail => Outcome::Fail,
                        _ => Outcome::Info,
                    };
                }
            }
        }
        Ok(ops)
    }
}

/// Renders a key for messages: JSON text, or `(none)` for single-object histories.
pub fn render_key(key: Option<&Value>) -> String {
    match key {
        None => "(none)".to_string(),
        Some(k) => crate::text::json_for_terminal(k),
    }
}
