//! Reading and writing histories: every format, every documented rule, and clear errors.

use faultline_checker::format::{self, edn, jsonl, Format, Independent};
use faultline_checker::{EventType, Process};
use proptest::prelude::*;
use serde_json::json;

fn jsonl_err(text: &str) -> String {
    format::parse_str("h.jsonl", text, Format::Jsonl)
        .unwrap_err()
        .to_string()
}

#[test]
fn jsonl_reads_every_field() {
    let text = r#"{"index":0,"time":10,"process":3,"type":"invoke","f":"cas","key":"k1","value":[1,2],"node":"n2"}
{"index":1,"time":20,"process":"nemesis","type":"info","f":"start","value":{"isolate":["n1"]}}
{"index":2,"time":30,"process":3,"type":"info","f":"cas","key":"k1","value":[1,2],"error":"timeout"}
"#;
    let parsed = format::parse_str("h.jsonl", text, Format::Jsonl).unwrap();
    let e = &parsed.history.events;
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].process, Process::Client(3));
    assert_eq!(e[0].key, Some(json!("k1")));
    assert_eq!(e[0].node.as_deref(), Some("n2"));
    assert_eq!(e[1].process, Process::Nemesis);
    assert_eq!(e[2].kind, EventType::Info);
    assert_eq!(e[2].error, Some(json!("timeout")));
    assert_eq!(e[2].line, 3);
    assert!(parsed.warnings.is_empty());
}

#[test]
fn jsonl_errors_name_the_line_and_the_problem() {
    let good = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"read","value":null}"#;
    let e = jsonl_err(&format!(
        "{good}\n{{\"index\":1,\"process\":0,\"f\":\"read\"}}\n"
    ));
    assert!(e.starts_with("h.jsonl:2: ") && e.contains("type"), "{e}");
    let e = jsonl_err(&format!(
        "{good}\n{{\"index\":1,\"process\":-1,\"type\":\"ok\",\"f\":\"read\",\"value\":1}}\n"
    ));
    assert!(
        e.contains("h.jsonl:2:") && e.contains("non-negative"),
        "{e}"
    );
    let e = jsonl_err(&format!(
        "{good}\n{{\"index\":1,\"process\":0,\"type\":\"done\",\"f\":\"read\",\"value\":1}}\n"
    ));
    assert!(e.contains("invoke, ok, fail, info"), "{e}");
    let e = jsonl_err(&format!("{good}\n{good}\n"));
    assert!(
        e.contains("h.jsonl:2:") && e.contains("does not increase"),
        "{e}"
    );
    let e = jsonl_err("not json at all\n");
    assert!(e.starts_with("h.jsonl:1: not a valid event"), "{e}");
}

#[test]
fn jsonl_torn_last_line_is_skipped_with_a_warning() {
    let text = "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n{\"index\":1,\"ti";
    let parsed = format::parse_str("h.jsonl", text, Format::Jsonl).unwrap();
    assert_eq!(parsed.history.events.len(), 1);
    assert!(parsed.warnings[0].contains("incomplete last line"));
    // The same damage in the middle of the file is an error, not a warning.
    let middle = format!("{}\n{}", &text[..text.len()], "{\"index\":2}");
    assert!(format::parse_str("h.jsonl", &middle, Format::Jsonl).is_err());
}

#[test]
fn jsonl_round_trips() {
    let text = r#"{"index":0,"time":10,"process":3,"type":"invoke","f":"cas","key":"k1","value":[1,2],"node":"n2"}
{"index":5,"time":20,"process":3,"type":"ok","f":"cas","key":"k1","value":[1,2]}
"#;
    let parsed = format::parse_str("h.jsonl", text, Format::Jsonl).unwrap();
    let mut out = Vec::new();
    jsonl::write(&mut out, &parsed.history.events).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), text);
}

