//! Sequential specifications ("models") that a history is checked against.
//!
//! A model says what one object does when operations are applied one at a time: from a state,
//! an operation either is allowed (giving the next state) or is not. The checker searches for
//! an order of a history's operations, consistent with real time, that the model allows.
//!
//! Library users add their own object types by implementing [`Model`]. The built-in models are
//! listed in [`ModelSpec`]; each documents the operations it accepts.
//!
//! # Indeterminate operations
//! An operation that completed with `info` (or never completed) is decoded with `output: None`:
//! its result is unknown. Its `step` must then describe what the operation does *if it took
//! effect at that moment* (a read with unknown result changes nothing; a cas with unknown result
//! sets the value if the current value matched, and otherwise fails without effect). The
//! checker decides separately whether and when it took effect.

use std::fmt::Debug;
use std::hash::Hash;

use serde::Serialize;
use serde_json::Value;

use crate::value::ValueTable;

mod kv_append;
mod multi_register;
mod mutex;
mod queue;
mod register;
mod set;

pub use kv_append::KvAppend;
pub use multi_register::MultiRegister;
pub use mutex::Mutex;
pub use queue::FifoQueue;
pub use register::Register;
pub use set::SetModel;

/// What an `ok` read that returned nil (`null`) means.
///
/// Knossos's register, cas-register and multi-register models treat a read of nil as a read of
/// *unknown* value, consistent with every state (`model.clj`: `(or (nil? (:value op)) (= value
/// (:value op)))`), and every Jepsen verdict on such histories was made that way: Jepsen's
/// clients record `nil` when they could not tell what they read. faultline's own recorder says
/// "unknown" with `info` instead, and records `null` only for a read that found nothing, so
/// its histories keep the strict meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NilReads {
    /// A read of nil returned nil: it is legal only when the object holds nil (or, for
    /// kv-append, is absent).
    #[default]
    Value,
    /// A read of nil is a read whose value is unknown: legal in every state.
    Unknown,
}

impl NilReads {
    pub const NAMES: &'static [&'static str] = &["value", "unknown"];

    pub fn name(self) -> &'static str {
        match self {
            NilReads::Value => "value",
            NilReads::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<NilReads> {
        match name {
            "value" => Some(NilReads::Value),
            "unknown" => Some(NilReads::Unknown),
            _ => None,
        }
    }
}

/// An operation as recorded, before a model gives it meaning.
#[derive(Clone, Copy, Debug)]
pub struct RawOp<'a> {
    /// The operation's function (`read`, `write`, ...).
    pub f: &'a str,
    /// The value given at invocation.
    pub input: &'a Value,
    /// The value given at an `ok` completion; `None` when the result is unknown (`info` or
    /// never completed).
    pub output: Option<&'a Value>,
    /// What a read of nil means in this check.
    pub nil_reads: NilReads,
}

impl<'a> RawOp<'a> {
    /// What a read returned, for models whose reads follow [`NilReads`]: the `ok` value, or
    /// `None` when it is unknown (not `ok`, or nil under [`NilReads::Unknown`]).
    pub fn read_result(&self) -> Option<&'a Value> {
        match self.output {
            Some(Value::Null) if self.nil_reads == NilReads::Unknown => None,
            output => output,
        }
    }
}

/// A decoded operation of one key's history, with its place in time.
///
/// `call` and `ret` are positions in the history's event sequence. `ret` is `None` for an
/// indeterminate operation: it may take effect at any moment after `call`, or never.
#[derive(Clone, Debug)]
pub struct ModelOp<O> {
    pub op: O,
    pub call: u32,
    pub ret: Option<u32>,
    /// Line of the invocation in the history file, for sentences.
    pub line: usize,
}

/// What a model's pre-check and explanation see of one key.
pub struct KeyView<'a, O> {
    /// Names the object in sentences (`None` for single-object histories).
    pub key: Option<&'a str>,
    /// The key's operations that may have taken effect (ok and indeterminate), by call.
    pub ops: &'a [ModelOp<O>],
    /// Its operations reported as failed. They did not take effect, by the history's own
    /// account; naming one is the best explanation when only it could have produced a value
    /// that was observed (a system that reports failure for something it did).
    pub failed: &'a [ModelOp<O>],
    pub values: &'a ValueTable,
}

impl<O> ModelOp<O> {
    /// True for operations that completed `ok` (they must be linearized).
    pub fn is_ok(&self) -> bool {
        self.ret.is_some()
    }
}

/// A sequential specification. See the module documentation.
pub trait Model: Send + Sync {
    /// A decoded operation. Equal operations must behave identically in `step`: indeterminate
    /// operations that are equal are treated as interchangeable by the search.
    type Op: Clone + Debug + Eq + Hash + Send + Sync;
    /// The object's state. Interned by the checker, so it should be cheap to hash and compare.
    type State: Clone + Eq + Hash + Debug + Send + Sync;

    /// The model's name, as given to `--model`.
    fn name(&self) -> &'static str;

    /// The state before any operation. `values` is the table of the key being checked, for
    /// models whose state holds interned values.
    fn init(&self, values: &mut ValueTable) -> Self::State;

