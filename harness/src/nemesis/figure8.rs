//! `script = "figure-8"`: the Raft paper's Figure 8, driven step by step on three raftkv nodes
//! with run-time failpoints (raftkv's `/failpoints`, started with `--failpoint-api`), as
//! etcd's robustness tests drive gofail points over HTTP.
//!
//! A random crash almost never lands between the two messages that matter here; the script
//! waits for each moment instead. One round, with `A` the leader of term `t`:
//!
//! 1. `A` pauses at `before-leader-send`: a client's new entry `X` (index `i`, term `t`) is on
//!    its disk only, and the client waits for its answer.
//! 2. The other two elect a leader `B` of a later term, which pauses at `before-leader-send`
//!    too: its own entry at index `i` is on its disk only. The third node, `C`, has neither.
//! 3. `A` is released with `leader-commit` armed. It hears the later term, steps down, wins
//!    the next election with `C`'s vote (its log is longer than `C`'s) and replicates `X` to `C`
//!    one entry per message (the workload's `--max-append-entries 1`). The moment its commit
//!    index moves, `A` applies what it committed, answers those clients, and pauses before
//!    the messages carrying the new commit index leave.
//!    - Raft's rule (§5.4.2): `A` may count replicas only for an entry of its own term, so its
//!      commit index moves once its term's first entry is on `C` as well.
//!    - With `--bug commit-old-term` it moves as soon as `X` is on `C`: `X` is acknowledged
//!      while `C`'s log still ends in term `t`.
//! 4. `B` is released. Its entry at `i` has a later term than `C`'s last entry, so `C` votes
//!    for it unless `C` holds `A`'s new-term entry. With the bug, `B` wins and overwrites the
//!    acknowledged `X` on `C`: every later read misses it. Without, `C` refuses, `B` votes
//!    for `C`, and `X` survives.
//! 5. Once a node other than `A` leads in a term after `A`'s, everything is disarmed.
//!
//! Every step is bounded; a step that does not happen in time (no write reached the leader,
//! say) ends the round early, and the round's end disarms every failpoint it armed.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{NemesisOp, Outcome};
use crate::client::{FailpointsView, NodeClient, RaftkvClient};
use crate::db;

/// Where raftkv pauses a leader whose new entries are about to leave.
const BEFORE_SEND: &str = "before-leader-send";
/// Where raftkv pauses a leader whose commit index just moved.
const LEADER_COMMIT: &str = "leader-commit";
/// How often a step polls the nodes.
const POLL: Duration = Duration::from_millis(50);
/// The longest step 1 waits for a client write to reach the leader.
const FIRST_ENTRY: Duration = Duration::from_secs(5);
/// The longest any later step waits (an election or two).
const STEP: Duration = Duration::from_secs(10);

/// One round's record sink: each op goes to the history as it happens.
pub type Record<'a> = dyn FnMut(NemesisOp) -> anyhow::Result<()> + Send + 'a;

/// The raftkv clients of `nodes`, or why the script cannot run on them.
fn raftkv_clients(nodes: &[(String, NodeClient)]) -> Result<Vec<(String, RaftkvClient)>, String> {
    if nodes.len() != 3 {
        return Err(format!(
            "figure-8 needs exactly 3 nodes, the cluster has {}",
            nodes.len()
        ));
    }
    nodes
        .iter()
        .map(|(n, c)| {
            c.raftkv()
                .map(|r| (n.clone(), r.clone()))
                .ok_or_else(|| "figure-8 arms raftkv failpoints; the target is not raftkv".into())
        })
        .collect()
}

/// A round in progress: the clients and every (node, point) armed so far.
struct Round<'r, 'a> {
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

    fn op(
        &mut self,
        f: &str,
        mut value: serde_json::Value,
        outcome: Outcome,
    ) -> anyhow::Result<()> {
        value["round"] = json!(self.round);
        (self.record)(NemesisOp::new(f, value, outcome))
    }

    /// Arms `point` on `node` to pause once; recorded as a `failpoint` op.
    async fn arm(&mut self, node: &str, point: &'static str, step: &str) -> anyhow::Result<bool> {
        let r = self
            .client(node)
            .arm_failpoint(point, "pause", Some(1))
            .await;
        self.armed.push((node.to_string(), point));
        let value = json!({"node": node, "point": point, "action": "pause", "step": step});
        let ok = r.is_ok();
        self.op("failpoint", value, outcome_of(r))?;
        Ok(ok)
    }

    /// Disarms `point` on `node` (releasing a pause there); recorded.
    async fn disarm(&mut self, node: &str, point: &'static str, step: &str) -> anyhow::Result<()> {
        let r = self.client(node).disarm_failpoint(point).await;
        if r.is_ok() {
            self.armed.retain(|(n, p)| !(n == node && *p == point));
        }
        let value = json!({"node": node, "point": point, "action": "off", "step": step});
        self.op("failpoint", value, outcome_of(r))
    }

