//! Reading a run folder (or a bare history) into what the report shows, on one time axis:
//! nanoseconds since the test started, the clock of the history's `time` field, which the
//! nemesis's fault records and the status sampler share.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use faultline_checker::format::{self, Format, Independent};
use faultline_checker::{
    check_history, CheckOptions, History, ModelSpec, NilReads, Outcome, Process,
};
use serde_json::{json, Value};

use super::escape;

/// Where the report's inputs are.
pub struct Inputs {
    /// The run folder: node logs, `nodes/status.jsonl`, `test.toml` and `failures/` are looked
    /// up here, and the report links files relative to it.
    pub dir: PathBuf,
    pub history: PathBuf,
    pub format: Option<Format>,
    /// `results.json` of a `faultline test` run, if there is one.
    pub results: Option<PathBuf>,
    /// Check the history with this model when there is no `results.json` verdict.
    pub model: Option<ModelSpec>,
    /// What a read of nil means in that check (`None`: by the history's format).
    pub nil_reads: Option<NilReads>,
}

/// One client operation, with its times on the report's time axis.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    /// Position of the invoke event in [`History::events`].
    pub invoke: usize,
    pub completion: Option<usize>,
    pub start_ns: u64,
    /// `None` when the operation never completed.
    pub end_ns: Option<u64>,
    pub process: u64,
    pub outcome: Outcome,
    /// Row of the timeline: processes that never overlap in time share a row, so a worker
    /// that continues under a fresh process id after a timeout stays on its row.
    pub lane: u32,
}

impl Op {
    pub fn latency_ns(&self) -> Option<u64> {
        self.end_ns.map(|e| e.saturating_sub(self.start_ns))
    }
}

/// A fault, from start to stop.
#[derive(Clone, Debug)]
pub struct Fault {
    pub id: Option<u64>,
    pub fault: String,
    pub aim: Option<String>,
    pub nodes: Vec<String>,
    pub start_ns: u64,
    /// `None` if it was never healed before the history ended.
    pub end_ns: Option<u64>,
    /// Everything else the nemesis recorded about it (partition shape, clock offset, errors).
    pub detail: Value,
}

impl Fault {
    /// `kill n1`, `partition n1,n2 | n3`, ...: which fault, which nodes.
    pub fn label(&self) -> String {
        if self.nodes.is_empty() {
            self.fault.clone()
        } else {
            format!("{} {}", self.fault, self.nodes.join(","))
        }
    }
}

/// What one node's `/status` said over time, merged into runs of equal answers.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
    pub node: String,
    pub segments: Vec<Segment>,
}

/// A stretch of time over which a node's samples said the same.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub from_ns: u64,
    pub to_ns: u64,
    /// `None`: the node did not answer.
    pub role: Option<String>,
    pub term: Option<u64>,
    pub leader: Option<String>,
    /// The version the node ran (during a rolling upgrade; `None` otherwise).
    pub version: Option<String>,
}

/// A node that the samples first show leading a term.
#[derive(Clone, Debug)]
pub struct LeaderChange {
    pub time_ns: u64,
    pub node: String,
    pub term: u64,
}

/// The last lines of a node's log, and its warnings and errors.
#[derive(Clone, Debug, Default)]
pub struct NodeLog {
    pub node: String,
    pub file: String,
    pub lines: usize,
    pub warnings: usize,
    pub errors: usize,
    pub notable: Vec<String>,
    pub tail: Vec<String>,
}

/// Everything the report is made from.
pub struct Run {
    pub dir: PathBuf,
    /// The history file, relative to `dir` when it is inside it (for links).
    pub history_link: String,
    pub results: Option<Value>,
    pub test_toml: Option<String>,
    pub history: History,
    pub ops: Vec<Op>,
    pub lanes: Vec<Vec<u64>>,
    /// The history had no `time` fields: event positions stand in for time (1 ms each).
    pub synthetic_time: bool,
    pub end_ns: u64,
    pub faults: Vec<Fault>,
    /// A rolling upgrade's steps, as windows on the timeline (not counted as faults).
    pub upgrade_steps: Vec<Fault>,
    pub status: Vec<NodeStatus>,
    pub leader_changes: Vec<LeaderChange>,
    /// `{"kind": ..., "model": ..., "report": ...}` as in `results.json`, or `Null`.
    pub checker: Value,
    pub verdict: String,
    pub explanation: Vec<String>,
    pub logs: Vec<NodeLog>,
    /// Anything odd about the inputs that the reader of the report should know.
    pub notes: Vec<String>,
    /// The report is written into `dir`, so relative links to the run's files work.
    pub links: bool,
}

