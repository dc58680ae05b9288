//! Membership: after a run with membership changes (the harness's `member` fault), the cluster's
//! own voters must be the members its acknowledged changes made.
//!
//! The history holds each change as a `member` nemesis op with its outcome (`installed`: the
//! system said it was done; `indeterminate`: no answer, so either way is allowed), and, once the
//! clients stopped, one `member-list` op: the members the harness ended with (`members`) and the
//! voters each live member reports (`voters`: node -> names). A node whose removal was
//! acknowledged but that a member still counts as a voter, or whose addition was acknowledged
//! but that a member does not count, is an acknowledged membership change the cluster lost.
//! Nodes named by an indeterminate change are left out of the comparison.
//!
//! During the run ([`check_observed`]): a system that says each node's voters (raftkv's
//! `/status`, polled once a second into `status.jsonl`) is held to the changes as they happen.
//! The harness makes one change at a time, so a correct system's configurations form one
//! line: the original members, then each change in turn. A node may lag any number of changes
//! behind, and a change without a definite answer may be in or out, but a node that counts the
//! voters of no prefix of that line (say, a later change applied without an acknowledged earlier
//! one) holds a configuration that a lost acknowledged change made. This tells a follower's lag
//! from a lost change without waiting for the end of the run.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::History;
use crate::{OpType, Validity};

/// The nemesis `f` of the final member list.
pub const MEMBER_LIST: &str = "member-list";

/// The membership check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipResult {
    /// Invalid when a member's voters contradict an acknowledged change.
    pub valid: Validity,
    /// The members the acknowledged changes made (the harness's final view).
    pub acknowledged: Vec<String>,
    /// Nodes named by an indeterminate change (not compared).
    pub uncertain: Vec<String>,
    /// Per member that answered: its voters, when they contradict `acknowledged`.
    pub contradictions: Vec<Contradiction>,
    /// How many voters each member counts (`sizes` of the member list: NATS servers other
    /// than the meta leader say only this), when they disagree with each other or with the
    /// acknowledged members: members of one group that drifted apart. Empty when they agree.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sizes_disagree: BTreeMap<String, u64>,
    /// Seconds from the start to the first contradiction: the first voters seen during the run
    /// that no prefix of the changes explains, else the member list.
    pub time_s: f64,
    /// Voters seen during the run that no prefix of the changes explains (the first few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unexplained: Vec<Unexplained>,
}

/// Voters a node said during the run that no prefix of the membership changes explains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unexplained {
    /// Seconds from the start to the poll.
    pub time_s: f64,
    /// The node that said them.
    pub node: String,
    /// Its voters.
    pub voters: Vec<String>,
    /// The acknowledged changes invoked before the poll, in order (`+n4`, `-n2`).
    pub acknowledged: Vec<String>,
}

/// What a membership change may have done, by its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Acknowledged (`installed`): in every configuration after those before it.
    Must,
    /// No definite answer (`indeterminate`, a timeout, or no outcome yet): in or out.
    May,
    /// Refused before anything was proposed: never.
    Never,
}

/// One membership change: when it began, adds or removes, which node, and what it may have done.
#[derive(Debug, Clone)]
struct Change {
    invoked: u64,
    add: bool,
    node: String,
    effect: Effect,
}

/// The changes of a history in the order they began (the harness makes one at a time).
fn changes(history: &History) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    let mut open: Option<usize> = None;
    for o in history.nemesis_ops().filter(|o| o.f == "member") {
        let (Some(op), Some(node)) = (
            o.value.get("op").and_then(Value::as_str),
            o.value.get("node").and_then(Value::as_str),
        ) else {
            continue;
        };
        if o.kind == OpType::Invoke {
            out.push(Change {
                invoked: o.time.unwrap_or(0),
                add: op == "add",
                node: node.to_string(),
                effect: Effect::May,
            });
            open = Some(out.len() - 1);
            continue;
        }
        let outcome = o.value.get("outcome").and_then(Value::as_str);
        let reason = o.value.get("reason").and_then(Value::as_str).unwrap_or("");
        let effect = match outcome {
            Some("installed") => Effect::Must,
            // Refused before anything was proposed (`not added: refused: ...` for an addition
            // the system refused).
            Some("skipped")
                if reason.starts_with("refused") || reason.starts_with("not added: refused") =>
            {
                Effect::Never
            }
            _ => Effect::May,
        };
        match open.take() {
            Some(i) if out[i].node == node && out[i].add == (op == "add") => out[i].effect = effect,
            // An outcome without its invocation (older histories): it began when it ended.
            _ => out.push(Change {
                invoked: o.time.unwrap_or(0),
                add: op == "add",
                node: node.to_string(),
                effect,
            }),
        }
    }
    out
}

