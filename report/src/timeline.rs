//! The data behind the report's zoomable timeline: one row per process (processes that never
//! overlap share a row), one bar per operation, fault windows, and each node's role and term
//! from the status samples.
//!
//! The page must stay small whatever the history's length. Up to [`DETAIL_LIMIT`] operations
//! are embedded one by one; past that, the page gets the operations around each failure in
//! full plus a per-row density overview (operations per time bin, by outcome), which is what
//! a screen can show of a million bars anyway.

use std::collections::{BTreeSet, HashMap};

use faultline_checker::Outcome;
use serde::Serialize;
use serde_json::Value;

use super::escape;
use super::load::Run;
use super::plots::fault_color;

/// Operations embedded individually when the history is this small or smaller.
pub const DETAIL_LIMIT: usize = 100_000;
/// Past the limit: operations kept around each failure's culprit, and failures so treated.
const AROUND_FAILURE: usize = 3_000;
const FAILURES_IN_DETAIL: usize = 20;
/// Density cells at most (rows × bins), which bounds the overview's size.
const DENSITY_CELLS: usize = 400_000;
/// Longest value text embedded per operation.
const VALUE_CHARS: usize = 80;

#[derive(Serialize)]
pub struct Timeline {
    /// Milliseconds since the test started at the right edge.
    end: f64,
    synthetic: bool,
    /// The plots' plotting area, in pixels, so the timeline lines up with them.
    left: i32,
    right: i32,
    width: u32,
    lanes: Vec<String>,
    nodes: Vec<NodeRow>,
    /// `[start ms, end ms or null, label, colour]`.
    faults: Vec<(f64, Option<f64>, String, String)>,
    /// Times two nodes claimed to lead at once: `[from ms, to ms, label, violation]` (a
    /// violation: the same term).
    leaders: Vec<(f64, f64, String, bool)>,
    /// Failures: `[culprit start ms, culprit end ms, label, zoom from ms, zoom to ms]`.
    marks: Vec<(f64, f64, String, f64, f64)>,
    ops: Columns,
    density: Option<Density>,
    total_ops: usize,
}

/// `[from ms, to ms, role, term, leader]`; role `""` when the node did not answer. Arrays,
/// not objects: there can be thousands.
type Seg = (f64, f64, String, Option<u64>, Option<String>);

#[derive(Serialize)]
struct NodeRow {
    node: String,
    segs: Vec<Seg>,
    /// The version the node ran over time, during a rolling upgrade: `[from ms, to ms,
    /// version, colour index]` (empty otherwise; the version lane is drawn when any row has
    /// one).
    vers: Vec<(f64, f64, String, usize)>,
}

/// Operations as parallel arrays (much smaller than one object each).
#[derive(Serialize, Default)]
struct Columns {
    /// Start, microseconds: the first absolute, the rest as differences from the previous.
    t: Vec<i64>,
    /// Duration in microseconds; -1 for an operation that never completed.
    d: Vec<i64>,
    /// Row.
    l: Vec<u32>,
    /// Outcome: 0 ok, 1 fail, 2 info, 3 never completed.
    o: Vec<u8>,
    f: Vec<u32>,
    fs: Vec<String>,
    /// Key (index into `ks`), -1 for none.
    k: Vec<i64>,
    ks: Vec<String>,
    p: Vec<u64>,
    /// Node (index into `ns`), -1 for none.
    n: Vec<i64>,
    ns: Vec<String>,
    /// Value at invocation, and result (ok) or error (fail/info), as short text.
    v: Vec<String>,
    r: Vec<String>,
    /// `index` of the invoke event (for `#op=` links), and 1-based line.
    i: Vec<u64>,
    /// 1: in a failure's window, 2: a failure's culprit.
    c: Vec<u8>,
}

#[derive(Serialize)]
struct Density {
    bin: f64,
    /// Per row, flattened `[bin, ok, fail, info]` for each non-empty bin.
    lanes: Vec<Vec<u32>>,
}

struct Interner(HashMap<String, u32>);

