//! Unit and scenario tests of the core, each citing the part of the Raft paper (§) or of
//! Ongaro's dissertation it checks. Scenario tests drive a calm simulated cluster
//! ([`sim::Cluster`] without faults); unit tests drive single nodes with hand-made messages.

use std::collections::BTreeSet;

use super::sim::{Cluster, SimConfig};
use super::*;

// ---- helpers ------------------------------------------------------------------------------

fn config(id: NodeId) -> Config {
    Config {
        pre_vote: false,
        check_quorum: false,
        ..Config::new(id)
    }
}

fn boot(cfg: Config, voters: &[NodeId]) -> Raft {
    let persisted = Persisted {
        initial_membership: Membership::with_voters(voters.iter().copied()),
        ..Persisted::default()
    };
    Raft::new(cfg, persisted).expect("valid")
}

/// Takes a Ready and acknowledges it as durable.
fn drain(r: &mut Raft) -> Ready {
    let rd = r.ready();
    r.advance();
    rd
}

fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

/// Ticks `r` until it campaigns, then grants it every other voter's vote.
fn elect(r: &mut Raft, voters: &[NodeId]) {
    for _ in 0..100 {
        r.tick();
        if r.role() == Role::Candidate {
            break;
        }
    }
    assert_eq!(r.role(), Role::Candidate);
    drain(r);
    let (term, id) = (r.term(), r.id());
    for &v in voters.iter().filter(|&&v| v != id) {
        r.step(msg(
            v,
            r.id(),
            term,
            MessageBody::VoteResponse { granted: true },
        ))
        .unwrap();
    }
    assert_eq!(r.role(), Role::Leader);
}

fn calm(nodes: u64) -> Cluster {
    Cluster::new(7, SimConfig::calm(nodes))
}

fn wait_for_leader(c: &mut Cluster) -> NodeId {
    for _ in 0..200 {
        c.tick_n(1).unwrap();
        if let Some(l) = c.leader() {
            return l;
        }
    }
    panic!("no leader elected");
}

/// Ticks until `index` is committed on `id` (or panics).
fn wait_commit(c: &mut Cluster, id: NodeId, index: Index) {
    for _ in 0..200 {
        if c.raft(id).is_some_and(|r| r.status().commit >= index) {
            return;
        }
        c.tick_n(1).unwrap();
    }
    panic!("index {index} never committed on {id}");
}

// ---- election ------------------------------------------------------------------------------

// Reference: §5.2 (election), §5.4.2 (the new leader's no-op).
#[test]
fn a_leader_is_elected_and_commits_a_noop_of_its_term() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    let r = c.raft(l).unwrap();
    let last = r.status().last_index;
    assert_eq!(r.log_entries().last().unwrap().payload, Payload::Noop);
    wait_commit(&mut c, l, last);
    for id in 1..=3 {
        assert_eq!(c.raft(id).unwrap().status().leader, Some(l));
    }
}

// Reference: §5.2 (each server votes for at most one candidate per term, persisted first).
#[test]
fn a_vote_is_persisted_before_it_is_sent_and_survives_a_restart() {
    let mut r = boot(config(1), &[1, 2, 3]);
    drain(&mut r);
    r.step(msg(
        2,
        1,
        5,
        MessageBody::Vote {
            last_log_index: 3,
            last_log_term: 0,
            transfer: false,
        },
    ))
    .unwrap();
    let rd = r.ready();
    let hs = rd.hard_state.expect("the vote must be persisted");
    assert_eq!((hs.term, hs.vote), (5, Some(2)));
    assert!(
        rd.messages
            .iter()
            .any(|m| m.body == MessageBody::VoteResponse { granted: true })
    );
    // Restart from what storage holds: the vote is remembered.
    let mut r = Raft::new(
        config(1),
        Persisted {
            hard_state: hs,
            entries: rd.entries.clone(),
            initial_membership: Membership::with_voters([1, 2, 3]),
            ..Persisted::default()
        },
    )
    .unwrap();
    r.step(msg(
        3,
        1,
        5,
        MessageBody::Vote {
            last_log_index: 3,
            last_log_term: 0,
            transfer: false,
        },
    ))
    .unwrap();
    let rd = r.ready();
    assert!(
        rd.messages
            .iter()
            .any(|m| m.body == MessageBody::VoteResponse { granted: false })
    );
}

// Reference: §5.2; the planted bug `forget-vote` drops term and vote from the hard state.
#[test]
fn forget_vote_bug_does_not_persist_the_vote() {
    let mut cfg = config(1);
    cfg.bugs.insert(Bug::ForgetVote);
    let mut r = boot(cfg, &[1, 2, 3]);
    drain(&mut r);
    r.step(msg(
        2,
        1,
        5,
        MessageBody::Vote {
            last_log_index: 3,
            last_log_term: 0,
            transfer: false,
        },
    ))
    .unwrap();
    let rd = r.ready();
    assert!(
        rd.messages
            .iter()
            .any(|m| m.body == MessageBody::VoteResponse { granted: true })
    );
    assert!(
        rd.hard_state
            .is_none_or(|h| h.vote.is_none() && h.term == 0),
        "the bug must not persist the vote: {:?}",
        rd.hard_state
    );
}

