//! Anomalies that are not cycles (aborted and intermediate reads, internal inconsistency, lost
//! updates, ...), kept compact until reported, and the explanation of each edge of a cycle:
//! the key and value that make it.

use ahash::HashSet;

use super::TxnKind;
use super::graph::{PROCESS, REALTIME, RW, WR, WW, rel_name};
use super::history::{MopF, Txns, list_text};

/// One non-cycle anomaly; strings are built only for the ones reported.
#[derive(Debug, Clone)]
pub(crate) enum Case {
    /// A read saw `element`, written by the failed txn `writer`.
    G1a {
        reader: u32,
        mop: u32,
        writer: u32,
        element: u64,
    },
    /// A read ended in `element`, an intermediate write of `writer`.
    G1b {
        reader: u32,
        mop: u32,
        writer: u32,
        element: u64,
    },
    /// A read disagrees with the txn's own earlier writes or reads of the key.
    Internal {
        txn: u32,
        mop: u32,
        expected: String,
    },
    /// A read saw a value its own txn writes only later.
    FutureRead { txn: u32, mop: u32, element: u64 },
    /// A read holds `element` more than once.
    DuplicateElements { txn: u32, mop: u32, element: u64 },
    /// Two reads of `key` that no single order of appends explains.
    IncompatibleOrder {
        key: u32,
        a: (u32, u32),
        b: (u32, u32),
    },
    /// A committed append follows, in the key's order, one of a failed txn.
    DirtyUpdate {
        key: u32,
        failed: u32,
        value: u64,
        later: u32,
        later_value: u64,
    },
    /// Committed txns read the same version of `key` and all wrote it.
    LostUpdate {
        key: u32,
        version: String,
        txns: Vec<u32>,
    },
    /// A value written to `key` by more than one txn: what it reveals is ambiguous.
    DuplicateWrites {
        key: u32,
        value: u64,
        txns: [u32; 2],
    },
}

impl Case {
    /// The anomaly's name (Elle's).
    pub fn name(&self) -> &'static str {
        match self {
            Case::G1a { .. } => "G1a",
            Case::G1b { .. } => "G1b",
            Case::Internal { .. } => "internal",
            Case::FutureRead { .. } => "future-read",
            Case::DuplicateElements { .. } => "duplicate-elements",
            Case::IncompatibleOrder { .. } => "incompatible-order",
            Case::DirtyUpdate { .. } => "dirty-update",
            Case::LostUpdate { .. } => "lost-update",
            Case::DuplicateWrites { .. } => "duplicate-writes",
        }
    }

    /// The txns involved, most telling first.
    pub fn txns(&self) -> Vec<u32> {
        match self {
            Case::G1a { reader, writer, .. } | Case::G1b { reader, writer, .. } => {
                vec![*writer, *reader]
            }
            Case::Internal { txn, .. }
            | Case::FutureRead { txn, .. }
            | Case::DuplicateElements { txn, .. } => vec![*txn],
            Case::IncompatibleOrder { a, b, .. } => vec![a.0, b.0],
            Case::DirtyUpdate { failed, later, .. } => vec![*failed, *later],
            Case::LostUpdate { txns, .. } => txns.clone(),
            Case::DuplicateWrites { txns, .. } => txns.to_vec(),
        }
    }

    /// One sentence, naming txns as `names` does.
    pub fn message(&self, t: &Txns, kind: TxnKind, name: &dyn Fn(u32) -> String) -> String {
        let key = |k: u32| t.keys[k as usize].to_string();
        let read = |m: u32| {
            let m = &t.mops[m as usize];
            if m.nil {
                "nil".to_string()
            } else if kind == TxnKind::ListAppend {
                list_text(t.list(m))
            } else {
                (m.value as i64).to_string()
            }
        };
        let v = |x: u64| (x as i64).to_string();
        match self {
            Case::G1a {
                reader,
                mop,
                writer,
                element,
            } => format!(
                "{} read key {} = {}, which holds {}, written by {}, which failed (aborted read)",
                name(*reader),
                key(t.mops[*mop as usize].key),
                read(*mop),
                v(*element),
                name(*writer)
            ),
            Case::G1b {
                reader,
                mop,
                writer,
                element,
            } => format!(
                "{} read key {} = {}: {} is an intermediate write of {}, which later wrote the \
                 key again (intermediate read)",
                name(*reader),
                key(t.mops[*mop as usize].key),
                read(*mop),
                v(*element),
                name(*writer)
            ),
            Case::Internal { txn, mop, expected } => format!(
                "{} read key {} = {} but its own earlier micro-ops leave {expected}",
                name(*txn),
                key(t.mops[*mop as usize].key),
                read(*mop)
            ),
            Case::FutureRead { txn, mop, element } => format!(
                "{} read key {} = {}, which holds {}, a value it writes only later",
                name(*txn),
                key(t.mops[*mop as usize].key),
                read(*mop),
                v(*element)
            ),
            Case::DuplicateElements { txn, mop, element } => format!(
                "{} read key {} = {}, which holds {} more than once",
                name(*txn),
                key(t.mops[*mop as usize].key),
                read(*mop),
                v(*element)
            ),
            Case::IncompatibleOrder { key: k, a, b } => format!(
                "key {}: {} read {} and {} read {}, and neither is a prefix of the other",
                key(*k),
                name(a.0),
                read(a.1),
                name(b.0),
                read(b.1)
            ),
            Case::DirtyUpdate {
                key: k,
                failed,
                value,
                later,
                later_value,
            } => format!(
                "key {}: {} appended {} after {}'s append of {}, and {} failed (dirty update)",
                key(*k),
                name(*later),
                v(*later_value),
                name(*failed),
                v(*value),
                name(*failed)
            ),
            Case::LostUpdate {
                key: k,
                version,
                txns,
            } => {
                let names: Vec<String> = txns.iter().map(|&x| name(x)).collect();
                format!(
                    "{} all read key {} = {} and then wrote it, and all committed (lost update)",
                    names.join(", "),
                    key(*k),
                    version
                )
            }
            Case::DuplicateWrites {
                key: k,
                value,
                txns,
            } => format!(
                "key {}: {} and {} both wrote {}; reads of it are ambiguous",
                key(*k),
                name(txns[0]),
                name(txns[1]),
                v(*value)
            ),
        }
    }
}

