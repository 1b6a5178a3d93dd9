//! `fifo-queue`: a first-in first-out queue.
//!
//! | f         | invoke value | ok value              | meaning                                |
//! |-----------|--------------|-----------------------|----------------------------------------|
//! | `enqueue` | `x`          | `x`                   | `x` joins the back                     |
//! | `dequeue` | anything     | the element, or null  | allowed iff `x` is at the front (null: |
//! |           |              |                       | iff the queue is empty); removes it    |

use std::collections::VecDeque;

use serde_json::Value;

use super::{KeyView, Model, ModelOp, RawOp};
use crate::value::{ValueId, ValueTable};

/// The `fifo-queue` model.
#[derive(Clone, Copy, Debug, Default)]
pub struct FifoQueue;

/// A decoded queue operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueOp {
    Enqueue(ValueId),
    /// `None`: unknown result; `Some(None)`: found the queue empty.
    Dequeue(Option<Option<ValueId>>),
}

impl Model for FifoQueue {
    type Op = QueueOp;
    type State = VecDeque<ValueId>;

    fn name(&self) -> &'static str {
        "fifo-queue"
    }

    fn init(&self, _values: &mut ValueTable) -> VecDeque<ValueId> {
        VecDeque::new()
    }

    fn decode(&self, raw: &RawOp<'_>, values: &mut ValueTable) -> Result<QueueOp, String> {
        match raw.f {
            "enqueue" => Ok(QueueOp::Enqueue(values.intern(raw.input))),
            "dequeue" => Ok(QueueOp::Dequeue(raw.output.map(|v| match v {
                Value::Null => None,
                v => Some(values.intern(v)),
            }))),
            other => Err(format!(
                "the fifo-queue model has no operation {:?}; its operations are enqueue, dequeue",
                crate::text::for_terminal(other)
            )),
        }
    }

    fn step(&self, q: &VecDeque<ValueId>, op: &QueueOp) -> Option<VecDeque<ValueId>> {
        match *op {
            QueueOp::Enqueue(x) => {
                let mut next = q.clone();
                next.push_back(x);
                Some(next)
            }
            QueueOp::Dequeue(Some(None)) => q.is_empty().then(|| q.clone()),
            QueueOp::Dequeue(Some(Some(x))) => {
                if q.front() == Some(&x) {
                    let mut next = q.clone();
                    next.pop_front();
                    Some(next)
                } else {
                    None
                }
            }
            QueueOp::Dequeue(None) => {
                let mut next = q.clone();
                next.pop_front();
                Some(next)
            }
        }
    }

    fn observe(&self, q: &VecDeque<ValueId>, op: &QueueOp) -> Option<bool> {
        match op {
            QueueOp::Dequeue(Some(None)) => Some(q.is_empty()),
            QueueOp::Dequeue(None) if q.is_empty() => Some(true),
            _ => None,
        }
    }

    fn state_bytes(&self, q: &VecDeque<ValueId>) -> usize {
        std::mem::size_of::<VecDeque<ValueId>>() + 4 * q.capacity()
    }

    fn describe_op(&self, op: &QueueOp, values: &ValueTable) -> String {
        match *op {
            QueueOp::Enqueue(x) => format!("enqueue {}", values.render(x)),
            QueueOp::Dequeue(Some(Some(x))) => format!("dequeue → {}", values.render(x)),
            QueueOp::Dequeue(Some(None)) => "dequeue → empty".to_string(),
            QueueOp::Dequeue(None) => "dequeue → ?".to_string(),
        }
    }

    fn describe_state(&self, q: &VecDeque<ValueId>, values: &ValueTable) -> String {
        let shown: Vec<String> = q.iter().take(20).map(|x| values.render(*x)).collect();
        let more = if q.len() > 20 {
            format!(", … ({} in all)", q.len())
        } else {
            String::new()
        };
        format!("[{}{more}]", shown.join(", "))
    }

    /// Drops indeterminate enqueues of an element no ok dequeue returned. In a linearization
    /// containing one, the element is never dequeued by an ok dequeue; removing it, together
    /// with the indeterminate dequeue (if any) that removed it, leaves every other operation
    /// seeing the same front of the queue.
    fn simplify(&self, ops: &[ModelOp<QueueOp>], _init: &VecDeque<ValueId>, keep: &mut [bool]) {
        let mut dequeued = rustc_hash::FxHashSet::default();
        for op in ops {
            if let (QueueOp::Dequeue(Some(Some(x))), Some(_)) = (op.op, op.ret) {
                dequeued.insert(x);
            }
        }
        for (op, k) in ops.iter().zip(keep.iter_mut()) {
            if let (QueueOp::Enqueue(x), None) = (op.op, op.ret) {
                if !dequeued.contains(&x) {
                    *k = false;
                }
            }
        }
    }

    /// An ok dequeue of an element no enqueue had begun to add when the dequeue completed.
    fn unexplained(
        &self,
        view: &KeyView<'_, QueueOp>,
        _init: &VecDeque<ValueId>,
    ) -> Option<(usize, String)> {
        let (key, ops, values) = (view.key, view.ops, view.values);
        let (i, x) = super::earliest_unexplained(
            ops,
            |op| match op {
                QueueOp::Enqueue(x) => Some(*x),
                QueueOp::Dequeue(_) => None,
            },
            |op| match op {
                QueueOp::Dequeue(Some(Some(x))) => vec![*x],
                _ => Vec::new(),
            },
            |_| false,
        )?;
        let of = key.map(|k| format!(" of {k}")).unwrap_or_default();
        Some((
            i,
            format!(
                "dequeue{of} returned {}, which no enqueue had even begun to add when it completed",
                values.render(x)
            ),
        ))
    }
}