// Reference: §5.4.1 (the election restriction).
#[test]
fn vote_is_refused_to_a_candidate_with_a_less_up_to_date_log() {
    let mut r = boot(config(1), &[1, 2, 3]);
    drain(&mut r);
    // Our last entry is 3@0 (bootstrap). A candidate with only 2 entries of term 0 loses.
    r.step(msg(
        2,
        1,
        1,
        MessageBody::Vote {
            last_log_index: 2,
            last_log_term: 0,
            transfer: false,
        },
    ))
    .unwrap();
    let rd = drain(&mut r);
    assert!(
        rd.messages
            .iter()
            .any(|m| m.body == MessageBody::VoteResponse { granted: false })
    );
    // A candidate whose last term is higher wins even with a shorter log.
    r.step(msg(
        3,
        1,
        2,
        MessageBody::Vote {
            last_log_index: 1,
            last_log_term: 1,
            transfer: false,
        },
    ))
    .unwrap();
    let rd = drain(&mut r);
    assert!(
        rd.messages
            .iter()
            .any(|m| m.body == MessageBody::VoteResponse { granted: true })
    );
}

// Reference: dissertation §9.6 (PreVote), §4.2.3 (disruptive servers).
#[test]
fn rejoining_partitioned_node_does_not_depose_leader_with_prevote() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    let term = c.raft(l).unwrap().term();
    let other = (1..=3).find(|&i| i != l).unwrap();
    c.isolate(other);
    c.tick_n(100).unwrap();
    // PreVote kept the isolated node from raising its term while it could not win.
    assert_eq!(c.raft(other).unwrap().term(), term);
    c.heal_network();
    c.tick_n(50).unwrap();
    assert_eq!(c.leader(), Some(l));
    assert_eq!(
        c.raft(l).unwrap().term(),
        term,
        "the leader was not deposed"
    );
}

// Reference: §5.2 (without PreVote a rejoining node's higher term forces an election).
#[test]
fn without_prevote_a_rejoining_node_forces_a_new_term() {
    let mut cfg = SimConfig::calm(3);
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    let mut c = Cluster::new(7, cfg);
    let l = wait_for_leader(&mut c);
    let term = c.raft(l).unwrap().term();
    let other = (1..=3).find(|&i| i != l).unwrap();
    c.isolate(other);
    c.tick_n(100).unwrap();
    assert!(
        c.raft(other).unwrap().term() > term,
        "the isolated node campaigned"
    );
    c.heal_network();
    c.tick_n(60).unwrap();
    let l2 = c.leader().expect("a leader after the heal");
    assert!(c.raft(l2).unwrap().term() > term);
}

// Reference: dissertation §6.2 (CheckQuorum).
#[test]
fn leader_that_lost_its_majority_steps_down_with_check_quorum() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    c.isolate(l);
    c.tick_n(25).unwrap();
    assert_ne!(c.raft(l).unwrap().role(), Role::Leader);
    // The majority side elected a new leader meanwhile.
    let l2 = c.leader().expect("majority elects a leader");
    assert_ne!(l2, l);
}

// Reference: dissertation §6.2 (CheckQuorum counts responses, so a one-way partition in which
// the leader still reaches its followers but never hears back also deposes it).
#[test]
fn leader_that_cannot_hear_its_followers_steps_down() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    for f in (1..=3).filter(|&i| i != l) {
        c.block(f, l);
    }
    c.tick_n(25).unwrap();
    assert_ne!(c.raft(l).unwrap().role(), Role::Leader);
}

// ---- replication -----------------------------------------------------------------------------

// Reference: §5.3 (replication), §5.4.2 (commit).
#[test]
fn proposals_replicate_and_commit_on_every_node() {
    let mut c = calm(5);
    let l = wait_for_leader(&mut c);
    let mut last = 0;
    for _ in 0..20 {
        last = c.propose(l).unwrap();
    }
    c.tick_n(10).unwrap();
    for id in 1..=5 {
        let s = c.raft(id).unwrap().status();
        assert!(s.commit >= last && s.applied >= last, "node {id}: {s:?}");
    }
    let acked: BTreeSet<Index> = c.acked.iter().map(|&(_, i)| i).collect();
    assert!(
        acked.contains(&last),
        "the leader acked its proposal at commit"
    );
}

