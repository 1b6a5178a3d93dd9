//! Reports checked in a real headless Chromium (Debian's `chromium`, installed by
//! `scripts/install-deps`): the page loads with no console message at all (errors, and the
//! Content-Security-Policy violations that escaping mistakes would cause, are console
//! messages), the summary and counterexample are in the DOM, the timeline script ran, and a
//! screenshot is left next to the report for a person to look at.
//!
//! Also here: history values that are HTML or script render as text; a 1,000,000-operation
//! history makes a report under 20 MB; and histories recorded by Jepsen (no timestamps) make
//! reports too.
//!
//! Without Chromium these tests fail: they are the only check that the page works.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

mod common;
use common::browser::{chromium, dump_dom};
use common::*;

/// Text as Chromium serialises a text node (`&`, `<`, `>` escaped; quotes not).
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text as the report writes it into HTML (quotes escaped too).
fn html_text(s: &str) -> String {
    dom_text(s).replace('"', "&quot;").replace('\'', "&#39;")
}

fn screenshot(file: &Path, png: &Path, height: u32) {
    let page = chromium(
        &format!("file://{}", file.display()),
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size=1200,{height}"),
            "--hide-scrollbars".to_string(),
        ],
    );
    assert!(page.console.is_empty(), "console: {:?}", page.console);
    let len = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    assert!(len > 20_000, "screenshot {} is {len} bytes", png.display());
}

/// Everything a report page must have, whatever the run.
fn assert_page_works(report: &Path) -> String {
    let page = dump_dom(report, "");
    assert!(
        page.console.is_empty(),
        "{} logged to the console: {:?}",
        report.display(),
        page.console
    );
    let dom = page.stdout;
    assert!(dom.contains("id=\"summary\""), "no summary");
    assert!(
        dom.contains("data-timeline=\"drawn\""),
        "the timeline script did not run to its end"
    );
    dom
}

fn assert_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{} is not an SVG document",
        path.display()
    );
}

#[test]
fn a_valid_run_reads_in_a_browser() {
    let dir = scratch("valid");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--nodes",
        "3",
        "--nemesis",
        "kill,pause",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "6",
        "--recovery",
        "2",
        "--seed",
        "5",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run_dir = latest_run(&results);
    // `faultline test` itself leaves the report, junit.xml and the leader/term samples.
    for file in [
        "report.html",
        "junit.xml",
        "latency-raw.svg",
        "latency-quantiles.svg",
        "rate.svg",
        "nodes/status.jsonl",
    ] {
        assert!(
            run_dir.join(file).is_file(),
            "faultline test left no {file} in {}",
            run_dir.display()
        );
    }
    let report = run_dir.join("report.html");
    let _ = std::fs::remove_file(&report);
    // `faultline report` rebuilds it.
    let out = run(&["report", run_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let raw = std::fs::read_to_string(&report).unwrap();
    let r = results_json(&run_dir);
    // The summary is plain HTML, readable without JavaScript.
    let before_scripts = &raw[..raw.find("<script").unwrap()];
    assert!(before_scripts.contains("<span class=\"badge valid\" id=\"verdict\">VALID</span>"));
    assert!(before_scripts.contains(&format!("<code>{}</code>", r["seed"])));
    assert!(before_scripts.contains("id=\"counts\""));
    let dom = assert_page_works(&report);
    assert!(dom.contains(">VALID<"));
    assert!(
        !dom.contains("id=\"failures\""),
        "a valid run has no counterexample"
    );
    // Leaders as the nodes reported them: at least the first election.
    assert!(dom.contains("id=\"leaders\""), "no leader table");
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"4\" failures=\"0\" errors=\"0\""),
        "{junit}"
    );
    // One case per check: the history's, the replicas' convergence, the election check and
    // the cluster's health.
    for check in ["convergence", "election", "cluster-health"] {
        assert!(junit.contains(&format!("name=\"{check}\"")), "{junit}");
    }
    assert!(
        junit.contains("name=\"linearizable (cas-register)\""),
        "{junit}"
    );
    assert!(!junit.contains("<failure"), "{junit}");
    for svg in ["latency-raw.svg", "latency-quantiles.svg", "rate.svg"] {
        assert_svg(&run_dir.join(svg));
    }
    screenshot(&report, &run_dir.join("report.png"), 3000);
    eprintln!("screenshot: {}", run_dir.join("report.png").display());
}

