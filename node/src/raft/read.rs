//! Linearizable reads on the leader: ReadIndex (dissertation §6.4) and leases (§6.4.1).
//!
//! Every heartbeat broadcast starts a numbered *round*. A read that arrives at commit index `c`
//! waits for the next round; once a majority of voters acknowledged that round (or a later
//! one), no other leader can have existed when the read arrived, so reading the state machine
//! at `c` or later is linearizable.
//!
//! A round acknowledged by a majority also starts a lease: followers refuse votes for
//! `election_tick` ticks after hearing from the leader (leader stickiness), so no other leader
//! can be elected before `sent_tick + election_tick`. The lease ends one tick earlier, as
//! margin. Rounds sent during a leadership transfer never start a lease (the transferee's
//! election bypasses stickiness), and a transfer ends any lease in force.

use std::collections::{BTreeMap, VecDeque};

use super::{Index, ReadState};

/// When a lease ends. Ticks are the monotonic clock; wall-clock fields are only read under the
/// `lease-ignores-skew` bug.
#[derive(Debug, Default)]
pub(crate) struct LeaseClock {
    until_tick: u64,
    until_wall: u64,
    /// Bumped by every transfer start and end; rounds from another epoch do not count.
    epoch: u64,
}

impl LeaseClock {
    pub fn valid_by_ticks(&self, now_tick: u64) -> bool {
        now_tick < self.until_tick
    }

    /// Planted bug `lease-ignores-skew`: trusts the wall clock.
    pub fn valid_by_wall(&self, now_wall: u64) -> bool {
        now_wall < self.until_wall
    }

    pub fn transfer_started(&mut self, _now_tick: u64) {
        self.epoch += 1;
        self.until_tick = 0;
        self.until_wall = 0;
    }

    pub fn transfer_ended(&mut self, _now_tick: u64) {
        self.epoch += 1;
        self.until_tick = 0;
        self.until_wall = 0;
    }
}

#[derive(Debug)]
struct Round {
    tick: u64,
    wall: u64,
    transferring: bool,
    epoch: u64,
}

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    index: Index,
    round: u64,
}

/// The leader's heartbeat rounds and the reads waiting on them.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    round: u64,
    rounds: BTreeMap<u64, Round>,
    pending: VecDeque<PendingRead>,
    pub lease: LeaseClock,
}

impl ReadQueue {
    /// Starts a heartbeat round sent at this tick and wall-clock reading.
    pub fn start_round(&mut self, tick: u64, wall: u64, transferring: bool) -> u64 {
        self.round += 1;
        self.rounds.insert(
            self.round,
            Round {
                tick,
                wall,
                transferring,
                epoch: self.lease.epoch,
            },
        );
        self.round
    }

    /// The latest round started.
    pub fn current_round(&self) -> u64 {
        self.round
    }

    /// Queues a read at `index`, to be released once `round` is confirmed.
    pub fn push(&mut self, ctx: u64, index: Index, round: u64) {
        self.pending.push_back(PendingRead { ctx, index, round });
    }

    /// A majority acknowledged every round up to `confirmed`: release the reads waiting on
    /// them and extend the lease.
    pub fn confirm(
        &mut self,
        confirmed: u64,
        election_tick: u64,
        tick_millis: u64,
    ) -> Vec<ReadState> {
        let mut out = Vec::new();
        while self.pending.front().is_some_and(|r| r.round <= confirmed) {
            let r = self.pending.pop_front().expect("checked");
            out.push(ReadState {
                ctx: r.ctx,
                index: r.index,
            });
        }
        if let Some(round) = self.rounds.get(&confirmed)
            && !round.transferring
            && round.epoch == self.lease.epoch
        {
            let len = election_tick.saturating_sub(1);
            self.lease.until_tick = self.lease.until_tick.max(round.tick + len);
            self.lease.until_wall = self.lease.until_wall.max(round.wall + len * tick_millis);
        }
        self.rounds = self.rounds.split_off(&(confirmed + 1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference: dissertation §6.4 (a read waits for a heartbeat round after it arrived).
    #[test]
    fn read_waits_for_a_round_started_after_it() {
        let mut q = ReadQueue::default();
        let r1 = q.start_round(0, 0, false);
        q.push(7, 3, r1 + 1);
        assert!(
            q.confirm(r1, 10, 100).is_empty(),
            "an older round proves nothing"
        );
        let r2 = q.start_round(1, 100, false);
        assert_eq!(q.confirm(r2, 10, 100), vec![ReadState { ctx: 7, index: 3 }]);
    }

    // Reference: dissertation §6.4.1 (the lease is shorter than the election timeout).
    #[test]
    fn lease_ends_before_an_election_timeout_after_the_round_was_sent() {
        let mut q = ReadQueue::default();
        let r = q.start_round(5, 500, false);
        q.confirm(r, 10, 100);
        assert!(q.lease.valid_by_ticks(13));
        assert!(!q.lease.valid_by_ticks(14));
    }

    // Reference: dissertation §3.10 (a transfer bypasses stickiness, so it ends the lease).
    #[test]
    fn rounds_during_a_transfer_do_not_start_a_lease() {
        let mut q = ReadQueue::default();
        q.lease.transfer_started(0);
        let r = q.start_round(1, 100, true);
        q.confirm(r, 10, 100);
        assert!(!q.lease.valid_by_ticks(2));
    }
}