// Reference: §5.3 (the leader may send several AppendEntries without waiting: pipelining,
// bounded by max_inflight; batching bounded by max_append_entries).
#[test]
fn pipelining_is_bounded_by_max_inflight_and_batches_by_max_append_entries() {
    let mut cfg = config(1);
    cfg.max_inflight = 2;
    cfg.max_append_entries = 3;
    let mut r = boot(cfg, &[1, 2]);
    elect(&mut r, &[1, 2]);
    drain(&mut r);
    // Follower 2 matches the noop: replicate state.
    let last = r.status().last_index;
    let term = r.term();
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(last) },
    ))
    .unwrap();
    drain(&mut r);
    for i in 0..10 {
        r.propose(vec![i]).unwrap();
    }
    let rd = drain(&mut r);
    let appends: Vec<usize> = rd
        .messages
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::Append { entries, .. } if !entries.is_empty() => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert!(
        appends.len() <= 2,
        "at most max_inflight in flight: {appends:?}"
    );
    assert!(
        appends.iter().all(|&n| n <= 3),
        "batches of at most 3: {appends:?}"
    );
}

// Reference: §5.3 ("if followers crash or run slowly, or if network packets are lost, the
// leader retries AppendEntries indefinitely").
#[test]
fn lost_append_is_retransmitted_after_two_stalled_heartbeats() {
    let mut r = boot(config(1), &[1, 2]);
    elect(&mut r, &[1, 2]);
    drain(&mut r);
    let term = r.term();
    let last = r.status().last_index;
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(last) },
    ))
    .unwrap();
    drain(&mut r);
    let idx = r.propose(b"lost".to_vec()).unwrap();
    let rd = drain(&mut r);
    assert!(
        rd.messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::Append { .. }))
    );
    // That Append is lost. The first heartbeat answer is patience; the second resends.
    let resent = |rd: &Ready| {
        rd.messages.iter().any(|m| match &m.body {
            MessageBody::Append { entries, .. } => entries.iter().any(|e| e.index == idx),
            _ => false,
        })
    };
    r.step(msg(2, 1, term, MessageBody::HeartbeatResponse { round: 1 }))
        .unwrap();
    assert!(!resent(&drain(&mut r)));
    r.step(msg(2, 1, term, MessageBody::HeartbeatResponse { round: 2 }))
        .unwrap();
    assert!(resent(&drain(&mut r)));
}

// Reference: §5.2 and the durability rule: a torn write may leave entries of a later term on
// disk without the hard state; the node resumes in that term without a vote.
#[test]
fn boot_after_a_torn_write_resumes_in_the_last_log_term_without_a_vote() {
    let mut entries = boot(config(1), &[1, 2, 3]).log_entries().to_vec();
    entries.push(Entry {
        index: 4,
        term: 6,
        payload: Payload::Noop,
    });
    let mut r = Raft::new(
        config(1),
        Persisted {
            hard_state: HardState {
                term: 4,
                vote: Some(3),
                commit: 3,
            },
            entries,
            initial_membership: Membership::with_voters([1, 2, 3]),
            ..Persisted::default()
        },
    )
    .unwrap();
    assert_eq!(r.term(), 6);
    assert_eq!(r.status().last_index, 4);
    let rd = r.ready();
    let hs = rd
        .hard_state
        .expect("the corrected hard state is persisted");
    assert_eq!((hs.term, hs.vote), (6, None));
}

// Reference: §5.3 (conflicting entries are overwritten; fast back-off by conflict term).
#[test]
fn follower_with_a_conflicting_suffix_is_repaired_with_conflict_hints() {
    let mut r = boot(config(2), &[1, 2, 3]);
    drain(&mut r);
    let e = |index, term| Entry {
        index,
        term,
        payload: Payload::Command(vec![index as u8, term as u8]),
    };
    // Follower has 4@1 5@1 6@1 from an old leader.
    r.step(msg(
        1,
        2,
        1,
        MessageBody::Append {
            prev_log_index: 3,
            prev_log_term: 0,
            entries: vec![e(4, 1), e(5, 1), e(6, 1)],
            commit: 3,
        },
    ))
    .unwrap();
    drain(&mut r);
    // Leader of term 3 probes at 6@2: rejected with the follower's conflicting term 1 starting at 4.
    r.step(msg(
        3,
        2,
        3,
        MessageBody::Append {
            prev_log_index: 6,
            prev_log_term: 2,
            entries: vec![],
            commit: 3,
        },
    ))
    .unwrap();
    let rd = drain(&mut r);
    let hint = rd.messages.iter().find_map(|m| match m.body {
        MessageBody::AppendResponse { result: Err(h) } => Some(h),
        _ => None,
    });
    assert_eq!(
        hint,
        Some(RejectHint {
            rejected: 6,
            conflict_term: Some(1),
            conflict_index: 4
        })
    );
    // The leader resends from 4: the suffix is replaced.
    r.step(msg(
        3,
        2,
        3,
        MessageBody::Append {
            prev_log_index: 3,
            prev_log_term: 0,
            entries: vec![e(4, 2), e(5, 3)],
            commit: 5,
        },
    ))
    .unwrap();
    let rd = drain(&mut r);
    assert_eq!(
        rd.entries.first().map(|e| e.index),
        Some(4),
        "storage rewrites from 4"
    );
    let terms: Vec<Term> = r.log_entries().iter().map(|e| e.term).collect();
    assert_eq!(terms, vec![0, 0, 0, 2, 3]);
    assert_eq!(r.status().commit, 5);
}

