//! The compact form of a transactional history: every `txn` operation of a client as a
//! [`Txn`] (indices, no strings), its micro-ops as [`Mop`]s in one flat vector, read lists in
//! one flat vector of elements, keys interned to `u32`.

use ahash::HashMap;
use serde_json::Value;

use super::TxnKind;
use crate::history::{History, Outcome, Process};

/// "No position".
pub(crate) const NONE: u32 = u32::MAX;

/// A key as written in the history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeyName {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyName::Int(i) => write!(f, "{i}"),
            KeyName::Str(s) => write!(f, "{s}"),
        }
    }
}

/// What a micro-op does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MopF {
    Append,
    Write,
    Read,
}

/// One micro-op. Reads of lists point into [`Txns::elems`] (`off`, `len`); register reads
/// carry their value in `value`. `nil` marks a read of nothing (or a read not known).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mop {
    pub f: MopF,
    /// True for an append or write that a later one of the same txn to the same key
    /// overwrites (an intermediate write).
    pub intermediate: bool,
    pub nil: bool,
    pub key: u32,
    pub value: u64,
    pub off: u32,
    pub len: u32,
}

/// One transaction: a client `txn` operation.
#[derive(Debug, Clone)]
pub(crate) struct Txn {
    pub process: u64,
    /// The history's `index` of the completion (of the invocation when there is none).
    pub index: u64,
    pub outcome: Outcome,
    /// The position of the invocation in `History::ops`.
    pub invoke: u32,
    /// The completion's time (the invocation's when there is none).
    pub time: Option<u64>,
    pub mop_start: u32,
    pub mop_len: u32,
}

/// The compact history.
#[derive(Debug, Default)]
pub(crate) struct Txns {
    pub txns: Vec<Txn>,
    pub mops: Vec<Mop>,
    pub elems: Vec<u64>,
    pub keys: Vec<KeyName>,
    /// Position in `History::ops` -> txn (or [`NONE`]).
    pub at_pos: Vec<u32>,
    /// Client ops that were not transactions (ignored).
    pub other_ops: usize,
}

impl Txns {
    pub fn mops(&self, t: u32) -> &[Mop] {
        let t = &self.txns[t as usize];
        &self.mops[t.mop_start as usize..(t.mop_start + t.mop_len) as usize]
    }

    pub fn list(&self, m: &Mop) -> &[u64] {
        &self.elems[m.off as usize..(m.off + m.len) as usize]
    }

    /// The micro-ops of `t` as text, EDN-style: `[:append 3 5] [:r 3 [1 5]]`.
    pub fn mops_text(&self, t: u32, kind: TxnKind) -> String {
        let mut out = String::new();
        for (i, m) in self.mops(t).iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let k = &self.keys[m.key as usize];
            let v = m.value as i64;
            match m.f {
                MopF::Append => out.push_str(&format!("[:append {k} {v}]")),
                MopF::Write => out.push_str(&format!("[:w {k} {v}]")),
                MopF::Read if m.nil => out.push_str(&format!("[:r {k} nil]")),
                MopF::Read if kind == TxnKind::RwRegister => out.push_str(&format!("[:r {k} {v}]")),
                MopF::Read => out.push_str(&format!("[:r {k} {}]", list_text(self.list(m)))),
            }
        }
        out
    }
}

/// `[1 2 3]`.
pub(crate) fn list_text(l: &[u64]) -> String {
    let parts: Vec<String> = l.iter().map(|v| (*v as i64).to_string()).collect();
    format!("[{}]", parts.join(" "))
}

/// The kind of micro-ops a value holds: `Some(true)` when it is a list of Elle micro-ops
/// (`append`, `r`, `w`), `Some(false)` for other micro-ops (`read`/`write`: the older
/// multi-register model), `None` when it is not a list of micro-ops.
pub(crate) fn elle_mops(v: &Value) -> Option<bool> {
    let mops = v.as_array()?;
    let mut elle = None;
    for m in mops {
        let f = m.as_array()?.first()?.as_str()?;
        match f {
            "append" | "r" | "w" => elle = Some(true),
            _ => return Some(false),
        }
    }
    elle
}

/// Whether the history is one for this checker: any client `txn` op with Elle's micro-ops.
pub fn is_elle_txn_history(history: &History) -> bool {
    history.ops.iter().any(|o| {
        matches!(o.process, Process::Client(_)) && o.f == "txn" && elle_mops(&o.value) == Some(true)
    })
}

/// Infers the kind from the micro-ops: appends mean list-append, writes rw-register, reads
/// alone by their values (lists: list-append).
pub(crate) fn infer_kind(history: &History) -> TxnKind {
    let mut read_list = false;
    for o in history.ops.iter().filter(|o| o.f == "txn") {
        let Some(mops) = o.value.as_array() else {
            continue;
        };
        for m in mops {
            let Some(m) = m.as_array() else { continue };
            match m.first().and_then(Value::as_str) {
                Some("append") => return TxnKind::ListAppend,
                Some("w") => return TxnKind::RwRegister,
                Some("r") if m.get(2).is_some_and(Value::is_array) => read_list = true,
                _ => {}
            }
        }
    }
    if read_list {
        TxnKind::ListAppend
    } else {
        TxnKind::RwRegister
    }
}

