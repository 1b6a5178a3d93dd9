//! `kv-append`: one string per key, read whole, overwritten or appended to.
//!
//! | f        | invoke value | ok value          | meaning                                  |
//! |----------|--------------|-------------------|------------------------------------------|
//! | `get`    | anything     | the string read   | allowed iff the key holds exactly that   |
//! | `put`    | `"s"`        | `"s"`             | the key becomes `s`                      |
//! | `append` | `"s"`        | `"s"`             | `s` is added to the end of the key       |
//!
//! Keys start as `""` (or `--initial`). A `get` returning `null` reads as `""`. This is the model
//! of Porcupine's kv tests.

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::{KeyView, Model, ModelOp, RawOp};
use crate::value::ValueTable;

/// The `kv-append` model for one key.
#[derive(Clone, Debug, Default)]
pub struct KvAppend {
    initial: String,
}

impl KvAppend {
    pub fn new(initial: impl Into<String>) -> KvAppend {
        KvAppend {
            initial: initial.into(),
        }
    }
}

/// A decoded kv-append operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// A get and the string it returned (`None`: unknown).
    Get(Option<String>),
    Put(String),
    Append(String),
}

fn string_of(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null if what == "get" => Ok(String::new()),
        other => Err(format!(
            "kv-append values are strings; this {what} has {}",
            crate::text::abbreviate(&crate::text::json_for_terminal(other), 80)
        )),
    }
}

fn show(s: &str) -> String {
    crate::text::abbreviate(&crate::text::json_for_terminal(&Value::from(s)), 120)
}

impl Model for KvAppend {
    type Op = KvOp;
    type State = String;

