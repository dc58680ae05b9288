//! `faultline matrix`: does Faultline find the bugs it should, and only those?
//!
//! The rows are the workload files with a `[matrix]` table: every `workloads/*.toml` that has
//! one, and those of the folders given with `--workloads DIR`. The table names the row and what
//! it expects:
//!
//! ```toml
//! [matrix]
//! label = "my store, stale reads"   # the row's name, unique in the matrix
//! expect = "bug"                    # or "control": then an invalid verdict is a false alarm
//! order = 500                       # optional: rows sort by it (absent: last), then by label
//! ```
//!
//! and an optional `note`, a sentence shown under the label in `matrix.html`. The project's bug
//! rows expose the planted raftkv bugs, etcd's serializable reads, known bugs of Debian's etcd
//! 3.4.23 (watches: etcd-io/etcd#15220, #15271, #20221; leases: #15247), NATS 2.9.10 and MariaDB
//! Galera; its control rows run correct raftkv (registers, appends, lease reads, the revote and
//! figure-8 scripts), etcd (linearizable registers, watches without progress requests, leases
//! without faults), NATS and Galera, where any anomaly is a false alarm. Their `order`s step by
//! 10 (the bugs 10-230, the controls 240-420), so a row of one's own can go between them.
//!
//! Each row runs with several seeds. Per row: the detection rate, the median time from run start
//! to the first anomaly (the counterexample operation's completion), and every verdict. Written
//! to `results/matrix-<stamp>/matrix.{html,json}`; each run's own folder sits beside them.
//! A workload file in those folders that does not parse, or a label used twice, stops the matrix
//! before its first run rather than leaving a row out.

use std::path::{Path, PathBuf};

use anyhow::Context;
use faultline_checker::Validity;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runner::{self, RunOptions};
use crate::workload::{self, Workload};

/// What a row expects of its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum Expect {
    /// A planted or known bug: an invalid verdict is a detection.
    Bug,
    /// A correct system: an invalid verdict is a false alarm.
    Control,
}

impl Expect {
    /// The name used in workload files and in the terminal table.
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Bug => "bug",
            Expect::Control => "control",
        }
    }
}

/// Read through a `String` so that a wrong value's error names the field (toml's own message
/// for an unknown variant names only the value).
impl TryFrom<String> for Expect {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "bug" => Ok(Expect::Bug),
            "control" => Ok(Expect::Control),
            _ => Err(format!(
                "field `matrix.expect`: \"{s}\" is not allowed: \"bug\" (an invalid verdict is a detection) or \"control\" (an invalid verdict is a false alarm)"
            )),
        }
    }
}

/// A workload's `[matrix]` table: it makes the workload a row of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RowSpec {
    /// The row's name, e.g. `raftkv stale-read`; unique in the matrix.
    pub label: String,
    /// A bug to detect or a control.
    pub expect: Expect,
    /// Rows sort by it (rows without one come last), then by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    /// A sentence shown under the label in `matrix.html`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Checks a workload's `[matrix]` table; `Err` holds the field and what is allowed.
pub fn validate(w: &Workload) -> Result<(), (&'static str, String)> {
    let Some(m) = &w.matrix else {
        return Ok(());
    };
    if m.label.trim().is_empty() || m.label.trim() != m.label || m.label.contains('\n') {
        return Err((
            "matrix.label",
            "the row's name: one line, not empty, no spaces around it".into(),
        ));
    }
    if m.note.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(("matrix.note", "a sentence, or no `note` at all".into()));
    }
    Ok(())
}

/// One row of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The workload file's stem, e.g. `bug-stale-read`.
    pub workload: String,
    /// The file, for a row from a folder given with `--workloads`; absent for `workloads/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Its `[matrix]` table.
    #[serde(flatten)]
    pub spec: RowSpec,
}

impl Row {
    /// Whether the row is a bug to detect (else a control).
    pub fn is_bug(&self) -> bool {
        self.spec.expect == Expect::Bug
    }

    /// What `faultline run` takes to run the row's workload: its name, or its file's path.
    pub fn run_arg(&self) -> String {
        match &self.file {
            Some(f) => f.display().to_string(),
            None => self.workload.clone(),
        }
    }
}

