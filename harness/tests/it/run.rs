//! Whole runs: raftkv in Docker under a nemesis, checked, and nothing left behind.

use std::path::Path;
use std::time::{Duration, Instant};

use faultline::runner::{self, RunOptions};
use faultline::workload;
use faultline_checker::{Validity, read_history};
use serde_json::Value;

use crate::util::{lines, objects_of_run};

/// A short register workload with one fault of one kind: off for 5 s, on for 5 s, then healed.
fn short_workload(name: &str, nemesis: &str) -> workload::Workload {
    let text = format!(
        r#"
description = "test"
nodes = 3
time-limit = 14
rate = 60
concurrency = 6
op-timeout = 1.0
recovery = 3
[keys]
active = 3
ops-per-key = 100
[nemesis]
interval = 5.0
jitter = 0.0
{nemesis}
"#
    );
    let mut w = workload::parse(&text, name).unwrap();
    w.name = name.to_string();
    w
}

fn options(w: workload::Workload, results: &Path, seed: u64) -> RunOptions {
    RunOptions {
        reproduce: format!("test {} seed {seed}", w.name),
        workload: w,
        seed,
        node_bin: None,
        label: Some("test".into()),
        results: results.to_path_buf(),
        progress: false,
        engines: None,
    }
}

/// The fault window of the first installed start/stop pair of `f_start`/`f_stop`, in ns.
fn fault_window(history: &[Value], f_start: &str, f_stop: &str) -> (u64, u64) {
    let time_of = |f: &str| {
        history
            .iter()
            .find(|o| {
                o["process"] == "nemesis" && o["f"] == f && o["value"]["outcome"] == "installed"
            })
            .unwrap_or_else(|| panic!("no installed {f} in the history"))["time"]
            .as_u64()
            .unwrap()
    };
    (time_of(f_start), time_of(f_stop))
}

/// Client completions that did not succeed for a reason other than a CAS mismatch (which has
/// nothing to do with faults), between `from` and `to` ns.
fn disrupted(history: &[Value], from: u64, to: u64) -> usize {
    history
        .iter()
        .filter(|o| o["process"] != "nemesis" && (o["type"] == "fail" || o["type"] == "info"))
        .filter(|o| o["error"] != "cas-mismatch")
        .filter(|o| (from..=to).contains(&o["time"].as_u64().unwrap()))
        .count()
}

fn oks_after(history: &[Value], from: u64) -> usize {
    history
        .iter()
        .filter(|o| o["type"] == "ok" && o["time"].as_u64().unwrap() > from)
        .count()
}

async fn run_and_check_faults_bite(
    name: &str,
    nemesis: &str,
    f_start: &str,
    f_stop: &str,
    seed: u64,
) {
    run_on_engines_and_check_faults_bite(name, nemesis, (f_start, f_stop), seed, None).await;
}

/// A short run of `name` with one fault (`nemesis`, a `[nemesis]` table's fault lines) on these
/// engines (the local one when `None`): valid, the fault (installed by `f_start`, lifted by
/// `f_stop`) disrupted operations, the cluster served again after it, the run folder is whole,
/// and nothing of the run is left in Docker. Returns the outcome and its results folder.
pub(crate) async fn run_on_engines_and_check_faults_bite(
    name: &str,
    nemesis: &str,
    (f_start, f_stop): (&str, &str),
    seed: u64,
    engines: Option<faultline::control::EnginesFile>,
) -> (runner::RunOutcome, tempfile::TempDir) {
    let results = tempfile::tempdir().unwrap();
    let mut opts = options(short_workload(name, nemesis), results.path(), seed);
    opts.engines = engines;
    let outcome = runner::run(opts).await.unwrap();
    let docker = faultline::control::connect().await.unwrap();
    assert_eq!(
        objects_of_run(&docker, &outcome.run_id).await,
        (0, 0, 0),
        "the run left Docker objects behind"
    );
    let history = lines(&outcome.dir.history());
    let (start, stop) = fault_window(&history, f_start, f_stop);
    let hit = disrupted(&history, start, stop + 1_000_000_000);
    assert!(
        hit > 0,
        "no operation failed or went indeterminate while {f_start} was in effect (seed {seed})"
    );
    assert!(
        oks_after(&history, stop) > 10,
        "the cluster did not serve operations after the heal (seed {seed})"
    );
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "correct raftkv judged {} (seed {seed}, {}): {:?}",
        outcome.valid,
        outcome.dir.path.display(),
        outcome
            .checked
            .results
            .linearizable
            .as_ref()
            .and_then(|l| l.reason.as_deref())
    );
    for file in [
        "run.json",
        "results.json",
        "history.jsonl",
        "status.jsonl",
        "nodes/n1.log",
    ] {
        assert!(
            outcome.dir.path.join(file).is_file(),
            "{file} missing from the run folder"
        );
    }
    assert!(
        results.path().join(name).join("latest").exists(),
        "no latest link"
    );
    println!(
        "{name}: seed {seed}, {hit} disrupted ops during the fault, results in {}",
        outcome.dir.path.display()
    );
    (outcome, results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_partition_run_is_valid_and_the_partition_bites() {
    let _slot = crate::util::docker_slot().await;
    run_and_check_faults_bite(
        "register-partition",
        r#"faults = ["partition"]
partition-kinds = ["isolate-leader"]"#,
        "start-partition",
        "stop-partition",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_kill_run_is_valid_and_the_kill_bites() {
    let _slot = crate::util::docker_slot().await;
    run_and_check_faults_bite(
        "register-kill",
        r#"faults = ["kill"]
kill-targets = ["leader"]"#,
        "kill",
        "restart",
        2,
    )
    .await;
}

#[test]
fn ctrl_c_mid_run_leaves_nothing_behind_and_the_partial_history_checks() {
    let _slot = crate::util::docker_slot_blocking();
    let results = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "run",
            "register-none",
            "--time-limit",
            "60",
            "--seed",
            "3",
            "--no-progress",
            "--results",
        ])
        .arg(results.path())
        .env("FAULTLINE_HOME", faultline::workspace::root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until operations are being recorded, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(240);
    let run_dir = loop {
        assert!(Instant::now() < deadline, "the run never started recording");
        assert!(
            child.try_wait().unwrap().is_none(),
            "faultline exited before it was interrupted"
        );
        let found = std::fs::read_dir(results.path().join("register-none"))
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path());
        if let Some(dir) = found
            && std::fs::read_to_string(dir.join("history.jsonl"))
                .is_ok_and(|h| h.lines().count() > 100)
        {
            break dir;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let run: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap()).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_string();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("interrupted"),
        "no word of the interruption: {stderr}"
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "the partial history of correct raftkv should be valid: {stderr}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let left = rt.block_on(async {
        let docker = faultline::control::connect().await.unwrap();
        objects_of_run(&docker, &run_id).await
    });
    assert_eq!(
        left,
        (0, 0, 0),
        "Ctrl-C left Docker objects of {run_id} behind"
    );
    let history = read_history(&run_dir.join("history.jsonl")).expect("the partial history reads");
    assert!(history.operations.len() > 50);
    assert!(
        run_dir.join("results.json").is_file(),
        "the partial history was not checked"
    );
}
