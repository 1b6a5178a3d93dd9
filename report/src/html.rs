//! `report.html`: one self-contained page (inline CSS, inline SVG plots, one small inline
//! script for the timeline; no network). Everything but the timeline is plain HTML, so the
//! summary and the counterexamples read without JavaScript.
//!
//! The page carries a Content-Security-Policy that allows no network and only the one script
//! whose SHA-256 it names: even if some history text slipped through unescaped, a browser
//! would refuse to run it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use faultline_checker::Outcome;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::counterexample::{self, secs};
use super::escape::{html, html_block, short, value_text};
use super::load::Run;
use super::plots::{self, Plots};

pub const SCRIPT: &str = include_str!("report.js");
const STYLE: &str = include_str!("report.css");
/// Explanation sentences listed on the page (all of them are in results.json).
const SENTENCES_SHOWN: usize = 200;
/// Sentences shown before the rest fold away.
const SENTENCES_FIRST: usize = 5;
const LEADER_CHANGES_SHOWN: usize = 200;
/// Failures listed by their sentence after the drawn ones (the page must stay bounded).
const FAILURES_LISTED: usize = 1000;

/// `'sha256-…'` of the report's script, for Content-Security-Policy.
pub fn script_hash() -> String {
    use base64::Engine as _;
    let digest = Sha256::digest(SCRIPT.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The policy of every report page (also sent by `faultline serve`).
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src data:; \
         base-uri 'none'; form-action 'none'",
        script_hash()
    )
}

pub struct Names {
    pub title: String,
    pub stamp: Option<String>,
}

pub fn render(run: &Run, names: &Names, plots: &Plots, timeline_json: &str) -> String {
    let mut out = String::with_capacity(
        plots.latency_raw.len()
            + plots.latency_quantiles.len()
            + plots.rate.len()
            + timeline_json.len()
            + 64 * 1024,
    );
    let verdict = run.verdict.to_uppercase();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\
         <meta name=\"viewport\" content=\"width=1140\">\
         <title>{} — {} — faultline</title><style>{STYLE}</style></head><body><main>",
        content_security_policy(),
        html(&verdict),
        html(&names.title),
    );
    summary(&mut out, run, names);
    failures(&mut out, run);
    plot_section(&mut out, run, plots);
    timeline_section(&mut out, run);
    faults(&mut out, run);
    cluster(&mut out, run);
    logs(&mut out, run);
    config(&mut out, run);
    files(&mut out, run);
    let _ = writeln!(
        out,
        "</main><script type=\"application/json\" id=\"timeline-data\">{timeline_json}</script>\
         <script>{SCRIPT}</script></body></html>"
    );
    out
}

fn badge_class(verdict: &str) -> &'static str {
    match verdict {
        "valid" => "valid",
        "invalid" => "invalid",
        "unknown" => "unknown",
        _ => "other",
    }
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `20261125T212446Z` → `2026-11-25 21:24:46 UTC`.
pub fn pretty_stamp(s: &str) -> String {
    let b = s.as_bytes();
    if s.is_ascii() && b.len() >= 15 && b[8] == b'T' && b[..8].iter().all(u8::is_ascii_digit) {
        format!(
            "{}-{}-{} {}:{}:{} UTC",
            &s[0..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13],
            &s[13..15]
        )
    } else {
        s.to_string()
    }
}

fn fact(out: &mut String, name: &str, value_html: &str) {
    let _ = write!(out, "<dt>{}</dt><dd>{value_html}</dd>", html(name));
}