/// The rows: every workload with a `[matrix]` table in `workloads` (the project's folder) and in
/// each of `extra`, by `order` (rows without one last), then label.
///
/// # Errors
/// When a workload file in these folders cannot be read or is invalid (naming the file, line and
/// field), when an extra folder does not exist, or when two rows have the same label.
pub fn discover(workloads: &Path, extra: &[PathBuf]) -> anyhow::Result<Vec<Row>> {
    let mut seen = vec![std::fs::canonicalize(workloads).ok()];
    let mut rows = Vec::new();
    let dirs = std::iter::once((workloads, true)).chain(extra.iter().map(|d| (d.as_path(), false)));
    for (dir, project) in dirs {
        if !project {
            let c = std::fs::canonicalize(dir)
                .with_context(|| format!("--workloads {}", dir.display()))?;
            anyhow::ensure!(c.is_dir(), "--workloads {}: not a folder", dir.display());
            if seen.contains(&Some(c.clone())) {
                continue;
            }
            seen.push(Some(c));
        }
        for name in workload::list(dir) {
            let w = workload::load(dir, &name)?;
            if let Some(spec) = w.matrix {
                let file = (!project).then(|| {
                    let f = dir.join(format!("{name}.toml"));
                    std::fs::canonicalize(&f).unwrap_or(f)
                });
                rows.push(Row {
                    workload: name,
                    file,
                    spec,
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        let key = |r: &Row| (r.spec.order.is_none(), r.spec.order);
        key(a)
            .cmp(&key(b))
            .then_with(|| a.spec.label.cmp(&b.spec.label))
    });
    let mut by_label: Vec<&Row> = rows.iter().collect();
    by_label.sort_by(|a, b| a.spec.label.cmp(&b.spec.label));
    if let Some(w) = by_label
        .windows(2)
        .find(|w| w[0].spec.label == w[1].spec.label)
    {
        anyhow::bail!(
            "two workloads name the matrix row '{}': {} and {} (`matrix.label` must be unique)",
            w[0].spec.label,
            w[0].run_arg(),
            w[1].run_arg()
        );
    }
    Ok(rows)
}

/// The rows that `--only` keeps: those whose workload name or label contains one of `only`'s
/// texts; every row when `only` is empty.
pub fn select(rows: Vec<Row>, only: &[String]) -> Vec<Row> {
    rows.into_iter()
        .filter(|r| {
            only.is_empty()
                || only
                    .iter()
                    .any(|o| r.workload.contains(o.as_str()) || r.spec.label.contains(o.as_str()))
        })
        .collect()
}

/// Arguments of `faultline matrix`.
#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// Seeds per row (1, 2, ... N).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// First seed; rows use `first-seed .. first-seed + seeds`.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Seconds of each run's main phase (overrides the workloads' `time-limit`).
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Only rows whose workload or label contains this text (repeatable).
    #[arg(long = "only", value_name = "TEXT")]
    pub only: Vec<String>,
    /// Also the rows of this folder: its workload files with a `[matrix]` table (repeatable).
    #[arg(long = "workloads", value_name = "DIR")]
    pub workloads: Vec<PathBuf>,
    /// Test this raftkv binary instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Run every row over mutual TLS (`tls = true`); rows whose target cannot (no `[node]
    /// tls-args`: NATS, Galera) are left out, and the matrix says which.
    #[arg(long)]
    pub tls: bool,
    /// Where the matrix folder is written [default: results/ in the project folder].
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Spread the cells over the Docker engines of this file: each cell runs whole on one
    /// engine (a bridge network there), images built on the first and copied to the others.
    #[arg(long, value_name = "FILE")]
    pub engines: Option<PathBuf>,
    /// Cells run at once; the k-th runs its cells on engine k mod (number of engines).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,
}

/// One run of a row.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The seed.
    pub seed: u64,
    /// `valid`, `invalid`, `unknown`, `error` (the harness failed; see `note`), or
    /// `interrupted` (Ctrl-C: the matrix stopped there).
    pub verdict: String,
    /// Seconds from run start to the completion of the counterexample's operation.
    pub first_anomaly_s: Option<f64>,
    /// The run's folder, relative to the matrix folder.
    pub dir: Option<String>,
    /// The counterexample's message or the harness error.
    pub note: String,
    /// The engine it ran on (with `--engines`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// A row's runs and what they add up to.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// The row.
    pub row: Row,
    /// Its runs.
    pub cells: Vec<Cell>,
}

impl RowResult {
    /// Runs whose verdict is `invalid`.
    pub fn invalid(&self) -> usize {
        self.cells.iter().filter(|c| c.verdict == "invalid").count()
    }

    /// Runs that finished with a verdict (not a harness error, not interrupted).
    pub fn finished(&self) -> usize {
        self.cells
            .iter()
            .filter(|c| c.verdict != "error" && c.verdict != INTERRUPTED)
            .count()
    }

    /// Median seconds to the first anomaly over the runs that found one.
    pub fn median_first_anomaly(&self) -> Option<f64> {
        let mut t: Vec<f64> = self
            .cells
            .iter()
            .filter_map(|c| c.first_anomaly_s)
            .collect();
        if t.is_empty() {
            return None;
        }
        t.sort_by(f64::total_cmp);
        let n = t.len();
        Some(if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        })
    }

    /// `3/3` style: detections for a bug row, false alarms for a control.
    pub fn rate(&self) -> String {
        format!("{}/{}", self.invalid(), self.finished())
    }
}

