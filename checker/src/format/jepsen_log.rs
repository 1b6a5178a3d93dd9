//! Jepsen console-log lines, as in Jepsen's 2014 etcd analysis and Porcupine's test data, and as
//! later Jepsen versions log them (logback's layout, with the thread before the logger):
//!
//! ```text
//! INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[3 0]
//! INFO  jepsen.util - 3<TAB>:info<TAB>:cas<TAB>:timed-out
//! INFO [2019-04-01 11:25:23,791] jepsen worker 1 - jepsen.util 1<TAB>:invoke<TAB>:read<TAB>nil
//! ```
//!
//! After the logger name `jepsen.util` (and a `-`, in the older layout) come process, `:type`,
//! `:f` and value (EDN, which may itself hold blanks: `[3 0]`). Jepsen's versions separate them
//! with tabs, spaces or both, so any run of blanks separates the first three, and the rest of
//! the line is the value (up to a tab: Jepsen logs an operation's error after its value).
//!
//! Which lines are operations: a `jepsen.util` line whose first field is a process (an integer
//! or `:nemesis`) or whose second is a type (`:invoke`, `:ok`, `:fail`, `:info`). Other lines
//! are other log output and are skipped (and counted); an operation line that does not parse
//! is an error naming the line, so no operation is lost silently.

use crate::error::HistoryError;
use crate::history::{Event, EventType, History, Process};

const LOGGER: &str = "jepsen.util";

/// If `line` is a `jepsen.util` line whose first field is a process, that field and the rest
/// of the line after it.
pub(super) fn operation_fields(line: &str) -> Option<(&str, &str)> {
    let at = line.find(LOGGER)?;
    let after = &line[at + LOGGER.len()..];
    if !after.starts_with([' ', '\t']) {
        return None; // another logger, such as `jepsen.utility`
    }
    let after = after.trim_start_matches([' ', '\t']);
    let after = match after.strip_prefix('-') {
        Some(rest) if rest.starts_with([' ', '\t']) => rest,
        _ => after,
    };
    let (process, rest) = next_field(after);
    let is_process = process == ":nemesis"
        || (!process.is_empty() && process.bytes().all(|b| b.is_ascii_digit()));
    // A line whose second field is an operation type is an operation even when its process
    // is garbled: it must be an error, not skipped.
    let (kind, _) = next_field(rest);
    let is_type = matches!(kind, ":invoke" | ":ok" | ":fail" | ":info");
    (is_process || is_type).then_some((process, rest))
}

/// The first blank-separated field of `s` and what follows it.
fn next_field(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    s.split_at(end)
}

pub fn parse(source: &str, text: &str) -> Result<(History, Vec<String>), HistoryError> {
    let mut events = Vec::new();
    let mut skipped = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let Some((process, rest)) = operation_fields(line) else {
            if !line.trim().is_empty() {
                skipped += 1;
            }
            continue;
        };
        let err = |msg: String| HistoryError::at(source, line_no, msg);
        let process = match process {
            ":nemesis" => Process::Nemesis,
            p => Process::Client(p.parse().map_err(|_| {
                err(format!(
                    "the process must be a non-negative integer or :nemesis, got {:?}",
                    crate::text::for_terminal(p)
                ))
            })?),
        };
        let (kind, rest) = next_field(rest);
        let (f, rest) = next_field(rest);
        // Jepsen may log the op's error after the value, behind another tab: the value ends
        // there. (With spaces only, the EDN reader stops after the first form.)
        let rest = rest.trim_start_matches([' ', '\t']);
        let value = rest.split('\t').next().unwrap_or("").trim();
        if kind.is_empty() || f.is_empty() || value.is_empty() {
            return Err(err(format!(
                "expected 4 fields after {LOGGER:?} (process, :type, :f, value), found {}",
                [kind, f, value].iter().filter(|s| !s.is_empty()).count() + 1
            )));
        }
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
        let value = edn_format::parse_str(value)
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
