//! One section per linearizability failure: the sentence, the window of operations around the
//! failure drawn on its own, the partial linearization numbered on it, and the operation that
//! cannot be placed highlighted.
//!
//! The window is drawn in *event order* rather than to scale: the checker's evidence is which
//! operation completed before which began, and a window's operations can be microseconds or
//! minutes apart. Each invocation and completion gets its own column, in history order, so a
//! bar that ends left of another bar's start really did finish before it began.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;

use super::escape::{html, short, value_text};
use super::load::Run;

/// Failures drawn in full; the rest are listed by their sentence.
pub const DRAWN: usize = 10;
/// Drawn failures shown unfolded; the others are folded to keep the plots near the top.
pub const OPEN: usize = 1;
/// Steps of the partial linearization shown before the rest fold away.
const STEPS_SHOWN: usize = 12;

struct WindowOp<'a> {
    op: &'a Value,
    index: u64,
    completion: Option<u64>,
    process: u64,
}

fn u(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

/// `read → 3`, `write 4`, `cas 1→2`: an operation as a reader thinks of it.
pub fn describe(op: &Value) -> String {
    let f = op.get("f").map(|f| value_text(f, 20)).unwrap_or_default();
    let value = op.get("value").unwrap_or(&Value::Null);
    let result = op.get("result").unwrap_or(&Value::Null);
    let ok = op.get("outcome").and_then(Value::as_str) == Some("ok");
    let mut s = f;
    if !value.is_null() {
        s.push(' ');
        s.push_str(&value_text(value, 40));
    }
    if ok && !result.is_null() && result != value {
        s.push_str(" → ");
        s.push_str(&value_text(result, 40));
    }
    s
}

/// Writes the section for failure `n` (0-based) into `out`.
pub fn section(out: &mut String, run: &Run, n: usize, f: &Value) {
    let culprit = f.get("culprit").unwrap_or(&Value::Null);
    let culprit_index = u(culprit, "index");
    let key = f.get("key").filter(|k| !k.is_null());
    let _ = write!(
        out,
        "<section class=\"failure\" id=\"failure-{n}\"><h3>✗{} {}</h3>",
        n + 1,
        match key {
            Some(k) => format!("key {}", html(&value_text(k, 80))),
            None => "the object".to_string(),
        }
    );
    let sentence = f.get("sentence").and_then(Value::as_str).unwrap_or("");
    let _ = write!(out, "<p class=\"sentence\">{}</p>", html(sentence));
    let _ = write!(
        out,
        "<p>Cannot be placed: <b>process {} {}</b> ({}, history line {}). \
         <a href=\"#timeline\" data-zoom=\"{n}\">Show on the timeline</a></p>",
        u(culprit, "process").unwrap_or(0),
        html(&describe(culprit)),
        html(
            culprit
                .get("outcome")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ),
        u(culprit, "line").unwrap_or(0),
    );

    // The partial linearization: the last steps, numbered as in the whole order.
    let steps = f
        .get("partial_linearization")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let total = u(f, "linearized_count").unwrap_or(steps.len() as u64) as usize;
    let first_step = total.saturating_sub(steps.len()) + 1;
    let mut step_of: HashMap<u64, (usize, String, String)> = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        if let Some(idx) = s.pointer("/op/index").and_then(Value::as_u64) {
            step_of.insert(
                idx,
                (
                    first_step + i,
                    s.get("description")
                        .map(|d| value_text(d, 40))
                        .unwrap_or_default(),
                    s.get("state_after")
                        .map(|d| value_text(d, 40))
                        .unwrap_or_default(),
                ),
            );
        }
    }

    let window: Vec<WindowOp> = f
        .get("window")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|op| {
            Some(WindowOp {
                op,
                index: u(op, "index")?,
                completion: u(op, "completion_index"),
                process: u(op, "process").unwrap_or(0),
            })
        })
        .collect();
    if !window.is_empty() {
        let _ = write!(
            out,
            "<p>The window: {} operations that are not linearizable on their own. Bars are \
             drawn in history order (a bar ending left of another's start finished before it \
             began); <span class=\"step\">#n</span> is the operation's place in the longest \
             partial linearization ({} operations), with the state after it.</p>",
            window.len(),
            total
        );
        out.push_str("<div class=\"scroll\">");
        out.push_str(&window_svg(&window, culprit_index, &step_of));
        out.push_str("</div>");
        window_table(out, run, &window, culprit_index, &step_of);
    }
    if !steps.is_empty() {
        let _ = write!(
            out,
            "<details><summary>The end of the longest partial linearization (steps {}–{} of {})</summary>\
             <table class=\"steps\"><tr><th>step</th><th>process</th><th>operation</th><th>state after</th><th>line</th></tr>",
            first_step,
            first_step + steps.len() - 1,
            total
        );
        let from = steps.len().saturating_sub(STEPS_SHOWN * 4);
        for (i, s) in steps.iter().enumerate().skip(from) {
            let in_window = s
                .pointer("/op/index")
                .and_then(Value::as_u64)
                .is_some_and(|x| window.iter().any(|w| w.index == x));
            let _ = write!(
                out,
                "<tr{}><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if in_window { " class=\"inwin\"" } else { "" },
                first_step + i,
                s.pointer("/op/process")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                html(
                    &s.get("description")
                        .map(|d| value_text(d, 60))
                        .unwrap_or_default()
                ),
                html(
                    &s.get("state_after")
                        .map(|d| value_text(d, 60))
                        .unwrap_or_default()
                ),
                s.pointer("/op/line").and_then(Value::as_u64).unwrap_or(0),
            );
        }
        out.push_str("</table></details>");
    }
    let window_file = format!("failures/{n}.window.jsonl");
    if run.links && run.dir.join(&window_file).is_file() {
        let model = run
            .checker
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("MODEL");
        let _ = write!(
            out,
            "<p>Re-check the window alone: <code>faultline check {} --model {}</code> \
             (<a href=\"{}\">{}</a>)</p>",
            html(&window_file),
            html(model),
            html(&window_file),
            html(&window_file)
        );
    }
    out.push_str("</section>");
}

