//! The client API over HTTP/1.1 (hyper 1). `node/API.md` is the reference for every route.
//!
//! Any node accepts any request. A node that is not the leader forwards the request to the
//! leader's client address (once: a forwarded request is never forwarded again) and relays the
//! answer. While no leader is known the request waits, up to its timeout, for one to appear.
//!
//! Definite versus indeterminate: an error says `"definite": true` only when the operation
//! certainly has not taken effect and never will: nothing was proposed (no leader), or it was
//! applied and had no effect (cas mismatch, append to a non-list). Everything else that fails
//! after a proposal may have been appended (timeouts, lost leadership, a forward that broke
//! after sending) is `"definite": false`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::failpoint::{ArmRequest, Failpoint, Failpoints};
use super::node::{Event, Handle, Reply};
use super::state::{Addrs, Command, MicroOp, Outcome};
use crate::raft::{ConfChange, ConfChangeKind};

/// Header marking a request forwarded by another node (value: that node's id).
pub const FORWARDED: &str = "x-raftkv-forwarded";

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;

/// How long a client's TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(5);

/// How long membership changes may take (they wait for a learner to catch up).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Shared state of the HTTP handlers.
pub struct Api {
    id: u64,
    node: Handle,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `https` under `--tls-dir` (forwards present this node's certificate), else `http`.
    scheme: &'static str,
    /// The failpoints, when `--failpoint-api` opened them to HTTP.
    failpoints: Option<Failpoints>,
    /// The planted bug `txn-split`: a transaction's micro-ops are proposed one entry each.
    split_txns: bool,
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: Value) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

fn error(status: StatusCode, error: &str, definite: bool) -> Resp {
    json_response(status, json!({"error": error, "definite": definite}))
}

fn bad_request(message: impl std::fmt::Display) -> Resp {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": "bad-request", "message": message.to_string(), "definite": true}),
    )
}

fn no_leader() -> Resp {
    error(StatusCode::SERVICE_UNAVAILABLE, "no-leader", true)
}

fn timeout() -> Resp {
    error(StatusCode::GATEWAY_TIMEOUT, "timeout", false)
}

fn outcome_response(o: Outcome) -> Resp {
    match o {
        Outcome::Done => json_response(StatusCode::OK, json!({})),
        Outcome::Value(v) => json_response(StatusCode::OK, json!({ "value": v })),
        Outcome::Txn(ops) => json_response(StatusCode::OK, json!({ "ops": ops })),
        Outcome::CasMismatch { current } => json_response(
            StatusCode::CONFLICT,
            json!({"error": "cas-mismatch", "current": current, "definite": true}),
        ),
        Outcome::NotAList { key, current } => json_response(
            StatusCode::CONFLICT,
            json!({"error": "not-a-list", "key": key, "current": current, "definite": true}),
        ),
        Outcome::Invalid(message) => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "message": message, "definite": true}),
        ),
    }
}

/// Percent-decodes a path segment (`%2F` and friends); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a request asks for, once parsed.
enum Op {
    Read(String),
    Write(Command),
    Status,
    Members(Value),
    Failpoints,
    Arm(Failpoint, ArmRequest),
    Disarm(Failpoint),
}

#[derive(serde::Deserialize)]
struct ValueBody {
    value: Value,
}

#[derive(serde::Deserialize)]
struct CasBody {
    from: Value,
    to: Value,
}

#[derive(serde::Deserialize)]
struct TxnBody {
    ops: Vec<MicroOp>,
}

#[allow(clippy::result_large_err)] // an early-return response, built once per bad request
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Resp> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("bad JSON body: {e}")))
}

