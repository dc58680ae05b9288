//! Jepsen's long-fork checker (`jepsen.tests.long-fork`): an anomaly parallel snapshot
//! isolation allows and snapshot isolation forbids, where two reads observe concurrent writes
//! in incompatible orders:
//!
//! ```text
//! T1: w(x, 1)   T2: w(y, 1)   T3: r(x) = nil, r(y) = 1   T4: r(x) = 1, r(y) = nil
//! ```
//!
//! The history: write transactions of exactly one micro-op `["w", k, v]` (each key written at
//! most once; Jepsen's generator uses `f` `write`), and read transactions of `["r", k, v]`
//! micro-ops only (`f` `read`), each reading a whole group of keys (`null` on the
//! invocation, the value or `null` on the completion). Every `ok` op whose value is a non-empty
//! list of reads is a read, whatever its `f`, as in Jepsen.
//!
//! Reads are grouped by the set of keys they read; with [`LongForkOptions::group_size`] every
//! group must have that many keys. Within a group, read `a` dominates read `b` when it shows
//! every key `b` shows (the same value) and maybe more; two reads neither of which dominates
//! the other, each showing a key the other lacks, are a `long-fork`. Verdict: `unknown` when a
//! key is written twice, a group has the wrong size or two reads show different values for one
//! key (Jepsen's "illegal history"); else `invalid` with any fork; else `valid`. Every pair of
//! reads in a group is compared, as in Jepsen.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Finding, MAX_EXAMPLES, lines_by_kind, plural};
use crate::Validity;
use crate::history::{History, OpType, Outcome, Process};

/// How to judge a long-fork history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LongForkOptions {
    /// Every read must read exactly this many keys (Jepsen's `n`, elle-cli's `--group-size`);
    /// `None`: reads are grouped by their keys whatever their number.
    pub group_size: Option<usize>,
}

/// What was counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LongForkCounts {
    /// `ok` read transactions.
    pub reads: usize,
    /// Reads that saw nothing (every value `null`).
    pub early_reads: usize,
    /// Reads that saw every key of their group.
    pub late_reads: usize,
    /// Write transactions invoked.
    pub writes: usize,
    /// Groups of keys read.
    pub groups: usize,
    /// Pairs of reads in incompatible orders.
    pub forks: usize,
}

/// Two reads of one group that saw concurrent writes in incompatible orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LongFork {
    /// The earlier read's completion `index`.
    pub a_index: u64,
    /// Its source line.
    pub a_line: usize,
    /// The later read's completion `index`.
    pub b_index: u64,
    /// Its source line.
    pub b_line: usize,
    /// A key `a` saw written and `b` did not.
    pub a_only: String,
    /// A key `b` saw written and `a` did not.
    pub b_only: String,
    /// What `a` read, `key=value` by key.
    pub a_read: String,
    /// What `b` read.
    pub b_read: String,
}

/// The long-fork checker's verdict, `results.json`'s `long_fork`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongForkResult {
    /// See the module's documentation.
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The group size required, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_size: Option<usize>,
    /// What was counted.
    pub counts: LongForkCounts,
    /// The first [`MAX_EXAMPLES`] forks.
    pub forks: Vec<LongFork>,
    /// The same forks as findings at the later read, and what made the history illegal.
    pub errors: Vec<Finding>,
}

impl LongForkResult {
    /// One line for the forks, `long-fork: N pairs of reads; first: ...`; empty when none.
    pub fn anomaly_lines(&self) -> Vec<String> {
        lines_by_kind(
            "long-fork",
            &[(
                "long-fork",
                self.counts.forks,
                "pair of reads",
                "pairs of reads",
            )],
            &self.errors,
        )
        .into_iter()
        .map(|l| l.replacen("long-fork long-fork:", "long-fork:", 1))
        .collect()
    }
}

/// `["r", k, v]` -> (k as text, v).
fn micro_op<'v>(m: &'v Value, f: &str) -> Option<(String, &'v Value)> {
    match m.as_array()?.as_slice() {
        [Value::String(g), k, v] if g == f => Some((k.to_string(), v)),
        _ => None,
    }
}

/// A read transaction's key -> value (`None` for nil), when `v` is one.
fn read_map(v: &Value) -> Option<BTreeMap<String, Option<&Value>>> {
    let mops = v.as_array().filter(|a| !a.is_empty())?;
    let mut m = BTreeMap::new();
    for mop in mops {
        let (k, v) = micro_op(mop, "r")?;
        m.insert(k, Some(v).filter(|v| !v.is_null()));
    }
    Some(m)
}

/// Whether `v` is a write transaction; its key.
fn write_key(v: &Value) -> Option<String> {
    match v.as_array()?.as_slice() {
        [mop] => micro_op(mop, "w").map(|(k, _)| k),
        _ => None,
    }
}

