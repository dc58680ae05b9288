//! Transactions end to end: short raftkv runs of Elle's list-append transactions. With `--bug
//! txn-split` (micro-ops applied as separate log entries) the history must break strict
//! serializability with a cycle the checker shows; correct raftkv under leader partitions and
//! kills must stay valid while the faults visibly fail some transactions.
//!
//! Set `FAULTLINE_TEST_NODE_BIN` to a raftkv binary to skip building the workspace's.

use faultline_checker::Validity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_split_bug_breaks_serializability_with_a_cycle() {
    let _slot = crate::util::docker_slot().await;
    let (outcome, _results) = crate::util::run_workload("bug-raftkv-txn-split", 1, |w| {
        assert_eq!(w.node.bugs, ["txn-split"]);
        w.time_limit = 8.0;
    })
    .await;
    let txn = outcome
        .checked
        .results
        .txn
        .as_ref()
        .expect("a txn workload is checked by the txn checker");
    assert_eq!(
        outcome.valid,
        Validity::Invalid,
        "--bug txn-split went unnoticed: {}",
        outcome.dir.path.display()
    );
    assert!(txn.counts.ok > 500, "{:?}", txn.counts);
    // Interleaved halves make cycles through other transactions; at least one comes with its
    // steps and its drawing.
    let cycle = txn
        .forbidden
        .iter()
        .flat_map(|name| txn.examples.get(name).into_iter().flatten())
        .find(|e| !e.steps.is_empty())
        .expect("a forbidden cycle with its steps");
    println!("{}: {}", cycle.name, cycle.message);
    assert!(cycle.svg.as_deref().is_some_and(|s| s.starts_with("<svg")));
    assert!(
        txn.not
            .iter()
            .chain(&txn.also_not)
            .any(|m| m.name() == "serializable"),
        "{:?} {:?}",
        txn.not,
        txn.also_not
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_raftkv_transactions_stay_strict_serializable_under_faults() {
    let _slot = crate::util::docker_slot().await;
    let (outcome, _results) = crate::util::run_workload("matrix-raftkv-txn", 2, |w| {
        assert!(w.node.bugs.is_empty());
        w.time_limit = 10.0;
    })
    .await;
    let txn = outcome.checked.results.txn.as_ref().expect("a txn result");
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "{:?}: {}",
        txn.anomalies,
        outcome.dir.path.display()
    );
    assert!(txn.counts.ok > 300, "{:?}", txn.counts);
    assert!(
        txn.counts.fail + txn.counts.info > 0,
        "the faults failed no transaction: {:?}",
        txn.counts
    );
}
