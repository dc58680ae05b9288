//! Planted bugs are wired through to the API (and absent without `--bug`): each test puts a
//! node where a correct raftkv must refuse, and checks that the buggy one answers anyway.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{Cluster, http, put_body, retry};

/// Waits until every node applied what the leader has committed.
fn wait_applied_everywhere(c: &Cluster, leader: u64) {
    let commit = c.node(leader).status().unwrap()["commit"].as_u64().unwrap();
    for p in &c.nodes {
        retry(
            &[p.client()],
            "GET",
            "/status",
            None,
            Duration::from_secs(10),
            |r| r.body["applied"].as_u64() >= Some(commit),
        );
    }
}

/// A 3-node cluster with a value written, then both followers killed: the leader is alone.
fn isolated_leader(extra: &[&str]) -> (Cluster, u64) {
    let mut c = Cluster::start(3, extra);
    let leader = c.wait_leader(Duration::from_secs(20));
    let r = retry(
        &[c.node(leader).client()],
        "PUT",
        "/kv/x",
        Some(&put_body(json!(1))),
        Duration::from_secs(10),
        |r| r.status == 200,
    );
    assert_eq!(r.body, json!({}));
    wait_applied_everywhere(&c, leader);
    for id in (1..=3).filter(|&i| i != leader) {
        c.node_mut(id).kill();
    }
    (c, leader)
}

