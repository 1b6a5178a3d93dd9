//! `faultline check` as users run it: the real binary, real files, exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .expect("run faultline")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

const VALID: &str = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1}
{"index":1,"time":1,"process":0,"type":"ok","f":"write","value":1}
{"index":2,"time":2,"process":1,"type":"invoke","f":"read","value":null}
{"index":3,"time":3,"process":1,"type":"ok","f":"read","value":1}
"#;

const STALE: &str = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1}
{"index":1,"time":1,"process":0,"type":"ok","f":"write","value":1}
{"index":2,"time":2,"process":0,"type":"invoke","f":"write","value":2}
{"index":3,"time":3,"process":0,"type":"ok","f":"write","value":2}
{"index":4,"time":4,"process":1,"type":"invoke","f":"read","value":null}
{"index":5,"time":5,"process":1,"type":"ok","f":"read","value":1}
"#;

#[test]
fn valid_history_exits_zero() {
    let dir = scratch("valid");
    let h = write(&dir, "h.jsonl", VALID);
    let out = faultline(&["check", &h, "--model", "register"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("VALID"));
}

#[test]
fn invalid_history_exits_one_and_explains_with_a_rechecking_window() {
    let dir = scratch("invalid");
    let h = write(&dir, "h.jsonl", STALE);
    let windows = dir.join("windows");
    let out = faultline(&[
        "check",
        &h,
        "--model",
        "cas-register",
        "--json",
        "--window-dir",
        windows.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON verdict");
    assert_eq!(v["verdict"], "invalid");
    assert!(v["parse_ms"].as_f64().is_some() && v["check_ms"].as_f64().is_some());
    let failure = &v["failures"][0];
    assert_eq!(failure["culprit"]["index"], 4);
    assert_eq!(failure["culprit"]["line"], 5);
    assert!(failure["sentence"]
        .as_str()
        .unwrap()
        .contains("write 2 completed after the only write of 1"));
    // The window file re-checks as invalid, with the command printed for it.
    let window = failure["window_file"].as_str().unwrap();
    assert!(Path::new(window).starts_with(&windows));
    let again = faultline(&[
        "check",
        window,
        "--model",
        "cas-register",
        "--initial",
        "null",
    ]);
    assert_eq!(code(&again), 1, "{}", stdout(&again));
    assert!(failure["recheck"]
        .as_str()
        .unwrap()
        .contains("--model cas-register --initial null"));
}

#[test]
fn several_histories_combine_their_verdicts() {
    let dir = scratch("several");
    let good = write(&dir, "good.jsonl", VALID);
    let bad = write(&dir, "bad.jsonl", STALE);
    let windows = dir.join("w");
    let w = windows.to_str().unwrap();
    let out = faultline(&[
        "check",
        &good,
        &bad,
        "-m",
        "register",
        "--json",
        "--window-dir",
        w,
    ]);
    assert_eq!(code(&out), 1);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["verdict"], "valid");
    assert_eq!(lines[1]["verdict"], "invalid");
    // Bad input anywhere makes the whole run a usage failure.
    let missing = dir.join("missing.jsonl");
    let out = faultline(&["check", &good, missing.to_str().unwrap(), "-m", "register"]);
    assert_eq!(code(&out), 254);
    assert!(stderr(&out).contains("missing.jsonl") && stderr(&out).contains("cannot read"));
}

#[test]
fn time_limit_gives_unknown_exit_two() {
    let dir = scratch("unknown");
    let h = dir.join("hard.jsonl");
    // Many concurrent clients, few distinct values and lost responses: millions of steps.
    let out = faultline(&[
        "synth",
        "--ops",
        "3000",
        "--concurrency",
        "20",
        "--lost",
        "0.2",
        "--values",
        "range:5",
        "--seed",
        "7",
        "-o",
        h.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = faultline(&[
        "check",
        h.to_str().unwrap(),
        "--model",
        "cas-register",
        "--time-limit",
        "0.000001",
        "--json",
    ]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["verdict"], "unknown");
    assert!(v["unknown"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("time limit"));
}

#[test]
fn bad_usage_exits_254_naming_the_flag() {
    let dir = scratch("usage");
    let h = write(&dir, "h.jsonl", VALID);
    let cases: &[(&[&str], &str)] = &[
        (&["check", &h, "--model", "queue"], "--model"),
        (
            &["check", &h, "--model", "register", "--initial", "{oops"],
            "--initial",
        ),
        (
            &["check", &h, "--model", "register", "--format", "xml"],
            "--format",
        ),
        (
            &["check", &h, "--model", "register", "--time-limit", "-1"],
            "--time-limit",
        ),
        (
            &["check", &h, "--model", "mutex", "--initial", "0"],
            "--initial",
        ),
        (&["check", &h], "--model"),
        (&["check", "--model", "register"], "HISTORY"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = faultline(args);
        assert_eq!(code(&out), 254, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn malformed_history_exits_254_naming_file_and_line() {
    let dir = scratch("malformed");
    let text = VALID.replace(r#""type":"ok","f":"read""#, r#""type":"okay","f":"read""#);
    let h = write(&dir, "h.jsonl", &text);
    let out = faultline(&["check", &h, "--model", "register"]);
    assert_eq!(code(&out), 254);
    let err = stderr(&out);
    assert!(
        err.contains("h.jsonl:4:") && err.contains("\"okay\""),
        "{err}"
    );
}

#[test]
fn values_from_the_history_cannot_inject_terminal_escapes() {
    let dir = scratch("escape");
    let text = STALE.replace(
        r#""f":"read","value":1}"#,
        "\"f\":\"read\",\"value\":\"\\u001b[2J\\u001b]0;pwned\\u0007\"}",
    );
    let h = write(&dir, "h.jsonl", &text);
    let w = dir.join("w");
    let out = faultline(&[
        "check",
        &h,
        "--model",
        "register",
        "--window-dir",
        w.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
}

#[test]
fn help_documents_every_flag() {
    let out = faultline(&["check", "--help"]);
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    for flag in [
        "--model",
        "--format",
        "--initial",
        "--json",
        "--time-limit",
        "--memory-limit",
        "--window-dir",
        "--all-keys",
        "--nil-reads",
        "Exit codes",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn convert_to_edn_and_check_gives_the_same_verdict() {
    let dir = scratch("convert");
    let h = write(&dir, "h.jsonl", STALE);
    let edn = dir.join("h.edn");
    let out = faultline(&["convert", &h, "--to", "edn", "-o", edn.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = std::fs::read_to_string(&edn).unwrap();
    assert!(
        text.starts_with("[{") && text.contains(":type :invoke"),
        "{text}"
    );
    let w = dir.join("w");
    let out = faultline(&[
        "check",
        edn.to_str().unwrap(),
        "--model",
        "register",
        "--json",
        "--window-dir",
        w.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["format"], "edn");
    assert_eq!(v["failures"][0]["culprit"]["index"], 4);
    let out = faultline(&["convert", &h, "--to", "xml"]);
    assert_eq!(code(&out), 254);
    assert!(stderr(&out).contains("--to"));
}

/// A Jepsen history whose reads of nil follow a write: Knossos calls it valid (a read of nil is
/// a read of unknown value), and so does `faultline check` on Jepsen's formats, saying so in
/// its text and JSON; `--nil-reads value` judges them strictly. The same history in faultline's
/// JSONL is strict by default, and a failure's re-check command carries the meaning used.
#[test]
fn reads_of_nil_follow_jepsen_on_jepsen_formats_and_stay_strict_on_jsonl() {
    let dir = scratch("nil-reads");
    let edn = write(
        &dir,
        "h.edn",
        "[{:process 0, :type :invoke, :f :write, :value 1}
          {:process 0, :type :ok, :f :write, :value 1}
          {:process 1, :type :invoke, :f :read, :value nil}
          {:process 1, :type :ok, :f :read, :value nil}
          {:process 1, :type :invoke, :f :read, :value nil}
          {:process 1, :type :ok, :f :read, :value nil}]",
    );
    let out = faultline(&["check", &edn, "--model", "cas-register", "--initial", "0"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(
            "2 reads of nil treated as reads of unknown value, as Knossos does; --nil-reads \
             value to treat them as values"
        ),
        "{}",
        stdout(&out)
    );
    let out = faultline(&["check", &edn, "--model", "cas-register", "--json"]);
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(
        (v["nil_reads"].as_str(), v["unknown_reads"].as_u64()),
        (Some("unknown"), Some(2))
    );
    let out = faultline(&[
        "check",
        &edn,
        "--model",
        "cas-register",
        "--nil-reads",
        "value",
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(!stdout(&out).contains("treated as"), "{}", stdout(&out));

    // The same operations in JSONL: strict unless asked.
    let jsonl = write(
        &dir,
        "h.jsonl",
        r#"{"index":0,"process":0,"type":"invoke","f":"write","value":1}
{"index":1,"process":0,"type":"ok","f":"write","value":1}
{"index":2,"process":1,"type":"invoke","f":"read","value":null}
{"index":3,"process":1,"type":"ok","f":"read","value":null}
"#,
    );
    let out = faultline(&["check", &jsonl, "--model", "register"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let out = faultline(&[
        "check",
        &jsonl,
        "--model",
        "register",
        "--nil-reads",
        "unknown",
    ]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));

    // A stale read beside a read of nil: invalid either way, and the window's re-check (a
    // JSONL file) says which meaning to use.
    let stale = write(
        &dir,
        "stale.edn",
        "[{:process 0, :type :invoke, :f :write, :value 1}
          {:process 0, :type :ok, :f :write, :value 1}
          {:process 0, :type :invoke, :f :write, :value 2}
          {:process 0, :type :ok, :f :write, :value 2}
          {:process 1, :type :invoke, :f :read, :value nil}
          {:process 1, :type :ok, :f :read, :value nil}
          {:process 1, :type :invoke, :f :read, :value nil}
          {:process 1, :type :ok, :f :read, :value 1}]",
    );
    let windows = dir.join("windows");
    let out = faultline(&[
        "check",
        &stale,
        "--model",
        "register",
        "--json",
        "--window-dir",
        windows.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    let recheck = v["failures"][0]["recheck"].as_str().unwrap_or_default();
    assert!(recheck.ends_with("--nil-reads unknown"), "{recheck}");
    let window = v["failures"][0]["window_file"].as_str().unwrap_or_default();
    let out = faultline(&[
        "check",
        window,
        "--model",
        "register",
        "--nil-reads",
        "unknown",
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));

    let out = faultline(&["check", &edn, "--model", "register", "--nil-reads", "maybe"]);
    assert_eq!(code(&out), 254);
    assert!(stderr(&out).contains("--nil-reads"), "{}", stderr(&out));
}
