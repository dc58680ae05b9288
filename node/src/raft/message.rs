//! What Raft nodes say to each other, and the log entries and snapshots they carry.
//!
//! Everything here is plain data with serde derives: the transport encodes [`Message`] as it
//! likes, storage encodes [`Entry`], [`HardState`] and [`Snapshot`]. Nothing here does I/O.

use serde::{Deserialize, Serialize};

use super::{Index, Membership, NodeId, Term};

/// The state that must survive a crash (Raft paper Figure 2, "persistent state on all servers"),
/// minus the log itself, which storage keeps as entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index known to be committed. Persisting it is an optimisation (it saves
    /// re-learning it from the leader after a restart); it is never needed for safety.
    pub commit: Index,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub index: Index,
    /// The term of the leader that created the entry.
    pub term: Term,
    /// What the entry carries.
    pub payload: Payload,
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader (§5.4.2, dissertation §6.4): committing it commits every
    /// earlier entry, and tells the leader its commit index is current.
    Noop,
    /// An application command; opaque bytes to the core.
    Command(Vec<u8>),
    /// A single-server membership change (dissertation §4.1). It takes effect on every node as
    /// soon as it is appended to that node's log, not when it commits.
    Conf(ConfChange),
}

/// The kind of a single-server membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfChangeKind {
    /// Add a non-voting member that receives the log (dissertation §4.2.1) and catches up.
    AddLearner,
    /// Promote an existing learner to voter.
    AddVoter,
    /// Remove a voter or learner.
    Remove,
}

/// A single-server membership change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    /// What to do.
    pub kind: ConfChangeKind,
    /// To whom.
    pub node: NodeId,
    /// Opaque to the core; e.g. the new node's address, for the transport.
    pub context: Vec<u8>,
}

/// Describes a snapshot: the last log entry it covers, and the membership at that entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The index of the last entry the snapshot covers.
    pub index: Index,
    /// The term of that entry.
    pub term: Term,
    /// The membership as of `index`.
    pub membership: Membership,
}

/// A state-machine snapshot: the application's state after applying every entry up to
/// `meta.index`. The data is opaque to the core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The application's serialized state.
    pub data: Vec<u8>,
}

/// A message between two Raft nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term. For `PreVote` it is the term the sender *would* campaign in; for a
    /// granted `PreVoteResponse` it echoes that term.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// PreVote (dissertation §9.6): "would you vote for me in `term`?". Changes no state at the
    /// receiver, so a node that cannot win does not disrupt the cluster by raising terms.
    PreVote {
        /// The candidate's last log index.
        last_log_index: Index,
        /// The candidate's last log term.
        last_log_term: Term,
    },
    /// The answer to a `PreVote`.
    PreVoteResponse {
        /// Whether the vote would be granted.
        granted: bool,
    },
    /// RequestVote (§5.2).
    Vote {
        /// The candidate's last log index.
        last_log_index: Index,
        /// The candidate's last log term.
        last_log_term: Term,
        /// Set when the election was started by a leadership transfer (TimeoutNow, dissertation
        /// §3.10): voters then ignore leader stickiness, because the leader asked for it.
        transfer: bool,
    },
    /// The answer to a `Vote`.
    VoteResponse {
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries (§5.3). Several may be in flight to one follower (pipelining).
    Append {
        /// The index of the entry just before `entries`.
        prev_log_index: Index,
        /// Its term; the follower checks it (the consistency check of §5.3).
        prev_log_term: Term,
        /// Entries to append; may be empty (a probe).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// The answer to an `Append` or an `InstallSnapshot`.
    AppendResponse {
        /// `Ok(match_index)`: the follower's log matches the leader's up to `match_index`.
        /// `Err(hint)`: the consistency check failed; the hint speeds up back-off.
        result: Result<Index, RejectHint>,
    },
    /// An empty AppendEntries that carries the commit index and a read round number. Also
    /// used to confirm leadership for ReadIndex (dissertation §6.4) and to extend leases.
    Heartbeat {
        /// `min(leader commit, follower match)`: never more than the follower is known to hold.
        commit: Index,
        /// The leader's heartbeat round; echoed in the response.
        round: u64,
    },
    /// The answer to a `Heartbeat`.
    HeartbeatResponse {
        /// The round being acknowledged.
        round: u64,
    },
    /// InstallSnapshot (§7), in one message.
    InstallSnapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// TimeoutNow (dissertation §3.10): "start an election now", sent by a leader handing over.
    TimeoutNow,
}

/// Why a follower rejected an `Append`, and where the leader should look next (the fast
/// back-off of §5.3, "if desired, the protocol can be optimized...").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectHint {
    /// The `prev_log_index` of the rejected `Append`: lets the leader drop stale rejections.
    pub rejected: Index,
    /// The term of the follower's entry at `rejected`, if it has one (a conflict), or `None` if
    /// its log is too short.
    pub conflict_term: Option<Term>,
    /// With a conflict term: the follower's first index of that term. Without: the follower's
    /// last index + 1.
    pub conflict_index: Index,
}

impl Entry {
    /// A short human description, for logs and test failures.
    pub fn describe(&self) -> String {
        let payload = match &self.payload {
            Payload::Noop => "noop".to_string(),
            Payload::Command(data) => format!("cmd:{}", String::from_utf8_lossy(data)),
            Payload::Conf(cc) => format!("conf:{:?}:{}", cc.kind, cc.node),
        };
        format!("{}@{}:{}", self.index, self.term, payload)
    }
}
