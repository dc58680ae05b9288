//! `raftkv-bench`: starts a 3-node raftkv cluster on loopback (fsync on, as in production) and
//! measures writes/s, reads/s and latency quantiles at several client concurrencies.
//!
//! Run: `cargo run --release -p raftkv --bin raftkv-bench` (uses the `raftkv` binary next to
//! itself). Every phase is bounded in time; the nodes are killed at the end, also on error.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Benchmark a local 3-node raftkv cluster.
#[derive(Debug, Parser)]
#[command(name = "raftkv-bench")]
struct Args {
    /// Seconds per phase (each concurrency runs a write phase and a read phase).
    #[arg(long, default_value_t = 4)]
    duration: u64,
    /// Client concurrencies to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Distinct keys written and read.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Bytes per value (a JSON string of this length).
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Send requests to every node round-robin (followers forward) instead of the leader only.
    #[arg(long)]
    all_nodes: bool,
    /// Read mode passed to the nodes: linearizable or lease.
    #[arg(long, default_value = "linearizable")]
    read_mode: String,
    /// The raftkv binary [default: `raftkv` next to this binary].
    #[arg(long)]
    raftkv: Option<PathBuf>,
    /// Where the nodes keep their data [default: a fresh directory under the system temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

struct Nodes {
    children: Vec<Child>,
    dir: PathBuf,
    remove_dir: bool,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port(ip: &str) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(format!("{ip}:0"))?
        .local_addr()?
        .port())
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn request(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req)).await??;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

struct Phase {
    ok: u64,
    errors: u64,
    secs: f64,
    lat_us: Vec<u64>,
}

impl Phase {
    fn quantile(&self, q: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * q).round() as usize;
        self.lat_us[i] as f64 / 1000.0
    }
}

async fn run_phase(
    client: &HttpClient,
    urls: &[String],
    write: bool,
    concurrency: usize,
    args: &Args,
) -> Phase {
    let value = Bytes::from(format!("{{\"value\":\"{}\"}}", "x".repeat(args.value_size)));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let client = client.clone();
        let urls = urls.to_vec();
        let value = value.clone();
        let errors = errors.clone();
        let keys = args.keys;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = t as u64;
            while Instant::now() < deadline {
                let key = (i.wrapping_mul(2_654_435_761)) % keys;
                let url = format!("{}/kv/b{key}", urls[(i as usize) % urls.len()]);
                i += concurrency as u64;
                let t0 = Instant::now();
                let r = if write {
                    request(&client, "PUT", &url, value.clone()).await
                } else {
                    request(&client, "GET", &url, Bytes::new()).await
                };
                match r {
                    Ok((200, _)) => lat.push(t0.elapsed().as_micros() as u64),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat_us = Vec::new();
    for t in tasks {
        lat_us.extend(t.await.unwrap_or_default());
    }
    let secs = start.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    Phase {
        ok: lat_us.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        secs,
        lat_us,
    }
}

/// The leader's WAL counters (fsyncs, entries) from `/status`.
async fn wal_stats(client: &HttpClient, url: &str) -> Option<(u64, u64)> {
    let (_, body) = request(client, "GET", &format!("{url}/status"), Bytes::new())
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((v["wal"]["fsyncs"].as_u64()?, v["wal"]["entries"].as_u64()?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.raftkv {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("raftkv"),
    };
    anyhow::ensure!(
        bin.exists(),
        "no raftkv binary at {} (build it, or pass --raftkv)",
        bin.display()
    );
    let (dir, remove_dir) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("raftkv-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let mut addrs = Vec::new();
    for id in 1..=3u64 {
        let ip = format!("127.0.0.{id}");
        addrs.push((
            id,
            format!("{ip}:{}", free_port(&ip)?),
            format!("{ip}:{}", free_port(&ip)?),
        ));
    }
    let peers = addrs
        .iter()
        .map(|(id, p, c)| format!("{id}={p}/{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Nodes {
        children: Vec::new(),
        dir: dir.clone(),
        remove_dir,
    };
    for (id, _, _) in &addrs {
        let log = std::fs::File::create(dir.join(format!("n{id}.log")))?;
        let child = Command::new(&bin)
            .args([
                "--id",
                &id.to_string(),
                "--peers",
                &peers,
                "--read-mode",
                &args.read_mode,
            ])
            .arg("--data-dir")
            .arg(dir.join(format!("n{id}")))
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        nodes.children.push(child);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);

    // Wait (bounded) for a leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader_url = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no leader within 20 s; logs in {}",
            dir.display()
        );
        let mut found = None;
        for (_, _, c) in &addrs {
            if let Ok((200, body)) =
                request(&client, "GET", &format!("http://{c}/status"), Bytes::new()).await
            {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if v["role"] == "leader" {
                    found = Some(format!("http://{c}"));
                }
            }
        }
        if let Some(u) = found {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let urls: Vec<String> = if args.all_nodes {
        addrs
            .iter()
            .map(|(_, _, c)| format!("http://{c}"))
            .collect()
    } else {
        vec![leader_url.clone()]
    };
    println!(
        "raftkv-bench: 3 nodes on loopback, fsync on, {} s per phase, {} keys, {}-byte values, requests to {}, reads {}",
        args.duration,
        args.keys,
        args.value_size,
        if args.all_nodes {
            "all nodes"
        } else {
            "the leader"
        },
        args.read_mode
    );
    println!(
        "{:>5} {:>6} {:>10} {:>9} {:>9} {:>9} {:>7} {:>13}",
        "conc", "op", "ops/s", "p50 ms", "p90 ms", "p99 ms", "errors", "entries/fsync"
    );
    for &c in &args.concurrency {
        for write in [true, false] {
            let before = wal_stats(&client, &leader_url).await;
            let p = run_phase(&client, &urls, write, c.max(1), &args).await;
            let after = wal_stats(&client, &leader_url).await;
            let per_fsync = match (before, after) {
                (Some((f0, e0)), Some((f1, e1))) if f1 > f0 => {
                    format!("{:.1}", (e1 - e0) as f64 / (f1 - f0) as f64)
                }
                _ => "-".to_string(),
            };
            println!(
                "{:>5} {:>6} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>13}",
                c,
                if write { "write" } else { "read" },
                p.ok as f64 / p.secs,
                p.quantile(0.5),
                p.quantile(0.9),
                p.quantile(0.99),
                p.errors,
                if write { per_fsync } else { "-".to_string() },
            );
        }
    }
    drop(nodes);
    Ok(())
}