    /// Gives a recorded operation its meaning, or says (in words meant for the user) why it
    /// cannot: unknown function, value of the wrong shape, ...
    fn decode(&self, raw: &RawOp<'_>, values: &mut ValueTable) -> Result<Self::Op, String>;

    /// How many reads of unknown value an `ok` operation holds (reads of nil under
    /// [`NilReads::Unknown`]), so a check can say how many it treated that way.
    fn unknown_reads(&self, _op: &Self::Op) -> usize {
        0
    }

    /// Applies `op` to `state`: the next state if the model allows the operation (with its
    /// recorded result) in this state, `None` if it does not.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// True for a *blind write*: an operation that is allowed in every state and leaves the
    /// same state whatever it started from (a register's write, a kv put). The search uses it
    /// to skip orders that cannot matter: whatever happened just before a blind write is
    /// overwritten. `false` (the default) is always safe.
    fn overwrites(&self, _op: &Self::Op) -> bool {
        false
    }

    /// A fast path for operations that never change the state (reads): whether `op` is
    /// allowed in `state`. `None` (the default) means "may change the state; call `step`".
    /// Implementing it spares the checker building a copy of the state only to compare it.
    /// It must agree with `step`: `Some(true)` only when `step` allows `op` and leaves `state`
    /// as it was, `Some(false)` only when `step` refuses it (the checker decides with either).
    fn observe(&self, _state: &Self::State, _op: &Self::Op) -> Option<bool> {
        None
    }

    /// True for a *read*: an operation that never changes the state, in any state. The search
    /// linearizes an `ok` read as soon as it is allowed, without trying other orders (see
    /// `search`, rule 5). `false` (the default) is always safe.
    fn is_read(&self, _op: &Self::Op) -> bool {
        false
    }

    /// For objects that only grow until a blind write ([`Model::overwrites`]): whether the
    /// read `op` could still be allowed in `state` or in any state reached from it by
    /// operations that are not blind writes. The search asks it of the state a move leaves
    /// and of the states the blind writes still to place leave, and abandons the move when a
    /// read it must still place can see none of them (see `search`, rule 6). `true` (the default) prunes nothing; returning `false` wrongly would hide
    /// linearizations, so return it only with a proof.
    fn may_read_later(&self, _state: &Self::State, _op: &Self::Op) -> bool {
        true
    }

    /// Approximate memory held by a state, heap included, in bytes. The checker interns every
    /// state it meets and counts them against its memory budget.
    fn state_bytes(&self, _state: &Self::State) -> usize {
        std::mem::size_of::<Self::State>()
    }

    /// Whether the checker should remember each (state, operation) step it computes. Worth it
    /// when `step` allocates or compares large states; not for small `Copy` states.
    fn memoize_steps(&self) -> bool {
        true
    }

    /// A short description of an operation, e.g. `read → 5` or `cas 3→4`.
    fn describe_op(&self, op: &Self::Op, values: &ValueTable) -> String;

    /// A short description of a state, e.g. `5` or `"x 1 y"`.
    fn describe_state(&self, state: &Self::State, values: &ValueTable) -> String;

    /// Marks indeterminate operations that provably cannot matter, so the search never
    /// considers them (`keep[i] = false`). Only `info` operations may be dropped, and only with
    /// an argument that a linearization exists with them iff one exists without them.
    fn simplify(&self, _ops: &[ModelOp<Self::Op>], _init: &Self::State, _keep: &mut [bool]) {}

    /// A fast sound pre-check: an `ok` operation whose result no operation of `view.ops` could
    /// have produced (e.g. a read of a value nobody wrote). Returns its position in
    /// `view.ops` and one sentence saying why.
    fn unexplained(
        &self,
        _view: &KeyView<'_, Self::Op>,
        _init: &Self::State,
    ) -> Option<(usize, String)> {
        None
    }

    /// Whether a failure's window, `kept` (sorted positions in `view.ops`, the culprit
    /// included), keeps every operation of the key that could change the story it tells.
    /// Windows are shrunk by dropping operations while the rest still fails at the culprit;
    /// for some models dropping an operation can itself cause a failure the real history does
    /// not have (a dropped release makes the next acquire fail). [`Model::unexplained`] guards
    /// against that for values read; this guards the rest. `true` (the default) adds nothing.
    fn window_keeps_enough(&self, _view: &KeyView<'_, Self::Op>, _kept: &[usize]) -> bool {
        true
    }

    /// One plain sentence saying why `view.ops[culprit]` (the operation the search could not
    /// place) cannot be linearized, when the model can say more than the generic explanation. The sentence must
    /// be a proof a reader can check, not a guess: return `None` when unsure.
    fn explain(
        &self,
        _view: &KeyView<'_, Self::Op>,
        _culprit: usize,
        _init: &Self::State,
    ) -> Option<String> {
        None
    }
}

/// The pre-check shared by models whose observations name the values that produced them
/// (reads of a register, members of a set, dequeued elements): the `ok` operation, returning
/// earliest, that observed a value which no operation invoked before it returned could have
/// produced. `produced` gives what an operation puts in the object, `observed` what an `ok`
/// operation saw; values for which `expected` is true (the initial value) need no producer.
pub(crate) fn earliest_unexplained<O, V>(
    ops: &[ModelOp<O>],
    produced: impl Fn(&O) -> Option<V>,
    observed: impl Fn(&O) -> Vec<V>,
    expected: impl Fn(&V) -> bool,
) -> Option<(usize, V)>
where
    V: Hash + Eq + Copy,
{
    // Earliest invocation of a producer of each value.
    let mut first: rustc_hash::FxHashMap<V, u32> = Default::default();
    for op in ops {
        if let Some(v) = produced(&op.op) {
            let call = first.entry(v).or_insert(op.call);
            *call = (*call).min(op.call);
        }
    }
    let mut worst: Option<(u32, usize, V)> = None;
    for (i, op) in ops.iter().enumerate() {
        let Some(ret) = op.ret else { continue };
        if worst.is_some_and(|(r, _, _)| r <= ret) {
            continue;
        }
        for v in observed(&op.op) {
            if !expected(&v) && first.get(&v).is_none_or(|&call| call > ret) {
                worst = Some((ret, i, v));
                break;
            }
        }
    }
    worst.map(|(_, i, v)| (i, v))
}

/// The built-in models, by name, with their parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    /// `register`: read/write, initial value given (default `null`).
    Register { initial: Value },
    /// `cas-register`: read/write/cas, initial value given (default `null`).
    CasRegister { initial: Value },
    /// `kv-append`: get/put/append on strings, initially the given string (default `""`).
    KvAppend { initial: String },
    /// `multi-register`: transactions of reads and writes over named registers, starting at
    /// the values of the map (default: every register nil).
    MultiRegister {
        initial: serde_json::Map<String, Value>,
    },
    /// `mutex`: acquire/release, initially free.
    Mutex,
    /// `set`: add/read of the whole set, initially empty.
    Set,
    /// `fifo-queue`: enqueue/dequeue, initially empty.
    FifoQueue,
}

