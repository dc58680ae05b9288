//! The etcd client: etcd v3's gRPC API through the `etcd-client` crate, one lazily connecting
//! channel per member (no balancing, no discovery: a client talks to its own member only).
//!
//! Registers, the watch workload's puts and deletes (with the revision etcd gave them), watches
//! with progress requests, and leases (grant, keepalive over the bidirectional stream, puts
//! attached to a lease). Values are JSON-encoded bytes, as the JSON gateway client stores them,
//! so a register holds the same values either way.
//!
//! Classification (STYLE.md, "Outcomes are data"):
//! - an answer: `ok`, except a cas transaction that did not succeed (applied, did nothing: a
//!   definite `fail`, `cas-mismatch`);
//! - the connection could not be opened (tonic's `ConnectError` in the status's source chain):
//!   `fail`, the request never left;
//! - `InvalidArgument`, `NotFound` (etcd's "requested lease not found", raised when the entry
//!   is applied, so the write did nothing) and `OutOfRange` (compacted or future revision):
//!   definite `fail`;
//! - everything else after sending, including `no leader`, `leader changed`, `request timed
//!   out`, `too many requests` and our own timeout: `info` (the proposal may be in the log);
//! - a read changes nothing, so a read without an answer is a `fail`.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, Error as EtcdError, GetOptions, PutOptions, Txn,
    TxnOp, WatchOptions, WatchStream,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tonic::Code;

use super::{Completion, Status};
use crate::generator::{F, Op};

/// A client bound to one etcd member, over gRPC. Cloning shares the channel.
#[derive(Clone)]
pub struct EtcdClient {
    addr: String,
    timeout: Duration,
    serializable: bool,
    tls: Option<Arc<crate::pki::ClientTls>>,
    client: Arc<OnceCell<Client>>,
}

/// One etcd member, as `MemberList` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// Member id.
    pub id: u64,
    /// Its name (empty until a member added by `MemberAdd` starts).
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// A learner (not yet promoted).
    pub learner: bool,
}

impl EtcdMember {
    fn of(m: &etcd_client::Member) -> Self {
        Self {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            learner: m.is_learner(),
        }
    }
}

/// An answer that is not a completion: either the request never left or may have been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// What went wrong.
    pub reason: String,
    /// True when the request cannot have taken effect.
    pub definite: bool,
}

impl CallError {
    /// The completion of a write that failed this way.
    pub fn completion(&self) -> Completion {
        if self.definite {
            Completion::Fail(self.reason.clone())
        } else {
            Completion::Info(self.reason.clone())
        }
    }

