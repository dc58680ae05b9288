//! The runner: one run end to end (DESIGN.md, "One run, end to end").
//!
//! Images, cluster, clients and nemesis in the main phase, then heal, recovery and final reads,
//! then logs, teardown and the check. Teardown always happens: after a normal end, an error, a
//! panic (the [`RunGuard`]) and Ctrl-C. The history is on disk line by line throughout, so an
//! interrupted run still leaves a history that checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_checker::{CheckOptions, Results, Validity};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::client::{Completion, HttpClient, NodeClient};
use crate::control::{self, Cluster, Images, NodeBinary, RunGuard};
use crate::db::{self, Db, TargetDb};
use crate::generator::{F, Generator, Op};
use crate::nemesis::member::{LiveView, Members};
use crate::nemesis::{
    Action, Fault, FaultKind, Nemesis, NemesisContext, NemesisOp, Outcome, Script, figure8,
    prepare_clock_dir, revote, script,
};
use crate::store::{Event, HistoryWriter, Process, RunDir};
use crate::workload::{Kind, Target, Workload};

/// How long a status poll (readiness, the leader, the timeline) waits for a node.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// Everything a run needs besides the workload file's contents.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The resolved workload (file plus command-line overrides).
    pub workload: Workload,
    /// The seed every random choice flows from.
    pub seed: u64,
    /// A node binary to test instead of the workspace's raftkv.
    pub node_bin: Option<PathBuf>,
    /// A label for the build under test (shown in reports and comparisons).
    pub label: Option<String>,
    /// The `results/` folder.
    pub results: PathBuf,
    /// The command line that reproduces this run.
    pub reproduce: String,
    /// Draw a progress bar.
    pub progress: bool,
    /// The Docker engines to run on (`--engines FILE`) [default: the local engine, a bridge
    /// network].
    pub engines: Option<control::EnginesFile>,
}

/// Held while a run prepares its images (see [`run`]).
static PREPARING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run id (the value of the `faultline.run` label on its Docker objects).
    pub run_id: String,
    /// The run's folder.
    pub dir: RunDir,
    /// The verdict.
    pub valid: Validity,
    /// The checker's results (also in `results.json`) and the summary's numbers.
    pub checked: Checked,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
}

/// What `run.json` records.
#[derive(Debug, Serialize)]
struct RunRecord<'a> {
    run_id: &'a str,
    workload: &'a Workload,
    seed: u64,
    label: Option<&'a str>,
    reproduce: &'a str,
    harness_version: &'static str,
    started: String,
    node: NodeRecord,
    images: Vec<String>,
    nodes: Vec<NodeRecordAddr>,
    engines: EnginesRecord,
}

#[derive(Debug, Serialize)]
struct NodeRecord {
    binary: String,
    origin: String,
    sha256: String,
}

#[derive(Debug, Serialize)]
struct NodeRecordAddr {
    name: String,
    ip: String,
    container: String,
    /// The engine (an entry of the engines file) it runs on.
    engine: String,
    /// Its ports published on the engine's host, `port -> host:port` (empty on a local bridge).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    published: std::collections::BTreeMap<u16, String>,
}

/// The engines of a run, as `run.json` records them.
#[derive(Debug, Serialize)]
struct EnginesRecord {
    network: &'static str,
    engines: Vec<EngineRecord>,
}

#[derive(Debug, Serialize)]
struct EngineRecord {
    name: String,
    host: String,
}

/// Live counts for the progress bar and the summary.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    fail: AtomicU64,
    info: AtomicU64,
}

