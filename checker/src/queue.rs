//! The queue checker (after Jepsen's NATS JetStream queue checker): every acknowledged publish
//! to a stream must come out of the final drains, nothing may come out that nobody published,
//! and nothing may come out that the server said definitely failed.
//!
//! The workload's history (the contract with the harness): clients `publish` unique values
//! `{"writer":w,"n":k}` (`w` the stable client index, `k` that writer's counter, increasing in
//! publish order), an `ok` completion carrying the stream sequence as `seq`; after the faults
//! and a heal each client `drain`s the whole stream, an `ok` drain's value being the list of the
//! messages it read, in stream order. Every (writer, n) is classified:
//!
//! - by its publish: `acknowledged` (`ok`), `failed` (definite `fail`) or `indeterminate`
//!   (`info`, or never completed); all three are `attempted`. A value published twice (which
//!   the contract rules out) counts once: acknowledged if any attempt was, failed if all were.
//! - by the drains: `read` when some `ok` drain holds it (the union of the drains).
//!   `unexpected`: read but never published. `failed-but-read`: a definite failure that was
//!   read, so the failure was not definite after all. `recovered`: indeterminate and read (fine).
//! - `lost`: acknowledged and never read, when some `ok` drain began after the acknowledgement.
//!   A publish acknowledged only after the last `ok` drain began is no drain's business: it is
//!   counted as `late`, not lost (with drains strictly after the publishes there are none).
//!
//! Lost values are split per writer by the reads of that writer, as Jepsen does: `prefix`
//! (below the writer's smallest read n: the stream "started over"), `middle` (between its
//! smallest and largest read n: a hole, the worst case, as values before and after it were
//! read) and `postfix` (above its largest read n: perhaps a slow reader, perhaps a lost tail).
//! A writer none of whose values were read has all its lost values counted as `postfix`, as
//! Jepsen's `lost-breakout` does. This is also the clearer reading: `prefix` and `middle` each
//! claim a read of that writer *after* the lost value, which would be false; `postfix` is
//! exactly "no read of this writer above it". Only values that were published set a writer's
//! bounds (an unexpected value's n says nothing about what the writer did).
//!
//! Two informational findings: `duplicated` counts, per drain, occurrences of a value beyond
//! its first (it makes the verdict invalid only with [`QueueOptions::exactly_once`]); and
//! `inconsistent-drains` counts values that one drain read and another `ok` drain lacked,
//! although that drain began after the value was known to be in the stream (acknowledged, or
//! read by a drain that had completed). Each drain also reports how many acknowledged values
//! it lacked (`missing`), as Jepsen's per-node losses.
//!
//! Verdict: `invalid` when anything is lost, unexpected or failed-but-read (or duplicated with
//! `exactly_once`); else `unknown` when no drain ended `ok` (nothing can be called lost without
//! a read of the stream) or nothing was published; else `valid`.
//!
//! Everything is one pass over the operations and one over each drain's list, with values
//! numbered densely through one hash map and a bit per (value, drain): a history of 100,000
//! publishes and several drains of 100,000 messages each checks in a fraction of a second.
//! This module never reads files.

use std::time::{Duration, Instant};

use ahash::{HashMap, HashMapExt};
use serde::Serialize;
use serde_json::Value;

use crate::Validity;
use crate::history::{History, Outcome};

/// How to judge a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// A value read twice by one drain makes the history invalid (otherwise duplicates are
    /// reported but allowed: at-least-once delivery).
    pub exactly_once: bool,
}

/// Where a lost value lies among the reads of its writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LostPart {
    /// Below the writer's smallest read n.
    Prefix,
    /// Between the writer's smallest and largest read n: a hole.
    Middle,
    /// Above the writer's largest read n, or the writer had nothing read.
    Postfix,
}

impl LostPart {
    /// The name as serialized.
    pub fn name(self) -> &'static str {
        match self {
            LostPart::Prefix => "prefix",
            LostPart::Middle => "middle",
            LostPart::Postfix => "postfix",
        }
    }
}

/// What the queue checker counted. Values are (writer, n) pairs, each counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Values some client tried to publish.
    pub attempted: usize,
    /// Publishes that ended `ok`.
    pub acknowledged: usize,
    /// Publishes that definitely failed.
    pub failed: usize,
    /// Publishes that ended `info` or never completed.
    pub indeterminate: usize,
    /// Distinct values read by any `ok` drain (unexpected ones included).
    pub read: usize,
    /// Acknowledged values no drain read (`late` ones excepted).
    pub lost: usize,
    /// Lost below their writer's smallest read n.
    pub lost_prefix: usize,
    /// Lost between their writer's smallest and largest read n.
    pub lost_middle: usize,
    /// Lost above their writer's largest read n (or of a writer with nothing read).
    pub lost_postfix: usize,
    /// Values read that no client ever tried to publish.
    pub unexpected: usize,
    /// Definitely failed publishes that were read.
    pub failed_but_read: usize,
    /// Indeterminate publishes that were read.
    pub recovered: usize,
    /// Occurrences of a value in a drain beyond its first, summed over drains.
    pub duplicated: usize,
    /// Values one drain read and another `ok` drain lacked although it began after the value
    /// was known to be in the stream (informational).
    pub inconsistent_drains: usize,
    /// Acknowledged values not read whose acknowledgement came after the last `ok` drain began:
    /// no drain had to read them, so they are not lost.
    pub late: usize,
    /// Drains that ended `ok` with a list: the ones judged.
    pub drains: usize,
    /// Drains that failed, ended `info` or never completed (no list).
    pub drains_failed: usize,
}

/// One writer's publishes and losses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueWriter {
    /// The writer (stable client index).
    pub writer: u64,
    /// Values it tried to publish.
    pub attempted: usize,
    /// Of which acknowledged.
    pub acknowledged: usize,
    /// Of its published values, those read.
    pub read: usize,
    /// Its smallest read n.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_read: Option<u64>,
    /// Its largest read n.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read: Option<u64>,
    /// Lost values.
    pub lost: usize,
    /// Lost below `first_read`.
    pub lost_prefix: usize,
    /// Lost between `first_read` and `last_read`.
    pub lost_middle: usize,
    /// Lost above `last_read`.
    pub lost_postfix: usize,
    /// The lost n values as ranges, `"17-23, 40"` (the first 50 ranges, then how many more).
    pub lost_ranges: String,
}

/// One `ok` drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueDrain {
    /// The client process.
    pub process: u64,
    /// The node it read from.
    pub node: Option<String>,
    /// The invocation's history `index`.
    pub invoke_index: u64,
    /// Invocation time, ns since the run started.
    pub invoke_time: Option<u64>,
    /// The completion's history `index` (what examples refer to a drain by).
    pub complete_index: u64,
    /// Completion time, ns since the run started.
    pub complete_time: Option<u64>,
    /// Messages in its list.
    pub messages: usize,
    /// Distinct values among them.
    pub distinct: usize,
    /// Occurrences beyond the first of a value.
    pub duplicated: usize,
    /// Values it read that nobody published.
    pub unexpected: usize,
    /// Values acknowledged before it began that it lacks.
    pub missing: usize,
}

