//! `faultline serve` over real HTTP: it lists the runs of a results folder with their
//! verdicts, serves (and, when missing, builds) their reports and files, and serves nothing
//! outside the folder.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

/// A running `faultline serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(results: &Path) -> Server {
    let mut child = faultline()
        .args([
            "serve",
            "--results-dir",
            results.to_str().unwrap(),
            "--port",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start faultline serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut server = Server {
        child,
        base: String::new(),
    };
    // "faultline serve: DIR at http://127.0.0.1:PORT/"
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address line");
    let url = line
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "serve must bind 127.0.0.1 by default: {line:?}"
    );
    server.base = url;
    server
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// A plain HTTP/1.1 GET, with the path sent exactly as given (no client-side normalising of
/// `..`, which is what an attacker would send).
fn get(base: &str, path: &str) -> Reply {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read reply");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: if chunked {
            unchunk(body)
        } else {
            body.to_string()
        },
    }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn serve_lists_runs_and_serves_their_reports() {
    let dir = scratch("runs");
    let results = dir.join("results");
    let out = run(&[
        "test",
        "--name",
        "serve-check",
        "--nodes",
        "3",
        "--nemesis",
        "pause",
        "--nemesis-interval",
        "1",
        "--time-limit",
        "3",
        "--recovery",
        "1",
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name_dir = results.join("serve-check");
    let stamp = std::fs::read_dir(&name_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a run");
    let run_dir = name_dir.join(&stamp);
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap())
            .unwrap();
    // A report that is missing is built on first request.
    let _ = std::fs::remove_file(run_dir.join("report.html"));
    // A run a killed controller left (a history, no results), under a name with markup.
    let odd = results.join("<b>odd").join("20200101T000000Z");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(run_dir.join("history.jsonl"), odd.join("history.jsonl")).unwrap();
    // A symlink out of the results folder must not be followed.
    std::os::unix::fs::symlink("/etc/passwd", run_dir.join("passwd")).unwrap();

    let server = serve(&results);
    let index = get(&server.base, "/");
    assert_eq!(index.status, 200);
    assert!(
        index.headers.contains("content-security-policy:"),
        "{}",
        index.headers
    );
    assert!(index.headers.contains("x-content-type-options: nosniff"));
    // Runs are listed newest first, names escaped; verdict, time, target and duration shown.
    assert!(
        index.body.contains("<td>serve-check</td>"),
        "{}",
        index.body
    );
    assert!(
        index.body.contains("<td>&lt;b&gt;odd</td>"),
        "{}",
        index.body
    );
    assert!(!index.body.contains("<b>odd"));
    assert!(index.body.contains("INCOMPLETE"), "{}", index.body);
    assert!(
        index.body.find("serve-check") < index.body.find("&lt;b&gt;odd"),
        "not newest first"
    );
    assert!(
        index
            .body
            .contains("<span class=\"badge valid\">VALID</span>"),
        "{}",
        index.body
    );
    let stamp_pretty = format!(
        "{}-{}-{} {}:{}:{} UTC",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    assert!(index.body.contains(&stamp_pretty), "{}", index.body);
    assert!(index.body.contains("<td>raft</td>"));
    let duration = format!("{:.1} s", r["duration_s"].as_f64().unwrap());
    assert!(
        index.body.contains(&duration),
        "{duration} not in {}",
        index.body
    );
    let base = format!("/runs/serve-check/{stamp}/");
    assert!(
        index.body.contains(&format!("href=\"{base}report.html\"")),
        "{}",
        index.body
    );

    let report = get(&server.base, &format!("{base}report.html"));
    assert_eq!(report.status, 200, "{}", report.body);
    assert!(report.headers.contains("content-type: text/html"));
    assert!(report.body.contains("id=\"verdict\">VALID<"));
    assert!(
        run_dir.join("report.html").is_file(),
        "the built report was not kept"
    );

    let listing = get(&server.base, &base);
    assert_eq!(listing.status, 200);
    for file in [
        "history.jsonl",
        "results.json",
        "junit.xml",
        "rate.svg",
        "nodes/",
    ] {
        assert!(
            listing.body.contains(&format!("href=\"{file}\"")),
            "{file} not listed: {}",
            listing.body
        );
    }
    let history = get(&server.base, &format!("{base}history.jsonl"));
    assert_eq!(history.status, 200);
    assert!(
        history.headers.contains("content-type: text/plain"),
        "{}",
        history.headers
    );
    assert_eq!(
        history.body,
        std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap()
    );
    // The incomplete run's report is built from its history alone.
    let odd_report = get(
        &server.base,
        "/runs/%3Cb%3Eodd/20200101T000000Z/report.html",
    );
    assert_eq!(odd_report.status, 200, "{}", odd_report.body);
    assert!(odd_report.body.contains("id=\"verdict\">NOT CHECKED<"));
    let svg = get(&server.base, &format!("{base}rate.svg"));
    assert!(
        svg.headers.contains("content-type: image/svg+xml"),
        "{}",
        svg.headers
    );

    for bad in [
        "/runs/../../../../etc/passwd",
        "/runs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/runs/..%2f..%2f..%2fetc%2fpasswd",
        &format!("{base}passwd"),
        "/runs/nothing/here.txt",
    ] {
        let reply = get(&server.base, bad);
        assert!(
            reply.status == 400 || reply.status == 404,
            "{bad}: {} {}",
            reply.status,
            reply.body
        );
        assert!(!reply.body.contains("root:"), "{bad} served /etc/passwd");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_a_missing_results_folder() {
    let out = run(&[
        "serve",
        "--results-dir",
        "/nonexistent/faultline-results",
        "--port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(254));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--results-dir /nonexistent/faultline-results"),
        "{err}"
    );
}
