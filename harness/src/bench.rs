//! `faultline bench`: the `perf` workload (no faults, unlimited rate) against raftkv, etcd over
//! gRPC, etcd over its JSON gateway and NATS KV (leader reads), on the same base image and
//! network, at the same concurrencies; one table of ops/s and latency quantiles, with the ratios
//! raftkv/etcd (gRPC), etcd gRPC/gateway (what the move of the etcd client to gRPC costs or
//! gains) and NATS KV/etcd.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::runner::{self, RunOptions};
use crate::workload::{self, EtcdApi, Target};

/// What is measured by default: a name, the target, for etcd the client API, whether the data
/// directories are on faultfs, and whether nodes and clients speak mutual TLS.
const SUBJECTS: [(&str, &str, EtcdApi, bool, bool); 7] = [
    ("raftkv", "raftkv", EtcdApi::Grpc, false, false),
    ("etcd", "etcd", EtcdApi::Grpc, false, false),
    ("etcd-gateway", "etcd", EtcdApi::Gateway, false, false),
    ("nats", "nats", EtcdApi::Grpc, false, false),
    ("raftkv-faultfs", "raftkv", EtcdApi::Grpc, true, false),
    ("raftkv-tls", "raftkv", EtcdApi::Grpc, false, true),
    ("etcd-tls", "etcd", EtcdApi::Grpc, false, true),
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
    /// Measure these targets (from `faultline targets`, comma-separated) instead of the default
    /// set, e.g. `raftkv,raftkv-exec` for what the exec protocol costs.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub targets: Vec<String>,
    /// Where runs are written [default: results/ in the project folder].
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Also measure raftkv with its data directories on faultfs (the storage-fault
    /// filesystem's cost).
    #[arg(long)]
    pub faultfs: bool,
    /// Also measure raftkv and etcd (or each of `--targets`) over mutual TLS 1.3 with the run's
    /// ECDSA P-256 certificates (`tls = true`): what TLS costs beside plain TCP.
    #[arg(long)]
    pub tls: bool,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// `raftkv`, `etcd` (gRPC), `etcd-gateway` (JSON gateway), `nats` (KV, leader reads) or
    /// `raftkv-faultfs`.
    pub target: String,
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
    let subjects: Vec<(String, String, EtcdApi, bool, bool)> = if args.targets.is_empty() {
        SUBJECTS
            .iter()
            .filter(|s| (!s.3 || args.faultfs) && (!s.4 || args.tls))
            .map(|&(n, t, api, f, tls)| (n.to_string(), t.to_string(), api, f, tls))
            .collect()
    } else {
        let mut out = Vec::new();
        for t in &args.targets {
            out.push((t.clone(), t.clone(), EtcdApi::Grpc, false, false));
            if args.tls {
                out.push((format!("{t}-tls"), t.clone(), EtcdApi::Grpc, false, true));
            }
        }
        out
    };
    for &c in &args.concurrency {
        for (name, target_name, api, faultfs, tls) in &subjects {
            let (api, faultfs, tls) = (*api, *faultfs, *tls);
            let mut w = workload::load(&root.join("workloads"), "perf")?;
            w.target_name = target_name.clone();
            w.resolve_target("--targets")?;
            let target = w.target;
            w.node.etcd_client = api;
            w.node.faultfs = faultfs;
            w.tls = tls;
            w.concurrency = c;
            w.time_limit = args.time_limit;
            w.validate("command line")?;
            let node_bin = (target == Target::Raftkv)
                .then(|| args.node_bin.clone())
                .flatten();
            let opts = RunOptions {
                reproduce: format!(
                    "faultline run perf --target {target_name}{}{}{} --concurrency {c} --time-limit {} --seed {}",
                    if api == EtcdApi::Gateway && target == Target::Etcd {
                        " --etcd-client gateway"
                    } else {
                        ""
                    },
                    if faultfs { " --faultfs" } else { "" },
                    if tls { " --tls" } else { "" },
                    args.time_limit,
                    args.seed
                ),
                workload: w,
                seed: args.seed,
                node_bin,
                label: Some(format!("bench {name}")),
                results: results.clone(),
                progress: false,
                engines: None,
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
                target: name.clone(),
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

/// The comparison table: one line per concurrency, each subject measured (raftkv, etcd over
/// gRPC, etcd over the JSON gateway, NATS KV, and with `--faultfs` raftkv on faultfs), with the
/// ratios raftkv/etcd (gRPC), etcd gRPC/gateway, NATS/etcd (gRPC) and, when measured, raftkv on
/// faultfs/raftkv.
pub fn table(rows: &[Measure]) -> String {
    let mut present: Vec<&str> = SUBJECTS
        .iter()
        .map(|s| s.0)
        .filter(|name| rows.iter().any(|m| m.target == *name))
        .collect();
    for m in rows {
        if !present.contains(&m.target.as_str()) {
            present.push(&m.target);
        }
    }
    let faultfs = present.contains(&"raftkv-faultfs");
    let exec = present.contains(&"raftkv-exec");
    // Each `X-tls` measured beside its plain `X`: TLS's cost as a ratio.
    let tls: Vec<(String, String)> = present
        .iter()
        .filter_map(|n| {
            n.strip_suffix("-tls")
                .map(|plain| (plain.to_string(), n.to_string()))
        })
        .filter(|(plain, _)| present.contains(&plain.as_str()))
        .collect();
    let mut s = format!("{:>11}", "concurrency");
    for name in &present {
        s += &format!(
            " | {:>12} {:>7} {:>7}",
            format!("{name} op/s"),
            "p50 ms",
            "p99 ms"
        );
    }
    s += &format!(
        " | {:>11} {:>12} {:>9}",
        "raftkv/etcd", "grpc/gateway", "nats/etcd"
    );
    if faultfs {
        s += &format!(" {:>14}", "faultfs/raftkv");
    }
    if exec {
        s += &format!(" {:>11}", "exec/raftkv");
    }
    for (plain, _) in &tls {
        s += &format!(" {:>14}", format!("{plain} tls/tcp"));
    }
    s += "\n";
    let mut cs: Vec<usize> = rows.iter().map(|m| m.concurrency).collect();
    cs.dedup();
    for c in cs {
        let get = |t: &str| rows.iter().find(|m| m.concurrency == c && m.target == t);
        s += &format!("{c:>11}");
        for name in &present {
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
            " | {:>11} {:>12} {:>9}",
            ratio("raftkv", "etcd"),
            ratio("etcd", "etcd-gateway"),
            ratio("nats", "etcd")
        );
        if faultfs {
            s += &format!(" {:>14}", ratio("raftkv-faultfs", "raftkv"));
        }
        if exec {
            s += &format!(" {:>11}", ratio("raftkv-exec", "raftkv"));
        }
        for (plain, with_tls) in &tls {
            s += &format!(" {:>14}", ratio(with_tls, plain));
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_pairs_targets_by_concurrency_with_the_ratio() {
        let m = |target: &str, concurrency, ops_per_s| Measure {
            target: target.to_string(),
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
            m("nats", 1, 100.0),
        ]);
        let line = t.lines().nth(1).unwrap();
        assert!(
            line.trim_end().ends_with("1.50         1.25      0.50"),
            "{t}"
        );
        assert!(t.lines().next().unwrap().contains("nats op/s"), "{t}");
        // TLS's cost: each `-tls` subject against its plain twin.
        let t = table(&[m("raftkv", 16, 1000.0), m("raftkv-tls", 16, 850.0)]);
        assert!(t.lines().next().unwrap().contains("raftkv tls/tcp"), "{t}");
        assert!(
            t.lines().nth(1).unwrap().trim_end().ends_with("0.85"),
            "{t}"
        );
        // A missing measurement leaves its cells and ratios empty rather than wrong.
        let t = table(&[m("raftkv", 16, 300.0), m("etcd", 16, 200.0)]);
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .trim_end()
                .ends_with("1.50            -         -"),
            "{t}"
        );
    }
}
