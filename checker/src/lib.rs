//! Faultline's checker: reads histories and judges them.
//!
//! Layout:
//! - [`history`]: ops as recorded, paired into operations, validated.
//! - `format`: readers for Faultline's `history.jsonl` and Jepsen's EDN ([`read_history`]).
//! - [`model`]: sequential specifications (CAS register, kv, list-append, mutex,
//!   multi-register) behind the small [`Model`] trait.
//! - [`compact`]: a history as fixed-size records with interned values, built from a
//!   [`History`] or streamed from a JSONL file ([`read_compact`]), for the linearizability
//!   checker.
//! - `linearizable`: the memoized, partitioned Wing-Gong/Lowe search ([`check`]).
//! - `counterexample`: what an `invalid` verdict shows, as JSON and SVG ([`Counterexample`]).
//! - `stats`: counts per function, outcome and key ([`stats()`]).
//! - [`perf`]: latency per op, latency quantiles per window, throughput per second ([`Perf`]).
//! - [`availability`]: nemesis intervals, availability per second, recovery after faults,
//!   the leader timeline.
//! - [`watch`]: etcd's watch guarantees (ordered, unique, reliable, atomic, resumable,
//!   bookmarkable) and agreement with the writes, over the watch recorder's lines
//!   ([`check_watch`]).
//! - `lease`: leases kept alive are not revoked early, nor their keys lost ([`check_lease`]).
//! - `queue`: every acknowledged publish to a stream comes out of the final drains, and nothing
//!   unpublished or definitely failed does (Jepsen's NATS queue checker, [`check_queue`]).
//! - [`jepsen`]: Jepsen's bank, counter, set, set-full and long-fork checkers
//!   ([`check_bank`], [`check_counter`], [`check_set`], [`check_set_full`],
//!   [`check_long_fork`]).
//! - [`txn`]: transactional isolation as Elle checks it (list-append and rw-register histories:
//!   dependency graph, cycles, named anomalies, the consistency models they rule out,
//!   [`check_txn`]).
//! - [`plot`]: the report's SVG plots (plotters), nemesis intervals shaded.
//! - [`report`]: `report.html`, the results index and `compare.html`, self-contained HTML.
//!
//! What `faultline run` calls:
//! ```no_run
//! let history = faultline_checker::read_history("results/x/history.jsonl".as_ref())?;
//! let result = faultline_checker::check(&history, &faultline_checker::CheckOptions::default())?;
//! if let Some(c) = result.counterexample() { std::fs::write("counterexample.svg", &c.svg)?; }
//! let results = faultline_checker::Results::new(result, faultline_checker::stats(&history));
//! std::fs::write("results.json", serde_json::to_string_pretty(&results)?)?;
//! std::process::exit(results.valid.exit_code());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Or, letting the history's content pick the checker (watch lines: the watch checker; drains:
//! the queue checker; lease grants: the lease checker; otherwise linearizability):
//! ```no_run
//! let history = faultline_checker::read_history("results/x/history.jsonl".as_ref())?;
//! let results = faultline_checker::check_history(&history, &Default::default())?;
//! std::process::exit(results.valid.exit_code());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod availability;
pub mod compact;
mod counterexample;
mod error;
mod format;
pub mod history;
pub mod jepsen;
mod lease;
mod linearizable;
pub mod membership;
pub mod model;
pub mod perf;
pub mod plot;
mod queue;
pub mod report;
mod stats;
pub mod txn;
pub mod watch;

pub use availability::{StatusSample, parse_status};
pub use compact::{COp, Compact, read_compact, read_compact_while};
pub use counterexample::{Counterexample, OpSummary};
pub use error::Error;
pub use format::{
    is_edn_file, parse_edn, parse_edn_value, parse_history, parse_jsonl, read_history,
};
pub use history::{History, Op, OpType, Operation, Outcome, Process};
pub use jepsen::Finding;
pub use jepsen::bank::{BankCounts, BankOptions, BankResult, BankTotal, check_bank};
pub use jepsen::counter::{
    CounterCounts, CounterOptions, CounterRead, CounterResult, check_counter,
};
pub use jepsen::long_fork::{
    LongFork, LongForkCounts, LongForkOptions, LongForkResult, check_long_fork,
};
pub use jepsen::set::{
    SetCounts, SetFullCounts, SetFullOptions, SetFullResult, SetOptions, SetResult, StaleElement,
    check_set, check_set_full,
};
pub use lease::{
    LeaseCounts, LeaseOpView, LeaseOptions, LeaseResult, LeaseViolation, LeaseViolationKind,
    check_lease,
};
pub use linearizable::{
    CheckOptions, CheckResult, FailReading, KeyResult, OBSERVING_ERRORS, check, check_compact,
    check_with,
};
pub use model::{Model, ModelKind};
pub use perf::Perf;
pub use queue::{
    LostPart, QueueCounts, QueueDrain, QueueExample, QueueExamples, QueueOptions, QueuePublish,
    QueueResult, QueueWriter, check_queue,
};
pub use stats::{Counts, Stats, stats};
pub use txn::{
    AnomalyExample, ConsistencyModel, CycleStep, TxnCounts, TxnJsonl, TxnKind, TxnOptions,
    TxnResult, TxnView, check_txn, check_txn_jsonl, is_elle_txn_history,
};
pub use watch::{Guarantee, WatchResult, WatchViolation, check_watch};

