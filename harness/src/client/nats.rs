//! The NATS client: JetStream through the `async-nats` crate, one connection per member, pinned to
//! it (`ignore_discovered_servers`: never one the server gossips).
//!
//! Registers live in a KV bucket: `read` gets the key's last entry (from the stream leader, or
//! with direct reads from any replica), `write` puts, `cas [from, to]` publishes `to` with the
//! header `Nats-Expected-Last-Subject-Sequence` set to the revision at which the key held `from`
//! (a KV `update`; `from` null: revision 0, a `create`). Revisions come from what reads and writes
//! returned, shared by every client of the run ([`Revisions`]); a cas from a value whose revision
//! nobody saw fails before anything is sent.
//!
//! The queue workload publishes to one stream and drains it with pull consumers.
//!
//! Classification (STYLE.md, "Outcomes are data"):
//! - an ack: `ok`;
//! - "wrong last sequence" (the expected revision did not match): a definite `fail`, recorded as
//!   `revision-mismatch` (not `cas-mismatch`: the value may still have been `from`, at a later
//!   revision);
//! - no responders (no JetStream server took the message: NATS answers 503, reported as "stream
//!   not found"): a definite `fail`;
//! - a timeout, a broken connection, or anything else after the publish was handed to the
//!   connection (async-nats sends buffered publishes after a reconnect): `info`;
//! - a read without an answer is a `fail`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv, stream};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::{Completion, HttpClient, Status};
use crate::generator::{F, Op};
use crate::workload::NatsReads;

/// Value -> the highest revision at which a key was seen holding it, per key, for every client of
/// a run: a cas needs the revision of its `from`.
#[derive(Debug, Default, Clone)]
pub struct Revisions(Arc<Mutex<HashMap<String, HashMap<String, u64>>>>);

impl Revisions {
    fn saw(&self, key: &str, value: &Value, revision: u64) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let r = all
            .entry(key.to_string())
            .or_default()
            .entry(value.to_string())
            .or_insert(0);
        *r = (*r).max(revision);
    }

    fn of(&self, key: &str, value: &Value) -> Option<u64> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.get(key)?.get(&value.to_string()).copied()
    }
}

/// A client bound to one NATS server.
#[derive(Clone)]
pub struct NatsClient {
    node: String,
    addr: String,
    monitor: String,
    http: HttpClient,
    timeout: Duration,
    bucket: String,
    queue: String,
    revisions: Revisions,
    conn: Arc<OnceCell<async_nats::Client>>,
    store: Arc<OnceCell<kv::Store>>,
}

/// What a drain of the queue stream found.
#[derive(Debug, Clone, PartialEq)]
pub enum Drained {
    /// The stream's messages, in stream order.
    Read(Vec<Value>),
    /// JetStream answered that it has no such stream (the reason).
    Missing(String),
    /// The consumer delivered nothing more for [`DRAIN_STALL`] although the stream reported
    /// messages up to `last`: what was read, and the highest sequence delivered. Jepsen's drain
    /// ends the same way (no more messages for a while); what was not delivered counts as
    /// lost, and the history says why.
    Stalled {
        /// The messages delivered, in stream order.
        read: Vec<Value>,
        /// The highest stream sequence delivered.
        at: u64,
        /// The stream's last sequence when the drain began.
        last: u64,
    },
}

/// How long a drain waits for a consumer that delivers nothing while the stream reports more
/// messages, before it calls the drain stalled (see [`Drained::Stalled`]).
pub const DRAIN_STALL: Duration = Duration::from_secs(10);

/// What a drain does after a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrainStep {
    /// Fetch again.
    More,
    /// Everything up to the stream's last sequence was delivered: a complete read.
    Done,
    /// Nothing more came for [`DRAIN_STALL`] although the stream reported more.
    Stalled,
}

/// After a fetch that delivered `got` messages: the drain is done when an empty fetch comes
/// after the stream's `last` sequence was seen, stalled when nothing came for [`DRAIN_STALL`]
/// (`since_progress`) short of it, and goes on otherwise.
fn drain_step(got: usize, seen_last: u64, last: u64, since_progress: Duration) -> DrainStep {
    if got > 0 {
        DrainStep::More
    } else if seen_last >= last {
        DrainStep::Done
    } else if since_progress >= DRAIN_STALL {
        DrainStep::Stalled
    } else {
        DrainStep::More
    }
}

