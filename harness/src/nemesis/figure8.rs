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

use super::script::{self, Record, Round, STEP, Steps};
use super::spec::Script;
use crate::client::NodeClient;

/// Where raftkv pauses a leader whose new entries are about to leave.
const BEFORE_SEND: &str = "before-leader-send";
/// Where raftkv pauses a leader whose commit index just moved.
const LEADER_COMMIT: &str = "leader-commit";
/// The longest step 1 waits for a client write to reach the leader.
const FIRST_ENTRY: Duration = Duration::from_secs(5);

/// Steps 1 to 4 from the leader `a`: who did what, or `Ok(Err(why))` when a step did not
/// happen in time.
async fn steps(r: &mut Round<'_, '_>, a: &str) -> Steps {
    let others = r.others(a);
    let a_only = [a.to_string()];
    // 1.
    if !r
        .arm(a, BEFORE_SEND, "pause", "stall the leader with a new entry")
        .await?
    {
        return Ok(Err(format!("could not arm {a}")));
    }
    let Some((_, t)) = r.paused_at(&a_only, BEFORE_SEND, FIRST_ENTRY).await else {
        return Ok(Err(format!("no new entry reached the leader {a}")));
    };
    // 2.
    for o in &others {
        r.arm(
            o,
            BEFORE_SEND,
            "pause",
            "stall the next leader with its first entry",
        )
        .await?;
    }
    let Some((b, _)) = r.paused_at(&others, BEFORE_SEND, STEP).await else {
        return Ok(Err(format!("no leader after {a}'s term {t} paused")));
    };
    for o in others.iter().filter(|o| **o != b) {
        r.disarm(o, BEFORE_SEND, "the other one did not win")
            .await?;
    }
    // 3.
    if !r
        .arm(
            a,
            LEADER_COMMIT,
            "pause",
            "stall the old leader when it commits",
        )
        .await?
    {
        return Ok(Err(format!("could not arm {a}")));
    }
    r.disarm(a, BEFORE_SEND, "the old leader comes back")
        .await?;
    let Some((_, t2)) = r.paused_at(&a_only, LEADER_COMMIT, STEP).await else {
        return Ok(Err(format!("{a} did not lead and commit again")));
    };
    // 4.
    r.disarm(&b, BEFORE_SEND, "the second leader comes back")
        .await?;
    match r.new_leader(a, t2, STEP).await {
        Some((l, _)) => Ok(Ok(json!({
            "old-leader": a,
            "commit-term": t2,
            "other-entry": b,
            "new-leader": l,
        }))),
        None => Ok(Err(format!("no leader after {a}'s term {t2}"))),
    }
}

/// Runs one round on `nodes` (the run's status clients), recording a `start-figure-8`, each
/// arming as a `failpoint` op, and a `stop-figure-8`: for a completed round, the old leader,
/// the term it committed in, the node that held the other entry and the leader after (the
/// holder of the other entry only when an old-term entry was committed too early); else
/// `"completed": false` and how far it got. A round that cannot start (no leader, not raftkv,
/// not 3 nodes) records one skipped `start-figure-8`.
///
/// # Errors
/// Only when the history cannot be written.
pub async fn round(
    nodes: &[(String, NodeClient)],
    round: u64,
    record: &mut Record<'_>,
) -> anyhow::Result<()> {
    script::run_round(Script::Figure8, nodes, round, record, steps).await
}
