//! The seeded schedule: when each fault starts and stops, and every random choice that does not
//! depend on the live cluster (which partition kind, which nodes, which offsets). Pure: the same
//! spec, seed, nodes and phase length always give the same list.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::spec::{
    ClockKind, CorruptKind, FaultKind, KillTarget, NemesisSpec, PartitionKind, PauseTarget,
};

/// The random stream a fault's nodes are drawn again from when some of them left the cluster.
const REMAP_STREAM: u64 = 0x0072_656d_6170; // "remap"

/// The ChaCha stream the nemesis draws from, so that it never shares random numbers with the
/// generator, which seeds its own generator from the same `--seed`.
const NEMESIS_STREAM: u64 = 0x006e_656d_6573_6973; // "nemesis"
/// The random stream the corruptible minority is drawn from.
const CORRUPT_STREAM: u64 = 0x0063_6f72_7275_7074; // "corrupt"

/// Which nodes a kill or pause hits, as far as the seed decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targets {
    /// These nodes (drawn from the seed).
    Nodes(Vec<String>),
    /// Whoever leads when the action is applied.
    Leader,
}

/// A clock fault with its offsets drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockPlan {
    /// Each listed node's wall clock jumps to this offset, in seconds.
    Bump {
        /// Offset per node, in seconds (never 0).
        offsets: BTreeMap<String, i64>,
    },
    /// The node's clock flips between `+0s` and `delta` seconds every `period_ms`.
    Strobe {
        /// The strobed node.
        node: String,
        /// The second offset, in seconds (never 0).
        delta: i64,
        /// Milliseconds between flips.
        period_ms: u64,
    },
    /// Every node back to `+0s`.
    Reset,
}

/// One fault, fully decided except for the leader.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// A partition of `kind` over `order` (the shuffled node list; see [`super::grudge::grudge_of`]).
    Partition {
        /// The partition kind.
        kind: PartitionKind,
        /// Node order the grudge is computed from.
        order: Vec<String>,
    },
    /// SIGKILL, restarted at the stop.
    Kill {
        /// The configured target.
        target: KillTarget,
        /// The nodes.
        nodes: Targets,
    },
    /// Docker pause, unpaused at the stop.
    Pause {
        /// The configured target.
        target: PauseTarget,
        /// The nodes.
        nodes: Targets,
    },
    /// fsync stalled on the nodes' faultfs, released at the stop.
    Stall {
        /// The configured target.
        target: PauseTarget,
        /// The nodes.
        nodes: Targets,
    },
    /// A power failure of the nodes (on faultfs), restarted at the stop.
    Power {
        /// The configured target.
        target: KillTarget,
        /// The nodes.
        nodes: Targets,
    },
    /// `node` (of the run's fixed corruptible minority) killed and its data files damaged;
    /// restarted at the stop.
    Corrupt {
        /// The node.
        node: String,
        /// Bit flips or a cut tail.
        kind: CorruptKind,
        /// Seeds which files and which bits or bytes.
        seed: u64,
    },
    /// A clock fault.
    Clock(ClockPlan),
    /// Each of `nodes` drops incoming packets with `probability`.
    Loss {
        /// The lossy nodes.
        nodes: Vec<String>,
        /// Drop probability.
        probability: f64,
    },
    /// A membership change; which one (`member-ops`, as the size allows) and which node are
    /// decided from `pick` against the members of the moment.
    Member {
        /// Drawn from the seed.
        pick: u64,
    },
    /// Each of `nodes` delays outgoing packets by `delay_ms` ± `jitter_ms`.
    Delay {
        /// The slow nodes.
        nodes: Vec<String>,
        /// Milliseconds of delay.
        delay_ms: u64,
        /// Milliseconds of jitter.
        jitter_ms: u64,
    },
}

