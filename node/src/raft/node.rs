//! The Raft node: one struct whose role (follower, pre-candidate, candidate, leader) changes as
//! it takes inputs. Every input is a method call; every output is queued for the next [`Ready`].
//!
//! This module must never do I/O, read a clock, spawn a thread or draw randomness from anything
//! but its seeded generator: the simulator depends on it being a deterministic function of its
//! inputs.

use std::collections::{BTreeMap, BTreeSet};

use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::read::ReadQueue;
use super::{
    Bug, ConfChange, ConfChangeKind, Config, Entry, Error, HardState, Index, Membership, Message,
    MessageBody, NodeId, NotLeader, Payload, Persisted, ProposeError, ReadMode, ReadState, Ready,
    RejectHint, Role, Snapshot, SnapshotMeta, Status, Term,
};

/// A tiny deterministic generator (SplitMix64) for election timeouts; keeps the core free of
/// any randomness it does not own.
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Role-specific state.
#[derive(Debug)]
enum RoleState {
    Follower,
    PreCandidate { votes: BTreeMap<NodeId, bool> },
    Candidate { votes: BTreeMap<NodeId, bool> },
    Leader(Box<LeaderState>),
}

/// What only a leader keeps.
#[derive(Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    heartbeat_elapsed: u64,
    check_quorum_elapsed: u64,
    /// Reads and leases (dissertation §6.4, §6.4.1).
    reads: ReadQueue,
    /// Reads that arrived before the leader committed an entry of its term.
    waiting_reads: Vec<u64>,
    /// Leadership transfer in progress (dissertation §3.10).
    transferee: Option<NodeId>,
    /// A TimeoutNow went out in this term: its election bypasses leader stickiness, possibly
    /// even after the transfer timed out here, so this leader never trusts a lease again.
    timeout_now_sent: bool,
    transfer_elapsed: u64,
}

/// The sans-IO Raft core of one node. See the [module documentation](super) for the algorithm
/// and [`Ready`] for how a shell drives it.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    rng: SplitMix,
    term: Term,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    role: RoleState,
    log: RaftLog,
    /// The membership in effect: the latest in the log (dissertation §4.1).
    membership: Membership,
    /// The index of the entry that set `membership` (or the snapshot index).
    membership_index: Index,
    /// The membership as of the snapshot (or the initial one).
    base_membership: Membership,
    /// The latest snapshot, to send to followers that fell behind.
    snapshot: Option<Snapshot>,

    ticks: u64,
    election_elapsed: u64,
    randomized_timeout: u64,
    /// Ticks since this node last heard from a leader of its term (or since boot): leader
    /// stickiness for PreVote/CheckQuorum.
    leader_contact_elapsed: u64,
    wall_clock: u64,

    msgs: Vec<Message>,
    install: Option<Snapshot>,
    compaction: Option<Snapshot>,
    last_hard_state: HardState,
    reads_out: Vec<ReadState>,
    acks_out: Vec<Index>,
    /// This node's own proposals, by index, with the term they were proposed in.
    own_proposals: BTreeMap<Index, Term>,
    /// The snapshot index for which `want_snapshot` was last reported.
    want_snapshot_reported: Option<Index>,
    /// A `Ready` was taken and not yet advanced; the last entry it carried.
    outstanding: Option<Option<(Index, Term)>>,
}

