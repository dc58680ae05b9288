//! The in-memory Raft log: entries after the last snapshot, plus the commit, apply and
//! durability cursors.
//!
//! The log never does I/O. It remembers which suffix has not yet been handed to storage
//! (`unstable_from`) and which prefix storage confirmed (`persisted`), so that a leader counts
//! only durable entries of its own toward a commit quorum.

use super::{Entry, Index, Term};

/// The log of one node.
#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// The last index covered by the snapshot (0 if none).
    snapshot_index: Index,
    /// Its term.
    snapshot_term: Term,
    /// `entries[i].index == snapshot_index + 1 + i`.
    entries: Vec<Entry>,
    /// The highest index known committed.
    pub commit: Index,
    /// The highest index handed out for applying (or covered by the installed snapshot).
    pub applied: Index,
    /// Storage confirmed everything up to here is durable.
    persisted: Index,
    /// The first index not yet handed to storage in a `Ready`.
    unstable_from: Index,
}

impl RaftLog {
    /// A log recovered from storage: a snapshot position and the entries after it.
    pub fn recover(
        snapshot_index: Index,
        snapshot_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) -> Result<Self, String> {
        for (i, e) in entries.iter().enumerate() {
            if e.index != snapshot_index + 1 + i as u64 {
                return Err(format!(
                    "entry {} where {} was expected",
                    e.index,
                    snapshot_index + 1 + i as u64
                ));
            }
        }
        let last = snapshot_index + entries.len() as u64;
        Ok(RaftLog {
            snapshot_index,
            snapshot_term,
            entries,
            commit: commit.clamp(snapshot_index, last),
            applied: snapshot_index,
            persisted: last,
            unstable_from: last + 1,
        })
    }

    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// The first index not yet handed to storage.
    pub fn unstable_cursor(&self) -> Index {
        self.unstable_from
    }

    pub fn persisted(&self) -> Index {
        self.persisted
    }

    /// The term of the entry at `index`, if the log still knows it (the snapshot's last entry
    /// counts; compacted entries before it do not).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub fn get(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// Entries in `[lo, hi]`, at most `max` of them. `lo` must be past the snapshot.
    pub fn slice(&self, lo: Index, hi: Index, max: usize) -> Vec<Entry> {
        if lo > hi || lo <= self.snapshot_index {
            return Vec::new();
        }
        let start = (lo - self.snapshot_index - 1) as usize;
        let end = ((hi - self.snapshot_index) as usize).min(self.entries.len());
        let end = end.min(start.saturating_add(max));
        self.entries[start.min(end)..end].to_vec()
    }

    /// All entries after the snapshot.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours if its last term is higher,
    /// or equal with a last index at least ours.
    pub fn is_up_to_date(&self, last_term: Term, last_index: Index) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends one entry at the end (a leader's own proposal).
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push(entry);
    }

    /// Drops every entry at or after `index`. Committed entries are never dropped (callers
    /// guarantee it; a debug assertion checks).
    pub fn truncate(&mut self, index: Index) {
        debug_assert!(index > self.snapshot_index);
        let keep = (index - self.snapshot_index - 1) as usize;
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.unstable_from = self.unstable_from.min(index);
            self.persisted = self.persisted.min(index - 1);
        }
    }

    /// Takes the entries storage has not seen yet.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.unstable_from > last {
            self.unstable_from = last + 1;
            return Vec::new();
        }
        let from = self.unstable_from.max(self.first_index());
        let out = self.slice(from, last, usize::MAX);
        self.unstable_from = last + 1;
        out
    }

    /// Storage made everything up to `index` durable, if the entry there still has `term`.
    pub fn mark_persisted(&mut self, index: Index, term: Term) {
        if index > self.persisted && self.term(index) == Some(term) && index < self.unstable_from {
            self.persisted = index;
        }
    }

    /// Drops the prefix up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: Index) {
        if index <= self.snapshot_index || index > self.last_index() {
            return;
        }
        let term = self.term(index).expect("index is in the log");
        let drop = (index - self.snapshot_index) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Replaces the whole log with a snapshot position (InstallSnapshot).
    pub fn restore(&mut self, index: Index, term: Term) {
        self.entries.clear();
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.commit = index;
        self.applied = index;
        self.persisted = index;
        self.unstable_from = index + 1;
    }

    /// Committed entries not yet handed out, at most up to `max_index` (what will be durable).
    pub fn take_committed(&mut self, max_index: Index) -> Vec<Entry> {
        let hi = self.commit.min(max_index);
        if hi <= self.applied {
            return Vec::new();
        }
        let out = self.slice(self.applied + 1, hi, usize::MAX);
        self.applied = hi;
        out
    }

    /// The first index of the term of the entry at `index` (for rejection hints).
    pub fn first_index_of_term(&self, index: Index) -> Index {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut i = index;
        while i > self.first_index() && self.term(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// The last index whose entry has `term`, if the log has any (for back-off on the leader).
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        self.entries
            .iter()
            .rev()
            .skip_while(|e| e.term > term)
            .take_while(|e| e.term >= term)
            .find(|e| e.term == term)
            .map(|e| e.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;

    fn log_with_terms(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                index: i as u64 + 1,
                term: t,
                payload: Payload::Noop,
            })
            .collect();
        RaftLog::recover(0, 0, entries, 0).unwrap()
    }

    // Reference: §5.4.1 (the up-to-date comparison).
    #[test]
    fn higher_last_term_wins_over_longer_log() {
        let log = log_with_terms(&[1, 1, 1, 2]);
        assert!(log.is_up_to_date(3, 1));
        assert!(!log.is_up_to_date(1, 10));
        assert!(log.is_up_to_date(2, 4));
        assert!(!log.is_up_to_date(2, 3));
    }

    #[test]
    fn compaction_keeps_the_term_of_the_snapshot_index() {
        let mut log = log_with_terms(&[1, 1, 2, 2, 3]);
        log.applied = 4;
        log.compact(3);
        assert_eq!(log.first_index(), 4);
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(2), None);
        assert_eq!(log.slice(4, 5, 10).len(), 2);
        assert_eq!(log.last_index_of_term(2), Some(4));
        assert_eq!(log.last_index_of_term(1), None);
    }

    #[test]
    fn truncation_forgets_durability_of_the_dropped_suffix() {
        let mut log = log_with_terms(&[1, 1, 1]);
        assert_eq!(log.persisted(), 3);
        log.truncate(2);
        assert_eq!(log.persisted(), 1);
        log.append(Entry {
            index: 2,
            term: 2,
            payload: Payload::Noop,
        });
        let unstable = log.take_unstable();
        assert_eq!(unstable.len(), 1);
        assert_eq!(unstable[0].index, 2);
        log.mark_persisted(2, 1);
        assert_eq!(
            log.persisted(),
            1,
            "a stale term must not mark anything durable"
        );
        log.mark_persisted(2, 2);
        assert_eq!(log.persisted(), 2);
    }

    #[test]
    fn first_index_of_term_finds_the_start_of_a_run() {
        let log = log_with_terms(&[1, 2, 2, 2, 3]);
        assert_eq!(log.first_index_of_term(4), 2);
        assert_eq!(log.first_index_of_term(5), 5);
    }
}