impl Fault {
    /// The fault's family.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Stall { .. } => FaultKind::Stall,
            Fault::Power { .. } => FaultKind::Power,
            Fault::Corrupt { .. } => FaultKind::Corrupt,
            Fault::Clock(_) => FaultKind::Clock,
            Fault::Loss { .. } => FaultKind::Loss,
            Fault::Delay { .. } => FaultKind::Delay,
            Fault::Member { .. } => FaultKind::Member,
        }
    }

    /// The fault with its nodes limited to `members`, the cluster's members when it is applied
    /// (the `member` fault changes them; the schedule was drawn over the initial nodes). A
    /// partition's order keeps the members it named, in its order, and takes new members at
    /// the end; a kill, pause, stall or power failure of named nodes, and a loss, replace each
    /// node that left by a member they did not name, drawn from `salt`; clock offsets of nodes
    /// that left are dropped (none left: a reset); a delay hits every member. Unchanged while
    /// every node it names is a member.
    pub fn remap(&self, members: &[String], salt: u64) -> Fault {
        let gone = |v: &[String]| v.iter().any(|n| !members.contains(n));
        let mut rng = ChaCha8Rng::seed_from_u64(salt);
        rng.set_stream(REMAP_STREAM);
        let mut fill = |v: &[String]| -> Vec<String> {
            let kept: Vec<String> = v.iter().filter(|n| members.contains(n)).cloned().collect();
            let mut others: Vec<String> =
                members.iter().filter(|n| !v.contains(n)).cloned().collect();
            others.shuffle(&mut rng);
            let missing = v.len() - kept.len();
            let mut out = kept;
            out.extend(others.into_iter().take(missing));
            out
        };
        let mut out = self.clone();
        let mut reset_clocks = false;
        match &mut out {
            Fault::Partition { order, .. } => {
                order.retain(|n| members.contains(n));
                let new: Vec<String> = members
                    .iter()
                    .filter(|m| !order.contains(m))
                    .cloned()
                    .collect();
                order.extend(new);
            }
            Fault::Kill {
                nodes: Targets::Nodes(v),
                ..
            }
            | Fault::Pause {
                nodes: Targets::Nodes(v),
                ..
            }
            | Fault::Stall {
                nodes: Targets::Nodes(v),
                ..
            }
            | Fault::Power {
                nodes: Targets::Nodes(v),
                ..
            } if gone(v) => *v = fill(v),
            Fault::Loss { nodes, .. } if gone(nodes) => {
                *nodes = fill(nodes);
                nodes.sort();
            }
            Fault::Delay { nodes, .. } => *nodes = members.to_vec(),
            Fault::Clock(ClockPlan::Bump { offsets }) => {
                offsets.retain(|n, _| members.contains(n));
                reset_clocks = offsets.is_empty();
            }
            Fault::Clock(ClockPlan::Strobe { node, .. }) => {
                reset_clocks = !members.contains(node);
            }
            _ => {}
        }
        if reset_clocks {
            out = Fault::Clock(ClockPlan::Reset);
        }
        out
    }
}

/// A step of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Start this fault.
    Start(Fault),
    /// Undo the active fault of this family.
    Stop(FaultKind),
}

/// How many nodes a "minority" target takes: `(n - 1) / 2`, at least one.
pub fn minority_size(n: usize) -> usize {
    (n.saturating_sub(1) / 2).max(1)
}

