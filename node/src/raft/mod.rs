//! The sans-IO Raft core.
//!
//! # The algorithm, briefly
//!
//! Raft (Ongaro and Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014;
//! Ongaro's dissertation "Consensus: Bridging Theory and Practice", 2014) keeps a replicated log
//! consistent across a cluster. Time is divided into *terms*; each term has at most one leader.
//!
//! - **Election (§5.2).** A follower that hears nothing from a leader for a randomized election
//!   timeout (here `[election_tick, 2 * election_tick)` ticks) becomes a candidate, raises its
//!   term, votes for itself and asks the others. Each node votes at most once per term (the vote
//!   is persisted before the answer is sent), so at most one candidate gets a majority: this is
//!   *Election Safety*.
//! - **PreVote (dissertation §9.6).** Before raising its term, a would-be candidate asks whether
//!   it could win. Nodes that heard from a leader within the minimum election timeout say no, so
//!   a node that was partitioned away and comes back does not depose a healthy leader.
//! - **CheckQuorum (dissertation §6.2).** A leader that has not heard from a majority within an
//!   election timeout steps down; followers refuse votes while they have a live leader (leader
//!   stickiness, §4.2.3). Together these are what make leases sound.
//! - **Replication (§5.3).** The leader appends client commands to its log and sends them in
//!   AppendEntries, each carrying the index and term of the entry before; a follower accepts only
//!   if its log has that entry (the consistency check), which gives *Log Matching*. Entries are
//!   batched (`max_append_entries`), pipelined (`max_inflight` messages in flight per follower),
//!   and a rejection carries a conflict term and index so the leader skips a term per round trip.
//! - **Safety (§5.4).** A voter refuses candidates whose log is less up-to-date than its own
//!   (§5.4.1), so every leader holds every committed entry (*Leader Completeness*). A leader
//!   commits an entry by counting replicas **only if the entry is of its own term** (§5.4.2);
//!   earlier entries commit indirectly. Figure 8 of the paper shows how counting replicas of
//!   older entries loses committed data. Each new leader appends a no-op so that it can commit
//!   something of its term at once.
//! - **Snapshots (§7).** The application snapshots its state machine; the core drops the log
//!   prefix and sends the snapshot (InstallSnapshot) to followers that need dropped entries.
//! - **Membership (§6; dissertation §4.1).** One server is added or removed at a time, so any
//!   majority of the old configuration overlaps any majority of the new one. A change takes
//!   effect on each node as soon as it is appended, a new change waits for the previous one to
//!   commit, and a new leader first commits an entry of its term. New servers join as learners
//!   (non-voting, §4.2.1) and are promoted once caught up. A leader that removes itself keeps
//!   leading, without counting itself, until the removal commits, then steps down.
//! - **Reads (dissertation §6.4).** ReadIndex: the leader, once it committed an entry of its
//!   term, records its commit index, confirms it is still leader with a heartbeat round to a
//!   majority, and then the read may be served at that index. Leases (§6.4.1): a round
//!   acknowledged by a majority lets the leader answer without a round trip for slightly less
//!   than an election timeout, counted in ticks (the monotonic clock).
//! - **Leadership transfer (dissertation §3.10).** The leader stops taking proposals, brings the
//!   target up to date and sends it TimeoutNow; the target starts an election at once, and its
//!   vote requests bypass leader stickiness.
//!
//! # Driving the core
//!
//! The core has no sockets, files, threads or clocks. The shell feeds it [`Raft::tick`],
//! [`Raft::step`], [`Raft::propose`], [`Raft::read_index`] and friends, then takes a [`Ready`]
//! and handles it by the durability rule documented there, and calls [`Raft::advance`].
//!
//! A minimal shell loop (storage and network are the shell's; this only shows the order):
//!
//! ```no_run
//! use raftkv::raft::{Config, Membership, Persisted, Raft, Ready};
//!
//! # fn persist(_: &Ready) {}
//! # fn send(_: raftkv::raft::Message) {}
//! # fn apply(_: &raftkv::raft::Entry) {}
//! let persisted = Persisted {
//!     initial_membership: Membership::with_voters([1, 2, 3]),
//!     ..Persisted::default()
//! };
//! let mut raft = Raft::new(Config::new(1), persisted).unwrap();
//! loop {
//!     // ... raft.tick() every tick, raft.step(msg) for each message received,
//!     // raft.propose(cmd) / raft.read_index(ctx) for clients ...
//!     raft.tick();
//!     if raft.has_ready() {
//!         let mut rd = raft.ready();
//!         persist(&rd); // snapshot, compaction, entries, hard state; then fsync
//!         for m in rd.messages.drain(..) {
//!             send(m); // only after the fsync
//!         }
//!         rd.committed.iter().for_each(apply);
//!         // serve rd.reads once applied, answer rd.acks, compact if rd.want_snapshot
//!         raft.advance();
//!     }
//!     # break;
//! }
//! ```
//!
//! # Modules
//!
//! - `message`: messages, entries, snapshots, hard state.
//! - `config`: node configuration, membership, planted bugs.
//! - `log`: the in-memory log with its commit/apply/durability cursors.
//! - `progress`: the leader's view of each follower (probe, replicate, snapshot).
//! - `read`: ReadIndex rounds and leases.
//! - `node`: the [`Raft`] state machine itself.
//! - `ready`: outputs, boot input, errors, status.
//! - `tests` and `sim` (tests only): scenario tests citing the paper, and the seeded
//!   deterministic simulator that checks Raft's invariants under faults.

mod config;
mod log;
mod message;
mod node;
mod progress;
mod read;
mod ready;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use config::{Bug, Config, Membership, ReadMode, UnknownBug};
pub use message::{
    ConfChange, ConfChangeKind, Entry, HardState, Message, MessageBody, Payload, RejectHint,
    Snapshot, SnapshotMeta,
};
pub use node::Raft;
pub use ready::{Error, NotLeader, Persisted, ProposeError, ReadState, Ready, Role, Status};

/// A node's identity; 0 is reserved.
pub type NodeId = u64;
/// A Raft term.
pub type Term = u64;
/// A log index; the first entry has index 1.
pub type Index = u64;
