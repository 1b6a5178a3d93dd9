//! `faultline`, the command line: it parses the arguments, runs each subcommand through the
//! crate that does the work, says what came of it, and exits with Jepsen's codes.
//!
//! `test` runs in `faultline-controller`, `report` and `serve` in `faultline-report`, `node` in
//! the bundled Raft; `check`, `convert`, `synth` and `clean` are thin modules here over the
//! checker, the nemesis and the targets. The exit codes let CI scripts tell a broken system
//! (1) from an inconclusive check (2) and from a usage mistake (254).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod clean;
mod convert;
mod exit;
mod synth;

use exit::{exit_code, EXIT_BAD_INPUT, EXIT_VALID};

/// The checker allocates many small, short-lived strings and tables per key; mimalloc serves
/// them about a third faster than glibc's allocator (measured on the kv histories).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "faultline", version = faultline_raft::BUILD_VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a test: start a cluster, drive clients while faults hit it, check the history.
    Test(Box<faultline_controller::TestArgs>),
    /// Run a matrix of tests × seeds as one gate: one verdict, one JUnit file, one page.
    Campaign(faultline_campaign::campaign::CampaignArgs),
    /// Cut a failing run's fault schedule down to the smallest one that still fails.
    Shrink(faultline_campaign::shrink::ShrinkArgs),
    /// Kill processes that a killed test controller left behind.
    Clean(clean::CleanArgs),
    /// Check recorded histories for linearizability.
    Check(check::CheckArgs),
    /// Convert a history to another format (JSONL → Jepsen EDN, or back).
    Convert(convert::ConvertArgs),
    /// Rebuild a run's report (report.html, plots, junit.xml), or make one for any history.
    Report(faultline_report::ReportArgs),
    /// Serve a results folder over HTTP: a list of runs, their reports and files.
    Serve(faultline_report::serve::ServeArgs),
    /// Write a synthetic history of a correct register (for benchmarks and experiments).
    Synth(synth::SynthArgs),
    /// Run one node of the bundled Raft key-value store.
    Node(faultline_raft::NodeArgs),
    /// Closed-loop load generator for `scripts/bench-raft` (bundled Raft or etcd).
    #[command(hide = true)]
    BenchKv(faultline_raft::bench::BenchArgs),
    /// What faultline runs on a test's SSH hosts (uploaded there by the controller).
    #[command(hide = true)]
    Host(faultline_remote::agent::HostArgs),
    /// Serve a directory through the lose-unfsynced filesystem until interrupted (for
    /// `BENCH_FAULTFS=1 scripts/bench-raft`).
    #[command(hide = true)]
    Faultfs(FaultfsArgs),
}

#[derive(Debug, clap::Args)]
struct FaultfsArgs {
    /// Where the data lives (created if missing).
    #[arg(long)]
    backing: std::path::PathBuf,
    /// The directory to serve it at.
    mountpoint: std::path::PathBuf,
}

/// Mounts, waits for SIGINT or SIGTERM, unmounts.
fn serve_faultfs(args: FaultfsArgs) -> Result<u8, String> {
    use nix::sys::signal::{SigSet, Signal};
    faultline_faultfs::check_available()?;
    // Blocked before the filesystem's thread starts, so only the wait below takes them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let disk = faultline_faultfs::Disk::mount(&args.backing, &args.mountpoint, "bench")?;
    eprintln!("faultfs: serving {}", args.mountpoint.display());
    let _ = signals.wait();
    disk.unmount()?;
    Ok(EXIT_VALID)
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
        Command::Test(args) => {
            let outcome = faultline_controller::run(*args, faultline_report::write_report_or_warn);
            finish("test", outcome.map(exit_code))
        }
        Command::Campaign(args) => {
            let outcome = faultline_campaign::campaign::run(
                args,
                faultline_report::campaign::write_campaign_report_or_warn,
            );
            finish(
                "campaign",
                outcome.map(|o| match o.verdict {
                    "valid" => EXIT_VALID,
                    "invalid" => exit::EXIT_INVALID,
                    _ => exit::EXIT_UNKNOWN,
                }),
            )
        }
        Command::Shrink(args) => finish(
            "shrink",
            faultline_campaign::shrink::run(args).map(|o| {
                if o.reproduced {
                    exit::EXIT_INVALID
                } else {
                    exit::EXIT_UNKNOWN
                }
            }),
        ),
        Command::Clean(args) => clean::run(args),
        Command::Check(args) => check::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Report(args) => finish("report", faultline_report::run(args).map(|()| EXIT_VALID)),
        Command::Serve(args) => finish(
            "serve",
            faultline_report::serve::run(args).map(|()| EXIT_VALID),
        ),
        Command::Node(args) => match faultline_raft::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("faultline node: {err:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Faultfs(args) => finish("faultfs", serve_faultfs(args)),
        Command::Host(args) => finish(
            "host",
            faultline_remote::agent::run(args).map(|()| EXIT_VALID),
        ),
        Command::BenchKv(args) => match faultline_raft::bench::run_bench(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("faultline bench-kv: {err:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
    }
}

/// The exit code of a subcommand's outcome; a failure is said on stderr first, named after the
/// subcommand.
fn finish(subcommand: &str, outcome: Result<u8, String>) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "faultline {subcommand}: {}",
                faultline_checker::text::for_terminal(&e)
            );
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
