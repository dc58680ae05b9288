//! `faultline bench`: the `perf` workload (no faults, unlimited rate) against raftkv, etcd over
//! gRPC and etcd over its JSON gateway, on the same base image and network, at the same
//! concurrencies; one table of ops/s and latency quantiles, with the ratios raftkv/etcd (gRPC)
//! and etcd gRPC/gateway (what the move of the etcd client to gRPC costs or gains).

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::runner::{self, RunOptions};
use crate::workload::{self, EtcdApi, Target};

/// What is measured: the system and, for etcd, the client API.
const SUBJECTS: [(&str, Target, EtcdApi); 3] = [
    ("raftkv", Target::Raftkv, EtcdApi::Grpc),
    ("etcd", Target::Etcd, EtcdApi::Grpc),
    ("etcd-gateway", Target::Etcd, EtcdApi::Gateway),
];

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
    /// `raftkv`, `etcd` (gRPC) or `etcd-gateway` (JSON gateway).
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
        for (name, target, api) in SUBJECTS {
            let mut w = workload::load(&root.join("workloads"), "perf")?;
            w.target = target;
            w.node.etcd_client = api;
            w.concurrency = c;
            w.time_limit = args.time_limit;
            w.validate("command line")?;
            let node_bin = (target == Target::Raftkv)
                .then(|| args.node_bin.clone())
                .flatten();
            let opts = RunOptions {
                reproduce: format!(
                    "faultline run perf --target {}{} --concurrency {c} --time-limit {} --seed {}",
                    target.as_str(),
                    if api == EtcdApi::Gateway {
                        " --etcd-client gateway"
                    } else {
                        ""
                    },
                    args.time_limit,
                    args.seed
                ),
                workload: w,
                seed: args.seed,
                node_bin,
                label: Some(format!("bench {name}")),
                results: results.clone(),
                progress: false,
            };
            let outcome = runner::run(opts)
                .await
                .with_context(|| format!("perf against {name} at {c}"))?;
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
                target: name,
                concurrency: c,
                ops_per_s: ok as f64 / args.time_limit,
                p50_ms: lat.p50_ms,
                p99_ms: lat.p99_ms,
                dir: outcome.dir.path.display().to_string(),
            };
            eprintln!(
                "  {:<12} concurrency {c:<3} {:>8.0} ops/s  p50 {:.2} ms  p99 {:.2} ms",
                m.target, m.ops_per_s, m.p50_ms, m.p99_ms
            );
            rows.push(m);
        }
    }
    println!("{}", table(&rows));
    Ok(0)
}

/// The comparison table: one line per concurrency, raftkv beside etcd over gRPC and over the
/// JSON gateway, with the ratios raftkv/etcd (gRPC) and etcd gRPC/gateway.
pub fn table(rows: &[Measure]) -> String {
    let mut s = format!("{:>11}", "concurrency");
    for (name, _, _) in SUBJECTS {
        s += &format!(
            " | {:>12} {:>7} {:>7}",
            format!("{name} op/s"),
            "p50 ms",
            "p99 ms"
        );
    }
    s += &format!(" | {:>11} {:>12}\n", "raftkv/etcd", "grpc/gateway");
    let mut cs: Vec<usize> = rows.iter().map(|m| m.concurrency).collect();
    cs.dedup();
    for c in cs {
        let get = |t: &str| rows.iter().find(|m| m.concurrency == c && m.target == t);
        s += &format!("{c:>11}");
        for (name, _, _) in SUBJECTS {
            match get(name) {
                Some(m) => {
                    s += &format!(
                        " | {:>12.0} {:>7.2} {:>7.2}",
                        m.ops_per_s, m.p50_ms, m.p99_ms
                    )
                }
                None => s += &format!(" | {:>12} {:>7} {:>7}", "-", "-", "-"),
            }
        }
        let ratio = |a: &str, b: &str| match (get(a), get(b)) {
            (Some(a), Some(b)) => format!("{:.2}", a.ops_per_s / b.ops_per_s),
            _ => "-".into(),
        };
        s += &format!(
            " | {:>11} {:>12}\n",
            ratio("raftkv", "etcd"),
            ratio("etcd", "etcd-gateway")
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
        let t = table(&[
            m("raftkv", 1, 300.0),
            m("etcd", 1, 200.0),
            m("etcd-gateway", 1, 160.0),
        ]);
        let line = t.lines().nth(1).unwrap();
        assert!(line.trim_end().ends_with("1.50         1.25"), "{t}");
        // A missing measurement leaves its cells and ratios empty rather than wrong.
        let t = table(&[m("raftkv", 16, 300.0), m("etcd", 16, 200.0)]);
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .trim_end()
                .ends_with("1.50            -"),
            "{t}"
        );
    }
}
