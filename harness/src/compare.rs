//! `faultline compare RUN_A RUN_B [...]`: runs side by side, typically two builds of the node
//! (told apart by `run.json`'s `label` and node `sha256`). The first run is the baseline; every
//! other run is compared with it, in a terminal table and in `results/compare-<stamp>.html`.
//!
//! Throughput, availability and latency are compared over each run's main phase (its time
//! limit); the final phase (heal, recovery, final reads) is left out.
//!
//! **Beyond noise.** A difference counts as beyond run-to-run noise when the 95% bootstrap
//! confidence interval of the difference (`B - A`) excludes zero. For throughput and
//! availability the resampled values are the per-second values of each run (mean of `ok`
//! completions per second, mean of per-second availability); for latency quantiles they are the
//! `ok` latencies of each run (the statistic is the difference of the quantiles); for recovery
//! time the per-fault recovery times (only with at least [`MIN_FAULTS`] recovered faults of the
//! kind in each run, else the difference is shown without a decision). 2,000 resamples, seeded
//! ([`SEED`]), so the decision is reproducible. Per-second values are autocorrelated, which makes
//! this interval somewhat too narrow: treat a marginal "beyond noise" with suspicion, and compare
//! more than one run per build when it matters.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use faultline_checker::Perf;
use faultline_checker::history::Outcome;
use faultline_checker::perf::quantile;
use faultline_checker::plot;
use faultline_checker::report::{badge, escape, page};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Seed of the bootstrap.
pub const SEED: u64 = 0xFA17_11E5;
/// Resamples of the bootstrap.
pub const RESAMPLES: usize = 2000;
/// Fewest recovered faults of a kind per run for a recovery-time decision.
pub const MIN_FAULTS: usize = 3;
/// At most this many latencies per run enter the latency bootstrap (an even stride of them).
const MAX_LATENCIES: usize = 4000;

/// Arguments of `faultline compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Run folders (or paths relative to `results/`); the first is the baseline.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Where to write the HTML [default: results/compare-<UTC stamp>.html].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// One run, loaded.
#[derive(Debug)]
pub struct Run {
    /// `workload/stamp`.
    pub name: String,
    /// `run.json` (`Null` if absent).
    pub run: Value,
    /// `results.json` (`Null` if absent).
    pub results: Value,
    /// Metrics recomputed from the history.
    pub perf: Perf,
}

