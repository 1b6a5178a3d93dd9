//! Hand-made histories, one tricky situation each, for every model.
//!
//! Lines read `PROCESS TYPE F VALUE`; their order is real time. `info` (or no completion at
//! all) means the operation may or may not have taken effect, at any moment after its call.

mod common;

use common::{check, check_with, h, spec, verdict};
use faultline_checker::Verdict::{Invalid, Valid};
use faultline_checker::{check_history, CheckOptions, NilReads, Report};
use serde_json::json;

// ---------------------------------------------------------------- registers

#[test]
fn register_read_your_write() {
    assert_eq!(
        verdict(
            "register",
            "0 invoke write 1\n0 ok write 1\n1 invoke read nil\n1 ok read 1"
        ),
        Valid
    );
}

#[test]
fn register_read_of_the_initial_value() {
    assert_eq!(
        verdict("register", "0 invoke read nil\n0 ok read nil"),
        Valid
    );
    let report = check_with(
        &spec("register", Some(json!(0))),
        &h("0 invoke read nil\n0 ok read 0"),
    );
    assert_eq!(report.verdict, Valid);
    // Nobody wrote 0 and the register starts at nil.
    assert_eq!(
        verdict("register", "0 invoke read nil\n0 ok read 0"),
        Invalid
    );
}

