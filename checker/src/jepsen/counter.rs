//! Jepsen's counter checker (`jepsen.checker/counter`): a counter starts at
//! [`CounterOptions::initial`] (Jepsen: 0); `add` operations (value: an integer) increase it
//! by their value, `read` operations return its value. Walking the history in order:
//!
//! - an `add` invocation raises the upper bound by its value, unless the add definitely
//!   failed (it may take effect from now on);
//! - an `ok` add raises the lower bound (it has surely taken effect);
//! - a read that ended `ok` must return a value between the lower bound when it was invoked
//!   and the upper bound when it completed. Below is `too-low`, above is `too-high`.
//!
//! Jepsen asserts adds are non-negative; here a negative add (a decrement) is bounded the
//! other way round (it lowers the lower bound from its invocation and the upper bound from its
//! `ok`), which is the same rule for non-negative adds. A history without reads is valid, as in
//! Jepsen. An add or read whose value is not an integer makes the verdict `unknown` (Jepsen's
//! assertion fails there).

use serde::Serialize;
use serde_json::Value;

use super::{Finding, MAX_EXAMPLES, lines_by_kind, push_capped};
use crate::Validity;
use crate::history::{History, OpType, Outcome};

/// How to judge a counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterOptions {
    /// The counter's value before any add (Jepsen: 0).
    pub initial: i64,
}

/// What was counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CounterCounts {
    /// Adds invoked.
    pub adds: usize,
    /// Adds that ended `ok`.
    pub adds_ok: usize,
    /// Adds that definitely failed.
    pub adds_failed: usize,
    /// Adds with an unknown outcome.
    pub adds_indeterminate: usize,
    /// Reads that ended `ok`, each judged.
    pub reads: usize,
    /// Reads below their lower bound.
    pub too_low: usize,
    /// Reads above their upper bound.
    pub too_high: usize,
}

/// One judged read: `lower <= value <= upper` must hold (Jepsen's `[lower value upper]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterRead {
    /// The read's completion `index`.
    pub index: u64,
    /// Its source line.
    pub line: usize,
    /// The acknowledged adds when the read was invoked.
    pub lower: i64,
    /// The value read.
    pub value: i64,
    /// The attempted adds when the read completed.
    pub upper: i64,
}

/// The counter checker's verdict, `results.json`'s `counter`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterResult {
    /// `invalid` when a read is out of its bounds.
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was counted.
    pub counts: CounterCounts,
    /// The first [`MAX_EXAMPLES`] reads out of bounds, of each kind.
    pub errors: Vec<Finding>,
    /// The first [`MAX_EXAMPLES`] reads out of bounds with their bounds.
    pub bad_reads: Vec<CounterRead>,
    /// The final bounds: the acknowledged and the attempted total.
    pub final_bounds: [i64; 2],
}

impl CounterResult {
    /// One line per kind of error (`too-low`, `too-high`): its count and the first read.
    pub fn anomaly_lines(&self) -> Vec<String> {
        lines_by_kind(
            "counter",
            &[
                ("too-low", self.counts.too_low, "read", "reads"),
                ("too-high", self.counts.too_high, "read", "reads"),
            ],
            &self.errors,
        )
    }
}