/// `period` scaled by a uniform factor in `[1 - jitter, 1 + jitter]`.
fn jittered(rng: &mut ChaCha8Rng, period: f64, jitter: f64) -> Duration {
    let factor = if jitter > 0.0 {
        rng.random_range(1.0 - jitter..=1.0 + jitter)
    } else {
        1.0
    };
    Duration::from_secs_f64((period * factor).max(0.001))
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

fn shuffled(rng: &mut ChaCha8Rng, nodes: &[String]) -> Vec<String> {
    let mut v = nodes.to_vec();
    v.shuffle(rng);
    v
}

/// A non-zero offset in `[-max, max]` seconds.
fn offset(rng: &mut ChaCha8Rng, max: u32) -> i64 {
    let max = i64::from(max.max(1));
    let magnitude = rng.random_range(1..=max);
    if rng.random_bool(0.5) {
        magnitude
    } else {
        -magnitude
    }
}

/// Draws a kill's (or a power failure's) target and the nodes it names, the leader resolved
/// later.
fn draw_kill_targets(
    rng: &mut ChaCha8Rng,
    choices: &[KillTarget],
    nodes: &[String],
) -> (KillTarget, Targets) {
    let target = pick(rng, choices);
    let order = shuffled(rng, nodes);
    let hit = match target {
        KillTarget::One => Targets::Nodes(order[..1].to_vec()),
        KillTarget::Minority => Targets::Nodes(order[..minority_size(nodes.len())].to_vec()),
        KillTarget::All => Targets::Nodes(nodes.to_vec()),
        KillTarget::Leader => Targets::Leader,
    };
    (target, hit)
}

/// The run's corruptible minority: the same `(n - 1) / 2` nodes (at least one) for every
/// `corrupt` of a run, as Jepsen damages a fixed minority, so a majority always keeps intact
/// data. Drawn from `seed` alone.
pub fn corruptible(seed: u64, nodes: &[String]) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(CORRUPT_STREAM);
    let mut minority = shuffled(&mut rng, nodes)[..minority_size(nodes.len())].to_vec();
    minority.sort();
    minority
}

/// Draws a pause's (or a stall's) target and the nodes it names, the leader resolved later.
fn draw_targets(
    rng: &mut ChaCha8Rng,
    choices: &[PauseTarget],
    nodes: &[String],
) -> (PauseTarget, Targets) {
    let target = pick(rng, choices);
    let order = shuffled(rng, nodes);
    let hit = match target {
        PauseTarget::One => Targets::Nodes(order[..1].to_vec()),
        PauseTarget::Minority => Targets::Nodes(order[..minority_size(nodes.len())].to_vec()),
        PauseTarget::Leader => Targets::Leader,
    };
    (target, hit)
}

/// Draws one fault of a family (`run_seed` fixes the run's corruptible minority).
fn draw(
    rng: &mut ChaCha8Rng,
    run_seed: u64,
    spec: &NemesisSpec,
    nodes: &[String],
    kind: FaultKind,
) -> Fault {
    let n = nodes.len();
    match kind {
        FaultKind::Partition => {
            let kind = pick(rng, &spec.partition_kinds);
            // `halves` keeps the configured order; every other kind draws a fresh one.
            let order = if kind == PartitionKind::Halves {
                nodes.to_vec()
            } else {
                shuffled(rng, nodes)
            };
            Fault::Partition { kind, order }
        }
        FaultKind::Kill => {
            let (target, nodes) = draw_kill_targets(rng, &spec.kill_targets, nodes);
            Fault::Kill { target, nodes }
        }
        FaultKind::Power => {
            let (target, nodes) = draw_kill_targets(rng, &spec.power_targets, nodes);
            Fault::Power { target, nodes }
        }
        FaultKind::Corrupt => {
            let minority = corruptible(run_seed, nodes);
            Fault::Corrupt {
                node: minority[rng.random_range(0..minority.len())].clone(),
                kind: pick(rng, &spec.corrupt_kinds),
                seed: rng.random(),
            }
        }
        FaultKind::Pause => {
            let (target, nodes) = draw_targets(rng, &spec.pause_targets, nodes);
            Fault::Pause { target, nodes }
        }
        FaultKind::Stall => {
            let (target, nodes) = draw_targets(rng, &spec.stall_targets, nodes);
            Fault::Stall { target, nodes }
        }
        FaultKind::Clock => match pick(rng, &spec.clock_kinds) {
            kind @ (ClockKind::Bump | ClockKind::BumpAll) => {
                let order = shuffled(rng, nodes);
                let count = if kind == ClockKind::BumpAll {
                    n
                } else {
                    rng.random_range(1..=n)
                };
                let offsets = order[..count]
                    .iter()
                    .map(|node| (node.clone(), offset(rng, spec.clock_max_offset)))
                    .collect();
                Fault::Clock(ClockPlan::Bump { offsets })
            }
            ClockKind::Strobe => Fault::Clock(ClockPlan::Strobe {
                node: nodes[rng.random_range(0..n)].clone(),
                delta: offset(rng, spec.clock_max_offset),
                period_ms: spec.clock_strobe_period_ms,
            }),
            ClockKind::Reset => Fault::Clock(ClockPlan::Reset),
        },
        FaultKind::Loss => {
            let order = shuffled(rng, nodes);
            let count = rng.random_range(1..=n);
            let mut lossy = order[..count].to_vec();
            lossy.sort();
            Fault::Loss {
                nodes: lossy,
                probability: spec.loss_probability,
            }
        }
        FaultKind::Delay => Fault::Delay {
            nodes: nodes.to_vec(),
            delay_ms: spec.delay_ms,
            jitter_ms: spec.delay_jitter_ms,
        },
        FaultKind::Member => Fault::Member { pick: rng.random() },
    }
}

