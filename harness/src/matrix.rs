//! `faultline matrix`: does Faultline find the bugs it should, and only those?
//!
//! Each row is a workload file chosen to expose one planted raftkv bug, etcd's serializable reads,
//! or a known bug of Debian's etcd 3.4.23 (watches: etcd-io/etcd#15220, #15271, #20221; leases:
//! #15247), run with several seeds; the control rows run correct raftkv (registers, appends,
//! lease reads, the revote and figure-8 scripts) and etcd (linearizable registers, watches
//! without progress requests, leases without faults), where any anomaly is a false alarm. Per row: the detection
//! rate, the median time from run start to the first anomaly (the counterexample operation's
//! completion), and every verdict. Written to `results/matrix-<stamp>/matrix.{html,json}`; each
//! run's own folder sits beside them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use faultline_checker::Validity;
use serde::Serialize;
use serde_json::Value;

use crate::runner::{self, RunOptions};
use crate::workload;

/// One row of the matrix.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Row {
    /// What is tested, e.g. `stale-read`.
    pub label: &'static str,
    /// The workload file (in `workloads/`).
    pub workload: &'static str,
    /// True for a planted bug (an invalid verdict is a detection); false for a control (an
    /// invalid verdict is a false alarm).
    pub buggy: bool,
}

/// The rows, in order: the nine planted raftkv bugs, etcd's serializable reads, the four etcd
/// 3.4.23 bugs, the five NATS 2.9.10 rows, four MariaDB Galera rows, then the controls.
pub const ROWS: &[Row] = &[
    Row {
        label: "raftkv stale-read",
        workload: "bug-stale-read",
        buggy: true,
    },
    Row {
        label: "raftkv forget-vote",
        workload: "bug-forget-vote",
        buggy: true,
    },
    Row {
        label: "raftkv commit-old-term",
        workload: "bug-commit-old-term",
        buggy: true,
    },
    Row {
        label: "raftkv skip-prev-check",
        workload: "bug-skip-prev-check",
        buggy: true,
    },
    Row {
        label: "raftkv early-ack",
        workload: "bug-early-ack",
        buggy: true,
    },
    Row {
        label: "raftkv lease-ignores-skew",
        workload: "bug-lease-ignores-skew",
        buggy: true,
    },
    Row {
        label: "raftkv no-fsync",
        workload: "bug-raftkv-no-fsync",
        buggy: true,
    },
    Row {
        label: "raftkv txn-split",
        workload: "bug-raftkv-txn-split",
        buggy: true,
    },
    Row {
        label: "raftkv cas-stale-compare",
        workload: "bug-raftkv-cas-stale",
        buggy: true,
    },
    Row {
        label: "etcd serializable reads",
        workload: "bug-etcd-serializable",
        buggy: true,
    },
    Row {
        label: "etcd watch progress (#15220)",
        workload: "bug-etcd-watch-progress",
        buggy: true,
    },
    Row {
        label: "etcd watch after snapshot (#15271)",
        workload: "bug-etcd-watch-snapshot",
        buggy: true,
    },
    Row {
        label: "etcd future watch, snapshot (#20221)",
        workload: "bug-etcd-watch-future",
        buggy: true,
    },
    Row {
        label: "etcd lease, stalled disk (#15247)",
        workload: "bug-etcd-lease-stall",
        buggy: true,
    },
    Row {
        label: "nats KV cas race (#4320)",
        workload: "bug-nats-kv-cas",
        buggy: true,
    },
    Row {
        label: "nats direct reads, partitions",
        workload: "bug-nats-kv-direct",
        buggy: true,
    },
    Row {
        label: "nats KV leader reads, stale leader",
        workload: "bug-nats-kv-leader",
        buggy: true,
    },
    Row {
        label: "nats queue, power failure (all)",
        workload: "bug-nats-queue-power",
        buggy: true,
    },
    Row {
        label: "nats queue, corrupt .blk (minority)",
        workload: "bug-nats-queue-corrupt",
        buggy: true,
    },
    Row {
        label: "galera RR, read committed",
        workload: "bug-galera-rr",
        buggy: true,
    },
    Row {
        label: "galera RR, kills, read committed",
        workload: "bug-galera-rr-kill",
        buggy: true,
    },
    Row {
        label: "galera snapshot isolation",
        workload: "bug-galera-si",
        buggy: true,
    },
    Row {
        label: "galera SI, prepared statements",
        workload: "bug-galera-prepared",
        buggy: true,
    },
    Row {
        label: "raftkv correct (control)",
        workload: "matrix-raftkv-correct",
        buggy: false,
    },
    Row {
        label: "raftkv correct, appends (control)",
        workload: "matrix-raftkv-append",
        buggy: false,
    },
    Row {
        label: "raftkv correct, transactions (control)",
        workload: "matrix-raftkv-txn",
        buggy: false,
    },
    Row {
        label: "raftkv correct, cas (control)",
        workload: "matrix-raftkv-cas",
        buggy: false,
    },
    Row {
        label: "raftkv correct, lease reads (control)",
        workload: "matrix-raftkv-lease",
        buggy: false,
    },
    Row {
        label: "raftkv correct, revote (control)",
        workload: "matrix-raftkv-revote",
        buggy: false,
    },
    Row {
        label: "raftkv correct, figure-8 (control)",
        workload: "matrix-raftkv-figure-8",
        buggy: false,
    },
    Row {
        label: "raftkv correct, power (control)",
        workload: "matrix-raftkv-power",
        buggy: false,
    },
    Row {
        label: "raftkv correct, corrupt (control)",
        workload: "matrix-raftkv-corrupt",
        buggy: false,
    },
    Row {
        label: "etcd linearizable (control)",
        workload: "matrix-etcd-linearizable",
        buggy: false,
    },
    Row {
        label: "etcd transactions (control)",
        workload: "matrix-etcd-txn",
        buggy: false,
    },
    Row {
        label: "etcd power (control)",
        workload: "matrix-etcd-power",
        buggy: false,
    },
    Row {
        label: "etcd corrupt (control)",
        workload: "matrix-etcd-corrupt",
        buggy: false,
    },
    Row {
        label: "galera serializable (control)",
        workload: "matrix-galera-serializable",
        buggy: false,
    },
    Row {
        label: "galera serializable, kills (control)",
        workload: "matrix-galera-serializable-kill",
        buggy: false,
    },
    Row {
        label: "nats queue, kill (control)",
        workload: "matrix-nats-queue-kill",
        buggy: false,
    },
    Row {
        label: "nats queue, partitions (control)",
        workload: "matrix-nats-queue-partition",
        buggy: false,
    },
    Row {
        label: "etcd watches (control)",
        workload: "matrix-etcd-watch",
        buggy: false,
    },
    Row {
        label: "etcd leases (control)",
        workload: "matrix-etcd-lease",
        buggy: false,
    },
];

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
    /// Test this raftkv binary instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Where the matrix folder is written [default: results/ in the project folder].
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
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
    let c = r.linearizable.as_ref()?.counterexample()?;
    let index = c.op.complete_index.unwrap_or(c.op.invoke_index);
    let text = std::fs::read_to_string(dir.join("history.jsonl")).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|o| o["index"].as_u64() == Some(index))
        .and_then(|o| o["time"].as_u64())
        .map(|ns| ns as f64 / 1e9)
}

