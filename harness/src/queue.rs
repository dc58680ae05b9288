//! The queue workload (NATS JetStream), as Jepsen's NATS test runs it: `concurrency` writers
//! publish unique values to one replicated stream and record each publish's ack; after the
//! faults, the heal and the recovery, every member's client drains the whole stream with a pull
//! consumer (the members of the end, when the `member` fault changed them).
//!
//! What is recorded (the contract with `faultline_checker`'s queue checker): `publish` (invoke
//! `{"writer": w, "n": k}`, `w` the writer's stable index, `k` its counter; ok adds the stream
//! sequence `"seq"`), and one `drain` per client (invoke `null`, ok: the messages read, in
//! stream order). This module never judges anything.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{Completion, Drained, NatsClient, NodeClient};
use crate::nemesis::member::LiveView;
use crate::runner::Recorder;
use crate::workload::Workload;

/// The NATS clients of a cluster, by node name.
fn nats_clients(clients: &[(String, NodeClient)]) -> anyhow::Result<Vec<(String, NatsClient)>> {
    NodeClient::all_as(
        clients,
        NodeClient::nats,
        "the NATS workloads need NATS clients",
    )
}

/// Starts the writers; they run until `stop`. Writer `i` publishes through the `i`-th member
/// of `view` (modulo their number), picked again when the members change (the `member` fault).
///
/// # Errors
/// When the clients are not NATS clients.
pub fn start(
    w: &Workload,
    seed: u64,
    view: &Arc<LiveView>,
    recorder: &Recorder,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    nats_clients(&view.clients())?;
    let pause = (w.rate > 0.0).then(|| w.concurrency as f64 / w.rate);
    let mut tasks = Vec::new();
    for i in 0..w.concurrency {
        let (view, recorder, stop) = (view.clone(), recorder.clone(), stop.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x0071_7565_7565 + i as u64));
        tasks.push(tokio::spawn(async move {
            let bind = || -> anyhow::Result<(u64, String, NatsClient)> {
                let (generation, picked) = view
                    .pick(i)
                    .ok_or_else(|| anyhow::anyhow!("no member left to publish to"))?;
                let (node, client) = nats_clients(&[picked])?.remove(0);
                Ok((generation, node, client))
            };
            let (mut generation, mut node, mut client) = bind()?;
            let mut process = i as u64;
            for n in 0u64.. {
                if !crate::generator::pace(&mut rng, pause, &stop).await {
                    return Ok(());
                }
                if view.generation() != generation {
                    (generation, node, client) = bind()?;
                }
                let value = json!({ "writer": i, "n": n });
                recorder.invoke(process, "publish", None, &value, &node)?;
                let completion = match client.enqueue(&value).await {
                    Ok(seq) => Completion::Ok(json!({ "writer": i, "n": n, "seq": seq })),
                    Err((e, true)) => Completion::Fail(e),
                    Err((e, false)) => Completion::Info(e),
                };
                recorder.complete(process, "publish", None, &value, &completion, &node)?;
                if matches!(completion, Completion::Info(_)) {
                    process = recorder.fresh_process();
                }
            }
            Ok(())
        }));
    }
    Ok(tasks)
}

/// Every client drains the stream, one after the other (a drain is a whole-stream read, so
/// running them at once would only load the cluster); each is one `drain` op.
///
/// # Errors
/// When the history cannot be written or the clients are not NATS clients.
pub async fn drain_all(
    w: &Workload,
    clients: &[(String, NodeClient)],
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs_f64(w.queue.as_ref().map_or(60.0, |q| q.drain_timeout));
    for (node, client) in nats_clients(clients)? {
        let process = recorder.fresh_process();
        recorder.invoke(process, "drain", None, &Value::Null, &node)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let completion = match client.drain(deadline).await {
            Ok(Drained::Read(messages)) => Completion::Ok(Value::Array(messages)),
            Ok(Drained::Missing(why)) => {
                // The stream itself is gone: every message in it is.
                eprintln!("faultline: {node} has no queue stream any more: {why}");
                recorder.complete_ok_noted(
                    process,
                    "drain",
                    &json!([]),
                    &format!("stream not found, read as empty: {why}"),
                    &node,
                )?;
                continue;
            }
            Ok(Drained::Stalled { read, at, last }) => {
                let why = format!(
                    "stalled: no message past stream sequence {at} for {} s, although the stream's last sequence was {last}",
                    crate::client::DRAIN_STALL.as_secs()
                );
                eprintln!("faultline: the drain through {node} {why}");
                recorder.complete_ok_noted(process, "drain", &Value::Array(read), &why, &node)?;
                continue;
            }
            // A read changes nothing: a drain without an answer did not happen.
            Err(e) => Completion::Fail(e),
        };
        recorder.complete(process, "drain", None, &Value::Null, &completion, &node)?;
    }
    Ok(())
}

/// Creates what a NATS workload needs before its clients start, through the first server that
/// answers (retried for up to 30 s while the cluster settles): the queue stream, or the KV
/// bucket with the workload's read mode; one replica per node unless `[queue] replicas` says.
///
/// # Errors
/// What the last attempt said.
pub async fn prepare_nats(w: &Workload, clients: &[(String, NodeClient)]) -> anyhow::Result<()> {
    let members = nats_clients(clients)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    for attempt in 0usize.. {
        let (_, client) = &members[attempt % members.len()];
        let r = match &w.queue {
            Some(q) => {
                let replicas = if q.replicas == 0 { w.nodes } else { q.replicas };
                client.create_queue(replicas).await
            }
            None => client.create_bucket(w.nodes, w.node.nats_reads).await,
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("could not create the NATS stream: {last}")
}
