//! Storage faults through faultfs, the filesystem a node's data directory is mounted on when the
//! workload asks for it (`[node] faultfs = true`, or a `stall` fault): the harness reaches it
//! only with `docker exec NODE faultfs ctl COMMAND` (its control socket is in the image's
//! `FAULTFS_CONTROL`).
//!
//! - `stall`: every fsync and fdatasync on the node's data directory blocks until the stop,
//!   while the rest of the process runs (a pause stops everything; a stall stops only the disk).
//!   faultfs ends a stall by itself after [`STALL_BOUND_MS`], so one the harness forgot (it was
//!   killed) cannot outlive a run by much; a container's removal ends it anyway.
//! - `power`: a SIGKILL of a node on faultfs kills faultfs with it, and with it every write not
//!   yet fsynced (the nemesis's kill path does it; nothing here).
//! - `corrupt`: with the node killed, `faultfs corrupt` runs in a helper container of the node's
//!   image on the node's data volume (faultfs not mounted there: plain files) and flips bits in,
//!   or cuts the tail of, files matching the spec's globs; its JSON report goes into the history.

use std::time::Duration;

use serde_json::Value;

use super::spec::{CorruptKind, NemesisSpec};
use super::{Cluster, NemesisError, OP_TIMEOUT, Outcome, StepResult, bounded};

/// The longest stall faultfs is asked for: the stop (or the heal) releases it long before.
pub const STALL_BOUND_MS: u64 = 10 * 60 * 1000;

/// How one node answered a faultfs command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// faultfs did it; its answer line.
    Done(String),
    /// The node does not run on faultfs (no binary, or nothing listens on the socket).
    NoFaultfs(String),
}

/// Runs `faultfs ctl ARGS...` in `node`. A refusal by faultfs (`error ...`) is a failed step.
pub async fn ctl(cluster: &Cluster, node: &str, args: &[&str]) -> StepResult<Answer> {
    let mut cmd = vec!["faultfs", "ctl"];
    cmd.extend_from_slice(args);
    let what = format!("faultfs {} in {node}", args.join(" "));
    let out = bounded(cluster, &what, cluster.exec(node, &cmd)).await?;
    Ok(out.and_then(|o| match o.code {
        0 => Ok(Answer::Done(o.stdout.trim().to_string())),
        // 2: nothing answers on the control socket; 126/127: no faultfs binary.
        2 | 126 | 127 => Ok(Answer::NoFaultfs(format!(
            "{node} does not run on faultfs ({})",
            o.stderr.trim().lines().last().unwrap_or("no answer")
        ))),
        code => Err(format!(
            "{what}: exit {code}: {}",
            o.stdout.trim().lines().last().unwrap_or("")
        )),
    }))
}

/// The command that damages a stopped node's files: `faultfs corrupt` over `data_dir`.
pub fn corrupt_command(
    data_dir: &str,
    kind: CorruptKind,
    seed: u64,
    spec: &NemesisSpec,
) -> Vec<String> {
    let mut cmd: Vec<String> = ["/usr/local/bin/faultfs", "corrupt", "--root", data_dir]
        .map(String::from)
        .to_vec();
    for g in &spec.corrupt_globs {
        cmd.extend(["--glob".to_string(), g.clone()]);
    }
    cmd.extend([
        "--seed".to_string(),
        seed.to_string(),
        "--files".to_string(),
        spec.corrupt_files.to_string(),
    ]);
    match kind {
        CorruptKind::Bitflip => {
            cmd.extend(["--bitflips".to_string(), spec.corrupt_bitflips.to_string()])
        }
        CorruptKind::Truncate => cmd.extend([
            "--truncate-max".to_string(),
            spec.corrupt_truncate_max.to_string(),
        ]),
    }
    cmd
}

