//! `multi-register`: named registers read and written together in transactions, as Knossos's
//! `multi-register` model.
//!
//! Operations (Jepsen's encoding): `f` is `txn`, the value a list of micro-operations,
//! `[f register value]` with `f` either `read` or `write`:
//!
//! | event          | value                               |
//! |----------------|-------------------------------------|
//! | invoke         | `[[read x nil] [write y 2]]`        |
//! | ok             | `[[read x 1] [write y 2]]` (reads filled in) |
//!
//! A transaction takes effect atomically; its micro-operations apply in order (a read after a
//! write of the same register in the same transaction sees that write). A register that was
//! never written holds its initial value (given as a map, `{x 0, y 0}`), or nil when the map
//! does not name it. A read's value is what the `ok` completion says; a transaction that did
//! not complete `ok` read nothing anyone saw, so only its writes matter. A read of nil follows
//! [`NilReads`](super::NilReads), as Knossos's "nil reads are always legal" by default for
//! Jepsen's histories.
//!
//! Why the registers are not checked apart, as the keys of a kv history are: locality
//! (P-compositionality) splits a history into *objects*, each operation touching one. A
//! transaction touches several registers at one instant, and that instant is the whole
//! point: `[[read x 1] [read y 1]]` is a claim about x and y *together*, which no pair of
//! separate per-register linearizations can check (each may place the transaction at a
//! different moment). So the whole history is one object whose state is the map.

use serde_json::{Map, Value};

use super::{KeyView, Model, ModelOp, RawOp};
use crate::value::{ValueId, ValueTable};

/// The `multi-register` model.
#[derive(Clone, Debug)]
pub struct MultiRegister {
    initial: Map<String, Value>,
}

impl MultiRegister {
    /// Registers starting at the values of `initial` (by name); any other register starts at
    /// nil.
    pub fn new(initial: Map<String, Value>) -> MultiRegister {
        MultiRegister { initial }
    }
}

/// One step of a transaction. Registers and values are interned in the history's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Micro {
    /// A read and the value it returned (`None`: unknown).
    Read {
        register: ValueId,
        value: Option<ValueId>,
    },
    Write {
        register: ValueId,
        value: ValueId,
    },
}

/// A decoded transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Txn(Box<[Micro]>);

/// The registers' values, sorted by register; a register not listed holds nil, and one that
/// holds nil is never listed, so equal maps are equal states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Registers {
    values: Vec<(ValueId, ValueId)>,
    nil: ValueId,
}

impl Registers {
    fn get(&self, register: ValueId) -> ValueId {
        match self.values.binary_search_by_key(&register, |&(r, _)| r) {
            Ok(i) => self.values[i].1,
            Err(_) => self.nil,
        }
    }

    fn set(&mut self, register: ValueId, value: ValueId) {
        match self.values.binary_search_by_key(&register, |&(r, _)| r) {
            Ok(i) if value == self.nil => {
                self.values.remove(i);
            }
            Ok(i) => self.values[i].1 = value,
            Err(_) if value == self.nil => {}
            Err(i) => self.values.insert(i, (register, value)),
        }
    }
}

