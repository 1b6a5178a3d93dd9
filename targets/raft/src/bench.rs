//! The load generator behind `scripts/bench-raft` (`faultline bench-kv`, a hidden subcommand):
//! a closed loop of N concurrent clients, each issuing its next request as soon as the previous
//! one is answered, against either the bundled Raft KV (http-kv) or etcd's v3 JSON gateway.
//! Prints throughput and latency percentiles of successful operations.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::Client;
use crate::core::SeededRng;

/// Arguments of `faultline bench-kv`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What the endpoints speak: `raft` (http-kv; clients follow not-leader redirects) or
    /// `etcd` (v3 JSON gateway; linearizable reads).
    #[arg(long, default_value = "raft")]
    pub target: String,
    /// HOST:PORT of each node's client API.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Fraction of operations that are writes; the rest are linearizable reads.
    #[arg(long, default_value_t = 0.5)]
    pub write_ratio: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// etcd only: spread clients over all endpoints (etcd forwards to its leader) instead of
    /// sending them all to the leader. On this 2-core machine spreading is slower, so the
    /// default gives etcd its best configuration.
    #[arg(long)]
    pub etcd_spread: bool,
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

struct Worker {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

fn worker(args: &BenchArgs, i: usize, deadline: Instant) -> Worker {
    let client = Client::new(Duration::from_secs(5));
    let mut rng = SeededRng::new(args.seed.wrapping_mul(1000).wrapping_add(i as u64));
    let mut endpoint = if args.target == "etcd" {
        i % args.endpoints.len()
    } else {
        0
    };
    let mut current: Option<String> = None;
    let mut w = Worker {
        latencies_us: Vec::new(),
        errors: 0,
        first_error: None,
    };
    let mut counter = 0u64;
    while Instant::now() < deadline {
        let key = format!("k{}", rng.below(args.keys.max(1)));
        let write = rng.chance(args.write_ratio);
        counter += 1;
        let start = Instant::now();
        let mut attempts = 0;
        let ok = loop {
            attempts += 1;
            if attempts > 20 || Instant::now() >= deadline + Duration::from_secs(5) {
                break Err("gave up after 20 attempts".to_string());
            }
            let addr = current
                .clone()
                .unwrap_or_else(|| args.endpoints[endpoint].clone());
            let r = if args.target == "etcd" {
                let k = base64(key.as_bytes());
                if write {
                    let v = base64(format!("{i}-{counter}").as_bytes());
                    client.post_json(
                        &format!("http://{addr}/v3/kv/put"),
                        &json!({"key": k, "value": v}).to_string(),
                    )
                } else {
                    client.post_json(
                        &format!("http://{addr}/v3/kv/range"),
                        &json!({"key": k}).to_string(),
                    )
                }
            } else if write {
                client.kv_put(&addr, &key, &json!(format!("{i}-{counter}")))
            } else {
                client.kv_get(&addr, &key)
            };
            match r {
                Ok(reply) if reply.status == 200 => break Ok(()),
                Ok(reply) if reply.status == 503 => {
                    // Not the leader: follow the redirect, or try the next node.
                    match reply.leader_addr() {
                        Some(a) => current = Some(a.to_string()),
                        None => {
                            current = None;
                            endpoint = (endpoint + 1) % args.endpoints.len();
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                Ok(reply) => break Err(format!("status {}: {}", reply.status, reply.body)),
                Err(e) => {
                    current = None;
                    endpoint = (endpoint + 1) % args.endpoints.len();
                    break Err(e);
                }
            }
        };
        match ok {
            Ok(()) => w.latencies_us.push(start.elapsed().as_micros() as u64),
            Err(e) => {
                w.errors += 1;
                if w.first_error.is_none() {
                    w.first_error = Some(e);
                }
            }
        }
    }
    w
}

/// Waits (up to 30 s) until the cluster can serve: a leader is known (raft) or every endpoint
/// answers a linearizable read (etcd).
fn wait_ready(args: &BenchArgs) -> anyhow::Result<()> {
    let client = Client::new(Duration::from_secs(2));
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = if args.target == "etcd" {
            args.endpoints.iter().all(|e| {
                client
                    .post_json(&format!("http://{e}/v3/kv/range"), r#"{"key":"cmVhZHk="}"#)
                    .is_ok_and(|r| r.status == 200)
            })
        } else {
            args.endpoints.iter().any(|e| {
                client
                    .status(e)
                    .is_ok_and(|r| r.body.get("role").and_then(|v| v.as_str()) == Some("leader"))
            })
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > until {
            anyhow::bail!(
                "the {} cluster at {:?} did not become ready within 30 s",
                args.target,
                args.endpoints
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The endpoint of etcd's current leader, from `/v3/maintenance/status`.
fn etcd_leader(endpoints: &[String]) -> Option<String> {
    let client = Client::new(Duration::from_secs(2));
    endpoints.iter().find_map(|e| {
        let r = client
            .post_json(&format!("http://{e}/v3/maintenance/status"), "{}")
            .ok()?;
        let member = r.body.get("header")?.get("member_id")?.as_str()?;
        (r.body.get("leader")?.as_str()? == member).then(|| e.clone())
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}

/// Runs the benchmark and prints the result (a human line and a `RESULT` line for scripts).
pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    if !matches!(args.target.as_str(), "raft" | "etcd") {
        anyhow::bail!("--target {:?}: expected raft or etcd", args.target);
    }
    if args.endpoints.is_empty() || args.clients == 0 {
        anyhow::bail!("--endpoints and --clients must not be empty");
    }
    wait_ready(&args)?;
    let mut args = args;
    if args.target == "etcd" && !args.etcd_spread {
        if let Some(leader) = etcd_leader(&args.endpoints) {
            println!("etcd: all clients on the leader {leader}");
            args.endpoints = vec![leader];
        }
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration_secs);
    let workers: Vec<Worker> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|i| {
                s.spawn({
                    let args = &args;
                    move || worker(args, i, deadline)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all: Vec<u64> = workers
        .iter()
        .flat_map(|w| w.latencies_us.iter().copied())
        .collect();
    all.sort_unstable();
    let errors: u64 = workers.iter().map(|w| w.errors).sum();
    let ops = all.len();
    let ops_per_sec = ops as f64 / elapsed;
    let (p50, p99, p999) = (
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
    );
    println!(
        "{}: {ops} ops in {elapsed:.1}s = {ops_per_sec:.0} ops/s; latency p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms; {errors} errors",
        args.target
    );
    if let Some(e) = workers.iter().find_map(|w| w.first_error.as_ref()) {
        println!("first error: {}", e.escape_debug());
    }
    println!(
        "RESULT target={} ops={ops} ops_per_sec={ops_per_sec:.0} p50_ms={p50:.2} p99_ms={p99:.2} p999_ms={p999:.2} errors={errors}",
        args.target
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_examples() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
