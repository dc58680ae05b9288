//! The Raft loop: one thread that owns the core, storage and the state machine.
//!
//! Each iteration waits for an input or the next tick, then drains every queued input, then
//! handles `Ready`s by the core's durability rule: persist (one write, one fsync, for all the
//! proposals gathered: group commit), send, apply, answer clients, advance. Client requests come
//! in as [`Event`]s carrying a oneshot sender for the [`Reply`].
//!
//! Messages a leader sends to followers (AppendEntries, heartbeats, snapshots) are sent before
//! the local fsync (dissertation §10.2.1: the leader may write its log in parallel with
//! replicating it; it counts itself toward a commit only after `advance`). Every other message
//! (votes, responses) waits for the fsync.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::sync::oneshot;

use super::ServerConfig;
use super::failpoint::{self, Action, Failpoint, FailpointHit, Failpoints};
use super::state::{Addrs, Command, Outcome, StateMachine};
use crate::raft::{
    Bug, ConfChange, ConfChangeKind, Entry, HardState, Membership, Message, MessageBody, Payload,
    Persisted, ProposeError, Raft, Ready, Role, Snapshot, SnapshotMeta,
};
use crate::storage::{Recovered, Storage, StoredEntry, StoredHardState, StoredSnapshot};
use crate::transport::Transport;

/// A node's status, as `GET /status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusView {
    /// Node id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `pre-candidate` or `learner`.
    pub role: &'static str,
    /// Current term.
    pub term: u64,
    /// Leader known in this term (null if none).
    pub leader: Option<u64>,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Voting members.
    pub members: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// Known addresses, `peer/client` by id.
    pub addrs: BTreeMap<u64, String>,
    /// Index of the newest durable snapshot.
    pub snapshot_index: u64,
    /// WAL counters since start: `fsyncs` and `entries` written (entries per fsync shows group
    /// commit at work).
    pub wal: WalStats,
}

/// WAL counters, part of [`StatusView`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct WalStats {
    /// `fdatasync` calls (0 under the planted `no-fsync` bug).
    pub fsyncs: u64,
    /// Entries written.
    pub entries: u64,
    /// Writes left unsynced by the planted `no-fsync` bug (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsynced: Option<u64>,
}

/// The answer to a client [`Event`].
#[derive(Debug)]
pub enum Reply {
    /// The command was applied (or the read served) with this outcome.
    Applied(Outcome),
    /// Nothing was proposed: this node is not the leader. `client` is the leader's client
    /// address, if known.
    NotLeader {
        /// Leader id, if known.
        leader: Option<u64>,
        /// Leader's client address, if known.
        client: Option<String>,
    },
    /// The proposal's log slot was taken by another entry: it did not commit there, but this
    /// node does not claim to know more (answered as indeterminate).
    Superseded,
    /// A membership change was refused before anything was appended.
    Refused {
        /// Whether retrying later may succeed (pending change, leader not ready, learner behind).
        retry: bool,
        /// Why.
        reason: String,
    },
    /// The node's status.
    Status(Box<StatusView>),
}

/// Inputs to the Raft loop.
pub enum Event {
    /// A message from a peer.
    Message(Message),
    /// Propose a client command.
    Propose(Command, oneshot::Sender<Reply>),
    /// A linearizable read of a key.
    Read(String, oneshot::Sender<Reply>),
    /// Propose a membership change.
    Conf(ConfChange, oneshot::Sender<Reply>),
    /// Report status.
    Status(oneshot::Sender<Reply>),
    /// Stop the loop.
    Stop,
}

/// The sending side of the loop's queue; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Event>,
    queued: Arc<AtomicUsize>,
}

/// The receiving side of the loop's queue.
pub struct Inbox {
    rx: mpsc::Receiver<Event>,
    queued: Arc<AtomicUsize>,
}

/// Peer messages queued for the loop beyond which new ones are dropped (Raft tolerates loss):
/// a stalled loop (slow disk) cannot make the queue grow without bound.
const MAX_QUEUED_MESSAGES: usize = 65_536;

/// Creates the loop's queue.
pub fn channel() -> (Handle, Inbox) {
    let (tx, rx) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Handle {
            tx,
            queued: queued.clone(),
        },
        Inbox { rx, queued },
    )
}

