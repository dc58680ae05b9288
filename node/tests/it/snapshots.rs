//! Snapshots: log compaction survives restarts, and a follower that fell behind the compacted
//! log catches up from an InstallSnapshot.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{Cluster, http, put_body, retry};

const T: Duration = Duration::from_secs(5);

fn write_keys(addr: &str, prefix: &str, n: u64) {
    for i in 0..n {
        let r = retry(
            &[addr.to_string()],
            "PUT",
            &format!("/kv/{prefix}{i}"),
            Some(&put_body(json!(i))),
            Duration::from_secs(10),
            |r| r.status == 200,
        );
        assert_eq!(r.body, json!({}));
    }
}

fn check_keys(addrs: &[String], prefix: &str, n: u64) {
    let ops: Vec<Value> = (0..n)
        .map(|i| json!(["r", format!("{prefix}{i}"), null]))
        .collect();
    let r = retry(
        addrs,
        "POST",
        "/txn",
        Some(&json!({ "ops": ops })),
        Duration::from_secs(20),
        |r| r.status == 200,
    );
    for (i, op) in r.body["ops"].as_array().unwrap().iter().enumerate() {
        assert_eq!(op[2], json!(i), "{prefix}{i} lost");
    }
}

#[test]
fn snapshots_compact_the_log_and_survive_a_restart_of_every_node() {
    let mut c = Cluster::start(3, &["--snapshot-threshold", "50"]);
    let leader = c.wait_leader(Duration::from_secs(20));
    write_keys(&c.node(leader).client(), "s", 200);
    for p in &c.nodes {
        let s = retry(&[p.client()], "GET", "/status", None, T, |r| {
            r.body["snapshot_index"].as_u64() > Some(100)
        });
        assert!(s.body["snapshot_index"].as_u64() <= s.body["applied"].as_u64());
    }
    for p in &mut c.nodes {
        p.kill();
    }
    for p in &mut c.nodes {
        p.start();
    }
    c.wait_leader(Duration::from_secs(30));
    check_keys(&c.running_clients(), "s", 200);
    for p in &c.nodes {
        assert!(
            p.log_text().contains("snapshot saved; log compacted"),
            "node {}",
            p.id
        );
    }
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_from_a_snapshot() {
    let mut c = Cluster::start(3, &["--snapshot-threshold", "50"]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let mut followers = (1..=3).filter(|&i| i != leader);
    let (lagging, other) = (followers.next().unwrap(), followers.next().unwrap());
    c.node_mut(lagging).kill();
    write_keys(&c.node(leader).client(), "f", 200);
    let commit = c.node(leader).status().unwrap()["commit"].as_u64().unwrap();
    c.node_mut(lagging).start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let applied = c.node(lagging).status().and_then(|s| s["applied"].as_u64());
        if applied >= Some(commit) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {lagging} never caught up: {applied:?} < {commit}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        c.node(lagging)
            .log_text()
            .contains("installed snapshot from leader"),
        "{}",
        c.logs()
    );
    // Without the other follower, the quorum needs the one that caught up from the snapshot.
    c.node_mut(other).kill();
    let w = http(
        &c.node(leader).client(),
        "PUT",
        "/kv/after",
        Some(&put_body(json!(1))),
        T,
    )
    .unwrap();
    assert_eq!(w.status, 200, "{w:?}");
    check_keys(
        &[c.node(lagging).client(), c.node(leader).client()],
        "f",
        200,
    );
}