/// The NATS client port, cluster port and monitoring port inside each container.
pub const CLIENT_PORT: u16 = 4222;
/// See [`CLIENT_PORT`].
pub const CLUSTER_PORT: u16 = 6222;
/// See [`CLIENT_PORT`].
pub const MONITOR_PORT: u16 = 8222;

impl NatsClient {
    /// A client of server `node`, whose client and monitoring ports ([`CLIENT_PORT`],
    /// [`MONITOR_PORT`]) are reached at `addr` and `monitor` (`host:port`); every call gives up
    /// after the HTTP client's timeout. `bucket` names the KV bucket of the register workloads,
    /// `queue` the queue stream.
    pub fn new(
        node: &str,
        (addr, monitor): (&str, &str),
        http: &HttpClient,
        bucket: &str,
        queue: &str,
        revisions: Revisions,
    ) -> Self {
        Self {
            node: node.to_string(),
            addr: format!("nats://{addr}"),
            monitor: format!("http://{monitor}"),
            http: http.clone(),
            timeout: http.timeout(),
            bucket: bucket.to_string(),
            queue: queue.to_string(),
            revisions,
            conn: Arc::new(OnceCell::new()),
            store: Arc::new(OnceCell::new()),
        }
    }

    /// The connection, made on first use; async-nats reconnects by itself afterwards.
    async fn conn(&self) -> Result<async_nats::Client, String> {
        let c = self
            .conn
            .get_or_try_init(|| async {
                async_nats::ConnectOptions::new()
                    .ignore_discovered_servers()
                    .connection_timeout(self.timeout)
                    .request_timeout(Some(self.timeout))
                    .max_reconnects(None)
                    .connect(self.addr.as_str())
                    .await
                    .map_err(|e| format!("connect to {}: {e}", self.addr))
            })
            .await?;
        Ok(c.clone())
    }

    async fn js(&self) -> Result<jetstream::Context, String> {
        Ok(jetstream::new(self.conn().await?))
    }

    /// The KV bucket's store, looked up once.
    async fn store(&self) -> Result<kv::Store, String> {
        let s = self
            .store
            .get_or_try_init(|| async {
                let js = self.js().await?;
                tokio::time::timeout(self.timeout, js.get_key_value(self.bucket.as_str()))
                    .await
                    .map_err(|_| format!("timeout looking up bucket {}", self.bucket))?
                    .map_err(|e| format!("bucket {}: {e}", self.bucket))
            })
            .await?;
        Ok(s.clone())
    }

    /// Creates the KV bucket (its stream `KV_<bucket>`, history 1) with `replicas` and the read
    /// mode; an existing bucket is kept.
    ///
    /// # Errors
    /// What NATS said.
    pub async fn create_bucket(&self, replicas: usize, reads: NatsReads) -> Result<(), String> {
        let config = stream::Config {
            name: format!("KV_{}", self.bucket),
            subjects: vec![format!("$KV.{}.>", self.bucket)],
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: reads == NatsReads::Direct,
            num_replicas: replicas,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        self.create_stream(config).await
    }

    /// Creates the queue stream with `replicas` (file storage, every message kept).
    ///
    /// # Errors
    /// What NATS said.
    pub async fn create_queue(&self, replicas: usize) -> Result<(), String> {
        let config = stream::Config {
            name: self.queue.clone(),
            subjects: vec![self.queue.clone()],
            num_replicas: replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        self.create_stream(config).await
    }

    /// Creates a stream, or keeps the one of that name; creation may wait for the meta leader
    /// to place the replicas, so it gets five per-op timeouts.
    async fn create_stream(&self, config: stream::Config) -> Result<(), String> {
        let name = config.name.clone();
        let js = self.js().await?;
        tokio::time::timeout(self.timeout * 5, js.get_or_create_stream(config))
            .await
            .map_err(|_| format!("timeout creating stream {name}"))?
            .map(|_| ())
            .map_err(|e| format!("creating stream {name}: {e}"))
    }

    /// Publishes `payload` to `subject` with `headers` and waits for the ack: its stream sequence.
    async fn publish(
        &self,
        subject: String,
        headers: async_nats::HeaderMap,
        payload: Bytes,
    ) -> Result<u64, (String, bool)> {
        let js = self.js().await.map_err(|e| (e, true))?;
        let exchange = async {
            let ack = js
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| classify_publish(e.kind(), &e.to_string()))?;
            ack.await
                .map(|a| a.sequence)
                .map_err(|e| classify_publish(e.kind(), &e.to_string()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err((format!("timeout after {:?}", self.timeout), false)),
        }
    }

    /// Invokes one register operation and classifies the answer. A cas is never retried.
    pub async fn invoke(&self, op: &Op) -> Completion {
        match op.f {
            F::Read => match self.read(&op.key).await {
                Ok(v) => Completion::Ok(v),
                Err(e) => Completion::Fail(e),
            },
            F::Write => {
                let r = self
                    .publish(
                        self.subject(&op.key),
                        async_nats::HeaderMap::new(),
                        Bytes::from(op.value.to_string()),
                    )
                    .await;
                self.complete_write(&op.key, &op.value, op.value.clone(), r)
            }
            F::Cas => {
                let (from, to) = (&op.value[0], &op.value[1]);
                let expected = if from.is_null() {
                    Some(0)
                } else {
                    self.revisions.of(&op.key, from)
                };
                let Some(expected) = expected else {
                    return Completion::Fail("no revision known for the expected value".into());
                };
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    expected.to_string().as_str(),
                );
                let r = self
                    .publish(self.subject(&op.key), headers, Bytes::from(to.to_string()))
                    .await;
                self.complete_write(&op.key, to, op.value.clone(), r)
            }
            F::Append | F::Txn | F::Transfer | F::BankRead => {
                Completion::Fail(format!("{} is not supported against NATS", op.f.name()))
            }
        }
    }

    fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.bucket)
    }

