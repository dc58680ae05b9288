//! The checker's error type: everything that can go wrong reading or validating a history.

use std::path::PathBuf;

/// An error reading, parsing or validating a history. Checking itself never fails: a search
/// that runs out of budget yields [`crate::Validity::Unknown`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line or entry of the file is malformed (bad JSON/EDN, a missing or ill-typed field).
    #[error("{}line {line}: {message}", file_prefix(file))]
    Parse {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The 1-based line number where the problem is.
        line: usize,
        /// What is wrong, naming the field when one is at fault.
        message: String,
    },
    /// The ops parse but do not form a well-formed history (pairing of invocations and
    /// completions).
    #[error("{}line {line}: {message}", file_prefix(file))]
    Invalid {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The 1-based line number of the offending op.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The history cannot be checked against the requested model (an op the model does not
    /// know, or a value of the wrong shape).
    #[error("{}line {line}: {message}", file_prefix(file))]
    Model {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The 1-based line number of the offending op.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The requested model name is not one the checker knows.
    #[error("unknown model {0:?} (known: cas-register, kv, list-append, mutex, multi-register)")]
    UnknownModel(String),
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    match file {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl Error {
    /// Attaches a file name to a parse, validation or model error that has none yet.
    pub fn with_file(self, path: &std::path::Path) -> Self {
        match self {
            Error::Parse {
                file: None,
                line,
                message,
            } => Error::Parse {
                file: Some(path.to_path_buf()),
                line,
                message,
            },
            Error::Invalid {
                file: None,
                line,
                message,
            } => Error::Invalid {
                file: Some(path.to_path_buf()),
                line,
                message,
            },
            Error::Model {
                file: None,
                line,
                message,
            } => Error::Model {
                file: Some(path.to_path_buf()),
                line,
                message,
            },
            other => other,
        }
    }

    /// The 1-based line number the error points at, if it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Parse { line, .. } | Error::Invalid { line, .. } | Error::Model { line, .. } => {
                Some(*line)
            }
            _ => None,
        }
    }
}
