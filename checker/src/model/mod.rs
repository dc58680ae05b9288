//! Sequential specifications that histories are checked against.
//!
//! A [`Model`] is a deterministic state machine: [`Model::init`] gives the initial state and
//! [`Model::step`] applies one operation, returning `None` when the operation (with the result
//! the history observed) is impossible in that state. Before checking, each operation of the
//! history is [`Model::encode`]d once into the model's compact `Op`: values are interned to
//! small integers or hashed strings, so that `step` is cheap and states hash fast.
//!
//! Contract for implementors:
//! - `step` must be a pure function of `(state, op)`.
//! - An indeterminate operation (`info`) is encoded with `output: None`; the checker lets it
//!   take effect at most once, at any point after its invocation, so `step` applies it as if it
//!   succeeded (an unsuccessful effect is the same as not taking effect).
//! - `encode` may return `Ok(None)` for an operation that can neither change the state nor fail
//!   (an indeterminate read): the checker then drops it.

mod kv;
mod list_append;
mod multi_register;
mod mutex;
mod register;

use std::fmt::Debug;
use std::hash::Hash;

use serde_json::Value;

pub use kv::{KvModel, KvOp, KvState};
pub use list_append::{ListAppend, ListOp, ListState};
pub use multi_register::{Micro, MultiRegister, Registers};
pub use mutex::{Mutex, MutexOp};
pub use register::{CasRegister, RegisterOp};

use crate::history::Outcome;

/// One client operation as a model sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The function (`read`, `write`, `cas`, ...).
    pub f: &'a str,
    /// The key, if the history has keys.
    pub key: Option<&'a str>,
    /// The invocation's value.
    pub input: &'a Value,
    /// The completion's value; `None` for indeterminate operations.
    pub output: Option<&'a Value>,
    /// `Ok` or `Info`; `Fail` only in [`Model::encode_failed`].
    pub outcome: Outcome,
}

/// Interns JSON values to dense `u32` ids; `null` is always id 0. Integers and strings (the
/// values of almost every history) are looked up without formatting them; other values by
/// their JSON text.
#[derive(Debug, Clone)]
pub struct Interner {
    ids: ahash::HashMap<String, u32>,
    ints: ahash::HashMap<i64, u32>,
    strs: ahash::HashMap<String, u32>,
    values: Vec<Value>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            ids: ahash::HashMap::default(),
            ints: ahash::HashMap::default(),
            strs: ahash::HashMap::default(),
            values: vec![Value::Null],
        }
    }
}

impl Interner {
    /// The id of `v`, assigning the next one if `v` is new. Equal JSON values get equal ids.
    pub fn intern(&mut self, v: &Value) -> u32 {
        let next = self.values.len() as u32;
        let id = match v {
            Value::Null => return 0,
            Value::Number(n) if n.is_i64() => *self
                .ints
                .entry(n.as_i64().unwrap_or_default())
                .or_insert(next),
            Value::String(s) => match self.strs.get(s.as_str()) {
                Some(&id) => id,
                None => *self.strs.entry(s.clone()).or_insert(next),
            },
            _ => *self.ids.entry(v.to_string()).or_insert(next),
        };
        if id == next {
            self.values.push(v.clone());
        }
        id
    }

    /// The value with id `id`.
    pub fn value(&self, id: u32) -> &Value {
        &self.values[id as usize]
    }
}

/// A sequential specification (see the module docs for the contract).
pub trait Model: Send + Sync {
    /// An operation with its observed result, compactly encoded.
    type Op: Clone + Debug + Send + Sync;
    /// A model state. Must hash and compare cheaply: it is part of the search's memo key.
    type State: Clone + Eq + Hash + Debug + Send + Sync;