// Reference: §5.3 (the consistency check); the planted bug `skip-prev-check` skips it.
#[test]
fn follower_rejects_append_whose_previous_entry_does_not_match() {
    for bug in [false, true] {
        let mut cfg = config(2);
        if bug {
            cfg.bugs.insert(Bug::SkipPrevCheck);
        }
        let mut r = boot(cfg, &[1, 2, 3]);
        drain(&mut r);
        let entry = Entry {
            index: 4,
            term: 2,
            payload: Payload::Noop,
        };
        r.step(msg(
            1,
            2,
            2,
            MessageBody::Append {
                prev_log_index: 3,
                prev_log_term: 1,
                entries: vec![entry],
                commit: 0,
            },
        ))
        .unwrap();
        let rd = drain(&mut r);
        let accepted = rd
            .messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::AppendResponse { result: Ok(4) }));
        assert_eq!(accepted, bug, "bug={bug}");
    }
}

// Reference: §5.4.2 and Figure 8: entries of earlier terms are not committed by counting
// replicas; the planted bug `commit-old-term` does exactly that.
#[test]
fn leader_does_not_commit_entries_of_earlier_terms_by_counting_replicas() {
    for bug in [false, true] {
        let mut cfg = config(1);
        if bug {
            cfg.bugs.insert(Bug::CommitOldTerm);
        }
        let bootstrap = boot(config(1), &[1, 2, 3]).log_entries().to_vec();
        let mut entries = bootstrap;
        entries.push(Entry {
            index: 4,
            term: 2,
            payload: Payload::Command(b"old".to_vec()),
        });
        let mut r = Raft::new(
            cfg,
            Persisted {
                hard_state: HardState {
                    term: 2,
                    vote: None,
                    commit: 3,
                },
                entries,
                initial_membership: Membership::with_voters([1, 2, 3]),
                ..Persisted::default()
            },
        )
        .unwrap();
        elect(&mut r, &[1, 2, 3]);
        drain(&mut r);
        let term = r.term();
        assert_eq!(r.status().last_index, 5, "noop of term {term} at 5");
        // Follower 2 now holds the old entry 4 (a majority with the leader), not the noop.
        r.step(msg(
            2,
            1,
            term,
            MessageBody::AppendResponse { result: Ok(4) },
        ))
        .unwrap();
        drain(&mut r);
        let commit = r.status().commit;
        if bug {
            assert_eq!(commit, 4, "the bug commits the old-term entry");
        } else {
            assert_eq!(commit, 3, "4@2 must not commit by counting replicas");
            r.step(msg(
                2,
                1,
                term,
                MessageBody::AppendResponse { result: Ok(5) },
            ))
            .unwrap();
            drain(&mut r);
            assert_eq!(
                r.status().commit,
                5,
                "committing 5@{term} commits 4 indirectly"
            );
        }
    }
}