fn summary(out: &mut String, run: &Run, names: &Names) {
    let _ = write!(
        out,
        "<header><h1><span class=\"badge {}\" id=\"verdict\">{}</span> {}</h1>",
        badge_class(&run.verdict),
        html(&run.verdict.to_uppercase()),
        html(&names.title)
    );
    if let Some(stamp) = &names.stamp {
        let _ = write!(out, "<div class=\"muted\">run {}</div>", html(stamp));
    }
    out.push_str("</header><section id=\"summary\"><h2>Summary</h2><dl class=\"facts\">");
    let target = text_of(run.result("/target"));
    if let Some(target) = &target {
        let version = text_of(run.result("/target_version")).or_else(|| {
            (target == "raft")
                .then(|| text_of(run.result("/faultline_version")))
                .flatten()
                .map(|v| format!("bundled with faultline {v}"))
        });
        let mut s = html(target);
        if let Some(v) = version {
            let _ = write!(s, " {}", html(&v));
        }
        let bugs = run
            .result("/config/raft/bugs")
            .and_then(Value::as_array)
            .map(|b| b.iter().map(|x| value_text(x, 40)).collect::<Vec<_>>())
            .unwrap_or_default();
        if !bugs.is_empty() {
            let _ = write!(s, "; deliberate bug: {}", html(&bugs.join(", ")));
        }
        fact(out, "Target", &s);
    }
    if let Some(w) = text_of(run.result("/workload")) {
        fact(out, "Workload", &html(&w));
    }
    if let Some(m) = text_of(run.checker.get("model")) {
        fact(out, "Model", &html(&m));
    }
    if let Some(nodes) = run.result("/nodes").and_then(Value::as_array) {
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| text_of(n.get("name")))
            .collect();
        fact(
            out,
            "Nodes",
            &html(&format!("{} ({})", nodes.len(), names.join(", "))),
        );
    }
    if let Some(seed) = text_of(run.result("/seed")) {
        fact(out, "Seed", &format!("<code>{}</code>", html(&seed)));
    }
    if let Some(started) = text_of(run.result("/started")) {
        fact(out, "Started", &html(&pretty_stamp(&started)));
    }
    let duration = run
        .result("/duration_s")
        .and_then(Value::as_f64)
        .unwrap_or(run.end_ns as f64 / 1e9);
    let mut d = if run.synthetic_time && run.results.is_none() {
        format!("{} events (no timestamps)", run.history.events.len())
    } else {
        format!("{duration:.1} s")
    };
    if let Some(c) = run.result("/clients_ran_s").and_then(Value::as_f64) {
        let _ = write!(d, " (clients ran {c:.1} s)");
    }
    if run.result("/interrupted").and_then(Value::as_bool) == Some(true) {
        d.push_str(", interrupted");
    }
    fact(out, "Duration", &html(&d));
    let (ok, fail, info, pending) = outcome_totals(run);
    fact(
        out,
        "Operations",
        &html(&format!(
            "{} ({ok} ok, {fail} fail, {info} info{})",
            run.ops.len(),
            if pending > 0 {
                format!(", {pending} never completed")
            } else {
                String::new()
            }
        )),
    );
    let unhealed = run.faults.iter().filter(|f| f.end_ns.is_none()).count();
    fact(
        out,
        "Faults",
        &html(&format!(
            "{}{}",
            run.faults.len(),
            if unhealed > 0 {
                format!(" ({unhealed} never healed)")
            } else {
                String::new()
            }
        )),
    );
    if let Some(ms) = run
        .checker
        .pointer("/report/check_ms")
        .and_then(Value::as_f64)
    {
        fact(out, "Checked in", &html(&format!("{ms:.1} ms")));
    }
    if run.test_toml.is_some() {
        fact(
            out,
            "Repeat",
            "<code>faultline test --config test.toml</code> (in this folder)",
        );
    }
    out.push_str("</dl>");

    if !run.explanation.is_empty() {
        out.push_str("<h3>Explanation</h3><ol class=\"explanation\" id=\"explanation\">");
        for (i, s) in run.explanation.iter().take(SENTENCES_SHOWN).enumerate() {
            if i == SENTENCES_FIRST {
                let _ = write!(
                    out,
                    "</ol><details><summary>{} more</summary><ol class=\"explanation\" start=\"{}\">",
                    run.explanation.len().min(SENTENCES_SHOWN) - SENTENCES_FIRST,
                    SENTENCES_FIRST + 1
                );
            }
            let _ = write!(out, "<li>{}</li>", html(&short(s, 2000)));
        }
        out.push_str("</ol>");
        if run.explanation.len() > SENTENCES_FIRST {
            out.push_str("</details>");
        }
        if run.explanation.len() > SENTENCES_SHOWN {
            let _ = write!(
                out,
                "<p class=\"muted\">… and {} more (all in results.json)</p>",
                run.explanation.len() - SENTENCES_SHOWN
            );
        }
    } else if run.verdict == "valid" {
        out.push_str(
            "<p id=\"explanation\">Every operation could be placed in one order consistent \
             with real time and the model.</p>",
        );
    }
    if !run.notes.is_empty() {
        out.push_str("<h3>Notes</h3><ul>");
        for n in &run.notes {
            let _ = write!(out, "<li>{}</li>", html(n));
        }
        out.push_str("</ul>");
    }
    checks_table(out, run);
    fingerprints_table(out, run);
    upgrade_table(out, run);
    counts_table(out, run);
    out.push_str("</section>");
}

