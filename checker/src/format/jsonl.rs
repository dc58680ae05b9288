//! Faultline's `history.jsonl`: one JSON object per line, in order of occurrence.

use serde::Deserialize;
use serde_json::Value;

use super::op_from_fields;
use crate::Error;
use crate::history::{Op, OpType, Process};

/// The shape of a well-formed line, read without building a JSON tree first. A line that does
/// not fit is read again field by field, for an error message that names the field.
#[derive(Deserialize)]
struct Line<'a> {
    index: Option<u64>,
    time: Option<u64>,
    process: RawProcess<'a>,
    #[serde(rename = "type")]
    kind: &'a str,
    f: String,
    key: Option<RawKey<'a>>,
    #[serde(default)]
    value: Value,
    node: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawProcess<'a> {
    Client(u64),
    Name(&'a str),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawKey<'a> {
    Str(&'a str),
    Int(i64),
}

fn fast(l: &str, line: usize, position: usize) -> Option<Op> {
    let r: Line<'_> = serde_json::from_str(l).ok()?;
    let process = match r.process {
        RawProcess::Client(p) => Process::Client(p),
        RawProcess::Name("nemesis") => Process::Nemesis,
        RawProcess::Name("watch") => Process::Watch,
        RawProcess::Name(_) => return None,
    };
    Some(Op {
        index: r.index.unwrap_or(position as u64),
        time: r.time,
        process,
        kind: OpType::parse(r.kind)?,
        f: r.f,
        key: r.key.map(|k| match k {
            RawKey::Str(s) => s.to_string(),
            RawKey::Int(i) => i.to_string(),
        }),
        value: r.value,
        node: r.node,
        error: r.error,
        line,
    })
}

/// Why one line could not be read: the error, whether it is not JSON at all, and whether the
/// JSON ended early. A last line that is not JSON because it was cut off is tolerated.
pub(crate) struct LineError {
    pub(crate) error: Error,
    pub(crate) syntax: bool,
    pub(crate) eof: bool,
}

impl LineError {
    /// Whether this error on the last non-blank line means the line was cut off (`unterminated`:
    /// the input does not end with a newline).
    pub(crate) fn truncated(&self, unterminated: bool) -> bool {
        self.syntax && (self.eof || unterminated)
    }
}

/// For a reader that streams lines: after line `line` (its `len` bytes without the newline;
/// `ended`: whether it had one) failed with `e`, reads the rest of `reader` to tell a cut-off
/// last line (the warning to keep) from an error, as [`parse_jsonl`] does with the whole text.
/// `io` maps a read error at a line to the reader's error.
pub(crate) fn cut_off_last_line<R: std::io::BufRead>(
    reader: &mut R,
    e: LineError,
    (line, len, ended): (usize, usize, bool),
    io: impl Fn(usize, std::io::Error) -> Error,
) -> Result<String, Error> {
    let mut rest = Vec::new();
    let mut terminated = ended;
    loop {
        rest.clear();
        let n = reader
            .read_until(b'\n', &mut rest)
            .map_err(|err| io(line + 1, err))?;
        if n == 0 {
            break;
        }
        terminated = rest.ends_with(b"\n");
        if !String::from_utf8_lossy(&rest).trim().is_empty() {
            return Err(e.error);
        }
    }
    if e.truncated(!terminated) {
        Ok(format!(
            "line {line}: truncated last line ignored ({len} bytes)"
        ))
    } else {
        Err(e.error)
    }
}

/// Reads one non-blank, trimmed line (`line` is its 1-based number, `position` the index of
/// the op among the ops read so far).
pub(crate) fn parse_jsonl_line(l: &str, line: usize, position: usize) -> Result<Op, LineError> {
    if let Some(op) = fast(l, line, position) {
        return Ok(op);
    }
    let v: Value = match serde_json::from_str(l) {
        Ok(v) => v,
        Err(e) => {
            // serde_json counts lines within the one line it was given: keep the column.
            let detail = e.to_string().replace(" at line 1 column ", " at column ");
            return Err(LineError {
                error: Error::Parse {
                    file: None,
                    line,
                    message: format!("invalid JSON: {detail}"),
                },
                syntax: true,
                eof: e.is_eof(),
            });
        }
    };
    let Value::Object(map) = v else {
        return Err(LineError {
            error: Error::Parse {
                file: None,
                line,
                message: format!("expected a JSON object, got {}", short(&v)),
            },
            syntax: false,
            eof: false,
        });
    };
    op_from_fields(line, position, &|k| map.get(k).cloned(), &|k| {
        format!("\"{k}\"")
    })
    .map_err(|error| LineError {
        error,
        syntax: false,
        eof: false,
    })
}

/// Parses JSONL text into ops and warnings. Blank lines are skipped. A last line that is cut
/// off (no final newline, or JSON that ends early) is dropped with a warning.
///
/// # Errors
/// [`Error::Parse`] naming the line and what is wrong for any other malformed line.
pub fn parse_jsonl(text: &str) -> Result<(Vec<Op>, Vec<String>), Error> {
    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let last_nonblank = lines.iter().rposition(|l| !l.trim().is_empty());
    for (i, raw) in lines.iter().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        match parse_jsonl_line(l, line, ops.len()) {
            Ok(op) => ops.push(op),
            Err(e) => {
                let is_last = Some(i) == last_nonblank;
                let unterminated = !text.ends_with('\n');
                if is_last && e.truncated(unterminated) {
                    warnings.push(format!(
                        "line {line}: truncated last line ignored ({} bytes)",
                        raw.len()
                    ));
                    break;
                }
                return Err(e.error);
            }
        }
    }
    Ok((ops, warnings))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}
