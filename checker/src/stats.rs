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
    let mut s = StatsBuilder::default();
    for o in &history.operations {
        s.add(&history.invocation(o).f, history.key(o), o.outcome);
    }
    s.finish(history.nemesis_ops().count(), history.watch_ops().count())
}

/// Builds [`Stats`] one operation at a time (for [`stats`] and the compact history).
#[derive(Debug, Default)]
pub(crate) struct StatsBuilder(Stats);

impl StatsBuilder {
    /// Counts one client operation.
    pub(crate) fn add(&mut self, f: &str, key: Option<&str>, outcome: Outcome) {
        let s = &mut self.0;
        s.total.add(outcome);
        match s.by_f.get_mut(f) {
            Some(c) => c.add(outcome),
            None => s.by_f.entry(f.to_string()).or_default().add(outcome),
        }
        if let Some(k) = key {
            let per = match s.by_key.get_mut(k) {
                Some(per) => per,
                None => s.by_key.entry(k.to_string()).or_default(),
            };
            match per.get_mut(f) {
                Some(c) => c.add(outcome),
                None => per.entry(f.to_string()).or_default().add(outcome),
            }
        }
    }

    /// The stats, with the nemesis and watch lines counted elsewhere.
    pub(crate) fn finish(self, nemesis_ops: usize, watch_ops: usize) -> Stats {
        let mut s = self.0;
        s.nemesis_ops = nemesis_ops;
        s.watch_ops = watch_ops;
        s.valid = if s.by_f.values().all(|c| c.ok > 0) {
            Validity::Valid
        } else {
            Validity::Unknown
        };
        s
    }
}
