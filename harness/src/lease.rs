//! The lease workload (etcd): leases granted, kept alive through members that did not lead at
//! the grant, with keys attached and read back, as Kubernetes keeps its node heartbeats and
//! leader-election leases.
//!
//! Each of `[lease] leases` slots is one client task: it grants a lease of `ttl` seconds through
//! a member, puts `keys-per-lease` keys attached to it, then every `keepalive-interval` sends a
//! keepalive on one stream through its keepalive member (a follower at grant time, with
//! `keepalive-via = "followers"`), and every `get-interval` reads its keys through the members
//! in turn. A keepalive answered with TTL 0 says the lease is gone; the slot then grants a new
//! one. After `lifetime` seconds (0: never) the slot lets its lease go and grants a new one.
//!
//! What is recorded (the contract with `faultline_checker::lease`): `lease-grant` (invoke
//! `{"ttl": t}`, ok `{"lease": id, "ttl": t}`), `put` (invoke `{"value": v, "lease": id}`, ok
//! adds `"revision"`), `lease-keepalive` (invoke `{"lease": id}`, ok `{"lease": id, "ttl": t}`)
//! and `get` (invoke `null`, ok `{"value", "lease", "mod-revision"}` or `null`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Completion, EtcdClient, KeepAlive, NodeClient};
use crate::db;
use crate::runner::Recorder;
use crate::workload::{KeepaliveVia, LeaseSpec, Workload};

/// Starts one task per lease slot of `w`'s `[lease]`; they run until `stop`.
///
/// # Errors
/// When the workload has no `[lease]`, or the clients are not etcd gRPC clients.
pub async fn start(
    w: &Workload,
    clients: &[(String, NodeClient)],
    status_clients: &[(String, NodeClient)],
    recorder: &Recorder,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let members = Arc::new(crate::watch::etcd_members(clients)?);
    let spec: Arc<LeaseSpec> = Arc::new(
        w.lease
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a lease workload has [lease]"))?,
    );
    let timeout = Duration::from_secs_f64(w.op_timeout);
    let mut tasks = Vec::new();
    for slot in 0..spec.leases {
        let slot = Slot {
            index: slot,
            process: recorder.fresh_process(),
            members: members.clone(),
            status: status_clients.to_vec(),
            spec: spec.clone(),
            recorder: recorder.clone(),
            timeout,
            values: 0,
        };
        tasks.push(tokio::spawn(slot.run(stop.clone())));
    }
    Ok(tasks)
}

/// One lease at a time, kept alive, its keys read back.
struct Slot {
    index: usize,
    process: u64,
    members: Arc<Vec<(String, EtcdClient)>>,
    status: Vec<(String, NodeClient)>,
    spec: Arc<LeaseSpec>,
    recorder: Recorder,
    timeout: Duration,
    values: u64,
}

/// A lease being kept alive.
struct Held {
    id: i64,
    /// The TTL granted.
    ttl: i64,
    keys: Vec<String>,
    keepalive_member: usize,
    stream: Option<KeepAlive>,
}

impl Slot {
    /// Records an invocation, waits for the call, records its completion; after an `info` the
    /// slot continues under a new process.
    async fn op(
        &mut self,
        f: &str,
        key: Option<&str>,
        invoked: Value,
        member: usize,
        call: impl Future<Output = Completion>,
    ) -> anyhow::Result<Completion> {
        let node = self.members[member].0.clone();
        self.recorder
            .invoke(self.process, f, key, &invoked, &node)?;
        let completion = call.await;
        self.recorder
            .complete(self.process, f, key, &invoked, &completion, &node)?;
        if matches!(completion, Completion::Info(_)) {
            self.process = self.recorder.fresh_process();
        }
        Ok(completion)
    }

    /// The members to keep this slot's next lease alive through: not the leader of the moment
    /// (with `keepalive-via = "followers"`), spread over slots.
    async fn keepalive_member(&self) -> usize {
        let n = self.members.len();
        let mut candidates: Vec<usize> = (0..n).collect();
        if self.spec.keepalive_via == KeepaliveVia::Followers {
            let leader = db::leader_of(&db::statuses(&self.status).await);
            candidates.retain(|&i| Some(&self.members[i].0) != leader.as_ref());
        }
        candidates[self.index % candidates.len()]
    }

