//! Availability: which faults ran when, how much of the clients' work succeeded each second,
//! how long the system took to recover after every fault, and who led the cluster.
//!
//! Definitions (all times in seconds since the run started, by completion time of client ops):
//! - an operation is **unavailable** when the system gave no definite answer: it ended `info`
//!   (timed out, indeterminate), or `fail` for any reason but a semantic answer in
//!   [`DEFINITE_ANSWERS`] (`no-leader`, a refused connection, etcd's "no leader", a `fail` with no
//!   recorded error, ...). It is **available** otherwise: `ok`, or a `fail` such as
//!   `cas-mismatch`, which is the correct answer of a working system (see [`is_unavailable`]).
//! - **availability** of a second: `available / completed` of the operations completing in it;
//!   the run's availability ([`overall`]) is the same over the whole history.
//! - **baseline** of a fault: the mean number of `ok` completions per second in the
//!   [`BASELINE_S`] seconds before the fault started (clipped at the run's start).
//! - **recovery time** of a fault: the smallest `d >= 0` (searched in [`RECOVERY_STEP_S`] steps)
//!   such that the 1 s window `[stop + d, stop + d + 1)` holds at least [`RECOVERY_FRACTION`] of
//!   the baseline's `ok` completions. `None` when the history ends first, or when the baseline is
//!   zero (nothing to recover to).
//! - **unavailable seconds** of a fault: whole seconds from the fault's start up to its recovery
//!   point (or the end of the history) whose `ok` count is below [`UNAVAILABLE_FRACTION`] of the
//!   baseline.
//!
//! It never reads files: the caller parses `status.jsonl` with [`parse_status`].

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{History, Outcome};
use crate::perf::OpPoint;

/// Seconds before a fault that define its baseline.
pub const BASELINE_S: f64 = 5.0;
/// Fraction of the baseline a 1 s window must reach to count as recovered.
pub const RECOVERY_FRACTION: f64 = 0.8;
/// Step of the recovery search, seconds.
pub const RECOVERY_STEP_S: f64 = 0.1;
/// Below this fraction of the baseline a second counts as unavailable.
pub const UNAVAILABLE_FRACTION: f64 = 0.5;

/// A fault: a nemesis start paired with its stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NemesisInterval {
    /// Fault kind: `partition`, `kill`, `pause`, `clock`, `loss`, `delay`.
    pub kind: String,
    /// A short label: the kind and its detail (`partition one-way`).
    pub label: String,
    /// Start, seconds.
    pub start_s: f64,
    /// Stop, seconds (`None`: never stopped in the history).
    pub stop_s: Option<f64>,
    /// True when the final heal stopped it.
    pub heal: bool,
}

/// The nemesis `f` of a membership change: an `invoke` when it begins, an `info` with its
/// `outcome` (and `op`, `node`) when it ends; the pair is one interval of kind `member`.
pub const MEMBER: &str = "member";

/// The fault kind a nemesis `f` starts, if it starts one.
fn starts(f: &str) -> Option<&str> {
    match f {
        "kill" => Some("kill"),
        "pause" => Some("pause"),
        _ => f.strip_prefix("start-"),
    }
}

/// The fault kind a nemesis `f` stops, if it stops one.
fn stops(f: &str) -> Option<&str> {
    match f {
        "restart" => Some("kill"),
        "resume" => Some("pause"),
        _ => f.strip_prefix("stop-"),
    }
}

