//! Linearizability: the Wing-Gong / Lowe just-in-time search, memoized and partitioned.
//!
//! The history of one partition becomes a doubly linked list of call and return entries in
//! history order. The search walks the list from its head: at a call entry it tries to apply
//! the operation to the current model state; if that works and the pair (set of linearized
//! operations, new state) has not been seen before, it *lifts* the operation (unlinks both of
//! its entries), pushes it, and starts again from the head. Reaching a return entry means an
//! operation that has already returned was not linearized: the search pops the last choice
//! (*unlifts* it) and tries the next call entry after it. This is Lowe's refinement of Wing and
//! Gong's algorithm ("Testing for linearizability", 2017), with the memo of Porcupine.
//!
//! - `info` operations have no return entry: they may take effect at any point after their
//!   invocation, or never. The search succeeds as soon as every `ok` operation is linearized.
//! - A `fail` operation is read as [`FailReading`] says: one whose reason is a precondition that
//!   did not hold (`cas-mismatch`) took effect as a "no" between its call and its return (the
//!   register did not hold `from`: [`Model::encode_failed`]); any other never took effect and
//!   is dropped before the search.
//! - P-compositionality (Herlihy & Wing): a history is linearizable iff each key's
//!   sub-history is, so keys are checked separately and in parallel (rayon).
//! - The linearized set is a bitset hashed incrementally (Zobrist: XOR of one random word per
//!   operation); the memo is an open-addressing table over an arena of bitsets and states.
//! - Budgets: a deadline and a memo size limit (shared by the partitions running at once)
//!   turn a blow-up into `unknown` with a reason; the search never hangs or exhausts memory.
//! - Read-only operations (reads, gets) commute with everything around them: when one is
//!   possible in a new configuration it is linearized at once and no alternative is tried there
//!   (if that fails, so does the configuration). This cuts the search by an order of magnitude
//!   on register histories with many concurrent writes.
//! - Models may prune ([`Model::may_reach`]): after a state change, the pending operations
//!   nearest the head of the list that must still be linearized, with no resetting operation
//!   able to come before them, must remain reachable (kv: a get must see an extension of the
//!   current string unless a put may intervene). This cuts kv searches by 10-100x.
//! - Keys are searched in rounds of growing configuration budgets, smallest keys first in each
//!   round; a key that needs more resumes where it stopped in the next round. So a cheap
//!   violation on one key is found (and, with `stop_on_invalid`, ends the check) before a hard
//!   key is searched to the end.
//! - The history is read in compact form ([`Compact`]: a fixed-size record per operation,
//!   values interned), from a [`History`] or streamed from a file ([`crate::read_compact`]).
//!
//! This module must never read files or print: it is called from the harness and from tests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::compact::{COp, Compact};
use crate::counterexample::{Counterexample, OpSummary};
use crate::history::{History, Outcome};
use crate::model::{
    Call, CasRegister, Interner, KvModel, ListAppend, Model, ModelKind, MultiRegister, Mutex, mix64,
};
use crate::{Error, Validity};

/// How to check a history.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The model; `None` infers it from the functions used ([`ModelKind::infer`]).
    pub model: Option<ModelKind>,
    /// Check each key separately (default). Only the kv model can also check all keys in one
    /// state (`false`); the others always partition by key.
    pub partition: bool,
    /// Give up with `unknown` after this long.
    pub time_limit: Option<Duration>,
    /// Give up with `unknown` when the memo of the searches running at once would exceed this
    /// many bytes (default 1 GiB).
    pub memory_limit: usize,
    /// The model's initial state as JSON, for models that take one: the CAS register (a value)
    /// and the multi-register (an object of register names to values). `None`: all `nil`.
    pub initial: Option<Value>,
    /// Once a key is found not linearizable, stop checking the others (they report `unknown`).
    /// Keys are tried in rounds of growing budgets, so cheap violations are found before
    /// expensive keys are searched to the end. Without a counterexample the check ends at the
    /// first invalid key; with one, the other keys of that round are checked only up to its
    /// failing operation's return (invalid exactly when they failed earlier), so the
    /// counterexample is the history's earliest failure, and the check ends there.
    /// Default `true`.
    pub stop_on_invalid: bool,
    /// Worker threads for partitions: `None` uses rayon's global pool; `Some(1)` is sequential.
    pub threads: Option<usize>,
    /// The consistency model a transactional (Elle list-append or rw-register) history must
    /// satisfy when `check_history` picks the txn checker; `None`: strict serializable.
    pub txn_model: Option<crate::txn::ConsistencyModel>,
    /// A stronger model whose anomalies the txn checker also looks for and reports, without
    /// counting them against `txn_model` ([`crate::TxnOptions::search`]).
    pub txn_search: Option<crate::txn::ConsistencyModel>,
    /// How `fail` completions are read (default [`FailReading::Recorded`]).
    pub fail_reading: FailReading,
    /// Compute a counterexample for an invalid key (default `true`). Without, the check stops
    /// at the verdict.
    pub counterexample: bool,
}

/// How a `fail` completion is read by the linearizability checker.
///
/// A fail whose reason is a precondition that did not hold is an observation: a CAS refused
/// with `cas-mismatch` saw, at some point between its call and its return, a value other than
/// its `from`. Dropping it (Knossos) throws that away, and a node that refuses a CAS by
/// comparing against stale state goes unseen; reading every failed CAS so (Porcupine) is
/// wrong when a fail has another cause (no leader, refused before execution). Faultline's
/// clients record the cause (`error`), so by default the record decides; Jepsen's EDN
/// histories do not, and there the reading is a choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailReading {
    /// A fail whose recorded error is a failed precondition ([`OBSERVING_ERRORS`]) is an
    /// observation; any other fail, with another error or none, never happened. Never reads an
    /// observation the client did not record, so it cannot invent a violation.
    #[default]
    Recorded,
    /// Knossos's reading: a fail never happened, whatever its error.
    Knossos,
    /// Porcupine's reading: a failed CAS observed a mismatch unless its recorded error says
    /// otherwise (a fail with no error is read as `cas-mismatch`).
    Porcupine,
}

