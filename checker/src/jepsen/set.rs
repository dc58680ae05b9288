//! Jepsen's set checkers (`jepsen.checker/set` and `set-full`): clients `add` elements (an
//! `add`'s value is the element: any JSON value, compared as a whole, so `[0, 5]` is one
//! element and not the number 5) and `read` the whole set (an `ok` read's value is the list of
//! elements present).
//!
//! [`check_set`] (Jepsen's `set`) looks at the final read only, the `ok` read that completed
//! last: every acknowledged add must be in it (else `lost`), and everything in it must have
//! been attempted (else `unexpected`). Indeterminate adds that show up are `recovered`. No `ok`
//! read: `unknown`, as Jepsen ("set was never read").
//!
//! [`check_set_full`] (Jepsen's `set-full`) follows each element through every read. An
//! element is tracked from its add's invocation; it is *known* from the completion of its `ok`
//! add or of the first read that shows it, whichever comes first. Among the reads completing
//! after the add's invocation, it is
//!
//! - *stable* when some read shows it and no read invoked after the last such read lacks it;
//!   *stale* when stable but some read invoked at least 1 ms after it was known lacked it (its
//!   stable latency is the time from known to just after that read's invocation);
//! - *lost* when it is known, a read invoked after it was known lacks it, and no read invoked
//!   after that one shows it;
//! - *never read* otherwise (no read began after it was known, or it was never known).
//!
//! Verdict: `invalid` with any lost element; else `unknown` when no element is stable;
//! else `invalid` when [`SetFullOptions::linearizable`] and some element is stale; else
//! `valid`. One deliberate difference from Jepsen 0.3.x: an element listed twice in one read
//! (`duplicated`) makes the history invalid, as Jepsen's `set-full` intends (its verdict is
//! `(and (empty? dups) ...)`) but never does, its filter `(< v 1)` keeping no multiplicity.
//!
//! Cost: `set` is linear; `set-full` is O(reads x elements), as Jepsen's.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use ahash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::Serialize;
use serde_json::Value;

use super::{Finding, MAX_EXAMPLES, lines_by_kind, ok_ops, plural, push_capped};
use crate::Validity;
use crate::history::{History, Op, OpType, Outcome};

/// Most elements listed by value in a result.
const MAX_LISTED: usize = 100;

/// How to judge a set with [`check_set`] (Jepsen's `set` has no options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {}

/// What [`check_set`] counted (Jepsen's names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SetCounts {
    /// Distinct elements some add attempted.
    pub attempted: usize,
    /// Distinct elements whose add ended `ok`.
    pub acknowledged: usize,
    /// Distinct elements in the final read that were attempted.
    pub ok: usize,
    /// Acknowledged elements missing from the final read.
    pub lost: usize,
    /// Elements whose add was not acknowledged but that the final read holds.
    pub recovered: usize,
    /// Elements in the final read that no add attempted.
    pub unexpected: usize,
}

/// [`check_set`]'s verdict, `results.json`'s `set`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetResult {
    /// `invalid` when an element is lost or unexpected.
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was counted.
    pub counts: SetCounts,
    /// The final read's completion `index`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_read: Option<u64>,
    /// The lost elements, as Jepsen prints them (integer runs as `a..b`), capped.
    pub lost: String,
    /// The unexpected elements, likewise.
    pub unexpected: String,
    /// The recovered elements, likewise.
    pub recovered: String,
    /// The first [`MAX_EXAMPLES`] lost and unexpected elements, each at its op.
    pub errors: Vec<Finding>,
}

impl SetResult {
    /// One line per kind of error (`lost`, `unexpected`): its count and the first element.
    pub fn anomaly_lines(&self) -> Vec<String> {
        lines_by_kind(
            "set",
            &[
                ("lost", self.counts.lost, "element", "elements"),
                ("unexpected", self.counts.unexpected, "element", "elements"),
            ],
            &self.errors,
        )
    }
}

