//! `faultline`: chaos tests for distributed systems, and a linearizability checker.
//!
//! Each subcommand lives in its own module; this file only parses the command line and maps
//! outcomes to exit codes, which follow Jepsen's convention so CI scripts can tell a broken
//! system (1) from an inconclusive check (2) and from a usage mistake (254).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod clean;
mod convert;
mod exit;
mod report;
mod serve;
mod synth;
mod test;

use exit::EXIT_BAD_INPUT;

/// The checker allocates many small, short-lived strings and tables per key; mimalloc serves
/// them about a third faster than glibc's allocator (measured on the kv histories).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "faultline", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a test: start a cluster, drive clients while faults hit it, check the history.
    Test(Box<test::TestArgs>),
    /// Kill processes that a killed test controller left behind.
    Clean(clean::CleanArgs),
    /// Check recorded histories for linearizability.
    Check(check::CheckArgs),
    /// Convert a history to another format (JSONL → Jepsen EDN, or back).
    Convert(convert::ConvertArgs),
    /// Rebuild a run's report (report.html, plots, junit.xml), or make one for any history.
    Report(report::ReportArgs),
    /// Serve a results folder over HTTP: a list of runs, their reports and files.
    Serve(serve::ServeArgs),
    /// Write a synthetic history of a correct register (for benchmarks and experiments).
    Synth(synth::SynthArgs),
    /// Run one node of the bundled Raft key-value store.
    Node(faultline_raft::NodeArgs),
    /// Closed-loop load generator for `scripts/bench-raft` (bundled Raft or etcd).
    #[command(hide = true)]
    BenchKv(faultline_raft::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap exits with 2 on usage errors, which would read as "unknown" to a CI script.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Test(args) => test::run(*args),
        Command::Clean(args) => clean::run(args),
        Command::Check(args) => check::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Report(args) => report::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Node(args) => match faultline_raft::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("faultline node: {err:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::BenchKv(args) => match faultline_raft::bench::run_bench(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("faultline bench-kv: {err:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
    }
}
