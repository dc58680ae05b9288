//! The control socket: a Unix socket speaking one command per line, one answer line per command.
//!
//! | command | effect | answer |
//! |---|---|---|
//! | `drop` (alias `clear-cache`) | discard everything not yet fsynced, in every file | `ok dropped B bytes in F files` |
//! | `stall MS` | every fsync/fdatasync/fsyncdir blocks for the next MS ms (replaces a running stall) | `ok stalled for MS ms` (at once) |
//! | `unstall` | end the stall; parked fsyncs complete now | `ok unstalled, N fsyncs released` |
//! | `status` | | `ok {json}`, see [`status_json`] |
//!
//! Anything else is answered `error ...`. A connection may send several lines; the server answers
//! each in order and closes when the client does. The server never touches files itself: it calls
//! [`Shared`]'s operations.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use crate::fs::Shared;

/// One control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Discard all un-fsynced state.
    Drop,
    /// Stall fsyncs for this long.
    Stall(Duration),
    /// End the stall.
    Unstall,
    /// Report counters as JSON.
    Status,
}

impl FromStr for Command {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["drop" | "clear-cache"] => Ok(Command::Drop),
            ["stall", ms] => ms
                .parse::<u64>()
                .map(|ms| Command::Stall(Duration::from_millis(ms)))
                .map_err(|_| format!("stall wants milliseconds as a whole number, got {ms:?}")),
            ["stall"] => Err("stall wants a duration in milliseconds: stall MS".into()),
            ["unstall"] => Ok(Command::Unstall),
            ["status"] => Ok(Command::Status),
            _ => Err(format!(
                "unknown command {:?} (expected drop, clear-cache, stall MS, unstall or status)",
                line.trim()
            )),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Drop => write!(f, "drop"),
            Command::Stall(d) => write!(f, "stall {}", d.as_millis()),
            Command::Unstall => write!(f, "unstall"),
            Command::Status => write!(f, "status"),
        }
    }
}

/// Runs one command line and returns its answer line (without the newline).
pub fn execute(shared: &Shared, line: &str) -> String {
    match line.parse::<Command>() {
        Ok(Command::Drop) => {
            let d = shared.drop_unsynced();
            format!("ok dropped {} bytes in {} files", d.bytes, d.files)
        }
        Ok(Command::Stall(d)) => {
            shared.faults.stall(d);
            format!("ok stalled for {} ms", d.as_millis())
        }
        Ok(Command::Unstall) => {
            let released = shared.faults.unstall();
            format!("ok unstalled, {released} fsyncs released")
        }
        Ok(Command::Status) => format!("ok {}", status_json(shared)),
        Err(e) => format!("error {e}"),
    }
}

/// `status` as one line of JSON:
/// `{"dirty_bytes":N,"dirty_files":N,"stalled":B,"stall_remaining_ms":N|null,
/// "stalled_until_unix_ms":N|null,"fsyncs_waiting":N,"fsyncs":N,"fsyncs_stalled":N,"drops":N,
/// "dropped_bytes":N,"dropped_files":N}`. `fsyncs` counts completed fsync requests,
/// `fsyncs_stalled` those that were parked by a stall, `fsyncs_waiting` those parked now.
pub fn status_json(shared: &Shared) -> String {
    let dirty = shared.dirty();
    let stall = shared.faults.stall_state();
    let c = &shared.faults.counters;
    let opt = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
    format!(
        concat!(
            "{{\"dirty_bytes\":{},\"dirty_files\":{},\"stalled\":{},\"stall_remaining_ms\":{},",
            "\"stalled_until_unix_ms\":{},\"fsyncs_waiting\":{},\"fsyncs\":{},\"fsyncs_stalled\":{},",
            "\"drops\":{},\"dropped_bytes\":{},\"dropped_files\":{}}}"
        ),
        dirty.bytes,
        dirty.files,
        stall.remaining_ms.is_some(),
        opt(stall.remaining_ms),
        opt(stall.until_unix_ms),
        stall.waiting,
        c.fsyncs.load(Ordering::Relaxed),
        c.fsyncs_stalled.load(Ordering::Relaxed),
        c.drops.load(Ordering::Relaxed),
        c.dropped_bytes.load(Ordering::Relaxed),
        c.dropped_files.load(Ordering::Relaxed),
    )
}

