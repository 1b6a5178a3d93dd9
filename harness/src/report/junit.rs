//! `junit.xml`: the run as a JUnit report, which every CI system reads. One test case per
//! checker (the run's verdict on its workload), failing with the explanation when the history
//! is not linearizable, and erroring when the check was inconclusive: an unknown verdict must
//! not pass a release gate silently.

use std::fmt::Write as _;

use serde_json::Value;

use super::escape::xml;
use super::load::Run;

pub fn render(run: &Run, suite: &str) -> String {
    let kind = run
        .checker
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("check");
    let case = match run.checker.get("model").and_then(Value::as_str) {
        Some(model) => format!("{kind} ({model})"),
        None => kind.to_string(),
    };
    let check_s = run
        .checker
        .pointer("/report/check_ms")
        .and_then(Value::as_f64)
        .map(|ms| ms / 1e3)
        .unwrap_or(0.0);
    let duration_s = run
        .result("/duration_s")
        .and_then(Value::as_f64)
        .unwrap_or(run.end_ns as f64 / 1e9);
    let (failures, errors) = match run.verdict.as_str() {
        "valid" => (0, 0),
        "invalid" => (1, 0),
        _ => (0, 1),
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"faultline\" tests=\"1\" failures=\"{failures}\" errors=\"{errors}\" time=\"{duration_s:.3}\">"
    );
    let timestamp = run
        .result("/started")
        .and_then(Value::as_str)
        .map(iso_timestamp)
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"1\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{duration_s:.3}\"{}>",
        xml(suite),
        if timestamp.is_empty() {
            String::new()
        } else {
            format!(" timestamp=\"{}\"", xml(&timestamp))
        }
    );
    out.push_str("    <properties>\n");
    for (name, pointer) in [
        ("seed", "/seed"),
        ("target", "/target"),
        ("workload", "/workload"),
        ("faultline_version", "/faultline_version"),
    ] {
        if let Some(v) = run.result(pointer).filter(|v| !v.is_null()) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                xml(&text)
            );
        }
    }
    let _ = writeln!(
        out,
        "      <property name=\"operations\" value=\"{}\"/>",
        run.ops.len()
    );
    let _ = writeln!(
        out,
        "      <property name=\"faults\" value=\"{}\"/>",
        run.faults.len()
    );
    out.push_str("    </properties>\n");
    let _ = writeln!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{check_s:.3}\">",
        xml(suite),
        xml(&case)
    );
    let text = run.explanation.join("\n");
    let first = run
        .explanation
        .first()
        .cloned()
        .unwrap_or_else(|| format!("verdict: {}", run.verdict));
    match run.verdict.as_str() {
        "valid" => {}
        "invalid" => {
            let _ = writeln!(
                out,
                "      <failure type=\"invalid\" message=\"{}\">{}</failure>",
                xml(&first),
                xml(&text)
            );
        }
        other => {
            let _ = writeln!(
                out,
                "      <error type=\"{}\" message=\"{}\">{}</error>",
                xml(other),
                xml(&first),
                xml(&text)
            );
        }
    }
    out.push_str("    </testcase>\n  </testsuite>\n</testsuites>\n");
    out
}

/// `20261125T212446Z` → `2026-11-25T21:24:46` (JUnit's timestamp has no zone).
fn iso_timestamp(s: &str) -> String {
    let b = s.as_bytes();
    if s.is_ascii() && b.len() >= 15 && b[8] == b'T' {
        format!(
            "{}-{}-{}T{}:{}:{}",
            &s[0..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13],
            &s[13..15]
        )
    } else {
        String::new()
    }
}
