//! Jepsen's classic workload checkers, after `jepsen.checker` and `jepsen.tests.*` (0.3.x), as
//! elle-cli 0.1.9 runs them:
//!
//! - [`bank`]: every read of the accounts sums to the same total, no balance is negative
//!   (unless allowed), no read shows an unknown account ([`check_bank`]).
//! - [`counter`]: every read of a counter lies between the acknowledged and the attempted
//!   increments ([`check_counter`]).
//! - [`set`]: Jepsen's `set` (every acknowledged add is in the final read, nothing never added
//!   is; [`check_set`]) and `set-full` (per element: stable, lost, never read, stale;
//!   [`check_set_full`]).
//! - [`long_fork`]: no two reads of one group of keys observe concurrent inserts in
//!   incompatible orders ([`check_long_fork`]).
//!
//! Each result carries `valid`, counts, capped [`Finding`]s (each naming the op's `index` and
//! source line and what is wrong) and `anomaly_lines()` for terminals and the matrix. Where
//! Jepsen's checker throws on an ill-formed history (elle-cli then answers `unknown`), these
//! answer [`Validity::Unknown`](crate::Validity::Unknown) with a `reason`.
//!
//! [`check_bank`]: bank::check_bank
//! [`check_counter`]: counter::check_counter
//! [`check_set`]: set::check_set
//! [`check_set_full`]: set::check_set_full
//! [`check_long_fork`]: long_fork::check_long_fork

pub mod bank;
pub mod counter;
pub mod long_fork;
pub mod set;

use serde::Serialize;

use crate::history::{History, Op, Outcome, Process};

/// Examples kept per kind of finding.
pub const MAX_EXAMPLES: usize = 20;

/// One thing found wrong, at one op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What is wrong, e.g. `wrong-total`, `lost`, `long-fork`.
    pub kind: &'static str,
    /// The op's `index` (the completion's, for a read).
    pub index: u64,
    /// The op's 1-based line in the source file (0 when built in memory).
    pub line: usize,
    /// The client process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<u64>,
    /// The op's time, ns since the run started, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// What is wrong, in words.
    pub message: String,
}

impl Finding {
    /// A finding at `op`.
    pub fn at(op: &Op, kind: &'static str, message: String) -> Finding {
        Finding {
            kind,
            index: op.index,
            line: op.line,
            process: match op.process {
                Process::Client(p) => Some(p),
                _ => None,
            },
            time: op.time,
            message,
        }
    }

    /// `index 12 (line 13)`, or `index 12` when the line is unknown.
    pub fn place(&self) -> String {
        if self.line > 0 {
            format!("index {} (line {})", self.index, self.line)
        } else {
            format!("index {}", self.index)
        }
    }
}

/// Appends `f` unless [`MAX_EXAMPLES`] of its kind are already listed.
pub(crate) fn push_capped(list: &mut Vec<Finding>, f: Finding) {
    if list.iter().filter(|x| x.kind == f.kind).count() < MAX_EXAMPLES {
        list.push(f);
    }
}

/// `1 read` / `2 reads`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One line per kind of finding, in the order of `kinds`: `{prefix} {kind}: {n} {what};
/// first: {message} at {place}`.
pub(crate) fn lines_by_kind(
    prefix: &str,
    kinds: &[(&'static str, usize, &str, &str)],
    findings: &[Finding],
) -> Vec<String> {
    kinds
        .iter()
        .filter(|(_, n, _, _)| *n > 0)
        .map(|(kind, n, one, many)| {
            let first = findings
                .iter()
                .find(|f| f.kind == *kind)
                .map_or(String::new(), |f| {
                    format!("; first: {} at {}", f.message, f.place())
                });
            format!("{prefix} {kind}: {}{first}", plural(*n, one, many))
        })
        .collect()
}

/// The client operations that ended `ok` with function `f`, with their completions, in order
/// of completion (Jepsen folds over the history's completions).
pub(crate) fn ok_ops<'h>(history: &'h History, f: &str) -> Vec<(&'h Op, &'h Op)> {
    let mut v: Vec<(usize, &Op, &Op)> = history
        .operations
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && history.invocation(o).f == f)
        .filter_map(|o| Some((o.complete?, history.invocation(o), history.completion(o)?)))
        .collect();
    v.sort_by_key(|(pos, _, _)| *pos);
    v.into_iter().map(|(_, i, c)| (i, c)).collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small hand-built histories for the unit tests.

    /// A history from `(process, type, f, value as JSON)` rows, one line each, times 1 ms
    /// apart.
    pub fn history(rows: &[(u64, &str, &str, &str)]) -> crate::History {
        let text: String = rows
            .iter()
            .enumerate()
            .map(|(i, (p, t, f, v))| {
                format!(
                    "{{\"index\":{i},\"time\":{},\"process\":{p},\"type\":\"{t}\",\"f\":\"{f}\",\"value\":{v}}}\n",
                    (i as u64 + 1) * 1_000_000
                )
            })
            .collect();
        crate::parse_history(&text, false).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::history;

    #[rustfmt::skip]
    #[test]
    fn check_history_picks_a_jepsen_checker_only_for_its_own_functions() {
        let opts = crate::CheckOptions::default();
        let pick = |rows: &[(u64, &str, &str, &str)]| {
            let r = crate::check_history(&history(rows), &opts).ok()?;
            let names = [
                ("bank", r.bank.is_some()),
                ("set", r.set.is_some()),
                ("set-full", r.set_full.is_some()),
                ("counter", r.counter.is_some()),
                ("long-fork", r.long_fork.is_some()),
                ("linearizable", r.linearizable.is_some()),
            ];
            names.into_iter().find(|(_, on)| *on).map(|(n, _)| n)
        };
        let read = |v: &'static str| [(1, "invoke", "read", "null"), (1, "ok", "read", v)];
        // A register: reads and writes of numbers stay with linearizability.
        let register = [(0, "invoke", "write", "3"), (0, "ok", "write", "3"), read("3")[0], read("3")[1]];
        assert_eq!(pick(&register), Some("linearizable"));
        // Adds with a list read: the set; with number reads (or none): the counter.
        let adds = [(0, "invoke", "add", "1"), (0, "ok", "add", "1")];
        assert_eq!(pick(&[adds[0], adds[1], read("[1]")[0], read("[1]")[1]]), Some("set"));
        assert_eq!(pick(&[adds[0], adds[1], read("1")[0], read("1")[1]]), Some("counter"));
        assert_eq!(pick(&adds), Some("counter"));
        // Adds of something else and no read: the set, which was never read.
        assert_eq!(pick(&[(0, "invoke", "add", "\"a\""), (0, "ok", "add", "\"a\"")]), Some("set"));
        // Adds beside a write: not a set or counter history.
        assert_ne!(pick(&[adds[0], adds[1], register[0], register[1]]), Some("set"));
        assert_ne!(pick(&[adds[0], adds[1], register[0], register[1]]), Some("counter"));
        // Transfers: the bank; reads of micro-ops: long-fork.
        let t = r#"{"from":0,"to":1,"amount":1}"#;
        assert_eq!(pick(&[(0, "invoke", "transfer", t), (0, "fail", "transfer", t)]), Some("bank"));
        let mops = r#"[["r",0,null],["r",1,1]]"#;
        assert_eq!(pick(&[(0, "invoke", "read", mops), (0, "ok", "read", mops)]), Some("long-fork"));
    }
}
