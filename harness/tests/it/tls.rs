//! Whole runs over mutual TLS (`tls = true`): raftkv and etcd in Docker with the run's
//! certificates, valid, the partition biting, nothing secret in the results, the certificates'
//! folder gone, and the run signed.

use std::path::{Path, PathBuf};

use faultline_checker::Validity;
use serde_json::Value;

use crate::util::{lines, run_workload};

/// The run's PKI folders that exist now (`faultline-pki-*` in the temp folder).
fn pki_folders() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("faultline-pki-"))
        })
        .collect()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// What every TLS run must show: valid, served through the partition's heal, the nodes
/// listening with TLS, no private key in the results, the PKI folder removed, and the run
/// signed.
fn check_tls_run(outcome: &faultline::runner::RunOutcome, seed: u64, before: &[PathBuf]) {
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "{} judged {} over TLS (seed {seed}): {:?}",
        outcome.dir.path.display(),
        outcome.valid,
        outcome
            .checked
            .results
            .linearizable
            .as_ref()
            .and_then(|l| l.reason.as_deref())
    );
    let history = lines(&outcome.dir.history());
    let ok = history.iter().filter(|o| o["type"] == "ok").count();
    assert!(
        ok > 50,
        "only {ok} operations succeeded over TLS (seed {seed})"
    );
    let installed = history
        .iter()
        .filter(|o| o["f"] == "start-partition" && o["value"]["outcome"] == "installed")
        .count();
    assert!(installed > 0, "no partition was installed (seed {seed})");
    let run: Value =
        serde_json::from_slice(&std::fs::read(outcome.dir.path.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["workload"]["tls"], true, "{}", run["workload"]);
    for f in files(&outcome.dir.path) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            f.display()
        );
    }
    let left: Vec<PathBuf> = pki_folders()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        left.is_empty(),
        "the run's certificates were left in {left:?}"
    );
    let v = faultline::sign::verify_run(&outcome.dir.path, None).unwrap();
    assert_eq!(v.files.len(), 3, "{v:?}");
}

/// Runs workload `name` over mutual TLS with isolate-leader partitions every 4 s, checks what
/// every TLS run must show, and returns the outcome, its results folder and n1's log.
async fn tls_run(
    name: &str,
    seed: u64,
) -> (faultline::runner::RunOutcome, tempfile::TempDir, String) {
    let before = pki_folders();
    let (outcome, keep) = run_workload(name, seed, |w| {
        w.tls = true;
        w.time_limit = 14.0;
        w.recovery = 3.0;
        let spec = w.nemesis.as_mut().unwrap();
        spec.partition_kinds = vec!["isolate-leader".parse().unwrap()];
        spec.interval = 4.0;
        spec.jitter = 0.0;
    })
    .await;
    check_tls_run(&outcome, seed, &before);
    let log = std::fs::read_to_string(outcome.dir.path.join("nodes/n1.log")).unwrap();
    (outcome, keep, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftkv_register_partition_over_mutual_tls_is_valid_and_signed() {
    let _slot = crate::util::docker_slot().await;
    let (outcome, _keep, log) = tls_run("register-partition", 3).await;
    assert!(
        log.contains("tls=true"),
        "n1 did not listen with TLS:\n{log}"
    );
    // A changed byte in the history fails verification, naming the file.
    let h = outcome.dir.history();
    let mut bytes = std::fs::read(&h).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    std::fs::write(&h, bytes).unwrap();
    let e = faultline::sign::verify_run(&outcome.dir.path, None).unwrap_err();
    assert!(e.to_string().contains("history.jsonl"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_register_partition_over_mutual_tls_is_valid() {
    let _slot = crate::util::docker_slot().await;
    let (_outcome, _keep, log) = tls_run("etcd-register-partition", 5).await;
    // etcd served its peers and clients over TLS with client certificates required.
    let required = |what: &str| {
        log.lines()
            .any(|l| l.contains(what) && l.contains("client-cert-auth = true"))
    };
    assert!(
        required("peerTLS:") && required("ClientTLS:"),
        "etcd's log does not show client certificates required:\n{}",
        &log[..log.len().min(4000)]
    );
}
