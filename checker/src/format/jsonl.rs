//! Faultline's `history.jsonl`: one JSON object per line, in order of occurrence.

use serde_json::Value;

use super::op_from_fields;
use crate::Error;
use crate::history::Op;

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
        let v: Value = match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => {
                let is_last = Some(i) == last_nonblank;
                let unterminated = !text.ends_with('\n');
                if is_last && (e.is_eof() || unterminated) {
                    warnings.push(format!(
                        "line {line}: truncated last line ignored ({} bytes)",
                        raw.len()
                    ));
                    break;
                }
                // serde_json counts lines within the one line it was given: keep the column.
                let detail = e.to_string().replace(" at line 1 column ", " at column ");
                return Err(Error::Parse {
                    file: None,
                    line,
                    message: format!("invalid JSON: {detail}"),
                });
            }
        };
        let Value::Object(map) = v else {
            return Err(Error::Parse {
                file: None,
                line,
                message: format!("expected a JSON object, got {}", short(&v)),
            });
        };
        let op = op_from_fields(line, ops.len(), &|k| map.get(k).cloned(), &|k| {
            format!("\"{k}\"")
        })?;
        ops.push(op);
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
