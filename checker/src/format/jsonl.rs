//! faultline's JSON Lines history format (`docs/history-format.md`).

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::HistoryError;
use crate::history::{Event, EventType, History, Process};

/// One line as written; converted to an [`Event`] after checking each field.
#[derive(Deserialize)]
struct Line {
    index: u64,
    #[serde(default)]
    time: Option<u64>,
    process: Value,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    #[serde(default)]
    key: Option<Value>,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    error: Option<Value>,
}

/// Parses JSONL text. A last line that does not parse *and* has no trailing newline is what a
/// crash in the middle of a write leaves behind: it is skipped with a warning, not an error.
pub fn parse(source: &str, text: &str) -> Result<(History, Vec<String>), HistoryError> {
    let mut events = Vec::new();
    let mut warnings = Vec::new();
    let mut last_index: Option<(u64, usize)> = None;
    let torn_tail_possible = !text.ends_with('\n');
    let total_lines = text.lines().count();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let parsed: Line = match serde_json::from_str(trimmed) {
            Ok(l) => l,
            Err(e) => {
                if torn_tail_possible && line_no == total_lines {
                    warnings.push(format!(
                        "{source}:{line_no}: skipped an incomplete last line (the recorder \
                         stopped in the middle of writing it)"
                    ));
                    break;
                }
                return Err(HistoryError::at(source, line_no, describe_json_error(&e)));
            }
        };
        let at = |msg: String| HistoryError::at(source, line_no, msg);
        let process = match &parsed.process {
            Value::Number(n) => n.as_u64().map(Process::Client).ok_or_else(|| {
                at(format!(
                    "\"process\" must be a non-negative integer or \"nemesis\", got {n}"
                ))
            })?,
            Value::String(s) if s == "nemesis" => Process::Nemesis,
            other => {
                return Err(at(format!(
                    "\"process\" must be a non-negative integer or \"nemesis\", got {}",
                    crate::text::abbreviate(&crate::text::json_for_terminal(other), 40)
                )))
            }
        };
        let kind = EventType::parse(&parsed.kind).ok_or_else(|| {
            at(format!(
                "\"type\" must be one of invoke, ok, fail, info; got {:?}",
                crate::text::abbreviate(&crate::text::for_terminal(&parsed.kind), 40)
            ))
        })?;
        if let Some((prev, prev_line)) = last_index {
            if parsed.index <= prev {
                return Err(at(format!(
                    "\"index\" {} does not increase (line {prev_line} has index {prev}); events \
                     must appear in the order they happened",
                    parsed.index
                )));
            }
        }
        last_index = Some((parsed.index, line_no));
        events.push(Event {
            index: parsed.index,
            time: parsed.time,
            process,
            kind,
            f: parsed.f,
            key: parsed.key.filter(|k| !k.is_null()),
            value: parsed.value,
            node: parsed.node,
            error: parsed.error,
            line: line_no,
        });
    }
    Ok((
        History {
            source: source.to_string(),
            events,
        },
        warnings,
    ))
}

/// serde_json's message without its "at line 1 column N" suffix (we know the line), plus the
/// column.
fn describe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(cut) => msg[..cut].to_string(),
        None => msg,
    };
    format!("not a valid event: {msg} (column {})", e.column())
}

/// One event as written: a struct, so fields come out in the documented order.
#[derive(Serialize)]
struct OutLine<'a> {
    index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
    process: Value,
    #[serde(rename = "type")]
    kind: &'static str,
    f: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a Value>,
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a Value>,
}

/// One event as a JSONL line (without the newline).
pub fn event_line(e: &Event) -> String {
    let line = OutLine {
        index: e.index,
        time: e.time,
        process: match e.process {
            Process::Client(p) => p.into(),
            Process::Nemesis => "nemesis".into(),
        },
        kind: e.kind.as_str(),
        f: &e.f,
        key: e.key.as_ref(),
        value: &e.value,
        node: e.node.as_deref(),
        error: e.error.as_ref(),
    };
    // Serialising plain data to a String cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// Writes events as JSON Lines.
pub fn write<W: Write>(out: &mut W, events: &[Event]) -> io::Result<()> {
    for e in events {
        out.write_all(event_line(e).as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
