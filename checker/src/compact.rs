//! A history held compactly, for the linearizability checker: each client operation is one
//! fixed-size record ([`COp`], 80 bytes) whose function, key, values and error are ids into
//! interners, instead of two [`Op`]s with their own strings and JSON trees (about 700 bytes a
//! pair). [`Compact::push`] takes ops one at a time, in order of occurrence, pairing and
//! validating them as [`History::from_ops`] does, so a reader can stream a file into it without
//! holding the text or the ops ([`read_compact`]).

use std::io::BufRead;

use ahash::HashMap;
use serde_json::Value;

use crate::Error;
use crate::history::{History, Op, OpType, Outcome, Process};
use crate::model::Interner;
use crate::stats::{Stats, StatsBuilder};

/// "None" in the `u32` and `u64` fields of a [`COp`].
pub const NONE: u32 = u32::MAX;
const NONE64: u64 = u64::MAX;

/// One client operation: its invocation and completion, with ids in place of strings and
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct COp {
    /// The client process.
    pub process: u64,
    /// `index` of the invocation and of the completion ([`u64::MAX`]: none).
    pub invoke_index: u64,
    /// See `invoke_index`.
    pub complete_index: u64,
    /// Time of the invocation and completion, ns ([`u64::MAX`]: not recorded).
    pub invoke_time: u64,
    /// See `invoke_time`.
    pub complete_time: u64,
    /// Position of the invocation among all ops of the history.
    pub call: u32,
    /// Position of the completion ([`NONE`]: never completed).
    pub complete: u32,
    /// Source lines of the invocation and completion (0: built in memory or none).
    pub invoke_line: u32,
    /// See `invoke_line`.
    pub complete_line: u32,
    /// The function's id in [`Compact::fs`].
    pub f: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The key's id in [`Compact::keys`] ([`NONE`]: no key).
    pub key: u32,
    /// The invocation's value, an id in [`Compact::values`].
    pub input: u32,
    /// The completion's value ([`NONE`]: no completion).
    pub output: u32,
    /// The completion's error, an id in [`Compact::errors`] ([`NONE`]: none recorded).
    pub error: u32,
}

impl COp {
    /// The position after which the operation can no longer take effect (as
    /// [`crate::Operation::return_position`]): `None` for indeterminate operations.
    pub fn return_position(&self) -> Option<usize> {
        match self.outcome {
            Outcome::Info => None,
            _ => (self.complete != NONE).then_some(self.complete as usize),
        }
    }
}

/// Strings interned to dense ids.
#[derive(Debug, Clone, Default)]
pub struct Strings {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Strings {
    /// The id of `s`, assigning the next one if it is new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }

