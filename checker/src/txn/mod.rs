//! Transactional isolation: an Elle-class checker (Kingsbury & Alvaro, VLDB 2020, after Adya's
//! thesis) for list-append and rw-register histories.
//!
//! history -> compact txns ([`history`]) -> per-key inference of ww/wr/rw dependencies and of
//! the anomalies that need no cycle ([`list_append`], [`rw_register`], [`anomaly`]) -> a graph
//! with process and real-time edges when the model needs them ([`graph`]) -> strongly
//! connected components -> in each, the smallest cycle of each kind the model forbids, most
//! severe first, within a time budget per component -> named anomalies, the models they rule
//! out ([`model`]), and for each reported cycle its steps as text and an SVG ([`render`]).
//!
//! A search that runs out of its budget in a component without finding anything there makes
//! the verdict `unknown` (anomaly `cycle-search-timeout`), never `valid`.

mod anomaly;
mod graph;
mod history;
mod list_append;
mod model;
mod render;
mod rw_register;
mod stream;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

pub use history::is_elle_txn_history;
pub use model::{ALL_MODELS, ConsistencyModel};
pub use stream::{TxnJsonl, check_txn_jsonl};

use crate::Validity;
use crate::history::{History, Outcome};
use anomaly::{Case, Facts, explain_edge};
use graph::{Cycle, Graph, PROCESS, REALTIME, RW, WR, WW};
use history::Txns;

/// The kind of transactional history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnKind {
    /// `["append", k, v]` and `["r", k, [v1, v2, ...]]`: reads return whole lists.
    ListAppend,
    /// `["w", k, v]` and `["r", k, v]`: registers.
    RwRegister,
}

impl TxnKind {
    /// `list-append` or `rw-register`.
    pub fn name(self) -> &'static str {
        match self {
            TxnKind::ListAppend => "list-append",
            TxnKind::RwRegister => "rw-register",
        }
    }

    /// Parses `list-append` (also `list-append-txn`, `append`) or `rw-register`.
    ///
    /// # Errors
    /// A message naming the known kinds.
    pub fn parse(s: &str) -> Result<TxnKind, String> {
        match s {
            "list-append" | "list-append-txn" | "append" => Ok(TxnKind::ListAppend),
            "rw-register" | "rw-register-txn" => Ok(TxnKind::RwRegister),
            other => Err(format!(
                "unknown transactional kind {other:?} (known: list-append, rw-register)"
            )),
        }
    }
}

/// How to check a transactional history.
#[derive(Debug, Clone)]
pub struct TxnOptions {
    /// The kind; `None` infers it from the micro-ops (appends: list-append; writes:
    /// rw-register).
    pub kind: Option<TxnKind>,
    /// The model the history must satisfy (default strict serializable).
    pub model: ConsistencyModel,
    /// A stronger model whose cycles are searched for and reported too, without making the
    /// verdict invalid unless `model` forbids them (default: `model` alone). Used to show a
    /// system's documented anomalies (InnoDB's write skew at repeatable read) beside a check
    /// aimed at what it does promise.
    pub search: Option<ConsistencyModel>,
    /// The time allowed to the cycle search in each strongly connected component (Elle: 1 s).
    pub cycle_budget: Duration,
    /// Examples kept per anomaly (default 8).
    pub max_examples: usize,
    /// rw-register: a txn that reads `k = x` and then writes `k` orders `x` before its write
    /// (default true; see `rw_register`).
    pub writes_follow_reads: bool,
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions {
            kind: None,
            model: ConsistencyModel::StrictSerializable,
            search: None,
            cycle_budget: Duration::from_secs(1),
            max_examples: 8,
            writes_follow_reads: true,
        }
    }
}

/// Transaction counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TxnCounts {
    /// Committed.
    pub ok: usize,
    /// Definitely not committed.
    pub fail: usize,
    /// Indeterminate.
    pub info: usize,
    /// Micro-ops of all txns.
    pub micro_ops: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Edges of the dependency graph (parallel edges merged).
    pub edges: usize,
    /// Strongly connected components with more than one txn.
    pub sccs: usize,
    /// The largest of them.
    pub largest_scc: usize,
}

/// One transaction as shown in an example.
#[derive(Debug, Clone, Serialize)]
pub struct TxnView {
    /// `T1`, `T2`, ... within the example.
    pub name: String,
    /// The client process.
    pub process: u64,
    /// The history's index of its completion (of its invocation when it never completed).
    pub index: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Its micro-ops, EDN-style: `[:append 3 5] [:r 3 [1 5]]`.
    pub ops: String,
}