/// Distinct JSON values by their text (serde_json's `Value` has no `Hash`).
#[derive(Default)]
struct Elements {
    ids: HashMap<String, usize>,
    values: Vec<Value>,
}

impl Elements {
    fn id(&mut self, v: &Value) -> usize {
        let key = v.to_string();
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        self.values.push(v.clone());
        self.ids.insert(key, self.values.len() - 1);
        self.values.len() - 1
    }

    fn get(&self, v: &Value) -> Option<usize> {
        self.ids.get(&v.to_string()).copied()
    }

    fn value(&self, id: usize) -> &Value {
        &self.values[id]
    }
}

/// Integers by value, then anything else by its text.
fn element_order(a: &Value, b: &Value) -> Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.to_string().cmp(&b.to_string()),
    }
}

/// Jepsen's `integer-interval-set-str`: `#{1..3 7}`, integers in runs; other values as text;
/// at most [`MAX_LISTED`] parts.
pub fn interval_set_str(values: &[&Value]) -> String {
    let mut sorted: Vec<&Value> = values.to_vec();
    sorted.sort_by(|a, b| element_order(a, b));
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let Some(start) = sorted[i].as_i64() else {
            parts.push(sorted[i].to_string());
            i += 1;
            continue;
        };
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1].as_i64() == Some(end + 1) {
            end += 1;
            i += 1;
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}..{end}")
        });
        i += 1;
    }
    let more = parts.len().saturating_sub(MAX_LISTED);
    parts.truncate(MAX_LISTED);
    if more > 0 {
        parts.push(format!("... ({more} more)"));
    }
    format!("#{{{}}}", parts.join(" "))
}

/// The value of an add: the completion's, else the invocation's.
fn add_value<'h>(inv: &'h Op, comp: Option<&'h Op>) -> &'h Value {
    match comp {
        Some(c) if !c.value.is_null() => &c.value,
        _ => &inv.value,
    }
}

/// Checks a set history with Jepsen's `set` (see the module's documentation).
pub fn check_set(history: &History, _opts: &SetOptions) -> SetResult {
    let mut els = Elements::default();
    let mut attempted: HashSet<usize> = HashSet::new();
    // Element -> the completion of its first acknowledged add.
    let mut acknowledged: HashMap<usize, &Op> = HashMap::new();
    for o in &history.operations {
        let inv = history.invocation(o);
        if inv.f != "add" {
            continue;
        }
        attempted.insert(els.id(&inv.value));
        if let (Outcome::Ok, Some(c)) = (o.outcome, history.completion(o)) {
            let id = els.id(add_value(inv, Some(c)));
            attempted.insert(id);
            acknowledged.entry(id).or_insert(c);
        }
    }
    let mut result = SetResult {
        valid: Validity::Unknown,
        reason: None,
        counts: SetCounts {
            attempted: attempted.len(),
            acknowledged: acknowledged.len(),
            ..SetCounts::default()
        },
        final_read: None,
        lost: String::new(),
        unexpected: String::new(),
        recovered: String::new(),
        errors: Vec::new(),
    };
    let Some((_, read)) = ok_ops(history, "read").pop() else {
        result.reason = Some("the set was never read".into());
        return result;
    };
    result.final_read = Some(read.index);
    let Some(list) = read.value.as_array() else {
        result.reason = Some(format!(
            "the final read (index {}) is not a list: {}",
            read.index, read.value
        ));
        return result;
    };
    let mut in_read: Vec<usize> = list.iter().map(|v| els.id(v)).collect();
    in_read.sort_unstable();
    in_read.dedup();
    let read_set: HashSet<usize> = in_read.iter().copied().collect();

    let mut lost: Vec<(usize, &Op)> = acknowledged
        .iter()
        .filter(|(id, _)| !read_set.contains(id))
        .map(|(id, c)| (*id, *c))
        .collect();
    lost.sort_by_key(|(_, c)| c.index);
    let unexpected: Vec<usize> = in_read
        .iter()
        .copied()
        .filter(|id| !attempted.contains(id))
        .collect();
    let recovered: Vec<usize> = in_read
        .iter()
        .copied()
        .filter(|id| attempted.contains(id) && !acknowledged.contains_key(id))
        .collect();
    result.counts.ok = in_read.len() - unexpected.len();
    result.counts.lost = lost.len();
    result.counts.unexpected = unexpected.len();
    result.counts.recovered = recovered.len();
    let vals = |ids: &mut dyn Iterator<Item = usize>| -> Vec<&Value> {
        ids.map(|id| els.value(id)).collect()
    };
    result.lost = interval_set_str(&vals(&mut lost.iter().map(|(id, _)| *id)));
    result.unexpected = interval_set_str(&vals(&mut unexpected.iter().copied()));
    result.recovered = interval_set_str(&vals(&mut recovered.iter().copied()));
    for (id, c) in lost.iter().take(MAX_EXAMPLES) {
        result.errors.push(Finding::at(
            c,
            "lost",
            format!(
                "the acknowledged add of {} is missing from the final read (index {})",
                els.value(*id),
                read.index
            ),
        ));
    }
    let mut shown: Vec<&Value> = unexpected.iter().map(|id| els.value(*id)).collect();
    shown.sort_by(|a, b| element_order(a, b));
    for v in shown.into_iter().take(MAX_EXAMPLES) {
        result.errors.push(Finding::at(
            read,
            "unexpected",
            format!("the final read holds {v}, which no add attempted"),
        ));
    }
    result.valid = if result.counts.lost + result.counts.unexpected > 0 {
        Validity::Invalid
    } else {
        Validity::Valid
    };
    result
}

