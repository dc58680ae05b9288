//! `faultline bench`: the `perf` workload (no faults, unlimited rate) against raftkv and etcd,
//! on the same base image, network and client, at the same concurrencies; one table of ops/s and
//! latency quantiles, with the ratio raftkv/etcd.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::runner::{self, RunOptions};
use crate::workload::{self, Target};

/// Arguments of `faultline bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Client concurrencies to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    pub concurrency: Vec<usize>,
    /// Seconds of each run's main phase (overrides `perf`'s `time-limit`).
    #[arg(long, default_value_t = 10.0)]
    pub time_limit: f64,
    /// The seed of every run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Test this raftkv binary instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Where runs are written [default: results/ in the project folder].
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// `raftkv` or `etcd`.
    pub target: &'static str,
    /// Client processes.
    pub concurrency: usize,
    /// `ok` operations per second of the main phase.
    pub ops_per_s: f64,
    /// Median latency of `ok` operations, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of `ok` operations, ms.
    pub p99_ms: f64,
    /// The run's folder.
    pub dir: String,
}

/// Runs the benchmark and prints the table.
///
/// # Errors
/// When a run fails (images, Docker, ...).
pub async fn run(args: BenchArgs) -> anyhow::Result<u8> {
    let root = crate::workspace::root();
    let results = args.results.clone().unwrap_or_else(|| root.join("results"));
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        for target in [Target::Raftkv, Target::Etcd] {
            let mut w = workload::load(&root.join("workloads"), "perf")?;
            w.target = target;
            w.concurrency = c;
            w.time_limit = args.time_limit;
            w.validate("command line")?;
            let node_bin = (target == Target::Raftkv)
                .then(|| args.node_bin.clone())
                .flatten();
            let opts = RunOptions {
                reproduce: format!(
                    "faultline run perf --target {} --concurrency {c} --time-limit {} --seed {}",
                    target.as_str(),
                    args.time_limit,
                    args.seed
                ),
                workload: w,
                seed: args.seed,
                node_bin,
                label: Some(format!("bench {}", target.as_str())),
                results: results.clone(),
                progress: false,
            };
            let outcome = runner::run(opts)
                .await
                .with_context(|| format!("perf against {} at {c}", target.as_str()))?;
            let history = faultline_checker::read_history(&outcome.dir.history())?;
            let main_phase_ns = (args.time_limit * 1e9) as u64;
            let ok = history
                .operations
                .iter()
                .filter(|o| o.outcome == faultline_checker::Outcome::Ok)
                .filter(|o| {
                    history
                        .completion(o)
                        .and_then(|c| c.time)
                        .is_some_and(|t| t <= main_phase_ns)
                })
                .count();
            let lat = outcome.checked.latency.unwrap_or(runner::Latency {
                p50_ms: f64::NAN,
                p99_ms: f64::NAN,
                max_ms: f64::NAN,
            });
            let m = Measure {
                target: target.as_str(),
                concurrency: c,
                ops_per_s: ok as f64 / args.time_limit,
                p50_ms: lat.p50_ms,
                p99_ms: lat.p99_ms,
                dir: outcome.dir.path.display().to_string(),
            };
            eprintln!(
                "  {:<6} concurrency {c:<3} {:>8.0} ops/s  p50 {:.2} ms  p99 {:.2} ms",
                m.target, m.ops_per_s, m.p50_ms, m.p99_ms
            );
            rows.push(m);
        }
    }
    println!("{}", table(&rows));
    Ok(0)
}

/// The comparison table: one line per concurrency, raftkv beside etcd.
pub fn table(rows: &[Measure]) -> String {
    let mut s = format!(
        "{:>11} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>12}\n",
        "concurrency",
        "raftkv op/s",
        "p50 ms",
        "p99 ms",
        "etcd op/s",
        "p50 ms",
        "p99 ms",
        "raftkv/etcd"
    );
    let mut cs: Vec<usize> = rows.iter().map(|m| m.concurrency).collect();
    cs.dedup();
    for c in cs {
        let get = |t: &str| rows.iter().find(|m| m.concurrency == c && m.target == t);
        let (Some(r), Some(e)) = (get("raftkv"), get("etcd")) else {
            continue;
        };
        s += &format!(
            "{c:>11} | {:>10.0} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>8.2} | {:>12.2}\n",
            r.ops_per_s,
            r.p50_ms,
            r.p99_ms,
            e.ops_per_s,
            e.p50_ms,
            e.p99_ms,
            r.ops_per_s / e.ops_per_s
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_pairs_targets_by_concurrency_with_the_ratio() {
        let m = |target, concurrency, ops_per_s| Measure {
            target,
            concurrency,
            ops_per_s,
            p50_ms: 1.0,
            p99_ms: 2.0,
            dir: String::new(),
        };
        let t = table(&[m("raftkv", 1, 300.0), m("etcd", 1, 200.0)]);
        assert!(
            t.lines().nth(1).unwrap().trim_end().ends_with("1.50"),
            "{t}"
        );
    }
}