use serde::{Deserialize, Serialize};

/// Sets glibc's malloc up for a process that checks large histories; call it once, first thing
/// in `main` (it changes the whole process; a library never calls it by itself).
///
/// The search allocates and frees a memo table and its lists per key, on every thread. With
/// glibc's defaults, tables over 128 KiB are `mmap`ed and unmapped each time and freed heap
/// tops are trimmed, so the kernel zeroes fresh pages again and again and the threads queue on
/// the process's memory map lock: measured on 1,000,000 operations over 1,000 keys (2 cores),
/// 1.2 s with the defaults against 0.8 s with these settings (`bench-check gen:1000000`).
/// Elsewhere than glibc, it does nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's thresholds; it is called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// A checker's verdict. Ordered `Valid < Unknown < Invalid`, so the verdict of several checkers
/// (or keys) is their `max()`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    /// The property holds.
    #[default]
    Valid,
    /// The checker could not decide (budget exhausted, or not enough information).
    Unknown,
    /// The property is violated.
    Invalid,
}

impl Validity {
    /// `valid`, `unknown` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Unknown => "unknown",
            Validity::Invalid => "invalid",
        }
    }

    /// The exit code `faultline` uses: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

impl std::fmt::Display for Validity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run's `results.json` holds: the overall verdict, the result of each checker that ran
/// (absent ones are left out of the JSON) and the stats. `valid` is the worst verdict of the
/// checkers present (stats are informational).
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The overall verdict.
    pub valid: Validity,
    /// The linearizability check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linearizable: Option<CheckResult>,
    /// The watch guarantees check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchResult>,
    /// The lease check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseResult>,
    /// The queue check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueResult>,
    /// The bank check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank: Option<BankResult>,
    /// The set check (Jepsen's `set`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<SetResult>,
    /// The set-full check (Jepsen's `set-full`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_full: Option<SetFullResult>,
    /// The counter check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<CounterResult>,
    /// The long-fork check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_fork: Option<LongForkResult>,
    /// The transactional isolation check (Elle's list-append and rw-register).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnResult>,
    /// The membership check (runs with membership changes): the cluster's voters against the
    /// acknowledged changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<membership::MembershipResult>,
    /// Outcome counts.
    pub stats: Stats,
}

impl Results {
    /// Bundles a linearizability result with the history's stats.
    pub fn new(linearizable: CheckResult, stats: Stats) -> Results {
        Results::bundle(Some(linearizable), None, None, None, stats)
    }

    /// Bundles a watch result with the history's stats.
    pub fn from_watch(watch: WatchResult, stats: Stats) -> Results {
        Results::bundle(None, Some(watch), None, None, stats)
    }

    /// Bundles a lease result with the history's stats.
    pub fn from_lease(lease: LeaseResult, stats: Stats) -> Results {
        Results::bundle(None, None, Some(lease), None, stats)
    }

    /// Bundles a queue result with the history's stats.
    pub fn from_queue(queue: QueueResult, stats: Stats) -> Results {
        Results::bundle(None, None, None, Some(queue), stats)
    }

    /// Bundles a transactional isolation result with the history's stats.
    pub fn from_txn(txn: TxnResult, stats: Stats) -> Results {
        let mut r = Results::bundle(None, None, None, None, stats);
        r.valid = txn.valid;
        r.txn = Some(txn);
        r
    }

    /// Bundles a bank result with the history's stats.
    pub fn from_bank(bank: BankResult, stats: Stats) -> Results {
        let mut r = Results::bundle(None, None, None, None, stats);
        r.bank = Some(bank);
        r.with_jepsen_verdicts()
    }