#[test]
fn without_bugs_an_isolated_leader_neither_acks_writes_nor_serves_reads() {
    let (c, leader) = isolated_leader(&["--request-timeout", "800", "--election-timeout", "3000"]);
    let addr = c.node(leader).client();
    let w = http(
        &addr,
        "PUT",
        "/kv/x",
        Some(&put_body(json!(2))),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_ne!(w.status, 200, "write acknowledged without a quorum: {w:?}");
    // Still leader (CheckQuorum takes an election timeout): the write was appended and may
    // still commit, so the answer must be indeterminate.
    assert_eq!(
        (w.status, &w.body),
        (504, &json!({"error": "timeout", "definite": false}))
    );
    let r = http(&addr, "GET", "/kv/x", None, Duration::from_secs(5)).unwrap();
    assert_ne!(
        r.status, 200,
        "read served without confirming leadership: {r:?}"
    );
}

#[test]
fn early_ack_bug_acknowledges_writes_that_cannot_commit() {
    let (c, leader) = isolated_leader(&[
        "--bug",
        "early-ack",
        "--request-timeout",
        "800",
        "--election-timeout",
        "3000",
    ]);
    let addr = c.node(leader).client();
    let w = http(
        &addr,
        "PUT",
        "/kv/x",
        Some(&put_body(json!(2))),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        (w.status, w.body),
        (200, json!({})),
        "early-ack should ack on local append"
    );
}

#[test]
fn stale_read_bug_serves_reads_from_a_node_without_a_leader() {
    let mut c = Cluster::start(3, &["--bug", "stale-read", "--request-timeout", "800"]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let r = retry(
        &[c.node(leader).client()],
        "PUT",
        "/kv/x",
        Some(&put_body(json!(1))),
        Duration::from_secs(10),
        |r| r.status == 200,
    );
    assert_eq!(r.status, 200);
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    wait_applied_everywhere(&c, leader);
    // Leave the follower alone: no leader can exist, yet it answers reads from its own state.
    for id in (1..=3).filter(|&i| i != follower) {
        c.node_mut(id).kill();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let r = http(
            &c.node(follower).client(),
            "GET",
            "/kv/x",
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!((r.status, &r.body), (200, &json!({"value": 1})));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_other_planted_bug_boots_and_serves_a_calm_cluster() {
    for bug in [
        "forget-vote",
        "commit-old-term",
        "skip-prev-check",
        "lease-ignores-skew",
    ] {
        let c = Cluster::start(3, &["--bug", bug]);
        c.wait_leader(Duration::from_secs(20));
        for p in &c.nodes {
            assert!(
                p.log_text().contains("PLANTED BUGS ENABLED"),
                "{bug}: no warning in the log"
            );
        }
        let addrs = c.running_clients();
        for (i, addr) in addrs.iter().enumerate() {
            let r = retry(
                std::slice::from_ref(addr),
                "POST",
                "/kv/l/append",
                Some(&put_body(json!(i))),
                Duration::from_secs(10),
                |r| r.status == 200,
            );
            assert_eq!(r.body, json!({}), "{bug}");
        }
        let r = retry(&addrs, "GET", "/kv/l", None, Duration::from_secs(10), |r| {
            r.status == 200
        });
        assert_eq!(r.body, json!({"value": [0, 1, 2]}), "{bug}");
    }
}

/// `no-fsync` shows only when unsynced data is lost (a power failure; the harness runs nodes on
/// faultfs for that). Here: the node says so at startup, `/status` shows no fsync at all, and
/// otherwise it behaves as usual: a process kill keeps what the kernel holds.
#[test]
fn no_fsync_bug_announces_itself_and_syncs_nothing() {
    let mut c = Cluster::start(1, &["--bug", "no-fsync"]);
    c.wait_leader(Duration::from_secs(20));
    let addr = c.node(1).client();
    for i in 0..10 {
        let r = retry(
            std::slice::from_ref(&addr),
            "POST",
            "/kv/l/append",
            Some(&put_body(json!(i))),
            Duration::from_secs(10),
            |r| r.status == 200,
        );
        assert_eq!(r.body, json!({}));
    }
    let log = c.node(1).log_text();
    assert!(
        log.contains("FSYNC DISABLED by the planted bug no-fsync"),
        "no warning in the log:\n{log}"
    );
    assert_eq!(log.matches("FSYNC DISABLED").count(), 1, "{log}");
    let wal = &c.node(1).status().unwrap()["wal"];
    assert_eq!(wal["fsyncs"], json!(0), "{wal}");
    assert!(wal["unsynced"].as_u64().unwrap() >= 10, "{wal}");
    assert!(wal["entries"].as_u64().unwrap() >= 10, "{wal}");

    c.node_mut(1).kill();
    c.node_mut(1).start();
    c.wait_leader(Duration::from_secs(20));
    let r = retry(
        &[addr],
        "GET",
        "/kv/l",
        None,
        Duration::from_secs(10),
        |r| r.status == 200,
    );
    assert_eq!(r.body, json!({"value": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}));
}

#[test]
fn without_the_bug_status_counts_fsyncs_and_has_no_unsynced_field() {
    let c = Cluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let addr = c.node(1).client();
    let r = retry(
        std::slice::from_ref(&addr),
        "PUT",
        "/kv/x",
        Some(&put_body(json!(1))),
        Duration::from_secs(10),
        |r| r.status == 200,
    );
    assert_eq!(r.body, json!({}));
    let wal = &c.node(1).status().unwrap()["wal"];
    assert!(wal["fsyncs"].as_u64().unwrap() >= 1, "{wal}");
    assert!(wal.get("unsynced").is_none(), "{wal}");
    assert!(!c.node(1).log_text().contains("FSYNC DISABLED"));
}

/// `txn-split` applies a transaction's micro-ops as separate entries: a transaction that fails
/// half-way (an append to a key that holds no list) leaves its first part applied, which a
/// correct raftkv never does. Both answer the same successful transaction alike.
#[test]
fn txn_split_bug_leaves_half_a_failed_transaction_applied() {
    for (args, half_applied) in [(&[][..], false), (&["--bug", "txn-split"][..], true)] {
        let c = Cluster::start(3, args);
        let leader = c.wait_leader(Duration::from_secs(20));
        let addr = c.node(leader).client();
        let t = Duration::from_secs(10);
        let put = retry(
            std::slice::from_ref(&addr),
            "PUT",
            "/kv/s",
            Some(&put_body(json!(5))),
            t,
            |r| r.status == 200,
        );
        assert_eq!(put.body, json!({}));
        let ok = json!({"ops": [["append", "l", 1], ["r", "l", null], ["w", "x", 2]]});
        let r = retry(
            std::slice::from_ref(&addr),
            "POST",
            "/txn",
            Some(&ok),
            t,
            |r| r.status == 200,
        );
        assert_eq!(
            r.body,
            json!({"ops": [["append", "l", 1], ["r", "l", [1]], ["w", "x", 2]]}),
            "{args:?}"
        );
        let half = json!({"ops": [["append", "l", 2], ["append", "s", 3]]});
        let r = http(&addr, "POST", "/txn", Some(&half), t).unwrap();
        assert_eq!(r.status, 409, "{args:?}: {r:?}");
        assert_eq!(r.body["error"], "not-a-list", "{args:?}");
        let l = http(&addr, "GET", "/kv/l", None, t).unwrap().body;
        let want = if half_applied {
            json!([1, 2])
        } else {
            json!([1])
        };
        assert_eq!(l, json!({ "value": want }), "{args:?}");
    }
}

/// A follower that has the leader's last write in its log but not yet its commit index (which
/// travels with the next heartbeat, here seconds away): its applied state is stale.
fn stale_follower(c: &Cluster, leader: u64, value: serde_json::Value) -> u64 {
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let w = http(
        &c.node(leader).client(),
        "PUT",
        "/kv/x",
        Some(&put_body(value)),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!((w.status, &w.body), (200, &json!({})));
    let commit = c.node(leader).status().unwrap()["commit"].as_u64().unwrap();
    let applied = c.node(follower).status().unwrap()["applied"]
        .as_u64()
        .unwrap();
    assert!(
        applied < commit,
        "follower {follower} already applied the write (applied {applied}, commit {commit}): \
         the heartbeat came too early for this test"
    );
    follower
}

/// `cas-stale-compare`: a follower whose applied value of `x` is stale (1, where the leader
/// has committed 2) answers a CAS from 2 with `cas-mismatch` from its own state, although the
/// register holds 2; a CAS from its stale value 1 it forwards, and the leader refuses that one
/// with the true current value. A correct raftkv forwards both: the first succeeds.
#[test]
fn cas_stale_compare_bug_refuses_a_cas_from_a_stale_follower_state() {
    // Heartbeats (which carry the commit index to followers) every 1.5 s: after a write the
    // followers apply it only that much later.
    let slow = ["--heartbeat-interval", "1500", "--election-timeout", "4000"];
    for bug in [false, true] {
        let args: Vec<&str> = if bug {
            [&slow[..], &["--bug", "cas-stale-compare"]].concat()
        } else {
            slow.to_vec()
        };
        let c = Cluster::start(3, &args);
        let leader = c.wait_leader(Duration::from_secs(30));
        let t = Duration::from_secs(10);
        let put = retry(
            &[c.node(leader).client()],
            "PUT",
            "/kv/x",
            Some(&put_body(json!(1))),
            t,
            |r| r.status == 200,
        );
        assert_eq!(put.body, json!({}));
        wait_applied_everywhere(&c, leader);
        let follower = stale_follower(&c, leader, json!(2));
        let addr = c.node(follower).client();
        let cas = |from: i64, to: i64| {
            http(
                &addr,
                "POST",
                "/kv/x/cas",
                Some(&json!({"from": from, "to": to})),
                t,
            )
            .unwrap()
        };
        let read_x = || {
            http(&c.node(leader).client(), "GET", "/kv/x", None, t)
                .unwrap()
                .body
        };
        let r = cas(2, 3);
        if bug {
            assert_eq!(
                (r.status, &r.body),
                (
                    409,
                    &json!({"error": "cas-mismatch", "current": 1, "definite": true})
                ),
                "the stale follower must refuse from its own state"
            );
            assert_eq!(read_x(), json!({"value": 2}), "the refused CAS changed x");
            wait_applied_everywhere(&c, leader);
            // Its local value matches `from`: forwarded, and the leader knows better.
            let stale_follower_again = stale_follower(&c, leader, json!(4));
            assert_eq!(stale_follower_again, follower);
            let r = cas(2, 5);
            assert_eq!(
                (r.status, &r.body),
                (
                    409,
                    &json!({"error": "cas-mismatch", "current": 4, "definite": true})
                ),
                "a CAS matching the follower's value is forwarded to the leader"
            );
        } else {
            assert_eq!(
                (r.status, &r.body),
                (200, &json!({})),
                "correct raftkv forwards"
            );
            assert_eq!(read_x(), json!({"value": 3}));
        }
    }
}
