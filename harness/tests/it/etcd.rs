//! etcd as a target: Debian's etcd-server in Docker under the same nemesis and checker as raftkv.

use std::path::Path;

use faultline::runner::{self, RunOptions};
use faultline::workload::{self, Target};
use faultline_checker::Validity;
use serde_json::Value;

use crate::util::objects_of_run;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_register_partition_run_is_valid_and_leaves_nothing_behind() {
    let _slot = crate::util::docker_slot().await;
    let seed = 11;
    let dir = faultline::workspace::root().join("workloads");
    let mut w = workload::load(&dir, "etcd-register-partition").unwrap();
    assert_eq!(w.target, Target::Etcd);
    w.time_limit = 16.0;
    w.recovery = 3.0;
    let spec = w.nemesis.as_mut().unwrap();
    spec.partition_kinds = vec!["isolate-leader".parse().unwrap()];
    spec.interval = 5.0;
    spec.jitter = 0.0;
    let results = tempfile::tempdir().unwrap();
    println!("etcd register-partition: seed {seed}");
    let outcome = runner::run(RunOptions {
        reproduce: format!("test etcd seed {seed}"),
        workload: w,
        seed,
        node_bin: None,
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
        "the etcd run left Docker objects behind"
    );
    let history = lines(&outcome.dir.history());
    // The leader came from etcd's maintenance status, so isolate-leader was installed.
    let partitions: Vec<&Value> = history
        .iter()
        .filter(|o| o["f"] == "start-partition" && o["value"]["outcome"] == "installed")
        .collect();
    assert!(
        !partitions.is_empty(),
        "no isolate-leader partition was installed (seed {seed})"
    );
    let ok = |f: &str| {
        history
            .iter()
            .filter(|o| o["type"] == "ok" && o["f"] == f)
            .count()
    };
    assert!(
        ok("read") > 50 && ok("write") > 20 && ok("cas") > 0,
        "etcd served too few operations: {} reads, {} writes, {} cas (seed {seed})",
        ok("read"),
        ok("write"),
        ok("cas")
    );
    // Reads return values that were written (JSON through base64), not raw gateway strings.
    assert!(
        history
            .iter()
            .filter(|o| o["type"] == "ok" && o["f"] == "read")
            .all(|o| o["value"].is_null() || o["value"].is_u64()),
        "a read returned something other than a written integer (seed {seed})"
    );
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "etcd with linearizable reads judged {} (seed {seed}, {}): {:?}",
        outcome.valid,
        outcome.dir.path.display(),
        outcome
            .checked
            .results
            .linearizable
            .as_ref()
            .and_then(|l| l.reason.as_deref())
    );
    let run: Value =
        serde_json::from_slice(&std::fs::read(outcome.dir.path.join("run.json")).unwrap()).unwrap();
    assert!(
        run["node"]["origin"]
            .as_str()
            .unwrap()
            .contains("etcd-server"),
        "{}",
        run["node"]
    );
}
