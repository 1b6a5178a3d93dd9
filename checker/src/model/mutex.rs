//! `mutex`: a lock without owners (as Knossos's mutex model).
//!
//! | f         | meaning                                          |
//! |-----------|--------------------------------------------------|
//! | `acquire` | allowed iff the lock is free; it becomes held    |
//! | `release` | allowed iff the lock is held; it becomes free    |
//!
//! Values are ignored. A failed acquire (`fail`) did not take the lock.

use super::{KeyView, Model, RawOp};
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

    /// A window must keep every release that was in progress during it (from the first call
    /// of its operations to the last return): any of them may have freed the lock between two
    /// acquisitions the window shows.
    fn window_keeps_enough(&self, view: &KeyView<'_, MutexOp>, kept: &[usize]) -> bool {
        let ops = view.ops;
        let from = kept.iter().map(|&i| ops[i].call).min().unwrap_or(0);
        let to = kept
            .iter()
            .map(|&i| ops[i].ret.unwrap_or(u32::MAX))
            .max()
            .unwrap_or(0);
        !ops.iter().enumerate().any(|(i, r)| {
            matches!(r.op, MutexOp::Release { .. })
                && r.call < to
                && r.ret.is_none_or(|ret| ret > from)
                && kept.binary_search(&i).is_err()
        })
    }

    /// Two successful acquisitions with no release between them. Both took effect somewhere
    /// between the earlier call and the later return; whichever came second found the lock
    /// held unless a release took effect in between, and a release can take effect only
    /// while it is in progress (an indeterminate one: any time after its call). So when no
    /// release was in progress in that span, the pair alone is the violation.
    fn explain(&self, view: &KeyView<'_, MutexOp>, culprit: usize, _init: &bool) -> Option<String> {
        let ops = view.ops;
        let target = &ops[culprit];
        let (MutexOp::Acquire { known: true }, Some(target_ret)) = (target.op, target.ret) else {
            return None;
        };
        let no_release_between = |from: u32, to: u32| {
            !ops.iter().any(|r| {
                matches!(r.op, MutexOp::Release { .. })
                    && r.call < to
                    && r.ret.is_none_or(|ret| ret > from)
            })
        };
        let other = ops
            .iter()
            .enumerate()
            .filter(|&(i, a)| {
                i != culprit
                    && matches!(a.op, MutexOp::Acquire { known: true })
                    && a.ret.is_some_and(|a_ret| {
                        no_release_between(a.call.min(target.call), a_ret.max(target_ret))
                    })
            })
            .max_by_key(|(_, a)| a.ret)?
            .1;
        let of = view.key.map(|k| format!(" of {k}")).unwrap_or_default();
        Some(format!(
            "acquire{of} succeeded, but so did the acquire on line {} and no release was in \
             progress between the first of their calls and the last of their returns: one of \
             them took a lock that was held",
            other.line
        ))
    }
}
