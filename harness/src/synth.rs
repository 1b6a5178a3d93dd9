//! `faultline synth`: writes a synthetic history of a correct register, for benchmarking and
//! for trying the checker (optionally with one planted stale read).

use std::path::PathBuf;
use std::process::ExitCode;

use faultline_checker::format;
use faultline_checker::synth::{self, RegisterSynth, Rng, Values};

use crate::exit::{EXIT_BAD_INPUT, EXIT_VALID};

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Operations in all.
    #[arg(long, default_value_t = 1000)]
    pub ops: usize,
    /// Independent keys (1: a single register, no `key` field).
    #[arg(long, default_value_t = 1)]
    pub keys: usize,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 5)]
    pub concurrency: usize,
    /// Fraction of operations whose response is lost (recorded as info or never completed).
    #[arg(long, default_value_t = 0.0)]
    pub lost: f64,
    /// Fraction of reads (writes and cas share the rest).
    #[arg(long, default_value_t = 0.5)]
    pub reads: f64,
    /// Write values: `unique`, or `range:N` for values drawn from 0..N.
    #[arg(long, default_value = "unique")]
    pub values: String,
    /// Leave out cas (a plain read/write register).
    #[arg(long)]
    pub no_cas: bool,
    /// Make the history provably not linearizable by planting one stale read.
    #[arg(long)]
    pub plant_stale_read: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file (JSONL); `-` for standard output.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: PathBuf,
}

pub fn run(args: SynthArgs) -> ExitCode {
    match synth(&args) {
        Ok(()) => ExitCode::from(EXIT_VALID),
        Err(msg) => {
            eprintln!("faultline synth: {msg}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn synth(args: &SynthArgs) -> Result<(), String> {
    let values = match args.values.as_str() {
        "unique" => Values::Unique,
        other => match other.strip_prefix("range:").map(str::parse::<u64>) {
            Some(Ok(n)) if n > 0 => Values::Range(n),
            _ => {
                return Err(format!(
                    "--values: expected unique or range:N, got {other:?}"
                ))
            }
        },
    };
    for (flag, v) in [("--lost", args.lost), ("--reads", args.reads)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("{flag}: must be between 0 and 1, got {v}"));
        }
    }
    if args.keys == 0 || args.concurrency == 0 {
        return Err("--keys and --concurrency must be at least 1".to_string());
    }
    let cfg = RegisterSynth {
        keys: args.keys,
        concurrency: args.concurrency,
        ops: args.ops,
        lost: args.lost,
        reads: args.reads,
        cas: !args.no_cas,
        values,
        seed: args.seed,
        ..RegisterSynth::default()
    };
    let mut history = synth::register_history(&cfg);
    if args.plant_stale_read {
        if matches!(values, Values::Range(_)) {
            return Err("--plant-stale-read needs --values unique".to_string());
        }
        let mut rng = Rng::new(args.seed ^ 0x5ca1ab1e);
        if synth::plant_stale_read(&mut history, &mut rng).is_none() {
            return Err("found no read to make stale; use more operations".to_string());
        }
    }
    let mut out = Vec::new();
    format::jsonl::write(&mut out, &history.events).map_err(|e| e.to_string())?;
    if args.output.as_os_str() == "-" {
        use std::io::Write as _;
        std::io::stdout()
            .write_all(&out)
            .map_err(|e| format!("cannot write: {e}"))
    } else {
        std::fs::write(&args.output, out)
            .map_err(|e| format!("cannot write {}: {e}", args.output.display()))
    }
}