/// Most configurations followed at once: each change without a definite answer doubles them.
const MAX_CONFIGS: usize = 4096;

/// Every configuration a node may hold after `changes` (in order) from `start`, lagging or not;
/// `None` when there are too many to follow (then nothing is unexplained).
fn explained(start: &BTreeSet<String>, changes: &[&Change]) -> Option<BTreeSet<BTreeSet<String>>> {
    let mut live: BTreeSet<BTreeSet<String>> = BTreeSet::from([start.clone()]);
    let mut all = live.clone();
    for c in changes {
        let apply = |s: &BTreeSet<String>| {
            let mut s = s.clone();
            if c.add {
                s.insert(c.node.clone());
            } else {
                s.remove(&c.node);
            }
            s
        };
        live = match c.effect {
            Effect::Never => continue,
            Effect::Must => live.iter().map(apply).collect(),
            Effect::May => live.iter().map(apply).chain(live.iter().cloned()).collect(),
        };
        all.extend(live.iter().cloned());
        if all.len() > MAX_CONFIGS {
            return None;
        }
    }
    Some(all)
}

/// How late a poll's answer may be after its time: the status client's timeout, and some.
const POLL_SLACK_NS: u64 = 1_000_000_000;

/// Holds the voters nodes said during the run (`status.jsonl` samples with `voters`) to the
/// changes: each must be the configuration of some prefix of the changes invoked by then,
/// acknowledged ones never skipped. Nodes that know no voters yet (a joining node before its
/// first entries) are not compared. Returns the unexplained samples, the first `limit`.
pub fn check_observed(
    history: &History,
    samples: &[crate::availability::StatusSample],
    limit: usize,
) -> Vec<Unexplained> {
    let changes = changes(history);
    let Some(start) = samples.iter().find_map(|s| s.members.as_ref()) else {
        return Vec::new();
    };
    let start: BTreeSet<String> = start.iter().cloned().collect();
    let mut out = Vec::new();
    let mut cache: Option<(usize, Option<BTreeSet<BTreeSet<String>>>)> = None;
    for s in samples {
        let Some(voters) = s.voters.as_ref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let before: Vec<&Change> = changes
            .iter()
            .filter(|c| c.invoked <= s.time + POLL_SLACK_NS)
            .collect();
        if cache.as_ref().is_none_or(|(n, _)| *n != before.len()) {
            cache = Some((before.len(), explained(&start, &before)));
        }
        let Some((_, Some(configs))) = &cache else {
            continue;
        };
        let have: BTreeSet<String> = voters.iter().cloned().collect();
        if configs.contains(&have) {
            continue;
        }
        out.push(Unexplained {
            time_s: s.time as f64 / 1e9,
            node: s.node.clone(),
            voters: voters.clone(),
            acknowledged: before
                .iter()
                .filter(|c| c.effect == Effect::Must)
                .map(|c| format!("{}{}", if c.add { '+' } else { '-' }, c.node))
                .collect(),
        });
        if out.len() >= limit {
            break;
        }
    }
    out
}