impl Raft {
    /// Boots a node from what storage recovered.
    pub fn new(config: Config, persisted: Persisted) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let (snap_index, snap_term, base_membership) = match &persisted.snapshot {
            Some(s) => (s.meta.index, s.meta.term, s.meta.membership.clone()),
            None => (0, 0, persisted.initial_membership.clone()),
        };
        let fresh = persisted.snapshot.is_none()
            && persisted.entries.is_empty()
            && persisted.hard_state == HardState::default();
        let mut log = RaftLog::recover(
            snap_index,
            snap_term,
            persisted.entries,
            persisted.hard_state.commit,
        )
        .map_err(Error::Corrupt)?;
        if fresh && !persisted.initial_membership.voters.is_empty() {
            // Bootstrap (like etcd): every initial member writes the same committed entries of
            // term 0 describing the initial membership, so a server that joins later learns
            // it from the log like any other change.
            let m = &persisted.initial_membership;
            let changes = m
                .voters
                .iter()
                .map(|&v| (ConfChangeKind::AddVoter, v))
                .chain(m.learners.iter().map(|&l| (ConfChangeKind::AddLearner, l)));
            for (i, (kind, node)) in changes.enumerate() {
                log.append(Entry {
                    index: i as u64 + 1,
                    term: 0,
                    payload: Payload::Conf(ConfChange {
                        kind,
                        node,
                        context: Vec::new(),
                    }),
                });
            }
            log.commit = log.last_index();
        }
        let mut hard_state = persisted.hard_state;
        if hard_state.term < log.last_term() {
            // A torn write: entries (or a snapshot) of a later term reached the disk, the hard
            // state did not. The node was in that term, and cannot have voted in it: a vote
            // only goes out after the hard state carrying it is durable.
            hard_state.term = log.last_term();
            hard_state.vote = None;
        }
        let mut rng = SplitMix(config.seed ^ config.id.wrapping_mul(0xA24B_AED4_963E_E407));
        let randomized_timeout = config.election_tick + rng.next() % config.election_tick;
        let mut raft = Raft {
            rng,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            role: RoleState::Follower,
            log,
            membership: base_membership.clone(),
            membership_index: snap_index,
            base_membership,
            snapshot: persisted.snapshot,
            ticks: 0,
            election_elapsed: 0,
            randomized_timeout,
            leader_contact_elapsed: 0,
            wall_clock: 0,
            msgs: Vec::new(),
            install: None,
            compaction: None,
            last_hard_state: persisted.hard_state,
            reads_out: Vec::new(),
            acks_out: Vec::new(),
            own_proposals: BTreeMap::new(),
            want_snapshot_reported: None,
            outstanding: None,
            config,
        };
        raft.recompute_membership();
        Ok(raft)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One logical tick. The shell calls it at a fixed interval of its monotonic clock; all
    /// timeouts (election, heartbeat, CheckQuorum, lease) count ticks.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if matches!(self.role, RoleState::Leader(_)) {
            self.tick_leader();
            return;
        }
        self.election_elapsed += 1;
        self.leader_contact_elapsed += 1;
        if self.is_voter() && self.election_elapsed >= self.randomized_timeout {
            self.election_elapsed = 0;
            if self.config.pre_vote {
                self.campaign_pre();
            } else {
                self.campaign(false);
            }
        }
    }

    /// The node's wall-clock reading in Unix milliseconds. The correct core ignores it; only
    /// lease timing under [`Bug::LeaseIgnoresSkew`] uses it.
    pub fn set_wall_clock(&mut self, unix_millis: u64) {
        self.wall_clock = unix_millis;
    }

    /// Takes a message from a peer.
    pub fn step(&mut self, msg: Message) -> Result<(), Error> {
        if msg.to != self.config.id {
            return Err(Error::BadMessage(format!(
                "message for {} delivered to {}",
                msg.to, self.config.id
            )));
        }
        if msg.term > self.term {
            match msg.body {
                // PreVote never changes the receiver's term (dissertation §9.6).
                MessageBody::PreVote { .. } => {}
                MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::Vote {
                    transfer: false, ..
                } if self.config.check_quorum && self.in_leader_lease() => {
                    // Leader stickiness (dissertation §4.2.3): ignore without raising our term.
                    return Ok(());
                }
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(msg.term, Some(msg.from));
                }
                _ => self.become_follower(msg.term, None),
            }
        } else if msg.term < self.term {
            // A stale sender: tell it our term so it steps down (and a stale pre-candidate
            // learns it lost).
            match msg.body {
                MessageBody::PreVote { .. } => {
                    self.send(msg.from, MessageBody::PreVoteResponse { granted: false })
                }
                MessageBody::Vote { .. } => {
                    self.send(msg.from, MessageBody::VoteResponse { granted: false })
                }
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } => {
                    self.send(msg.from, MessageBody::HeartbeatResponse { round: 0 })
                }
                _ => {}
            }
            return Ok(());
        }

        match msg.body {
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => {
                let can_vote = msg.term > self.term
                    || self.vote == Some(msg.from)
                    || (self.vote.is_none() && self.leader.is_none());
                let granted = can_vote
                    && !self.in_leader_lease()
                    && self.log.is_up_to_date(last_log_term, last_log_index);
                let term = if granted { msg.term } else { self.term };
                self.msgs.push(Message {
                    from: self.config.id,
                    to: msg.from,
                    term,
                    body: MessageBody::PreVoteResponse { granted },
                });
            }
            MessageBody::Vote {
                last_log_index,
                last_log_term,
                transfer,
            } => {
                let can_vote =
                    self.vote == Some(msg.from) || (self.vote.is_none() && self.leader.is_none());
                let sticky = self.config.check_quorum
                    && !transfer
                    && self.vote != Some(msg.from)
                    && self.in_leader_lease();
                let granted =
                    can_vote && !sticky && self.log.is_up_to_date(last_log_term, last_log_index);
                if granted {
                    self.vote = Some(msg.from);
                    self.election_elapsed = 0;
                }
                self.send(msg.from, MessageBody::VoteResponse { granted });
            }
            MessageBody::PreVoteResponse { granted } => {
                self.on_pre_vote_response(msg.from, msg.term, granted)
            }
            MessageBody::VoteResponse { granted } => self.on_vote_response(msg.from, granted),
            MessageBody::Append {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            } => {
                if self.heard_from_leader(msg.from) {
                    self.on_append(msg.from, prev_log_index, prev_log_term, entries, commit);
                }
            }
            MessageBody::Heartbeat { commit, round } => {
                if self.heard_from_leader(msg.from) {
                    // The leader sends min(its commit, our match): we hold those entries.
                    let commit = commit.min(self.log.last_index());
                    if commit > self.log.commit {
                        self.log.commit = commit;
                    }
                    self.send(msg.from, MessageBody::HeartbeatResponse { round });
                }
            }
            MessageBody::InstallSnapshot { snapshot } => {
                if self.heard_from_leader(msg.from) {
                    self.on_snapshot(msg.from, snapshot);
                }
            }
            MessageBody::AppendResponse { result } => self.on_append_response(msg.from, result),
            MessageBody::HeartbeatResponse { round } => self.on_heartbeat_response(msg.from, round),
            MessageBody::TimeoutNow => {
                if self.is_voter() && !matches!(self.role, RoleState::Leader(_)) {
                    self.campaign(true);
                }
            }
        }
        Ok(())
    }

    /// Proposes an application command. Returns the index it was appended at; the command is
    /// acknowledged through [`Ready::acks`] once committed (it may instead be lost if this
    /// node loses leadership: then no ack ever comes).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<Index, NotLeader> {
        self.check_can_propose()?;
        let index = self.append_own(Payload::Command(data));
        if self.config.has_bug(Bug::EarlyAck) {
            self.acks_out.push(index);
        } else {
            self.own_proposals.insert(index, self.term);
        }
        self.broadcast_append();
        Ok(index)
    }

    /// Proposes a single-server membership change (dissertation §4.1). Refused while another
    /// change is uncommitted, before this leader committed an entry of its term, and for a
    /// voter promotion of a learner that has not caught up. The change takes effect on each
    /// node as soon as it is appended.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<Index, ProposeError> {
        self.check_can_propose()?;
        let concurrent = self.config.has_bug(Bug::ConfChangeConcurrent);
        if self.membership_index > self.log.commit && !concurrent {
            return Err(ProposeError::ChangePending);
        }
        if self.log.term(self.log.commit) != Some(self.term) && !concurrent {
            return Err(ProposeError::LeaderNotReady);
        }
        let m = &self.membership;
        match cc.kind {
            ConfChangeKind::AddLearner => {
                if cc.node == 0 || m.contains(cc.node) {
                    return Err(ProposeError::Invalid(format!(
                        "{} is already a member",
                        cc.node
                    )));
                }
            }
            ConfChangeKind::AddVoter => {
                if !m.learners.contains(&cc.node) {
                    return Err(ProposeError::Invalid(format!(
                        "{} is not a learner; add it as a learner first",
                        cc.node
                    )));
                }
                let matched = self.leader_state().and_then(|l| l.progress.get(&cc.node));
                // A learner that never acknowledged an entry (unreachable, or refused by the
                // transport's TLS) has not caught up, however short the log is.
                let caught_up = matched.is_some_and(|p| {
                    p.match_index > 0
                        && p.match_index + self.config.max_append_entries as u64
                            >= self.log.last_index()
                });
                if !caught_up {
                    return Err(ProposeError::LearnerBehind(cc.node));
                }
            }
            ConfChangeKind::Remove => {
                if !m.contains(cc.node) {
                    return Err(ProposeError::Invalid(format!(
                        "{} is not a member",
                        cc.node
                    )));
                }
                if m.voters.len() == 1 && m.voters.contains(&cc.node) {
                    return Err(ProposeError::Invalid("cannot remove the last voter".into()));
                }
            }
        }
        let index = self.append_own(Payload::Conf(cc));
        self.own_proposals.insert(index, self.term);
        self.broadcast_append();
        Ok(index)
    }

    /// Asks for a linearizable read point. The answer comes later as a [`ReadState`] in
    /// [`Ready::reads`] with the same `ctx`: serve the read once the state machine applied its
    /// index. Only the leader answers (dissertation §6.4); with [`ReadMode::Lease`] a leader
    /// holding a lease answers at once (§6.4.1).
    pub fn read_index(&mut self, ctx: u64) -> Result<(), NotLeader> {
        if self.config.has_bug(Bug::StaleRead) {
            self.reads_out.push(ReadState {
                ctx,
                index: self.log.commit,
            });
            return Ok(());
        }
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(NotLeader {
                leader: self.leader,
            });
        }
        if self.log.term(self.log.commit) != Some(self.term) {
            self.leader_state_mut().waiting_reads.push(ctx);
            return Ok(());
        }
        self.serve_read(ctx);
        Ok(())
    }

    /// Hands leadership to `to` (dissertation §3.10): stop taking proposals, bring `to` up to
    /// date, then send it TimeoutNow. Aborted after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), Error> {
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(NotLeader {
                leader: self.leader,
            }
            .into());
        }
        if to == self.config.id || !self.membership.voters.contains(&to) {
            return Err(Error::BadTransferTarget(to));
        }
        let last = self.log.last_index();
        let ticks = self.ticks;
        let leader = self.leader_state_mut();
        if leader.transferee == Some(to) {
            return Ok(());
        }
        leader.transferee = Some(to);
        leader.transfer_elapsed = 0;
        leader.reads.lease.transfer_started(ticks);
        let caught_up = leader
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == last);
        if caught_up {
            leader.timeout_now_sent = true;
            self.send(to, MessageBody::TimeoutNow);
        } else {
            self.send_append(to);
        }
        Ok(())
    }

    /// The application made a snapshot of its state machine at `applied_index` (which it has
    /// applied): the core drops the log up to there and emits [`Ready::compaction`] for storage.
    pub fn compact(&mut self, applied_index: Index, state_machine_data: Vec<u8>) {
        if applied_index <= self.log.snapshot_index() || applied_index > self.log.applied {
            return;
        }
        let Some(term) = self.log.term(applied_index) else {
            return;
        };
        let membership = self.membership_at(applied_index);
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: applied_index,
                term,
                membership: membership.clone(),
            },
            data: state_machine_data,
        };
        self.log.compact(applied_index);
        self.base_membership = membership;
        self.snapshot = Some(snapshot.clone());
        self.compaction = Some(snapshot);
    }

    /// This node's status.
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role(),
            term: self.term,
            leader: self.leader,
            commit: self.log.commit,
            applied: self.log.applied,
            last_index: self.log.last_index(),
            membership: self.membership.clone(),
        }
    }

    /// The role this node plays now.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Leader(_) => Role::Leader,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Follower if !self.is_voter() => Role::Learner,
            RoleState::Follower => Role::Follower,
        }
    }

    /// Whether [`ready`](Self::ready) has something, and the previous `Ready` was advanced.
    pub fn has_ready(&self) -> bool {
        if self.outstanding.is_some() {
            return false;
        }
        !self.msgs.is_empty()
            || self.install.is_some()
            || self.compaction.is_some()
            || self.log.last_index() >= self.unstable_from()
            || self.hard_state() != self.last_hard_state
            || self.log.commit.min(self.log.last_index()) > self.log.applied
            || !self.reads_out.is_empty()
            || !self.acks_out.is_empty()
            || self.wants_snapshot()
    }

    /// Takes the pending outputs. Handle them as [`Ready`] documents, then call
    /// [`advance`](Self::advance). Calling it again before `advance` returns an empty `Ready`.
    pub fn ready(&mut self) -> Ready {
        if self.outstanding.is_some() {
            return Ready::default();
        }
        let mut rd = Ready {
            snapshot: self.install.take(),
            compaction: self.compaction.take(),
            entries: self.log.take_unstable(),
            ..Ready::default()
        };
        let hs = self.hard_state();
        if hs != self.last_hard_state {
            self.last_hard_state = hs;
            rd.hard_state = Some(hs);
        }
        rd.messages = std::mem::take(&mut self.msgs);
        rd.committed = self.log.take_committed(self.log.last_index());
        for e in &rd.committed {
            if self.own_proposals.get(&e.index) == Some(&e.term) {
                rd.acks.push(e.index);
            }
        }
        let applied = self.log.applied;
        self.own_proposals.retain(|&i, _| i > applied);
        rd.acks.append(&mut self.acks_out);
        rd.reads = std::mem::take(&mut self.reads_out);
        if self.wants_snapshot() {
            rd.want_snapshot = true;
            self.want_snapshot_reported = Some(self.log.snapshot_index());
        }
        self.outstanding = Some(rd.entries.last().map(|e| (e.index, e.term)));
        rd
    }

    /// Tells the core that everything the last [`Ready`] asked to persist is durable (step 1
    /// of the durability rule). A leader then counts its own log toward commit quorums.
    pub fn advance(&mut self) {
        if let Some(Some((index, term))) = self.outstanding.take() {
            self.log.mark_persisted(index, term);
        }
        if matches!(self.role, RoleState::Leader(_)) {
            self.maybe_commit();
        }
    }

    // ---- accessors for tests and the simulator -------------------------------------------

    /// The entries after the snapshot, in memory (durable or not).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn log_entries(&self) -> &[Entry] {
        self.log.entries()
    }

    /// The last index covered by this node's snapshot.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn snapshot_index(&self) -> Index {
        self.log.snapshot_index()
    }

    /// The commit index.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn commit_index(&self) -> Index {
        self.log.commit
    }

    /// The current term.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn term(&self) -> Term {
        self.term
    }

    /// The term of the entry at `index`, if the log knows it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }

    // ---- internals -------------------------------------------------------------------------

    fn hard_state(&self) -> HardState {
        if self.config.has_bug(Bug::ForgetVote) {
            return HardState {
                term: 0,
                vote: None,
                commit: self.log.commit,
            };
        }
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    fn unstable_from(&self) -> Index {
        self.log.unstable_cursor()
    }

    fn wants_snapshot(&self) -> bool {
        self.config.snapshot_threshold > 0
            && self.log.applied >= self.log.snapshot_index() + self.config.snapshot_threshold
            && self.want_snapshot_reported != Some(self.log.snapshot_index())
    }

    fn is_voter(&self) -> bool {
        self.membership.voters.contains(&self.config.id)
    }

    /// Whether this node heard from a leader within the minimum election timeout (or booted
    /// that recently): it then refuses (pre-)votes (dissertation §4.2.3, §9.6).
    fn in_leader_lease(&self) -> bool {
        self.leader_contact_elapsed < self.config.election_tick
    }

    fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            RoleState::Leader(l) => Some(l),
            _ => None,
        }
    }

    fn leader_state_mut(&mut self) -> &mut LeaderState {
        match &mut self.role {
            RoleState::Leader(l) => l,
            _ => unreachable!("only called on a leader"),
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.config.id,
            to,
            term: self.term,
            body,
        });
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_timeout =
            self.config.election_tick + self.rng.next() % self.config.election_tick;
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = RoleState::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    /// A message from the leader of our term arrived.
    fn heard_from_leader(&mut self, from: NodeId) -> bool {
        if matches!(self.role, RoleState::Leader(_)) {
            // Two leaders in one term: impossible unless Election Safety broke. Ignore.
            return false;
        }
        if !matches!(self.role, RoleState::Follower) || self.leader != Some(from) {
            self.become_follower(self.term, Some(from));
        }
        self.election_elapsed = 0;
        self.leader_contact_elapsed = 0;
        true
    }

    /// Reference: §5.2, dissertation §9.6. Ask whether we could win, without raising terms.
    fn campaign_pre(&mut self) {
        self.leader = None;
        let mut votes = BTreeMap::new();
        votes.insert(self.config.id, true);
        self.role = RoleState::PreCandidate { votes };
        self.reset_election_timer();
        if self.tally() == Some(true) {
            self.campaign(false);
            return;
        }
        let (lli, llt) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self.other_voters();
        for v in voters {
            self.msgs.push(Message {
                from: self.config.id,
                to: v,
                term: self.term + 1,
                body: MessageBody::PreVote {
                    last_log_index: lli,
                    last_log_term: llt,
                },
            });
        }
    }

    /// Reference: §5.2. Start a real election.
    fn campaign(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.config.id);
        self.leader = None;
        let mut votes = BTreeMap::new();
        votes.insert(self.config.id, true);
        self.role = RoleState::Candidate { votes };
        self.reset_election_timer();
        if self.tally() == Some(true) {
            self.become_leader();
            return;
        }
        let (lli, llt) = (self.log.last_index(), self.log.last_term());
        for v in self.other_voters() {
            self.send(
                v,
                MessageBody::Vote {
                    last_log_index: lli,
                    last_log_term: llt,
                    transfer,
                },
            );
        }
    }

    fn other_voters(&self) -> Vec<NodeId> {
        self.membership
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.config.id)
            .collect()
    }

    /// `Some(true)` won, `Some(false)` lost, `None` undecided.
    fn tally(&self) -> Option<bool> {
        let votes = match &self.role {
            RoleState::PreCandidate { votes } | RoleState::Candidate { votes } => votes,
            _ => return None,
        };
        let quorum = self.membership.quorum();
        let voters = &self.membership.voters;
        let granted = votes
            .iter()
            .filter(|(v, g)| **g && voters.contains(v))
            .count();
        let rejected = votes
            .iter()
            .filter(|(v, g)| !**g && voters.contains(v))
            .count();
        if granted >= quorum {
            Some(true)
        } else if rejected > voters.len() - quorum {
            Some(false)
        } else {
            None
        }
    }

    fn on_pre_vote_response(&mut self, from: NodeId, term: Term, granted: bool) {
        let RoleState::PreCandidate { votes } = &mut self.role else {
            return;
        };
        if granted && term != self.term + 1 {
            return;
        }
        votes.insert(from, granted);
        match self.tally() {
            Some(true) => self.campaign(false),
            Some(false) => self.become_follower(self.term, None),
            None => {}
        }
    }

    fn on_vote_response(&mut self, from: NodeId, granted: bool) {
        let RoleState::Candidate { votes } = &mut self.role else {
            return;
        };
        votes.insert(from, granted);
        match self.tally() {
            Some(true) => self.become_leader(),
            Some(false) => self.become_follower(self.term, None),
            None => {}
        }
    }

    /// Reference: §5.2, §5.4.2 (the no-op), dissertation §6.4 (why reads need it).
    fn become_leader(&mut self) {
        let next = self.log.last_index() + 1;
        let progress = self
            .membership
            .members()
            .filter(|&m| m != self.config.id)
            .map(|m| (m, Progress::new(next)))
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            progress,
            heartbeat_elapsed: 0,
            check_quorum_elapsed: 0,
            reads: ReadQueue::default(),
            waiting_reads: Vec::new(),
            transferee: None,
            timeout_now_sent: false,
            transfer_elapsed: 0,
        }));
        self.leader = Some(self.config.id);
        self.leader_contact_elapsed = 0;
        self.append_own(Payload::Noop);
        self.broadcast_append();
        self.maybe_commit();
    }

    fn tick_leader(&mut self) {
        self.leader_contact_elapsed = 0;
        let (hb_tick, el_tick) = (self.config.heartbeat_tick, self.config.election_tick);
        let check_quorum = self.config.check_quorum;
        let id = self.config.id;
        let quorum = self.membership.quorum();
        let voters = self.membership.voters.clone();
        let ticks = self.ticks;
        let leader = self.leader_state_mut();
        leader.heartbeat_elapsed += 1;
        leader.check_quorum_elapsed += 1;
        let mut step_down = false;
        if leader.check_quorum_elapsed >= el_tick {
            leader.check_quorum_elapsed = 0;
            // Reference: dissertation §6.2 (CheckQuorum).
            let active = voters
                .iter()
                .filter(|&&v| v == id || leader.progress.get(&v).is_some_and(|p| p.recent_active))
                .count();
            for p in leader.progress.values_mut() {
                p.recent_active = false;
            }
            step_down = check_quorum && active < quorum;
        }
        if leader.transferee.is_some() {
            leader.transfer_elapsed += 1;
            if leader.transfer_elapsed >= el_tick {
                leader.transferee = None;
                leader.reads.lease.transfer_ended(ticks);
            }
        }
        let heartbeat = leader.heartbeat_elapsed >= hb_tick;
        if heartbeat {
            leader.heartbeat_elapsed = 0;
        }
        if step_down {
            self.become_follower(self.term, None);
            return;
        }
        if heartbeat {
            self.broadcast_heartbeat();
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let (ticks, wall) = (self.ticks, self.wall_clock);
        let commit = self.log.commit;
        let (term, id) = (self.term, self.config.id);
        let leader = self.leader_state_mut();
        let round = leader
            .reads
            .start_round(ticks, wall, leader.transferee.is_some());
        let mut out = Vec::new();
        for (&to, pr) in &leader.progress {
            out.push(Message {
                from: id,
                to,
                term,
                body: MessageBody::Heartbeat {
                    commit: commit.min(pr.match_index),
                    round,
                },
            });
        }
        self.msgs.extend(out);
        self.release_reads();
    }

    fn check_can_propose(&self) -> Result<(), NotLeader> {
        match &self.role {
            RoleState::Leader(l) => match l.transferee {
                Some(t) => Err(NotLeader { leader: Some(t) }),
                None => Ok(()),
            },
            _ => Err(NotLeader {
                leader: self.leader,
            }),
        }
    }

    /// Appends an entry of our term to our own log (leader only).
    fn append_own(&mut self, payload: Payload) -> Index {
        let index = self.log.last_index() + 1;
        let is_conf = matches!(payload, Payload::Conf(_));
        self.log.append(Entry {
            index,
            term: self.term,
            payload,
        });
        if is_conf {
            self.recompute_membership();
        }
        index
    }

    fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = match self.leader_state() {
            Some(l) => l.progress.keys().copied().collect(),
            None => return,
        };
        for p in peers {
            self.send_append(p);
        }
    }

    /// Reference: §5.3 (AppendEntries), §7 (InstallSnapshot when the entries are gone).
    /// Sends as many AppendEntries as the follower's pacing allows.
    fn send_append(&mut self, to: NodeId) {
        let (max_inflight, max_entries) =
            (self.config.max_inflight, self.config.max_append_entries);
        loop {
            let last = self.log.last_index();
            let commit = self.log.commit;
            let snapshot_index = self.log.snapshot_index();
            let Some(RoleState::Leader(leader)) = Some(&mut self.role) else {
                return;
            };
            let Some(pr) = leader.progress.get_mut(&to) else {
                return;
            };
            if !pr.can_send(max_inflight) {
                return;
            }
            if pr.next_index <= snapshot_index {
                let Some(snapshot) = self.snapshot.clone() else {
                    return;
                };
                pr.become_snapshot();
                self.send(to, MessageBody::InstallSnapshot { snapshot });
                return;
            }
            let prev = pr.next_index - 1;
            let entries = self.log.slice(pr.next_index, last, max_entries);
            if entries.is_empty() && pr.state == ProgressState::Replicate {
                return;
            }
            let prev_term = self
                .log
                .term(prev)
                .expect("prev is at or after the snapshot");
            match pr.state {
                ProgressState::Replicate => {
                    let sent_last = entries.last().expect("non-empty").index;
                    pr.next_index = sent_last + 1;
                    pr.inflight.push_back(sent_last);
                }
                _ => pr.probe_sent = true,
            }
            let probe = pr.state == ProgressState::Probe;
            self.send(
                to,
                MessageBody::Append {
                    prev_log_index: prev,
                    prev_log_term: prev_term,
                    entries,
                    commit,
                },
            );
            if probe {
                return;
            }
        }
    }

    /// Reference: §5.3 (the consistency check and conflict resolution).
    fn on_append(
        &mut self,
        from: NodeId,
        mut prev: Index,
        mut prev_term: Term,
        mut entries: Vec<Entry>,
        leader_commit: Index,
    ) {
        let commit = self.log.commit;
        if prev < commit {
            // Entries up to our commit index are known to match the leader's.
            let skip = (commit - prev) as usize;
            if entries.len() <= skip {
                self.send(from, MessageBody::AppendResponse { result: Ok(commit) });
                return;
            }
            prev_term = entries[skip - 1].term;
            entries.drain(..skip);
            prev = commit;
        }
        let matches = if self.config.has_bug(Bug::SkipPrevCheck) {
            prev <= self.log.last_index()
        } else {
            self.log.term(prev) == Some(prev_term)
        };
        if !matches {
            let hint = match self.log.term(prev) {
                _ if prev > self.log.last_index() => RejectHint {
                    rejected: prev,
                    conflict_term: None,
                    conflict_index: self.log.last_index() + 1,
                },
                Some(t) => RejectHint {
                    rejected: prev,
                    conflict_term: Some(t),
                    conflict_index: self.log.first_index_of_term(prev).max(commit + 1),
                },
                None => RejectHint {
                    rejected: prev,
                    conflict_term: None,
                    conflict_index: commit + 1,
                },
            };
            self.send(from, MessageBody::AppendResponse { result: Err(hint) });
            return;
        }
        let last_new = prev + entries.len() as u64;
        let mut membership_changed = false;
        let mut iter = entries.into_iter().peekable();
        while let Some(e) = iter.peek() {
            if self.log.term(e.index) == Some(e.term) {
                iter.next();
                continue;
            }
            if e.index <= self.log.last_index() {
                membership_changed |= self.log.entries()
                    [(e.index - self.log.first_index()) as usize..]
                    .iter()
                    .any(|x| matches!(x.payload, Payload::Conf(_)));
                self.log.truncate(e.index);
            }
            break;
        }
        for e in iter {
            membership_changed |= matches!(e.payload, Payload::Conf(_));
            self.log.append(e);
        }
        if membership_changed {
            self.recompute_membership();
        }
        let new_commit = leader_commit.min(last_new);
        if new_commit > self.log.commit {
            self.log.commit = new_commit;
        }
        self.send(
            from,
            MessageBody::AppendResponse {
                result: Ok(last_new),
            },
        );
    }

    /// Reference: §7 (InstallSnapshot).
    fn on_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        if meta.index <= self.log.commit {
            let commit = self.log.commit;
            self.send(from, MessageBody::AppendResponse { result: Ok(commit) });
            return;
        }
        let index = meta.index;
        if self.log.term(index) == Some(meta.term) {
            // We already have the entries: just learn that they are committed.
            self.log.commit = index;
        } else {
            self.log.restore(index, meta.term);
            self.base_membership = meta.membership.clone();
            self.recompute_membership();
            self.compaction = None;
            self.own_proposals.retain(|&i, _| i > index);
            self.snapshot = Some(snapshot.clone());
            self.install = Some(snapshot);
        }
        self.send(from, MessageBody::AppendResponse { result: Ok(index) });
    }

    fn on_append_response(&mut self, from: NodeId, result: Result<Index, RejectHint>) {
        let last = self.log.last_index();
        let Some(RoleState::Leader(leader)) = Some(&mut self.role) else {
            return;
        };
        let Some(pr) = leader.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        match result {
            Ok(index) => {
                let index = index.min(last);
                let advanced = pr.ack(index);
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Snapshot if pr.match_index + 1 >= pr.next_index => {
                        pr.become_replicate()
                    }
                    ProgressState::Snapshot => pr.become_probe(),
                    ProgressState::Replicate => {}
                }
                let transfer_ready = leader.transferee == Some(from) && pr.match_index == last;
                if transfer_ready {
                    leader.timeout_now_sent = true;
                }
                if advanced {
                    self.maybe_commit();
                }
                if transfer_ready {
                    self.send(from, MessageBody::TimeoutNow);
                }
            }
            Err(hint) => {
                let stale = match pr.state {
                    ProgressState::Replicate => hint.rejected <= pr.match_index,
                    ProgressState::Probe => hint.rejected + 1 != pr.next_index,
                    ProgressState::Snapshot => true,
                };
                if stale {
                    return;
                }
                // Fast back-off: skip a whole conflicting term at once.
                let mut next = match hint.conflict_term {
                    Some(t) => match self.log.last_index_of_term(t) {
                        Some(i) => i + 1,
                        None => hint.conflict_index,
                    },
                    None => hint.conflict_index,
                };
                let Some(RoleState::Leader(leader)) = Some(&mut self.role) else {
                    return;
                };
                let pr = leader.progress.get_mut(&from).expect("checked above");
                next = next.clamp(pr.match_index + 1, hint.rejected.max(pr.match_index + 1));
                pr.become_probe();
                pr.next_index = next;
            }
        }
        self.send_append(from);
    }

    fn on_heartbeat_response(&mut self, from: NodeId, round: u64) {
        let last = self.log.last_index();
        // A snapshot may be large: resend it only after about two election timeouts.
        let snapshot_patience = (2 * self.config.election_tick / self.config.heartbeat_tick).max(2);
        let Some(RoleState::Leader(leader)) = Some(&mut self.role) else {
            return;
        };
        let Some(pr) = leader.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.acked_round = pr.acked_round.max(round);
        // Retransmit after loss: a lagging follower whose pipeline made no progress over two
        // heartbeats is probed again from its match index.
        match pr.state {
            ProgressState::Probe => pr.probe_sent = false,
            ProgressState::Replicate if pr.match_index < last => {
                pr.stalls += 1;
                if pr.stalls >= 2 {
                    pr.become_probe();
                }
            }
            ProgressState::Snapshot => {
                pr.stalls += 1;
                if pr.stalls as u64 >= snapshot_patience {
                    pr.become_probe();
                }
            }
            ProgressState::Replicate => {}
        }
        self.release_reads();
        self.send_append(from);
    }

    /// Reference: §5.3, §5.4.2 (only entries of the current term are committed by counting
    /// replicas; earlier ones commit indirectly), Figure 8.
    fn maybe_commit(&mut self) {
        let Some(leader) = self.leader_state() else {
            return;
        };
        let voters = &self.membership.voters;
        if voters.is_empty() {
            return;
        }
        let mut matches: Vec<Index> = voters
            .iter()
            .map(|v| {
                if *v == self.config.id {
                    self.log.persisted()
                } else {
                    leader.progress.get(v).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[self.membership.quorum() - 1];
        if candidate <= self.log.commit {
            return;
        }
        let current_term = self.log.term(candidate) == Some(self.term);
        if !current_term {
            if !self.config.has_bug(Bug::CommitOldTerm) {
                return;
            }
            tracing::warn!(
                index = candidate,
                entry_term = ?self.log.term(candidate),
                term = self.term,
                "planted bug commit-old-term: committing an entry of an older term by counting replicas"
            );
        }
        self.log.commit = candidate;
        self.on_leader_commit();
    }

    fn on_leader_commit(&mut self) {
        // Dissertation §4.2.2: a leader removed from the configuration steps down once the
        // removal is committed (it managed the cluster until then without counting itself).
        if self.membership_index <= self.log.commit && !self.is_voter() {
            self.broadcast_commit();
            self.become_follower(self.term, None);
            return;
        }
        if self.log.term(self.log.commit) == Some(self.term) {
            let waiting = std::mem::take(&mut self.leader_state_mut().waiting_reads);
            for ctx in waiting {
                self.serve_read(ctx);
            }
        }
    }

    /// Tells every follower the commit index now (used before a removed leader leaves).
    fn broadcast_commit(&mut self) {
        let commit = self.log.commit;
        let Some(leader) = self.leader_state() else {
            return;
        };
        let out: Vec<(NodeId, Index)> = leader
            .progress
            .iter()
            .map(|(&to, pr)| (to, commit.min(pr.match_index)))
            .collect();
        for (to, c) in out {
            self.send(
                to,
                MessageBody::Heartbeat {
                    commit: c,
                    round: 0,
                },
            );
        }
    }

    /// Reference: dissertation §6.4 (ReadIndex), §6.4.1 (leases).
    fn serve_read(&mut self, ctx: u64) {
        let commit = self.log.commit;
        let (ticks, wall) = (self.ticks, self.wall_clock);
        let lease_mode = self.config.read_mode == ReadMode::Lease;
        let wall_lease = self.config.has_bug(Bug::LeaseIgnoresSkew);
        let single = self.membership.voters.len() == 1 && self.is_voter();
        let leader = self.leader_state_mut();
        let lease_ok = lease_mode
            && leader.transferee.is_none()
            && !leader.timeout_now_sent
            && if wall_lease {
                leader.reads.lease.valid_by_wall(wall)
            } else {
                leader.reads.lease.valid_by_ticks(ticks)
            };
        if lease_ok || single {
            self.reads_out.push(ReadState { ctx, index: commit });
            return;
        }
        let round = leader.reads.current_round() + 1;
        leader.reads.push(ctx, commit, round);
        self.broadcast_heartbeat();
    }

    /// Releases reads whose heartbeat round a majority acknowledged, and extends the lease.
    fn release_reads(&mut self) {
        let id = self.config.id;
        let quorum = self.membership.quorum();
        let voters = self.membership.voters.clone();
        let (el_tick, tick_ms) = (self.config.election_tick, self.config.tick_millis);
        let Some(RoleState::Leader(leader)) = Some(&mut self.role) else {
            return;
        };
        let current = leader.reads.current_round();
        let mut acked: Vec<u64> = voters
            .iter()
            .map(|v| {
                if *v == id {
                    current
                } else {
                    leader.progress.get(v).map_or(0, |p| p.acked_round)
                }
            })
            .collect();
        if acked.is_empty() {
            return;
        }
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = acked[quorum - 1];
        let released = leader.reads.confirm(confirmed, el_tick, tick_ms);
        self.reads_out.extend(released);
    }

    fn recompute_membership(&mut self) {
        let latest = self
            .log
            .entries()
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                Payload::Conf(cc) => Some((e.index, cc.clone())),
                _ => None,
            });
        match latest {
            Some((index, _)) => {
                self.membership = self.membership_at(index);
                self.membership_index = index;
            }
            None => {
                self.membership = self.base_membership.clone();
                self.membership_index = self.log.snapshot_index();
            }
        }
        // Keep the leader's progress map in step with the membership.
        let members: BTreeSet<NodeId> = self.membership.members().collect();
        let next = self.log.last_index() + 1;
        let id = self.config.id;
        if let RoleState::Leader(leader) = &mut self.role {
            leader.progress.retain(|m, _| members.contains(m));
            for m in members {
                if m != id {
                    leader
                        .progress
                        .entry(m)
                        .or_insert_with(|| Progress::new(next));
                }
            }
            if leader
                .transferee
                .is_some_and(|t| !self.membership.voters.contains(&t))
            {
                leader.transferee = None;
            }
        }
    }

    /// The membership as of `index`: the base membership with the log's changes up to there.
    fn membership_at(&self, index: Index) -> Membership {
        let mut m = self.base_membership.clone();
        for e in self.log.entries() {
            if e.index > index {
                break;
            }
            if let Payload::Conf(cc) = &e.payload {
                apply_change(&mut m, cc);
            }
        }
        m
    }
}

/// Applies one single-server change to a membership.
pub(crate) fn apply_change(m: &mut Membership, cc: &ConfChange) {
    match cc.kind {
        ConfChangeKind::AddLearner => {
            if !m.voters.contains(&cc.node) {
                m.learners.insert(cc.node);
            }
        }
        ConfChangeKind::AddVoter => {
            m.learners.remove(&cc.node);
            m.voters.insert(cc.node);
        }
        ConfChangeKind::Remove => {
            m.learners.remove(&cc.node);
            m.voters.remove(&cc.node);
        }
    }
}