/// Every check of the run (the workload's checker, convergence, election, cluster health,
/// availability) with its own verdict, as in `junit.xml`.
fn checks_table(out: &mut String, run: &Run) {
    let Some(checks) = run.result("/checks").and_then(Value::as_array) else {
        return;
    };
    out.push_str(
        "<h3>Checks</h3><table id=\"checks\"><tr><th>check</th><th>verdict</th><th>why</th></tr>",
    );
    for c in checks {
        let name = c.get("name").map(|v| value_text(v, 60)).unwrap_or_default();
        let verdict = c
            .get("verdict")
            .map(|v| value_text(v, 20))
            .unwrap_or_default();
        let why = c
            .get("explanation")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map(|v| value_text(v, 400))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td></tr>",
            html(&name),
            badge_class(&verdict),
            html(&verdict),
            html(&why)
        );
    }
    out.push_str("</table>");
}

/// The replicas' fingerprints after the test (results.json `fingerprints`): each member's
/// applied index, what was compared, and the last faults that hit it; members that differ
/// from the others are marked.
fn fingerprints_table(out: &mut String, run: &Run) {
    let Some(f) = run.result("/fingerprints").filter(|v| v.is_object()) else {
        return;
    };
    let members = f
        .get("members")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if members.is_empty() {
        return;
    }
    out.push_str("<h3>Replica fingerprints</h3>");
    let compared = f.get("compared").and_then(Value::as_bool).unwrap_or(false);
    let note = f
        .get("note")
        .map(|v| value_text(v, 400))
        .unwrap_or_default();
    let fields: Vec<String> = f
        .get("compared_fields")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| value_text(v, 40)).collect())
        .unwrap_or_default();
    let head = if compared {
        format!(
            "Compared at one applied index ({}): every member must have the same.",
            fields.join(", ")
        )
    } else {
        "Not compared.".to_string()
    };
    let _ = write!(out, "<p>{}</p>", html(&head));
    if !note.is_empty() {
        let _ = write!(out, "<p>{}</p>", html(&note));
    }
    out.push_str(
        "<table id=\"fingerprints\"><tr><th>member</th><th>applied index</th>\
         <th>fingerprint</th><th>last faults on it</th><th></th></tr>",
    );
    for m in &members {
        let node = m.get("node").map(|v| value_text(v, 40)).unwrap_or_default();
        let position = m
            .get("position")
            .map(|v| value_text(v, 30))
            .unwrap_or_default();
        let values: Vec<String> = m
            .get("values")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        format!(
                            "{} {}",
                            value_text(&Value::String(k.clone()), 40),
                            value_text(v, 80)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let faults: Vec<String> = m
            .get("last_faults")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| value_text(v, 80)).collect())
            .unwrap_or_default();
        let differs = m.get("differs").and_then(Value::as_bool).unwrap_or(false);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&node),
            html(&position),
            html(&values.join(", ")),
            html(&faults.join(", ")),
            if differs {
                "<span class=\"badge invalid\">differs</span>"
            } else {
                ""
            }
        );
    }
    out.push_str("</table>");
}

