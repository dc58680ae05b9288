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

    const PRUNES: bool = true;

    fn resets(&self, _: &ListOp) -> bool {
        false
    }

    /// Appends only extend a list: from a state, a read can only ever see an extension of the
    /// current list. This prunes the configurations where an indeterminate append that no read
    /// shows (or shows elsewhere) was linearized, which otherwise multiply the search by two for
    /// every such append.
    fn may_reach(&self, s: &ListState, op: &ListOp) -> bool {
        match op {
            ListOp::Read(l) => l.starts_with(&s.items),
            ListOp::Append(_) => true,
        }
    }

    /// An indeterminate append whose element no read returned: once appended, the element is in
    /// every later list, so if a linearization that includes it is valid, no read comes after
    /// it, and the same linearization without it is valid too.
    fn unobservable(&self, ops: &[(&ListOp, bool)]) -> Vec<bool> {
        let seen: std::collections::HashSet<u32> = ops
            .iter()
            .filter_map(|(op, _)| match op {
                ListOp::Read(l) => Some(l.iter().copied()),
                ListOp::Append(_) => None,
            })
            .flatten()
            .collect();
        ops.iter()
            .map(|(op, info)| *info && matches!(op, ListOp::Append(v) if !seen.contains(v)))
            .collect()
    }

    fn describe(&self, s: &ListState, values: &Interner) -> Value {
        Value::Array(s.items.iter().map(|i| values.value(*i).clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[u32]) -> ListState {
        items.iter().fold(ListAppend.init(), |s, v| {
            ListAppend.step(&s, &ListOp::Append(*v)).unwrap()
        })
    }

    #[test]
    fn a_read_is_reachable_only_from_a_prefix_of_what_it_saw() {
        let read = ListOp::Read(Arc::from([1, 2, 3]));
        assert!(ListAppend.may_reach(&list(&[]), &read));
        assert!(ListAppend.may_reach(&list(&[1, 2]), &read));
        assert!(ListAppend.may_reach(&list(&[1, 2, 3]), &read));
        assert!(!ListAppend.may_reach(&list(&[2]), &read));
        assert!(!ListAppend.may_reach(&list(&[1, 2, 3, 4]), &read));
        assert!(ListAppend.may_reach(&list(&[9]), &ListOp::Append(4)));
        assert!(!ListAppend.resets(&ListOp::Append(4)));
    }

    #[test]
    fn only_indeterminate_appends_that_no_read_shows_are_unobservable() {
        let read = ListOp::Read(Arc::from([1, 2]));
        let (a1, a3) = (ListOp::Append(1), ListOp::Append(3));
        let ops = [(&a1, true), (&a3, true), (&a3, false), (&read, false)];
        assert_eq!(
            ListAppend.unobservable(&ops),
            vec![false, true, false, false]
        );
    }
}