/// One member's voters against the acknowledged members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contradiction {
    /// The member that answered.
    pub node: String,
    /// Its voters.
    pub voters: Vec<String>,
    /// Voters whose removal was acknowledged (or that were never added).
    pub removed_but_voting: Vec<String>,
    /// Acknowledged members it does not count.
    pub added_but_missing: Vec<String>,
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the last `member-list` of a history; `None` when it has none (no membership changes,
/// or a run cut short).
pub fn check_membership(history: &History) -> Option<MembershipResult> {
    let list = history
        .nemesis_ops()
        .filter(|o| o.f == MEMBER_LIST && o.kind != OpType::Invoke)
        .filter(|o| o.value.get("voters").is_some_and(Value::is_object))
        .last()?;
    let acknowledged = names(&list.value["members"]);
    let uncertain: BTreeSet<String> = history
        .nemesis_ops()
        .filter(|o| o.f == "member" && o.kind != OpType::Invoke)
        .filter(|o| o.value.get("outcome").and_then(Value::as_str) == Some("indeterminate"))
        .filter_map(|o| {
            o.value
                .get("node")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    let want: BTreeSet<&String> = acknowledged
        .iter()
        .filter(|n| !uncertain.contains(*n))
        .collect();
    let mut contradictions = Vec::new();
    for (node, voters) in list.value["voters"].as_object().into_iter().flatten() {
        let voters = names(voters);
        let have: BTreeSet<&String> = voters.iter().filter(|n| !uncertain.contains(*n)).collect();
        let removed_but_voting: Vec<String> =
            have.difference(&want).map(|n| (*n).clone()).collect();
        let added_but_missing: Vec<String> = want.difference(&have).map(|n| (*n).clone()).collect();
        if !removed_but_voting.is_empty() || !added_but_missing.is_empty() {
            contradictions.push(Contradiction {
                node: node.clone(),
                voters,
                removed_but_voting,
                added_but_missing,
            });
        }
    }
    // Every member counts the same number of voters, as many as the acknowledged members
    // (each indeterminate change's node in or out). A node of an indeterminate change is not
    // asked: it may have left (a removed NATS server disables JetStream and counts none).
    let sizes: BTreeMap<String, u64> = list.value["sizes"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(n, _)| !uncertain.contains(*n))
        .filter_map(|(n, v)| Some((n.clone(), v.as_u64()?)))
        .collect();
    let counts: BTreeSet<u64> = sizes.values().copied().collect();
    let (lo, hi) = (want.len() as u64, (want.len() + uncertain.len()) as u64);
    let sizes_disagree = if counts.len() > 1 || counts.iter().any(|&n| n < lo || n > hi) {
        sizes
    } else {
        BTreeMap::new()
    };
    Some(MembershipResult {
        valid: if contradictions.is_empty() && sizes_disagree.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        acknowledged,
        uncertain: uncertain.into_iter().collect(),
        contradictions,
        sizes_disagree,
        time_s: list.time.unwrap_or(0) as f64 / 1e9,
        unexplained: Vec::new(),
    })
}

impl MembershipResult {
    /// Adds what the polls saw during the run ([`check_observed`]): an unexplained
    /// configuration makes the check invalid, at the time of the first.
    pub fn with_observed(mut self, unexplained: Vec<Unexplained>) -> Self {
        if let Some(first) = unexplained.first() {
            self.valid = Validity::Invalid;
            self.time_s = first.time_s;
        }
        self.unexplained = unexplained;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_history;

    fn history(lines: &[(&str, &str, &str)]) -> History {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (kind, f, v))| {
                format!(
                    "{{\"index\":{i},\"time\":{},\"process\":\"nemesis\",\"type\":\"{kind}\",\"f\":\"{f}\",\"value\":{v}}}\n",
                    (i as u64 + 1) * 1_000_000_000
                )
            })
            .collect();
        parse_history(&text, false).unwrap()
    }

    #[test]
    fn voters_that_match_the_acknowledged_changes_are_valid() {
        let h = history(&[
            ("invoke", "member", r#"{"op":"remove","node":"n2"}"#),
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n2","outcome":"installed","members":["n1","n3"]}"#,
            ),
            (
                "info",
                "member-list",
                r#"{"members":["n1","n3"],"voters":{"n1":["n1","n3"],"n3":["n3","n1"]},"outcome":"installed"}"#,
            ),
        ]);
        let r = check_membership(&h).unwrap();
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.time_s, 3.0);
    }

    #[test]
    fn an_acknowledged_removal_the_cluster_lost_is_invalid_naming_node_and_voters() {
        let h = history(&[
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n2","outcome":"installed","members":["n1","n3"]}"#,
            ),
            (
                "info",
                "member",
                r#"{"op":"add","node":"n4","outcome":"installed","members":["n1","n3","n4"]}"#,
            ),
            (
                "info",
                "member-list",
                r#"{"members":["n1","n3","n4"],"voters":{"n1":["n1","n2","n3"],"n3":["n1","n3","n4"]},"outcome":"installed"}"#,
            ),
        ]);
        let r = check_membership(&h).unwrap();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.contradictions.len(), 1, "{r:?}");
        let c = &r.contradictions[0];
        assert_eq!(c.node, "n1");
        assert_eq!(c.removed_but_voting, vec!["n2".to_string()]);
        assert_eq!(c.added_but_missing, vec!["n4".to_string()]);
    }

    #[test]
    fn nodes_of_indeterminate_changes_are_not_compared_and_no_list_means_no_check() {
        let h = history(&[
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n2","outcome":"indeterminate","members":["n1","n2","n3"]}"#,
            ),
            (
                "info",
                "member-list",
                r#"{"members":["n1","n2","n3"],"voters":{"n1":["n1","n3"]},"outcome":"installed"}"#,
            ),
        ]);
        assert_eq!(check_membership(&h).unwrap().valid, Validity::Valid);
        let h = history(&[(
            "info",
            "member",
            r#"{"op":"add","node":"n4","outcome":"installed"}"#,
        )]);
        assert!(check_membership(&h).is_none());
    }

    fn sample(t: u64, node: &str, members: &[&str], voters: &[&str]) -> crate::StatusSample {
        serde_json::from_value(serde_json::json!({
            "time": t * 1_000_000_000, "node": node, "members": members, "voters": voters,
        }))
        .unwrap()
    }

    /// remove n2 at 1-2 s (installed), add n4 at 3-4 s (`add`'s outcome given).
    fn remove_then_add(add: &str) -> History {
        history(&[
            ("invoke", "member", r#"{"op":"remove","node":"n2"}"#),
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n2","outcome":"installed","members":["n1","n3"]}"#,
            ),
            ("invoke", "member", r#"{"op":"add","node":"n4"}"#),
            ("info", "member", add),
        ])
    }

    #[test]
    fn lagging_nodes_and_changes_without_an_answer_are_explained() {
        let h = remove_then_add(
            r#"{"op":"add","node":"n4","outcome":"installed","members":["n1","n3","n4"]}"#,
        );
        let all = ["n1", "n2", "n3"];
        let samples = vec![
            sample(0, "n1", &all, &all),
            // n3 lags behind the removal; n1 has it.
            sample(2, "n3", &all, &all),
            sample(2, "n1", &all, &["n1", "n3"]),
            // The addition, before and after its answer; a joining node that knows nothing.
            sample(3, "n1", &["n1", "n3"], &["n1", "n3", "n4"]),
            sample(3, "n4", &["n1", "n3"], &[]),
            sample(5, "n3", &["n1", "n3", "n4"], &["n1", "n3"]),
        ];
        assert_eq!(check_observed(&h, &samples, 5), vec![]);
        // An indeterminate removal may be in or out, so may what follows it.
        let h = history(&[
            ("invoke", "member", r#"{"op":"remove","node":"n2"}"#),
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n2","outcome":"indeterminate","members":["n1","n2","n3"]}"#,
            ),
            ("invoke", "member", r#"{"op":"add","node":"n4"}"#),
            (
                "info",
                "member",
                r#"{"op":"add","node":"n4","outcome":"installed","members":["n1","n2","n3","n4"]}"#,
            ),
        ]);
        let samples = vec![
            sample(0, "n1", &all, &all),
            sample(5, "n1", &all, &["n1", "n2", "n3", "n4"]),
            sample(5, "n3", &all, &["n1", "n3", "n4"]),
        ];
        assert_eq!(check_observed(&h, &samples, 5), vec![]);
    }

    #[test]
    fn a_later_change_without_an_acknowledged_earlier_one_is_unexplained_at_its_poll() {
        let h = remove_then_add(
            r#"{"op":"add","node":"n4","outcome":"installed","members":["n1","n3","n4"]}"#,
        );
        let all = ["n1", "n2", "n3"];
        let samples = vec![
            sample(0, "n1", &all, &all),
            // n3 counts n4 but still n2: the acknowledged removal of n2 was lost.
            sample(5, "n1", &["n1", "n3", "n4"], &["n1", "n3", "n4"]),
            sample(5, "n3", &["n1", "n3", "n4"], &["n1", "n2", "n3", "n4"]),
        ];
        let u = check_observed(&h, &samples, 5);
        assert_eq!(u.len(), 1, "{u:?}");
        assert_eq!((u[0].node.as_str(), u[0].time_s), ("n3", 5.0));
        assert_eq!(u[0].acknowledged, vec!["-n2".to_string(), "+n4".into()]);
        // The verdict: invalid, at the poll, even with a final list that agrees.
        let r = MembershipResult {
            valid: Validity::Valid,
            acknowledged: vec![],
            uncertain: vec![],
            contradictions: vec![],
            sizes_disagree: BTreeMap::new(),
            time_s: 70.0,
            unexplained: vec![],
        }
        .with_observed(u);
        assert_eq!((r.valid, r.time_s), (Validity::Invalid, 5.0));
        // A node that never saw a change invoked after its poll is not held to it; a change
        // refused before anything was proposed is never applied.
        let refused = remove_then_add(
            r#"{"op":"add","node":"n4","outcome":"skipped","reason":"not added: refused: a change is pending"}"#,
        );
        let samples = vec![
            sample(0, "n1", &all, &all),
            sample(5, "n1", &["n1", "n3"], &["n1", "n3", "n4"]),
        ];
        assert_eq!(check_observed(&refused, &samples, 5).len(), 1);
        let early = vec![
            sample(0, "n1", &all, &all),
            sample(1, "n1", &all, &["n1", "n3", "n4"]),
        ];
        // At 1 s (with the poll's slack, changes invoked by 2 s) only the removal had begun.
        assert_eq!(check_observed(&h, &early, 5).len(), 1);
    }

    #[test]
    fn members_that_count_different_sizes_have_drifted_apart() {
        // NATS after removing its meta leader n2 (indeterminate: answered, never applied on
        // n2): n2 leads and lists n2, n3, n4; n3 counts 2, n4 counts 3.
        let h = history(&[
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n2","outcome":"indeterminate","members":["n2","n3","n4"]}"#,
            ),
            (
                "info",
                "member-list",
                r#"{"members":["n2","n3","n4"],"voters":{"n2":["n2","n3","n4"]},"sizes":{"n2":3,"n3":2,"n4":3},"outcome":"installed"}"#,
            ),
        ]);
        let r = check_membership(&h).unwrap();
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert!(r.contradictions.is_empty(), "{r:?}");
        assert_eq!(r.sizes_disagree.get("n3"), Some(&2));
        // The same sizes everywhere, within the acknowledged members give or take n2: valid.
        let agree = history(&[
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n2","outcome":"indeterminate","members":["n2","n3","n4"]}"#,
            ),
            (
                "info",
                "member-list",
                r#"{"members":["n2","n3","n4"],"voters":{"n3":["n3","n4"]},"sizes":{"n3":2,"n4":2},"outcome":"installed"}"#,
            ),
        ]);
        assert_eq!(check_membership(&agree).unwrap().valid, Validity::Valid);
        // The node of the indeterminate removal counts none (it left: JetStream disabled): not
        // compared.
        let left = history(&[
            (
                "info",
                "member",
                r#"{"op":"remove","node":"n4","outcome":"indeterminate","members":["n1","n3","n4"]}"#,
            ),
            (
                "info",
                "member-list",
                r#"{"members":["n1","n3","n4"],"voters":{"n3":["n1","n3"]},"sizes":{"n1":2,"n3":2,"n4":0},"outcome":"installed"}"#,
            ),
        ]);
        assert_eq!(check_membership(&left).unwrap().valid, Validity::Valid);
        // All agree, but on a size no acknowledged configuration has.
        let wrong = history(&[(
            "info",
            "member-list",
            r#"{"members":["n1","n2","n3"],"voters":{},"sizes":{"n1":4,"n2":4,"n3":4},"outcome":"installed"}"#,
        )]);
        assert_eq!(check_membership(&wrong).unwrap().valid, Validity::Invalid);
    }
}