const ROW: i32 = 40;
const LEFT: i32 = 120;

/// The window as an SVG: a row per process, a column per event.
fn window_svg(
    window: &[WindowOp],
    culprit: Option<u64>,
    step_of: &HashMap<u64, (usize, String, String)>,
) -> String {
    let mut events: BTreeSet<u64> = BTreeSet::new();
    for w in window {
        events.insert(w.index);
        if let Some(c) = w.completion {
            events.insert(c);
        }
    }
    let events: Vec<u64> = events.into_iter().collect();
    let col = |idx: u64| events.binary_search(&idx).unwrap_or(0) as i32;
    let step = (900 / (events.len() as i32).max(1)).clamp(44, 90);
    let mut processes: Vec<u64> = Vec::new();
    for w in window {
        if !processes.contains(&w.process) {
            processes.push(w.process);
        }
    }
    let width = LEFT + (events.len() as i32 + 1) * step + 20;
    let height = 30 + processes.len() as i32 * ROW + 10;
    let mut svg = format!(
        "<svg class=\"window\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" \
         font-size=\"11\">"
    );
    // Column guides.
    for (c, idx) in events.iter().enumerate() {
        let x = LEFT + c as i32 * step + step / 2;
        let _ = write!(
            svg,
            "<line x1=\"{x}\" y1=\"14\" x2=\"{x}\" y2=\"{}\" stroke=\"#eee\"/>\
             <text x=\"{x}\" y=\"10\" text-anchor=\"middle\" fill=\"#999\" font-size=\"9\">{idx}</text>",
            height - 8
        );
    }
    for (r, p) in processes.iter().enumerate() {
        let y = 30 + r as i32 * ROW;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{}\" fill=\"#333\">process {p}</text>",
            y + 22
        );
    }
    for w in window {
        let r = processes.iter().position(|p| *p == w.process).unwrap_or(0) as i32;
        let y = 30 + r * ROW + 14;
        let x0 = LEFT + col(w.index) * step + step / 2;
        let (x1, open) = match w.completion {
            Some(c) => (LEFT + col(c) * step + step / 2, false),
            None => (LEFT + events.len() as i32 * step + step / 2, true),
        };
        let outcome = w.op.get("outcome").and_then(Value::as_str).unwrap_or("");
        let fill = match outcome {
            "ok" => "#cfe3f3",
            "fail" => "#f6d0cd",
            _ => "#fbe3bf",
        };
        let is_culprit = Some(w.index) == culprit;
        let stroke = if is_culprit {
            "stroke=\"#d73027\" stroke-width=\"3\""
        } else {
            "stroke=\"#2b7bba\" stroke-width=\"1\""
        };
        let dash = if open {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<rect x=\"{x0}\" y=\"{y}\" width=\"{}\" height=\"20\" rx=\"3\" fill=\"{fill}\" {stroke}{dash}/>",
            (x1 - x0).max(4)
        );
        let label = match step_of.get(&w.index) {
            Some((_, d, _)) => d.clone(),
            None => describe(w.op),
        };
        // A label may run past its bar into the next column: the same process's next bar
        // starts at the earliest one column later.
        let max_chars = ((x1 - x0 + step - 8) / 6).max(6) as usize;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"#111\">{}</text>",
            x0 + 3,
            y + 14,
            html(&short(&label, max_chars))
        );
        let badge = if is_culprit {
            Some(("cannot be placed".to_string(), "#d73027"))
        } else {
            step_of
                .get(&w.index)
                .map(|(n, _, state)| (format!("#{n} → {state}"), "#1a7f3c"))
        };
        if let Some((text, color)) = badge {
            let _ = write!(
                svg,
                "<text x=\"{x0}\" y=\"{}\" fill=\"{color}\" font-weight=\"bold\" class=\"step\">{}</text>",
                y - 3,
                html(&short(&text, 40))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn window_table(
    out: &mut String,
    run: &Run,
    window: &[WindowOp],
    culprit: Option<u64>,
    step_of: &HashMap<u64, (usize, String, String)>,
) {
    out.push_str(
        "<table class=\"window\"><tr><th>process</th><th>node</th><th>operation</th>\
         <th>outcome</th><th>invoked</th><th>completed</th><th>lines</th><th>step</th></tr>",
    );
    let at = |idx: Option<u64>| -> String {
        idx.and_then(|i| run.position_of_index(i))
            .map(|pos| secs(run.time_of(pos), run.synthetic_time))
            .unwrap_or_else(|| "—".to_string())
    };
    for w in window {
        let op = w.op;
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}–{}</td><td>{}</td></tr>",
            if Some(w.index) == culprit {
                " class=\"culprit\""
            } else {
                ""
            },
            w.process,
            html(&op.get("node").map(|n| value_text(n, 20)).unwrap_or_default()),
            html(&describe(op)),
            html(op.get("outcome").and_then(Value::as_str).unwrap_or("")),
            at(Some(w.index)),
            at(w.completion),
            u(op, "line").unwrap_or(0),
            u(op, "completion_line").map(|l| l.to_string()).unwrap_or_default(),
            step_of
                .get(&w.index)
                .map(|(n, _, s)| format!("#{n} → {}", html(s)))
                .unwrap_or_default()
        );
    }
    out.push_str("</table>");
}

/// A time on the report's axis, for tables.
pub fn secs(ns: u64, synthetic: bool) -> String {
    if synthetic {
        format!("event {}", ns / 1_000_000)
    } else {
        format!("{:.6} s", ns as f64 / 1e9)
    }
}
