//! The watch workload (etcd): writers put and delete keys under a prefix and record the revision
//! of every acknowledged write; watchers on every member follow the prefix as a Kubernetes
//! controller does, and the history records every response they get.
//!
//! A watcher opens its first watch from revision 1, from `older-by` revisions back, from now or
//! from `future-by` revisions ahead (`[watch] from`, round robin), asks for a progress
//! notification right after the watch is created and then every `progress-interval`, and when
//! its stream breaks it opens a new one from the revision after the last one it knows it has
//! seen everything up to (its last event's, or the last progress notification's), as a
//! controller resumes. A watch canceled by a compaction starts again from now (`relist`).
//!
//! What is recorded (the contract with `faultline_checker::watch`): writers' `put` (invoke value
//! `{"value": n}`, ok value `{"value": n, "revision": r}`) and `delete` (invoke `null`, ok
//! `{"revision": r, "deleted": d}`); watchers' lines with `process: "watch"`: `watch-open`,
//! `watch-created`, `watch-events`, `watch-progress`, `watch-canceled`, `watch-broken` and
//! `watch-closed`, each with the watcher, its member (`node`) and the stream number.
//!
//! This module never judges anything: the checker does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{Completion, EtcdClient, NodeClient, classify_error, event_json};
use crate::runner::Recorder;
use crate::workload::{WatchFrom, WatchSpec, Workload};

/// The etcd clients of a cluster, by member name.
pub(crate) fn etcd_members(
    clients: &[(String, NodeClient)],
) -> anyhow::Result<Vec<(String, EtcdClient)>> {
    NodeClient::all_as(
        clients,
        NodeClient::etcd,
        "the watch and lease workloads need etcd's gRPC client",
    )
}

/// Fills the history with `prefill` puts, then starts the writers, the watchers and the
/// compactor of `w`'s `[watch]`; they run until `stop`. Returns their tasks.
///
/// # Errors
/// When the history cannot be written, the workload has no `[watch]`, or the clients are not
/// etcd gRPC clients.
pub async fn start(
    w: &Workload,
    seed: u64,
    clients: &[(String, NodeClient)],
    recorder: &Recorder,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let members = etcd_members(clients)?;
    let spec: Arc<WatchSpec> = Arc::new(w.watch.clone().context("a watch workload has [watch]")?);
    let values = Arc::new(AtomicU64::new(0));

    // History for the `first` and `older` watchers to replay, written by the writers' processes.
    let mut prefill = Vec::new();
    let per_writer = spec.prefill.div_ceil(w.concurrency as u64);
    for i in 0..w.concurrency {
        let (node, client) = members[i % members.len()].clone();
        let (spec, values, recorder) = (spec.clone(), values.clone(), recorder.clone());
        let n = per_writer.min(spec.prefill.saturating_sub(per_writer * i as u64));
        prefill.push(tokio::spawn(async move {
            let mut writer = Writer {
                process: i as u64,
                node,
                client,
                spec,
                values,
                recorder,
                rng: ChaCha8Rng::seed_from_u64(seed ^ (0x77_7269_7465 + i as u64)),
                writes: 0,
            };
            for _ in 0..n {
                writer.put().await?;
            }
            anyhow::Ok(writer)
        }));
    }
    let mut writers = Vec::new();
    for p in prefill {
        writers.push(p.await.context("a prefill task failed")??);
    }

    let mut tasks = Vec::new();
    let mut k = 0;
    for (node, client) in &members {
        for _ in 0..spec.watchers_per_member {
            let from = spec.from[k % spec.from.len()];
            k += 1;
            let watcher = Watcher {
                id: format!("w{k}"),
                node: node.clone(),
                client: client.clone(),
                from,
                spec: spec.clone(),
                recorder: recorder.clone(),
            };
            tasks.push(tokio::spawn(watcher.run(stop.clone())));
        }
    }

    let pause = (w.rate > 0.0).then(|| w.concurrency as f64 / w.rate);
    for writer in writers {
        tasks.push(tokio::spawn(writer.run(pause, stop.clone())));
    }

    if spec.compact_interval > 0.0 {
        let (client, recorder) = (members[0].1.clone(), recorder.clone());
        let (every, keep, prefix) = (
            spec.compact_interval,
            spec.compact_keep,
            spec.prefix.clone(),
        );
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs_f64(every)) => {}
                }
                let Ok(current) = client.current_revision(&prefix).await else {
                    continue;
                };
                let to = current - keep;
                if to > 1 {
                    let outcome = match client.compact(to).await {
                        Ok(()) => "ok".to_string(),
                        Err(e) => e.reason,
                    };
                    recorder
                        .harness_action("compact", &json!({"revision": to, "outcome": outcome}))?;
                }
            }
        }));
    }
    Ok(tasks)
}