impl FailReading {
    /// Every reading, in the order the CLI lists them.
    pub const ALL: [FailReading; 3] = [
        FailReading::Recorded,
        FailReading::Knossos,
        FailReading::Porcupine,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            FailReading::Recorded => "recorded",
            FailReading::Knossos => "knossos",
            FailReading::Porcupine => "porcupine",
        }
    }

    /// Looks a reading up by its CLI name.
    ///
    /// # Errors
    /// A message naming the known readings.
    pub fn parse(name: &str) -> Result<FailReading, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                format!("unknown fail reading {name:?} (known: recorded, knossos, porcupine)")
            })
    }

    /// Whether a `fail` with this recorded error observed its precondition failing.
    pub fn observes(self, error: Option<&str>) -> bool {
        match (self, error) {
            (FailReading::Knossos, _) => false,
            (_, Some(e)) => OBSERVING_ERRORS.contains(&e),
            (FailReading::Recorded, None) => false,
            (FailReading::Porcupine, None) => true,
        }
    }
}

/// Errors of `fail` completions that mean the operation ran and its precondition did not hold
/// (the value it compared was not there).
pub const OBSERVING_ERRORS: &[&str] = &["cas-mismatch"];

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            model: None,
            partition: true,
            time_limit: None,
            memory_limit: 1 << 30,
            initial: None,
            stop_on_invalid: true,
            threads: None,
            txn_model: None,
            txn_search: None,
            fail_reading: FailReading::Recorded,
            counterexample: true,
        }
    }
}

/// The verdict on one partition (one key, or the whole history when it has no keys).
#[derive(Debug, Clone, Serialize)]
pub struct KeyResult {
    /// The key; `None` for a history without keys, or an unpartitioned check.
    pub key: Option<String>,
    /// The verdict.
    pub valid: Validity,
    /// Client operations checked (after dropping failed ones that observed nothing and
    /// unknown reads).
    pub ops: usize,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Memo entries (distinct configurations) the search visited.
    pub configurations: usize,
    /// Time spent on this key.
    pub elapsed_ms: f64,
    /// Present when `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
}

/// The linearizability verdict on a history, serialized as `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The verdict: the worst over all keys.
    pub valid: Validity,
    /// The model used.
    pub model: ModelKind,
    /// Whether keys were checked separately.
    pub partitioned: bool,
    /// Client operations in the history.
    pub ops: usize,
    /// How `fail` completions were read.
    pub fail_reading: FailReading,
    /// Failed operations checked as observations (a CAS refused with `cas-mismatch`); the
    /// other failed operations were dropped.
    pub observed_fails: usize,
    /// Why the verdict is `unknown`, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One result per key, in order of first appearance.
    pub keys: Vec<KeyResult>,
    /// Tolerated problems of the input (e.g. a truncated last line).
    pub warnings: Vec<String>,
    /// Wall-clock time of the check.
    pub elapsed_ms: f64,
}

impl CheckResult {
    /// The counterexample of the invalid key whose failing operation returns first in the
    /// history (the earliest point where the history stopped being linearizable), if any key
    /// is invalid.
    pub fn counterexample(&self) -> Option<&Counterexample> {
        self.keys
            .iter()
            .filter_map(|k| k.counterexample.as_ref())
            .min_by_key(|c| (c.op.failure_pos(), c.op.invoke_index))
    }

    /// Counts of keys per verdict: `(valid, unknown, invalid)`.
    pub fn key_counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for k in &self.keys {
            match k.valid {
                Validity::Valid => c.0 += 1,
                Validity::Unknown => c.1 += 1,
                Validity::Invalid => c.2 += 1,
            }
        }
        c
    }
}

/// Checks `history` for linearizability.
///
/// # Errors
/// [`Error::Model`] (naming the line) when an operation does not fit the model.
pub fn check(history: &History, opts: &CheckOptions) -> Result<CheckResult, Error> {
    check_compact(&Compact::from_history(history), opts)
}

/// Checks a history in compact form for linearizability (as [`check`]).
///
/// # Errors
/// As [`check`].
pub fn check_compact(history: &Compact, opts: &CheckOptions) -> Result<CheckResult, Error> {
    let kind = opts
        .model
        .unwrap_or_else(|| ModelKind::infer_fs(history.fs.names().iter().map(String::as_str)));
    let mut v = history.values.clone();
    let init = opts.initial.as_ref();
    match kind {
        ModelKind::CasRegister => {
            let m = CasRegister::with_initial(init.map_or(0, |i| v.intern(i)));
            run_check(&m, v, kind, history, opts, true)
        }
        ModelKind::Kv if opts.partition => {
            run_check(&KvModel::per_key(), v, kind, history, opts, true)
        }
        ModelKind::Kv => {
            let keys = history.ops.iter().map(|o| history.key(o).unwrap_or(""));
            run_check(&KvModel::all_keys(keys), v, kind, history, opts, false)
        }
        ModelKind::ListAppend => run_check(&ListAppend, v, kind, history, opts, true),
        ModelKind::Mutex => run_check(&Mutex, v, kind, history, opts, true),
        ModelKind::MultiRegister => {
            let mut regs = Vec::new();
            if let Some(Value::Object(m)) = init {
                for (k, x) in m {
                    regs.push((v.intern(&Value::String(k.clone())), v.intern(x)));
                }
            }
            let m = MultiRegister::with_initial(regs);
            run_check(&m, v, kind, history, opts, true)
        }
    }
}

/// Checks `history` against any [`Model`]; `partition` checks keys separately.
///
/// # Errors
/// As [`check`].
pub fn check_with<M: Model>(
    model: &M,
    kind: ModelKind,
    history: &History,
    opts: &CheckOptions,
    partition: bool,
) -> Result<CheckResult, Error> {
    let c = Compact::from_history(history);
    let values = c.values.clone();
    run_check(model, values, kind, &c, opts, partition)
}