#[test]
fn an_invalid_run_shows_its_counterexample_in_a_browser() {
    let dir = scratch("invalid");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--nodes",
        "3",
        "--raft-bug",
        "ack-before-commit",
        "--nemesis",
        "kill",
        "--nemesis-targets",
        "leader",
        "--nemesis-interval",
        "1",
        "--rate",
        "0",
        "--time-limit",
        "8",
        "--recovery",
        "2",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let run_dir = latest_run(&results);
    let out = run(&["report", run_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = results_json(&run_dir);
    let sentence = r["explanation"][0]
        .as_str()
        .expect("an explanation")
        .to_string();
    let failure = &r["checker"]["report"]["failures"][0];
    let culprit = failure["culprit"]["index"].as_u64().expect("culprit index");
    let sentence_alone = failure["sentence"].as_str().unwrap();

    let report = run_dir.join("report.html");
    let raw = std::fs::read_to_string(&report).unwrap();
    let before_scripts = &raw[..raw.find("<script").unwrap()];
    assert!(before_scripts.contains("id=\"verdict\">INVALID<"));
    assert!(
        before_scripts.contains(&html_text(&sentence)),
        "the explanation is not in the static summary"
    );

    let dom = assert_page_works(&report);
    assert!(
        dom.contains("id=\"failure-0\""),
        "no counterexample section"
    );
    assert!(dom.contains(&format!(
        "<p class=\"sentence\">{}</p>",
        dom_text(sentence_alone)
    )));
    assert!(
        dom.contains("cannot be placed"),
        "the culprit is not marked"
    );
    assert!(
        dom.contains("<tr class=\"culprit\">"),
        "the culprit row is not highlighted"
    );
    assert!(
        dom.contains("class=\"step\">#"),
        "the partial linearization is not drawn on the window"
    );

    // A link to the culprit opens the timeline on it, with its details.
    let page = dump_dom(&report, &format!("#op={culprit}"));
    assert!(page.console.is_empty(), "{:?}", page.console);
    let detail_start = page
        .stdout
        .find("id=\"timeline-detail\"")
        .expect("detail panel");
    let detail =
        &page.stdout[detail_start..detail_start + 600.min(page.stdout.len() - detail_start)];
    assert!(
        !detail.contains("hidden"),
        "detail panel still hidden: {detail}"
    );
    assert!(detail.contains("cannot be linearized"), "{detail}");
    assert!(
        detail.contains(&format!("event index {culprit}")),
        "{detail}"
    );

    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"4\" failures=\"1\" errors=\"0\""),
        "{junit}"
    );
    assert!(
        junit.contains(&format!(
            "<failure type=\"invalid\" message=\"{}\">",
            html_text(&sentence)
        )),
        "{junit}"
    );
    screenshot(&report, &run_dir.join("report.png"), 3000);
    eprintln!("screenshot: {}", run_dir.join("report.png").display());
}

