//! `script = "revote"`: a voter crashes right after its vote and is asked again in the same
//! term (Raft §5.2, Figure 2: `currentTerm` and `votedFor` are persistent state, saved before
//! a vote is answered). On three raftkv nodes with run-time failpoints, one round, with `A`
//! the leader of term `t`:
//!
//! 1. Both followers are armed: `after-vote` crashes a node right after it granted a vote
//!    (persisted and sent), `before-leader-send` pauses a new leader before its first entry
//!    leaves. `A` is killed.
//! 2. The followers elect `X` in a term `t1 > t`: the voter `V` crashes once its vote is out
//!    and Faultline restarts it at once; `X` pauses with its first entry on its disk only, so
//!    nobody hears of `t1` from it (no heartbeats). `X` is also made deaf to the others (a
//!    `one-way` partition: it drops their packets, so their SYN-ACKs too): its vote request to
//!    the dead `A` may still be in a connect attempt, retried until raftkv's 2 s I/O timeout,
//!    and if it reached the restarted `A`, `A` would move to `t1` and vote for `X`.
//! 3. `A` is restarted. `A` (at `t`) and `V` elect a leader `Y`.
//!    - Raft's rule: `V` comes back in `t1` having voted for `X`, so nobody wins `t1` again and
//!      `Y` leads a later term.
//!    - With `--bug forget-vote` `V` comes back with neither: it grants `t + 1` again, and when
//!      `t1 = t + 1` (the usual case; a split vote in step 2 makes it later) `X` and `Y` lead
//!      the same term.
//! 4. `Y` serves clients for [`HOLD`]; then `X` hears again and is released. Under Raft's
//!    rule its heartbeats meet the later term and it steps down. With the bug both are
//!    leaders of `t1`: the followers accept both (same term), each commits and serves reads
//!    from its own log, and appends acknowledged by one are missing from the other's reads.
//!
//! Each step is bounded; a step that does not happen in time ends the round early, with `A`
//! restarted and every failpoint the round armed disarmed. The round's `stop-revote` names
//! `old-leader`/`old-term`, `first-leader`/`first-term` (`X`, `t1`), `voter` and
//! `second-leader`/`second-term` (`Y`, its term), and `same-term`.

use std::time::Duration;

use serde_json::json;

use super::schedule::{Action, Fault, Targets};
use super::script::{self, Record, Round, STEP, Steps};
use super::spec::{FaultKind, KillTarget, PartitionKind, Script};
use super::{Nemesis, NemesisContext, Outcome};
use crate::client::NodeClient;

/// Where raftkv crashes a node right after it granted a vote.
const AFTER_VOTE: &str = "after-vote";
/// Where raftkv pauses a new leader before its first entry leaves.
const BEFORE_SEND: &str = "before-leader-send";
/// How long the second leader serves clients before the paused one is released.
const HOLD: Duration = Duration::from_secs(2);

/// Applies `action` through the nemesis and records its ops; whether every op took.
async fn apply(
    r: &mut Round<'_, '_>,
    nemesis: &mut Nemesis,
    action: &Action,
    ctx: &NemesisContext<'_>,
) -> anyhow::Result<bool> {
    let ops = nemesis.apply(action, ctx).await?;
    let ok = ops.iter().all(|o| matches!(o.outcome, Outcome::Installed));
    for op in ops {
        r.record(op)?;
    }
    Ok(ok)
}

/// Steps 1 to 4 from the leader `a`.
async fn steps(
    r: &mut Round<'_, '_>,
    a: &str,
    nemesis: &mut Nemesis,
    ctx: &NemesisContext<'_>,
) -> Steps {
    let Some(t) = r.term(a).await else {
        return Ok(Err(format!("the leader {a} did not say its term")));
    };
    let others = r.others(a);
    // 1.
    for o in &others {
        let crash = r
            .arm(o, AFTER_VOTE, "crash", "crash right after a vote")
            .await?;
        let pause = r
            .arm(o, BEFORE_SEND, "pause", "stall the next leader")
            .await?;
        if !(crash && pause) {
            return Ok(Err(format!("could not arm {o}")));
        }
    }
    let kill = Action::Start(Fault::Kill {
        target: KillTarget::Leader,
        nodes: Targets::Nodes(vec![a.to_string()]),
    });
    if !apply(r, nemesis, &kill, ctx).await? {
        apply(r, nemesis, &Action::Stop(FaultKind::Kill), ctx).await?;
        return Ok(Err(format!("could not kill {a}")));
    }
    // 2. (The voter `V` is the follower that did not win.)
    let first = r
        .paused_at(&others, BEFORE_SEND, STEP)
        .await
        .map(|(x, t1)| {
            let v = others
                .iter()
                .find(|o| **o != x)
                .expect("three nodes")
                .clone();
            (x, t1, v)
        });
    let mut deaf = false;
    if let Some((x, _, v)) = &first {
        // Deaf `X` (see step 2 above): its connect attempts to `A` never complete, and its
        // paused loop sends nothing new.
        let order = vec![x.clone(), a.to_string(), v.clone()];
        let cut = Action::Start(Fault::Partition {
            kind: PartitionKind::OneWay,
            order,
        });
        deaf = apply(r, nemesis, &cut, ctx).await?;
    }
    // 3. (`A` comes back whatever happened.)
    let restarted = apply(r, nemesis, &Action::Stop(FaultKind::Kill), ctx).await?;
    let second = match &first {
        Some((x, ..)) if deaf && restarted => r.new_leader(x, t, STEP).await,
        _ => None,
    };
    // 4.
    if second.is_some() {
        tokio::time::sleep(HOLD).await;
    }
    if let Some((x, ..)) = &first {
        r.disarm(x, AFTER_VOTE, "the first leader votes no more")
            .await?;
        apply(r, nemesis, &Action::Stop(FaultKind::Partition), ctx).await?;
        r.disarm(x, BEFORE_SEND, "the first leader comes back")
            .await?;
    }
    let Some((x, t1, v)) = first else {
        return Ok(Err(format!("no leader after {a}'s term {t} paused")));
    };
    if !deaf {
        return Ok(Err(format!("could not cut {x} off")));
    }
    if !restarted {
        return Ok(Err(format!("could not restart {a}")));
    }
    let Some((y, t2)) = second else {
        return Ok(Err(format!(
            "no leader besides the paused {x} after {a} came back"
        )));
    };
    Ok(Ok(json!({
        "old-leader": a,
        "old-term": t,
        "first-leader": x,
        "first-term": t1,
        "voter": v,
        "second-leader": y,
        "second-term": t2,
        "same-term": t1 == t2,
    })))
}

/// Runs one round on `nodes` (the run's status clients), killing and restarting the leader
/// through `nemesis`; records a `start-revote`, each arming as a `failpoint` op, the `kill`
/// and `restart`, and a `stop-revote` (see the module's documentation). A round that cannot
/// start (no leader, not raftkv, not 3 nodes) records one skipped `start-revote`.
///
/// # Errors
/// When the history cannot be written or Docker stopped answering.
pub async fn round(
    nodes: &[(String, NodeClient)],
    nemesis: &mut Nemesis,
    ctx: &NemesisContext<'_>,
    round: u64,
    record: &mut Record<'_>,
) -> anyhow::Result<()> {
    script::run_round(Script::Revote, nodes, round, record, async |r, a| {
        steps(r, a, nemesis, ctx).await
    })
    .await
}