impl Inbox {
    fn took(&self, ev: &Event) {
        if matches!(ev, Event::Message(_)) {
            self.queued.fetch_sub(1, AtomicOrdering::Relaxed);
        }
    }
}

impl Handle {
    /// Delivers a peer message, or drops it if the loop is far behind.
    pub fn message(&self, m: Message) {
        if self.queued.fetch_add(1, AtomicOrdering::Relaxed) >= MAX_QUEUED_MESSAGES {
            self.queued.fetch_sub(1, AtomicOrdering::Relaxed);
            return;
        }
        if self.tx.send(Event::Message(m)).is_err() {
            self.queued.fetch_sub(1, AtomicOrdering::Relaxed);
        }
    }

    /// Sends a request and waits for its reply (None if the loop is gone).
    pub async fn call(&self, make: impl FnOnce(oneshot::Sender<Reply>) -> Event) -> Option<Reply> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// Asks the loop to stop.
    pub fn stop(&self) {
        let _ = self.tx.send(Event::Stop);
    }
}

struct PendingProposal {
    term: u64,
    reply: oneshot::Sender<Reply>,
    /// A write whose answer does not depend on the state (put, append): may be acked early
    /// under the planted `early-ack` bug.
    blind: bool,
}

/// The loop's state.
pub struct Node {
    config: ServerConfig,
    raft: Raft,
    storage: Storage,
    sm: StateMachine,
    applied: u64,
    transport: Arc<Transport<Message>>,
    proposals: BTreeMap<u64, PendingProposal>,
    /// Reads gathered this iteration, sent to the core as one `read_index` (one heartbeat round).
    new_reads: Vec<(String, oneshot::Sender<Reply>)>,
    reads_by_ctx: HashMap<u64, Vec<(String, oneshot::Sender<Reply>)>>,
    /// Read states from the core waiting for `applied >= index`, in arrival order.
    ready_reads: Vec<(u64, u64)>,
    next_ctx: u64,
    last_role: Option<(Role, u64, Option<u64>)>,
    early_ack: bool,
    wall_clock: bool,
    /// The planted bug `cas-stale-compare`: a node that is not the leader refuses a CAS whose
    /// `from` differs from its own applied value, instead of forwarding it.
    cas_stale_compare: bool,
    failpoints: Failpoints,
}

/// Entry payloads in the WAL: a tag byte, then the command bytes as they are (no JSON array of
/// numbers), or JSON for the rare membership change. Index and term are in the WAL record.
const ENTRY_NOOP: u8 = 0;
const ENTRY_COMMAND: u8 = 1;
const ENTRY_CONF: u8 = 2;

pub(crate) fn stored_entry(e: &Entry) -> StoredEntry {
    let data = match &e.payload {
        Payload::Noop => vec![ENTRY_NOOP],
        Payload::Command(cmd) => {
            let mut d = Vec::with_capacity(cmd.len() + 1);
            d.push(ENTRY_COMMAND);
            d.extend_from_slice(cmd);
            d
        }
        Payload::Conf(cc) => {
            let mut d = vec![ENTRY_CONF];
            serde_json::to_writer(&mut d, cc).expect("conf changes serialize");
            d
        }
    };
    StoredEntry {
        index: e.index,
        term: e.term,
        data,
    }
}

pub(crate) fn decode_entry(se: &StoredEntry) -> Result<Entry, String> {
    let payload = match se.data.split_first() {
        Some((&ENTRY_NOOP, [])) => Payload::Noop,
        Some((&ENTRY_COMMAND, cmd)) => Payload::Command(cmd.to_vec()),
        Some((&ENTRY_CONF, json)) => {
            Payload::Conf(serde_json::from_slice(json).map_err(|e| e.to_string())?)
        }
        _ => return Err("unknown entry encoding".into()),
    };
    Ok(Entry {
        index: se.index,
        term: se.term,
        payload,
    })
}