impl Interner {
    fn get(&mut self, table: &mut Vec<String>, s: &str) -> u32 {
        if let Some(&i) = self.0.get(s) {
            return i;
        }
        let i = table.len() as u32;
        table.push(escape::short(s, VALUE_CHARS));
        self.0.insert(s.to_string(), i);
        i
    }
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// A node's versions as runs of equal versions; `seen` numbers versions in the order they
/// first appear (the lane's colour), across all nodes.
fn version_runs(
    status: &super::load::NodeStatus,
    seen: &mut Vec<String>,
) -> Vec<(f64, f64, String, usize)> {
    let mut runs: Vec<(f64, f64, String, usize)> = Vec::new();
    for g in &status.segments {
        let Some(v) = &g.version else { continue };
        let colour = match seen.iter().position(|s| s == v) {
            Some(i) => i,
            None => {
                seen.push(v.clone());
                seen.len() - 1
            }
        };
        match runs.last_mut() {
            Some(last) if last.3 == colour => last.1 = ms(g.to_ns),
            Some(last) => {
                last.1 = ms(g.from_ns);
                runs.push((ms(g.from_ns), ms(g.to_ns), escape::short(v, 40), colour));
            }
            None => runs.push((ms(g.from_ns), ms(g.to_ns), escape::short(v, 40), colour)),
        }
    }
    runs
}

pub fn build(run: &Run, area: (i32, i32), width: u32) -> Timeline {
    let mut versions: Vec<String> = Vec::new();
    // Which operations each failure involves, by position in `run.ops`.
    let mut flags: HashMap<usize, u8> = HashMap::new();
    let mut marks = Vec::new();
    let mut culprits = Vec::new();
    for (n, f) in run.failures().iter().enumerate() {
        for w in f
            .get("window")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(i) = w
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| op_pos(run, i))
            {
                flags.entry(i).or_insert(1);
            }
        }
        let Some(c) = f
            .pointer("/culprit/index")
            .and_then(Value::as_u64)
            .and_then(|i| op_pos(run, i))
        else {
            continue;
        };
        flags.insert(c, 2);
        culprits.push(c);
        if n >= super::counterexample::DRAWN {
            // Outlined as a culprit, but not marked and labelled: see `DRAWN`.
            continue;
        }
        let op = &run.ops[c];
        let end = op.end_ns.unwrap_or(run.end_ns);
        let pad = end
            .saturating_sub(op.start_ns)
            .saturating_mul(3)
            .max(5_000_000);
        marks.push((
            ms(op.start_ns),
            ms(end),
            format!("✗{}", n + 1),
            ms(op.start_ns.saturating_sub(pad)),
            ms(end + pad),
        ));
    }

    let detailed: Vec<usize> = if run.ops.len() <= DETAIL_LIMIT {
        (0..run.ops.len()).collect()
    } else {
        let mut keep: BTreeSet<usize> = flags.keys().copied().collect();
        for &c in culprits.iter().take(FAILURES_IN_DETAIL) {
            keep.extend(around(run, c));
        }
        keep.into_iter().collect()
    };

    let mut cols = Columns::default();
    let mut fi = Interner(HashMap::new());
    let mut ki = Interner(HashMap::new());
    let mut ni = Interner(HashMap::new());
    let mut prev_us = 0i64;
    for &i in &detailed {
        let op = &run.ops[i];
        let inv = &run.history.events[op.invoke];
        let done = op.completion.map(|c| &run.history.events[c]);
        let start_us = (op.start_ns / 1_000) as i64;
        cols.t.push(start_us - prev_us);
        prev_us = start_us;
        cols.d
            .push(op.latency_ns().map(|l| (l / 1_000) as i64).unwrap_or(-1));
        cols.l.push(op.lane);
        cols.o.push(match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
            Outcome::Pending => 3,
        });
        cols.f.push(fi.get(&mut cols.fs, &inv.f));
        cols.k.push(match &inv.key {
            Some(k) => i64::from(ki.get(&mut cols.ks, &value_key(k))),
            None => -1,
        });
        cols.p.push(op.process);
        let node = done.and_then(|d| d.node.as_ref()).or(inv.node.as_ref());
        cols.n.push(match node {
            Some(n) => i64::from(ni.get(&mut cols.ns, n)),
            None => -1,
        });
        cols.v.push(if inv.value.is_null() {
            String::new()
        } else {
            escape::value_text(&inv.value, VALUE_CHARS)
        });
        cols.r.push(match (op.outcome, done) {
            (Outcome::Ok, Some(d)) => escape::value_text(&d.value, VALUE_CHARS),
            (_, Some(d)) => d
                .error
                .as_ref()
                .map(|e| escape::value_text(e, VALUE_CHARS))
                .unwrap_or_default(),
            _ => String::new(),
        });
        cols.i.push(inv.index);
        cols.c.push(flags.get(&i).copied().unwrap_or(0));
    }

    let density = (detailed.len() < run.ops.len()).then(|| density(run));

    Timeline {
        end: ms(run.end_ns),
        synthetic: run.synthetic_time,
        left: area.0,
        right: area.1,
        width,
        lanes: run
            .lanes
            .iter()
            .map(|ps| match ps.as_slice() {
                [] => String::new(),
                [p] => format!("p{p}"),
                [p, rest @ ..] => format!("p{p} +{}", rest.len()),
            })
            .collect(),
        nodes: run
            .status
            .iter()
            .map(|s| NodeRow {
                vers: version_runs(s, &mut versions),
                node: escape::short(&s.node, 20),
                segs: s
                    .segments
                    .iter()
                    .map(|g| {
                        (
                            ms(g.from_ns),
                            ms(g.to_ns),
                            g.role
                                .as_deref()
                                .map(|r| escape::short(r, 20))
                                .unwrap_or_default(),
                            g.term,
                            g.leader.as_deref().map(|l| escape::short(l, 20)),
                        )
                    })
                    .collect(),
            })
            .collect(),
        faults: run
            .faults
            .iter()
            .chain(&run.upgrade_steps)
            .map(|f| {
                let c = fault_color(&f.fault);
                (
                    ms(f.start_ns),
                    f.end_ns.map(ms),
                    escape::short(
                        &match f.id {
                            Some(id) => format!("#{id} {}", f.label()),
                            None => f.label(),
                        },
                        60,
                    ),
                    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2),
                )
            })
            .collect(),
        leaders: leader_overlaps(run),
        marks,
        ops: cols,
        density,
        total_ops: run.ops.len(),
    }
}

