//! What can stop faultfs from mounting, serving or supervising.

use std::io;
use std::path::PathBuf;

/// An error of faultfs itself (never of the filesystem requests it serves).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backing directory could not be created or opened.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// The backing directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The filesystem could not be mounted.
    #[error("cannot mount faultfs at {mount}: {cause}{hint}")]
    Mount {
        /// The mount point.
        mount: PathBuf,
        /// The error of the mount attempt.
        cause: io::Error,
        /// What usually fixes it (empty, or text starting with a separator).
        hint: String,
    },
    /// The control socket could not be served.
    #[error("control socket {path}: {source}")]
    Control {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The command given to `run` could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What went wrong.
        source: io::Error,
    },
    /// Signals could not be set up, or a thread could not be started.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// What went wrong.
        source: io::Error,
    },
}
