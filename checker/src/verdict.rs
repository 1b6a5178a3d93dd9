//! What a check concludes, in a form that serialises to the `--json` verdict.

use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::history::{Event, Outcome};
use crate::search::SearchStats;

/// The answer to "is this history linearizable?".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    /// Not decided within the budget: never a guess.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }

    /// The combined verdict of several checks: invalid if any is, else unknown if any is.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut out = Verdict::Valid;
        for v in verdicts {
            out = match (out, v) {
                (Verdict::Invalid, _) | (_, Verdict::Invalid) => Verdict::Invalid,
                (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
                _ => Verdict::Valid,
            };
        }
        out
    }
}

/// Operations by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    pub total: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Invoked, never completed (treated as `info`).
    pub pending: usize,
}

/// The result of checking one history.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub model: String,
    /// Number of independent keys (1 for a single-object history).
    pub keys: usize,
    #[serde(rename = "operations")]
    pub counts: OpCounts,
    /// Decoding and searching, all keys (wall time); parsing the file is not included.
    #[serde(rename = "check_ms", serialize_with = "millis")]
    pub check_time: Duration,
    /// Finding minimal windows and sentences for invalid keys (wall time).
    #[serde(rename = "explain_ms", serialize_with = "millis")]
    pub explain_time: Duration,
    /// One per invalid key, in the order their culprits were invoked.
    pub failures: Vec<Failure>,
    /// Keys the budget did not allow deciding.
    pub unknown: Vec<UnknownKey>,
    /// Every key's verdict.
    pub per_key: Vec<KeyVerdict>,
    pub search: SearchTotals,
    /// What an `ok` read of nil meant in this check.
    pub nil_reads: crate::model::NilReads,
    /// How many `ok` reads of nil were treated as reads of unknown value.
    pub unknown_reads: usize,
}

impl Report {
    /// The sentence saying how many reads of nil counted as reads of unknown value, if any.
    pub fn unknown_reads_note(&self) -> Option<String> {
        let n = self.unknown_reads;
        (n > 0).then(|| {
            let (reads, what) = if n == 1 {
                ("1 read of nil".to_string(), "a read of unknown value")
            } else {
                (format!("{n} reads of nil"), "reads of unknown value")
            };
            format!(
                "{reads} treated as {what}, as Knossos does; --nil-reads value to treat them as \
                 values"
            )
        })
    }
}

/// Why one key's history is not linearizable.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub key: Option<Value>,
    /// The operation that cannot be linearized.
    pub culprit: OpSummary,
    /// One plain sentence saying why.
    pub sentence: String,
    /// How many operations the longest partial linearization placed before getting stuck.
    pub linearized_count: usize,
    /// The end of that partial linearization (at most its last 100 steps), with the state
    /// after each step.
    pub partial_linearization: Vec<LinearizationStep>,
    /// A small window of operations around the failure that is not linearizable by itself
    /// (with the same initial state), culprit included.
    pub window: Vec<OpSummary>,
    /// The window's events, ready to be written out as a history and re-checked.
    #[serde(skip)]
    pub window_events: Vec<Event>,
}

/// One key whose check was not decided.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownKey {
    pub key: Option<Value>,
    pub reason: String,
    /// How far the search got: operations placed in its longest partial linearization.
    pub linearized: usize,
    pub operations: usize,
}

/// A key and its verdict.
#[derive(Clone, Debug, Serialize)]
pub struct KeyVerdict {
    pub key: Option<Value>,
    pub operations: usize,
    pub verdict: Verdict,
}

/// An operation as the user recorded it.
#[derive(Clone, Debug, Serialize)]
pub struct OpSummary {
    /// `index` of the invoke event.
    pub index: u64,
    /// Line of the invoke event in its file.
    pub line: usize,
    pub process: u64,
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    /// The value given at invocation.
    pub value: Value,
    /// The value of the `ok` completion, if it completed ok.
    pub result: Option<Value>,
    #[serde(serialize_with = "outcome")]
    pub outcome: Outcome,
    pub completion_index: Option<u64>,
    pub completion_line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One step of a partial linearization.
#[derive(Clone, Debug, Serialize)]
pub struct LinearizationStep {
    pub op: OpSummary,
    /// The operation as the model sees it, e.g. `cas 3→4`.
    pub description: String,
    /// The model's state after it.
    pub state_after: String,
}

/// Search effort, summed over keys.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SearchTotals {
    /// Loop iterations of the search (candidates examined and backtracks).
    pub steps: u64,
    /// Largest number of configurations one key's visited set held.
    pub max_cache_entries: usize,
    /// Configurations forgotten because a visited set reached its memory budget.
    pub cache_evictions: u64,
}

impl SearchTotals {
    pub(crate) fn add(&mut self, s: &SearchStats) {
        self.steps += s.steps;
        self.max_cache_entries = self.max_cache_entries.max(s.cache_entries);
        self.cache_evictions += s.cache_evictions;
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
            Outcome::Pending => "pending",
        }
    }
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

fn outcome<S: Serializer>(o: &Outcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(o.as_str())
}
