//! Planted bugs are found: a short raftkv run with `--bug stale-read` under isolate-leader
//! partitions must end invalid.
//!
//! Set `FAULTLINE_TEST_NODE_BIN` to a raftkv binary to skip building the workspace's.

use faultline::runner::{self, RunOptions};
use faultline::workload;
use faultline_checker::Validity;

use crate::util::objects_of_run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_read_bug_under_isolate_leader_partitions_is_found() {
    let _slot = crate::util::docker_slot().await;
    let seed = 1;
    let dir = faultline::workspace::root().join("workloads");
    let mut w = workload::load(&dir, "bug-stale-read").unwrap();
    assert_eq!(w.node.bugs, vec!["stale-read".to_string()]);
    w.time_limit = 15.0;
    let results = tempfile::tempdir().unwrap();
    println!("bug-stale-read: seed {seed}");
    let outcome = runner::run(RunOptions {
        reproduce: format!("test bug-stale-read seed {seed}"),
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
        "--bug stale-read went unnoticed (seed {seed}, {})",
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
