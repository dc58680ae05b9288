//! The nemesis against three idle containers: each fault takes effect, is reported, and heals.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::util::{node_image, objects_of_run, unique_run_id};
use faultline::control::{self, Cluster, NodeSpec, RunGuard};
use faultline::nemesis::{
    self, Action, ClockPlan, Fault, FaultKind, Nemesis, NemesisContext, NemesisOp, NemesisSpec,
    Outcome, PartitionKind, PauseTarget, Targets,
};

/// Whether `from` gets an answer to one ping of `to` within a second.
async fn reaches(cluster: &Cluster, from: &str, to: &str) -> bool {
    let ip = cluster.node(to).unwrap().ip.to_string();
    let out = cluster
        .exec(from, &["ping", "-c", "1", "-W", "1", &ip])
        .await
        .unwrap();
    out.code == 0
}

/// Reachability of every ordered pair, checked concurrently.
async fn reach_matrix(cluster: &Cluster) -> BTreeMap<(String, String), bool> {
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let pairs: Vec<(String, String)> = names
        .iter()
        .flat_map(|a| {
            names
                .iter()
                .filter(move |b| *b != a)
                .map(move |b| (a.clone(), b.clone()))
        })
        .collect();
    let results =
        futures_util::future::join_all(pairs.iter().map(|(a, b)| reaches(cluster, a, b))).await;
    pairs.into_iter().zip(results).collect()
}

async fn epoch_seconds(cluster: &Cluster, node: &str) -> i64 {
    let out = cluster.exec(node, &["date", "+%s"]).await.unwrap();
    out.stdout.trim().parse().unwrap()
}