/// The schedule for a main phase of `main_phase`: off for about `interval`, then one fault (its
/// family drawn from `spec.faults`) on for about `interval`, then its stop, and so on. A fault
/// whose stop would fall at or after the end of the phase is not started, so every start is
/// followed by its stop within the phase. Empty when no faults or no nodes are configured.
/// With `concurrent`, each family runs such a timeline of its own and the timelines are merged;
/// with `handover`, partitions follow each other without a stop between (see [`NemesisSpec`]).
pub fn schedule(
    spec: &NemesisSpec,
    seed: u64,
    nodes: &[String],
    main_phase: Duration,
) -> Vec<(Duration, Action)> {
    if spec.faults.is_empty() || nodes.is_empty() {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(NEMESIS_STREAM);
    if !spec.concurrent {
        return timeline(&mut rng, seed, spec, nodes, main_phase, &spec.faults);
    }
    // Jepsen's combined nemesis: every family on its own timeline, merged (a stable sort keeps
    // each family's start before its stop).
    let mut out = Vec::new();
    for kind in &spec.faults {
        out.extend(timeline(
            &mut rng,
            seed,
            spec,
            nodes,
            main_phase,
            std::slice::from_ref(kind),
        ));
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// One timeline: a fault of a family drawn from `kinds`, on for an interval, then off for one
/// (with `handover`, partitions back to back and one heal at the end).
fn timeline(
    rng: &mut ChaCha8Rng,
    seed: u64,
    spec: &NemesisSpec,
    nodes: &[String],
    main_phase: Duration,
    kinds: &[FaultKind],
) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    // A timeline of membership changes alone may have a pace of its own.
    let interval = match (kinds, spec.member_interval) {
        ([FaultKind::Member], Some(i)) => i,
        _ => spec.interval,
    };
    let mut t = jittered(rng, interval, spec.jitter);
    if spec.handover && kinds == [FaultKind::Partition] {
        // Each partition replaces the last; one heal at the end.
        let mut last = None;
        while t < main_phase {
            out.push((
                t,
                Action::Start(draw(rng, seed, spec, nodes, FaultKind::Partition)),
            ));
            last = Some(t);
            t += jittered(rng, interval, spec.jitter);
        }
        let heal = t.min(main_phase.saturating_sub(Duration::from_millis(1)));
        if last.is_some_and(|l| heal > l) {
            out.push((heal, Action::Stop(FaultKind::Partition)));
        }
        return out;
    }
    loop {
        let kind = pick(rng, kinds);
        let fault = draw(rng, seed, spec, nodes, kind);
        if kind == FaultKind::Member {
            // A membership change is not undone: it takes the time it takes, then the next
            // fault follows an interval later.
            if t >= main_phase {
                break;
            }
            out.push((t, Action::Start(fault)));
            t += jittered(rng, interval, spec.jitter);
            continue;
        }
        let stop = t + jittered(rng, interval, spec.jitter);
        if stop >= main_phase {
            break;
        }
        out.push((t, Action::Start(fault)));
        out.push((stop, Action::Stop(kind)));
        t = stop + jittered(rng, interval, spec.jitter);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Every family with a start and a stop (membership changes have no stop: own test).
    fn all_faults() -> NemesisSpec {
        NemesisSpec {
            faults: FaultKind::ALL
                .iter()
                .copied()
                .filter(|k| *k != FaultKind::Member)
                .collect(),
            interval: 2.0,
            ..Default::default()
        }
    }

    #[test]
    fn handover_starts_partitions_back_to_back_and_heals_once_at_the_end() {
        let spec = NemesisSpec {
            faults: vec![FaultKind::Partition],
            partition_kinds: vec![PartitionKind::IsolateLeader],
            interval: 2.0,
            handover: true,
            ..Default::default()
        };
        let phase = Duration::from_secs(30);
        let s = schedule(&spec, 3, &names(3), phase);
        let (last, starts) = s.split_last().unwrap();
        assert!(starts.len() >= 8, "{} starts in 30 s at 2 s", starts.len());
        assert!(
            starts
                .iter()
                .all(|(_, a)| matches!(a, Action::Start(Fault::Partition { .. }))),
            "{starts:?}"
        );
        assert_eq!(last.1, Action::Stop(FaultKind::Partition));
        assert!(last.0 < phase && last.0 > starts.last().unwrap().0);
    }

    #[test]
    fn bump_all_moves_every_clock() {
        let spec = NemesisSpec {
            faults: vec![FaultKind::Clock],
            clock_kinds: vec![ClockKind::BumpAll],
            interval: 1.0,
            ..Default::default()
        };
        let s = schedule(&spec, 4, &names(5), Duration::from_secs(30));
        let mut bumps = 0;
        for (_, a) in &s {
            if let Action::Start(Fault::Clock(ClockPlan::Bump { offsets })) = a {
                bumps += 1;
                assert_eq!(offsets.len(), 5, "{offsets:?}");
                assert!(offsets.values().all(|o| *o != 0 && o.abs() <= 60));
            }
        }
        assert!(bumps >= 5, "{bumps} bumps in 30 s at 1 s");
    }

    #[test]
    fn concurrent_families_overlap_but_each_family_alternates() {
        let spec = NemesisSpec {
            faults: vec![FaultKind::Clock, FaultKind::Partition],
            interval: 3.0,
            concurrent: true,
            ..Default::default()
        };
        let s = schedule(&spec, 9, &names(3), Duration::from_secs(60));
        let mut active: BTreeMap<FaultKind, bool> = BTreeMap::new();
        let mut overlapped = false;
        for (_, a) in &s {
            match a {
                Action::Start(f) => {
                    let was = active.insert(f.kind(), true).unwrap_or(false);
                    assert!(!was, "{:?} started twice without a stop", f.kind());
                    overlapped |= active.values().filter(|on| **on).count() > 1;
                }
                Action::Stop(k) => assert_eq!(active.insert(*k, false), Some(true)),
            }
        }
        assert!(overlapped, "60 s of two families never overlapped: {s:?}");
        assert!(s.windows(2).all(|w| w[0].0 <= w[1].0), "not in time order");
        let mut seq = spec.clone();
        seq.concurrent = false;
        let s = schedule(&seq, 9, &names(3), Duration::from_secs(60));
        let starts = s.iter().filter(|(_, a)| matches!(a, Action::Start(_)));
        let stops = s.iter().filter(|(_, a)| matches!(a, Action::Stop(_)));
        assert_eq!(starts.count(), stops.count());
        for w in s.chunks(2) {
            assert!(matches!(
                (&w[0].1, &w[1].1),
                (Action::Start(_), Action::Stop(_))
            ));
        }
    }

    #[test]
    fn same_seed_gives_the_same_schedule_and_other_seeds_differ() {
        let nodes = names(5);
        let phase = Duration::from_secs(120);
        let a = schedule(&all_faults(), 42, &nodes, phase);
        let b = schedule(&all_faults(), 42, &nodes, phase);
        assert!(
            a.len() > 10,
            "a 120 s phase with 2 s intervals: {}",
            a.len()
        );
        assert_eq!(a, b);
        let differing = (0..20u64)
            .filter(|s| schedule(&all_faults(), 43 + s, &nodes, phase) != a)
            .count();
        assert_eq!(differing, 20, "every other seed gives another schedule");
    }

    #[test]
    fn every_start_is_followed_by_its_stop_before_the_phase_ends() {
        let nodes = names(5);
        for seed in 0..50 {
            let phase = Duration::from_secs(60 + seed);
            let s = schedule(&all_faults(), seed, &nodes, phase);
            assert_eq!(s.len() % 2, 0, "seed {seed}");
            let mut last = Duration::ZERO;
            for pair in s.chunks(2) {
                let (t0, start) = &pair[0];
                let (t1, stop) = &pair[1];
                let Action::Start(fault) = start else {
                    panic!("seed {seed}: expected a start, got {start:?}")
                };
                assert_eq!(stop, &Action::Stop(fault.kind()), "seed {seed}");
                assert!(last <= *t0 && t0 < t1, "seed {seed}: times go forward");
                assert!(*t1 < phase, "seed {seed}: stop {t1:?} after the phase");
                last = *t1;
            }
        }
    }

    #[test]
    fn intervals_stay_within_the_jitter_bounds() {
        let spec = NemesisSpec {
            faults: vec![FaultKind::Kill],
            interval: 10.0,
            jitter: 0.5,
            ..Default::default()
        };
        let s = schedule(&spec, 7, &names(3), Duration::from_secs(600));
        let mut prev = Duration::ZERO;
        for (t, _) in &s {
            let gap = (*t - prev).as_secs_f64();
            assert!((5.0..=15.0).contains(&gap), "gap {gap}");
            prev = *t;
        }
    }

    #[test]
    fn no_faults_or_a_short_phase_give_an_empty_schedule() {
        let nodes = names(3);
        assert!(schedule(&NemesisSpec::default(), 1, &nodes, Duration::from_secs(600)).is_empty());
        assert!(schedule(&all_faults(), 1, &nodes, Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn targets_are_drawn_within_bounds() {
        let nodes = names(5);
        let spec = all_faults();
        let mut seen_leader = false;
        for seed in 0..40 {
            for (_, action) in schedule(&spec, seed, &nodes, Duration::from_secs(200)) {
                let Action::Start(fault) = action else {
                    continue;
                };
                match fault {
                    Fault::Kill { target, nodes: t } => match (target, t) {
                        (KillTarget::One, Targets::Nodes(v)) => assert_eq!(v.len(), 1),
                        (KillTarget::Minority, Targets::Nodes(v)) => assert_eq!(v.len(), 2),
                        (KillTarget::All, Targets::Nodes(v)) => assert_eq!(v, nodes),
                        (KillTarget::Leader, Targets::Leader) => seen_leader = true,
                        other => panic!("target and nodes disagree: {other:?}"),
                    },
                    Fault::Pause { target, nodes: t } => match (target, t) {
                        (PauseTarget::One, Targets::Nodes(v)) => assert_eq!(v.len(), 1),
                        (PauseTarget::Minority, Targets::Nodes(v)) => assert_eq!(v.len(), 2),
                        (PauseTarget::Leader, Targets::Leader) => {}
                        other => panic!("target and nodes disagree: {other:?}"),
                    },
                    Fault::Clock(ClockPlan::Bump { offsets }) => {
                        assert!(!offsets.is_empty());
                        for o in offsets.values() {
                            assert!(*o != 0 && o.abs() <= 60, "offset {o}");
                        }
                    }
                    Fault::Partition { order, .. } => {
                        let mut sorted = order.clone();
                        sorted.sort();
                        assert_eq!(sorted, nodes, "a permutation of the nodes");
                    }
                    Fault::Loss { nodes: lossy, .. } => {
                        assert!(!lossy.is_empty() && lossy.len() <= 5)
                    }
                    _ => {}
                }
            }
        }
        assert!(seen_leader, "leader targets are drawn too");
    }

    #[test]
    fn minority_is_less_than_half() {
        assert_eq!(minority_size(1), 1);
        assert_eq!(minority_size(3), 1);
        assert_eq!(minority_size(4), 1);
        assert_eq!(minority_size(5), 2);
        assert_eq!(minority_size(7), 3);
    }

    #[test]
    fn member_changes_are_starts_only_and_never_stop() {
        let spec = NemesisSpec {
            faults: vec![FaultKind::Member],
            interval: 2.0,
            ..Default::default()
        };
        let s = schedule(&spec, 7, &names(3), Duration::from_secs(30));
        assert!(s.len() >= 8, "{s:?}");
        for (at, a) in &s {
            assert!(*at < Duration::from_secs(30));
            assert!(matches!(a, Action::Start(Fault::Member { .. })), "{a:?}");
        }
        // Drawn from the seed: the same seed, the same picks.
        assert_eq!(s, schedule(&spec, 7, &names(3), Duration::from_secs(30)));
        assert_ne!(s, schedule(&spec, 8, &names(3), Duration::from_secs(30)));
    }

    #[test]
    fn faults_drawn_over_the_first_nodes_are_aimed_at_the_members_of_the_moment() {
        let members: Vec<String> = ["n1", "n3", "n4"].map(String::from).to_vec();
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // Nothing it names left: unchanged.
        let kill = Fault::Kill {
            target: KillTarget::One,
            nodes: Targets::Nodes(v(&["n3"])),
        };
        assert_eq!(kill.remap(&members, 1), kill);
        // A kill of a node that left hits a member it did not name, the same one per salt.
        let kill = Fault::Kill {
            target: KillTarget::Minority,
            nodes: Targets::Nodes(v(&["n2", "n3"])),
        };
        let Fault::Kill {
            nodes: Targets::Nodes(hit),
            ..
        } = kill.remap(&members, 1)
        else {
            panic!("still a kill");
        };
        assert_eq!(hit.len(), 2);
        assert_eq!(hit[0], "n3");
        assert!(hit[1] == "n1" || hit[1] == "n4", "{hit:?}");
        assert_eq!(kill.remap(&members, 1), kill.remap(&members, 1));
        // A partition keeps its order of the members it named and takes new ones at the end.
        let p = Fault::Partition {
            kind: PartitionKind::RandomHalves,
            order: v(&["n3", "n2", "n1"]),
        };
        assert_eq!(
            p.remap(&members, 1),
            Fault::Partition {
                kind: PartitionKind::RandomHalves,
                order: v(&["n3", "n1", "n4"]),
            }
        );
        // Clock offsets of nodes that left are dropped; none left, a reset.
        let bump = Fault::Clock(ClockPlan::Bump {
            offsets: BTreeMap::from([("n2".to_string(), 5)]),
        });
        assert_eq!(bump.remap(&members, 1), Fault::Clock(ClockPlan::Reset));
        // A delay hits every member.
        let delay = Fault::Delay {
            nodes: v(&["n1", "n2", "n3"]),
            delay_ms: 50,
            jitter_ms: 10,
        };
        assert!(matches!(delay.remap(&members, 1), Fault::Delay { nodes, .. } if nodes == members));
    }
}
