//! The transactional checker on elle-cli's Elle histories (their verdicts as elle-cli 0.1.9
//! gives them), a cycle search out of budget, and seeded random histories.

use std::path::PathBuf;
use std::time::Duration;

use faultline_checker::{
    CheckOptions, ConsistencyModel, History, TxnKind, TxnOptions, Validity, check_history,
    check_txn, parse_history, read_history,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::testdata;

fn path(name: &str) -> PathBuf {
    testdata().join("elle/elle-cli").join(name)
}

/// elle-cli's list-append histories leave out `:f` (elle-cli assumes `:txn`): the EDN reader
/// takes an op whose value is a vector of micro-ops as a `txn`.
fn elle_edn(name: &str) -> History {
    faultline_checker::read_history(&path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn opts(model: ConsistencyModel) -> TxnOptions {
    TxnOptions {
        model,
        ..TxnOptions::default()
    }
}

#[test]
fn paper_example_is_a_g_single_or_g2_cycle() {
    let h = elle_edn("paper-example.edn");
    let r = check_txn(&h, &TxnOptions::default());
    assert_eq!(r.kind, TxnKind::ListAppend);
    assert_eq!(r.valid, Validity::Invalid, "{:?}", r.anomaly_lines());
    assert_eq!((r.counts.ok, r.counts.fail, r.counts.info), (4, 0, 0));
    // The paper's T1 -rw-> T2 and back along ww/wr: an anti-dependency cycle (G-single; with
    // process edges its -process variant may be the smaller one).
    let cycles: Vec<&String> = r
        .anomalies
        .keys()
        .filter(|a| a.starts_with("G-single") || a.starts_with("G2"))
        .collect();
    assert!(!cycles.is_empty(), "{:?}", r.anomaly_lines());
    let ex = &r.examples[cycles[0]][0];
    assert!(ex.steps.iter().any(|s| s.edge == "rw"), "{}", ex.message);
    assert!(ex.svg.as_deref().unwrap().contains("<path"));
    // Serializable alone: the same data cycle.
    let r = check_txn(&h, &opts(ConsistencyModel::Serializable));
    assert_eq!(r.valid, Validity::Invalid);
    assert!(
        r.anomalies.contains_key("G-single"),
        "{:?}",
        r.anomaly_lines()
    );
    assert!(r.not.contains(&ConsistencyModel::SnapshotIsolation));
    // Read committed allows it.
    let r = check_txn(&h, &opts(ConsistencyModel::ReadCommitted));
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.anomaly_lines());
}

#[test]
fn list_append_gh_30_is_not_serializable() {
    let h = elle_edn("list-append-gh-30.edn");
    let r = check_txn(&h, &opts(ConsistencyModel::Serializable));
    assert_eq!(r.valid, Validity::Invalid, "{:?}", r.anomaly_lines());
    assert!(
        r.forbidden.iter().any(|a| a.starts_with('G')),
        "{:?}",
        r.forbidden
    );
    assert!(r.not.iter().all(|m| *m >= ConsistencyModel::RepeatableRead));
}

#[test]
fn rw_register_history_is_valid() {
    let h = read_history(&path("rw-register.edn")).unwrap();
    let r = check_txn(&h, &TxnOptions::default());
    assert_eq!(r.kind, TxnKind::RwRegister);
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.anomaly_lines());
    assert_eq!(r.counts.ok, 3);
    // check_history picks the txn checker by content.
    let results = check_history(&h, &CheckOptions::default()).unwrap();
    assert!(results.txn.is_some() && results.linearizable.is_none());
    assert_eq!(results.valid, Validity::Valid);
    let json = serde_json::to_value(&results).unwrap();
    assert_eq!(json["txn"]["valid"], "valid");
    assert_eq!(json["txn"]["model"], "strict-serializable");
}

#[test]
fn check_history_leaves_multi_register_txns_to_linearizability() {
    let h =
        read_history(&testdata().join("knossos/multi-register/good/multi-register.edn")).unwrap();
    let r = check_history(
        &h,
        &CheckOptions {
            initial: Some(json!({"x": 0, "y": 0})),
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert!(r.txn.is_none() && r.linearizable.is_some());
    // And the txn model passes through.
    let h = elle_edn("paper-example.edn");
    let r = check_history(
        &h,
        &CheckOptions {
            txn_model: Some(ConsistencyModel::ReadCommitted),
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.valid, Validity::Valid);
    assert_eq!(
        r.txn.as_ref().unwrap().model,
        ConsistencyModel::ReadCommitted
    );
    let r = check_history(&h, &CheckOptions::default()).unwrap();
    assert_eq!(r.valid, Validity::Invalid);
    assert!(r.anomaly_lines().iter().any(|l| l.starts_with("txn G")));
}

fn jsonl(events: &[(u64, &str, Value)]) -> History {
    let mut text = String::new();
    for (i, (p, ty, v)) in events.iter().enumerate() {
        let line = json!({"index": i, "time": i * 10, "process": p, "type": ty, "f": "txn",
                          "value": v});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    parse_history(&text, false).unwrap()
}

/// Many txns all concurrent, each appending to one of two keys and reading both in an order
/// that contradicts the appends: one big, dense component.
fn dense(n: u64) -> History {
    let mut ev = Vec::new();
    let order_x: Vec<u64> = (0..n).collect();
    let order_y: Vec<u64> = (0..n).rev().collect();
    for p in 0..n {
        ev.push((
            p,
            "invoke",
            json!([["append", "x", p], ["append", "y", p], ["r", "z", null]]),
        ));
    }
    for p in 0..n {
        ev.push((
            p,
            "ok",
            json!([["append", "x", p], ["append", "y", p], ["r", "z", []]]),
        ));
    }
    ev.push((n, "invoke", json!([["r", "x", null], ["r", "y", null]])));
    ev.push((n, "ok", json!([["r", "x", order_x], ["r", "y", order_y]])));
    jsonl(&ev)
}

#[test]
fn a_search_out_of_budget_is_unknown_never_valid() {
    let h = dense(300);
    let tiny = TxnOptions {
        cycle_budget: Duration::ZERO,
        ..TxnOptions::default()
    };
    let r = check_txn(&h, &tiny);
    assert_eq!(r.valid, Validity::Unknown, "{:?}", r.anomaly_lines());
    assert!(r.anomalies.contains_key("cycle-search-timeout"));
    assert!(
        r.reason
            .as_deref()
            .unwrap()
            .contains("cycle-search-timeout")
    );
    assert!(r.counts.largest_scc >= 300);
    // With the default budget the same component yields its cycle.
    let r = check_txn(&h, &TxnOptions::default());
    assert_eq!(r.valid, Validity::Invalid, "{:?}", r.anomaly_lines());
    assert!(r.anomalies.contains_key("G0"));
    assert_eq!(r.examples["G0"][0].steps.len(), 2, "the smallest G0");
}

/// A serializable store: each txn applied atomically at its completion, processes concurrent.
/// With `split`, one txn (reading key `a`, appending to key `b`) is cut in two: its read is
/// taken at its invocation, its append lands at its completion, and in between another txn
/// appends to both `a` and `b`. Its read misses that append to `a` while its own append to `b`
/// follows it: a G-single cycle, whatever else happens around it.
fn random_history(seed: u64, txns: usize, split: bool) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys = 5u64;
    let procs = 4u64;
    let mut state: Vec<Vec<u64>> = vec![Vec::new(); keys as usize];
    let mut next = vec![0u64; keys as usize];
    let mut ev: Vec<(u64, &str, Value)> = Vec::new();
    let mut pending: Vec<Option<Vec<(bool, u64, u64)>>> = vec![None; procs as usize];
    let mut snapshot: Vec<Option<Vec<Vec<u64>>>> = vec![None; procs as usize];
    let planted = rng.random_range(txns / 4..txns / 2);
    let append = |next: &mut Vec<u64>, k: u64| {
        next[k as usize] += 1;
        (true, k, next[k as usize])
    };
    let (mut done, mut invoked) = (0, 0);
    while done < txns {
        let p = rng.random_range(0..procs);
        match pending[p as usize].take() {
            None if invoked < txns => {
                let plant = split && invoked == planted;
                let mops: Vec<(bool, u64, u64)> = if plant {
                    vec![(false, 0, 0), append(&mut next, 1)]
                } else {
                    (0..rng.random_range(1..=4))
                        .map(|_| {
                            let k = rng.random_range(0..keys);
                            if rng.random_bool(0.5) {
                                append(&mut next, k)
                            } else {
                                (false, k, 0)
                            }
                        })
                        .collect()
                };
                let inv: Vec<Value> = mops
                    .iter()
                    .map(|&(a, k, v)| {
                        if a {
                            json!(["append", k, v])
                        } else {
                            json!(["r", k, null])
                        }
                    })
                    .collect();
                ev.push((p, "invoke", Value::Array(inv)));
                invoked += 1;
                pending[p as usize] = Some(mops);
                if plant {
                    snapshot[p as usize] = Some(state.clone());
                    // The txn that slips in between, on a process of its own.
                    let w = [append(&mut next, 0), append(&mut next, 1)];
                    let v: Vec<Value> =
                        w.iter().map(|&(_, k, v)| json!(["append", k, v])).collect();
                    ev.push((100, "invoke", Value::Array(v.clone())));
                    for &(_, k, v) in &w {
                        state[k as usize].push(v);
                    }
                    ev.push((100, "ok", Value::Array(v)));
                }
            }
            None => {}
            Some(mops) => {
                let snap = snapshot[p as usize].take();
                let mut out = Vec::new();
                for &(a, k, v) in &mops {
                    if a {
                        state[k as usize].push(v);
                        out.push(json!(["append", k, v]));
                    } else {
                        let seen = snap.as_ref().unwrap_or(&state)[k as usize].clone();
                        out.push(json!(["r", k, seen]));
                    }
                }
                ev.push((p, "ok", Value::Array(out)));
                done += 1;
            }
        }
    }
    // A final read of every key reveals the whole version order.
    let reads: Vec<Value> = (0..keys).map(|k| json!(["r", k, null])).collect();
    let seen: Vec<Value> = (0..keys)
        .map(|k| json!(["r", k, state[k as usize]]))
        .collect();
    ev.push((procs, "invoke", Value::Array(reads)));
    ev.push((procs, "ok", Value::Array(seen)));
    jsonl(&ev)
}

#[test]
fn random_serializable_histories_are_valid_and_split_ones_are_not() {
    let seed: u64 = std::env::var("FAULTLINE_TXN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("txn random seed {seed} (FAULTLINE_TXN_SEED={seed} to repeat)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for round in 0..40 {
        let s = rng.random();
        let h = random_history(s, 60, false);
        let r = check_txn(&h, &TxnOptions::default());
        assert_eq!(
            r.valid,
            Validity::Valid,
            "seed {seed} round {round} ({s}): {:?}",
            r.anomaly_lines()
        );
        let h = random_history(s, 60, true);
        for model in [
            ConsistencyModel::Serializable,
            ConsistencyModel::StrictSerializable,
        ] {
            let r = check_txn(&h, &opts(model));
            assert_eq!(
                r.valid,
                Validity::Invalid,
                "seed {seed} round {round} ({s}), {model}: {:?}",
                r.anomaly_lines()
            );
            assert!(
                r.anomalies.keys().any(|a| a.starts_with("G-single")),
                "{:?}",
                r.anomalies
            );
        }
        // Snapshot isolation forbids G-single as well; read committed does not.
        let r = check_txn(&h, &opts(ConsistencyModel::ReadCommitted));
        assert_eq!(r.valid, Validity::Valid, "seed {seed} round {round} ({s})");
    }
}