/// The listening socket; the file is removed by [`ControlServer::remove`].
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file, refusing a live one) and serves it on a
    /// background thread, one thread per connection.
    ///
    /// # Errors
    /// The socket cannot be bound, or another process is serving it.
    pub fn start(path: &Path, shared: Arc<Shared>) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another faultfs is serving this socket",
            ));
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        thread::Builder::new()
            .name("faultfs-control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = shared.clone();
                    let _ = thread::Builder::new()
                        .name("faultfs-control-conn".into())
                        .spawn(move || serve_connection(stream, &shared));
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }

    /// Removes the socket file.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_connection(stream: UnixStream, shared: &Shared) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let answer = execute(shared, &line);
        if writeln!(writer, "{answer}").is_err() {
            return;
        }
    }
}

/// Why `ctl` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Nothing is listening on the socket (faultfs not running, wrong path).
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// The connection broke or timed out before an answer line arrived.
    #[error("no answer from {path}: {source}")]
    NoAnswer {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Sends one command and returns the answer line (without the newline).
///
/// # Errors
/// [`CtlError`] when the socket cannot be reached or gives no answer within `timeout`.
pub fn send(path: &Path, command: &str, timeout: Duration) -> Result<String, CtlError> {
    let mut stream = UnixStream::connect(path).map_err(|source| CtlError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let no_answer = |source| CtlError::NoAnswer {
        path: path.to_path_buf(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(no_answer)?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(no_answer)?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(no_answer)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(no_answer)?;
    if answer.is_empty() {
        return Err(no_answer(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        )));
    }
    Ok(answer.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_aliases_and_reject_junk() {
        assert_eq!("drop".parse(), Ok(Command::Drop));
        assert_eq!("  clear-cache \r".parse(), Ok(Command::Drop));
        assert_eq!(
            "stall 1500".parse(),
            Ok(Command::Stall(Duration::from_millis(1500)))
        );
        assert_eq!("unstall".parse(), Ok(Command::Unstall));
        assert_eq!("status".parse(), Ok(Command::Status));
        assert!(
            "stall"
                .parse::<Command>()
                .unwrap_err()
                .contains("milliseconds")
        );
        assert!("stall -3".parse::<Command>().is_err());
        assert!("stall 1.5".parse::<Command>().is_err());
        assert!(
            "drop now"
                .parse::<Command>()
                .unwrap_err()
                .contains("unknown command")
        );
        assert!("fsync".parse::<Command>().is_err());
    }

    #[test]
    fn commands_print_as_they_parse() {
        for c in [
            Command::Drop,
            Command::Stall(Duration::from_millis(7)),
            Command::Unstall,
            Command::Status,
        ] {
            assert_eq!(c.to_string().parse(), Ok(c));
        }
    }

    #[test]
    fn control_socket_answers_each_line() {
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("backing");
        std::fs::create_dir(&backing).unwrap();
        let shared = Arc::new(Shared::new(&backing, false).unwrap());
        let sock = dir.path().join("ctl.sock");
        let server = ControlServer::start(&sock, shared).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(
            send(&sock, "drop", t).unwrap(),
            "ok dropped 0 bytes in 0 files"
        );
        assert_eq!(
            send(&sock, "stall 60000", t).unwrap(),
            "ok stalled for 60000 ms"
        );
        let status = send(&sock, "status", t).unwrap();
        assert!(status.starts_with("ok {\"dirty_bytes\":0,"), "{status}");
        assert!(status.contains("\"stalled\":true"), "{status}");
        assert!(status.contains("\"drops\":1"), "{status}");
        assert_eq!(
            send(&sock, "unstall", t).unwrap(),
            "ok unstalled, 0 fsyncs released"
        );
        assert!(
            send(&sock, "frobnicate", t)
                .unwrap()
                .starts_with("error unknown command")
        );
        assert!(
            ControlServer::start(&sock, Arc::new(Shared::new(&backing, false).unwrap())).is_err()
        );
        server.remove();
        assert!(matches!(
            send(&sock, "status", t),
            Err(CtlError::Connect { .. })
        ));
    }
}
