//! Every API call through every node of 3- and 5-node clusters.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Cluster, http, put_body, retry};

const T: Duration = Duration::from_secs(5);

/// Exercises each route through `addr` with keys private to `tag`.
fn exercise(addr: &str, tag: &str) {
    let k = format!("k-{tag}");
    let put = http(
        addr,
        "PUT",
        &format!("/kv/{k}"),
        Some(&put_body(json!(1))),
        T,
    )
    .unwrap();
    assert_eq!((put.status, &put.body), (200, &json!({})), "put via {addr}");
    let get = http(addr, "GET", &format!("/kv/{k}"), None, T).unwrap();
    assert_eq!(
        (get.status, &get.body),
        (200, &json!({"value": 1})),
        "get via {addr}"
    );
    let missing = http(addr, "GET", &format!("/kv/missing-{tag}"), None, T).unwrap();
    assert_eq!(missing.body, json!({"value": null}));

    let cas_ok = http(
        addr,
        "POST",
        &format!("/kv/{k}/cas"),
        Some(&json!({"from": 1, "to": 2})),
        T,
    )
    .unwrap();
    assert_eq!((cas_ok.status, &cas_ok.body), (200, &json!({})));
    let cas_bad = http(
        addr,
        "POST",
        &format!("/kv/{k}/cas"),
        Some(&json!({"from": 1, "to": 3})),
        T,
    )
    .unwrap();
    assert_eq!(cas_bad.status, 409);
    assert_eq!(
        cas_bad.body,
        json!({"error": "cas-mismatch", "current": 2, "definite": true})
    );
    let cas_new = http(
        addr,
        "POST",
        &format!("/kv/new-{tag}/cas"),
        Some(&json!({"from": null, "to": "x"})),
        T,
    )
    .unwrap();
    assert_eq!(
        cas_new.status, 200,
        "cas from null creates: {:?}",
        cas_new.body
    );

    let l = format!("l-{tag}");
    for v in [1, 5] {
        let a = http(
            addr,
            "POST",
            &format!("/kv/{l}/append"),
            Some(&put_body(json!(v))),
            T,
        )
        .unwrap();
        assert_eq!((a.status, &a.body), (200, &json!({})));
    }
    let not_list = http(
        addr,
        "POST",
        &format!("/kv/{k}/append"),
        Some(&put_body(json!(9))),
        T,
    )
    .unwrap();
    assert_eq!(not_list.status, 409);
    assert_eq!(not_list.body["error"], "not-a-list");
    assert_eq!(not_list.body["definite"], true);

    let txn = json!({"ops": [["r", l, null], ["append", l, 7], ["w", k, 10], ["r", k, null]]});
    let t = http(addr, "POST", "/txn", Some(&txn), T).unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(
        t.body,
        json!({"ops": [["r", l, [1, 5]], ["append", l, 7], ["w", k, 10], ["r", k, 10]]})
    );
    assert_eq!(
        http(addr, "GET", &format!("/kv/{l}"), None, T)
            .unwrap()
            .body,
        json!({"value": [1, 5, 7]})
    );

    let bad = http(
        addr,
        "PUT",
        &format!("/kv/{k}"),
        Some(&json!({"nope": 1})),
        T,
    )
    .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["definite"], true);
}

fn check_status(s: &Value, id: u64, leader: u64, members: &[u64]) {
    for field in [
        "id",
        "role",
        "term",
        "leader",
        "commit",
        "applied",
        "last_index",
        "members",
    ] {
        assert!(s.get(field).is_some(), "status lacks {field}: {s}");
    }
    assert_eq!(s["id"], id);
    assert_eq!(s["leader"], leader);
    assert_eq!(s["members"], json!(members));
    let role = s["role"].as_str().unwrap();
    assert_eq!(role == "leader", id == leader, "{s}");
    assert!(
        s["applied"].as_u64() <= s["commit"].as_u64()
            && s["commit"].as_u64() <= s["last_index"].as_u64()
    );
}