// Reference: Ready's durability rule: a leader counts its own entries only once durable.
#[test]
fn leader_counts_its_own_log_only_after_advance() {
    let mut r = boot(config(1), &[1]);
    for _ in 0..30 {
        r.tick();
        if r.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(r.role(), Role::Leader);
    let rd = r.ready();
    let noop = rd.entries.last().unwrap().index;
    assert!(r.status().commit < noop, "not durable yet, not committed");
    r.advance();
    assert_eq!(r.status().commit, noop);
    let idx = r.propose(b"x".to_vec()).unwrap();
    let rd = r.ready();
    assert!(rd.committed.iter().all(|e| e.index < idx));
    assert!(!rd.acks.contains(&idx));
    r.advance();
    let rd = drain(&mut r);
    assert!(rd.committed.iter().any(|e| e.index == idx));
    assert_eq!(rd.acks, vec![idx], "acked once committed");
}

// Reference: the planted bug `early-ack` acknowledges before commit.
#[test]
fn early_ack_bug_acks_before_commit() {
    let mut cfg = config(1);
    cfg.bugs.insert(Bug::EarlyAck);
    let mut r = boot(cfg, &[1, 2, 3]);
    elect(&mut r, &[1, 2, 3]);
    drain(&mut r);
    let idx = r.propose(b"x".to_vec()).unwrap();
    let rd = drain(&mut r);
    assert_eq!(rd.acks, vec![idx]);
    assert!(r.status().commit < idx);
}

// ---- snapshots -------------------------------------------------------------------------------

// Reference: §7 (log compaction, InstallSnapshot).
#[test]
fn lagging_follower_catches_up_by_install_snapshot_after_compaction() {
    let mut cfg = SimConfig::calm(3);
    cfg.snapshot_threshold = 10;
    let mut c = Cluster::new(7, cfg);
    let l = wait_for_leader(&mut c);
    let lagging = (1..=3).find(|&i| i != l).unwrap();
    c.crash(lagging);
    let mut last = 0;
    for _ in 0..40 {
        last = c.propose(l).unwrap();
        c.tick_n(1).unwrap();
    }
    c.tick_n(5).unwrap();
    assert!(
        c.raft(l).unwrap().snapshot_index() > 0,
        "the leader compacted"
    );
    assert!(c.stats.compactions > 0);
    c.restart(lagging).unwrap();
    wait_commit(&mut c, lagging, last);
    c.tick_n(5).unwrap();
    assert!(
        c.stats.snapshots_installed > 0,
        "the follower got a snapshot"
    );
    assert!(c.raft(lagging).unwrap().status().applied >= last);
}

// ---- reads -----------------------------------------------------------------------------------

// Reference: dissertation §6.4 (ReadIndex: confirm leadership with a heartbeat round).
#[test]
fn read_index_is_answered_only_after_a_heartbeat_quorum() {
    let mut r = boot(config(1), &[1, 2, 3]);
    elect(&mut r, &[1, 2, 3]);
    drain(&mut r);
    let term = r.term();
    let last = r.status().last_index;
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(last) },
    ))
    .unwrap();
    drain(&mut r);
    assert_eq!(r.status().commit, last, "noop committed");
    r.read_index(42).unwrap();
    let rd = drain(&mut r);
    assert!(rd.reads.is_empty(), "no answer before the quorum confirms");
    let round = rd
        .messages
        .iter()
        .find_map(|m| match m.body {
            MessageBody::Heartbeat { round, .. } => Some(round),
            _ => None,
        })
        .expect("a heartbeat round was started");
    r.step(msg(2, 1, term, MessageBody::HeartbeatResponse { round }))
        .unwrap();
    let rd = drain(&mut r);
    assert_eq!(
        rd.reads,
        vec![ReadState {
            ctx: 42,
            index: last
        }]
    );
}

// Reference: dissertation §6.4 (the leader must first commit an entry of its term).
#[test]
fn read_index_waits_until_the_leader_committed_an_entry_of_its_term() {
    let mut r = boot(config(1), &[1, 2, 3]);
    elect(&mut r, &[1, 2, 3]);
    drain(&mut r);
    let term = r.term();
    r.read_index(7).unwrap();
    let rd = drain(&mut r);
    assert!(rd.reads.is_empty());
    assert!(
        !rd.messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat { .. }))
    );
    let last = r.status().last_index;
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(last) },
    ))
    .unwrap();
    let rd = drain(&mut r);
    let round = rd
        .messages
        .iter()
        .find_map(|m| match m.body {
            MessageBody::Heartbeat { round, .. } => Some(round),
            _ => None,
        })
        .expect("the queued read started a round once the noop committed");
    r.step(msg(3, 1, term, MessageBody::HeartbeatResponse { round }))
        .unwrap();
    let rd = drain(&mut r);
    assert_eq!(
        rd.reads,
        vec![ReadState {
            ctx: 7,
            index: last
        }]
    );
}

// Reference: dissertation §6.4 (a deposed leader cannot confirm leadership).
#[test]
fn partitioned_leader_never_answers_a_read_index() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    c.tick_n(5).unwrap();
    c.isolate(l);
    let ctx = c.read(l).unwrap();
    c.tick_n(30).unwrap();
    assert!(!c.served_reads.contains_key(&ctx));
    // Followers refuse reads and point at the leader they know.
    let f = (1..=3)
        .find(|&i| i != l && c.raft(i).unwrap().role() != Role::Leader)
        .unwrap();
    assert!(c.read(f).is_err());
}

// Reference: the planted bug `stale-read`: followers answer at once from local state.
#[test]
fn stale_read_bug_answers_on_a_follower_without_confirmation() {
    let mut cfg = config(2);
    cfg.bugs.insert(Bug::StaleRead);
    let mut r = boot(cfg, &[1, 2, 3]);
    drain(&mut r);
    r.read_index(1).unwrap();
    let rd = drain(&mut r);
    assert_eq!(rd.reads, vec![ReadState { ctx: 1, index: 3 }]);
    let mut r = boot(config(2), &[1, 2, 3]);
    assert!(
        r.read_index(1).is_err(),
        "without the bug a follower refuses"
    );
}

