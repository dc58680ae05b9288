//! rw-register inference, as Elle's `elle.rw-register`, keeping only what the evidence forces:
//!
//! - wr: a read of `k = v` follows the one txn that wrote `v` to `k` last in its txn (values are
//!   unique per key; a value written twice makes its reads ambiguous, and they give no edge);
//! - versions: `nil` (the initial state) precedes every written value; and a txn that reads
//!   `k = x` and then writes `k = y` puts `x` before `y` (Elle's writes-follow-reads: were `y`
//!   installed before `x`, the writer of `x` would both follow and precede that txn, a `G1c`
//!   cycle, so every model from read committed up is broken either way);
//! - ww and rw only along those version edges;
//! - aborted reads (a value of a failed txn), intermediate reads, internal consistency, and
//!   lost updates (committed txns that read the same version of a key and all wrote it).

use ahash::{HashMap, HashSet};
use rayon::prelude::*;

use super::anomaly::{Case, Facts};
use super::graph::{Edge, RW, WR, WW};
use super::history::{MopF, Txns};
use super::list_append::{Inferred, by_key};
use crate::history::Outcome;

struct KeyOut {
    edges: Vec<Edge>,
    cases: Vec<Case>,
    versions: Vec<(u32, u64, u64)>,
}

/// Infers edges and anomalies; rw edges only when `rw`; writes-follow-reads version edges only
/// when `wfr`.
pub(crate) fn infer(t: &Txns, rw: bool, wfr: bool) -> Inferred {
    let (offsets, entries) = by_key(t);
    let outs: Vec<KeyOut> = (0..t.keys.len())
        .into_par_iter()
        .with_min_len(64)
        .map(|k| {
            let es = &entries[offsets[k] as usize..offsets[k + 1] as usize];
            infer_key(t, k as u32, es, rw, wfr)
        })
        .collect();
    let mut cases: Vec<Case> = (0..t.txns.len() as u32)
        .into_par_iter()
        .with_min_len(4096)
        .flat_map_iter(|x| internal(t, x))
        .collect();
    let mut edges = Vec::with_capacity(outs.len());
    let mut version_edges = HashSet::default();
    for o in outs {
        edges.push(o.edges);
        cases.extend(o.cases);
        version_edges.extend(o.versions);
    }
    Inferred {
        edges,
        cases,
        facts: Facts {
            version_edges,
            ..Facts::default()
        },
    }
}

/// One txn's accesses to one key: the external read (first access a read), the final write.
struct Access {
    txn: u32,
    ext_read: Option<(u32, Option<u64>)>, // (mop, value)
    ext_write: Option<u64>,
}

