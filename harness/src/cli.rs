//! The `faultline` command line: argument types (clap derive) and one function per subcommand.
//!
//! Exit codes follow the checker's verdicts: 0 valid, 1 invalid, 2 unknown, 3 harness error
//! (bad input, Docker refused, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::control::{self, Images, NodeBinary};
use crate::runner::{self, RunOptions};
use crate::workload::{self, Workload};

/// Exit code for an error of the harness itself (not a verdict).
pub const EXIT_HARNESS_ERROR: u8 = 3;

/// Faultline: fault-injection testing for replicated databases.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about, long_about = None)]
pub struct Cli {
    /// Log filter for the harness's own logs (tracing's env-filter syntax).
    #[arg(long, global = true, default_value = "warn", env = "FAULTLINE_LOG")]
    pub log: String,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a named workload against a cluster in Docker, then check its history.
    Run(RunArgs),
    /// List the named workloads in workloads/.
    List,
    /// List the systems under test: the target files in targets/ and the built-in ones.
    Targets,
    /// Check a recorded history (a run folder, a history.jsonl or a Jepsen history.edn).
    Check(crate::check_cmd::CheckArgs),
    /// Show Faultline's Docker images, building the missing ones (base, raftkv, etcd and NATS).
    Images(ImagesArgs),
    /// Remove containers, volumes and networks left behind by a harness that was killed.
    Clean(CleanArgs),
    /// Docker Swarm across the engines of an engines file: `init` (the first engine manages, the
    /// others join), `leave` (undo init), `status`.
    Swarm(SwarmArgs),
    /// The detection matrix: every planted bug's workload (and etcd's serializable reads) with
    /// several seeds, plus correct raftkv and etcd as controls; writes results/matrix-<stamp>/.
    Matrix(crate::matrix::MatrixArgs),
    /// Throughput and latency of the `perf` workload, raftkv against etcd and NATS KV, at
    /// several concurrencies.
    Bench(crate::bench::BenchArgs),
    /// Regenerate a stored run's metrics, report.html and the results index.
    Report(crate::report::ReportArgs),
    /// Serve the results folder over HTTP, read-only (loopback by default).
    Serve(crate::serve::ServeArgs),
    /// Compare runs (e.g. two builds): verdicts, throughput, latency, availability, recovery.
    Compare(crate::compare::CompareArgs),
    /// Check run folders' signed manifests: the files' sha256 and the ECDSA P-256 signature.
    Verify(crate::sign::VerifyArgs),
}

/// Arguments of `faultline clean`.
#[derive(Debug, Clone, clap::Args)]
pub struct CleanArgs {
    /// Clean every engine of this engines file [default: the local engine].
    #[arg(long, value_name = "FILE")]
    pub engines: Option<PathBuf>,
}

/// Arguments of `faultline swarm`.
#[derive(Debug, Clone, clap::Args)]
pub struct SwarmArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SwarmAction,
    /// The engines file [default: the local engine alone].
    #[arg(long, value_name = "FILE", global = true)]
    pub engines: Option<PathBuf>,
}

/// `faultline swarm` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum SwarmAction {
    /// Make the first engine a swarm manager (at its `advertise-addr`) and join the others as
    /// workers; engines already in this swarm are left as they are.
    Init,
    /// Undo `init`: the workers leave, then the manager; the bridges `init` made are removed.
    /// Refuses a swarm `init` did not make.
    Leave,
    /// Each engine's swarm state.
    Status,
}

/// Arguments of `faultline images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Rebuild even when an image with the same content tag exists: `base`, `galera`, a target
    /// name (`raftkv`, `etcd`, ...), or `all`.
    #[arg(long, value_name = "NAME")]
    pub rebuild: Option<String>,
    /// Put this build into the raftkv image instead of the workspace's raftkv.
    #[arg(long, value_name = "PATH", alias = "node-bin")]
    pub build: Option<PathBuf>,
    /// Only these targets (comma-separated names from `faultline targets`).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub targets: Vec<String>,
    /// Only list what exists; build nothing.
    #[arg(long)]
    pub list: bool,
}

