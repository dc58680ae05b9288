//! NATS JetStream (Debian's nats-server 2.9.10) as a target: KV registers and the queue stream.

use faultline::workload::Target;
use faultline_checker::Validity;

use crate::util::run_workload;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_updates_from_one_revision_are_all_acknowledged_and_the_history_is_invalid() {
    let _slot = crate::util::docker_slot().await;
    // nats-server #4320 (2.9.10, fixed in 2.9.21): the expected-revision check races.
    let (outcome, _keep) = run_workload("bug-nats-kv-cas", 1, |w| {
        assert_eq!(w.target, Target::Nats);
        w.time_limit = 8.0;
        w.recovery = 1.0;
    })
    .await;
    let history = std::fs::read_to_string(outcome.dir.history()).unwrap();
    let ok = |f: &str| {
        history
            .lines()
            .filter(|l| l.contains("\"type\":\"ok\"") && l.contains(&format!("\"f\":\"{f}\"")))
            .count()
    };
    assert!(
        ok("read") > 100 && ok("cas") > 100,
        "NATS served too few operations: {} reads, {} cas",
        ok("read"),
        ok("cas")
    );
    assert_eq!(
        outcome.valid,
        Validity::Invalid,
        "no two updates from one revision were both acknowledged ({})",
        outcome.dir.path.display()
    );
    assert!(
        outcome.dir.path.join("counterexample.svg").is_file(),
        "an invalid verdict comes with its counterexample"
    );
    // The race itself: every value is written once, so a key holds each value at most once,
    // and two acknowledged updates from one value are two updates from one revision.
    let mut from_counts = std::collections::HashMap::<(String, String), usize>::new();
    for line in history.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "ok" && v["f"] == "cas" {
            let key = (v["key"].to_string(), v["value"][0].to_string());
            *from_counts.entry(key).or_default() += 1;
        }
    }
    let twice = from_counts.values().filter(|&&n| n > 1).count();
    assert!(
        twice > 0,
        "no value was the `from` of two acknowledged updates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_queue_under_kills_is_drained_by_every_client_and_loses_nothing() {
    let _slot = crate::util::docker_slot().await;
    let (outcome, _keep) = run_workload("matrix-nats-queue-kill", 1, |w| {
        w.time_limit = 14.0;
        w.recovery = 4.0;
        let n = w.nemesis.as_mut().unwrap();
        n.kill_targets = vec!["one".parse().unwrap()];
        n.interval = 4.0;
        n.jitter = 0.0;
    })
    .await;
    let q = outcome
        .checked
        .results
        .queue
        .as_ref()
        .expect("a queue verdict");
    assert_eq!(q.counts.drains, 3, "every client drained: {:?}", q.counts);
    assert!(q.counts.acknowledged > 500, "{:?}", q.counts);
    let killed = std::fs::read_to_string(outcome.dir.history())
        .unwrap()
        .lines()
        .any(|l| l.contains("\"f\":\"kill\"") && l.contains("\"installed\""));
    assert!(killed, "no kill was installed");
    assert_eq!(
        outcome.valid,
        Validity::Valid,
        "NATS lost messages under process kills ({}): {:?}",
        outcome.dir.path.display(),
        outcome.checked.results.anomaly_lines()
    );
}
