//! Unit tests: each anomaly from a minimal hand-built history.

use serde_json::{Value, json};

use super::*;
use crate::history::History;

/// One history event: process, type, micro-ops (for an invocation, reads are nulled).
type Ev = (u64, &'static str, Value);

fn history(events: &[Ev]) -> History {
    let mut lines = String::new();
    for (i, (p, ty, mops)) in events.iter().enumerate() {
        let value = if *ty == "invoke" {
            null_reads(mops)
        } else {
            mops.clone()
        };
        let line = json!({"index": i, "time": (i as u64 + 1) * 1000, "process": p,
                          "type": ty, "f": "txn", "value": value});
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    crate::parse_history(&lines, false).unwrap()
}

fn null_reads(mops: &Value) -> Value {
    Value::Array(
        mops.as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let m = m.as_array().unwrap();
                if m[0] == "r" {
                    json!([m[0], m[1], null])
                } else {
                    Value::Array(m.clone())
                }
            })
            .collect(),
    )
}

/// Txns one after another, each on its own process (so no process order joins them): type and
/// micro-ops.
fn serial(txns: &[(&'static str, Value)]) -> History {
    let mut ev = Vec::new();
    for (i, (ty, m)) in txns.iter().enumerate() {
        ev.push((i as u64, "invoke", m.clone()));
        ev.push((i as u64, *ty, m.clone()));
    }
    history(&ev)
}

/// All txns invoked first, then all completed: no real-time order at all.
fn concurrent(txns: &[(&'static str, Value)]) -> History {
    let mut ev: Vec<Ev> = txns
        .iter()
        .enumerate()
        .map(|(i, (_, m))| (i as u64, "invoke", m.clone()))
        .collect();
    ev.extend(
        txns.iter()
            .enumerate()
            .map(|(i, (ty, m))| (i as u64, *ty, m.clone())),
    );
    history(&ev)
}

fn check(h: &History, model: ConsistencyModel) -> TxnResult {
    let r = check_txn(
        h,
        &TxnOptions {
            model,
            ..TxnOptions::default()
        },
    );
    // Every result serializes and every line reads.
    serde_json::to_string(&r).unwrap();
    let _ = r.anomaly_lines();
    r
}

fn names(r: &TxnResult) -> Vec<&str> {
    r.anomalies.keys().map(String::as_str).collect()
}

use ConsistencyModel::*;

#[test]
fn g0_write_cycle() {
    let h = concurrent(&[
        ("ok", json!([["append", "x", 1], ["append", "y", 1]])),
        ("ok", json!([["append", "x", 2], ["append", "y", 2]])),
        ("ok", json!([["r", "x", [1, 2]], ["r", "y", [2, 1]]])),
    ]);
    let r = check(&h, Serializable);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(names(&r), ["G0"], "{:?}", r.anomaly_lines());
    assert_eq!(r.not, vec![ReadUncommitted]);
    let ex = &r.examples["G0"][0];
    assert_eq!(ex.steps.len(), 2);
    assert!(ex.steps.iter().all(|s| s.edge == "ww"));
    assert!(
        ex.message.contains("appended 2 after T") && ex.message.contains("'s 1 to key x"),
        "{}",
        ex.message
    );
    let svg = ex.svg.as_deref().unwrap();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && svg.contains(">T2<"));
    assert_eq!(ex.txns.len(), 2);
    assert!(ex.txns[0].ops.contains("[:append x 1]") || ex.txns[0].ops.contains("[:append x 2]"));
    // Read uncommitted forbids G0 too.
    assert_eq!(check(&h, ReadUncommitted).valid, Validity::Invalid);
}

#[test]
fn g1a_aborted_read() {
    let h = serial(&[
        ("fail", json!([["append", "x", 1]])),
        ("ok", json!([["r", "x", [1]]])),
    ]);
    let r = check(&h, Serializable);
    // Nothing orders the two (the failed txn is no node): Elle's empty graph, noted.
    assert_eq!(names(&r), ["G1a", "empty-transaction-graph"]);
    assert_eq!(r.valid, Validity::Invalid);
    assert!(r.examples["G1a"][0].message.contains("failed"));
    assert_eq!(r.not, vec![ReadCommitted]);
    assert_eq!(
        check(&h, ReadUncommitted).valid,
        Validity::Unknown,
        "nothing to judge by"
    );
    assert_eq!(r.first_anomaly_time, Some(4000), "the reader's completion");
}

#[test]
fn g1b_intermediate_read() {
    let h = serial(&[
        ("ok", json!([["append", "x", 1], ["append", "x", 2]])),
        ("ok", json!([["r", "x", [1]]])),
    ]);
    let r = check(&h, Serializable);
    assert!(names(&r).contains(&"G1b"), "{:?}", r.anomaly_lines());
    // The same read as the final state of the writer's own txn is fine.
    let h = serial(&[
        ("ok", json!([["append", "x", 1], ["append", "x", 2]])),
        ("ok", json!([["r", "x", [1, 2]]])),
    ]);
    assert_eq!(check(&h, StrictSerializable).valid, Validity::Valid);
}

#[test]
fn g1c_circular_information_flow() {
    let h = concurrent(&[
        ("ok", json!([["append", "x", 1], ["r", "y", [1]]])),
        ("ok", json!([["append", "y", 1], ["r", "x", [1]]])),
    ]);
    let r = check(&h, ReadCommitted);
    assert_eq!(names(&r), ["G1c"]);
    assert!(r.examples["G1c"][0].steps.iter().all(|s| s.edge == "wr"));
    assert_eq!(r.valid, Validity::Invalid);
}

#[test]
fn g_single_read_skew() {
    let h = concurrent(&[
        ("ok", json!([["r", "x", []], ["r", "y", [1]]])),
        ("ok", json!([["append", "x", 1], ["append", "y", 1]])),
    ]);
    let r = check(&h, Serializable);
    assert_eq!(names(&r), ["G-single"], "{:?}", r.anomaly_lines());
    let steps = &r.examples["G-single"][0].steps;
    let edges: Vec<&str> = steps.iter().map(|s| s.edge.as_str()).collect();
    assert!(edges.contains(&"rw") && edges.contains(&"wr"), "{edges:?}");
    assert!(
        steps
            .iter()
            .any(|s| s.text.contains("initial (empty) state of key x"))
    );
    assert_eq!(r.not, vec![RepeatableRead, SnapshotIsolation]);
    assert_eq!(check(&h, ReadCommitted).valid, Validity::Valid);
}

#[test]
fn g_nonadjacent() {
    let h = concurrent(&[
        ("ok", json!([["r", "a", []], ["r", "d", [1]]])),
        ("ok", json!([["append", "a", 1], ["append", "b", 1]])),
        ("ok", json!([["r", "b", [1]], ["r", "c", []]])),
        ("ok", json!([["append", "c", 1], ["append", "d", 1]])),
    ]);
    let r = check(&h, Serializable);
    assert_eq!(names(&r), ["G-nonadjacent"], "{:?}", r.anomaly_lines());
    assert_eq!(r.examples["G-nonadjacent"][0].steps.len(), 4);
    assert_eq!(check(&h, SnapshotIsolation).valid, Validity::Invalid);
}

#[test]
fn g2_item_write_skew_is_allowed_by_snapshot_isolation() {
    let h = concurrent(&[
        (
            "ok",
            json!([["r", "x", []], ["r", "y", []], ["append", "x", 1]]),
        ),
        (
            "ok",
            json!([["r", "x", []], ["r", "y", []], ["append", "y", 1]]),
        ),
    ]);
    let r = check(&h, Serializable);
    assert_eq!(names(&r), ["G2-item"], "{:?}", r.anomaly_lines());
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.not, vec![RepeatableRead]);
    assert_eq!(check(&h, SnapshotIsolation).valid, Validity::Valid);
}

#[test]
fn a_stronger_search_reports_what_the_model_allows_without_failing_it() {
    let h = concurrent(&[
        (
            "ok",
            json!([["r", "x", []], ["r", "y", []], ["append", "x", 1]]),
        ),
        (
            "ok",
            json!([["r", "x", []], ["r", "y", []], ["append", "y", 1]]),
        ),
    ]);
    let opts = |search| TxnOptions {
        model: ReadCommitted,
        search,
        ..TxnOptions::default()
    };
    // Checked for read committed alone, write skew is not even looked for.
    let plain = check_txn(&h, &opts(None));
    assert!(
        !plain.anomalies.contains_key("G2-item"),
        "{:?}",
        plain.anomaly_lines()
    );
    // Searched as serializable, it is reported, but read committed allows it.
    let r = check_txn(&h, &opts(Some(Serializable)));
    assert_eq!(names(&r), ["G2-item"], "{:?}", r.anomaly_lines());
    assert!(r.forbidden.is_empty());
    assert_eq!(r.valid, Validity::Valid);
    assert_eq!(r.not, vec![RepeatableRead]);
    // A weaker search than the model changes nothing.
    let r = check_txn(
        &h,
        &TxnOptions {
            model: Serializable,
            search: Some(ReadCommitted),
            ..TxnOptions::default()
        },
    );
    assert_eq!(r.valid, Validity::Invalid);
}

#[test]
fn internal_inconsistency() {
    let h = serial(&[("ok", json!([["append", "x", 1], ["r", "x", []]]))]);
    let r = check(&h, Serializable);
    assert!(names(&r).contains(&"internal"), "{:?}", r.anomaly_lines());
    assert!(r.examples["internal"][0].message.contains("[... 1]"));
    // Reading one's own append after an unknown prefix is fine.
    let h = serial(&[
        ("ok", json!([["append", "x", 0]])),
        ("ok", json!([["append", "x", 1], ["r", "x", [0, 1]]])),
    ]);
    assert_eq!(check(&h, StrictSerializable).valid, Validity::Valid);
}

#[test]
fn duplicate_elements() {
    let h = serial(&[
        ("ok", json!([["append", "x", 1]])),
        ("ok", json!([["r", "x", [1, 1]]])),
    ]);
    let r = check(&h, ReadUncommitted);
    assert!(
        names(&r).contains(&"duplicate-elements"),
        "{:?}",
        r.anomaly_lines()
    );
    assert_eq!(r.valid, Validity::Invalid);
}

#[test]
fn incompatible_order() {
    let h = concurrent(&[
        ("ok", json!([["append", "x", 1]])),
        ("ok", json!([["append", "x", 2]])),
        ("ok", json!([["r", "x", [1, 2]]])),
        ("ok", json!([["r", "x", [2, 1]]])),
    ]);
    let r = check(&h, ReadCommitted);
    assert!(
        names(&r).contains(&"incompatible-order"),
        "{:?}",
        r.anomaly_lines()
    );
    assert_eq!(r.valid, Validity::Invalid);
}

#[test]
fn lost_update() {
    let h = concurrent(&[
        ("ok", json!([["append", "x", 0]])),
        ("ok", json!([["r", "x", [0]], ["append", "x", 1]])),
        ("ok", json!([["r", "x", [0]], ["append", "x", 2]])),
        ("ok", json!([["r", "x", [0, 1, 2]]])),
    ]);
    let r = check(&h, RepeatableRead);
    assert!(
        names(&r).contains(&"lost-update"),
        "{:?}",
        r.anomaly_lines()
    );
    let ex = &r.examples["lost-update"][0];
    assert_eq!(ex.txns.len(), 2);
    assert!(ex.message.contains("= [0]"), "{}", ex.message);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(check(&h, ReadCommitted).valid, Validity::Valid);
}

#[test]
fn dirty_update() {
    let h = serial(&[
        ("fail", json!([["append", "x", 1]])),
        ("ok", json!([["append", "x", 2]])),
        ("ok", json!([["r", "x", [1, 2]]])),
    ]);
    let r = check(&h, ReadCommitted);
    assert!(
        names(&r).contains(&"dirty-update"),
        "{:?}",
        r.anomaly_lines()
    );
    assert!(names(&r).contains(&"G1a"));
}

#[test]
fn realtime_and_process_variants() {
    // T1 appends and completes; T2, invoked after, reads the initial state.
    let stale = [
        ("ok", json!([["append", "x", 1]])),
        ("ok", json!([["r", "x", []]])),
    ];
    let h = serial(&stale);
    let r = check(&h, StrictSerializable);
    assert_eq!(names(&r), ["G-single-realtime"], "{:?}", r.anomaly_lines());
    assert_eq!(r.not, vec![StrictSerializable]);
    let steps = &r.examples["G-single-realtime"][0].steps;
    assert!(steps.iter().any(|s| s.edge == "realtime"));
    assert_eq!(check(&h, Serializable).valid, Validity::Valid);
    // On one process it is a process cycle.
    let h = history(&[
        (1, "invoke", stale[0].1.clone()),
        (1, "ok", stale[0].1.clone()),
        (1, "invoke", stale[1].1.clone()),
        (1, "ok", stale[1].1.clone()),
    ]);
    let r = check(&h, StrictSerializable);
    assert_eq!(names(&r), ["G-single-process"], "{:?}", r.anomaly_lines());
    // Concurrent, the same reads are fine.
    assert_eq!(
        check(&concurrent(&stale), StrictSerializable).valid,
        Validity::Valid
    );
}

#[test]
fn a_serializable_history_with_concurrency_is_valid() {
    let h = history(&[
        (1, "invoke", json!([["append", "x", 1], ["r", "y", null]])),
        (2, "invoke", json!([["r", "x", null], ["append", "y", 1]])),
        (1, "ok", json!([["append", "x", 1], ["r", "y", []]])),
        (3, "invoke", json!([["r", "x", null], ["r", "y", null]])),
        (2, "ok", json!([["r", "x", [1]], ["append", "y", 1]])),
        (1, "invoke", json!([["append", "x", 2], ["append", "y", 2]])),
        (3, "ok", json!([["r", "x", [1]], ["r", "y", [1]]])),
        (1, "info", json!([["append", "x", 2], ["append", "y", 2]])),
        (4, "invoke", json!([["r", "x", null], ["r", "y", null]])),
        (4, "ok", json!([["r", "x", [1, 2]], ["r", "y", [1, 2]]])),
        (2, "invoke", json!([["append", "x", 3]])),
        (2, "fail", json!([["append", "x", 3]])),
    ]);
    let r = check(&h, StrictSerializable);
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.anomaly_lines());
    assert!(r.anomalies.is_empty());
    assert_eq!((r.counts.ok, r.counts.fail, r.counts.info), (4, 1, 1));
    assert!(r.counts.edges > 0 && r.counts.sccs == 0);
    assert_eq!(r.first_anomaly_time, None);
}

#[test]
fn integer_and_string_keys_and_failed_reads_are_not_reads() {
    let h = serial(&[
        ("ok", json!([["append", 3, 1], ["append", "3", 2]])),
        ("fail", json!([["r", 3, [7]]])),
        ("ok", json!([["r", 3, [1]], ["r", "3", [2]]])),
    ]);
    let r = check(&h, StrictSerializable);
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.anomaly_lines());
    assert_eq!(r.counts.keys, 2);
}