/// A publish operation as an example shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuePublish {
    /// The client process.
    pub process: u64,
    /// The node it talked to.
    pub node: Option<String>,
    /// `ok`, `fail` or `info` (`info` also when it never completed).
    pub outcome: Outcome,
    /// The invocation's history `index`.
    pub invoke_index: u64,
    /// Invocation time, ns since the run started.
    pub invoke_time: Option<u64>,
    /// The completion's history `index`.
    pub complete_index: Option<u64>,
    /// Completion time, ns since the run started.
    pub complete_time: Option<u64>,
    /// The completion's value (with `seq` when acknowledged).
    pub value: Value,
    /// The completion's `error`, when it failed or is indeterminate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One value behind a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueExample {
    /// The writer.
    pub writer: u64,
    /// The writer's counter.
    pub n: u64,
    /// The stream sequence: the acknowledged one, else the first one read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// For lost values: where among the writer's reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<LostPart>,
    /// The publish (absent for unexpected values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<QueuePublish>,
    /// The drains that read it, by completion `index` (at most 8).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read_by: Vec<u64>,
    /// Inconsistent drains: the drains that lacked it although they began after it was known
    /// to be in the stream, by completion `index` (at most 8).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_from: Vec<u64>,
    /// Duplicates: how often the drain `read_by[0]` holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<usize>,
    /// Duplicates: the `seq` of each occurrence in that drain (the same: delivered twice;
    /// different: stored twice), at most 8.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seqs: Vec<u64>,
}

/// Up to twenty values behind each finding.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueExamples {
    /// Lost values, earliest acknowledgement first.
    pub lost: Vec<QueueExample>,
    /// Values read that nobody published, in order of reading.
    pub unexpected: Vec<QueueExample>,
    /// Definitely failed publishes that were read, in order of invocation.
    pub failed_but_read: Vec<QueueExample>,
    /// Values a drain held more than once, in order of reading.
    pub duplicated: Vec<QueueExample>,
    /// Values some drains read and others lacked, in order of publish.
    pub inconsistent_drains: Vec<QueueExample>,
}

/// The queue checker's verdict, `results.json`'s `queue`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueResult {
    /// `invalid` when a value was lost, unexpected or failed but read (or duplicated, with
    /// `exactly_once`).
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether duplicates were violations.
    pub exactly_once: bool,
    /// What was counted.
    pub counts: QueueCounts,
    /// Per writer, by writer.
    pub writers: Vec<QueueWriter>,
    /// The `ok` drains, in order of invocation.
    pub drains: Vec<QueueDrain>,
    /// Values behind each finding.
    pub examples: QueueExamples,
    /// When the first violation happened, ns since the run started: the acknowledgement of
    /// the earliest lost publish, or (if earlier) the definite failure of a publish later
    /// read, or the completion of the drain that read an unexpected value (or, with
    /// `exactly_once`, a duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_violation_ns: Option<u64>,
    /// Operations that could not be judged (malformed values, repeated publishes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Wall-clock time of the check.
    pub elapsed_ms: f64,
}

impl QueueResult {
    /// When the first violation happened (time since the run started), for the detection
    /// matrix's time to the first anomaly.
    pub fn first_violation_time(&self) -> Option<Duration> {
        self.first_violation_ns.map(Duration::from_nanos)
    }

    /// Values that break the verdict: lost, unexpected, failed but read, and (with
    /// `exactly_once`) duplicated occurrences.
    pub fn violation_count(&self) -> usize {
        let c = &self.counts;
        c.lost + c.unexpected + c.failed_but_read + if self.exactly_once { c.duplicated } else { 0 }
    }

    /// One line per kind of violation found, with its first example; empty when valid.
    pub fn anomaly_lines(&self) -> Vec<String> {
        let c = &self.counts;
        let e = &self.examples;
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut out = Vec::new();
        if c.lost > 0 {
            let first = e.lost.first().map_or(String::new(), |x| {
                let mut about = Vec::new();
                if let Some(seq) = x.seq {
                    about.push(format!("seq {seq}"));
                }
                if let Some(t) = x.publish.as_ref().and_then(|p| p.complete_time) {
                    about.push(format!("acknowledged at {:.2} s", t as f64 / 1e9));
                }
                let about = if about.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", about.join(", "))
                };
                format!("; first: writer {} n {}{about}", x.writer, x.n)
            });
            out.push(format!(
                "queue lost: {} never read (prefix {}, middle {}, postfix {}){first}",
                plural(c.lost, "acknowledged publish", "acknowledged publishes"),
                c.lost_prefix,
                c.lost_middle,
                c.lost_postfix
            ));
        }
        if c.unexpected > 0 {
            let first = e.unexpected.first().map_or(String::new(), |x| {
                format!("; first: writer {} n {}", x.writer, x.n)
            });
            out.push(format!(
                "queue unexpected: {} read but never published{first}",
                plural(c.unexpected, "value", "values")
            ));
        }
        if c.failed_but_read > 0 {
            let first = e.failed_but_read.first().map_or(String::new(), |x| {
                let error = x
                    .publish
                    .as_ref()
                    .and_then(|p| p.error.as_deref())
                    .map_or(String::new(), |e| format!(" (failed with {e:?})"));
                format!("; first: writer {} n {}{error}", x.writer, x.n)
            });
            out.push(format!(
                "queue failed-but-read: {} failed definitely yet read{first}",
                plural(c.failed_but_read, "publish", "publishes")
            ));
        }
        if self.exactly_once && c.duplicated > 0 {
            let first = e.duplicated.first().map_or(String::new(), |x| {
                format!(
                    "; first: writer {} n {}, {} times in one drain",
                    x.writer,
                    x.n,
                    x.occurrences.unwrap_or(2)
                )
            });
            out.push(format!(
                "queue duplicated: {} beyond the first within a drain (exactly once){first}",
                plural(c.duplicated, "delivery", "deliveries")
            ));
        }
        out
    }
}

/// Most examples listed per finding (all are counted).
const MAX_LISTED: usize = 20;
/// Most drains named in an example.
const MAX_DRAINS_NAMED: usize = 8;
/// Most ranges in a writer's `lost_ranges`.
const MAX_RANGES: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Acknowledged,
    Failed,
    Indeterminate,
    /// Read, never published.
    Unpublished,
}

/// One (writer, n).
#[derive(Debug, Clone)]
struct Rec {
    writer: u64,
    n: u64,
    status: Status,
    /// The publish operation shown (the acknowledged attempt, if any).
    operation: Option<usize>,
    /// Position of the acknowledgement in `history.ops`.
    ack_pos: Option<usize>,
    seq: Option<u64>,
    /// `ok` drains holding it.
    reads: u32,
}

struct Drain {
    operation: usize,
    invoke_pos: usize,
    complete_pos: usize,
    summary: QueueDrain,
}

fn key_of(v: &Value) -> Option<(u64, u64)> {
    Some((v.get("writer")?.as_u64()?, v.get("n")?.as_u64()?))
}

