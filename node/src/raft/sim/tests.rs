//! The simulation tests: the soak (many seeds, no bugs) and one test per planted bug.

#![cfg(test)]

use super::*;

/// Seeds per soak shard; `RAFT_SIM_SEEDS` overrides the total (split over the four shards).
fn soak_seeds() -> u64 {
    std::env::var("RAFT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

fn soak_shard(shard: u64) {
    let total = soak_seeds();
    let mut agg = Stats::default();
    let mut runs = 0;
    for seed in (0..total).filter(|s| s % 4 == shard) {
        match run_seed(seed, None) {
            Ok(s) => {
                runs += 1;
                agg.elections += s.elections;
                agg.acks += s.acks;
                agg.reads += s.reads;
                agg.snapshots_installed += s.snapshots_installed;
                agg.compactions += s.compactions;
                agg.conf_changes += s.conf_changes;
                agg.crashes += s.crashes;
                agg.torn_writes += s.torn_writes;
                agg.transfers += s.transfers;
            }
            Err(v) => panic!("{v}"),
        }
    }
    eprintln!("soak shard {shard}: {runs} seeds, {agg:?}");
    // The soak must actually exercise the features it claims to.
    if runs >= 50 {
        assert!(agg.elections > runs, "too few elections: {agg:?}");
        assert!(agg.acks > 0 && agg.reads > 0, "no client traffic: {agg:?}");
        assert!(agg.snapshots_installed > 0, "no InstallSnapshot: {agg:?}");
        assert!(agg.compactions > 0, "no compaction: {agg:?}");
        assert!(agg.conf_changes > 0, "no membership change: {agg:?}");
        assert!(
            agg.crashes > 0 && agg.transfers > 0,
            "no crash or transfer: {agg:?}"
        );
    }
}

#[test]
fn soak_shard_0() {
    soak_shard(0);
}

#[test]
fn soak_shard_1() {
    soak_shard(1);
}

#[test]
fn soak_shard_2() {
    soak_shard(2);
}

#[test]
fn soak_shard_3() {
    soak_shard(3);
}

/// Runs seeds 0.. with `bug` on until a violation; then requires the same seeds to pass with
/// the bug off. Returns the number of seeds it took.
fn bug_is_caught(bug: Bug, max_seeds: u64) -> u64 {
    let mut found = None;
    for seed in 0..max_seeds {
        if let Err(v) = run_seed(seed, Some(bug)) {
            eprintln!("{bug} caught: {v}");
            found = Some(seed);
            break;
        }
    }
    let Some(failing) = found else {
        panic!("planted bug {bug} was not caught within {max_seeds} seeds");
    };
    for seed in 0..=failing {
        let mut cfg = SimConfig::for_bug(bug, seed);
        cfg.bugs.clear();
        if let Err(v) = Cluster::new(seed, cfg).run() {
            panic!("with {bug} off, the same mix must pass: {v}");
        }
    }
    failing + 1
}

#[test]
fn sim_catches_stale_read() {
    bug_is_caught(Bug::StaleRead, 20);
}

#[test]
fn sim_catches_forget_vote() {
    bug_is_caught(Bug::ForgetVote, 200);
}

#[test]
fn sim_catches_commit_old_term() {
    bug_is_caught(Bug::CommitOldTerm, 500);
}

#[test]
fn sim_catches_skip_prev_check() {
    bug_is_caught(Bug::SkipPrevCheck, 200);
}

#[test]
fn sim_catches_early_ack() {
    bug_is_caught(Bug::EarlyAck, 100);
}

#[test]
fn sim_catches_lease_ignores_skew() {
    bug_is_caught(Bug::LeaseIgnoresSkew, 200);
}

#[test]
fn sim_catches_conf_change_concurrent() {
    bug_is_caught(Bug::ConfChangeConcurrent, 300);
}

#[test]
fn sim_catches_no_fsync() {
    bug_is_caught(Bug::NoFsync, 100);
}
