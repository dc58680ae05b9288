//! Target files: a system driven through the exec protocol (raftkv by the Python example client,
//! Redis with Sentinel, which nobody here wrote, by its own), `--build`, and bad target files.

use std::path::Path;

use faultline::runner::{self, RunOptions};
use faultline::workload;
use faultline_checker::Validity;
use serde_json::Value;

use crate::util::objects_of_run;

fn workload(name: &str, target: &str, nemesis: &str) -> workload::Workload {
    let text = format!(
        r#"
description = "test"
target = "{target}"
nodes = 3
time-limit = 10
rate = 80
concurrency = 4
op-timeout = 2.0
recovery = 3
[ops]
read = 2
write = 1
cas = 1
[keys]
active = 3
ops-per-key = 100
value-range = 5
{nemesis}
"#
    );
    let mut w = workload::parse(&text, name).unwrap();
    w.name = name.to_string();
    w
}

fn options(w: workload::Workload, results: &Path, build: Option<&Path>) -> RunOptions {
    RunOptions {
        reproduce: format!("test {}", w.name),
        workload: w,
        seed: 3,
        node_bin: build.map(Path::to_path_buf),
        label: Some("test".into()),
        results: results.to_path_buf(),
        progress: false,
        engines: None,
    }
}

fn history(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count(h: &[Value], kind: &str) -> usize {
    h.iter()
        .filter(|o| o["process"] != "nemesis" && o["type"] == kind)
        .count()
}

/// The run's history and `run.json`, after checking that it left nothing in Docker, ended
/// valid and completed more than 100 operations.
async fn valid_run(outcome: &runner::RunOutcome) -> (Vec<Value>, Value) {
    let docker = faultline::control::connect().await.unwrap();
    assert_eq!(
        objects_of_run(&docker, &outcome.run_id).await,
        (0, 0, 0),
        "the run left Docker objects behind"
    );
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "{:?}",
        outcome.checked.results
    );
    let h = history(&outcome.dir.history());
    assert!(count(&h, "ok") > 100, "too few ok ops: {}", count(&h, "ok"));
    let run =
        serde_json::from_slice(&std::fs::read(outcome.dir.path.join("run.json")).unwrap()).unwrap();
    (h, run)
}

/// raftkv driven by examples/exec-client.py (targets/raftkv-exec.toml: HTTP readiness and leader
/// probes) under isolate-leader partitions ends valid; the Python clients answered every kind of
/// completion, logged to the run folder, and `--build` put a copy of raftkv in the image whose
/// sha256 and origin `run.json` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raftkv_through_the_python_exec_client_is_valid_and_records_the_build() {
    let results = tempfile::tempdir().unwrap();
    let root = faultline::workspace::root();
    let raftkv = faultline::control::NodeBinary::workspace_binary(&root, "raftkv")
        .await
        .unwrap();
    // A build of the user's own: a copy, so its path (and so the origin) is not the workspace's.
    let build = results.path().join("my-raftkv");
    std::fs::copy(&raftkv.path, &build).unwrap();
    let w = workload(
        "exec-raftkv",
        "raftkv-exec",
        "[nemesis]\nfaults = [\"partition\"]\npartition-kinds = [\"isolate-leader\"]\ninterval = 3.0\njitter = 0.0",
    );
    let outcome = runner::run(options(w, results.path(), Some(&build)))
        .await
        .unwrap();
    let (h, run) = valid_run(&outcome).await;
    // A cas from a value the key no longer holds is a definite fail with the recorded error.
    assert!(
        h.iter()
            .any(|o| o["type"] == "fail" && o["error"] == "cas-mismatch"),
        "no cas-mismatch from the Python client"
    );
    // The leader probe found the leader, so the partition cut someone off.
    assert!(
        h.iter().any(|o| o["process"] == "nemesis"
            && o["f"] == "start-partition"
            && o["value"]["outcome"] == "installed"),
        "no partition was installed"
    );
    let log = std::fs::read_to_string(outcome.dir.path.join("clients/n1.log")).unwrap();
    assert!(log.contains("exec-client.py"), "{log}");
    assert_eq!(run["workload"]["target"], "raftkv-exec");
    assert_eq!(run["node"]["binary"], "/usr/local/bin/raftkv");
    assert_eq!(
        run["node"]["origin"],
        format!("--build {}", build.display())
    );
    assert_eq!(run["node"]["sha256"], raftkv.digest().unwrap());
}

/// Redis with Sentinel from Debian's packages (targets/redis.toml: packages installed with their
/// dependencies, a start script and a readiness script copied in, a leader probe run in the
/// containers, a Python client speaking RESP): without faults its registers are linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_with_sentinel_runs_from_its_target_file_and_is_valid_without_faults() {
    let results = tempfile::tempdir().unwrap();
    let w = workload("redis", "redis", "");
    let outcome = runner::run(options(w, results.path(), None)).await.unwrap();
    let (_, run) = valid_run(&outcome).await;
    let origin = run["node"]["origin"].as_str().unwrap();
    assert!(origin.starts_with("Debian redis-server "), "{origin}");
    // The leader timeline came from the Sentinels: n1 (the first primary) leads.
    let status = std::fs::read_to_string(outcome.dir.path.join("status.jsonl")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.contains("\"n1\"") && l.contains("\"leader\"")),
        "{}",
        status.lines().take(3).collect::<Vec<_>>().join("\n")
    );
}

/// A bad target file stops `faultline run` before anything starts, naming the file, the line
/// and the field, with the harness-error exit code and no run folder.
#[test]
fn a_bad_target_file_is_refused_naming_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("mine.toml");
    std::fs::write(
        &bad,
        r#"description = "mine"

[image]
files = [{ from = "mydb", to = "/usr/local/bin/mydb" }]
binary = "/usr/local/bin/mydb"

[node]
command = ["{binary}", "--listen", "{ip}:{clinet_port}"]
ports = { client = 7000 }

[ready]
tcp = "client"

[client]
protocol = "exec"
command = ["./my-client", "{ip}:{client_port}"]
"#,
    )
    .unwrap();
    let results = dir.path().join("results");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", "register-none", "--target"])
        .arg(&bad)
        .arg("--results")
        .arg(&results)
        .env("FAULTLINE_HOME", faultline::workspace::root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("mine.toml: line 8: field `node.command`"),
        "{stderr}"
    );
    assert!(stderr.contains("no variable {clinet_port}"), "{stderr}");
    assert!(!results.exists(), "a run folder was made for a bad target");
}