/// HTML and script in every field a history, a node log or a status sample can carry.
#[test]
fn history_values_render_as_text_not_markup() {
    let dir = scratch("xss");
    let key = "<b onmouseover=\"document.body.dataset.pwned='key'\">k</b>";
    let written = "<script>document.body.dataset.pwned='value'</script>";
    let read = "<img src=x onerror=\"document.body.dataset.pwned='read'\">";
    let node = "<i>n1</i>";
    let error = "</script><script>document.body.dataset.pwned='error'</script>";
    let fault = "<svg onload=\"document.body.dataset.pwned='fault'\">";
    let j = |v: &str| Value::String(v.to_string()).to_string();
    let lines = [
        format!(
            r#"{{"index":0,"time":1000000,"process":0,"type":"invoke","f":"write","key":{k},"value":{w},"node":{n}}}"#,
            k = j(key),
            w = j(written),
            n = j(node)
        ),
        format!(
            r#"{{"index":1,"time":2000000,"process":0,"type":"ok","f":"write","key":{k},"value":{w},"node":{n}}}"#,
            k = j(key),
            w = j(written),
            n = j(node)
        ),
        format!(
            r#"{{"index":2,"time":2500000,"process":"nemesis","type":"info","f":"start","value":{{"id":1,"fault":{f},"aim":"<u>all</u>","nodes":[{n}]}}}}"#,
            f = j(fault),
            n = j(node)
        ),
        format!(
            r#"{{"index":3,"time":3000000,"process":1,"type":"invoke","f":"read","key":{k},"value":null,"node":{n}}}"#,
            k = j(key),
            n = j(node)
        ),
        format!(
            r#"{{"index":4,"time":4000000,"process":1,"type":"ok","f":"read","key":{k},"value":{r},"node":{n}}}"#,
            k = j(key),
            r = j(read),
            n = j(node)
        ),
        format!(
            r#"{{"index":5,"time":4500000,"process":2,"type":"invoke","f":"write","key":{k},"value":"v","node":{n}}}"#,
            k = j(key),
            n = j(node)
        ),
        format!(
            r#"{{"index":6,"time":5000000,"process":2,"type":"info","f":"write","key":{k},"value":"v","node":{n},"error":{e}}}"#,
            k = j(key),
            n = j(node),
            e = j(error)
        ),
        format!(
            r#"{{"index":7,"time":6000000,"process":"nemesis","type":"info","f":"stop","value":{{"id":1,"fault":{f}}}}}"#,
            f = j(fault)
        ),
    ];
    std::fs::write(dir.join("history.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::create_dir_all(dir.join("nodes")).unwrap();
    std::fs::write(
        dir.join("nodes/n1.log"),
        format!(
            "2026-01-01T00:00:00Z  WARN node: {written}\n2026-01-01T00:00:01Z  INFO node: {read}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("nodes/status.jsonl"),
        format!(
            "{{\"time\":1000000,\"node\":{n},\"role\":{r},\"term\":1,\"leader\":{n}}}\n",
            n = j(node),
            r = j(read)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("test.toml"), format!("name = {}\n", j(written))).unwrap();

    let out = run(&["report", dir.to_str().unwrap(), "--model", "cas-register"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let raw = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for bad in [
        "<b onmouseover",
        "<script>document",
        "<img src=x",
        "<svg onload",
        "<i>n1",
        "<u>all",
    ] {
        assert!(!raw.contains(bad), "report.html contains {bad:?} as markup");
        for file in ["junit.xml", "latency-raw.svg", "rate.svg"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(!text.contains(bad), "{file} contains {bad:?} as markup");
        }
    }
    let dom = assert_page_works(&dir.join("report.html"));
    assert!(
        dom.contains(">INVALID<"),
        "the read of a value never written is a violation"
    );
    assert!(!dom.contains("data-pwned"), "a payload ran:\n{dom}");
    // The payloads are on the page, as text: in the counterexample, faults, logs and config.
    for text in [written, read, fault, node, "<u>all</u>"] {
        assert!(
            dom.contains(&dom_text(text)),
            "{text:?} is not shown as text"
        );
    }
    // The timeline's details (built by the script from embedded JSON) show them as text too.
    let page = dump_dom(&dir.join("report.html"), "#op=3");
    assert!(page.console.is_empty(), "{:?}", page.console);
    assert!(!page.stdout.contains("data-pwned"), "a payload ran");
    let at = page
        .stdout
        .find("id=\"timeline-detail\"")
        .expect("detail panel");
    let detail = &page.stdout[at..];
    assert!(
        detail.contains(&dom_text(read)),
        "{}",
        &detail[..400.min(detail.len())]
    );
    assert!(
        detail.contains(&dom_text(key)),
        "{}",
        &detail[..400.min(detail.len())]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The size bound, on a generated history of 1,000,000 operations over 100 keys with lost
/// responses and one planted violation. Prints the size and the times (not asserted: timing
/// goals are for benchmarks).
#[test]
fn a_million_operations_make_a_report_under_20_mb() {
    let dir = scratch("million");
    let history = dir.join("history.jsonl");
    let out = run(&[
        "synth",
        "--ops",
        "1000000",
        "--keys",
        "100",
        "--lost",
        "0.01",
        "--plant-stale-read",
        "--seed",
        "7",
        "-o",
        history.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let started = Instant::now();
    let out = run(&[
        "report",
        history.to_str().unwrap(),
        "--model",
        "cas-register",
    ]);
    let build = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let _ = std::fs::remove_file(&history);
    let report = dir.join("report.html");
    let bytes = std::fs::metadata(&report).unwrap().len();
    let started = Instant::now();
    let dom = assert_page_works(&report);
    let load = started.elapsed();
    eprintln!(
        "1,000,000 operations: report.html {:.1} MB, built (with the check) in {:.1} s, \
         loaded and drawn by headless Chromium in {:.1} s",
        bytes as f64 / 1e6,
        build.as_secs_f64(),
        load.as_secs_f64()
    );
    assert!(bytes < 20_000_000, "report.html is {bytes} bytes");
    assert!(
        dom.contains(">INVALID<"),
        "the planted stale read is not reported"
    );
    assert!(dom.contains("id=\"failure-0\""));
    for svg in ["latency-raw.svg", "latency-quantiles.svg", "rate.svg"] {
        let len = std::fs::metadata(dir.join(svg)).unwrap().len();
        assert!(len < 8_000_000, "{svg} is {len} bytes");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Histories recorded by Jepsen (the 2014 etcd analysis, in Porcupine's test data): no
/// timestamps, no results.json. Checked with `--model`, each report gets the verdict the
/// corpus knows, and the largest one loads in the browser.
#[test]
fn jepsen_histories_make_reports() {
    let Some(corpus) = std::env::var_os("FAULTLINE_CORPUS").map(PathBuf::from) else {
        eprintln!("SKIPPED: FAULTLINE_CORPUS is not set (CI sets it to ../shared/corpus)");
        return;
    };
    let manifest = std::fs::read_to_string(corpus.join("manifest.tsv")).unwrap_or_else(|e| {
        panic!(
            "FAULTLINE_CORPUS={} but its manifest.tsv cannot be read: {e}",
            corpus.display()
        )
    });
    let dir = scratch("jepsen");
    let mut largest: Option<(u64, PathBuf)> = None;
    let mut count = 0;
    for row in manifest.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let [path, "jepsen-log", model, initial, expected] = cols.as_slice() else {
            continue;
        };
        count += 1;
        let out_dir = dir.join(path.replace('/', "_"));
        let out = run(&[
            "report",
            corpus.join(path).to_str().unwrap(),
            "--model",
            model,
            "--initial",
            initial,
            "--output",
            out_dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{path}: {}", stderr(&out));
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        assert!(
            html.contains(&format!("id=\"verdict\">{}<", expected.to_uppercase())),
            "{path}: expected {expected}"
        );
        assert!(
            html.contains("x axis is event order"),
            "{path}: no note on the time axis"
        );
        let len = html.len() as u64;
        if largest.as_ref().is_none_or(|(l, _)| len > *l) {
            largest = Some((len, out_dir.join("report.html")));
        }
    }
    assert!(count >= 10, "only {count} Jepsen logs in the corpus");
    let (len, report) = largest.expect("a report");
    eprintln!("largest Jepsen etcd report: {:.2} MB", len as f64 / 1e6);
    assert_page_works(&report);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input is refused with the file, line and problem named, and nothing is written.
#[test]
fn bad_input_names_the_file_and_writes_nothing() {
    let dir = scratch("bad");
    let history = dir.join("h.jsonl");
    std::fs::write(
        &history,
        "{\"index\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n{\"index\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n",
    )
    .unwrap();
    let out = run(&["report", history.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(254));
    let err = stderr(&out);
    assert!(err.contains("h.jsonl:2:"), "{err}");
    assert!(!dir.join("report.html").exists());
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("no history.jsonl"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "report",
        history.to_str().unwrap(),
        "--model",
        "no-such-model",
    ]);
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains("--model"), "{}", stderr(&out));
    std::fs::write(dir.join("history.jsonl"), "").unwrap();
    std::fs::write(dir.join("results.json"), "{\"verdict\": ").unwrap();
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("results.json: line 1"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