fn infer_key(t: &Txns, k: u32, es: &[(u32, u32)], rw: bool, wfr: bool) -> KeyOut {
    let outcome = |x: u32| t.txns[x as usize].outcome;
    let mut cases = Vec::new();
    let mut edges = Vec::new();
    let mut versions = Vec::new();
    let mut accesses: Vec<Access> = Vec::new();
    // value -> writer (ok/info, final write), failed writer, intermediate writer
    let mut writer: HashMap<u64, u32> = HashMap::default();
    let mut ambiguous: HashSet<u64> = HashSet::default();
    let mut failed: HashMap<u64, u32> = HashMap::default();
    let mut intermediate: HashMap<u64, u32> = HashMap::default();
    for g in es.chunk_by(|a, b| a.0 == b.0) {
        let x = g[0].0;
        let first = &t.mops[g[0].1 as usize];
        let ext_read = (first.f == MopF::Read && outcome(x) == Outcome::Ok)
            .then(|| (g[0].1, (!first.nil).then_some(first.value)));
        let mut ext_write = None;
        for &(_, mi) in g {
            let m = &t.mops[mi as usize];
            if m.f != MopF::Write {
                continue;
            }
            if outcome(x) == Outcome::Fail {
                failed.insert(m.value, x);
            } else if m.intermediate {
                intermediate.insert(m.value, x);
            } else {
                ext_write = Some(m.value);
                if let Some(prev) = writer.insert(m.value, x)
                    && prev != x
                {
                    ambiguous.insert(m.value);
                    cases.push(Case::DuplicateWrites {
                        key: k,
                        value: m.value,
                        txns: [prev, x],
                    });
                }
            }
            if m.intermediate && outcome(x) == Outcome::Fail {
                intermediate.insert(m.value, x);
            }
        }
        accesses.push(Access {
            txn: x,
            ext_read,
            ext_write,
        });
    }
    let writer_of = |v: u64| writer.get(&v).copied().filter(|_| !ambiguous.contains(&v));

    // Reads: aborted and intermediate ones, and wr edges from external reads.
    for &(x, mi) in es {
        let m = &t.mops[mi as usize];
        if m.f != MopF::Read || m.nil || outcome(x) != Outcome::Ok {
            continue;
        }
        if let Some(&w) = failed.get(&m.value) {
            cases.push(Case::G1a {
                reader: x,
                mop: mi,
                writer: w,
                element: m.value,
            });
        }
        if let Some(&w) = intermediate.get(&m.value)
            && w != x
        {
            cases.push(Case::G1b {
                reader: x,
                mop: mi,
                writer: w,
                element: m.value,
            });
        }
    }
    // External readers per value (None: nil).
    let mut readers: HashMap<Option<u64>, Vec<u32>> = HashMap::default();
    for a in &accesses {
        if let Some((_, v)) = a.ext_read {
            readers.entry(v).or_default().push(a.txn);
            if let Some(v) = v
                && let Some(w) = writer_of(v)
                && w != a.txn
            {
                edges.push((w, a.txn, WR));
            }
        }
    }
    if rw {
        // nil precedes every version: its readers -> every writer.
        if let Some(nil_readers) = readers.get(&None) {
            for a in accesses.iter().filter(|a| a.ext_write.is_some()) {
                edges.extend(
                    nil_readers
                        .iter()
                        .filter(|&&r| r != a.txn)
                        .map(|&r| (r, a.txn, RW)),
                );
            }
        }
    }
    if wfr {
        // A txn that read x and then wrote y: x before y.
        for a in &accesses {
            if let (Some((_, Some(x))), Some(y)) = (a.ext_read, a.ext_write)
                && x != y
            {
                versions.push((k, x, y));
                if let Some(w) = writer_of(x)
                    && w != a.txn
                {
                    edges.push((w, a.txn, WW));
                }
                if rw && let Some(rs) = readers.get(&Some(x)) {
                    edges.extend(rs.iter().filter(|&&r| r != a.txn).map(|&r| (r, a.txn, RW)));
                }
            }
        }
    }

    // Lost updates.
    let mut lost: HashMap<Option<u64>, Vec<u32>> = HashMap::default();
    for a in &accesses {
        if let (Some((_, v)), Some(_)) = (a.ext_read, a.ext_write)
            && outcome(a.txn) == Outcome::Ok
        {
            lost.entry(v).or_default().push(a.txn);
        }
    }
    let mut lost: Vec<_> = lost.into_iter().filter(|(_, ts)| ts.len() > 1).collect();
    lost.sort_unstable();
    for (v, txns) in lost {
        cases.push(Case::LostUpdate {
            key: k,
            version: v.map_or("nil".to_string(), |v| (v as i64).to_string()),
            txns,
        });
    }
    KeyOut {
        edges,
        cases,
        versions,
    }
}

/// Internal consistency of one committed txn: a read must show the txn's own last write or
/// read of the key.
fn internal(t: &Txns, x: u32) -> Vec<Case> {
    let txn = &t.txns[x as usize];
    if txn.outcome != Outcome::Ok {
        return Vec::new();
    }
    let mut known: Vec<(u32, Option<u64>)> = Vec::new();
    let mut out = Vec::new();
    for (i, m) in t.mops(x).iter().enumerate() {
        let now = match m.f {
            MopF::Read => (!m.nil).then_some(m.value),
            _ => Some(m.value),
        };
        match known.iter_mut().find(|s| s.0 == m.key) {
            Some(s) => {
                if m.f == MopF::Read && s.1 != now {
                    out.push(Case::Internal {
                        txn: x,
                        mop: txn.mop_start + i as u32,
                        expected: s.1.map_or("nil".to_string(), |v| (v as i64).to_string()),
                    });
                }
                s.1 = now;
            }
            None => known.push((m.key, now)),
        }
    }
    out
}
