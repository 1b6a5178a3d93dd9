//! `register` and `cas-register`: a single value that can be read, written and (for
//! `cas-register`) compared-and-set.
//!
//! Operations (Jepsen's encoding):
//!
//! | f       | invoke value  | ok value        | meaning                                   |
//! |---------|---------------|-----------------|-------------------------------------------|
//! | `read`  | anything      | the value read  | allowed iff the register holds that value |
//! | `write` | `v`           | `v`             | the register becomes `v`                  |
//! | `cas`   | `[from, to]`  | `[from, to]`    | allowed iff it holds `from`; becomes `to` |
//!
//! A failed cas is recorded as `fail` and dropped (it did not take effect). Values are any JSON;
//! `null` is Jepsen's `nil`, the usual initial value.

use serde_json::Value;

use super::{KeyView, Model, ModelOp, RawOp};
use crate::value::{ValueId, ValueTable};

/// The `register` (read/write) and `cas-register` (read/write/cas) models.
#[derive(Clone, Debug)]
pub struct Register {
    initial: Value,
    cas: bool,
}

impl Register {
    /// A read/write register starting at `initial`.
    pub fn plain(initial: Value) -> Register {
        Register {
            initial,
            cas: false,
        }
    }

    /// A read/write/compare-and-set register starting at `initial`.
    pub fn with_cas(initial: Value) -> Register {
        Register { initial, cas: true }
    }
}

/// A decoded register operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// A read and the value it returned (`None`: the result is unknown).
    Read(Option<ValueId>),
    Write(ValueId),
    /// `known` is false for an indeterminate cas: it may have found another value and failed.
    Cas {
        from: ValueId,
        to: ValueId,
        known: bool,
    },
}

impl RegisterOp {
    /// The value this operation needs the register to hold, if any.
    fn observes(self) -> Option<ValueId> {
        match self {
            RegisterOp::Read(v) => v,
            RegisterOp::Cas { from, .. } => Some(from),
            RegisterOp::Write(_) => None,
        }
    }

    /// The value this operation leaves in the register when it takes effect, if it writes.
    fn produces(self) -> Option<ValueId> {
        match self {
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas { to, .. } => Some(to),
            RegisterOp::Read(_) => None,
        }
    }
}

impl Model for Register {
    type Op = RegisterOp;
    type State = ValueId;

