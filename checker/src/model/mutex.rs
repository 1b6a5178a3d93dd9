//! `mutex`: a lock without owners (as Knossos's mutex model).
//!
//! | f         | meaning                                          |
//! |-----------|--------------------------------------------------|
//! | `acquire` | allowed iff the lock is free; it becomes held    |
//! | `release` | allowed iff the lock is held; it becomes free    |
//!
//! Values are ignored. A failed acquire (`fail`) did not take the lock.

use super::{Model, RawOp};
use crate::value::ValueTable;

/// The `mutex` model.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mutex;

/// A decoded mutex operation; `known` is false when the result is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MutexOp {
    Acquire { known: bool },
    Release { known: bool },
}

impl Model for Mutex {
    type Op = MutexOp;
    /// True while held.
    type State = bool;

    fn name(&self) -> &'static str {
        "mutex"
    }

    fn init(&self, _values: &mut ValueTable) -> bool {
        false
    }

    fn decode(&self, raw: &RawOp<'_>, _values: &mut ValueTable) -> Result<MutexOp, String> {
        let known = raw.output.is_some();
        match raw.f {
            "acquire" => Ok(MutexOp::Acquire { known }),
            "release" => Ok(MutexOp::Release { known }),
            other => Err(format!(
                "the mutex model has no operation {:?}; its operations are acquire, release",
                crate::text::for_terminal(other)
            )),
        }
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match *op {
            MutexOp::Acquire { .. } if !*held => Some(true),
            MutexOp::Release { .. } if *held => Some(false),
            // An indeterminate operation that could not succeed here simply did not happen.
            MutexOp::Acquire { known: false } | MutexOp::Release { known: false } => Some(*held),
            _ => None,
        }
    }

    fn memoize_steps(&self) -> bool {
        false
    }

    fn describe_op(&self, op: &MutexOp, _values: &ValueTable) -> String {
        match op {
            MutexOp::Acquire { .. } => "acquire".to_string(),
            MutexOp::Release { .. } => "release".to_string(),
        }
    }

    fn describe_state(&self, held: &bool, _values: &ValueTable) -> String {
        if *held { "held" } else { "free" }.to_string()
    }
}
