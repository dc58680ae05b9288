//! Jepsen's bank checker (`jepsen.tests.bank`, as elle-cli's `elle-cli.bank` runs it): clients
//! `transfer` amounts between accounts (`{"from":0,"to":1,"amount":5}`) and `read` every
//! account at once (an `ok` read's value is a map account -> balance: `{"0":10,"1":90}` in
//! JSONL, `{0 10, 1 90}` in EDN). Snapshot isolation (or better) keeps the total constant.
//!
//! Every `ok` read, in order of completion, is judged as Jepsen's `check-op` does, the first
//! problem found being its error:
//!
//! 1. `unexpected-key`: it shows an account outside the account set (the options', else the
//!    first `ok` read's accounts);
//! 2. `missing-key` (only with [`BankOptions::require_all_accounts`]; Jepsen never asks): it
//!    lacks an account of the set;
//! 3. `nil-balance`: an account's balance is `null` (or not an integer);
//! 4. `wrong-total`: the balances do not sum to the expected total (the options', else the
//!    first `ok` read's sum);
//! 5. `negative-value`: a balance is negative, unless [`BankOptions::negative_balances_allowed`].
//!
//! Any error makes the history invalid. Transfers are only counted: a read is the only
//! observation. A history without `ok` reads is valid, as in Jepsen (nothing contradicts it);
//! one whose first read cannot give the total (a null balance in it, with no total given) is
//! `unknown`. Besides the capped examples, every wrong total is tallied by its deviation from
//! the expected total, with the lowest and highest totals read.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::{Finding, MAX_EXAMPLES, lines_by_kind, ok_ops, push_capped};
use crate::Validity;
use crate::history::{History, Op, Outcome};

/// How to judge a bank history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BankOptions {
    /// The total every read must show (Jepsen's `:total-amount`); `None`: the first `ok`
    /// read's sum, as elle-cli does without `--total-amount`.
    pub total: Option<i64>,
    /// The accounts (Jepsen's `:accounts`, as strings: `"0"`, `"1"`, ...); `None`: the first
    /// `ok` read's accounts.
    pub accounts: Option<Vec<String>>,
    /// Negative balances are fine (Jepsen's `:negative-balances?`).
    pub negative_balances_allowed: bool,
    /// A read lacking an account of the set is an error (`missing-key`). Off by default, as in
    /// Jepsen: some databases omit accounts they have never written.
    pub require_all_accounts: bool,
}

/// What was counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BankCounts {
    /// `ok` reads judged.
    pub reads: usize,
    /// Transfers invoked.
    pub transfers: usize,
    /// Transfers that ended `ok`.
    pub transfers_ok: usize,
    /// Transfers that definitely failed (e.g. insufficient funds).
    pub transfers_failed: usize,
    /// Transfers with an unknown outcome.
    pub transfers_indeterminate: usize,
    /// Reads with an error (each read has at most one, the first of the list in the module's
    /// documentation, as in Jepsen); the fields below count them by kind.
    pub errors: usize,
    /// Reads whose error is an account outside the set.
    pub unexpected_key: usize,
    /// Reads whose error is a missing account (only with `require_all_accounts`).
    pub missing_key: usize,
    /// Reads whose error is a null or non-integer balance.
    pub nil_balance: usize,
    /// Reads whose error is a sum other than the total.
    pub wrong_total: usize,
    /// Reads whose error is a negative balance.
    pub negative_value: usize,
    /// Reads whose value is not a map.
    pub malformed: usize,
    /// Reads lacking some account of the set (an error or not).
    pub reads_missing_accounts: usize,
    /// Reads with some negative balance (an error or not).
    pub reads_with_negative_balances: usize,
}

/// One read's total, and how far it is from the expected one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BankTotal {
    /// The read's completion `index`.
    pub index: u64,
    /// Its source line.
    pub line: usize,
    /// Its time, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// The sum of its balances.
    pub total: i64,
    /// `total - expected`.
    pub deviation: i64,
}

/// The bank checker's verdict, `results.json`'s `bank`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BankResult {
    /// `invalid` when any read has an error.
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The total every read must show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Whether the total was taken from the first read (no total given).
    pub total_inferred: bool,
    /// The account set, sorted.
    pub accounts: Vec<String>,
    /// Whether negative balances were allowed.
    pub negative_balances_allowed: bool,
    /// What was counted.
    pub counts: BankCounts,
    /// The first [`MAX_EXAMPLES`] reads of each kind of error, in order of completion.
    pub errors: Vec<Finding>,
    /// The earliest error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<Finding>,
    /// Wrong totals by deviation from the expected total (`total - expected` -> reads).
    pub deviations: BTreeMap<i64, usize>,
    /// The first [`MAX_EXAMPLES`] wrong totals.
    pub wrong_totals: Vec<BankTotal>,
    /// The lowest wrong total read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowest: Option<BankTotal>,
    /// The highest wrong total read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest: Option<BankTotal>,
}