    fn name(&self) -> &'static str {
        if self.cas {
            "cas-register"
        } else {
            "register"
        }
    }

    fn init(&self, values: &mut ValueTable) -> ValueId {
        values.intern(&self.initial)
    }

    fn unknown_reads(&self, op: &RegisterOp) -> usize {
        usize::from(matches!(op, RegisterOp::Read(None)))
    }

    fn decode(&self, raw: &RawOp<'_>, values: &mut ValueTable) -> Result<RegisterOp, String> {
        match raw.f {
            "read" => Ok(RegisterOp::Read(
                raw.read_result().map(|v| values.intern(v)),
            )),
            "write" => Ok(RegisterOp::Write(values.intern(raw.input))),
            "cas" if self.cas => match raw.input {
                Value::Array(pair) if pair.len() == 2 => Ok(RegisterOp::Cas {
                    from: values.intern(&pair[0]),
                    to: values.intern(&pair[1]),
                    known: raw.output.is_some(),
                }),
                other => Err(format!(
                    "a cas takes [from, to] as its value, got {}",
                    crate::text::abbreviate(&crate::text::json_for_terminal(other), 80)
                )),
            },
            "cas" => {
                Err("the register model has no cas; check with --model cas-register".to_string())
            }
            other => Err(format!(
                "the {} model has no operation {:?}; its operations are {}",
                self.name(),
                crate::text::for_terminal(other),
                if self.cas {
                    "read, write, cas"
                } else {
                    "read, write"
                }
            )),
        }
    }

    fn step(&self, state: &ValueId, op: &RegisterOp) -> Option<ValueId> {
        match *op {
            RegisterOp::Read(None) => Some(*state),
            RegisterOp::Read(Some(v)) => (*state == v).then_some(v),
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas { from, to, known } => {
                if *state == from {
                    Some(to)
                } else if known {
                    None
                } else {
                    // An indeterminate cas that found another value failed without effect.
                    Some(*state)
                }
            }
        }
    }

    fn overwrites(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Write(_))
    }

    fn is_read(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(_))
    }

    fn memoize_steps(&self) -> bool {
        // A step is a couple of integer comparisons: cheaper than a memo lookup.
        false
    }

    fn describe_op(&self, op: &RegisterOp, values: &ValueTable) -> String {
        match *op {
            RegisterOp::Read(Some(v)) => format!("read → {}", values.render(v)),
            RegisterOp::Read(None) => "read → ?".to_string(),
            RegisterOp::Write(v) => format!("write {}", values.render(v)),
            RegisterOp::Cas { from, to, .. } => {
                format!("cas {}→{}", values.render(from), values.render(to))
            }
        }
    }

    fn describe_state(&self, state: &ValueId, values: &ValueTable) -> String {
        values.render(*state)
    }

    /// Drops indeterminate operations whose effect nothing can observe. With lost responses
    /// these are most of what makes the search explode, and they cannot change the verdict:
    ///
    /// * An indeterminate read changes nothing.
    /// * An indeterminate write of `v`, where no kept operation observes `v` (no ok read returns
    ///   it, no cas expects it): in any linearization that contains it, the register holds `v`
    ///   from it until the next write, so every operation in between is a write or an
    ///   indeterminate cas that fails without effect there. Removing it, and those failing
    ///   no-ops, leaves every other operation seeing the same value. Conversely a linearization
    ///   without it is also one of the history with it, since indeterminate operations are
    ///   optional. So the history is linearizable with it iff without it.
    /// * An indeterminate cas `a→b` with `b` unobserved: the same argument, when it succeeds;
    ///   when it fails it had no effect at all.
    /// * An indeterminate cas `a→b` where `a` is neither the initial value nor written by any
    ///   kept operation can never succeed; `a→a` never changes anything.
    ///
    /// Each drop can make another value unobserved (a dropped cas no longer expects its `from`),
    /// so this repeats until nothing changes; each step preserves linearizability exactly.
    fn simplify(&self, ops: &[ModelOp<RegisterOp>], init: &ValueId, keep: &mut [bool]) {
        loop {
            let mut observed = rustc_hash::FxHashSet::default();
            let mut produced = rustc_hash::FxHashSet::default();
            produced.insert(*init);
            for (op, _) in ops.iter().zip(keep.iter()).filter(|(_, &k)| k) {
                if let Some(v) = op.op.observes() {
                    observed.insert(v);
                }
                if let Some(v) = op.op.produces() {
                    produced.insert(v);
                }
            }
            let mut changed = false;
            for (op, k) in ops.iter().zip(keep.iter_mut()) {
                if !*k || op.is_ok() {
                    continue;
                }
                let irrelevant = match op.op {
                    RegisterOp::Read(_) => true,
                    RegisterOp::Write(v) => !observed.contains(&v),
                    RegisterOp::Cas { from, to, .. } => {
                        from == to || !observed.contains(&to) || !produced.contains(&from)
                    }
                };
                if irrelevant {
                    *k = false;
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// An ok read (or cas) of a value that is not the initial value and that no operation
    /// invoked before it completed could have written. Sound: such a value cannot be in the
    /// register at any moment the read could take effect.
    fn unexplained(
        &self,
        view: &KeyView<'_, RegisterOp>,
        init: &ValueId,
    ) -> Option<(usize, String)> {
        let (key, ops, values) = (view.key, view.ops, view.values);
        let (i, v) = super::earliest_unexplained(
            ops,
            |op| op.produces(),
            |op| op.observes().into_iter().collect(),
            |v| v == init,
        )?;
        let ever_written = ops.iter().any(|op| op.op.produces() == Some(v));
        let what = observation(&ops[i].op, key, values)?;
        let failed: Vec<&ModelOp<RegisterOp>> = view
            .failed
            .iter()
            .filter(|op| op.op.produces() == Some(v) && ops[i].ret.is_some_and(|r| op.call < r))
            .collect();
        let why = if ever_written {
            format!(
                "but no write of {} had even begun when it completed",
                values.render(v)
            )
        } else if let [only] = failed.as_slice() {
            format!(
                "but the only operation that wrote {}, {} (line {}), was reported as failed",
                values.render(v),
                self.describe_op(&only.op, values),
                only.line
            )
        } else if let Some(first) = failed.first() {
            format!(
                "but the only {} operations that wrote {} (the first on line {}) were reported \
                 as failed",
                failed.len(),
                values.render(v),
                first.line
            )
        } else {
            format!("but no operation ever wrote {}", values.render(v))
        };
        Some((i, format!("{what}, {why}")))
    }

    /// The classic stale read: every write of the value read had completed before another
    /// write began, and that write completed before the read began — so the register had been
    /// overwritten before the read could take effect.
    fn explain(
        &self,
        view: &KeyView<'_, RegisterOp>,
        culprit: usize,
        init: &ValueId,
    ) -> Option<String> {
        let (key, ops, values) = (view.key, view.ops, view.values);
        let target = &ops[culprit];
        let v = target.op.observes()?;
        let target_ret = target.ret?;
        let what = observation(&target.op, key, values)?;
        // Writers that could matter: those invoked before the read completed.
        let writers: Vec<&ModelOp<RegisterOp>> = ops
            .iter()
            .filter(|op| op.op.produces() == Some(v) && op.call < target_ret)
            .collect();
        if writers.is_empty() && v != *init {
            return Some(format!(
                "{what}, but no operation wrote {}",
                values.render(v)
            ));
        }
        // A writer that may still take effect (indeterminate) or that is concurrent with
        // everything defeats this argument; fall back to the generic explanation.
        let mut last_writer_ret = 0u32;
        for w in &writers {
            last_writer_ret = last_writer_ret.max(w.ret?);
        }
        let overwriter = ops
            .iter()
            .filter(|x| {
                x.ret.is_some_and(|r| r < target.call)
                    && x.call > last_writer_ret
                    && x.op.produces().is_some_and(|u| u != v)
            })
            .max_by_key(|x| x.ret)?;
        let which = match (writers.len(), v == *init) {
            (0, _) => format!("the register started at {}", values.render(v)),
            (1, false) => format!("the only write of {}", values.render(v)),
            (n, false) => format!("all {n} writes of {}", values.render(v)),
            (n, true) => format!(
                "the initial value {} and all {n} writes of it",
                values.render(v)
            ),
        };
        let by = self.describe_op(&overwriter.op, values);
        let begin = match target.op {
            RegisterOp::Cas { .. } => "this cas began",
            _ => "this read began",
        };
        if writers.is_empty() {
            Some(format!(
                "{what}, but {which} and {by} completed before {begin}"
            ))
        } else {
            Some(format!(
                "{what}, but {by} completed after {which} and before {begin}"
            ))
        }
    }
}

/// "read of k3 returned 5" / "cas of k3 from 5 to 6 succeeded": what an observing operation saw.
fn observation(op: &RegisterOp, key: Option<&str>, values: &ValueTable) -> Option<String> {
    let of = key.map(|k| format!(" of {k}")).unwrap_or_default();
    match *op {
        RegisterOp::Read(Some(v)) => Some(format!("read{of} returned {}", values.render(v))),
        RegisterOp::Cas { from, to, .. } => Some(format!(
            "cas{of} from {} to {} succeeded",
            values.render(from),
            values.render(to)
        )),
        _ => None,
    }
}
