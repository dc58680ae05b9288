//! What a leader knows about each follower's log, and how it paces replication to it.
//!
//! A follower is in one of three states (the same as etcd-raft's): `Probe` (we do not know where
//! its log matches ours: one AppendEntries at a time, back off on rejection), `Replicate` (it
//! matched: stream entries optimistically, up to `max_inflight` messages in flight), or
//! `Snapshot` (it needs a snapshot; wait for the answer).

use std::collections::VecDeque;

use super::Index;

/// The replication state of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// What the leader knows about one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log.
    pub match_index: Index,
    /// The next index to send.
    pub next_index: Index,
    pub state: ProgressState,
    /// In `Probe`: an AppendEntries is out and we wait for its answer (or a heartbeat answer).
    pub probe_sent: bool,
    /// In `Replicate`: the last index of each AppendEntries in flight, oldest first.
    pub inflight: VecDeque<Index>,
    /// Heard from since the last CheckQuorum (dissertation §6.2).
    pub recent_active: bool,
    /// The highest heartbeat round it acknowledged in the leader's term.
    pub acked_round: u64,
    /// Heartbeat answers since the match index last advanced while entries were outstanding:
    /// after two, the leader assumes an AppendEntries was lost and probes again.
    pub stalls: u32,
}

impl Progress {
    pub fn new(next_index: Index) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            acked_round: 0,
            stalls: 0,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.stalls = 0;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_snapshot(&mut self) {
        self.state = ProgressState::Snapshot;
        self.stalls = 0;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Whether the leader may send another AppendEntries carrying entries.
    pub fn can_send(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent,
            ProgressState::Replicate => self.inflight.len() < max_inflight,
            ProgressState::Snapshot => false,
        }
    }

    /// Records an acknowledgement up to `index`; returns whether it taught us anything.
    pub fn ack(&mut self, index: Index) -> bool {
        while self.inflight.front().is_some_and(|&i| i <= index) {
            self.inflight.pop_front();
        }
        if index > self.match_index {
            self.stalls = 0;
            self.match_index = index;
            self.next_index = self.next_index.max(index + 1);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_is_bounded_by_max_inflight_and_acks_free_slots() {
        let mut pr = Progress::new(1);
        pr.become_replicate();
        for last in [2, 4, 6] {
            assert!(pr.can_send(3));
            pr.inflight.push_back(last);
        }
        assert!(!pr.can_send(3), "three messages in flight is the limit");
        assert!(pr.ack(4));
        assert_eq!(pr.inflight.len(), 1);
        assert!(pr.can_send(3));
        assert!(!pr.ack(3), "a stale ack teaches nothing");
    }

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut pr = Progress::new(5);
        assert!(pr.can_send(8));
        pr.probe_sent = true;
        assert!(!pr.can_send(8));
    }
}
