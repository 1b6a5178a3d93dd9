//! Synthetic histories of a correct (linearizable) register, for tests and benchmarks.
//!
//! Each client process runs operations one after another; every operation takes effect at one
//! instant strictly between its invocation and its completion (its linearization point), and
//! results are computed by applying operations to a real register in the order of those
//! instants. A history made this way is linearizable by construction, whatever the overlap,
//! so it can test a checker for false alarms; [`plant_stale_read`] then makes it provably not
//! linearizable, to test for missed violations.
//!
//! Lost responses follow Jepsen: the completion is recorded as `info` (or not at all), the
//! operation took effect or not at random, and the worker continues under a fresh process id.

use serde_json::Value;

use crate::history::{Event, EventType, History, Operation, Outcome, Process};

/// A small deterministic PRNG (SplitMix64): reproducible histories from a seed, identical on
/// every platform and every version of this crate.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What kind of values writes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Every write of a key writes a value never written before (faultline's workloads).
    Unique,
    /// Values drawn from `0..n` (Jepsen's classic cas-register test uses 5).
    Range(u64),
}

/// Shape of a synthetic register history.
#[derive(Clone, Debug)]
pub struct RegisterSynth {
    pub keys: usize,
    /// Concurrent client workers.
    pub concurrency: usize,
    /// Operations in all.
    pub ops: usize,
    /// Fraction of operations whose response is lost (recorded as `info` or never completed).
    pub lost: f64,
    /// Probability that an operation with a lost response took effect anyway.
    pub lost_took_effect: f64,
    /// Fraction of reads; writes and (with `cas`) compare-and-sets share the rest.
    pub reads: f64,
    pub cas: bool,
    pub values: Values,
    /// Longest time (in ticks) from invocation to linearization point, and from there to the
    /// completion: larger means more overlap between operations.
    pub max_latency: u64,
    pub seed: u64,
}

impl Default for RegisterSynth {
    fn default() -> Self {
        RegisterSynth {
            keys: 1,
            concurrency: 5,
            ops: 100,
            lost: 0.0,
            lost_took_effect: 0.5,
            reads: 0.5,
            cas: true,
            values: Values::Unique,
            max_latency: 20,
            seed: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum F {
    Read,
    Write,
    Cas,
}

struct SynthOp {
    process: u64,
    key: usize,
    f: F,
    /// Written value (write) / cas target; read: unused.
    value: u64,
    /// cas expectation.
    from: u64,
    invoke: u64,
    point: u64,
    complete: u64,
    /// The response was lost: 0 = delivered, 1 = recorded as info, 2 = never recorded.
    lost: u8,
    took_effect: bool,
    /// Filled in by the simulation.
    result: Option<Value>,
    failed: bool,
}

/// Generates a linearizable register history (keys `0..keys`, initial value `null`).
pub fn register_history(cfg: &RegisterSynth) -> History {
    let mut rng = Rng::new(cfg.seed);
    let mut ops: Vec<SynthOp> = Vec::with_capacity(cfg.ops);
    // Each worker's clock and current process id.
    let mut clock: Vec<u64> = (0..cfg.concurrency).map(|_| rng.below(5)).collect();
    let mut process: Vec<u64> = (0..cfg.concurrency as u64).collect();
    let mut next_process = cfg.concurrency as u64;
    let mut next_value: Vec<u64> = vec![1; cfg.keys.max(1)];
    let lat = cfg.max_latency.max(1);
    for _ in 0..cfg.ops {
        // The worker that is free first invokes next, so invocations interleave realistically.
        let w = (0..cfg.concurrency).min_by_key(|&w| clock[w]).unwrap_or(0);
        let key = rng.below(cfg.keys.max(1) as u64) as usize;
        let roll = rng.unit();
        let f = if roll < cfg.reads {
            F::Read
        } else if !cfg.cas || roll < cfg.reads + (1.0 - cfg.reads) / 2.0 {
            F::Write
        } else {
            F::Cas
        };
        let mut value_of = |rng: &mut Rng| match cfg.values {
            Values::Unique => {
                let v = next_value[key];
                next_value[key] += 1;
                v
            }
            Values::Range(n) => rng.below(n.max(1)),
        };
        let value = value_of(&mut rng);
        // A cas usually expects a recent value, so about half of them succeed.
        let from = match cfg.values {
            Values::Unique => next_value[key].saturating_sub(1 + rng.below(3)),
            Values::Range(n) => rng.below(n.max(1)),
        };
        let invoke = clock[w];
        let point = invoke + 1 + rng.below(lat);
        let complete = point + 1 + rng.below(lat);
        let lost = if rng.chance(cfg.lost) {
            if rng.chance(0.8) {
                1
            } else {
                2
            }
        } else {
            0
        };
        let took_effect = lost == 0 || rng.chance(cfg.lost_took_effect);
        ops.push(SynthOp {
            process: process[w],
            key,
            f,
            value,
            from,
            invoke,
            point,
            complete,
            lost,
            took_effect,
            result: None,
            failed: false,
        });
        clock[w] = complete + rng.below(3);
        if lost != 0 {
            process[w] = next_process;
            next_process += 1;
        }
    }

    // Apply operations at their linearization points, in time order.
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].point, i));
    let mut registers: Vec<Option<u64>> = vec![None; cfg.keys.max(1)];
    for i in order {
        let op = &mut ops[i];
        if !op.took_effect {
            continue;
        }
        let reg = &mut registers[op.key];
        match op.f {
            F::Read => op.result = Some(reg.map_or(Value::Null, Value::from)),
            F::Write => *reg = Some(op.value),
            F::Cas => {
                if *reg == Some(op.from) {
                    *reg = Some(op.value);
                } else {
                    op.failed = true;
                }
            }
        }
    }