#[test]
fn edn_vector_with_comments_and_extra_keys() {
    let text = r#"; a Knossos-style history
[{:process 0, :type :invoke, :f :write, :value 1, :time 5}
 ; a comment between ops
 {:process 0, :type :ok, :f :write, :value 1, :error nil, :extra #{1 2}}
 {:process :nemesis, :type :info, :f :start, :value "cut \"n1\" off"}]"#;
    let h = format::parse_str("h.edn", text, Format::Edn)
        .unwrap()
        .history;
    assert_eq!(h.events.len(), 3);
    assert_eq!(h.events[0].time, Some(5));
    assert_eq!(h.events[1].line, 4);
    assert_eq!(h.events[2].process, Process::Nemesis);
    assert_eq!(h.events[2].value, json!("cut \"n1\" off"));
    assert_eq!(format::detect("h.edn", text).unwrap(), Format::Edn);
}

#[test]
fn edn_list_and_one_map_per_line() {
    let list = "({:process 0, :type :invoke, :f :read, :value nil}\n {:process 0, :type :ok, :f :read, :value 3})";
    assert_eq!(
        format::parse_str("h", list, Format::Edn)
            .unwrap()
            .history
            .events
            .len(),
        2
    );
    let lines = "{:process 0, :type :invoke, :f :get, :key \"5\", :value nil}\n{:process 0, :type :ok, :f :get, :key \"5\", :value \"x\"}\n";
    let h = format::parse_str("h", lines, Format::Edn).unwrap().history;
    assert_eq!(h.events[1].key, Some(json!("5")));
    assert_eq!(h.events[1].value, json!("x"));
    assert_eq!(format::detect("h", lines).unwrap(), Format::Edn);
}

#[test]
fn edn_independent_tuples_become_keys() {
    let text = "[{:process 0, :type :invoke, :f :cas, :value [7 [1 2]]}\n {:process 0, :type :ok, :f :cas, :value [7 [1 2]]}\n {:process 1, :type :invoke, :f :read, :value [8 nil]}]";
    let h = format::parse_str("h", text, Format::Edn).unwrap().history;
    assert_eq!(h.events[0].key, Some(json!(7)));
    assert_eq!(h.events[0].value, json!([1, 2]));
    assert_eq!(h.events[2].key, Some(json!(8)));
    // A plain cas history is not mistaken for tuples.
    let plain = "[{:process 0, :type :invoke, :f :cas, :value [1 2]}\n {:process 0, :type :ok, :f :cas, :value [1 2]}]";
    let h = format::parse_str("h", plain, Format::Edn).unwrap().history;
    assert_eq!(h.events[0].key, None);
    // Older Jepsen's tuple records.
    let record = "[{:process 0, :type :invoke, :f :write, :value #jepsen.independent.Tuple{:key 3, :value 9}}]";
    let h = format::parse_str("h", record, Format::Edn).unwrap().history;
    assert_eq!(
        (h.events[0].key.clone(), h.events[0].value.clone()),
        (Some(json!(3)), json!(9))
    );
    // Forced off: the pair stays a value.
    let h = format::parse_str_with("h", text, Format::Edn, Independent::No)
        .unwrap()
        .history;
    assert_eq!(h.events[0].value, json!([7, [1, 2]]));
}

#[test]
fn edn_errors_name_the_line() {
    let text = "[{:process 0, :type :invoke, :f :read, :value nil}\n {:process 0, :type :ok :f :read}\n {:process 0 :type :bogus, :f :read}]";
    let e = format::parse_str("h.edn", text, Format::Edn)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("h.edn:3:") && e.contains(":type"), "{e}");
    let e = format::parse_str("h.edn", "[{:process 0, :type :invoke", Format::Edn)
        .unwrap_err()
        .to_string();
    assert!(e.contains("never closed"), "{e}");
    let e = format::parse_str(
        "h.edn",
        "[{:process 0, :type :invoke, :f :read, :value nil}\n 42]",
        Format::Edn,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("h.edn:2:") && e.contains("op map"), "{e}");
}

#[test]
fn jsonl_to_edn_and_back_keeps_every_event() {
    let text = r#"{"index":0,"time":10,"process":3,"type":"invoke","f":"cas","key":"k1","value":[1,2],"node":"n2"}
{"index":1,"time":20,"process":"nemesis","type":"info","f":"start","value":null}
{"index":2,"time":30,"process":3,"type":"fail","f":"cas","key":"k1","value":[1,2],"error":{"reason":"conflict"}}
{"index":3,"time":40,"process":4,"type":"invoke","f":"read","key":"k2","value":null}
{"index":4,"time":50,"process":4,"type":"ok","f":"read","key":"k2","value":"x\ny"}
"#;
    let original = format::parse_str("h.jsonl", text, Format::Jsonl)
        .unwrap()
        .history;
    let edn_text = edn::write(&original.events);
    let back = format::parse_str("h.edn", &edn_text, Format::Edn)
        .unwrap()
        .history;
    assert_eq!(back.events.len(), original.events.len());
    for (a, b) in original.events.iter().zip(&back.events) {
        assert_eq!(
            (a.index, a.time, a.process, a.kind, &a.f, &a.key, &a.value, &a.node, &a.error),
            (b.index, b.time, b.process, b.kind, &b.f, &b.key, &b.value, &b.node, &b.error)
        );
    }
}

#[test]
fn jepsen_log_lines() {
    let text = "noise before\nINFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]\nINFO  jepsen.util - 3\t:info\t:cas\t:timed-out\nINFO  jepsen.util - :nemesis\t:info\t:start\tnil\n";
    let parsed = format::parse_str("e.log", text, Format::JepsenLog).unwrap();
    let e = &parsed.history.events;
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].value, json!([3, 0]));
    assert_eq!(e[1].kind, EventType::Info);
    assert_eq!(e[1].line, 3);
    assert_eq!(e[2].process, Process::Nemesis);
    assert_eq!(format::detect("e.log", text).unwrap(), Format::JepsenLog);
    let bad = "INFO  jepsen.util - 3\t:invoke\t:cas\n";
    let err = format::parse_str("e.log", bad, Format::JepsenLog)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("e.log:1:") && err.contains("4 fields"),
        "{err}"
    );
}

