//! The set checker: what happened to every element added to a set (Jepsen's "set-full").
//!
//! A set workload adds unique elements and now and then reads the whole set. Checking that as
//! one linearizable object is exponential in the number of concurrent adds, and says little
//! when it fails; asking what became of each element is linear and says exactly what went
//! wrong. For each element:
//!
//! * it becomes **known** when its add completes `ok`, or when a read first shows it;
//! * reads that *began* after it was known must show it (reads are linearizable): one that
//!   does not is **stale** if a later read shows it again, and the element is **lost** if no
//!   later read shows it;
//! * an element that every read after it was known shows is **stable**, from the first of
//!   those reads;
//! * an element no read began after it was known is **never read** (not a violation).
//!
//! A read may also show an element nobody tried to add, or only a failed add did
//! (**unexpected**), or the same element
//! twice (**duplicated**). The set is valid iff nothing was lost, stale, unexpected or
//! duplicated.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::HistoryError;
use crate::history::{History, Outcome};
use crate::verdict::Verdict;

/// What became of the elements of one set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SetReport {
    pub verdict: Option<Verdict>,
    /// Elements attempted (add invoked).
    pub attempted: usize,
    /// Adds that completed ok.
    pub acknowledged: usize,
    /// Reads that completed ok.
    pub reads: usize,
    pub stable: usize,
    pub never_read: usize,
    pub lost: Vec<ElementFate>,
    pub stale: Vec<ElementFate>,
    pub unexpected: Vec<Value>,
    pub duplicated: Vec<Value>,
    /// Time from an element becoming known to the first read from which it was always seen,
    /// for stable elements (milliseconds): 50th, 99th percentiles and maximum.
    pub stable_latency_ms: Option<[f64; 3]>,
}

/// One element that a read missed.
#[derive(Clone, Debug, Serialize)]
pub struct ElementFate {
    pub element: Value,
    /// Index of the event that made it known (add completion or first read showing it).
    pub known_at_index: u64,
    /// Index of the first read (its invocation) that began after and missed it.
    pub missing_from_read_index: u64,
    /// Milliseconds from known to that read, when times were recorded.
    pub after_ms: Option<f64>,
}

/// A read's view.
struct Read {
    invoke: usize,
    complete: usize,
    elements: Vec<String>,
}

/// Checks every set (one per key) of `history`: adds with `f = "add"`, reads with
/// `f = "read"` returning an array. Returns one report per key (`None` key: single set).
pub fn check_sets(history: &History) -> Result<Vec<(Option<Value>, SetReport)>, HistoryError> {
    let ops = history.operations()?;
    let mut by_key: BTreeMap<String, (Option<Value>, Vec<usize>)> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let key = history.events[op.invoke].key.clone();
        let text = key.as_ref().map(|k| k.to_string()).unwrap_or_default();
        by_key
            .entry(text)
            .or_insert_with(|| (key, Vec::new()))
            .1
            .push(i);
    }
    let mut out = Vec::new();
    for (_, (key, members)) in by_key {
        // element → (value, acknowledged at, add invoked at)
        let mut attempts: BTreeMap<String, (Value, Option<usize>, usize)> = BTreeMap::new();
        let mut reads = Vec::new();
        let mut report = SetReport::default();
        for &i in &members {
            let op = &ops[i];
            let invoke = &history.events[op.invoke];
            match invoke.f.as_str() {
                "add" => {
                    report.attempted += 1;
                    // A failed add did not take effect: it explains no element, so an element
                    // only a failed add wrote is unexpected when a read shows it.
                    if op.outcome == Outcome::Fail {
                        continue;
                    }
                    let known = (op.outcome == Outcome::Ok)
                        .then_some(op.completion)
                        .flatten();
                    if known.is_some() {
                        report.acknowledged += 1;
                    }
                    // The same element added twice (imported histories): keep the earliest
                    // acknowledgement and the earliest invocation, so a later retry cannot
                    // hide an earlier acknowledged add.
                    attempts
                        .entry(invoke.value.to_string())
                        .and_modify(|(_, k, invoked)| {
                            *k = match (*k, known) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                            *invoked = (*invoked).min(op.invoke);
                        })
                        .or_insert((invoke.value.clone(), known, op.invoke));
                }
                "read" => {
                    let (Outcome::Ok, Some(c)) = (op.outcome, op.completion) else {
                        continue;
                    };
                    let completion = &history.events[c];
                    let Value::Array(items) = &completion.value else {
                        return Err(HistoryError::at(
                            &history.source,
                            completion.line,
                            "a set read must return an array of elements",
                        ));
                    };
                    report.reads += 1;
                    reads.push(Read {
                        invoke: op.invoke,
                        complete: c,
                        elements: items.iter().map(|v| v.to_string()).collect(),
                    });
                }
                other => {
                    return Err(HistoryError::at(
                        &history.source,
                        invoke.line,
                        format!("the set workload has add and read operations, not {other:?}"),
                    ))
                }
            }
        }
        for read in &reads {
            let Value::Array(items) = &history.events[read.complete].value else {
                continue;
            };
            let mut seen = std::collections::BTreeSet::new();
            for (text, v) in read.elements.iter().zip(items) {
                if !seen.insert(text) && !report.duplicated.contains(v) {
                    report.duplicated.push(v.clone());
                }
                // Only an add invoked before the read completed can explain an element.
                let explained = attempts
                    .get(text)
                    .is_some_and(|&(_, _, invoked)| invoked < read.complete);
                if !explained && !report.unexpected.contains(v) {
                    report.unexpected.push(v.clone());
                }
            }
        }
        judge(history, &attempts, &reads, &mut report);
        out.push((key, report));
    }
    Ok(out)
}