/// The rolling upgrade (results.json `upgrade`): each step with the versions, how long the
/// node took to rejoin, and how writes fared around it.
fn upgrade_table(out: &mut String, run: &Run) {
    let Some(u) = run.result("/upgrade").filter(|v| v.is_object()) else {
        return;
    };
    let path: Vec<String> = u
        .get("path")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| value_text(v, 60)).collect())
        .unwrap_or_default();
    let complete = u.get("complete").and_then(Value::as_bool).unwrap_or(false);
    let _ = write!(
        out,
        "<h3>Rolling upgrade</h3><p>{} ({} order){}</p>",
        html(&path.join(" → ")),
        html(
            &u.get("order")
                .map(|v| value_text(v, 30))
                .unwrap_or_default()
        ),
        if complete { "" } else { ": not completed" }
    );
    out.push_str(
        "<table id=\"upgrade\"><tr><th>step</th><th>node</th><th>from</th><th>to</th>\
         <th>at</th><th>rejoined after</th><th>longest without a successful write</th>\
         <th>failed / indeterminate writes</th><th>outcome</th></tr>",
    );
    let steps = u
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in &steps {
        let text = |k: &str, n: usize| s.get(k).map(|v| value_text(v, n)).unwrap_or_default();
        let secs = |v: Option<&Value>| {
            v.and_then(Value::as_f64)
                .map(|ms| format!("{:.1} s", ms / 1e3))
                .unwrap_or_else(|| "–".to_string())
        };
        let outcome = text("outcome", 20);
        let mut why = outcome.clone();
        if outcome != "rejoined" {
            if let Some(st) = s.get("exit_status") {
                why = format!("{why}: {}", value_text(st, 60));
            }
            if let Some(r) = s.get("rolled_back") {
                why = format!("{why}; {}", value_text(r, 120));
            }
        }
        let writes = s.get("writes");
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{} / {}</td><td><span class=\"badge {}\">{}</span></td></tr>",
            html(&format!("{} {}", text("id", 10), text("direction", 12))),
            html(&text("node", 40)),
            html(&text("from_version", 60)),
            html(&text("to_version", 60)),
            html(&secs(s.get("start_ms"))),
            html(&secs(s.get("rejoin_ms"))),
            html(&secs(
                writes.and_then(|w| w.get("longest_without_ok_write_ms"))
            )),
            html(
                &writes
                    .and_then(|w| w.get("failed"))
                    .map(|v| value_text(v, 12))
                    .unwrap_or_default()
            ),
            html(
                &writes
                    .and_then(|w| w.get("indeterminate"))
                    .map(|v| value_text(v, 12))
                    .unwrap_or_default()
            ),
            if outcome == "rejoined" {
                "valid"
            } else {
                "invalid"
            },
            html(&why)
        );
    }
    out.push_str("</table>");
}

fn outcome_totals(run: &Run) -> (usize, usize, usize, usize) {
    let mut t = (0, 0, 0, 0);
    for o in &run.ops {
        match o.outcome {
            Outcome::Ok => t.0 += 1,
            Outcome::Fail => t.1 += 1,
            Outcome::Info => t.2 += 1,
            Outcome::Pending => t.3 += 1,
        }
    }
    t
}

/// Operations by function and outcome, and latency quantiles of the ok ones.
fn counts_table(out: &mut String, run: &Run) {
    let mut by_f: BTreeMap<&str, ([usize; 4], Vec<u64>)> = BTreeMap::new();
    for o in &run.ops {
        let f = run.history.events[o.invoke].f.as_str();
        let e = by_f.entry(f).or_default();
        let k = match o.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
            Outcome::Pending => 3,
        };
        e.0[k] += 1;
        if o.outcome == Outcome::Ok {
            if let Some(l) = o.latency_ns() {
                e.1.push(l);
            }
        }
    }
    out.push_str(
        "<h3>Operations</h3><table id=\"counts\"><tr><th>function</th><th>ok</th><th>fail</th>\
         <th>info</th><th>never completed</th><th>ok latency p50</th><th>p90</th><th>p99</th>\
         <th>max (ms)</th></tr>",
    );
    for (f, (c, mut lat)) in by_f {
        lat.sort_unstable();
        let q = |p: f64| {
            if lat.is_empty() {
                String::new()
            } else {
                let v = lat[((lat.len() - 1) as f64 * p).round() as usize];
                format!("{:.3}", v as f64 / 1e6)
            }
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            html(&short(f, 40)),
            c[0],
            c[1],
            c[2],
            c[3],
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
    }
    out.push_str("</table>");
}

fn failures(out: &mut String, run: &Run) {
    let list = run.failures();
    if list.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section id=\"failures\"><h2>Counterexample{}</h2>",
        if list.len() > 1 { "s" } else { "" }
    );
    if list.len() > counterexample::DRAWN {
        let _ = write!(
            out,
            "<p>{} keys are not linearizable; the first {} are drawn below, the rest listed \
             after them.</p>",
            list.len(),
            counterexample::DRAWN,
        );
    }
    for (n, f) in list.iter().enumerate().take(counterexample::DRAWN) {
        if n == counterexample::OPEN {
            let _ = write!(
                out,
                "<details><summary>{} more drawn</summary>",
                list.len().min(counterexample::DRAWN) - counterexample::OPEN
            );
        }
        counterexample::section(out, run, n, f);
    }
    if list.len() > counterexample::OPEN {
        out.push_str("</details>");
    }
    if list.len() > counterexample::DRAWN {
        let _ = write!(
            out,
            "<details><summary>{} more, listed</summary><ol>",
            list.len() - counterexample::DRAWN
        );
        for (n, f) in list
            .iter()
            .enumerate()
            .skip(counterexample::DRAWN)
            .take(FAILURES_LISTED)
        {
            let _ = write!(
                out,
                "<li value=\"{}\">key {}: {} (line {})</li>",
                n + 1,
                html(&f.get("key").map(|k| value_text(k, 60)).unwrap_or_default()),
                html(f.get("sentence").and_then(Value::as_str).unwrap_or("")),
                f.pointer("/culprit/line")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            );
        }
        out.push_str("</ol>");
        if list.len() > counterexample::DRAWN + FAILURES_LISTED {
            let _ = write!(
                out,
                "<p class=\"muted\">… and {} more (all in results.json)</p>",
                list.len() - counterexample::DRAWN - FAILURES_LISTED
            );
        }
        out.push_str("</details>");
    }
    out.push_str("</section>");
}

