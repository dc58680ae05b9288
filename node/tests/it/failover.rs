//! Crashes: the leader killed under load, and every node killed under load then restarted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::cluster::{Cluster, http, parallel, put_body, read, retry};

/// Appends unique values to `key` through random nodes until `stop` (bounded by `max_ops` and
/// `max_time`). Returns the values acknowledged (200) and all values attempted.
fn append_load(
    addrs: Vec<String>,
    key: String,
    writer: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    max_ops: usize,
    max_time: Duration,
) -> (Vec<u64>, Vec<u64>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ writer as u64);
    let start = Instant::now();
    let (mut acked, mut tried) = (Vec::new(), Vec::new());
    for i in 0..max_ops {
        if stop.load(Ordering::Relaxed) || start.elapsed() > max_time {
            break;
        }
        let v = (writer as u64) * 1_000_000 + i as u64;
        let addr = &addrs[rng.random_range(0..addrs.len())];
        tried.push(v);
        match http(
            addr,
            "POST",
            &format!("/kv/{key}/append"),
            Some(&put_body(json!(v))),
            Duration::from_secs(3),
        ) {
            Ok(r) if r.status == 200 => acked.push(v),
            Ok(r) => {
                assert!(
                    r.body.get("definite").is_some(),
                    "error without definite: {r:?}"
                );
                if r.status == 503 {
                    assert_eq!(r.body["definite"], true);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    (acked, tried)
}

fn as_set(v: &Value) -> (Vec<u64>, BTreeSet<u64>) {
    let list: Vec<u64> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let set = list.iter().copied().collect();
    (list, set)
}

#[test]
fn killing_the_leader_elects_a_new_one_and_keeps_acknowledged_writes() {
    kill_leader_under_load(3);
}

#[test]
fn killing_the_leader_of_five_elects_a_new_one_and_keeps_acknowledged_writes() {
    kill_leader_under_load(5);
}

fn kill_leader_under_load(n: u64) {
    let seed: u64 = rand::rng().random();
    println!("seed {seed}");
    let mut c = Cluster::start(n, &[]);
    let old = c.wait_leader(Duration::from_secs(20));
    let old_term = c.node(old).status().unwrap()["term"].as_u64().unwrap();
    let addrs = c.running_clients();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let load = std::thread::spawn(move || {
        parallel(4, move |w| {
            append_load(
                addrs.clone(),
                "log".into(),
                w,
                seed,
                s2.clone(),
                5000,
                Duration::from_secs(20),
            )
        })
    });
    std::thread::sleep(Duration::from_millis(700));
    c.node_mut(old).kill();
    let new = c.wait_leader(Duration::from_secs(20));
    assert_ne!(new, old);
    let new_term = c.node(new).status().unwrap()["term"].as_u64().unwrap();
    assert!(new_term > old_term, "term {new_term} after {old_term}");
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let results = load.join().unwrap();
    let acked: Vec<u64> = results.iter().flat_map(|(a, _)| a.clone()).collect();
    let tried: BTreeSet<u64> = results.iter().flat_map(|(_, t)| t.clone()).collect();
    assert!(
        acked.len() > 20,
        "too little progress: {} acked\n{}",
        acked.len(),
        c.logs()
    );
    for addr in c.running_clients() {
        let (list, set) = as_set(&read(std::slice::from_ref(&addr), "log"));
        assert_eq!(
            list.len(),
            set.len(),
            "a value was appended twice: {list:?}"
        );
        let lost: Vec<&u64> = acked.iter().filter(|v| !set.contains(v)).collect();
        assert!(
            lost.is_empty(),
            "acknowledged appends lost (seed {seed}): {lost:?}"
        );
        assert!(set.is_subset(&tried), "values nobody wrote");
    }
}

#[test]
fn killing_every_node_under_load_loses_no_acknowledged_write() {
    let seed: u64 = rand::rng().random();
    println!("seed {seed}");
    let mut c = Cluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let addrs = c.running_clients();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let progress = Arc::new(AtomicU64::new(0));
    let p2 = progress.clone();
    // Unique keys per write: every acknowledged one must survive.
    let load = std::thread::spawn(move || {
        parallel(6, move |w| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (w as u64) << 8);
            let mut acked = Vec::new();
            for i in 0..20_000u64 {
                if s2.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{w}-{i}");
                let addr = &addrs[rng.random_range(0..addrs.len())];
                if let Ok(r) = http(
                    addr,
                    "PUT",
                    &format!("/kv/{key}"),
                    Some(&put_body(json!(i))),
                    Duration::from_secs(2),
                ) && r.status == 200
                {
                    acked.push((key, i));
                    p2.fetch_add(1, Ordering::Relaxed);
                }
            }
            acked
        })
    });
    // Kill in the middle of the load: after some progress (bounded wait), not at a fixed time.
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::Relaxed) < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &mut c.nodes {
        p.kill();
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, u64)> = load.join().unwrap().into_iter().flatten().collect();
    assert!(
        acked.len() > 20,
        "too little progress: {}\n{}",
        acked.len(),
        c.logs()
    );
    for p in &mut c.nodes {
        p.start();
    }
    c.wait_leader(Duration::from_secs(30));
    let addrs = c.running_clients();
    let mut checked = 0;
    // Read back in transactions of 500 reads each (linearizable, through the log).
    for chunk in acked.chunks(500) {
        let ops: Vec<Value> = chunk.iter().map(|(k, _)| json!(["r", k, null])).collect();
        let r = retry(
            &addrs,
            "POST",
            "/txn",
            Some(&json!({ "ops": ops })),
            Duration::from_secs(20),
            |r| r.status == 200,
        );
        let got = r.body["ops"].as_array().unwrap();
        for ((key, v), op) in chunk.iter().zip(got) {
            assert_eq!(
                op[2],
                json!(v),
                "acknowledged write {key}={v} lost after restart (seed {seed})"
            );
            checked += 1;
        }
    }
    println!("{checked} acknowledged writes survived kill -9 of every node");
}