impl BankResult {
    /// One line per kind of error: its count and the first read's problem, e.g. `bank
    /// wrong-total: 3 reads; first: balances sum to 98, expected 100 (off by -2) at index 41
    /// (line 42)`. Empty when valid.
    pub fn anomaly_lines(&self) -> Vec<String> {
        let c = &self.counts;
        let mut out = lines_by_kind(
            "bank",
            &[
                ("malformed", c.malformed, "read", "reads"),
                ("unexpected-key", c.unexpected_key, "read", "reads"),
                ("missing-key", c.missing_key, "read", "reads"),
                ("nil-balance", c.nil_balance, "read", "reads"),
                ("wrong-total", c.wrong_total, "read", "reads"),
                ("negative-value", c.negative_value, "read", "reads"),
            ],
            &self.errors,
        );
        if let (Some(lo), Some(hi), Some(line)) = (
            &self.lowest,
            &self.highest,
            out.iter_mut().find(|l| l.starts_with("bank wrong-total")),
        ) {
            line.push_str(&format!("; totals read {} to {}", lo.total, hi.total));
        }
        out
    }
}

/// A read's balances, or why it has none.
enum Balances<'a> {
    Map(&'a serde_json::Map<String, Value>),
    Empty,
    Malformed,
}

fn balances(v: &Value) -> Balances<'_> {
    match v {
        Value::Object(m) => Balances::Map(m),
        Value::Null => Balances::Empty,
        _ => Balances::Malformed,
    }
}