fn plot_section(out: &mut String, run: &Run, plots: &Plots) {
    out.push_str("<section id=\"plots\"><h2>Latency and throughput</h2>");
    let _ = write!(
        out,
        "<p class=\"muted\">Each operation is a dot at its invocation time (log scale); dots \
         closer than 3 pixels are drawn once ({} dots for {} operations). Shaded: faults. \
         Dark lines (✗n): operations that cannot be linearized. Also as \
         <a href=\"latency-raw.svg\">latency-raw.svg</a>, \
         <a href=\"latency-quantiles.svg\">latency-quantiles.svg</a> and \
         <a href=\"rate.svg\">rate.svg</a>.</p>",
        plots.dots, plots.dotted_ops
    );
    if run.synthetic_time {
        out.push_str("<p class=\"muted\">No timestamps: the x axis is event order.</p>");
    }
    for svg in [&plots.latency_raw, &plots.latency_quantiles, &plots.rate] {
        let _ = write!(
            out,
            "<div class=\"plot\">{}<div class=\"zoomband\"></div></div>",
            strip_xml_declaration(svg)
        );
    }
    out.push_str("</section>");
}

/// plotters writes a bare `<svg>` element; anything before it would not belong in HTML.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

fn timeline_section(out: &mut String, run: &Run) {
    let _ = write!(
        out,
        "<section id=\"timeline\"><h2>Timeline</h2>\
         <p class=\"muted\">One row per process (processes that never overlap share a row), one \
         bar per operation from invocation to completion. Scroll to zoom, drag to pan, \
         double-click to reset; click an operation for its details (and a link to it).{}</p>\
         <div class=\"controls\"><button type=\"button\" data-timeline=\"in\">zoom in</button>\
         <button type=\"button\" data-timeline=\"out\">zoom out</button>\
         <button type=\"button\" data-timeline=\"reset\">whole run</button>\
         <span class=\"legend\"> <span><i style=\"background:#2b7bba\"></i>ok</span>\
         <span><i style=\"background:#d73027\"></i>fail</span>\
         <span><i style=\"background:#f09a1c\"></i>info</span>\
         <span><i style=\"background:#8c8c8c\"></i>never completed</span>\
         <span><i style=\"background:#1a7f3c\"></i>leader</span>\
         <span><i style=\"background:#b9dcc4\"></i>follower</span>\
         <span><i style=\"background:#f2c94c\"></i>candidate</span>\
         <span><i style=\"background:#dddddd\"></i>no answer</span></span></div>\
         <noscript><p>The timeline needs JavaScript; everything else on this page does not.</p></noscript>\
         <div class=\"timeline-box\"><canvas id=\"timeline-canvas\" width=\"{}\" height=\"40\"></canvas>\
         <div id=\"timeline-tip\" hidden></div></div><div id=\"timeline-detail\" hidden></div>",
        if run.ops.len() > super::timeline::DETAIL_LIMIT {
            format!(
                " This history has {} operations: the timeline shows every operation around \
                 each failure, and elsewhere how many operations each row ran per time slice.",
                run.ops.len()
            )
        } else {
            String::new()
        },
        plots::WIDTH
    );
    if run.status.is_empty() {
        out.push_str(
            "<p class=\"muted\">No node status samples (nodes/status.jsonl) in this run: \
             roles and terms are not shown.</p>",
        );
    }
    out.push_str("</section>");
}