    fn timeout(after: Duration) -> CallError {
        CallError {
            reason: format!("timeout after {after:?}"),
            definite: false,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The value bytes etcd stores for a JSON value.
pub fn encode_value(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// The JSON value of stored bytes, `null` when they are not JSON (nobody here wrote them).
pub fn decode_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Whether tonic's source chain says the connection could not be opened.
fn is_connect_error(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Classifies an error of the `etcd-client` crate.
pub fn classify_error(e: &EtcdError) -> CallError {
    let definite = match e {
        EtcdError::GRpcStatus(s) => match s.code() {
            Code::InvalidArgument | Code::NotFound | Code::OutOfRange => true,
            Code::Unavailable => is_connect_error(s),
            _ => false,
        },
        EtcdError::InvalidArgs(_) | EtcdError::InvalidUri(_) => true,
        _ => false,
    };
    let reason = match e {
        EtcdError::GRpcStatus(s) if is_connect_error(s) => format!("connect: {}", s.message()),
        EtcdError::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    };
    CallError { reason, definite }
}

impl EtcdClient {
    /// A client for the member whose client URL is `http://{addr}`; every call gives up after
    /// `timeout`; `serializable` reads may be served from the member's local state.
    pub fn new(addr: &str, timeout: Duration, serializable: bool) -> Self {
        Self {
            addr: addr.to_string(),
            timeout,
            serializable,
            tls: None,
            client: Arc::new(OnceCell::new()),
        }
    }

    /// Over TLS (`https://{addr}`), presenting the run's client certificate, when `tls` is set.
    pub fn with_tls(mut self, tls: Option<Arc<crate::pki::ClientTls>>) -> Self {
        self.tls = tls;
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The member's address (`ip:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The gRPC client, made on first use. The channel connects lazily and reconnects by itself,
    /// so a member that is down fails each call at connect time (a definite failure).
    async fn grpc(&self) -> Result<Client, CallError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let bad = |e: tonic::transport::Error| CallError {
                    reason: format!("bad endpoint {}: {e}", self.addr),
                    definite: true,
                };
                let mut endpoint =
                    tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", self.addr))
                        .map_err(bad)?
                        .connect_timeout(self.timeout)
                        .tcp_nodelay(true);
                if let Some(tls) = &self.tls {
                    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
                    endpoint = endpoint
                        .tls_config(
                            ClientTlsConfig::new()
                                .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                                .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem)),
                        )
                        .map_err(bad)?;
                }
                Client::from_channel(etcd_client::Channel::Tonic(endpoint.connect_lazy()), None)
                    .await
                    .map_err(|e| classify_error(&e))
            })
            .await?;
        Ok(client.clone())
    }

    /// Runs one call with the timeout; a timeout is indeterminate.
    async fn call<T, Fut>(&self, f: impl FnOnce(Client) -> Fut) -> Result<T, CallError>
    where
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let client = self.grpc().await?;
        match tokio::time::timeout(self.timeout, f(client)).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(classify_error(&e)),
            Err(_) => Err(CallError::timeout(self.timeout)),
        }
    }

    /// The member's view, from the maintenance `Status` call: it leads when `leader` equals its
    /// own member id.
    ///
    /// # Errors
    /// A description of what went wrong.
    pub async fn status(&self) -> Result<Status, String> {
        let s = self
            .call(|mut c| async move { c.status().await })
            .await
            .map_err(|e| e.reason)?;
        let me = s
            .header()
            .map(|h| h.member_id())
            .ok_or("status without a header")?;
        Ok(Status::of_etcd_member(
            me,
            s.leader(),
            s.raft_term(),
            s.raft_index(),
            s.raft_applied_index(),
        ))
    }

    /// A transaction of Elle micro-ops, as Jepsen's etcd test runs them: one etcd txn reads
    /// every key involved (a snapshot at one revision); the micro-ops are played on that
    /// snapshot; then, if the transaction writes, a second etcd txn puts the new values if no
    /// key it read or wrote has a `mod_revision` that moved since the read, and does nothing (`fail`, `txn-conflict`)
    /// otherwise. A read-only transaction is the first txn alone.
    async fn txn(&self, op: &Op) -> Completion {
        let Some(mops) = op.value.as_array() else {
            return Completion::Fail(format!("a txn value that is not a list: {}", op.value));
        };
        let keys: std::collections::BTreeSet<String> =
            mops.iter().map(|m| txn_key(&m[1])).collect();
        let gets: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        let read = self
            .call(|mut c| async move { c.txn(Txn::new().and_then(gets)).await })
            .await;
        let read = match read {
            Ok(r) => r,
            // Nothing was written yet: whatever happened, the transaction did not.
            Err(e) => return Completion::Fail(e.reason),
        };
        let mut snapshot = std::collections::BTreeMap::new();
        for (key, r) in keys.iter().zip(read.op_responses()) {
            let kv = match r {
                etcd_client::TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                _ => None,
            };
            let (rev, value) = kv.map_or((0, Value::Null), |kv| {
                (kv.mod_revision(), decode_value(kv.value()))
            });
            snapshot.insert(key.clone(), (rev, value));
        }
        let (done, writes) = match play_txn(mops, &snapshot) {
            Ok(p) => p,
            Err(e) => return Completion::Fail(e),
        };
        if writes.is_empty() {
            return Completion::Ok(Value::Array(done));
        }
        // Every key the transaction touched, read ones too: comparing only the written keys
        // lets two transactions that read each other's keys both commit (write skew, G2-item;
        // a first version of this client did that, and the checker caught it).
        let when: Vec<Compare> = snapshot
            .iter()
            .map(|(k, (rev, _))| Compare::mod_revision(k.as_str(), CompareOp::Equal, *rev))
            .collect();
        let puts: Vec<TxnOp> = writes
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), encode_value(v), None))
            .collect();
        let put = self
            .call(|mut c| async move { c.txn(Txn::new().when(when).and_then(puts)).await })
            .await;
        match put {
            Ok(r) if r.succeeded() => Completion::Ok(Value::Array(done)),
            Ok(_) => Completion::Fail("txn-conflict".into()),
            Err(e) => e.completion(),
        }
    }

    /// Invokes one register operation and classifies the answer. A cas is never retried.
    pub async fn invoke(&self, op: &Op) -> Completion {
        let key = op.key.clone();
        let serializable = self.serializable;
        let result = match op.f {
            F::Read => {
                let read = self
                    .call(|mut c| async move {
                        let opts = serializable.then(|| GetOptions::new().with_serializable());
                        c.get(key, opts).await
                    })
                    .await;
                return match read {
                    Ok(r) => match r.kvs().first() {
                        None => Completion::Ok(Value::Null),
                        Some(kv) if kv.value().is_empty() => {
                            Completion::Fail("a stored value that is not ours (empty)".into())
                        }
                        Some(kv) => match serde_json::from_slice(kv.value()) {
                            Ok(v) => Completion::Ok(v),
                            Err(e) => Completion::Fail(format!("value is not JSON: {e}")),
                        },
                    },
                    // A read changes nothing: without an answer it did not happen.
                    Err(e) => Completion::Fail(e.reason),
                };
            }
            F::Write => {
                let value = encode_value(&op.value);
                self.call(|mut c| async move { c.put(key, value, None).await })
                    .await
                    .map(|_| true)
            }
            F::Cas => {
                let txn = cas_txn(&op.key, &op.value[0], &op.value[1]);
                self.call(|mut c| async move { c.txn(txn).await })
                    .await
                    .map(|r| r.succeeded())
            }
            // Refused by the workload's validation; nothing is sent.
            F::Append | F::Transfer | F::BankRead => {
                return Completion::Fail(format!("{} is not supported against etcd", op.f.name()));
            }
            F::Txn => return self.txn(op).await,
        };
        match result {
            Ok(true) => Completion::Ok(op.value.clone()),
            Ok(false) => Completion::Fail("cas-mismatch".into()),
            Err(e) => e.completion(),
        }
    }

    /// Puts `value` at `key` (attached to `lease` when given); the revision of the put.
    ///
    /// # Errors
    /// [`CallError`], definite or not.
    pub async fn put(
        &self,
        key: &str,
        value: &Value,
        lease: Option<i64>,
    ) -> Result<i64, CallError> {
        let (key, value) = (key.to_string(), encode_value(value));
        self.call(|mut c| async move {
            let opts = lease.map(|l| PutOptions::new().with_lease(l));
            c.put(key, value, opts).await
        })
        .await
        .and_then(|r| header_revision(r.header()))
    }

    /// Deletes `key`; the revision etcd answered with and how many keys were deleted (with none
    /// deleted etcd makes no revision and the answer carries the current one).
    ///
    /// # Errors
    /// [`CallError`], definite or not.
    pub async fn delete(&self, key: &str) -> Result<(i64, i64), CallError> {
        let key = key.to_string();
        self.call(|mut c| async move { c.delete(key, None::<DeleteOptions>).await })
            .await
            .and_then(|r| Ok((header_revision(r.header())?, r.deleted())))
    }

    /// Reads `key`: its value, lease (0: none) and mod revision, or `None` when absent.
    ///
    /// # Errors
    /// [`CallError`]; a read never changed anything, so the caller records it as a `fail`.
    pub async fn get(&self, key: &str) -> Result<Option<(Value, i64, i64)>, CallError> {
        let key = key.to_string();
        let r = self
            .call(|mut c| async move { c.get(key, None).await })
            .await?;
        Ok(r.kvs()
            .first()
            .map(|kv| (decode_value(kv.value()), kv.lease(), kv.mod_revision())))
    }

    /// The store's current revision (the header of a linearizable range over `key`).
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn current_revision(&self, key: &str) -> Result<i64, CallError> {
        let key = key.to_string();
        let r = self
            .call(
                |mut c| async move { c.get(key, Some(GetOptions::new().with_count_only())).await },
            )
            .await?;
        header_revision(r.header())
    }

    /// The cluster's members as this member knows them (`MemberList`, answered by the leader's
    /// view through a linearizable read in etcd 3.4): id, peer URLs, learner or voter.
    ///
    /// # Errors
    /// As every call: a timeout is indeterminate, a refused connection definite.
    pub async fn member_list(&self) -> Result<Vec<EtcdMember>, CallError> {
        let r = self
            .call(|mut c| async move { c.member_list().await })
            .await?;
        Ok(r.members().iter().map(EtcdMember::of).collect())
    }

    /// Adds a learner with this peer URL (`MemberAdd` with `isLearner`); its id.
    ///
    /// # Errors
    /// As [`EtcdClient::member_list`].
    pub async fn member_add_learner(&self, peer_url: &str) -> Result<u64, CallError> {
        let urls = vec![peer_url.to_string()];
        let r = self
            .call(|mut c| async move {
                c.member_add(
                    urls,
                    Some(etcd_client::MemberAddOptions::new().with_is_learner()),
                )
                .await
            })
            .await?;
        r.member().map(|m| m.id()).ok_or_else(|| CallError {
            reason: "MemberAdd answered without the member".into(),
            definite: false,
        })
    }

    /// Promotes a learner to voter (`MemberPromote`; etcd refuses while it is behind).
    ///
    /// # Errors
    /// As [`EtcdClient::member_list`].
    pub async fn member_promote(&self, id: u64) -> Result<(), CallError> {
        self.call(|mut c| async move { c.member_promote(id).await })
            .await
            .map(|_| ())
    }

    /// Removes a member (`MemberRemove`).
    ///
    /// # Errors
    /// As [`EtcdClient::member_list`].
    pub async fn member_remove(&self, id: u64) -> Result<(), CallError> {
        self.call(|mut c| async move { c.member_remove(id).await })
            .await
            .map(|_| ())
    }

    /// Compacts the key-value history up to `revision` (physical compaction not awaited).
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn compact(&self, revision: i64) -> Result<(), CallError> {
        self.call(|mut c| async move { c.compact(revision, None).await })
            .await
            .map(|_| ())
    }

    /// Opens a watch of every key under `prefix` from `start_revision` (0: from now). Returns
    /// once the stream is open; the `created` response is the stream's first message.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<WatchStream, CallError> {
        let prefix = prefix.to_string();
        let mut opts = WatchOptions::new().with_prefix();
        if start_revision > 0 {
            opts = opts.with_start_revision(start_revision);
        }
        self.call(|mut c| async move { c.watch(prefix, Some(opts)).await })
            .await
    }

    /// Grants a lease of `ttl` seconds; its id and the TTL granted.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn lease_grant(&self, ttl: i64) -> Result<(i64, i64), CallError> {
        self.call(|mut c| async move { c.lease_grant(ttl, None).await })
            .await
            .map(|r| (r.id(), r.ttl()))
    }

    /// Opens a keepalive stream for `lease`, which sends the first keepalive and waits for its
    /// answer: the keeper and stream, and the TTL answered. A lease etcd does not know answers
    /// TTL 0 (the crate reports it as an error; here it is an answer).
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn lease_keepalive_open(&self, lease: i64) -> Result<KeepAlive, CallError> {
        let opened = self
            .call(|mut c| async move {
                match c.lease_keep_alive(lease).await {
                    Ok((keeper, stream)) => Ok(Some((keeper, stream))),
                    Err(EtcdError::LeaseKeepAliveError(m)) if m.contains("not found") => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(match opened {
            Some((keeper, stream)) => KeepAlive {
                inner: Some((keeper, stream)),
                first_ttl: None,
            },
            None => KeepAlive {
                inner: None,
                first_ttl: Some(0),
            },
        })
    }
}

/// A lease's keepalive stream: each [`KeepAlive::keep_alive`] sends one keepalive and waits for
/// its answer.
pub struct KeepAlive {
    inner: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
    /// Set when opening the stream already answered that the lease is gone.
    first_ttl: Option<i64>,
}

impl KeepAlive {
    /// True when opening the stream found the lease gone (TTL 0): there is no stream.
    pub fn gone(&self) -> bool {
        self.first_ttl == Some(0)
    }

    /// One keepalive on the open stream, waiting at most `timeout`: the TTL answered (0 or
    /// less: the lease is gone).
    ///
    /// # Errors
    /// [`CallError`] (indeterminate: a keepalive may reach the leader and extend the lease).
    pub async fn keep_alive(&mut self, timeout: Duration) -> Result<i64, CallError> {
        let Some((keeper, stream)) = self.inner.as_mut() else {
            return Ok(0);
        };
        let exchange = async {
            keeper.keep_alive().await?;
            stream.message().await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(Some(r))) => Ok(r.ttl()),
            Ok(Ok(None)) => Err(CallError {
                reason: "keepalive stream closed".into(),
                definite: false,
            }),
            Ok(Err(e)) => Err(classify_error(&e)),
            Err(_) => Err(CallError::timeout(timeout)),
        }
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<i64, CallError> {
    h.map(|h| h.revision()).ok_or_else(|| CallError {
        reason: "an answer without a header".into(),
        definite: false,
    })
}

/// The transaction of a cas from `from` to `to` (`from` null: the key must not exist).
/// The etcd key of an Elle key.
fn txn_key(k: &Value) -> String {
    match k {
        Value::String(s) => format!("/faultline/txn/{s}"),
        k => format!("/faultline/txn/{k}"),
    }
}

/// Plays Elle micro-ops on a snapshot (etcd key -> (mod revision, value)): the completed
/// micro-ops (reads filled in; a list never appended reads as `null`) and the final value of
/// every key written.
///
/// # Errors
/// An unknown micro-op, or an append to a value that is not a list.
#[allow(clippy::type_complexity)]
fn play_txn(
    mops: &[Value],
    snapshot: &std::collections::BTreeMap<String, (i64, Value)>,
) -> Result<(Vec<Value>, std::collections::BTreeMap<String, Value>), String> {
    let mut writes: std::collections::BTreeMap<String, Value> = Default::default();
    let mut done = Vec::with_capacity(mops.len());
    for m in mops {
        let key = txn_key(&m[1]);
        let current = writes
            .get(&key)
            .or_else(|| snapshot.get(&key).map(|(_, v)| v))
            .cloned()
            .unwrap_or(Value::Null);
        match m[0].as_str() {
            Some("r") => done.push(json!([m[0], m[1], current])),
            Some("w") => {
                writes.insert(key, m[2].clone());
                done.push(m.clone());
            }
            Some("append") => {
                let mut list = match current {
                    Value::Null => Vec::new(),
                    Value::Array(l) => l,
                    other => return Err(format!("append to {key}, which holds {other}")),
                };
                list.push(m[2].clone());
                writes.insert(key, Value::Array(list));
                done.push(m.clone());
            }
            _ => return Err(format!("unknown micro-op {m}")),
        }
    }
    Ok((done, writes))
}

fn cas_txn(key: &str, from: &Value, to: &Value) -> Txn {
    let compare = if from.is_null() {
        Compare::create_revision(key, CompareOp::Equal, 0)
    } else {
        Compare::value(key, CompareOp::Equal, encode_value(from))
    };
    Txn::new()
        .when([compare])
        .and_then([TxnOp::put(key, encode_value(to), None)])
}

/// Names the JSON fields of a watch event, as the history records them.
pub fn event_json(e: &etcd_client::Event) -> Value {
    let kind = match e.event_type() {
        etcd_client::EventType::Put => "put",
        etcd_client::EventType::Delete => "delete",
    };
    match e.kv() {
        Some(kv) if kind == "put" => json!({
            "type": kind,
            "key": String::from_utf8_lossy(kv.key()),
            "value": decode_value(kv.value()),
            "mod-revision": kv.mod_revision(),
            "create-revision": kv.create_revision(),
            "version": kv.version(),
        }),
        Some(kv) => json!({
            "type": kind,
            "key": String::from_utf8_lossy(kv.key()),
            "mod-revision": kv.mod_revision(),
        }),
        None => json!({ "type": kind }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_txn_plays_on_its_snapshot_and_reads_its_own_appends() {
        let snapshot: std::collections::BTreeMap<String, (i64, Value)> = [
            ("/faultline/txn/1".to_string(), (7, json!([4, 5]))),
            ("/faultline/txn/2".to_string(), (9, json!(3))),
        ]
        .into();
        let mops = [
            json!(["r", 1, null]),
            json!(["append", 1, 6]),
            json!(["r", 1, null]),
            json!(["r", 3, null]),
            json!(["append", 3, 1]),
            json!(["r", 2, null]),
        ];
        let (done, writes) = super::play_txn(&mops, &snapshot).unwrap();
        assert_eq!(
            done,
            [
                json!(["r", 1, [4, 5]]),
                json!(["append", 1, 6]),
                json!(["r", 1, [4, 5, 6]]),
                json!(["r", 3, null]),
                json!(["append", 3, 1]),
                json!(["r", 2, 3]),
            ]
        );
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(writes["/faultline/txn/1"], json!([4, 5, 6]));
        assert_eq!(writes["/faultline/txn/3"], json!([1]));
        assert!(super::play_txn(&[json!(["append", 2, 1])], &snapshot).is_err());
        assert!(super::play_txn(&[json!(["x", 2, 1])], &snapshot).is_err());
    }

    use super::*;

    #[test]
    fn values_round_trip_as_json_bytes() {
        for v in [json!(3), json!(null), json!([1, 2]), json!("x")] {
            assert_eq!(decode_value(&encode_value(&v)), v);
        }
        assert_eq!(encode_value(&json!(41)), b"41");
        assert_eq!(decode_value(b"\xff not json"), Value::Null);
    }

    #[rustfmt::skip]
    #[test]
    fn grpc_errors_are_classified_honestly() {
        let status = |code, m: &str| EtcdError::GRpcStatus(tonic::Status::new(code, m));
        let cases = [
            (status(Code::Unavailable, "etcdserver: no leader"),                    false),
            (status(Code::Unavailable, "etcdserver: request timed out"),            false),
            (status(Code::Unavailable, "etcdserver: leader changed"),               false),
            (status(Code::ResourceExhausted, "etcdserver: too many requests"),      false),
            (status(Code::DeadlineExceeded, "context deadline exceeded"),           false),
            (status(Code::Unknown, "transport is closing"),                         false),
            (status(Code::InvalidArgument, "etcdserver: key is not provided"),      true),
            (status(Code::NotFound, "etcdserver: requested lease not found"),       true),
            (status(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"), true),
            (EtcdError::WatchError("channel closed".into()),                        false),
        ];
        for (e, definite) in cases {
            assert_eq!(classify_error(&e).definite, definite, "{e}");
        }
    }

    #[tokio::test]
    async fn a_member_that_is_down_fails_definitely_and_a_silent_one_is_indeterminate() {
        // Nothing listens on this port: the connection is refused, the request never left.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let down = EtcdClient::new(&addr, Duration::from_millis(500), false);
        let write = Op {
            f: F::Write,
            key: "r1".into(),
            value: json!(1),
        };
        assert!(
            matches!(down.invoke(&write).await, Completion::Fail(r) if r.starts_with("connect"))
        );

        // A listener that accepts and never answers: the write may have arrived.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let silent = EtcdClient::new(&addr, Duration::from_millis(300), false);
        assert!(matches!(silent.invoke(&write).await, Completion::Info(_)));
        let cas = Op {
            f: F::Cas,
            key: "r1".into(),
            value: json!([1, 2]),
        };
        assert!(matches!(silent.invoke(&cas).await, Completion::Info(_)));
        let read = Op {
            f: F::Read,
            key: "r1".into(),
            value: Value::Null,
        };
        assert!(matches!(silent.invoke(&read).await, Completion::Fail(_)));
        hold.abort();
    }
}