/// Jepsen's versions separate the fields with tabs, spaces, or both (`print` puts a space
/// beside each tab); any run of blanks parses the same, the value keeps its inner blanks, an
/// error logged after the value (behind a tab) is not part of it, and jepsen.util lines that
/// are not operations are skipped.
#[test]
fn jepsen_log_fields_may_be_separated_by_any_blanks() {
    let layouts = [
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]\n",
        "INFO  jepsen.util - 3 :invoke :cas [3 0]\n",
        "INFO jepsen.util - 3 \t:invoke \t:cas \t[3 0]\n",
        "INFO  jepsen.util -   3    :invoke\t  :cas      [3   0]   \n",
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]\tindeterminate: timed out\n",
    ];
    for text in layouts {
        let parsed = format::parse_str("e.log", text, Format::JepsenLog).unwrap();
        let e = &parsed.history.events;
        assert_eq!(e.len(), 1, "{text:?}");
        assert_eq!(
            (e[0].process, e[0].kind, e[0].f.as_str(), &e[0].value),
            (Process::Client(3), EventType::Invoke, "cas", &json!([3, 0])),
            "{text:?}"
        );
    }
    // Later Jepsen versions: logback's layout, no `-` after the logger; detected however long
    // the set-up output before the first operation.
    let mut text = "INFO [2019-04-01 11:25:20,100] main - jepsen.core Running test\n".repeat(500);
    text += "INFO [2019-04-01 11:25:23,791] jepsen worker 1 - jepsen.util 1\t:invoke\t:read\tnil\n";
    text += "INFO [2019-04-01 11:25:23,795] jepsen worker 1 - jepsen.util 1 :ok :read 4\n";
    assert_eq!(format::detect("e.log", &text).unwrap(), Format::JepsenLog);
    let parsed = format::parse_str("e.log", &text, Format::JepsenLog).unwrap();
    let e = &parsed.history.events;
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[1].line, e[1].kind, &e[1].value),
        (502, EventType::Ok, &json!(4))
    );
    let bracketed = "[2019-04-01 11:25:23,791] INFO jepsen.util 1 :invoke :read nil\n";
    assert_eq!(
        format::detect("e.log", bracketed).unwrap(),
        Format::JepsenLog
    );
    assert_eq!(
        format::detect("e.edn", "[{:process 0}]").unwrap(),
        Format::Edn
    );
    let text = "INFO  jepsen.util - Starting nemesis\nINFO  jepsen.utility - 1 :invoke :read nil\nINFO  jepsen.util - 1 :invoke :read nil\n";
    let parsed = format::parse_str("e.log", text, Format::JepsenLog).unwrap();
    assert_eq!(parsed.history.events.len(), 1);
    assert_eq!(parsed.history.events[0].line, 3);
    // An operation line that does not parse is still an error naming its line.
    for bad in [
        "INFO  jepsen.util - 1 :invoke :read nil\nINFO  jepsen.util - 1 :ok :read\n",
        "INFO  jepsen.util - 1 :invoke :read nil\nINFO  jepsen.util - 1 :done :read 2\n",
        "INFO  jepsen.util - 1 :invoke :read nil\nINFO  jepsen.util - 1 :ok :read [2\n",
        "INFO  jepsen.util - 1 :invoke :read nil\nINFO  jepsen.util - 1x\t:ok\t:read\t2\n",
    ] {
        let err = format::parse_str("e.log", bad, Format::JepsenLog)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("e.log:2:"), "{bad:?}: {err}");
    }
}

#[test]
fn unknown_formats_are_refused_with_advice() {
    let e = format::detect("h.txt", "hello world\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--format"), "{e}");
}

#[test]
fn malformed_histories_are_errors_not_panics() {
    use faultline_checker::History;
    let parse = |t: &str| format::parse_str("h", t, Format::Edn).unwrap().history;
    let double_invoke: History = parse("{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0, :type :invoke, :f :read, :value nil}");
    let e = double_invoke.operations().unwrap_err().to_string();
    assert!(e.contains("h:2:") && e.contains("still in flight"), "{e}");
    let orphan = parse("{:process 0, :type :ok, :f :read, :value nil}");
    let e = orphan.operations().unwrap_err().to_string();
    assert!(e.contains("no operation in flight"), "{e}");
    let mismatch = parse("{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0, :type :ok, :f :write, :value 1}");
    let e = mismatch.operations().unwrap_err().to_string();
    assert!(e.contains("invoked \"read\""), "{e}");
}

proptest! {
    /// No input makes a reader panic.
    #[test]
    fn readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        for f in [Format::Jsonl, Format::Edn, Format::JepsenLog] {
            let _ = format::parse_str("fuzz", &text, f);
        }
        let _ = format::detect("fuzz", &text);
    }

    /// Nor does mangling a valid EDN history.
    #[test]
    fn mangled_edn_never_panics(cut in 0usize..200, insert in "[\\[\\]{}()#\\\\\";:_ a-z0-9]{0,6}") {
        let base = "[{:process 0, :type :invoke, :f :cas, :value [1 2]}\n {:process 0, :type :ok, :f :cas, :value [1 2], :error #foo/bar {:a \"x\\\"y\"}}]";
        let cut = cut.min(base.len());
        let cut = (0..=cut).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
        let text = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
        let _ = format::parse_str("fuzz", &text, Format::Edn);
    }
}
