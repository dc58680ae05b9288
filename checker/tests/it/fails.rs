//! Failed operations as evidence (issue 25, item 1), and the compact history that streams a
//! JSONL file (item 4).

use faultline_checker::{
    CheckOptions, Compact, FailReading, Outcome, Validity, check, check_compact, parse_history,
    read_compact, stats,
};

fn line(i: usize, p: u64, ty: &str, f: &str, value: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#","error":"{e}""#))
        .unwrap_or_default();
    format!(
        r#"{{"index":{i},"time":{},"process":{p},"type":"{ty}","f":"{f}","key":"r1","value":{value}{error}}}"#,
        i * 10
    )
}

/// A register that holds 1 from the write's return to the end; a CAS from 1, invoked after
/// that, fails with `error` (while a read, later, still sees 1).
fn refused_cas(error: Option<&str>) -> String {
    [
        line(0, 1, "invoke", "write", "1", None),
        line(1, 1, "ok", "write", "1", None),
        line(2, 2, "invoke", "cas", "[1,2]", None),
        line(3, 2, "fail", "cas", "[1,2]", error),
        line(4, 1, "invoke", "read", "null", None),
        line(5, 1, "ok", "read", "1", None),
    ]
    .join("\n")
        + "\n"
}

fn verdict(text: &str, fail_reading: FailReading) -> Validity {
    let h = parse_history(text, false).unwrap();
    let opts = CheckOptions {
        fail_reading,
        ..CheckOptions::default()
    };
    check(&h, &opts).unwrap().valid
}

#[test]
fn a_cas_refused_with_cas_mismatch_while_the_value_was_from_is_not_linearizable() {
    let text = refused_cas(Some("cas-mismatch"));
    assert_eq!(verdict(&text, FailReading::Recorded), Validity::Invalid);
    assert_eq!(verdict(&text, FailReading::Porcupine), Validity::Invalid);
    // Knossos's reading (and the checker before issue 25) drops it: the bug is invisible.
    assert_eq!(verdict(&text, FailReading::Knossos), Validity::Valid);
}

#[test]
fn a_fail_with_another_reason_or_none_never_happened_by_default() {
    let no_leader = refused_cas(Some("no-leader"));
    for r in FailReading::ALL {
        assert_eq!(verdict(&no_leader, r), Validity::Valid, "{r:?}");
    }
    let silent = refused_cas(None);
    assert_eq!(verdict(&silent, FailReading::Recorded), Validity::Valid);
    assert_eq!(verdict(&silent, FailReading::Knossos), Validity::Valid);
    assert_eq!(verdict(&silent, FailReading::Porcupine), Validity::Invalid);
}

#[test]
fn a_cas_mismatch_that_a_linearization_explains_is_fine() {
    // The CAS from 1 runs concurrently with the write of 1: it may have compared before it.
    let text = [
        line(0, 1, "invoke", "write", "1", None),
        line(1, 2, "invoke", "cas", "[1,2]", None),
        line(2, 1, "ok", "write", "1", None),
        line(3, 2, "fail", "cas", "[1,2]", Some("cas-mismatch")),
    ]
    .join("\n")
        + "\n";
    assert_eq!(verdict(&text, FailReading::Recorded), Validity::Valid);
}

#[test]
fn the_counterexample_shows_the_failed_cas_as_such() {
    let h = parse_history(&refused_cas(Some("cas-mismatch")), false).unwrap();
    let r = check(&h, &CheckOptions::default()).unwrap();
    let c = r.counterexample().expect("a counterexample");
    let all: Vec<String> = std::iter::once(&c.op)
        .chain(&c.concurrent)
        .chain(&c.prefix_tail)
        .map(|o| o.label())
        .collect();
    assert!(
        all.iter().any(|l| l == "cas [1,2] (fail: cas-mismatch)"),
        "{all:?}"
    );
    assert!(c.svg.contains("(fail: cas-mismatch)"), "{}", c.svg);
    let failed = std::iter::once(&c.op)
        .chain(&c.concurrent)
        .find(|o| o.f == "cas")
        .expect("the cas is the failing op or concurrent with it");
    assert_eq!(failed.outcome, Outcome::Fail);
    assert_eq!(failed.error.as_deref(), Some("cas-mismatch"));
}

#[test]
fn without_a_counterexample_the_verdict_is_the_same() {
    let h = parse_history(&refused_cas(Some("cas-mismatch")), false).unwrap();
    let opts = CheckOptions {
        counterexample: false,
        ..CheckOptions::default()
    };
    let r = check(&h, &opts).unwrap();
    assert_eq!(r.valid, Validity::Invalid);
    assert!(r.counterexample().is_none());
}

