//! A lock (Knossos `mutex`).

use serde_json::Value;

use super::{Call, Interner, Model, expect_known};

/// A mutex, initially free: `acquire` succeeds only when free, `release` only when held.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutex;

/// An encoded mutex operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexOp {
    /// Take the lock.
    Acquire,
    /// Give it back.
    Release,
}

impl Model for Mutex {
    type Op = MutexOp;
    type State = bool;

    fn encode(&self, c: &Call<'_>, _: &mut Interner) -> Result<Option<MutexOp>, String> {
        match c.f {
            "acquire" => Ok(Some(MutexOp::Acquire)),
            "release" => Ok(Some(MutexOp::Release)),
            f => Err(expect_known(f, "mutex", "acquire, release")),
        }
    }

    fn init(&self) -> bool {
        false
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match op {
            MutexOp::Acquire => (!held).then_some(true),
            MutexOp::Release => held.then_some(false),
        }
    }

    fn describe(&self, held: &bool, _: &Interner) -> Value {
        Value::String(if *held { "held" } else { "free" }.into())
    }
}