/// Arguments of `faultline run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workload: a name from `faultline list`, or a path to a TOML file.
    pub workload: String,
    /// The seed every random choice flows from [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds of the main phase (overrides the workload's `time-limit`).
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Total operations per second (overrides `rate`; 0 is unlimited).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Client processes (overrides `concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Number of nodes (overrides `nodes`).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Faults, comma-separated, or `none` (overrides the workload's `[nemesis] faults`).
    #[arg(long)]
    pub nemesis: Option<String>,
    /// Seconds between fault changes (overrides `[nemesis] interval`).
    #[arg(long)]
    pub nemesis_interval: Option<f64>,
    /// The system under test: a target from `faultline targets`, or a path to a target file
    /// (overrides the workload's `target`).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// etcd: serializable reads (`"serializable": true`), which may be stale (sets
    /// `[node] serializable-reads`).
    #[arg(long)]
    pub etcd_serializable_reads: bool,
    /// Put the nodes' data directories on faultfs, the storage-fault filesystem (sets
    /// `[node] faultfs`).
    #[arg(long)]
    pub faultfs: bool,
    /// etcd: the client API, `grpc` or `gateway` (sets `[node] etcd-client`).
    #[arg(long, value_enum, value_name = "API")]
    pub etcd_client: Option<crate::workload::EtcdApi>,
    /// Run every node and client over mutual TLS with a throwaway per-run PKI (sets `tls`).
    #[arg(long)]
    pub tls: bool,
    /// Enable a planted raftkv bug (repeatable; adds to the workload's `[node] bugs`).
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<String>,
    /// Test this build: the file replaces the target's `binary` in its image (a raftkv binary
    /// instead of the workspace's, an etcd of your own, ...); its sha256 goes into `run.json`.
    #[arg(long, value_name = "PATH", alias = "node-bin")]
    pub build: Option<PathBuf>,
    /// A label for the build under test, shown in reports and comparisons.
    #[arg(long)]
    pub label: Option<String>,
    /// Where runs are written [default: results/ in the project folder].
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// No progress bar (also when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Run on the Docker engines of this file (nodes placed across them; see README, Several
    /// hosts) [default: the local engine, a bridge network].
    #[arg(long, value_name = "FILE")]
    pub engines: Option<PathBuf>,
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Records when `main` started, for `faultline check --timings`.
pub fn mark_start() {
    let _ = START.set(std::time::Instant::now());
}

/// When `main` started (or the first call, if [`mark_start`] was not called).
pub fn started() -> std::time::Instant {
    *START.get_or_init(std::time::Instant::now)
}

/// Runs the commands that need no async runtime (`check`, `report`, `compare`, `list`) and
/// returns their exit code; gives the command line back for [`main`] otherwise.
///
/// # Errors
/// The command line, unchanged, when the command needs the runtime.
pub fn main_sync(cli: Cli) -> Result<ExitCode, Box<Cli>> {
    let result = match cli.command {
        Command::List => list(),
        Command::Targets => targets(),
        Command::Check(args) => crate::check_cmd::run(&args)
            .map(|code| u8::try_from(code).unwrap_or(EXIT_HARNESS_ERROR)),
        Command::Report(args) => crate::report::run(&args),
        Command::Compare(args) => crate::compare::run(&args),
        Command::Verify(args) => crate::sign::run(&args),
        command => return Err(Box::new(Cli { command, ..cli })),
    };
    Ok(exit(result))
}

/// Runs the parsed command line and returns the process exit code.
pub async fn main(cli: Cli) -> ExitCode {
    match main_sync(cli) {
        Ok(code) => code,
        Err(cli) => main_async(*cli).await,
    }
}

/// Runs the commands [`main_sync`] gave back (those that need the async runtime).
pub async fn main_async(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Images(args) => images(args).await,
        Command::Clean(args) => clean(args).await,
        Command::Swarm(args) => swarm(args).await,
        Command::Matrix(args) => crate::matrix::run(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Serve(args) => crate::serve::run(&args).await,
        Command::List
        | Command::Targets
        | Command::Check(_)
        | Command::Report(_)
        | Command::Compare(_)
        | Command::Verify(_) => {
            unreachable!("run by main_sync")
        }
    };
    exit(result)
}

fn exit(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_HARNESS_ERROR)
        }
    }
}

fn targets() -> anyhow::Result<u8> {
    let dir = crate::target::dir(&crate::workspace::root());
    let mut bad = false;
    for name in crate::target::list(&dir) {
        match crate::target::load(&dir, &name) {
            Ok(t) => println!("{name:<12} {}\n{:<12} {}", t.description, "", t.summary()),
            Err(e) => {
                bad = true;
                println!("{name:<12} (unreadable: {e})");
            }
        }
    }
    for (name, what) in crate::target::BUILT_IN {
        println!("{name:<12} {what}\n{:<12} built in", "");
    }
    Ok(if bad { EXIT_HARNESS_ERROR } else { 0 })
}

fn list() -> anyhow::Result<u8> {
    let dir = crate::workspace::root().join("workloads");
    for name in workload::list(&dir) {
        match workload::load(&dir, &name) {
            Ok(w) => println!("{name:<25} {}", w.description),
            Err(e) => println!("{name:<25} (unreadable: {e})"),
        }
    }
    Ok(0)
}

/// Applies the command line's overrides to a workload, and says how to reproduce them.
fn resolve(args: &RunArgs) -> anyhow::Result<(Workload, u64, String)> {
    let root = crate::workspace::root();
    let mut w = workload::load(&root.join("workloads"), &args.workload)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut repro = format!("faultline run {} --seed {seed}", args.workload);
    if let Some(t) = args.time_limit {
        w.time_limit = t;
        repro += &format!(" --time-limit {t}");
    }
    if let Some(r) = args.rate {
        w.rate = r;
        repro += &format!(" --rate {r}");
    }
    if let Some(c) = args.concurrency {
        w.concurrency = c;
        repro += &format!(" --concurrency {c}");
    }
    if let Some(n) = args.nodes {
        w.nodes = n;
        repro += &format!(" --nodes {n}");
    }
    if let Some(list) = &args.nemesis {
        if list == "none" {
            w.nemesis = None;
        } else {
            let mut spec = w.nemesis.take().unwrap_or_default();
            spec.faults = list
                .parse::<crate::nemesis::Faults>()
                .map_err(|e| anyhow::anyhow!("--nemesis: {e}"))?
                .0;
            w.nemesis = Some(spec);
        }
        repro += &format!(" --nemesis {list}");
    }
    if let Some(i) = args.nemesis_interval {
        if let Some(spec) = w.nemesis.as_mut() {
            spec.interval = i;
        }
        repro += &format!(" --nemesis-interval {i}");
    }
    if let Some(t) = &args.target {
        w.target_name = t.clone();
        w.resolve_target("--target")?;
        repro += &format!(" --target {t}");
    }
    if args.etcd_serializable_reads {
        w.node.serializable_reads = true;
        repro += " --etcd-serializable-reads";
    }
    if args.faultfs {
        w.node.faultfs = true;
        repro += " --faultfs";
    }
    if args.tls {
        w.tls = true;
        repro += " --tls";
    }
    if let Some(api) = args.etcd_client {
        w.node.etcd_client = api;
        repro += &format!(" --etcd-client {}", api.as_str());
    }
    for bug in &args.bugs {
        w.node.bugs.push(bug.clone());
        repro += &format!(" --bug {bug}");
    }
    if let Some(p) = &args.build {
        repro += &format!(" --build {}", p.display());
    }
    if let Some(p) = &args.engines {
        repro += &format!(" --engines {}", p.display());
    }
    w.validate("command line")?;
    Ok((w, seed, repro))
}

async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let (workload, seed, reproduce) = resolve(&args)?;
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| crate::workspace::root().join("results"));
    let progress = !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let opts = RunOptions {
        workload,
        seed,
        node_bin: args.build.clone(),
        label: args.label.clone(),
        results,
        reproduce,
        progress,
        engines: args
            .engines
            .as_deref()
            .map(control::EnginesFile::load)
            .transpose()?,
    };
    let outcome = runner::run(opts.clone()).await?;
    print_summary(&opts, &outcome);
    Ok(outcome.valid.exit_code() as u8)
}

fn print_summary(opts: &RunOptions, outcome: &runner::RunOutcome) {
    let r = &outcome.checked.results;
    let verdict = r.valid.as_str().to_uppercase();
    println!();
    println!(
        "{} {verdict}{}",
        opts.workload.name,
        if outcome.interrupted {
            " (interrupted: partial history)"
        } else {
            ""
        }
    );
    println!("  {}", runner::summary_line(&outcome.checked));
    for line in r.anomaly_lines() {
        println!("  anomaly: {line}");
    }
    println!("  results:   {}", outcome.dir.path.display());
    println!("  reproduce: {}", opts.reproduce);
}

async fn images(args: ImagesArgs) -> anyhow::Result<u8> {
    let docker = control::connect().await?;
    let images = Images::new(docker, true);
    if !args.list {
        let rebuild = |name: &str| {
            args.rebuild
                .as_deref()
                .is_some_and(|r| r == name || r == "all")
        };
        let root = crate::workspace::root();
        let dir = crate::target::dir(&root);
        let mut names = crate::target::list(&dir);
        names.push("galera".into());
        if !args.targets.is_empty() {
            names.retain(|n| args.targets.contains(n));
        }
        if let Some(r) = &args.rebuild
            && r != "all"
            && r != "base"
            && !names.contains(r)
        {
            anyhow::bail!(
                "--rebuild {r}: no such image (base, all, or one of {})",
                names.join(", ")
            );
        }
        images.ensure_base(rebuild("base")).await?;
        let faultfs = NodeBinary::workspace_faultfs(&root).await?;
        for name in &names {
            if name == "galera" {
                images.ensure_galera(&faultfs, rebuild("galera")).await?;
                continue;
            }
            let target = crate::target::load(&dir, name)?;
            let build = match (&args.build, name.as_str()) {
                (Some(p), "raftkv") => Some(NodeBinary::from_path(
                    p,
                    &format!("--build {}", p.display()),
                )?),
                _ => None,
            };
            images
                .ensure_target(&target, build.as_ref(), &faultfs, rebuild(name))
                .await?;
        }
    }
    let rows = images.list().await.context("listing images")?;
    println!("{:<40} {:<14} {:>9}  created", "image", "id", "size");
    for r in rows {
        let id = r.id.trim_start_matches("sha256:");
        let created = chrono::DateTime::from_timestamp(r.created, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        println!(
            "{:<40} {:<14} {:>7.1}MB  {}",
            r.name,
            &id[..id.len().min(12)],
            r.size as f64 / 1e6,
            created.unwrap_or_default()
        );
    }
    Ok(0)
}

/// The engines of `--engines FILE`, or the local one.
async fn engines_of(file: Option<&std::path::Path>) -> anyhow::Result<control::Engines> {
    let file = match file {
        Some(p) => control::EnginesFile::load(p)?,
        None => control::EnginesFile::local(),
    };
    Ok(control::Engines::connect(&file).await?)
}

async fn swarm(args: SwarmArgs) -> anyhow::Result<u8> {
    let engines = engines_of(args.engines.as_deref()).await?;
    let lines = match args.action {
        SwarmAction::Init => control::swarm::init(&engines).await?,
        SwarmAction::Leave => control::swarm::leave(&engines).await?,
        SwarmAction::Status => control::swarm::status(&engines).await?,
    };
    for l in lines {
        println!("{l}");
    }
    Ok(0)
}

async fn clean(args: CleanArgs) -> anyhow::Result<u8> {
    let engines = engines_of(args.engines.as_deref()).await?;
    let gone = control::clean_engines(&engines.list, None).await?;
    if gone.is_empty() {
        println!(
            "nothing to clean: no container, volume or network carries the {} label",
            control::RUN_LABEL
        );
    } else {
        println!(
            "removed {} containers, {} volumes, {} networks",
            gone.containers.len(),
            gone.volumes.len(),
            gone.networks.len()
        );
        for name in gone
            .containers
            .iter()
            .chain(&gone.volumes)
            .chain(&gone.networks)
        {
            println!("  {name}");
        }
    }
    Ok(0)
}
