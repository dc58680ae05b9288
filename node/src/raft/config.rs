//! Node configuration, cluster membership, and the planted bugs.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::NodeId;

/// How a leader serves [`Raft::read_index`](super::Raft::read_index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadMode {
    /// Dissertation §6.4: record the commit index, confirm leadership with a heartbeat round to
    /// a majority, then answer. Costs one round trip; safe under any clock behaviour.
    #[default]
    ReadIndex,
    /// Dissertation §6.4.1: while the leader holds a lease (a heartbeat round acknowledged by a
    /// majority less than `election_tick - 1` ticks ago), answer at once. Safe only with bounded
    /// tick-rate drift and with `check_quorum` (whose leader stickiness keeps followers from
    /// voting while they heard from a leader within the election timeout).
    Lease,
}

/// A deliberately planted bug, to prove that the harness and the simulator find real bugs.
/// With an empty set none of the bug code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Bug {
    /// Any node, follower or partitioned old leader, answers `read_index` at once with its local
    /// commit index. Breaks linearizability: a read can miss a write acknowledged before it.
    StaleRead,
    /// Term and vote are not persisted (`Ready::hard_state` carries term 0 and no vote), so a
    /// node that crashes and restarts can vote twice in one term. Breaks Election Safety (§5.2):
    /// two leaders in one term.
    ForgetVote,
    /// The leader advances its commit index by counting replicas of entries of earlier terms,
    /// the mistake of the paper's Figure 8. Breaks Leader Completeness and State Machine Safety
    /// (§5.4.2).
    CommitOldTerm,
    /// Followers accept AppendEntries without checking the term at `prev_log_index`. Breaks Log
    /// Matching (§5.3) and then State Machine Safety.
    SkipPrevCheck,
    /// `Ready::acks` lists a proposal as soon as the leader appended it, before it commits. An
    /// acknowledged write can then be lost when the leader fails (breaks durability of acks).
    EarlyAck,
    /// Lease reads are timed by the wall clock given to `set_wall_clock` instead of ticks, so a
    /// wall clock that jumps back or runs slow extends the lease past the election timeout.
    /// Breaks linearizability of lease reads (dissertation §6.4.1).
    LeaseIgnoresSkew,
    /// Storage never fsyncs: the WAL (entries and hard state), snapshots and directories are
    /// written to the kernel only, yet the node acknowledges and votes as if they were durable.
    /// The core ignores it (it is the server's storage that obeys it); a power failure then
    /// loses acknowledged entries and votes (breaks Figure 2's "updated on stable storage before
    /// responding to RPCs").
    NoFsync,
    /// The leader applies a transaction's micro-operations as separate log entries, one after
    /// another, instead of one entry: other commands interleave between them, and a failure
    /// half-way leaves the first half applied. Breaks the atomicity and isolation of `POST
    /// /txn` (the server obeys it, the core ignores it).
    TxnSplit,
    /// A node that is not the leader answers a compare-and-set itself, with `cas-mismatch`,
    /// when its own applied value of the key differs from the CAS's `from`, instead of
    /// forwarding it to the leader (it forwards only when its value matches). Its applied state
    /// may be stale, so a CAS can be refused although the register held `from` throughout the
    /// call: a definite failure that is a lie, which breaks linearizability for a checker that
    /// reads a `cas-mismatch` as an observation (the server's loop obeys it, the core ignores
    /// it).
    CasStaleCompare,
    /// The leader accepts a membership change while an earlier one is still uncommitted, and
    /// before it has committed an entry of its own term (dissertation §4.1 and Ongaro's 2015
    /// correction to single-server changes); and, as a change takes effect once appended, the
    /// server answers it as done then, not once committed, so the caller's next change comes
    /// at once. Two changes in flight make a configuration two servers away from the last
    /// committed one, whose majority can be disjoint from that one's: breaks Election Safety
    /// and State Machine Safety (the core refuses nothing; the server answers early).
    ConfChangeConcurrent,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 10] = [
        Bug::StaleRead,
        Bug::ForgetVote,
        Bug::CommitOldTerm,
        Bug::SkipPrevCheck,
        Bug::EarlyAck,
        Bug::LeaseIgnoresSkew,
        Bug::NoFsync,
        Bug::TxnSplit,
        Bug::CasStaleCompare,
        Bug::ConfChangeConcurrent,
    ];

    /// The kebab-case name used on command lines (`--bug stale-read`).
    pub fn name(self) -> &'static str {
        match self {
            Bug::StaleRead => "stale-read",
            Bug::ForgetVote => "forget-vote",
            Bug::CommitOldTerm => "commit-old-term",
            Bug::SkipPrevCheck => "skip-prev-check",
            Bug::EarlyAck => "early-ack",
            Bug::LeaseIgnoresSkew => "lease-ignores-skew",
            Bug::NoFsync => "no-fsync",
            Bug::TxnSplit => "txn-split",
            Bug::CasStaleCompare => "cas-stale-compare",
            Bug::ConfChangeConcurrent => "conf-change-concurrent",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for an unknown bug name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown bug {0:?} (known: stale-read, forget-vote, commit-old-term, skip-prev-check, early-ack, lease-ignores-skew, no-fsync, txn-split, cas-stale-compare, conf-change-concurrent)"
)]
pub struct UnknownBug(pub String);

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug(s.to_string()))
    }
}

