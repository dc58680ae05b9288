//! `faultline report`: a run folder's metrics (the `perf` section of `results.json`), its
//! `report.html`, and the results index `results/index.html`. The runner calls [`after_run`]
//! once a run is checked; `faultline report RUN` does the same for a stored run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_checker::Perf;
use faultline_checker::report::{IndexEntry, RunReport, index_html, run_html};
use serde_json::Value;

use crate::store::RunDir;

/// Arguments of `faultline report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run folder (`results/<workload>/<stamp>`), or a path relative to `results/`
    /// (`register-partition/latest`).
    pub run: PathBuf,
}

/// What [`write_run_report`] produced.
#[derive(Debug)]
pub struct Generated {
    /// `report.html`.
    pub html: PathBuf,
    /// The metrics.
    pub perf: Perf,
    /// Size of `report.html`, bytes.
    pub bytes: usize,
    /// Time taken (reading, metrics, plots, HTML).
    pub elapsed: Duration,
}

fn read_json(path: &Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(
            serde_json::from_str(&t).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The `RunDir` of an existing run folder.
pub fn run_dir(path: &Path) -> RunDir {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    RunDir {
        path: path.to_path_buf(),
        workload: name(path.parent()),
        stamp: name(Some(path)),
    }
}

/// Computes a run's metrics, adds them to `results.json` as `perf` (checking the history first
/// when there is no `results.json`), and writes `report.html`.
///
/// # Errors
/// When the history cannot be read or the files cannot be written.
pub fn write_run_report(path: &Path) -> anyhow::Result<Generated> {
    let started = Instant::now();
    let dir = run_dir(path);
    let signed = crate::sign::verify_run(path, None);
    if let Err(e) = &signed
        && !matches!(e, crate::sign::VerifyError::Unsigned(_))
    {
        eprintln!(
            "faultline: warning: {} does not verify: {e}",
            path.display()
        );
    }
    let history = faultline_checker::read_history(&dir.history())?;
    let status = std::fs::read_to_string(path.join("status.jsonl")).unwrap_or_default();
    let perf = Perf::new(&history, &faultline_checker::parse_status(&status));
    let mut results = match read_json(&path.join("results.json"))? {
        Some(v) => v,
        None => {
            crate::runner::check_run(&dir)?;
            read_json(&path.join("results.json"))?.unwrap_or(Value::Null)
        }
    };
    if let Value::Object(m) = &mut results {
        m.insert("perf".into(), serde_json::to_value(&perf)?);
        dir.write_json("results.json", &results)?;
        crate::sign::resign_if_verified(path, &signed);
    }
    let run = read_json(&path.join("run.json"))?.unwrap_or(Value::Null);
    let mut files: Vec<String> = [
        "history.jsonl",
        "results.json",
        "run.json",
        "status.jsonl",
        "counterexample.svg",
    ]
    .iter()
    .filter(|f| path.join(f).exists())
    .map(|f| f.to_string())
    .collect();
    if let Ok(rd) = std::fs::read_dir(path.join("nodes")) {
        let mut logs: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| format!("nodes/{}", e.file_name().to_string_lossy()))
            .collect();
        logs.sort();
        files.extend(logs);
    }
    let name = format!("{}/{}", dir.workload, dir.stamp);
    let svg = std::fs::read_to_string(path.join("counterexample.svg")).ok();
    let html = run_html(&RunReport {
        counterexample_svg: svg.as_deref(),
        run: &run,
        results: &results,
        perf: &perf,
        name: &name,
        files: &files,
    });
    let out = path.join("report.html");
    let tmp = path.join(".report.html.tmp");
    std::fs::write(&tmp, &html)?;
    std::fs::rename(&tmp, &out)?;
    Ok(Generated {
        html: out,
        perf,
        bytes: html.len(),
        elapsed: started.elapsed(),
    })
}

/// Every run folder under `results/`: `results/<workload>/<stamp>/` holding a history or
/// `run.json` (the `latest` links are skipped).
pub fn run_folders(results: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(workloads) = std::fs::read_dir(results) else {
        return out;
    };
    for w in workloads.flatten() {
        if w.file_type().map(|t| !t.is_dir()).unwrap_or(true) {
            continue;
        }
        let Ok(runs) = std::fs::read_dir(w.path()) else {
            continue;
        };
        for r in runs.flatten() {
            let p = r.path();
            if r.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && (p.join("run.json").exists() || p.join("history.jsonl").exists())
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The index entry of one run folder, from its `run.json` and `results.json`.
pub fn index_entry(results: &Path, run: &Path) -> IndexEntry {
    let dir = run_dir(run);
    let rj = read_json(&run.join("run.json"))
        .ok()
        .flatten()
        .unwrap_or(Value::Null);
    let res = read_json(&run.join("results.json")).ok().flatten();
    let rel = run.strip_prefix(results).unwrap_or(run);
    let href = if run.join("report.html").exists() {
        format!("{}/report.html", rel.display())
    } else {
        format!("{}/", rel.display())
    };
    let summary = res.as_ref().and_then(|r| r.pointer("/perf/summary"));
    IndexEntry {
        href,
        workload: dir.workload,
        stamp: dir.stamp,
        label: rj
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        sha256: rj
            .pointer("/node/sha256")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        verdict: res
            .as_ref()
            .and_then(|r| r.get("valid")?.as_str().map(String::from))
            .unwrap_or_else(|| "no results".into()),
        ops: summary
            .and_then(|s| s.get("completed")?.as_u64())
            .map(|x| x as usize),
        p99_ms: summary.and_then(|s| s.get("p99_ms")?.as_f64()),
        availability: summary.and_then(|s| s.get("availability")?.as_f64()),
    }
}

/// The index page of a results folder, as HTML.
pub fn index_for(results: &Path) -> String {
    let entries: Vec<IndexEntry> = run_folders(results)
        .iter()
        .map(|r| index_entry(results, r))
        .collect();
    index_html(&entries)
}

/// Regenerates `results/index.html`.
///
/// # Errors
/// When it cannot be written.
pub fn write_index(results: &Path) -> anyhow::Result<PathBuf> {
    let out = results.join("index.html");
    let tmp = results.join(".index.html.tmp");
    std::fs::write(&tmp, index_for(results))?;
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// The results folder a run folder lives in (`results/<workload>/<stamp>` -> `results`).
pub fn results_of(run: &Path) -> Option<PathBuf> {
    run.parent()?.parent().map(Path::to_path_buf)
}

/// What the runner does after the check: the report and the index. A failure here is
/// printed, never fatal: the verdict is already in `results.json`.
pub fn after_run(run: &Path) {
    let r = write_run_report(run).and_then(|g| {
        if let Some(results) = results_of(run) {
            write_index(&results)?;
        }
        Ok(g)
    });
    match r {
        Ok(g) => eprintln!("faultline: report {}", g.html.display()),
        Err(e) => eprintln!("faultline: writing the report failed: {e:#}"),
    }
}

/// `faultline report RUN`.
///
/// # Errors
/// When the run folder cannot be read or the report cannot be written.
pub fn run(args: &ReportArgs) -> anyhow::Result<u8> {
    let path = if args.run.exists() {
        args.run.clone()
    } else {
        crate::workspace::root().join("results").join(&args.run)
    };
    let path = path
        .canonicalize()
        .with_context(|| format!("no run folder {}", args.run.display()))?;
    let g = write_run_report(&path)?;
    println!(
        "wrote {} ({} KiB) in {:.2} s",
        g.html.display(),
        g.bytes / 1024,
        g.elapsed.as_secs_f64()
    );
    if let Some(results) = results_of(&path) {
        println!("wrote {}", write_index(&results)?.display());
    }
    Ok(0)
}