#[allow(clippy::result_large_err)] // an early-return response, built once per bad request
fn parse(method: &Method, path: &str, body: &[u8]) -> Result<Op, Resp> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["status"]) => Ok(Op::Status),
        (&Method::GET, ["kv", key]) => Ok(Op::Read(percent_decode(key))),
        (&Method::PUT, ["kv", key]) => {
            let b: ValueBody = parse_body(body)?;
            Ok(Op::Write(Command::Put {
                key: percent_decode(key),
                value: b.value,
            }))
        }
        (&Method::POST, ["kv", key, "cas"]) => {
            let b: CasBody = parse_body(body)?;
            Ok(Op::Write(Command::Cas {
                key: percent_decode(key),
                from: b.from,
                to: b.to,
            }))
        }
        (&Method::POST, ["kv", key, "append"]) => {
            let b: ValueBody = parse_body(body)?;
            Ok(Op::Write(Command::Append {
                key: percent_decode(key),
                value: b.value,
            }))
        }
        (&Method::POST, ["txn"]) => {
            let b: TxnBody = parse_body(body)?;
            for MicroOp(f, _, _) in &b.ops {
                if !matches!(f.as_str(), "r" | "w" | "append") {
                    return Err(bad_request(format!(
                        "unknown micro-op {f:?} (expected r, w or append)"
                    )));
                }
            }
            Ok(Op::Write(Command::Txn { ops: b.ops }))
        }
        (&Method::POST, ["admin", "members"]) => Ok(Op::Members(parse_body(body)?)),
        (&Method::GET, ["failpoints"]) => Ok(Op::Failpoints),
        (&Method::PUT, ["failpoints", name]) => Ok(Op::Arm(
            Failpoint::parse(name).map_err(bad_request)?,
            parse_body(body)?,
        )),
        (&Method::DELETE, ["failpoints", name]) => {
            Ok(Op::Disarm(Failpoint::parse(name).map_err(bad_request)?))
        }
        (
            _,
            ["status"]
            | ["kv", _]
            | ["kv", _, "cas" | "append"]
            | ["txn"]
            | ["admin", "members"]
            | ["failpoints", ..],
        ) => Err(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method-not-allowed", "definite": true}),
        )),
        _ => Err(json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not-found", "definite": true}),
        )),
    }
}

/// What to do after asking the local loop.
enum Step {
    Done(Resp),
    /// Not the leader; forward there if allowed.
    Forward(String),
    /// No leader known (or forwarding impossible): wait and ask again.
    Wait,
}

impl Api {
    /// The API of node `id`, talking to its loop through `node`.
    /// `failpoints` is `Some` when `--failpoint-api` opens them to HTTP (`/failpoints`).
    /// `tls` is this node's client configuration under `--tls-dir`: forwards then go over
    /// HTTPS with this node's certificate.
    pub fn new(
        id: u64,
        node: Handle,
        timeout: Duration,
        failpoints: Option<Failpoints>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        connector.enforce_http(false);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = match tls {
            Some(c) => (*c).clone(),
            // Plain HTTP never uses it.
            None => rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Api {
            id,
            node,
            timeout,
            client,
            scheme,
            failpoints,
            split_txns: false,
        }
    }

    /// With `split` (the planted bug `txn-split`), the leader proposes each micro-op of a
    /// transaction as its own log entry, one after another.
    pub fn with_split_txns(mut self, split: bool) -> Self {
        self.split_txns = split;
        self
    }

    /// Handles one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let forwarded = req.headers().contains_key(FORWARDED);
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => return bad_request(format!("reading the body: {e}")),
        };
        let op = match parse(&method, &path, &body) {
            Ok(op) => op,
            Err(resp) => return resp,
        };
        match op {
            Op::Failpoints | Op::Arm(..) | Op::Disarm(_) => self.failpoint_op(op),
            Op::Status => match self.node.call(Event::Status).await {
                Some(Reply::Status(s)) => {
                    json_response(StatusCode::OK, serde_json::to_value(*s).unwrap_or_default())
                }
                _ => error(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", true),
            },
            Op::Members(req) => {
                let deadline = Instant::now() + ADMIN_TIMEOUT;
                self.with_leader(&method, &path, &body, forwarded, deadline, |api| {
                    let req = req.clone();
                    async move { api.members(req, deadline).await }
                })
                .await
            }
            Op::Read(key) => {
                let deadline = Instant::now() + self.timeout;
                self.with_leader(&method, &path, &body, forwarded, deadline, |api| {
                    let key = key.clone();
                    async move { api.step(api.node.call(|tx| Event::Read(key, tx)).await) }
                })
                .await
            }
            Op::Write(Command::Txn { ops }) if self.split_txns => {
                let deadline = Instant::now() + self.timeout;
                self.with_leader(&method, &path, &body, forwarded, deadline, |api| {
                    let ops = ops.clone();
                    async move { api.split_txn(ops).await }
                })
                .await
            }
            Op::Write(cmd) => {
                let deadline = Instant::now() + self.timeout;
                self.with_leader(&method, &path, &body, forwarded, deadline, |api| {
                    let cmd = cmd.clone();
                    async move { api.step(api.node.call(|tx| Event::Propose(cmd, tx)).await) }
                })
                .await
            }
        }
    }