fn faults(out: &mut String, run: &Run) {
    out.push_str("<section id=\"faults\"><h2>Faults</h2>");
    if run.faults.is_empty() {
        out.push_str("<p>No faults were injected.</p></section>");
        return;
    }
    if let Some(line) = text_of(run.result("/efficacy/line")) {
        let _ = write!(out, "<p id=\"efficacy\">{}</p>", html(&line));
    }
    let with_efficacy = run
        .faults
        .iter()
        .any(|f| f.detail.get("efficacy").is_some());
    out.push_str("<table id=\"fault-table\"><tr><th>#</th><th>fault</th><th>aimed at</th><th>nodes</th><th>from</th><th>to</th>");
    if with_efficacy {
        out.push_str(
            "<th>leader before → after</th><th>new leaders</th><th>minority side</th>\
             <th>recovery</th><th>effect</th>",
        );
    }
    out.push_str("<th>details</th></tr>");
    const SHOWN_ELSEWHERE: &[&str] = &[
        "efficacy",
        "scenario",
        "scenario_id",
        "target",
        "leader_at_start",
        "leader_at_end",
    ];
    for f in &run.faults {
        let detail = match &f.detail {
            Value::Object(m) => m
                .iter()
                .filter(|(k, _)| !SHOWN_ELSEWHERE.contains(&k.as_str()))
                .filter(|(_, v)| !matches!(v, Value::Array(a) if a.is_empty()) && !v.is_null())
                .map(|(k, v)| format!("{k}: {}", value_text(v, 120)))
                .collect::<Vec<_>>()
                .join("; "),
            Value::Null => String::new(),
            other => value_text(other, 200),
        };
        let scenario = text_of(f.detail.get("scenario"));
        let fault = match &scenario {
            Some(s) => format!("{} ({s})", f.fault),
            None => f.fault.clone(),
        };
        let aimed = text_of(f.detail.get("target")).or_else(|| f.aim.clone());
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            f.id.map(|i| i.to_string()).unwrap_or_default(),
            html(&short(&fault, 80)),
            html(&short(aimed.as_deref().unwrap_or(""), 80)),
            html(&short(&f.nodes.join(", "), 200)),
            secs(f.start_ns, run.synthetic_time),
            f.end_ns
                .map(|e| secs(e, run.synthetic_time))
                .unwrap_or_else(|| "never healed".to_string()),
        );
        if with_efficacy {
            efficacy_cells(out, f.detail.get("efficacy"));
        }
        let _ = write!(out, "<td>{}</td></tr>", html(&detail));
    }
    out.push_str("</table></section>");
}

/// `n2 (t4)`
fn leader_text(v: Option<&Value>) -> String {
    match v {
        Some(l) if !l.is_null() => {
            let node = l.get("node").map(|n| value_text(n, 20)).unwrap_or_default();
            match l.get("term").and_then(Value::as_u64) {
                Some(t) => format!("{node} (t{t})"),
                None => node,
            }
        }
        _ => "none".to_string(),
    }
}

/// The efficacy columns of one fault's row.
fn efficacy_cells(out: &mut String, e: Option<&Value>) {
    let Some(e) = e else {
        out.push_str("<td></td><td></td><td></td><td></td><td></td>");
        return;
    };
    let mut leaders = format!(
        "{} → {}",
        leader_text(e.get("leader_before")),
        leader_text(e.get("leader_after"))
    );
    if e.get("hit_leader").and_then(Value::as_bool) == Some(true) {
        leaders.push_str(", hit the leader");
    }
    let new: Vec<String> = e
        .get("new_leaders")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| leader_text(Some(l)))
        .collect();
    let mut new_text = new.join(", ");
    if let Some(ms) = e.get("election_ms").and_then(Value::as_f64) {
        let _ = write!(new_text, " (first after {:.2} s)", ms / 1e3);
    }
    let minority = e.get("minority").filter(|m| !m.is_null()).map(|m| {
        let nodes = m
            .get("nodes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|n| value_text(n, 20))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let acked = m.get("acknowledged").and_then(Value::as_u64).unwrap_or(0);
        let refused = m.get("refused").and_then(Value::as_u64).unwrap_or(0);
        let unanswered = m.get("unanswered").and_then(Value::as_u64).unwrap_or(0);
        (
            format!(
                "{nodes}: {acked} writes acknowledged, {refused} refused, {unanswered} unanswered"
            ),
            acked > 0,
        )
    });
    let recovery = match e.get("recovery_ms").and_then(Value::as_f64) {
        Some(ms) => format!("{:.2} s", ms / 1e3),
        None => text_of(e.get("recovery_note")).unwrap_or_default(),
    };
    let effect = if e.get("no_observable_effect").and_then(Value::as_bool) == Some(true) {
        "none observed".to_string()
    } else {
        let errors = e.get("client_errors").and_then(Value::as_u64).unwrap_or(0);
        format!("{errors} client errors")
    };
    let _ = write!(
        out,
        "<td>{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td>",
        html(&leaders),
        html(&new_text),
        if minority.as_ref().is_some_and(|m| m.1) {
            " class=\"warn\""
        } else {
            ""
        },
        html(&minority.map(|m| m.0).unwrap_or_default()),
        html(&short(&recovery, 120)),
        html(&effect),
    );
}