#[test]
fn register_stale_read_is_caught_and_explained() {
    let report = check(
        "register",
        &h("
            0 invoke write 1
            0 ok write 1
            1 invoke write 2
            1 ok write 2
            2 invoke read nil
            2 ok read 1
        "),
    );
    assert_eq!(report.verdict, Invalid);
    let failure = &report.failures[0];
    assert_eq!(failure.culprit.process, 2);
    assert_eq!(failure.culprit.f, "read");
    assert_eq!(
        failure.sentence,
        "read returned 1, but write 2 completed after the only write of 1 and before this read \
         began"
    );
    // The window is exactly the three operations that prove it.
    assert_eq!(failure.window.len(), 3);
}

#[test]
fn register_read_concurrent_with_write_may_see_either_value() {
    for seen in ["nil", "1"] {
        let history =
            format!("0 invoke write 1\n1 invoke read nil\n1 ok read {seen}\n0 ok write 1");
        assert_eq!(verdict("register", &history), Valid, "read {seen}");
    }
}

#[test]
fn register_zero_length_operations() {
    // Each operation completes right after its invocation, so the order is fully fixed.
    let ok = "0 invoke write 1\n0 ok write 1\n0 invoke write 2\n0 ok write 2\n0 invoke read nil\n0 ok read 2";
    let bad = "0 invoke write 1\n0 ok write 1\n0 invoke write 2\n0 ok write 2\n0 invoke read nil\n0 ok read 1";
    assert_eq!(verdict("register", ok), Valid);
    assert_eq!(verdict("register", bad), Invalid);
}

#[test]
fn register_info_write_may_take_effect_late() {
    // The lost write of 1 takes effect after the write of 2 completed.
    let history = "
        0 invoke write 1
        0 info write 1
        1 invoke write 2
        1 ok write 2
        2 invoke read nil
        2 ok read 2
        2 invoke read nil
        2 ok read 1
    ";
    assert_eq!(verdict("cas-register", history), Valid);
}

#[test]
fn register_info_write_may_never_take_effect() {
    let history = "0 invoke write 1\n0 info write 1\n1 invoke read nil\n1 ok read nil";
    assert_eq!(verdict("cas-register", history), Valid);
}

#[test]
fn register_info_write_once_seen_cannot_be_unseen() {
    // Once a read saw 1, the register cannot go back to nil: nobody writes nil.
    let history = "
        0 invoke write 1
        0 info write 1
        1 invoke read nil
        1 ok read 1
        1 invoke read nil
        1 ok read nil
    ";
    assert_eq!(verdict("cas-register", history), Invalid);
}

#[test]
fn register_crashed_process_is_treated_as_info() {
    // Process 0 never completes its write: it may have happened.
    let history = "0 invoke write 3\n1 invoke read nil\n1 ok read 3";
    assert_eq!(verdict("register", history), Valid);
}

#[test]
fn cas_register_failed_cas_has_no_effect() {
    let history = "0 invoke cas [1 2]\n0 fail cas [1 2]\n1 invoke read nil\n1 ok read 0";
    let report = check_with(&spec("cas-register", Some(json!(0))), &h(history));
    assert_eq!(report.verdict, Valid);
}

#[test]
fn cas_register_successful_cas() {
    let ok = "0 invoke cas [0 1]\n0 ok cas [0 1]\n1 invoke read nil\n1 ok read 1";
    let bad = "0 invoke cas [0 1]\n0 ok cas [0 1]\n1 invoke read nil\n1 ok read 0";
    let s = spec("cas-register", Some(json!(0)));
    assert_eq!(check_with(&s, &h(ok)).verdict, Valid);
    assert_eq!(check_with(&s, &h(bad)).verdict, Invalid);
    // A cas that succeeded although the register could not hold its expected value.
    let impossible = "0 invoke write 5\n0 ok write 5\n1 invoke cas [0 1]\n1 ok cas [0 1]";
    assert_eq!(check_with(&s, &h(impossible)).verdict, Invalid);
}

#[test]
fn cas_register_indeterminate_cas_chain() {
    // Two lost cas operations must both have taken effect, in order, for the read of 2.
    let history = "
        0 invoke cas [0 1]
        0 info cas [0 1]
        1 invoke cas [1 2]
        1 info cas [1 2]
        2 invoke read nil
        2 ok read 2
    ";
    let s = spec("cas-register", Some(json!(0)));
    assert_eq!(check_with(&s, &h(history)).verdict, Valid);
    // And the register cannot then return to 1: the cas 0→1 is used up.
    let history = format!("{history}\n2 invoke read nil\n2 ok read 1");
    assert_eq!(check_with(&s, &h(&history)).verdict, Invalid);
}

#[test]
fn identical_lost_writes_are_each_usable_once() {
    // Two lost writes of 1: one explains the first read of 1, the other the read of 1 after
    // the write of 2. A third read of 1 after a second write of 2 has no write left.
    let base = "
        0 invoke write 1
        0 info write 1
        1 invoke write 1
        1 info write 1
        2 invoke read nil
        2 ok read 1
        2 invoke write 2
        2 ok write 2
        2 invoke read nil
        2 ok read 1
    ";
    assert_eq!(verdict("cas-register", base), Valid);
    let more = format!("{base}\n2 invoke write 2\n2 ok write 2\n2 invoke read nil\n2 ok read 1");
    assert_eq!(verdict("cas-register", &more), Invalid);
}

#[test]
fn real_time_order_across_processes() {
    // The write completed before the read began, so the read must see it.
    let history = "0 invoke write 1\n0 ok write 1\n1 invoke read nil\n1 ok read nil";
    assert_eq!(verdict("register", history), Invalid);
}

#[test]
fn nemesis_events_are_ignored() {
    let history = "
        0 invoke write 1
        n info start-partition [:isolate n1]
        0 ok write 1
        n info stop-partition nil
        1 invoke read nil
        1 ok read 1
    ";
    assert_eq!(verdict("register", history), Valid);
}

#[test]
fn multi_key_histories_are_checked_per_key() {
    let history = "
        0 invoke write 1 key=\"a\"
        0 ok write 1 key=\"a\"
        1 invoke write 2 key=\"b\"
        1 ok write 2 key=\"b\"
        2 invoke read nil key=\"a\"
        2 ok read 1 key=\"a\"
        2 invoke read nil key=\"b\"
        2 ok read nil key=\"b\"
    ";
    let report = check("register", &h(history));
    assert_eq!(report.verdict, Invalid);
    assert_eq!(report.keys, 2);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].key, Some(json!("b")));
}