/// One edge of a cycle.
#[derive(Debug, Clone, Serialize)]
pub struct CycleStep {
    /// The txn the edge leaves.
    pub from: String,
    /// The txn it enters.
    pub to: String,
    /// `ww`, `wr`, `rw`, `process` or `realtime`.
    pub edge: String,
    /// The key that makes it, for data edges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The value that makes it, for data edges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why, in words.
    pub text: String,
}

/// One example of an anomaly.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyExample {
    /// The anomaly's name.
    pub name: String,
    /// One sentence (for cycles: the steps joined).
    pub message: String,
    /// The txns involved.
    pub txns: Vec<TxnView>,
    /// For cycles: each edge, in order; the last returns to the first txn.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CycleStep>,
    /// For cycles: the drawing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svg: Option<String>,
}

/// The verdict on a transactional history, serialized into `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TxnResult {
    /// `invalid` iff an anomaly the model forbids was found; `unknown` when the search ran out
    /// of budget (or the history could not be read) and nothing forbidden was found.
    pub valid: Validity,
    /// The kind of history.
    pub kind: TxnKind,
    /// The model checked.
    pub model: ConsistencyModel,
    /// Transaction counts.
    pub counts: TxnCounts,
    /// Every anomaly found, by name: how many cases (for cycles: components holding one).
    pub anomalies: BTreeMap<String, usize>,
    /// The names among them that `model` forbids.
    pub forbidden: Vec<String>,
    /// Up to `max_examples` examples per anomaly.
    pub examples: BTreeMap<String, Vec<AnomalyExample>>,
    /// The weakest models the anomalies rule out (Elle's `:not`).
    pub not: Vec<ConsistencyModel>,
    /// The stronger models also ruled out.
    pub also_not: Vec<ConsistencyModel>,
    /// Ns: the latest completion among the txns of the earliest-completed forbidden anomaly.
    pub first_anomaly_time: Option<u64>,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time spent reading the txns and inferring dependencies.
    pub infer_ms: f64,
    /// Time spent on components and cycles.
    pub search_ms: f64,
}

/// Anomalies that make a verdict `unknown` when nothing forbidden was found.
const UNKNOWN_ANOMALIES: [&str; 3] = [
    "cycle-search-timeout",
    "duplicate-writes",
    "empty-transaction-graph",
];

impl TxnResult {
    /// One line per anomaly found, forbidden ones first: its count, whether the model forbids
    /// it, and the first example's message; then the models ruled out.
    pub fn anomaly_lines(&self) -> Vec<String> {
        let mut names: Vec<&String> = self.anomalies.keys().collect();
        names.sort_by_key(|n| !self.forbidden.contains(n));
        let mut out: Vec<String> = names
            .into_iter()
            .map(|n| {
                let count = self.anomalies[n];
                let first = self
                    .examples
                    .get(n)
                    .and_then(|e| e.first())
                    .map_or(String::new(), |e| {
                        format!("; first: {}", e.message.replace('\n', "; "))
                    });
                let tag = if self.forbidden.contains(n) {
                    format!(" (forbidden by {})", self.model)
                } else {
                    String::new()
                };
                format!(
                    "txn {n}: {count} case{}{tag}{first}",
                    if count == 1 { "" } else { "s" }
                )
            })
            .collect();
        if !self.not.is_empty() {
            let names =
                |v: &[ConsistencyModel]| v.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ");
            let mut line = format!("txn: not {}", names(&self.not));
            if !self.also_not.is_empty() {
                line.push_str(&format!("; also not {}", names(&self.also_not)));
            }
            out.push(line);
        }
        out
    }

    fn unreadable(kind: TxnKind, model: ConsistencyModel, reason: String) -> TxnResult {
        TxnResult {
            valid: Validity::Unknown,
            kind,
            model,
            counts: TxnCounts::default(),
            anomalies: BTreeMap::new(),
            forbidden: Vec::new(),
            examples: BTreeMap::new(),
            not: Vec::new(),
            also_not: Vec::new(),
            first_anomaly_time: None,
            reason: Some(reason),
            infer_ms: 0.0,
            search_ms: 0.0,
        }
    }
}