/// A register's name as a string, whatever JSON it came as (`"x"` from the EDN keyword `:x`,
/// `1` as `"1"`), so that the names in `--initial '{:x 0}'` and in `[:read :x nil]` agree.
fn register_name(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

fn show(v: &Value) -> String {
    crate::text::abbreviate(&crate::text::json_for_terminal(v), 80)
}

/// Reads a transaction's list of `[f register value]`.
fn micro_ops(v: &Value, what: &str) -> Result<Vec<(String, Value, Value)>, String> {
    let Value::Array(list) = v else {
        return Err(format!(
            "a txn's {what} value is a list of [f register value], got {}",
            show(v)
        ));
    };
    list.iter()
        .map(|m| match m {
            Value::Array(parts) if parts.len() == 3 => match &parts[0] {
                Value::String(f) if f == "read" || f == "write" => {
                    Ok((f.clone(), register_name(&parts[1]), parts[2].clone()))
                }
                other => Err(format!(
                    "a micro-operation is read or write, got {} in {}",
                    show(other),
                    show(m)
                )),
            },
            other => Err(format!(
                "a micro-operation is [f register value], got {}",
                show(other)
            )),
        })
        .collect()
}

impl Model for MultiRegister {
    type Op = Txn;
    type State = Registers;

    fn name(&self) -> &'static str {
        "multi-register"
    }

    fn init(&self, values: &mut ValueTable) -> Registers {
        let nil = values.intern(&Value::Null);
        let mut state = Registers {
            values: Vec::with_capacity(self.initial.len()),
            nil,
        };
        for (name, value) in &self.initial {
            let register = values.intern(&Value::String(name.clone()));
            let value = values.intern(value);
            state.set(register, value);
        }
        state
    }

    fn unknown_reads(&self, op: &Txn) -> usize {
        op.0.iter()
            .filter(|m| matches!(m, Micro::Read { value: None, .. }))
            .count()
    }

    fn decode(&self, raw: &RawOp<'_>, values: &mut ValueTable) -> Result<Txn, String> {
        if raw.f != "txn" {
            return Err(format!(
                "the multi-register model has one operation, txn, got {:?}",
                crate::text::for_terminal(raw.f)
            ));
        }
        let invoked = micro_ops(raw.input, "invocation's")?;
        // An ok transaction is judged by what its completion says it read (Knossos replaces
        // the invocation's value by the completion's); it must be the same transaction.
        let completed = match raw.output {
            Some(output) => {
                let completed = micro_ops(output, "completion's")?;
                let same_shape = completed.len() == invoked.len()
                    && invoked
                        .iter()
                        .zip(&completed)
                        .all(|(i, c)| i.0 == c.0 && i.1 == c.1 && (i.0 == "read" || i.2 == c.2));
                if !same_shape {
                    return Err(format!(
                        "the completion {} is not the transaction invoked, {}",
                        show(output),
                        show(raw.input)
                    ));
                }
                Some(completed)
            }
            None => None,
        };
        let micro = completed
            .as_ref()
            .unwrap_or(&invoked)
            .iter()
            .map(|(f, register, value)| {
                let register = values.intern(register);
                if f == "write" {
                    return Micro::Write {
                        register,
                        value: values.intern(value),
                    };
                }
                let known = completed.is_some()
                    && !(value.is_null() && raw.nil_reads == super::NilReads::Unknown);
                Micro::Read {
                    register,
                    value: known.then(|| values.intern(value)),
                }
            })
            .collect();
        Ok(Txn(micro))
    }

    fn step(&self, state: &Registers, op: &Txn) -> Option<Registers> {
        let mut next = state.clone();
        for m in op.0.iter() {
            match *m {
                Micro::Read { value: None, .. } => {}
                Micro::Read {
                    register,
                    value: Some(v),
                } => {
                    if next.get(register) != v {
                        return None;
                    }
                }
                Micro::Write { register, value } => next.set(register, value),
            }
        }
        Some(next)
    }

    fn is_read(&self, op: &Txn) -> bool {
        op.0.iter().all(|m| matches!(m, Micro::Read { .. }))
    }

    /// A read-only transaction never changes the registers: compare in place.
    fn observe(&self, state: &Registers, op: &Txn) -> Option<bool> {
        let mut allowed = true;
        for m in op.0.iter() {
            match *m {
                Micro::Write { .. } => return None,
                Micro::Read {
                    register,
                    value: Some(v),
                } => allowed &= state.get(register) == v,
                Micro::Read { value: None, .. } => {}
            }
        }
        Some(allowed)
    }

    fn state_bytes(&self, state: &Registers) -> usize {
        std::mem::size_of::<Registers>()
            + state.values.capacity() * std::mem::size_of::<(ValueId, ValueId)>()
    }

    fn memoize_steps(&self) -> bool {
        // A step clones the map.
        true
    }

    fn describe_op(&self, op: &Txn, values: &ValueTable) -> String {
        let parts: Vec<String> =
            op.0.iter()
                .map(|m| match *m {
                    Micro::Read {
                        register,
                        value: Some(v),
                    } => format!("read {} → {}", values.render(register), values.render(v)),
                    Micro::Read {
                        register,
                        value: None,
                    } => format!("read {} → ?", values.render(register)),
                    Micro::Write { register, value } => {
                        format!("write {} {}", values.render(register), values.render(value))
                    }
                })
                .collect();
        format!("txn [{}]", parts.join(", "))
    }

    fn describe_state(&self, state: &Registers, values: &ValueTable) -> String {
        let parts: Vec<String> = state
            .values
            .iter()
            .map(|&(r, v)| format!("{} {}", values.render(r), values.render(v)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// An `ok` transaction that read a value into a register which is not the register's
    /// initial value and which no transaction invoked before it completed wrote there (its own
    /// earlier writes aside, which `step` checks). Sound: such a value cannot be in the
    /// register at any moment the transaction could take effect. Also what keeps a failure's
    /// window from dropping the writer of a value read.
    fn unexplained(&self, view: &KeyView<'_, Txn>, init: &Registers) -> Option<(usize, String)> {
        let (ops, values) = (view.ops, view.values);
        // Earliest invocation of a write of each (register, value).
        let mut first: rustc_hash::FxHashMap<(ValueId, ValueId), u32> = Default::default();
        for op in ops {
            for m in op.op.0.iter() {
                if let Micro::Write { register, value } = *m {
                    let call = first.entry((register, value)).or_insert(op.call);
                    *call = (*call).min(op.call);
                }
            }
        }
        let mut worst: Option<(u32, usize, ValueId, ValueId)> = None;
        for (i, op) in ops.iter().enumerate() {
            let Some(ret) = op.ret else { continue };
            if worst.is_some_and(|(r, ..)| r <= ret) {
                continue;
            }
            let mut written = Vec::new();
            for m in op.op.0.iter() {
                match *m {
                    Micro::Write { register, .. } => written.push(register),
                    Micro::Read {
                        register,
                        value: Some(v),
                    } if !written.contains(&register)
                        && init.get(register) != v
                        && first.get(&(register, v)).is_none_or(|&call| call > ret) =>
                    {
                        worst = Some((ret, i, register, v));
                        break;
                    }
                    Micro::Read { .. } => {}
                }
            }
        }
        let (_, i, register, v) = worst?;
        let ever = ops
            .iter()
            .any(|op| op.op.0.contains(&Micro::Write { register, value: v }));
        let of = view.key.map(|k| format!(" of {k}")).unwrap_or_default();
        let why = if ever {
            "no transaction writing it had even begun when it completed"
        } else {
            "no transaction ever wrote it"
        };
        Some((
            i,
            format!(
                "txn{of} read {} from {}, but {why}",
                values.render(v),
                values.render(register)
            ),
        ))
    }

    /// Drops indeterminate read-only transactions: they change nothing, and nobody saw what
    /// they read.
    fn simplify(&self, ops: &[ModelOp<Txn>], _init: &Registers, keep: &mut [bool]) {
        for (op, k) in ops.iter().zip(keep.iter_mut()) {
            if !op.is_ok() && op.op.0.iter().all(|m| matches!(m, Micro::Read { .. })) {
                *k = false;
            }
        }
    }
}
