//! Every history of the shared corpus (real Porcupine and Knossos histories with known
//! verdicts, listed in `$FAULTLINE_CORPUS/manifest.tsv`) gets its expected verdict, and every
//! invalid one is explained by a real operation and a window that re-checks as invalid.
//!
//! Without `FAULTLINE_CORPUS` the test says it was skipped; with it set to a missing folder it
//! fails (CI sets it, so a broken setup can never pass silently).

use std::path::PathBuf;

use faultline_checker::format::{self, Format, Independent};
use faultline_checker::{
    check_history, CheckOptions, History, ModelSpec, NilReads, Outcome, Verdict,
};
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

/// Every history is checked under both meanings of a read of nil: Jepsen's (unknown, what
/// `faultline check` uses for these formats) and the strict one. The corpus's reads of nil all
/// come before any write completes, so both must give the known verdict.
#[test]
fn every_corpus_history_gets_its_known_verdict() {
    let Some(rows) = rows() else { return };
    let mut failures = Vec::new();
    for (row, nil_reads) in rows
        .iter()
        .flat_map(|r| [(r, NilReads::Unknown), (r, NilReads::Value)])
    {
        let history = read(row, Some(row.format));
        let options = CheckOptions {
            nil_reads,
            ..CheckOptions::default()
        };
        let report = check_history(&row.spec, &history, &options).unwrap_or_else(|e| panic!("{e}"));
        if report.verdict != row.expected {
            failures.push(format!(
                "{} ({nil_reads:?}): expected {:?}, got {:?}",
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
            let again = check_history(&row.spec, &window, &options).unwrap();
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

/// Jepsen's console logs in the layouts other Jepsen versions write: the same operations with
/// the tabs turned into runs of spaces (as in Porcupine's etcd_100-102), or a space beside each
/// tab, read as the same history and get the same verdict.
#[test]
fn console_logs_read_the_same_whatever_their_blanks() {
    let Some(rows) = rows() else { return };
    let logs: Vec<&Row> = rows
        .iter()
        .filter(|r| r.format == Format::JepsenLog)
        .collect();
    assert!(!logs.is_empty(), "the corpus has console logs");
    for row in logs {
        let text = std::fs::read_to_string(&row.path).unwrap_or_else(|e| panic!("{e}"));
        let original = format::parse_str("log", &text, Format::JepsenLog)
            .unwrap_or_else(|e| panic!("{e}"))
            .history;
        for (layout, relaid) in [
            ("spaces", text.replace('\t', "   ")),
            ("space and tab", text.replace('\t', " \t")),
        ] {
            assert_eq!(format::detect("log", &relaid).ok(), Some(Format::JepsenLog));
            let again = format::parse_str("log", &relaid, Format::JepsenLog)
                .unwrap_or_else(|e| panic!("{} ({layout}): {e}", row.path.display()))
                .history;
            assert_eq!(again.events.len(), original.events.len(), "{layout}");
            for (a, b) in original.events.iter().zip(&again.events) {
                assert_eq!(
                    (a.process, a.kind, &a.f, &a.value, a.line),
                    (b.process, b.kind, &b.f, &b.value, b.line),
                    "{} ({layout})",
                    row.path.display()
                );
            }
            let verdict = check_history(&row.spec, &again, &CheckOptions::default())
                .unwrap_or_else(|e| panic!("{e}"))
                .verdict;
            assert_eq!(verdict, row.expected, "{} ({layout})", row.path.display());
        }
    }
}