/// One writer: puts (a value unique in the run) and deletes on random keys under the prefix.
struct Writer {
    process: u64,
    node: String,
    client: EtcdClient,
    spec: Arc<WatchSpec>,
    values: Arc<AtomicU64>,
    recorder: Recorder,
    rng: ChaCha8Rng,
    writes: u64,
}

impl Writer {
    fn key(&mut self) -> String {
        format!(
            "{}k{}",
            self.spec.prefix,
            self.rng.random_range(0..self.spec.keys)
        )
    }

    async fn run(mut self, pause: Option<f64>, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            if !crate::generator::pace(&mut self.rng, pause, &stop).await {
                return Ok(());
            }
            self.writes += 1;
            let every = u64::from(self.spec.delete_every);
            if every > 0 && self.writes.is_multiple_of(every) {
                self.delete().await?;
            } else {
                self.put().await?;
            }
        }
    }

    async fn put(&mut self) -> anyhow::Result<()> {
        let key = self.key();
        let v = self.values.fetch_add(1, Ordering::Relaxed);
        let invoked = json!({ "value": v });
        self.recorder
            .invoke(self.process, "put", Some(&key), &invoked, &self.node)?;
        let completion = match self.client.put(&key, &json!(v), None).await {
            Ok(revision) => Completion::Ok(json!({ "value": v, "revision": revision })),
            Err(e) => e.completion(),
        };
        self.finish("put", &key, &invoked, &completion)
    }

    async fn delete(&mut self) -> anyhow::Result<()> {
        let key = self.key();
        self.recorder
            .invoke(self.process, "delete", Some(&key), &Value::Null, &self.node)?;
        let completion = match self.client.delete(&key).await {
            Ok((revision, deleted)) => {
                Completion::Ok(json!({ "revision": revision, "deleted": deleted }))
            }
            Err(e) => e.completion(),
        };
        self.finish("delete", &key, &Value::Null, &completion)
    }

    fn finish(
        &mut self,
        f: &str,
        key: &str,
        invoked: &Value,
        completion: &Completion,
    ) -> anyhow::Result<()> {
        self.recorder
            .complete(self.process, f, Some(key), invoked, completion, &self.node)?;
        if matches!(completion, Completion::Info(_)) {
            self.process = self.recorder.fresh_process();
        }
        Ok(())
    }
}

/// One watcher bound to one member, across the streams it opens.
struct Watcher {
    id: String,
    node: String,
    client: EtcdClient,
    from: WatchFrom,
    spec: Arc<WatchSpec>,
    recorder: Recorder,
}

/// How a stream of a watcher ended.
enum Ended {
    /// The run is over.
    Stopped,
    /// Broken (an error, or the server closed it): resume.
    Broken,
    /// Canceled by the server; with a compaction the watcher starts again from now.
    Canceled { compacted: bool },
}

impl Watcher {
    fn line(
        &self,
        f: &str,
        stream: u64,
        mut value: Value,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        value["watcher"] = json!(self.id);
        value["stream"] = json!(stream);
        self.recorder.watch(f, &self.node, &value, error)
    }

