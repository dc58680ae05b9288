//! Readiness and leader probes of a target file (`[ready]`, `[leader]`), for systems whose
//! client protocol has no status of its own (exec), or whose file asks for its own probes.
//!
//! A node's status is then: not ready (an error saying what the probe saw), or ready with the
//! role `leader` or `follower` by the leader probe; without a leader probe the protocol's own
//! status decides the role, and an exec target has no leader (`role` `ready`).

use std::time::Duration;

use hyper::Method;

use super::{HttpClient, NodeClient, Status};
use crate::control::Cluster;
use crate::target::{TargetFile, Vars};

/// The probes of one node.
#[derive(Clone)]
pub struct Probe {
    id: u64,
    node: crate::control::NodeHandle,
    container: String,
    docker: bollard::Docker,
    http: HttpClient,
    ready: Option<Check>,
    leader: Option<LeaderCheck>,
}

#[derive(Clone, Debug)]
enum Check {
    Tcp(u16),
    Http { port: u16, path: String },
    Command(Vec<String>),
}

#[derive(Clone, Debug)]
enum LeaderCheck {
    Command {
        cmd: Vec<String>,
        equals: String,
    },
    Http {
        port: u16,
        path: String,
        pointer: String,
        equals: String,
    },
}

impl Probe {
    /// The probes `target` describes, for node `i` of `cluster`, whose template variables are
    /// `vars`.
    pub fn new(
        target: &TargetFile,
        cluster: &Cluster,
        i: usize,
        vars: &Vars,
        http: &HttpClient,
    ) -> Self {
        let node = &cluster.nodes()[i];
        let ready = target
            .ready
            .as_ref()
            .map(|r| match (&r.tcp, &r.http, &r.command) {
                (Some(p), _, _) => Check::Tcp(target.port(p)),
                (None, Some(h), _) => Check::Http {
                    port: target.port(&h.port),
                    path: h.path.clone(),
                },
                (None, None, Some(c)) => Check::Command(vars.expand_all(c)),
                (None, None, None) => Check::Tcp(target.port(&target.client.port)),
            });
        let leader = target.leader.as_ref().map(|l| match (&l.command, &l.http) {
            (Some(cmd), _) => {
                let equals = l.equals.clone().unwrap_or_default();
                LeaderCheck::Command {
                    cmd: vars.expand_all(cmd),
                    // Checked when the file was read: every variable exists.
                    equals: vars.expand(&equals).unwrap_or(equals),
                }
            }
            (None, h) => {
                let h = h
                    .clone()
                    .expect("validated: a leader probe has command or http");
                LeaderCheck::Http {
                    port: target.port(&h.port),
                    path: h.path,
                    pointer: h.pointer.unwrap_or_default(),
                    equals: h.equals.unwrap_or_default(),
                }
            }
        });
        Self {
            id: i as u64 + 1,
            node: node.clone(),
            container: node.container.clone(),
            docker: cluster.docker_of(&node.name).clone(),
            http: http.clone(),
            ready,
            leader,
        }
    }

    /// The node's status by these probes; `inner` is asked when the file has no leader probe.
    ///
    /// # Errors
    /// What the readiness or leader probe saw when the node is not ready.
    pub async fn status(&self, inner: &NodeClient) -> Result<Status, String> {
        match &self.ready {
            Some(Check::Tcp(port)) => {
                let addr = self.node.addr(*port);
                match tokio::time::timeout(
                    self.http.timeout(),
                    tokio::net::TcpStream::connect(&addr),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("{addr}: {e}")),
                    Err(_) => return Err(format!("{addr}: no connection in time")),
                }
            }
            Some(Check::Http { port, path }) => {
                let url = format!("http://{}{path}", self.node.addr(*port));
                match self.http.request(Method::GET, &url, None).await {
                    Ok((code, _)) if code.is_success() => {}
                    Ok((code, _)) => return Err(format!("{url}: {code}")),
                    Err(e) => return Err(format!("{url}: {e}")),
                }
            }
            Some(Check::Command(cmd)) => {
                let out = self.exec(cmd).await?;
                if out.code != 0 {
                    return Err(format!(
                        "`{}` exited with {}: {}",
                        cmd.join(" "),
                        out.code,
                        out.stdout
                            .trim()
                            .lines()
                            .chain(out.stderr.trim().lines())
                            .next()
                            .unwrap_or("")
                    ));
                }
            }
            None => {}
        }
        let leads = match &self.leader {
            None => {
                return match Box::pin(inner.status()).await {
                    Ok(s) => Ok(s),
                    // Exec clients have no status: ready, no leader.
                    Err(_) if matches!(inner, NodeClient::Exec(_)) => Ok(self.role("ready")),
                    Err(e) => Err(e),
                };
            }
            Some(LeaderCheck::Command { cmd, equals }) => {
                let out = self.exec(cmd).await?;
                out.code == 0 && out.stdout.lines().next().map(str::trim) == Some(equals.as_str())
            }
            Some(LeaderCheck::Http {
                port,
                path,
                pointer,
                equals,
            }) => {
                let url = format!("http://{}{path}", self.node.addr(*port));
                let (code, body) = self
                    .http
                    .request(Method::GET, &url, None)
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                if !code.is_success() {
                    return Err(format!("{url}: {code}"));
                }
                json_equals(body.pointer(pointer), equals)
            }
        };
        Ok(self.role(if leads { "leader" } else { "follower" }))
    }

    /// Runs `cmd` in the node's container, at most 5 s.
    async fn exec(&self, cmd: &[String]) -> Result<crate::control::ExecOutput, String> {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        tokio::time::timeout(
            Duration::from_secs(5),
            crate::control::exec_in(&self.docker, &self.container, &args),
        )
        .await
        .map_err(|_| format!("`{}` did not finish in 5 s", cmd.join(" ")))?
        .map_err(|e| e.to_string())
    }

    fn role(&self, role: &str) -> Status {
        Status {
            id: self.id,
            role: role.into(),
            term: 0,
            leader: None,
            commit: 0,
            applied: 0,
            ..Default::default()
        }
    }
}

/// Whether a JSON value found by a pointer is `equals`: a string by its text, anything else by
/// its JSON text (`true`, `3`).
fn json_equals(found: Option<&serde_json::Value>, equals: &str) -> bool {
    match found {
        Some(serde_json::Value::String(s)) => s == equals,
        Some(v) => serde_json::to_string(v).is_ok_and(|text| text == equals),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pointer_value_matches_by_its_text() {
        let body = json!({"state": {"role": "leader", "leading": true, "term": 3}});
        assert!(json_equals(body.pointer("/state/role"), "leader"));
        assert!(!json_equals(body.pointer("/state/role"), "follower"));
        assert!(json_equals(body.pointer("/state/leading"), "true"));
        assert!(json_equals(body.pointer("/state/term"), "3"));
        assert!(!json_equals(body.pointer("/nothing"), "leader"));
    }
}