fn serve_all_calls(n: u64) {
    let c = Cluster::start(n, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let members: Vec<u64> = (1..=n).collect();
    for p in &c.nodes {
        exercise(&p.client(), &format!("via{}", p.id));
    }
    // Writes through one node are visible through every other (linearizable reads).
    let addrs = c.running_clients();
    for (i, p) in c.nodes.iter().enumerate() {
        let next = &addrs[(i + 1) % addrs.len()];
        let r = http(next, "GET", &format!("/kv/l-via{}", p.id), None, T).unwrap();
        assert_eq!(r.body, json!({"value": [1, 5, 7]}));
    }
    for p in &c.nodes {
        let s = retry(&[p.client()], "GET", "/status", None, T, |r| {
            r.status == 200
        })
        .body;
        check_status(&s, p.id, leader, &members);
    }
    let missing = http(&addrs[0], "GET", "/nope", None, T).unwrap();
    assert_eq!(missing.status, 404);
}

#[test]
fn three_node_cluster_serves_every_call_through_any_node() {
    serve_all_calls(3);
}

#[test]
fn five_node_cluster_serves_every_call_through_any_node() {
    serve_all_calls(5);
}

#[test]
fn lease_read_mode_serves_linearizable_reads() {
    let c = Cluster::start(3, &["--read-mode", "lease"]);
    c.wait_leader(Duration::from_secs(20));
    for p in &c.nodes {
        exercise(&p.client(), &format!("lease{}", p.id));
    }
}

#[test]
fn a_lone_node_without_quorum_answers_no_leader_definitely() {
    // Two of three members never start: no leader can exist, nothing can be proposed.
    let mut c = Cluster::start(3, &["--request-timeout", "600"]);
    c.node_mut(2).kill();
    c.node_mut(3).kill();
    std::thread::sleep(Duration::from_millis(300));
    let addr = c.node(1).client();
    // Node 1 may have been elected before the others died; it steps down (CheckQuorum).
    let r = retry(
        std::slice::from_ref(&addr),
        "PUT",
        "/kv/x",
        Some(&put_body(json!(1))),
        Duration::from_secs(10),
        |r| r.status != 200,
    );
    assert!(
        (r.status == 503 && r.body == json!({"error": "no-leader", "definite": true}))
            || (r.status == 504 && r.body["definite"] == false),
        "{r:?}"
    );
    // Once it knows there is no leader, the answer is the definite one.
    let r = retry(
        &[addr],
        "PUT",
        "/kv/y",
        Some(&put_body(json!(1))),
        Duration::from_secs(10),
        |r| r.status == 503,
    );
    assert_eq!(r.body, json!({"error": "no-leader", "definite": true}));
}

#[test]
fn concurrent_writes_share_fsyncs_group_commit() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let addr = c.node(leader).client();
    let wal = |s: &Value| {
        (
            s["wal"]["fsyncs"].as_u64().unwrap(),
            s["wal"]["entries"].as_u64().unwrap(),
        )
    };
    let (f0, e0) = wal(&c.node(leader).status().unwrap());
    let acked: usize = crate::cluster::parallel(16, move |w| {
        (0..40)
            .filter(|i| {
                let body = put_body(json!(i));
                http(&addr, "PUT", &format!("/kv/g{w}-{i}"), Some(&body), T)
                    .is_ok_and(|r| r.status == 200)
            })
            .count()
    })
    .into_iter()
    .sum();
    assert!(acked >= 600, "only {acked} of 640 writes acknowledged");
    let (f1, e1) = wal(&c.node(leader).status().unwrap());
    let (fsyncs, entries) = (f1 - f0, e1 - e0);
    println!("leader wrote {entries} entries with {fsyncs} fsyncs");
    assert!(entries >= acked as u64);
    assert!(
        fsyncs < entries,
        "no group commit: {entries} entries took {fsyncs} fsyncs"
    );
}
