//! Porcupine's key-value model: string values with `get`, `put` and `append`.

use serde_json::Value;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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
    /// The value observed, and the polynomial hash of each of its prefixes (by length), so
    /// that whether a state is a prefix of it is one comparison. Computed when the search
    /// first needs them: most gets of a key that stops early never do.
    Get(HStr, OnceLock<Box<[u64]>>),
    Put(HStr),
    Append(HStr),
}

/// A string built by puts and appends, shared structurally: an append allocates one small
/// node pointing at the string before it, instead of copying it. The polynomial hash and the
/// length are kept, so comparisons are O(1) unless the hashes agree.
#[derive(Debug, Clone)]
pub struct Rope {
    hash: u64,
    pow: u64,
    len: usize,
    last: Option<Arc<RopeNode>>,
}

#[derive(Debug)]
struct RopeNode {
    prev: Rope,
    chunk: HStr,
}

impl Drop for RopeNode {
    // Dropping a long chain recursively could overflow the stack: unlink it iteratively.
    fn drop(&mut self) {
        let mut next = self.prev.last.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut n) => next = n.prev.last.take(),
                Err(_) => break,
            }
        }
    }
}

impl Rope {
    fn empty() -> Rope {
        Rope {
            hash: 0,
            pow: 1,
            len: 0,
            last: None,
        }
    }

    fn from_chunk(v: &HStr) -> Rope {
        Rope::empty().append(v)
    }

    fn append(&self, v: &HStr) -> Rope {
        if v.as_str().is_empty() {
            return self.clone();
        }
        Rope {
            hash: self.hash.wrapping_mul(v.pow).wrapping_add(v.hash64()),
            pow: self.pow.wrapping_mul(v.pow),
            len: self.len + v.as_str().len(),
            last: Some(Arc::new(RopeNode {
                prev: self.clone(),
                chunk: v.clone(),
            })),
        }
    }

    /// The chunks, last first.
    fn chunks(&self) -> impl Iterator<Item = &str> {
        let mut cur = self.last.as_deref();
        std::iter::from_fn(move || {
            let n = cur?;
            cur = n.prev.last.as_deref();
            Some(n.chunk.as_str())
        })
    }

    fn to_string_lossless(&self) -> String {
        let mut parts: Vec<&str> = self.chunks().collect();
        parts.reverse();
        parts.concat()
    }

    /// Whether this string equals `s`.
    fn matches(&self, s: &HStr) -> bool {
        if self.hash != s.hash64() || self.len != s.as_str().len() {
            return false;
        }
        let mut end = s.as_str().len();
        let bytes = s.as_str().as_bytes();
        for c in self.chunks() {
            let start = end - c.len();
            if &bytes[start..end] != c.as_bytes() {
                return false;
            }
            end = start;
        }
        true
    }
}

impl PartialEq for Rope {
    fn eq(&self, o: &Rope) -> bool {
        if self.hash != o.hash || self.len != o.len {
            return false;
        }
        // Walk back while the chunks line up; most equal ropes share a tail or a node.
        let (mut a, mut b) = (self, o);
        loop {
            match (&a.last, &b.last) {
                (None, None) => return true,
                (Some(x), Some(y)) if Arc::ptr_eq(x, y) => return true,
                (Some(x), Some(y)) if x.chunk == y.chunk => {
                    a = &x.prev;
                    b = &y.prev;
                }
                _ => return a.to_string_lossless() == b.to_string_lossless(),
            }
        }
    }
}
impl Eq for Rope {}

/// The strings of every slot, with an incrementally maintained hash. One slot (the per-key
/// check) is stored inline, without allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvState {
    hash: u64,
    vals: SmallVec<[Rope; 1]>,
}

impl std::hash::Hash for KvState {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash)
    }
}

fn slot_hash(slot: u32, s: &Rope) -> u64 {
    // Mixed, so that per-slot hashes combine well by XOR.
    mix64(s.hash ^ (s.len as u64) << 48 ^ (u64::from(slot) << 40))
}

