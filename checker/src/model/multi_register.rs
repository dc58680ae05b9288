//! Knossos's multi-register: transactions over several named registers.

use serde_json::Value;
use smallvec::SmallVec;

use super::{Call, Interner, Model, expect_known};

/// Named registers, all initially `nil`. A `txn` is a list of micro-ops `[:read k v]` and
/// `[:write k v]` applied in order, atomically. As in Knossos, a read of `nil` constrains
/// nothing (Jepsen writes unknown read results as `nil`). Built with
/// [`MultiRegister::with_initial`], registers start with given values (Knossos's
/// `multi-register` example starts with `{:x 0 :y 0}`).
#[derive(Debug, Clone, Default)]
pub struct MultiRegister {
    initial: Registers,
}

impl MultiRegister {
    /// Registers starting with these `(register, value)` [`Interner`] ids.
    pub fn with_initial(initial: impl IntoIterator<Item = (u32, u32)>) -> MultiRegister {
        let mut v: Registers = initial.into_iter().filter(|(_, v)| *v != 0).collect();
        v.sort_unstable();
        v.dedup_by_key(|(k, _)| *k);
        MultiRegister { initial: v }
    }
}

/// One micro-op: register and value are [`Interner`] ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Micro {
    /// Observed this value (`None`: unknown).
    Read(u32, Option<u32>),
    /// Set the register.
    Write(u32, u32),
}

/// Registers with a non-nil value, as sorted `(register, value)` pairs.
pub type Registers = SmallVec<[(u32, u32); 4]>;

impl Model for MultiRegister {
    type Op = SmallVec<[Micro; 4]>;
    type State = Registers;

    fn encode(&self, c: &Call<'_>, values: &mut Interner) -> Result<Option<Self::Op>, String> {
        if c.f != "txn" {
            return Err(expect_known(c.f, "multi-register", "txn"));
        }
        let v = c.output.filter(|v| v.is_array()).unwrap_or(c.input);
        let Value::Array(micros) = v else {
            return Err(format!(
                "field value: a txn must be a list of micro-ops, got {v}"
            ));
        };
        let known = c.output.is_some();
        let mut out = SmallVec::new();
        for m in micros {
            let bad = || format!("field value: bad micro-op {m} (expected [f k v])");
            let Value::Array(t) = m else {
                return Err(bad());
            };
            if t.len() != 3 {
                return Err(bad());
            }
            let f = t[0].as_str().ok_or_else(bad)?;
            let reg = values.intern(&t[1]);
            match f {
                "read" | "r" => {
                    let v = (known && !t[2].is_null()).then(|| values.intern(&t[2]));
                    if v.is_some() {
                        out.push(Micro::Read(reg, v));
                    }
                }
                "write" | "w" => out.push(Micro::Write(reg, values.intern(&t[2]))),
                _ => return Err(bad()),
            }
        }
        if out.iter().all(|m| matches!(m, Micro::Read(..))) && !known {
            return Ok(None);
        }
        Ok(Some(out))
    }

    fn init(&self) -> Registers {
        self.initial.clone()
    }

    fn step(&self, s: &Registers, op: &Self::Op) -> Option<Registers> {
        let mut s = s.clone();
        for m in op {
            match *m {
                Micro::Read(r, Some(v)) => {
                    let cur = s.iter().find(|(k, _)| *k == r).map_or(0, |(_, v)| *v);
                    if cur != v {
                        return None;
                    }
                }
                Micro::Read(_, None) => {}
                Micro::Write(r, v) => match s.binary_search_by_key(&r, |(k, _)| *k) {
                    Ok(i) if v == 0 => {
                        s.remove(i);
                    }
                    Ok(i) => s[i].1 = v,
                    Err(_) if v == 0 => {}
                    Err(i) => s.insert(i, (r, v)),
                },
            }
        }
        Some(s)
    }

    fn is_read_only(&self, op: &Self::Op) -> bool {
        op.iter().all(|m| matches!(m, Micro::Read(..)))
    }

    fn describe(&self, s: &Registers, values: &Interner) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in s {
            let k = match values.value(*k) {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            m.insert(k, values.value(*v).clone());
        }
        Value::Object(m)
    }
}