fn cluster(out: &mut String, run: &Run) {
    let exits = run
        .result("/unexpected_exits")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    let election = run.result("/election").filter(|e| e.is_object());
    if run.leader_changes.is_empty() && exits.is_none() && election.is_none() {
        return;
    }
    out.push_str("<section id=\"cluster\"><h2>Cluster</h2>");
    if let Some(e) = election {
        election_section(out, run, e);
    }
    if !run.leader_changes.is_empty() {
        out.push_str(
            "<h3>Leaders, as the nodes reported them</h3><table id=\"leaders\"><tr><th>time</th>\
             <th>node</th><th>leads term</th></tr>",
        );
        for c in run.leader_changes.iter().take(LEADER_CHANGES_SHOWN) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                secs(c.time_ns, run.synthetic_time),
                html(&short(&c.node, 40)),
                c.term
            );
        }
        out.push_str("</table>");
        if run.leader_changes.len() > LEADER_CHANGES_SHOWN {
            let _ = write!(
                out,
                "<p class=\"muted\">… and {} more (nodes/status.jsonl)</p>",
                run.leader_changes.len() - LEADER_CHANGES_SHOWN
            );
        }
    }
    if let Some(exits) = exits {
        out.push_str("<h3>Nodes that exited unexpectedly</h3><ul>");
        for e in exits {
            let _ = write!(
                out,
                "<li>{}: {}</li>",
                html(&e.get("node").map(|n| value_text(n, 40)).unwrap_or_default()),
                html(
                    &e.get("status")
                        .map(|n| value_text(n, 200))
                        .unwrap_or_default()
                )
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}

/// Most overlaps of leaders listed in the report (all are in results.json).
const OVERLAPS_SHOWN: usize = 30;

/// The election check: two leaders of one term (a violation), and leaders of different terms
/// at the same time (normal for a while, worth seeing).
fn election_section(out: &mut String, run: &Run, e: &Value) {
    let verdict = e
        .get("verdict")
        .map(|v| value_text(v, 20))
        .unwrap_or_default();
    let interval = e
        .get("sample_interval_ms")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let _ = write!(
        out,
        "<h3>Election safety <span class=\"badge {}\" id=\"election-verdict\">{}</span></h3>\
         <p class=\"muted\">At most one leader per term, ever: every node's role sampled every \
         {interval:.0} ms.</p>",
        badge_class(&verdict),
        html(&verdict)
    );
    if let Some(why) = e.get("explanation").and_then(Value::as_array) {
        out.push_str("<ul id=\"election-explanation\">");
        for w in why {
            let _ = write!(out, "<li>{}</li>", html(&value_text(w, 1000)));
        }
        out.push_str("</ul>");
    }
    let overlaps: Vec<&Value> = e
        .get("overlaps")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if overlaps.is_empty() {
        return;
    }
    let longest = e
        .get("longest_overlap_ms")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let _ = write!(
        out,
        "<p>{} time{} two nodes claimed to lead different terms at once (an old leader that \
         had not yet heard of its successor); the longest for {:.2} s.</p>\
         <table id=\"overlaps\"><tr><th>from</th><th>to</th><th>leaders</th><th>for</th></tr>",
        overlaps.len(),
        if overlaps.len() == 1 { "" } else { "s" },
        longest / 1e3
    );
    for o in overlaps.iter().take(OVERLAPS_SHOWN) {
        let nodes: Vec<String> = o
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|n| value_text(n, 20))
            .collect();
        let terms: Vec<String> = o
            .get("terms")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| t.as_u64().map(|t| format!("t{t}")).unwrap_or_default())
            .collect();
        let leaders: Vec<String> = nodes
            .iter()
            .zip(terms.iter().chain(std::iter::repeat(&String::new())))
            .map(|(n, t)| format!("{n} {t}").trim().to_string())
            .collect();
        let ns = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.2} s</td></tr>",
            secs(ns("from_ns"), run.synthetic_time),
            secs(ns("to_ns"), run.synthetic_time),
            html(&leaders.join(" and ")),
            o.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0) / 1e3
        );
    }
    out.push_str("</table>");
    if overlaps.len() > OVERLAPS_SHOWN {
        let _ = write!(
            out,
            "<p class=\"muted\">… and {} more (results.json)</p>",
            overlaps.len() - OVERLAPS_SHOWN
        );
    }
}