fn only(ops: Vec<NemesisOp>) -> NemesisOp {
    assert_eq!(ops.len(), 1, "{ops:?}");
    ops.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_take_effect_on_idle_containers_and_heal() {
    let _slot = crate::util::docker_slot().await;
    let docker = control::connect()
        .await
        .expect("a Docker engine must be running for this test");
    let image = node_image(&docker).await;
    let run_id = unique_run_id("nemesis");
    let mut guard = RunGuard::new(&run_id);
    let clock = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
    nemesis::prepare_clock_dir(clock.path(), &names).unwrap();

    let cluster = Cluster::create(&docker, &run_id).await.unwrap();
    for name in &names {
        let spec = NodeSpec {
            name: name.clone(),
            image: image.clone(),
            entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
            env: nemesis::clock_env(),
            binds: vec![nemesis::clock_bind(clock.path(), name)],
            data_dir: "/data".into(),
            ..Default::default()
        };
        cluster.start_node(spec).await.unwrap();
    }
    let spec = NemesisSpec {
        faults: FaultKind::ALL.to_vec(),
        ..Default::default()
    };
    let mut nem = Nemesis::new(&spec, 7, names.clone());
    let ctx = NemesisContext {
        cluster: &cluster,
        clock_dir: clock.path(),
        leader: Some("n2".into()),
        clock_supported: Ok(()),
    };

    // Someone else's rule in n2's INPUT chain must survive every heal.
    let foreign = cluster
        .exec(
            "n2",
            &["iptables", "-A", "INPUT", "-s", "203.0.113.9", "-j", "DROP"],
        )
        .await
        .unwrap();
    assert_eq!(foreign.code, 0, "{}", foreign.stderr);

    // Partition: isolate n1.
    let t = Instant::now();
    let op = only(
        nem.apply(
            &Action::Start(Fault::Partition {
                kind: PartitionKind::IsolateOne,
                order: names.clone(),
            }),
            &ctx,
        )
        .await
        .unwrap(),
    );
    let install = t.elapsed();
    println!("partition install latency (apply call to return): {install:?}");
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(op.f, "start-partition");
    assert_eq!(op.value["kind"], "isolate-one");
    assert_eq!(op.value["grudge"]["n1"], serde_json::json!(["n2", "n3"]));
    assert_eq!(nem.active(), vec!["partition:isolate-one".to_string()]);
    let m = reach_matrix(&cluster).await;
    for other in ["n2", "n3"] {
        assert!(!m[&("n1".into(), other.into())], "n1 still reaches {other}");
        assert!(!m[&(other.into(), "n1".into())], "{other} still reaches n1");
    }
    assert!(m[&("n2".into(), "n3".into())] && m[&("n3".into(), "n2".into())]);

    let t = Instant::now();
    let op = only(
        nem.apply(&Action::Stop(FaultKind::Partition), &ctx)
            .await
            .unwrap(),
    );
    println!("partition stop latency: {:?}", t.elapsed());
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    let m = reach_matrix(&cluster).await;
    assert!(
        m.values().all(|r| *r),
        "after the stop everyone reaches everyone: {m:?}"
    );
    assert!(nem.active().is_empty());

    // Handover: isolate n1, then move the cut to n3 in one step per node; n1 rejoins at once.
    let handover = NemesisSpec {
        faults: vec![FaultKind::Partition],
        handover: true,
        ..Default::default()
    };
    let mut hand = Nemesis::new(&handover, 7, names.clone());
    let isolate_first = |order: &[&str]| {
        Action::Start(Fault::Partition {
            kind: PartitionKind::IsolateOne,
            order: order.iter().map(|n| n.to_string()).collect(),
        })
    };
    let op = only(
        hand.apply(&isolate_first(&["n1", "n2", "n3"]), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    let ops = hand
        .apply(&isolate_first(&["n3", "n1", "n2"]), &ctx)
        .await
        .unwrap();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(
        (ops[0].f.as_str(), ops[1].f.as_str()),
        ("stop-partition", "start-partition")
    );
    assert_eq!(ops[0].value["handover"], true);
    assert_eq!(
        ops[1].value["grudge"]["n3"],
        serde_json::json!(["n1", "n2"])
    );
    assert!(
        ops.iter().all(|o| o.outcome == Outcome::Installed),
        "{ops:?}"
    );
    let m = reach_matrix(&cluster).await;
    for other in ["n1", "n2"] {
        assert!(!m[&("n3".into(), other.into())], "n3 still reaches {other}");
        assert!(!m[&(other.into(), "n3".into())], "{other} still reaches n3");
    }
    assert!(
        m[&("n1".into(), "n2".into())] && m[&("n2".into(), "n1".into())],
        "the first cut was not lifted: {m:?}"
    );
    let op = only(
        hand.apply(&Action::Stop(FaultKind::Partition), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    let m = reach_matrix(&cluster).await;
    assert!(m.values().all(|r| *r), "after the handover's stop: {m:?}");

    // After a failpoint crash of n1, the leader of the moment (n2) is isolated, and the op
    // names the crash; a crash of the leader itself is skipped.
    let op = nem.isolate_leader_after_crash("n1", &ctx).await.unwrap();
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(op.value["kind"], "isolate-leader");
    assert_eq!(op.value["after-crash"], "n1");
    assert_eq!(op.value["grudge"]["n2"], serde_json::json!(["n1", "n3"]));
    assert!(
        !reaches(&cluster, "n2", "n3").await,
        "the leader is cut off"
    );
    assert!(reaches(&cluster, "n1", "n3").await);
    // n3 restarts during the isolation: a fresh network namespace, without its rule against
    // n2, until `reinstall_partition` puts it back.
    let chain = |node: &'static str| {
        let cluster = &cluster;
        async move {
            let out = cluster
                .exec(node, &["sh", "-c", "iptables -S FAULTLINE 2>&1 || true"])
                .await
                .unwrap();
            out.stdout
        }
    };
    let from_n2 = format!("-s {}/32 -j DROP", cluster.node("n2").unwrap().ip);
    assert!(
        chain("n3").await.contains(&from_n2),
        "{}",
        chain("n3").await
    );
    cluster.kill("n3", "SIGKILL").await.unwrap();
    cluster.start("n3").await.unwrap();
    assert!(
        !chain("n3").await.contains(&from_n2),
        "{}",
        chain("n3").await
    );
    let op = nem
        .reinstall_partition("n3", &ctx)
        .await
        .unwrap()
        .expect("the isolation has rules for n3");
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(op.f, "reinstall-partition");
    assert!(
        chain("n3").await.contains(&from_n2),
        "{}",
        chain("n3").await
    );
    let op = only(
        nem.apply(&Action::Stop(FaultKind::Partition), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert!(reaches(&cluster, "n2", "n3").await);
    let op = nem.isolate_leader_after_crash("n2", &ctx).await.unwrap();
    assert!(matches!(op.outcome, Outcome::Skipped(_)), "{op:?}");
    assert!(nem.active().is_empty());

    // Packet loss with probability 1 on n2 cuts it off; its stop restores it.
    let t = Instant::now();
    let op = only(
        nem.apply(
            &Action::Start(Fault::Loss {
                nodes: vec!["n2".into()],
                probability: 1.0,
            }),
            &ctx,
        )
        .await
        .unwrap(),
    );
    println!("loss install latency: {:?}", t.elapsed());
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert!(
        !reaches(&cluster, "n1", "n2").await,
        "n2 drops every packet"
    );
    let op = only(
        nem.apply(&Action::Stop(FaultKind::Loss), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert!(reaches(&cluster, "n1", "n2").await);

    // Clock: +1h on n1, as seen by a dynamically linked `date`.
    let op = only(
        nem.apply(
            &Action::Start(Fault::Clock(ClockPlan::Bump {
                offsets: BTreeMap::from([("n1".to_string(), 3600)]),
            })),
            &ctx,
        )
        .await
        .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(op.value["offsets"]["n1"], "+3600s");
    let skew = epoch_seconds(&cluster, "n1").await - epoch_seconds(&cluster, "n2").await;
    assert!((3595..=3605).contains(&skew), "n1 is {skew} s ahead of n2");
    let op = only(
        nem.apply(&Action::Stop(FaultKind::Clock), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    let skew = epoch_seconds(&cluster, "n1").await - epoch_seconds(&cluster, "n2").await;
    assert!(skew.abs() <= 5, "after the reset n1 is {skew} s off");
    // Strobe: n3's clock file flips between +0s and -5s until the stop, which leaves +0s.
    let op = only(
        nem.apply(
            &Action::Start(Fault::Clock(ClockPlan::Strobe {
                node: "n3".into(),
                delta: -5,
                period_ms: 100,
            })),
            &ctx,
        )
        .await
        .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(nem.active(), vec!["clock-strobe:n3".to_string()]);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(45)).await;
        seen.insert(nemesis::read_offset(clock.path(), "n3").unwrap());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["+0s", "-5s"]);
    let op = only(
        nem.apply(&Action::Stop(FaultKind::Clock), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(nemesis::read_offset(clock.path(), "n3").unwrap(), "+0s");
    assert!(nem.active().is_empty());
    // A binary libfaketime cannot reach is skipped, with the caller's reason.
    let etcd_like = NemesisContext {
        clock_supported: Err("etcd is a Go binary; libfaketime cannot reach it".into()),
        leader: None,
        ..ctx
    };
    let op = only(
        nem.apply(&Action::Start(Fault::Clock(ClockPlan::Reset)), &etcd_like)
            .await
            .unwrap(),
    );
    assert!(
        matches!(&op.outcome, Outcome::Skipped(r) if r.contains("Go binary")),
        "{op:?}"
    );
    let ctx = NemesisContext {
        leader: Some("n2".into()),
        clock_supported: Ok(()),
        ..etcd_like
    };

    // Pause the leader (n2); a partition that needs n2 meanwhile is indeterminate, and quick.
    let t = Instant::now();
    let op = only(
        nem.apply(
            &Action::Start(Fault::Pause {
                target: PauseTarget::Leader,
                nodes: Targets::Leader,
            }),
            &ctx,
        )
        .await
        .unwrap(),
    );
    println!("pause latency: {:?}", t.elapsed());
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(op.value["nodes"], serde_json::json!(["n2"]));
    assert_eq!(cluster.state("n2").await.unwrap(), "paused");
    let t = Instant::now();
    let op = only(
        nem.apply(
            &Action::Start(Fault::Partition {
                kind: PartitionKind::IsolateOne,
                order: vec!["n2".into(), "n1".into(), "n3".into()],
            }),
            &ctx,
        )
        .await
        .unwrap(),
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        matches!(&op.outcome, Outcome::Indeterminate(r) if r.contains("n2")),
        "{op:?}"
    );
    let healed = nem.heal_all(&ctx).await.unwrap();
    let fs: Vec<&str> = healed.iter().map(|o| o.f.as_str()).collect();
    assert_eq!(fs, vec!["resume", "stop-partition"], "{healed:?}");
    assert!(
        healed.iter().all(|o| o.outcome == Outcome::Installed),
        "{healed:?}"
    );
    assert_eq!(cluster.state("n2").await.unwrap(), "running");
    let m = reach_matrix(&cluster).await;
    assert!(
        m.values().all(|r| *r),
        "after heal_all everyone reaches everyone: {m:?}"
    );
    let input = cluster
        .exec("n2", &["iptables", "-S", "INPUT"])
        .await
        .unwrap();
    assert!(
        input.stdout.contains("-s 203.0.113.9/32 -j DROP"),
        "heal removed someone else's rule: {}",
        input.stdout
    );

    // Kill one node; heal_all starts it again.
    let t = Instant::now();
    let op = only(
        nem.apply(
            &Action::Start(Fault::Kill {
                target: nemesis::KillTarget::One,
                nodes: Targets::Nodes(vec!["n3".into()]),
            }),
            &ctx,
        )
        .await
        .unwrap(),
    );
    println!("kill latency: {:?}", t.elapsed());
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(cluster.state("n3").await.unwrap(), "exited");
    let healed = nem.heal_all(&ctx).await.unwrap();
    assert_eq!(healed.len(), 1, "{healed:?}");
    assert_eq!(
        (healed[0].f.as_str(), &healed[0].outcome),
        ("restart", &Outcome::Installed)
    );
    assert_eq!(cluster.state("n3").await.unwrap(), "running");
    assert!(
        nem.heal_all(&ctx).await.unwrap().is_empty(),
        "nothing left to heal"
    );

    // A node killed and restarted during a partition gets its side of it installed again.
    let op = nem.isolate_leader_after_crash("n1", &ctx).await.unwrap();
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    let kill = Action::Start(Fault::Kill {
        target: nemesis::KillTarget::One,
        nodes: Targets::Nodes(vec!["n3".into()]),
    });
    assert_eq!(
        only(nem.apply(&kill, &ctx).await.unwrap()).outcome,
        Outcome::Installed
    );
    let op = only(
        nem.apply(&Action::Stop(FaultKind::Kill), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(
        (op.f.as_str(), &op.outcome),
        ("restart", &Outcome::Installed)
    );
    let chain = cluster
        .exec("n3", &["iptables", "-S", "FAULTLINE"])
        .await
        .unwrap()
        .stdout;
    let from_n2 = format!("-s {}/32 -j DROP", cluster.node("n2").unwrap().ip);
    assert!(chain.contains(&from_n2), "{chain}");
    assert!(!reaches(&cluster, "n3", "n2").await, "the isolation holds");
    nem.heal_all(&ctx).await.unwrap();
    assert!(reaches(&cluster, "n3", "n2").await);

    // Delay: consistent with the probe (netem is absent on the machines we know).
    let probe = nem.probe_netem(&ctx).await.unwrap();
    let op = only(
        nem.apply(
            &Action::Start(Fault::Delay {
                nodes: names.clone(),
                delay_ms: 50,
                jitter_ms: 10,
            }),
            &ctx,
        )
        .await
        .unwrap(),
    );
    match &probe {
        Err(reason) => {
            println!("delay skipped: {reason}");
            assert!(reason.contains("netem"), "{reason}");
            assert_eq!(op.outcome, Outcome::Skipped(reason.clone()));
        }
        Ok(()) => {
            assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
            let qdisc = cluster
                .exec("n1", &["tc", "qdisc", "show", "dev", "eth0"])
                .await
                .unwrap();
            assert!(qdisc.stdout.contains("netem"), "{}", qdisc.stdout);
        }
    }
    let op = only(
        nem.apply(&Action::Stop(FaultKind::Delay), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(
        op.outcome.as_str(),
        if probe.is_ok() {
            "installed"
        } else {
            "skipped"
        }
    );
    let qdisc = cluster
        .exec("n1", &["tc", "qdisc", "show", "dev", "eth0"])
        .await
        .unwrap();
    assert!(!qdisc.stdout.contains("netem"), "{}", qdisc.stdout);

    drop(ctx);
    let removed = cluster.teardown().await.unwrap();
    guard.disarm();
    assert_eq!(removed.containers.len(), 3);
    assert_eq!(
        objects_of_run(&docker, &run_id).await.0,
        0,
        "teardown left containers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_damages_a_stopped_nodes_files_as_reported_and_the_stop_restarts_it() {
    use faultline::nemesis::CorruptKind;
    let _slot = crate::util::docker_slot().await;
    let docker = control::connect()
        .await
        .expect("a Docker engine must be running for this test");
    let image = node_image(&docker).await;
    let run_id = unique_run_id("corrupt");
    let mut guard = RunGuard::new(&run_id);
    let cluster = Cluster::create(&docker, &run_id).await.unwrap();
    for name in ["n1", "n2", "n3"] {
        let spec = NodeSpec {
            name: name.into(),
            image: image.clone(),
            entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
            data_dir: "/data".into(),
            ..Default::default()
        };
        cluster.start_node(spec).await.unwrap();
    }
    // A WAL segment of 4,096 known bytes (0x00) and a file no glob names.
    let setup =
        "head -c 4096 /dev/zero > /data/wal-0000000000000001.log && echo keep > /data/other";
    for n in ["n1", "n2", "n3"] {
        let out = cluster.exec(n, &["sh", "-c", setup]).await.unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let names: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
    let spec = NemesisSpec {
        faults: vec![FaultKind::Corrupt],
        corrupt_globs: vec!["wal-*.log".into()],
        ..Default::default()
    };
    // The corruptible minority is fixed by the seed: one of three nodes.
    let minority = nemesis::schedule::corruptible(5, &names);
    assert_eq!(minority.len(), 1);
    let victim = minority[0].clone();
    let clock = tempfile::tempdir().unwrap();
    let mut nem = Nemesis::new(&spec, 5, names.clone());
    let ctx = NemesisContext {
        cluster: &cluster,
        clock_dir: clock.path(),
        leader: None,
        clock_supported: Ok(()),
    };
    let op = only(
        nem.apply(
            &Action::Start(Fault::Corrupt {
                node: victim.clone(),
                kind: CorruptKind::Bitflip,
                seed: 9,
            }),
            &ctx,
        )
        .await
        .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(op.f, "start-corrupt");
    assert_eq!(
        cluster.state(&victim).await.unwrap(),
        "exited",
        "killed while damaged"
    );
    let files = op.value["report"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{op:?}");
    assert_eq!(files[0]["path"], "wal-0000000000000001.log");
    let flips: Vec<(u64, u64)> = files[0]["bitflips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect();
    assert_eq!(flips.len(), 2, "two bits by default: {flips:?}");

    let op = only(
        nem.apply(&Action::Stop(FaultKind::Corrupt), &ctx)
            .await
            .unwrap(),
    );
    assert_eq!(op.outcome, Outcome::Installed, "{op:?}");
    assert_eq!(op.f, "stop-corrupt");
    assert_eq!(cluster.state(&victim).await.unwrap(), "running");
    // The file differs from zeros in exactly the reported bits; the unnamed file is intact.
    let dump = cluster
        .exec(
            &victim,
            &["od", "-An", "-tu1", "-v", "/data/wal-0000000000000001.log"],
        )
        .await
        .unwrap();
    let bytes: Vec<u8> = dump
        .stdout
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(bytes.len(), 4096);
    let mut want = vec![0u8; 4096];
    for (offset, bit) in &flips {
        want[*offset as usize] ^= 1 << bit;
    }
    assert_eq!(bytes, want);
    let other = cluster
        .exec(&victim, &["cat", "/data/other"])
        .await
        .unwrap();
    assert_eq!(other.stdout.trim(), "keep");
    // The other nodes' files were not touched.
    for n in names.iter().filter(|n| **n != victim) {
        let out = cluster
            .exec(
                n,
                &[
                    "sh",
                    "-c",
                    "od -An -tu1 -v /data/wal-0000000000000001.log | tr -d ' 0\\n' | wc -c",
                ],
            )
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "0", "{n}'s segment changed");
    }

    control::clean(&docker, Some(&run_id)).await.unwrap();
    guard.disarm();
    assert_eq!(
        objects_of_run(&docker, &run_id).await,
        (0, 0, 0),
        "the helper container or the nodes stayed"
    );
}
