//! Porcupine's key-value model: string values with `get`, `put` and `append`.

use serde_json::Value;
use smallvec::SmallVec;
use std::collections::HashMap;

use super::{Call, HStr, Interner, Model, expect_known, mix64};
use crate::history::Outcome;

/// A map from keys to strings, every key initially `""`: `get` returns the string, `put`
/// replaces it, `append` extends it. Checked per key (one slot) by default; built with
/// [`KvModel::all_keys`] it holds every key in one state, for checking without partitioning.
#[derive(Debug, Clone, Default)]
pub struct KvModel {
    slots: HashMap<String, u32>,
}

/// An encoded kv operation on a slot (a key's index in the state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvOp {
    slot: u32,
    kind: KvKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KvKind {
    Get(HStr),
    Put(HStr),
    Append(HStr),
}

/// The strings of every slot, with an incrementally maintained hash. One slot (the per-key
/// check) is stored inline, without allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvState {
    hash: u64,
    vals: SmallVec<[HStr; 1]>,
}

impl std::hash::Hash for KvState {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash)
    }
}

fn slot_hash(slot: u32, s: &HStr) -> u64 {
    // Mixed, so that per-slot hashes combine well by XOR.
    mix64(s.hash64() ^ (u64::from(slot) << 40))
}

fn as_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl KvModel {
    /// One key per check (the history is partitioned by key).
    pub fn per_key() -> KvModel {
        KvModel::default()
    }

    /// Every key of `keys` in one state.
    pub fn all_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> KvModel {
        let mut slots = HashMap::new();
        for k in keys {
            let n = slots.len() as u32;
            slots.entry(k.to_string()).or_insert(n);
        }
        KvModel { slots }
    }

    fn nslots(&self) -> usize {
        self.slots.len().max(1)
    }
}

impl Model for KvModel {
    type Op = KvOp;
    type State = KvState;

    fn encode(&self, c: &Call<'_>, _: &mut Interner) -> Result<Option<KvOp>, String> {
        let slot = if self.slots.is_empty() {
            0
        } else {
            let k = c.key.unwrap_or("");
            *self
                .slots
                .get(k)
                .ok_or_else(|| format!("field key: unknown key {k:?}"))?
        };
        let kind = match c.f {
            "get" | "read" => match (c.outcome, c.output) {
                (Outcome::Ok, Some(v)) => KvKind::Get(HStr::new(&as_string(v))),
                _ => return Ok(None),
            },
            "put" | "write" => KvKind::Put(HStr::new(&as_string(c.input))),
            "append" => KvKind::Append(HStr::new(&as_string(c.input))),
            f => return Err(expect_known(f, "kv", "get, put, append")),
        };
        Ok(Some(KvOp { slot, kind }))
    }

    fn init(&self) -> KvState {
        let empty = HStr::new("");
        let vals: SmallVec<[HStr; 1]> = (0..self.nslots()).map(|_| empty.clone()).collect();
        let hash = (0..self.nslots() as u32).fold(0, |h, i| h ^ slot_hash(i, &empty));
        KvState { hash, vals }
    }

    fn step(&self, s: &KvState, op: &KvOp) -> Option<KvState> {
        let i = op.slot as usize;
        let cur = &s.vals[i];
        let new = match &op.kind {
            KvKind::Get(v) => return (v == cur).then(|| s.clone()),
            KvKind::Put(v) => {
                if v == cur {
                    return Some(s.clone());
                }
                v.clone()
            }
            KvKind::Append(v) => {
                if v.as_str().is_empty() {
                    return Some(s.clone());
                }
                cur.concat(v)
            }
        };
        let hash = s.hash ^ slot_hash(op.slot, cur) ^ slot_hash(op.slot, &new);
        let mut vals: Vec<HStr> = s.vals.to_vec();
        vals[i] = new;
        Some(KvState {
            hash,
            vals: vals.into(),
        })
    }

    fn is_read_only(&self, op: &KvOp) -> bool {
        matches!(op.kind, KvKind::Get(_))
    }

    fn describe(&self, s: &KvState, _: &Interner) -> Value {
        if self.slots.is_empty() {
            return Value::String(s.vals[0].as_str().to_string());
        }
        let mut m = serde_json::Map::new();
        let mut keys: Vec<_> = self.slots.iter().collect();
        keys.sort_by_key(|(_, i)| **i);
        for (k, i) in keys {
            m.insert(
                k.clone(),
                Value::String(s.vals[*i as usize].as_str().to_string()),
            );
        }
        Value::Object(m)
    }
}