    /// Bundles a set result with the history's stats.
    pub fn from_set(set: SetResult, stats: Stats) -> Results {
        let mut r = Results::bundle(None, None, None, None, stats);
        r.set = Some(set);
        r.with_jepsen_verdicts()
    }

    /// Bundles a set-full result with the history's stats.
    pub fn from_set_full(set_full: SetFullResult, stats: Stats) -> Results {
        let mut r = Results::bundle(None, None, None, None, stats);
        r.set_full = Some(set_full);
        r.with_jepsen_verdicts()
    }

    /// Bundles a counter result with the history's stats.
    pub fn from_counter(counter: CounterResult, stats: Stats) -> Results {
        let mut r = Results::bundle(None, None, None, None, stats);
        r.counter = Some(counter);
        r.with_jepsen_verdicts()
    }

    /// Bundles a long-fork result with the history's stats.
    pub fn from_long_fork(long_fork: LongForkResult, stats: Stats) -> Results {
        let mut r = Results::bundle(None, None, None, None, stats);
        r.long_fork = Some(long_fork);
        r.with_jepsen_verdicts()
    }

    /// Folds the verdicts of the Jepsen checkers present into `valid` (the worst of all; a
    /// bundle of none of the others is `unknown` only for want of any checker).
    fn with_jepsen_verdicts(mut self) -> Results {
        let jepsen = [
            self.bank.as_ref().map(|r| r.valid),
            self.set.as_ref().map(|r| r.valid),
            self.set_full.as_ref().map(|r| r.valid),
            self.counter.as_ref().map(|r| r.valid),
            self.long_fork.as_ref().map(|r| r.valid),
        ]
        .into_iter()
        .flatten()
        .max();
        let others = [
            self.linearizable.as_ref().map(|r| r.valid),
            self.watch.as_ref().map(|r| r.valid),
            self.lease.as_ref().map(|r| r.valid),
            self.queue.as_ref().map(|r| r.valid),
            self.txn.as_ref().map(|r| r.valid),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(j) = jepsen {
            self.valid = others.map_or(j, |o| o.max(j));
        }
        self
    }

    /// One line per anomaly family found, for terminals and the matrix: the counterexample's
    /// message, or per broken watch guarantee (or lease violation kind) its count and the first
    /// violation's message with its watcher and member, or per kind of queue violation (lost,
    /// unexpected, failed-but-read, duplicated when exactly once) its count and first value.
    /// Empty when nothing was found.
    pub fn anomaly_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = self.linearizable.as_ref().and_then(|l| l.counterexample()) {
            out.push(c.message.clone());
        }
        if let Some(w) = &self.watch {
            for g in w.guarantees.iter().filter(|g| g.violations > 0) {
                let first = w.violations.iter().find(|v| v.guarantee == g.name);
                let detail = first.map_or(String::new(), |v| {
                    format!(
                        "; first: {} (watcher {} on {}, stream {}, {:.2} s)",
                        v.message,
                        v.watcher,
                        v.member.as_deref().unwrap_or("?"),
                        v.stream,
                        v.time.unwrap_or(0) as f64 / 1e9
                    )
                });
                out.push(format!(
                    "watch {}: {} violation{}{detail}",
                    g.name.name(),
                    g.violations,
                    if g.violations == 1 { "" } else { "s" }
                ));
            }
        }
        if let Some(l) = &self.lease {
            for (kind, n) in l.violation_counts.iter().filter(|(_, n)| **n > 0) {
                let first = l.violations.iter().find(|v| v.kind == *kind);
                let detail = first.map_or(String::new(), |v| {
                    format!("; first: {} ({:.2} s)", v.message, v.time as f64 / 1e9)
                });
                out.push(format!(
                    "lease {}: {n} violation{}{detail}",
                    kind.name(),
                    if *n == 1 { "" } else { "s" }
                ));
            }
        }
        if let Some(q) = &self.queue {
            out.extend(q.anomaly_lines());
        }
        if let Some(t) = &self.txn {
            out.extend(t.anomaly_lines());
        }
        if let Some(b) = &self.bank {
            out.extend(b.anomaly_lines());
        }
        if let Some(x) = &self.set {
            out.extend(x.anomaly_lines());
        }
        if let Some(x) = &self.set_full {
            out.extend(x.anomaly_lines());
        }
        if let Some(c) = &self.counter {
            out.extend(c.anomaly_lines());
        }
        if let Some(l) = &self.long_fork {
            out.extend(l.anomaly_lines());
        }
        out
    }

