//! Storage faults through faultfs, the filesystem a node's data directory is mounted on when the
//! workload asks for it (`[node] faultfs = true`, or a `stall` fault): the harness reaches it
//! only with `docker exec NODE faultfs ctl COMMAND` (its control socket is in the image's
//! `FAULTFS_CONTROL`).
//!
//! - `stall`: every fsync and fdatasync on the node's data directory blocks until the stop,
//!   while the rest of the process runs (a pause stops everything; a stall stops only the disk).
//!   faultfs ends a stall by itself after [`STALL_BOUND_MS`], so one the harness forgot (it was
//!   killed) cannot outlive a run by much; a container's removal ends it anyway.

use super::{Cluster, StepResult, bounded};

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

/// The arguments of a stall bounded by [`STALL_BOUND_MS`].
pub fn stall_args() -> [String; 2] {
    ["stall".into(), STALL_BOUND_MS.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_bounded_in_case_the_harness_never_releases_it() {
        let [cmd, ms] = stall_args();
        assert_eq!(cmd, "stall");
        let ms: u64 = ms.parse().unwrap();
        assert!(ms > 0 && ms <= 3_600_000, "{ms}");
    }
}
