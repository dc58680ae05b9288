//! The dependency graph over transactions: edges typed by a bit mask (ww, wr, rw, process,
//! realtime) in flat CSR adjacency, strongly connected components by an iterative Tarjan, and
//! the typed search for the smallest cycle of each kind inside one component.

use std::time::Instant;

use ahash::{HashMap, HashSet};

use super::history::{NONE, Txns};
use crate::history::Outcome;

/// Write-write dependency.
pub(crate) const WW: u8 = 1;
/// Write-read dependency.
pub(crate) const WR: u8 = 2;
/// Read-write anti-dependency.
pub(crate) const RW: u8 = 4;
/// Consecutive transactions of one process.
pub(crate) const PROCESS: u8 = 8;
/// One transaction completed before the other was invoked.
pub(crate) const REALTIME: u8 = 16;

/// The name of one edge type bit.
pub(crate) fn rel_name(t: u8) -> &'static str {
    match t {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        PROCESS => "process",
        _ => "realtime",
    }
}

/// An edge: from, to, type bits.
pub(crate) type Edge = (u32, u32, u8);

/// A directed graph in CSR form; parallel edges are merged into one with the union of types.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub offsets: Vec<u32>,
    pub targets: Vec<u32>,
    pub masks: Vec<u8>,
}