struct Interner {
    ints: HashMap<i64, u32>,
    strs: HashMap<String, u32>,
    names: Vec<KeyName>,
}

impl Interner {
    fn key(&mut self, v: &Value) -> Option<u32> {
        let n = self.names.len() as u32;
        match v {
            Value::Number(x) => {
                let i = x.as_i64().or_else(|| x.as_u64().map(|u| u as i64))?;
                Some(*self.ints.entry(i).or_insert_with(|| {
                    self.names.push(KeyName::Int(i));
                    n
                }))
            }
            Value::String(s) => {
                if let Some(&k) = self.strs.get(s) {
                    return Some(k);
                }
                self.strs.insert(s.clone(), n);
                self.names.push(KeyName::Str(s.clone()));
                Some(n)
            }
            _ => None,
        }
    }
}

/// Decodes one txn's micro-ops (the value of the op at `line`) into `out.mops` and
/// `out.elems`, keys through `key`, and marks its intermediate writes. `ok`: the txn committed
/// and its reads are known (otherwise they are not reads of anything).
///
/// # Errors
/// A malformed micro-op, or one that does not belong in a `kind` history, naming the line.
pub(crate) fn decode_mops(
    mops: &[Value],
    kind: TxnKind,
    ok: bool,
    line: usize,
    out: &mut Txns,
    key: &mut dyn FnMut(&Value) -> Option<u32>,
) -> Result<(), String> {
    let start = out.mops.len();
    for m in mops {
        let bad = || format!("line {line}: malformed micro-op {m}");
        let a = m.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
        let f = match (a[0].as_str(), kind) {
            (Some("append"), TxnKind::ListAppend) => MopF::Append,
            (Some("w"), TxnKind::RwRegister) => MopF::Write,
            (Some("r"), _) => MopF::Read,
            (Some(f), _) => {
                return Err(format!(
                    "line {line}: micro-op {f:?} does not belong in a {} history",
                    kind.name()
                ));
            }
            _ => return Err(bad()),
        };
        let key = key(&a[1]).ok_or_else(bad)?;
        let mut mop = Mop {
            f,
            intermediate: false,
            nil: false,
            key,
            value: 0,
            off: 0,
            len: 0,
        };
        match (f, &a[2]) {
            (MopF::Read, Value::Null) => mop.nil = true,
            // An indeterminate or failed txn's reads are not known.
            (MopF::Read, _) if !ok => mop.nil = true,
            (MopF::Read, Value::Array(l)) if kind == TxnKind::ListAppend => {
                mop.off = out.elems.len() as u32;
                for e in l {
                    out.elems.push(int(e).ok_or_else(bad)?);
                }
                mop.len = l.len() as u32;
            }
            (_, v) => mop.value = int(v).ok_or_else(bad)?,
        }
        out.mops.push(mop);
    }
    mark_intermediate(&mut out.mops[start..]);
    Ok(())
}

/// Marks intermediate writes: a later write to the same key in the same txn.
pub(crate) fn mark_intermediate(ms: &mut [Mop]) {
    for i in 0..ms.len() {
        if ms[i].f != MopF::Read {
            let k = ms[i].key;
            ms[i].intermediate = ms[i + 1..].iter().any(|n| n.f != MopF::Read && n.key == k);
        }
    }
}

pub(crate) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Number(x) => x.as_i64().map(|i| i as u64).or_else(|| x.as_u64()),
        _ => None,
    }
}

/// Reads the transactions of `history`.
///
/// # Errors
/// A message naming the line of the first malformed micro-op.
pub(crate) fn parse(history: &History, kind: TxnKind) -> Result<Txns, String> {
    let mut out = Txns {
        at_pos: vec![NONE; history.ops.len()],
        ..Txns::default()
    };
    let mut interner = Interner {
        ints: HashMap::default(),
        strs: HashMap::default(),
        names: Vec::new(),
    };
    out.txns.reserve(history.operations.len());
    for o in &history.operations {
        let inv = history.invocation(o);
        if inv.f != "txn" {
            out.other_ops += 1;
            continue;
        }
        let comp = history.completion(o);
        // An ok txn's completion says what it read; otherwise only the invocation is known.
        let src = match (o.outcome, comp) {
            (Outcome::Ok, Some(c)) => c,
            _ => inv,
        };
        let t = out.txns.len() as u32;
        let mop_start = out.mops.len() as u32;
        let Some(mops) = src.value.as_array() else {
            return Err(format!(
                "line {}: a txn's value must be a list of micro-ops, got {}",
                src.line, src.value
            ));
        };
        decode_mops(
            mops,
            kind,
            o.outcome == Outcome::Ok,
            src.line,
            &mut out,
            &mut |v| interner.key(v),
        )?;
        let mop_len = out.mops.len() as u32 - mop_start;
        let time = comp.and_then(|c| c.time).or(inv.time);
        out.at_pos[o.invoke] = t;
        if let Some(c) = o.complete {
            out.at_pos[c] = t;
        }
        out.txns.push(Txn {
            process: o.process,
            index: comp.map_or(inv.index, |c| c.index),
            outcome: o.outcome,
            invoke: o.invoke as u32,
            time,
            mop_start,
            mop_len,
        });
    }
    out.keys = interner.names;
    Ok(out)
}