/// What explanations need beyond the micro-ops.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// List-append: each key's version order (distinct elements of its longest read).
    pub orders: Vec<Vec<u64>>,
    /// rw-register: version edges `x -> y` of a key beyond "nil before everything".
    pub version_edges: HashSet<(u32, u64, u64)>,
}

/// Why `a -> b` holds, as (key, value, sentence), for an edge of type `t`.
pub(crate) fn explain_edge(
    t: &Txns,
    kind: TxnKind,
    facts: &Facts,
    a: u32,
    b: u32,
    ty: u8,
    name: &dyn Fn(u32) -> String,
) -> (Option<String>, Option<String>, String) {
    let (an, bn) = (name(a), name(b));
    match ty {
        PROCESS => (
            None,
            None,
            format!(
                "{an} and {bn} are consecutive on process {}",
                t.txns[a as usize].process
            ),
        ),
        REALTIME => (
            None,
            None,
            format!(
                "{an} completed (index {}) before {bn} was invoked",
                t.txns[a as usize].index
            ),
        ),
        _ => {
            let found = match kind {
                TxnKind::ListAppend => explain_list(t, facts, a, b, ty, &an, &bn),
                TxnKind::RwRegister => explain_register(t, facts, a, b, ty, &an, &bn),
            };
            found.unwrap_or_else(|| (None, None, format!("{an} precedes {bn} ({})", rel_name(ty))))
        }
    }
}

type Explained = Option<(Option<String>, Option<String>, String)>;