/// Checks a counter history (see the module's documentation).
pub fn check_counter(history: &History, opts: &CounterOptions) -> CounterResult {
    let mut result = CounterResult {
        valid: Validity::Valid,
        reason: None,
        counts: CounterCounts::default(),
        errors: Vec::new(),
        bad_reads: Vec::new(),
        final_bounds: [opts.initial; 2],
    };
    // The operation each op belongs to.
    let mut operation_of = vec![None; history.ops.len()];
    for o in &history.operations {
        operation_of[o.invoke] = Some(o);
        if let Some(c) = o.complete {
            operation_of[c] = Some(o);
        }
    }
    let (mut lower, mut upper) = (opts.initial, opts.initial);
    // Lower bound at invocation, per read operation (by its invocation position).
    let mut pending: ahash::HashMap<usize, i64> = Default::default();
    let not_integer = |op: &crate::Op| {
        format!(
            "the {} at index {} has value {}, not an integer",
            op.f, op.index, op.value
        )
    };
    for (pos, op) in history.ops.iter().enumerate() {
        let Some(o) = operation_of[pos] else {
            continue;
        };
        match (op.f.as_str(), op.kind) {
            ("add", OpType::Invoke) => {
                result.counts.adds += 1;
                match o.outcome {
                    Outcome::Ok => result.counts.adds_ok += 1,
                    Outcome::Fail => result.counts.adds_failed += 1,
                    Outcome::Info => result.counts.adds_indeterminate += 1,
                }
                if o.outcome == Outcome::Fail {
                    continue;
                }
                let Some(v) = op.value.as_i64() else {
                    result.valid = Validity::Unknown;
                    result.reason = Some(not_integer(op));
                    return result;
                };
                if v >= 0 {
                    upper += v;
                } else {
                    lower += v;
                }
            }
            ("add", OpType::Ok) => {
                // The invocation's value, when the completion does not repeat it.
                let v = match &op.value {
                    Value::Null => history.invocation(o).value.as_i64(),
                    v => v.as_i64(),
                };
                let Some(v) = v else {
                    result.valid = Validity::Unknown;
                    result.reason = Some(not_integer(op));
                    return result;
                };
                if v >= 0 {
                    lower += v;
                } else {
                    upper += v;
                }
            }
            ("read", OpType::Invoke) if o.outcome == Outcome::Ok => {
                pending.insert(o.invoke, lower);
            }
            ("read", OpType::Ok) => {
                let from = pending.remove(&o.invoke).unwrap_or(lower);
                result.counts.reads += 1;
                let Some(value) = op.value.as_i64() else {
                    result.valid = Validity::Unknown;
                    result.reason = Some(not_integer(op));
                    return result;
                };
                let read = CounterRead {
                    index: op.index,
                    line: op.line,
                    lower: from,
                    value,
                    upper,
                };
                let error = if value < from {
                    result.counts.too_low += 1;
                    Some(Finding::at(
                        op,
                        "too-low",
                        format!(
                            "read {value}, but {from} had been acknowledged when it began (bounds {from}..={upper})"
                        ),
                    ))
                } else if value > upper {
                    result.counts.too_high += 1;
                    Some(Finding::at(
                        op,
                        "too-high",
                        format!(
                            "read {value}, but at most {upper} had been attempted when it ended (bounds {from}..={upper})"
                        ),
                    ))
                } else {
                    None
                };
                if let Some(e) = error {
                    push_capped(&mut result.errors, e);
                    if result.bad_reads.len() < MAX_EXAMPLES {
                        result.bad_reads.push(read);
                    }
                }
            }
            _ => {}
        }
    }
    result.final_bounds = [lower, upper];
    if result.counts.too_low + result.counts.too_high > 0 {
        result.valid = Validity::Invalid;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jepsen::testing::history;

    fn check(rows: &[(u64, &str, &str, &str)]) -> CounterResult {
        check_counter(&history(rows), &CounterOptions::default())
    }

    #[rustfmt::skip]
    #[test]
    fn reads_within_the_bounds_are_valid() {
        let r = check(&[
            (0, "invoke", "add",  "1"),
            (0, "ok",     "add",  "1"),
            (1, "invoke", "add",  "2"),     // indeterminate: may or may not count
            (1, "info",   "add",  "2"),
            (2, "invoke", "add",  "5"),     // failed: never counts
            (2, "fail",   "add",  "5"),
            (0, "invoke", "read", "null"),
            (0, "ok",     "read", "3"),
            (3, "invoke", "read", "null"),
            (3, "ok",     "read", "1"),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!((r.counts.adds, r.counts.adds_ok, r.counts.adds_failed, r.counts.adds_indeterminate), (3, 1, 1, 1));
        assert_eq!((r.counts.reads, r.final_bounds), (2, [1, 3]));
        assert!(r.anomaly_lines().is_empty());
        // No reads at all: valid, as Jepsen (counter.edn).
        assert_eq!(check(&[(0, "invoke", "add", "1"), (0, "ok", "add", "1")]).valid, Validity::Valid);
    }

    #[rustfmt::skip]
    #[test]
    fn a_read_above_the_attempted_adds_is_too_high() {
        let r = check(&[
            (0, "invoke", "add",  "1"),
            (0, "ok",     "add",  "1"),
            (1, "invoke", "add",  "1"),
            (1, "fail",   "add",  "1"),
            (0, "invoke", "read", "null"),
            (0, "ok",     "read", "2"),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.counts.too_high, r.counts.too_low), (1, 0));
        assert_eq!(r.bad_reads, [CounterRead { index: 5, line: 6, lower: 1, value: 2, upper: 1 }]);
        assert_eq!(r.errors[0].kind, "too-high");
        assert!(r.anomaly_lines()[0].starts_with("counter too-high: 1 read; first: read 2"), "{:?}", r.anomaly_lines());
    }

    #[rustfmt::skip]
    #[test]
    fn a_read_below_what_was_acknowledged_before_it_began_is_too_low() {
        let r = check(&[
            (0, "invoke", "add",  "3"),
            (1, "invoke", "read", "null"),  // concurrent with the add: 0 is fine
            (0, "ok",     "add",  "3"),
            (1, "ok",     "read", "0"),
            (1, "invoke", "read", "null"),  // after the ack: 0 is too low
            (1, "ok",     "read", "0"),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counts.too_low, 1);
        assert_eq!((r.errors[0].kind, r.errors[0].index), ("too-low", 5));
        assert_eq!(r.bad_reads[0].lower, 3);
    }

    #[test]
    fn a_non_integer_value_is_unknown() {
        let r = check(&[(0, "invoke", "add", "\"x\""), (0, "ok", "add", "\"x\"")]);
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.reason.unwrap().contains("not an integer"));
    }
}
