//! History file formats: Faultline's `history.jsonl` and Jepsen's EDN.
//!
//! Both readers produce [`Op`]s carrying the 1-based line they start on, then [`History::from_ops`]
//! validates the pairing. Readers never guess at a malformed op: each problem is an error naming
//! the line and the field (the one tolerance is a truncated last line of a JSONL file, which a
//! killed harness leaves behind; it becomes a warning in [`History::warnings`]).

mod edn;
mod jsonl;

use std::path::Path;

pub use edn::{parse_edn, parse_edn_value};
pub use jsonl::parse_jsonl;
pub(crate) use jsonl::{cut_off_last_line, parse_jsonl_line};

use crate::Error;
use crate::history::{History, Op, OpType, Process};

/// Reads a history file: `*.edn` as Jepsen EDN, anything else as JSONL (a file whose first
/// non-blank character is `[`, `(` or `{:` is also read as EDN).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Parse`] or [`Error::Invalid`] (carrying
/// the file name and line) if it is malformed.
pub fn read_history(path: &Path) -> Result<History, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_history(&text, is_edn(path, &text)).map_err(|e| e.with_file(path))
}

/// Parses a history from text, as EDN when `edn` is true, else as JSONL.
///
/// # Errors
/// As [`read_history`], without a file name.
pub fn parse_history(text: &str, edn: bool) -> Result<History, Error> {
    let (ops, warnings) = if edn {
        (parse_edn(text)?, Vec::new())
    } else {
        parse_jsonl(text)?
    };
    History::from_ops(ops, warnings)
}

fn is_edn(path: &Path, text: &str) -> bool {
    by_extension(path).unwrap_or_else(|| looks_like_edn(text))
}

/// Whether [`read_history`] reads the file as EDN: by its extension, else by its first
/// non-blank line (read from the file; a file that cannot be read is not EDN).
pub fn is_edn_file(path: &Path) -> bool {
    use std::io::BufRead as _;
    by_extension(path).unwrap_or_else(|| {
        let Ok(f) = std::fs::File::open(path) else {
            return false;
        };
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| looks_like_edn(&l))
    })
}

/// `Some(true)` for `.edn`, `Some(false)` for `.jsonl` and `.json`, `None` otherwise.
fn by_extension(path: &Path) -> Option<bool> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("edn") => Some(true),
        Some("jsonl") | Some("json") => Some(false),
        _ => None,
    }
}

/// Whether text starts as EDN does (a vector, a list, a map with keywords, or a comment).
fn looks_like_edn(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('[') || t.starts_with('(') || t.starts_with("{:") || t.starts_with(';')
}

/// Builds an op from already-decoded fields (shared by both formats); `field_err` names the
/// format's spelling of a field.
pub(crate) fn op_from_fields(
    line: usize,
    position: usize,
    get: &dyn Fn(&str) -> Option<serde_json::Value>,
    field: &dyn Fn(&str) -> String,
) -> Result<Op, Error> {
    use serde_json::Value;
    let err = |message: String| Error::Parse {
        file: None,
        line,
        message,
    };
    let process = match get("process") {
        None => return Err(err(format!("missing field {}", field("process")))),
        Some(v) => {
            Process::from_json(&v).map_err(|m| err(m.replace("\"process\"", &field("process"))))?
        }
    };
    let kind = match get("type") {
        None => return Err(err(format!("missing field {}", field("type")))),
        Some(Value::String(s)) => OpType::parse(&s).ok_or_else(|| {
            err(format!(
                "field {}: unknown type {s:?} (expected invoke, ok, fail or info)",
                field("type")
            ))
        })?,
        Some(other) => {
            return Err(err(format!(
                "field {}: expected a string, got {other}",
                field("type")
            )));
        }
    };
    let f = match get("f") {
        None => return Err(err(format!("missing field {}", field("f")))),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(err(format!(
                "field {}: expected a string, got {other}",
                field("f")
            )));
        }
    };
    let index = match get("index") {
        None | Some(Value::Null) => position as u64,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
        Some(other) => {
            return Err(err(format!(
                "field {}: expected a non-negative integer, got {other}",
                field("index")
            )));
        }
    };
    let time = match get("time") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(other) => {
            return Err(err(format!(
                "field {}: expected non-negative integer nanoseconds, got {other}",
                field("time")
            )));
        }
    };
    let key = match get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(err(format!(
                "field {}: expected a string or integer, got {other}",
                field("key")
            )));
        }
    };
    let node = match get("node") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(err(format!(
                "field {}: expected a string, got {other}",
                field("node")
            )));
        }
    };
    Ok(Op {
        index,
        time,
        process,
        kind,
        f,
        key,
        value: get("value").unwrap_or(Value::Null),
        node,
        error: get("error").as_ref().and_then(error_text),
        line,
    })
}

/// The string form of an op's `error`: a string (or EDN keyword) as it is; a vector (Jepsen's
/// `[:not-found "detail"]`) as its elements' forms joined by spaces, nils left out; `nil` and an
/// empty vector as none; anything else as its JSON text.
fn error_text(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(error_text).collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        }
        other => Some(other.to_string()),
    }
}
