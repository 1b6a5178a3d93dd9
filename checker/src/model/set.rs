//! `set`: a grow-only set, read whole.
//!
//! | f      | invoke value | ok value                  | meaning                                |
//! |--------|--------------|---------------------------|----------------------------------------|
//! | `add`  | `x`          | `x`                       | `x` becomes a member                   |
//! | `read` | anything     | array of all the members  | allowed iff the members are exactly so |
//!
//! Order within a read is irrelevant; a read listing an element twice is never allowed.

use serde_json::Value;

use super::{KeyView, Model, ModelOp, RawOp};
use crate::value::{ValueId, ValueTable};

/// The `set` model.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetModel;

/// A decoded set operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetOp {
    Add(ValueId),
    /// The members read, sorted (duplicates kept, so such a read never matches); `None`:
    /// unknown.
    Read(Option<Vec<ValueId>>),
}

impl Model for SetModel {
    type Op = SetOp;
    /// Members, sorted, without duplicates.
    type State = Vec<ValueId>;

    fn name(&self) -> &'static str {
        "set"
    }

    fn init(&self, _values: &mut ValueTable) -> Vec<ValueId> {
        Vec::new()
    }

    fn decode(&self, raw: &RawOp<'_>, values: &mut ValueTable) -> Result<SetOp, String> {
        match raw.f {
            "add" => Ok(SetOp::Add(values.intern(raw.input))),
            "read" => match raw.output {
                None => Ok(SetOp::Read(None)),
                Some(Value::Array(items)) => {
                    let mut ids: Vec<ValueId> = items.iter().map(|v| values.intern(v)).collect();
                    ids.sort_unstable();
                    Ok(SetOp::Read(Some(ids)))
                }
                Some(Value::Null) => Ok(SetOp::Read(Some(Vec::new()))),
                Some(other) => Err(format!(
                    "a set read returns an array of members, got {}",
                    crate::text::abbreviate(&crate::text::json_for_terminal(other), 80)
                )),
            },
            other => Err(format!(
                "the set model has no operation {:?}; its operations are add, read",
                crate::text::for_terminal(other)
            )),
        }
    }

    fn step(&self, state: &Vec<ValueId>, op: &SetOp) -> Option<Vec<ValueId>> {
        match op {
            SetOp::Add(x) => match state.binary_search(x) {
                Ok(_) => Some(state.clone()),
                Err(at) => {
                    let mut next = state.clone();
                    next.insert(at, *x);
                    Some(next)
                }
            },
            SetOp::Read(None) => Some(state.clone()),
            SetOp::Read(Some(members)) => (members == state).then(|| state.clone()),
        }
    }

    fn observe(&self, state: &Vec<ValueId>, op: &SetOp) -> Option<bool> {
        match op {
            SetOp::Read(Some(m)) => Some(m == state),
            SetOp::Read(None) => Some(true),
            SetOp::Add(x) => state.binary_search(x).is_ok().then_some(true),
        }
    }

    fn is_read(&self, op: &SetOp) -> bool {
        matches!(op, SetOp::Read(_))
    }

    /// A set only grows: a read is still possible iff it holds every member already there.
    fn may_read_later(&self, state: &Vec<ValueId>, op: &SetOp) -> bool {
        match op {
            SetOp::Read(Some(members)) => {
                state.len() <= members.len()
                    && state.iter().all(|x| members.binary_search(x).is_ok())
            }
            _ => true,
        }
    }

    fn state_bytes(&self, state: &Vec<ValueId>) -> usize {
        std::mem::size_of::<Vec<ValueId>>() + 4 * state.capacity()
    }

    fn describe_op(&self, op: &SetOp, values: &ValueTable) -> String {
        match op {
            SetOp::Add(x) => format!("add {}", values.render(*x)),
            SetOp::Read(None) => "read → ?".to_string(),
            SetOp::Read(Some(m)) => format!("read → {}", render_members(m, values)),
        }
    }

    fn describe_state(&self, state: &Vec<ValueId>, values: &ValueTable) -> String {
        render_members(state, values)
    }

    /// Drops indeterminate reads, and indeterminate adds of an element that no ok read
    /// contains: members are never removed, so once added every later read would list it; a
    /// linearization containing the add has no ok read after it, and stays one without it.
    fn simplify(&self, ops: &[ModelOp<SetOp>], _init: &Vec<ValueId>, keep: &mut [bool]) {
        let mut seen = rustc_hash::FxHashSet::default();
        for op in ops {
            if let (SetOp::Read(Some(m)), Some(_)) = (&op.op, op.ret) {
                seen.extend(m.iter().copied());
            }
        }
        for (op, k) in ops.iter().zip(keep.iter_mut()) {
            if op.is_ok() {
                continue;
            }
            let relevant = match &op.op {
                SetOp::Read(_) => false,
                SetOp::Add(x) => seen.contains(x),
            };
            if !relevant {
                *k = false;
            }
        }
    }

    /// An ok read listing an element that no add invoked before the read completed added.
    fn unexplained(
        &self,
        view: &KeyView<'_, SetOp>,
        _init: &Vec<ValueId>,
    ) -> Option<(usize, String)> {
        let (key, ops, values) = (view.key, view.ops, view.values);
        let (i, x) = super::earliest_unexplained(
            ops,
            |op| match op {
                SetOp::Add(x) => Some(*x),
                SetOp::Read(_) => None,
            },
            |op| match op {
                SetOp::Read(Some(members)) => members.clone(),
                _ => Vec::new(),
            },
            |_| false,
        )?;
        let of = key.map(|k| format!(" of {k}")).unwrap_or_default();
        Some((
            i,
            format!(
                "read{of} listed {}, which no add had even begun to add when the read completed",
                values.render(x)
            ),
        ))
    }
}

fn render_members(m: &[ValueId], values: &ValueTable) -> String {
    let shown: Vec<String> = m.iter().take(20).map(|x| values.render(*x)).collect();
    let more = if m.len() > 20 {
        format!(", … ({} in all)", m.len())
    } else {
        String::new()
    };
    format!("#{{{}{more}}}", shown.join(", "))
}