    fn complete_write(
        &self,
        key: &str,
        stored: &Value,
        result: Value,
        r: Result<u64, (String, bool)>,
    ) -> Completion {
        match r {
            Ok(revision) => {
                self.revisions.saw(key, stored, revision);
                Completion::Ok(result)
            }
            Err((e, true)) => Completion::Fail(e),
            Err((e, false)) => Completion::Info(e),
        }
    }

    /// The key's value (`null` when absent), remembering its revision.
    async fn read(&self, key: &str) -> Result<Value, String> {
        let store = self.store().await?;
        let entry = tokio::time::timeout(self.timeout, store.entry(key))
            .await
            .map_err(|_| format!("timeout after {:?}", self.timeout))?
            .map_err(|e| e.to_string())?;
        match entry {
            None => Ok(Value::Null),
            Some(e) if e.operation != kv::Operation::Put => Ok(Value::Null),
            Some(e) => {
                let v: Value = serde_json::from_slice(&e.value)
                    .map_err(|err| format!("a stored value that is not ours: {err}"))?;
                self.revisions.saw(key, &v, e.revision);
                Ok(v)
            }
        }
    }

    /// Publishes a queue message; the ack's stream sequence.
    ///
    /// # Errors
    /// The reason, and whether the message definitely was not stored.
    pub async fn enqueue(&self, payload: &Value) -> Result<u64, (String, bool)> {
        self.publish(
            self.queue.clone(),
            async_nats::HeaderMap::new(),
            Bytes::from(payload.to_string()),
        )
        .await
    }