fn judge(
    history: &History,
    attempts: &BTreeMap<String, (Value, Option<usize>, usize)>,
    reads: &[Read],
    report: &mut SetReport,
) {
    let time = |e: usize| history.events[e].time;
    let mut stable_latencies = Vec::new();
    for (text, (value, acked, _)) in attempts {
        // Known: acknowledged, or first shown by a read (whichever is first).
        let first_seen = reads
            .iter()
            .filter(|r| r.elements.iter().any(|e| e == text))
            .map(|r| r.complete)
            .min();
        let known = match (acked, first_seen) {
            (Some(a), Some(s)) => Some((*a).min(s)),
            (a, s) => a.or(s),
        };
        let Some(known) = known else {
            continue; // never acknowledged, never seen: it may well not have happened
        };
        let after: Vec<&Read> = reads.iter().filter(|r| r.invoke > known).collect();
        if after.is_empty() {
            report.never_read += 1;
            continue;
        }
        let present: Vec<bool> = after
            .iter()
            .map(|r| r.elements.iter().any(|e| e == text))
            .collect();
        match present.iter().position(|p| !p) {
            None => {
                report.stable += 1;
                if let (Some(k), Some(s)) = (time(known), time(after[0].complete)) {
                    stable_latencies.push(s.saturating_sub(k) as f64 / 1e6);
                }
            }
            Some(missing) => {
                let fate = ElementFate {
                    element: value.clone(),
                    known_at_index: history.events[known].index,
                    missing_from_read_index: history.events[after[missing].invoke].index,
                    after_ms: match (time(known), time(after[missing].invoke)) {
                        (Some(k), Some(r)) => Some(r.saturating_sub(k) as f64 / 1e6),
                        _ => None,
                    },
                };
                if present[missing..].iter().any(|&p| p) {
                    report.stale.push(fate);
                } else {
                    report.lost.push(fate);
                }
            }
        }
    }
    stable_latencies.sort_by(f64::total_cmp);
    if let Some(&max) = stable_latencies.last() {
        let q = |p: f64| stable_latencies[((stable_latencies.len() - 1) as f64 * p) as usize];
        report.stable_latency_ms = Some([q(0.5), q(0.99), max]);
    }
    report.verdict = Some(if report.reads == 0 {
        Verdict::Unknown
    } else if report.lost.is_empty()
        && report.stale.is_empty()
        && report.unexpected.is_empty()
        && report.duplicated.is_empty()
    {
        Verdict::Valid
    } else {
        Verdict::Invalid
    });
}

impl SetReport {
    /// One sentence for people.
    pub fn sentence(&self) -> String {
        let mut parts = Vec::new();
        if !self.lost.is_empty() {
            parts.push(format!(
                "{} acknowledged or observed element{} lost (e.g. {})",
                self.lost.len(),
                if self.lost.len() == 1 { "" } else { "s" },
                crate::text::json_for_terminal(&self.lost[0].element)
            ));
        }
        if !self.stale.is_empty() {
            parts.push(format!(
                "{} element{} missing from a read that began after {} known, then back",
                self.stale.len(),
                if self.stale.len() == 1 { "" } else { "s" },
                if self.stale.len() == 1 {
                    "it was"
                } else {
                    "they were"
                },
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} element(s) read that nobody added (or only a failed add did)",
                self.unexpected.len()
            ));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!(
                "{} element(s) read twice in one read",
                self.duplicated.len()
            ));
        }
        if parts.is_empty() {
            format!(
                "all {} known elements that were read again were stable ({} never read again)",
                self.stable, self.never_read
            )
        } else {
            parts.join("; ")
        }
    }
}