/// Seconds from run start to the first anomaly of a checked run: the time of the completion
/// (or, for an operation that never completed, the invocation) of the counterexample's operation.
pub fn first_anomaly(dir: &Path, outcome: &runner::RunOutcome) -> Option<f64> {
    let r = &outcome.checked.results;
    // The watch and lease checkers know when their first violation happened.
    let checked_in_time = [
        r.watch.as_ref().and_then(|w| w.first_violation_time()),
        r.lease.as_ref().and_then(|l| l.first_violation_time()),
        r.queue.as_ref().and_then(|q| q.first_violation_time()),
        r.txn
            .as_ref()
            .and_then(|t| t.first_anomaly_time)
            .map(std::time::Duration::from_nanos),
    ];
    if let Some(t) = checked_in_time.into_iter().flatten().min() {
        return Some(t.as_secs_f64());
    }
    // A lost membership change shows at the first poll that saw it, or at the final member
    // list; whichever of that and a counterexample came first.
    let membership = r
        .membership
        .as_ref()
        .filter(|m| m.valid == Validity::Invalid)
        .map(|m| m.time_s);
    let Some(c) = r.linearizable.as_ref().and_then(|l| l.counterexample()) else {
        return membership;
    };
    let index = c.op.complete_index.unwrap_or(c.op.invoke_index);
    let text = std::fs::read_to_string(dir.join("history.jsonl")).ok()?;
    let counterexample = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|o| o["index"].as_u64() == Some(index))
        .and_then(|o| o["time"].as_u64())
        .map(|ns| ns as f64 / 1e9);
    [counterexample, membership]
        .into_iter()
        .flatten()
        .reduce(f64::min)
}

/// The verdict of a run stopped by Ctrl-C; the matrix stops after it.
const INTERRUPTED: &str = "interrupted";