    /// Reads the whole queue stream from its first message with an ephemeral pull consumer, in
    /// stream order: each message's JSON with its stream sequence as `seq`. Stops when a fetch
    /// comes back empty after the last sequence the stream reported, or when nothing more comes
    /// for [`DRAIN_STALL`] ([`Drained::Stalled`]); reaching `deadline` while messages still come
    /// is an error (a drain cut short by its own timeout would make the rest look lost). A stream
    /// that JetStream definitely does not have (error 10059, "stream not found") reads as
    /// [`Drained::Missing`]: that is an answer, not a failure to read.
    ///
    /// # Errors
    /// What NATS said.
    pub async fn drain(&self, deadline: tokio::time::Instant) -> Result<Drained, String> {
        use futures_util::StreamExt;
        // Looking the stream up and creating the consumer go through the meta leader, which may
        // still be settling after the faults: retried every second until the deadline.
        let (consumer, last) = loop {
            match self.open_drain().await {
                Ok(Ok(opened)) => break opened,
                Ok(Err(missing)) => return Ok(Drained::Missing(missing)),
                Err(e) if tokio::time::Instant::now() + Duration::from_secs(1) < deadline => {
                    tracing::debug!(node = %self.node, "drain not opened yet: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(format!("{e} (retried until the drain's deadline)")),
            }
        };
        let mut out = Vec::new();
        let mut seen_last = 0u64;
        let mut progress = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .map_err(|e| format!("fetching: {e}"))?;
            let mut got = 0usize;
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| format!("fetching: {e}"))?;
                let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                seen_last = seen_last.max(seq);
                let mut v: Value = serde_json::from_slice(&m.payload)
                    .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&m.payload)}));
                v["seq"] = json!(seq);
                out.push(v);
                got += 1;
            }
            if got > 0 {
                progress = tokio::time::Instant::now();
            }
            match drain_step(got, seen_last, last, progress.elapsed()) {
                DrainStep::More => {}
                DrainStep::Done => return Ok(Drained::Read(out)),
                DrainStep::Stalled => {
                    return Ok(Drained::Stalled {
                        read: out,
                        at: seen_last,
                        last,
                    });
                }
            }
        }
        // A partial read is no read: the checker would call everything after it lost.
        Err(format!(
            "drain deadline passed at stream sequence {seen_last} of {last} ({} messages read)",
            out.len()
        ))
    }

    /// The queue stream's last sequence and a fresh ephemeral pull consumer from its first
    /// message; `Ok(Err(why))` when JetStream answers that the stream does not exist (10059).
    async fn open_drain(
        &self,
    ) -> Result<Result<(jetstream::consumer::PullConsumer, u64), String>, String> {
        let js = self.js().await?;
        let found = tokio::time::timeout(self.timeout, js.get_stream(self.queue.as_str()))
            .await
            .map_err(|_| "timeout looking up the queue stream".to_string())?;
        let mut stream = match found {
            Ok(s) => s,
            Err(e) if e.to_string().contains("10059") => return Ok(Err(e.to_string())),
            Err(e) => return Err(format!("stream {}: {e}", self.queue)),
        };
        let last = tokio::time::timeout(self.timeout, stream.info())
            .await
            .map_err(|_| "timeout asking for the stream's state".to_string())?
            .map_err(|e| e.to_string())?
            .state
            .last_sequence;
        let consumer = tokio::time::timeout(
            self.timeout,
            stream.create_consumer(jetstream::consumer::pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| "timeout creating a pull consumer".to_string())?
        .map_err(|e| format!("creating a pull consumer: {e}"))?;
        Ok(Ok((consumer, last)))
    }

    /// The server's view from its monitoring endpoint (`/jsz`): it leads when it is the leader of
    /// the workload's stream (the KV bucket's or the queue's), or, before that stream exists, of
    /// the meta group. NATS has no term here: 0.
    ///
    /// # Errors
    /// What went wrong.
    pub async fn status(&self) -> Result<Status, String> {
        let body = self.jsz("acc=%24G&streams=true").await?;
        let leader = leader_of_jsz(&body, &self.streams());
        let id = node_number(&self.node);
        Ok(Status {
            id,
            role: if leader.as_deref() == Some(self.node.as_str()) {
                "leader".into()
            } else {
                "follower".into()
            },
            term: 0,
            leader: leader.as_deref().map(node_number),
            commit: 0,
            applied: 0,
            ..Default::default()
        })
    }
}

/// The system account's user in `targets/nats/system-account.conf`: the `member` fault removes
/// servers with it.
pub const SYSTEM_USER: (&str, &str) = ("faultline", "faultline");

/// A server's view of the JetStream meta group (`/jsz`): only the meta leader lists its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaView {
    /// The meta leader this server names, if any.
    pub leader: Option<String>,
    /// How many peers this server counts in the meta group.
    pub size: usize,
    /// The meta group's peers (their server names, this server among them) when this server
    /// leads it; a peer whose name it does not know yet is listed by its peer id.
    pub peers: Option<Vec<String>>,
}