/// Pairs the nemesis's start and stop ops, per fault kind, first in first out. Starts the nemesis
/// reported as `skipped` installed nothing and are left out; a stop with no open start (a heal of
/// something left over) is ignored. A membership change ([`MEMBER`]) is the interval from its
/// invocation to its completion (left out when skipped).
pub fn nemesis_intervals(history: &History) -> Vec<NemesisInterval> {
    let mut out: Vec<NemesisInterval> = Vec::new();
    let mut open: BTreeMap<String, VecDeque<usize>> = BTreeMap::new();
    // Membership changes: invoked when they begin, completed with their outcome.
    let mut member_began: VecDeque<f64> = VecDeque::new();
    for op in history.nemesis_ops() {
        let t = op.time.unwrap_or(0) as f64 / 1e9;
        if op.f == MEMBER {
            if op.kind == crate::OpType::Invoke {
                member_began.push_back(t);
                continue;
            }
            let outcome = op.value.get("outcome").and_then(Value::as_str);
            // A change skipped before it began has no invocation.
            let began = if outcome == Some("skipped") && op.value.get("node").is_none() {
                None
            } else {
                member_began.pop_front()
            };
            if let Some(start_s) = began
                && outcome != Some("skipped")
            {
                let what = op
                    .value
                    .get("op")
                    .and_then(Value::as_str)
                    .unwrap_or("change");
                let node = op.value.get("node").and_then(Value::as_str).unwrap_or("");
                out.push(NemesisInterval {
                    kind: MEMBER.to_string(),
                    label: format!("member {what} {node}").trim_end().to_string(),
                    start_s,
                    stop_s: Some(t),
                    heal: false,
                });
            }
            continue;
        }
        // An invoke/complete pair records the fault twice; the completion is what happened.
        if op.kind == crate::OpType::Invoke {
            continue;
        }
        let outcome = op.value.get("outcome").and_then(Value::as_str);
        if let Some(kind) = starts(&op.f) {
            if outcome == Some("skipped") {
                continue;
            }
            let detail = ["kind", "target"]
                .iter()
                .find_map(|k| op.value.get(*k).and_then(Value::as_str));
            let label = match detail {
                Some(d) => format!("{kind} {d}"),
                None => kind.to_string(),
            };
            open.entry(kind.to_string())
                .or_default()
                .push_back(out.len());
            out.push(NemesisInterval {
                kind: kind.to_string(),
                label,
                start_s: t,
                stop_s: None,
                heal: false,
            });
        } else if let Some(kind) = stops(&op.f)
            && let Some(i) = open.get_mut(kind).and_then(VecDeque::pop_front)
        {
            out[i].stop_s = Some(t);
            out[i].heal = op.value.get("heal").and_then(Value::as_bool) == Some(true);
        }
    }
    out
}

/// The `error`s of a `fail` completion that are a definite, semantic answer from a working
/// system rather than a sign it could not answer: the compare-and-set found another value
/// (`cas-mismatch`), the append found a value that is not a list (`not-a-list`).
pub const DEFINITE_ANSWERS: &[&str] = &["cas-mismatch", "not-a-list"];

/// True when an operation that ended with `outcome` (and `error`, the completion's reason)
/// shows the system unavailable: `info` always; `fail` unless its error is one of
/// [`DEFINITE_ANSWERS`] (so a `fail` with no recorded error counts as unavailable); never `ok`.
pub fn is_unavailable(outcome: Outcome, error: Option<&str>) -> bool {
    match outcome {
        Outcome::Ok => false,
        Outcome::Info => true,
        Outcome::Fail => !error.is_some_and(|e| DEFINITE_ANSWERS.contains(&e)),
    }
}

/// True when the operation got a definite answer (the negation of [`is_unavailable`]).
fn available(p: &OpPoint) -> bool {
    !is_unavailable(p.outcome, p.error.as_deref())
}

/// Availability of the whole history: `available / completed` (`None`: nothing completed).
pub fn overall(points: &[OpPoint]) -> Option<f64> {
    let up = points.iter().filter(|p| available(p)).count();
    (!points.is_empty()).then(|| up as f64 / points.len() as f64)
}

/// Availability per second for `seconds` seconds (`None`: nothing completed that second).
pub fn per_second(points: &[OpPoint], seconds: usize) -> Vec<Option<f64>> {
    let mut up = vec![0u32; seconds];
    let mut all = vec![0u32; seconds];
    for p in points {
        let s = (p.end_s as usize).min(seconds.saturating_sub(1));
        if s < seconds {
            all[s] += 1;
            if available(p) {
                up[s] += 1;
            }
        }
    }
    up.iter()
        .zip(&all)
        .map(|(&o, &a)| (a > 0).then(|| f64::from(o) / f64::from(a)))
        .collect()
}

/// How one fault ended, and how long the clients took to get their throughput back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Fault kind.
    pub kind: String,
    /// Fault label.
    pub label: String,
    /// Fault start, seconds.
    pub start_s: f64,
    /// Fault stop, seconds.
    pub stop_s: f64,
    /// `ok` completions per second in the [`BASELINE_S`] seconds before the start.
    pub baseline_ok_per_s: f64,
    /// Seconds after the stop until a 1 s window reached [`RECOVERY_FRACTION`] of the baseline.
    pub recovered_after_s: Option<f64>,
    /// Whole seconds from start to recovery with fewer than [`UNAVAILABLE_FRACTION`] of the
    /// baseline's `ok` completions.
    pub unavailable_s: f64,
}

