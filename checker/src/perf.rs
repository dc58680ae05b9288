//! Performance metrics of a history: latency of every operation, latency quantiles per time
//! window, throughput per second by function and outcome. Pure functions over a [`History`];
//! [`Perf`] bundles them with the availability metrics for `results.json` and the report.
//!
//! Times are seconds since the run started (the history's `time` is nanoseconds); latencies are
//! milliseconds. An operation is counted in the second its completion falls in; operations that
//! never completed have no latency and are left out of throughput (they count in `stats`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::availability::{self, LeaderSegment, NemesisInterval, Recovery, StatusSample};
use crate::history::{History, Outcome};

/// One completed client operation, for the latency plot and the history timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpPoint {
    /// Client process.
    pub process: u64,
    /// Invocation time, seconds since the start.
    pub start_s: f64,
    /// Completion time, seconds since the start.
    pub end_s: f64,
    /// `end - start`, milliseconds.
    pub latency_ms: f64,
    /// The function (`read`, `write`, `cas`, ...).
    pub f: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why a `fail` or `info` happened, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every completed client operation with a timed invocation and completion, in invocation order.
pub fn op_points(history: &History) -> Vec<OpPoint> {
    let mut out = Vec::with_capacity(history.operations.len());
    for o in &history.operations {
        let inv = history.invocation(o);
        let Some(done) = history.completion(o) else {
            continue;
        };
        let (Some(t0), Some(t1)) = (inv.time, done.time) else {
            continue;
        };
        out.push(OpPoint {
            process: o.process,
            start_s: t0 as f64 / 1e9,
            end_s: t1 as f64 / 1e9,
            latency_ms: t1.saturating_sub(t0) as f64 / 1e6,
            f: inv.f.clone(),
            outcome: o.outcome,
            error: done.error.clone(),
        });
    }
    out
}

/// Latency quantiles of the operations completing in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileWindow {
    /// Window start, seconds.
    pub t: f64,
    /// Operations in the window.
    pub n: usize,
    /// Median latency, ms.
    pub p50: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Slowest, ms.
    pub max: f64,
}

/// The `q` quantile (0..=1) of sorted values by nearest rank; `NaN` when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency quantiles of all completed operations (any outcome) per window of `window_s`
/// seconds, by completion time. Windows without operations are left out.
pub fn latency_windows(points: &[OpPoint], window_s: f64) -> Vec<QuantileWindow> {
    let mut buckets: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for p in points {
        buckets
            .entry((p.end_s / window_s) as u64)
            .or_default()
            .push(p.latency_ms);
    }
    buckets
        .into_iter()
        .map(|(w, mut v)| {
            v.sort_by(f64::total_cmp);
            QuantileWindow {
                t: w as f64 * window_s,
                n: v.len(),
                p50: quantile(&v, 0.5),
                p95: quantile(&v, 0.95),
                p99: quantile(&v, 0.99),
                max: *v.last().expect("a bucket is never empty"),
            }
        })
        .collect()
}

/// Completions per second of one function: `[ok, fail, info]` for second `i` at index `i`.
pub type PerSecond = Vec<[u32; 3]>;

/// Throughput per second by function and outcome, over `seconds` seconds.
pub fn throughput(points: &[OpPoint], seconds: usize) -> BTreeMap<String, PerSecond> {
    let mut out: BTreeMap<String, PerSecond> = BTreeMap::new();
    for p in points {
        let row = out
            .entry(p.f.clone())
            .or_insert_with(|| vec![[0; 3]; seconds]);
        let s = (p.end_s as usize).min(seconds.saturating_sub(1));
        if let Some(cell) = row.get_mut(s) {
            cell[outcome_index(p.outcome)] += 1;
        }
    }
    out
}

/// `0` ok, `1` fail, `2` info.
pub fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::Fail => 1,
        Outcome::Info => 2,
    }
}

/// Headline numbers of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Completed client operations.
    pub completed: usize,
    /// Of which `ok`.
    pub ok: usize,
    /// Mean `ok` operations per second.
    pub ok_per_s: f64,
    /// `available / completed`: operations that got a definite answer (see
    /// [`availability::is_unavailable`]).
    pub availability: f64,
    /// Latency of `ok` operations, ms.
    pub p50_ms: f64,
    /// 95th percentile of `ok` latency, ms.
    pub p95_ms: f64,
    /// 99th percentile of `ok` latency, ms.
    pub p99_ms: f64,
    /// Slowest `ok` operation, ms.
    pub max_ms: f64,
}

/// Everything the report plots and `results.json`'s `perf` section holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Perf {
    /// Length of the history in whole seconds (last op, rounded up).
    pub seconds: usize,
    /// Headline numbers.
    pub summary: Summary,
    /// Latency quantiles per 1 s window.
    pub latency_windows: Vec<QuantileWindow>,
    /// Throughput per second by function: `[ok, fail, info]`.
    pub throughput: BTreeMap<String, PerSecond>,
    /// Availability per second: `available / completed` (`None`: nothing completed that second).
    pub availability: Vec<Option<f64>>,
    /// Faults, paired start and stop.
    pub nemesis: Vec<NemesisInterval>,
    /// Recovery after every fault stop (see [`availability::recovery`]).
    pub recovery: Vec<Recovery>,
    /// Seconds of unavailability per fault kind (see [`availability::unavailability`]).
    pub unavailable_s: BTreeMap<String, f64>,
    /// Which node led, per term.
    pub leaders: Vec<LeaderSegment>,
    /// When each node was a member (runs with membership changes; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<availability::MemberSpan>,
    /// Every completed op (not stored in `results.json`: the history has them).
    #[serde(skip)]
    pub points: Vec<OpPoint>,
}

