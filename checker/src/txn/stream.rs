//! The streaming path for big transactional histories: a JSONL history read line by line from
//! any [`BufRead`], each line deserialized straight into the compact form ([`Txns`]) without a
//! `serde_json::Value` tree and without keeping the text or the ops, invocations paired with
//! completions per process as [`History::from_ops`](crate::History::from_ops) pairs them.
//!
//! The result is the [`Txns`] that `history::parse` builds from the [`History`](crate::History)
//! of the same file (same txns, micro-ops, keys and key numbers, positions; only the layout of
//! the flat micro-op and element vectors may differ), so [`check_txn_jsonl`] gives the same
//! [`TxnResult`] as [`check_txn`](super::check_txn) on `read_history` of the file, and the same
//! errors (lines named) for malformed lines, pairing and micro-ops.
//!
//! Micro-ops are read without knowing the kind (a file may only say it late); what one kind
//! forbids (a `w` in a list-append history, a list read in an rw-register one) is remembered
//! for the earliest txn per kind and reported once the kind is known. A value this fast reader
//! does not understand is kept as text and read at the end exactly as `history::parse` reads it.

use std::fmt;
use std::io::BufRead;
use std::time::Instant;

use ahash::HashMap;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::history::{KeyName, Mop, MopF, NONE, Txn, Txns, decode_mops, mark_intermediate};
use super::{TxnKind, TxnOptions, TxnResult};
use crate::history::{OpType, Outcome, Process};
use crate::stats::StatsBuilder;
use crate::{Error, Stats};

/// What [`check_txn_jsonl`] yields: the verdict and what a summary needs of the history.
#[derive(Debug, Clone)]
pub struct TxnJsonl {
    /// The verdict, as [`check_txn`](super::check_txn) gives it.
    pub result: TxnResult,
    /// Outcome counts, as [`stats`](crate::stats()) gives them for the history.
    pub stats: Stats,
    /// Ops read (lines that are not blank), nemesis and watch lines included.
    pub ops: usize,
    /// Client operations (paired invocations).
    pub operations: usize,
    /// Problems that were tolerated (a truncated last line).
    pub warnings: Vec<String>,
}

/// Checks a JSONL list-append or rw-register history read from `reader`, line by line: parse
/// and check in one pass over the text, holding only the compact txns.
///
/// # Errors
/// As `read_history` for the same text: [`Error::Parse`] naming the line of a malformed line,
/// [`Error::Invalid`] naming the line of a completion without an invocation or a second
/// invocation while one is outstanding (no file name: add it with [`Error::with_file`]).
/// Malformed micro-ops make the verdict `unknown` with the reason, as in `check_txn`.
pub fn check_txn_jsonl<R: BufRead>(reader: R, opts: &TxnOptions) -> Result<TxnJsonl, Error> {
    let started = Instant::now();
    let r = read(reader, opts.kind)?;
    let result = super::check_parsed(r.txns, r.kind, opts, started);
    Ok(TxnJsonl {
        result,
        stats: r.stats,
        ops: r.ops,
        operations: r.operations,
        warnings: r.warnings,
    })
}

/// What the reader produced.
pub(crate) struct Read {
    /// The txns, or the first malformed micro-op (in txn order, as `history::parse`).
    pub txns: Result<Txns, String>,
    pub kind: TxnKind,
    pub stats: Stats,
    pub ops: usize,
    pub operations: usize,
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Keys.

#[derive(Default)]
struct Interner {
    ints: HashMap<i64, u32>,
    strs: HashMap<String, u32>,
    names: Vec<KeyName>,
}

impl Interner {
    fn int(&mut self, i: i64) -> u32 {
        let n = self.names.len() as u32;
        *self.ints.entry(i).or_insert_with(|| {
            self.names.push(KeyName::Int(i));
            n
        })
    }

    fn str(&mut self, s: &str) -> u32 {
        if let Some(&k) = self.strs.get(s) {
            return k;
        }
        let n = self.names.len() as u32;
        self.strs.insert(s.to_string(), n);
        self.names.push(KeyName::Str(s.to_string()));
        n
    }

    /// As `history::parse` reads a key.
    fn value(&mut self, v: &Value) -> Option<u32> {
        match v {
            Value::Number(x) => {
                let i = x.as_i64().or_else(|| x.as_u64().map(|u| u as i64))?;
                Some(self.int(i))
            }
            Value::String(s) => Some(self.str(s)),
            _ => None,
        }
    }