impl Graph {
    /// Builds the graph of `n` nodes from lists of edges (self-edges dropped).
    pub fn build(n: usize, parts: &[Vec<Edge>]) -> Graph {
        let mut counts = vec![0u32; n + 1];
        for p in parts {
            for &(a, b, _) in p {
                if a != b {
                    counts[a as usize + 1] += 1;
                }
            }
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let total = counts[n] as usize;
        let mut fill = counts.clone();
        let mut targets = vec![0u32; total];
        let mut masks = vec![0u8; total];
        for p in parts {
            for &(a, b, m) in p {
                if a != b {
                    let i = fill[a as usize] as usize;
                    fill[a as usize] += 1;
                    targets[i] = b;
                    masks[i] = m;
                }
            }
        }
        // Sort each node's edges by target and merge duplicates, compacting in place.
        let mut offsets = vec![0u32; n + 1];
        let mut w = 0usize;
        let mut scratch: Vec<(u32, u8)> = Vec::new();
        for v in 0..n {
            let (s, e) = (counts[v] as usize, counts[v + 1] as usize);
            scratch.clear();
            scratch.extend((s..e).map(|i| (targets[i], masks[i])));
            scratch.sort_unstable_by_key(|x| x.0);
            let start = w;
            for &(t, m) in &scratch {
                if w > start && targets[w - 1] == t {
                    masks[w - 1] |= m;
                } else {
                    targets[w] = t;
                    masks[w] = m;
                    w += 1;
                }
            }
            offsets[v + 1] = w as u32;
        }
        targets.truncate(w);
        masks.truncate(w);
        targets.shrink_to_fit();
        masks.shrink_to_fit();
        Graph {
            offsets,
            targets,
            masks,
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn edge_count(&self) -> usize {
        self.targets.len()
    }

    /// Out-edges of `v`: (target, type bits).
    pub fn out(&self, v: u32) -> impl Iterator<Item = (u32, u8)> + '_ {
        let (s, e) = (
            self.offsets[v as usize] as usize,
            self.offsets[v as usize + 1] as usize,
        );
        self.targets[s..e]
            .iter()
            .copied()
            .zip(self.masks[s..e].iter().copied())
    }

    /// The type bits of the edge `a -> b` (0 when there is none).
    pub fn mask(&self, a: u32, b: u32) -> u8 {
        self.out(a).find(|e| e.0 == b).map_or(0, |e| e.1)
    }

    /// The strongly connected components with more than one node, over edges with a type in
    /// `filter` (iterative Tarjan: no recursion, any size).
    pub fn sccs(&self, filter: u8) -> Vec<Vec<u32>> {
        let n = self.len();
        let mut index = vec![NONE; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut call: Vec<(u32, u32)> = Vec::new();
        let mut counter = 0u32;
        let mut out = Vec::new();
        for s in 0..n as u32 {
            if index[s as usize] != NONE {
                continue;
            }
            index[s as usize] = counter;
            low[s as usize] = counter;
            counter += 1;
            stack.push(s);
            on_stack[s as usize] = true;
            call.push((s, self.offsets[s as usize]));
            while let Some(top) = call.last_mut() {
                let v = top.0;
                if top.1 < self.offsets[v as usize + 1] {
                    let i = top.1 as usize;
                    top.1 += 1;
                    if self.masks[i] & filter == 0 {
                        continue;
                    }
                    let w = self.targets[i];
                    if index[w as usize] == NONE {
                        index[w as usize] = counter;
                        low[w as usize] = counter;
                        counter += 1;
                        stack.push(w);
                        on_stack[w as usize] = true;
                        call.push((w, self.offsets[w as usize]));
                    } else if on_stack[w as usize] {
                        low[v as usize] = low[v as usize].min(index[w as usize]);
                    }
                } else {
                    call.pop();
                    if let Some(&(u, _)) = call.last() {
                        low[u as usize] = low[u as usize].min(low[v as usize]);
                    }
                    if low[v as usize] == index[v as usize] {
                        let mut comp = Vec::new();
                        loop {
                            let w = stack.pop().expect("Tarjan's stack holds v");
                            on_stack[w as usize] = false;
                            comp.push(w);
                            if w == v {
                                break;
                            }
                        }
                        if comp.len() > 1 {
                            out.push(comp);
                        }
                    }
                }
            }
        }
        out
    }

    /// The subgraph induced by `nodes` (local indices follow `nodes`' order), keeping edges
    /// with a type in `filter`.
    pub fn induced(&self, nodes: &[u32], filter: u8) -> Graph {
        let local: HashMap<u32, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i as u32))
            .collect();
        let mut offsets = Vec::with_capacity(nodes.len() + 1);
        offsets.push(0u32);
        let (mut targets, mut masks) = (Vec::new(), Vec::new());
        for &v in nodes {
            for (w, m) in self.out(v) {
                if m & filter != 0
                    && let Some(&l) = local.get(&w)
                {
                    targets.push(l);
                    masks.push(m & filter);
                }
            }
            offsets.push(targets.len() as u32);
        }
        Graph {
            offsets,
            targets,
            masks,
        }
    }
}

/// Process edges: each ok or info txn to the next one of its process.
pub(crate) fn process_edges(t: &Txns) -> Vec<Edge> {
    let mut last: HashMap<u64, u32> = HashMap::default();
    let mut out = Vec::new();
    for (i, x) in t.txns.iter().enumerate() {
        if x.outcome == Outcome::Fail {
            continue;
        }
        if let Some(p) = last.insert(x.process, i as u32) {
            out.push((p, i as u32, PROCESS));
        }
    }
    out
}

/// Real-time edges, a transitive reduction (Elle's): when a txn is invoked, an edge from every
/// ok txn in the buffer of completed ones; when a txn completes ok, the txns that had an edge
/// to it leave the buffer (they are ordered through it) and it enters.
pub(crate) fn realtime_edges(t: &Txns) -> Vec<Edge> {
    let mut out: Vec<Edge> = Vec::new();
    let mut preds: Vec<(u32, u32)> = vec![(0, 0); t.txns.len()];
    let mut buffer: Vec<u32> = Vec::new();
    let mut in_buf = vec![false; t.txns.len()];
    for (p, &x) in t.at_pos.iter().enumerate() {
        if x == NONE {
            continue;
        }
        let txn = &t.txns[x as usize];
        if txn.outcome == Outcome::Fail {
            continue;
        }
        if txn.invoke as usize == p {
            let s = out.len() as u32;
            out.extend(buffer.iter().map(|&b| (b, x, REALTIME)));
            preds[x as usize] = (s, out.len() as u32);
        } else if txn.outcome == Outcome::Ok {
            let (s, e) = preds[x as usize];
            for i in s..e {
                in_buf[out[i as usize].0 as usize] = false;
            }
            if e > s {
                buffer.retain(|&b| in_buf[b as usize]);
            }
            buffer.push(x);
            in_buf[x as usize] = true;
        }
    }
    out
}

/// How many rw edges a cycle may or must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RwRule {
    /// None at all.
    None,
    /// Exactly one.
    Single,
    /// At least two, no two adjacent (also around the cycle's end).
    Nonadjacent,
    /// At least two, some two adjacent.
    Adjacent,
}

/// A kind of cycle to look for.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// Edge types the cycle may use.
    pub allowed: u8,
    pub rw: RwRule,
    pub need_wr: bool,
    /// An edge type the cycle must use at least once (process or realtime), or 0.
    pub need_extra: u8,
    /// The fewest edges such a cycle can have.
    pub min_len: usize,
}