/// How to judge a set with [`check_set_full`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetFullOptions {
    /// The set should be linearizable: stale elements make the history invalid (Jepsen's
    /// `:linearizable?`, false by default, as elle-cli runs it).
    pub linearizable: bool,
}

/// What [`check_set_full`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SetFullCounts {
    /// Elements some add attempted (each add invocation starts tracking its element afresh).
    pub attempted: usize,
    /// `ok` reads.
    pub reads: usize,
    /// Elements with a time after which every read showed them.
    pub stable: usize,
    /// Elements with a time after which no read showed them.
    pub lost: usize,
    /// Elements neither stable nor lost.
    pub never_read: usize,
    /// Stable elements some read missed at least 1 ms after they were known.
    pub stale: usize,
    /// Elements listed more than once by some read.
    pub duplicated: usize,
}

/// One element's stale window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleElement {
    /// The element.
    pub element: Value,
    /// Milliseconds from when it was known to when it became stable.
    pub stable_latency_ms: i64,
    /// The `index` of the op that made it known (its add's completion, or a read).
    pub known_index: u64,
    /// The `index` of the last read invocation that missed it.
    pub last_absent_index: u64,
}

/// [`check_set_full`]'s verdict, `results.json`'s `set_full`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetFullResult {
    /// See the module's documentation.
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether stale elements were violations.
    pub linearizable: bool,
    /// What was counted.
    pub counts: SetFullCounts,
    /// Lost elements, sorted, at most [`MAX_LISTED`].
    pub lost: Vec<Value>,
    /// Never-read elements, sorted, at most [`MAX_LISTED`].
    pub never_read: Vec<Value>,
    /// Stale elements, sorted, at most [`MAX_LISTED`].
    pub stale: Vec<Value>,
    /// The 8 stale elements with the highest stable latency, as Jepsen's `:worst-stale`.
    pub worst_stale: Vec<StaleElement>,
    /// Element (as text) -> the most times one read listed it, for duplicated elements.
    pub duplicated: BTreeMap<String, usize>,
    /// Quantiles (`"0"`, `"0.5"`, `"0.95"`, `"0.99"`, `"1"`) of stable latencies, ms.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stable_latencies: BTreeMap<String, i64>,
    /// Quantiles of lost latencies (known to lost), ms.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_latencies: BTreeMap<String, i64>,
    /// The first [`MAX_EXAMPLES`] elements of each kind (`lost`, `stale`, `duplicated`), each
    /// at the op that shows it.
    pub errors: Vec<Finding>,
}

