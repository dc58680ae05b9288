//! The core's outputs ([`Ready`]), its boot input ([`Persisted`]), and its errors.

use super::{Entry, HardState, Index, Membership, Message, NodeId, Snapshot, Term};

/// What storage recovered at boot: everything earlier `Ready`s asked to persist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    /// The last persisted hard state (default for a fresh node).
    pub hard_state: HardState,
    /// The last persisted snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The log entries after the snapshot (or from index 1), contiguous and in order.
    pub entries: Vec<Entry>,
    /// The initial members of a new cluster (the same on every initial member), or an empty
    /// membership for a node that will join as a learner (it then waits for a leader to contact
    /// it and never campaigns). On a node's very first boot (no snapshot, no entries, default
    /// hard state) the core writes one committed entry of term 0 per initial member (a
    /// `Conf` entry, like etcd's bootstrap), so that servers joining later learn the initial
    /// membership from the log. Those entries appear in the first `Ready` like any other.
    pub initial_membership: Membership,
}

/// A read the application may now serve (dissertation §6.4): once its state machine has applied
/// `index`, a read of it is linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The context given to [`Raft::read_index`](super::Raft::read_index).
    pub ctx: u64,
    /// Serve the read once `applied >= index`.
    pub index: Index,
}

/// The pending outputs of the core, taken with [`Raft::ready`](super::Raft::ready).
///
/// # The durability rule
///
/// The shell handles a `Ready` in exactly this order:
///
/// 1. **Persist, then fsync**, before anything else leaves the node:
///    - `snapshot`, if set: store it and discard every stored entry (the log restarts after
///      `snapshot.meta.index`);
///    - `compaction`, if set: store it as the latest snapshot and discard stored entries with
///      index `<= compaction.meta.index`;
///    - `entries`, if non-empty: discard every stored entry with index `>= entries[0].index`,
///      then append `entries`;
///    - `hard_state`, if set: overwrite the stored hard state.
/// 2. **Send `messages`.** Vote grants, AppendEntries acknowledgements and a candidate's
///    requests for votes all depend on the state of step 1 being durable; sending any message
///    before the fsync of step 1 completes breaks Election Safety and commit durability.
/// 3. **Apply**: install `snapshot` into the state machine (if set), then apply `committed` in
///    order. `committed` only lists entries that are durable once step 1 is done.
/// 4. Serve each of `reads` once the state machine has applied `ReadState::index`; answer the
///    clients of `acks`; if `want_snapshot`, call [`Raft::compact`](super::Raft::compact) with
///    the state machine's state (now or later).
/// 5. Call [`Raft::advance`](super::Raft::advance): it tells the core that step 1 is durable,
///    which is what lets a leader count its own log toward a commit quorum.
///
/// Until `advance` is called, [`Raft::has_ready`](super::Raft::has_ready) returns false; the
/// core may keep taking inputs meanwhile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// A changed hard state to persist.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader to persist (replacing the whole log) and install.
    pub snapshot: Option<Snapshot>,
    /// A snapshot the application made with [`Raft::compact`](super::Raft::compact): persist it
    /// and drop the log prefix it covers. The state machine already has this state.
    pub compaction: Option<Snapshot>,
    /// Entries to write: drop stored entries at or after `entries[0].index`, then append.
    pub entries: Vec<Entry>,
    /// Messages to send once the above is durable.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Entry>,
    /// Reads that may be served once the state machine has applied their index.
    pub reads: Vec<ReadState>,
    /// Indices of this node's own proposals (commands and membership changes) that the
    /// application may acknowledge to clients: once committed, in the same `Ready` whose
    /// `committed` carries them (a proposal lost to a leader change is never acknowledged; its
    /// client should get an indeterminate outcome). Under the planted bug `early-ack`, as soon
    /// as the leader appended them.
    pub acks: Vec<Index>,
    /// `snapshot_threshold` entries were applied since the last snapshot: please call
    /// [`Raft::compact`](super::Raft::compact).
    pub want_snapshot: bool,
}

impl Ready {
    /// Whether there is anything to persist (step 1 of the durability rule).
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some()
            || self.snapshot.is_some()
            || self.compaction.is_some()
            || !self.entries.is_empty()
    }
}

/// Not the leader (or handing leadership over), with a hint where the leader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not the leader (leader hint: {leader:?})")]
pub struct NotLeader {
    /// The node this node believes is leader, if any.
    pub leader: Option<NodeId>,
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader.
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// A membership change is appended but not yet committed (one at a time, dissertation §4.1).
    #[error("a membership change is still pending")]
    ChangePending,
    /// The leader has not yet committed an entry of its term (dissertation §4.1, the bug fix of
    /// 2015: a new leader must not change membership before that).
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// The change does not fit the current membership (e.g. promoting a non-learner).
    #[error("invalid membership change: {0}")]
    Invalid(String),
    /// The learner to promote is still catching up.
    #[error("learner {0} has not caught up")]
    LearnerBehind(NodeId),
}

/// Errors of the core: bad configuration, bad boot state, or a request it cannot serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// The persisted state is inconsistent.
    #[error("corrupt persisted state: {0}")]
    Corrupt(String),
    /// This node is not the leader.
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// A leadership transfer to a node that is not a voter, or to itself.
    #[error("cannot transfer leadership to {0}")]
    BadTransferTarget(NodeId),
    /// A message not addressed to this node, or with an impossible body.
    #[error("bad message: {0}")]
    BadMessage(String),
}

/// The role a node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Running a PreVote round (dissertation §9.6).
    PreCandidate,
    /// Running an election (§5.2).
    Candidate,
    /// The leader of its term.
    Leader,
    /// Not a voter: receives the log, never campaigns.
    Learner,
}

/// A snapshot of a node's state, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of in `term`.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: Index,
    /// The index of the last entry handed out for applying.
    pub applied: Index,
    /// Its last log index.
    pub last_index: Index,
    /// The membership in effect on this node (the latest in its log).
    pub membership: Membership,
}
