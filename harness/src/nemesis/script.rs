//! Scripted nemeses (`[nemesis] script = ...`): rounds of steps that wait for the moment each
//! fault matters, on three raftkv nodes with run-time failpoints (raftkv's `/failpoints`,
//! started with `--failpoint-api`), as etcd's robustness tests drive gofail points over HTTP.
//!
//! What the scripts share lives here: the round's record sink, the raftkv clients, arming and
//! disarming (each recorded as a `failpoint` op), bounded polls for a pause or a new leader,
//! and the round's frame ([`run_round`]): a `start-NAME` op, the script's steps, every
//! failpoint the round armed disarmed, a `stop-NAME` op saying how far it got. The scripts
//! themselves are [`super::figure8`] and [`super::revote`].

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::spec::Script;
use super::{NemesisOp, Outcome};
use crate::client::{FailpointsView, NodeClient, RaftkvClient};
use crate::db;

/// How often a step polls the nodes.
pub(super) const POLL: Duration = Duration::from_millis(50);
/// The longest a step waits for an election or two.
pub(super) const STEP: Duration = Duration::from_secs(10);

/// One round's record sink: each op goes to the history as it happens.
pub type Record<'a> = dyn FnMut(NemesisOp) -> anyhow::Result<()> + Send + 'a;

/// What a script's steps found: who did what (completed), or how far they got.
pub(super) type Steps = anyhow::Result<Result<Value, String>>;

/// The raftkv clients of `nodes`, or why `script` cannot run on them.
fn raftkv_clients(
    script: Script,
    nodes: &[(String, NodeClient)],
) -> Result<Vec<(String, RaftkvClient)>, String> {
    if nodes.len() != 3 {
        return Err(format!(
            "{script} needs exactly 3 nodes, the cluster has {}",
            nodes.len()
        ));
    }
    nodes
        .iter()
        .map(|(n, c)| {
            c.raftkv()
                .map(|r| (n.clone(), r.clone()))
                .ok_or_else(|| format!("{script} arms raftkv failpoints; the target is not raftkv"))
        })
        .collect()
}

/// A round in progress: the clients and every (node, point) armed so far.
pub(super) struct Round<'r, 'a> {
    nodes: Vec<(String, RaftkvClient)>,
    armed: Vec<(String, &'static str)>,
    round: u64,
    record: &'r mut Record<'a>,
}

impl Round<'_, '_> {
    fn client(&self, node: &str) -> &RaftkvClient {
        &self
            .nodes
            .iter()
            .find(|(n, _)| n == node)
            .expect("a node of the round")
            .1
    }

    /// Every node of the round but `but`.
    pub(super) fn others(&self, but: &str) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != but)
            .collect()
    }

    /// Records `op` with the round's number in its value.
    pub(super) fn record(&mut self, mut op: NemesisOp) -> anyhow::Result<()> {
        op.value["round"] = json!(self.round);
        (self.record)(op)
    }

    pub(super) fn op(&mut self, f: &str, value: Value, outcome: Outcome) -> anyhow::Result<()> {
        self.record(NemesisOp::new(f, value, outcome))
    }

    /// Arms `point` on `node` with `action` (`pause`, `crash`) to fire once; recorded as a
    /// `failpoint` op. Whether raftkv took it.
    pub(super) async fn arm(
        &mut self,
        node: &str,
        point: &'static str,
        action: &str,
        step: &str,
    ) -> anyhow::Result<bool> {
        let r = self
            .client(node)
            .arm_failpoint(point, action, Some(1))
            .await;
        self.armed.push((node.to_string(), point));
        let value = json!({"node": node, "point": point, "action": action, "step": step});
        let ok = r.is_ok();
        self.op("failpoint", value, outcome_of(r))?;
        Ok(ok)
    }

    /// Disarms `point` on `node` (releasing a pause there); recorded.
    pub(super) async fn disarm(
        &mut self,
        node: &str,
        point: &'static str,
        step: &str,
    ) -> anyhow::Result<()> {
        let r = self.client(node).disarm_failpoint(point).await;
        if r.is_ok() {
            self.armed.retain(|(n, p)| !(n == node && *p == point));
        }
        let value = json!({"node": node, "point": point, "action": "off", "step": step});
        self.op("failpoint", value, outcome_of(r))
    }

    /// Waits (bounded) until one of `nodes` is paused at `point`; that node and its term.
    pub(super) async fn paused_at(
        &self,
        nodes: &[String],
        point: &str,
        within: Duration,
    ) -> Option<(String, u64)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for n in nodes {
                if let Ok(FailpointsView {
                    paused: Some(p),
                    paused_term,
                    ..
                }) = self.client(n).failpoints().await
                    && p == point
                {
                    return Some((n.clone(), paused_term.unwrap_or(0)));
                }
            }
            tokio::time::sleep(POLL).await;
        }
        None
    }

    /// The term `node` reports, if it answers.
    pub(super) async fn term(&self, node: &str) -> Option<u64> {
        self.client(node).status().await.ok().map(|s| s.term)
    }

    /// Waits (bounded) until a node other than `not` reports itself leader in a term after
    /// `after`; that node and its term.
    pub(super) async fn new_leader(
        &self,
        not: &str,
        after: u64,
        within: Duration,
    ) -> Option<(String, u64)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for (n, c) in self.nodes.iter().filter(|(n, _)| n != not) {
                if let Ok(s) = c.status().await
                    && s.role == "leader"
                    && s.term > after
                {
                    return Some((n.clone(), s.term));
                }
            }
            tokio::time::sleep(POLL).await;
        }
        None
    }
}