// Reference: dissertation §6.4.1 (lease reads, timed by ticks).
#[test]
fn lease_read_is_answered_at_once_while_the_lease_holds_and_not_after() {
    let mut cfg = config(1);
    cfg.check_quorum = true;
    cfg.read_mode = ReadMode::Lease;
    let mut r = boot(cfg, &[1, 2, 3]);
    elect(&mut r, &[1, 2, 3]);
    drain(&mut r);
    let term = r.term();
    let last = r.status().last_index;
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(last) },
    ))
    .unwrap();
    drain(&mut r);
    // First read: no lease yet, a round is needed; its acknowledgement starts the lease.
    r.read_index(1).unwrap();
    let rd = drain(&mut r);
    let round = rd
        .messages
        .iter()
        .find_map(|m| match m.body {
            MessageBody::Heartbeat { round, .. } => Some(round),
            _ => None,
        })
        .unwrap();
    r.step(msg(2, 1, term, MessageBody::HeartbeatResponse { round }))
        .unwrap();
    assert_eq!(drain(&mut r).reads.len(), 1);
    // Second read: answered at once.
    r.read_index(2).unwrap();
    assert_eq!(
        drain(&mut r).reads,
        vec![ReadState {
            ctx: 2,
            index: last
        }]
    );
    // After an election timeout without acknowledgements the lease is gone.
    for _ in 0..9 {
        r.tick();
    }
    drain(&mut r);
    r.read_index(3).unwrap();
    assert!(
        drain(&mut r).reads.is_empty(),
        "lease expired: a round is needed"
    );
}

// Reference: dissertation §6.4.1; the planted bug `lease-ignores-skew` trusts the wall clock.
#[test]
fn lease_ignores_skew_bug_extends_the_lease_when_the_wall_clock_jumps_back() {
    for bug in [false, true] {
        let mut cfg = config(1);
        cfg.check_quorum = true;
        cfg.read_mode = ReadMode::Lease;
        if bug {
            cfg.bugs.insert(Bug::LeaseIgnoresSkew);
        }
        let mut r = boot(cfg, &[1, 2, 3]);
        r.set_wall_clock(1_000_000);
        elect(&mut r, &[1, 2, 3]);
        drain(&mut r);
        let term = r.term();
        let last = r.status().last_index;
        r.step(msg(
            2,
            1,
            term,
            MessageBody::AppendResponse { result: Ok(last) },
        ))
        .unwrap();
        r.read_index(1).unwrap();
        let rd = drain(&mut r);
        let round = rd
            .messages
            .iter()
            .find_map(|m| match m.body {
                MessageBody::Heartbeat { round, .. } => Some(round),
                _ => None,
            })
            .unwrap();
        r.step(msg(2, 1, term, MessageBody::HeartbeatResponse { round }))
            .unwrap();
        drain(&mut r);
        // Nine ticks pass on the monotonic clock, but the wall clock jumped back a minute.
        for _ in 0..9 {
            r.tick();
        }
        r.set_wall_clock(1_000_000 - 60_000);
        drain(&mut r);
        r.read_index(2).unwrap();
        let served = !drain(&mut r).reads.is_empty();
        assert_eq!(served, bug, "bug={bug}");
    }
}

// ---- leadership transfer ----------------------------------------------------------------------

// Reference: dissertation §3.10 (leadership transfer with TimeoutNow).
#[test]
fn leadership_transfer_hands_over_to_the_target() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    c.tick_n(5).unwrap();
    let target = (1..=3).find(|&i| i != l).unwrap();
    c.raft_mut(l).unwrap().transfer_leadership(target).unwrap();
    assert!(
        c.raft_mut(l).unwrap().propose(b"x".to_vec()).is_err(),
        "no proposals during a transfer"
    );
    c.tick_n(1).unwrap();
    c.tick_n(5).unwrap();
    assert_eq!(c.leader(), Some(target));
    assert!(c.raft_mut(l).unwrap().transfer_leadership(l).is_err());
}

// ---- membership ----------------------------------------------------------------------------