impl Spec {
    /// The spec of the named cycle anomaly (`G0`, `G1c`, `G-single`, `G-nonadjacent`,
    /// `G2-item`, each maybe `-process` or `-realtime`).
    pub fn named(name: &str) -> Spec {
        let (base, variant) = super::model::split_variant(name);
        let (data, rw, need_wr, min_len) = match base {
            "G0" => (WW, RwRule::None, false, 2),
            "G1c" => (WW | WR, RwRule::None, true, 2),
            "G-single" => (WW | WR | RW, RwRule::Single, false, 2),
            "G-nonadjacent" => (WW | WR | RW, RwRule::Nonadjacent, false, 4),
            _ => (WW | WR | RW, RwRule::Adjacent, false, 2),
        };
        let (extra, need_extra) = match variant {
            None => (0, 0),
            Some("process") => (PROCESS, PROCESS),
            Some(_) => (PROCESS | REALTIME, REALTIME),
        };
        Spec {
            allowed: data | extra,
            rw,
            need_wr,
            need_extra,
            min_len,
        }
    }

    /// The edge type every cycle of this kind has at least once.
    fn required(&self) -> u8 {
        if self.need_extra != 0 {
            self.need_extra
        } else if self.rw != RwRule::None {
            RW
        } else if self.need_wr {
            WR
        } else {
            self.allowed
        }
    }

    /// The state after taking an edge of type `t` (a single bit) from state `s`, or `None`
    /// when the spec forbids it. State bits: 0-1 rw count (saturating at 2), 2 first edge rw,
    /// 3 last edge rw, 4 two adjacent rw seen, 5 wr seen, 6 required extra edge seen.
    fn step(&self, s: u8, t: u8, first: bool) -> Option<u8> {
        if t & self.allowed == 0 {
            return None;
        }
        let mut s = s;
        if t == RW {
            let count = s & 3;
            let last_rw = s & 8 != 0;
            match self.rw {
                RwRule::None => return None,
                RwRule::Single if count >= 1 => return None,
                RwRule::Nonadjacent if last_rw => return None,
                _ => {}
            }
            s = (s & !3) | (count + 1).min(2);
            if last_rw {
                s |= 16;
            }
            s |= 8;
            if first {
                s |= 4;
            }
        } else {
            s &= !8;
        }
        if t == WR {
            s |= 32;
        }
        if t & self.need_extra != 0 {
            s |= 64;
        }
        Some(s)
    }

    /// Whether a cycle that ends in state `s` (after its closing edge) is of this kind.
    fn accepts(&self, s: u8) -> bool {
        let count = s & 3;
        let wrap = s & 4 != 0 && s & 8 != 0;
        let ok_rw = match self.rw {
            RwRule::None => count == 0,
            RwRule::Single => count == 1,
            RwRule::Nonadjacent => count >= 2 && !wrap,
            RwRule::Adjacent => count >= 2 && (s & 16 != 0 || wrap),
        };
        ok_rw && (!self.need_wr || s & 32 != 0) && (self.need_extra == 0 || s & 64 != 0)
    }
}

/// The name of a cycle by the types of its edges (Elle's classification).
pub(crate) fn classify(types: &[u8]) -> String {
    let count = |t: u8| types.iter().filter(|&&x| x == t).count();
    let rw = count(RW);
    let n = types.len();
    let adjacent = (0..n).any(|i| types[i] == RW && types[(i + 1) % n] == RW);
    let base = if rw == 1 {
        "G-single"
    } else if rw > 1 {
        if adjacent { "G2-item" } else { "G-nonadjacent" }
    } else if count(WR) > 0 {
        "G1c"
    } else {
        "G0"
    };
    let suffix = if count(REALTIME) > 0 {
        "-realtime"
    } else if count(PROCESS) > 0 {
        "-process"
    } else {
        ""
    };
    format!("{base}{suffix}")
}

/// A cycle: nodes in order with the type of the edge from each to the next (the last to the
/// first).
pub(crate) type Cycle = Vec<(u32, u8)>;

/// The search ran out of time.
#[derive(Debug)]
pub(crate) struct TimedOut;

struct Entry {
    node: u32,
    parent: u32,
    depth: u32,
    state: u8,
    etype: u8,
}