fn outcome_of(r: Result<FailpointsView, String>) -> Outcome {
    match r {
        Ok(_) => Outcome::Installed,
        Err(e) => Outcome::Indeterminate(e),
    }
}

/// Runs one round of `script` on `nodes` (the run's status clients): records a
/// `start-NAME` naming the leader, runs `steps` from that leader, disarms whatever the round
/// armed and left armed, and records a `stop-NAME`: `"completed": true` with what the steps
/// returned, or `"completed": false` and how far they got. A round that cannot start (no
/// leader, not raftkv, not 3 nodes) records one skipped `start-NAME`.
///
/// # Errors
/// Only when the history cannot be written (or Docker stopped answering a step).
pub(super) async fn run_round(
    script: Script,
    nodes: &[(String, NodeClient)],
    round: u64,
    record: &mut Record<'_>,
    steps: impl AsyncFnOnce(&mut Round<'_, '_>, &str) -> Steps,
) -> anyhow::Result<()> {
    let start = format!("start-{script}");
    let clients = match raftkv_clients(script, nodes) {
        Ok(c) => c,
        Err(why) => {
            return record(NemesisOp::new(
                &start,
                json!({"round": round}),
                Outcome::Skipped(why),
            ));
        }
    };
    let Some(a) = db::leader_of(&db::statuses(nodes).await) else {
        return record(NemesisOp::new(
            &start,
            json!({"round": round}),
            Outcome::Skipped("no leader known".into()),
        ));
    };
    let mut r = Round {
        nodes: clients,
        armed: Vec::new(),
        round,
        record,
    };
    r.op(&start, json!({"leader": a}), Outcome::Installed)?;
    let result = steps(&mut r, &a).await;
    let armed = std::mem::take(&mut r.armed);
    for (n, p) in armed {
        r.disarm(&n, p, "end of round").await?;
    }
    let value = match result? {
        Ok(mut who) => {
            who["completed"] = json!(true);
            who
        }
        Err(why) => json!({"completed": false, "how": why}),
    };
    r.op(&format!("stop-{script}"), value, Outcome::Installed)
}

/// The `stop-NAME` of round `round` when the end of the main phase cut it short.
pub fn cut_short(script: Script, round: u64) -> NemesisOp {
    NemesisOp::new(
        &format!("stop-{script}"),
        json!({"round": round, "completed": false, "how": "the main phase ended"}),
        Outcome::Installed,
    )
}

/// Disarms every point a script arms on every raftkv node of `nodes`, releasing any pause
/// (after a round cut short by the end of the main phase). Errors are ignored: a node may be
/// down.
pub async fn disarm_all(nodes: &[(String, NodeClient)]) {
    for (_, c) in nodes {
        if let Some(c) = c.raftkv() {
            for p in ["before-leader-send", "leader-commit", "after-vote"] {
                let _ = c.disarm_failpoint(p).await;
            }
        }
    }
}
