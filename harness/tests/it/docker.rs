//! Images, a cluster of containers on a fresh network, reachability, and clean teardown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use faultline::control::{self, Cluster, NodeSpec, RunGuard};
use futures_util::StreamExt;

use crate::util::{node_image, objects_of_run, unique_run_id};

fn idle_node(name: &str, image: &str) -> NodeSpec {
    NodeSpec {
        name: name.to_string(),
        image: image.to_string(),
        entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
        data_dir: "/data".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_containers_on_a_fresh_network_reach_each_other_and_leave_nothing_behind() {
    let _slot = crate::util::docker_slot().await;
    let docker = control::connect()
        .await
        .expect("a Docker engine must be running for this test");
    let image = node_image(&docker).await;
    let run_id = unique_run_id("reach");
    let mut guard = RunGuard::new(&run_id);

    let cluster = Cluster::create(&docker, &run_id).await.unwrap();
    for name in ["n1", "n2", "n3"] {
        cluster.start_node(idle_node(name, &image)).await.unwrap();
    }
    assert_eq!(
        objects_of_run(&docker, &run_id).await,
        (3, 3, 1),
        "3 containers, 3 volumes, 1 network"
    );

    let nodes = cluster.nodes().to_vec();
    for a in &nodes {
        for b in nodes.iter().filter(|b| b.name != a.name) {
            let out = cluster
                .exec(&a.name, &["ping", "-c", "1", "-W", "3", &b.ip.to_string()])
                .await
                .unwrap();
            assert_eq!(
                out.code, 0,
                "{} cannot reach {} at {}: {}{}",
                a.name, b.name, b.ip, out.stdout, out.stderr
            );
        }
    }
    // CAP_NET_ADMIN lets a node change its own firewall (the partition nemesis relies on it), and
    // a DROP rule really cuts the path.
    let n1 = &nodes[0];
    let n2_ip = nodes[1].ip.to_string();
    let drop = cluster
        .exec(
            &n1.name,
            &["iptables", "-A", "INPUT", "-s", &n2_ip, "-j", "DROP"],
        )
        .await
        .unwrap();
    assert_eq!(drop.code, 0, "iptables in a node: {}", drop.stderr);
    let cut = cluster
        .exec(&n1.name, &["ping", "-c", "1", "-W", "1", &n2_ip])
        .await
        .unwrap();
    assert_ne!(
        cut.code, 0,
        "ping must fail once replies from n2 are dropped"
    );

    let removed = cluster.teardown().await.unwrap();
    guard.disarm();
    assert_eq!(
        (
            removed.containers.len(),
            removed.volumes.len(),
            removed.networks.len()
        ),
        (3, 3, 1)
    );
    assert_eq!(
        objects_of_run(&docker, &run_id).await,
        (0, 0, 0),
        "teardown left objects behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_is_torn_down_by_its_guard() {
    let _slot = crate::util::docker_slot().await;
    let docker = control::connect()
        .await
        .expect("a Docker engine must be running for this test");
    let image = node_image(&docker).await;
    let run_id = unique_run_id("panic");

    let task = {
        let (docker, run_id, image) = (docker.clone(), run_id.clone(), image.clone());
        tokio::spawn(async move {
            let _guard = RunGuard::new(&run_id);
            let cluster = Cluster::create(&docker, &run_id).await.unwrap();
            cluster.start_node(idle_node("n1", &image)).await.unwrap();
            assert_eq!(objects_of_run(&docker, &run_id).await, (1, 1, 1));
            panic!("the run fails halfway");
        })
    };
    let err = task.await.expect_err("the task panics");
    assert!(err.is_panic());
    assert_eq!(
        objects_of_run(&docker, &run_id).await,
        (0, 0, 0),
        "the guard left objects behind"
    );
}

/// Nodes armed with failpoints exit as a crash would and must come back by themselves; a
/// nemesis kill must still keep a node down until the nemesis restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_failure_brings_back_a_crashed_node_but_not_a_killed_one() {
    let _slot = crate::util::docker_slot().await;
    let docker = control::connect()
        .await
        .expect("a Docker engine must be running for this test");
    let image = node_image(&docker).await;
    let run_id = unique_run_id("restart");
    let mut guard = RunGuard::new(&run_id);
    let cluster = Cluster::create(&docker, &run_id).await.unwrap();
    let mut exits = Box::pin(cluster.exits_with(control::FAILPOINT_EXIT));
    // Exits with 86 (raftkv's failpoint code) after a second, every time it is started.
    let crashing = NodeSpec {
        entrypoint: Some(vec!["sh".into(), "-c".into(), "sleep 1; exit 86".into()]),
        restart_on_failure: true,
        ..idle_node("n1", &image)
    };
    cluster.start_node(crashing).await.unwrap();
    let steady = NodeSpec {
        restart_on_failure: true,
        ..idle_node("n2", &image)
    };
    cluster.start_node(steady).await.unwrap();
    let restarts = Arc::new(AtomicU64::new(0));
    let restarter = tokio::spawn(cluster.restart_failpoint_exits(restarts.clone()));

    let first = tokio::time::timeout(std::time::Duration::from_secs(20), exits.next())
        .await
        .expect("the engine reports the exit within 20 s");
    assert_eq!(first.as_deref(), Some("n1"));
    // Started again at once each time: three exits within 10 s (one per ~1 s of running),
    // where Docker's on-failure policy would have waited 100, 200, 400 ms and more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while restarts.load(Ordering::Relaxed) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "n1 was not started again 3 times within 10 s ({} times)",
            restarts.load(Ordering::Relaxed)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Between an exit and its restart the nemesis waits for it (`coming_back`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cluster.coming_back("n1").await {
        assert!(
            std::time::Instant::now() < deadline,
            "n1 never showed as exited at a failpoint within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    cluster.kill("n2", "SIGKILL").await.unwrap();
    // A kill (exit 137) is not a failpoint exit: within 2 s only n1 may be reported.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Ok(Some(n)) = tokio::time::timeout_at(until, exits.next()).await {
        assert_eq!(n, "n1", "a killed node was reported as a failpoint exit");
    }
    assert_eq!(cluster.state("n2").await.unwrap(), "exited");
    assert!(
        !cluster.coming_back("n2").await,
        "a killed node is not coming back by itself"
    );
    cluster.start("n2").await.unwrap();
    assert_eq!(cluster.state("n2").await.unwrap(), "running");

    restarter.abort();
    cluster.teardown().await.unwrap();
    guard.disarm();
}