/// Finds the smallest cycle of kind `spec` in `g` (local indices), or none; gives up at
/// `deadline`.
pub(crate) fn find_cycle(
    g: &Graph,
    spec: &Spec,
    deadline: Instant,
) -> Result<Option<Cycle>, TimedOut> {
    // Only nodes in one component of the spec's edges can share a cycle.
    let subs = g.sccs(spec.allowed);
    if subs.is_empty() {
        return Ok(None);
    }
    let mut sub_of = vec![NONE; g.len()];
    for (i, c) in subs.iter().enumerate() {
        for &v in c {
            sub_of[v as usize] = i as u32;
        }
    }
    // Every such cycle has an edge of the required type: start from their sources.
    let req = spec.required();
    let mut starts: Vec<u32> = (0..g.len() as u32)
        .filter(|&v| {
            sub_of[v as usize] != NONE
                && g.out(v)
                    .any(|(w, m)| m & req != 0 && sub_of[w as usize] == sub_of[v as usize])
        })
        .collect();
    starts.sort_by_key(|&v| sub_of[v as usize]);
    let mut best: Option<Cycle> = None;
    let mut since_best = 0usize;
    let mut steps = 0usize;
    for s in starts {
        if Instant::now() >= deadline {
            return if best.is_some() {
                Ok(best)
            } else {
                Err(TimedOut)
            };
        }
        let bound = best.as_ref().map_or(usize::MAX, |c| c.len() - 1);
        match bfs(g, spec, s, &sub_of, bound, deadline, &mut steps) {
            Err(TimedOut) if best.is_some() => return Ok(best),
            Err(e) => return Err(e),
            Ok(Some(c)) => {
                since_best = 0;
                let done = c.len() <= spec.min_len;
                best = Some(c);
                if done {
                    break;
                }
            }
            Ok(None) => {
                since_best += 1;
                if best.is_some() && since_best > 256 {
                    break;
                }
            }
        }
    }
    Ok(best)
}

/// Breadth-first search over (node, state) from `s` back to `s`, along simple paths, for a
/// cycle of at most `bound` edges.
fn bfs(
    g: &Graph,
    spec: &Spec,
    s: u32,
    sub_of: &[u32],
    bound: usize,
    deadline: Instant,
    steps: &mut usize,
) -> Result<Option<Cycle>, TimedOut> {
    let comp = sub_of[s as usize];
    let mut arena = vec![Entry {
        node: s,
        parent: NONE,
        depth: 0,
        state: 0,
        etype: 0,
    }];
    let mut seen: HashSet<u64> = HashSet::default();
    let mut head = 0usize;
    while head < arena.len() {
        let e = head;
        head += 1;
        let (v, depth, state) = (arena[e].node, arena[e].depth, arena[e].state);
        if depth as usize + 1 > bound {
            continue;
        }
        *steps += 1;
        if (*steps).is_multiple_of(1024) && Instant::now() >= deadline {
            return Err(TimedOut);
        }
        for (w, mask) in g.out(v) {
            if sub_of[w as usize] != comp {
                continue;
            }
            let mut bits = mask & spec.allowed;
            while bits != 0 {
                let t = bits & bits.wrapping_neg();
                bits &= !t;
                let Some(st) = spec.step(state, t, depth == 0) else {
                    continue;
                };
                if w == s {
                    if spec.accepts(st) {
                        return Ok(Some(path(&arena, e, t)));
                    }
                    continue;
                }
                if !seen.insert(((w as u64) << 8) | st as u64) || on_path(&arena, e, w) {
                    continue;
                }
                arena.push(Entry {
                    node: w,
                    parent: e as u32,
                    depth: depth + 1,
                    state: st,
                    etype: t,
                });
            }
        }
    }
    Ok(None)
}

fn on_path(arena: &[Entry], mut e: usize, w: u32) -> bool {
    loop {
        if arena[e].node == w {
            return true;
        }
        if arena[e].parent == NONE {
            return false;
        }
        e = arena[e].parent as usize;
    }
}

/// The cycle ending at entry `e` and closed by an edge of type `close`.
fn path(arena: &[Entry], mut e: usize, close: u8) -> Cycle {
    let mut rev: Vec<(u32, u8)> = Vec::new();
    let mut out_type = close;
    loop {
        rev.push((arena[e].node, out_type));
        out_type = arena[e].etype;
        if arena[e].parent == NONE {
            break;
        }
        e = arena[e].parent as usize;
    }
    rev.reverse();
    rev
}

/// What the search found in one component: cycles by kind, and the kinds it ran out of time
/// on before finding anything.
#[derive(Debug, Default)]
pub(crate) struct SccFindings {
    pub cycles: Vec<(String, Cycle)>,
    pub timed_out: Vec<String>,
}

