//! etcd as a target: Debian's etcd-server in Docker under the same nemesis and checker as raftkv.

use faultline::workload::Target;
use faultline_checker::Validity;
use serde_json::Value;

use crate::util::{lines, run_workload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_register_partition_run_is_valid_and_leaves_nothing_behind() {
    let _slot = crate::util::docker_slot().await;
    let seed = 11;
    let (outcome, _keep) = run_workload("etcd-register-partition", seed, |w| {
        assert_eq!(w.target, Target::Etcd);
        w.time_limit = 16.0;
        w.recovery = 3.0;
        let spec = w.nemesis.as_mut().unwrap();
        spec.partition_kinds = vec!["isolate-leader".parse().unwrap()];
        spec.interval = 5.0;
        spec.jitter = 0.0;
    })
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_progress_requests_break_bookmarkable_and_watches_without_them_keep_every_guarantee()
 {
    use faultline_checker::watch::Guarantee;
    let _slot = crate::util::docker_slot().await;
    // etcd-io/etcd#15220 (3.4.23): progress notifications overtake events still to be sent.
    let (bug, _keep) = run_workload("bug-etcd-watch-progress", 3, |w| {
        w.time_limit = 8.0;
        w.recovery = 1.0;
        w.watch.as_mut().unwrap().prefill = 2000;
    })
    .await;
    let history = lines(&bug.dir.history());
    let watch_lines: Vec<&Value> = history.iter().filter(|o| o["process"] == "watch").collect();
    for f in [
        "watch-open",
        "watch-created",
        "watch-events",
        "watch-progress",
    ] {
        assert!(
            watch_lines.iter().any(|o| o["f"] == f),
            "no {f} line in {}",
            bug.dir.path.display()
        );
    }
    // Every watch line names its watcher, member and stream; watchers sit on every member.
    assert!(watch_lines.iter().all(|o| o["value"]["watcher"].is_string()
        && o["value"]["stream"].is_u64()
        && o["node"].is_string()));
    let members: std::collections::BTreeSet<&str> = watch_lines
        .iter()
        .filter_map(|o| o["node"].as_str())
        .collect();
    assert_eq!(members.len(), 3, "{members:?}");
    let puts_with_revision = history
        .iter()
        .filter(|o| o["type"] == "ok" && o["f"] == "put" && o["value"]["revision"].is_i64())
        .count();
    assert!(
        puts_with_revision >= 2000,
        "{puts_with_revision} acknowledged puts"
    );
    let watch = bug.checked.results.watch.as_ref().expect("a watch verdict");
    assert_eq!(
        bug.valid,
        Validity::Invalid,
        "etcd 3.4.23 kept bookmarkable under progress requests every 5 ms ({}): {:?}",
        bug.dir.path.display(),
        bug.checked.results.anomaly_lines()
    );
    assert!(
        watch.guarantee(Guarantee::Bookmarkable).unwrap().violations > 0,
        "{:?}",
        bug.checked.results.anomaly_lines()
    );
    let results: Value =
        serde_json::from_slice(&std::fs::read(bug.dir.path.join("results.json")).unwrap()).unwrap();
    let first = &results["watch"]["violations"][0];
    assert!(
        first["response"].is_object() && first["previous"].is_object(),
        "a violation shows the offending response beside the one before it: {first}"
    );

    // The control: the same load without progress requests keeps every guarantee.
    let (control, _keep) = run_workload("matrix-etcd-watch", 3, |w| {
        w.time_limit = 8.0;
        w.recovery = 1.0;
        w.watch.as_mut().unwrap().prefill = 2000;
    })
    .await;
    let watch = control
        .checked
        .results
        .watch
        .as_ref()
        .expect("a watch verdict");
    assert!(watch.counts.events > 10_000, "{:?}", watch.counts);
    assert_eq!(
        control.valid,
        Validity::Valid,
        "watches without progress requests ({}): {:?}",
        control.dir.path.display(),
        control.checked.results.anomaly_lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_revokes_leases_kept_alive_through_followers_when_the_leaders_disk_stalls() {
    let _slot = crate::util::docker_slot().await;
    // etcd-io/etcd#15247 (3.4.23): the stalled leader's lessor outlives its leadership.
    let (bug, _keep) = run_workload("bug-etcd-lease-stall", 2, |w| {
        // Off 12 s, then the leader's disk stalled for 12 s: past the TTL (5 s) after the
        // followers elect a new leader (2-4 s in), so the old leader's lessor sees leases expire.
        w.time_limit = 27.0;
        w.recovery = 3.0;
        let n = w.nemesis.as_mut().unwrap();
        n.interval = 12.0;
        n.jitter = 0.0;
    })
    .await;
    let history = lines(&bug.dir.history());
    let stalls: Vec<&Value> = history
        .iter()
        .filter(|o| o["f"] == "start-stall" && o["value"]["outcome"] == "installed")
        .collect();
    assert_eq!(
        stalls.len(),
        1,
        "one stall of the leader's disk was installed"
    );
    let node_log = std::fs::read_to_string(bug.dir.path.join("nodes").join(format!(
        "{}.log",
        stalls[0]["value"]["nodes"][0].as_str().unwrap()
    )))
    .unwrap();
    assert!(
        node_log.contains("wal: sync duration of"),
        "the stalled leader's WAL fsync was not slowed: faultfs did not reach etcd"
    );
    let lease = bug.checked.results.lease.as_ref().expect("a lease verdict");
    assert!(lease.counts.keepalives_ok > 50, "{:?}", lease.counts);
    assert_eq!(
        bug.valid,
        Validity::Invalid,
        "no lease kept alive through followers was revoked ({}): {:?}",
        bug.dir.path.display(),
        lease.counts
    );

    // The control: the same leases without faults all live.
    let (control, _keep) = run_workload("matrix-etcd-lease", 2, |w| {
        w.time_limit = 8.0;
        w.recovery = 1.0;
    })
    .await;
    let lease = control
        .checked
        .results
        .lease
        .as_ref()
        .expect("a lease verdict");
    assert!(lease.counts.keepalives_ok > 20, "{:?}", lease.counts);
    assert_eq!(
        control.valid,
        Validity::Valid,
        "leases without faults ({}): {:?}",
        control.dir.path.display(),
        control.checked.results.anomaly_lines()
    );
}