impl Counters {
    fn add(&self, c: &Completion) {
        match c {
            Completion::Ok(_) => &self.ok,
            Completion::Fail(_) => &self.fail,
            Completion::Info(_) => &self.info,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// What every client task shares: the history, the live counts for the progress bar, and fresh
/// process numbers (Jepsen's rule: a process whose operation ended indeterminate never issues
/// again, its task goes on under a new number).
#[derive(Clone)]
pub struct Recorder {
    history: Arc<HistoryWriter>,
    counters: Arc<Counters>,
    next_process: Arc<AtomicU64>,
}

impl Recorder {
    fn new(history: Arc<HistoryWriter>, first_free_process: u64) -> Self {
        Self {
            history,
            counters: Arc::new(Counters::default()),
            next_process: Arc::new(AtomicU64::new(first_free_process)),
        }
    }

    /// A process number nobody has used.
    pub fn fresh_process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes an invocation.
    ///
    /// # Errors
    /// When the history cannot be written.
    pub fn invoke(
        &self,
        process: u64,
        f: &str,
        key: Option<&str>,
        value: &Value,
        node: &str,
    ) -> anyhow::Result<()> {
        self.history.append(&Event {
            process: Process::Client(process),
            kind: "invoke",
            f,
            key,
            value,
            node: Some(node),
            error: None,
        })?;
        Ok(())
    }

    /// Writes a completion and counts it: an `ok` carries its value, a `fail` or `info` the
    /// invocation's value and the reason.
    ///
    /// # Errors
    /// When the history cannot be written.
    pub fn complete(
        &self,
        process: u64,
        f: &str,
        key: Option<&str>,
        invoked: &Value,
        completion: &Completion,
        node: &str,
    ) -> anyhow::Result<()> {
        let (value, error) = match completion {
            Completion::Ok(v) => (v, None),
            Completion::Fail(e) | Completion::Info(e) => (invoked, Some(e.as_str())),
        };
        self.completion_line(process, f, key, completion, value, error, node)
    }

    /// Writes the completion line of `completion`'s kind with this value and `error`, and counts it.
    #[allow(clippy::too_many_arguments)]
    fn completion_line(
        &self,
        process: u64,
        f: &str,
        key: Option<&str>,
        completion: &Completion,
        value: &Value,
        error: Option<&str>,
        node: &str,
    ) -> anyhow::Result<()> {
        self.history.append(&Event {
            process: Process::Client(process),
            kind: completion.kind(),
            f,
            key,
            value,
            node: Some(node),
            error,
        })?;
        self.counters.add(completion);
        Ok(())
    }

    /// Writes an `ok` completion that carries a note in `error` (an answer worth explaining, such
    /// as a drain that found no stream at all), and counts it.
    ///
    /// # Errors
    /// When the history cannot be written.
    pub fn complete_ok_noted(
        &self,
        process: u64,
        f: &str,
        value: &Value,
        note: &str,
        node: &str,
    ) -> anyhow::Result<()> {
        let ok = Completion::Ok(Value::Null);
        self.completion_line(process, f, None, &ok, value, Some(note), node)
    }

    /// Writes a line of the watch workload's watchers (`process: "watch"`, `type: "info"`).
    ///
    /// # Errors
    /// When the history cannot be written.
    pub fn watch(
        &self,
        f: &str,
        node: &str,
        value: &Value,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        self.history.append(&Event {
            process: Process::Watch,
            kind: "info",
            f,
            key: None,
            value,
            node: Some(node),
            error,
        })?;
        Ok(())
    }

    /// Writes a nemesis-like harness action (a compaction, say) that is not a fault.
    ///
    /// # Errors
    /// When the history cannot be written.
    pub fn harness_action(&self, f: &str, value: &Value) -> anyhow::Result<()> {
        self.history.append(&Event {
            process: Process::Nemesis,
            kind: "info",
            f,
            key: None,
            value,
            node: None,
            error: None,
        })?;
        Ok(())
    }
}

/// Performs one run and checks it.
///
/// # Errors
/// Harness errors: Docker refused, the images could not be built, the cluster never became ready,
/// the results folder is not writable. A run whose history is invalid is not an error.
pub async fn run(opts: RunOptions) -> anyhow::Result<RunOutcome> {
    let w = &opts.workload;
    let dir = RunDir::create(&opts.results, &w.name)
        .with_context(|| format!("creating a run folder in {}", opts.results.display()))?;
    // The stamp is unique among this results folder's runs only: two Faultline processes that
    // start the same workload within a second (a matrix beside a run) would otherwise share
    // Docker names, and the engine accepts a second network of the same name.
    let run_id = format!(
        "{}-{}-{:04x}",
        w.name,
        dir.stamp.to_lowercase(),
        rand::random::<u16>()
    );
    eprintln!(
        "faultline: run {} of '{}' with seed {} -> {}",
        run_id,
        w.name,
        opts.seed,
        dir.path.display()
    );

    let engines_file = opts
        .engines
        .clone()
        .unwrap_or_else(control::EnginesFile::local);
    let engines = control::Engines::connect(&engines_file).await?;
    let images = Images::new(engines.build.docker.clone(), opts.progress);
    // A throwaway PKI in a temporary folder (never in the results), deleted when the run ends.
    let pki = if w.tls {
        Some(Arc::new(
            crate::pki::RunPki::new(&run_id).context("making the run's certificates")?,
        ))
    } else {
        None
    };
    // One image preparation at a time in this process: parallel matrix cells would otherwise
    // build (or copy) the same image at once.
    let preparing = PREPARING.lock().await;
    let (db, node, node_images) = prepare_db(
        w,
        &images,
        opts.node_bin.as_deref(),
        &dir.path.join("clients"),
        pki,
    )
    .await?;

    // Images are built on the build engine; every engine that lacks the nodes' image gets a
    // copy (`node_images` is the base, then the nodes' image, which holds the base's layers).
    for image in node_images.iter().skip(1) {
        let copied = engines.distribute(image).await?;
        if !copied.is_empty() {
            eprintln!(
                "faultline: copied {image} to engine{} {}",
                if copied.len() == 1 { "" } else { "s" },
                copied.join(", ")
            );
        }
    }
    drop(preparing);
    let mut guard = RunGuard::on(&run_id, engines_file.clone());
    let interrupted = Arc::new(AtomicBool::new(false));
    let body = run_cluster(
        &opts,
        &dir,
        &run_id,
        &engines,
        db.as_ref(),
        node,
        node_images,
        interrupted.clone(),
    );
    let outcome = tokio::select! {
        r = body => r,
        _ = tokio::signal::ctrl_c() => {
            interrupted.store(true, Ordering::SeqCst);
            eprintln!("\nfaultline: interrupted; tearing down and checking the partial history");
            Ok(())
        }
    };
    // Teardown happens here on every path; the guard covers panics and early returns above.
    let teardown = control::clean_engines(&engines.list, Some(&run_id)).await;
    guard.disarm();
    if let Err(e) = &teardown {
        eprintln!("faultline: teardown failed: {e}; run `faultline clean`");
    }
    outcome?;
    teardown?;

    let checked =
        check_run(&dir).with_context(|| format!("checking {}", dir.history().display()))?;
    dir.update_latest().context("updating the latest links")?;
    crate::report::after_run(&dir.path);
    crate::sign::sign_after_run(&dir.path);
    Ok(RunOutcome {
        run_id,
        valid: checked.results.valid,
        checked,
        dir,
        interrupted: interrupted.load(Ordering::SeqCst),
    })
}

/// The system under test of a workload (its `target`), with its images built or found, what
/// `run.json` says about its binary, and the images used. `build` (`--build PATH`) replaces the
/// target's binary; `clients` is where exec clients write their stderr; `pki` makes the nodes
/// and clients speak mutual TLS.
///
/// # Errors
/// When an image cannot be had, `--build` is given for Galera, or the target cannot run over
/// TLS.
async fn prepare_db(
    w: &Workload,
    images: &Images,
    build: Option<&Path>,
    clients: &Path,
    pki: Option<Arc<crate::pki::RunPki>>,
) -> anyhow::Result<(Box<dyn Db>, NodeRecord, Vec<String>)> {
    let base = images.ensure_base(false).await?;
    let faultfs = NodeBinary::workspace_faultfs(&crate::workspace::root()).await?;
    let Some(target) = &w.system else {
        anyhow::ensure!(
            build.is_none(),
            "--build replaces a target file's binary; the built-in galera target runs Debian's mariadb-server and galera-4"
        );
        let image = images.ensure_galera(&faultfs, false).await?;
        let record = NodeRecord {
            binary: "/usr/sbin/mariadbd".into(),
            origin: format!("Debian {}", image.versions()),
            sha256: image.sha256.clone(),
        };
        let db = crate::galera::Galera::for_workload(w, &image.name);
        return Ok((Box::new(db), record, vec![base, image.name]));
    };
    let build = match build {
        Some(p) => {
            anyhow::ensure!(p.is_file(), "--build {}: no such file", p.display());
            Some(NodeBinary {
                path: p.to_path_buf(),
                origin: format!("--build {}", p.display()),
            })
        }
        None => None,
    };
    let image = images
        .ensure_target(target, build.as_ref(), &faultfs, false)
        .await?;
    let record = NodeRecord {
        binary: target.image.binary.clone(),
        origin: image.origin.clone(),
        sha256: image.sha256.clone(),
    };
    let mut db = TargetDb::new(target.clone(), image.name.clone(), w);
    if let Some(pki) = pki {
        db.use_tls(pki).map_err(anyhow::Error::msg)?;
    }
    if target.client.protocol == crate::target::ProtocolName::Exec {
        std::fs::create_dir_all(clients)
            .with_context(|| format!("creating {}", clients.display()))?;
        db.client_logs = Some(clients.to_path_buf());
    }
    Ok((Box::new(db), record, vec![base, image.name]))
}

/// Latency quantiles of the operations that completed `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
}

/// The checker's results plus what the terminal summary needs.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The checker's results (as in `results.json`).
    pub results: Results,
    /// Latency of `ok` operations, when any completed.
    pub latency: Option<Latency>,
    /// Share of completed operations that got a definite answer (see
    /// [`faultline_checker::availability::is_unavailable`]), when any completed.
    pub availability: Option<f64>,
}

/// Latency quantiles of the `ok` operations of a history (nearest-rank).
pub fn latency(history: &faultline_checker::History) -> Option<Latency> {
    let mut ms: Vec<f64> = history
        .operations
        .iter()
        .filter(|o| o.outcome == faultline_checker::Outcome::Ok)
        .filter_map(|o| {
            let start = history.invocation(o).time?;
            let end = history.completion(o)?.time?;
            Some(end.saturating_sub(start) as f64 / 1e6)
        })
        .collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    Some(Latency {
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: ms[ms.len() - 1],
    })
}

/// One line for the terminal: counts, availability and latency of the client operations.
pub fn summary_line(checked: &Checked) -> String {
    let t = &checked.results.stats.total;
    let availability = 100.0 * checked.availability.unwrap_or(0.0);
    let mut line = format!(
        "{} ops: {} ok, {} fail, {} info; availability {availability:.1}%",
        t.count, t.ok, t.fail, t.info
    );
    if let Some(l) = &checked.latency {
        line += &format!(
            "; latency of ok ops p50 {:.1} ms, p99 {:.1} ms",
            l.p50_ms, l.p99_ms
        );
    }
    line
}

/// Adds what a run folder's status polls (`status.jsonl`) saw to its results: the voters nodes
/// said during a run with membership changes, held to the changes as they happened.
pub fn with_run_status(
    results: Results,
    history: &faultline_checker::History,
    dir: &Path,
) -> Results {
    match std::fs::read_to_string(dir.join("status.jsonl")) {
        Ok(status) => results.with_status(history, &faultline_checker::parse_status(&status)),
        Err(_) => results,
    }
}

/// Checks a run folder's history and writes `results.json` (and `counterexample.svg`).
///
/// # Errors
/// When the history cannot be read or the results cannot be written.
pub fn check_run(dir: &RunDir) -> anyhow::Result<Checked> {
    let history = faultline_checker::read_history(&dir.history())?;
    // A transactional workload names the consistency model its history is checked against.
    let run: Value = std::fs::read(dir.path.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let txn_field = |field: &str| {
        run["workload"]["txn"][field]
            .as_str()
            .map(faultline_checker::ConsistencyModel::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("run.json: workload.txn.{field}: {e}"))
    };
    let (txn_model, txn_search) = (txn_field("model")?, txn_field("search")?);
    let options = CheckOptions {
        time_limit: Some(Duration::from_secs(60)),
        txn_model,
        txn_search,
        ..CheckOptions::default()
    };
    // Watch and lease histories go to their own checkers; registers to linearizability.
    let results = faultline_checker::check_history(&history, &options)?;
    let results = with_run_status(results, &history, &dir.path);
    if let Some(c) = results
        .linearizable
        .as_ref()
        .and_then(|l| l.counterexample())
    {
        std::fs::write(dir.path.join("counterexample.svg"), &c.svg)?;
    }
    dir.write_json("results.json", &results)?;
    Ok(Checked {
        results,
        latency: latency(&history),
        availability: faultline_checker::availability::overall(
            &faultline_checker::perf::op_points(&history),
        ),
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_cluster(
    opts: &RunOptions,
    dir: &RunDir,
    run_id: &str,
    engines: &control::Engines,
    db: &dyn Db,
    node: NodeRecord,
    images: Vec<String>,
    interrupted: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let w = &opts.workload;
    if w.nemesis
        .as_ref()
        .is_some_and(|s| s.faults.contains(&FaultKind::Member))
    {
        db.join_supported()
            .map_err(|e| anyhow::anyhow!("the `member` fault needs membership changes: {e}"))?;
    }
    let names: Vec<String> = (0..w.nodes).map(db::node_name).collect();
    let clock_dir = dir.path.join("clock");
    prepare_clock_dir(&clock_dir, &names).context("preparing the clock files")?;

    let boot = Instant::now();
    let cluster = Cluster::create_on(engines, run_id).await?;
    // Nodes armed with failpoints exit as a crash would; start them again at once (following
    // the engine's events from before the first node starts).
    let restarts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let restarter = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        cluster.restart_failpoint_exits(restarts.clone()),
    ));
    tokio::task::yield_now().await;
    for i in 0..w.nodes {
        cluster
            .start_node(
                db.node_spec(&cluster, i, w.nodes, &clock_dir)
                    .map_err(anyhow::Error::msg)?,
            )
            .await?;
    }
    let cluster = Arc::new(cluster);
    let record = RunRecord {
        run_id,
        workload: w,
        seed: opts.seed,
        label: opts.label.as_deref(),
        reproduce: &opts.reproduce,
        harness_version: env!("CARGO_PKG_VERSION"),
        started: chrono::Utc::now().to_rfc3339(),
        node,
        images,
        nodes: cluster
            .nodes()
            .iter()
            .map(|n| NodeRecordAddr {
                name: n.name.clone(),
                ip: n.ip.to_string(),
                container: n.container.clone(),
                engine: n.engine_name.clone(),
                published: n.published.keys().map(|&p| (p, n.addr(p))).collect(),
            })
            .collect(),
        engines: EnginesRecord {
            network: engines.network().as_str(),
            engines: engines
                .list
                .iter()
                .map(|e| EngineRecord {
                    name: e.name().to_string(),
                    host: e.spec.host.clone(),
                })
                .collect(),
        },
    };
    dir.write_json("run.json", &record)?;

    let op_timeout = Duration::from_secs_f64(w.op_timeout);
    let http = HttpClient::with_tls(op_timeout, db.client_tls());
    let status_http = http.with_timeout(STATUS_TIMEOUT);
    let clients = db::clients_for(db, &cluster, &http);
    let status_clients = db::clients_for(db, &cluster, &status_http);
    let leader =
        match db::await_ready(&status_clients, Duration::from_secs(30), db.has_leader()).await {
            Ok(l) => l.unwrap_or_else(|| "no node".into()),
            Err(e) => {
                // The node logs say why (a crash at boot, a bad flag): keep them.
                drop(restarter);
                collect_logs(&cluster, dir, restarts.load(Ordering::Relaxed)).await;
                anyhow::bail!(
                    "the cluster did not become ready: {e} (node logs in {})",
                    dir.path.join("nodes").display()
                );
            }
        };
    eprintln!(
        "faultline: {} nodes up, {leader} leads, {:.1} s after boot",
        w.nodes,
        boot.elapsed().as_secs_f64()
    );
    if w.target == Target::Galera {
        // The tables (and a bank's accounts), before any client.
        if let Err(e) = crate::galera::prepare(w, &clients).await {
            drop(restarter);
            collect_logs(&cluster, dir, restarts.load(Ordering::Relaxed)).await;
            return Err(e);
        }
    }
    if w.target == Target::Nats {
        // The KV bucket or the queue stream, replicated on every node, before any client.
        if let Err(e) = crate::queue::prepare_nats(w, &clients).await {
            drop(restarter);
            collect_logs(&cluster, dir, restarts.load(Ordering::Relaxed)).await;
            return Err(e);
        }
    }

    let result = drive(
        opts,
        dir,
        db,
        &cluster,
        &clients,
        &status_clients,
        &clock_dir,
        &interrupted,
    )
    .await;
    drop(restarter);
    collect_logs(&cluster, dir, restarts.load(Ordering::Relaxed)).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    opts: &RunOptions,
    dir: &RunDir,
    db: &dyn Db,
    cluster: &Arc<Cluster>,
    clients: &[(String, NodeClient)],
    status_clients: &[(String, NodeClient)],
    clock_dir: &Path,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let w = &opts.workload;
    let history = Arc::new(HistoryWriter::create(&dir.history())?);
    let recorder = Recorder::new(history.clone(), w.concurrency as u64);
    let counters = recorder.counters.clone();
    let generator = Arc::new(Mutex::new(Generator::new(w.generator(), opts.seed)));
    let stop_clients = CancellationToken::new();
    let main_phase = Duration::from_secs_f64(w.time_limit);

    // Leader timeline: every node's /status once a second, in status.jsonl.
    let stop_poller = CancellationToken::new();
    let view = Arc::new(LiveView::new(clients.to_vec(), status_clients.to_vec()));
    let poller = tokio::spawn(poll_status(
        view.clone(),
        dir.path.join("status.jsonl"),
        history.start(),
        stop_poller.clone(),
    ));

    let mut workers = Vec::new();
    match w.kind() {
        Kind::Register | Kind::Txn | Kind::Bank => {
            // `cas-from-read` values: unique in the run, above any `value-range` draw.
            let unique = Arc::new(AtomicU64::new(u64::from(w.keys.value_range) + 1));
            for i in 0..w.concurrency {
                workers.push(tokio::spawn(worker(
                    i as u64,
                    view.clone(),
                    generator.clone(),
                    recorder.clone(),
                    stop_clients.clone(),
                    unique.clone(),
                )));
            }
        }
        Kind::Watch => {
            workers = crate::watch::start(w, opts.seed, clients, &recorder, &stop_clients).await?;
        }
        Kind::Lease => {
            workers =
                crate::lease::start(w, clients, status_clients, &recorder, &stop_clients).await?;
        }
        Kind::Queue => {
            workers = crate::queue::start(w, opts.seed, &view, &recorder, &stop_clients)?;
        }
    }

    let mut nemesis = w.nemesis.as_ref().map(|spec| {
        let mut spec = spec.clone();
        if spec.corrupt_globs.is_empty() {
            spec.corrupt_globs = db.data_files();
        }
        Nemesis::new(
            &spec,
            opts.seed,
            cluster.nodes().iter().map(|n| n.name.clone()).collect(),
        )
    });
    // The `member` fault changes who the members are; everything else follows its view.
    let mut members = w
        .nemesis
        .as_ref()
        .filter(|s| s.faults.contains(&FaultKind::Member))
        .map(|spec| {
            Members::new(
                db,
                cluster,
                clock_dir,
                HttpClient::with_tls(Duration::from_secs_f64(w.op_timeout), db.client_tls()),
                HttpClient::with_tls(STATUS_TIMEOUT, db.client_tls()),
                view.clone(),
                spec,
                w.nodes,
            )
        });
    let active = Arc::new(Mutex::new(Vec::<String>::new()));
    let bar = progress_bar(opts.progress, main_phase);
    let ticker = {
        let (bar, counters, active) = (bar.clone(), counters.clone(), active.clone());
        tokio::spawn(async move {
            loop {
                let faults = active.lock().unwrap_or_else(|p| p.into_inner()).join(", ");
                bar.set_message(format!(
                    "ok {} fail {} info {}{}",
                    counters.ok.load(Ordering::Relaxed),
                    counters.fail.load(Ordering::Relaxed),
                    counters.info.load(Ordering::Relaxed),
                    if faults.is_empty() {
                        String::new()
                    } else {
                        format!(" | {faults}")
                    }
                ));
                bar.set_position(bar.elapsed().as_secs().min(bar.length().unwrap_or(0)));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Main phase: the nemesis follows its schedule while the clients run.
    let started = Instant::now();
    let clock_supported = db.clock_supported().and_then(|()| {
        match cluster.engines().list.iter().find(|e| !e.spec.shares()) {
            None => Ok(()),
            Some(e) => Err(format!(
                "clock faults write each node's clock file from the harness, and engine {} does not see the harness's files (`shares-files`)",
                e.name()
            )),
        }
    });
    if let Err(why) = &clock_supported
        && w.nemesis
            .as_ref()
            .is_some_and(|s| s.faults.contains(&FaultKind::Clock))
    {
        eprintln!("faultline: every clock fault of this run will be skipped: {why}");
    }
    let context = |leader: Option<String>| NemesisContext {
        cluster,
        clock_dir,
        leader,
        clock_supported: clock_supported.clone(),
    };
    let end = started + main_phase;
    let script = w.nemesis.as_ref().and_then(|s| s.script);
    if let (Some(script), Some(nemesis)) = (script, nemesis.as_mut()) {
        let pause = Duration::from_secs_f64(w.nemesis.as_ref().map_or(1.0, |s| s.interval));
        let mut record = |op: NemesisOp| record_nemesis(&history, &[op]);
        let ctx = context(None);
        for k in 1.. {
            let round = async {
                match script {
                    Script::Figure8 => figure8::round(status_clients, k, &mut record).await,
                    Script::Revote => {
                        revote::round(status_clients, nemesis, &ctx, k, &mut record).await
                    }
                }
            };
            let cut = tokio::select! {
                _ = tokio::time::sleep_until(end.into()) => true,
                r = round => { r?; false }
            };
            if cut {
                // The round may have left a pause armed (and a node killed: the final heal
                // restarts it).
                script::disarm_all(status_clients).await;
                record(script::cut_short(script, k))?;
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(end.into()) => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    } else if let Some(nemesis) = nemesis.as_mut() {
        let isolate = w
            .nemesis
            .as_ref()
            .map_or(0.0, |s| s.isolate_leader_on_crash);
        let mut crashes =
            (isolate > 0.0).then(|| Box::pin(cluster.exits_with(control::FAILPOINT_EXIT)));
        // The membership change under way, if any (it holds `members` until it is done).
        type Busy<'m> = std::pin::Pin<
            Box<dyn std::future::Future<Output = (Members<'m>, anyhow::Result<()>)> + Send + 'm>,
        >;
        let mut member_busy: Option<Busy<'_>> = None;
        let mut schedule = nemesis
            .schedule(main_phase)
            .into_iter()
            .enumerate()
            .peekable();
        // When the isolation that followed a crash ends.
        let mut lift: Option<Instant> = None;
        loop {
            let next = schedule.peek().map(|(_, (at, _))| started + *at);
            tokio::select! {
                _ = tokio::time::sleep_until(end.into()) => break,
                _ = sleep_until_some(next) => {
                    let (k, (_, action)) = schedule.next().expect("peeked");
                    let leader = db::leader_of(&db::statuses(&view.status_clients()).await);
                    match action {
                        // A membership change runs beside the other faults (it can take
                        // seconds: a node must start and catch up), one at a time.
                        Action::Start(Fault::Member { pick }) => match members.take() {
                            Some(mut m) => {
                                let held = nemesis.held();
                                let history = history.clone();
                                member_busy = Some(Box::pin(async move {
                                    let mut record = |invoke: bool, op: &NemesisOp| {
                                        record_nemesis_line(&history, invoke, op)
                                    };
                                    let r = m.apply(pick, &held, leader.as_deref(), &mut record).await;
                                    (m, r)
                                }));
                            }
                            None => {
                                let op = NemesisOp::skipped(
                                    "member",
                                    json!({"members": nemesis.members()}),
                                    "a membership change is still in progress",
                                );
                                record_nemesis(&history, &[op])?;
                            }
                        },
                        action => {
                            // Drawn over the initial nodes: aimed at the members of the moment
                            // (a change under way may have taken one out already).
                            nemesis.sync_members(&view.names());
                            let action = match action {
                                Action::Start(f) => Action::Start(
                                    f.remap(nemesis.members(), opts.seed ^ k as u64),
                                ),
                                stop => stop,
                            };
                            let ops = nemesis.apply(&action, &context(leader)).await?;
                            record_nemesis(&history, &ops)?;
                        }
                    }
                }
                done = next_done(&mut member_busy) => {
                    member_busy = None;
                    let (m, result) = done;
                    result?;
                    nemesis.sync_members(&view.names());
                    members = Some(m);
                }
                crash = next_of(&mut crashes) => match crash {
                    None => crashes = None,
                    Some(node) if lift.is_none() => {
                        let leader = db::leader_of(&db::statuses(&view.status_clients()).await);
                        let op = nemesis.isolate_leader_after_crash(&node, &context(leader)).await?;
                        if !matches!(op.outcome, Outcome::Skipped(_)) {
                            lift = Some(Instant::now() + Duration::from_secs_f64(isolate));
                        }
                        record_nemesis(&history, &[op])?;
                    }
                    // A crash during the isolation: the node comes back in a fresh network
                    // namespace, so its side of the isolation is installed again.
                    Some(node) => {
                        if let Some(op) = nemesis.reinstall_partition(&node, &context(None)).await? {
                            record_nemesis(&history, &[op])?;
                        }
                    }
                },
                _ = sleep_until_some(lift) => {
                    lift = None;
                    let leader = db::leader_of(&db::statuses(&view.status_clients()).await);
                    let stop = Action::Stop(FaultKind::Partition);
                    let ops = nemesis.apply(&stop, &context(leader)).await?;
                    record_nemesis(&history, &ops)?;
                }
            }
            *active.lock().unwrap_or_else(|p| p.into_inner()) = nemesis.active();
        }
        // A membership change still under way ends before the heal (bounded by its timeout).
        if let Some(busy) = member_busy.take() {
            let (m, result) = busy.await;
            result?;
            nemesis.sync_members(&view.names());
            members = Some(m);
        }
    }
    tokio::time::sleep_until(end.into()).await;

    // Final phase: heal everything, let the clients run through recovery, then stop them.
    bar.set_message("healing");
    if let Some(nemesis) = nemesis.as_mut() {
        let leader = db::leader_of(&db::statuses(&view.status_clients()).await);
        let ops = nemesis.heal_all(&context(leader)).await?;
        record_nemesis(&history, &ops)?;
        active.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    let healed = Instant::now();
    let recovered = db::await_ready(
        &view.status_clients(),
        Duration::from_secs(30),
        db.has_leader(),
    )
    .await;
    if let Err(e) = &recovered {
        eprintln!("faultline: after healing, {e}");
    }
    tokio::time::sleep_until((healed + Duration::from_secs_f64(w.recovery)).into()).await;
    stop_clients.cancel();
    for wk in workers {
        wk.await.context("a client task failed")??;
    }
    ticker.abort();
    bar.finish_and_clear();
    if interrupted.load(Ordering::SeqCst) {
        return Ok(());
    }

    // Final reads: every key ever used, through every node in turn, until one read succeeds.
    let keys = generator
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .touched_keys()
        .to_vec();
    match w.kind() {
        Kind::Register => final_reads(&keys, &view.clients(), &recorder, opts.seed).await?,
        Kind::Queue => crate::queue::drain_all(w, &view.clients(), &recorder).await?,
        // Elle needs no final reads: the version orders come from the reads the transactions made.
        Kind::Watch | Kind::Lease | Kind::Txn | Kind::Bank => {}
    }
    if let Some(m) = &members {
        // The cluster's own voters, held by the checker to the acknowledged changes.
        let list = m.final_list().await;
        record_nemesis(&history, std::slice::from_ref(&list))?;
        eprintln!("faultline: members at the end: {}", view.names().join(", "));
    }
    stop_poller.cancel();
    let _ = poller.await;
    eprintln!(
        "faultline: {} ops ({} ok, {} fail, {} info), history in {}",
        history.len(),
        counters.ok.load(Ordering::Relaxed),
        counters.fail.load(Ordering::Relaxed),
        counters.info.load(Ordering::Relaxed),
        dir.history().display()
    );
    Ok(())
}

fn progress_bar(enabled: bool, main_phase: Duration) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(main_phase.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn record_nemesis(history: &HistoryWriter, ops: &[NemesisOp]) -> anyhow::Result<()> {
    for op in ops {
        record_nemesis_line(history, false, op)?;
    }
    Ok(())
}

/// One nemesis line: an `invoke` when a step that takes a while begins (a membership change),
/// else the `info` that says what happened.
fn record_nemesis_line(
    history: &HistoryWriter,
    invoke: bool,
    op: &NemesisOp,
) -> anyhow::Result<()> {
    history.append(&Event {
        process: Process::Nemesis,
        kind: if invoke { "invoke" } else { "info" },
        f: &op.f,
        key: None,
        value: &op.value,
        node: None,
        error: None,
    })?;
    Ok(())
}

/// Writes one invocation and its completion to the history; returns the completion.
async fn perform(
    recorder: &Recorder,
    process: u64,
    node: &str,
    client: &NodeClient,
    op: &Op,
) -> anyhow::Result<Completion> {
    // Transactions and bank operations name their keys inside their values.
    let (f, key) = (op.f.name(), Some(op.key.as_str()).filter(|k| !k.is_empty()));
    recorder.invoke(process, f, key, &op.value, node)?;
    let completion = client.invoke(op).await;
    recorder.complete(process, f, key, &op.value, &completion, node)?;
    Ok(completion)
}

async fn worker(
    index: u64,
    view: Arc<LiveView>,
    generator: Arc<Mutex<Generator>>,
    recorder: Recorder,
    stop: CancellationToken,
    unique: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut process = index;
    // With `cas-from-read`: what this task last read of each key.
    let mut last_read: std::collections::HashMap<String, Value> = Default::default();
    let cas_from_read = generator
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .cas_from_read();
    // The worker's node: the members' `index`-th, picked again when the members change (the
    // `member` fault never leaves fewer than a majority of the original nodes).
    let bind = || view.pick(index as usize).expect("the cluster has members");
    let (mut generation, (mut node, mut client)) = bind();
    loop {
        if view.generation() != generation {
            (generation, (node, client)) = bind();
        }
        let (mut op, pause) = {
            let mut g = generator.lock().unwrap_or_else(|p| p.into_inner());
            (g.next_op(), g.pause())
        };
        if cas_from_read && op.f == F::Cas {
            op = match last_read.get(&op.key) {
                Some(from) => Op {
                    value: json!([from, unique.fetch_add(1, Ordering::Relaxed)]),
                    ..op
                },
                None => Op {
                    f: F::Read,
                    value: Value::Null,
                    ..op
                },
            };
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
        let completion = perform(&recorder, process, &node, &client, &op).await?;
        if cas_from_read {
            match (&completion, op.f) {
                (Completion::Ok(v), F::Read) => {
                    last_read.insert(op.key.clone(), v.clone());
                }
                (Completion::Ok(_), F::Cas | F::Write) => {
                    // The process's own write is its newest knowledge of the key.
                    let written = if op.f == F::Cas {
                        &op.value[1]
                    } else {
                        &op.value
                    };
                    last_read.insert(op.key.clone(), written.clone());
                }
                _ => {
                    last_read.remove(&op.key);
                }
            }
        }
        if matches!(completion, Completion::Info(_)) {
            // Jepsen's rule: a process with an indeterminate op never issues again.
            process = recorder.fresh_process();
        }
    }
}

async fn final_reads(
    keys: &[String],
    clients: &[(String, NodeClient)],
    recorder: &Recorder,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f1a1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut process = recorder.fresh_process();
    for key in keys {
        let first = rng.random_range(0..clients.len());
        for attempt in 0..clients.len() * 3 {
            let (node, client) = &clients[(first + attempt) % clients.len()];
            let op = Op {
                f: F::Read,
                key: key.clone(),
                value: Value::Null,
            };
            let c = perform(recorder, process, node, client, &op).await?;
            if matches!(c, Completion::Info(_)) {
                process = recorder.fresh_process();
            }
            if matches!(c, Completion::Ok(_)) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

async fn poll_status(view: Arc<LiveView>, path: PathBuf, start: Instant, stop: CancellationToken) {
    use std::io::Write;
    let Ok(file) = std::fs::File::create(&path) else {
        return;
    };
    let mut out = std::io::BufWriter::new(file);
    loop {
        let time = start.elapsed().as_nanos() as u64;
        let clients = view.status_clients();
        // The members as the harness knows them at this poll: the timeline's member set.
        let members: Vec<&str> = clients.iter().map(|(n, _)| n.as_str()).collect();
        for (node, s) in db::statuses(&clients).await {
            let line = match s {
                Ok(s) => {
                    let mut line = json!({"time": time, "node": node, "role": s.role, "term": s.term, "leader": s.leader, "commit": s.commit, "members": members});
                    if !s.members.is_empty() {
                        // The node's own voters (raftkv says them), beside the harness's view.
                        let voters: Vec<String> = s
                            .members
                            .iter()
                            .map(|&id| db::node_name(id as usize - 1))
                            .collect();
                        line["voters"] = json!(voters);
                    }
                    line
                }
                Err(e) => json!({"time": time, "node": node, "error": e, "members": members}),
            };
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Sleeps until `at`, or forever when there is none (a disabled `select!` branch).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The output of an optional future; forever pending when there is none.
async fn next_done<F: std::future::Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The next item of an optional stream; forever pending when there is no stream.
async fn next_of<S: futures_util::Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    use futures_util::StreamExt;
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Writes each node's log to the run folder and says how often nodes exited at failpoints
/// (`restarts`: how often the harness started one again).
async fn collect_logs(cluster: &Cluster, dir: &RunDir, restarts: u64) {
    let mut crashes = Vec::new();
    for node in cluster.nodes() {
        match cluster.logs(&node.name).await {
            Ok(bytes) => {
                let n = failpoint_crashes(&bytes);
                if n > 0 {
                    crashes.push(format!("{} {n}", node.name));
                }
                if let Err(e) = std::fs::write(dir.node_log(&node.name), bytes) {
                    eprintln!("faultline: cannot write the log of {}: {e}", node.name);
                }
            }
            Err(e) => eprintln!("faultline: cannot read the log of {}: {e}", node.name),
        }
    }
    if !crashes.is_empty() {
        // Nodes armed with failpoints exit and the harness starts them again: say how often, so
        // that these crashes are not only in the node logs.
        eprintln!(
            "faultline: crashes at failpoints: {} ({restarts} restarted by faultline)",
            crashes.join(", ")
        );
    }
}

/// How many times a node's log says raftkv exited at a failpoint.
fn failpoint_crashes(log: &[u8]) -> usize {
    String::from_utf8_lossy(log)
        .lines()
        .filter(|l| l.starts_with("raftkv: failpoint ") && l.ends_with("exiting with code 86"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::failpoint_crashes;

    #[test]
    fn failpoint_crashes_are_counted_from_raftkvs_exit_lines() {
        let log = b"2026-12-01T21:03:36Z  WARN raftkv::server::node: failpoint fired; stopping as a crash would failpoint=after-vote term=1\n\
raftkv: failpoint after-vote fired: stopping as a crash would; exiting with code 86\n\
2026-12-01T21:03:37Z  INFO raftkv::server: starting raftkv\n\
raftkv: failpoint before-leader-send fired: stopping as a crash would; exiting with code 86\n\
raftkv: error: writing the WAL\n";
        assert_eq!(failpoint_crashes(log), 2);
        assert_eq!(failpoint_crashes(b"no crash here\n"), 0);
    }
}