/// Recovery of every stopped fault (see the module's definitions). `end_s` is the history's end.
pub fn recovery(points: &[OpPoint], faults: &[NemesisInterval], end_s: f64) -> Vec<Recovery> {
    let mut ok: Vec<f64> = points
        .iter()
        .filter(|p| p.outcome == Outcome::Ok)
        .map(|p| p.end_s)
        .collect();
    ok.sort_by(f64::total_cmp);
    let count = |a: f64, b: f64| ok.partition_point(|&t| t < b) - ok.partition_point(|&t| t < a);
    let mut out = Vec::new();
    for f in faults {
        let Some(stop) = f.stop_s else { continue };
        let from = (f.start_s - BASELINE_S).max(0.0);
        let span = f.start_s - from;
        let baseline = if span >= 0.5 {
            count(from, f.start_s) as f64 / span
        } else {
            0.0
        };
        let mut recovered = None;
        if baseline > 0.0 {
            let mut k = 0u32;
            loop {
                let d = f64::from(k) * RECOVERY_STEP_S;
                if stop + d + 1.0 > end_s + 1e-9 {
                    break;
                }
                if count(stop + d, stop + d + 1.0) as f64 >= RECOVERY_FRACTION * baseline {
                    recovered = Some((d * 1000.0).round() / 1000.0);
                    break;
                }
                k += 1;
            }
        }
        let until = recovered.map_or(end_s, |d| stop + d);
        let mut unavailable = 0.0;
        let mut s = f.start_s;
        while s + 1.0 <= until + 1e-9 {
            if (count(s, s + 1.0) as f64) < UNAVAILABLE_FRACTION * baseline {
                unavailable += 1.0;
            }
            s += 1.0;
        }
        out.push(Recovery {
            kind: f.kind.clone(),
            label: f.label.clone(),
            start_s: f.start_s,
            stop_s: stop,
            baseline_ok_per_s: baseline,
            recovered_after_s: recovered,
            unavailable_s: unavailable,
        });
    }
    out
}

/// Unavailable seconds summed per fault kind.
pub fn unavailability(recoveries: &[Recovery]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for r in recoveries {
        *out.entry(r.kind.clone()).or_insert(0.0) += r.unavailable_s;
    }
    out
}

/// One line of `status.jsonl`: a node's `/status` as the harness polled it once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSample {
    /// Nanoseconds since the run started.
    pub time: u64,
    /// Node name.
    pub node: String,
    /// `leader`, `follower`, `candidate`.
    #[serde(default)]
    pub role: Option<String>,
    /// Raft term.
    #[serde(default)]
    pub term: Option<u64>,
    /// The leader the node knows of.
    #[serde(default)]
    pub leader: Option<u64>,
    /// The cluster's members as the harness knew them at this poll (runs with membership
    /// changes; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// The node's own voters, when the system says them (raftkv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voters: Option<Vec<String>>,
    /// Why the poll failed (then the other fields are absent).
    #[serde(default)]
    pub error: Option<String>,
}

/// Parses `status.jsonl`; lines that do not parse (a truncated last line) are skipped.
pub fn parse_status(text: &str) -> Vec<StatusSample> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A stretch of time a node led in one term, or could not be reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderSegment {
    /// Node name.
    pub node: String,
    /// The term it led (`None`: the node did not answer).
    pub term: Option<u64>,
    /// Start, seconds.
    pub start_s: f64,
    /// End, seconds (the node's next sample that says otherwise, or one poll after its last).
    pub end_s: f64,
}

/// A stretch of time a node was a member of the cluster (runs with membership changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberSpan {
    /// Node name.
    pub node: String,
    /// The first poll that listed it, seconds.
    pub start_s: f64,
    /// The first poll that no longer listed it (or one poll after the last), seconds.
    pub end_s: f64,
}

