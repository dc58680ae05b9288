//! A list-append register: raftkv's `POST /kv/{key}/append` and a read of the whole list.

use std::sync::Arc;

use serde_json::Value;

use super::{Call, Interner, Model, expect_known, mix64};
use crate::history::Outcome;

/// A list, initially empty: `append v` adds `v` at the end, `read` returns the whole list
/// (`nil` reads as the empty list).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListAppend;

/// An encoded list operation; elements are [`Interner`] ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOp {
    /// Append this element.
    Append(u32),
    /// Observed exactly this list.
    Read(Arc<[u32]>),
}

/// A list with its hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListState {
    hash: u64,
    items: Arc<[u32]>,
}

impl Model for ListAppend {
    type Op = ListOp;
    type State = ListState;

    fn encode(&self, c: &Call<'_>, values: &mut Interner) -> Result<Option<ListOp>, String> {
        match c.f {
            "append" => Ok(Some(ListOp::Append(values.intern(c.input)))),
            "read" | "r" => match (c.outcome, c.output) {
                (Outcome::Ok, Some(Value::Null)) => Ok(Some(ListOp::Read(Arc::from([])))),
                (Outcome::Ok, Some(Value::Array(a))) => Ok(Some(ListOp::Read(
                    a.iter().map(|v| values.intern(v)).collect(),
                ))),
                (Outcome::Ok, Some(v)) => Err(format!(
                    "field value: a list read must return a list or null, got {v}"
                )),
                _ => Ok(None),
            },
            f => Err(expect_known(f, "list-append", "append, read")),
        }
    }

    fn init(&self) -> ListState {
        ListState {
            hash: 0,
            items: Arc::from([]),
        }
    }

    fn step(&self, s: &ListState, op: &ListOp) -> Option<ListState> {
        match op {
            ListOp::Read(l) => (**l == *s.items).then(|| s.clone()),
            ListOp::Append(v) => {
                let mut items = Vec::with_capacity(s.items.len() + 1);
                items.extend_from_slice(&s.items);
                items.push(*v);
                let hash = mix64(s.hash ^ u64::from(*v).wrapping_mul(0x9e37_79b9));
                Some(ListState {
                    hash,
                    items: items.into(),
                })
            }
        }
    }

    fn is_read_only(&self, op: &ListOp) -> bool {
        matches!(op, ListOp::Read(_))
    }

    fn describe(&self, s: &ListState, values: &Interner) -> Value {
        Value::Array(s.items.iter().map(|i| values.value(*i).clone()).collect())
    }
}