    /// Encodes an operation, or `Ok(None)` if it can be dropped.
    ///
    /// # Errors
    /// A message saying what is wrong if the model does not know the operation or its value
    /// has the wrong shape.
    fn encode(&self, call: &Call<'_>, values: &mut Interner) -> Result<Option<Self::Op>, String>;
    /// Encodes a `fail` that observed something: its reason was a precondition that did not
    /// hold (a CAS refused with `cas-mismatch`), so it took effect as a "no" somewhere between
    /// its call and its return (the register did not hold `from`). `Ok(None)` (the default):
    /// the model has no such observation, and the failed operation is dropped as one that
    /// never happened.
    ///
    /// # Errors
    /// As [`Model::encode`].
    fn encode_failed(
        &self,
        call: &Call<'_>,
        values: &mut Interner,
    ) -> Result<Option<Self::Op>, String> {
        let _ = (call, values);
        Ok(None)
    }
    /// The initial state.
    fn init(&self) -> Self::State;
    /// Applies `op` to `state`: the next state, or `None` if `op` is impossible in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// A state as JSON, for counterexamples.
    fn describe(&self, state: &Self::State, values: &Interner) -> Value;
    /// True if `op` never changes the state (in any state where it is possible), like a read.
    /// The search then linearizes it as soon as it is possible without trying alternatives,
    /// which is sound because such operations commute with everything around them. The
    /// default, `false`, is always correct.
    fn is_read_only(&self, op: &Self::Op) -> bool {
        let _ = op;
        false
    }

    /// Whether the state's `Hash` feeds all of the state to the hasher (so that two hashes of
    /// it with independent seeds are independent), which lets large searches keep
    /// configurations as 128-bit fingerprints instead of whole. `false` for states that hash a
    /// precomputed digest (the kv model's strings). Default `true`.
    const STRONG_HASH: bool = true;

    /// Whether the search should prune with [`Model::may_reach`]: after each state change it
    /// checks the nearest pending operations that must still be linearized. Default `false`.
    const PRUNES: bool = false;

    /// Whether `op` may make the state forget what came before it (like a put). The pruning
    /// of [`Model::may_reach`] only looks at operations that no such operation can precede.
    /// The default, `true`, is always correct.
    fn resets(&self, op: &Self::Op) -> bool {
        let _ = op;
        true
    }

    /// `false` only if no sequence of operations that do not [reset](Model::resets) leads from
    /// `state` to a state where `op` is possible: a configuration in that state with `op` still
    /// to be linearized (and no resetting operation able to come before it) is dead. The
    /// default, `true`, is always correct.
    fn may_reach(&self, state: &Self::State, op: &Self::Op) -> bool {
        let _ = (state, op);
        true
    }

    /// For the operations of one search (a key's, when checked per key) with whether each is
    /// indeterminate: which indeterminate ones can be left out without changing the verdict.
    /// An indeterminate operation may take effect at any point after its call, or never; when
    /// no completed operation can ever show its effect, "never" is always as good as any other
    /// choice, and dropping it spares the search from trying every place it could go. The
    /// default, none, is always correct.
    fn unobservable(&self, ops: &[(&Self::Op, bool)]) -> Vec<bool> {
        vec![false; ops.len()]
    }
}

/// The models the checker knows, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// [`CasRegister`]: `read`, `write`, `cas` on a register that starts as `nil`.
    CasRegister,
    /// [`KvModel`]: `get`, `put`, `append` on strings; every key starts as `""`.
    Kv,
    /// [`ListAppend`]: `append` a value, `read` the whole list; starts empty.
    ListAppend,
    /// [`Mutex`]: `acquire`, `release`; starts free.
    Mutex,
    /// [`MultiRegister`]: `txn` of `[:read k v]` / `[:write k v]` micro-ops.
    MultiRegister,
}

impl ModelKind {
    /// Every model, in the order the CLI lists them.
    pub const ALL: [ModelKind; 5] = [
        ModelKind::CasRegister,
        ModelKind::Kv,
        ModelKind::ListAppend,
        ModelKind::Mutex,
        ModelKind::MultiRegister,
    ];