fn seq_of(v: &Value) -> Option<u64> {
    v.get("seq").and_then(Value::as_u64)
}

/// Writes sorted, distinct `ns` as ranges: `17-23, 40`.
fn ranges(ns: &[u64]) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut total = 0;
    let mut i = 0;
    while i < ns.len() {
        let mut j = i;
        while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
            j += 1;
        }
        total += 1;
        if shown < MAX_RANGES {
            if shown > 0 {
                out.push_str(", ");
            }
            out.push_str(&if i == j {
                ns[i].to_string()
            } else {
                format!("{}-{}", ns[i], ns[j])
            });
            shown += 1;
        }
        i = j + 1;
    }
    if total > shown {
        out.push_str(&format!(", ... ({} more ranges)", total - shown));
    }
    out
}

fn publish_view(history: &History, operation: usize) -> QueuePublish {
    let o = &history.operations[operation];
    let inv = history.invocation(o);
    let done = history.completion(o);
    QueuePublish {
        process: o.process,
        node: inv.node.clone(),
        outcome: o.outcome,
        invoke_index: inv.index,
        invoke_time: inv.time,
        complete_index: done.map(|d| d.index),
        complete_time: done.and_then(|d| d.time),
        value: done.map_or(Value::Null, |d| d.value.clone()),
        error: done.and_then(|d| {
            d.error.clone().or_else(|| {
                d.value
                    .get("error")
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
            })
        }),
    }
}

/// Per-writer accumulation.
#[derive(Debug, Default)]
struct WriterAcc {
    attempted: usize,
    acknowledged: usize,
    read: usize,
    first_read: Option<u64>,
    last_read: Option<u64>,
    lost: Vec<u64>,
    parts: [usize; 3],
}