    fn bundle(
        linearizable: Option<CheckResult>,
        watch: Option<WatchResult>,
        lease: Option<LeaseResult>,
        queue: Option<QueueResult>,
        stats: Stats,
    ) -> Results {
        let valid = [
            linearizable.as_ref().map(|r| r.valid),
            watch.as_ref().map(|r| r.valid),
            lease.as_ref().map(|r| r.valid),
            queue.as_ref().map(|r| r.valid),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Validity::Unknown);
        Results {
            valid,
            linearizable,
            watch,
            lease,
            queue,
            bank: None,
            set: None,
            set_full: None,
            counter: None,
            long_fork: None,
            txn: None,
            membership: None,
            stats,
        }
    }

    /// Adds the membership check of a run with membership changes: its contradiction makes the
    /// whole verdict invalid.
    fn with_membership(self, history: &History) -> Results {
        match membership::check_membership(history) {
            Some(m) => self.set_membership(m),
            None => self,
        }
    }

    /// Adds the voters the status polls saw during the run (`status.jsonl`) to the membership
    /// check ([`membership::check_observed`]); one no prefix of the changes explains makes the
    /// whole verdict invalid. Nothing changes for a run without membership changes.
    pub fn with_status(mut self, history: &History, samples: &[StatusSample]) -> Results {
        match self.membership.take() {
            Some(m) => {
                let observed = membership::check_observed(history, samples, 5);
                self.set_membership(m.with_observed(observed))
            }
            None => self,
        }
    }

    /// The membership check's result, whose contradiction makes the whole verdict invalid.
    fn set_membership(mut self, m: membership::MembershipResult) -> Results {
        if m.valid == Validity::Invalid {
            self.valid = Validity::Invalid;
        }
        self.membership = Some(m);
        self
    }
}

/// Checks a history with the checker its content calls for: any watch line (`"process":"watch"`)
/// means the watch checker ([`check_watch`]); otherwise any client `drain` means the queue
/// checker ([`check_queue`], default options: duplicates allowed); otherwise any `lease-grant`
/// means the lease checker ([`check_lease`], default options); otherwise a client `txn` op with
/// Elle's micro-ops (`append`, `r`, `w`) means the transactional checker ([`check_txn`], the
/// model `opts.txn_model`, default strict serializable); otherwise a `transfer` means the
/// bank checker, `read`s of micro-ops the long-fork checker and `add`s the set or counter
/// checker (Jepsen's, default options; see `check_jepsen_workload` for the exact rules);
/// otherwise linearizability ([`check`] with `opts`).
///
/// # Errors
/// As [`check`], when linearizability is checked.
pub fn check_history(history: &History, opts: &CheckOptions) -> Result<Results, Error> {
    let stats = stats(history);
    if history.watch_ops().next().is_some() {
        return Ok(Results::from_watch(check_watch(history), stats));
    }
    if history
        .operations
        .iter()
        .any(|o| history.invocation(o).f == "drain")
    {
        let queue = check_queue(history, &QueueOptions::default());
        return Ok(Results::from_queue(queue, stats).with_membership(history));
    }
    if history.ops.iter().any(|o| o.f == "lease-grant") {
        let lease = check_lease(history, &LeaseOptions::default());
        return Ok(Results::from_lease(lease, stats));
    }
    if txn::is_elle_txn_history(history) {
        let txn_opts = TxnOptions {
            model: opts.txn_model.unwrap_or_default(),
            search: opts.txn_search,
            ..TxnOptions::default()
        };
        let results = Results::from_txn(check_txn(history, &txn_opts), stats);
        return Ok(results.with_membership(history));
    }
    if let Some(results) = check_jepsen_workload(history, &stats) {
        return Ok(results.with_membership(history));
    }
    Ok(Results::new(check(history, opts)?, stats).with_membership(history))
}