impl NatsClient {
    /// Asks the JetStream meta leader, through this server, to remove `server` from the meta
    /// group (`$JS.API.SERVER.REMOVE`, as the system account's user). `Err((definite, why))`:
    /// definite when nothing was proposed (no meta leader answered, or it refused).
    ///
    /// nats-server answers success once the leader has *proposed* the removal, before it is
    /// committed: the caller waits for the leader's peer list to follow.
    ///
    /// # Errors
    /// As above.
    pub async fn server_remove(&self, server: &str) -> Result<(), (bool, String)> {
        let conn = async_nats::ConnectOptions::with_user_and_password(
            SYSTEM_USER.0.into(),
            SYSTEM_USER.1.into(),
        )
        .connection_timeout(self.timeout)
        .request_timeout(Some(self.timeout))
        .connect(self.addr.as_str())
        .await
        .map_err(|e| {
            (
                true,
                format!("connect to {} as the system user: {e}", self.addr),
            )
        })?;
        // `peer` is the server's name (`peer_id` would be its peer id).
        let body = json!({ "peer": server }).to_string();
        let reply = conn
            .request("$JS.API.SERVER.REMOVE", Bytes::from(body))
            .await
            .map_err(|e| {
                use async_nats::client::RequestErrorKind as K;
                match e.kind() {
                    // Only the meta leader subscribes: nobody listening, nothing proposed.
                    K::NoResponders => (true, "no meta leader answered (no responders)".into()),
                    _ => (false, format!("$JS.API.SERVER.REMOVE: {e}")),
                }
            })?;
        server_remove_answer(&reply.payload)
    }

    /// This server's view of the meta group, from `/jsz`.
    ///
    /// # Errors
    /// When the server does not answer, or not with JSON.
    pub async fn meta(&self) -> Result<MetaView, String> {
        Ok(meta_of_jsz(&self.node, &self.jsz("").await?))
    }

    /// The workload's streams: the KV bucket's and the queue's.
    fn streams(&self) -> [String; 2] {
        [format!("KV_{}", self.bucket), self.queue.clone()]
    }

    /// The monitoring endpoint's `/jsz` with this query.
    async fn jsz(&self, query: &str) -> Result<Value, String> {
        let url = format!("{}/jsz?{query}", self.monitor);
        let (code, body) = self
            .http
            .request(hyper::Method::GET, &url, None)
            .await
            .map_err(|e| e.to_string())?;
        if !code.is_success() {
            return Err(format!("/jsz answered {code}"));
        }
        Ok(body)
    }
}

/// The workload's stream as its leader sees it: how many replicas it is configured with, and
/// its peers (the leader first) with whether each is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReplicas {
    /// `num_replicas` of the stream's configuration.
    pub configured: usize,
    /// The stream's peers (server names; the leader first) and whether each is current.
    pub peers: Vec<(String, bool)>,
}

impl StreamReplicas {
    /// All configured replicas are there and current: what an operator checks before taking
    /// another server away (a removal now leaves the data on a majority of its replicas).
    pub fn healthy(&self) -> bool {
        self.peers.len() >= self.configured && self.peers.iter().all(|(_, c)| *c)
    }
}

impl NatsClient {
    /// The workload's stream (the KV bucket's or the queue's) as this server sees it, when this
    /// server leads it; `None` when it does not (only the leader knows if its peers are
    /// current).
    ///
    /// # Errors
    /// When the server does not answer, or not with JSON.
    pub async fn stream_replicas(&self) -> Result<Option<StreamReplicas>, String> {
        let body = self.jsz("acc=%24G&streams=true&config=true").await?;
        Ok(stream_replicas_of_jsz(&self.node, &body, &self.streams()))
    }
}

/// The first of `streams` that server `node` hosts and leads, from its `/jsz`.
fn stream_replicas_of_jsz(node: &str, body: &Value, streams: &[String]) -> Option<StreamReplicas> {
    for s in hosted_streams(body) {
        if !streams.iter().any(|n| s["name"] == n.as_str()) || s["cluster"]["leader"] != node {
            continue;
        }
        let mut peers = vec![(node.to_string(), true)];
        for r in s["cluster"]["replicas"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("?").to_string();
            let current = r["current"] == true && r["offline"] != true;
            peers.push((name, current));
        }
        return Some(StreamReplicas {
            configured: s["config"]["num_replicas"].as_u64().unwrap_or(1) as usize,
            peers,
        });
    }
    None
}

/// The meta leader's answer to `$JS.API.SERVER.REMOVE`: success, or its error (definite: it
/// refused before proposing anything).
fn server_remove_answer(payload: &[u8]) -> Result<(), (bool, String)> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| {
        (
            false,
            format!(
                "$JS.API.SERVER.REMOVE answered what is not JSON ({e}): {}",
                String::from_utf8_lossy(payload)
            ),
        )
    })?;
    if v["success"] == true {
        return Ok(());
    }
    match v.get("error") {
        Some(err) => Err((
            true,
            format!(
                "{} (code {}, err_code {})",
                err["description"].as_str().unwrap_or("no description"),
                err["code"],
                err["err_code"]
            ),
        )),
        None => Err((false, format!("$JS.API.SERVER.REMOVE answered {v}"))),
    }
}