/// Each node's membership over time from the `members` of the status samples; empty when no
/// sample names members (a run without membership changes).
pub fn member_spans(samples: &[StatusSample]) -> Vec<MemberSpan> {
    let mut polls: BTreeMap<u64, &Vec<String>> = BTreeMap::new();
    for s in samples {
        if let Some(m) = &s.members {
            polls.entry(s.time).or_insert(m);
        }
    }
    let mut open: BTreeMap<&str, f64> = BTreeMap::new();
    let mut out = Vec::new();
    let mut last = 0.0;
    for (&time, members) in &polls {
        let t = time as f64 / 1e9;
        let gone: Vec<&str> = open
            .keys()
            .copied()
            .filter(|n| !members.iter().any(|m| m == n))
            .collect();
        for n in gone {
            let start_s = open.remove(n).unwrap_or(t);
            out.push(MemberSpan {
                node: n.to_string(),
                start_s,
                end_s: t,
            });
        }
        for m in members.iter() {
            open.entry(m.as_str()).or_insert(t);
        }
        last = t;
    }
    for (n, start_s) in open {
        out.push(MemberSpan {
            node: n.to_string(),
            start_s,
            end_s: last + 1.0,
        });
    }
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.node.cmp(&b.node)));
    out
}

/// Leader and unreachable segments per node from the status samples.
pub fn leader_segments(samples: &[StatusSample]) -> Vec<LeaderSegment> {
    let mut by_node: BTreeMap<&str, Vec<&StatusSample>> = BTreeMap::new();
    for s in samples {
        by_node.entry(&s.node).or_default().push(s);
    }
    let mut out = Vec::new();
    for (node, mut v) in by_node {
        v.sort_by_key(|s| s.time);
        let state = |s: &StatusSample| -> Option<Option<u64>> {
            if s.error.is_some() {
                Some(None)
            } else if s.role.as_deref() == Some("leader") {
                Some(s.term)
            } else {
                None
            }
        };
        let mut cur: Option<(Option<u64>, f64)> = None;
        for (i, s) in v.iter().enumerate() {
            let t = s.time as f64 / 1e9;
            let st = state(s);
            if let Some((term, start)) = cur
                && st != Some(term)
            {
                out.push(LeaderSegment {
                    node: node.to_string(),
                    term,
                    start_s: start,
                    end_s: t,
                });
                cur = None;
            }
            if cur.is_none()
                && let Some(term) = st
            {
                cur = Some((term, t));
            }
            if i + 1 == v.len()
                && let Some((term, start)) = cur
            {
                out.push(LeaderSegment {
                    node: node.to_string(),
                    term,
                    start_s: start,
                    end_s: t + 1.0,
                });
            }
        }
    }
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_history;
    use crate::perf::op_points;
    use crate::perf::tests::history_with_errors;

    fn nemesis_history(lines: &[(u64, &str, &str)]) -> History {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (ms, f, v))| {
                format!(
                    "{{\"index\":{i},\"time\":{},\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"{f}\",\"value\":{v}}}\n",
                    ms * 1_000_000
                )
            })
            .collect();
        parse_history(&text, false).unwrap()
    }

    #[rustfmt::skip]
    #[test]
    fn nemesis_ops_pair_per_kind_and_skipped_starts_are_dropped() {
        let h = nemesis_history(&[
            (1000, "start-partition", r#"{"kind":"halves","outcome":"installed"}"#),
            (1500, "kill",            r#"{"target":"leader","outcome":"installed"}"#),
            (2000, "pause",           r#"{"outcome":"skipped"}"#),
            (3000, "stop-partition",  r#"{"outcome":"installed"}"#),
            (4000, "restart",         r#"{"outcome":"installed","heal":true}"#),
            (5000, "start-clock",     r#"{"kind":"bump"}"#),
            (6000, "resume",          r#"{"heal":true}"#),
        ]);
        let iv = nemesis_intervals(&h);
        assert_eq!(iv.len(), 3);
        assert_eq!((iv[0].label.as_str(), iv[0].start_s, iv[0].stop_s, iv[0].heal), ("partition halves", 1.0, Some(3.0), false));
        assert_eq!((iv[1].label.as_str(), iv[1].stop_s, iv[1].heal), ("kill leader", Some(4.0), true));
        assert_eq!((iv[2].kind.as_str(), iv[2].stop_s), ("clock", None));
    }

    /// `ok` reads every 100 ms from 0 to `end` ms, except in `[gap_from, gap_to)` where they fail.
    #[test]
    fn member_spans_follow_the_members_each_poll_listed() {
        let text = [
            r#"{"time":0,"node":"n1","role":"leader","term":1,"members":["n1","n2","n3"]}"#,
            r#"{"time":0,"node":"n2","role":"follower","term":1,"members":["n1","n2","n3"]}"#,
            r#"{"time":1000000000,"node":"n1","role":"leader","term":1,"members":["n1","n3"]}"#,
            r#"{"time":2000000000,"node":"n1","role":"leader","term":1,"members":["n1","n3","n4"]}"#,
        ]
        .join("\n");
        let spans = member_spans(&parse_status(&text));
        let got: Vec<(&str, f64, f64)> = spans
            .iter()
            .map(|s| (s.node.as_str(), s.start_s, s.end_s))
            .collect();
        assert_eq!(
            got,
            vec![
                ("n1", 0.0, 3.0),
                ("n2", 0.0, 1.0),
                ("n3", 0.0, 3.0),
                ("n4", 2.0, 3.0)
            ]
        );
        // No members in the samples: no spans (a run without membership changes).
        assert!(
            member_spans(&parse_status(r#"{"time":0,"node":"n1","role":"leader"}"#)).is_empty()
        );
    }

    #[test]
    fn a_membership_change_spans_its_invocation_to_its_completion_unless_skipped() {
        let lines = [
            (1000u64, "invoke", r#"{"op":"remove","node":"n2"}"#),
            (
                2500,
                "info",
                r#"{"op":"remove","node":"n2","outcome":"installed"}"#,
            ),
            (
                4000,
                "info",
                r#"{"members":["n1","n3"],"outcome":"skipped","reason":"no change fits"}"#,
            ),
            (5000, "invoke", r#"{"op":"add","node":"n4"}"#),
            (
                9000,
                "info",
                r#"{"op":"add","node":"n4","outcome":"indeterminate"}"#,
            ),
            (
                10000,
                "invoke",
                r#"{"op":"add","node":"n5","replace":true}"#,
            ),
            (
                11000,
                "info",
                r#"{"op":"add","node":"n5","replace":true,"outcome":"skipped"}"#,
            ),
        ];
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (ms, kind, value))| {
                format!(
                    "{{\"index\":{i},\"time\":{},\"process\":\"nemesis\",\"type\":\"{kind}\",\"f\":\"member\",\"value\":{value}}}\n",
                    ms * 1_000_000
                )
            })
            .collect();
        let h = parse_history(&text, false).unwrap();
        let got = nemesis_intervals(&h);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].label.as_str(), got[0].start_s, got[0].stop_s),
            ("member remove n2", 1.0, Some(2.5))
        );
        assert_eq!(
            (got[1].label.as_str(), got[1].start_s, got[1].stop_s),
            ("member add n4", 5.0, Some(9.0))
        );
        assert!(got.iter().all(|i| i.kind == "member"));
    }

    fn steady(end: u64, gap_from: u64, gap_to: u64) -> Vec<OpPoint> {
        (0..end / 100)
            .map(|i| {
                let t = (i * 100) as f64 / 1000.0 + 0.01;
                let ms = i * 100;
                OpPoint {
                    process: 0,
                    start_s: t - 0.005,
                    end_s: t,
                    latency_ms: 5.0,
                    f: "read".into(),
                    outcome: if (gap_from..gap_to).contains(&ms) {
                        Outcome::Fail
                    } else {
                        Outcome::Ok
                    },
                    error: None,
                }
            })
            .collect()
    }

    fn fault(start: f64, stop: f64) -> NemesisInterval {
        NemesisInterval {
            kind: "partition".into(),
            label: "partition".into(),
            start_s: start,
            stop_s: Some(stop),
            heal: false,
        }
    }

    #[test]
    fn recovery_is_the_first_window_back_at_the_baseline_rate() {
        // 10 ok/s; the fault runs 6..8 s but failures last until 9.5 s.
        let pts = steady(20_000, 6_000, 9_500);
        let r = recovery(&pts, &[fault(6.0, 8.0)], 20.0);
        assert_eq!(r.len(), 1);
        assert!((r[0].baseline_ok_per_s - 10.0).abs() < 1e-9);
        // Windows [8+d, 9+d) need 8 oks; oks resume at 9.51: d = 1.2 holds 9.51..10.11 (7),
        // d = 1.3 holds 9.51..10.21 (8).
        assert_eq!(r[0].recovered_after_s, Some(1.3));
        // 6..7, 7..8, 8..9 are unavailable; 9..10 has 5 oks (>= 5, not below half).
        assert_eq!(r[0].unavailable_s, 3.0);
        assert_eq!(unavailability(&r)["partition"], 3.0);
    }

    #[test]
    fn recovery_is_immediate_without_impact_and_none_when_never_back() {
        let pts = steady(20_000, 0, 0);
        let r = recovery(&pts, &[fault(6.0, 8.0)], 20.0);
        assert_eq!(
            (r[0].recovered_after_s, r[0].unavailable_s),
            (Some(0.0), 0.0)
        );
        let pts = steady(20_000, 6_000, 20_000);
        let r = recovery(&pts, &[fault(6.0, 8.0)], 20.0);
        assert_eq!(r[0].recovered_after_s, None);
        assert_eq!(r[0].unavailable_s, 14.0);
    }

    #[test]
    fn availability_is_available_over_completed_per_second() {
        // The gap's fails carry no error: they count as unavailable.
        let pts = steady(3_000, 1_000, 1_500);
        assert_eq!(
            per_second(&pts, 4),
            vec![Some(1.0), Some(0.5), Some(1.0), None]
        );
    }

    #[rustfmt::skip]
    #[test]
    fn a_fault_free_run_with_cas_mismatches_is_fully_available() {
        let h = history_with_errors(&[
            (0, "write", "ok",   None,                  100,  110),
            (1, "cas",   "fail", Some("cas-mismatch"),  200,  210),
            (0, "read",  "ok",   None,                  300,  310),
            (1, "cas",   "ok",   None,                 1100, 1110),
            (0, "cas",   "fail", Some("cas-mismatch"), 1200, 1210),
            (2, "txn",   "fail", Some("not-a-list"),   1300, 1310),
        ]);
        let pts = op_points(&h);
        assert_eq!(pts[1].error.as_deref(), Some("cas-mismatch"));
        assert_eq!(per_second(&pts, 2), vec![Some(1.0), Some(1.0)]);
        assert_eq!(overall(&pts), Some(1.0));
        let perf = crate::Perf::new(&h, &[]);
        assert_eq!(perf.summary.availability, 1.0);
        assert_eq!(perf.availability, vec![Some(1.0), Some(1.0)]);
        assert!(perf.nemesis.is_empty() && perf.unavailable_s.is_empty());
    }

    #[rustfmt::skip]
    #[test]
    fn no_leader_fails_other_fails_and_info_are_unavailable() {
        let h = history_with_errors(&[
            (0, "read",  "ok",   None,                            0,  10),
            (1, "write", "fail", Some("no-leader"),              20,  30),
            (2, "cas",   "info", Some("timeout"),                40, 540),
            (0, "cas",   "fail", Some("etcdserver: no leader"), 600, 610),
            (3, "write", "fail", None,                          700, 710),
            (4, "cas",   "fail", Some("cas-mismatch"),          800, 810),
            (5, "cas",   "info", Some("cas-mismatch"),          850, 900),
        ]);
        let pts = op_points(&h);
        assert_eq!(per_second(&pts, 1), vec![Some(2.0 / 7.0)]);
        assert_eq!(overall(&pts), Some(2.0 / 7.0));
        assert_eq!(overall(&[]), None);
        assert!(!is_unavailable(Outcome::Ok, None));
        assert!(!is_unavailable(Outcome::Fail, Some("not-a-list")));
        assert!(is_unavailable(Outcome::Fail, Some("connection refused")));
        assert!(is_unavailable(Outcome::Info, None));
    }

    #[test]
    fn leader_segments_follow_role_and_term_changes() {
        let text = r#"{"time":0,"node":"n1","role":"leader","term":1,"leader":1}
{"time":0,"node":"n2","role":"follower","term":1,"leader":1}
{"time":1000000000,"node":"n1","role":"leader","term":1,"leader":1}
{"time":1000000000,"node":"n2","role":"follower","term":1,"leader":1}
{"time":2000000000,"node":"n1","error":"timeout"}
{"time":2000000000,"node":"n2","role":"leader","term":2,"leader":2}
{"time":3000000000,"node":"n1","role":"follower","term":2,"leader":2}
{"time":3000000000,"node":"n2","role":"leader","term":2,"leader":2}
{"time":3500000000,"node":"n2","rol"#;
        let s = parse_status(text);
        assert_eq!(s.len(), 8);
        let seg = leader_segments(&s);
        let view: Vec<_> = seg
            .iter()
            .map(|g| (g.node.as_str(), g.term, g.start_s, g.end_s))
            .collect();
        assert_eq!(
            view,
            vec![
                ("n1", Some(1), 0.0, 2.0),
                ("n1", None, 2.0, 3.0),
                ("n2", Some(2), 2.0, 4.0)
            ]
        );
    }
}
