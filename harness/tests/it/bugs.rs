//! Planted bugs are found: short raftkv runs with `--bug stale-read` (register reads) and
//! `--bug early-ack` (list appends) under isolate-leader partitions must end invalid, and so
//! must `--bug commit-old-term` under the figure-8 script and `--bug forget-vote` under the
//! revote script, which both leave correct raftkv valid.
//!
//! Set `FAULTLINE_TEST_NODE_BIN` to a raftkv binary to skip building the workspace's.

use faultline::runner::{self, RunOptions};
use faultline::workload;
use faultline_checker::Validity;

use crate::util::objects_of_run;

/// Runs the workload `name` for `seconds` with `seed`, asserting its planted bugs are `bugs`
/// and that the run left nothing in Docker. The temporary results folder holding the run's
/// folder comes back with the outcome.
async fn run(
    name: &str,
    bugs: &[&str],
    seconds: f64,
    seed: u64,
) -> (runner::RunOutcome, tempfile::TempDir) {
    let _slot = crate::util::docker_slot().await;
    let dir = faultline::workspace::root().join("workloads");
    let mut w = workload::load(&dir, name).unwrap();
    assert_eq!(w.node.bugs, bugs);
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
    (outcome, results)
}

/// Runs the workload `name` (which must enable `bug`) for `seconds` with `seed` and checks that
/// it ends invalid, with a counterexample and nothing left in Docker.
async fn bug_is_found(
    name: &str,
    bug: &str,
    seconds: f64,
    seed: u64,
) -> (runner::RunOutcome, tempfile::TempDir) {
    let (outcome, results) = run(name, &[bug], seconds, seed).await;
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
        .as_ref()
        .and_then(|l| l.counterexample())
        .expect("an invalid verdict comes with a counterexample");
    println!("counterexample: {}", c.message);
    assert!(
        outcome.dir.path.join("counterexample.svg").is_file(),
        "no counterexample.svg"
    );
    (outcome, results)
}

/// The `stop-SCRIPT` values of a run's history, in order.
fn script_rounds(outcome: &runner::RunOutcome, script: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(outcome.dir.path.join("history.jsonl")).unwrap();
    let stop = format!("stop-{script}");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["f"] == stop)
        .map(|e| e["value"].clone())
        .collect()
}

/// A completed round's leader after it was the node holding the other entry.
fn other_entry_won(round: &serde_json::Value) -> bool {
    round["new-leader"] == round["other-entry"]
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

/// The first round of the figure-8 script (about 5 s in) commits the old leader's entry of an
/// earlier term as soon as one follower has it and acknowledges it; the node holding the other
/// entry at that index then wins the next election and overwrites it. Reads miss the
/// acknowledged append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_old_term_bug_under_the_figure_8_script_is_found() {
    let (outcome, _results) = bug_is_found("bug-commit-old-term", "commit-old-term", 12.0, 1).await;
    let rounds = script_rounds(&outcome, "figure-8");
    println!("rounds: {rounds:?}");
    assert!(
        rounds.first().is_some_and(other_entry_won),
        "the first round did not end with the other entry's holder leading: {rounds:?}"
    );
}

/// The control: correct raftkv commits the old entry only with one of its own term on the
/// follower, which then refuses the other entry's holder its vote. Every completed round ends
/// with the third node leading, and the run is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_raftkv_under_the_figure_8_script_stays_valid() {
    let (outcome, _results) = run("matrix-raftkv-figure-8", &[], 12.0, 1).await;
    let rounds = script_rounds(&outcome, "figure-8");
    println!("rounds: {rounds:?}");
    let completed: Vec<_> = rounds.iter().filter(|r| r["completed"] == true).collect();
    assert!(!completed.is_empty(), "no round completed: {rounds:?}");
    assert!(
        !completed.iter().any(|r| other_entry_won(r)),
        "correct raftkv let the other entry's holder win: {rounds:?}"
    );
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "false alarm (seed 1, {})",
        outcome.dir.path.display()
    );
}

/// The revote script's rounds that completed.
fn completed(rounds: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    rounds.iter().filter(|r| r["completed"] == true).collect()
}

/// A revote round (about 5 s each): the voter that crashed right after its vote comes back
/// having forgotten it and elects a second leader in the first one's term; appends acknowledged
/// by one leader are missing from the other's reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_vote_bug_under_the_revote_script_is_found() {
    let (outcome, _results) = bug_is_found("bug-forget-vote", "forget-vote", 12.0, 1).await;
    let rounds = script_rounds(&outcome, "revote");
    println!("rounds: {rounds:?}");
    assert!(
        completed(&rounds).iter().any(|r| r["same-term"] == true),
        "no round ended with two leaders of one term: {rounds:?}"
    );
}

/// The control: a correct voter remembers its vote after the crash, so the second leader's
/// term is always later than the first's (which then steps down), and the run is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_raftkv_under_the_revote_script_stays_valid() {
    let (outcome, _results) = run("matrix-raftkv-revote", &[], 12.0, 1).await;
    let rounds = script_rounds(&outcome, "revote");
    println!("rounds: {rounds:?}");
    let done = completed(&rounds);
    assert!(!done.is_empty(), "no round completed: {rounds:?}");
    assert!(
        done.iter().all(
            |r| r["same-term"] == false && r["second-term"].as_u64() > r["first-term"].as_u64()
        ),
        "correct raftkv elected two leaders of one term: {rounds:?}"
    );
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "false alarm (seed 1, {})",
        outcome.dir.path.display()
    );
}