impl SetFullResult {
    /// One line per kind of violation: `lost`, `duplicated`, and `stale` when linearizable.
    pub fn anomaly_lines(&self) -> Vec<String> {
        let c = &self.counts;
        lines_by_kind(
            "set-full",
            &[
                ("lost", c.lost, "element", "elements"),
                ("duplicated", c.duplicated, "element", "elements"),
                (
                    "stale",
                    if self.linearizable { c.stale } else { 0 },
                    "element",
                    "elements",
                ),
            ],
            &self.errors,
        )
    }
}

/// Jepsen's `set-full-element` state. Positions are in `history.ops`.
struct Tracked {
    element: usize,
    /// The completion that made it known (an `ok` add or a read showing it).
    known: Option<usize>,
    /// The latest-invoked read showing it: (invocation, completion).
    last_present: Option<(usize, usize)>,
    /// The latest-invoked read lacking it: (invocation, completion).
    last_absent: Option<(usize, usize)>,
}

/// Jepsen's `frequency-distribution` at 0, 0.5, 0.95, 0.99 and 1.
fn quantiles(mut v: Vec<i64>) -> BTreeMap<String, i64> {
    v.sort_unstable();
    let mut m = BTreeMap::new();
    if v.is_empty() {
        return m;
    }
    let n = v.len();
    for (name, p) in [
        ("0", 0.0),
        ("0.5", 0.5),
        ("0.95", 0.95),
        ("0.99", 0.99),
        ("1", 1.0),
    ] {
        let i = ((n as f64 * p).floor() as usize).min(n - 1);
        m.insert(name.to_string(), v[i]);
    }
    m
}