    fn json(&self, k: u32) -> Value {
        match &self.names[k as usize] {
            KeyName::Int(i) => Value::from(*i),
            KeyName::Str(s) => Value::from(s.as_str()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Micro-ops as read from one line, before the kind is known.

#[derive(Debug, Clone, Copy)]
enum SVal {
    Nil,
    Int(u64),
    /// A list in [`Scratch::elems`] (offset, length).
    List(u32, u32),
}

#[derive(Debug, Clone, Copy)]
struct SMop {
    f: MopF,
    key: u32,
    val: SVal,
}

/// The micro-ops of the line being read.
#[derive(Default)]
struct Scratch {
    mops: Vec<SMop>,
    elems: Vec<u64>,
    /// The value was a list (of micro-ops); else it was `null` or absent.
    list: bool,
}

impl Scratch {
    fn clear(&mut self) {
        self.mops.clear();
        self.elems.clear();
        self.list = false;
    }

    /// Whether `history::parse` could read these micro-ops under some kind: appends and writes
    /// carry integers.
    fn plain(&self) -> bool {
        self.mops
            .iter()
            .all(|m| m.f == MopF::Read || matches!(m.val, SVal::Int(_)))
    }

    /// The value as JSON (for a value that is kept as text).
    fn json(&self, keys: &Interner) -> Value {
        if !self.list {
            return Value::Null;
        }
        let mops = self.mops.iter().map(|m| {
            let f = match m.f {
                MopF::Append => "append",
                MopF::Write => "w",
                MopF::Read => "r",
            };
            let v = match m.val {
                SVal::Nil => Value::Null,
                SVal::Int(v) => Value::from(v as i64),
                SVal::List(o, l) => Value::Array(
                    self.elems[o as usize..(o + l) as usize]
                        .iter()
                        .map(|&e| Value::from(e as i64))
                        .collect(),
                ),
            };
            Value::Array(vec![Value::from(f), keys.json(m.key), v])
        });
        Value::Array(mops.collect())
    }

    /// infer_kind's look at one value: `Some(kind)` when decided.
    fn hint(&self, read_list: &mut bool) -> Option<TxnKind> {
        for m in &self.mops {
            match (m.f, m.val) {
                (MopF::Append, _) => return Some(TxnKind::ListAppend),
                (MopF::Write, _) => return Some(TxnKind::RwRegister),
                (MopF::Read, SVal::List(..)) => *read_list = true,
                _ => {}
            }
        }
        None
    }
}

/// infer_kind's look at one value, as JSON.
fn hint_value(v: &Value, read_list: &mut bool) -> Option<TxnKind> {
    for m in v.as_array()? {
        let Some(m) = m.as_array() else { continue };
        match m.first().and_then(Value::as_str) {
            Some("append") => return Some(TxnKind::ListAppend),
            Some("w") => return Some(TxnKind::RwRegister),
            Some("r") if m.get(2).is_some_and(Value::is_array) => *read_list = true,
            _ => {}
        }
    }
    None
}

fn fail<E: de::Error>() -> E {
    E::custom("not a list of micro-ops")
}

/// Reads a line's `value` into the scratch: `null`, or a list of `[f, key, value]` with `f`
/// one of `append`, `w`, `r`, the key an integer or string and the value `null`, an integer or
/// a list of integers. Anything else is an error (and the line is read again as JSON).
struct ValueSeed<'s> {
    s: &'s mut Scratch,
    keys: &'s mut Interner,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of micro-ops")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.s.list = true;
        while let Some(m) = seq.next_element_seed(MopSeed {
            s: &mut *self.s,
            keys: &mut *self.keys,
        })? {
            self.s.mops.push(m);
        }
        Ok(())
    }
}

struct MopSeed<'s> {
    s: &'s mut Scratch,
    keys: &'s mut Interner,
}

impl<'de> DeserializeSeed<'de> for MopSeed<'_> {
    type Value = SMop;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SMop, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MopSeed<'_> {
    type Value = SMop;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a micro-op")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SMop, A::Error> {
        let f = seq.next_element_seed(FSeed)?.ok_or_else(fail)?;
        let key = seq
            .next_element_seed(KeySeed(self.keys))?
            .ok_or_else(fail)?;
        let val = seq.next_element_seed(ValSeed(self.s))?.ok_or_else(fail)?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(fail());
        }
        Ok(SMop { f, key, val })
    }
}

struct FSeed;

impl<'de> DeserializeSeed<'de> for FSeed {
    type Value = MopF;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<MopF, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FSeed {
    type Value = MopF;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("append, w or r")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MopF, E> {
        match v {
            "append" => Ok(MopF::Append),
            "w" => Ok(MopF::Write),
            "r" => Ok(MopF::Read),
            _ => Err(fail()),
        }
    }
}

struct KeySeed<'s>(&'s mut Interner);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = u32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = u32;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        Ok(self.0.int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        Ok(self.0.int(v as i64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        Ok(self.0.str(v))
    }
}

struct ValSeed<'s>(&'s mut Scratch);