/// Runs the matrix; the exit code is 1 when a control row raised a false alarm, 130 when
/// Ctrl-C stopped it (the outputs then hold the rows so far), else 0.
///
/// # Errors
/// When a workload file in the rows' folders is invalid ([`discover`]) or the matrix folder
/// cannot be written. A run that fails is recorded as an `error` cell, and the matrix goes on.
pub async fn run(args: MatrixArgs) -> anyhow::Result<u8> {
    let root = crate::workspace::root();
    let mut rows = select(
        discover(&root.join("workloads"), &args.workloads)?,
        &args.only,
    );
    if args.tls {
        let (over_tls, plain): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| {
            workload::load(&root.join("workloads"), &r.run_arg()).map_or(true, |w| {
                w.system.as_ref().is_some_and(|t| t.node.tls_args.is_some())
            })
        });
        for r in &plain {
            eprintln!(
                "faultline matrix: --tls leaves out '{}': its target has no `[node] tls-args`",
                r.spec.label
            );
        }
        rows = over_tls;
    }
    let results = args.results.clone().unwrap_or_else(|| root.join("results"));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let dir = results.join(format!("matrix-{stamp}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = format!(
        "faultline matrix --seeds {} --first-seed {}",
        args.seeds, args.first_seed
    );
    if let Some(t) = args.time_limit {
        command += &format!(" --time-limit {t}");
    }
    for o in &args.only {
        command += &format!(" --only {o}");
    }
    if args.tls {
        command += " --tls";
    }
    for d in &args.workloads {
        command += &format!(" --workloads {}", d.display());
    }
    let engines = args
        .engines
        .as_deref()
        .map(crate::control::EnginesFile::load)
        .transpose()?;
    if let Some(p) = &args.engines {
        command += &format!(" --engines {}", p.display());
    }
    if args.parallel > 1 {
        command += &format!(" --parallel {}", args.parallel);
    }
    eprintln!(
        "faultline matrix: {} rows x {} seeds -> {}{}",
        rows.len(),
        args.seeds,
        dir.display(),
        match &engines {
            Some(f) => format!(
                " ({} at once on engines {})",
                args.parallel,
                f.engines
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None if args.parallel > 1 => format!(" ({} at once)", args.parallel),
            None => String::new(),
        }
    );
    let started = std::time::Instant::now();
    // The cells in row order, seeds ascending; the workers take them from the front.
    let queue: std::sync::Mutex<std::collections::VecDeque<(usize, u64)>> = std::sync::Mutex::new(
        (0..rows.len())
            .flat_map(|r| (args.first_seed..args.first_seed + args.seeds).map(move |s| (r, s)))
            .collect(),
    );
    let done: std::sync::Mutex<std::collections::BTreeMap<(usize, u64), Cell>> =
        std::sync::Mutex::default();
    let interrupted = std::sync::atomic::AtomicBool::new(false);
    let n_engines = engines.as_ref().map_or(1, |f| f.engines.len());
    let worker = |k: usize| {
        let (queue, done, interrupted, rows, engines, root, dir, args) = (
            &queue,
            &done,
            &interrupted,
            &rows,
            &engines,
            &root,
            &dir,
            &args,
        );
        let command = command.clone();
        async move {
            loop {
                if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some((r, seed)) = next else { break };
                let row = &rows[r];
                let on = engines.as_ref().map(|f| f.only(k % n_engines));
                let mut cell = run_cell(args, root, dir, row, seed, on.clone()).await;
                cell.engine = on.map(|f| f.engines[0].name.clone());
                eprintln!(
                    "  {:<38} seed {seed:<3} {:<8} {}{}",
                    row.spec.label,
                    cell.verdict,
                    cell.first_anomaly_s
                        .map(|t| format!("first anomaly at {} s", seconds(t)))
                        .unwrap_or_default(),
                    cell.engine
                        .as_deref()
                        .map(|e| format!(" [engine {e}]"))
                        .unwrap_or_default()
                );
                if cell.verdict == INTERRUPTED {
                    interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                let out = {
                    let mut done = done.lock().unwrap_or_else(|p| p.into_inner());
                    done.insert((r, seed), cell);
                    gather(rows, &done)
                };
                // Rewrite the outputs after every cell, so an interrupted matrix still has its
                // numbers.
                if let Err(e) = write_outputs(dir, &command, &out) {
                    eprintln!("faultline matrix: {e:#}");
                }
            }
        }
    };
    let workers = (0..args.parallel as usize).map(worker);
    futures_util::future::join_all(workers).await;
    let out = gather(&rows, &done.lock().unwrap_or_else(|p| p.into_inner()));
    write_outputs(&dir, &command, &out)?;
    let cells: usize = out.iter().map(|r| r.cells.len()).sum();
    let wall = started.elapsed().as_secs_f64();
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        println!("{}", table(&out));
        println!(
            "matrix: interrupted; the rows so far are in {}",
            dir.display()
        );
        return Ok(130);
    }
    println!("{}", table(&out));
    println!("matrix: {}", dir.join("matrix.html").display());
    println!(
        "matrix: {cells} cells in {wall:.0} s wall time, {} at once",
        args.parallel
    );
    println!("command: {command}");
    let false_alarm = out.iter().any(|r| !r.row.is_bug() && r.invalid() > 0);
    Ok(u8::from(false_alarm))
}

/// The rows that have cells so far, each with its cells by seed.
fn gather(rows: &[Row], done: &std::collections::BTreeMap<(usize, u64), Cell>) -> Vec<RowResult> {
    rows.iter()
        .enumerate()
        .filter_map(|(r, row)| {
            let cells: Vec<Cell> = done
                .range((r, 0)..=(r, u64::MAX))
                .map(|(_, c)| c.clone())
                .collect();
            (!cells.is_empty()).then(|| RowResult {
                row: row.clone(),
                cells,
            })
        })
        .collect()
}

async fn run_cell(
    args: &MatrixArgs,
    root: &Path,
    dir: &Path,
    row: &Row,
    seed: u64,
    engines: Option<crate::control::EnginesFile>,
) -> Cell {
    let error = |note: String| Cell {
        seed,
        verdict: "error".into(),
        first_anomaly_s: None,
        dir: None,
        note,
        engine: None,
    };
    let mut w = match workload::load(&root.join("workloads"), &row.run_arg()) {
        Ok(w) => w,
        Err(e) => return error(e.to_string()),
    };
    let mut reproduce = format!("faultline run {} --seed {seed}", row.run_arg());
    if args.tls {
        w.tls = true;
        reproduce += " --tls";
    }
    if let Some(t) = args.time_limit {
        w.time_limit = t;
        reproduce += &format!(" --time-limit {t}");
    }
    let node_bin = match w.target {
        workload::Target::Raftkv => args.node_bin.clone(),
        _ => None,
    };
    if let Some(p) = &node_bin {
        reproduce += &format!(" --node-bin {}", p.display());
    }
    let opts = RunOptions {
        workload: w,
        seed,
        node_bin,
        label: Some(row.spec.label.clone()),
        results: dir.to_path_buf(),
        reproduce,
        progress: false,
        engines,
    };
    match runner::run(opts).await {
        Ok(outcome) => Cell {
            seed,
            // An interrupted run's partial history may well check valid: it says nothing.
            verdict: if outcome.interrupted {
                INTERRUPTED.to_string()
            } else {
                outcome.valid.as_str().to_string()
            },
            first_anomaly_s: (outcome.valid == Validity::Invalid && !outcome.interrupted)
                .then(|| first_anomaly(&outcome.dir.path, &outcome))
                .flatten(),
            dir: outcome
                .dir
                .path
                .strip_prefix(dir)
                .ok()
                .map(|p| p.display().to_string()),
            note: outcome.checked.results.anomaly_lines().join("; "),
            engine: None,
        },
        Err(e) => error(format!("{e:#}")),
    }
}

/// The terminal table.
pub fn table(rows: &[RowResult]) -> String {
    let mut s = format!(
        "{:<38} {:<8} {:>10} {:>16}  verdicts\n",
        "row", "kind", "detected", "median 1st (s)"
    );
    for r in rows {
        let verdicts: Vec<String> = r
            .cells
            .iter()
            .map(|c| format!("{}:{}", c.seed, c.verdict))
            .collect();
        s += &format!(
            "{:<38} {:<8} {:>10} {:>16}  {}\n",
            r.row.spec.label,
            r.row.spec.expect.as_str(),
            if r.row.is_bug() {
                r.rate()
            } else {
                format!("{} false", r.rate())
            },
            r.median_first_anomaly()
                .map(seconds)
                .unwrap_or_else(|| "-".into()),
            verdicts.join(" ")
        );
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `matrix.html`: one self-contained page.
pub fn html(command: &str, rows: &[RowResult]) -> String {
    let mut body = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .cells
            .iter()
            .map(|c| {
                let text = format!(
                    "seed {} {}{}",
                    c.seed,
                    c.verdict,
                    c.first_anomaly_s
                        .map(|t| format!(" @ {t:.1} s"))
                        .unwrap_or_default()
                );
                let text = match &c.dir {
                    Some(d) => format!("<a href=\"{}/\">{}</a>", esc(d), esc(&text)),
                    None => esc(&text),
                };
                format!(
                    "<span class=\"{}\" title=\"{}\">{text}</span>",
                    esc(&c.verdict),
                    esc(&c.note)
                )
            })
            .collect();
        let note = match &r.row.spec.note {
            Some(n) => format!("<br><small>{}</small>", esc(n)),
            None => String::new(),
        };
        body += &format!(
            "<tr><td>{}{note}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&r.row.spec.label),
            if r.row.is_bug() { "bug" } else { "control" },
            esc(&r.row.run_arg()),
            if r.row.is_bug() {
                format!("detected {}", r.rate())
            } else {
                format!("false alarms {}", r.rate())
            },
            r.median_first_anomaly()
                .map(|t| format!("{} s", seconds(t)))
                .unwrap_or_else(|| "-".into()),
            cells.join("<br>")
        );
    }
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Faultline detection matrix</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
.invalid {{ color: #b00; font-weight: bold; }} .valid {{ color: #070; }}
.unknown {{ color: #a60; }} .error {{ color: #555; font-style: italic; }}
</style></head><body>
<h1>Detection matrix</h1>
<p>Each bug row (a planted or known bug) should end <span class="invalid">invalid</span>; each
control row should end <span class="valid">valid</span> (an invalid control is a false alarm).
"First anomaly" is the time from run start to the completion of the counterexample's operation.
The rows are the workload files with a <code>[matrix]</code> table.</p>
<p>Command: <code>{}</code></p>
<table>
<tr><th>row</th><th>kind</th><th>workload</th><th>rate</th><th>median first anomaly</th><th>runs</th></tr>
{body}</table>
</body></html>
"#,
        esc(command)
    )
}

fn write_outputs(dir: &Path, command: &str, rows: &[RowResult]) -> anyhow::Result<()> {
    std::fs::write(dir.join("matrix.html"), html(command, rows))
        .with_context(|| format!("writing {}", dir.join("matrix.html").display()))?;
    let json = serde_json::json!({ "command": command, "rows": rows });
    std::fs::write(
        dir.join("matrix.json"),
        serde_json::to_string_pretty(&json)?,
    )
    .with_context(|| format!("writing {}", dir.join("matrix.json").display()))?;
    Ok(())
}

/// Seconds to the first anomaly as the tables show them: one decimal, or two significant
/// digits below a second (a race found in 14 ms reads 0.014, not 0.0).
fn seconds(t: f64) -> String {
    if t > 0.0 && t < 1.0 {
        let decimals = (1.0 - t.log10().floor()) as usize;
        format!("{t:.decimals$}")
    } else {
        format!("{t:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_workloads() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads")
    }

    fn project_rows() -> Vec<Row> {
        discover(&project_workloads(), &[]).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A valid register workload followed by `matrix`, a `[matrix]` table; its line 8 is the
    /// table's first line.
    fn workload_with(matrix: &str) -> String {
        format!(
            "description = \"test\"\ntime-limit = 10\nrate = 50\nconcurrency = 4\n[ops]\nread = 2\nwrite = 1\n{matrix}"
        )
    }

    fn cell(seed: u64, verdict: &str, t: Option<f64>) -> Cell {
        Cell {
            seed,
            verdict: verdict.into(),
            first_anomaly_s: t,
            dir: None,
            note: String::new(),
            engine: None,
        }
    }

    #[test]
    fn sub_second_times_keep_two_significant_digits() {
        assert_eq!(seconds(0.013_8), "0.014");
        assert_eq!(seconds(0.2), "0.20");
        assert_eq!(seconds(0.0), "0.0");
        assert_eq!(seconds(5.74), "5.7");
        assert_eq!(seconds(31.7), "31.7");
    }

    #[test]
    fn rates_and_medians_count_only_finished_runs() {
        let row = Row {
            workload: "bug-stale-read".into(),
            file: None,
            spec: RowSpec {
                label: "raftkv stale-read".into(),
                expect: Expect::Bug,
                order: Some(10),
                note: Some("Found before any fault <fast>.".into()),
            },
        };
        let r = RowResult {
            row,
            cells: vec![
                cell(1, "invalid", Some(4.0)),
                cell(2, "valid", None),
                cell(3, "invalid", Some(10.0)),
                cell(4, "error", None),
                cell(5, INTERRUPTED, None),
            ],
        };
        assert_eq!(r.rate(), "2/3");
        assert_eq!(r.median_first_anomaly(), Some(7.0));
        let t = table(std::slice::from_ref(&r));
        assert!(
            t.contains("2/3") && t.contains("7.0") && t.contains("3:invalid"),
            "{t}"
        );
        let h = html("faultline matrix", &[r]);
        assert!(h.contains("detected 2/3"), "{h}");
        assert!(
            h.contains("<small>Found before any fault &lt;fast&gt;.</small>"),
            "{h}"
        );
    }

    /// The rows the list in Rust (`ROWS`) had when they moved into the workload files: the
    /// same labels, files and kinds, in the same order; and the Redis tutorial's two rows and the
    /// membership rows since.
    #[test]
    fn the_project_rows_are_the_ones_the_list_in_rust_had_in_its_order() {
        #[rustfmt::skip]
        let want: &[(&str, &str, Expect)] = &[
            ("raftkv stale-read",                      "bug-stale-read",                  Expect::Bug),
            ("raftkv forget-vote",                     "bug-forget-vote",                 Expect::Bug),
            ("raftkv commit-old-term",                 "bug-commit-old-term",             Expect::Bug),
            ("raftkv skip-prev-check",                 "bug-skip-prev-check",             Expect::Bug),
            ("raftkv early-ack",                       "bug-early-ack",                   Expect::Bug),
            ("raftkv lease-ignores-skew",              "bug-lease-ignores-skew",          Expect::Bug),
            ("raftkv no-fsync",                        "bug-raftkv-no-fsync",             Expect::Bug),
            ("raftkv txn-split",                       "bug-raftkv-txn-split",            Expect::Bug),
            ("raftkv cas-stale-compare",               "bug-raftkv-cas-stale",            Expect::Bug),
            ("raftkv conf-change-concurrent",          "bug-conf-change-concurrent",      Expect::Bug),
            ("etcd serializable reads",                "bug-etcd-serializable",           Expect::Bug),
            ("etcd watch progress (#15220)",           "bug-etcd-watch-progress",         Expect::Bug),
            ("etcd watch after snapshot (#15271)",     "bug-etcd-watch-snapshot",         Expect::Bug),
            ("etcd future watch, snapshot (#20221)",   "bug-etcd-watch-future",           Expect::Bug),
            ("etcd lease, stalled disk (#15247)",      "bug-etcd-lease-stall",            Expect::Bug),
            ("nats KV cas race (#4320)",               "bug-nats-kv-cas",                 Expect::Bug),
            ("nats direct reads, partitions",          "bug-nats-kv-direct",              Expect::Bug),
            ("nats KV leader reads, stale leader",     "bug-nats-kv-leader",              Expect::Bug),
            ("nats queue, power failure (all)",        "bug-nats-queue-power",            Expect::Bug),
            ("nats queue, corrupt .blk (minority)",    "bug-nats-queue-corrupt",          Expect::Bug),
            ("galera RR, read committed",              "bug-galera-rr",                   Expect::Bug),
            ("galera RR, kills, read committed",       "bug-galera-rr-kill",              Expect::Bug),
            ("galera snapshot isolation",              "bug-galera-si",                   Expect::Bug),
            ("galera SI, prepared statements",         "bug-galera-prepared",             Expect::Bug),
            ("redis sentinel, primary cut off",        "redis-sentinel",                  Expect::Bug),
            ("raftkv correct (control)",               "matrix-raftkv-correct",           Expect::Control),
            ("raftkv correct, appends (control)",      "matrix-raftkv-append",            Expect::Control),
            ("raftkv correct, transactions (control)", "matrix-raftkv-txn",               Expect::Control),
            ("raftkv correct, cas (control)",          "matrix-raftkv-cas",               Expect::Control),
            ("raftkv correct, lease reads (control)",  "matrix-raftkv-lease",             Expect::Control),
            ("raftkv correct, revote (control)",       "matrix-raftkv-revote",            Expect::Control),
            ("raftkv correct, figure-8 (control)",     "matrix-raftkv-figure-8",          Expect::Control),
            ("raftkv correct, power (control)",        "matrix-raftkv-power",             Expect::Control),
            ("raftkv correct, corrupt (control)",      "matrix-raftkv-corrupt",           Expect::Control),
            ("raftkv member + partition (control)",    "matrix-raftkv-member",            Expect::Control),
            ("etcd linearizable (control)",            "matrix-etcd-linearizable",        Expect::Control),
            ("etcd transactions (control)",            "matrix-etcd-txn",                 Expect::Control),
            ("etcd power (control)",                   "matrix-etcd-power",               Expect::Control),
            ("etcd corrupt (control)",                 "matrix-etcd-corrupt",             Expect::Control),
            ("etcd member + partition (control)",      "matrix-etcd-member",              Expect::Control),
            ("galera serializable (control)",          "matrix-galera-serializable",      Expect::Control),
            ("galera serializable, kills (control)",   "matrix-galera-serializable-kill", Expect::Control),
            ("nats queue, kill (control)",             "matrix-nats-queue-kill",          Expect::Control),
            ("nats queue, partitions (control)",       "matrix-nats-queue-partition",     Expect::Control),
            ("nats queue, member + partition (control)", "matrix-nats-member",            Expect::Control),
            ("etcd watches (control)",                 "matrix-etcd-watch",               Expect::Control),
            ("etcd leases (control)",                  "matrix-etcd-lease",               Expect::Control),
            ("redis sentinel, no faults (control)",    "redis-sentinel-none",             Expect::Control),
        ];
        let rows = project_rows();
        let got: Vec<(&str, &str, Expect)> = rows
            .iter()
            .map(|r| (r.spec.label.as_str(), r.workload.as_str(), r.spec.expect))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_row_is_a_shipped_workload_of_the_right_kind() {
        let dir = project_workloads();
        let rows = project_rows();
        let loaded: Vec<(&Row, Workload)> = rows
            .iter()
            .map(|r| (r, workload::load(&dir, &r.workload).unwrap()))
            .collect();
        // A control that plants nothing, with its bug row's workload otherwise unchanged.
        let twin = |w: &Workload| Workload {
            name: String::new(),
            description: String::new(),
            matrix: None,
            node: workload::NodeOptions {
                bugs: Vec::new(),
                ..w.node.clone()
            },
            ..w.clone()
        };
        for (row, w) in &loaded {
            assert!(row.file.is_none(), "{}", row.workload);
            if w.target == workload::Target::Exec {
                // A user's system from a target file (redis-sentinel: the tutorial's) keeps the
                // name a user would give it.
                continue;
            }
            // A bug row is a `bug-*` file aimed at a planted raftkv bug, etcd's serializable
            // reads or an upstream bug; a control is a `matrix-*` file.
            assert_eq!(
                row.workload.starts_with("bug-"),
                row.is_bug(),
                "{}",
                row.workload
            );
            assert_eq!(
                row.workload.starts_with("matrix-"),
                !row.is_bug(),
                "{}",
                row.workload
            );
            if w.target == workload::Target::Raftkv {
                // A control runs correct raftkv.
                assert_eq!(w.node.bugs.is_empty(), !row.is_bug(), "{}", row.workload);
            }
            if w.nemesis.is_some() || w.target != workload::Target::Raftkv {
                continue;
            }
            // raftkv's planted consensus bugs and their controls need faults. Two bugs do not:
            // an isolation bug (txn-split) and one that a follower's ordinary replication lag
            // shows (cas-stale-compare), as real systems' bugs may not (etcd-io/etcd#15220,
            // nats-server#4320 show without any). That is the bugs' property, so it is named
            // here by bug; a control without faults must be the twin of such a bug row: its
            // workload, planting nothing.
            if row.is_bug() {
                assert!(
                    w.node
                        .bugs
                        .iter()
                        .all(|b| ["txn-split", "cas-stale-compare"].contains(&b.as_str())),
                    "{} has no faults",
                    row.workload
                );
            } else {
                assert!(
                    loaded
                        .iter()
                        .any(|(r, b)| r.is_bug() && b.nemesis.is_none() && twin(b) == twin(w)),
                    "{} has no faults and is no fault-free bug row's twin",
                    row.workload
                );
            }
        }
    }

    #[test]
    fn a_bad_matrix_table_is_named_with_its_file_line_and_field() {
        let bad_expect = workload_with("[matrix]\nlabel = \"mine\"\nexpect = \"bugs\"\n");
        let err = workload::parse(&bad_expect, "workloads/x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("workloads/x.toml: line 10"), "{err}");
        assert!(
            err.contains("`matrix.expect`") && err.contains("\"bugs\"") && err.contains("control"),
            "{err}"
        );
        let unknown = workload_with("[matrix]\nlabel = \"mine\"\nexpect = \"bug\"\nodrer = 3\n");
        let err = workload::parse(&unknown, "workloads/x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("workloads/x.toml: line 11"), "{err}");
        assert!(err.contains("odrer") && err.contains("order"), "{err}");
        let no_label = workload_with("[matrix]\nlabel = \" \"\nexpect = \"bug\"\n");
        let err = workload::parse(&no_label, "w.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("w.toml: field `matrix.label`"), "{err}");
        // The matrix refuses to start rather than leave the row out.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.toml"), &bad_expect).unwrap();
        let err = discover(&project_workloads(), &[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mine.toml: line 10") && err.contains("`matrix.expect`"),
            "{err}"
        );
    }

    #[test]
    fn a_users_row_in_another_folder_joins_the_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, matrix: &str| {
            std::fs::write(dir.path().join(name), workload_with(matrix)).unwrap();
        };
        write(
            "my-store.toml",
            "[matrix]\nlabel = \"my store, stale reads\"\nexpect = \"bug\"\n",
        );
        write(
            "my-early.toml",
            "[matrix]\nlabel = \"my store, early\"\nexpect = \"control\"\norder = 15\n",
        );
        write("not-a-row.toml", "");
        let project = project_workloads();
        // The project's folder given again adds nothing.
        let rows = discover(&project, &[dir.path().to_path_buf(), project.clone()]).unwrap();
        assert_eq!(rows.len(), project_rows().len() + 2);
        let labels: Vec<&str> = rows.iter().map(|r| r.spec.label.as_str()).collect();
        // Order 15 sorts between the project's 10 and 20; no order sorts last.
        assert_eq!(
            labels[..3],
            ["raftkv stale-read", "my store, early", "raftkv forget-vote"]
        );
        let mine = rows.last().unwrap();
        assert_eq!(mine.spec.label, "my store, stale reads");
        assert!(mine.is_bug());
        assert_eq!(mine.workload, "my-store");
        // `faultline run` (and the matrix's own run) takes the file's path.
        let path = mine.run_arg();
        assert!(path.ends_with("my-store.toml"), "{path}");
        assert_eq!(
            workload::load(&project, &path).unwrap().matrix,
            Some(mine.spec.clone())
        );
        // --only picks it by its file's name (not its folder's) or its label.
        let only = |o: &str| select(rows.clone(), &[o.to_string()]).len();
        assert_eq!(only("my-store"), 1);
        assert_eq!(only("my store"), 2);
        let folder = dir.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(only(folder), 0);
        assert_eq!(select(rows.clone(), &[]).len(), rows.len());
    }

    #[test]
    fn a_label_used_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            workload_with("[matrix]\nlabel = \"raftkv stale-read\"\nexpect = \"bug\"\n"),
        )
        .unwrap();
        let err = discover(&project_workloads(), &[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'raftkv stale-read'")
                && err.contains("bug-stale-read")
                && err.contains("mine.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_extra_folder_is_an_error() {
        let err = discover(&project_workloads(), &[PathBuf::from("/no/such/folder")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--workloads /no/such/folder"), "{err}");
    }
}