fn stored_snapshot(s: &Snapshot) -> StoredSnapshot {
    StoredSnapshot {
        index: s.meta.index,
        term: s.meta.term,
        meta: serde_json::to_vec(&s.meta).expect("meta serializes"),
        data: s.data.clone(),
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
        Role::Learner => "learner",
    }
}

/// Leader-to-follower messages, safe to send before the leader's own fsync.
fn stored_hard_state(h: HardState) -> StoredHardState {
    StoredHardState {
        term: h.term,
        vote: h.vote,
        commit: h.commit,
    }
}

fn leader_outbound(m: &Message) -> bool {
    matches!(
        m.body,
        MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. }
    )
}

impl Node {
    /// Recovers the core from storage and prepares the loop.
    ///
    /// # Errors
    /// Undecodable stored data, or a core that refuses the recovered state.
    pub fn boot(
        config: ServerConfig,
        raft_config: crate::raft::Config,
        storage: Storage,
        recovered: Recovered,
        transport: Arc<Transport<Message>>,
    ) -> anyhow::Result<Node> {
        let mut entries = Vec::with_capacity(recovered.entries.len());
        for se in &recovered.entries {
            let e = decode_entry(se).map_err(|e| {
                anyhow::anyhow!(
                    "undecodable log entry {} in {}: {e}",
                    se.index,
                    config.data_dir.display()
                )
            })?;
            entries.push(e);
        }
        let snapshot = match &recovered.snapshot {
            Some(s) => {
                let meta: SnapshotMeta =
                    serde_json::from_slice(&s.meta).context("undecodable snapshot metadata")?;
                Some(Snapshot {
                    meta,
                    data: s.data.clone(),
                })
            }
            None => None,
        };
        let hard_state = recovered
            .hard_state
            .map(|h| HardState {
                term: h.term,
                vote: h.vote,
                commit: h.commit,
            })
            .unwrap_or_default();
        let initial_membership = if config.join {
            Membership::default()
        } else {
            Membership::with_voters(config.peers.keys().copied())
        };
        let mut sm = StateMachine::default();
        let mut applied = 0;
        if let Some(s) = &snapshot {
            sm = StateMachine::restore(&s.data).context("undecodable state-machine snapshot")?;
            applied = s.meta.index;
        }
        for (id, a) in &config.peers {
            sm.addrs.insert(*id, a.clone());
        }
        tracing::info!(
            term = hard_state.term,
            vote = ?hard_state.vote,
            commit = hard_state.commit,
            snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.index),
            entries = entries.len(),
            "recovered storage"
        );
        let persisted = Persisted {
            hard_state,
            snapshot,
            entries,
            initial_membership,
        };
        let raft = Raft::new(raft_config, persisted)
            .context("the Raft core refused the recovered state")?;
        // Addresses of members added by (possibly uncommitted) changes in the recovered log.
        for e in raft_entries_conf(&recovered.entries) {
            if let Some(a) = addrs_of(&e) {
                sm.addrs.entry(e.node).or_insert(a);
            }
        }
        for (id, a) in &sm.addrs {
            if *id != config.id {
                transport.set_peer(*id, &a.peer);
            }
        }
        let early_ack = raft.config().has_bug(Bug::EarlyAck);
        let wall_clock = raft.config().has_bug(Bug::LeaseIgnoresSkew);
        let cas_stale_compare = raft.config().has_bug(Bug::CasStaleCompare);
        let failpoints = config.failpoints.clone();
        Ok(Node {
            failpoints,
            config,
            raft,
            storage,
            sm,
            applied,
            transport,
            proposals: BTreeMap::new(),
            new_reads: Vec::new(),
            reads_by_ctx: HashMap::new(),
            ready_reads: Vec::new(),
            next_ctx: 1,
            last_role: None,
            early_ack,
            wall_clock,
            cas_stale_compare,
        })
    }

    /// Runs until [`Event::Stop`] or a fatal storage error.
    ///
    /// # Errors
    /// A failed write or fsync: the node cannot know what is durable and must stop.
    pub fn run(mut self, events: Inbox) -> anyhow::Result<()> {
        let tick = self.config.tick();
        let mut next_tick = Instant::now() + tick;
        let mut last_cleanup = Instant::now();
        loop {
            let now = Instant::now();
            let wait = next_tick.saturating_duration_since(now);
            match events.rx.recv_timeout(wait) {
                Ok(Event::Stop) => return Ok(()),
                Ok(ev) => {
                    events.took(&ev);
                    self.handle(ev)
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            // Drain what is queued (bounded, so ticks are never starved), for group commit.
            for _ in 0..8192 {
                match events.rx.try_recv() {
                    Ok(Event::Stop) => return Ok(()),
                    Ok(ev) => {
                        events.took(&ev);
                        self.handle(ev)
                    }
                    Err(_) => break,
                }
            }
            self.flush_reads();
            let now = Instant::now();
            if now >= next_tick {
                if self.wall_clock {
                    let ms = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    self.raft.set_wall_clock(ms);
                }
                self.raft.tick();
                next_tick += tick;
                if next_tick < now {
                    next_tick = now + tick;
                }
            }
            while self.raft.has_ready() {
                let rd = self.raft.ready();
                self.handle_ready(rd)?;
                self.raft.advance();
            }
            self.log_role();
            if now.duration_since(last_cleanup) > Duration::from_secs(1) {
                last_cleanup = now;
                self.proposals.retain(|_, p| !p.reply.is_closed());
                self.reads_by_ctx.retain(|_, v| {
                    v.retain(|(_, r)| !r.is_closed());
                    !v.is_empty()
                });
            }
        }
    }

    fn not_leader(&self, leader: Option<u64>) -> Reply {
        let leader = leader.filter(|l| *l != self.config.id);
        Reply::NotLeader {
            leader,
            client: leader
                .and_then(|l| self.sm.addrs.get(&l))
                .map(|a| a.client.clone()),
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Message(m) => {
                if let Err(e) = self.raft.step(m) {
                    tracing::debug!(error = %e, "dropped a peer message");
                }
            }
            Event::Propose(cmd, reply) => {
                let blind = matches!(cmd, Command::Put { .. } | Command::Append { .. });
                let data = serde_json::to_vec(&cmd).expect("commands serialize");
                match self.raft.propose(data) {
                    Ok(index) => {
                        let term = self.raft.status().term;
                        self.proposals
                            .insert(index, PendingProposal { term, reply, blind });
                    }
                    Err(nl) => {
                        let _ = reply.send(
                            self.stale_cas_mismatch(&cmd)
                                .unwrap_or_else(|| self.not_leader(nl.leader)),
                        );
                    }
                }
            }
            Event::Read(key, reply) => self.new_reads.push((key, reply)),
            Event::Conf(cc, reply) => {
                self.propose_conf(cc, reply);
            }
            Event::Status(reply) => {
                let _ = reply.send(Reply::Status(Box::new(self.status())));
            }
            Event::Stop => {}
        }
    }

    /// The planted bug `cas-stale-compare`, on a node that could not propose (not the leader):
    /// a CAS whose `from` differs from this node's applied value of the key is answered
    /// `cas-mismatch` from that possibly stale value, a definite failure that may be false.
    /// `None` (forward as usual) without the bug, for other commands, and when the values match.
    fn stale_cas_mismatch(&self, cmd: &Command) -> Option<Reply> {
        let Command::Cas { key, from, .. } = cmd else {
            return None;
        };
        if !self.cas_stale_compare {
            return None;
        }
        let current = self.sm.get(key);
        (current != *from).then_some(Reply::Applied(Outcome::CasMismatch { current }))
    }

    fn propose_conf(&mut self, cc: ConfChange, reply: oneshot::Sender<Reply>) {
        // A new member must start from a snapshot: the initial membership is not in the log,
        // so a learner that replayed the log from index 1 would not know the original voters.
        // Compacting here makes the leader send it a snapshot (which carries the membership).
        if cc.kind == ConfChangeKind::AddLearner
            && self.raft.role() == Role::Leader
            && self.applied > self.storage.snapshot_index()
        {
            tracing::info!(
                index = self.applied,
                "compacting so that the new member starts from a snapshot"
            );
            self.raft.compact(self.applied, self.sm.snapshot());
        }
        match self.raft.propose_conf_change(cc.clone()) {
            Ok(index) if self.raft.config().has_bug(Bug::ConfChangeConcurrent) => {
                // The planted bug: in effect once appended, so answered as done at once.
                tracing::info!(kind = ?cc.kind, node = cc.node, index, "membership change appended and answered (bug conf-change-concurrent)");
                let _ = reply.send(Reply::Applied(Outcome::Done));
            }
            Ok(index) => {
                tracing::info!(kind = ?cc.kind, node = cc.node, index, "proposed membership change");
                let term = self.raft.status().term;
                self.proposals.insert(
                    index,
                    PendingProposal {
                        term,
                        reply,
                        blind: false,
                    },
                );
            }
            Err(ProposeError::NotLeader(nl)) => {
                let _ = reply.send(self.not_leader(nl.leader));
            }
            Err(e) => {
                let retry = matches!(
                    e,
                    ProposeError::ChangePending
                        | ProposeError::LeaderNotReady
                        | ProposeError::LearnerBehind(_)
                );
                let _ = reply.send(Reply::Refused {
                    retry,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn status(&self) -> StatusView {
        let s = self.raft.status();
        StatusView {
            id: s.id,
            role: role_name(s.role),
            term: s.term,
            leader: s.leader,
            commit: s.commit,
            applied: self.applied,
            last_index: s.last_index,
            members: s.membership.voters.iter().copied().collect(),
            learners: s.membership.learners.iter().copied().collect(),
            addrs: self
                .sm
                .addrs
                .iter()
                .map(|(i, a)| (*i, a.to_string()))
                .collect(),
            snapshot_index: self.storage.snapshot_index(),
            wal: WalStats {
                fsyncs: self.storage.fsyncs(),
                entries: self.storage.entries_written(),
                unsynced: (!self.storage.syncs()).then(|| self.storage.unsynced_writes()),
            },
        }
    }

    /// One `read_index` per iteration for all reads gathered: one heartbeat round for all.
    fn flush_reads(&mut self) {
        if self.new_reads.is_empty() {
            return;
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        match self.raft.read_index(ctx) {
            Ok(()) => {
                let reads = std::mem::take(&mut self.new_reads);
                self.reads_by_ctx.insert(ctx, reads);
            }
            Err(nl) => {
                for (_, reply) in self.new_reads.drain(..) {
                    let _ = reply.send(Reply::NotLeader {
                        leader: nl.leader,
                        client: nl
                            .leader
                            .and_then(|l| self.sm.addrs.get(&l))
                            .map(|a| a.client.clone()),
                    });
                }
            }
        }
    }

    /// A failpoint fired. To crash: stop taking input, give the transport
    /// [`failpoint::SETTLE`] to write what it was handed, and return the error that ends the
    /// loop (and the process). To sleep or pause: stall the loop, then go on.
    fn failpoint(&self, point: Failpoint, action: Action) -> anyhow::Result<()> {
        let term = self.raft.term();
        match action {
            Action::Crash => {
                tracing::warn!(failpoint = %point, term, "failpoint fired; stopping as a crash would");
                std::thread::sleep(failpoint::SETTLE);
                Err(FailpointHit(point).into())
            }
            Action::Sleep(d) => {
                tracing::warn!(failpoint = %point, term, ms = d.as_millis() as u64, "failpoint fired; stalling the Raft loop");
                std::thread::sleep(d);
                Ok(())
            }
            Action::Pause => {
                tracing::warn!(failpoint = %point, term, "failpoint fired; the Raft loop pauses until it is disarmed");
                let held = self.failpoints.pause(point, term);
                tracing::warn!(failpoint = %point, ms = held.as_millis() as u64, "pause over; the Raft loop goes on");
                Ok(())
            }
        }
    }

    /// Writes a Ready's entries and hard state to the WAL (one write, one fsync).
    fn persist_ready(&mut self, rd: &Ready) -> anyhow::Result<()> {
        let hs = rd.hard_state.map(stored_hard_state);
        let entries: Vec<StoredEntry> = rd.entries.iter().map(stored_entry).collect();
        self.storage
            .persist(hs, &entries)
            .context("writing the WAL")
    }

    fn handle_ready(&mut self, mut rd: Ready) -> anyhow::Result<()> {
        // Members added by a change take effect when appended: connect to them right away.
        for e in &rd.entries {
            if let Payload::Conf(cc) = &e.payload
                && let (ConfChangeKind::AddLearner, Some(a)) = (cc.kind, addrs_of(cc))
            {
                if cc.node != self.config.id {
                    self.transport.set_peer(cc.node, &a.peer);
                }
                self.sm.addrs.entry(cc.node).or_insert(a);
            }
        }
        let (early, late): (Vec<Message>, Vec<Message>) = std::mem::take(&mut rd.messages)
            .into_iter()
            .partition(leader_outbound);
        // Failpoints on a leader. Both persist this Ready first (its own new entries then exist
        // on this disk only); `leader-commit` also applies what it commits before firing.
        let mut persisted = false;
        let leader = self.raft.role() == Role::Leader;
        if leader
            && self.failpoints.armed(Failpoint::BeforeLeaderSend)
            && early.iter().any(
                |m| matches!(&m.body, MessageBody::Append { entries, .. } if !entries.is_empty()),
            )
            && let Some(action) = self.failpoints.fires(Failpoint::BeforeLeaderSend)
        {
            self.persist_ready(&rd)?;
            persisted = true;
            self.failpoint(Failpoint::BeforeLeaderSend, action)?;
        }
        if leader
            && !rd.committed.is_empty()
            && self.failpoints.armed(Failpoint::LeaderCommit)
            && let Some(action) = self.failpoints.fires(Failpoint::LeaderCommit)
        {
            if !persisted {
                self.persist_ready(&rd)?;
                persisted = true;
            }
            self.apply_committed(&rd.acks, std::mem::take(&mut rd.committed));
            self.failpoint(Failpoint::LeaderCommit, action)?;
        }
        for m in early {
            let to = m.to;
            self.transport.send(to, m);
        }
        // 1. Persist, then fsync.
        if let Some(s) = &rd.snapshot {
            self.storage
                .save_snapshot(&stored_snapshot(s), true)
                .context("saving a received snapshot")?;
            tracing::info!(
                index = s.meta.index,
                term = s.meta.term,
                bytes = s.data.len(),
                "installed snapshot from leader"
            );
        }
        if let Some(s) = &rd.compaction {
            self.storage
                .save_snapshot(&stored_snapshot(s), false)
                .context("saving a snapshot")?;
            tracing::info!(
                index = s.meta.index,
                term = s.meta.term,
                bytes = s.data.len(),
                "snapshot saved; log compacted"
            );
        }
        if !persisted {
            self.persist_ready(&rd)?;
        }
        if let Some(action) = self.failpoints.fires(Failpoint::AfterSave) {
            self.failpoint(Failpoint::AfterSave, action)?;
        }
        // 2. Send.
        let voted = self.failpoints.armed(Failpoint::AfterVote)
            && late
                .iter()
                .any(|m| matches!(m.body, MessageBody::VoteResponse { granted: true }));
        for m in late {
            let to = m.to;
            self.transport.send(to, m);
        }
        if voted && let Some(action) = self.failpoints.fires(Failpoint::AfterVote) {
            self.failpoint(Failpoint::AfterVote, action)?;
        }
        // 3. Apply.
        if let Some(s) = &rd.snapshot {
            let mut sm =
                StateMachine::restore(&s.data).context("undecodable snapshot from leader")?;
            for (id, a) in &self.sm.addrs {
                sm.addrs.entry(*id).or_insert_with(|| a.clone());
            }
            self.sm = sm;
            self.applied = s.meta.index;
            self.sync_peers();
        }
        self.apply_committed(&rd.acks, rd.committed);
        // 4. Reads, snapshots.
        for r in rd.reads {
            self.ready_reads.push((r.index, r.ctx));
        }
        self.serve_reads();
        if rd.want_snapshot && self.applied > 0 {
            self.raft.compact(self.applied, self.sm.snapshot());
        }
        Ok(())
    }

    /// Answers early acks (planted `early-ack`) and applies committed entries in order.
    fn apply_committed(&mut self, acks: &[u64], committed: Vec<Entry>) {
        if self.early_ack {
            for index in acks {
                if self.proposals.get(index).is_some_and(|p| p.blind) {
                    let p = self.proposals.remove(index).unwrap();
                    let _ = p.reply.send(Reply::Applied(Outcome::Done));
                }
            }
        }
        for e in committed {
            self.apply(e);
        }
    }

    fn apply(&mut self, e: Entry) {
        if e.index <= self.applied {
            return;
        }
        self.applied = e.index;
        let outcome = match e.payload {
            Payload::Noop => None,
            Payload::Command(data) => match serde_json::from_slice::<Command>(&data) {
                Ok(cmd) => Some(self.sm.apply(cmd)),
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "undecodable command in the log; skipped");
                    Some(Outcome::Invalid(format!("undecodable command: {err}")))
                }
            },
            Payload::Conf(cc) => {
                self.apply_conf(&cc);
                Some(Outcome::Done)
            }
        };
        if let Some(p) = self.proposals.remove(&e.index) {
            if p.term == e.term {
                let _ = p
                    .reply
                    .send(Reply::Applied(outcome.unwrap_or(Outcome::Done)));
            } else {
                let _ = p.reply.send(Reply::Superseded);
            }
        }
        // Proposals at lower indices that never showed up were overwritten by a new leader.
        while let Some((&i, _)) = self.proposals.first_key_value() {
            if i >= e.index {
                break;
            }
            let p = self.proposals.remove(&i).unwrap();
            let _ = p.reply.send(Reply::Superseded);
        }
    }

    fn apply_conf(&mut self, cc: &ConfChange) {
        tracing::info!(kind = ?cc.kind, node = cc.node, "membership change applied");
        match cc.kind {
            ConfChangeKind::AddLearner | ConfChangeKind::AddVoter => {
                if let Some(a) = addrs_of(cc) {
                    self.sm.addrs.insert(cc.node, a);
                }
                self.transport.set_removed(cc.node, false);
            }
            ConfChangeKind::Remove => {
                self.transport.set_removed(cc.node, true);
                if cc.node == self.config.id {
                    tracing::warn!("this node was removed from the cluster");
                }
            }
        }
        self.sync_peers();
    }

    /// Points the transport at every current member (and away from removed ones).
    fn sync_peers(&mut self) {
        let members: Vec<u64> = self.raft.status().membership.members().collect();
        for id in members {
            if id == self.config.id {
                continue;
            }
            if let Some(a) = self.sm.addrs.get(&id) {
                self.transport.set_peer(id, &a.peer);
            }
        }
    }

    fn serve_reads(&mut self) {
        if self.ready_reads.is_empty() {
            return;
        }
        let applied = self.applied;
        let sm = &self.sm;
        let by_ctx = &mut self.reads_by_ctx;
        self.ready_reads.retain(|&(index, ctx)| {
            if index > applied {
                return true;
            }
            for (key, reply) in by_ctx.remove(&ctx).unwrap_or_default() {
                let _ = reply.send(Reply::Applied(Outcome::Value(sm.get(&key))));
            }
            false
        });
    }

    fn log_role(&mut self) {
        let s = self.raft.status();
        let now = (s.role, s.term, s.leader);
        if self.last_role != Some(now) {
            match self.last_role {
                Some((role, _, _)) if role != s.role => {
                    tracing::info!(from = role_name(role), to = role_name(s.role), term = s.term, leader = ?s.leader, "role change")
                }
                Some((_, term, _)) if term != s.term => {
                    tracing::info!(role = role_name(s.role), from = term, term = s.term, leader = ?s.leader, "term change")
                }
                Some(_) => tracing::info!(term = s.term, leader = ?s.leader, "leader known"),
                None => {
                    tracing::info!(role = role_name(s.role), term = s.term, leader = ?s.leader, "initial role")
                }
            }
            if s.role == Role::Candidate {
                tracing::info!(term = s.term, "election started");
            }
            self.last_role = Some(now);
        }
    }
}

/// Addresses carried in a membership change's context (JSON of [`Addrs`]).
pub fn addrs_of(cc: &ConfChange) -> Option<Addrs> {
    serde_json::from_slice(&cc.context).ok()
}

fn raft_entries_conf(entries: &[StoredEntry]) -> Vec<ConfChange> {
    entries
        .iter()
        .filter_map(|se| decode_entry(se).ok())
        .filter_map(|e| match e.payload {
            Payload::Conf(cc) => Some(cc),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageOptions;
    use crate::transport::TransportOptions;

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn wal_entry_encoding_round_trips_every_payload() {
        let cc = ConfChange {
            kind: ConfChangeKind::AddLearner,
            node: 4,
            context: b"{}".to_vec(),
        };
        for payload in [
            Payload::Noop,
            Payload::Command(b"{\"op\":\"put\"}".to_vec()),
            Payload::Command(vec![]),
            Payload::Conf(cc),
        ] {
            let e = Entry {
                index: 7,
                term: 3,
                payload,
            };
            let se = stored_entry(&e);
            assert_eq!(decode_entry(&se).unwrap(), e);
        }
        let cmd = stored_entry(&Entry {
            index: 1,
            term: 1,
            payload: Payload::Command(vec![b'x'; 100]),
        });
        assert_eq!(cmd.data.len(), 101, "commands are stored raw");
        assert!(
            decode_entry(&StoredEntry {
                index: 1,
                term: 1,
                data: vec![9]
            })
            .is_err()
        );
    }

    /// Reference: Raft paper Figure 2 ("persistent state ... updated on stable storage before
    /// responding to RPCs"). The moment node 2 receives node 1's vote, node 1's WAL already
    /// holds that vote.
    #[test]
    fn vote_is_durable_before_the_vote_response_is_sent() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let data = tempfile::tempdir().unwrap();
        let snapshots = tempfile::tempdir().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let candidate = listener.local_addr().unwrap();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let (dir, copies) = (data.path().to_path_buf(), snapshots.path().to_path_buf());
        let counter = std::sync::atomic::AtomicU64::new(0);
        rt.spawn(crate::transport::serve(
            listener,
            TransportOptions::default(),
            None,
            move |m: Message| {
                // Snapshot node 1's data dir at the instant its answer arrives.
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let copy = copies.join(n.to_string());
                copy_dir(&dir, &copy);
                let _ = seen_tx.send((m, copy));
            },
        ));

        let mut peers = BTreeMap::new();
        peers.insert(1, Addrs::parse("127.0.0.1:1/127.0.0.1:2").unwrap());
        peers.insert(
            2,
            Addrs::parse(&format!("{candidate}/127.0.0.1:3")).unwrap(),
        );
        peers.insert(3, Addrs::parse("127.0.0.1:4/127.0.0.1:5").unwrap());
        let mut config = ServerConfig::new(1, peers, data.path().to_path_buf()).unwrap();
        config.election_timeout = Duration::from_secs(30); // node 1 must not campaign itself
        let raft_config = config.raft_config().unwrap();
        let (storage, recovered) = Storage::open(data.path(), StorageOptions::default()).unwrap();
        let transport = Arc::new(Transport::new(
            TransportOptions::default(),
            rt.handle().clone(),
        ));
        let node = Node::boot(config, raft_config, storage, recovered, transport).unwrap();
        let (handle, events) = channel();
        let thread = std::thread::spawn(move || node.run(events));

        handle.message(Message {
            from: 2,
            to: 1,
            term: 7,
            body: MessageBody::Vote {
                last_log_index: 1000,
                last_log_term: 1000,
                transfer: true, // bypasses leader stickiness at boot
            },
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let copy = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (m, copy) = seen_rx
                .recv_timeout(left)
                .expect("node 1 never answered the vote request");
            if let MessageBody::VoteResponse { granted } = m.body {
                assert!(granted, "{m:?}");
                assert_eq!(m.term, 7);
                break copy;
            }
        };
        handle.stop();
        thread.join().unwrap().unwrap();
        let (_, recovered) = Storage::open(&copy, StorageOptions::default()).unwrap();
        let hs = recovered.hard_state.expect("a hard state on disk");
        assert_eq!(
            (hs.term, hs.vote),
            (7, Some(2)),
            "the vote was sent before it was durable"
        );
    }
}