    /// The CLI name (`cas-register`, `kv`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
            ModelKind::ListAppend => "list-append",
            ModelKind::Mutex => "mutex",
            ModelKind::MultiRegister => "multi-register",
        }
    }

    /// Looks a model up by its CLI name (`register` is accepted for `cas-register`).
    ///
    /// # Errors
    /// [`crate::Error::UnknownModel`] for any other name.
    pub fn parse(name: &str) -> Result<ModelKind, crate::Error> {
        match name {
            "register" => Ok(ModelKind::CasRegister),
            _ => ModelKind::ALL
                .into_iter()
                .find(|m| m.name() == name)
                .ok_or_else(|| crate::Error::UnknownModel(name.to_string())),
        }
    }

    /// Guesses the model from the functions a history uses: `txn` means multi-register,
    /// `acquire`/`release` mutex, `get`/`put` kv, `append` without `get` list-append, and
    /// anything else the CAS register.
    pub fn infer(history: &crate::History) -> ModelKind {
        Self::infer_fs(
            history
                .operations
                .iter()
                .map(|o| history.invocation(o).f.as_str()),
        )
    }

    /// As [`ModelKind::infer`], from the functions of the client operations.
    pub fn infer_fs<'a>(fs: impl IntoIterator<Item = &'a str>) -> ModelKind {
        let fs: std::collections::HashSet<&str> = fs.into_iter().collect();
        if fs.contains("txn") {
            ModelKind::MultiRegister
        } else if fs.contains("acquire") || fs.contains("release") {
            ModelKind::Mutex
        } else if fs.contains("get") || fs.contains("put") {
            ModelKind::Kv
        } else if fs.contains("append") {
            ModelKind::ListAppend
        } else {
            ModelKind::CasRegister
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A string with its hash computed once, so that states holding long strings hash in O(1).
/// The hash is polynomial (`h(ab) = h(a)·P^|b| + h(b)` modulo 2^64), so appending hashes only
/// the tail.
#[derive(Debug, Clone)]
pub struct HStr {
    hash: u64,
    /// P^len, to extend the hash of a string this one is appended to.
    pub(crate) pow: u64,
    s: std::sync::Arc<str>,
}

const POLY: u64 = 0x100_0000_01b3;

fn poly(b: &[u8]) -> (u64, u64) {
    b.iter().fold((0u64, 1u64), |(h, p), &c| {
        (
            h.wrapping_mul(POLY).wrapping_add(u64::from(c) + 1),
            p.wrapping_mul(POLY),
        )
    })
}

impl HStr {
    /// Wraps a string.
    pub fn new(s: &str) -> HStr {
        let (hash, pow) = poly(s.as_bytes());
        HStr {
            hash,
            pow,
            s: s.into(),
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.s
    }

    /// The precomputed hash.
    pub fn hash64(&self) -> u64 {
        self.hash
    }

    /// This string followed by `tail`.
    pub fn concat(&self, tail: &HStr) -> HStr {
        let mut s = String::with_capacity(self.s.len() + tail.s.len());
        s.push_str(&self.s);
        s.push_str(&tail.s);
        HStr {
            hash: self.hash.wrapping_mul(tail.pow).wrapping_add(tail.hash),
            pow: self.pow.wrapping_mul(tail.pow),
            s: s.into(),
        }
    }
}

impl PartialEq for HStr {
    fn eq(&self, o: &HStr) -> bool {
        self.hash == o.hash
            && self.s.len() == o.s.len()
            && (std::sync::Arc::ptr_eq(&self.s, &o.s) || self.s == o.s)
    }
}
impl Eq for HStr {}
impl Hash for HStr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash)
    }
}

/// A 64-bit finalizer (splitmix64), used to combine hashes.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn expect_known(f: &str, model: &str, known: &str) -> String {
    format!("field f: the {model} model has no operation {f:?} (it knows {known})")
}
