//! Every history of the shared corpus (real Porcupine and Knossos histories with known
//! verdicts, listed in `$FAULTLINE_CORPUS/manifest.tsv`) gets its expected verdict, and every
//! invalid one is explained by a real operation and a window that re-checks as invalid.
//!
//! Without `FAULTLINE_CORPUS` the test says it was skipped; with it set to a missing folder it
//! fails (CI sets it, so a broken setup can never pass silently).

use std::path::PathBuf;

use faultline_checker::format::{self, Format, Independent};
use faultline_checker::{check_history, CheckOptions, History, ModelSpec, Outcome, Verdict};
use serde_json::Value;

struct Row {
    path: PathBuf,
    format: Format,
    spec: ModelSpec,
    expected: Verdict,
}

fn rows() -> Option<Vec<Row>> {
    let Some(dir) = std::env::var_os("FAULTLINE_CORPUS") else {
        eprintln!("SKIPPED: FAULTLINE_CORPUS is not set (CI sets it to ../shared/corpus)");
        return None;
    };
    let dir = PathBuf::from(dir);
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap_or_else(|e| {
        panic!(
            "FAULTLINE_CORPUS={} but its manifest.tsv cannot be read: {e}",
            dir.display()
        )
    });
    let mut rows = Vec::new();
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [path, fmt, model, initial, expected] = cols[..] else {
            panic!("manifest line with {} columns: {line:?}", cols.len());
        };
        let format = match fmt {
            "jepsen-log" => Format::JepsenLog,
            "jepsen-edn" | "jepsen-edn-lines" => Format::Edn,
            other => panic!("unknown format {other} in manifest"),
        };
        let initial = match initial {
            "nil" => Value::Null,
            "\"\"" => Value::String(String::new()),
            n => Value::from(n.parse::<i64>().expect("numeric initial value")),
        };
        rows.push(Row {
            path: dir.join(path),
            format,
            spec: ModelSpec::from_name(model, Some(initial)).expect("known model"),
            expected: match expected {
                "valid" => Verdict::Valid,
                "invalid" => Verdict::Invalid,
                other => panic!("unknown expected verdict {other}"),
            },
        });
    }
    assert!(!rows.is_empty(), "the manifest lists no histories");
    Some(rows)
}

fn read(row: &Row, format: Option<Format>) -> History {
    format::read_path(&row.path, format, Independent::Auto)
        .unwrap_or_else(|e| panic!("{e}"))
        .history
}

#[test]
fn every_corpus_history_gets_its_known_verdict() {
    let Some(rows) = rows() else { return };
    let mut failures = Vec::new();
    for row in &rows {
        let history = read(row, Some(row.format));
        let report = check_history(&row.spec, &history, &CheckOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        if report.verdict != row.expected {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                row.path.display(),
                row.expected,
                report.verdict
            ));
            continue;
        }
        if row.expected == Verdict::Invalid {
            let failure = &report.failures[0];
            // The culprit is a real operation of the file, completed ok, as reported.
            let invoke = history
                .events
                .iter()
                .find(|e| e.index == failure.culprit.index)
                .expect("culprit is an event of the history");
            assert_eq!(invoke.line, failure.culprit.line);
            assert_eq!(invoke.f, failure.culprit.f);
            assert_eq!(failure.culprit.outcome, Outcome::Ok);
            assert!(!failure.sentence.is_empty());
            // Its window is a counterexample on its own, failing at the same operation.
            let window = History::from_events("window", failure.window_events.clone());
            let again = check_history(&row.spec, &window, &CheckOptions::default()).unwrap();
            assert_eq!(again.verdict, Verdict::Invalid, "{}", row.path.display());
            assert_eq!(again.failures[0].culprit.index, failure.culprit.index);
            assert!(
                failure.window.len() <= 40,
                "window of {}",
                failure.window.len()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_formats_are_detected() {
    let Some(rows) = rows() else { return };
    for row in &rows {
        let parsed =
            format::read_path(&row.path, None, Independent::Auto).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.format, row.format, "{}", row.path.display());
    }
}