#[test]
fn streaming_a_jsonl_file_gives_the_history_s_verdict_stats_and_counterexample() {
    let mut text = refused_cas(Some("cas-mismatch"));
    text.push_str(
        r#"{"index":6,"time":70,"process":"nemesis","type":"info","f":"start-partition","value":null}"#,
    );
    text.push('\n');
    let h = parse_history(&text, false).unwrap();
    let c = read_compact(text.as_bytes()).unwrap();
    assert_eq!(c.ops.len(), h.operations.len());
    assert_eq!((c.events, c.nemesis_ops), (7, 1));
    assert_eq!(c.stats(), stats(&h));
    let from_history = Compact::from_history(&h);
    assert_eq!(c.ops, from_history.ops);
    let a = check_compact(&c, &CheckOptions::default()).unwrap();
    let b = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!((a.valid, b.valid), (Validity::Invalid, Validity::Invalid));
    let (ca, cb) = (a.counterexample().unwrap(), b.counterexample().unwrap());
    assert_eq!(ca.message, cb.message);
    assert_eq!(ca.op, cb.op);
}

#[test]
fn streaming_tolerates_a_cut_off_last_line_and_names_a_bad_one() {
    let mut text = refused_cas(None);
    text.push_str(r#"{"index":6,"time":70,"process":1,"type":"inv"#);
    let c = read_compact(text.as_bytes()).unwrap();
    assert_eq!(c.ops.len(), 3);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("line 7: truncated"),
        "{:?}",
        c.warnings
    );
    let parsed = parse_history(&text, false).unwrap();
    assert_eq!(parsed.warnings, c.warnings);
    // The same cut in the middle is an error naming the line.
    let bad = text.clone() + "\n" + &line(7, 3, "invoke", "read", "null", None) + "\n";
    let e = read_compact(bad.as_bytes()).unwrap_err();
    assert_eq!(e.line(), Some(7), "{e}");
    // A completion without an invocation names its line, as the History reader does.
    let orphan = line(0, 1, "ok", "read", "1", None) + "\n";
    let e = read_compact(orphan.as_bytes()).unwrap_err();
    assert_eq!(e.line(), Some(1));
    assert!(e.to_string().contains("without an invocation"), "{e}");
}

#[test]
fn fail_readings_parse_by_name() {
    for r in FailReading::ALL {
        assert_eq!(FailReading::parse(r.name()), Ok(r));
    }
    let e = FailReading::parse("jepsen").unwrap_err();
    assert!(e.contains("recorded, knossos, porcupine"), "{e}");
}

/// Two keys, both not linearizable: `a` (the smaller key, searched first) only at the end of
/// the history, `b` from its second operation. The counterexample is `b`'s, the earliest, found
/// by checking `b` only up to `a`'s failure; without a counterexample the check stops at `a`.
#[test]
fn the_counterexample_is_the_earliest_failure_even_when_found_second() {
    let op = |i: usize, p: u64, ty: &str, f: &str, key: &str, value: &str| {
        format!(
            r#"{{"index":{i},"process":{p},"type":"{ty}","f":"{f}","key":"{key}","value":{value}}}"#
        )
    };
    let text = [
        op(0, 1, "invoke", "write", "a", "1"),
        op(1, 1, "ok", "write", "a", "1"),
        op(2, 2, "invoke", "write", "b", "1"),
        op(3, 2, "ok", "write", "b", "1"),
        op(4, 2, "invoke", "read", "b", "null"),
        op(5, 2, "ok", "read", "b", "3"),
        op(6, 2, "invoke", "write", "b", "5"),
        op(7, 2, "ok", "write", "b", "5"),
        op(8, 2, "invoke", "read", "b", "null"),
        op(9, 2, "ok", "read", "b", "5"),
        op(10, 1, "invoke", "read", "a", "null"),
        op(11, 1, "ok", "read", "a", "2"),
    ]
    .join("\n")
        + "\n";
    let h = parse_history(&text, false).unwrap();
    let r = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(r.valid, Validity::Invalid);
    let c = r.counterexample().unwrap();
    assert_eq!(c.key.as_deref(), Some("b"), "{}", c.message);
    assert_eq!(c.op.complete_line, Some(6), "{}", c.message);
    let quick = CheckOptions {
        counterexample: false,
        ..CheckOptions::default()
    };
    let r = check(&h, &quick).unwrap();
    let (valid, unknown, invalid) = r.key_counts();
    assert_eq!((valid, unknown, invalid), (0, 1, 1), "{:?}", r.keys);
    assert_eq!(
        r.keys[0].valid,
        Validity::Invalid,
        "a, the smaller key, first"
    );
}