impl Run {
    /// Time of an event on the report's axis.
    pub fn time_of(&self, pos: usize) -> u64 {
        time_of(&self.history, pos, self.synthetic_time)
    }

    /// Position of the event with this `index` (indices increase along the history).
    pub fn position_of_index(&self, index: u64) -> Option<usize> {
        self.history
            .events
            .binary_search_by_key(&index, |e| e.index)
            .ok()
    }

    /// The op whose invoke event has this `index`.
    pub fn op_by_index(&self, index: u64) -> Option<&Op> {
        let pos = self.position_of_index(index)?;
        let i = self.ops.binary_search_by_key(&pos, |o| o.invoke).ok()?;
        self.ops.get(i)
    }

    /// The linearizability failures, as the checker reported them.
    pub fn failures(&self) -> &[Value] {
        self.checker
            .pointer("/report/failures")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A field of `results.json`.
    pub fn result(&self, pointer: &str) -> Option<&Value> {
        self.results.as_ref().and_then(|r| r.pointer(pointer))
    }
}

fn time_of(history: &History, pos: usize, synthetic: bool) -> u64 {
    if synthetic {
        pos as u64 * 1_000_000
    } else {
        history.events[pos].time.unwrap_or(0)
    }
}

/// Most lines kept from the end of each node log, and most warnings/errors kept.
const LOG_TAIL: usize = 40;
const LOG_NOTABLE: usize = 40;
/// Longest log line shown, in characters.
const LOG_LINE_CHARS: usize = 400;

pub fn load(inputs: &Inputs) -> Result<Run, String> {
    let results = match &inputs.results {
        Some(path) => Some(read_json(path)?),
        None => None,
    };
    let parsed = format::read_path(&inputs.history, inputs.format, Independent::Auto)
        .map_err(|e| e.to_string())?;
    let mut notes: Vec<String> = parsed.warnings.clone();
    let parsed_format = parsed.format;
    let history = parsed.history;
    let raw_ops = history.operations().map_err(|e| e.to_string())?;

    let synthetic_time = history.events.iter().any(|e| e.time.is_none());
    if synthetic_time {
        notes.push(
            "the history has no time for some events: the time axis shows event order (each \
             event 1 ms apart) instead"
                .to_string(),
        );
    }
    let mut ops: Vec<Op> = raw_ops
        .iter()
        .map(|o| Op {
            invoke: o.invoke,
            completion: o.completion,
            start_ns: time_of(&history, o.invoke, synthetic_time),
            end_ns: o.completion.map(|c| time_of(&history, c, synthetic_time)),
            process: o.process,
            outcome: o.outcome,
            lane: 0,
        })
        .collect();
    let lanes = assign_lanes(&mut ops);

    let mut end_ns = history
        .events
        .len()
        .checked_sub(1)
        .map(|last| time_of(&history, last, synthetic_time))
        .unwrap_or(0);

    let faults = match results.as_ref().and_then(|r| r.get("faults")) {
        Some(Value::Array(list)) if !list.is_empty() => faults_from_results(list),
        _ => faults_from_history(&history, synthetic_time),
    };
    let upgrade_steps = match results.as_ref().and_then(|r| r.pointer("/upgrade/steps")) {
        Some(Value::Array(steps)) => upgrade_steps(steps),
        _ => Vec::new(),
    };
    if let Some(Value::Array(hosts)) = results.as_ref().and_then(|r| r.get("hosts")) {
        notes.extend(host_notes(hosts));
    }
    for f in faults.iter().chain(&upgrade_steps) {
        end_ns = end_ns.max(f.end_ns.unwrap_or(f.start_ns));
    }

    let status_path = inputs.dir.join("nodes").join("status.jsonl");
    let (status, leader_changes) = if status_path.is_file() {
        read_status(&status_path, &mut notes)
    } else {
        (Vec::new(), Vec::new())
    };
    for s in &status {
        if let Some(last) = s.segments.last() {
            end_ns = end_ns.max(last.to_ns);
        }
    }

    // The verdict: results.json's, or a check made now.
    let (checker, verdict, explanation) = match &results {
        Some(r) => (
            r.get("checker").cloned().unwrap_or(Value::Null),
            r.get("verdict")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
            r.get("explanation")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(value_string).collect())
                .unwrap_or_default(),
        ),
        None => match &inputs.model {
            Some(spec) => {
                let options = CheckOptions {
                    stop_at_first_failure: false,
                    nil_reads: inputs
                        .nil_reads
                        .unwrap_or_else(|| parsed_format.default_nil_reads()),
                    ..CheckOptions::default()
                };
                let report = check_history(spec, &history, &options).map_err(|e| e.to_string())?;
                if let Some(note) = report.unknown_reads_note() {
                    notes.push(note);
                }
                let sentences = report
                    .failures
                    .iter()
                    .map(|f| match &f.key {
                        Some(k) => format!("key {k}: {}", f.sentence),
                        None => f.sentence.clone(),
                    })
                    .chain(
                        report
                            .unknown
                            .iter()
                            .map(|u| format!("a key was not decided: {}", u.reason)),
                    )
                    .collect();
                let verdict = report.verdict.as_str().to_string();
                let checker =
                    json!({"kind": "linearizable", "model": spec.name(), "report": report});
                (checker, verdict, sentences)
            }
            None => {
                notes.push(
                    "no results.json and no --model: the history was not checked".to_string(),
                );
                (Value::Null, "not checked".to_string(), Vec::new())
            }
        },
    };