/// Whether a history looks like a long-fork one: some client op with `f` `read` holds a
/// non-empty list of `["r", k, v]` micro-ops, and every client op is a `read` or a `write`.
pub fn is_long_fork_history(history: &History) -> bool {
    let client = || {
        history
            .ops
            .iter()
            .filter(|o| matches!(o.process, Process::Client(_)))
    };
    client().all(|o| o.f == "read" || o.f == "write")
        && client().any(|o| o.f == "read" && read_map(&o.value).is_some())
}

fn show(m: &BTreeMap<String, Option<&Value>>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", v.map_or("nil".into(), Value::to_string)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How read `a` compares with read `b` over the same keys: `Some(-1)` a dominates, `Some(0)`
/// equal, `Some(1)` b dominates, `None` a fork (with a key each saw alone); `Err` with the key
/// when both show different values for it.
fn compare(
    a: &BTreeMap<String, Option<&Value>>,
    b: &BTreeMap<String, Option<&Value>>,
) -> Result<Result<i8, (String, String)>, String> {
    let (mut a_only, mut b_only) = (None, None);
    for (k, va) in a {
        let vb = b.get(k).copied().flatten();
        match (va, vb) {
            (Some(x), Some(y)) if x != &y => return Err(k.clone()),
            (Some(_), None) => {
                a_only.get_or_insert_with(|| k.clone());
            }
            (None, Some(_)) => {
                b_only.get_or_insert_with(|| k.clone());
            }
            _ => {}
        }
    }
    Ok(match (a_only, b_only) {
        (Some(x), Some(y)) => Err((x, y)),
        (Some(_), None) => Ok(-1),
        (None, Some(_)) => Ok(1),
        (None, None) => Ok(0),
    })
}

/// Checks a long-fork history (see the module's documentation).
pub fn check_long_fork(history: &History, opts: &LongForkOptions) -> LongForkResult {
    let mut result = LongForkResult {
        valid: Validity::Valid,
        reason: None,
        group_size: opts.group_size,
        counts: LongForkCounts::default(),
        forks: Vec::new(),
        errors: Vec::new(),
    };
    let unknown = |result: &mut LongForkResult, op: &crate::Op, message: String| {
        result.valid = Validity::Unknown;
        result
            .errors
            .push(Finding::at(op, "illegal-history", message.clone()));
        result.reason = Some(message);
    };
    // Writes: each key once.
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    for op in history.ops.iter().filter(|o| o.kind == OpType::Invoke) {
        let Some(k) = write_key(&op.value) else {
            continue;
        };
        result.counts.writes += 1;
        if let Some(first) = written.insert(k.clone(), op.index) {
            unknown(
                &mut result,
                op,
                format!(
                    "key {k} is written twice (index {first} and {}); the checker assumes one write per key",
                    op.index
                ),
            );
            return result;
        }
    }
    // Reads, in order of completion, grouped by their keys.
    let mut reads: Vec<(&crate::Op, BTreeMap<String, Option<&Value>>)> = Vec::new();
    let mut completions: Vec<usize> = history
        .operations
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| o.complete)
        .collect();
    completions.sort_unstable();
    for c in completions {
        let op = &history.ops[c];
        if let Some(m) = read_map(&op.value) {
            reads.push((op, m));
        }
    }
    result.counts.reads = reads.len();
    result.counts.early_reads = reads
        .iter()
        .filter(|(_, m)| m.values().all(Option::is_none))
        .count();
    result.counts.late_reads = reads
        .iter()
        .filter(|(_, m)| m.values().all(Option::is_some))
        .count();
    let mut groups: BTreeMap<Vec<&String>, Vec<usize>> = BTreeMap::new();
    for (i, (_, m)) in reads.iter().enumerate() {
        groups.entry(m.keys().collect()).or_default().push(i);
    }
    result.counts.groups = groups.len();
    if let Some(n) = opts.group_size {
        let mut wrong: Vec<(usize, usize)> = groups
            .iter()
            .filter(|(keys, _)| keys.len() != n)
            .map(|(keys, members)| (members[0], keys.len()))
            .collect();
        wrong.sort_unstable();
        if let Some(&(i, size)) = wrong.first() {
            let (op, m) = &reads[i];
            unknown(
                &mut result,
                op,
                format!(
                    "every read should read exactly {n} keys, but the read at index {} read {}: {}",
                    op.index,
                    plural(size, "key", "keys"),
                    show(m)
                ),
            );
            return result;
        }
    }
    for members in groups.values() {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                let ((a_op, a), (b_op, b)) = (&reads[i], &reads[j]);
                match compare(a, b) {
                    Err(k) => {
                        unknown(
                            &mut result,
                            b_op,
                            format!(
                                "the reads at index {} and {} show different values for key {k}; the checker assumes one write per key",
                                a_op.index, b_op.index
                            ),
                        );
                        result.forks.clear();
                        result.errors.retain(|e| e.kind != "long-fork");
                        return result;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err((a_only, b_only))) => {
                        result.counts.forks += 1;
                        if result.forks.len() < MAX_EXAMPLES {
                            result.errors.push(Finding::at(
                                b_op,
                                "long-fork",
                                format!(
                                    "the read at index {} saw {a_only} written but not {b_only}, this read saw {b_only} but not {a_only} ({} vs {})",
                                    a_op.index,
                                    show(a),
                                    show(b)
                                ),
                            ));
                            result.forks.push(LongFork {
                                a_index: a_op.index,
                                a_line: a_op.line,
                                b_index: b_op.index,
                                b_line: b_op.line,
                                a_only,
                                b_only,
                                a_read: show(a),
                                b_read: show(b),
                            });
                        }
                    }
                }
            }
        }
    }
    if result.counts.forks > 0 {
        result.valid = Validity::Invalid;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jepsen::testing::history;

    fn check(rows: &[(u64, &str, &str, &str)], group_size: Option<usize>) -> LongForkResult {
        check_long_fork(&history(rows), &LongForkOptions { group_size })
    }

    const R01: &str = r#"[["r",0,null],["r",1,null]]"#;

    #[rustfmt::skip]
    fn writes() -> Vec<(u64, &'static str, &'static str, &'static str)> {
        vec![
            (0, "invoke", "write", r#"[["w",0,1]]"#),
            (1, "invoke", "write", r#"[["w",1,1]]"#),
            (0, "ok",     "write", r#"[["w",0,1]]"#),
            (1, "ok",     "write", r#"[["w",1,1]]"#),
        ]
    }

    #[rustfmt::skip]
    #[test]
    fn reads_in_one_order_are_valid() {
        let mut rows = writes();
        rows.extend([
            (2, "invoke", "read", R01),
            (2, "ok",     "read", r#"[["r",0,null],["r",1,null]]"#),
            (3, "invoke", "read", R01),
            (3, "ok",     "read", r#"[["r",0,1],["r",1,null]]"#),
            (2, "invoke", "read", R01),
            (2, "ok",     "read", r#"[["r",1,1],["r",0,1]]"#),
        ]);
        let h = history(&rows);
        assert!(is_long_fork_history(&h));
        let r = check_long_fork(&h, &LongForkOptions { group_size: Some(2) });
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!((r.counts.reads, r.counts.early_reads, r.counts.late_reads, r.counts.writes, r.counts.groups), (3, 1, 1, 2, 1));
        assert!(r.anomaly_lines().is_empty());
    }

    #[rustfmt::skip]
    #[test]
    fn reads_seeing_the_writes_in_opposite_orders_are_a_long_fork() {
        let mut rows = writes();
        rows.extend([
            (2, "invoke", "read", R01),
            (2, "ok",     "read", r#"[["r",0,1],["r",1,null]]"#),
            (3, "invoke", "read", R01),
            (3, "ok",     "read", r#"[["r",1,1],["r",0,null]]"#),
        ]);
        let r = check(&rows, None);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counts.forks, 1);
        let f = &r.forks[0];
        assert_eq!((f.a_index, f.b_index, f.a_only.as_str(), f.b_only.as_str()), (5, 7, "0", "1"));
        assert_eq!(r.errors[0].kind, "long-fork");
        assert!(r.anomaly_lines()[0].starts_with("long-fork: 1 pair of reads; first: the read at index 5 saw 0"), "{:?}", r.anomaly_lines());
    }

    #[rustfmt::skip]
    #[test]
    fn illegal_histories_are_unknown() {
        // A key written twice.
        let mut rows = writes();
        rows.push((4, "invoke", "write", r#"[["w",0,2]]"#));
        let r = check(&rows, None);
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.reason.unwrap().contains("key 0 is written twice"));
        // A read of the wrong number of keys.
        let mut rows = writes();
        rows.extend([(2, "invoke", "read", R01), (2, "ok", "read", r#"[["r",0,1],["r",1,null]]"#)]);
        let r = check(&rows, Some(3));
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.reason.unwrap().contains("exactly 3 keys"));
        // Two values for one key.
        rows.extend([(3, "invoke", "read", R01), (3, "ok", "read", r#"[["r",0,7],["r",1,null]]"#)]);
        let r = check(&rows, Some(2));
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.reason.unwrap().contains("different values for key 0"));
    }

    #[test]
    fn register_reads_are_not_long_fork_histories() {
        let h = history(&[(0, "invoke", "read", "null"), (0, "ok", "read", "3")]);
        assert!(!is_long_fork_history(&h));
    }
}
