//! Planted bugs are found: short raftkv runs with `--bug stale-read` (register reads) and
//! `--bug early-ack` (list appends) under isolate-leader partitions must end invalid, and so
//! must `--bug commit-old-term` under the figure-8 script, `--bug forget-vote` under the
//! revote script and `--bug no-fsync` under coordinated power failures on faultfs, which all
//! leave correct raftkv valid; `--bug cas-stale-compare` (followers refusing CASes from stale
//! state) must end invalid with no faults at all, because a failed `cas-mismatch` is evidence.
//!
//! Set `FAULTLINE_TEST_NODE_BIN` to a raftkv binary to skip building the workspace's.

use faultline::runner;
use faultline_checker::Validity;

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
    crate::util::run_workload(name, seed, |w| {
        assert_eq!(w.node.bugs, bugs);
        w.time_limit = seconds;
    })
    .await
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

/// A follower that refuses a CAS from its own applied value says `cas-mismatch` while the
/// register holds `from`: invalid only because that failure is checked as an observation; the
/// same history read as Knossos reads a fail (it never happened) is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_stale_compare_bug_is_found_through_failed_cas() {
    let (outcome, _results) =
        bug_is_found("bug-raftkv-cas-stale", "cas-stale-compare", 10.0, 1).await;
    let l = outcome.checked.results.linearizable.as_ref().unwrap();
    assert!(
        l.observed_fails > 50,
        "{} failed CAS observed",
        l.observed_fails
    );
    let history = faultline_checker::read_history(&outcome.dir.path.join("history.jsonl")).unwrap();
    let knossos = faultline_checker::CheckOptions {
        fail_reading: faultline_checker::FailReading::Knossos,
        ..Default::default()
    };
    let dropped = faultline_checker::check(&history, &knossos).unwrap();
    assert_eq!(
        dropped.valid,
        Validity::Valid,
        "{}",
        outcome.dir.path.display()
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

/// The power failures a run's history records as installed, each with the nodes it hit.
fn power_failures(outcome: &runner::RunOutcome) -> Vec<serde_json::Value> {
    std::fs::read_to_string(outcome.dir.history())
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"start-power\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|o| o["value"]["outcome"] == "installed")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fsync_bug_loses_acknowledged_appends_in_a_power_failure_and_is_found() {
    let (outcome, _keep) = bug_is_found("bug-raftkv-no-fsync", "no-fsync", 12.0, 1).await;
    let failures = power_failures(&outcome);
    assert!(
        failures
            .iter()
            .any(|o| o["value"]["nodes"].as_array().unwrap().len() == 3),
        "no coordinated power failure was installed: {failures:?}"
    );
    // The nodes ran on faultfs (the mount is what makes a SIGKILL lose unsynced writes).
    let log = std::fs::read_to_string(outcome.dir.path.join("nodes/n1.log")).unwrap();
    assert!(
        log.contains("faultfs: mounted /data"),
        "n1 did not run on faultfs"
    );
    assert!(
        log.contains("FSYNC DISABLED"),
        "n1 did not announce the planted bug"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_raftkv_keeps_every_acknowledged_append_through_power_failures() {
    let (outcome, _keep) = run("matrix-raftkv-power", &[], 12.0, 1).await;
    assert!(
        !power_failures(&outcome).is_empty(),
        "no power failure was installed"
    );
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "correct raftkv lost data in a power failure ({}): {:?}",
        outcome.dir.path.display(),
        outcome.checked.results.anomaly_lines()
    );
}