fn run_check<M: Model>(
    model: &M,
    mut values: Interner,
    kind: ModelKind,
    history: &Compact,
    opts: &CheckOptions,
    partition: bool,
) -> Result<CheckResult, Error> {
    let start = Instant::now();
    let mut parts: Vec<Part<M::Op>> = Vec::new();
    // Part index by key id (+1; 0: no part yet); the last slot is for operations without a key.
    let mut by_key: Vec<u32> = vec![0; history.keys.names().len() + 1];
    let mut observed_fails = 0;
    for (id, o) in history.ops.iter().enumerate() {
        let slot = if partition && o.key != crate::compact::NONE {
            o.key as usize
        } else {
            by_key.len() - 1
        };
        if by_key[slot] == 0 {
            parts.push(Part {
                key: if partition {
                    history.key(o).map(str::to_string)
                } else {
                    None
                },
                ops: Vec::new(),
            });
            by_key[slot] = parts.len() as u32;
        }
        let pi = by_key[slot] as usize - 1;
        let observing = o.outcome == Outcome::Fail && opts.fail_reading.observes(history.error(o));
        if o.outcome == Outcome::Fail && !observing {
            continue;
        }
        if let Some(op) = encode(model, history, o, observing, &mut values)? {
            observed_fails += usize::from(observing);
            parts[pi].ops.push(Entry {
                op,
                call: o.call,
                ret: o.return_position().map(|r| r as u32),
                id: id as u32,
            });
        }
    }
    for part in &mut parts {
        let flags: Vec<(&M::Op, bool)> =
            part.ops.iter().map(|e| (&e.op, e.ret.is_none())).collect();
        let mut keep = model.unobservable(&flags).into_iter().map(|drop| !drop);
        part.ops.retain(|_| keep.next().unwrap_or(true));
    }
    let budget = Budget::new(
        opts.time_limit.map(|d| start + d),
        opts.memory_limit,
        Instant::now() + Duration::from_secs(2),
    );
    // Rounds of growing budgets, smallest keys first: a cheap violation is found before an
    // expensive key is searched to the end.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| parts[i].ops.len());
    let ctx = Ctx {
        model,
        parts: &parts,
        history,
        values: &values,
        budget: &budget,
        opts,
    };
    let mut pending: Vec<Slot<'_, M>> = order.iter().map(|&i| (i, None, None)).collect();
    let mut results: Vec<Slot<'_, M>> = Vec::with_capacity(parts.len());
    for (round, &limit) in ROUNDS.iter().enumerate() {
        let limit = if parts.len() > 1 && round + 1 < ROUNDS.len() {
            limit
        } else {
            usize::MAX
        };
        budget.suspended.store(0, Ordering::Relaxed);
        let (done, rest): (Vec<_>, Vec<_>) = ctx
            .map(std::mem::take(&mut pending), limit)
            .into_iter()
            .partition(|s| s.1.is_some());
        results.extend(done);
        pending = rest;
        // Once a key is invalid, the keys still over their budget are not searched further:
        // the counterexample is the earliest among the keys checked so far.
        let invalid = results
            .iter()
            .any(|s| s.1.as_ref().is_some_and(|r| r.valid == Validity::Invalid));
        if pending.is_empty() || (opts.stop_on_invalid && invalid) {
            results.append(&mut pending);
            break;
        }
    }
    let results: Vec<(usize, Option<KeyResult>)> =
        results.into_iter().map(|(i, r, _)| (i, r)).collect();
    let first_invalid = results
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .find(|r| r.valid == Validity::Invalid)
        .map(|r| r.key.clone().unwrap_or_default());
    let results = results.into_iter().map(|(i, r)| {
        let mut r = r.unwrap_or_else(|| cancelled(&parts[i]));
        if r.reason.as_deref() == Some("cancelled") {
            r.reason = Some(format!(
                "not checked to the end: key {:?} is already not linearizable",
                first_invalid.clone().unwrap_or_default()
            ));
        }
        (i, r)
    });
    let mut keys: Vec<Option<KeyResult>> = vec![None; parts.len()];
    for (i, r) in results {
        keys[i] = Some(r);
    }
    let keys: Vec<KeyResult> = keys.into_iter().flatten().collect();
    let valid = keys
        .iter()
        .map(|k| k.valid)
        .max()
        .unwrap_or(Validity::Valid);
    let reason = keys
        .iter()
        .find(|k| k.valid == Validity::Unknown)
        .and_then(|k| k.reason.clone());
    Ok(CheckResult {
        valid,
        model: kind,
        partitioned: partition,
        ops: history.ops.len(),
        fail_reading: opts.fail_reading,
        observed_fails,
        reason,
        keys,
        warnings: history.warnings.clone(),
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// Histories (or rounds) with fewer operations than this are checked on the calling thread.
const SEQUENTIAL_BELOW: usize = 2_000;

/// Most bytes of memo that searches waiting for the next round may hold together.
const SUSPENDED_BYTES: usize = 64 << 20;

/// The result of a key whose search was cancelled (another key is not linearizable).
fn cancelled<O>(p: &Part<O>) -> KeyResult {
    KeyResult {
        key: p.key.clone(),
        valid: Validity::Unknown,
        ops: p.ops.len(),
        reason: Some("cancelled".into()),
        configurations: 0,
        elapsed_ms: 0.0,
        counterexample: None,
    }
}

/// Configurations each key may visit by the end of each round; the last round has no limit.
const ROUNDS: [usize; 4] = [1_000, 20_000, 400_000, usize::MAX];

fn encode<M: Model>(
    model: &M,
    history: &Compact,
    o: &COp,
    observing: bool,
    values: &mut Interner,
) -> Result<Option<M::Op>, Error> {
    let output = match o.outcome {
        Outcome::Ok => Some(history.output(o).unwrap_or(&Value::Null)),
        _ => None,
    };
    let call = Call {
        f: history.f(o),
        key: history.key(o),
        input: history.values.value(o.input),
        output,
        outcome: o.outcome,
    };
    let encoded = if observing {
        model.encode_failed(&call, values)
    } else {
        model.encode(&call, values)
    };
    encoded.map_err(|message| Error::Model {
        file: None,
        line: if output.is_some() || observing {
            o.complete_line as usize
        } else {
            o.invoke_line as usize
        },
        message,
    })
}

struct Part<O> {
    key: Option<String>,
    ops: Vec<Entry<O>>,
}

/// One operation of a partition, ready for the search.
#[derive(Debug, Clone)]
pub(crate) struct Entry<O> {
    pub(crate) op: O,
    /// Position of the invocation in the history.
    pub(crate) call: u32,
    /// Position of the return; `None` for indeterminate operations.
    pub(crate) ret: Option<u32>,
    /// Index into [`Compact::ops`].
    pub(crate) id: u32,
}

pub(crate) struct Budget {
    pub(crate) deadline: Option<Instant>,
    pub(crate) memory_limit: usize,
    pub(crate) memory_used: AtomicUsize,
    pub(crate) cancelled: AtomicBool,
    /// After this, counterexamples get only a few milliseconds each to enumerate states.
    pub(crate) counterexample_deadline: Instant,
    /// Memo bytes of searches suspended until the next round (reset at each round).
    pub(crate) suspended: AtomicUsize,
    /// The history position of the earliest failing operation found so far (keys that begin
    /// after it are not searched when stopping at the first invalid key).
    pub(crate) first_failure: AtomicUsize,
}

impl Budget {
    fn new(
        deadline: Option<Instant>,
        memory_limit: usize,
        counterexample_deadline: Instant,
    ) -> Budget {
        Budget {
            deadline,
            memory_limit,
            memory_used: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            counterexample_deadline,
            suspended: AtomicUsize::new(0),
            first_failure: AtomicUsize::new(usize::MAX),
        }
    }

    #[cfg(test)]
    pub(crate) fn unlimited() -> Budget {
        Budget::new(None, usize::MAX, Instant::now())
    }
}

/// A key's index, its result once known, and its search while it is not.
type Slot<'a, M> = (usize, Option<KeyResult>, Option<Search<'a, M>>);

/// What every key's check shares.
struct Ctx<'a, M: Model> {
    model: &'a M,
    parts: &'a [Part<M::Op>],
    history: &'a Compact,
    values: &'a Interner,
    budget: &'a Budget,
    opts: &'a CheckOptions,
}

impl<'a, M: Model> Ctx<'a, M> {
    fn step(&self, (i, _, search): Slot<'a, M>, limit: usize) -> Slot<'a, M> {
        let p = &self.parts[i];
        // Once a key is invalid: for a verdict, nothing else is needed; for a counterexample,
        // only what happened before its failing operation's return may hold an earlier one.
        let first_call = p.ops.first().map_or(u32::MAX, |e| e.call) as usize;
        let failure = self.budget.first_failure.load(Ordering::Relaxed);
        if self.budget.cancelled.load(Ordering::Relaxed) || first_call >= failure {
            return (i, Some(cancelled(p)), None);
        }
        if failure != usize::MAX {
            let r = self.check_prefix(p, failure, limit);
            self.found(r.as_ref());
            return (i, Some(r.unwrap_or_else(|| cancelled(p))), None);
        }
        let mut search = search.unwrap_or_else(|| Search::new(self.model, &p.ops));
        let r = check_part(
            &mut search,
            self.history,
            self.values,
            p,
            self.budget,
            limit,
            self.opts.counterexample,
        );
        self.found(r.as_ref());
        // A key over its round's limit resumes in the next round; its memo stays meanwhile,
        // unless the suspended memos would exceed SUSPENDED_BYTES: then it starts over (the
        // rounds grow 20-fold, so starting over repeats at most a twentieth of the work).
        let keep = r.is_none().then_some(search).filter(|s| {
            let bytes = s.memo.len() * s.memo.bytes_per_entry();
            let before = self.budget.suspended.fetch_add(bytes, Ordering::Relaxed);
            before + bytes <= SUSPENDED_BYTES
        });
        (i, r, keep)
    }

    /// Records an invalid key: the earliest failure so far, or (without counterexamples) the
    /// end of the check.
    fn found(&self, r: Option<&KeyResult>) {
        if !self.opts.stop_on_invalid || r.is_none_or(|r| r.valid != Validity::Invalid) {
            return;
        }
        match r.and_then(|r| r.counterexample.as_ref()) {
            Some(c) => {
                self.budget
                    .first_failure
                    .fetch_min(c.op.failure_pos(), Ordering::Relaxed);
            }
            None => self.budget.cancelled.store(true, Ordering::Relaxed),
        }
    }

    /// Checks the part of a key's history before position `failure` (where another key's
    /// earliest failure returns): the operations invoked before it, those that return after it
    /// indeterminate. Invalid (with a counterexample) exactly when the key stops being
    /// linearizable before `failure`; `None` when it does not (or needs more than `limit`).
    fn check_prefix(&self, p: &Part<M::Op>, failure: usize, limit: usize) -> Option<KeyResult> {
        let cut = u32::try_from(failure).unwrap_or(u32::MAX);
        let prefix = Part {
            key: p.key.clone(),
            ops: before(&p.ops, cut).map(|(_, e)| e).collect(),
        };
        let mut search = Search::new(self.model, &prefix.ops);
        let r = check_part(
            &mut search,
            self.history,
            self.values,
            &prefix,
            self.budget,
            limit,
            true,
        )?;
        (r.valid == Validity::Invalid).then_some(KeyResult {
            ops: p.ops.len(),
            ..r
        })
    }

    fn map(&self, slots: Vec<Slot<'a, M>>, limit: usize) -> Vec<Slot<'a, M>> {
        // Starting the thread pool costs more than checking a small history.
        let ops: usize = slots.iter().map(|s| self.parts[s.0].ops.len()).sum();
        let threads = if slots.len() < 2 || ops < SEQUENTIAL_BELOW {
            Some(1)
        } else {
            self.opts.threads
        };
        match threads {
            Some(1) => slots.into_iter().map(|s| self.step(s, limit)).collect(),
            Some(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(pool) => {
                    pool.install(|| slots.into_par_iter().map(|s| self.step(s, limit)).collect())
                }
                Err(_) => slots.into_iter().map(|s| self.step(s, limit)).collect(),
            },
            None => slots.into_par_iter().map(|s| self.step(s, limit)).collect(),
        }
    }
}

/// Runs (or resumes) one key's search; `None` if it needs more than `limit` configurations.
fn check_part<M: Model>(
    search: &mut Search<'_, M>,
    history: &Compact,
    values: &Interner,
    p: &Part<M::Op>,
    budget: &Budget,
    limit: usize,
    with_counterexample: bool,
) -> Option<KeyResult> {
    let end = search.run(budget, None, limit);
    let mut r = KeyResult {
        key: p.key.clone(),
        valid: Validity::Valid,
        ops: p.ops.len(),
        reason: None,
        configurations: search.configurations(),
        elapsed_ms: 0.0,
        counterexample: None,
    };
    match end {
        End::OverLimit => return None,
        End::Linearizable => {}
        End::Aborted(reason) => {
            r.valid = Validity::Unknown;
            r.reason = Some(reason);
        }
        End::Exhausted { .. } if !with_counterexample => r.valid = Validity::Invalid,
        End::Exhausted { cut } => {
            r.valid = Validity::Invalid;
            let start = Instant::now();
            let model = search.model;
            r.counterexample = Some(counterexample(model, history, values, p, cut, budget));
            search.elapsed += start.elapsed();
        }
    }
    r.elapsed_ms = search.elapsed.as_secs_f64() * 1e3;
    Some(r)
}

/// The operations invoked before history position `cut`, with their index: those that return
/// at or after it as indeterminate (they may or may not have taken effect by then).
fn before<O: Clone>(ops: &[Entry<O>], cut: u32) -> impl Iterator<Item = (usize, Entry<O>)> + '_ {
    ops.iter()
        .enumerate()
        .filter(move |(_, e)| e.call < cut)
        .map(move |(i, e)| {
            let e = Entry {
                ret: e.ret.filter(|&r| r < cut),
                ..e.clone()
            };
            (i, e)
        })
}

/// Most states and configurations a counterexample search collects.
const MAX_STATES: usize = 32;

fn counterexample<M: Model>(
    model: &M,
    history: &Compact,
    values: &Interner,
    p: &Part<M::Op>,
    failing: usize,
    budget: &Budget,
) -> Counterexample {
    let f = &p.ops[failing];
    let f_ret = f.ret.unwrap_or(u32::MAX);
    // The prefix before the failing operation's return: operations that returned earlier must be
    // linearized; those still running then may or may not have taken effect.
    let prefix: Vec<Entry<M::Op>> = before(&p.ops, f_ret)
        .filter(|(i, _)| *i != failing)
        .map(|(_, e)| e)
        .collect();
    // Enumerating states is exponential in the worst case: bound it per key and overall.
    let now = Instant::now();
    let mut deadline = (now + Duration::from_millis(250)).min(budget.counterexample_deadline);
    if let Some(d) = budget.deadline {
        deadline = deadline.min(d);
    }
    let sub_budget = Budget::new(
        Some(deadline.max(now + Duration::from_millis(5))),
        64 << 20,
        deadline,
    );
    let mut collect = Collect {
        linearization: Vec::new(),
        found: false,
        states: Vec::new(),
        truncated: false,
    };
    let end = Search::new(model, &prefix).run(&sub_budget, Some(&mut collect), usize::MAX);
    let summarize =
        |e: &Entry<M::Op>| OpSummary::from_compact(history, &history.ops[e.id as usize]);
    let concurrent: Vec<OpSummary> = p
        .ops
        .iter()
        .enumerate()
        .filter(|(i, e)| *i != failing && e.call < f_ret && e.ret.is_none_or(|r| r > f.call))
        .map(|(_, e)| summarize(e))
        .collect();
    let linearization: Vec<OpSummary> = collect
        .linearization
        .iter()
        .map(|&i| summarize(&prefix[i as usize]))
        .collect();
    let states: Vec<Value> = collect
        .states
        .iter()
        .map(|s| model.describe(s, values))
        .collect();
    let complete = matches!(end, End::Exhausted { .. }) && !collect.truncated;
    Counterexample::new(
        p.key.clone(),
        summarize(f),
        concurrent,
        linearization,
        states,
        complete,
    )
}

struct Collect<S> {
    linearization: Vec<u32>,
    found: bool,
    states: Vec<S>,
    truncated: bool,
}

enum End {
    Linearizable,
    /// No linearization: `cut` is the operation whose return could not be passed.
    Exhausted {
        cut: usize,
    },
    Aborted(String),
    /// More than the allowed configurations.
    OverLimit,
}

/// The memo: the set of configurations (linearized bitset, state) seen, open addressing.
///
/// Exact (every bitset and state kept in an arena and compared on a hash match) for small
/// searches and for models whose state hash does not cover the state ([`Model::STRONG_HASH`]
/// false). Otherwise a configuration is kept as a 128-bit fingerprint: two independent Zobrist
/// hashes of the bitset, each mixed with its own hash of the state. A false "seen" (which could
/// only make a linearizable history look invalid) then needs two configurations of one search
/// with equal 128-bit fingerprints: below 10^-20 for 10^9 configurations. It saves the arena
/// (a 1,000-operation key's bitset is 128 bytes a configuration) and the comparisons.
struct Memo<S> {
    words: usize,
    exact: bool,
    count: usize,
    /// Exact: (hash | 1, entry) per slot. Fingerprint: (first half | 1, second half). A first
    /// word of 0 marks an empty slot.
    slots: Vec<(u64, u64)>,
    bits: Vec<u64>,
    states: Vec<S>,
}

type MemoBuffers = (Vec<(u64, u64)>, Vec<u64>);

/// Searches over more operations than this use fingerprints (when the model allows).
const EXACT_UP_TO: usize = 128;

thread_local! {
    /// Memo tables of finished searches, reused by the next search on this thread: allocating
    /// them afresh for every key made the kernel zero pages for a fifth of a check's time.
    static MEMO_POOL: std::cell::RefCell<Vec<MemoBuffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<S> Drop for Memo<S> {
    fn drop(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        let bits = std::mem::take(&mut self.bits);
        MEMO_POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < 2 {
                p.push((slots, bits));
            }
        });
    }
}

impl<S: Eq + Clone> Memo<S> {
    fn new(words: usize, exact: bool) -> Self {
        let (mut slots, mut bits) = MEMO_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        let n = slots.len().max(64);
        slots.clear();
        slots.resize(n, (0, 0));
        bits.clear();
        Memo {
            words,
            exact,
            count: 0,
            slots,
            bits,
            states: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn bytes_per_entry(&self) -> usize {
        if self.exact {
            self.words * 8 + std::mem::size_of::<S>() + 2 * 16
        } else {
            2 * 16
        }
    }

    /// Inserts; false if already present. `hash2` is used only by fingerprints.
    fn insert(&mut self, hash: u64, hash2: u64, bits: &[u64], state: &S) -> bool {
        let h = hash | 1;
        if (self.count + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut p = (h >> 7) as usize & mask;
        if !self.exact {
            loop {
                let (sh, s2) = self.slots[p];
                if sh == 0 {
                    self.slots[p] = (h, hash2);
                    self.count += 1;
                    return true;
                }
                if sh == h && s2 == hash2 {
                    return false;
                }
                p = (p + 1) & mask;
            }
        }
        loop {
            let (sh, e) = self.slots[p];
            if sh == 0 {
                self.slots[p] = (h, self.states.len() as u64);
                self.bits.extend_from_slice(bits);
                self.states.push(state.clone());
                self.count += 1;
                return true;
            }
            if sh == h {
                let e = e as usize;
                if self.states[e] == *state
                    && self.bits[e * self.words..(e + 1) * self.words] == *bits
                {
                    return false;
                }
            }
            p = (p + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let mut slots = vec![(0u64, 0u64); n];
        for &(h, e) in &self.slots {
            if h == 0 {
                continue;
            }
            let mut q = (h >> 7) as usize & (n - 1);
            while slots[q].0 != 0 {
                q = (q + 1) & (n - 1);
            }
            slots[q] = (h, e);
        }
        self.slots = slots;
    }
}

/// Whether indeterminate operations are tried after the required ones (list B) rather than in
/// history order with them. Measured on generated register histories (20 processes per key, 5%
/// `info`), history order explored 2.4x fewer configurations, so it is off; the machinery stays
/// because counterexample enumeration may want it.
const OPTIONAL_LAST: bool = false;

/// Lowe's search over one partition. In collect mode, it enumerates every configuration in
/// which all operations with a return are linearized, recording their states and the first
/// linearization, instead of stopping at the first.
///
/// Candidates at a configuration are tried in two passes: first the pending operations that
/// must be linearized (list A, which also holds their return entries), then the optional ones
/// (indeterminate operations, list B) invoked before the first pending return. Trying optional
/// operations last keeps the search from guessing when an `info` write took effect until an
/// observation needs it; the set of configurations explored is the same, only the order differs.
struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Entry<M::Op>],
    head: usize,
    tail: usize,
    next: Vec<u32>,
    prev: Vec<u32>,
    next_b: Vec<u32>,
    prev_b: Vec<u32>,
    in_b: Vec<bool>,
    zob: Vec<u64>,
    /// A second, independent Zobrist table and state hasher, for fingerprints.
    zob2: Vec<u64>,
    hasher: ahash::RandomState,
    hasher2: ahash::RandomState,
    zhash2: u64,
    bits: Vec<u64>,
    zhash: u64,
    memo: Memo<M::State>,
    state: M::State,
    /// (op, state before it, forced, the pass-B bound when it was chosen)
    stack: Vec<(u32, M::State, bool, usize)>,
    required: usize,
    /// (return position, op) of the latest return no configuration got past.
    max_cut: (usize, usize),
    cur: usize,
    pass_b: bool,
    fresh: bool,
    bound: usize,
    iters: u64,
    /// Memo bytes currently counted in the shared budget.
    accounted: usize,
    /// Time spent in `run` so far.
    elapsed: Duration,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [Entry<M::Op>]) -> Self {
        let n = ops.len();
        // Entries 2i (call) and 2i+1 (return of op i); sentinels HEAD = 2n and TAIL = 2n+1 in
        // both lists. List A (next/prev): required operations' calls and returns in history
        // order. List B (next_b/prev_b): optional operations' calls, if OPTIONAL_LAST.
        let head = 2 * n;
        let tail = 2 * n + 1;
        let in_b: Vec<bool> = ops
            .iter()
            .map(|e| e.ret.is_none() && OPTIONAL_LAST)
            .collect();
        let mut next = vec![0u32; 2 * n + 2];
        let mut prev = vec![0u32; 2 * n + 2];
        let mut next_b = vec![0u32; 2 * n + 2];
        let mut prev_b = vec![0u32; 2 * n + 2];
        let mut events: Vec<(u32, usize)> = Vec::with_capacity(2 * n);
        let mut optional: Vec<(u32, usize)> = Vec::new();
        for (i, e) in ops.iter().enumerate() {
            match e.ret {
                Some(r) => {
                    events.push((e.call, 2 * i));
                    events.push((r, 2 * i + 1));
                }
                None if in_b[i] => optional.push((e.call, 2 * i)),
                None => events.push((e.call, 2 * i)),
            }
        }
        for (list, next, prev) in [
            (&mut events, &mut next, &mut prev),
            (&mut optional, &mut next_b, &mut prev_b),
        ] {
            list.sort_unstable();
            let mut last = head;
            for &(_, e) in list.iter() {
                next[last] = e as u32;
                prev[e] = last as u32;
                last = e;
            }
            next[last] = tail as u32;
            prev[tail] = last as u32;
        }
        let words = n.div_ceil(64).max(1);
        Search {
            model,
            ops,
            head,
            tail,
            cur: next[head] as usize,
            next,
            prev,
            next_b,
            prev_b,
            in_b,
            zob: (0..n as u64)
                .map(|i| mix64(i ^ 0x2545_f491_4f6c_dd1d))
                .collect(),
            zob2: (0..n as u64)
                .map(|i| mix64(i ^ 0x9e6c_63d0_676a_9a99).rotate_left(17) ^ 0x5851_f42d_4c95_7f2d)
                .collect(),
            hasher: ahash::RandomState::with_seeds(7, 11, 13, 17),
            hasher2: ahash::RandomState::with_seeds(19, 23, 29, 31),
            zhash2: 0,
            bits: vec![0u64; words],
            zhash: 0,
            memo: Memo::new(words, n <= EXACT_UP_TO || !M::STRONG_HASH),
            state: model.init(),
            stack: Vec::new(),
            required: ops.iter().filter(|e| e.ret.is_some()).count(),
            max_cut: (0, 0),
            pass_b: false,
            fresh: true,
            bound: usize::MAX,
            iters: 0,
            accounted: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn configurations(&self) -> usize {
        self.memo.len()
    }

    /// Runs (or resumes) the search until it ends or visits more than `max_configurations`
    /// configurations ([`End::OverLimit`]; calling `run` again continues where it stopped).
    fn run(
        &mut self,
        budget: &Budget,
        collect: Option<&mut Collect<M::State>>,
        max_configurations: usize,
    ) -> End {
        let start = Instant::now();
        let end = self.run_inner(budget, collect, max_configurations);
        budget
            .memory_used
            .fetch_sub(self.accounted, Ordering::Relaxed);
        self.accounted = 0;
        self.elapsed += start.elapsed();
        end
    }

    fn run_inner(
        &mut self,
        budget: &Budget,
        mut collect: Option<&mut Collect<M::State>>,
        max_configurations: usize,
    ) -> End {
        let Search {
            model,
            ops,
            head,
            tail,
            next,
            prev,
            next_b,
            prev_b,
            in_b,
            zob,
            zob2,
            hasher,
            hasher2,
            zhash2,
            bits,
            zhash,
            memo,
            state,
            stack,
            required,
            max_cut,
            cur,
            pass_b,
            fresh,
            bound,
            iters,
            accounted,
            ..
        } = self;
        let (model, ops, head, tail) = (*model, *ops, *head, *tail);
        let n = ops.len();
        let per_entry = memo.bytes_per_entry();
        loop {
            if memo.len() > max_configurations {
                return End::OverLimit;
            }
            *iters += 1;
            if *iters & 0xfff == 0 {
                let bytes = memo.len() * per_entry;
                let used = budget
                    .memory_used
                    .fetch_add(bytes - *accounted, Ordering::Relaxed)
                    + (bytes - *accounted);
                *accounted = bytes;
                if used > budget.memory_limit {
                    let reason = format!(
                        "memory budget exceeded: {} configurations (~{} MiB) for {} operations; \
                     limit {} MiB",
                        memo.len(),
                        bytes >> 20,
                        n,
                        budget.memory_limit >> 20
                    );
                    return End::Aborted(reason);
                }
                if budget.deadline.is_some_and(|d| Instant::now() > d) {
                    let reason = format!(
                        "time limit reached after {} configurations for {} operations",
                        memo.len(),
                        n
                    );
                    return End::Aborted(reason);
                }
                if budget.cancelled.load(Ordering::Relaxed) {
                    return End::Aborted("cancelled".into());
                }
            }
            if *required == 0 {
                match collect.as_deref_mut() {
                    None => return End::Linearizable,
                    Some(c) => {
                        if !c.found {
                            c.found = true;
                            c.linearization = stack.iter().map(|f| f.0).collect();
                        }
                        if !c.states.contains(state) {
                            if c.states.len() < MAX_STATES {
                                c.states.push(state.clone());
                            } else {
                                c.truncated = true;
                                return End::Aborted("enough states".into());
                            }
                        }
                    }
                }
            }
            let mut backtrack = false;
            if *fresh {
                // A new configuration: if a pending read-only operation is possible, it commutes
                // with everything, so linearizing it now is the only choice worth trying here.
                *fresh = false;
                let mut e = next[head] as usize;
                while e != tail && e & 1 == 0 {
                    let i = e >> 1;
                    if model.is_read_only(&ops[i].op) && model.step(state, &ops[i].op).is_some() {
                        *cur = e;
                        break;
                    }
                    e = next[e] as usize;
                }
            }
            if !*pass_b && (*cur == tail || *cur & 1 == 1) {
                // A return entry (an operation that must have been linearized by now) or the end
                // of list A: the required candidates are exhausted; now the optional ones.
                if *cur != tail {
                    let pos = ops[*cur >> 1].ret.unwrap_or(0) as usize;
                    if pos >= max_cut.0 {
                        *max_cut = (pos, *cur >> 1);
                    }
                    *bound = pos;
                } else {
                    *bound = usize::MAX;
                }
                *pass_b = true;
                *cur = next_b[head] as usize;
                continue;
            }
            if *pass_b && (*cur == tail || ops[*cur >> 1].call as usize >= *bound) {
                backtrack = true;
            } else {
                // A call entry: try to linearize the operation now.
                let i = *cur >> 1;
                let mut advanced = false;
                let s2 = model.step(state, &ops[i].op).filter(|s2| {
                    !M::PRUNES
                        || OPTIONAL_LAST
                        || model.is_read_only(&ops[i].op)
                        || viable(model, ops, next, head, tail, i, s2)
                });
                if let Some(s2) = s2 {
                    bits[i >> 6] |= 1 << (i & 63);
                    *zhash ^= zob[i];
                    *zhash2 ^= zob2[i];
                    let h = mix64(*zhash ^ hasher.hash_one(&s2));
                    let h2 = if memo.exact {
                        0
                    } else {
                        mix64(*zhash2 ^ hasher2.hash_one(&s2))
                    };
                    let read_only = model.is_read_only(&ops[i].op);
                    if memo.insert(h, h2, bits, &s2) {
                        stack.push((i as u32, std::mem::replace(state, s2), read_only, *bound));
                        let c = *cur;
                        if *pass_b {
                            next_b[prev_b[c] as usize] = next_b[c];
                            prev_b[next_b[c] as usize] = prev_b[c];
                        } else {
                            // Lift: unlink the call entry, then the return entry.
                            next[prev[c] as usize] = next[c];
                            prev[next[c] as usize] = prev[c];
                            if ops[i].ret.is_some() {
                                let r = c + 1;
                                next[prev[r] as usize] = next[r];
                                prev[next[r] as usize] = prev[r];
                                *required -= 1;
                            }
                        }
                        *cur = next[head] as usize;
                        *pass_b = false;
                        *fresh = true;
                        advanced = true;
                    } else {
                        bits[i >> 6] &= !(1 << (i & 63));
                        *zhash ^= zob[i];
                        *zhash2 ^= zob2[i];
                        // This configuration plus the read was explored and failed, and a read
                        // commutes with everything: so this configuration fails too.
                        backtrack = read_only;
                    }
                }
                if !advanced && !backtrack {
                    *cur = if *pass_b { next_b[*cur] } else { next[*cur] } as usize;
                }
            }
            while backtrack {
                let Some((i, old, forced, b)) = stack.pop() else {
                    return End::Exhausted { cut: max_cut.1 };
                };
                let i = i as usize;
                *state = old;
                bits[i >> 6] &= !(1 << (i & 63));
                *zhash ^= zob[i];
                *zhash2 ^= zob2[i];
                let c = 2 * i;
                if !in_b[i] {
                    // Unlift in reverse order: the return entry, then the call entry.
                    if ops[i].ret.is_some() {
                        let r = c + 1;
                        next[prev[r] as usize] = r as u32;
                        prev[next[r] as usize] = r as u32;
                        *required += 1;
                    }
                    next[prev[c] as usize] = c as u32;
                    prev[next[c] as usize] = c as u32;
                    *pass_b = false;
                    *cur = next[c] as usize;
                } else {
                    next_b[prev_b[c] as usize] = c as u32;
                    prev_b[next_b[c] as usize] = c as u32;
                    *pass_b = true;
                    *bound = b;
                    *cur = next_b[c] as usize;
                }
                // A read that was possible here was forced: no alternative to try at this level.
                backtrack = forced;
            }
        }
    }
}

/// Entries of list A that [`viable`] looks at, at most: it runs at every state change, so
/// it must not walk the whole future of a long history.
const PRUNE_WINDOW: usize = 64;

/// Whether the state `s`, reached by linearizing operation `i`, may still lead to a
/// linearization ([`Model::may_reach`]): every pending operation whose return entry comes
/// before the first call of a resetting operation (other than `i`) must still be reachable.
/// Every operation not linearized is in list A (when not `OPTIONAL_LAST`), its call and
/// return entries in history order, so a resetting operation that could be linearized before
/// an operation's return has its call entry before that return entry.
fn viable<M: Model>(
    model: &M,
    ops: &[Entry<M::Op>],
    next: &[u32],
    head: usize,
    tail: usize,
    i: usize,
    s: &M::State,
) -> bool {
    let mut e = next[head] as usize;
    let mut seen = 0;
    while e != tail && seen < PRUNE_WINDOW {
        let j = e >> 1;
        if j != i {
            if e & 1 == 0 {
                if model.resets(&ops[j].op) {
                    break;
                }
            } else if !model.may_reach(s, &ops[j].op) {
                return false;
            }
        }
        seen += 1;
        e = next[e] as usize;
    }
    true
}

/// Checks one partition's operations (already encoded) without budget; for tests.
#[cfg(test)]
pub(crate) fn linearizable<M: Model>(model: &M, ops: &[Entry<M::Op>]) -> bool {
    matches!(
        Search::new(model, ops).run(&Budget::unlimited(), None, usize::MAX),
        End::Linearizable
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegisterOp;

    fn e(op: RegisterOp, call: u32, ret: Option<u32>) -> Entry<RegisterOp> {
        Entry {
            op,
            call,
            ret,
            id: 0,
        }
    }

    #[test]
    #[rustfmt::skip]
    fn concurrent_write_may_linearize_before_read() {
        use RegisterOp::*;
        // |--w1--|
        //    |--r1--|
        let ops = [e(Write(1), 0, Some(2)), e(Read(1), 1, Some(3))];
        assert!(linearizable(&CasRegister::default(), &ops));
    }

    #[test]
    #[rustfmt::skip]
    fn read_after_completed_write_must_see_it() {
        use RegisterOp::*;
        // |--w1--|  |--w2--|  |--r1--|
        let ops = [e(Write(1), 0, Some(1)), e(Write(2), 2, Some(3)), e(Read(1), 4, Some(5))];
        assert!(!linearizable(&CasRegister::default(), &ops));
    }

    #[test]
    #[rustfmt::skip]
    fn info_write_may_take_effect_late_or_never() {
        use RegisterOp::*;
        // w1 is indeterminate: a later read may see it, or not.
        let seen = [e(Write(1), 0, None), e(Read(0), 1, Some(2)), e(Read(1), 3, Some(4))];
        assert!(linearizable(&CasRegister::default(), &seen));
        let never = [e(Write(1), 0, None), e(Read(0), 1, Some(2))];
        assert!(linearizable(&CasRegister::default(), &never));
        // ...but at most once: after it took effect and was overwritten, it cannot reappear.
        let twice = [e(Write(1), 0, None), e(Read(1), 1, Some(2)), e(Write(2), 3, Some(4)),
                     e(Read(1), 5, Some(6))];
        assert!(!linearizable(&CasRegister::default(), &twice));
    }
}