/// The verdict of a run stopped by Ctrl-C; the matrix stops after it.
const INTERRUPTED: &str = "interrupted";

/// Runs the matrix; the exit code is 1 when a control row raised a false alarm, 130 when
/// Ctrl-C stopped it (the outputs then hold the rows so far), else 0.
///
/// # Errors
/// When a workload file is missing or the matrix folder cannot be written. A run that fails is
/// recorded as an `error` cell, and the matrix goes on.
pub async fn run(args: MatrixArgs) -> anyhow::Result<u8> {
    let root = crate::workspace::root();
    let results = args.results.clone().unwrap_or_else(|| root.join("results"));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let dir = results.join(format!("matrix-{stamp}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rows: Vec<Row> = ROWS
        .iter()
        .copied()
        .filter(|r| {
            args.only.is_empty()
                || args
                    .only
                    .iter()
                    .any(|o| r.workload.contains(o.as_str()) || r.label.contains(o.as_str()))
        })
        .collect();
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
    eprintln!(
        "faultline matrix: {} rows x {} seeds -> {}",
        rows.len(),
        args.seeds,
        dir.display()
    );
    let mut out: Vec<RowResult> = Vec::new();
    for row in rows {
        let mut cells = Vec::new();
        let mut interrupted = false;
        for seed in args.first_seed..args.first_seed + args.seeds {
            let cell = run_cell(&args, &root, &dir, row, seed).await;
            eprintln!(
                "  {:<38} seed {seed:<3} {:<8} {}",
                row.label,
                cell.verdict,
                cell.first_anomaly_s
                    .map(|t| format!("first anomaly at {} s", seconds(t)))
                    .unwrap_or_default()
            );
            interrupted = cell.verdict == INTERRUPTED;
            cells.push(cell);
            if interrupted {
                break;
            }
        }
        out.push(RowResult { row, cells });
        // Rewrite the outputs after every row, so an interrupted matrix still has its numbers.
        write_outputs(&dir, &command, &out)?;
        if interrupted {
            println!("{}", table(&out));
            println!(
                "matrix: interrupted; the rows so far are in {}",
                dir.display()
            );
            return Ok(130);
        }
    }
    println!("{}", table(&out));
    println!("matrix: {}", dir.join("matrix.html").display());
    println!("command: {command}");
    let false_alarm = out.iter().any(|r| !r.row.buggy && r.invalid() > 0);
    Ok(u8::from(false_alarm))
}

async fn run_cell(args: &MatrixArgs, root: &Path, dir: &Path, row: Row, seed: u64) -> Cell {
    let error = |note: String| Cell {
        seed,
        verdict: "error".into(),
        first_anomaly_s: None,
        dir: None,
        note,
    };
    let mut w = match workload::load(&root.join("workloads"), row.workload) {
        Ok(w) => w,
        Err(e) => return error(e.to_string()),
    };
    let mut reproduce = format!("faultline run {} --seed {seed}", row.workload);
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
        label: Some(row.label.to_string()),
        results: dir.to_path_buf(),
        reproduce,
        progress: false,
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
            r.row.label,
            if r.row.buggy { "bug" } else { "control" },
            if r.row.buggy {
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
        body += &format!(
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(r.row.label),
            if r.row.buggy {
                "planted bug"
            } else {
                "control"
            },
            esc(r.row.workload),
            if r.row.buggy {
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
<p>Each planted-bug row should end <span class="invalid">invalid</span>; each control row should
end <span class="valid">valid</span> (an invalid control is a false alarm). "First anomaly" is the
time from run start to the completion of the counterexample's operation.</p>
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

    fn cell(seed: u64, verdict: &str, t: Option<f64>) -> Cell {
        Cell {
            seed,
            verdict: verdict.into(),
            first_anomaly_s: t,
            dir: None,
            note: String::new(),
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
        let r = RowResult {
            row: ROWS[0],
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
        assert!(html("faultline matrix", &[r]).contains("detected 2/3"));
    }

    #[test]
    fn every_row_names_a_shipped_workload_of_the_right_kind() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
        for row in ROWS {
            let w = workload::load(&dir, row.workload).unwrap_or_else(|e| panic!("{e}"));
            // A bug row is a `bug-*` file aimed at a planted raftkv bug, etcd's serializable
            // reads or an upstream etcd bug; a control is a `matrix-*` file.
            assert_eq!(
                row.workload.starts_with("bug-"),
                row.buggy,
                "{}",
                row.workload
            );
            assert_eq!(
                row.workload.starts_with("matrix-"),
                !row.buggy,
                "{}",
                row.workload
            );
            if w.target == workload::Target::Raftkv && row.buggy {
                assert!(!w.node.bugs.is_empty(), "{} plants no bug", row.workload);
            }
            if w.target == workload::Target::Raftkv && !row.buggy {
                assert!(w.node.bugs.is_empty(), "{} plants a bug", row.workload);
            }
            // raftkv's planted consensus bugs and their controls all need faults; an isolation
            // bug (txn-split), a follower's ordinary replication lag (cas-stale-compare, and
            // its control, the same workload without the bug) and real systems' bugs may not
            // (etcd-io/etcd#15220, nats-server#4320 show without any).
            assert!(
                w.nemesis.is_some()
                    || w.target != workload::Target::Raftkv
                    || w.node.bugs == ["txn-split"]
                    || w.node.bugs == ["cas-stale-compare"]
                    || row.workload == "matrix-raftkv-cas",
                "{} has no faults",
                row.workload
            );
        }
    }
}
