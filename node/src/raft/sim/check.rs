//! The invariant checker of the simulator: Raft's safety properties (paper Figure 3) plus
//! client-visible ones (acknowledged writes survive, reads are linearizable).
//!
//! It sees every node after every step and keeps a global, all-time record: leaders by term,
//! every (index, term) entry ever seen in any log, every committed entry, every state-machine
//! hash after applying an index.

use std::collections::{BTreeMap, HashMap};

use crate::raft::{ConfChangeKind, Index, NodeId, Payload, Raft, Role, Term};

type Res<T = ()> = Result<T, String>;

#[derive(Debug, Default)]
pub(super) struct Checker {
    /// Election Safety: the leader of each term, across all time.
    leaders: BTreeMap<Term, NodeId>,
    /// Every committed entry: (term, payload, a term in which it was already committed).
    committed: BTreeMap<Index, (Term, Payload, Term)>,
    /// Log Matching: (index, term) -> (term of the previous entry, payload).
    entries: HashMap<(Index, Term), (Term, Payload)>,
    /// State Machine Safety: the state-machine hash after applying each index.
    applied: HashMap<Index, u64>,
    /// Each node's latest proposal at each index.
    proposals: HashMap<(NodeId, Index), Payload>,
    /// Acknowledged writes.
    acked: BTreeMap<Index, Payload>,
    /// Pending reads: ctx -> the highest commit index seen when the read was issued.
    reads: HashMap<u64, Index>,
    max_commit: Index,
    /// Per node: the last (index, term) whose log prefix was already checked.
    checked: HashMap<NodeId, (Index, Term)>,
    /// Per node: the commit index already recorded.
    recorded: HashMap<NodeId, Index>,
    removed: Vec<NodeId>,
    /// Leaders seen (one per term).
    pub elections: u64,
}