/// Checks that every acknowledged publish was drained, and nothing else.
pub fn check_queue(history: &History, opts: &QueueOptions) -> QueueResult {
    let started = Instant::now();
    let mut warnings: Vec<String> = Vec::new();
    let mut warned = 0usize;
    let mut warn = |warnings: &mut Vec<String>, w: String| {
        warned += 1;
        if warnings.len() < MAX_LISTED {
            warnings.push(w);
        }
    };
    let mut counts = QueueCounts::default();
    let mut ids: HashMap<(u64, u64), usize> = HashMap::new();
    let mut recs: Vec<Rec> = Vec::new();
    let mut drains: Vec<Drain> = Vec::new();
    let mut drain_ops = 0usize;

    // Publishes, and which drains ended ok with a list.
    for (i, o) in history.operations.iter().enumerate() {
        let inv = history.invocation(o);
        let done = history.completion(o);
        match inv.f.as_str() {
            "publish" => {
                let Some(key) = key_of(&inv.value).or_else(|| done.and_then(|d| key_of(&d.value)))
                else {
                    warn(
                        &mut warnings,
                        format!(
                            "publish at index {}: no writer and n in its value: not judged",
                            inv.index
                        ),
                    );
                    continue;
                };
                let status = match o.outcome {
                    Outcome::Ok => Status::Acknowledged,
                    Outcome::Fail => Status::Failed,
                    Outcome::Info => Status::Indeterminate,
                };
                let ack_pos = (o.outcome == Outcome::Ok).then_some(o.complete).flatten();
                let seq = if o.outcome == Outcome::Ok {
                    done.and_then(|d| seq_of(&d.value))
                } else {
                    None
                };
                match ids.get(&key) {
                    None => {
                        ids.insert(key, recs.len());
                        recs.push(Rec {
                            writer: key.0,
                            n: key.1,
                            status,
                            operation: Some(i),
                            ack_pos,
                            seq,
                            reads: 0,
                        });
                    }
                    Some(&id) => {
                        warn(
                            &mut warnings,
                            format!(
                                "publish at index {}: writer {} n {} was published before; \
                                 counted once",
                                inv.index, key.0, key.1
                            ),
                        );
                        let r = &mut recs[id];
                        match (r.status, status) {
                            (Status::Acknowledged, _) => {}
                            (_, Status::Acknowledged) => {
                                r.status = status;
                                r.operation = Some(i);
                                r.ack_pos = ack_pos;
                                r.seq = seq;
                            }
                            (Status::Failed, Status::Indeterminate) => r.status = status,
                            _ => {}
                        }
                    }
                }
            }
            "drain" => {
                drain_ops += 1;
                match (o.outcome, done) {
                    (Outcome::Ok, Some(d)) if d.value.is_array() => drains.push(Drain {
                        operation: i,
                        invoke_pos: o.invoke,
                        complete_pos: o.complete.unwrap_or(o.invoke),
                        summary: QueueDrain {
                            process: o.process,
                            node: inv.node.clone(),
                            invoke_index: inv.index,
                            invoke_time: inv.time,
                            complete_index: d.index,
                            complete_time: d.time,
                            messages: 0,
                            distinct: 0,
                            duplicated: 0,
                            unexpected: 0,
                            missing: 0,
                        },
                    }),
                    (Outcome::Ok, _) => {
                        counts.drains_failed += 1;
                        warn(
                            &mut warnings,
                            format!(
                                "drain at index {}: ok without a list of messages: not judged",
                                inv.index
                            ),
                        );
                    }
                    _ => counts.drains_failed += 1,
                }
            }
            _ => {}
        }
    }
    let published = recs.len();

    // The drains: a bit per (value, drain); duplicates counted per (drain, value).
    let d_count = drains.len();
    let words = d_count.div_ceil(64).max(1);
    let mut bits: Vec<u64> = vec![0; recs.len() * words];
    let mut dup_counts: HashMap<(usize, usize), usize> = HashMap::new();
    let mut dup_order: Vec<(usize, usize)> = Vec::new();
    let mut unexpected_order: Vec<usize> = Vec::new();
    for (d, drain) in drains.iter_mut().enumerate() {
        let list = history.completion(&history.operations[drain.operation]);
        let Some(list) = list.and_then(|c| c.value.as_array()) else {
            continue;
        };
        let (word, bit) = (d / 64, 1u64 << (d % 64));
        let mut malformed = 0;
        drain.summary.messages = list.len();
        for entry in list {
            let Some(key) = key_of(entry) else {
                malformed += 1;
                continue;
            };
            let id = match ids.get(&key) {
                Some(&id) => id,
                None => {
                    let id = recs.len();
                    ids.insert(key, id);
                    recs.push(Rec {
                        writer: key.0,
                        n: key.1,
                        status: Status::Unpublished,
                        operation: None,
                        ack_pos: None,
                        seq: None,
                        reads: 0,
                    });
                    bits.extend(std::iter::repeat_n(0, words));
                    unexpected_order.push(id);
                    id
                }
            };
            let slot = &mut bits[id * words + word];
            if *slot & bit != 0 {
                drain.summary.duplicated += 1;
                let c = dup_counts.entry((d, id)).or_insert(1);
                if *c == 1 && dup_order.len() < MAX_LISTED {
                    dup_order.push((d, id));
                }
                *c += 1;
                continue;
            }
            *slot |= bit;
            let r = &mut recs[id];
            r.reads += 1;
            if r.seq.is_none() {
                r.seq = seq_of(entry);
            }
            drain.summary.distinct += 1;
            if r.status == Status::Unpublished {
                drain.summary.unexpected += 1;
            }
        }
        if malformed > 0 {
            warn(
                &mut warnings,
                format!(
                    "drain at index {}: {malformed} messages without writer and n: not judged",
                    drain.summary.invoke_index
                ),
            );
        }
    }
    counts.drains = d_count;
    counts.duplicated = drains.iter().map(|d| d.summary.duplicated).sum();
    let last_drain_began = drains.iter().map(|d| d.invoke_pos).max();
    let spans: Vec<(usize, usize)> = drains
        .iter()
        .map(|d| (d.invoke_pos, d.complete_pos))
        .collect();
    let drain_time: Vec<Option<u64>> = drains.iter().map(|d| d.summary.complete_time).collect();
    let drain_index: Vec<u64> = drains.iter().map(|d| d.summary.complete_index).collect();
    let drain_operation: Vec<usize> = drains.iter().map(|d| d.operation).collect();
    let mut summaries: Vec<QueueDrain> = drains.into_iter().map(|d| d.summary).collect();
    let has_read = |id: usize, d: usize| bits[id * words + d / 64] & (1u64 << (d % 64)) != 0;

    // Classify every value.
    let mut writers: HashMap<u64, WriterAcc> = HashMap::new();
    let mut lost: Vec<usize> = Vec::new();
    let mut failed_but_read: Vec<usize> = Vec::new();
    let mut inconsistent: Vec<(usize, Vec<u64>)> = Vec::new();
    let mut first: Option<u64> = None;
    let mut at = |t: Option<u64>| {
        if let Some(t) = t {
            first = Some(first.map_or(t, |f| f.min(t)));
        }
    };
    for (id, r) in recs.iter().enumerate() {
        let read = r.reads > 0;
        if read {
            counts.read += 1;
        }
        if r.status == Status::Unpublished {
            counts.unexpected += 1;
            at((0..d_count)
                .filter(|&d| has_read(id, d))
                .filter_map(|d| drain_time[d])
                .min());
            continue;
        }
        counts.attempted += 1;
        let w = writers.entry(r.writer).or_default();
        w.attempted += 1;
        if read {
            w.read += 1;
            w.first_read = Some(w.first_read.map_or(r.n, |m| m.min(r.n)));
            w.last_read = Some(w.last_read.map_or(r.n, |m| m.max(r.n)));
        }
        match r.status {
            Status::Acknowledged => {
                counts.acknowledged += 1;
                w.acknowledged += 1;
                let ack = r.ack_pos.unwrap_or(0);
                for (d, summary) in summaries.iter_mut().enumerate() {
                    if ack < spans[d].0 && !has_read(id, d) {
                        summary.missing += 1;
                    }
                }
                if !read && d_count > 0 {
                    if last_drain_began.is_some_and(|b| ack < b) {
                        lost.push(id);
                    } else {
                        counts.late += 1;
                    }
                }
            }
            Status::Failed => {
                counts.failed += 1;
                if read {
                    counts.failed_but_read += 1;
                    failed_but_read.push(id);
                    let o = &history.operations[r.operation.unwrap_or(0)];
                    at(history.completion(o).and_then(|c| c.time));
                }
            }
            Status::Indeterminate => {
                counts.indeterminate += 1;
                if read {
                    counts.recovered += 1;
                }
            }
            Status::Unpublished => {}
        }
        if read && (r.reads as usize) < d_count {
            // Known to be in the stream from its acknowledgement, or from the completion of
            // the first drain that read it.
            let known = (0..d_count)
                .filter(|&d| has_read(id, d))
                .map(|d| spans[d].1)
                .chain(r.ack_pos)
                .min()
                .unwrap_or(usize::MAX);
            let missing: Vec<u64> = (0..d_count)
                .filter(|&d| !has_read(id, d) && spans[d].0 > known)
                .map(|d| drain_index[d])
                .collect();
            if !missing.is_empty() {
                counts.inconsistent_drains += 1;
                if inconsistent.len() < MAX_LISTED {
                    inconsistent.push((id, missing));
                }
            }
        }
    }

    // Lost values, split by their writer's reads.
    let mut parts: HashMap<usize, LostPart> = HashMap::with_capacity(lost.len());
    for &id in &lost {
        let r = &recs[id];
        let w = writers.entry(r.writer).or_default();
        let part = if w.first_read.is_some_and(|m| r.n < m) {
            LostPart::Prefix
        } else if w.last_read.is_some_and(|m| r.n < m) {
            LostPart::Middle
        } else {
            LostPart::Postfix
        };
        w.parts[part as usize] += 1;
        w.lost.push(r.n);
        parts.insert(id, part);
    }
    counts.lost = lost.len();
    counts.lost_prefix = writers.values().map(|w| w.parts[0]).sum();
    counts.lost_middle = writers.values().map(|w| w.parts[1]).sum();
    counts.lost_postfix = writers.values().map(|w| w.parts[2]).sum();
    let ack_time = |id: usize| {
        recs[id].operation.and_then(|i| {
            history
                .completion(&history.operations[i])
                .and_then(|c| c.time)
        })
    };
    lost.sort_by_key(|&id| (recs[id].ack_pos, id));
    at(lost.iter().filter_map(|&id| ack_time(id)).min());
    if opts.exactly_once {
        at(dup_counts.keys().filter_map(|&(d, _)| drain_time[d]).min());
    }

    let read_by = |id: usize| -> Vec<u64> {
        (0..d_count)
            .filter(|&d| has_read(id, d))
            .take(MAX_DRAINS_NAMED)
            .map(|d| drain_index[d])
            .collect()
    };
    let example = |id: usize| {
        let r = &recs[id];
        QueueExample {
            writer: r.writer,
            n: r.n,
            seq: r.seq,
            part: parts.get(&id).copied(),
            publish: r.operation.map(|i| publish_view(history, i)),
            read_by: read_by(id),
            missing_from: Vec::new(),
            occurrences: None,
            seqs: Vec::new(),
        }
    };
    // The seqs of each listed duplicate, one more pass over only the drains concerned.
    let mut dup_seqs: HashMap<(usize, usize), Vec<u64>> = HashMap::new();
    for &(d, id) in &dup_order {
        dup_seqs.insert((d, id), Vec::new());
    }
    let mut dup_drains: Vec<usize> = dup_order.iter().map(|&(d, _)| d).collect();
    dup_drains.dedup();
    for d in dup_drains {
        let done = history.completion(&history.operations[drain_operation[d]]);
        for entry in done.and_then(|c| c.value.as_array()).into_iter().flatten() {
            if let Some(id) = key_of(entry).and_then(|k| ids.get(&k).copied())
                && let Some(s) = dup_seqs.get_mut(&(d, id))
                && s.len() < MAX_DRAINS_NAMED
                && let Some(seq) = seq_of(entry)
            {
                s.push(seq);
            }
        }
    }
    let examples = QueueExamples {
        lost: lost
            .iter()
            .take(MAX_LISTED)
            .map(|&id| example(id))
            .collect(),
        unexpected: unexpected_order
            .iter()
            .take(MAX_LISTED)
            .map(|&id| example(id))
            .collect(),
        failed_but_read: failed_but_read
            .iter()
            .take(MAX_LISTED)
            .map(|&id| example(id))
            .collect(),
        duplicated: dup_order
            .iter()
            .map(|&(d, id)| QueueExample {
                read_by: vec![drain_index[d]],
                occurrences: dup_counts.get(&(d, id)).copied(),
                seqs: dup_seqs.remove(&(d, id)).unwrap_or_default(),
                ..example(id)
            })
            .collect(),
        inconsistent_drains: inconsistent
            .into_iter()
            .map(|(id, mut missing)| {
                missing.truncate(MAX_DRAINS_NAMED);
                QueueExample {
                    missing_from: missing,
                    ..example(id)
                }
            })
            .collect(),
    };

    let mut rows: Vec<(u64, WriterAcc)> = writers.into_iter().collect();
    rows.sort_unstable_by_key(|r| r.0);
    let writers: Vec<QueueWriter> = rows
        .into_iter()
        .map(|(writer, mut w)| {
            w.lost.sort_unstable();
            QueueWriter {
                writer,
                attempted: w.attempted,
                acknowledged: w.acknowledged,
                read: w.read,
                first_read: w.first_read,
                last_read: w.last_read,
                lost: w.lost.len(),
                lost_prefix: w.parts[0],
                lost_middle: w.parts[1],
                lost_postfix: w.parts[2],
                lost_ranges: ranges(&w.lost),
            }
        })
        .collect();

    if warned > warnings.len() {
        warnings.push(format!("... and {} more warnings", warned - warnings.len()));
    }
    let broken = counts.lost > 0
        || counts.unexpected > 0
        || counts.failed_but_read > 0
        || (opts.exactly_once && counts.duplicated > 0);
    let (valid, reason) = if broken {
        (Validity::Invalid, None)
    } else if d_count == 0 {
        let reason = if drain_ops == 0 {
            "the history has no drain: without a read of the stream nothing can be called lost"
                .to_string()
        } else {
            format!(
                "none of the {drain_ops} drains ended ok with a list: without a read of the \
                 stream nothing can be called lost"
            )
        };
        (Validity::Unknown, Some(reason))
    } else if published == 0 {
        (
            Validity::Unknown,
            Some("no publish was attempted: nothing to check".to_string()),
        )
    } else {
        (Validity::Valid, None)
    };
    QueueResult {
        valid,
        reason,
        exactly_once: opts.exactly_once,
        counts,
        writers,
        drains: summaries,
        examples,
        first_violation_ns: if broken { first } else { None },
        warnings,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::parse_jsonl;

    const NEMESIS: u64 = u64::MAX;

    /// History text through the JSONL reader, as `faultline check` reads it.
    fn parse(text: &str) -> History {
        let (ops, warnings) = parse_jsonl(text).unwrap();
        History::from_ops(ops, warnings).unwrap()
    }

    /// One message in the contract's shape: `w.n` is `{"writer":w,"n":n}`, `w.n@s` adds
    /// `"seq":s`.
    fn message(m: &str) -> String {
        let (wn, seq) = m.split_once('@').map_or((m, None), |(a, b)| (a, Some(b)));
        let (w, n) = wn.split_once('.').expect("w.n");
        match seq {
            Some(s) => format!(r#"{{"writer":{w},"n":{n},"seq":{s}}}"#),
            None => format!(r#"{{"writer":{w},"n":{n}}}"#),
        }
    }

    /// A history from `(process, type, f, value, ms)` rows, written as the harness writes its
    /// lines (node `n1`). Values are shorthand for the contract's JSON: a publish's `w.n` or
    /// `w.n@seq` is one message; an ok drain's value is its messages, space separated; an empty
    /// value is `null`; `!reason` gives the line an `error`. Process `NEMESIS` is the nemesis.
    fn history(rows: &[(u64, &str, &str, &str, u64)]) -> History {
        let mut text = String::new();
        for (i, &(p, t, f, value, ms)) in rows.iter().enumerate() {
            let (value, error) = value
                .split_once('!')
                .map_or((value, None), |(v, e)| (v.trim(), Some(e)));
            let json = if f == "drain" && t == "ok" {
                let list: Vec<String> = value.split_whitespace().map(message).collect();
                format!("[{}]", list.join(","))
            } else if value.is_empty() {
                "null".to_string()
            } else {
                message(value)
            };
            let process = if p == NEMESIS {
                r#""nemesis""#.to_string()
            } else {
                p.to_string()
            };
            let error = error.map_or(String::new(), |e| format!(r#","error":"{e}""#));
            text.push_str(&format!(
                r#"{{"index":{i},"time":{},"process":{process},"type":"{t}","f":"{f}","value":{json},"node":"n1"{error}}}"#,
                ms * 1_000_000
            ));
            text.push('\n');
        }
        parse(&text)
    }

    fn check(h: &History) -> QueueResult {
        check_queue(h, &QueueOptions::default())
    }

    #[rustfmt::skip]
    #[test]
    fn every_acknowledged_publish_drained_is_valid() {
        let h = history(&[
            (1,       "invoke", "publish",         "1.0",               0),
            (2,       "invoke", "publish",         "2.0",               1),
            (1,       "ok",     "publish",         "1.0@1",             2),
            (2,       "ok",     "publish",         "2.0@2",             3),
            (NEMESIS, "info",   "start-partition", "",                  4),
            (1,       "invoke", "publish",         "1.1",               5),
            (1,       "ok",     "publish",         "1.1@3",             6),
            (NEMESIS, "info",   "stop-partition",  "",                  7),
            (1,       "invoke", "drain",           "",                  10),
            (2,       "invoke", "drain",           "",                  11),
            (1,       "ok",     "drain",           "1.0@1 2.0@2 1.1@3", 20),
            (2,       "ok",     "drain",           "1.0@1 2.0@2 1.1@3", 21),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        let c = &r.counts;
        assert_eq!((c.attempted, c.acknowledged, c.read, c.lost, c.drains), (3, 3, 3, 0, 2));
        assert_eq!((c.unexpected, c.duplicated, c.inconsistent_drains, c.late), (0, 0, 0, 0));
        assert_eq!(r.writers.len(), 2);
        assert_eq!((r.writers[0].writer, r.writers[0].read, r.writers[0].lost_ranges.as_str()), (1, 2, ""));
        assert_eq!(r.drains[0].messages, 3);
        assert_eq!(r.drains[1].missing, 0);
        assert_eq!(r.first_violation_time(), None);
        assert!(r.anomaly_lines().is_empty());
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[rustfmt::skip]
    #[test]
    fn an_acknowledged_value_missing_between_two_read_ones_is_lost_middle() {
        let h = history(&[
            (1, "invoke", "publish", "1.0",         0),
            (1, "ok",     "publish", "1.0@1",       1),
            (1, "invoke", "publish", "1.1",         2),
            (1, "ok",     "publish", "1.1@2",       3),
            (1, "invoke", "publish", "1.2",         4),
            (1, "ok",     "publish", "1.2@3",       5),
            (2, "invoke", "drain",   "",            10),
            (2, "ok",     "drain",   "1.0@1 1.2@3", 20),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        let c = &r.counts;
        assert_eq!((c.lost, c.lost_prefix, c.lost_middle, c.lost_postfix), (1, 0, 1, 0));
        let w = &r.writers[0];
        assert_eq!((w.first_read, w.last_read, w.lost_middle), (Some(0), Some(2), 1));
        assert_eq!(w.lost_ranges, "1");
        let x = &r.examples.lost[0];
        assert_eq!((x.writer, x.n, x.seq, x.part), (1, 1, Some(2), Some(LostPart::Middle)));
        let p = x.publish.as_ref().unwrap();
        assert_eq!((p.outcome, p.invoke_index, p.complete_index), (Outcome::Ok, 2, Some(3)));
        assert_eq!((p.process, p.node.as_deref()), (1, Some("n1")));
        assert_eq!(r.first_violation_time(), Some(Duration::from_millis(3)), "its acknowledgement");
        assert_eq!(r.drains[0].missing, 1);
        assert_eq!(
            r.anomaly_lines(),
            ["queue lost: 1 acknowledged publish never read (prefix 0, middle 1, postfix 0); \
              first: writer 1 n 1 (seq 2, acknowledged at 0.00 s)"]
        );
    }

    #[rustfmt::skip]
    #[test]
    fn values_lost_before_and_after_the_reads_are_prefix_and_postfix() {
        // Writer 1 publishes 0..=5 and only 2 and 3 come out; nothing of writer 2 does.
        let h = history(&[
            (1, "invoke", "publish", "1.0",         0),
            (1, "ok",     "publish", "1.0@1",       1),
            (1, "invoke", "publish", "1.1",         2),
            (1, "ok",     "publish", "1.1@2",       3),
            (2, "invoke", "publish", "2.0",         4),
            (2, "ok",     "publish", "2.0@3",       5),
            (1, "invoke", "publish", "1.2",         6),
            (1, "ok",     "publish", "1.2@4",       7),
            (1, "invoke", "publish", "1.3",         8),
            (1, "ok",     "publish", "1.3@5",       9),
            (2, "invoke", "publish", "2.1",         10),
            (2, "ok",     "publish", "2.1@6",       11),
            (1, "invoke", "publish", "1.4",         12),
            (1, "ok",     "publish", "1.4@7",       13),
            (1, "invoke", "publish", "1.5",         14),
            (1, "ok",     "publish", "1.5@8",       15),
            (3, "invoke", "drain",   "",            20),
            (3, "ok",     "drain",   "1.2@4 1.3@5", 30),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        let c = &r.counts;
        assert_eq!((c.lost, c.lost_prefix, c.lost_middle, c.lost_postfix), (6, 2, 0, 4));
        let (w1, w2) = (&r.writers[0], &r.writers[1]);
        assert_eq!((w1.lost_prefix, w1.lost_middle, w1.lost_postfix), (2, 0, 2));
        assert_eq!(w1.lost_ranges, "0-1, 4-5");
        assert_eq!((w2.writer, w2.read, w2.first_read), (2, 0, None));
        assert_eq!((w2.lost_postfix, w2.lost_ranges.as_str()), (2, "0-1"), "an unread writer's losses are postfix");
        let lost: Vec<(u64, u64)> = r.examples.lost.iter().map(|x| (x.writer, x.n)).collect();
        assert_eq!(lost, [(1, 0), (1, 1), (2, 0), (2, 1), (1, 4), (1, 5)], "by acknowledgement");
        assert_eq!(r.first_violation_time(), Some(Duration::from_millis(1)));
        assert!(r.anomaly_lines()[0].starts_with(
            "queue lost: 6 acknowledged publishes never read (prefix 2, middle 0, postfix 4); first: writer 1 n 0"
        ));
    }

    #[rustfmt::skip]
    #[test]
    fn a_value_nobody_published_is_unexpected() {
        let h = history(&[
            (1, "invoke", "publish", "1.0",         0),
            (1, "ok",     "publish", "1.0@1",       1),
            (2, "invoke", "drain",   "",            10),
            (2, "ok",     "drain",   "1.0@1 9.4@2", 20),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        assert_eq!((r.counts.unexpected, r.counts.read, r.counts.attempted), (1, 2, 1));
        let x = &r.examples.unexpected[0];
        assert_eq!((x.writer, x.n, x.seq), (9, 4, Some(2)));
        assert!(x.publish.is_none());
        assert_eq!(x.read_by, [3], "the drain's completion index");
        assert_eq!(r.drains[0].unexpected, 1);
        assert!(r.writers.iter().all(|w| w.writer != 9), "an unexpected value makes no writer row");
        assert_eq!(r.first_violation_time(), Some(Duration::from_millis(20)));
        assert_eq!(r.anomaly_lines(), ["queue unexpected: 1 value read but never published; first: writer 9 n 4"]);
    }

    #[rustfmt::skip]
    #[test]
    fn a_definitely_failed_publish_that_was_read_is_invalid() {
        let h = history(&[
            (1, "invoke", "publish", "1.0",               0),
            (1, "fail",   "publish", "1.0 !no-responders", 5),
            (1, "invoke", "publish", "1.1",               6),
            (1, "ok",     "publish", "1.1@2",             7),
            (2, "invoke", "drain",   "",                  10),
            (2, "ok",     "drain",   "1.0@1 1.1@2",       20),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        assert_eq!((r.counts.failed, r.counts.failed_but_read, r.counts.lost), (1, 1, 0));
        let x = &r.examples.failed_but_read[0];
        let p = x.publish.as_ref().unwrap();
        assert_eq!((x.n, p.outcome, p.error.as_deref()), (0, Outcome::Fail, Some("no-responders")));
        assert_eq!(x.seq, Some(1), "the seq it was read at");
        assert_eq!(r.first_violation_time(), Some(Duration::from_millis(5)), "the failure");
        assert_eq!(
            r.anomaly_lines(),
            ["queue failed-but-read: 1 publish failed definitely yet read; first: writer 1 n 0 (failed with \"no-responders\")"]
        );
    }

    #[rustfmt::skip]
    #[test]
    fn an_indeterminate_publish_that_was_read_is_recovered_and_valid() {
        let h = history(&[
            (1, "invoke", "publish", "1.0",           0),
            (1, "info",   "publish", "1.0 !timeout",  5),
            (2, "invoke", "publish", "2.0",           6),
            (3, "invoke", "publish", "1.1",           7),
            (3, "info",   "publish", "1.1 !timeout",  8),
            (4, "invoke", "drain",   "",              10),
            (4, "ok",     "drain",   "1.0@1 2.0@2",   20),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        let c = &r.counts;
        assert_eq!((c.attempted, c.acknowledged, c.indeterminate, c.recovered, c.read, c.lost), (3, 0, 3, 2, 2, 0));
    }

    #[rustfmt::skip]
    #[test]
    fn duplicates_are_allowed_unless_exactly_once() {
        let h = history(&[
            (1, "invoke", "publish", "1.0",                     0),
            (1, "ok",     "publish", "1.0@1",                   1),
            (1, "invoke", "publish", "1.1",                     2),
            (1, "ok",     "publish", "1.1@2",                   3),
            (2, "invoke", "drain",   "",                        10),
            (2, "ok",     "drain",   "1.0@1 1.1@2 1.1@2 1.1@3", 20),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        assert_eq!((r.counts.duplicated, r.drains[0].duplicated, r.drains[0].distinct), (2, 2, 2));
        let x = &r.examples.duplicated[0];
        assert_eq!((x.n, x.occurrences, x.seqs.as_slice()), (1, Some(3), &[2, 2, 3][..]));
        assert!(r.anomaly_lines().is_empty());
        assert_eq!(r.first_violation_time(), None);

        let strict = check_queue(&h, &QueueOptions { exactly_once: true });
        assert_eq!(strict.valid, Validity::Invalid);
        assert!(strict.exactly_once);
        assert_eq!(strict.violation_count(), 2);
        assert_eq!(strict.first_violation_time(), Some(Duration::from_millis(20)));
        assert_eq!(
            strict.anomaly_lines(),
            ["queue duplicated: 2 deliveries beyond the first within a drain (exactly once); first: writer 1 n 1, 3 times in one drain"]
        );
    }

    #[rustfmt::skip]
    #[test]
    fn without_an_ok_drain_the_verdict_is_unknown() {
        let failed = history(&[
            (1, "invoke", "publish", "1.0",        0),
            (1, "ok",     "publish", "1.0@1",      1),
            (2, "invoke", "drain",   "",           10),
            (2, "info",   "drain",   "!timeout",   20),
        ]);
        let r = check(&failed);
        assert_eq!(r.valid, Validity::Unknown, "{r:#?}");
        assert!(r.reason.as_deref().unwrap().contains("none of the 1 drains"), "{:?}", r.reason);
        assert_eq!((r.counts.lost, r.counts.drains, r.counts.drains_failed), (0, 0, 1), "nothing called lost unread");

        let none = history(&[
            (1, "invoke", "publish", "1.0",   0),
            (1, "ok",     "publish", "1.0@1", 1),
        ]);
        assert!(check(&none).reason.unwrap().contains("no drain"));

        let nothing_published = history(&[
            (2, "invoke", "drain", "", 10),
            (2, "ok",     "drain", "", 20),
        ]);
        let r = check(&nothing_published);
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.reason.unwrap().contains("no publish"));
    }

    #[rustfmt::skip]
    #[test]
    fn drains_that_disagree_are_counted_but_the_union_judges() {
        // Drain 5 misses 1.1, acknowledged before it began: inconsistent. 1.3 is acknowledged
        // after drain 6 began and before drain 5 completed: drain 6 may lack it.
        let h = history(&[
            (1, "invoke", "publish", "1.0",               0),
            (1, "ok",     "publish", "1.0@1",             1),
            (1, "invoke", "publish", "1.1",               2),
            (1, "ok",     "publish", "1.1@2",             3),
            (1, "invoke", "publish", "1.2",               4),
            (1, "ok",     "publish", "1.2@3",             5),
            (5, "invoke", "drain",   "",                  10),
            (6, "invoke", "drain",   "",                  11),
            (1, "invoke", "publish", "1.3",               12),
            (1, "ok",     "publish", "1.3@4",             13),
            (5, "ok",     "drain",   "1.0@1 1.1@2 1.2@3 1.3@4", 20),
            (6, "ok",     "drain",   "1.0@1 1.2@3",       21),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        assert_eq!((r.counts.inconsistent_drains, r.counts.lost, r.counts.read), (1, 0, 4));
        let x = &r.examples.inconsistent_drains[0];
        assert_eq!((x.n, x.read_by.as_slice(), x.missing_from.as_slice()), (1, &[10][..], &[11][..]));
        assert_eq!((r.drains[0].missing, r.drains[1].missing), (0, 1));
        assert!(r.anomaly_lines().is_empty(), "informational");
    }

    #[rustfmt::skip]
    #[test]
    fn a_publish_acknowledged_after_every_drain_began_is_late_not_lost() {
        let h = history(&[
            (1, "invoke", "publish", "1.0",   0),
            (1, "ok",     "publish", "1.0@1", 1),
            (1, "invoke", "publish", "1.1",   9),
            (2, "invoke", "drain",   "",      10),
            (1, "ok",     "publish", "1.1@2", 12),
            (2, "ok",     "drain",   "1.0@1", 20),
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        assert_eq!((r.counts.late, r.counts.lost, r.drains[0].missing), (1, 0, 0));
    }

    #[test]
    fn check_history_sends_drain_histories_to_the_queue_checker() {
        // The contract's lines as the harness writes them.
        let lines = [
            r#"{"index":0,"time":1000,"process":3,"type":"invoke","f":"publish","value":{"writer":3,"n":17},"node":"n1"}"#,
            r#"{"index":1,"time":2000,"process":3,"type":"ok","f":"publish","value":{"writer":3,"n":17,"seq":1234},"node":"n1"}"#,
            r#"{"index":2,"time":2500,"process":4,"type":"invoke","f":"publish","value":{"writer":4,"n":0},"node":"n2"}"#,
            r#"{"index":3,"time":2600,"process":4,"type":"fail","f":"publish","value":{"writer":4,"n":0},"node":"n2","error":"no-responders"}"#,
            r#"{"index":4,"time":3000,"process":"nemesis","type":"info","f":"start-partition","value":{"kind":"halves"}}"#,
            r#"{"index":5,"time":4000,"process":3,"type":"invoke","f":"lease-grant","value":{"ttl":5}}"#,
            r#"{"index":6,"time":4100,"process":3,"type":"fail","f":"lease-grant","value":{"ttl":5},"error":"unsupported"}"#,
            r#"{"index":7,"time":5000,"process":3,"type":"invoke","f":"drain","value":null,"node":"n1"}"#,
            r#"{"index":8,"time":6000,"process":3,"type":"ok","f":"drain","value":[{"writer":3,"n":17,"seq":1234}],"node":"n1"}"#,
            r#"{"index":9,"time":5000,"process":4,"type":"invoke","f":"drain","value":null,"node":"n2"}"#,
            r#"{"index":10,"time":6000,"process":4,"type":"info","f":"drain","value":null,"node":"n2","error":"timeout"}"#,
        ];
        let h = parse(&(lines.join("\n") + "\n"));
        let r = crate::check_history(&h, &crate::CheckOptions::default()).unwrap();
        assert!(
            r.linearizable.is_none() && r.watch.is_none() && r.lease.is_none(),
            "{r:#?}"
        );
        let q = r.queue.as_ref().unwrap();
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!(
            (
                q.counts.acknowledged,
                q.counts.failed,
                q.counts.drains,
                q.counts.drains_failed
            ),
            (1, 1, 1, 1)
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["queue"]["valid"], "valid");
        assert_eq!(json["queue"]["counts"]["read"], 1);
        assert_eq!(json["queue"]["writers"][0]["writer"], 3);
        assert_eq!(json["queue"]["drains"][0]["complete_index"], 8);
        assert!(json.get("lease").is_none() && json.get("linearizable").is_none());

        // Without drains, no queue result and no `queue` key.
        let h = parse(&(lines[..7].join("\n") + "\n"));
        let r = crate::check_history(&h, &crate::CheckOptions::default()).unwrap();
        assert!(r.queue.is_none() && r.lease.is_some());
        assert!(serde_json::to_value(&r).unwrap().get("queue").is_none());
    }

    /// A seeded history: `writers` clients publishing `publishes` values (94% acknowledged, 3%
    /// failed, 3% indeterminate of which half reach the stream), a partition in the middle, then
    /// `drains` concurrent drains of the whole stream, leaving out the values in `skip`.
    /// Returns the text and the acknowledged values in the stream.
    fn generated(
        seed: u64,
        publishes: usize,
        drains: usize,
        skip: &HashSet<(u64, u64)>,
    ) -> (String, Vec<(u64, u64)>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let writers = 10u64;
        let mut next = vec![0u64; writers as usize];
        let mut process: Vec<u64> = (0..writers).collect();
        let mut stream: Vec<(u64, u64, u64)> = Vec::with_capacity(publishes);
        let mut acked = Vec::with_capacity(publishes);
        let mut text = String::with_capacity(publishes * 300);
        let mut index = 0u64;
        let mut t = 0u64;
        let mut line = |text: &mut String, t: u64, rest: String| {
            text.push_str(&format!("{{\"index\":{index},\"time\":{t},{rest}}}\n"));
            index += 1;
        };
        for i in 0..publishes {
            if i == publishes / 3 {
                line(&mut text, t, r#""process":"nemesis","type":"info","f":"start-partition","value":{"kind":"halves"}"#.into());
            }
            if i == 2 * publishes / 3 {
                line(&mut text, t, r#""process":"nemesis","type":"info","f":"stop-partition","value":{"heal":true}"#.into());
            }
            let w = rng.random_range(0..writers);
            let n = next[w as usize];
            next[w as usize] += 1;
            let p = process[w as usize];
            let node = format!("n{}", w % 3 + 1);
            line(
                &mut text,
                t,
                format!(
                    r#""process":{p},"type":"invoke","f":"publish","value":{{"writer":{w},"n":{n}}},"node":"{node}""#
                ),
            );
            t += rng.random_range(100_000..2_000_000u64);
            let done = match rng.random_range(0..100) {
                0..94 => {
                    let seq = stream.len() as u64 + 1;
                    stream.push((w, n, seq));
                    acked.push((w, n));
                    format!(
                        r#""type":"ok","f":"publish","value":{{"writer":{w},"n":{n},"seq":{seq}}}"#
                    )
                }
                94..97 => format!(
                    r#""type":"fail","f":"publish","value":{{"writer":{w},"n":{n}}},"error":"no-responders""#
                ),
                _ => {
                    if rng.random_bool(0.5) {
                        stream.push((w, n, stream.len() as u64 + 1));
                    }
                    process[w as usize] += writers;
                    format!(
                        r#""type":"info","f":"publish","value":{{"writer":{w},"n":{n}}},"error":"timeout""#
                    )
                }
            };
            line(
                &mut text,
                t,
                format!(r#""process":{p},{done},"node":"{node}""#),
            );
        }
        t += 1_000_000_000;
        for d in 0..drains {
            line(
                &mut text,
                t + d as u64,
                format!(
                    r#""process":{},"type":"invoke","f":"drain","value":null,"node":"n{}""#,
                    10_000 + d,
                    d % 3 + 1
                ),
            );
        }
        for d in 0..drains {
            let list: Vec<String> = stream
                .iter()
                .filter(|(w, n, _)| !skip.contains(&(*w, *n)))
                .map(|(w, n, seq)| format!(r#"{{"writer":{w},"n":{n},"seq":{seq}}}"#))
                .collect();
            line(
                &mut text,
                t + 500_000_000 + d as u64,
                format!(
                    r#""process":{},"type":"ok","f":"drain","value":[{}],"node":"n{}""#,
                    10_000 + d,
                    list.join(","),
                    d % 3 + 1
                ),
            );
        }
        (text, acked)
    }

    #[test]
    fn a_generated_100k_publish_history_checks_fast_and_finds_exactly_what_was_removed() {
        let seed = 20_260_611;
        let (publishes, drains) = (100_000, 5);
        eprintln!(
            "queue checker, generated history: seed {seed}, {publishes} publishes, {drains} drains"
        );
        let (text, acked) = generated(seed, publishes, drains, &HashSet::new());
        let h = parse(&text);
        let r = check(&h);
        eprintln!(
            "valid history: {} acknowledged, {} read, {} recovered, checked in {:.1} ms",
            r.counts.acknowledged, r.counts.read, r.counts.recovered, r.elapsed_ms
        );
        assert_eq!(
            r.valid,
            Validity::Valid,
            "{:?} {:?}",
            r.counts,
            r.examples.lost.first()
        );
        assert_eq!(r.counts.attempted, publishes);
        assert_eq!(r.counts.acknowledged, acked.len());
        assert_eq!(r.counts.read, acked.len() + r.counts.recovered);
        assert_eq!(
            r.counts.failed + r.counts.indeterminate + r.counts.acknowledged,
            publishes
        );
        assert_eq!(
            (r.counts.drains, r.counts.lost, r.counts.inconsistent_drains),
            (drains, 0, 0)
        );
        assert_eq!(r.writers.len(), 10);
        assert!(r.elapsed_ms < 1_000.0, "{} ms", r.elapsed_ms);

        // Ten acknowledged values taken out of every drain: exactly those ten are lost.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let mut removed = HashSet::new();
        while removed.len() < 10 {
            removed.insert(acked[rng.random_range(0..acked.len())]);
        }
        let (text, _) = generated(seed, publishes, drains, &removed);
        let r = check(&parse(&text));
        eprintln!("with 10 values removed: checked in {:.1} ms", r.elapsed_ms);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counts.lost, 10);
        assert_eq!(
            r.counts.lost_prefix + r.counts.lost_middle + r.counts.lost_postfix,
            10
        );
        let found: HashSet<(u64, u64)> = r.examples.lost.iter().map(|x| (x.writer, x.n)).collect();
        assert_eq!(found, removed);
        assert_eq!(r.writers.iter().map(|w| w.lost).sum::<usize>(), 10);
        assert!(r.drains.iter().all(|d| d.missing == 10));
        assert_eq!(r.counts.inconsistent_drains, 0, "all drains agree");
        assert!(r.first_violation_ns.is_some());
        assert!(r.elapsed_ms < 1_000.0, "{} ms", r.elapsed_ms);
    }

    #[test]
    fn ranges_are_compact() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[17, 18, 19, 20, 21, 22, 23, 40]), "17-23, 40");
        let every_other: Vec<u64> = (0..120).map(|i| i * 2).collect();
        let r = ranges(&every_other);
        assert!(r.ends_with(", ... (70 more ranges)"), "{r}");
    }
}
