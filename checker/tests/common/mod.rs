//! Helpers shared by the checker's integration tests.
#![allow(dead_code)]

use faultline_checker::format::{self, Format, Independent};
use faultline_checker::{check_history, CheckOptions, History, ModelSpec, Report, Verdict};
use serde_json::Value;

/// Builds a history from lines `PROCESS TYPE F [VALUE] [key=KEY]`, where VALUE is EDN (so `nil`,
/// `3`, `[1 2]`, `"x"`). Lines starting with `#` are comments. The order of lines is the order
/// of events in time.
pub fn h(text: &str) -> History {
    let mut edn = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (line, key) = match line.split_once(" key=") {
            Some((rest, key)) => (rest, Some(key)),
            None => (line, None),
        };
        let mut parts = line.splitn(4, ' ');
        let process = parts.next().expect("process");
        let kind = parts.next().expect("type");
        let f = parts.next().expect("f");
        let value = parts.next().unwrap_or("nil");
        let process = if process == "n" {
            ":nemesis".to_string()
        } else {
            process.to_string()
        };
        let key = key.map(|k| format!(", :key {k}")).unwrap_or_default();
        edn.push_str(&format!(
            "{{:process {process}, :type :{kind}, :f :{f}, :value {value}{key}}}\n"
        ));
    }
    format::parse_str_with("test", &edn, Format::Edn, Independent::No)
        .expect("test history parses")
        .history
}

pub fn spec(model: &str, initial: Option<Value>) -> ModelSpec {
    ModelSpec::from_name(model, initial).expect("model")
}

pub fn check(model: &str, history: &History) -> Report {
    check_with(&spec(model, None), history)
}

pub fn check_with(spec: &ModelSpec, history: &History) -> Report {
    let options = CheckOptions {
        stop_at_first_failure: false,
        ..CheckOptions::default()
    };
    check_history(spec, history, &options).expect("history is well formed")
}

pub fn verdict(model: &str, text: &str) -> Verdict {
    check(model, &h(text)).verdict
}