    // Emit events in time order; at equal times completions come before invocations, which
    // only makes operations less concurrent than they really were (still linearizable).
    let mut timeline: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        timeline.push((op.invoke, 1, i));
        if op.lost != 2 {
            timeline.push((op.complete, 0, i));
        }
    }
    timeline.sort_unstable();
    let mut events = Vec::with_capacity(timeline.len());
    for (time, is_invoke, i) in timeline {
        let op = &ops[i];
        let key = (cfg.keys > 1).then(|| Value::from(op.key as u64));
        let input = match op.f {
            F::Read => Value::Null,
            F::Write => Value::from(op.value),
            F::Cas => Value::from(vec![op.from, op.value]),
        };
        let (kind, value) = if is_invoke == 1 {
            (EventType::Invoke, input)
        } else if op.lost == 1 {
            (EventType::Info, input)
        } else if op.failed {
            (EventType::Fail, input)
        } else {
            match op.f {
                F::Read => (EventType::Ok, op.result.clone().unwrap_or(Value::Null)),
                _ => (EventType::Ok, input),
            }
        };
        events.push(Event {
            index: events.len() as u64,
            time: Some(time * 1_000_000),
            process: Process::Client(op.process),
            kind,
            f: match op.f {
                F::Read => "read",
                F::Write => "write",
                F::Cas => "cas",
            }
            .to_string(),
            key,
            value,
            node: None,
            error: (kind == EventType::Info).then(|| Value::from("timeout")),
            line: events.len() + 1,
        });
    }
    History {
        source: format!("synthetic register history (seed {})", cfg.seed),
        events,
    }
}

/// Makes a linearizable register history with unique write values provably not linearizable:
/// picks an ok read `r`, an ok write `w` of `v`, and an ok write `x` of another value such that
/// `w` completed before `x` began and `x` completed before `r` began, and makes `r` return `v`.
/// Since only `w` ever wrote `v`, the register cannot hold `v` when `r` takes effect.
/// Returns the culprit read's invoke index, or `None` if the history has no such triple.
pub fn plant_stale_read(history: &mut History, rng: &mut Rng) -> Option<u64> {
    let ops: Vec<Operation> = history.operations().ok()?;
    let ev = &history.events;
    let is = |op: &Operation, f: &str| op.outcome == Outcome::Ok && ev[op.invoke].f == f;
    let writes: Vec<&Operation> = ops.iter().filter(|o| is(o, "write")).collect();
    let reads: Vec<&Operation> = ops.iter().filter(|o| is(o, "read")).collect();
    if reads.is_empty() || writes.len() < 2 {
        return None;
    }
    // How many operations on `key` may have written `v` (writes and cas targets, whatever
    // their outcome but fail): the planted value must have exactly one writer.
    let written_by = |key: &Option<Value>, v: &Value| {
        ops.iter()
            .filter(|o| o.outcome != Outcome::Fail && ev[o.invoke].key == *key)
            .filter(|o| {
                let e = &ev[o.invoke];
                (e.f == "write" && e.value == *v) || (e.f == "cas" && e.value.get(1) == Some(v))
            })
            .count()
    };
    for _ in 0..200 {
        let r = reads[rng.below(reads.len() as u64) as usize];
        let key = &ev[r.invoke].key;
        let same_key = |o: &&&Operation| ev[o.invoke].key == *key;
        let Some(x) = writes
            .iter()
            .filter(same_key)
            .filter(|x| x.completion.is_some_and(|c| c < r.invoke))
            .max_by_key(|x| x.completion)
        else {
            continue;
        };
        let candidates: Vec<&&Operation> = writes
            .iter()
            .filter(same_key)
            .filter(|w| w.completion.is_some_and(|c| c < x.invoke))
            .filter(|w| ev[w.invoke].value != ev[x.invoke].value)
            .filter(|w| written_by(key, &ev[w.invoke].value) == 1)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let w = candidates[rng.below(candidates.len() as u64) as usize];
        let v = ev[w.invoke].value.clone();
        let completion = r.completion?;
        let index = ev[r.invoke].index;
        history.events[completion].value = v;
        return Some(index);
    }
    None
}
