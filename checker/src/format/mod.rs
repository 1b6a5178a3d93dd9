//! Reading and writing histories.
//!
//! * [`Format::Jsonl`] — faultline's own format, one event per line (`docs/history-format.md`).
//! * [`Format::Edn`] — Jepsen's `history.edn`: one vector (or list) of op maps, or one map per
//!   line. Extra keys are ignored; Jepsen `independent` values `[k v]` become keys.
//! * [`Format::JepsenLog`] — the `jepsen.util` console-log lines of Jepsen's 2014 etcd analysis,
//!   as in Porcupine's test data.
//!
//! Readers never panic and never drop an operation silently: malformed input is an error that
//! names the file, the line and the problem. The only input skipped is what is, by the format's
//! definition, not an event (blank lines, comments, non-`jepsen.util` log lines), and a torn
//! last line of a JSONL file (what a crash mid-write leaves), which is reported as a warning.

use std::path::Path;

use crate::error::HistoryError;
use crate::history::History;

pub mod edn;
pub mod jepsen_log;
pub mod jsonl;

/// A history file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Edn,
    JepsenLog,
}

impl Format {
    /// Names accepted by `--format` (plus `auto`).
    pub const NAMES: &'static [&'static str] = &["jsonl", "edn", "jepsen-log"];

    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "jsonl" | "json" => Some(Format::Jsonl),
            "edn" | "jepsen-edn" | "jepsen-edn-lines" => Some(Format::Edn),
            "jepsen-log" => Some(Format::JepsenLog),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
            Format::JepsenLog => "jepsen-log",
        }
    }

    /// What a read of nil means in a history of this format when the user did not say:
    /// Jepsen's meaning (unknown) for Jepsen's formats, the strict one for faultline's own
    /// JSONL, whose recorder writes `ok` with `null` only for a read that found nothing.
    pub fn default_nil_reads(self) -> crate::model::NilReads {
        match self {
            Format::Jsonl => crate::model::NilReads::Value,
            Format::Edn | Format::JepsenLog => crate::model::NilReads::Unknown,
        }
    }
}

/// Parses one value given on a command line or in a configuration file (an initial value),
/// as JSON or else as EDN with the same conversion rules as history values.
pub fn parse_value(text: &str) -> Result<serde_json::Value, String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(v);
    }
    // The EDN importer, on a one-operation history.
    let probe = format!("{{:process 0, :type :invoke, :f :x, :value {text}}}");
    parse_str_with("value", &probe, Format::Edn, Independent::No)
        .ok()
        .and_then(|parsed| parsed.history.events.first().map(|e| e.value.clone()))
        .ok_or_else(|| {
            format!(
                "{:?} is neither JSON nor EDN (examples: null, nil, 0, \"\", '\"abc\"')",
                crate::text::for_terminal(text)
            )
        })
}

/// How Jepsen `independent` tuples in EDN values are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Independent {
    /// Values are `[key value]` tuples iff every client event's value is a 2-element vector
    /// and not every operation is a cas (whose own value is a pair).
    #[default]
    Auto,
    Yes,
    No,
}

/// A parsed history and anything the reader wants the user to know.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub history: History,
    pub format: Format,
    /// Non-fatal observations, e.g. a torn last line that was skipped.
    pub warnings: Vec<String>,
}

/// Guesses the format from the first significant line of `text`: `{"` is JSONL; a text with
/// any `jepsen.util` operation line is a Jepsen console log (a console log may print pages of
/// set-up output, even EDN maps, before its first operation); otherwise `[`, `(`, `#jepsen`
/// or `{:` is EDN.
pub fn detect(source: &str, text: &str) -> Result<Format, HistoryError> {
    let first = text
        .lines()
        .map(|line| line.trim_start_matches(|c: char| c.is_whitespace() || c == ','))
        .find(|t| !t.is_empty() && !t.starts_with(';'))
        .unwrap_or("");
    if let Some(rest) = first.strip_prefix('{') {
        let rest = rest.trim_start();
        if rest.starts_with('"') || rest.starts_with('}') {
            return Ok(Format::Jsonl);
        }
    }
    if text
        .lines()
        .any(|l| jepsen_log::operation_fields(l).is_some())
    {
        return Ok(Format::JepsenLog);
    }
    let edn = first.starts_with('[')
        || first.starts_with('(')
        || first.starts_with("#jepsen")
        || first
            .strip_prefix('{')
            .is_some_and(|rest| rest.trim_start().starts_with(':'));
    if edn {
        return Ok(Format::Edn);
    }
    Err(HistoryError::whole(
        source,
        "cannot tell the format from the first line; pass --format jsonl, edn or jepsen-log",
    ))
}

/// Parses `text` (the contents of `source`) in `format`.
pub fn parse_str(source: &str, text: &str, format: Format) -> Result<Parsed, HistoryError> {
    parse_str_with(source, text, format, Independent::Auto)
}

/// Like [`parse_str`], choosing how EDN `independent` tuples are read.
pub fn parse_str_with(
    source: &str,
    text: &str,
    format: Format,
    independent: Independent,
) -> Result<Parsed, HistoryError> {
    let (history, warnings) = match format {
        Format::Jsonl => jsonl::parse(source, text)?,
        Format::Edn => (edn::parse(source, text, independent)?, Vec::new()),
        Format::JepsenLog => jepsen_log::parse(source, text)?,
    };
    if history.events.is_empty() {
        return Err(HistoryError::whole(
            source,
            format!("no events found (read as {})", format.name()),
        ));
    }
    Ok(Parsed {
        history,
        format,
        warnings,
    })
}

/// Reads a history file, detecting its format when `format` is `None`.
pub fn read_path(
    path: &Path,
    format: Option<Format>,
    independent: Independent,
) -> Result<Parsed, HistoryError> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| HistoryError::whole(&source, format!("cannot read the file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        HistoryError::at(&source, line, "the file is not valid UTF-8 text")
    })?;
    let format = match format {
        Some(f) => f,
        None => detect(&source, &text)?,
    };
    parse_str_with(&source, &text, format, independent)
}
