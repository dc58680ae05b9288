//! List-append inference, as Elle's `elle.list-append`: a read returns the whole list, so the
//! longest read of a key gives its version order (every other read must be a prefix of it);
//! from that order come the ww, wr and rw edges, and the non-cycle anomalies (aborted and
//! intermediate reads, duplicates, incompatible orders, dirty updates, lost updates).
//!
//! Keys are independent, so each is inferred on its own (in parallel); the per-txn checks
//! (internal consistency, future reads) run in parallel over txns.

use ahash::HashMap;
use rayon::prelude::*;

use super::anomaly::{Case, Facts};
use super::graph::{Edge, RW, WR, WW};
use super::history::{Mop, MopF, Txns, list_text};
use crate::history::Outcome;

/// What inference yields: edges, anomalies, and what explanations need.
pub(crate) struct Inferred {
    pub edges: Vec<Vec<Edge>>,
    pub cases: Vec<Case>,
    pub facts: Facts,
}

/// The micro-ops of every key, in txn order: (txn, mop index).
pub(crate) fn by_key(t: &Txns) -> (Vec<u32>, Vec<(u32, u32)>) {
    let nk = t.keys.len();
    let mut offsets = vec![0u32; nk + 1];
    for m in &t.mops {
        offsets[m.key as usize + 1] += 1;
    }
    for i in 0..nk {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut entries = vec![(0u32, 0u32); t.mops.len()];
    for (x, txn) in t.txns.iter().enumerate() {
        for mi in txn.mop_start..txn.mop_start + txn.mop_len {
            let k = t.mops[mi as usize].key as usize;
            entries[fill[k] as usize] = (x as u32, mi);
            fill[k] += 1;
        }
    }
    (offsets, entries)
}

struct KeyOut {
    edges: Vec<Edge>,
    cases: Vec<Case>,
    order: Vec<u64>,
}

/// Infers edges and anomalies; rw edges only when `rw` (weaker models never need them).
pub(crate) fn infer(t: &Txns, rw: bool) -> Inferred {
    let (offsets, entries) = by_key(t);
    let outs: Vec<KeyOut> = (0..t.keys.len())
        .into_par_iter()
        .with_min_len(64)
        .map(|k| {
            let es = &entries[offsets[k] as usize..offsets[k + 1] as usize];
            infer_key(t, k as u32, es, rw)
        })
        .collect();
    let mut cases: Vec<Case> = (0..t.txns.len() as u32)
        .into_par_iter()
        .with_min_len(4096)
        .flat_map_iter(|x| txn_cases(t, x))
        .collect();
    let mut edges = Vec::with_capacity(outs.len());
    let mut orders = Vec::with_capacity(outs.len());
    for o in outs {
        edges.push(o.edges);
        cases.extend(o.cases);
        orders.push(o.order);
    }
    Inferred {
        edges,
        cases,
        facts: Facts {
            orders,
            ..Facts::default()
        },
    }
}

fn infer_key(t: &Txns, k: u32, es: &[(u32, u32)], rw: bool) -> KeyOut {
    let outcome = |x: u32| t.txns[x as usize].outcome;
    let mop = |mi: u32| -> &Mop { &t.mops[mi as usize] };
    let mut cases = Vec::new();
    let mut edges = Vec::new();

    // Who appended each value.
    let mut writer: HashMap<u64, (u32, u32)> = HashMap::default();
    writer.reserve(es.len() / 2);
    for &(x, mi) in es {
        let m = mop(mi);
        if m.f == MopF::Append
            && let Some(prev) = writer.insert(m.value, (x, mi))
            && prev.0 != x
        {
            cases.push(Case::DuplicateWrites {
                key: k,
                value: m.value,
                txns: [prev.0, x],
            });
        }
    }
    let committed = |x: u32| outcome(x) != Outcome::Fail;

    // The longest committed read gives the version order.
    let reads = || {
        es.iter()
            .copied()
            .filter(|&(x, mi)| mop(mi).f == MopF::Read && outcome(x) == Outcome::Ok)
    };
    let list = |mi: u32| -> &[u64] {
        let m = mop(mi);
        if m.nil { &[] } else { t.list(m) }
    };
    let longest = reads().max_by_key(|&(_, mi)| list(mi).len());
    let raw: &[u64] = longest.map_or(&[][..], |(_, mi)| list(mi));
    let mut pos: HashMap<u64, u32> = HashMap::default();
    pos.reserve(raw.len());
    let mut order: Vec<u64> = Vec::with_capacity(raw.len());
    let mut first_dup: Option<usize> = None;
    for (i, &v) in raw.iter().enumerate() {
        match pos.entry(v) {
            std::collections::hash_map::Entry::Occupied(_) => {
                first_dup.get_or_insert(i);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(order.len() as u32);
                order.push(v);
            }
        }
    }
    let writer_of = |v: u64| writer.get(&v).map(|w| w.0);
    // The first position of the order written by a failed txn.
    let first_failed = order
        .iter()
        .position(|&v| writer_of(v).is_some_and(|w| outcome(w) == Outcome::Fail));

    let mut readers: Vec<(u32, u32)> = Vec::new(); // (state, reader)
    let mut incompatible: Option<Case> = None;
    for (x, mi) in reads() {
        let l = list(mi);
        let compatible = raw.starts_with(l);
        if !compatible && incompatible.is_none() {
            incompatible = Some(Case::IncompatibleOrder {
                key: k,
                a: (x, mi),
                b: longest.expect("a read exists"),
            });
        }
        // Duplicates.
        let dup = if compatible {
            first_dup.filter(|&d| d < l.len()).map(|d| raw[d])
        } else {
            let mut seen = ahash::HashSet::default();
            l.iter().copied().find(|v| !seen.insert(*v))
        };
        if let Some(element) = dup {
            cases.push(Case::DuplicateElements {
                txn: x,
                mop: mi,
                element,
            });
        }
        let state = match l.last() {
            None => Some(0u32),
            Some(e) => pos.get(e).map(|p| p + 1),
        };
        // Aborted reads.
        let failed = if compatible {
            first_failed
                .filter(|&p| state.is_some_and(|s| (p as u32) < s))
                .map(|p| order[p])
        } else {
            l.iter()
                .copied()
                .find(|&v| writer_of(v).is_some_and(|w| outcome(w) == Outcome::Fail))
        };
        if let Some(element) = failed {
            cases.push(Case::G1a {
                reader: x,
                mop: mi,
                writer: writer_of(element).expect("a failed writer"),
                element,
            });
        }
        if let Some(&last) = l.last()
            && let Some(&(w, wm)) = writer.get(&last)
            && w != x
        {
            if mop(wm).intermediate {
                cases.push(Case::G1b {
                    reader: x,
                    mop: mi,
                    writer: w,
                    element: last,
                });
            }
            if committed(w) {
                edges.push((w, x, WR));
            }
        }
        if rw && let Some(s) = state {
            readers.push((s, x));
        }
    }
    cases.extend(incompatible);

    // ww between consecutive versions.
    for pair in order.windows(2) {
        if let (Some(a), Some(b)) = (writer_of(pair[0]), writer_of(pair[1]))
            && a != b
            && committed(a)
            && committed(b)
        {
            edges.push((a, b, WW));
        }
    }
    // Appends nobody read came after the last version anyone read.
    let unobserved: Vec<u32> = es
        .iter()
        .filter(|&&(x, mi)| {
            mop(mi).f == MopF::Append && committed(x) && !pos.contains_key(&mop(mi).value)
        })
        .map(|&(x, _)| x)
        .collect();
    if let Some(last) = order
        .last()
        .and_then(|&v| writer_of(v))
        .filter(|&w| committed(w))
    {
        edges.extend(
            unobserved
                .iter()
                .filter(|&&x| x != last)
                .map(|&x| (last, x, WW)),
        );
    }
    // rw: a reader of version i -> the writer of version i+1.
    if rw {
        readers.sort_unstable();
        for &(s, r) in &readers {
            if (s as usize) < order.len() {
                if let Some(w) = writer_of(order[s as usize])
                    && w != r
                    && committed(w)
                {
                    edges.push((r, w, RW));
                }
            } else {
                edges.extend(unobserved.iter().filter(|&&w| w != r).map(|&w| (r, w, RW)));
            }
        }
    }

    // Dirty updates: a committed append right after failed ones in the version order.
    let mut prev: Option<(u32, u64)> = None; // the last definite version's writer
    let mut prev_failed = false;
    for &v in &order {
        let Some(w) = writer_of(v) else { continue };
        match (prev_failed, outcome(w)) {
            (true, Outcome::Ok) => {
                let (f, fv) = prev.expect("a failed writer");
                cases.push(Case::DirtyUpdate {
                    key: k,
                    failed: f,
                    value: fv,
                    later: w,
                    later_value: v,
                });
                prev = Some((w, v));
                prev_failed = false;
            }
            (_, Outcome::Ok) => prev = Some((w, v)),
            (_, Outcome::Info) => {}
            (false, Outcome::Fail) => {
                prev = Some((w, v));
                prev_failed = true;
            }
            (true, Outcome::Fail) => {}
        }
    }

    // Lost updates: committed txns whose first access reads one version, then append.
    let mut lost: Vec<(u32, u32)> = Vec::new(); // (state, txn)
    let mut i = 0;
    while i < es.len() {
        let x = es[i].0;
        let mut j = i;
        while j < es.len() && es[j].0 == x {
            j += 1;
        }
        let group = &es[i..j];
        let first = mop(group[0].1);
        if outcome(x) == Outcome::Ok
            && first.f == MopF::Read
            && group[1..].iter().any(|&(_, mi)| mop(mi).f == MopF::Append)
        {
            let l = list(group[0].1);
            if raw.starts_with(l) {
                lost.push((l.len() as u32, x));
            }
        }
        i = j;
    }
    lost.sort_unstable();
    for g in lost.chunk_by(|a, b| a.0 == b.0) {
        if g.len() > 1 {
            cases.push(Case::LostUpdate {
                key: k,
                version: list_text(&raw[..g[0].0 as usize]),
                txns: g.iter().map(|x| x.1).collect(),
            });
        }
    }

    KeyOut {
        edges,
        cases,
        order,
    }
}

/// Internal consistency and future reads of one committed txn.
fn txn_cases(t: &Txns, x: u32) -> Vec<Case> {
    let txn = &t.txns[x as usize];
    if txn.outcome != Outcome::Ok {
        return Vec::new();
    }
    let ms = t.mops(x);
    // Only a key touched twice can disagree with itself.
    let repeated = ms
        .iter()
        .enumerate()
        .any(|(i, m)| ms[i + 1..].iter().any(|n| n.key == m.key));
    if !repeated {
        return Vec::new();
    }
    let mut out = Vec::new();
    // Per key: (known prefix?, expected list or suffix).
    let mut state: Vec<(u32, bool, Vec<u64>)> = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let mi = txn.mop_start + i as u32;
        match m.f {
            MopF::Append => match state.iter_mut().find(|s| s.0 == m.key) {
                Some(s) => s.2.push(m.value),
                None => state.push((m.key, false, vec![m.value])),
            },
            _ => {
                let l: &[u64] = if m.nil { &[] } else { t.list(m) };
                if let Some(&e) = l.iter().find(|&&e| {
                    ms[i + 1..]
                        .iter()
                        .any(|n| n.f == MopF::Append && n.key == m.key && n.value == e)
                }) {
                    out.push(Case::FutureRead {
                        txn: x,
                        mop: mi,
                        element: e,
                    });
                }
                match state.iter_mut().find(|s| s.0 == m.key) {
                    Some(s) => {
                        let ok = if s.1 {
                            l == s.2.as_slice()
                        } else {
                            l.ends_with(&s.2)
                        };
                        if !ok {
                            let expected = if s.1 {
                                list_text(&s.2)
                            } else {
                                let mut e = list_text(&s.2);
                                e.insert_str(1, "... ");
                                e
                            };
                            out.push(Case::Internal {
                                txn: x,
                                mop: mi,
                                expected,
                            });
                        }
                        s.1 = true;
                        s.2 = l.to_vec();
                    }
                    None => state.push((m.key, true, l.to_vec())),
                }
            }
        }
    }
    out
}