/// The configuration of one Raft node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// This node's id; must not be 0.
    pub id: NodeId,
    /// The minimum election timeout in ticks. Each timeout is drawn uniformly from
    /// `[election_tick, 2 * election_tick)` (§5.2). Must exceed `heartbeat_tick`.
    pub election_tick: u64,
    /// A leader sends heartbeats every `heartbeat_tick` ticks.
    pub heartbeat_tick: u64,
    /// The most entries in one AppendEntries (batching).
    pub max_append_entries: usize,
    /// The most AppendEntries carrying entries in flight to one follower (pipelining).
    pub max_inflight: usize,
    /// Run a PreVote round before a real election (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority within an election timeout,
    /// and followers that heard from a leader within the minimum election timeout refuse votes
    /// (leader stickiness; dissertation §6.2 and §4.2.3).
    pub check_quorum: bool,
    /// How reads are served.
    pub read_mode: ReadMode,
    /// When this many entries have been applied past the last snapshot, `Ready::want_snapshot`
    /// asks the application to call [`Raft::compact`](super::Raft::compact). 0 disables.
    pub snapshot_threshold: u64,
    /// The length of a tick in milliseconds. Only used under [`Bug::LeaseIgnoresSkew`], to turn
    /// the lease into wall-clock time.
    pub tick_millis: u64,
    /// Planted bugs to enable. Empty in production.
    pub bugs: BTreeSet<Bug>,
    /// Seed for the randomized election timeouts.
    pub seed: u64,
}

impl Config {
    /// A configuration with the usual defaults: election timeout 10 ticks, heartbeat 2 ticks,
    /// 64 entries per message, 8 in flight, PreVote and CheckQuorum on, ReadIndex reads,
    /// snapshot every 1000 entries.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            max_append_entries: 64,
            max_inflight: 8,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::ReadIndex,
            snapshot_threshold: 1000,
            tick_millis: 100,
            bugs: BTreeSet::new(),
            seed: id,
        }
    }

    /// Whether a planted bug is on.
    pub fn has_bug(&self, bug: Bug) -> bool {
        !self.bugs.is_empty() && self.bugs.contains(&bug)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("node id 0 is reserved".into());
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return Err("need 0 < heartbeat_tick < election_tick".into());
        }
        if self.max_append_entries == 0 || self.max_inflight == 0 {
            return Err("max_append_entries and max_inflight must be positive".into());
        }
        if self.read_mode == ReadMode::Lease && !self.check_quorum {
            return Err("lease reads need check_quorum (leader stickiness)".into());
        }
        Ok(())
    }
}

/// Cluster membership: who votes and who only listens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Members that vote and count toward quorums.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but do not vote (dissertation §4.2.1).
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A membership of voters only.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member, voters then learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The number of votes that make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}
