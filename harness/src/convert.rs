//! `faultline convert`: rewrites a history in another format, e.g. faultline's JSONL as Jepsen
//! EDN for Jepsen's own tools (Knossos, Elle).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use faultline_checker::format::{self, edn, jsonl, Format, Independent};
use faultline_checker::text::for_terminal;

use crate::exit::{EXIT_BAD_INPUT, EXIT_VALID};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Keyed operations become Jepsen independent tuples in EDN (:value [key value]).

Example:
  faultline convert results/latest/history.jsonl --to edn -o history.edn")]
pub struct ConvertArgs {
    /// The history to convert.
    #[arg(value_name = "HISTORY")]
    pub input: PathBuf,
    /// Input format: auto, jsonl, edn or jepsen-log.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub from: String,
    /// Output format: edn or jsonl.
    #[arg(long, value_name = "FORMAT")]
    pub to: String,
    /// Output file; `-` (the default) for standard output.
    #[arg(long, short = 'o', default_value = "-", value_name = "FILE")]
    pub output: PathBuf,
}

pub fn run(args: ConvertArgs) -> ExitCode {
    match convert(&args) {
        Ok(()) => ExitCode::from(EXIT_VALID),
        Err(msg) => {
            eprintln!("faultline convert: {}", for_terminal(&msg));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn convert(args: &ConvertArgs) -> Result<(), String> {
    let from = match args.from.as_str() {
        "auto" => None,
        name => Some(Format::from_name(name).ok_or_else(|| {
            format!("--from: unknown format {name:?}; use auto, jsonl, edn or jepsen-log")
        })?),
    };
    let parsed =
        format::read_path(&args.input, from, Independent::Auto).map_err(|e| e.to_string())?;
    for w in &parsed.warnings {
        eprintln!("faultline convert: note: {}", for_terminal(w));
    }
    let text = match args.to.as_str() {
        "edn" => edn::write(&parsed.history.events).into_bytes(),
        "jsonl" => {
            let mut out = Vec::new();
            jsonl::write(&mut out, &parsed.history.events).map_err(|e| e.to_string())?;
            out
        }
        other => return Err(format!("--to: expected edn or jsonl, got {other:?}")),
    };
    if args.output.as_os_str() == "-" {
        std::io::stdout()
            .write_all(&text)
            .map_err(|e| format!("cannot write to standard output: {e}"))
    } else {
        std::fs::write(&args.output, text)
            .map_err(|e| format!("cannot write {}: {e}", args.output.display()))
    }
}