// Reference: dissertation §4.1 (one server at a time; effective on append), §4.2.1 (learners).
#[test]
fn learner_joins_catches_up_is_promoted_and_a_voter_is_removed() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    c.tick_n(5).unwrap();
    let add = ConfChange {
        kind: ConfChangeKind::AddLearner,
        node: 4,
        context: b"addr-4".to_vec(),
    };
    let idx = c.propose_conf_change(l, add).unwrap();
    // The change is in effect on the leader as soon as it is appended, before it commits.
    assert!(c.raft(l).unwrap().status().membership.learners.contains(&4));
    assert!(c.raft(l).unwrap().status().commit < idx);
    // One change at a time.
    let again = ConfChange {
        kind: ConfChangeKind::AddLearner,
        node: 5,
        context: vec![],
    };
    assert_eq!(
        c.propose_conf_change(l, again),
        Err(ProposeError::ChangePending)
    );
    c.add_learner_node(4);
    for _ in 0..5 {
        c.propose(l).unwrap();
    }
    c.tick_n(20).unwrap();
    assert_eq!(c.raft(4).unwrap().role(), Role::Learner);
    assert_eq!(
        c.raft(4).unwrap().status().membership.voters,
        BTreeSet::from([1, 2, 3])
    );
    let promote = ConfChange {
        kind: ConfChangeKind::AddVoter,
        node: 4,
        context: vec![],
    };
    c.propose_conf_change(l, promote).unwrap();
    c.tick_n(10).unwrap();
    assert_eq!(c.raft(4).unwrap().role(), Role::Follower);
    let victim = (1..=3).find(|&i| i != l).unwrap();
    let remove = ConfChange {
        kind: ConfChangeKind::Remove,
        node: victim,
        context: vec![],
    };
    let idx = c.propose_conf_change(l, remove).unwrap();
    wait_commit(&mut c, l, idx);
    let m = c.raft(l).unwrap().status().membership;
    assert_eq!(m.voters.len(), 3);
    assert!(!m.contains(victim));
}

// Reference: dissertation §4.1 (a promotion waits until the learner caught up).
#[test]
fn promoting_a_learner_that_has_not_caught_up_is_refused() {
    let mut c = calm(3);
    let l = wait_for_leader(&mut c);
    c.tick_n(5).unwrap();
    let add = ConfChange {
        kind: ConfChangeKind::AddLearner,
        node: 4,
        context: vec![],
    };
    let idx = c.propose_conf_change(l, add).unwrap();
    wait_commit(&mut c, l, idx);
    // Node 4 was never started: it cannot catch up.
    for _ in 0..40 {
        c.propose(l).unwrap();
    }
    c.tick_n(5).unwrap();
    let promote = ConfChange {
        kind: ConfChangeKind::AddVoter,
        node: 4,
        context: vec![],
    };
    assert_eq!(
        c.propose_conf_change(l, promote),
        Err(ProposeError::LearnerBehind(4))
    );
}

// Reference: dissertation §4.1 (a new leader commits an entry of its term before a change).
#[test]
fn new_leader_refuses_a_membership_change_before_committing_in_its_term() {
    let mut r = boot(config(1), &[1, 2, 3]);
    elect(&mut r, &[1, 2, 3]);
    drain(&mut r);
    let cc = ConfChange {
        kind: ConfChangeKind::AddLearner,
        node: 4,
        context: vec![],
    };
    assert_eq!(
        r.propose_conf_change(cc.clone()),
        Err(ProposeError::LeaderNotReady)
    );
    let term = r.term();
    let last = r.status().last_index;
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(last) },
    ))
    .unwrap();
    drain(&mut r);
    assert!(r.propose_conf_change(cc).is_ok());
}

// Reference: dissertation §4.2.2 (a removed leader steps down once the removal commits).
#[test]
fn removed_leader_steps_down_after_committing_its_removal() {
    let mut c = calm(5);
    let l = wait_for_leader(&mut c);
    c.tick_n(5).unwrap();
    let cc = ConfChange {
        kind: ConfChangeKind::Remove,
        node: l,
        context: vec![],
    };
    let idx = c.propose_conf_change(l, cc).unwrap();
    assert_eq!(
        c.raft(l).unwrap().role(),
        Role::Leader,
        "still leads until committed"
    );
    c.tick_n(3).unwrap();
    // Its removal committed; the simulator retires removed servers, so check the others.
    let others: Vec<NodeId> = (1..=5).filter(|&i| i != l).collect();
    c.tick_n(60).unwrap();
    let l2 = c.leader().expect("the rest elect a new leader");
    assert!(others.contains(&l2));
    assert!(c.raft(l2).unwrap().status().commit >= idx);
    assert!(!c.raft(l2).unwrap().status().membership.contains(l));
}

// Reference: dissertation §4.2.2, at the level of one node: still leader while the removal is
// uncommitted (not counting itself), follower once it commits.
#[test]
fn removed_leader_leads_without_counting_itself_then_steps_down() {
    let mut r = boot(config(1), &[1, 2, 3]);
    elect(&mut r, &[1, 2, 3]);
    drain(&mut r);
    let term = r.term();
    let last = r.status().last_index;
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(last) },
    ))
    .unwrap();
    drain(&mut r);
    let cc = ConfChange {
        kind: ConfChangeKind::Remove,
        node: 1,
        context: vec![],
    };
    let idx = r.propose_conf_change(cc).unwrap();
    drain(&mut r);
    assert!(!r.status().membership.contains(1), "effective on append");
    // Voters are now {2, 3}: node 2 alone is not a majority, even with the leader's copy.
    r.step(msg(
        2,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(idx) },
    ))
    .unwrap();
    drain(&mut r);
    assert_eq!(r.role(), Role::Leader);
    assert!(r.status().commit < idx);
    r.step(msg(
        3,
        1,
        term,
        MessageBody::AppendResponse { result: Ok(idx) },
    ))
    .unwrap();
    drain(&mut r);
    assert_eq!(r.status().commit, idx);
    assert_ne!(r.role(), Role::Leader);
}

