//! Membership changes under load: add a node (learner, then voter), remove a follower and the
//! leader, and keep every acknowledged write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::cluster::{Cluster, http, parallel, put_body, read, retry};

fn members(c: &Cluster, via: u64) -> Vec<u64> {
    let s = c.node(via).status().unwrap_or_default();
    s["members"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

#[test]
fn members_are_added_and_removed_under_load() {
    let seed: u64 = rand::rng().random();
    println!("seed {seed}");
    let mut c = Cluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let i4 = c.add_joiner(4);
    c.nodes[i4].start();

    let addrs = c.running_clients();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let load = std::thread::spawn(move || {
        parallel(3, move |w| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ w as u64);
            let mut acked = Vec::new();
            let start = Instant::now();
            for i in 0..20_000u64 {
                if s2.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(40) {
                    break;
                }
                let v = w as u64 * 1_000_000 + i;
                let addr = &addrs[rng.random_range(0..addrs.len())];
                match http(
                    addr,
                    "POST",
                    "/kv/log/append",
                    Some(&put_body(json!(v))),
                    Duration::from_secs(3),
                ) {
                    Ok(r) if r.status == 200 => acked.push(v),
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            acked
        })
    });

    // Add node 4 through a follower (the request is forwarded to the leader).
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let body = json!({"add": 4, "addr": c.node(4).addrs()});
    let r = http(
        &c.node(follower).client(),
        "POST",
        "/admin/members",
        Some(&body),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!((r.status, &r.body), (200, &json!({})), "{}", c.logs());
    assert_eq!(members(&c, leader), vec![1, 2, 3, 4]);
    let s4 = retry(
        &[c.node(4).client()],
        "GET",
        "/status",
        None,
        Duration::from_secs(10),
        |r| r.body["members"] == json!([1, 2, 3, 4]),
    );
    assert_eq!(s4.body["leader"], leader, "node 4 follows the leader");

    // Remove a follower, then the leader itself.
    let r = http(
        &c.node(leader).client(),
        "POST",
        "/admin/members",
        Some(&json!({"remove": follower})),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!members(&c, leader).contains(&follower));
    let r = http(
        &c.node(4).client(),
        "POST",
        "/admin/members",
        Some(&json!({"remove": leader})),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}\n{}", c.logs());
    c.node_mut(follower).kill();
    c.node_mut(leader).kill();
    let new = c.wait_leader(Duration::from_secs(20));
    assert!(new != leader && new != follower);
    let remaining: BTreeSet<u64> = members(&c, new).into_iter().collect();
    assert_eq!(remaining.len(), 2, "{remaining:?}");
    assert!(remaining.contains(&4));

    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<u64> = load.join().unwrap().into_iter().flatten().collect();
    assert!(acked.len() > 20, "too little progress: {}", acked.len());
    let list = read(&c.running_clients(), "log");
    let got: BTreeSet<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let lost: Vec<&u64> = acked.iter().filter(|v| !got.contains(v)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged appends lost (seed {seed}): {lost:?}"
    );
}