    async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        // The revision up to which this watcher has seen every event (0: none yet).
        let mut covered: i64 = 0;
        let mut relist = false;
        for stream in 1u64.. {
            if stop.is_cancelled() {
                return Ok(());
            }
            let (from, start) = if stream == 1 {
                match self.first_start().await {
                    Some(s) => s,
                    None => {
                        // No answer from the member yet: try again shortly.
                        self.line(
                            "watch-broken",
                            stream,
                            json!({}),
                            Some("no current revision"),
                        )?;
                        backoff(&stop).await;
                        continue;
                    }
                }
            } else if relist || covered == 0 && self.from == WatchFrom::Now {
                ("relist", 0)
            } else if covered == 0 {
                // Broken before it saw anything: its first start again.
                match self.first_start().await {
                    Some((_, s)) => ("resume", s),
                    None => {
                        backoff(&stop).await;
                        continue;
                    }
                }
            } else {
                ("resume", covered + 1)
            };
            relist = false;
            self.line(
                "watch-open",
                stream,
                json!({ "from": from, "start-revision": start, "prefix": self.spec.prefix }),
                None,
            )?;
            let opened = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = self.client.watch(&self.spec.prefix, start) => r,
            };
            let ws = match opened {
                Ok(ws) => ws,
                Err(e) => {
                    self.line("watch-broken", stream, json!({}), Some(&e.reason))?;
                    backoff(&stop).await;
                    continue;
                }
            };
            if start > 0 && covered == 0 {
                covered = start - 1;
            }
            match self.follow(ws, stream, start, &mut covered, &stop).await? {
                Ended::Stopped => return Ok(()),
                Ended::Broken => backoff(&stop).await,
                Ended::Canceled { compacted } => relist = compacted,
            }
        }
        Ok(())
    }

    /// The first watch's start: `(from, start revision)`; `None` when the member does not
    /// answer.
    async fn first_start(&self) -> Option<(&'static str, i64)> {
        let from = self.from.as_str();
        let start = match self.from {
            WatchFrom::First => 1,
            WatchFrom::Now => 0,
            WatchFrom::Older => {
                let r = self.client.current_revision(&self.spec.prefix).await.ok()?;
                (r - self.spec.older_by).max(1)
            }
            WatchFrom::Future => {
                let r = self.client.current_revision(&self.spec.prefix).await.ok()?;
                r + self.spec.future_by
            }
        };
        Some((from, start))
    }

    /// Reads one stream until it ends, recording every response and asking for progress.
    async fn follow(
        &self,
        mut ws: etcd_client::WatchStream,
        stream: u64,
        start: i64,
        covered: &mut i64,
        stop: &CancellationToken,
    ) -> anyhow::Result<Ended> {
        let every = (self.spec.progress_interval > 0.0)
            .then(|| Duration::from_secs_f64(self.spec.progress_interval));
        let mut ticker = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut requests: u64 = 0;
        let mut created = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    self.line("watch-closed", stream, json!({ "progress-requests": requests }), None)?;
                    return Ok(Ended::Stopped);
                }
                _ = ticker.tick(), if every.is_some() && created => {
                    if let Err(e) = ws.request_progress().await {
                        self.line("watch-broken", stream, json!({ "progress-requests": requests }), Some(&e.to_string()))?;
                        return Ok(Ended::Broken);
                    }
                    requests += 1;
                }
                message = ws.message() => {
                    let resp = match message {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            self.line("watch-broken", stream, json!({ "progress-requests": requests }), Some("stream closed by the server"))?;
                            return Ok(Ended::Broken);
                        }
                        Err(e) => {
                            let reason = classify_error(&e).reason;
                            self.line("watch-broken", stream, json!({ "progress-requests": requests }), Some(&reason))?;
                            return Ok(Ended::Broken);
                        }
                    };
                    let revision = resp.header().map_or(0, |h| h.revision());
                    if resp.created() {
                        created = true;
                        self.line("watch-created", stream, json!({ "watch-id": resp.watch_id(), "revision": revision }), None)?;
                        if start == 0 {
                            // A watch from now sends every event after the created revision.
                            *covered = (*covered).max(revision);
                        }
                        if every.is_some() {
                            ws.request_progress().await.ok();
                            requests += 1;
                        }
                    }
                    if resp.canceled() {
                        let compact = resp.compact_revision();
                        self.line(
                            "watch-canceled",
                            stream,
                            json!({ "revision": revision, "compact-revision": compact, "reason": resp.cancel_reason() }),
                            None,
                        )?;
                        return Ok(Ended::Canceled { compacted: compact > 0 });
                    }
                    if !resp.events().is_empty() {
                        let events: Vec<Value> = resp.events().iter().map(event_json).collect();
                        let last = resp
                            .events()
                            .iter()
                            .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
                            .max()
                            .unwrap_or(0);
                        *covered = (*covered).max(last);
                        self.line("watch-events", stream, json!({ "revision": revision, "events": events }), None)?;
                    } else if !resp.created() {
                        // No events, not created, not canceled: a progress notification.
                        *covered = (*covered).max(revision);
                        self.line("watch-progress", stream, json!({ "revision": revision }), None)?;
                    }
                }
            }
        }
    }
}

/// Waits a little before a watcher tries again, unless the run ends.
async fn backoff(stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
}