impl Perf {
    /// Computes every metric of a history and its `status.jsonl` samples.
    pub fn new(history: &History, status: &[StatusSample]) -> Perf {
        let points = op_points(history);
        let last_ns = history.ops.iter().filter_map(|o| o.time).max().unwrap_or(0);
        let seconds = (last_ns as f64 / 1e9).ceil().max(1.0) as usize;
        let mut ok_lat: Vec<f64> = points
            .iter()
            .filter(|p| p.outcome == Outcome::Ok)
            .map(|p| p.latency_ms)
            .collect();
        ok_lat.sort_by(f64::total_cmp);
        let summary = Summary {
            completed: points.len(),
            ok: ok_lat.len(),
            ok_per_s: ok_lat.len() as f64 / seconds as f64,
            availability: availability::overall(&points).unwrap_or(0.0),
            p50_ms: quantile(&ok_lat, 0.5),
            p95_ms: quantile(&ok_lat, 0.95),
            p99_ms: quantile(&ok_lat, 0.99),
            max_ms: ok_lat.last().copied().unwrap_or(f64::NAN),
        };
        let nemesis = availability::nemesis_intervals(history);
        let recovery = availability::recovery(&points, &nemesis, seconds as f64);
        Perf {
            seconds,
            summary,
            latency_windows: latency_windows(&points, 1.0),
            throughput: throughput(&points, seconds),
            availability: availability::per_second(&points, seconds),
            unavailable_s: availability::unavailability(&recovery),
            recovery,
            nemesis,
            leaders: availability::leader_segments(status),
            members: availability::member_spans(status),
            points,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parse_history;

    /// A history from `(process, f, outcome, invoke ms, complete ms)` rows.
    pub(crate) fn history(rows: &[(u64, &str, &str, u64, u64)]) -> History {
        let rows: Vec<Row<'_>> = rows
            .iter()
            .map(|&(p, f, t, a, b)| (p, f, t, None, a, b))
            .collect();
        history_with_errors(&rows)
    }

    /// A row of [`history_with_errors`]: process, f, outcome, the completion's `error`,
    /// invoke ms, complete ms.
    pub(crate) type Row<'a> = (u64, &'a str, &'a str, Option<&'a str>, u64, u64);

    /// A history from rows whose completions may carry an `error`.
    pub(crate) fn history_with_errors(rows: &[Row<'_>]) -> History {
        let mut events = Vec::new();
        for &(p, f, t, e, a, b) in rows {
            let error = e.map_or(String::new(), |e| format!(r#","error":"{e}""#));
            events.push((
                a,
                format!(r#""process":{p},"type":"invoke","f":"{f}","value":null"#),
            ));
            events.push((
                b,
                format!(r#""process":{p},"type":"{t}","f":"{f}","value":null{error}"#),
            ));
        }
        events.sort_by_key(|e| e.0);
        let text: String = events
            .iter()
            .enumerate()
            .map(|(i, (t, rest))| format!("{{\"index\":{i},\"time\":{},{rest}}}\n", t * 1_000_000))
            .collect();
        parse_history(&text, false).unwrap()
    }

    #[test]
    fn quantile_uses_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.5), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[rustfmt::skip]
    #[test]
    fn latency_and_throughput_are_bucketed_by_completion_second() {
        let h = history(&[
            (0, "read",  "ok",   100,  110),
            (1, "write", "fail", 200,  500),
            (0, "read",  "ok",   900, 1100),
            (2, "cas",   "info", 950, 2950),
        ]);
        let pts = op_points(&h);
        assert_eq!(pts.len(), 4);
        assert_eq!(pts.iter().map(|p| p.latency_ms).collect::<Vec<_>>(), vec![10.0, 300.0, 200.0, 2000.0]);
        let tp = throughput(&pts, 3);
        assert_eq!(tp["read"], vec![[1, 0, 0], [1, 0, 0], [0, 0, 0]]);
        assert_eq!(tp["write"], vec![[0, 1, 0], [0, 0, 0], [0, 0, 0]]);
        assert_eq!(tp["cas"], vec![[0, 0, 0], [0, 0, 0], [0, 0, 1]]);
        let w = latency_windows(&pts, 1.0);
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].t, w[0].n, w[0].p50, w[0].max), (0.0, 2, 10.0, 300.0));
        assert_eq!((w[2].t, w[2].n, w[2].p99), (2.0, 1, 2000.0));
    }

    #[rustfmt::skip]
    #[test]
    fn summary_counts_only_ok_latency() {
        let h = history(&[
            (0, "read", "ok",   0,   10),
            (1, "read", "fail", 0, 1000),
            (0, "read", "ok",  20,   50),
        ]);
        let p = Perf::new(&h, &[]);
        assert_eq!(p.seconds, 1);
        assert_eq!(p.summary.completed, 3);
        assert_eq!(p.summary.ok, 2);
        assert_eq!(p.summary.max_ms, 30.0);
        assert!((p.summary.availability - 2.0 / 3.0).abs() < 1e-9);
    }
}
