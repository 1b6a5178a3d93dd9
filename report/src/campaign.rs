//! A campaign's `junit.xml` and `campaign.html`, made from its `campaign.json` (written by
//! `faultline campaign`). One JUnit test suite per cell and one case per run, so a CI system
//! shows which cells failed and how often; the page is the matrix as a table of pass rates,
//! with a link to every run's own report.
//!
//! Everything in `campaign.json` that came from runs (explanations, cell values, paths) is
//! escaped; the page has no script.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::escape::{html, xml};
use super::html::url_path;

/// Writes `junit.xml` and `campaign.html` into the campaign folder `dir`.
pub fn write_campaign_report(dir: &Path) -> Result<(), String> {
    let path = dir.join("campaign.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let c: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    write_atomically(&dir.join("junit.xml"), &junit(&c))?;
    write_atomically(&dir.join("campaign.html"), &page(&c))?;
    Ok(())
}

/// [`write_campaign_report`] for the end of a campaign: a page that cannot be written is a
/// warning, never a reason to lose the verdict.
pub fn write_campaign_report_or_warn(dir: &Path) {
    if let Err(e) = write_campaign_report(dir) {
        eprintln!(
            "  warning: cannot write the campaign report: {}",
            faultline_checker::text::for_terminal(&e)
        );
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn runs_of<'a>(c: &'a Value, cell: &str) -> Vec<&'a Value> {
    c["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["cell"] == cell)
        .collect()
}

/// One `<testsuite>` per cell (named after the campaign and the cell), one `<testcase>` per
/// run: invalid runs fail with their explanation, unknown and errored runs error (an
/// inconclusive run must not pass a gate), runs that never started are skipped.
fn junit(c: &Value) -> String {
    let campaign = str_of(c, "name");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let runs = c["runs"].as_array().map_or(&[][..], Vec::as_slice);
    let count = |s: &str| runs.iter().filter(|r| r["status"] == s).count();
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        xml(&format!("faultline campaign {campaign}")),
        runs.len(),
        count("invalid"),
        count("unknown") + count("error"),
        count("skipped"),
        c["wall_s"].as_f64().unwrap_or(0.0)
    );
    for cell in c["cells"].as_array().into_iter().flatten() {
        let id = str_of(cell, "id");
        let mine = runs_of(c, id);
        let n = |s: &str| mine.iter().filter(|r| r["status"] == s).count();
        let time: f64 = mine.iter().filter_map(|r| r["wall_s"].as_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
            xml(&format!("{campaign}.{id}")),
            mine.len(),
            n("invalid"),
            n("unknown") + n("error"),
            n("skipped"),
        );
        let values = cell["values"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} = {}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        if !values.is_empty() {
            let _ = writeln!(
                out,
                "    <properties><property name=\"cell\" value=\"{}\"/></properties>",
                xml(&values)
            );
        }
        for r in mine {
            let seed = r["seed"].as_u64().unwrap_or(0);
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"seed {seed}\" time=\"{:.3}\">",
                xml(&format!("{campaign}.{id}")),
                r["wall_s"].as_f64().unwrap_or(0.0)
            );
            let explanation = str_of(r, "explanation");
            let where_ = match r["dir"].as_str() {
                Some(d) => format!("\nrun: {d}"),
                None => format!("\nlog: {}", str_of(r, "log")),
            };
            let failed = r["failed_checks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            match str_of(r, "status") {
                "valid" => {}
                "invalid" => {
                    let _ = write!(
                        out,
                        "\n      <failure type=\"invalid\" message=\"{}\">{}</failure>\n    ",
                        xml(&format!("{failed}: {explanation}")),
                        xml(&format!("failed checks: {failed}\n{explanation}{where_}"))
                    );
                }
                "skipped" => {
                    let _ = write!(
                        out,
                        "\n      <skipped message=\"{}\"/>\n    ",
                        xml(explanation)
                    );
                }
                other => {
                    let _ = write!(
                        out,
                        "\n      <error type=\"{}\" message=\"{}\">{}</error>\n    ",
                        xml(other),
                        xml(explanation),
                        xml(&format!("{explanation}{where_}"))
                    );
                }
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.valid{background:#e3f6e3}.invalid{background:#fbe0e0}\
.unknown,.error{background:#fdf1d6}.skipped{color:#888}.badge{font-weight:bold;padding:.1em .5em;border-radius:3px}\
td.runs a{margin-right:.5em;white-space:nowrap}code{font-size:.95em}";

/// The campaign page: its verdict, the matrix (one row per cell: its values, pass rate and a
/// link per run) and every run with its explanation.
fn page(c: &Value) -> String {
    let name = str_of(c, "name");
    let verdict = str_of(c, "verdict");
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\
         <title>{} — campaign {} — faultline</title><style>{STYLE}</style></head><body><main>",
        html(&verdict.to_uppercase()),
        html(name)
    );
    let _ = write!(
        out,
        "<h1>Campaign {} <span class=\"badge {}\" id=\"verdict\">{}</span></h1><p>{}</p>",
        html(name),
        class(verdict),
        html(&verdict.to_uppercase()),
        html(str_of(c, "line"))
    );
    let _ = write!(
        out,
        "<p>Started {} · {} run(s) at a time · budget {} · overhead per run {} · \
         <a href=\"junit.xml\">junit.xml</a> · <a href=\"campaign.json\">campaign.json</a></p>",
        html(&super::html::pretty_stamp(str_of(c, "started"))),
        c["parallel"].as_u64().unwrap_or(1),
        c["budget_s"]
            .as_f64()
            .map_or("none".to_string(), |b| format!("{b:.0} s")),
        c["overhead_per_run_s"]
            .as_f64()
            .map_or("—".to_string(), |o| format!("{o:.1} s")),
    );
    let axes: Vec<&str> = c["axes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push_str("<h2>Matrix</h2><table id=\"matrix\"><thead><tr><th>cell</th>");
    for a in &axes {
        let _ = write!(out, "<th>{}</th>", html(a));
    }
    out.push_str(
        "<th>pass rate</th><th>invalid</th><th>unknown / errors</th><th>first violation \
         (median)</th><th>runs</th></tr></thead><tbody>",
    );
    for cell in c["cells"].as_array().into_iter().flatten() {
        let id = str_of(cell, "id");
        let ran = cell["runs"].as_u64().unwrap_or(0) - cell["skipped"].as_u64().unwrap_or(0);
        let row_class = if cell["invalid"].as_u64() > Some(0) {
            "invalid"
        } else if cell["unknown"].as_u64() > Some(0) || cell["errors"].as_u64() > Some(0) {
            "unknown"
        } else if ran == 0 {
            "skipped"
        } else {
            "valid"
        };
        let _ = write!(
            out,
            "<tr class=\"{row_class}\"><td><a href=\"{}\"><code>{}</code></a></td>",
            url_path(str_of(cell, "config")),
            html(id)
        );
        for a in &axes {
            let _ = write!(
                out,
                "<td><code>{}</code></td>",
                html(cell["values"][*a].as_str().unwrap_or(""))
            );
        }
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"runs\">",
            match cell["pass_rate"].as_f64() {
                Some(p) => format!(
                    "{:.0}% ({}/{})",
                    p * 100.0,
                    cell["valid"].as_u64().unwrap_or(0),
                    ran
                ),
                None => "not run".to_string(),
            },
            cell["invalid"].as_u64().unwrap_or(0),
            cell["unknown"].as_u64().unwrap_or(0) + cell["errors"].as_u64().unwrap_or(0),
            cell["median_first_violation_s"]
                .as_f64()
                .map_or("—".to_string(), |s| format!("{s:.1} s")),
        );
        for r in runs_of(c, id) {
            run_link(&mut out, r);
        }
        out.push_str("</td></tr>");
    }
    out.push_str(
        "</tbody></table><h2>Runs</h2><table id=\"runs\"><thead><tr><th>cell</th><th>seed</th>\
                  <th>verdict</th><th>failed checks</th><th>first violation</th><th>faults</th>\
                  <th>wall</th><th>explanation</th></tr></thead><tbody>",
    );
    for r in c["runs"].as_array().into_iter().flatten() {
        let status = str_of(r, "status");
        let _ = write!(
            out,
            "<tr class=\"{}\"><td><code>{}</code></td><td>",
            class(status),
            html(str_of(r, "cell"))
        );
        run_link(&mut out, r);
        let _ = write!(
            out,
            "</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(status),
            html(
                &r["failed_checks"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            ),
            r["first_violation_s"]
                .as_f64()
                .map_or(String::new(), |s| format!("{s:.1} s")),
            r["faults"]
                .as_u64()
                .map_or(String::new(), |f| f.to_string()),
            r["wall_s"]
                .as_f64()
                .map_or(String::new(), |s| format!("{s:.0} s")),
            html(str_of(r, "explanation"))
        );
    }
    out.push_str("</tbody></table></main></body></html>\n");
    out
}

/// A link to a run's report (or its log, when it has no report), labelled with its seed.
fn run_link(out: &mut String, r: &Value) {
    let seed = r["seed"].as_u64().unwrap_or(0);
    let status = str_of(r, "status");
    let href = r["report"]
        .as_str()
        .or_else(|| r["log"].as_str())
        .map(url_path);
    match href {
        Some(h) => {
            let _ = write!(
                out,
                "<a class=\"run {}\" href=\"{h}\" title=\"{}\">s{seed}</a>",
                class(status),
                html(status)
            );
        }
        None => {
            let _ = write!(
                out,
                "<span class=\"run {}\" title=\"{}\">s{seed}</span>",
                class(status),
                html(status)
            );
        }
    }
}

fn class(status: &str) -> &'static str {
    match status {
        "valid" => "valid",
        "invalid" => "invalid",
        "skipped" => "skipped",
        "error" => "error",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_become_cases_and_untrusted_text_is_escaped() {
        let c = json!({
            "name": "nightly", "verdict": "invalid", "line": "campaign <b>", "wall_s": 30.0,
            "axes": ["raft.bugs"],
            "cells": [{"id": "c01-none", "values": {"raft.bugs": "[]"}, "config": "cells/c01-none.toml",
                       "runs": 2, "valid": 1, "invalid": 1, "unknown": 0, "errors": 0, "skipped": 0,
                       "pass_rate": 0.5}],
            "runs": [
                {"cell": "c01-none", "seed": 1, "status": "valid", "wall_s": 12.0,
                 "report": "runs/c01-none/s1/x/r/report.html"},
                {"cell": "c01-none", "seed": 2, "status": "invalid", "wall_s": 13.0,
                 "failed_checks": ["linearizable (cas-register)"],
                 "explanation": "read <script>alert(1)</script>", "dir": "runs/c01-none/s2/x/r"},
            ],
        });
        let j = junit(&c);
        assert!(j.contains("tests=\"2\" failures=\"1\""), "{j}");
        assert!(j.contains("name=\"seed 2\""), "{j}");
        assert!(
            j.contains("&lt;script&gt;") && !j.contains("<script>"),
            "{j}"
        );
        let p = page(&c);
        assert!(
            p.contains("href=\"runs/c01-none/s1/x/r/report.html\""),
            "{p}"
        );
        assert!(p.contains("50% (1/2)"), "{p}");
        assert!(!p.contains("<script>") && !p.contains("<b>"), "{p}");
    }
}