/// Damages the files of `node`, which the caller has just killed: waits until its container
/// has stopped, runs [`corrupt_command`] on its volume, and returns the outcome with faultfs's
/// report (`skipped` when no file matched).
///
/// # Errors
/// [`NemesisError`] only when Docker stopped answering.
pub async fn corrupt(
    cluster: &Cluster,
    node: &str,
    kind: CorruptKind,
    seed: u64,
    spec: &NemesisSpec,
) -> Result<(Outcome, Value), NemesisError> {
    let Some(data_dir) = cluster.node(node).map(|h| h.data_dir.clone()) else {
        return Ok((Outcome::Skipped(format!("no node {node}")), Value::Null));
    };
    if spec.corrupt_globs.is_empty() {
        return Ok((
            Outcome::Skipped("no `corrupt-globs` for this target".into()),
            Value::Null,
        ));
    }
    // The files must not change under faultfs corrupt: wait for the node to be down.
    let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
    loop {
        let state = bounded(cluster, &format!("inspecting {node}"), cluster.state(node)).await?;
        match state {
            Ok(s) if s != "running" && s != "paused" => break,
            Ok(s) if tokio::time::Instant::now() >= deadline => {
                return Ok((
                    Outcome::Indeterminate(format!("{node} still {s} after the kill")),
                    Value::Null,
                ));
            }
            Err(e) => return Ok((Outcome::Indeterminate(e), Value::Null)),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let cmd = corrupt_command(&data_dir, kind, seed, spec);
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let what = format!("corrupting the data files of {node}");
    let out = match bounded(cluster, &what, cluster.run_on_volume(node, &args)).await? {
        Ok(o) => o,
        Err(e) => return Ok((Outcome::Indeterminate(e), Value::Null)),
    };
    if out.code != 0 {
        return Ok((
            Outcome::Indeterminate(format!(
                "{what}: faultfs corrupt exited {}: {}",
                out.code,
                out.stderr.trim().lines().last().unwrap_or("")
            )),
            Value::Null,
        ));
    }
    Ok(judge_report(&out.stdout, &spec.corrupt_globs))
}

/// The outcome of a corruption from faultfs's JSON report (its last line of output): installed
/// when some file was damaged, skipped when none matched.
fn judge_report(stdout: &str, globs: &[String]) -> (Outcome, Value) {
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let damaged = report["files"].as_array().map_or(0, Vec::len);
    let outcome = if report.is_null() {
        Outcome::Indeterminate(format!("no report from faultfs corrupt: {stdout:?}"))
    } else if damaged == 0 {
        Outcome::Skipped(format!("no non-empty file matched {}", globs.join(" ")))
    } else {
        Outcome::Installed
    };
    (outcome, report)
}

/// The arguments of a stall bounded by [`STALL_BOUND_MS`].
pub fn stall_args() -> [String; 2] {
    ["stall".into(), STALL_BOUND_MS.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corruption_names_the_data_dir_its_globs_and_the_kind() {
        let spec = NemesisSpec {
            corrupt_globs: vec!["wal-*.log".into(), "snap-*".into()],
            ..NemesisSpec::default()
        };
        let flip = corrupt_command("/data", CorruptKind::Bitflip, 7, &spec).join(" ");
        assert_eq!(
            flip,
            "/usr/local/bin/faultfs corrupt --root /data --glob wal-*.log --glob snap-* --seed 7 --files 1 --bitflips 2"
        );
        let cut = corrupt_command("/data", CorruptKind::Truncate, 7, &spec).join(" ");
        assert!(cut.ends_with("--files 1 --truncate-max 1023"), "{cut}");
    }

    #[test]
    fn the_report_decides_between_installed_skipped_and_indeterminate() {
        let globs = ["wal-*.log".to_string()];
        let damaged = r#"{"root":"/data","matched":2,"files":[{"path":"wal-1.log","size":9,"bitflips":[[3,1]]}]}"#;
        assert_eq!(judge_report(damaged, &globs).0, Outcome::Installed);
        let none = r#"{"root":"/data","matched":0,"files":[]}"#;
        assert!(matches!(judge_report(none, &globs).0, Outcome::Skipped(_)));
        assert!(matches!(
            judge_report("garbage", &globs).0,
            Outcome::Indeterminate(_)
        ));
    }

    #[test]
    fn a_stall_is_bounded_in_case_the_harness_never_releases_it() {
        let [cmd, ms] = stall_args();
        assert_eq!(cmd, "stall");
        let ms: u64 = ms.parse().unwrap();
        assert!(ms > 0 && ms <= 3_600_000, "{ms}");
    }
}