    /// `/failpoints`: answered here, never by the Raft loop (which a pause may be holding).
    fn failpoint_op(&self, op: Op) -> Resp {
        let Some(fps) = &self.failpoints else {
            return json_response(
                StatusCode::FORBIDDEN,
                json!({"error": "failpoint-api-off", "message": "start raftkv with --failpoint-api to arm failpoints over HTTP", "definite": true}),
            );
        };
        match op {
            Op::Arm(point, req) => match req.arming(point) {
                Ok(arming) => {
                    tracing::warn!(failpoint = %point, action = %arming.action, count = ?arming.count, "failpoint armed over HTTP");
                    fps.arm(point, arming);
                }
                Err(e) => return bad_request(e),
            },
            Op::Disarm(point) if fps.disarm(point) => {
                tracing::warn!(failpoint = %point, "failpoint disarmed over HTTP");
            }
            _ => {}
        }
        json_response(
            StatusCode::OK,
            serde_json::to_value(fps.view()).unwrap_or_default(),
        )
    }

    /// The planted bug `txn-split`: each micro-op is proposed as a one-op transaction and
    /// awaited before the next, so other commands interleave between them and a failure
    /// half-way leaves the first part applied. Until the first part is applied nothing has
    /// happened, and the usual forwarding and waiting apply.
    async fn split_txn(&self, ops: Vec<MicroOp>) -> Step {
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            let cmd = Command::Txn { ops: vec![op] };
            let reply = self.node.call(|tx| Event::Propose(cmd, tx)).await;
            match (reply, done.is_empty()) {
                (Some(Reply::Applied(Outcome::Txn(mut out))), _) => done.append(&mut out),
                (reply, true) => return self.step(reply),
                (Some(Reply::Applied(o)), false) => return Step::Done(outcome_response(o)),
                (_, false) => {
                    return Step::Done(error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "leadership-lost",
                        false,
                    ));
                }
            }
        }
        Step::Done(outcome_response(Outcome::Txn(done)))
    }

    fn step(&self, reply: Option<Reply>) -> Step {
        match reply {
            Some(Reply::Applied(o)) => Step::Done(outcome_response(o)),
            Some(Reply::NotLeader {
                client: Some(c), ..
            }) => Step::Forward(c),
            Some(Reply::NotLeader { client: None, .. }) => Step::Wait,
            Some(Reply::Superseded) => {
                Step::Done(error(StatusCode::GATEWAY_TIMEOUT, "leadership-lost", false))
            }
            Some(Reply::Refused { reason, .. }) => Step::Done(json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "refused", "message": reason, "definite": true}),
            )),
            Some(Reply::Status(_)) => {
                Step::Done(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", false))
            }
            // The loop stopped with the request queued or proposed: outcome unknown.
            None => Step::Done(error(StatusCode::GATEWAY_TIMEOUT, "shutting-down", false)),
        }
    }

    /// Runs `attempt` locally; forwards to the leader or waits for one as the answer says.
    async fn with_leader<F, Fut>(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        body: &Bytes,
        forwarded: bool,
        deadline: Instant,
        attempt: F,
    ) -> Resp
    where
        F: Fn(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = Step>,
    {
        loop {
            let step = match tokio::time::timeout_at(deadline, attempt(self.clone())).await {
                Ok(s) => s,
                Err(_) => return timeout(),
            };
            match step {
                Step::Done(r) => return r,
                Step::Forward(addr) if !forwarded => {
                    // None: could not connect, nothing was sent; ask again.
                    if let Some(r) = self.forward(&addr, method, path, body, deadline).await {
                        return r;
                    }
                }
                Step::Forward(_) | Step::Wait => {}
            }
            if Instant::now() + Duration::from_millis(25) >= deadline {
                // Nothing was proposed by this attempt (not the leader): definite.
                return no_leader();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Relays the request to the leader. `None` if it could not even connect (nothing sent).
    async fn forward(
        &self,
        addr: &str,
        method: &Method,
        path: &str,
        body: &Bytes,
        deadline: Instant,
    ) -> Option<Resp> {
        let uri = format!("{}://{addr}{path}", self.scheme);
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(FORWARDED, self.id.to_string())
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("valid request");
        let fut = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, bytes))
        };
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(Ok((status, bytes))) => Some(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(bytes))
                    .expect("valid response"),
            ),
            Ok(Err(e)) => {
                let connect = e
                    .downcast_ref::<hyper_util::client::legacy::Error>()
                    .is_some_and(|e| e.is_connect());
                if connect {
                    tracing::debug!(%addr, error = %e, "forward: leader unreachable");
                    None
                } else {
                    tracing::debug!(%addr, error = %e, "forward failed after sending");
                    Some(error(StatusCode::GATEWAY_TIMEOUT, "forward-failed", false))
                }
            }
            Err(_) => Some(timeout()),
        }
    }

    /// `POST /admin/members` on the leader: add (as learner, then promote once caught up) or remove.
    async fn members(self: Arc<Self>, req: Value, deadline: Instant) -> Step {
        let id_of = |k: &str| req.get(k).and_then(Value::as_u64);
        if let Some(node) = id_of("remove") {
            let cc = ConfChange {
                kind: ConfChangeKind::Remove,
                node,
                context: Vec::new(),
            };
            return self.change(cc, deadline, true).await;
        }
        let Some(node) = id_of("add") else {
            return Step::Done(bad_request(
                "expected {\"add\": ID, \"addr\": \"PEER/CLIENT\"} or {\"remove\": ID}",
            ));
        };
        let addrs = match (
            req.get("addr").and_then(Value::as_str),
            req.get("peer"),
            req.get("client"),
        ) {
            (Some(a), _, _) => Addrs::parse(a),
            (None, Some(Value::String(p)), Some(Value::String(c))) => {
                Addrs::parse(&format!("{p}/{c}"))
            }
            _ => Err("missing \"addr\": \"PEERHOST:PORT/CLIENTHOST:PORT\"".to_string()),
        };
        let addrs = match addrs {
            Ok(a) => a,
            Err(e) => return Step::Done(bad_request(e)),
        };
        let status = match self.node.call(Event::Status).await {
            Some(Reply::Status(s)) => s,
            _ => return Step::Done(error(StatusCode::GATEWAY_TIMEOUT, "shutting-down", false)),
        };
        // Only the leader's view of the membership is authoritative: elsewhere, forward.
        if status.role != "leader" {
            let client = status
                .leader
                .and_then(|l| status.addrs.get(&l))
                .and_then(|a| Addrs::parse(a).ok())
                .map(|a| a.client);
            return client.map_or(Step::Wait, Step::Forward);
        }
        if status.members.contains(&node) {
            return Step::Done(json_response(StatusCode::OK, json!({})));
        }
        if !status.learners.contains(&node) {
            let context = serde_json::to_vec(&addrs).expect("addrs serialize");
            let cc = ConfChange {
                kind: ConfChangeKind::AddLearner,
                node,
                context,
            };
            match self.change(cc, deadline, false).await {
                Step::Done(r) if r.status() == StatusCode::OK => {}
                other => return other,
            }
        }
        let context = serde_json::to_vec(&addrs).expect("addrs serialize");
        let cc = ConfChange {
            kind: ConfChangeKind::AddVoter,
            node,
            context,
        };
        self.change(cc, deadline, true).await
    }

    /// Proposes one membership change, retrying while the core says "later", until applied.
    async fn change(&self, cc: ConfChange, deadline: Instant, last: bool) -> Step {
        loop {
            let reply = self.node.call(|tx| Event::Conf(cc.clone(), tx)).await;
            match reply {
                Some(Reply::Refused {
                    retry: true,
                    reason,
                }) if Instant::now() + Duration::from_millis(100) < deadline => {
                    tracing::debug!(%reason, "membership change must wait");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Some(Reply::Refused {
                    retry: true,
                    reason,
                }) => {
                    return Step::Done(json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "not-ready", "message": reason, "definite": true}),
                    ));
                }
                Some(Reply::Applied(_)) => {
                    if last {
                        return Step::Done(json_response(StatusCode::OK, json!({})));
                    }
                    return Step::Done(json_response(StatusCode::OK, json!({"step": "learner"})));
                }
                other => return self.step(other),
            }
        }
    }
}