    let test_toml = std::fs::read_to_string(inputs.dir.join("test.toml")).ok();
    let logs = read_node_logs(&inputs.dir.join("nodes"));
    let history_link = inputs
        .history
        .strip_prefix(&inputs.dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| inputs.history.to_string_lossy().into_owned());

    Ok(Run {
        dir: inputs.dir.clone(),
        history_link,
        results,
        test_toml,
        history,
        ops,
        lanes,
        synthetic_time,
        end_ns: end_ns.max(1),
        faults,
        upgrade_steps,
        status,
        leader_changes,
        checker,
        verdict,
        explanation,
        logs,
        notes,
        links: true,
    })
}

/// What the report says about SSH hosts: where each node ran and how far its clock was off,
/// and any host whose clock was too far off or that stopped answering.
fn host_notes(hosts: &[Value]) -> Vec<String> {
    let mut notes = Vec::new();
    let placed: Vec<String> = hosts
        .iter()
        .map(|h| {
            format!(
                "{} on {} (clock {:+.1} ms ± {:.1} ms)",
                h["node"].as_str().unwrap_or("?"),
                h["name"].as_str().unwrap_or("?"),
                h["clock_offset_ms"].as_f64().unwrap_or(f64::NAN),
                h["clock_rtt_ms"].as_f64().unwrap_or(f64::NAN) / 2.0
            )
        })
        .collect();
    notes.push(format!(
        "nodes ran on SSH hosts: {}; client times are the controller's",
        placed.join(", ")
    ));
    for h in hosts {
        let name = h["name"].as_str().unwrap_or("?");
        if let Some(w) = h["warning"].as_str() {
            notes.push(w.to_string());
        }
        for outage in h["unreachable"].as_array().into_iter().flatten() {
            let from = outage[0].as_f64().unwrap_or(f64::NAN) / 1e3;
            notes.push(match outage[1].as_f64() {
                Some(to) => format!(
                    "host {name} did not answer from {from:.1} s to {:.1} s of the test; its \
                     faults were healed when it came back",
                    to / 1e3
                ),
                None => format!(
                    "host {name} stopped answering at {from:.1} s of the test and did not come \
                     back before the end"
                ),
            });
        }
    }
    notes
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: line {}, column {}: not valid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

fn value_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Packs processes into rows: a process takes the row that fell free longest ago, or a new
/// one. A process occupies its row from its first invocation to its last completion; an
/// operation that never completed holds it only for an instant (it is drawn open-ended).
fn assign_lanes(ops: &mut [Op]) -> Vec<Vec<u64>> {
    // process -> (first start, last end)
    let mut life: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for o in ops.iter() {
        let end = o.end_ns.unwrap_or(o.start_ns.saturating_add(1));
        let e = life.entry(o.process).or_insert((o.start_ns, end));
        e.0 = e.0.min(o.start_ns);
        e.1 = e.1.max(end);
    }
    let mut order: Vec<(u64, u64, u64)> = life.iter().map(|(&p, &(s, e))| (s, e, p)).collect();
    order.sort_unstable();
    // Free rows, by the time they fell free (min-heap).
    let mut free: std::collections::BinaryHeap<std::cmp::Reverse<(u64, u32)>> =
        std::collections::BinaryHeap::new();
    let mut busy: std::collections::BinaryHeap<std::cmp::Reverse<(u64, u32)>> =
        std::collections::BinaryHeap::new();
    let mut lanes: Vec<Vec<u64>> = Vec::new();
    let mut lane_of: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    for (start, end, process) in order {
        while let Some(&std::cmp::Reverse((t, lane))) = busy.peek() {
            if t > start {
                break;
            }
            busy.pop();
            free.push(std::cmp::Reverse((t, lane)));
        }
        let lane = match free.pop() {
            Some(std::cmp::Reverse((_, lane))) => lane,
            None => {
                lanes.push(Vec::new());
                (lanes.len() - 1) as u32
            }
        };
        lanes[lane as usize].push(process);
        lane_of.insert(process, lane);
        busy.push(std::cmp::Reverse((end, lane)));
    }
    for o in ops.iter_mut() {
        o.lane = lane_of.get(&o.process).copied().unwrap_or(0);
    }
    lanes
}

/// Milliseconds (results.json's unit) as nanoseconds (the history's).
fn ms_to_ns(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_f64).map(|ms| (ms * 1e6) as u64)
}