fn logs(out: &mut String, run: &Run) {
    if run.logs.is_empty() {
        return;
    }
    out.push_str("<section id=\"logs\"><h2>Node logs</h2>");
    for l in &run.logs {
        let link = if run.links {
            format!(
                " (<a href=\"{}\">{}</a>)",
                html(&url_path(&l.file)),
                html(&l.file)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<details><summary>{} — {} lines, {} warnings, {} errors{link}</summary>",
            html(&l.node),
            l.lines,
            l.warnings,
            l.errors,
        );
        if !l.notable.is_empty() {
            let _ = write!(
                out,
                "<h3>First warnings and errors</h3><pre>{}</pre>",
                html_block(&l.notable.join("\n"))
            );
        }
        let _ = write!(
            out,
            "<h3>Last lines</h3><pre>{}</pre></details>",
            html_block(&l.tail.join("\n"))
        );
    }
    out.push_str("</section>");
}

fn config(out: &mut String, run: &Run) {
    let cfg = run.result("/config").and_then(Value::as_object);
    if cfg.is_none() && run.test_toml.is_none() {
        return;
    }
    out.push_str("<section id=\"config\"><h2>Configuration</h2>");
    if let Some(cfg) = cfg {
        out.push_str("<table>");
        for (k, v) in cfg {
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                html(k),
                html(&value_text(v, 300))
            );
        }
        out.push_str("</table>");
    }
    if let Some(t) = &run.test_toml {
        let _ = write!(
            out,
            "<details><summary>test.toml</summary><pre>{}</pre></details>",
            html_block(&short(t, 100_000))
        );
    }
    out.push_str("</section>");
}

fn files(out: &mut String, run: &Run) {
    out.push_str("<section id=\"files\"><h2>Files</h2><ul>");
    if !run.links {
        // Written elsewhere than the inputs: link only what was written beside the page.
        for name in [
            "junit.xml",
            "latency-raw.svg",
            "latency-quantiles.svg",
            "rate.svg",
        ] {
            let _ = write!(out, "<li><a href=\"{name}\">{name}</a></li>");
        }
        let _ = write!(
            out,
            "<li>inputs: {}</li></ul></section>",
            html(&run.dir.display().to_string())
        );
        return;
    }
    let mut names: Vec<String> = [
        run.history_link.as_str(),
        "history.edn",
        "results.json",
        "test.toml",
        "faultline.log",
        "junit.xml",
        "latency-raw.svg",
        "latency-quantiles.svg",
        "rate.svg",
        "nodes/status.jsonl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.dedup();
    for name in names {
        if run.dir.join(&name).is_file() || name == "junit.xml" || name.ends_with(".svg") {
            let _ = write!(
                out,
                "<li><a href=\"{}\">{}</a></li>",
                html(&url_path(&name)),
                html(&name)
            );
        }
    }
    out.push_str("</ul></section>");
}

/// Percent-encodes a relative path for an `href` (keeping `/`).
pub fn url_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    // A relative link must not be read as a scheme (`javascript:`): `:` is encoded above.
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_cannot_become_schemes_or_leave_the_attribute() {
        assert_eq!(url_path("javascript:alert(1)"), "javascript%3Aalert%281%29");
        assert_eq!(url_path("nodes/n 1\".log"), "nodes/n%201%22.log");
    }

    #[test]
    fn stamps_read_as_dates() {
        assert_eq!(pretty_stamp("20261125T212446Z"), "2026-11-25 21:24:46 UTC");
        assert_eq!(pretty_stamp("odd"), "odd");
        assert_eq!(pretty_stamp("20261125Tééééééé"), "20261125Tééééééé");
    }
}