/// The election check's findings (results.json `election`) as bands on the node rows.
fn leader_overlaps(run: &Run) -> Vec<(f64, f64, String, bool)> {
    let mut out = Vec::new();
    let term = |t: Option<&Value>| {
        t.and_then(Value::as_u64)
            .map(|t| format!(" t{t}"))
            .unwrap_or_default()
    };
    for o in run
        .result("/election/overlaps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let n = |i: usize| {
            o.pointer(&format!("/nodes/{i}"))
                .map(value_key)
                .unwrap_or_default()
        };
        let label = format!(
            "{}{} and {}{} both lead",
            n(0),
            term(o.pointer("/terms/0")),
            n(1),
            term(o.pointer("/terms/1"))
        );
        let at = |k: &str| o.get(k).and_then(Value::as_u64).map(ms).unwrap_or(0.0);
        out.push((at("from_ns"), at("to_ns"), escape::short(&label, 60), false));
    }
    for s in run
        .result("/election/same_term")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for l in s
            .get("leaders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let label = format!(
                "{} leads{} (two leaders in one term)",
                l.get("node").map(value_key).unwrap_or_default(),
                term(l.get("term"))
            );
            let at = |k: &str| l.get(k).and_then(Value::as_u64).map(ms).unwrap_or(0.0);
            out.push((at("from_ns"), at("to_ns"), escape::short(&label, 60), true));
        }
    }
    out
}

/// Keys as text: strings without quotes, anything else as JSON.
fn value_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Position in `run.ops` of the operation whose invoke event has `index`.
fn op_pos(run: &Run, index: u64) -> Option<usize> {
    let pos = run.position_of_index(index)?;
    run.ops.binary_search_by_key(&pos, |o| o.invoke).ok()
}

/// The operations nearest in time to a culprit that overlap it or its surroundings.
fn around(run: &Run, c: usize) -> Vec<usize> {
    let op = &run.ops[c];
    let end = op.end_ns.unwrap_or(op.start_ns);
    let pad = end
        .saturating_sub(op.start_ns)
        .saturating_mul(3)
        .max(5_000_000);
    let (lo, hi) = (op.start_ns.saturating_sub(pad), end + pad);
    let mut near: Vec<(u64, usize)> = Vec::new();
    // Operations are in invocation order; walk outwards from the culprit.
    for i in (0..c).rev() {
        let o = &run.ops[i];
        if o.start_ns.saturating_add(10_000_000_000) < lo {
            break; // nothing invoked 10 s before the window still overlaps it in practice
        }
        if o.end_ns.unwrap_or(u64::MAX) >= lo {
            near.push((op.start_ns - o.start_ns.min(op.start_ns), i));
        }
    }
    for (i, o) in run.ops.iter().enumerate().skip(c) {
        if o.start_ns > hi {
            break;
        }
        near.push((o.start_ns.saturating_sub(op.start_ns), i));
    }
    near.sort_unstable();
    near.truncate(AROUND_FAILURE);
    near.into_iter().map(|(_, i)| i).collect()
}

fn density(run: &Run) -> Density {
    let lanes = run.lanes.len().max(1);
    let bins = (DENSITY_CELLS / lanes).clamp(50, 1000);
    let bin_ns = (run.end_ns / bins as u64).max(1);
    let mut per_lane: Vec<HashMap<u32, [u32; 3]>> = vec![HashMap::new(); lanes];
    for o in &run.ops {
        let b = (o.start_ns / bin_ns).min(bins as u64 - 1) as u32;
        let k = match o.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            _ => 2,
        };
        per_lane[o.lane as usize].entry(b).or_default()[k] += 1;
    }
    Density {
        bin: bin_ns as f64 / 1e6,
        lanes: per_lane
            .into_iter()
            .map(|m| {
                let mut cells: Vec<(u32, [u32; 3])> = m.into_iter().collect();
                cells.sort_unstable_by_key(|c| c.0);
                cells
                    .into_iter()
                    .flat_map(|(b, c)| [b, c[0], c[1], c[2]])
                    .collect()
            })
            .collect(),
    }
}