/// Serves the API on `listener` until the task is aborted; over TLS with a client certificate
/// required when `tls` is given.
pub async fn serve(listener: TcpListener, api: Arc<Api>, tls: Option<tokio_rustls::TlsAcceptor>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, from) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "client accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    // A client without a certificate of the CA is refused here, before any
                    // request is read.
                    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = http
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(tls), service)
                                .await;
                        }
                        Ok(Err(e)) => tracing::debug!(%from, error = %e, "client refused"),
                        Err(_) => tracing::debug!(%from, "client TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert!(matches!(parse(&Method::GET, "/kv/a%2Fb", b""), Ok(Op::Read(k)) if k == "a/b"));
        assert!(matches!(
            parse(&Method::PUT, "/kv/x", br#"{"value":[1]}"#),
            Ok(Op::Write(Command::Put { .. }))
        ));
        assert!(matches!(
            parse(&Method::POST, "/kv/x/cas", br#"{"from":null,"to":2}"#),
            Ok(Op::Write(Command::Cas { .. }))
        ));
        assert!(matches!(
            parse(
                &Method::POST,
                "/txn",
                br#"{"ops":[["r","k1",null],["append","k2",5]]}"#
            ),
            Ok(Op::Write(Command::Txn { .. }))
        ));
        let bad = parse(&Method::POST, "/txn", br#"{"ops":[["x","k1",null]]}"#)
            .err()
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            parse(&Method::PUT, "/kv/x", b"nope")
                .err()
                .unwrap()
                .status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(&Method::DELETE, "/kv/x", b"").err().unwrap().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            parse(&Method::GET, "/nope", b"").err().unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn errors_always_say_definite() {
        for r in [
            no_leader(),
            timeout(),
            outcome_response(Outcome::CasMismatch { current: json!(1) }),
        ] {
            let status = r.status();
            let body = futures_body(r);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert!(v.get("definite").is_some(), "{v}");
            assert_eq!(
                v["definite"].as_bool().unwrap(),
                status != StatusCode::GATEWAY_TIMEOUT
            );
        }
    }

    fn futures_body(r: Resp) -> Bytes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes() })
    }
}
