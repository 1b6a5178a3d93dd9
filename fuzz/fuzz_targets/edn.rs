//! Fuzzes the Jepsen EDN and console-log readers, and the checker on what they accept.
#![no_main]

use faultline_checker::format::{self, Format};
use faultline_checker::{check_history, CheckOptions, ModelSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = format::detect("fuzz", text);
    for f in [Format::Edn, Format::JepsenLog] {
        let Ok(parsed) = format::parse_str("fuzz.edn", text, f) else {
            continue;
        };
        let options = CheckOptions {
            time_limit: Some(std::time::Duration::from_millis(200)),
            ..CheckOptions::default()
        };
        let spec = ModelSpec::KvAppend {
            initial: String::new(),
        };
        let _ = check_history(&spec, &parsed.history, &options);
    }
});