impl Run {
    /// Loads a run folder.
    ///
    /// # Errors
    /// When its history cannot be read.
    pub fn load(path: &Path) -> anyhow::Result<Run> {
        if let Err(e) = crate::sign::verify_run(path, None) {
            eprintln!(
                "faultline: warning: {} does not verify: {e}",
                path.display()
            );
        }
        let history = faultline_checker::read_history(&path.join("history.jsonl"))?;
        let status = std::fs::read_to_string(path.join("status.jsonl")).unwrap_or_default();
        let read = |f: &str| -> Value {
            std::fs::read_to_string(path.join(f))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null)
        };
        let dir = crate::report::run_dir(path);
        Ok(Run {
            name: format!("{}/{}", dir.workload, dir.stamp),
            run: read("run.json"),
            results: read("results.json"),
            perf: Perf::new(&history, &faultline_checker::parse_status(&status)),
        })
    }

    /// The build: label and the first 12 hex digits of the node's sha256.
    pub fn build(&self) -> String {
        let label = self.run.get("label").and_then(Value::as_str);
        let sha = self
            .run
            .pointer("/node/sha256")
            .and_then(Value::as_str)
            .and_then(|s| s.get(..12));
        match (label, sha) {
            (Some(l), Some(s)) => format!("{l} ({s})"),
            (Some(l), None) => l.to_string(),
            (None, Some(s)) => s.to_string(),
            (None, None) => "?".into(),
        }
    }

    /// The verdict.
    pub fn verdict(&self) -> String {
        self.results
            .get("valid")
            .and_then(Value::as_str)
            .unwrap_or("no results")
            .to_string()
    }

    /// Counterexample messages, one per invalid key.
    pub fn anomalies(&self) -> Vec<String> {
        self.results
            .pointer("/linearizable/keys")
            .and_then(Value::as_array)
            .map(|ks| {
                ks.iter()
                    .filter_map(|k| {
                        let m = k.pointer("/counterexample/message")?.as_str()?;
                        let key = k.get("key").and_then(Value::as_str).unwrap_or("-");
                        Some(format!("{key}: {m}"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whole seconds of the main phase: `run.json`'s time limit (else the final heal, else the
    /// whole history). The final phase (heal, recovery, final reads) runs at another pace and
    /// would blur the comparison.
    pub fn main_seconds(&self) -> usize {
        let limit = self
            .run
            .pointer("/workload/time-limit")
            .and_then(Value::as_f64)
            .or_else(|| {
                self.perf
                    .nemesis
                    .iter()
                    .filter(|n| n.heal)
                    .filter_map(|n| n.stop_s)
                    .reduce(f64::min)
            });
        limit.map_or(self.perf.seconds, |l| {
            (l.floor() as usize).clamp(1, self.perf.seconds.max(1))
        })
    }

    fn ok_per_second(&self) -> Vec<f64> {
        self.ok_per_second_all()
            .into_iter()
            .take(self.main_seconds())
            .collect()
    }

    fn ok_per_second_all(&self) -> Vec<f64> {
        (0..self.perf.seconds)
            .map(|s| {
                self.perf
                    .throughput
                    .values()
                    .map(|v| f64::from(v.get(s).map_or(0, |c| c[0])))
                    .sum()
            })
            .collect()
    }

    fn ok_latencies(&self) -> Vec<f64> {
        let v: Vec<f64> = self
            .perf
            .points
            .iter()
            .filter(|p| p.outcome == Outcome::Ok && p.end_s < self.main_seconds() as f64)
            .map(|p| p.latency_ms)
            .collect();
        let stride = v.len().div_ceil(MAX_LATENCIES).max(1);
        v.into_iter().step_by(stride).collect()
    }
}

/// A difference `B - A` with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    /// `stat(B) - stat(A)`.
    pub diff: f64,
    /// 95% interval of the difference (`None`: too little data to decide).
    pub ci: Option<(f64, f64)>,
}

impl Diff {
    /// True when the interval excludes zero; `None` when there is no interval.
    pub fn beyond_noise(&self) -> Option<bool> {
        self.ci.map(|(lo, hi)| lo > 0.0 || hi < 0.0)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The bootstrap (see the module doc) of `stat(b) - stat(a)`, resampling each side with
/// replacement. `None` interval when a side is empty.
pub fn bootstrap(a: &[f64], b: &[f64], stat: impl Fn(&mut [f64]) -> f64, seed: u64) -> Diff {
    let diff = stat(&mut b.to_vec()) - stat(&mut a.to_vec());
    if a.is_empty() || b.is_empty() {
        return Diff { diff, ci: None };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    let mut ds: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for x in ra.iter_mut() {
                *x = a[rng.random_range(0..a.len())];
            }
            for x in rb.iter_mut() {
                *x = b[rng.random_range(0..b.len())];
            }
            stat(&mut rb) - stat(&mut ra)
        })
        .collect();
    ds.sort_by(f64::total_cmp);
    Diff {
        diff,
        ci: Some((quantile(&ds, 0.025), quantile(&ds, 0.975))),
    }
}

fn mean_stat(v: &mut [f64]) -> f64 {
    mean(v)
}

fn q_stat(q: f64) -> impl Fn(&mut [f64]) -> f64 {
    move |v: &mut [f64]| {
        v.sort_by(f64::total_cmp);
        quantile(v, q)
    }
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What is compared, with its unit.
    pub metric: String,
    /// Baseline value.
    pub a: f64,
    /// Other run's value.
    pub b: f64,
    /// The difference and its interval.
    pub diff: Diff,
}

/// The compared metrics of run `b` against baseline `a`.
pub fn rows(a: &Run, b: &Run) -> Vec<Row> {
    let mut out = Vec::new();
    let (ta, tb) = (a.ok_per_second(), b.ok_per_second());
    out.push(Row {
        metric: "throughput (ok ops/s)".into(),
        a: mean(&ta),
        b: mean(&tb),
        diff: bootstrap(&ta, &tb, mean_stat, SEED),
    });
    let av = |r: &Run| -> Vec<f64> {
        r.perf
            .availability
            .iter()
            .take(r.main_seconds())
            .flatten()
            .map(|x| x * 100.0)
            .collect()
    };
    let (aa, ab) = (av(a), av(b));
    out.push(Row {
        metric: "availability (% per second)".into(),
        a: mean(&aa),
        b: mean(&ab),
        diff: bootstrap(&aa, &ab, mean_stat, SEED + 1),
    });
    let (la, lb) = (a.ok_latencies(), b.ok_latencies());
    for (i, (name, q)) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]
        .into_iter()
        .enumerate()
    {
        let stat = q_stat(q);
        out.push(Row {
            metric: format!("latency {name} (ms)"),
            a: stat(&mut la.clone()),
            b: stat(&mut lb.clone()),
            diff: bootstrap(&la, &lb, q_stat(q), SEED + 2 + i as u64),
        });
    }
    let kinds: BTreeSet<&String> = a
        .perf
        .recovery
        .iter()
        .chain(&b.perf.recovery)
        .map(|r| &r.kind)
        .collect();
    for (i, kind) in kinds.into_iter().enumerate() {
        let rec = |r: &Run| -> Vec<f64> {
            r.perf
                .recovery
                .iter()
                .filter(|x| &x.kind == kind)
                .filter_map(|x| x.recovered_after_s)
                .collect()
        };
        let (ra, rb) = (rec(a), rec(b));
        let mut diff = bootstrap(&ra, &rb, mean_stat, SEED + 10 + i as u64);
        if ra.len() < MIN_FAULTS || rb.len() < MIN_FAULTS {
            diff.ci = None;
        }
        out.push(Row {
            metric: format!("recovery after {kind} (s, mean)"),
            a: mean(&ra),
            b: mean(&rb),
            diff,
        });
        let un = |r: &Run| {
            r.perf
                .unavailable_s
                .get(kind.as_str())
                .copied()
                .unwrap_or(0.0)
        };
        out.push(Row {
            metric: format!("unavailable during {kind} (s, total)"),
            a: un(a),
            b: un(b),
            diff: Diff {
                diff: un(b) - un(a),
                ci: None,
            },
        });
    }
    out
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn noise_text(d: &Diff) -> String {
    match (d.beyond_noise(), d.ci) {
        (Some(true), Some((lo, hi))) => format!("BEYOND NOISE [{}, {}]", num(lo), num(hi)),
        (Some(false), Some((lo, hi))) => format!("within noise [{}, {}]", num(lo), num(hi)),
        _ => "too little data".into(),
    }
}

/// The terminal table of `b` against `a`.
pub fn table(a: &Run, b: &Run, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "A: {}  build {}  {}",
        a.name,
        a.build(),
        a.verdict().to_uppercase()
    );
    let _ = writeln!(
        s,
        "B: {}  build {}  {}",
        b.name,
        b.build(),
        b.verdict().to_uppercase()
    );
    for (n, r) in [("A", a), ("B", b)] {
        let all = r.anomalies();
        for m in all.iter().take(3) {
            let _ = writeln!(s, "  anomaly in {n}: {m}");
        }
        if all.len() > 3 {
            let _ = writeln!(s, "  ... and {} more invalid keys in {n}", all.len() - 3);
        }
    }
    let _ = writeln!(
        s,
        "{:<38} {:>10} {:>10} {:>10}  95% bootstrap CI of B - A",
        "metric", "A", "B", "B - A"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<38} {:>10} {:>10} {:>10}  {}",
            r.metric,
            num(r.a),
            num(r.b),
            num(r.diff.diff),
            noise_text(&r.diff)
        );
    }
    s
}

/// `compare.html` for all runs (the first is the baseline).
pub fn html(runs: &[Run]) -> String {
    let mut b = String::from(
        "<h1>Faultline: compare runs</h1><table><tr><th></th><th>run</th><th>build</th><th>verdict</th><th>anomalies</th></tr>",
    );
    for (i, r) in runs.iter().enumerate() {
        let anomalies = r.anomalies();
        let _ = write!(
            b,
            "<tr><td>{}</td><td><a href=\"{n}/report.html\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if i == 0 {
                "A (baseline)".to_string()
            } else {
                format!("B{i}")
            },
            escape(&r.build()),
            badge(&r.verdict()),
            if anomalies.is_empty() {
                "none".into()
            } else {
                escape(&anomalies.join("; "))
            },
            n = escape(&r.name),
        );
    }
    b.push_str("</table><p class=\"muted\">Metrics are over each run's main phase (its time limit). Beyond noise: the 95% bootstrap interval of the difference (2,000 seeded resamples of per-second values, of ok latencies for quantiles, of per-fault recovery times with at least 3 faults per run) excludes zero.</p>");
    let a = &runs[0];
    for (i, r) in runs.iter().enumerate().skip(1) {
        let _ = write!(
            b,
            "<h2>B{i} against A</h2><table><tr><th>metric</th><th>A</th><th>B{i}</th><th>B - A</th><th>95% CI</th><th>beyond noise?</th></tr>"
        );
        for row in rows(a, r) {
            let (ci, beyond) = match (row.diff.ci, row.diff.beyond_noise()) {
                (Some((lo, hi)), Some(x)) => (
                    format!("[{}, {}]", num(lo), num(hi)),
                    if x { "<b>yes</b>" } else { "no" },
                ),
                _ => ("-".into(), "too little data"),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{ci}</td><td>{beyond}</td></tr>",
                escape(&row.metric),
                num(row.a),
                num(row.b),
                num(row.diff.diff)
            );
        }
        b.push_str("</table>");
    }
    let end = runs.iter().map(|r| r.perf.seconds).max().unwrap_or(1) as f64;
    let label = |i: usize, r: &Run| {
        format!(
            "{} {}",
            if i == 0 { "A".into() } else { format!("B{i}") },
            r.build()
        )
    };
    let avail: Vec<plot::Series> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                label(i, r),
                r.perf
                    .availability
                    .iter()
                    .enumerate()
                    .map(|(s, x)| x.map(|x| (s as f64 + 0.5, x * 100.0)))
                    .collect(),
            )
        })
        .collect();
    let tput: Vec<plot::Series> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                label(i, r),
                r.ok_per_second_all()
                    .iter()
                    .enumerate()
                    .map(|(s, x)| Some((s as f64 + 0.5, *x)))
                    .collect(),
            )
        })
        .collect();
    b.push_str("<h2>Overlaid</h2><p class=\"muted\">Shaded: the baseline's faults.</p>");
    let _ = write!(
        b,
        "<div class=\"plot\">{}</div><div class=\"plot\">{}</div>",
        plot::overlay(
            "Availability per second, all runs",
            "available (%)",
            &avail,
            &a.perf.nemesis,
            end,
            Some(105.0)
        ),
        plot::overlay(
            "ok throughput per second, all runs",
            "ok ops per second",
            &tput,
            &a.perf.nemesis,
            end,
            None
        )
    );
    page("Faultline compare", "", &b)
}

