//! Planted bugs are found: short raftkv runs with `--bug stale-read` (register reads) and
//! `--bug early-ack` (list appends) under isolate-leader partitions must end invalid.
//!
//! Set `FAULTLINE_TEST_NODE_BIN` to a raftkv binary to skip building the workspace's.

use faultline::runner::{self, RunOptions};
use faultline::workload;
use faultline_checker::Validity;

use crate::util::objects_of_run;

/// Runs the workload `name` (which must enable `bug`) for `seconds` with `seed` and checks that
/// it ends invalid, with a counterexample and nothing left in Docker.
async fn bug_is_found(name: &str, bug: &str, seconds: f64, seed: u64) {
    let _slot = crate::util::docker_slot().await;
    let dir = faultline::workspace::root().join("workloads");
    let mut w = workload::load(&dir, name).unwrap();
    assert_eq!(w.node.bugs, vec![bug.to_string()]);
    w.time_limit = seconds;
    let results = tempfile::tempdir().unwrap();
    println!("{name}: seed {seed}");
    let outcome = runner::run(RunOptions {
        reproduce: format!("test {name} seed {seed}"),
        workload: w,
        seed,
        node_bin: std::env::var_os("FAULTLINE_TEST_NODE_BIN").map(Into::into),
        label: Some("test".into()),
        results: results.path().to_path_buf(),
        progress: false,
    })
    .await
    .unwrap();
    let docker = faultline::control::connect().await.unwrap();
    assert_eq!(
        objects_of_run(&docker, &outcome.run_id).await,
        (0, 0, 0),
        "the run left Docker objects behind"
    );
    assert_eq!(
        outcome.valid,
        Validity::Invalid,
        "--bug {bug} went unnoticed (seed {seed}, {})",
        outcome.dir.path.display()
    );
    let c = outcome
        .checked
        .results
        .linearizable
        .counterexample()
        .expect("an invalid verdict comes with a counterexample");
    println!("counterexample: {}", c.message);
    assert!(
        outcome.dir.path.join("counterexample.svg").is_file(),
        "no counterexample.svg"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_read_bug_under_isolate_leader_partitions_is_found() {
    bug_is_found("bug-stale-read", "stale-read", 15.0, 1).await;
}

/// Appends acknowledged by an isolated leader before they commit are lost when the partition
/// heals; the next read of the list shows it (found at the first partition, about 3 s in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_ack_bug_loses_appends_and_is_found() {
    bug_is_found("bug-early-ack", "early-ack", 15.0, 1).await;
}