/// The meta group as `/jsz` of server `node` shows it.
fn meta_of_jsz(node: &str, body: &Value) -> MetaView {
    let meta = &body["meta_cluster"];
    let leader = meta_leader(body);
    let peers = (leader.as_deref() == Some(node)).then(|| {
        let mut peers = vec![node.to_string()];
        for r in meta["replicas"].as_array().into_iter().flatten() {
            // A peer whose name the leader does not know yet: its peer id.
            let name = r["name"]
                .as_str()
                .filter(|n| !n.starts_with("Server name unknown"))
                .or_else(|| r["peer"].as_str())
                .unwrap_or("?");
            peers.push(name.to_string());
        }
        peers.sort();
        peers
    });
    MetaView {
        leader,
        size: meta["cluster_size"].as_u64().unwrap_or(0) as usize,
        peers,
    }
}

/// `n3` -> 3 (0 for any other name).
fn node_number(name: &str) -> u64 {
    name.trim_start_matches('n').parse().unwrap_or(0)
}

/// The leader `/jsz` names: of the first of `streams` this server hosts, else of the meta group.
fn leader_of_jsz(body: &Value, streams: &[String]) -> Option<String> {
    for s in hosted_streams(body) {
        if streams.iter().any(|n| s["name"] == n.as_str())
            && let Some(l) = s["cluster"]["leader"].as_str()
            && !l.is_empty()
        {
            return Some(l.to_string());
        }
    }
    meta_leader(body)
}