fn faults_from_results(list: &[Value]) -> Vec<Fault> {
    list.iter()
        .filter_map(|f| {
            let start_ns = ms_to_ns(f.get("start_ms"))?;
            let mut detail = f.clone();
            if let Some(obj) = detail.as_object_mut() {
                for k in ["id", "fault", "aim", "nodes", "start_ms", "end_ms"] {
                    obj.remove(k);
                }
            }
            Some(Fault {
                id: f.get("id").and_then(Value::as_u64),
                fault: f
                    .get("fault")
                    .map(value_string)
                    .unwrap_or_else(|| "fault".to_string()),
                aim: f.get("aim").map(value_string),
                nodes: string_list(f.get("nodes")),
                start_ns,
                end_ns: ms_to_ns(f.get("end_ms")),
                detail,
            })
        })
        .collect()
}

/// A rolling upgrade's steps (results.json `upgrade.steps`) as windows like the faults':
/// `upgrade n2` from the step's start to the node rejoining (or failing to).
fn upgrade_steps(steps: &[Value]) -> Vec<Fault> {
    steps
        .iter()
        .filter_map(|s| {
            Some(Fault {
                id: None,
                fault: s
                    .get("direction")
                    .map(value_string)
                    .unwrap_or_else(|| "upgrade".to_string()),
                aim: None,
                nodes: string_list(s.get("node")),
                start_ns: ms_to_ns(s.get("start_ms"))?,
                end_ns: ms_to_ns(s.get("end_ms")),
                detail: serde_json::json!({
                    "from_version": s.get("from_version"),
                    "to_version": s.get("to_version"),
                    "outcome": s.get("outcome"),
                }),
            })
        })
        .collect()
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(value_string).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![value_string(other)],
    }
}

/// Faults from the history's nemesis events: faultline's (`start`/`stop` with an `id`), or
/// any other recorder's (`start…`/`stop…` functions, stops closing the oldest open fault).
fn faults_from_history(history: &History, synthetic: bool) -> Vec<Fault> {
    let mut faults: Vec<Fault> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for (pos, e) in history.events.iter().enumerate() {
        if e.process != Process::Nemesis {
            continue;
        }
        let t = time_of(history, pos, synthetic);
        let id = e.value.get("id").and_then(Value::as_u64);
        if e.f == "start" || (id.is_none() && e.f.starts_with("start")) {
            // Jepsen records a nemesis action twice (invoke and completion): one fault.
            if id.is_none() {
                if let Some(&last) = open.last() {
                    if faults[last].fault == e.f && faults[last].id.is_none() {
                        continue;
                    }
                }
            }
            let mut detail = e.value.clone();
            if let Some(obj) = detail.as_object_mut() {
                for k in ["id", "fault", "aim", "nodes"] {
                    obj.remove(k);
                }
            }
            faults.push(Fault {
                id,
                fault: e
                    .value
                    .get("fault")
                    .map(value_string)
                    .unwrap_or_else(|| e.f.clone()),
                aim: e.value.get("aim").map(value_string),
                nodes: string_list(e.value.get("nodes")),
                start_ns: t,
                end_ns: None,
                detail,
            });
            open.push(faults.len() - 1);
        } else if e.f == "stop" || e.f.starts_with("stop") {
            let which = match id {
                Some(id) => open.iter().position(|&i| faults[i].id == Some(id)),
                None if !open.is_empty() => Some(0),
                None => None,
            };
            if let Some(w) = which {
                let i = open.remove(w);
                faults[i].end_ns = Some(t);
            }
        }
    }
    faults
}

