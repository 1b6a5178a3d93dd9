//! Fuzzes the JSONL reader and, when it accepts the input, the checker on what it read.
#![no_main]

use faultline_checker::format::{self, Format};
use faultline_checker::{check_history, CheckOptions, ModelSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = format::parse_str("fuzz.jsonl", text, Format::Jsonl) else {
        return;
    };
    let options = CheckOptions {
        time_limit: Some(std::time::Duration::from_millis(200)),
        ..CheckOptions::default()
    };
    let spec = ModelSpec::CasRegister {
        initial: serde_json::Value::Null,
    };
    let _ = check_history(&spec, &parsed.history, &options);
});
