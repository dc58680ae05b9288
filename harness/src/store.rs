//! The store: where a run's files go (`results/<workload>/<UTC timestamp>/`) and the history
//! writer.
//!
//! The history is written line by line and flushed as operations happen, so a harness killed in
//! the middle leaves a readable history (at worst with a cut-off last line, which the checker
//! tolerates). Times are nanoseconds since the run started, from a monotonic clock, taken under
//! the writer's lock so that they never decrease along the file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

/// Who performed an operation: a client process or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Process {
    /// A client process number.
    Client(u64),
    /// The nemesis (written as `"nemesis"`).
    #[serde(serialize_with = "nemesis")]
    Nemesis,
    /// The watchers of the watch workload (written as `"watch"`): what they received, one
    /// `info` line per watch response, with the watcher and stream in the value.
    #[serde(serialize_with = "watch")]
    Watch,
}

fn nemesis<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("nemesis")
}

fn watch<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("watch")
}

/// One line of `history.jsonl` (the contract in DESIGN.md).
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    /// Who.
    pub process: Process,
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The function.
    pub f: &'a str,
    /// The key, for multi-key workloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// The value.
    pub value: &'a Value,
    /// The node the process talks to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
    /// Why a `fail` or `info` happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    index: u64,
    time: u64,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

struct Inner {
    out: BufWriter<File>,
    next_index: u64,
}

/// Appends events to `history.jsonl`, one flushed line each. Shared by all client tasks.
pub struct HistoryWriter {
    inner: Mutex<Inner>,
    start: Instant,
}

impl HistoryWriter {
    /// Creates (truncates) the history file; time 0 is now.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let out = BufWriter::new(File::create(path)?);
        Ok(Self {
            inner: Mutex::new(Inner { out, next_index: 0 }),
            start: Instant::now(),
        })
    }

    /// When the run started (time 0 of the history).
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Appends one event and flushes it; returns its index and time.
    ///
    /// # Errors
    /// When the write fails (disk full, ...).
    pub fn append(&self, event: &Event<'_>) -> std::io::Result<(u64, u64)> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let time = self.start.elapsed().as_nanos() as u64;
        let index = inner.next_index;
        let line = serde_json::to_string(&Line { index, time, event })?;
        inner.out.write_all(line.as_bytes())?;
        inner.out.write_all(b"\n")?;
        inner.out.flush()?;
        inner.next_index += 1;
        Ok((index, time))
    }

    /// Number of events written.
    pub fn len(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_index
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A run's folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// `results/<workload>/<stamp>`.
    pub path: PathBuf,
    /// The workload's name.
    pub workload: String,
    /// The UTC timestamp naming the folder, e.g. `20261122T021500Z`.
    pub stamp: String,
}

impl RunDir {
    /// Creates `results/<workload>/<UTC timestamp>/` (with `-2`, `-3`, ... when two runs start
    /// in the same second) and its `nodes/` folder.
    ///
    /// # Errors
    /// When the folders cannot be created.
    pub fn create(results: &Path, workload: &str) -> std::io::Result<Self> {
        let base = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let parent = results.join(workload);
        std::fs::create_dir_all(&parent)?;
        for n in 1.. {
            let stamp = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = parent.join(&stamp);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::create_dir(path.join("nodes"))?;
                    return Ok(Self {
                        path,
                        workload: workload.to_string(),
                        stamp,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// `history.jsonl` in this run's folder.
    pub fn history(&self) -> PathBuf {
        self.path.join("history.jsonl")
    }

    /// `nodes/<name>.log`.
    pub fn node_log(&self, node: &str) -> PathBuf {
        self.path.join("nodes").join(format!("{node}.log"))
    }

    /// Writes pretty JSON to a file of the run's folder, atomically (temp file, then rename).
    ///
    /// # Errors
    /// When writing fails.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> std::io::Result<()> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
        std::fs::rename(tmp, self.path.join(name))
    }

    /// Points `results/<workload>/latest` and `results/latest` at this run.
    ///
    /// # Errors
    /// When the links cannot be replaced.
    pub fn update_latest(&self) -> std::io::Result<()> {
        let workload_dir = self.path.parent().expect("a run folder has a parent");
        replace_symlink(Path::new(&self.stamp), &workload_dir.join("latest"))?;
        if let Some(results) = workload_dir.parent() {
            replace_symlink(
                &Path::new(&self.workload).join(&self.stamp),
                &results.join("latest"),
            )?;
        }
        Ok(())
    }
}

fn replace_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    let tmp = link.with_extension("tmp-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(tmp, link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_lines_carry_increasing_index_and_time_and_are_flushed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let w = HistoryWriter::create(&path).unwrap();
        let v = json!([1, 2]);
        let invoke = Event {
            process: Process::Client(3),
            kind: "invoke",
            f: "cas",
            key: Some("r4"),
            value: &v,
            node: Some("n2"),
            error: None,
        };
        w.append(&invoke).unwrap();
        // Flushed: readable before the writer is dropped.
        let text = std::fs::read_to_string(&path).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["index"], 0);
        assert_eq!(first["process"], 3);
        assert_eq!(first["type"], "invoke");
        assert_eq!(first["key"], "r4");
        assert!(first.get("error").is_none());
        let nem = json!({"kind": "halves"});
        let info = Event {
            process: Process::Nemesis,
            kind: "info",
            f: "start-partition",
            key: None,
            value: &nem,
            node: None,
            error: None,
        };
        w.append(&info).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["process"], "nemesis");
        assert_eq!(lines[1]["index"], 1);
        assert!(lines[1]["time"].as_u64() >= lines[0]["time"].as_u64());
        assert!(lines[1].get("key").is_none());
    }

    #[test]
    fn run_folders_are_unique_and_latest_points_at_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let a = RunDir::create(dir.path(), "register-none").unwrap();
        let b = RunDir::create(dir.path(), "register-none").unwrap();
        assert_ne!(a.path, b.path);
        assert!(a.path.join("nodes").is_dir());
        a.update_latest().unwrap();
        b.update_latest().unwrap();
        let latest = std::fs::canonicalize(dir.path().join("register-none/latest")).unwrap();
        assert_eq!(latest, std::fs::canonicalize(&b.path).unwrap());
        let top = std::fs::canonicalize(dir.path().join("latest")).unwrap();
        assert_eq!(top, std::fs::canonicalize(&b.path).unwrap());
        b.write_json("run.json", &json!({"seed": 1})).unwrap();
        let back: Value =
            serde_json::from_slice(&std::fs::read(b.path.join("run.json")).unwrap()).unwrap();
        assert_eq!(back["seed"], 1);
    }
}
