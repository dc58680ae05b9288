//! The etcd client over etcd v3's JSON gateway (`/v3/kv/*`, which takes and returns keys and
//! values in base64 and 64-bit integers as strings): the register operations only, kept beside
//! the gRPC client ([`super::EtcdClient`]) for `[node] etcd-client = "gateway"` and to compare
//! the two in `faultline bench`. The gateway has no bidirectional watch stream, no progress
//! requests and no lease keepalive stream.
//!
//! Values are JSON-encoded, then base64-encoded, so a register holds the same values as raftkv's.
//! A cas is a transaction comparing the stored bytes with the expected value's encoding (an
//! absent key: its create revision is 0) and putting the new one on success.
//!
//! Classification (STYLE.md, "Outcomes are data"):
//! - 200: `ok`, except a cas transaction whose `succeeded` is absent or false: that transaction
//!   was applied and did nothing, a definite `fail`.
//! - connection refused: `fail` (the request was never sent).
//! - any other error after sending, including etcd's `no leader`, `too many requests` and
//!   `request timed out` (the proposal may already be in the log): `info`.
//! - `InvalidArgument` (gRPC code 3): etcd rejects it before proposing, a definite `fail`.
//! - a read changes nothing, so a read without an answer is a `fail`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Completion, HttpClient, HttpError, Status};
use crate::generator::{F, Op};

/// gRPC's `InvalidArgument`: rejected by validation before anything is proposed.
const GRPC_INVALID_ARGUMENT: i64 = 3;

/// A client bound to one etcd member.
#[derive(Clone)]
pub struct EtcdGatewayClient {
    http: HttpClient,
    base: String,
    serializable: bool,
}