impl Checker {
    /// Checks one node after a step. Returns whether it just became the leader of a new term.
    pub fn check_node(&mut self, raft: &Raft) -> Res<bool> {
        let id = raft.id();
        let mut new_leader = false;
        let snap = raft.snapshot_index();
        if raft.role() == Role::Leader {
            let term = raft.term();
            match self.leaders.get(&term) {
                Some(&other) if other != id => {
                    return Err(format!(
                        "Election Safety (§5.2): nodes {other} and {id} both led term {term}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                    self.elections += 1;
                    new_leader = true;
                    // Leader Completeness (§5.4): every entry committed in an earlier term.
                    for (&i, (t, _, ct)) in self.committed.range(snap + 1..) {
                        if *ct < term && raft.term_at(i) != Some(*t) {
                            return Err(format!(
                                "Leader Completeness (§5.4): leader {id} of term {term} lacks committed entry {i}@{t} (has {:?})",
                                raft.term_at(i)
                            ));
                        }
                    }
                }
            }
        }

        // Log Matching (§5.3), checked incrementally: an (index, term) pair determines the
        // payload and the previous entry's term; by induction, the whole prefix.
        let entries = raft.log_entries();
        let start = match self.checked.get(&id) {
            Some(&(i, t)) if i >= snap && raft.term_at(i) == Some(t) => (i - snap) as usize,
            _ => 0,
        };
        for k in start..entries.len() {
            let e = &entries[k];
            let prev_term = if k == 0 {
                raft.term_at(snap).unwrap_or(0)
            } else {
                entries[k - 1].term
            };
            match self.entries.get(&(e.index, e.term)) {
                Some((pt, p)) => {
                    if *pt != prev_term || *p != e.payload {
                        return Err(format!(
                            "Log Matching (§5.3): node {id} has {} after term {prev_term}, elsewhere it is {:?} after term {pt}",
                            e.describe(),
                            p
                        ));
                    }
                }
                None => {
                    self.entries
                        .insert((e.index, e.term), (prev_term, e.payload.clone()));
                }
            }
        }
        if let Some(last) = entries.last() {
            self.checked.insert(id, (last.index, last.term));
        }

        // Commits: no two nodes ever commit different entries at an index.
        let commit = raft.commit_index();
        let from = self.recorded.get(&id).copied().unwrap_or(0).max(snap) + 1;
        for i in from..=commit {
            let Some(e) = entries.get((i - snap - 1) as usize) else {
                return Err(format!("node {id} commit {commit} is past its log"));
            };
            match self.committed.get(&i) {
                Some((t, p, _)) => {
                    if *t != e.term || *p != e.payload {
                        return Err(format!(
                            "State Machine Safety (§5.4.3): node {id} committed {} where {i}@{t} {p:?} was committed",
                            e.describe()
                        ));
                    }
                }
                None => {
                    if let Some(p) = self.acked.get(&i)
                        && *p != e.payload
                    {
                        return Err(format!(
                            "acknowledged write at {i} ({p:?}) replaced by {}",
                            e.describe()
                        ));
                    }
                    if let Payload::Conf(cc) = &e.payload
                        && cc.kind == ConfChangeKind::Remove
                    {
                        self.removed.push(cc.node);
                    }
                    self.committed
                        .insert(i, (e.term, e.payload.clone(), raft.term()));
                }
            }
        }
        if commit >= from {
            self.recorded.insert(id, commit);
        }
        self.max_commit = self.max_commit.max(commit);
        Ok(new_leader)
    }

    /// A node restarted: its log may be shorter now.
    pub fn restarted(&mut self, id: NodeId) {
        self.checked.remove(&id);
        self.recorded.remove(&id);
    }

    fn state_hash(&mut self, id: NodeId, index: Index, hash: u64) -> Res {
        match self.applied.get(&index) {
            Some(&h) if h != hash => Err(format!(
                "State Machine Safety (§5.4.3): node {id} applied a different history up to {index}"
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(index, hash);
                Ok(())
            }
        }
    }

    /// A node applied entry `index`, reaching state `hash`.
    pub fn applied(&mut self, id: NodeId, index: Index, hash: u64) -> Res {
        self.state_hash(id, index, hash)
    }

    /// A node installed a snapshot of the state at `index`.
    pub fn installed(&mut self, id: NodeId, index: Index, hash: u64) -> Res {
        self.state_hash(id, index, hash)
    }

    pub fn proposed(&mut self, id: NodeId, index: Index, payload: Payload) {
        self.proposals.insert((id, index), payload);
    }

    /// A node acknowledged its proposal at `index` to the client.
    pub fn acked(&mut self, id: NodeId, index: Index) -> Res {
        let Some(p) = self.proposals.get(&(id, index)).cloned() else {
            return Err(format!("node {id} acked {index}, which it never proposed"));
        };
        if let Some((t, c, _)) = self.committed.get(&index)
            && *c != p
        {
            return Err(format!(
                "acknowledged write {p:?} at {index} lost: {index}@{t} {c:?} was committed"
            ));
        }
        if let Some(prev) = self.acked.get(&index)
            && *prev != p
        {
            return Err(format!(
                "two different writes acknowledged at {index}: {prev:?} and {p:?}"
            ));
        }
        self.acked.insert(index, p);
        Ok(())
    }

    /// A read was issued now.
    pub fn read_requested(&mut self, ctx: u64) {
        self.reads.insert(ctx, self.max_commit);
    }

    /// A read was answered: it must observe everything committed when it was issued.
    pub fn read_served(&mut self, id: NodeId, ctx: u64, index: Index) -> Res {
        let Some(floor) = self.reads.remove(&ctx) else {
            return Ok(());
        };
        if index < floor {
            return Err(format!(
                "linearizability (dissertation §6.4): read {ctx} served by node {id} at index {index}, but {floor} was committed when it was issued"
            ));
        }
        Ok(())
    }

    pub fn committed_payload(&self, index: Index) -> Option<&Payload> {
        self.committed.get(&index).map(|(_, p, _)| p)
    }

    /// Nodes whose removal committed since the last call.
    pub fn take_removed(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.removed)
    }

    /// After the heal: every acknowledged write must be committed.
    pub fn final_check(&self) -> Res {
        let max = self.committed.keys().next_back().copied().unwrap_or(0);
        for (&i, p) in &self.acked {
            if i > max {
                return Err(format!(
                    "acknowledged write {p:?} at {i} never committed (highest commit {max})"
                ));
            }
        }
        Ok(())
    }
}