    async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut grants: usize = 0;
        while !stop.is_cancelled() {
            let via = self.keepalive_member().await;
            grants += 1;
            let Some(mut held) = self.grant(via, grants).await? else {
                pause(&stop, Duration::from_millis(500)).await;
                continue;
            };
            self.keep(&mut held, &stop).await?;
        }
        Ok(())
    }

    /// Grants a lease through `via` and attaches its keys; `None` when the grant did not
    /// succeed.
    async fn grant(&mut self, via: usize, grants: usize) -> anyhow::Result<Option<Held>> {
        let client = self.members[via].1.clone();
        let ttl = self.spec.ttl;
        let granted = self
            .op("lease-grant", None, json!({ "ttl": ttl }), via, async {
                match client.lease_grant(ttl).await {
                    Ok((id, ttl)) => Completion::Ok(json!({ "lease": id, "ttl": ttl })),
                    Err(e) => e.completion(),
                }
            })
            .await?;
        let Completion::Ok(v) = granted else {
            return Ok(None);
        };
        let id = v["lease"].as_i64().unwrap_or(0);
        let mut keys = Vec::new();
        for j in 0..self.spec.keys_per_lease {
            let key = format!("{}s{}-g{grants}-k{j}", self.spec.prefix, self.index);
            if matches!(self.put(&key, id, via).await?, Completion::Ok(_)) {
                keys.push(key);
            }
        }
        Ok(Some(Held {
            id,
            ttl: v["ttl"].as_i64().unwrap_or(ttl),
            keys,
            keepalive_member: via,
            stream: None,
        }))
    }

    /// Puts a fresh value at `key`, attached to `lease`, through member `via`.
    async fn put(&mut self, key: &str, lease: i64, via: usize) -> anyhow::Result<Completion> {
        let client = self.members[via].1.clone();
        self.values += 1;
        let value = self.values;
        let invoked = json!({ "value": value, "lease": lease });
        self.op("put", Some(key), invoked, via, async {
            match client.put(key, &json!(value), Some(lease)).await {
                Ok(r) => Completion::Ok(json!({ "value": value, "lease": lease, "revision": r })),
                Err(e) => e.completion(),
            }
        })
        .await
    }

    /// Keeps `held` alive and reads its keys until the lease is gone, its lifetime is over or
    /// the run ends.
    async fn keep(&mut self, held: &mut Held, stop: &CancellationToken) -> anyhow::Result<()> {
        let started = Instant::now();
        let lifetime = (self.spec.lifetime > 0.0)
            .then(|| started + Duration::from_secs_f64(self.spec.lifetime));
        let keepalive_every = Duration::from_secs_f64(self.spec.keepalive_interval);
        let get_every = Duration::from_secs_f64(self.spec.get_interval);
        let put_every =
            (self.spec.put_interval > 0.0).then(|| Duration::from_secs_f64(self.spec.put_interval));
        let mut next_keepalive = started + keepalive_every;
        let mut next_get = started;
        let mut next_put = put_every.map(|d| started + d);
        let mut reader = self.index;
        loop {
            let next = next_keepalive
                .min(next_get)
                .min(next_put.unwrap_or(next_get));
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(next) => {}
            }
            if lifetime.is_some_and(|end| Instant::now() >= end) {
                // Let it go: no more keepalives; it expires by itself.
                return Ok(());
            }
            if Instant::now() >= next_keepalive {
                next_keepalive = Instant::now() + keepalive_every;
                if self.keepalive(held).await? {
                    return Ok(());
                }
            }
            if let (Some(at), Some(every)) = (next_put, put_every)
                && Instant::now() >= at
            {
                next_put = Some(Instant::now() + every);
                for key in held.keys.clone() {
                    self.put(&key, held.id, held.keepalive_member).await?;
                }
            }
            if Instant::now() >= next_get && !held.keys.is_empty() {
                next_get = Instant::now() + get_every;
                reader = (reader + 1) % self.members.len();
                for key in held.keys.clone() {
                    self.get(&key, reader).await?;
                }
            }
        }
    }

    /// One keepalive; true when etcd answered that the lease is gone.
    async fn keepalive(&mut self, held: &mut Held) -> anyhow::Result<bool> {
        let via = held.keepalive_member;
        let client = self.members[via].1.clone();
        let (id, ttl, timeout) = (held.id, held.ttl, self.timeout);
        let mut stream = held.stream.take();
        let completion = self
            .op(
                "lease-keepalive",
                None,
                json!({ "lease": id }),
                via,
                async {
                    let answer = match stream.as_mut() {
                        Some(s) => s.keep_alive(timeout).await,
                        None => match client.lease_keepalive_open(id).await {
                            Ok(s) if s.gone() => Ok(0),
                            Ok(s) => {
                                stream = Some(s);
                                // Opening sent the first keepalive and etcd answered a positive
                                // TTL, which the client library does not pass on: a keepalive
                                // renews to the granted TTL.
                                Ok(ttl)
                            }
                            Err(e) => Err(e),
                        },
                    };
                    match answer {
                        Ok(ttl) => Completion::Ok(json!({ "lease": id, "ttl": ttl })),
                        Err(e) => {
                            stream = None;
                            e.completion()
                        }
                    }
                },
            )
            .await?;
        held.stream = stream;
        Ok(matches!(&completion, Completion::Ok(v) if v["ttl"].as_i64().unwrap_or(0) <= 0))
    }

    async fn get(&mut self, key: &str, member: usize) -> anyhow::Result<()> {
        let client = self.members[member].1.clone();
        self.op("get", Some(key), Value::Null, member, async {
            match client.get(key).await {
                Ok(None) => Completion::Ok(Value::Null),
                Ok(Some((value, lease, rev))) => {
                    Completion::Ok(json!({ "value": value, "lease": lease, "mod-revision": rev }))
                }
                // A read changes nothing: without an answer it did not happen.
                Err(e) => Completion::Fail(e.reason),
            }
        })
        .await?;
        Ok(())
    }
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