/// base64 of a value's JSON encoding.
fn encode_value(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn decode_value(b64: &str) -> Result<Value, String> {
    let bytes = B64
        .decode(b64)
        .map_err(|e| format!("bad base64 value {b64:?}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("value is not JSON: {e}"))
}

/// A 64-bit integer the gateway spells as a string (or, defensively, as a number).
fn int(v: &Value) -> Option<u64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
}

impl EtcdGatewayClient {
    /// A client for the member whose client URL is `http://{addr}`; `serializable` reads may be
    /// served from the member's local state (possibly stale).
    pub fn new(http: HttpClient, addr: &str, serializable: bool) -> Self {
        Self {
            base: format!("{}://{addr}", http.scheme()),
            http,
            serializable,
        }
    }

    /// The member's view, from `POST /v3/maintenance/status`: it leads when `leader` equals its
    /// own `header.member_id`.
    ///
    /// # Errors
    /// A description of what went wrong.
    pub async fn status(&self) -> Result<Status, String> {
        let url = format!("{}/v3/maintenance/status", self.base);
        match self
            .http
            .request(Method::POST, &url, Some(&json!({})))
            .await
        {
            Ok((StatusCode::OK, body)) => parse_status(&body),
            Ok((code, body)) => Err(format!("status answered {code}: {body}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Invokes one operation and classifies the answer. A cas is never retried.
    pub async fn invoke(&self, op: &Op) -> Completion {
        let key = B64.encode(&op.key);
        let (path, body) = match op.f {
            F::Read => {
                let mut b = json!({ "key": key });
                if self.serializable {
                    b["serializable"] = json!(true);
                }
                ("range", b)
            }
            F::Write => (
                "put",
                json!({ "key": key, "value": encode_value(&op.value) }),
            ),
            F::Cas => ("txn", cas_body(&key, &op.value[0], &op.value[1])),
            // Refused by the workload's validation; nothing is sent.
            F::Append | F::Txn | F::Transfer | F::BankRead => {
                return Completion::Fail(format!(
                    "{} is not supported by the etcd gateway client",
                    op.f.name()
                ));
            }
        };
        let url = format!("{}/v3/kv/{path}", self.base);
        let answer = self.http.request(Method::POST, &url, Some(&body)).await;
        match (op.f, classify(op, answer)) {
            (F::Read, Completion::Info(reason)) => Completion::Fail(reason),
            (_, c) => c,
        }
    }
}

/// The transaction of a cas from `from` to `to` (`from` null: the key must not exist).
fn cas_body(key: &str, from: &Value, to: &Value) -> Value {
    let compare = if from.is_null() {
        json!({ "key": key, "target": "CREATE", "result": "EQUAL", "createRevision": "0" })
    } else {
        json!({ "key": key, "target": "VALUE", "result": "EQUAL", "value": encode_value(from) })
    };
    json!({
        "compare": [compare],
        "success": [{ "requestPut": { "key": key, "value": encode_value(to) } }],
    })
}

fn parse_status(body: &Value) -> Result<Status, String> {
    let me = int(&body["header"]["member_id"])
        .ok_or_else(|| format!("status without header.member_id: {body}"))?;
    Ok(Status::of_etcd_member(
        me,
        int(&body["leader"]).unwrap_or(0),
        int(&body["raftTerm"]).unwrap_or(0),
        int(&body["raftIndex"]).unwrap_or(0),
        int(&body["raftAppliedIndex"]).unwrap_or(0),
    ))
}

/// Turns a gateway answer (or its absence) into a completion.
fn classify(op: &Op, answer: Result<(StatusCode, Value), HttpError>) -> Completion {
    match answer {
        Ok((StatusCode::OK, body)) => match op.f {
            F::Read => match body["kvs"].as_array().and_then(|kvs| kvs.first()) {
                None => Completion::Ok(Value::Null),
                Some(kv) => match kv["value"].as_str().map(decode_value) {
                    // A put of an empty value leaves no `value` field; we never write one.
                    None => Completion::Fail("a stored value that is not ours (empty)".into()),
                    Some(Ok(v)) => Completion::Ok(v),
                    Some(Err(e)) => Completion::Fail(e),
                },
            },
            F::Write | F::Append | F::Txn | F::Transfer | F::BankRead => {
                Completion::Ok(op.value.clone())
            }
            F::Cas => {
                if body["succeeded"].as_bool() == Some(true) {
                    Completion::Ok(op.value.clone())
                } else {
                    Completion::Fail("cas-mismatch".into())
                }
            }
        },
        Ok((code, body)) => {
            let message = body["error"]
                .as_str()
                .or_else(|| body["message"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("http {}", code.as_u16()));
            if body["code"].as_i64() == Some(GRPC_INVALID_ARGUMENT) {
                Completion::Fail(message)
            } else {
                Completion::Info(message)
            }
        }
        Err(e) if e.is_definite() => Completion::Fail(e.to_string()),
        Err(e) => Completion::Info(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type Answer = Result<(StatusCode, Value), HttpError>;

    fn op(f: F, value: Value) -> Op {
        Op {
            f,
            key: "r1".into(),
            value,
        }
    }

    #[test]
    fn values_round_trip_through_json_and_base64() {
        for v in [json!(3), json!(null), json!([1, 2]), json!("x")] {
            assert_eq!(decode_value(&encode_value(&v)).unwrap(), v);
        }
        assert_eq!(encode_value(&json!(3)), "Mw==");
    }

    #[test]
    fn a_cas_compares_the_value_or_absence() {
        let b = cas_body("cjE=", &json!(1), &json!(2));
        assert_eq!(b["compare"][0]["target"], "VALUE");
        assert_eq!(b["compare"][0]["value"], encode_value(&json!(1)));
        assert_eq!(
            b["success"][0]["requestPut"]["value"],
            encode_value(&json!(2))
        );
        let b = cas_body("cjE=", &Value::Null, &json!(2));
        assert_eq!(b["compare"][0]["target"], "CREATE");
        assert_eq!(b["compare"][0]["createRevision"], "0");
    }

    #[rustfmt::skip]
    #[test]
    fn answers_are_classified_honestly() {
        let cas = op(F::Cas, json!([1, 2]));
        let write = op(F::Write, json!(4));
        let read = op(F::Read, Value::Null);
        let three = json!({"kvs": [{"key": "cjE=", "value": encode_value(&json!(3))}], "count": "1"});
        let unavailable = json!({"error": "etcdserver: no leader", "code": 14});
        let cases: Vec<(&Op, Answer, Completion)> = vec![
            (&read,  Ok((StatusCode::OK, three)),                                Completion::Ok(json!(3))),
            (&read,  Ok((StatusCode::OK, json!({"header": {}}))),                Completion::Ok(Value::Null)),
            (&write, Ok((StatusCode::OK, json!({"header": {"revision": "2"}}))), Completion::Ok(json!(4))),
            (&cas,   Ok((StatusCode::OK, json!({"succeeded": true}))),           Completion::Ok(json!([1, 2]))),
            (&cas,   Ok((StatusCode::OK, json!({"header": {}}))),                Completion::Fail("cas-mismatch".into())),
            (&cas,   Ok((StatusCode::OK, json!({"succeeded": false}))),          Completion::Fail("cas-mismatch".into())),
            (&cas,   Ok((StatusCode::SERVICE_UNAVAILABLE, unavailable.clone())), Completion::Info("etcdserver: no leader".into())),
            (&write, Ok((StatusCode::TOO_MANY_REQUESTS, json!({"error": "etcdserver: too many requests", "code": 8}))), Completion::Info("etcdserver: too many requests".into())),
            (&write, Ok((StatusCode::BAD_REQUEST, json!({"error": "etcdserver: key is not provided", "code": 3}))), Completion::Fail("etcdserver: key is not provided".into())),
            (&cas,   Ok((StatusCode::BAD_GATEWAY, Value::Null)),                 Completion::Info("http 502".into())),
            (&cas,   Err(HttpError::Connect("refused".into())),                 Completion::Fail("connect: refused".into())),
            (&cas,   Err(HttpError::Timeout(Duration::from_secs(1))),           Completion::Info("timeout after 1s".into())),
            (&write, Err(HttpError::Transport("reset".into())),                 Completion::Info("transport: reset".into())),
        ];
        for (op, answer, want) in cases {
            assert_eq!(classify(op, answer.clone()), want, "{:?} {answer:?}", op.f);
        }
    }

    #[test]
    fn the_leader_is_the_member_whose_id_is_the_leader_field() {
        let s = parse_status(&json!({"header": {"member_id": "42"}, "leader": "42", "raftTerm": "3", "raftIndex": "9"})).unwrap();
        assert_eq!(
            (s.role.as_str(), s.term, s.leader, s.commit),
            ("leader", 3, Some(42), 9)
        );
        let s = parse_status(&json!({"header": {"member_id": "7"}, "leader": "42"})).unwrap();
        assert_eq!(s.role, "follower");
        let s = parse_status(&json!({"header": {"member_id": "7"}})).unwrap();
        assert_eq!((s.role.as_str(), s.leader), ("follower", None));
        assert!(parse_status(&json!({})).is_err());
    }

    #[tokio::test]
    async fn an_unanswered_cas_is_info_and_an_unanswered_read_is_fail() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let client = EtcdGatewayClient::new(
            HttpClient::new(Duration::from_millis(200)),
            &addr.to_string(),
            false,
        );
        assert!(matches!(
            client.invoke(&op(F::Cas, json!([1, 2]))).await,
            Completion::Info(_)
        ));
        assert!(matches!(
            client.invoke(&op(F::Read, Value::Null)).await,
            Completion::Fail(_)
        ));
        hold.abort();
    }
}
