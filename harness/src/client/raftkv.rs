//! The raftkv client: the register operations over raftkv's HTTP API (`node/API.md`).

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Completion, HttpClient, HttpError};
use crate::generator::{F, Op};

/// raftkv's `GET /status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Node id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, ...
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this node knows, if any.
    pub leader: Option<u64>,
    /// Commit index.
    #[serde(default)]
    pub commit: u64,
    /// Applied index.
    #[serde(default)]
    pub applied: u64,
    /// Voting members' ids (raftkv; empty for systems that do not say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<u64>,
    /// Learners' ids (raftkv).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<u64>,
}

impl Status {
    /// An etcd member's view from its maintenance status: member `me` leads when the `leader`
    /// it names (0: none known) is itself.
    pub fn of_etcd_member(me: u64, leader: u64, term: u64, commit: u64, applied: u64) -> Status {
        let leader = Some(leader).filter(|&l| l != 0);
        Status {
            id: me,
            role: if leader == Some(me) {
                "leader".into()
            } else {
                "follower".into()
            },
            term,
            leader,
            commit,
            applied,
            members: Vec::new(),
            learners: Vec::new(),
        }
    }
}

/// raftkv's `GET /failpoints` (with `--failpoint-api`): what is armed, how often each point
/// fired, and which point holds the Raft loop in a pause now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailpointsView {
    /// Point name -> its arming, e.g. `pause x1`.
    #[serde(default)]
    pub armed: std::collections::BTreeMap<String, String>,
    /// Point name -> times fired.
    #[serde(default)]
    pub hits: std::collections::BTreeMap<String, u64>,
    /// The point holding the loop, if any.
    #[serde(default)]
    pub paused: Option<String>,
    /// The node's term when that pause began.
    #[serde(default)]
    pub paused_term: Option<u64>,
}

/// A client bound to one raftkv node.
#[derive(Clone)]
pub struct RaftkvClient {
    http: HttpClient,
    base: String,
}

impl RaftkvClient {
    /// A client for the node whose HTTP API listens at `addr` (`host:port`), over HTTPS when
    /// `http` speaks TLS.
    pub fn new(http: HttpClient, addr: &str) -> Self {
        Self {
            base: format!("{}://{addr}", http.scheme()),
            http,
        }
    }