#[test]
fn malformed_micro_ops_are_unknown_with_a_reason() {
    let h = serial(&[("ok", json!([["append", "x", "one"]]))]);
    let r = check(&h, StrictSerializable);
    assert_eq!(r.valid, Validity::Unknown);
    assert!(r.reason.as_deref().unwrap().contains("malformed"));
}

// rw-register

#[test]
fn rw_register_anomalies() {
    let rw = |txns: &[(&'static str, Value)], model| check(&concurrent(txns), model);
    // Aborted read.
    let r = rw(
        &[
            ("fail", json!([["w", "x", 1]])),
            ("ok", json!([["r", "x", 1]])),
        ],
        Serializable,
    );
    assert_eq!(r.kind, TxnKind::RwRegister);
    assert!(names(&r).contains(&"G1a"));
    // Intermediate read.
    let r = rw(
        &[
            ("ok", json!([["w", "x", 1], ["w", "x", 2]])),
            ("ok", json!([["r", "x", 1]])),
        ],
        Serializable,
    );
    assert!(names(&r).contains(&"G1b"), "{:?}", r.anomaly_lines());
    // Internal.
    let r = rw(
        &[("ok", json!([["w", "x", 1], ["r", "x", 2]]))],
        Serializable,
    );
    assert!(names(&r).contains(&"internal"));
    // Circular information flow.
    let r = rw(
        &[
            ("ok", json!([["w", "x", 1], ["r", "y", 1]])),
            ("ok", json!([["w", "y", 1], ["r", "x", 1]])),
        ],
        ReadCommitted,
    );
    assert_eq!(names(&r), ["G1c"]);
    assert!(r.examples["G1c"][0].message.contains("written by"));
    // Lost update: both read nil and wrote.
    let r = rw(
        &[
            ("ok", json!([["r", "x", null], ["w", "x", 1]])),
            ("ok", json!([["r", "x", null], ["w", "x", 2]])),
        ],
        Serializable,
    );
    assert!(
        names(&r).contains(&"lost-update"),
        "{:?}",
        r.anomaly_lines()
    );
    // Write skew from nil reads: G2-item.
    let r = rw(
        &[
            (
                "ok",
                json!([["r", "x", null], ["r", "y", null], ["w", "x", 1]]),
            ),
            (
                "ok",
                json!([["r", "x", null], ["r", "y", null], ["w", "y", 1]]),
            ),
        ],
        Serializable,
    );
    assert_eq!(names(&r), ["G2-item"], "{:?}", r.anomaly_lines());
    assert!(
        r.examples["G2-item"][0]
            .message
            .contains("nil, the initial state")
    );
}

#[test]
fn rw_register_infers_nothing_it_cannot_prove() {
    // Two blind writes and reads of each: the version order of 1 and 2 is unknown, so no cycle.
    let r = check(
        &concurrent(&[
            ("ok", json!([["w", "x", 1]])),
            ("ok", json!([["w", "x", 2]])),
            ("ok", json!([["r", "x", 1]])),
            ("ok", json!([["r", "x", 2]])),
            ("ok", json!([["r", "x", 1]])),
        ]),
        StrictSerializable,
    );
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.anomaly_lines());
    // A read of x = 1 then a write of x = 2 orders 1 before 2: a later reader of 1 that also
    // read the writer of 2's other key closes a G-single.
    let r = check(
        &concurrent(&[
            ("ok", json!([["w", "x", 1]])),
            ("ok", json!([["r", "x", 1], ["w", "x", 2], ["w", "y", 2]])),
            ("ok", json!([["r", "y", 2], ["r", "x", 1]])),
        ]),
        Serializable,
    );
    assert_eq!(names(&r), ["G-single"], "{:?}", r.anomaly_lines());
}
