//! `junit.xml`: the run as a JUnit report, which every CI system reads. One test case per
//! check — the workload's checker (linearizability or set) and the final convergence check —
//! failing with the explanation when the check found a violation, and erroring when it was
//! inconclusive: an unknown verdict must not pass a release gate silently.

use std::fmt::Write as _;

use serde_json::Value;

use super::escape::xml;
use super::load::Run;

/// One test case: a check's name, verdict and explanation.
struct Case {
    name: String,
    verdict: String,
    explanation: Vec<String>,
}

/// The run's checks: from `results.json`'s `checks` (the workload's checker, then the
/// convergence check), or, for a run without them (an imported history), one case carrying
/// the run's verdict.
fn cases(run: &Run) -> Vec<Case> {
    let listed: Vec<Case> = run
        .result("/checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(Case {
                name: c.get("name")?.as_str()?.to_string(),
                verdict: c.get("verdict")?.as_str()?.to_string(),
                explanation: c
                    .get("explanation")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
            })
        })
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    let kind = run
        .checker
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("check");
    let name = match run.checker.get("model").and_then(Value::as_str) {
        Some(model) => format!("{kind} ({model})"),
        None => kind.to_string(),
    };
    vec![Case {
        name,
        verdict: run.verdict.clone(),
        explanation: run.explanation.clone(),
    }]
}

pub fn render(run: &Run, suite: &str) -> String {
    let cases = cases(run);
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
    let count = |v: &str| cases.iter().filter(|c| c.verdict == v).count();
    let tests = cases.len();
    let failures = count("invalid");
    let skipped = count("skipped");
    let errors = tests - failures - skipped - count("valid");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"faultline\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{duration_s:.3}\">"
    );
    let timestamp = run
        .result("/started")
        .and_then(Value::as_str)
        .map(iso_timestamp)
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{duration_s:.3}\"{}>",
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
    for (i, case) in cases.iter().enumerate() {
        // The checker's time belongs to the first case; the others are read-backs.
        let time = if i == 0 { check_s } else { 0.0 };
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\">",
            xml(suite),
            xml(&case.name)
        );
        let text = case.explanation.join("\n");
        let first = case
            .explanation
            .first()
            .cloned()
            .unwrap_or_else(|| format!("verdict: {}", case.verdict));
        match case.verdict.as_str() {
            "valid" => {}
            "invalid" => {
                let _ = writeln!(
                    out,
                    "      <failure type=\"invalid\" message=\"{}\">{}</failure>",
                    xml(&first),
                    xml(&text)
                );
            }
            "skipped" => {
                let _ = writeln!(out, "      <skipped message=\"{}\"/>", xml(&first));
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
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
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