    fn name(&self) -> &'static str {
        "kv-append"
    }

    fn init(&self, _values: &mut ValueTable) -> String {
        self.initial.clone()
    }

    fn unknown_reads(&self, op: &KvOp) -> usize {
        usize::from(matches!(op, KvOp::Get(None)))
    }

    fn decode(&self, raw: &RawOp<'_>, _values: &mut ValueTable) -> Result<KvOp, String> {
        match raw.f {
            "get" => Ok(KvOp::Get(match raw.read_result() {
                Some(v) => Some(string_of(v, "get")?),
                None => None,
            })),
            "put" => Ok(KvOp::Put(string_of(raw.input, "put")?)),
            "append" => Ok(KvOp::Append(string_of(raw.input, "append")?)),
            other => Err(format!(
                "the kv-append model has no operation {:?}; its operations are get, put, append",
                crate::text::for_terminal(other)
            )),
        }
    }

    fn step(&self, state: &String, op: &KvOp) -> Option<String> {
        match op {
            KvOp::Get(None) => Some(state.clone()),
            KvOp::Get(Some(v)) => (state == v).then(|| state.clone()),
            KvOp::Put(v) => Some(v.clone()),
            KvOp::Append(v) => {
                let mut next = String::with_capacity(state.len() + v.len());
                next.push_str(state);
                next.push_str(v);
                Some(next)
            }
        }
    }

    fn overwrites(&self, op: &KvOp) -> bool {
        matches!(op, KvOp::Put(_))
    }

    fn observe(&self, state: &String, op: &KvOp) -> Option<bool> {
        match op {
            KvOp::Get(Some(v)) => Some(state == v),
            KvOp::Get(None) => Some(true),
            _ => None,
        }
    }

    fn is_read(&self, op: &KvOp) -> bool {
        matches!(op, KvOp::Get(_))
    }

    /// Without puts a key only grows: a get of `v` is still possible iff `v` extends it.
    fn may_read_later(&self, state: &String, op: &KvOp) -> bool {
        match op {
            KvOp::Get(Some(v)) => v.starts_with(state.as_str()),
            _ => true,
        }
    }

    fn state_bytes(&self, state: &String) -> usize {
        std::mem::size_of::<String>() + state.capacity()
    }

    fn describe_op(&self, op: &KvOp, _values: &ValueTable) -> String {
        match op {
            KvOp::Get(Some(v)) => format!("get → {}", show(v)),
            KvOp::Get(None) => "get → ?".to_string(),
            KvOp::Put(v) => format!("put {}", show(v)),
            KvOp::Append(v) => format!("append {}", show(v)),
        }
    }

    fn describe_state(&self, state: &String, _values: &ValueTable) -> String {
        show(state)
    }

    /// Drops indeterminate gets (no effect), and indeterminate appends of `s` / puts of `s`
    /// (non-empty) when no ok get contains `s` / starts with `s`: once applied, every get until
    /// the next put would contain (start with) `s`, so only puts and optional operations can
    /// follow until the next put overwrites it — removing it (and those optional operations)
    /// leaves every other operation seeing the same string.
    fn simplify(&self, ops: &[ModelOp<KvOp>], _init: &String, keep: &mut [bool]) {
        let reads: Vec<&str> = ops
            .iter()
            .filter_map(|op| match (&op.op, op.ret) {
                (KvOp::Get(Some(v)), Some(_)) => Some(v.as_str()),
                _ => None,
            })
            .collect();
        for (op, k) in ops.iter().zip(keep.iter_mut()) {
            if op.is_ok() {
                continue;
            }
            let relevant = match &op.op {
                KvOp::Get(_) => false,
                KvOp::Append(s) => !s.is_empty() && reads.iter().any(|r| r.contains(s.as_str())),
                KvOp::Put(s) => s.is_empty() || reads.iter().any(|r| r.starts_with(s.as_str())),
            };
            if !relevant {
                *k = false;
            }
        }
    }

    /// An ok get whose string could not be the key's value at any moment: it is not the
    /// initial string, not a value any put (invoked before the get completed) wrote, and does
    /// not end with any such append — but the value of a key is always the initial string, the
    /// last put, or ends with the last append.
    fn unexplained(&self, view: &KeyView<'_, KvOp>, init: &String) -> Option<(usize, String)> {
        let (key, ops) = (view.key, view.ops);
        // Earliest invocation of each value put and each (non-empty) value appended, and the
        // lengths appended values come in: a get is explained by an append iff its suffix of
        // one of those lengths was appended early enough. Linear in practice, where writers
        // append values of a few lengths.
        let mut puts: FxHashMap<&str, u32> = FxHashMap::default();
        let mut appends: FxHashMap<&str, u32> = FxHashMap::default();
        for w in ops {
            let (table, v) = match &w.op {
                KvOp::Put(v) => (&mut puts, v),
                KvOp::Append(v) if !v.is_empty() => (&mut appends, v),
                _ => continue,
            };
            let call = table.entry(v.as_str()).or_insert(w.call);
            *call = (*call).min(w.call);
        }
        let mut lengths: Vec<usize> = appends.keys().map(|v| v.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let before = |table: &FxHashMap<&str, u32>, v: &str, ret: u32| {
            table.get(v).is_some_and(|&call| call < ret)
        };
        let mut worst: Option<(u32, usize)> = None;
        for (i, op) in ops.iter().enumerate() {
            let (KvOp::Get(Some(s)), Some(ret)) = (&op.op, op.ret) else {
                continue;
            };
            if s == init {
                continue;
            }
            let explained = before(&puts, s, ret)
                || lengths.iter().any(|&len| {
                    len <= s.len()
                        && s.is_char_boundary(s.len() - len)
                        && before(&appends, &s[s.len() - len..], ret)
                });
            if !explained && worst.is_none_or(|(r, _)| ret < r) {
                worst = Some((ret, i));
            }
        }
        let (_, i) = worst?;
        let KvOp::Get(Some(s)) = &ops[i].op else {
            return None;
        };
        let of = key.map(|k| format!(" of {k}")).unwrap_or_default();
        Some((
            i,
            format!(
                "get{of} returned {}, which is neither the initial value, nor a put, nor ends \
                 with an append invoked before it completed",
                show(s)
            ),
        ))
    }
}