    /// The string with id `id`.
    pub fn get(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// The id of `s`, if interned.
    pub fn id(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// Every string, by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A validated history of client operations in compact form (nemesis and watch lines are
/// counted, not kept).
#[derive(Debug, Clone, Default)]
pub struct Compact {
    /// Client operations, in order of invocation.
    pub ops: Vec<COp>,
    /// Interned values (invocation and completion values).
    pub values: Interner,
    /// Interned keys.
    pub keys: Strings,
    /// Interned functions.
    pub fs: Strings,
    /// Interned errors.
    pub errors: Strings,
    /// Tolerated problems of the input (a truncated last line).
    pub warnings: Vec<String>,
    /// Ops pushed (lines of the history, nemesis and watch lines included).
    pub events: usize,
    /// Nemesis ops seen.
    pub nemesis_ops: usize,
    /// Watch lines seen.
    pub watch_ops: usize,
    outstanding: HashMap<u64, u32>,
}

impl Compact {
    /// Appends one op, the next in order of occurrence.
    ///
    /// # Errors
    /// [`Error::Invalid`] as [`History::from_ops`]: a completion without an invocation, a
    /// second invocation while one is outstanding, a completion whose `f` or key differs.
    pub fn push(&mut self, op: &Op) -> Result<(), Error> {
        let pos = self.events as u32;
        self.events += 1;
        let p = match op.process {
            Process::Client(p) => p,
            Process::Nemesis => {
                self.nemesis_ops += 1;
                return Ok(());
            }
            Process::Watch => {
                self.watch_ops += 1;
                return Ok(());
            }
        };
        let f = self.fs.intern(&op.f);
        if op.kind == OpType::Invoke {
            if let Some(&prev) = self.outstanding.get(&p) {
                let prev = self.ops[prev as usize];
                return Err(crate::history::already_outstanding(
                    op,
                    p,
                    self.fs.get(u32::from(prev.f)),
                    prev.invoke_line as usize,
                ));
            }
            self.outstanding.insert(p, self.ops.len() as u32);
            let f = u16::try_from(f).map_err(|_| Error::Invalid {
                file: None,
                line: op.line,
                message: "more than 65,535 distinct functions".into(),
            })?;
            let key = op.key.as_deref().map_or(NONE, |k| self.keys.intern(k));
            let input = self.values.intern(&op.value);
            self.ops.push(COp {
                process: p,
                invoke_index: op.index,
                complete_index: NONE64,
                invoke_time: op.time.unwrap_or(NONE64),
                complete_time: NONE64,
                call: pos,
                complete: NONE,
                invoke_line: op.line as u32,
                complete_line: 0,
                f,
                outcome: Outcome::Info,
                key,
                input,
                output: NONE,
                error: NONE,
            });
            return Ok(());
        }
        let Some(i) = self.outstanding.remove(&p) else {
            return Err(crate::history::no_invocation(op, p));
        };
        let inv = self.ops[i as usize];
        if u32::from(inv.f) != f {
            return Err(crate::history::other_f(
                op,
                p,
                self.fs.get(u32::from(inv.f)),
                inv.invoke_line as usize,
            ));
        }
        let inv_key = (inv.key != NONE).then(|| self.keys.get(inv.key).to_string());
        if op.key.is_some() && inv_key != op.key {
            return Err(crate::history::other_key(
                op,
                p,
                inv_key.as_deref(),
                inv.invoke_line as usize,
            ));
        }
        let output = self.values.intern(&op.value);
        let error = op.error.as_deref().map_or(NONE, |e| self.errors.intern(e));
        let o = &mut self.ops[i as usize];
        o.complete_index = op.index;
        o.complete_time = op.time.unwrap_or(NONE64);
        o.complete = pos;
        o.complete_line = op.line as u32;
        o.outcome = match op.kind {
            OpType::Ok => Outcome::Ok,
            OpType::Fail => Outcome::Fail,
            _ => Outcome::Info,
        };
        o.output = output;
        o.error = error;
        Ok(())
    }

    /// The compact form of a history.
    pub fn from_history(h: &History) -> Compact {
        let mut c = Compact::default();
        for op in &h.ops {
            // A History is already validated: pushing its ops cannot fail.
            let pushed = c.push(op);
            debug_assert!(pushed.is_ok(), "{pushed:?}");
        }
        c.warnings = h.warnings.clone();
        c
    }

    /// The function of `o`.
    pub fn f(&self, o: &COp) -> &str {
        self.fs.get(u32::from(o.f))
    }

    /// The key of `o`, if any.
    pub fn key(&self, o: &COp) -> Option<&str> {
        (o.key != NONE).then(|| self.keys.get(o.key))
    }

    /// The error recorded by the completion of `o`, if any.
    pub fn error(&self, o: &COp) -> Option<&str> {
        (o.error != NONE).then(|| self.errors.get(o.error))
    }

    /// The completion's value of `o`, if it completed.
    pub fn output(&self, o: &COp) -> Option<&Value> {
        (o.output != NONE).then(|| self.values.value(o.output))
    }

    /// Outcome counts, as [`crate::stats()`] gives them for the full history.
    pub fn stats(&self) -> Stats {
        let mut s = StatsBuilder::default();
        for o in &self.ops {
            s.add(self.f(o), self.key(o), o.outcome);
        }
        s.finish(self.nemesis_ops, self.watch_ops)
    }
}

/// Reads a JSONL history from `reader` into compact form, one line at a time: neither the
/// text nor the ops are held. Errors and the one tolerance (a truncated last line) are those
/// of [`crate::parse_jsonl`].
///
/// # Errors
/// [`Error::Io`] when reading fails (named `<input>`; the caller adds the file), and the
/// errors of [`crate::parse_jsonl`] and [`Compact::push`], naming the line.
pub fn read_compact<R: BufRead>(reader: R) -> Result<Compact, Error> {
    Ok(read_compact_while(reader, |_| true)?.unwrap_or_default())
}

/// As [`read_compact`], stopping with `None` at the first op `keep` refuses (a reader that
/// only wants some kinds of history learns early that this is not one).
///
/// # Errors
/// As [`read_compact`], for the lines read.
pub fn read_compact_while<R: BufRead>(
    mut reader: R,
    mut keep: impl FnMut(&Op) -> bool,
) -> Result<Option<Compact>, Error> {
    let mut c = Compact::default();
    let mut buf = String::new();
    let mut line = 0usize;
    let mut position = 0usize;
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).map_err(|source| Error::Io {
            path: "<input>".into(),
            source,
        })?;
        if n == 0 {
            break;
        }
        line += 1;
        let l = buf.trim();
        if l.is_empty() {
            continue;
        }
        match crate::format::parse_jsonl_line(l, line, position) {
            Ok(op) => {
                if !keep(&op) {
                    return Ok(None);
                }
                position += 1;
                c.push(&op)?;
            }
            Err(e) => {
                // A cut-off last line (a killed harness) is a warning, as parse_jsonl has it.
                let at = (line, buf.trim_end_matches('\n').len(), buf.ends_with('\n'));
                let io = |_, source| Error::Io {
                    path: "<input>".into(),
                    source,
                };
                let warning = crate::format::cut_off_last_line(&mut reader, e, at, io)?;
                c.warnings.push(warning);
                break;
            }
        }
    }
    // Operations still outstanding at the end are indeterminate, as History has them.
    c.outstanding.clear();
    Ok(Some(c))
}
