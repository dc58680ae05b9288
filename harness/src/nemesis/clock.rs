//! Clock faults through libfaketime. The DB layer preloads libfaketime into the node process with
//! [`clock_env`] and binds `<clock_dir>/<node>/` at [`CLOCK_MOUNT`]; the nemesis writes offsets
//! such as `+5s` into [`CLOCK_FILE_NAME`] there. Only the wall clock moves
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as real skew does.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where each node's clock folder is mounted inside its container.
pub const CLOCK_MOUNT: &str = "/faultline/clock";
/// The file inside the clock folder that libfaketime reads.
pub const CLOCK_FILE_NAME: &str = "faketime";
/// Debian's libfaketime for threaded programs.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The environment that makes a node process follow its clock file.
pub fn clock_env() -> Vec<String> {
    vec![
        format!("LD_PRELOAD={FAKETIME_LIB}"),
        format!("FAKETIME_TIMESTAMP_FILE={CLOCK_MOUNT}/{CLOCK_FILE_NAME}"),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".to_string(),
        "FAKETIME_CACHE_DURATION=1".to_string(),
    ]
}

/// The host folder of one node's clock (bind it at [`CLOCK_MOUNT`]).
pub fn node_clock_dir(clock_dir: &Path, node: &str) -> PathBuf {
    clock_dir.join(node)
}

/// The bind mount for one node, `host:container`, for `NodeSpec::binds`.
pub fn clock_bind(clock_dir: &Path, node: &str) -> String {
    format!(
        "{}:{CLOCK_MOUNT}",
        node_clock_dir(clock_dir, node).display()
    )
}

/// Creates each node's clock folder with its file holding `+0s`.
///
/// # Errors
/// When a folder or file cannot be written.
pub fn prepare_clock_dir(clock_dir: &Path, nodes: &[String]) -> io::Result<()> {
    for node in nodes {
        std::fs::create_dir_all(node_clock_dir(clock_dir, node))?;
        write_offset(clock_dir, node, 0)?;
    }
    Ok(())
}

/// libfaketime's spelling of an offset in seconds: `+5s`, `-3s`, `+0s`.
pub fn format_offset(seconds: i64) -> String {
    if seconds < 0 {
        format!("{seconds}s")
    } else {
        format!("+{seconds}s")
    }
}

/// Writes the node's offset atomically: a temporary file in the same folder, then a rename, so
/// libfaketime never reads a half-written file. The folder is bind-mounted (not the file), so
/// the container sees the renamed file.
///
/// # Errors
/// When the folder is missing or not writable.
pub fn write_offset(clock_dir: &Path, node: &str, seconds: i64) -> io::Result<()> {
    let dir = node_clock_dir(clock_dir, node);
    let tmp = dir.join(format!(".{CLOCK_FILE_NAME}.tmp"));
    std::fs::write(&tmp, format!("{}\n", format_offset(seconds)))?;
    std::fs::rename(&tmp, dir.join(CLOCK_FILE_NAME))
}

/// Reads the node's offset back, as written (for tests and diagnostics).
///
/// # Errors
/// When the file cannot be read.
pub fn read_offset(clock_dir: &Path, node: &str) -> io::Result<String> {
    Ok(
        std::fs::read_to_string(node_clock_dir(clock_dir, node).join(CLOCK_FILE_NAME))?
            .trim()
            .to_string(),
    )
}

/// Flips the node's clock between `+0s` and `delta` every `period` until aborted. The caller
/// aborts the task and then writes `+0s`.
pub(crate) fn spawn_strobe(
    clock_dir: PathBuf,
    node: String,
    delta: i64,
    period: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut skewed = false;
        loop {
            ticker.tick().await;
            skewed = !skewed;
            let offset = if skewed { delta } else { 0 };
            if let Err(e) = write_offset(&clock_dir, &node, offset) {
                tracing::warn!("clock strobe of {node}: {e}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_spelled_as_libfaketime_reads_them() {
        assert_eq!(format_offset(5), "+5s");
        assert_eq!(format_offset(-3), "-3s");
        assert_eq!(format_offset(0), "+0s");
    }

    #[test]
    fn prepare_then_write_leaves_only_the_clock_file() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = vec!["n1".to_string(), "n2".to_string()];
        prepare_clock_dir(dir.path(), &nodes).unwrap();
        assert_eq!(read_offset(dir.path(), "n2").unwrap(), "+0s");
        write_offset(dir.path(), "n1", -7).unwrap();
        assert_eq!(read_offset(dir.path(), "n1").unwrap(), "-7s");
        let files: Vec<_> = std::fs::read_dir(dir.path().join("n1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, vec![CLOCK_FILE_NAME.to_string()]);
        assert!(clock_env().contains(&"FAKETIME_TIMESTAMP_FILE=/faultline/clock/faketime".into()));
    }

    #[tokio::test]
    async fn strobe_flips_the_offset_until_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = vec!["n1".to_string()];
        prepare_clock_dir(dir.path(), &nodes).unwrap();
        let task = spawn_strobe(
            dir.path().into(),
            "n1".into(),
            4,
            Duration::from_millis(100),
        );
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen.insert(read_offset(dir.path(), "n1").unwrap());
        }
        task.abort();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["+0s", "+4s"]);
    }
}
