//! Jepsen console-log lines, as in Jepsen's 2014 etcd analysis and Porcupine's test data:
//!
//! ```text
//! INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[3 0]
//! INFO  jepsen.util - 3<TAB>:info<TAB>:cas<TAB>:timed-out
//! ```
//!
//! Fields after `jepsen.util - ` are tab-separated: process, `:type`, `:f`, value (EDN). Lines
//! without `jepsen.util - ` are other log output and are skipped; a `jepsen.util` line that does
//! not have this shape is an error, so no operation is lost silently.

use crate::error::HistoryError;
use crate::history::{Event, EventType, History, Process};

const MARKER: &str = "jepsen.util - ";

pub fn parse(source: &str, text: &str) -> Result<(History, Vec<String>), HistoryError> {
    let mut events = Vec::new();
    let mut skipped = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let Some(at) = line.find(MARKER) else {
            if !line.trim().is_empty() {
                skipped += 1;
            }
            continue;
        };
        let err = |msg: String| HistoryError::at(source, line_no, msg);
        let fields: Vec<&str> = line[at + MARKER.len()..].trim_end().split('\t').collect();
        let [process, kind, f, value] = fields.as_slice() else {
            return Err(err(format!(
                "expected 4 tab-separated fields after {MARKER:?} (process, :type, :f, value), \
                 found {}",
                fields.len()
            )));
        };
        let process = match process.trim() {
            ":nemesis" => Process::Nemesis,
            p => Process::Client(p.parse().map_err(|_| {
                err(format!(
                    "the process must be a non-negative integer or :nemesis, got {:?}",
                    crate::text::for_terminal(p)
                ))
            })?),
        };
        let kind = kind
            .strip_prefix(':')
            .and_then(EventType::parse)
            .ok_or_else(|| {
                err(format!(
                    "the type must be :invoke, :ok, :fail or :info, got {:?}",
                    crate::text::for_terminal(kind)
                ))
            })?;
        let f = f.strip_prefix(':').unwrap_or(f).to_string();
        let value = edn_format::parse_str(value.trim())
            .map(|v| super::edn::to_json(&v))
            .map_err(|e| err(format!("the value is not valid EDN: {}", e.error)))?;
        events.push(Event {
            index: events.len() as u64,
            time: None,
            process,
            kind,
            f,
            key: None,
            value,
            node: None,
            error: None,
            line: line_no,
        });
    }
    let warnings = if skipped > 0 && !events.is_empty() {
        vec![format!(
            "{source}: skipped {skipped} lines that are not jepsen.util operations"
        )]
    } else {
        Vec::new()
    };
    Ok((
        History {
            source: source.to_string(),
            events,
        },
        warnings,
    ))
}