/// The Jepsen workload checker a history's content calls for, with default options, or `None`
/// (then linearizability, the default, is checked). Functions of client operations decide:
///
/// - any `transfer`: the bank checker;
/// - only `read` and `write`, some `read` holding `["r", k, v]` micro-ops: long-fork;
/// - only `add` and `read`, with some `add`: the set checker (Jepsen's `set`: acknowledged adds
///   must all be in the final read) when some `ok` read returned a list, else the counter
///   checker when every `add` and `ok` read value is an integer (counter histories without
///   reads included), else the set checker (which answers `unknown`: never read).
///   `set-full` is never picked by content: ask for it (`faultline check --model set-full`).
///
/// Register (`read`/`write`/`cas`), queue (`drain`), lease (`lease-grant`) and transaction
/// (`txn`) histories match none of these.
fn check_jepsen_workload(history: &History, stats: &Stats) -> Option<Results> {
    let fs: std::collections::BTreeSet<&str> = history
        .operations
        .iter()
        .map(|o| history.invocation(o).f.as_str())
        .collect();
    let stats = stats.clone();
    if fs.contains("transfer") {
        let bank = check_bank(history, &BankOptions::default());
        return Some(Results::from_bank(bank, stats));
    }
    if jepsen::long_fork::is_long_fork_history(history) {
        let r = check_long_fork(history, &LongForkOptions::default());
        return Some(Results::from_long_fork(r, stats));
    }
    if !fs.contains("add") || fs.iter().any(|f| *f != "add" && *f != "read") {
        return None;
    }
    let ok_values = |f: &'static str| {
        history
            .operations
            .iter()
            .filter(move |o| o.outcome == Outcome::Ok && history.invocation(o).f == f)
            .filter_map(|o| history.completion(o))
            .map(|c| &c.value)
    };
    let read_a_list = ok_values("read").any(serde_json::Value::is_array);
    let numeric = history
        .operations
        .iter()
        .filter(|o| history.invocation(o).f == "add")
        .all(|o| history.invocation(o).value.is_i64())
        && ok_values("read").all(serde_json::Value::is_i64);
    if !read_a_list && numeric {
        let r = check_counter(history, &CounterOptions::default());
        return Some(Results::from_counter(r, stats));
    }
    let r = check_set(history, &SetOptions::default());
    Some(Results::from_set(r, stats))
}

#[cfg(test)]
mod tests {
    use super::Validity::*;

    #[test]
    fn validity_composes_by_max() {
        assert_eq!([Valid, Unknown, Valid].into_iter().max(), Some(Unknown));
        assert_eq!([Unknown, Invalid, Valid].into_iter().max(), Some(Invalid));
        assert!(Valid < Unknown && Unknown < Invalid);
    }

    fn history(lines: &[&str]) -> crate::History {
        crate::parse_history(&(lines.join("\n") + "\n"), false).unwrap()
    }

    #[test]
    fn check_history_picks_the_checker_by_content() {
        let put = [
            r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"put","key":"/k","value":{"value":1}}"#,
            r#"{"index":1,"time":2,"process":1,"type":"ok","f":"put","key":"/k","value":{"value":1,"revision":5}}"#,
        ];
        let opts = crate::CheckOptions::default();

        let r = crate::check_history(&history(&put), &opts).unwrap();
        assert!(r.linearizable.is_some() && r.watch.is_none() && r.lease.is_none());
        assert!(r.queue.is_none());
        assert_eq!(r.valid, Valid);

        let mut watched = put.to_vec();
        watched.push(r#"{"index":2,"time":3,"process":"watch","type":"info","f":"watch-events","node":"n1","value":{"watcher":"w1","stream":1,"revision":5,"events":[{"type":"put","key":"/k","value":1,"mod-revision":5}]}}"#);
        let r = crate::check_history(&history(&watched), &opts).unwrap();
        assert!(r.linearizable.is_none() && r.lease.is_none());
        assert_eq!(r.watch.as_ref().unwrap().counts.events, 1);
        assert_eq!(r.valid, Valid);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("linearizable").is_none() && json.get("lease").is_none());
        assert!(json.get("queue").is_none());
        assert_eq!(json["watch"]["valid"], "valid");
        assert_eq!(json["stats"]["watch_ops"], 1);

        let leased = [
            r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"lease-grant","value":{"ttl":5}}"#,
            r#"{"index":1,"time":2,"process":1,"type":"ok","f":"lease-grant","value":{"lease":7,"ttl":5}}"#,
        ];
        let r = crate::check_history(&history(&leased), &opts).unwrap();
        assert!(r.linearizable.is_none() && r.watch.is_none());
        assert_eq!(r.lease.as_ref().unwrap().counts.grants, 1);
        assert_eq!(r.valid, Valid);
    }

    #[test]
    fn the_overall_verdict_is_the_worst_present() {
        let h = history(&[
            r#"{"index":0,"time":1,"process":"watch","type":"info","f":"watch-open","value":{"watcher":"w1","stream":1,"from":"now","start-revision":0}}"#,
        ]);
        let r = crate::Results::from_watch(crate::check_watch(&h), crate::stats(&h));
        assert_eq!(
            r.valid, Unknown,
            "a watch that received nothing decides nothing"
        );
    }
}