/// Reads `nodes/status.jsonl`: `{"time": ns, "node": "n1", "role": "leader"|...|null,
/// "term": n|null, "leader": "n2"|null}` per sample.
fn read_status(path: &Path, notes: &mut Vec<String>) -> (Vec<NodeStatus>, Vec<LeaderChange>) {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            notes.push(format!("cannot read {}: {e}", path.display()));
            return (Vec::new(), Vec::new());
        }
    };
    let mut by_node: BTreeMap<String, NodeStatus> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut last_leader_term: BTreeMap<String, u64> = BTreeMap::new();
    let mut bad = 0usize;
    let mut first_bad = None;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else {
            bad += 1;
            first_bad.get_or_insert(n + 1);
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            bad += 1;
            first_bad.get_or_insert(n + 1);
            continue;
        };
        let (Some(t), Some(node)) = (
            v.get("time").and_then(Value::as_u64),
            v.get("node").and_then(Value::as_str),
        ) else {
            bad += 1;
            first_bad.get_or_insert(n + 1);
            continue;
        };
        let role = v.get("role").and_then(Value::as_str).map(str::to_string);
        let term = v.get("term").and_then(Value::as_u64);
        let leader = v.get("leader").and_then(|l| match l {
            Value::Null => None,
            other => Some(value_string(other)),
        });
        if role.as_deref() == Some("leader") {
            let term = term.unwrap_or(0);
            if last_leader_term.get(node) != Some(&term) {
                last_leader_term.insert(node.to_string(), term);
                changes.push(LeaderChange {
                    time_ns: t,
                    node: node.to_string(),
                    term,
                });
            }
        }
        let entry = by_node
            .entry(node.to_string())
            .or_insert_with(|| NodeStatus {
                node: node.to_string(),
                segments: Vec::new(),
            });
        let version = v.get("version").and_then(Value::as_str).map(str::to_string);
        let seg = Segment {
            from_ns: t,
            to_ns: t,
            role,
            term,
            leader,
            version,
        };
        match entry.segments.last_mut() {
            Some(last)
                if last.role == seg.role
                    && last.term == seg.term
                    && last.leader == seg.leader
                    && last.version == seg.version =>
            {
                last.to_ns = t
            }
            Some(last) => {
                last.to_ns = t;
                entry.segments.push(seg);
            }
            None => entry.segments.push(seg),
        }
    }
    if bad > 0 {
        notes.push(format!(
            "{}: {bad} unreadable line(s) skipped (first: line {})",
            path.display(),
            first_bad.unwrap_or(0)
        ));
    }
    changes.sort_by_key(|c| c.time_ns);
    // A target whose status says no role (or that has no status at all) leaves every sample
    // without one: that says nothing about its nodes, so nothing is drawn (a node silent
    // while others answer is drawn silent).
    if by_node
        .values()
        .all(|n| n.segments.iter().all(|s| s.role.is_none()))
    {
        if !by_node.is_empty() {
            notes.push(format!(
                "{}: no sample names a node's role (the target may not report one); roles \
                 and terms are not shown",
                path.display()
            ));
        }
        return (Vec::new(), Vec::new());
    }
    (by_node.into_values().collect(), changes)
}