// ---- encoding and names -----------------------------------------------------------------------

#[test]
fn bug_names_round_trip_in_kebab_case() {
    for bug in Bug::ALL {
        assert_eq!(bug.to_string().parse::<Bug>(), Ok(bug));
    }
    assert_eq!("stale-read".parse::<Bug>(), Ok(Bug::StaleRead));
    assert!("stale_read".parse::<Bug>().is_err());
}

#[test]
fn messages_round_trip_through_serde_json() {
    let m = msg(
        1,
        2,
        3,
        MessageBody::Append {
            prev_log_index: 4,
            prev_log_term: 2,
            entries: vec![Entry {
                index: 5,
                term: 3,
                payload: Payload::Conf(ConfChange {
                    kind: ConfChangeKind::AddLearner,
                    node: 9,
                    context: b"10.0.0.9:7000".to_vec(),
                }),
            }],
            commit: 4,
        },
    );
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
}

#[test]
fn lease_reads_without_check_quorum_are_rejected_as_config() {
    let mut cfg = config(1);
    cfg.read_mode = ReadMode::Lease;
    cfg.check_quorum = false;
    assert!(matches!(
        Raft::new(cfg, Persisted::default()),
        Err(Error::Config(_))
    ));
}

// ---- script-style scenarios -------------------------------------------------------------------

/// Runs a scenario script against a calm cluster, one command per line (`#` starts a comment):
/// `tick N`, `propose N` (at the leader), `isolate-leader`, `crash-leader`, `restart-all`,
/// `heal`, `expect-leader`, `expect-new-leader` (different from the remembered one),
/// `remember-leader`, `expect-all-committed` (every live node committed every proposal).
fn run_script(nodes: u64, script: &str) {
    let mut c = calm(nodes);
    let mut remembered: Option<NodeId> = None;
    let mut crashed = Vec::new();
    let mut last_proposal = 0;
    for (n, line) in script.lines().enumerate() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap();
        let arg: u64 = words.next().map_or(0, |w| w.parse().unwrap());
        let at = format!("line {}: {line}", n + 1);
        match cmd {
            "tick" => c.tick_n(arg).unwrap_or_else(|e| panic!("{at}: {e}")),
            "propose" => {
                let l = c.leader().unwrap_or_else(|| panic!("{at}: no leader"));
                for _ in 0..arg {
                    last_proposal = c.propose(l).unwrap();
                }
            }
            "isolate-leader" => {
                let l = c.leader().unwrap_or_else(|| panic!("{at}: no leader"));
                c.isolate(l);
            }
            "crash-leader" => {
                let l = c.leader().unwrap_or_else(|| panic!("{at}: no leader"));
                c.crash(l);
                crashed.push(l);
            }
            "restart-all" => {
                for id in crashed.drain(..) {
                    c.restart(id).unwrap();
                }
            }
            "heal" => c.heal_network(),
            "remember-leader" => remembered = c.leader(),
            "expect-leader" => assert!(c.leader().is_some(), "{at}"),
            "expect-new-leader" => {
                let l = c.leader().unwrap_or_else(|| panic!("{at}: no leader"));
                assert_ne!(Some(l), remembered, "{at}");
            }
            "expect-all-committed" => {
                for id in 1..=nodes {
                    if let Some(r) = c.raft(id) {
                        assert!(r.status().commit >= last_proposal, "{at}: node {id}");
                    }
                }
            }
            other => panic!("{at}: unknown command {other}"),
        }
    }
}

// Reference: §5.2, §5.3, §5.4 (a leader fails; a new one keeps every committed entry).
#[test]
fn script_leader_crash_and_recovery_keeps_committed_entries() {
    #[rustfmt::skip]
    run_script(5, "
        tick 40               # elect a leader
        expect-leader
        propose 10
        tick 5
        expect-all-committed
        remember-leader
        crash-leader
        tick 60               # the rest elect a new leader
        expect-new-leader
        propose 3
        tick 5
        restart-all
        tick 20
        expect-all-committed  # the restarted node caught up
    ");
}

// Reference: dissertation §6.2, §9.6 (an isolated leader is replaced; rejoining, it follows).
#[test]
fn script_isolated_leader_is_replaced_and_rejoins_as_follower() {
    #[rustfmt::skip]
    run_script(3, "
        tick 40
        remember-leader
        isolate-leader
        tick 60
        expect-new-leader
        propose 5
        heal
        tick 30
        expect-new-leader     # the old leader did not take over again
        expect-all-committed
    ");
}