impl<'de> DeserializeSeed<'de> for ValSeed<'_> {
    type Value = SVal;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SVal, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValSeed<'_> {
    type Value = SVal;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, an integer or a list of integers")
    }
    fn visit_unit<E: de::Error>(self) -> Result<SVal, E> {
        Ok(SVal::Nil)
    }
    fn visit_none<E: de::Error>(self) -> Result<SVal, E> {
        Ok(SVal::Nil)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SVal, E> {
        Ok(SVal::Int(v as u64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SVal, E> {
        Ok(SVal::Int(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SVal, A::Error> {
        let off = self.0.elems.len();
        while let Some(e) = seq.next_element_seed(IntSeed)? {
            self.0.elems.push(e);
        }
        Ok(SVal::List(off as u32, (self.0.elems.len() - off) as u32))
    }
}

struct IntSeed;

impl<'de> DeserializeSeed<'de> for IntSeed {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for IntSeed {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        Ok(v as u64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// One line.

/// The fields of one line the checker needs (the micro-ops go to the scratch).
struct Line<'a> {
    index: Option<u64>,
    time: Option<u64>,
    process: Process,
    kind: OpType,
    f: std::borrow::Cow<'a, str>,
    key: Option<std::borrow::Cow<'a, str>>,
    /// The value's micro-ops are in the scratch; else the value as JSON (`Some` only for a
    /// value the fast reader does not understand).
    odd: Option<Value>,
}

/// The fast reader of a well-formed line: any problem (an escaped string, an odd value, a
/// missing field) is an error, and the line is read again as JSON for the exact message.
struct LineSeed<'s> {
    s: &'s mut Scratch,
    keys: &'s mut Interner,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_> {
    type Value = Line<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Line<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

struct ProcessSeed;

impl<'de> DeserializeSeed<'de> for ProcessSeed {
    type Value = Process;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Process, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for ProcessSeed {
    type Value = Process;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a process")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Process, E> {
        Ok(Process::Client(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Process, E> {
        match v {
            "nemesis" => Ok(Process::Nemesis),
            "watch" => Ok(Process::Watch),
            _ => Err(fail()),
        }
    }
}

impl<'de> Visitor<'de> for LineSeed<'_> {
    type Value = Line<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a history line")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line<'de>, A::Error> {
        let (mut index, mut time, mut process, mut kind, mut f, mut key) =
            (None, None, None, None, None, None);
        let mut seen = 0u16;
        while let Some(k) = map.next_key::<&'de str>()? {
            let bit = match k {
                "index" => 1,
                "time" => 2,
                "process" => 4,
                "type" => 8,
                "f" => 16,
                "key" => 32,
                "value" => 64,
                "node" => 128,
                "error" => 256,
                _ => 0,
            };
            if seen & bit != 0 {
                return Err(fail());
            }
            seen |= bit;
            match bit {
                1 => index = map.next_value::<Option<u64>>()?,
                2 => time = map.next_value::<Option<u64>>()?,
                4 => process = Some(map.next_value_seed(ProcessSeed)?),
                8 => {
                    let t: &'de str = map.next_value()?;
                    kind = Some(OpType::parse(t).ok_or_else(fail)?);
                }
                16 => f = Some(map.next_value::<&'de str>()?),
                32 => key = map.next_value_seed(KeyField)?,
                64 => map.next_value_seed(ValueSeed {
                    s: &mut *self.s,
                    keys: &mut *self.keys,
                })?,
                128 => {
                    map.next_value::<Option<&'de str>>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Line {
            index,
            time,
            process: process.ok_or_else(fail)?,
            kind: kind.ok_or_else(fail)?,
            f: f.ok_or_else(fail)?.into(),
            key: key.map(std::borrow::Cow::Borrowed),
            odd: None,
        })
    }
}

/// A line's `key`: a string (borrowed) or an integer (then refused: read again as JSON).
struct KeyField;

impl<'de> DeserializeSeed<'de> for KeyField {
    type Value = Option<&'de str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<&'de str>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyField {
    type Value = Option<&'de str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
}

// ---------------------------------------------------------------------------------------------
// The reader.

/// A txn's source of micro-ops: the ok completion's value, else the invocation's.
enum Src {
    /// Plain micro-ops (reads' values dropped for an invocation).
    Mops(Vec<SMop>),
    /// The value was `null` or absent.
    Null,
    /// A value the fast reader did not understand, as JSON text.
    Odd(String),
}

/// An outstanding invocation.
struct Pending {
    /// `None`: `txn`.
    f: Option<String>,
    key: Option<String>,
    line: usize,
    txn: u32,
    src: Src,
}

/// A txn whose value is read at the end, exactly as `history::parse` reads it.
struct Deferred {
    txn: u32,
    line: usize,
    ok: bool,
    text: String,
}

struct Reader {
    out: Txns,
    keys: Interner,
    scratch: Scratch,
    pending: HashMap<u64, Pending>,
    pool: Vec<Vec<SMop>>,
    deferred: Vec<Deferred>,
    /// Per kind (list-append, rw-register): the earliest txn whose micro-ops that kind
    /// refuses, and the message.
    refused: [Option<(u32, String)>; 2],
    hint: Option<TxnKind>,
    read_list: bool,
    stats: StatsBuilder,
    nemesis_ops: usize,
    watch_ops: usize,
    ops: usize,
    operations: usize,
    /// The first pairing error; later lines are still read for syntax (as `read_history`
    /// reads the whole file before pairing).
    invalid: Option<Error>,
}

fn kind_slot(k: TxnKind) -> usize {
    match k {
        TxnKind::ListAppend => 0,
        TxnKind::RwRegister => 1,
    }
}

impl Reader {
    fn count(&mut self, f: &str, key: Option<&str>, o: Outcome) {
        self.stats.add(f, key, o);
    }

    /// The scratch as a txn's source (an invocation's: reads' values dropped).
    fn src_of_scratch(&mut self, odd: Option<Value>, invocation: bool) -> Src {
        if let Some(v) = odd {
            return if v.is_null() {
                Src::Null
            } else {
                Src::Odd(v.to_string())
            };
        }
        if !self.scratch.list {
            return Src::Null;
        }
        if !self.scratch.plain() {
            return Src::Odd(self.scratch.json(&self.keys).to_string());
        }
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend(self.scratch.mops.iter().map(|m| SMop {
            val: if invocation && m.f == MopF::Read {
                SVal::Nil
            } else {
                m.val
            },
            ..*m
        }));
        Src::Mops(v)
    }

    /// Lays out txn `x`'s micro-ops from `mops` (list elements from the scratch).
    fn place(&mut self, x: u32, line: usize, ok: bool, src: Src) {
        let mops = match src {
            Src::Null => {
                let m = format!("line {line}: a txn's value must be a list of micro-ops, got null");
                self.refuse(0, x, || m.clone());
                self.refuse(1, x, || m);
                return;
            }
            Src::Odd(text) => {
                self.deferred.push(Deferred {
                    txn: x,
                    line,
                    ok,
                    text,
                });
                return;
            }
            Src::Mops(m) => m,
        };
        let start = self.out.mops.len();
        for m in &mops {
            let mut mop = Mop {
                f: m.f,
                intermediate: false,
                nil: false,
                key: m.key,
                value: 0,
                off: 0,
                len: 0,
            };
            match (m.f, m.val) {
                (MopF::Append, SVal::Int(v)) => {
                    mop.value = v;
                    if self.refused[1].as_ref().is_none_or(|r| r.0 > x) {
                        self.refused[1] = Some((x, does_not_belong(line, "append")));
                    }
                }
                (MopF::Write, SVal::Int(v)) => {
                    mop.value = v;
                    if self.refused[0].as_ref().is_none_or(|r| r.0 > x) {
                        self.refused[0] = Some((x, does_not_belong(line, "w")));
                    }
                }
                (MopF::Read, SVal::Nil) => mop.nil = true,
                (MopF::Read, _) if !ok => mop.nil = true,
                (MopF::Read, SVal::Int(v)) => {
                    // A list-append read of an integer: the empty list (as `parse` reads it).
                    mop.value = v;
                    mop.off = NONE;
                }
                (MopF::Read, SVal::List(o, l)) => {
                    let list = &self.scratch.elems[o as usize..(o + l) as usize];
                    if self.refused[1].as_ref().is_none_or(|r| r.0 > x) {
                        let m = Value::Array(vec![
                            Value::from("r"),
                            self.keys.json(m.key),
                            Value::Array(list.iter().map(|&e| Value::from(e as i64)).collect()),
                        ]);
                        self.refused[1] = Some((x, format!("line {line}: malformed micro-op {m}")));
                    }
                    mop.off = self.out.elems.len() as u32;
                    mop.len = l;
                    self.out.elems.extend_from_slice(list);
                }
                _ => unreachable!("plain micro-ops carry integers"),
            }
            self.out.mops.push(mop);
        }
        mark_intermediate(&mut self.out.mops[start..]);
        let t = &mut self.out.txns[x as usize];
        t.mop_start = start as u32;
        t.mop_len = (self.out.mops.len() - start) as u32;
        let mut mops = mops;
        mops.clear();
        self.pool.push(mops);
    }

    fn refuse(&mut self, slot: usize, x: u32, m: impl FnOnce() -> String) {
        if self.refused[slot].as_ref().is_none_or(|r| r.0 > x) {
            self.refused[slot] = Some((x, m()));
        }
    }

    /// Handles one op (its micro-ops in the scratch, or in `line.odd`).
    fn op(&mut self, l: Line<'_>, lineno: usize) {
        let position = self.ops;
        self.ops += 1;
        self.out.at_pos.push(NONE);
        let is_txn = l.f == "txn";
        if is_txn && self.hint.is_none() {
            self.hint = match &l.odd {
                Some(v) => hint_value(v, &mut self.read_list),
                None => self.scratch.hint(&mut self.read_list),
            };
        }
        let p = match l.process {
            Process::Client(p) => p,
            Process::Nemesis => {
                self.nemesis_ops += 1;
                return;
            }
            Process::Watch => {
                self.watch_ops += 1;
                return;
            }
        };
        if self.invalid.is_some() {
            return;
        }
        let index = l.index.unwrap_or(position as u64);
        let invalid = |message: String| Error::Invalid {
            file: None,
            line: lineno,
            message,
        };
        if l.kind == OpType::Invoke {
            if let Some(prev) = self.pending.get(&p) {
                self.invalid = Some(invalid(format!(
                    "process {p} invokes {:?} while its {:?} invoked at line {} is still \
                     outstanding",
                    l.f,
                    prev.f.as_deref().unwrap_or("txn"),
                    prev.line
                )));
                return;
            }
            self.operations += 1;
            let (txn, src) = if is_txn {
                let x = self.out.txns.len() as u32;
                self.out.at_pos[position] = x;
                self.out.txns.push(Txn {
                    process: p,
                    index,
                    outcome: Outcome::Info,
                    invoke: position as u32,
                    time: l.time,
                    mop_start: 0,
                    mop_len: 0,
                });
                (x, self.src_of_scratch(l.odd, true))
            } else {
                self.out.other_ops += 1;
                (NONE, Src::Null)
            };
            self.pending.insert(
                p,
                Pending {
                    f: (!is_txn).then(|| l.f.to_string()),
                    key: l.key.map(|k| k.to_string()),
                    line: lineno,
                    txn,
                    src,
                },
            );
            return;
        }
        let Some(inv) = self.pending.remove(&p) else {
            self.invalid = Some(invalid(format!(
                "{} completion of {:?} by process {p} without an invocation",
                l.kind.as_str(),
                l.f
            )));
            return;
        };
        let inv_f = inv.f.as_deref().unwrap_or("txn");
        if inv_f != l.f {
            self.invalid = Some(invalid(format!(
                "process {p} completes {:?} but invoked {inv_f:?} at line {}",
                l.f, inv.line
            )));
            return;
        }
        if inv.key.as_deref() != l.key.as_deref() && l.key.is_some() {
            self.invalid = Some(invalid(format!(
                "process {p} completes key {:?} but invoked key {:?} at line {}",
                l.key.as_deref(),
                inv.key.as_deref(),
                inv.line
            )));
            return;
        }
        let outcome = match l.kind {
            OpType::Ok => Outcome::Ok,
            OpType::Fail => Outcome::Fail,
            _ => Outcome::Info,
        };
        let key = inv.key.as_deref().or(l.key.as_deref());
        self.count(inv_f, key, outcome);
        if inv.txn == NONE {
            return;
        }
        let x = inv.txn;
        self.out.at_pos[position] = x;
        let t = &mut self.out.txns[x as usize];
        t.outcome = outcome;
        t.index = index;
        t.time = l.time.or(t.time);
        if outcome == Outcome::Ok {
            if let Src::Mops(m) = inv.src {
                self.pool.push(m);
            }
            let src = self.src_of_scratch(l.odd, false);
            self.place(x, lineno, true, src);
        } else {
            self.place(x, inv.line, false, inv.src);
        }
    }

    /// The end of the history: open invocations are indeterminate; the kind is settled and
    /// what it refuses reported; deferred values read; keys numbered as `parse` numbers them.
    fn finish(mut self, kind: Option<TxnKind>, warnings: Vec<String>) -> Result<Read, Error> {
        if let Some(e) = self.invalid.take() {
            return Err(e);
        }
        let mut open: Vec<(u64, Pending)> = self.pending.drain().collect();
        open.sort_by_key(|(_, p)| p.txn);
        for (_, inv) in open {
            let f = inv.f.clone().unwrap_or_else(|| "txn".into());
            self.count(&f, inv.key.as_deref(), Outcome::Info);
            if inv.txn != NONE {
                self.place(inv.txn, inv.line, false, inv.src);
            }
        }
        let stats = std::mem::take(&mut self.stats).finish(self.nemesis_ops, self.watch_ops);
        let kind = kind.or(self.hint).unwrap_or(if self.read_list {
            TxnKind::ListAppend
        } else {
            TxnKind::RwRegister
        });
        let txns = self.settle(kind);
        Ok(Read {
            txns,
            kind,
            stats,
            ops: self.ops,
            operations: self.operations,
            warnings,
        })
    }

    fn settle(&mut self, kind: TxnKind) -> Result<Txns, String> {
        self.scratch = Scratch::default();
        self.pool = Vec::new();
        let refused = self.refused[kind_slot(kind)].take();
        let mut deferred = std::mem::take(&mut self.deferred);
        deferred.sort_by_key(|d| d.txn);
        for d in deferred {
            if let Some((x, m)) = &refused
                && *x < d.txn
            {
                return Err(m.clone());
            }
            let v: Value = serde_json::from_str(&d.text).unwrap_or(Value::Null);
            let start = self.out.mops.len();
            exact(&v, kind, d.ok, d.line, &mut self.out, &mut self.keys)?;
            let t = &mut self.out.txns[d.txn as usize];
            t.mop_start = start as u32;
            t.mop_len = (self.out.mops.len() - start) as u32;
        }
        if let Some((_, m)) = refused {
            return Err(m);
        }
        let mut out = std::mem::take(&mut self.out);
        // Keys numbered in order of first use by the txns' micro-ops, as `parse` numbers them.
        let mut renum = vec![NONE; self.keys.names.len()];
        let mut names = Vec::new();
        let old = std::mem::take(&mut self.keys.names);
        let mut old: Vec<Option<KeyName>> = old.into_iter().map(Some).collect();
        for t in &out.txns {
            for m in &mut out.mops[t.mop_start as usize..(t.mop_start + t.mop_len) as usize] {
                let k = &mut renum[m.key as usize];
                if *k == NONE {
                    *k = names.len() as u32;
                    names.push(old[m.key as usize].take().expect("a key numbered once"));
                }
                m.key = *k;
                if m.off == NONE {
                    m.off = 0;
                }
            }
        }
        out.keys = names;
        out.mops.shrink_to_fit();
        out.elems.shrink_to_fit();
        out.txns.shrink_to_fit();
        out.at_pos.shrink_to_fit();
        Ok(out)
    }
}

/// The message for micro-op `f` in a history of the other kind (the first refused micro-op of
/// a txn wins: a later one of the same txn never replaces it).
fn does_not_belong(line: usize, f: &str) -> String {
    let kind = if f == "w" {
        TxnKind::ListAppend
    } else {
        TxnKind::RwRegister
    };
    format!(
        "line {line}: micro-op {f:?} does not belong in a {} history",
        kind.name()
    )
}

/// One txn's value read exactly as `history::parse` reads it (for values the fast reader did
/// not understand).
fn exact(
    v: &Value,
    kind: TxnKind,
    ok: bool,
    line: usize,
    out: &mut Txns,
    keys: &mut Interner,
) -> Result<(), String> {
    let Some(mops) = v.as_array() else {
        return Err(format!(
            "line {line}: a txn's value must be a list of micro-ops, got {v}"
        ));
    };
    decode_mops(mops, kind, ok, line, out, &mut |k| keys.value(k))
}

/// Reads a JSONL history into txns, line by line.
pub(crate) fn read<R: BufRead>(mut reader: R, kind: Option<TxnKind>) -> Result<Read, Error> {
    let mut r = Reader {
        out: Txns::default(),
        keys: Interner::default(),
        scratch: Scratch::default(),
        pending: HashMap::default(),
        pool: Vec::new(),
        deferred: Vec::new(),
        refused: [None, None],
        hint: None,
        read_list: false,
        stats: StatsBuilder::default(),
        nemesis_ops: 0,
        watch_ops: 0,
        ops: 0,
        operations: 0,
        invalid: None,
    };
    let mut warnings = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 12);
    let mut lineno = 0usize;
    let io = |line: usize, e: std::io::Error| Error::Parse {
        file: None,
        line,
        message: format!("cannot read: {e}"),
    };
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io(lineno + 1, e))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let raw_len = raw.len();
        let text = std::str::from_utf8(raw).map_err(|e| Error::Parse {
            file: None,
            line: lineno,
            message: format!("not UTF-8: {e}"),
        })?;
        let l = text.trim();
        if l.is_empty() {
            continue;
        }
        r.scratch.clear();
        let mut de = serde_json::Deserializer::from_str(l);
        let fast = LineSeed {
            s: &mut r.scratch,
            keys: &mut r.keys,
        }
        .deserialize(&mut de)
        .ok()
        .filter(|_| de.end().is_ok());
        if let Some(line) = fast {
            r.op(line, lineno);
            continue;
        }
        // The slow way, as `parse_jsonl`: the line as JSON, field by field.
        let op = match crate::format::parse_jsonl_line(l, lineno, r.ops) {
            Ok(op) => op,
            Err(e) => {
                let at = (lineno, raw_len, buf.ends_with(b"\n"));
                warnings.push(crate::format::cut_off_last_line(&mut reader, e, at, io)?);
                break;
            }
        };
        r.scratch.clear();
        let odd = if op.f == "txn" {
            let fast = ValueSeed {
                s: &mut r.scratch,
                keys: &mut r.keys,
            }
            .deserialize(&op.value)
            .is_ok();
            (!fast).then(|| op.value.clone())
        } else {
            None
        };
        let line = Line {
            index: Some(op.index),
            time: op.time,
            process: op.process,
            kind: op.kind,
            f: op.f.into(),
            key: op.key.map(Into::into),
            odd,
        };
        r.op(line, lineno);
    }
    r.finish(kind, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Validity;
    use crate::txn::history::{infer_kind, parse};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    type NormTxn = (u64, u64, Outcome, u32, Option<u64>, Vec<NormMop>);
    type NormMop = (MopF, bool, bool, u32, u64, Vec<u64>);

    /// Txns as the checker sees them (list elements by content, not by offset).
    fn norm(t: &Txns) -> (Vec<NormTxn>, Vec<KeyName>, Vec<u32>, usize) {
        let txns = (0..t.txns.len() as u32)
            .map(|x| {
                let tx = &t.txns[x as usize];
                let mops = t
                    .mops(x)
                    .iter()
                    .map(|m| {
                        (
                            m.f,
                            m.intermediate,
                            m.nil,
                            m.key,
                            m.value,
                            t.list(m).to_vec(),
                        )
                    })
                    .collect();
                (tx.process, tx.index, tx.outcome, tx.invoke, tx.time, mops)
            })
            .collect();
        (txns, t.keys.clone(), t.at_pos.clone(), t.other_ops)
    }

    fn result_json(r: &TxnResult) -> Value {
        let mut v = serde_json::to_value(r).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("infer_ms");
        o.remove("search_ms");
        v
    }

    /// Both paths on `text`: the same txns (or the same refusal), kind, stats, verdict.
    fn same(text: &str, kind: Option<TxnKind>, what: &str) -> Read {
        let h = crate::parse_history(text, false).unwrap();
        let r = read(text.as_bytes(), kind).unwrap();
        let k = kind.unwrap_or_else(|| infer_kind(&h));
        assert_eq!(r.kind, k, "{what}: kind");
        match (parse(&h, k), &r.txns) {
            (Ok(a), Ok(b)) => assert_eq!(norm(&a), norm(b), "{what}: txns"),
            (Err(a), Err(b)) => assert_eq!(&a, b, "{what}: refusal"),
            (a, b) => panic!(
                "{what}: history path {:?}, stream {:?}",
                a.err(),
                b.as_ref().err()
            ),
        }
        assert_eq!(r.stats, crate::stats(&h), "{what}: stats");
        assert_eq!((r.ops, r.operations), (h.ops.len(), h.operations.len()));
        assert_eq!(r.warnings, h.warnings, "{what}: warnings");
        for model in [
            super::super::ConsistencyModel::StrictSerializable,
            super::super::ConsistencyModel::ReadCommitted,
        ] {
            let opts = TxnOptions {
                kind,
                model,
                ..TxnOptions::default()
            };
            let a = super::super::check_txn(&h, &opts);
            let b = check_txn_jsonl(text.as_bytes(), &opts).unwrap();
            assert_eq!(
                result_json(&a),
                result_json(&b.result),
                "{what}: {model} result"
            );
            println!(
                "  {what}, {model}: {} {:?}",
                b.result.valid,
                b.result.anomalies.keys().collect::<Vec<_>>()
            );
        }
        r
    }

    /// A random history of `n` txns of `kind` over few keys (so that reads race writes), with
    /// anomalies (stale and corrupted reads), fails, infos, open invocations at the end,
    /// nemesis lines, non-txn ops, string keys (odd seeds), no corruption (every third seed), missing indices, odd invocation
    /// values and an escaped string now and then.
    fn generate(seed: u64, n: usize, kind: TxnKind) -> String {
        /// An open txn: micro-ops (write?, key, value), odd invocation value.
        type Pend = (Vec<(bool, u64, u64)>, bool);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let la = kind == TxnKind::ListAppend;
        let strkeys = seed % 2 == 1;
        // Every third seed: reads show the state as it is and every ok txn applies.
        let clean = seed.is_multiple_of(3);
        let key = |k: u64| {
            if strkeys {
                json!(format!("k{k}"))
            } else {
                json!(k)
            }
        };
        let mut state: HashMap<u64, Vec<u64>> = HashMap::default();
        let mut next = 0u64;
        let procs = 6usize;
        let mut pid: Vec<u64> = (0..procs as u64).collect();
        let mut next_pid = procs as u64;
        let mut pending: Vec<Option<Pend>> = vec![None; procs];
        let (mut out, mut index, mut time, mut started) = (String::new(), 0u64, 0u64, 0usize);
        let mut line =
            |out: &mut String, p: Value, ty: &str, f: &str, value: Value, rng: &mut ChaCha8Rng| {
                time += rng.random_range(1..100);
                let mut o = json!({"time": time, "process": p, "type": ty, "f": f, "value": value});
                if rng.random_range(0..50) > 0 {
                    o["index"] = json!(index);
                }
                if ty == "fail" {
                    o["error"] = if rng.random_bool(0.5) {
                        json!("aborted")
                    } else {
                        json!(["x", 1])
                    };
                }
                index += 1;
                let mut s = o.to_string();
                if rng.random_range(0..100) == 0 {
                    s = s.replace("\"txn\"", "\"t\\u0078n\"");
                }
                out.push_str(&s);
                out.push('\n');
            };
        let value = |mops: &[(bool, u64, u64)], reads: Option<&[Value]>, odd: bool| {
            let mut ri = 0;
            Value::Array(
                mops.iter()
                    .map(|&(w, k, v)| {
                        if w {
                            json!([if la { "append" } else { "w" }, key(k), v])
                        } else {
                            let r = match reads {
                                Some(r) => {
                                    ri += 1;
                                    r[ri - 1].clone()
                                }
                                None if odd => json!({"odd": true}),
                                None => Value::Null,
                            };
                            json!(["r", key(k), r])
                        }
                    })
                    .collect(),
            )
        };
        while started < n || pending.iter().any(Option::is_some) {
            if rng.random_range(0..40) == 0 {
                let v = if rng.random_bool(0.5) {
                    json!({"nodes": ["n1"]})
                } else {
                    Value::Null
                };
                line(
                    &mut out,
                    json!("nemesis"),
                    "info",
                    "start-partition",
                    v,
                    &mut rng,
                );
            }
            let p = rng.random_range(0..procs);
            match pending[p].take() {
                None if started < n => {
                    started += 1;
                    if rng.random_range(0..30) == 0 {
                        // A non-txn op, completed at once.
                        line(
                            &mut out,
                            json!(pid[p]),
                            "invoke",
                            "read",
                            Value::Null,
                            &mut rng,
                        );
                        line(&mut out, json!(pid[p]), "ok", "read", json!(3), &mut rng);
                        continue;
                    }
                    let mops: Vec<(bool, u64, u64)> = (0..rng.random_range(1..=4))
                        .map(|_| {
                            let k = rng.random_range(0..6u64);
                            next += 1;
                            (rng.random_bool(0.5), k, next)
                        })
                        .collect();
                    let odd = rng.random_range(0..30) == 0;
                    line(
                        &mut out,
                        json!(pid[p]),
                        "invoke",
                        "txn",
                        value(&mops, None, odd),
                        &mut rng,
                    );
                    pending[p] = Some((mops, odd));
                }
                None => {}
                Some(_) if started >= n && rng.random_range(0..8) == 0 => {
                    // Left open for good.
                }
                Some((mops, _)) => {
                    let fate = rng.random_range(0..10);
                    if fate == 0 {
                        line(
                            &mut out,
                            json!(pid[p]),
                            "fail",
                            "txn",
                            value(&mops, None, false),
                            &mut rng,
                        );
                        continue;
                    }
                    let mut reads = Vec::new();
                    let mut local = state.clone();
                    for &(w, k, v) in &mops {
                        let l = local.entry(k).or_default();
                        if w {
                            if la {
                                l.push(v);
                            } else {
                                *l = vec![v];
                            }
                        } else {
                            let mut seen = l.clone();
                            match if clean { 99 } else { rng.random_range(0..40) } {
                                0 if !seen.is_empty() => {
                                    seen.pop();
                                }
                                1 if seen.len() > 1 => seen.swap(0, 1),
                                _ => {}
                            }
                            reads.push(if la {
                                json!(seen)
                            } else {
                                seen.last().map_or(Value::Null, |&v| json!(v))
                            });
                        }
                    }
                    if fate == 1 {
                        if rng.random_bool(0.5) {
                            state = local;
                        }
                        line(
                            &mut out,
                            json!(pid[p]),
                            "info",
                            "txn",
                            value(&mops, None, false),
                            &mut rng,
                        );
                        pid[p] = next_pid;
                        next_pid += 1;
                    } else {
                        if clean || rng.random_range(0..20) > 0 {
                            state = local;
                        }
                        line(
                            &mut out,
                            json!(pid[p]),
                            "ok",
                            "txn",
                            value(&mops, Some(&reads), false),
                            &mut rng,
                        );
                    }
                }
            }
        }
        out
    }

    fn seeds() -> Vec<u64> {
        let mut s: Vec<u64> = (1..=6).collect();
        let extra = std::env::var("FAULTLINE_TEST_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(7, |d| d.as_nanos() as u64)
            });
        s.push(extra);
        s
    }

    #[test]
    fn generated_histories_read_and_check_the_same_both_ways() {
        for seed in seeds() {
            for kind in [TxnKind::ListAppend, TxnKind::RwRegister] {
                let text = generate(seed, 400, kind);
                println!(
                    "seed {seed} ({}): {} bytes (FAULTLINE_TEST_SEED={seed} repeats it)",
                    kind.name(),
                    text.len()
                );
                let what = format!("seed {seed}, {}", kind.name());
                let r = same(&text, None, &what);
                assert!(r.txns.is_ok(), "{what}: {:?}", r.txns.as_ref().err());
                same(&text, Some(kind), &what);
                // A cut-off last line: tolerated with the same warning.
                let cut = &text[..text.len() - 9];
                let r = same(cut, None, &format!("{what}, cut"));
                assert_eq!(r.warnings.len(), 1, "{what}: {:?}", r.warnings);
            }
        }
    }

    const SMALL: &str = r#"{"index":0,"time":10,"process":0,"type":"invoke","f":"txn","value":[["append",1,1],["r",2,null]]}
{"index":1,"time":11,"process":1,"type":"invoke","f":"txn","value":[["append",2,1],["r",1,null]]}
{"index":2,"time":12,"process":"nemesis","type":"info","f":"start-partition","value":{"grudge":[1]}}
{"index":3,"time":20,"process":0,"type":"ok","f":"txn","value":[["append",1,1],["r",2,[]]]}
{"index":4,"time":21,"process":1,"type":"ok","f":"txn","value":[["append",2,1],["r",1,[]]]}

{"index":5,"time":30,"process":2,"type":"invoke","f":"txn","value":[["r","a",null],["append","a",7],["append","a",8]]}
{"index":6,"time":31,"process":2,"type":"info","f":"txn","value":[["r","a",null],["append","a",7],["append","a",8]],"error":"timeout"}
{"index":7,"time":40,"process":3,"type":"invoke","f":"txn","value":[["r","a",null]]}
{"index":8,"time":41,"process":3,"type":"ok","f":"txn","value":[["r","a",[7]]]}
{"index":9,"time":50,"process":4,"type":"invoke","f":"txn","value":[["r",1,null],["r",2,null]]}
"#;

    #[test]
    fn a_small_file_reads_and_checks_the_same_both_ways() {
        let r = same(SMALL, None, "small");
        let t = r.txns.unwrap();
        assert_eq!(r.kind, TxnKind::ListAppend);
        assert_eq!(t.txns.len(), 5);
        assert_eq!(t.txns[4].outcome, Outcome::Info, "never completed: info");
        assert_eq!((r.ops, r.operations, r.stats.nemesis_ops), (10, 5, 1));
        // From a file, through a buffered reader: write skew (G2-item) and an intermediate
        // read (G1b) of 7 (appended before 8 in one txn).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, SMALL).unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let c = check_txn_jsonl(file, &TxnOptions::default()).unwrap();
        assert_eq!(c.result.valid, Validity::Invalid);
        assert!(
            c.result.anomalies.contains_key("G1b"),
            "{:?}",
            c.result.anomalies
        );
        assert!(
            c.result.anomalies.contains_key("G2-item"),
            "{:?}",
            c.result.anomalies
        );
    }

    fn err(text: &str) -> Error {
        let h = crate::parse_history(text, false).expect_err("the history path refuses it too");
        let e = read(text.as_bytes(), None)
            .err()
            .expect("the stream refuses it");
        assert_eq!(e.to_string(), h.to_string());
        e
    }

    #[test]
    fn pairing_and_syntax_errors_name_the_line() {
        let inv = r#"{"process":1,"type":"invoke","f":"txn","value":[["r",1,null]]}"#;
        let ok = r#"{"process":1,"type":"ok","f":"txn","value":[["r",1,[]]]}"#;
        let e = err(&format!("{inv}\n{ok}\n{ok}\n"));
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("without an invocation"), "{e}");
        let e = err(&format!("{inv}\n\n{inv}\n"));
        assert_eq!(e.line(), Some(3));
        assert!(
            e.to_string()
                .contains("invoked at line 1 is still outstanding"),
            "{e}"
        );
        let e = err(&format!(
            "{inv}\n{}\n",
            r#"{"process":1,"type":"ok","f":"read","value":null}"#
        ));
        assert!(
            e.to_string()
                .contains("completes \"read\" but invoked \"txn\" at line 1")
        );
        // A syntax error later in the file comes first, as when the whole file is read first.
        let e = err(&format!("{ok}\n{{\"process\":1,\n{inv}\n"));
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("invalid JSON"), "{e}");
        // A bad field, by name.
        let e = err(&format!(
            "{inv}\n{}\n",
            r#"{"process":-1,"type":"ok","f":"txn"}"#
        ));
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("\"process\""), "{e}");
        let e = err("[1,2]\n");
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
        // With the file's name, as read_history gives it.
        let e = e.with_file(std::path::Path::new("h.jsonl"));
        assert!(e.to_string().starts_with("h.jsonl: line 1: "), "{e}");
    }

    #[test]
    fn malformed_micro_ops_are_refused_as_the_history_path_refuses_them() {
        let inv =
            |p: u64, v: &str| format!(r#"{{"process":{p},"type":"invoke","f":"txn","value":{v}}}"#);
        let done = |p: u64, ty: &str, v: &str| {
            format!(r#"{{"process":{p},"type":"{ty}","f":"txn","value":{v}}}"#)
        };
        let cases = [
            // A write in a list-append history (the kind by its first append).
            vec![
                inv(1, r#"[["append",1,1]]"#),
                done(1, "ok", r#"[["append",1,1]]"#),
                inv(2, r#"[["w",1,2]]"#),
                done(2, "ok", r#"[["w",1,2]]"#),
            ],
            // A list read in an rw-register history; an earlier txn's refusal wins although it
            // completes later.
            vec![
                inv(1, r#"[["w",1,1],["r",2,null]]"#),
                inv(2, r#"[["r",1,null]]"#),
                done(2, "ok", r#"[["r",1,[1]]]"#),
                done(1, "ok", r#"[["w",1,1],["r",2,[1,2]]]"#),
            ],
            // Odd values: a float append, a short micro-op, a value that is no list, null.
            vec![
                inv(1, r#"[["append",1,1.5]]"#),
                done(1, "fail", r#"[["append",1,1.5]]"#),
            ],
            vec![
                inv(1, r#"[["append",1]]"#),
                done(1, "ok", r#"[["append",1]]"#),
            ],
            vec![inv(1, r#"{"a":1}"#), done(1, "info", r#"[]"#)],
            vec![inv(1, r#"[["append",1,2]]"#), done(1, "ok", "null")],
            vec![inv(1, r#"[["append",1,2],["x",1,2]]"#)],
            // Fine: an odd read value in an invocation of a txn that fails.
            vec![
                inv(1, r#"[["append",1,2],["r",1,{"a":1}]]"#),
                done(1, "fail", "[]"),
            ],
        ];
        for (i, lines) in cases.iter().enumerate() {
            let text = lines.join("\n") + "\n";
            let r = same(&text, None, &format!("case {i}"));
            match (i, &r.txns) {
                (7, t) => assert!(t.is_ok(), "case {i}: {:?}", t.as_ref().err()),
                (_, Ok(_)) => panic!("case {i} is refused"),
                (_, Err(e)) => assert!(e.starts_with("line "), "case {i}: {e}"),
            }
        }
        let text = cases[1].join("\n") + "\n";
        let r = read(text.as_bytes(), None).unwrap();
        assert_eq!(
            r.txns.err().as_deref(),
            Some(r#"line 4: malformed micro-op ["r",2,[1,2]]"#)
        );
        let c = check_txn_jsonl(text.as_bytes(), &TxnOptions::default()).unwrap();
        assert_eq!(c.result.valid, Validity::Unknown);
        assert!(c.result.reason.as_deref().unwrap().contains("line 4"));
    }
}