#[test]
fn register_rejects_cas_and_unknown_functions() {
    let err = faultline_checker::check_history(
        &spec("register", None),
        &h("0 invoke cas [1 2]\n0 ok cas [1 2]"),
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cas-register"), "{err}");
    let err = faultline_checker::check_history(
        &spec("cas-register", None),
        &h("0 invoke frob 1\n0 ok frob 1"),
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("read, write, cas"), "{err}");
    assert_eq!(err.line, Some(2));
}

// ---------------------------------------------------------------- kv-append

#[test]
fn kv_append_concurrent_appends_in_either_order() {
    let history = |seen: &str| {
        format!(
            "0 invoke append \"a\"\n1 invoke append \"b\"\n0 ok append \"a\"\n1 ok append \"b\"\n\
             2 invoke get nil\n2 ok get {seen}"
        )
    };
    assert_eq!(verdict("kv-append", &history("\"ab\"")), Valid);
    assert_eq!(verdict("kv-append", &history("\"ba\"")), Valid);
    assert_eq!(verdict("kv-append", &history("\"a\"")), Invalid);
    assert_eq!(verdict("kv-append", &history("\"abc\"")), Invalid);
}

#[test]
fn kv_append_put_resets() {
    let history = "
        0 invoke append \"a\"
        0 ok append \"a\"
        0 invoke put \"x\"
        0 ok put \"x\"
        0 invoke append \"b\"
        0 ok append \"b\"
        1 invoke get nil
        1 ok get \"xb\"
    ";
    assert_eq!(verdict("kv-append", history), Valid);
}

#[test]
fn kv_append_lost_append_seen_later() {
    let history = "
        0 invoke append \"a\"
        0 info append \"a\"
        1 invoke append \"b\"
        1 ok append \"b\"
        2 invoke get nil
        2 ok get \"b\"
        2 invoke get nil
        2 ok get \"ba\"
    ";
    assert_eq!(verdict("kv-append", history), Valid);
}

// ---------------------------------------------------------------- mutex

#[test]
fn mutex_two_holders_at_once() {
    let bad = "0 invoke acquire nil\n0 ok acquire nil\n1 invoke acquire nil\n1 ok acquire nil";
    assert_eq!(verdict("mutex", bad), Invalid);
    let ok = "0 invoke acquire nil\n0 ok acquire nil\n0 invoke release nil\n0 ok release nil\n\
              1 invoke acquire nil\n1 ok acquire nil";
    assert_eq!(verdict("mutex", ok), Valid);
}

#[test]
fn mutex_lost_release_may_have_happened() {
    let history = "
        0 invoke acquire nil
        0 ok acquire nil
        0 invoke release nil
        0 info release nil
        1 invoke acquire nil
        1 ok acquire nil
    ";
    assert_eq!(verdict("mutex", history), Valid);
}

// ---------------------------------------------------------------- set

#[test]
fn set_reads_see_every_completed_add() {
    let ok = "0 invoke add 1\n0 ok add 1\n1 invoke add 2\n1 ok add 2\n2 invoke read nil\n2 ok read [2 1]";
    let lost =
        "0 invoke add 1\n0 ok add 1\n1 invoke add 2\n1 ok add 2\n2 invoke read nil\n2 ok read [1]";
    let invented = "0 invoke add 1\n0 ok add 1\n2 invoke read nil\n2 ok read [1 3]";
    assert_eq!(verdict("set", ok), Valid);
    assert_eq!(verdict("set", lost), Invalid);
    assert_eq!(verdict("set", invented), Invalid);
}

#[test]
fn set_lost_add_may_appear() {
    let history = "0 invoke add 1\n0 info add 1\n1 invoke read nil\n1 ok read []\n1 invoke read nil\n1 ok read [1]";
    assert_eq!(verdict("set", history), Valid);
    let flicker = format!("{history}\n1 invoke read nil\n1 ok read []");
    assert_eq!(verdict("set", &flicker), Invalid);
}

// ---------------------------------------------------------------- fifo-queue

#[test]
fn queue_is_first_in_first_out() {
    let ok = "0 invoke enqueue 1\n0 ok enqueue 1\n0 invoke enqueue 2\n0 ok enqueue 2\n\
              1 invoke dequeue nil\n1 ok dequeue 1\n1 invoke dequeue nil\n1 ok dequeue 2";
    let bad = "0 invoke enqueue 1\n0 ok enqueue 1\n0 invoke enqueue 2\n0 ok enqueue 2\n\
               1 invoke dequeue nil\n1 ok dequeue 2";
    assert_eq!(verdict("fifo-queue", ok), Valid);
    assert_eq!(verdict("fifo-queue", bad), Invalid);
}

#[test]
fn queue_empty_dequeue() {
    assert_eq!(
        verdict("fifo-queue", "0 invoke dequeue nil\n0 ok dequeue nil"),
        Valid
    );
    let bad = "0 invoke enqueue 1\n0 ok enqueue 1\n1 invoke dequeue nil\n1 ok dequeue nil";
    assert_eq!(verdict("fifo-queue", bad), Invalid);
}

// ---------------------------------------------------------------- explanations

#[test]
fn the_failure_window_rechecks_as_invalid_with_the_same_culprit() {
    let history = h("
        0 invoke write 1
        1 invoke read nil
        0 ok write 1
        0 invoke write 2
        1 ok read nil
        2 invoke read nil
        0 ok write 2
        2 ok read 2
        3 invoke read nil
        3 ok read 1
        4 invoke write 3
        4 ok write 3
    ");
    let report = check("cas-register", &history);
    assert_eq!(report.verdict, Invalid);
    let failure = &report.failures[0];
    assert_eq!(failure.culprit.process, 3);
    let window = faultline_checker::History::from_events("window", failure.window_events.clone());
    let again = check("cas-register", &window);
    assert_eq!(again.verdict, Invalid);
    assert_eq!(again.failures[0].culprit.index, failure.culprit.index);
    // Operations after the culprit cannot matter and are not in the window.
    assert!(failure.window.iter().all(|op| op.process != 4));
}

#[test]
fn a_value_only_a_failed_operation_wrote_is_blamed_on_it() {
    let report = check(
        "cas-register",
        &h("
            0 invoke write 1
            0 ok write 1
            1 invoke cas [1 2]
            1 fail cas [1 2]
            2 invoke read nil
            2 ok read 2
        "),
    );
    assert_eq!(report.verdict, Invalid);
    assert_eq!(
        report.failures[0].sentence,
        "read returned 2, but the only operation that wrote 2, cas 1→2 (line 3), was reported as \
         failed"
    );
}

// ---------------------------------------------------------------- reads of nil

fn check_nil(model: &str, initial: Option<serde_json::Value>, nil: NilReads, text: &str) -> Report {
    let options = CheckOptions {
        stop_at_first_failure: false,
        nil_reads: nil,
        ..CheckOptions::default()
    };
    check_history(&spec(model, initial), &h(text), &options).expect("well formed")
}

/// Knossos's meaning: an ok read of nil is a read of unknown value, legal in every state, and
/// the report counts it. The strict meaning catches it, with or without a nil initial value.
#[test]
fn a_read_of_nil_is_unknown_or_strict_as_asked() {
    let text = "
        0 invoke write 1
        0 ok write 1
        1 invoke read nil
        1 ok read nil
        1 invoke read nil
        1 ok read 1
    ";
    for model in ["register", "cas-register"] {
        for initial in [None, Some(json!(0))] {
            let r = check_nil(model, initial.clone(), NilReads::Unknown, text);
            assert_eq!(r.verdict, Valid, "{model} {initial:?}");
            assert_eq!((r.nil_reads, r.unknown_reads), (NilReads::Unknown, 1));
            let r = check_nil(model, initial.clone(), NilReads::Value, text);
            assert_eq!(r.verdict, Invalid, "{model} {initial:?}");
            assert_eq!(r.unknown_reads, 0);
            assert_eq!(r.failures[0].culprit.line, 3);
        }
    }
    // Unknown reads still leave every other read judged: a stale read next to them is caught.
    let stale = "
        0 invoke write 1
        0 ok write 1
        0 invoke write 2
        0 ok write 2
        1 invoke read nil
        1 ok read nil
        1 invoke read nil
        1 ok read 1
    ";
    assert_eq!(
        check_nil("register", None, NilReads::Unknown, stale).verdict,
        Invalid
    );
    // Before any write, a strict read of nil is the initial nil.
    let first = "1 invoke read nil\n1 ok read nil";
    assert_eq!(
        check_nil("register", None, NilReads::Value, first).verdict,
        Valid
    );
    assert_eq!(
        check_nil("register", Some(json!(0)), NilReads::Value, first).verdict,
        Invalid
    );
}

/// kv-append: a get of nil is unknown under Knossos's meaning, the empty string otherwise.
#[test]
fn a_kv_get_of_nil_is_unknown_or_empty() {
    let text = "
        0 invoke append \"x\"
        0 ok append \"x\"
        1 invoke get nil
        1 ok get nil
    ";
    let r = check_nil("kv-append", None, NilReads::Unknown, text);
    assert_eq!((r.verdict, r.unknown_reads), (Valid, 1));
    assert_eq!(
        check_nil("kv-append", None, NilReads::Value, text).verdict,
        Invalid
    );
}

// ---------------------------------------------------------------- multi-register

fn multi(initial: serde_json::Value, nil: NilReads, text: &str) -> Report {
    check_nil("multi-register", Some(initial), nil, text)
}

#[test]
fn multi_register_transactions_are_atomic_and_ordered() {
    // A read after a write of the same register in one transaction sees the write.
    let own_write = "
        0 invoke txn [[:write :x 1] [:read :x nil]]
        0 ok txn [[:write :x 1] [:read :x 1]]
    ";
    assert_eq!(
        multi(json!({"x": 0}), NilReads::Value, own_write).verdict,
        Valid
    );
    let before_write = "
        0 invoke txn [[:read :x nil] [:write :x 1]]
        0 ok txn [[:read :x 1] [:write :x 1]]
    ";
    assert_eq!(
        multi(json!({"x": 0}), NilReads::Value, before_write).verdict,
        Invalid
    );
    // Two registers written together are never seen half-written.
    let torn = "
        0 invoke txn [[:write :x 1] [:write :y 1]]
        1 invoke txn [[:read :x nil] [:read :y nil]]
        1 ok txn [[:read :x 1] [:read :y 0]]
        0 ok txn [[:write :x 1] [:write :y 1]]
    ";
    let r = multi(json!({"x": 0, "y": 0}), NilReads::Value, torn);
    assert_eq!(r.verdict, Invalid);
    assert_eq!(r.keys, 1, "the registers of a transaction are one object");
    let whole = torn.replace("[:read :y 0]", "[:read :y 1]");
    assert_eq!(
        multi(json!({"x": 0, "y": 0}), NilReads::Value, &whole).verdict,
        Valid
    );
    let before = torn.replace("[:read :x 1]", "[:read :x 0]");
    assert_eq!(
        multi(json!({"x": 0, "y": 0}), NilReads::Value, &before).verdict,
        Valid
    );
}

#[test]
fn multi_register_reads_of_nil_and_unnamed_registers() {
    // A register the initial map does not name starts at nil.
    let unnamed = "
        0 invoke txn [[:read :z nil]]
        0 ok txn [[:read :z nil]]
    ";
    assert_eq!(
        multi(json!({"x": 0}), NilReads::Value, unnamed).verdict,
        Valid
    );
    // A read of nil after a write: unknown (Knossos) passes and is counted, strict fails.
    let after_write = "
        0 invoke txn [[:write :x 5]]
        0 ok txn [[:write :x 5]]
        1 invoke txn [[:read :x nil] [:read :y nil]]
        1 ok txn [[:read :x nil] [:read :y 0]]
    ";
    let r = multi(json!({"x": 0, "y": 0}), NilReads::Unknown, after_write);
    assert_eq!((r.verdict, r.unknown_reads), (Valid, 1));
    assert_eq!(
        multi(json!({"x": 0, "y": 0}), NilReads::Value, after_write).verdict,
        Invalid
    );
    // An indeterminate transaction's writes may or may not have happened; its reads are
    // unknown.
    let lost = "
        0 invoke txn [[:read :x nil] [:write :x 7]]
        0 info txn [[:read :x nil] [:write :x 7]]
        1 invoke txn [[:read :x nil]]
        1 ok txn [[:read :x 7]]
        1 invoke txn [[:read :x nil]]
        1 ok txn [[:read :x 7]]
    ";
    assert_eq!(multi(json!({"x": 0}), NilReads::Value, lost).verdict, Valid);
    let unseen = lost.replacen("[[:read :x 7]]", "[[:read :x 0]]", 2);
    let unseen = unseen.replacen("[[:read :x 0]]", "[[:read :x 7]]", 1);
    // Reads 0 after 7: the lost write cannot be undone.
    assert_eq!(
        multi(json!({"x": 0}), NilReads::Value, &unseen).verdict,
        Invalid
    );
}

#[test]
fn multi_register_refuses_what_it_cannot_read() {
    let bad_initial = faultline_checker::ModelSpec::from_name("multi-register", Some(json!(0)));
    assert!(bad_initial.unwrap_err().contains("map"));
    let options = CheckOptions::default();
    let mismatched = h("
        0 invoke txn [[:read :x nil]]
        0 ok txn [[:write :x 1]]
    ");
    let err = check_history(&spec("multi-register", None), &mismatched, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":2:") && err.contains("not the transaction invoked"),
        "{err}"
    );
    let not_txn = h("0 invoke read nil\n0 ok read 1");
    let err = check_history(&spec("multi-register", None), &not_txn, &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("txn"), "{err}");
}

// ---------------------------------------------------------------- minimal windows

/// A long mutex history (each of 3 processes acquiring and releasing in turn, with failed
/// acquisitions in between) that ends in a double acquisition: the window is the two
/// acquisitions with no release between them, and it re-checks invalid with the same culprit.
#[test]
fn a_mutex_double_acquisition_gets_a_window_of_a_few_operations() {
    let mut text = String::new();
    for round in 0..60 {
        let p = round % 3;
        let q = (round + 1) % 3;
        text += &format!("{p} invoke acquire nil\n{p} ok acquire nil\n");
        text += &format!("{q} invoke acquire nil\n{q} fail acquire nil\n");
        text += &format!("{p} invoke release nil\n{p} ok release nil\n");
    }
    text += "1 invoke acquire nil\n1 ok acquire nil\n";
    text += "2 invoke acquire nil\n2 ok acquire nil\n";
    let history = h(&text);
    let report = check("mutex", &history);
    assert_eq!(report.verdict, Invalid);
    let failure = &report.failures[0];
    assert!(
        failure.window.len() <= 4,
        "window of {} operations: {:?}",
        failure.window.len(),
        failure.window
    );
    assert!(
        failure.sentence.contains("so did the acquire on line")
            && failure.sentence.contains("no release was in progress"),
        "{}",
        failure.sentence
    );
    let window = faultline_checker::History::from_events("window", failure.window_events.clone());
    let again = check("mutex", &window);
    assert_eq!(again.verdict, Invalid);
    assert_eq!(again.failures[0].culprit.index, failure.culprit.index);
}

/// A long queue history (each element enqueued and dequeued in turn) that ends in a dequeue of
/// an element already dequeued: shrinking by whole enqueue/dequeue pairs gets the window down
/// to the element's enqueue, its first dequeue and the culprit.
#[test]
fn a_queue_double_dequeue_gets_a_window_of_a_few_operations() {
    let mut text = String::new();
    for n in 0..60 {
        let (p, q) = (n % 5, (n + 1) % 5);
        text += &format!("{p} invoke enqueue {n}\n{p} ok enqueue {n}\n");
        text += &format!("{q} invoke dequeue nil\n{q} ok dequeue {n}\n");
    }
    text += "0 invoke enqueue 60\n0 ok enqueue 60\n1 invoke dequeue nil\n1 ok dequeue 59\n";
    let report = check("fifo-queue", &h(&text));
    assert_eq!(report.verdict, Invalid);
    let failure = &report.failures[0];
    assert!(
        failure.window.len() <= 4,
        "window of {} operations: {:?}",
        failure.window.len(),
        failure.window
    );
    let window = faultline_checker::History::from_events("window", failure.window_events.clone());
    let again = check("fifo-queue", &window);
    assert_eq!(again.verdict, Invalid);
    assert_eq!(again.failures[0].culprit.index, failure.culprit.index);
}

/// A stale read in a transaction: the window keeps the write of the value read (dropping it
/// would fail for another reason, "nobody wrote it"), and a value never written is reported at
/// once, naming the register.
#[test]
fn multi_register_windows_keep_the_writer_of_what_was_read() {
    let stale = "
        0 invoke txn [[:write :x 1]]
        0 ok txn [[:write :x 1]]
        0 invoke txn [[:write :x 2]]
        0 ok txn [[:write :x 2]]
        1 invoke txn [[:read :x nil]]
        1 ok txn [[:read :x 1]]
    ";
    let r = multi(json!({"x": 0}), NilReads::Value, stale);
    assert_eq!(r.verdict, Invalid);
    assert_eq!(r.failures[0].window.len(), 3, "{:?}", r.failures[0].window);
    let never = stale.replace("[[:read :x 1]]", "[[:read :x 7]]");
    let r = multi(json!({"x": 0}), NilReads::Value, &never);
    assert_eq!(r.verdict, Invalid);
    assert_eq!(
        r.failures[0].sentence,
        "txn read 7 from \"x\", but no transaction ever wrote it"
    );
}

/// A mutex window keeps every release in progress between the acquisitions it shows: here a
/// release overlaps both acquisitions, so the two acquisitions alone would tell a story the
/// history does not have.
#[test]
fn mutex_windows_keep_releases_in_progress_between_their_acquisitions() {
    let text = "
        0 invoke acquire nil
        0 ok acquire nil
        1 invoke acquire nil
        0 invoke release nil
        2 invoke acquire nil
        0 ok release nil
        1 ok acquire nil
        2 ok acquire nil
    ";
    let report = check("mutex", &h(text));
    assert_eq!(report.verdict, Invalid);
    let window = &report.failures[0].window;
    assert!(
        window.iter().any(|op| op.f == "release"),
        "the release was dropped: {window:?}"
    );
}