fn locate(p: &Path) -> anyhow::Result<PathBuf> {
    let path = if p.exists() {
        p.to_path_buf()
    } else {
        crate::workspace::root().join("results").join(p)
    };
    path.canonicalize()
        .with_context(|| format!("no run folder {}", p.display()))
}

/// `faultline compare`.
///
/// # Errors
/// When a run cannot be loaded or the HTML cannot be written.
pub fn run(args: &CompareArgs) -> anyhow::Result<u8> {
    let paths: Vec<PathBuf> = args
        .runs
        .iter()
        .map(|p| locate(p))
        .collect::<anyhow::Result<_>>()?;
    let runs: Vec<Run> = paths
        .iter()
        .map(|p| Run::load(p).with_context(|| format!("loading {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    for r in &runs[1..] {
        println!("{}", table(&runs[0], r, &rows(&runs[0], r)));
    }
    let results = crate::report::results_of(&paths[0]).unwrap_or_else(|| PathBuf::from("."));
    let out = args.out.clone().unwrap_or_else(|| {
        results.join(format!(
            "compare-{}.html",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    let mut html = html(&runs);
    // Links in the page are relative to the results folder; elsewhere, point at the runs directly.
    if out.parent().map(|p| p.canonicalize().ok()) != Some(results.canonicalize().ok()) {
        for (r, p) in runs.iter().zip(&paths) {
            html = html.replace(
                &format!("href=\"{}/report.html\"", escape(&r.name)),
                &format!("href=\"{}/report.html\"", escape(&p.display().to_string())),
            );
        }
    }
    std::fs::write(&out, html).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_shift_is_beyond_noise_and_equal_samples_are_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let a: Vec<f64> = (0..60)
            .map(|_| 100.0 + rng.random_range(-5.0..5.0))
            .collect();
        let same: Vec<f64> = (0..60)
            .map(|_| 100.0 + rng.random_range(-5.0..5.0))
            .collect();
        let lower: Vec<f64> = a.iter().map(|x| x - 10.0).collect();
        let d = bootstrap(&a, &lower, mean_stat, SEED);
        assert!((d.diff + 10.0).abs() < 1e-9, "{d:?}");
        assert_eq!(d.beyond_noise(), Some(true), "{d:?}");
        let d = bootstrap(&a, &same, mean_stat, SEED);
        assert_eq!(d.beyond_noise(), Some(false), "{d:?}");
        assert_eq!(bootstrap(&a, &[], mean_stat, SEED).beyond_noise(), None);
    }

    #[test]
    fn bootstrap_is_reproducible_and_quantiles_compare() {
        let a: Vec<f64> = (1..=200).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x * 2.0).collect();
        let d1 = bootstrap(&a, &b, q_stat(0.99), SEED);
        let d2 = bootstrap(&a, &b, q_stat(0.99), SEED);
        assert_eq!(d1, d2);
        assert_eq!(d1.diff, 198.0);
        assert_eq!(d1.beyond_noise(), Some(true));
    }

    #[test]
    fn comparisons_use_the_main_phase_only() {
        let perf = Perf {
            seconds: 29,
            ..Perf::default()
        };
        let mut r = Run {
            name: "w/1".into(),
            run: serde_json::json!({"workload": {"time-limit": 20.0}}),
            results: Value::Null,
            perf,
        };
        assert_eq!(r.main_seconds(), 20);
        r.run = Value::Null;
        assert_eq!(
            r.main_seconds(),
            29,
            "no time limit and no heal: the whole history"
        );
    }
}
