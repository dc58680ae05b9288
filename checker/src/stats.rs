//! Stats: how many operations of each function succeeded, failed or were indeterminate,
//! overall and per key. The run summary prints it; like Jepsen's stats checker, a function
//! that never succeeded makes it `unknown` (something is wrong with the run, not the system).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Validity;
use crate::history::{History, Outcome};

/// Outcome counts of one group of operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Operations.
    pub count: usize,
    /// Completed `ok`.
    pub ok: usize,
    /// Completed `fail`.
    pub fail: usize,
    /// Indeterminate (`info`, or never completed).
    pub info: usize,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        self.count += 1;
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Info => self.info += 1,
        }
    }
}

/// Outcome counts of a history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// `valid` unless some function never succeeded (then `unknown`).
    pub valid: Validity,
    /// All client operations.
    pub total: Counts,
    /// Per function.
    pub by_f: BTreeMap<String, Counts>,
    /// Per key, then per function (empty for histories without keys).
    pub by_key: BTreeMap<String, BTreeMap<String, Counts>>,
    /// Nemesis ops recorded.
    pub nemesis_ops: usize,
    /// Watch responses recorded (`"process":"watch"` lines; not client operations).
    #[serde(skip_serializing_if = "is_zero")]
    pub watch_ops: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Counts the operations of `history`.
pub fn stats(history: &History) -> Stats {
    let mut s = Stats::default();
    for o in &history.operations {
        let f = &history.invocation(o).f;
        s.total.add(o.outcome);
        s.by_f.entry(f.clone()).or_default().add(o.outcome);
        if let Some(k) = history.key(o) {
            s.by_key
                .entry(k.to_string())
                .or_default()
                .entry(f.clone())
                .or_default()
                .add(o.outcome);
        }
    }
    s.nemesis_ops = history.nemesis_ops().count();
    s.watch_ops = history.watch_ops().count();
    s.valid = if s.by_f.values().all(|c| c.ok > 0) {
        Validity::Valid
    } else {
        Validity::Unknown
    };
    s
}