    /// Waits (bounded) until one of `nodes` is paused at `point`; that node and its term.
    async fn paused_at(
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

    /// Waits (bounded) until a node other than `not` reports itself leader in a term after
    /// `after`; that node.
    async fn new_leader(&self, not: &str, after: u64, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for (n, c) in self.nodes.iter().filter(|(n, _)| n != not) {
                if let Ok(s) = c.status().await
                    && s.role == "leader"
                    && s.term > after
                {
                    return Some(n.clone());
                }
            }
            tokio::time::sleep(POLL).await;
        }
        None
    }

    /// Steps 1 to 4: who did what, or `Ok(Err(why))` when a step did not happen in time.
    async fn steps(&mut self, a: &str) -> anyhow::Result<Result<serde_json::Value, String>> {
        let others: Vec<String> = self
            .nodes
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != a)
            .collect();
        let a_only = [a.to_string()];
        // 1.
        if !self
            .arm(a, BEFORE_SEND, "stall the leader with a new entry")
            .await?
        {
            return Ok(Err(format!("could not arm {a}")));
        }
        let Some((_, t)) = self.paused_at(&a_only, BEFORE_SEND, FIRST_ENTRY).await else {
            return Ok(Err(format!("no new entry reached the leader {a}")));
        };
        // 2.
        for o in &others {
            self.arm(o, BEFORE_SEND, "stall the next leader with its first entry")
                .await?;
        }
        let Some((b, _)) = self.paused_at(&others, BEFORE_SEND, STEP).await else {
            return Ok(Err(format!("no leader after {a}'s term {t} paused")));
        };
        for o in others.iter().filter(|o| **o != b) {
            self.disarm(o, BEFORE_SEND, "the other one did not win")
                .await?;
        }
        // 3.
        if !self
            .arm(a, LEADER_COMMIT, "stall the old leader when it commits")
            .await?
        {
            return Ok(Err(format!("could not arm {a}")));
        }
        self.disarm(a, BEFORE_SEND, "the old leader comes back")
            .await?;
        let Some((_, t2)) = self.paused_at(&a_only, LEADER_COMMIT, STEP).await else {
            return Ok(Err(format!("{a} did not lead and commit again")));
        };
        // 4.
        self.disarm(&b, BEFORE_SEND, "the second leader comes back")
            .await?;
        match self.new_leader(a, t2, STEP).await {
            Some(l) => Ok(Ok(json!({
                "old-leader": a,
                "commit-term": t2,
                "other-entry": b,
                "new-leader": l,
            }))),
            None => Ok(Err(format!("no leader after {a}'s term {t2}"))),
        }
    }
}

fn outcome_of(r: Result<FailpointsView, String>) -> Outcome {
    match r {
        Ok(_) => Outcome::Installed,
        Err(e) => Outcome::Indeterminate(e),
    }
}

/// Runs one round on `nodes` (the run's status clients), recording a `start-figure-8`, each
/// arming as a `failpoint` op, and a `stop-figure-8`: for a completed round, the old leader,
/// the term it committed in, the node that held the other entry and the leader after (the
/// holder of the other entry only when an old-term entry was committed too early); else
/// `"completed": false` and how far it got. A round
/// that cannot start (no leader, not raftkv, not 3 nodes) records one skipped
/// `start-figure-8`.
///
/// # Errors
/// Only when the history cannot be written.
pub async fn round(
    nodes: &[(String, NodeClient)],
    round: u64,
    record: &mut Record<'_>,
) -> anyhow::Result<()> {
    let skipped = |why: String| {
        NemesisOp::new(
            "start-figure-8",
            json!({"round": round}),
            Outcome::Skipped(why),
        )
    };
    let clients = match raftkv_clients(nodes) {
        Ok(c) => c,
        Err(why) => return record(skipped(why)),
    };
    let Some(a) = db::leader_of(&db::statuses(nodes).await) else {
        return record(skipped("no leader known".into()));
    };
    let mut r = Round {
        nodes: clients,
        armed: Vec::new(),
        round,
        record,
    };
    r.op("start-figure-8", json!({"leader": a}), Outcome::Installed)?;
    let result = r.steps(&a).await;
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
    r.op("stop-figure-8", value, Outcome::Installed)
}

/// The `stop-figure-8` of round `round` when the end of the main phase cut it short.
pub fn cut_short(round: u64) -> NemesisOp {
    NemesisOp::new(
        "stop-figure-8",
        json!({"round": round, "completed": false, "how": "the main phase ended"}),
        Outcome::Installed,
    )
}

/// Disarms both points on every raftkv node of `nodes`, releasing any pause (after a round
/// cut short by the end of the main phase). Errors are ignored: a node may be down.
pub async fn disarm_all(nodes: &[(String, NodeClient)]) {
    for (_, c) in nodes {
        if let Some(c) = c.raftkv() {
            for p in [BEFORE_SEND, LEADER_COMMIT] {
                let _ = c.disarm_failpoint(p).await;
            }
        }
    }
}