/// Node logs (`nodes/*.log`): counts of warnings and errors, the first of them, and the tail.
fn read_node_logs(dir: &Path) -> Vec<NodeLog> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log") && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let file = std::fs::File::open(&path).ok()?;
            let node = path.file_stem()?.to_string_lossy().into_owned();
            let mut log = NodeLog {
                node: node.clone(),
                file: format!("nodes/{node}.log"),
                ..NodeLog::default()
            };
            let mut tail = std::collections::VecDeque::new();
            let mut reader = BufReader::new(file);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                log.lines += 1;
                let level = line.split_whitespace().nth(1).unwrap_or("");
                let notable = match level {
                    "WARN" => {
                        log.warnings += 1;
                        true
                    }
                    "ERROR" => {
                        log.errors += 1;
                        true
                    }
                    _ => false,
                };
                let shown = escape::short(line, LOG_LINE_CHARS);
                if notable && log.notable.len() < LOG_NOTABLE {
                    log.notable.push(shown.clone());
                }
                tail.push_back(shown);
                if tail.len() > LOG_TAIL {
                    tail.pop_front();
                }
            }
            log.tail = tail.into_iter().collect();
            Some(log)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, start: u64, end: Option<u64>) -> Op {
        Op {
            invoke: 0,
            completion: None,
            start_ns: start,
            end_ns: end,
            process,
            outcome: Outcome::Ok,
            lane: 99,
        }
    }

    fn status_file(name: &str, lines: &[&str]) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "faultline-status-{name}-{}.jsonl",
            std::process::id()
        ));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    #[test]
    fn status_samples_become_segments_and_leader_changes() {
        let path = status_file(
            "segments",
            &[
                r#"{"time":0,"node":"n1","role":"follower","term":1,"leader":null}"#,
                r#"{"time":0,"node":"n2","role":"leader","term":1,"leader":"n2"}"#,
                r#"{"time":250,"node":"n1","role":"follower","term":1,"leader":"n2"}"#,
                r#"{"time":250,"node":"n2","role":"leader","term":1,"leader":"n2"}"#,
                r#"not json"#,
                r#"{"time":500,"node":"n1","role":"leader","term":2,"leader":"n1"}"#,
                r#"{"time":500,"node":"n2","role":null,"term":null,"leader":null}"#,
                r#"{"time":750,"node":"n1","role":"leader","term":2,"leader":"n1"}"#,
            ],
        );
        let mut notes = Vec::new();
        let (status, changes) = read_status(&path, &mut notes);
        let _ = std::fs::remove_file(&path);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("line 5"), "{notes:?}");
        let n1 = &status[0];
        assert_eq!(n1.node, "n1");
        let shape: Vec<(u64, u64, Option<&str>, Option<u64>)> = n1
            .segments
            .iter()
            .map(|g| (g.from_ns, g.to_ns, g.role.as_deref(), g.term))
            .collect();
        assert_eq!(
            shape,
            [
                (0, 250, Some("follower"), Some(1)),
                (250, 500, Some("follower"), Some(1)),
                (500, 750, Some("leader"), Some(2)),
            ]
        );
        assert_eq!(status[1].segments.last().unwrap().role, None);
        let led: Vec<(u64, &str, u64)> = changes
            .iter()
            .map(|c| (c.time_ns, c.node.as_str(), c.term))
            .collect();
        assert_eq!(led, [(0, "n2", 1), (500, "n1", 2)]);
    }

    #[test]
    fn a_target_without_status_draws_no_node_rows() {
        let path = status_file(
            "silent",
            &[
                r#"{"time":0,"node":"n1","role":null,"term":null,"leader":null}"#,
                r#"{"time":0,"node":"n2","role":null,"term":null,"leader":null}"#,
            ],
        );
        let mut notes = Vec::new();
        let (status, changes) = read_status(&path, &mut notes);
        let _ = std::fs::remove_file(&path);
        assert!(status.is_empty() && changes.is_empty());
        assert!(
            notes[0].contains("no sample names a node's role"),
            "{notes:?}"
        );
    }

    #[test]
    fn processes_that_never_overlap_share_a_row() {
        // Worker A: process 0 then, after a timeout, process 2. Worker B: process 1.
        let mut ops = vec![
            op(0, 0, Some(10)),
            op(1, 5, Some(30)),
            op(0, 12, Some(20)),
            op(2, 21, Some(25)),
            op(3, 26, None), // never completed: holds a row only for an instant
            op(4, 27, Some(28)),
        ];
        let lanes = assign_lanes(&mut ops);
        assert_eq!(ops[0].lane, ops[3].lane);
        assert_ne!(ops[0].lane, ops[1].lane);
        assert_eq!(lanes.len(), 2, "{lanes:?}");
        assert_eq!(ops[4].lane, ops[5].lane);
    }
}