fn explain_list(t: &Txns, facts: &Facts, a: u32, b: u32, ty: u8, an: &str, bn: &str) -> Explained {
    let key = |k: u32| t.keys[k as usize].to_string();
    let v = |x: u64| (x as i64).to_string();
    let appended = |x: u32, k: u32, val: u64| {
        t.mops(x)
            .iter()
            .any(|m| m.f == MopF::Append && m.key == k && m.value == val)
    };
    let pos = |k: u32, val: u64| facts.orders[k as usize].iter().position(|&e| e == val);
    match ty {
        WW => t
            .mops(b)
            .iter()
            .filter(|m| m.f == MopF::Append)
            .find_map(|m| {
                let ord = &facts.orders[m.key as usize];
                let prev = match pos(m.key, m.value) {
                    Some(0) => None,
                    Some(p) => Some(ord[p - 1]),
                    None => ord.last().copied(),
                }?;
                appended(a, m.key, prev).then(|| {
                    (
                        Some(key(m.key)),
                        Some(v(m.value)),
                        format!(
                            "{bn} appended {} after {an}'s {} to key {}",
                            v(m.value),
                            v(prev),
                            key(m.key)
                        ),
                    )
                })
            }),
        WR => t
            .mops(b)
            .iter()
            .filter(|m| m.f == MopF::Read && !m.nil)
            .find_map(|m| {
                let last = *t.list(m).last()?;
                appended(a, m.key, last).then(|| {
                    (
                        Some(key(m.key)),
                        Some(v(last)),
                        format!(
                            "{bn} read key {} = {}, which ends in {an}'s append of {}",
                            key(m.key),
                            list_text(t.list(m)),
                            v(last)
                        ),
                    )
                })
            }),
        RW => t
            .mops(a)
            .iter()
            .filter(|m| m.f == MopF::Read)
            .find_map(|r| {
                let ord = &facts.orders[r.key as usize];
                let l = if r.nil { &[][..] } else { t.list(r) };
                let state = match l.last() {
                    None => 0,
                    Some(&e) => pos(r.key, e)? + 1,
                };
                t.mops(b)
                    .iter()
                    .filter(|m| m.f == MopF::Append && m.key == r.key)
                    .find(|m| match pos(m.key, m.value) {
                        Some(p) => p == state,
                        None => state == ord.len(),
                    })
                    .map(|m| {
                        let text = if l.is_empty() {
                            format!(
                                "{an} read the initial (empty) state of key {}, which {bn} changed \
                             by appending {}",
                                key(r.key),
                                v(m.value)
                            )
                        } else {
                            format!(
                                "{an} read key {} = {} and did not see {bn}'s append of {}",
                                key(r.key),
                                list_text(l),
                                v(m.value)
                            )
                        };
                        (Some(key(r.key)), Some(v(m.value)), text)
                    })
            }),
        _ => None,
    }
}

/// An external read: key, value (`None`: nil).
pub(crate) type ExtRead = (u32, Option<u64>);

/// A txn's external reads (first access to the key is a read) and final writes.
pub(crate) fn ext_reads_writes(t: &Txns, x: u32) -> (Vec<ExtRead>, Vec<(u32, u64)>) {
    let mut reads: Vec<ExtRead> = Vec::new();
    let mut writes: Vec<(u32, u64)> = Vec::new();
    let mut seen: Vec<u32> = Vec::new();
    for m in t.mops(x) {
        if !seen.contains(&m.key) {
            seen.push(m.key);
            if m.f == MopF::Read {
                reads.push((m.key, (!m.nil).then_some(m.value)));
            }
        }
        if m.f == MopF::Write {
            match writes.iter_mut().find(|w| w.0 == m.key) {
                Some(w) => w.1 = m.value,
                None => writes.push((m.key, m.value)),
            }
        }
    }
    (reads, writes)
}

fn explain_register(
    t: &Txns,
    facts: &Facts,
    a: u32,
    b: u32,
    ty: u8,
    an: &str,
    bn: &str,
) -> Explained {
    let key = |k: u32| t.keys[k as usize].to_string();
    let v = |x: u64| (x as i64).to_string();
    let (ar, aw) = ext_reads_writes(t, a);
    let (br, bw) = ext_reads_writes(t, b);
    match ty {
        WR => aw.iter().find_map(|&(k, x)| {
            br.iter().any(|&(k2, y)| k2 == k && y == Some(x)).then(|| {
                (
                    Some(key(k)),
                    Some(v(x)),
                    format!("{bn} read key {} = {}, written by {an}", key(k), v(x)),
                )
            })
        }),
        WW => aw.iter().find_map(|&(k, x)| {
            bw.iter()
                .find(|&&(k2, y)| k2 == k && facts.version_edges.contains(&(k, x, y)))
                .map(|&(_, y)| {
                    (
                        Some(key(k)),
                        Some(v(y)),
                        format!(
                            "{bn} read key {} = {} ({an}'s write) and then wrote {}",
                            key(k),
                            v(x),
                            v(y)
                        ),
                    )
                })
        }),
        RW => ar.iter().find_map(|&(k, x)| {
            bw.iter()
                .find(|&&(k2, y)| {
                    k2 == k && x.is_none_or(|x| facts.version_edges.contains(&(k, x, y)))
                })
                .map(|&(_, y)| {
                    let text = match x {
                        None => format!(
                            "{an} read key {} = nil, the initial state, which {bn}'s write of {} \
                             replaced",
                            key(k),
                            v(y)
                        ),
                        Some(x) => format!(
                            "{an} read key {} = {}, which {bn} replaced with {}",
                            key(k),
                            v(x),
                            v(y)
                        ),
                    };
                    (Some(key(k)), Some(v(y)), text)
                })
        }),
        _ => None,
    }
}