/// Checks a bank history (see the module's documentation).
pub fn check_bank(history: &History, opts: &BankOptions) -> BankResult {
    let mut counts = BankCounts::default();
    for o in &history.operations {
        if history.invocation(o).f == "transfer" {
            counts.transfers += 1;
            match o.outcome {
                Outcome::Ok => counts.transfers_ok += 1,
                Outcome::Fail => counts.transfers_failed += 1,
                Outcome::Info => counts.transfers_indeterminate += 1,
            }
        }
    }
    let reads: Vec<&Op> = ok_ops(history, "read")
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    counts.reads = reads.len();
    let first = reads.first().map(|r| balances(&r.value));
    let mut result = BankResult {
        valid: Validity::Valid,
        reason: None,
        total: opts.total,
        total_inferred: opts.total.is_none(),
        accounts: Vec::new(),
        negative_balances_allowed: opts.negative_balances_allowed,
        counts: BankCounts::default(),
        errors: Vec::new(),
        first_error: None,
        deviations: BTreeMap::new(),
        wrong_totals: Vec::new(),
        lowest: None,
        highest: None,
    };
    let accounts: BTreeSet<String> = match (&opts.accounts, &first) {
        (Some(a), _) => a.iter().cloned().collect(),
        (None, Some(Balances::Map(m))) => m.keys().cloned().collect(),
        _ => BTreeSet::new(),
    };
    result.accounts = accounts.iter().cloned().collect();
    let total = match (opts.total, &first) {
        (Some(t), _) => t,
        (None, None) => {
            result.counts = counts;
            result.reason = Some("no read ended ok: nothing to check".into());
            return result;
        }
        (None, Some(Balances::Map(m))) => {
            match m.values().map(Value::as_i64).sum::<Option<i64>>() {
                Some(t) => t,
                None => {
                    result.counts = counts;
                    result.valid = Validity::Unknown;
                    result.reason = Some(format!(
                        "the first read (index {}) has a balance that is not an integer, so it gives no total; give the total",
                        reads[0].index
                    ));
                    return result;
                }
            }
        }
        (None, Some(Balances::Empty)) => 0,
        (None, Some(Balances::Malformed)) => {
            result.counts = counts;
            result.valid = Validity::Unknown;
            result.reason = Some(format!(
                "the first read (index {}) is not a map of balances, so it gives no total; give the total",
                reads[0].index
            ));
            return result;
        }
    };
    result.total = Some(total);

    let empty = serde_json::Map::new();
    for read in &reads {
        let m = match balances(&read.value) {
            Balances::Map(m) => m,
            Balances::Empty => &empty,
            Balances::Malformed => {
                counts.malformed += 1;
                counts.errors += 1;
                push_capped(
                    &mut result.errors,
                    Finding::at(
                        read,
                        "malformed",
                        format!("the read's value {} is not a map of balances", read.value),
                    ),
                );
                continue;
            }
        };
        let unexpected: Vec<&str> = m
            .keys()
            .filter(|k| !accounts.contains(*k))
            .map(String::as_str)
            .collect();
        let missing: Vec<&str> = accounts
            .iter()
            .filter(|a| !m.contains_key(*a))
            .map(String::as_str)
            .collect();
        let nils: Vec<&str> = m
            .iter()
            .filter(|(_, v)| v.as_i64().is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        let sum: i64 = m.values().filter_map(Value::as_i64).sum();
        let negative: Vec<String> = m
            .iter()
            .filter(|(_, v)| v.as_i64().is_some_and(|b| b < 0))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if !missing.is_empty() {
            counts.reads_missing_accounts += 1;
        }
        if !negative.is_empty() {
            counts.reads_with_negative_balances += 1;
        }
        let error = if !unexpected.is_empty() {
            counts.unexpected_key += 1;
            Some(Finding::at(
                read,
                "unexpected-key",
                format!(
                    "the read shows accounts outside the set: {}",
                    unexpected.join(", ")
                ),
            ))
        } else if opts.require_all_accounts && !missing.is_empty() {
            counts.missing_key += 1;
            Some(Finding::at(
                read,
                "missing-key",
                format!("the read lacks accounts {}", missing.join(", ")),
            ))
        } else if !nils.is_empty() {
            counts.nil_balance += 1;
            Some(Finding::at(
                read,
                "nil-balance",
                format!("accounts without an integer balance: {}", nils.join(", ")),
            ))
        } else if sum != total {
            counts.wrong_total += 1;
            let t = BankTotal {
                index: read.index,
                line: read.line,
                time: read.time,
                total: sum,
                deviation: sum - total,
            };
            *result.deviations.entry(t.deviation).or_default() += 1;
            if result.lowest.as_ref().is_none_or(|l| sum < l.total) {
                result.lowest = Some(t.clone());
            }
            if result.highest.as_ref().is_none_or(|h| sum > h.total) {
                result.highest = Some(t.clone());
            }
            if result.wrong_totals.len() < MAX_EXAMPLES {
                result.wrong_totals.push(t);
            }
            Some(Finding::at(
                read,
                "wrong-total",
                format!(
                    "balances sum to {sum}, expected {total} (off by {:+})",
                    sum - total
                ),
            ))
        } else if !opts.negative_balances_allowed && !negative.is_empty() {
            counts.negative_value += 1;
            Some(Finding::at(
                read,
                "negative-value",
                format!("negative balances: {}", negative.join(", ")),
            ))
        } else {
            None
        };
        if let Some(e) = error {
            counts.errors += 1;
            if result.first_error.is_none() {
                result.first_error = Some(e.clone());
            }
            push_capped(&mut result.errors, e);
        }
    }
    result.valid = if counts.errors > 0 {
        Validity::Invalid
    } else {
        Validity::Valid
    };
    result.counts = counts;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jepsen::testing::history;

    fn check(rows: &[(u64, &str, &str, &str)], opts: &BankOptions) -> BankResult {
        check_bank(&history(rows), opts)
    }

    #[rustfmt::skip]
    const GOOD: [(u64, &str, &str, &str); 8] = [
        (0, "invoke", "read",     "null"),
        (0, "ok",     "read",     r#"{"0":10,"1":10}"#),
        (1, "invoke", "transfer", r#"{"from":0,"to":1,"amount":5}"#),
        (1, "ok",     "transfer", r#"{"from":0,"to":1,"amount":5}"#),
        (2, "invoke", "transfer", r#"{"from":1,"to":0,"amount":50}"#),
        (2, "fail",   "transfer", r#"{"from":1,"to":0,"amount":50}"#),
        (0, "invoke", "read",     "null"),
        (0, "ok",     "read",     r#"{"0":5,"1":15}"#),
    ];

    #[test]
    fn constant_totals_are_valid_and_the_total_is_inferred() {
        let r = check(&GOOD, &BankOptions::default());
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!((r.total, r.total_inferred), (Some(20), true));
        assert_eq!(r.accounts, ["0", "1"]);
        assert_eq!(
            (
                r.counts.reads,
                r.counts.transfers,
                r.counts.transfers_ok,
                r.counts.transfers_failed
            ),
            (2, 2, 1, 1)
        );
        assert!(r.anomaly_lines().is_empty() && r.errors.is_empty());
    }

    #[test]
    fn a_read_with_another_total_is_wrong_total_with_its_deviation() {
        let mut rows = GOOD.to_vec();
        rows.push((3, "invoke", "read", "null"));
        rows.push((3, "ok", "read", r#"{"0":5,"1":12}"#));
        let r = check(&rows, &BankOptions::default());
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counts.wrong_total, 1);
        let e = r.first_error.as_ref().unwrap();
        assert_eq!((e.kind, e.index, e.line), ("wrong-total", 9, 10));
        assert!(
            e.message.contains("sum to 17, expected 20 (off by -3)"),
            "{}",
            e.message
        );
        assert_eq!(r.deviations, BTreeMap::from([(-3, 1)]));
        assert_eq!(r.lowest.as_ref().unwrap().total, 17);
        let lines = r.anomaly_lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("bank wrong-total: 1 read; first:"),
            "{lines:?}"
        );
        // A given total judges the first read too.
        let r = check(
            &GOOD,
            &BankOptions {
                total: Some(21),
                ..Default::default()
            },
        );
        assert_eq!(
            (r.valid, r.counts.wrong_total, r.total_inferred),
            (Validity::Invalid, 2, false)
        );
        assert_eq!(r.deviations, BTreeMap::from([(-1, 2)]));
    }

    #[test]
    fn negative_balances_are_invalid_unless_allowed() {
        let mut rows = GOOD.to_vec();
        rows.push((3, "invoke", "read", "null"));
        rows.push((3, "ok", "read", r#"{"0":-5,"1":25}"#));
        let r = check(&rows, &BankOptions::default());
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.errors[0].kind, "negative-value");
        assert!(
            r.errors[0].message.contains("0: -5"),
            "{}",
            r.errors[0].message
        );
        let r = check(
            &rows,
            &BankOptions {
                negative_balances_allowed: true,
                ..Default::default()
            },
        );
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!(
            (
                r.counts.negative_value,
                r.counts.reads_with_negative_balances
            ),
            (0, 1)
        );
        assert!(r.anomaly_lines().is_empty());
    }

    #[test]
    fn unknown_accounts_and_null_balances_are_errors_missing_ones_only_when_required() {
        let mut rows = GOOD.to_vec();
        rows.push((3, "invoke", "read", "null"));
        rows.push((3, "ok", "read", r#"{"0":5,"1":10,"7":5}"#));
        rows.push((4, "invoke", "read", "null"));
        rows.push((4, "ok", "read", r#"{"0":null,"1":20}"#));
        rows.push((5, "invoke", "read", "null"));
        rows.push((5, "ok", "read", r#"{"1":20}"#));
        let r = check(&rows, &BankOptions::default());
        assert_eq!(r.valid, Validity::Invalid);
        let kinds: Vec<&str> = r.errors.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            ["unexpected-key", "nil-balance"],
            "a missing account alone is fine"
        );
        assert!(r.errors[0].message.contains('7'));
        assert_eq!(
            (r.counts.missing_key, r.counts.reads_missing_accounts),
            (0, 1)
        );
        let r = check(
            &rows,
            &BankOptions {
                require_all_accounts: true,
                ..Default::default()
            },
        );
        let kinds: Vec<&str> = r.errors.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["unexpected-key", "nil-balance", "missing-key"]);
        assert!(
            r.errors[2].message.contains("lacks accounts 0"),
            "{}",
            r.errors[2].message
        );
        // Accounts given: the first read's "1" is unexpected.
        let r = check(
            &GOOD,
            &BankOptions {
                accounts: Some(vec!["0".into()]),
                ..Default::default()
            },
        );
        assert_eq!((r.valid, r.counts.unexpected_key), (Validity::Invalid, 2));
    }

    #[test]
    fn no_reads_is_valid_and_an_unreadable_first_read_unknown() {
        let r = check(&GOOD[2..6], &BankOptions::default());
        assert_eq!((r.valid, r.counts.reads), (Validity::Valid, 0));
        assert!(r.reason.is_some());
        let r = check(
            &[
                (0, "invoke", "read", "null"),
                (0, "ok", "read", r#"{"0":null}"#),
            ],
            &BankOptions::default(),
        );
        assert_eq!(r.valid, Validity::Unknown);
    }
}