/// Names accepted by `--model`, in the order shown to users.
pub const MODEL_NAMES: &[&str] = &[
    "register",
    "cas-register",
    "kv-append",
    "multi-register",
    "mutex",
    "set",
    "fifo-queue",
];

impl ModelSpec {
    /// Builds a model from its name and optional initial value (for models that have one).
    pub fn from_name(name: &str, initial: Option<Value>) -> Result<ModelSpec, String> {
        let no_initial = |model: &str| -> Result<(), String> {
            match &initial {
                Some(_) => Err(format!("--initial does not apply to the {model} model")),
                None => Ok(()),
            }
        };
        match name {
            "register" => Ok(ModelSpec::Register {
                initial: initial.unwrap_or(Value::Null),
            }),
            "cas-register" => Ok(ModelSpec::CasRegister {
                initial: initial.unwrap_or(Value::Null),
            }),
            "kv-append" => match initial {
                None => Ok(ModelSpec::KvAppend {
                    initial: String::new(),
                }),
                Some(Value::String(s)) => Ok(ModelSpec::KvAppend { initial: s }),
                Some(other) => Err(format!(
                    "the kv-append model holds strings; --initial must be a string, got {other}"
                )),
            },
            "multi-register" => match initial {
                None | Some(Value::Null) => Ok(ModelSpec::MultiRegister {
                    initial: serde_json::Map::new(),
                }),
                Some(Value::Object(map)) => Ok(ModelSpec::MultiRegister { initial: map }),
                Some(other) => Err(format!(
                    "the multi-register model starts from a map of registers; --initial must \
                     be a map such as '{{:x 0 :y 0}}' or '{{\"x\": 0}}', got {other}"
                )),
            },
            "mutex" => no_initial("mutex").map(|()| ModelSpec::Mutex),
            "set" => no_initial("set").map(|()| ModelSpec::Set),
            "fifo-queue" => no_initial("fifo-queue").map(|()| ModelSpec::FifoQueue),
            other => Err(format!(
                "unknown model {other:?}; the models are: {}",
                MODEL_NAMES.join(", ")
            )),
        }
    }

    /// The model's `--model` name.
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Register { .. } => "register",
            ModelSpec::CasRegister { .. } => "cas-register",
            ModelSpec::KvAppend { .. } => "kv-append",
            ModelSpec::MultiRegister { .. } => "multi-register",
            ModelSpec::Mutex => "mutex",
            ModelSpec::Set => "set",
            ModelSpec::FifoQueue => "fifo-queue",
        }
    }

    /// The initial value, as it would be given to `--initial` to reproduce this model.
    pub fn initial(&self) -> Option<Value> {
        match self {
            ModelSpec::Register { initial } | ModelSpec::CasRegister { initial } => {
                Some(initial.clone())
            }
            ModelSpec::KvAppend { initial } => Some(Value::String(initial.clone())),
            ModelSpec::MultiRegister { initial } => Some(Value::Object(initial.clone())),
            _ => None,
        }
    }
}
