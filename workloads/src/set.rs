//! The set workload: unique adds to one set, and reads of the whole set.
//!
//! Adds use a fresh element each time (a counter), so every element's fate — stable, lost,
//! stale, never read — can be told apart by the set checker. One in ten operations is a read
//! (a read returns every element, so more would only slow the test down).

use rand::RngExt;
use serde_json::Value;

use crate::{Checker, Op, Request, Rng, Workload};

/// The key holding the set.
pub const SET_KEY: &str = "set";

/// See the module documentation.
#[derive(Default)]
pub struct SetWorkload {
    next_element: u64,
}

impl SetWorkload {
    pub fn new() -> SetWorkload {
        SetWorkload::default()
    }
}

impl Workload for SetWorkload {
    fn next(&mut self, rng: &mut Rng) -> Request {
        let op = if rng.random_range(0..10u8) == 0 {
            Op::ReadSet
        } else {
            self.next_element += 1;
            Op::Add(Value::from(self.next_element))
        };
        Request {
            op,
            key: SET_KEY.to_string(),
        }
    }

    fn checker(&self) -> Checker {
        Checker::Set
    }

    fn final_reads(&self) -> Vec<Request> {
        vec![Request {
            op: Op::ReadSet,
            key: SET_KEY.to_string(),
        }]
    }
}