/// `h[k]` is the polynomial hash (as [`HStr`]'s) of `b[..k]`.
fn prefix_hashes(b: &[u8]) -> Box<[u64]> {
    let mut h = Vec::with_capacity(b.len() + 1);
    let mut x = 0u64;
    h.push(x);
    for &c in b {
        x = x.wrapping_mul(super::POLY).wrapping_add(u64::from(c) + 1);
        h.push(x);
    }
    h.into()
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
    // A state hashes its strings' 64-bit polynomial digests, not their bytes.
    const STRONG_HASH: bool = false;

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
                (Outcome::Ok, Some(v)) => KvKind::Get(HStr::new(&as_string(v)), OnceLock::new()),
                _ => return Ok(None),
            },
            "put" | "write" => KvKind::Put(HStr::new(&as_string(c.input))),
            "append" => KvKind::Append(HStr::new(&as_string(c.input))),
            f => return Err(expect_known(f, "kv", "get, put, append")),
        };
        Ok(Some(KvOp { slot, kind }))
    }

    fn init(&self) -> KvState {
        let vals: SmallVec<[Rope; 1]> = (0..self.nslots()).map(|_| Rope::empty()).collect();
        let hash = vals
            .iter()
            .enumerate()
            .fold(0, |h, (i, r)| h ^ slot_hash(i as u32, r));
        KvState { hash, vals }
    }

    fn step(&self, s: &KvState, op: &KvOp) -> Option<KvState> {
        let i = op.slot as usize;
        let cur = &s.vals[i];
        let new = match &op.kind {
            KvKind::Get(v, _) => return cur.matches(v).then(|| s.clone()),
            KvKind::Put(v) => {
                if cur.matches(v) {
                    return Some(s.clone());
                }
                Rope::from_chunk(v)
            }
            KvKind::Append(v) => {
                if v.as_str().is_empty() {
                    return Some(s.clone());
                }
                cur.append(v)
            }
        };
        let hash = s.hash ^ slot_hash(op.slot, cur) ^ slot_hash(op.slot, &new);
        let mut vals = s.vals.clone();
        vals[i] = new;
        Some(KvState { hash, vals })
    }

    fn is_read_only(&self, op: &KvOp) -> bool {
        matches!(op.kind, KvKind::Get(..))
    }

    const PRUNES: bool = true;

    fn resets(&self, op: &KvOp) -> bool {
        matches!(op.kind, KvKind::Put(_))
    }

    /// Appends only extend a string: without a put, a get can only see an extension of the
    /// current value. (Compared by hash: equal strings always have equal hashes, so a
    /// collision can only keep a dead configuration, never prune a live one.)
    fn may_reach(&self, s: &KvState, op: &KvOp) -> bool {
        match &op.kind {
            KvKind::Get(v, prefixes) => {
                let cur = &s.vals[op.slot as usize];
                let prefixes = prefixes.get_or_init(|| prefix_hashes(v.as_str().as_bytes()));
                prefixes.get(cur.len).is_some_and(|&h| h == cur.hash)
            }
            _ => true,
        }
    }

    fn describe(&self, s: &KvState, _: &Interner) -> Value {
        if self.slots.is_empty() {
            return Value::String(s.vals[0].to_string_lossless());
        }
        let mut m = serde_json::Map::new();
        let mut keys: Vec<_> = self.slots.iter().collect();
        keys.sort_by_key(|(_, i)| **i);
        for (k, i) in keys {
            m.insert(
                k.clone(),
                Value::String(s.vals[*i as usize].to_string_lossless()),
            );
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ropes_compare_by_content_whatever_their_chunks() {
        let (a, b, ab) = (HStr::new("a"), HStr::new("b"), HStr::new("ab"));
        let split = Rope::empty().append(&a).append(&b);
        let whole = Rope::from_chunk(&ab);
        assert_eq!(split, whole);
        assert!(split.matches(&ab) && whole.matches(&ab));
        assert_ne!(split, Rope::empty().append(&b).append(&a));
        assert!(!split.matches(&HStr::new("ba")));
        assert_eq!(split.to_string_lossless(), "ab");
        let mut h = std::collections::HashSet::new();
        h.insert(KvState {
            hash: slot_hash(0, &split),
            vals: [split].into_iter().collect(),
        });
        assert!(h.contains(&KvState {
            hash: slot_hash(0, &whole),
            vals: [whole].into_iter().collect()
        }));
    }

    #[test]
    fn a_long_rope_drops_without_recursion() {
        let x = HStr::new("x");
        let mut r = Rope::empty();
        for _ in 0..200_000 {
            r = r.append(&x);
        }
        assert_eq!(r.len, 200_000);
        drop(r);
    }
}