    /// The node's status.
    ///
    /// # Errors
    /// A description of what went wrong.
    pub async fn status(&self) -> Result<Status, String> {
        match self
            .http
            .request(Method::GET, &format!("{}/status", self.base), None)
            .await
        {
            Ok((StatusCode::OK, body)) => {
                serde_json::from_value(body).map_err(|e| format!("bad /status body: {e}"))
            }
            Ok((code, body)) => Err(format!("/status answered {code}: {body}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `POST /admin/members`: `{"add": id, "addr": "PEER/CLIENT"}` (learner, then voter once it
    /// caught up) or `{"remove": id}`. `Ok` when the change is applied; `Err((definite, why))`
    /// otherwise: definite when raftkv said it made no change (a 4xx, or 503 with
    /// `"definite": true`) or the node could not be reached, else indeterminate.
    ///
    /// # Errors
    /// As above.
    pub async fn change_members(&self, body: Value) -> Result<(), (bool, String)> {
        let url = format!("{}/admin/members", self.base);
        match self.http.request(Method::POST, &url, Some(&body)).await {
            Ok((StatusCode::OK, b)) if b.get("step").is_none() => Ok(()),
            Ok((StatusCode::OK, b)) => Err((false, format!("stopped at step {}", b["step"]))),
            Ok((code, b)) => {
                let definite = code.is_client_error()
                    || b.get("definite").and_then(Value::as_bool) == Some(true);
                Err((definite, format!("{code}: {b}")))
            }
            Err(e) => Err((e.is_definite(), e.to_string())),
        }
    }

    async fn failpoint_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<FailpointsView, String> {
        let url = format!("{}/failpoints{path}", self.base);
        match self.http.request(method.clone(), &url, body.as_ref()).await {
            Ok((StatusCode::OK, body)) => serde_json::from_value(body)
                .map_err(|e| format!("bad {method} /failpoints{path} body: {e}")),
            Ok((code, body)) => Err(format!(
                "{method} /failpoints{path} answered {code}: {body}"
            )),
            Err(e) => Err(format!("{method} /failpoints{path}: {e}")),
        }
    }

    /// The node's failpoints (needs `--failpoint-api`).
    ///
    /// # Errors
    /// No answer, or an answer other than 200 (403 without `--failpoint-api`).
    pub async fn failpoints(&self) -> Result<FailpointsView, String> {
        self.failpoint_call(Method::GET, "", None).await
    }

    /// Arms `point` with `action` (`crash`, `pause`, `sleep-MS`) for `count` firings.
    ///
    /// # Errors
    /// As [`RaftkvClient::failpoints`], or a refused arming (400 naming the field).
    pub async fn arm_failpoint(
        &self,
        point: &str,
        action: &str,
        count: Option<u64>,
    ) -> Result<FailpointsView, String> {
        let body = json!({ "action": action, "count": count });
        self.failpoint_call(Method::PUT, &format!("/{point}"), Some(body))
            .await
    }

    /// Disarms `point`, releasing the Raft loop if a pause there holds it.
    ///
    /// # Errors
    /// As [`RaftkvClient::failpoints`].
    pub async fn disarm_failpoint(&self, point: &str) -> Result<FailpointsView, String> {
        self.failpoint_call(Method::DELETE, &format!("/{point}"), None)
            .await
    }

    /// Invokes one operation and classifies the answer.
    pub async fn invoke(&self, op: &Op) -> Completion {
        let key = &op.key;
        let (method, url, body) = match op.f {
            F::Read => (Method::GET, format!("{}/kv/{key}", self.base), None),
            F::Write => (
                Method::PUT,
                format!("{}/kv/{key}", self.base),
                Some(json!({ "value": op.value })),
            ),
            F::Cas => {
                let (from, to) = (&op.value[0], &op.value[1]);
                (
                    Method::POST,
                    format!("{}/kv/{key}/cas", self.base),
                    Some(json!({ "from": from, "to": to })),
                )
            }
            F::Append => (
                Method::POST,
                format!("{}/kv/{key}/append", self.base),
                Some(json!({ "value": op.value })),
            ),
            F::Txn => (
                Method::POST,
                format!("{}/txn", self.base),
                Some(json!({ "ops": txn_request(&op.value) })),
            ),
            F::Transfer | F::BankRead => {
                return Completion::Fail(format!("{} is not supported by raftkv", op.f.name()));
            }
        };
        let answer = self.http.request(method, &url, body.as_ref()).await;
        let completion = classify(op, answer);
        // A read has no effect, so not knowing its outcome is the same as it not having happened.
        match completion {
            Completion::Info(reason) if op.read_only() => Completion::Fail(reason),
            c => c,
        }
    }
}

/// raftkv's keys are strings: Elle's integer key `k` becomes `t<k>` (a string key stays).
fn txn_request(mops: &Value) -> Value {
    let ops = mops.as_array().map(Vec::as_slice).unwrap_or_default();
    Value::Array(
        ops.iter()
            .map(|m| {
                let key = match &m[1] {
                    Value::String(s) => s.clone(),
                    k => format!("t{k}"),
                };
                json!([m[0], key, m[2]])
            })
            .collect(),
    )
}

/// The invoked micro-ops with each read's result taken from the answer's `ops` (same order).
fn txn_completed(mops: &Value, body: &Value) -> Completion {
    let (Some(asked), Some(done)) = (mops.as_array(), body["ops"].as_array()) else {
        return Completion::Info(format!("a txn answer without ops: {body}"));
    };
    if asked.len() != done.len() {
        return Completion::Info(format!(
            "a txn of {} micro-ops answered with {}",
            asked.len(),
            done.len()
        ));
    }
    let filled = asked
        .iter()
        .zip(done)
        .map(|(a, d)| {
            if a[0] == "r" {
                json!([a[0], a[1], d[2]])
            } else {
                a.clone()
            }
        })
        .collect();
    Completion::Ok(Value::Array(filled))
}

/// Turns an HTTP answer (or its absence) into a completion.
fn classify(op: &Op, answer: Result<(StatusCode, Value), HttpError>) -> Completion {
    match answer {
        Ok((StatusCode::OK, body)) => match op.f {
            F::Read => Completion::Ok(body.get("value").cloned().unwrap_or(Value::Null)),
            F::Txn => txn_completed(&op.value, &body),
            _ => Completion::Ok(op.value.clone()),
        },
        Ok((code, body)) => {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let reason = if error.is_empty() {
                format!("http {}", code.as_u16())
            } else {
                error
            };
            match body.get("definite").and_then(Value::as_bool) {
                Some(true) => Completion::Fail(reason),
                // No `definite` flag (a proxy's error page, a crash mid-answer): we cannot know.
                _ => Completion::Info(reason),
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

    #[rustfmt::skip]
    #[test]
    fn answers_are_classified_by_status_and_definite_flag() {
        let cas = op(F::Cas, json!([1, 2]));
        let read = op(F::Read, Value::Null);
        let append = op(F::Append, json!(7));
        let cases: Vec<(&Op, Answer, Completion)> = vec![
            (&append, Ok((StatusCode::OK, json!({}))),                                 Completion::Ok(json!(7))),
            (&read, Ok((StatusCode::OK, json!({"value": [0, 7]}))),                    Completion::Ok(json!([0, 7]))),
            (&append, Ok((StatusCode::CONFLICT, json!({"error":"not-a-list","definite":true}))), Completion::Fail("not-a-list".into())),
            (&read, Ok((StatusCode::OK, json!({"value": 3}))),                         Completion::Ok(json!(3))),
            (&read, Ok((StatusCode::OK, json!({"value": null}))),                      Completion::Ok(Value::Null)),
            (&cas,  Ok((StatusCode::OK, json!({}))),                                   Completion::Ok(json!([1, 2]))),
            (&cas,  Ok((StatusCode::CONFLICT, json!({"error":"cas-mismatch","definite":true}))), Completion::Fail("cas-mismatch".into())),
            (&cas,  Ok((StatusCode::SERVICE_UNAVAILABLE, json!({"error":"no-leader","definite":true}))), Completion::Fail("no-leader".into())),
            (&cas,  Ok((StatusCode::GATEWAY_TIMEOUT, json!({"error":"timeout","definite":false}))), Completion::Info("timeout".into())),
            (&cas,  Ok((StatusCode::BAD_GATEWAY, Value::Null)),                        Completion::Info("http 502".into())),
            (&cas,  Err(HttpError::Connect("refused".into())),                        Completion::Fail("connect: refused".into())),
            (&cas,  Err(HttpError::Timeout(Duration::from_secs(1))),                  Completion::Info("timeout after 1s".into())),
            (&cas,  Err(HttpError::Transport("reset".into())),                        Completion::Info("transport: reset".into())),
        ];
        for (op, answer, want) in cases {
            assert_eq!(classify(op, answer.clone()), want, "{:?} {answer:?}", op.f);
        }
    }

    #[tokio::test]
    async fn an_unanswered_read_is_a_fail_but_an_unanswered_write_is_info() {
        // A listener that accepts and never answers: the request is delivered, the answer never comes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let client = RaftkvClient::new(
            HttpClient::new(Duration::from_millis(200)),
            &addr.to_string(),
        );
        assert!(matches!(
            client.invoke(&op(F::Write, json!(1))).await,
            Completion::Info(_)
        ));
        assert!(matches!(
            client.invoke(&op(F::Read, Value::Null)).await,
            Completion::Fail(_)
        ));
        hold.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_definite_fail() {
        // Bind then drop: nothing listens on the port any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = RaftkvClient::new(
            HttpClient::new(Duration::from_millis(500)),
            &addr.to_string(),
        );
        match client.invoke(&op(F::Write, json!(1))).await {
            Completion::Fail(reason) => assert!(reason.starts_with("connect"), "{reason}"),
            other => panic!("expected a definite failure, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod txn_tests {
    use super::*;

    #[test]
    fn a_txn_goes_out_with_string_keys_and_comes_back_with_elles() {
        let asked = json!([["append", 3, 1], ["r", 3, null], ["w", "k", 2]]);
        assert_eq!(
            txn_request(&asked),
            json!([["append", "t3", 1], ["r", "t3", null], ["w", "k", 2]])
        );
        let body = json!({"ops": [["append", "t3", 1], ["r", "t3", [7, 1]], ["w", "k", 2]]});
        assert_eq!(
            txn_completed(&asked, &body),
            Completion::Ok(json!([["append", 3, 1], ["r", 3, [7, 1]], ["w", "k", 2]]))
        );
        assert!(matches!(
            txn_completed(&asked, &json!({"ops": []})),
            Completion::Info(_)
        ));
        let txn = |value| Op {
            f: F::Txn,
            key: String::new(),
            value,
        };
        assert!(txn(json!([["r", 1, null], ["r", 2, null]])).read_only());
        assert!(!txn(asked).read_only());
    }
}
