//! Jepsen EDN histories: a vector (or list, or bare sequence) of op maps such as
//! `{:process 3, :type :invoke, :f :cas, :value [1 2]}`. An op without `:process` is process 0's; one without `:f` whose value is a
//! vector of micro-ops is a `txn` (Jepsen's and Elle's hand-written fixtures leave both out).
//!
//! A small but complete EDN reader: nil, booleans, integers (with `N`), floats (with `M`),
//! strings, characters, keywords, symbols, lists, vectors, maps, sets, tagged elements,
//! `;` comments, `#_` discards, and commas as whitespace. Values become JSON: keywords and
//! symbols become strings without the colon, collections become arrays, maps become objects.

use serde_json::{Map, Number, Value};

use super::op_from_fields;
use crate::Error;
use crate::history::Op;

/// Parses EDN text into ops, each carrying the line where its map starts.
///
/// # Errors
/// [`Error::Parse`] naming the line and the problem: bad EDN syntax, an element that is not a
/// map, or a missing or ill-typed field.
pub fn parse_edn(text: &str) -> Result<Vec<Op>, Error> {
    let mut r = Reader {
        s: text.as_bytes(),
        text,
        pos: 0,
        line: 1,
    };
    let mut ops = Vec::new();
    r.skip_ws()?;
    let close = match r.peek() {
        Some(b'[') => Some(b']'),
        Some(b'(') => Some(b')'),
        _ => None,
    };
    if close.is_some() {
        r.pos += 1;
    }
    loop {
        r.skip_ws()?;
        match r.peek() {
            None if close.is_none() => break,
            None => {
                return Err(r.err("unexpected end of file: the top-level collection is not closed"));
            }
            Some(c) if Some(c) == close => {
                r.pos += 1;
                r.skip_ws()?;
                if r.peek().is_some() {
                    return Err(r.err("unexpected text after the top-level collection"));
                }
                break;
            }
            Some(_) => {}
        }
        let line = r.line;
        let v = r.value()?;
        let Value::Object(map) = v else {
            return Err(Error::Parse {
                file: None,
                line,
                message: format!("expected an op map, got {v}"),
            });
        };
        // Jepsen's hand-written fixtures (long-fork's, for one) leave `:process` out: such an
        // op is taken as process 0's, as elle-cli does by pairing them in order.
        // Elle's own fixtures (paper-example, gh-30) also leave `:f` out of transactions: an op
        // whose value is a vector of micro-ops (`[[:append 1 2] [:r 1 nil]]`) is a `txn`.
        let get = |k: &str| match map.get(k) {
            None if k == "process" => Some(Value::from(0)),
            None if k == "f" && is_micro_ops(map.get("value")) => Some(Value::from("txn")),
            v => v.cloned(),
        };
        let op = op_from_fields(line, ops.len(), &get, &|k| format!(":{k}"))?;
        ops.push(op);
    }
    Ok(ops)
}

/// Whether a value is a non-empty list of micro-ops, each a list starting with a name.
fn is_micro_ops(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|ops| {
        !ops.is_empty()
            && ops.iter().all(|m| {
                m.as_array()
                    .is_some_and(|m| m.first().is_some_and(Value::is_string))
            })
    })
}

/// Parses one EDN value into JSON (for tests and tools).
///
/// # Errors
/// [`Error::Parse`] on bad syntax.
pub fn parse_edn_value(text: &str) -> Result<Value, Error> {
    let mut r = Reader {
        s: text.as_bytes(),
        text,
        pos: 0,
        line: 1,
    };
    r.value()
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    line: usize,
}

fn is_delim(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';'
        )
}

