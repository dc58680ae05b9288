//! The compare-and-set register (Knossos `cas-register`, Porcupine's etcd model).

use serde_json::Value;

use super::{Call, Interner, Model, expect_known};
use crate::history::Outcome;

/// A register holding one value, initially `nil`: `read` returns it, `write v` sets it,
/// `cas [old new]` sets it to `new` if it holds `old`. A cas that failed because the register
/// did not hold `old` (`cas-mismatch`, see [`crate::FailReading`]) observed a value other than
/// `old`: it is a read that matches every value but one. A read whose result is unknown
/// (`info`) constrains nothing and is dropped. The initial value is `nil` unless built with
/// [`CasRegister::with_initial`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister {
    initial: u32,
}

impl CasRegister {
    /// A register whose initial value has [`Interner`] id `initial`.
    pub fn with_initial(initial: u32) -> CasRegister {
        CasRegister { initial }
    }
}

/// An encoded register operation; values are [`Interner`] ids (0 is `nil`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOp {
    /// Observed this value.
    Read(u32),
    /// Set the value.
    Write(u32),
    /// Set `.1` if the value was `.0`.
    Cas(u32, u32),
    /// A failed cas: the value was not `.0`.
    CasMismatch(u32),
}

pub(crate) fn cas_pair(v: &Value) -> Option<(&Value, &Value)> {
    match v {
        Value::Array(a) if a.len() == 2 => Some((&a[0], &a[1])),
        Value::Object(m) => Some((m.get("from")?, m.get("to")?)),
        _ => None,
    }
}

/// A cas's `[old new]`, from its invocation (or, when that has none, its completion).
fn cas_values<'a>(c: &Call<'a>) -> Result<(&'a Value, &'a Value), String> {
    cas_pair(c.input)
        .or_else(|| c.output.and_then(cas_pair))
        .ok_or_else(|| format!("field value: cas expects [old new], got {}", c.input))
}

impl Model for CasRegister {
    type Op = RegisterOp;
    type State = u32;

    fn encode(&self, c: &Call<'_>, values: &mut Interner) -> Result<Option<RegisterOp>, String> {
        Ok(Some(match c.f {
            "read" | "r" => match (c.outcome, c.output) {
                (Outcome::Ok, Some(v)) => RegisterOp::Read(values.intern(v)),
                _ => return Ok(None),
            },
            "write" | "w" => {
                let v = if c.input.is_null() {
                    c.output.unwrap_or(c.input)
                } else {
                    c.input
                };
                RegisterOp::Write(values.intern(v))
            }
            "cas" => {
                let (a, b) = cas_values(c)?;
                RegisterOp::Cas(values.intern(a), values.intern(b))
            }
            f => return Err(expect_known(f, "cas-register", "read, write, cas")),
        }))
    }

    fn encode_failed(
        &self,
        c: &Call<'_>,
        values: &mut Interner,
    ) -> Result<Option<RegisterOp>, String> {
        if c.f != "cas" {
            return Ok(None);
        }
        let (from, _) = cas_values(c)?;
        Ok(Some(RegisterOp::CasMismatch(values.intern(from))))
    }

    fn init(&self) -> u32 {
        self.initial
    }

    fn step(&self, s: &u32, op: &RegisterOp) -> Option<u32> {
        match *op {
            RegisterOp::Read(v) => (v == *s).then_some(*s),
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas(a, b) => (a == *s).then_some(b),
            RegisterOp::CasMismatch(a) => (a != *s).then_some(*s),
        }
    }

    fn is_read_only(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(_) | RegisterOp::CasMismatch(_))
    }

    fn describe(&self, s: &u32, values: &Interner) -> Value {
        values.value(*s).clone()
    }
}