/// Checks a set history with Jepsen's `set-full` (see the module's documentation).
pub fn check_set_full(history: &History, opts: &SetFullOptions) -> SetFullResult {
    let mut els = Elements::default();
    // Tracked states, and element -> its current state.
    let mut tracked: Vec<Tracked> = Vec::new();
    let mut current: HashMap<usize, usize> = HashMap::new();
    let mut duplicated: BTreeMap<String, usize> = BTreeMap::new();
    let mut dup_at: Vec<Finding> = Vec::new();
    let mut reads = 0;
    let mut operation_of = vec![None; history.ops.len()];
    for o in &history.operations {
        if let Some(c) = o.complete {
            operation_of[c] = Some(o);
        }
    }
    let mut present = vec![false; 0];
    for (pos, op) in history.ops.iter().enumerate() {
        match (op.f.as_str(), op.kind) {
            ("add", OpType::Invoke) if matches!(op.process, crate::Process::Client(_)) => {
                let id = els.id(&op.value);
                tracked.push(Tracked {
                    element: id,
                    known: None,
                    last_present: None,
                    last_absent: None,
                });
                current.insert(id, tracked.len() - 1);
            }
            ("add", OpType::Ok) => {
                let Some(o) = operation_of[pos] else { continue };
                let v = add_value(history.invocation(o), Some(op));
                if let Some(t) = els.get(v).and_then(|id| current.get(&id)) {
                    let t = &mut tracked[*t];
                    t.known = t.known.or(Some(pos));
                }
            }
            ("read", OpType::Ok) => {
                let Some(o) = operation_of[pos] else { continue };
                reads += 1;
                let inv = o.invoke;
                let list: &[Value] = op.value.as_array().map_or(&[], Vec::as_slice);
                present.clear();
                present.resize(els.values.len(), false);
                let mut times_listed: HashMap<String, usize> = HashMap::new();
                for v in list {
                    let text = v.to_string();
                    if let Some(&id) = els.ids.get(&text) {
                        present[id] = true;
                    }
                    *times_listed.entry(text).or_default() += 1;
                }
                let mut dups: Vec<(String, usize)> =
                    times_listed.into_iter().filter(|(_, n)| *n > 1).collect();
                dups.sort();
                for (text, n) in dups {
                    let m = duplicated.entry(text.clone()).or_default();
                    if *m == 0 {
                        push_capped(
                            &mut dup_at,
                            Finding::at(
                                op,
                                "duplicated",
                                format!("the read lists {text} {n} times"),
                            ),
                        );
                    }
                    *m = (*m).max(n);
                }
                for &t in current.values() {
                    let t = &mut tracked[t];
                    if present[t.element] {
                        t.known = t.known.or(Some(pos));
                        if t.last_present.is_none_or(|(i, _)| i < inv) {
                            t.last_present = Some((inv, pos));
                        }
                    } else if t.last_absent.is_none_or(|(i, _)| i < inv) {
                        t.last_absent = Some((inv, pos));
                    }
                }
            }
            _ => {}
        }
    }

    let time = |pos: usize| history.ops[pos].time;
    let ms = |ns: i128| (ns.max(0) / 1_000_000) as i64;
    let mut lost: Vec<(usize, &Tracked)> = Vec::new();
    let mut never_read: Vec<usize> = Vec::new();
    // Stale elements, with the position of the op that made each known.
    let mut stale: Vec<(StaleElement, usize)> = Vec::new();
    let mut stable_latencies = Vec::new();
    let mut lost_latencies = Vec::new();
    let mut stable = 0;
    // Only the latest tracking of each element counts: Jepsen's map keeps one per element.
    let mut latest: Vec<&Tracked> = current.values().map(|&t| &tracked[t]).collect();
    latest.sort_by(|a, b| element_order(els.value(a.element), els.value(b.element)));
    for t in &latest {
        let absent_inv = t.last_absent.map(|(i, _)| i);
        let present_inv = t.last_present.map(|(i, _)| i);
        let is_stable = present_inv.is_some() && absent_inv < present_inv;
        let is_lost = match (t.known, absent_inv) {
            (Some(k), Some(a)) => present_inv < Some(a) && k < a,
            _ => false,
        };
        let known_time = t.known.and_then(time).map(i128::from);
        if is_stable {
            stable += 1;
            let stable_time = match absent_inv {
                Some(a) => time(a).map(|x| i128::from(x) + 1),
                None => Some(0),
            };
            if let (Some(s), Some(k)) = (stable_time, known_time) {
                let latency = ms(s - k);
                stable_latencies.push(latency);
                if let (true, Some(k)) = (latency > 0, t.known) {
                    let element = StaleElement {
                        element: els.value(t.element).clone(),
                        stable_latency_ms: latency,
                        known_index: history.ops[k].index,
                        last_absent_index: absent_inv.map_or(0, |a| history.ops[a].index),
                    };
                    stale.push((element, k));
                }
            }
        } else if is_lost {
            let lost_time = match present_inv {
                Some(p) => time(p).map(|x| i128::from(x) + 1),
                None => Some(0),
            };
            if let (Some(l), Some(k)) = (lost_time, known_time) {
                lost_latencies.push(ms(l - k));
            }
            lost.push((t.element, t));
        } else {
            never_read.push(t.element);
        }
    }

    let mut errors = Vec::new();
    for (id, t) in lost.iter().take(MAX_EXAMPLES) {
        let (ai, ac) = t.last_absent.unwrap_or_default();
        let known = t.known.map_or(0, |k| history.ops[k].index);
        errors.push(Finding::at(
            &history.ops[ac],
            "lost",
            format!(
                "{} (known at index {known}) is missing from the read invoked at index {}, and no read invoked later shows it",
                els.value(*id), history.ops[ai].index
            ),
        ));
    }
    let mut by_latency: Vec<&StaleElement> = stale.iter().map(|(s, _)| s).collect();
    by_latency.sort_by_key(|s| std::cmp::Reverse(s.stable_latency_ms));
    for (s, k) in stale.iter().take(MAX_EXAMPLES) {
        errors.push(Finding::at(
            &history.ops[*k],
            "stale",
            format!(
                "{} was known here, but the read invoked at index {} missed it; stable {} ms later",
                s.element, s.last_absent_index, s.stable_latency_ms
            ),
        ));
    }
    errors.extend(dup_at);

    let counts = SetFullCounts {
        attempted: latest.len(),
        reads,
        stable,
        lost: lost.len(),
        never_read: never_read.len(),
        stale: stale.len(),
        duplicated: duplicated.len(),
    };
    let (valid, reason) = if counts.lost > 0 || counts.duplicated > 0 {
        (Validity::Invalid, None)
    } else if counts.stable == 0 {
        (
            Validity::Unknown,
            Some(format!(
                "no element is stable ({} attempted, {} reads)",
                plural(counts.attempted, "element", "elements"),
                reads
            )),
        )
    } else if opts.linearizable && counts.stale > 0 {
        (Validity::Invalid, None)
    } else {
        (Validity::Valid, None)
    };
    let listed = |ids: &mut dyn Iterator<Item = usize>| -> Vec<Value> {
        ids.take(MAX_LISTED)
            .map(|id| els.value(id).clone())
            .collect()
    };
    SetFullResult {
        valid,
        reason,
        linearizable: opts.linearizable,
        lost: listed(&mut lost.iter().map(|(id, _)| *id)),
        never_read: listed(&mut never_read.iter().copied()),
        stale: stale
            .iter()
            .take(MAX_LISTED)
            .map(|(s, _)| s.element.clone())
            .collect(),
        worst_stale: by_latency.into_iter().take(8).cloned().collect(),
        duplicated,
        stable_latencies: quantiles(stable_latencies),
        lost_latencies: quantiles(lost_latencies),
        errors,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jepsen::testing::history;

    #[rustfmt::skip]
    const ADDS: [(u64, &str, &str, &str); 6] = [
        (0, "invoke", "add", "0"),
        (0, "ok",     "add", "0"),
        (1, "invoke", "add", "1"),
        (1, "info",   "add", "1"),
        (2, "invoke", "add", "2"),
        (2, "fail",   "add", "2"),
    ];

    fn with_read(read: &'static str) -> Vec<(u64, &'static str, &'static str, &'static str)> {
        let mut rows = ADDS.to_vec();
        rows.push((3, "invoke", "read", "null"));
        rows.push((3, "ok", "read", read));
        rows
    }

    fn set(rows: &[(u64, &str, &str, &str)]) -> SetResult {
        check_set(&history(rows), &SetOptions::default())
    }

    #[test]
    fn set_every_acknowledged_add_read_is_valid_and_indeterminate_ones_recovered() {
        let r = set(&with_read("[0, 1]"));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(
            (
                r.counts.attempted,
                r.counts.acknowledged,
                r.counts.ok,
                r.counts.recovered
            ),
            (3, 1, 2, 1)
        );
        assert_eq!((r.recovered.as_str(), r.final_read), ("#{1}", Some(7)));
        assert!(r.anomaly_lines().is_empty());
    }

    #[test]
    fn set_an_acknowledged_add_missing_from_the_final_read_is_lost() {
        let mut rows = with_read("[0]");
        // Only the final read counts: an earlier one that lacked 0 changes nothing, a later
        // one that lacks it makes it lost.
        rows.push((3, "invoke", "read", "null"));
        rows.push((3, "ok", "read", "[1]"));
        let r = set(&rows);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.counts.lost, r.lost.as_str()), (1, "#{0}"));
        assert_eq!((r.errors[0].kind, r.errors[0].index), ("lost", 1));
        assert!(r.anomaly_lines()[0].starts_with("set lost: 1 element; first:"));
    }

    #[test]
    fn set_an_element_never_attempted_is_unexpected_and_no_read_unknown() {
        let r = set(&with_read("[0, 7, 8, 9]"));
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.counts.unexpected, r.unexpected.as_str()), (3, "#{7..9}"));
        assert_eq!((r.errors[0].kind, r.errors[0].index), ("unexpected", 7));
        let r = set(&ADDS);
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.reason.as_deref(), Some("the set was never read"));
    }

    fn full(rows: &[(u64, &str, &str, &str)], linearizable: bool) -> SetFullResult {
        check_set_full(&history(rows), &SetFullOptions { linearizable })
    }

    #[rustfmt::skip]
    #[test]
    fn set_full_stable_elements_are_valid_and_a_late_read_makes_one_stale() {
        let rows = [
            (0, "invoke", "add",  "0"),     // 1 ms
            (0, "ok",     "add",  "0"),     // 2 ms: known
            (1, "invoke", "read", "null"),  // 3 ms: begins after the ack...
            (1, "ok",     "read", "[]"),    // ...and misses it: stale
            (1, "invoke", "read", "null"),  // 5 ms
            (1, "ok",     "read", "[0]"),
        ];
        let r = full(&rows, false);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!((r.counts.stable, r.counts.stale, r.counts.lost), (1, 1, 0));
        // Stable from just after the missing read's invocation (3 ms): 1 ms after known.
        assert_eq!(r.worst_stale[0].stable_latency_ms, 1);
        assert!(r.anomaly_lines().is_empty(), "stale is fine unless linearizable");
        let r = full(&rows, true);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.errors[0].kind, r.errors[0].index), ("stale", 1));
        assert!(r.anomaly_lines()[0].starts_with("set-full stale: 1 element"));
    }

    #[rustfmt::skip]
    #[test]
    fn set_full_an_element_missing_from_every_later_read_is_lost() {
        let r = full(&[
            (0, "invoke", "add",  "0"),
            (0, "ok",     "add",  "0"),
            (0, "invoke", "add",  "1"),
            (0, "ok",     "add",  "1"),
            (1, "invoke", "read", "null"),
            (1, "ok",     "read", "[0, 1]"),
            (1, "invoke", "read", "null"),
            (1, "ok",     "read", "[1]"),
        ], false);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.counts.lost, r.counts.stable), (1, 1));
        assert_eq!(r.lost, [serde_json::json!(0)]);
        assert_eq!(r.lost_latencies["0"], 3, "known at 2 ms, last seen by the read invoked at 5 ms");
        let e = &r.errors[0];
        assert_eq!((e.kind, e.index), ("lost", 7));
        assert!(e.message.contains("invoked at index 6"), "{}", e.message);
    }

    #[rustfmt::skip]
    #[test]
    fn set_full_concurrent_misses_are_never_read_and_duplicates_invalid() {
        // The read begins before the add completes: missing it is not a loss.
        let rows = [
            (0, "invoke", "add",  "0"),
            (1, "invoke", "read", "null"),
            (0, "ok",     "add",  "0"),
            (1, "ok",     "read", "[]"),
        ];
        let r = full(&rows, true);
        assert_eq!((r.counts.never_read, r.counts.lost), (1, 0));
        assert_eq!(r.valid, Validity::Unknown, "nothing stable");
        let r = full(&[
            (0, "invoke", "add",  "0"),
            (0, "ok",     "add",  "0"),
            (1, "invoke", "read", "null"),
            (1, "ok",     "read", "[0, 0]"),
        ], false);
        assert_eq!((r.valid, r.counts.duplicated, r.duplicated["0"]), (Validity::Invalid, 1, 2));
        assert_eq!(r.errors[0].kind, "duplicated");
    }

    #[test]
    fn interval_strings_are_jepsens() {
        let vals = [1, 2, 3, 5, 7, 8].map(serde_json::Value::from);
        let refs: Vec<&Value> = vals.iter().collect();
        assert_eq!(interval_set_str(&refs), "#{1..3 5 7..8}");
        assert_eq!(interval_set_str(&[]), "#{}");
    }
}
