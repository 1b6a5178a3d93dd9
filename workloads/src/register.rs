//! The register workload: read, write and cas over many keys.
//!
//! A window of active keys is in use at any time; each operation picks one. A key that has
//! received [`OPS_PER_KEY`] operations is retired and replaced by a fresh one, so a long test
//! produces many small per-key histories (cheap to check: the search is exponential in the
//! concurrency of one key's history, not in its length, and P-compositionality checks keys
//! separately) instead of one huge one. Write values are unique per key (a counter), which
//! makes stale reads provable and lets the checker drop lost writes nobody observed.

use faultline_checker::ModelSpec;
use rand::RngExt;
use serde_json::Value;

use crate::{Checker, Op, Request, Rng, Workload};

/// Operations a key receives before it is retired.
pub const OPS_PER_KEY: u32 = 200;

struct Key {
    name: String,
    ops: u32,
    /// The last value this generator wrote: a cas expecting it succeeds often enough.
    last_written: Option<u64>,
    next_value: u64,
}

/// See the module documentation.
pub struct RegisterWorkload {
    active: Vec<Key>,
    next_key: u64,
    /// Every key ever used, for the final reads.
    used: Vec<String>,
}

impl RegisterWorkload {
    /// A workload for `concurrency` clients: about two clients per active key, so keys see
    /// real concurrency without any one key's history becoming wide.
    pub fn new(concurrency: usize) -> RegisterWorkload {
        let mut w = RegisterWorkload {
            active: Vec::new(),
            next_key: 0,
            used: Vec::new(),
        };
        for _ in 0..concurrency.div_ceil(2).max(1) {
            let key = w.fresh_key();
            w.active.push(key);
        }
        w
    }

    fn fresh_key(&mut self) -> Key {
        let name = format!("r{}", self.next_key);
        self.next_key += 1;
        self.used.push(name.clone());
        Key {
            name,
            ops: 0,
            last_written: None,
            next_value: 1,
        }
    }
}

impl Workload for RegisterWorkload {
    fn next(&mut self, rng: &mut Rng) -> Request {
        let slot = rng.random_range(0..self.active.len());
        if self.active[slot].ops >= OPS_PER_KEY {
            self.active[slot] = self.fresh_key();
        }
        let key = &mut self.active[slot];
        key.ops += 1;
        let op = match rng.random_range(0..3u8) {
            0 => Op::Read,
            1 => {
                let v = key.next_value;
                key.next_value += 1;
                key.last_written = Some(v);
                Op::Write(Value::from(v))
            }
            _ => {
                let to = key.next_value;
                key.next_value += 1;
                let from = match key.last_written {
                    Some(v) => Value::from(v),
                    None => Value::Null,
                };
                key.last_written = Some(to);
                Op::Cas {
                    from,
                    to: Value::from(to),
                }
            }
        };
        Request {
            op,
            key: key.name.clone(),
        }
    }

    fn checker(&self) -> Checker {
        Checker::Linearizable(ModelSpec::CasRegister {
            initial: Value::Null,
        })
    }

    fn final_reads(&self) -> Vec<Request> {
        self.used
            .iter()
            .map(|k| Request {
                op: Op::Read,
                key: k.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn keys_are_retired_after_their_budget_and_values_are_unique() {
        let mut w = RegisterWorkload::new(4);
        let mut rng = Rng::seed_from_u64(1);
        let mut per_key = std::collections::HashMap::<String, (u32, Vec<Value>)>::new();
        for _ in 0..5_000 {
            let r = w.next(&mut rng);
            let e = per_key.entry(r.key.clone()).or_default();
            e.0 += 1;
            match r.op {
                Op::Write(v) | Op::Cas { to: v, .. } => e.1.push(v),
                _ => {}
            }
        }
        assert!(per_key.len() > 5_000 / OPS_PER_KEY as usize);
        for (key, (ops, written)) in &per_key {
            assert!(*ops <= OPS_PER_KEY, "{key} got {ops} operations");
            let mut unique = written.clone();
            unique.sort_by_key(|v| v.to_string());
            unique.dedup();
            assert_eq!(unique.len(), written.len(), "{key} wrote a value twice");
        }
        assert_eq!(w.final_reads().len(), per_key.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_requests() {
        let run = |seed| {
            let mut w = RegisterWorkload::new(5);
            let mut rng = Rng::seed_from_u64(seed);
            (0..100).map(|_| w.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