impl Reader<'_> {
    fn err(&self, message: impl Into<String>) -> Error {
        Error::Parse {
            file: None,
            line: self.line,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), Error> {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b',' => self.pos += 1,
                c if c.is_ascii_whitespace() => self.pos += 1,
                b';' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                b'#' if self.s.get(self.pos + 1) == Some(&b'_') => {
                    self.pos += 2;
                    self.skip_ws()?;
                    self.value()?;
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.skip_ws()?;
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end of file: expected a value"));
        };
        match c {
            b'[' => {
                self.pos += 1;
                Ok(Value::Array(self.seq(b']')?))
            }
            b'(' => {
                self.pos += 1;
                Ok(Value::Array(self.seq(b')')?))
            }
            b'{' => {
                self.pos += 1;
                self.map()
            }
            b'"' => self.string().map(Value::String),
            b'\\' => self.character(),
            b':' => {
                self.pos += 1;
                let t = self.token();
                if t.is_empty() {
                    return Err(self.err("a ':' with no keyword name"));
                }
                Ok(Value::String(t.to_string()))
            }
            b'#' => {
                self.pos += 1;
                match self.peek() {
                    Some(b'{') => {
                        self.pos += 1;
                        Ok(Value::Array(self.seq(b'}')?))
                    }
                    Some(c) if !is_delim(c) => {
                        // A tagged element (#inst "...", #uuid "..."): keep the element.
                        let _tag = self.token();
                        self.value()
                    }
                    _ => Err(self.err("a '#' that starts no set, tag or discard")),
                }
            }
            b')' | b']' | b'}' => Err(self.err(format!("unexpected '{}'", c as char))),
            _ => {
                let line = self.line;
                let t = self.token();
                atom(t).ok_or_else(|| Error::Parse {
                    file: None,
                    line,
                    message: format!("cannot read {t:?}"),
                })
            }
        }
    }

    fn token(&mut self) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_delim(c) {
                break;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn seq(&mut self, close: u8) -> Result<Vec<Value>, Error> {
        let open_line = self.line;
        let mut out = Vec::new();
        loop {
            self.skip_ws()?;
            match self.peek() {
                None => {
                    return Err(self.err(format!(
                        "unexpected end of file: '{}' opened at line {open_line} is not closed",
                        close as char
                    )));
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => out.push(self.value()?),
            }
        }
    }

    fn map(&mut self) -> Result<Value, Error> {
        let items = self.seq(b'}')?;
        if items.len() % 2 != 0 {
            return Err(self.err("a map with an odd number of forms"));
        }
        let mut m = Map::new();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let k = match k {
                Value::String(s) => s,
                other => other.to_string(),
            };
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }

    fn string(&mut self) -> Result<String, Error> {
        let open_line = self.line;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' {
                    break;
                }
                if c == b'\n' {
                    self.line += 1;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                None => {
                    return Err(Error::Parse {
                        file: None,
                        line: open_line,
                        message: "unterminated string".into(),
                    });
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => {
                    self.pos += 1;
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'u' => {
                            let hex = self.text.get(self.pos..self.pos + 4).unwrap_or("");
                            let c = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err(format!("bad \\u escape {hex:?}")))?;
                            out.push(c);
                            self.pos += 4;
                        }
                        other => return Err(self.err(format!("bad escape '\\{}'", other as char))),
                    }
                }
            }
        }
    }

    fn character(&mut self) -> Result<Value, Error> {
        self.pos += 1;
        let start = self.pos;
        // The first character is taken even if it is a delimiter (e.g. `\(`).
        if let Some(c) = self.text[start..].chars().next() {
            self.pos += c.len_utf8();
        }
        while let Some(c) = self.peek() {
            if is_delim(c) {
                break;
            }
            self.pos += 1;
        }
        let t = &self.text[start..self.pos];
        let c = match t {
            "newline" => "\n".to_string(),
            "space" => " ".to_string(),
            "tab" => "\t".to_string(),
            "return" => "\r".to_string(),
            _ if t.chars().count() == 1 => t.to_string(),
            _ if t.starts_with('u') && t.len() == 5 => u32::from_str_radix(&t[1..], 16)
                .ok()
                .and_then(char::from_u32)
                .map(|c| c.to_string())
                .ok_or_else(|| self.err(format!("bad character \\{t}")))?,
            _ => return Err(self.err(format!("bad character \\{t}"))),
        };
        Ok(Value::String(c))
    }
}

fn atom(t: &str) -> Option<Value> {
    match t {
        "nil" => return Some(Value::Null),
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "" => return None,
        _ => {}
    }
    let first = t.as_bytes()[0];
    let numeric = first.is_ascii_digit()
        || ((first == b'-' || first == b'+') && t.len() > 1 && t.as_bytes()[1].is_ascii_digit());
    if !numeric {
        return Some(Value::String(t.to_string()));
    }
    let body = t.strip_suffix('N').unwrap_or(t);
    if let Ok(i) = body.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    if let Ok(u) = body.parse::<u64>() {
        return Some(Value::Number(u.into()));
    }
    if t.ends_with('N') {
        // A big integer beyond 64 bits: keep its digits.
        return Some(Value::String(body.to_string()));
    }
    let body = t.strip_suffix('M').unwrap_or(t);
    body.parse::<f64>()
        .ok()
        .map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_maps_without_commas_comments_and_nested_values() {
        let ops = parse_edn(
            "; a comment\n[{:process 1 :type :invoke :f :cas :value [1 2]}\n ; more\n {:process :nemesis, :type :info, :f :start, :value #{1} }]",
        )
        .unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].value, serde_json::json!([1, 2]));
        assert_eq!(ops[0].f, "cas");
        assert_eq!(ops[1].line, 4);
        assert_eq!(ops[1].process, crate::Process::Nemesis);
    }

    #[test]
    fn reads_scalars() {
        let v =
            parse_edn_value(r#"{:a "x\"y" :b -3 :c 2.5 :d nil :e true :f \c :g #_ 7 8 :h 12N}"#)
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a":"x\"y","b":-3,"c":2.5,"d":null,"e":true,"f":"c","g":8,"h":12})
        );
    }

    #[test]
    fn unknown_type_names_line_and_field() {
        let e =
            parse_edn("[{:process 1 :type :invoke :f :read}\n{:process 1 :type :done :f :read}]")
                .unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains(":type"), "{e}");
    }

    #[test]
    fn unclosed_vector_is_an_error() {
        let e = parse_edn("[{:process 1 :type :invoke :f :read}").unwrap_err();
        assert!(
            e.to_string().contains("not closed") || e.to_string().contains("end of file"),
            "{e}"
        );
    }
}
