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

use std::collections::BTreeSet;

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
    /// Seconds from the start to the member list.
    pub time_s: f64,
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
    Some(MembershipResult {
        valid: if contradictions.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        acknowledged,
        uncertain: uncertain.into_iter().collect(),
        contradictions,
        time_s: list.time.unwrap_or(0) as f64 / 1e9,
    })
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
}