/// The streams a server hosts, from its `/jsz` with `streams=true`.
fn hosted_streams(body: &Value) -> impl Iterator<Item = &Value> {
    body["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
}

/// The meta group's leader a server's `/jsz` names, if any.
fn meta_leader(body: &Value) -> Option<String> {
    body["meta_cluster"]["leader"]
        .as_str()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

/// Whether a failed publish definitely did not store the message, with its reason.
fn classify_publish(kind: PublishErrorKind, message: &str) -> (String, bool) {
    match kind {
        PublishErrorKind::WrongLastSequence => ("revision-mismatch".into(), true),
        // 503 no responders: no JetStream server took the message.
        PublishErrorKind::StreamNotFound => (format!("no responders: {message}"), true),
        PublishErrorKind::MaxPayloadExceeded => (message.to_string(), true),
        _ => (message.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_are_definite_only_when_nothing_was_stored() {
        assert_eq!(
            classify_publish(PublishErrorKind::WrongLastSequence, "x"),
            ("revision-mismatch".into(), true)
        );
        assert!(classify_publish(PublishErrorKind::StreamNotFound, "503").1);
        assert!(!classify_publish(PublishErrorKind::TimedOut, "t").1);
        assert!(!classify_publish(PublishErrorKind::BrokenPipe, "b").1);
        assert!(!classify_publish(PublishErrorKind::Other, "o").1);
    }

    #[test]
    fn only_the_meta_leader_lists_the_meta_groups_peers() {
        let body = json!({"meta_cluster": {"name": "faultline", "leader": "n2", "cluster_size": 3,
        "replicas": [
            {"name": "n4", "current": true, "peer": "abc"},
            {"name": "Server name unknown at this time (peerID: xyz)", "peer": "xyz"},
        ]}});
        let leader = meta_of_jsz("n2", &body);
        assert_eq!(leader.leader.as_deref(), Some("n2"));
        assert_eq!(leader.size, 3);
        assert_eq!(
            leader.peers,
            Some(vec!["n2".to_string(), "n4".into(), "xyz".into()])
        );
        let follower = meta_of_jsz(
            "n4",
            &json!({"meta_cluster": {"leader": "n2", "cluster_size": 3}}),
        );
        assert_eq!(follower.peers, None);
        assert_eq!(follower.size, 3);
        let lost = meta_of_jsz(
            "n4",
            &json!({"meta_cluster": {"leader": "", "cluster_size": 3}}),
        );
        assert_eq!(lost.leader, None);
    }

    #[test]
    fn the_stream_is_healthy_when_its_leader_counts_every_replica_current() {
        let body = |n4: bool| {
            json!({"account_details": [{"stream_detail": [
                {"name": "other", "cluster": {"leader": "n2"}},
                {"name": "q", "config": {"num_replicas": 3}, "cluster": {"leader": "n2",
                    "replicas": [{"name": "n3", "current": true}, {"name": "n4", "current": n4}]}},
            ]}]})
        };
        let streams = ["KV_b".to_string(), "q".into()];
        let r = stream_replicas_of_jsz("n2", &body(true), &streams).unwrap();
        assert_eq!(r.configured, 3);
        assert!(r.healthy(), "{r:?}");
        assert!(
            !stream_replicas_of_jsz("n2", &body(false), &streams)
                .unwrap()
                .healthy()
        );
        // Not its leader: no view.
        assert_eq!(stream_replicas_of_jsz("n3", &body(true), &streams), None);
        // A replica short (no spare server after a removal).
        let short = json!({"account_details": [{"stream_detail": [
            {"name": "q", "config": {"num_replicas": 3}, "cluster": {"leader": "n2",
                "replicas": [{"name": "n3", "current": true}]}}]}]});
        assert!(
            !stream_replicas_of_jsz("n2", &short, &streams)
                .unwrap()
                .healthy()
        );
    }

    #[test]
    fn a_server_removal_is_definite_only_when_the_meta_leader_refused() {
        assert_eq!(
            server_remove_answer(br#"{"type":"io.nats.jetstream.api.v1.meta_server_remove_response","success":true}"#),
            Ok(())
        );
        let refused = server_remove_answer(
            br#"{"type":"t","error":{"code":400,"err_code":10044,"description":"server is not a member of the cluster"}}"#,
        )
        .unwrap_err();
        assert!(refused.0, "{refused:?}");
        assert!(
            refused.1.contains("not a member") && refused.1.contains("10044"),
            "{refused:?}"
        );
        assert!(!server_remove_answer(b"garbage").unwrap_err().0);
        assert!(!server_remove_answer(b"{}").unwrap_err().0);
    }

    #[test]
    fn the_leader_is_the_streams_when_hosted_else_the_meta_groups() {
        let body = json!({
            "meta_cluster": {"name": "faultline", "leader": "n1"},
            "account_details": [{"stream_detail": [
                {"name": "KV_b", "cluster": {"leader": "n3"}},
                {"name": "other", "cluster": {"leader": "n2"}},
            ]}],
        });
        let wanted = ["KV_b".to_string(), "queue".to_string()];
        assert_eq!(leader_of_jsz(&body, &wanted).as_deref(), Some("n3"));
        let meta_only = json!({"meta_cluster": {"leader": "n1"}});
        assert_eq!(leader_of_jsz(&meta_only, &wanted).as_deref(), Some("n1"));
        assert_eq!(
            leader_of_jsz(&json!({"meta_cluster": {"leader": ""}}), &wanted),
            None
        );
    }

    #[test]
    fn a_drain_ends_complete_only_past_the_last_sequence_and_stalls_only_after_the_wait() {
        let short = DRAIN_STALL / 2;
        // Messages came: always fetch again (the next empty fetch decides).
        assert_eq!(drain_step(5, 100, 100, DRAIN_STALL), DrainStep::More);
        // Empty after the last sequence: complete, however long it took.
        assert_eq!(drain_step(0, 100, 100, short), DrainStep::Done);
        assert_eq!(drain_step(0, 101, 100, DRAIN_STALL * 3), DrainStep::Done);
        // Empty short of it: wait, then call it stalled (never complete).
        assert_eq!(drain_step(0, 293, 16_303, short), DrainStep::More);
        assert_eq!(drain_step(0, 293, 16_303, DRAIN_STALL), DrainStep::Stalled);
        // An empty stream is complete at once.
        assert_eq!(drain_step(0, 0, 0, Duration::ZERO), DrainStep::Done);
    }

    #[test]
    fn a_cas_needs_the_revision_its_value_was_seen_at() {
        let r = Revisions::default();
        r.saw("k", &json!(3), 7);
        r.saw("k", &json!(3), 5);
        assert_eq!(r.of("k", &json!(3)), Some(7), "the latest revision is kept");
        assert_eq!(r.of("k", &json!(4)), None);
        assert_eq!(r.of("other", &json!(3)), None);
    }
}