/// Searches one component (local graph `g`) for each kind in `kinds` (most severe first),
/// skipping kinds implied by one already found, all within `deadline`.
pub(crate) fn search_scc(g: &Graph, kinds: &[String], deadline: Instant) -> SccFindings {
    let mut f = SccFindings::default();
    for k in kinds {
        if f.cycles
            .iter()
            .any(|(found, _)| super::model::implies_cycle(found, k))
        {
            continue;
        }
        let spec = Spec::named(k);
        match find_cycle(g, &spec, deadline) {
            Ok(Some(c)) => {
                let types: Vec<u8> = c.iter().map(|x| x.1).collect();
                if classify(&types) == *k {
                    f.cycles.push((k.clone(), c));
                }
            }
            Ok(None) => {}
            Err(TimedOut) => {
                f.timed_out.push(k.clone());
                // Whatever is left cannot be searched either.
                break;
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn tarjan_finds_components_without_recursion() {
        // A chain of 200,000 nodes closed into one cycle, and a separate 2-cycle.
        let n = 200_002u32;
        let mut e: Vec<Edge> = (0..199_999).map(|i| (i, i + 1, WW)).collect();
        e.push((199_999, 0, WW));
        e.push((200_000, 200_001, WR));
        e.push((200_001, 200_000, WR));
        let g = Graph::build(n as usize, &[e]);
        let mut s = g.sccs(WW | WR);
        s.sort_by_key(|c| c.len());
        assert_eq!(s.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 200_000]);
        assert!(g.sccs(WW).len() == 1, "the wr pair is no ww component");
    }

    #[test]
    fn parallel_edges_merge_their_types() {
        let g = Graph::build(2, &[vec![(0, 1, WW), (0, 1, RW), (1, 0, WR), (1, 1, WW)]]);
        assert_eq!(g.mask(0, 1), WW | RW);
        assert_eq!(g.edge_count(), 2, "the self-edge is dropped");
    }

    #[test]
    fn the_search_finds_the_smallest_cycle_of_each_kind() {
        // 0 -ww-> 1 -ww-> 2 -ww-> 0 (a G0 of 3) and 0 -ww-> 3 -ww-> 0 (a G0 of 2);
        // 4 -rw-> 5 -wr-> 4: G-single.
        let e = vec![
            (0, 1, WW),
            (1, 2, WW),
            (2, 0, WW),
            (0, 3, WW),
            (3, 0, WW),
            (4, 5, RW),
            (5, 4, WR),
        ];
        let g = Graph::build(6, &[e]);
        let c = find_cycle(&g, &Spec::named("G0"), far()).unwrap().unwrap();
        assert_eq!(c.len(), 2);
        let c = find_cycle(&g, &Spec::named("G-single"), far())
            .unwrap()
            .unwrap();
        assert_eq!(c.iter().map(|x| x.1).collect::<Vec<_>>().len(), 2);
        assert!(
            find_cycle(&g, &Spec::named("G1c"), far())
                .unwrap()
                .is_none()
        );
        assert!(
            find_cycle(&g, &Spec::named("G2-item"), far())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn nonadjacent_and_adjacent_rw_edges_are_told_apart() {
        // 0 -rw-> 1 -ww-> 2 -rw-> 3 -wr-> 0: two rw, never adjacent.
        let g = Graph::build(4, &[vec![(0, 1, RW), (1, 2, WW), (2, 3, RW), (3, 0, WR)]]);
        let c = find_cycle(&g, &Spec::named("G-nonadjacent"), far()).unwrap();
        assert_eq!(c.map(|c| c.len()), Some(4));
        assert!(
            find_cycle(&g, &Spec::named("G2-item"), far())
                .unwrap()
                .is_none()
        );
        // 0 -rw-> 1 -rw-> 0: adjacent (write skew).
        let g = Graph::build(2, &[vec![(0, 1, RW), (1, 0, RW)]]);
        assert!(
            find_cycle(&g, &Spec::named("G2-item"), far())
                .unwrap()
                .is_some()
        );
        assert!(
            find_cycle(&g, &Spec::named("G-nonadjacent"), far())
                .unwrap()
                .is_none()
        );
        assert_eq!(classify(&[RW, RW]), "G2-item");
        assert_eq!(classify(&[RW, WW, REALTIME]), "G-single-realtime");
    }

    #[test]
    fn variants_need_their_edge() {
        // 0 -ww-> 1 -process-> 0.
        let g = Graph::build(2, &[vec![(0, 1, WW), (1, 0, PROCESS)]]);
        assert!(find_cycle(&g, &Spec::named("G0"), far()).unwrap().is_none());
        assert!(
            find_cycle(&g, &Spec::named("G0-process"), far())
                .unwrap()
                .is_some()
        );
        // The realtime variant may use process edges but needs a realtime one.
        assert!(
            find_cycle(&g, &Spec::named("G0-realtime"), far())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_past_deadline_times_out() {
        let g = Graph::build(2, &[vec![(0, 1, WW), (1, 0, WW)]]);
        assert!(find_cycle(&g, &Spec::named("G0"), Instant::now()).is_err());
    }
}
