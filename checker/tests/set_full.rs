//! The set checker on hand-made histories: every fate an element can meet.

mod common;

use common::h;
use faultline_checker::set_full::check_sets;
use faultline_checker::Verdict;
use serde_json::json;

fn report(text: &str) -> faultline_checker::set_full::SetReport {
    let mut all = check_sets(&h(text)).expect("well formed");
    assert_eq!(all.len(), 1);
    all.remove(0).1
}

#[test]
fn stable_elements_make_a_valid_set() {
    let r = report(
        "
        0 invoke add 1
        0 ok add 1
        1 invoke add 2
        1 info add 2
        2 invoke read nil
        2 ok read [1]
        2 invoke read nil
        2 ok read [2 1]
        ",
    );
    assert_eq!(r.verdict, Some(Verdict::Valid));
    assert_eq!((r.attempted, r.acknowledged, r.reads), (2, 1, 2));
    // 1 was acknowledged before both reads began; 2 was first seen by the second read and
    // never read again.
    assert_eq!((r.stable, r.never_read), (1, 1));
}

#[test]
fn an_acknowledged_element_that_disappears_is_lost() {
    let r = report(
        "
        0 invoke add 1
        0 ok add 1
        2 invoke read nil
        2 ok read [1]
        2 invoke read nil
        2 ok read []
        ",
    );
    assert_eq!(r.verdict, Some(Verdict::Invalid));
    assert_eq!(r.lost.len(), 1);
    assert_eq!(r.lost[0].element, json!(1));
    assert!(r.sentence().contains("lost"), "{}", r.sentence());
}

#[test]
fn an_element_missing_then_back_is_stale() {
    let r = report(
        "
        0 invoke add 1
        0 ok add 1
        2 invoke read nil
        2 ok read []
        2 invoke read nil
        2 ok read [1]
        ",
    );
    assert_eq!(r.verdict, Some(Verdict::Invalid));
    assert_eq!((r.stale.len(), r.lost.len()), (1, 0));
}

#[test]
fn a_read_concurrent_with_the_add_may_miss_it() {
    let r = report(
        "
        0 invoke add 1
        2 invoke read nil
        2 ok read []
        0 ok add 1
        2 invoke read nil
        2 ok read [1]
        ",
    );
    assert_eq!(r.verdict, Some(Verdict::Valid));
}

#[test]
fn unexpected_and_duplicated_elements() {
    let r = report(
        "
        0 invoke add 1
        0 ok add 1
        2 invoke read nil
        2 ok read [1 1 7]
        ",
    );
    assert_eq!(r.verdict, Some(Verdict::Invalid));
    assert_eq!(r.unexpected, vec![json!(7)]);
    assert_eq!(r.duplicated, vec![json!(1)]);
    // An element added only after the read completed cannot explain it.
    let r = report(
        "
        2 invoke read nil
        2 ok read [3]
        0 invoke add 3
        0 ok add 3
        ",
    );
    assert_eq!(r.unexpected, vec![json!(3)]);
}

#[test]
fn no_reads_means_unknown() {
    let r = report("0 invoke add 1\n0 ok add 1");
    assert_eq!(r.verdict, Some(Verdict::Unknown));
}

#[test]
fn an_element_only_a_failed_add_wrote_is_unexpected() {
    let r = report(
        "
        0 invoke add 1
        0 fail add 1
        2 invoke read nil
        2 ok read [1]
        ",
    );
    assert_eq!(r.verdict, Some(Verdict::Invalid));
    assert_eq!(r.unexpected, vec![json!(1)]);
    assert!(r.sentence().contains("failed add"), "{}", r.sentence());
}

#[test]
fn a_retried_element_keeps_its_first_acknowledgement() {
    // Acknowledged, then added again with an unknown outcome: the loss is still a loss.
    let r = report(
        "
        0 invoke add 1
        0 ok add 1
        1 invoke add 1
        1 info add 1
        2 invoke read nil
        2 ok read [1]
        2 invoke read nil
        2 ok read []
        ",
    );
    assert_eq!(r.verdict, Some(Verdict::Invalid));
    assert_eq!(r.lost.len(), 1, "{}", r.sentence());
}