/// The cycle kinds `model` forbids, most severe first (plain, then process, then realtime).
fn cycle_kinds(model: ConsistencyModel) -> Vec<String> {
    let mut out = Vec::new();
    for suffix in ["", "-process", "-realtime"] {
        for base in model::CYCLE_BASES {
            let name = format!("{base}{suffix}");
            if model.forbids(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// Checks a list-append or rw-register history against `opts.model`.
pub fn check_txn(history: &History, opts: &TxnOptions) -> TxnResult {
    let started = Instant::now();
    let kind = opts.kind.unwrap_or_else(|| history::infer_kind(history));
    check_parsed(history::parse(history, kind), kind, opts, started)
}

/// Checks txns already read (by `history::parse` or the streaming reader); `started` is when
/// reading began (it counts towards `infer_ms`).
fn check_parsed(
    t: Result<Txns, String>,
    kind: TxnKind,
    opts: &TxnOptions,
    started: Instant,
) -> TxnResult {
    let model = opts.model;
    // The model whose cycles are looked for: the stronger of the two, where one is asked.
    let search = match opts.search {
        Some(s) if s.implies(model) => s,
        _ => model,
    };
    let t = match t {
        Ok(t) => t,
        Err(e) => return TxnResult::unreadable(kind, model, e),
    };
    let mut counts = TxnCounts {
        micro_ops: t.mops.len(),
        keys: t.keys.len(),
        ..TxnCounts::default()
    };
    for x in &t.txns {
        match x.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Fail => counts.fail += 1,
            Outcome::Info => counts.info += 1,
        }
    }
    let rw = search.needs_rw();
    let inferred = match kind {
        TxnKind::ListAppend => list_append::infer(&t, rw),
        TxnKind::RwRegister => rw_register::infer(&t, rw, opts.writes_follow_reads),
    };
    let mut parts = inferred.edges;
    let filter = if search.needs_realtime() {
        parts.push(graph::process_edges(&t));
        parts.push(graph::realtime_edges(&t));
        WW | WR | RW | PROCESS | REALTIME
    } else {
        WW | WR | RW
    };
    let g = Graph::build(t.txns.len(), &parts);
    drop(parts);
    counts.edges = g.edge_count();
    let infer_ms = started.elapsed().as_secs_f64() * 1e3;

    let search_started = Instant::now();
    let sccs = g.sccs(filter);
    counts.sccs = sccs.len();
    counts.largest_scc = sccs.iter().map(Vec::len).max().unwrap_or(0);
    let kinds = cycle_kinds(search);
    let budget = opts.cycle_budget;
    let findings: Vec<(usize, graph::SccFindings)> = sccs
        .par_iter()
        .enumerate()
        .map(|(i, scc)| {
            let local = g.induced(scc, filter);
            let deadline = Instant::now() + budget;
            (i, graph::search_scc(&local, &kinds, deadline))
        })
        .collect();
    let search_ms = search_started.elapsed().as_secs_f64() * 1e3;

    let mut report = Report {
        t: &t,
        kind,
        facts: &inferred.facts,
        g: &g,
        max_examples: opts.max_examples,
        anomalies: BTreeMap::new(),
        examples: BTreeMap::new(),
        times: BTreeMap::new(),
    };
    for (i, f) in &findings {
        let scc = &sccs[*i];
        for (name, cycle) in &f.cycles {
            let global: Cycle = cycle.iter().map(|&(v, ty)| (scc[v as usize], ty)).collect();
            report.cycle(name, &global);
        }
        // Only a search for something `model` forbids makes the verdict unknown.
        if let Some(k) = f.timed_out.iter().find(|k| model.forbids(k)) {
            report.timeout(k, scc);
        }
    }
    let mut cases = inferred.cases;
    cases.sort_by_key(|c| {
        let ts = c.txns();
        ts.iter()
            .map(|&x| t.txns[x as usize].index)
            .max()
            .unwrap_or(0)
    });
    for c in &cases {
        report.case(c);
    }
    if counts.edges == 0 && counts.ok > 0 {
        report.note(
            "empty-transaction-graph",
            "no dependency between transactions could be inferred: the history says nothing \
             about isolation",
        );
    }

    let anomalies = report.anomalies;
    let forbidden: Vec<String> = anomalies
        .keys()
        .filter(|a| model.forbids(a))
        .cloned()
        .collect();
    let first_anomaly_time = forbidden
        .iter()
        .filter_map(|a| report.times.get(a))
        .min()
        .copied();
    let (not, also_not) = model::boundary(anomalies.keys().map(String::as_str));
    let unknown: Vec<&str> = UNKNOWN_ANOMALIES
        .into_iter()
        .filter(|a| anomalies.contains_key(*a))
        .collect();
    let (valid, reason) = if !forbidden.is_empty() {
        (Validity::Invalid, None)
    } else if !unknown.is_empty() {
        (
            Validity::Unknown,
            Some(format!("found {}", unknown.join(", "))),
        )
    } else {
        (Validity::Valid, None)
    };
    TxnResult {
        valid,
        kind,
        model,
        counts,
        anomalies,
        forbidden,
        examples: report.examples,
        not,
        also_not,
        first_anomaly_time,
        reason,
        infer_ms,
        search_ms,
    }
}

/// Collects anomalies, their examples and their earliest detection times.
struct Report<'a> {
    t: &'a Txns,
    kind: TxnKind,
    facts: &'a Facts,
    g: &'a Graph,
    max_examples: usize,
    anomalies: BTreeMap<String, usize>,
    examples: BTreeMap<String, Vec<AnomalyExample>>,
    times: BTreeMap<String, u64>,
}

impl Report<'_> {
    /// Counts one case of `name` involving `txns`; true when an example should be kept.
    fn count(&mut self, name: &str, txns: &[u32]) -> bool {
        *self.anomalies.entry(name.to_string()).or_default() += 1;
        let time = txns
            .iter()
            .filter_map(|&x| self.t.txns[x as usize].time)
            .max();
        if let Some(time) = time {
            let e = self.times.entry(name.to_string()).or_insert(time);
            *e = (*e).min(time);
        }
        self.examples.get(name).map_or(0, Vec::len) < self.max_examples
    }

    fn views(&self, txns: &[u32]) -> Vec<TxnView> {
        txns.iter()
            .enumerate()
            .map(|(i, &x)| {
                let txn = &self.t.txns[x as usize];
                TxnView {
                    name: format!("T{}", i + 1),
                    process: txn.process,
                    index: txn.index,
                    outcome: txn.outcome,
                    ops: self.t.mops_text(x, self.kind),
                }
            })
            .collect()
    }

    fn push(&mut self, e: AnomalyExample) {
        self.examples.entry(e.name.clone()).or_default().push(e);
    }

    fn cycle(&mut self, name: &str, cycle: &Cycle) {
        let txns: Vec<u32> = cycle.iter().map(|c| c.0).collect();
        if !self.count(name, &txns) {
            return;
        }
        let namer = |x: u32| {
            txns.iter()
                .position(|&y| y == x)
                .map_or(format!("txn {x}"), |i| format!("T{}", i + 1))
        };
        let n = cycle.len();
        let steps: Vec<CycleStep> = (0..n)
            .map(|i| {
                let (a, ty) = cycle[i];
                let b = cycle[(i + 1) % n].0;
                debug_assert!(self.g.mask(a, b) & ty != 0);
                let (key, value, text) =
                    explain_edge(self.t, self.kind, self.facts, a, b, ty, &namer);
                CycleStep {
                    from: namer(a),
                    to: namer(b),
                    edge: graph::rel_name(ty).to_string(),
                    key,
                    value,
                    text,
                }
            })
            .collect();
        let names: Vec<String> = (1..=n).map(|i| format!("T{i}")).collect();
        let svg = render::cycle_svg(&names, &steps);
        self.push(AnomalyExample {
            name: name.to_string(),
            message: render::cycle_text(&steps),
            txns: self.views(&txns),
            steps,
            svg: Some(svg),
        });
    }

    fn timeout(&mut self, kind: &str, scc: &[u32]) {
        let name = "cycle-search-timeout";
        if !self.count(name, &[]) {
            return;
        }
        let shown: Vec<u32> = scc.iter().copied().take(8).collect();
        self.push(AnomalyExample {
            name: name.to_string(),
            message: format!(
                "the search for {kind} in a component of {} transactions ran out of its budget \
                 before finding anything",
                scc.len()
            ),
            txns: self.views(&shown),
            steps: Vec::new(),
            svg: None,
        });
    }

    fn case(&mut self, c: &Case) {
        let txns = c.txns();
        if !self.count(c.name(), &txns) {
            return;
        }
        let namer = |x: u32| {
            txns.iter()
                .position(|&y| y == x)
                .map_or(format!("txn {x}"), |i| format!("T{}", i + 1))
        };
        let message = c.message(self.t, self.kind, &namer);
        self.push(AnomalyExample {
            name: c.name().to_string(),
            message,
            txns: self.views(&txns),
            steps: Vec::new(),
            svg: None,
        });
    }

    fn note(&mut self, name: &str, message: &str) {
        self.count(name, &[]);
        self.push(AnomalyExample {
            name: name.to_string(),
            message: message.to_string(),
            txns: Vec::new(),
            steps: Vec::new(),
            svg: None,
        });
    }
}

#[cfg(test)]
mod tests;
