//! What the workload asks of the nemesis: the `[nemesis]` table of a workload TOML, and the
//! `--nemesis partition,kill` override.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a kebab-case enum with its list of names, `Display`, `FromStr` (the error lists the
/// allowed names) and serde in the same spelling.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The kebab-case name used in TOML, on the command line and in the history.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        given: s.to_string(),
                        allowed: $name::ALL.iter().map(|v| v.as_str()).collect(),
                    })
            }
        }
    };
}

named_enum!(
    /// A family of faults (DESIGN.md, Faults).
    FaultKind, "fault" {
        /// iptables `DROP` by source address in each node's own `FAULTLINE` chain.
        Partition => "partition",
        /// `SIGKILL` of containers, restarted later.
        Kill => "kill",
        /// `docker pause` (cgroup freezer), unpaused later.
        Pause => "pause",
        /// Wall-clock offsets through libfaketime.
        Clock => "clock",
        /// Random packet loss (iptables `statistic`).
        Loss => "loss",
        /// Packet delay (`tc netem`), where the kernel has `sch_netem`.
        Delay => "delay",
        /// fsync and fdatasync block on the targets' data directory (faultfs's `stall`), while
        /// the rest of the process runs: a disk that stops answering. The nodes then run on
        /// faultfs.
        Stall => "stall",
        /// A power failure: SIGKILL of nodes on faultfs, so what they had not fsynced is lost,
        /// then a restart (`power-targets`; `all` is the coordinated power failure).
        Power => "power",
        /// On a fixed minority chosen at the start of the run, a node is killed, bits of its
        /// data files are flipped or their tails cut (`corrupt-kinds`), and it is restarted.
        Corrupt => "corrupt",
        /// Membership changes while the clients run (`member-ops`): a voter removed (its
        /// container stopped and its data wiped), a fresh node added (started empty, joined as
        /// a learner, promoted once caught up), or one replaced (removed, then a fresh one
        /// added). Never below a majority of the original size, never above `member-max`.
        Member => "member",
    }
);

named_enum!(
    /// A membership change of the `member` fault.
    MemberOp, "member op" {
        /// Remove a voter; its container is stopped and its data wiped.
        Remove => "remove",
        /// Start a fresh node with an empty data directory, join it as a learner, promote it.
        Add => "add",
        /// Remove a voter, then add a fresh node in its place (a disk replaced).
        Replace => "replace",
    }
);

named_enum!(
    /// How the `corrupt` fault damages a data file.
    CorruptKind, "corrupt kind" {
        /// Flip `corrupt-bitflips` random bits.
        Bitflip => "bitflip",
        /// Cut a random tail of up to `corrupt-truncate-max` bytes.
        Truncate => "truncate",
    }
);

named_enum!(
    /// How a partition splits the cluster.
    PartitionKind, "partition kind" {
        /// The node list cut in two (first half smaller), in configured order.
        Halves => "halves",
        /// Two halves of a shuffled node list.
        RandomHalves => "random-halves",
        /// Every node sees a majority, no two see the same one (Jepsen's `majorities-ring`).
        MajoritiesRing => "majorities-ring",
        /// One random node cut off from all others.
        IsolateOne => "isolate-one",
        /// The current leader cut off from all others (resolved when applied).
        IsolateLeader => "isolate-leader",
        /// Two halves that both still reach one bridge node.
        Bridge => "bridge",
        /// Two halves; the first drops the second's packets, the second still hears the first.
        OneWay => "one-way",
    }
);

named_enum!(
    /// Which nodes a kill hits.
    KillTarget, "kill target" {
        /// One random node.
        One => "one",
        /// The current leader (resolved when applied).
        Leader => "leader",
        /// A random minority, `(n - 1) / 2` nodes (at least one).
        Minority => "minority",
        /// Every node.
        All => "all",
    }
);

named_enum!(
    /// Which nodes a pause hits.
    PauseTarget, "pause target" {
        /// One random node.
        One => "one",
        /// The current leader (resolved when applied).
        Leader => "leader",
        /// A random minority, `(n - 1) / 2` nodes (at least one).
        Minority => "minority",
    }
);

named_enum!(
    /// What a clock fault does.
    ClockKind, "clock kind" {
        /// Some nodes jump by a random offset within `clock-max-offset`, either direction.
        Bump => "bump",
        /// Every node jumps by its own random offset within `clock-max-offset`, either direction.
        BumpAll => "bump-all",
        /// One node's clock flips between `+0s` and an offset every `clock-strobe-period-ms`.
        Strobe => "strobe",
        /// Every node back to `+0s`.
        Reset => "reset",
    }
);

named_enum!(
    /// A scripted nemesis: a sequence of steps that reacts to what the cluster does.
    Script, "script" {
        /// The Raft paper's Figure 8 on three raftkv nodes, with run-time failpoints: a leader
        /// stalls with a new entry on its disk only; the next leader stalls with a different
        /// entry at that index; the first comes back, wins a later term, replicates its old
        /// entry to one follower and stalls the moment its commit index moves; the second
        /// comes back and wins with the follower's vote. Under Raft's rule that moment comes
        /// only after an entry of the current term reached the follower, which then refuses
        /// the second its vote.
        #[serde(rename = "figure-8")]
        Figure8 => "figure-8",
        /// A voter asked again in the same term after a crash, on three raftkv nodes with
        /// run-time failpoints: the leader is killed; the next leader pauses before its first
        /// entry leaves, while the node that voted for it crashes right after its vote; the
        /// old leader comes back and, with the restarted voter, elects a leader; then the
        /// paused one is released. A voter that remembers its vote grants none in that term
        /// again, so the second leader's term is later and the first steps down.
        Revote => "revote",
    }
);

/// A name that is not one of the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`; allowed: {}", allowed.join(", "))]
pub struct UnknownName {
    /// What kind of name was expected.
    pub what: &'static str,
    /// What was given.
    pub given: String,
    /// The names that would have been accepted.
    pub allowed: Vec<&'static str>,
}

/// A comma-separated list of fault kinds, as given to `--nemesis partition,kill`. `none` or an
/// empty string means no faults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults(pub Vec<FaultKind>);

impl FromStr for Faults {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(Faults(Vec::new()));
        }
        let mut out = Vec::new();
        for part in s.split(',') {
            let kind: FaultKind = part.parse()?;
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        Ok(Faults(out))
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.0.iter().map(|k| k.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// The `[nemesis]` table of a workload. Every field has a default, so an empty table (or none)
/// means "no faults".
///
/// ```toml
/// [nemesis]
/// faults = ["partition", "kill"]
/// interval = 10.0
/// partition-kinds = ["majorities-ring", "isolate-leader"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct NemesisSpec {
    /// Fault families to draw from; one fault is active at a time unless `concurrent`.
    /// Default: none.
    pub faults: Vec<FaultKind>,
    /// Seconds a fault stays on, and then off, before jitter. Default 10.
    pub interval: f64,
    /// Relative jitter of every on and off period, in `[0, 1)`: `0.5` means 50 % to 150 % of
    /// `interval`. Default 0.5.
    pub jitter: f64,
    /// Partition kinds to draw from. Default: all.
    pub partition_kinds: Vec<PartitionKind>,
    /// Kill targets to draw from. Default: one, leader, minority, all.
    pub kill_targets: Vec<KillTarget>,
    /// Pause targets to draw from. Default: one, leader, minority.
    pub pause_targets: Vec<PauseTarget>,
    /// Stall targets to draw from (same names as pauses). Default: leader.
    pub stall_targets: Vec<PauseTarget>,
    /// Power failure targets to draw from (same names as kills). Default: all.
    pub power_targets: Vec<KillTarget>,
    /// How `corrupt` damages files. Default: bitflip, truncate.
    pub corrupt_kinds: Vec<CorruptKind>,
    /// Bits a `bitflip` flips in each file it damages. Default 2.
    pub corrupt_bitflips: u32,
    /// Most bytes a `truncate` cuts from a file's tail. Default 1023.
    pub corrupt_truncate_max: u64,
    /// Files damaged per `corrupt`. Default 1.
    pub corrupt_files: u32,
    /// Which files of a node's data directory `corrupt` may damage (globs relative to it, `*`
    /// within a path component, `**` across). Default: the target's log and snapshot files.
    pub corrupt_globs: Vec<String>,
    /// Clock fault kinds to draw from. Default: bump, strobe, reset.
    pub clock_kinds: Vec<ClockKind>,
    /// Largest clock offset, in whole seconds, either direction. Default 60.
    pub clock_max_offset: u32,
    /// How often a strobed clock flips, in milliseconds. libfaketime with
    /// `FAKETIME_CACHE_DURATION=1` sees a new offset within about 1.5 s, so shorter periods are
    /// partly invisible. Default 2000.
    pub clock_strobe_period_ms: u64,
    /// Probability that a node drops an incoming packet, in `(0, 1]`. Default 0.2.
    pub loss_probability: f64,
    /// Added delay in milliseconds (netem). Default 50.
    pub delay_ms: u64,
    /// Delay jitter in milliseconds (netem). Default 10.
    pub delay_jitter_ms: u64,
    /// Partitions only: each new partition replaces the active one at once, with no healed
    /// period between, so an `isolate-leader` moves the cut from the deposed leader straight to
    /// whoever leads now. The deposed leader rejoins a cluster whose leader it never followed,
    /// the situation in which a follower's log must be repaired by the consistency check of
    /// AppendEntries. Requires `faults = ["partition"]`. Default false.
    pub handover: bool,
    /// Every fault family on its own timeline, as Jepsen's combined nemesis does: faults of
    /// different families overlap (a clock jump during a partition, say), while each family
    /// still has at most one fault active. Default false: one fault at a time.
    pub concurrent: bool,
    /// Seconds (0: never) to isolate the leader of the moment each time a node exits by itself
    /// at a raftkv failpoint (exit code 86), as when a crash and a partition coincide: the
    /// crashed node comes back to a cluster whose leader it cannot hear. The only partition of
    /// such a run, so `partition` must not be among the scheduled faults. Default 0.
    pub isolate_leader_on_crash: f64,
    /// Membership changes to draw from (`member`); an op that would leave fewer voters than a
    /// majority of the original cluster, or more than `member-max`, gives way to one that
    /// would not. Default: remove, add, replace.
    pub member_ops: Vec<MemberOp>,
    /// Most voters the `member` fault grows the cluster to. Default: the workload's `nodes`
    /// plus 2.
    pub member_max: Option<usize>,
    /// Seconds between membership changes, before jitter, when `member` has a timeline of its
    /// own (`concurrent`). Default: `interval`.
    pub member_interval: Option<f64>,
    /// Seconds one membership change may take (a joining node must catch up before its
    /// promotion) before its outcome is `indeterminate`. Default 20.
    pub member_timeout: f64,
    /// A scripted nemesis run in rounds, `interval` seconds apart, in place of a schedule
    /// (`faults` must then be empty). raftkv only: it arms failpoints over raftkv's
    /// `/failpoints` API, so the nodes need `--failpoint-api`. Default: none.
    pub script: Option<Script>,
}

impl Default for NemesisSpec {
    fn default() -> Self {
        Self {
            faults: Vec::new(),
            interval: 10.0,
            jitter: 0.5,
            partition_kinds: PartitionKind::ALL.to_vec(),
            kill_targets: KillTarget::ALL.to_vec(),
            pause_targets: PauseTarget::ALL.to_vec(),
            stall_targets: vec![PauseTarget::Leader],
            power_targets: vec![KillTarget::All],
            corrupt_kinds: CorruptKind::ALL.to_vec(),
            corrupt_bitflips: 2,
            corrupt_truncate_max: 1023,
            corrupt_files: 1,
            corrupt_globs: Vec::new(),
            clock_kinds: ClockKind::ALL.to_vec(),
            clock_max_offset: 60,
            clock_strobe_period_ms: 2000,
            loss_probability: 0.2,
            delay_ms: 50,
            delay_jitter_ms: 10,
            handover: false,
            concurrent: false,
            isolate_leader_on_crash: 0.0,
            member_ops: MemberOp::ALL.to_vec(),
            member_max: None,
            member_interval: None,
            member_timeout: 20.0,
            script: None,
        }
    }
}

/// A spec whose values are out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nemesis: {0}")]
pub struct InvalidSpec(pub String);

impl NemesisSpec {
    /// Checks the ranges serde cannot: positive interval, jitter in `[0, 1)`, non-empty choice
    /// lists for the chosen faults, a probability in `(0, 1]`, a non-zero clock bound.
    ///
    /// # Errors
    /// [`InvalidSpec`] naming the field and what is allowed.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        let bad = |m: &str| Err(InvalidSpec(m.to_string()));
        if !(self.interval.is_finite() && self.interval > 0.0) {
            return bad("`interval` must be a positive number of seconds");
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return bad("`jitter` must be in [0, 1)");
        }
        let on = |k| self.faults.contains(&k);
        if on(FaultKind::Partition) && self.partition_kinds.is_empty() {
            return bad("`partition-kinds` is empty but `partition` is among the faults");
        }
        if on(FaultKind::Kill) && self.kill_targets.is_empty() {
            return bad("`kill-targets` is empty but `kill` is among the faults");
        }
        if on(FaultKind::Pause) && self.pause_targets.is_empty() {
            return bad("`pause-targets` is empty but `pause` is among the faults");
        }
        if on(FaultKind::Stall) && self.stall_targets.is_empty() {
            return bad("`stall-targets` is empty but `stall` is among the faults");
        }
        if on(FaultKind::Power) && self.power_targets.is_empty() {
            return bad("`power-targets` is empty but `power` is among the faults");
        }
        if on(FaultKind::Corrupt) && self.corrupt_kinds.is_empty() {
            return bad("`corrupt-kinds` is empty but `corrupt` is among the faults");
        }
        if self.corrupt_bitflips == 0 || self.corrupt_truncate_max == 0 || self.corrupt_files == 0 {
            return bad(
                "`corrupt-bitflips`, `corrupt-truncate-max` and `corrupt-files` must be at least 1",
            );
        }
        if on(FaultKind::Kill) && on(FaultKind::Power) && self.concurrent {
            return bad(
                "`kill` and `power` both stop nodes: with `concurrent` they would skip each other",
            );
        }
        if on(FaultKind::Member) && self.member_ops.is_empty() {
            return bad("`member-ops` is empty but `member` is among the faults");
        }
        if self
            .member_interval
            .is_some_and(|i| !(i.is_finite() && i > 0.0))
        {
            return bad("`member-interval` must be a positive number of seconds");
        }
        if !(self.member_timeout.is_finite() && self.member_timeout > 0.0) {
            return bad("`member-timeout` must be a positive number of seconds");
        }
        if on(FaultKind::Clock) && self.clock_kinds.is_empty() {
            return bad("`clock-kinds` is empty but `clock` is among the faults");
        }
        if self.clock_max_offset == 0 {
            return bad("`clock-max-offset` must be at least 1 second");
        }
        if self.clock_strobe_period_ms == 0 {
            return bad("`clock-strobe-period-ms` must be positive");
        }
        if !(self.loss_probability > 0.0 && self.loss_probability <= 1.0) {
            return bad("`loss-probability` must be in (0, 1]");
        }
        if !(self.isolate_leader_on_crash.is_finite() && self.isolate_leader_on_crash >= 0.0) {
            return bad("`isolate-leader-on-crash` must be a number of seconds, 0 or more");
        }
        if self.isolate_leader_on_crash > 0.0 && on(FaultKind::Partition) {
            return bad(
                "`isolate-leader-on-crash` needs `partition` out of `faults`: its isolation is the run's only partition",
            );
        }
        if self.script.is_some() && (!self.faults.is_empty() || self.isolate_leader_on_crash > 0.0)
        {
            return bad(
                "`script` runs alone: `faults` must be empty and `isolate-leader-on-crash` 0",
            );
        }
        if self.handover && self.faults != [FaultKind::Partition] {
            return bad(
                "`handover` needs `faults = [\"partition\"]`: partitions replace each other, so no other fault can sit between them",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_override_parses_a_comma_list_and_rejects_unknown_names_listing_the_allowed_ones() {
        let f: Faults = "partition, kill,partition".parse().unwrap();
        assert_eq!(f.0, vec![FaultKind::Partition, FaultKind::Kill]);
        assert_eq!(f.to_string(), "partition,kill");
        assert_eq!("none".parse::<Faults>().unwrap().0, vec![]);
        let err = "partition,explode".parse::<Faults>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`explode`"), "{msg}");
        assert!(
            msg.contains("partition, kill, pause, clock, loss, delay"),
            "{msg}"
        );
    }

    #[test]
    fn toml_table_uses_kebab_case_with_defaults_and_denies_unknown_fields() {
        let spec: NemesisSpec = toml::from_str(
            r#"
            faults = ["partition", "clock"]
            interval = 5.0
            partition-kinds = ["majorities-ring", "one-way"]
            clock-max-offset = 30
            "#,
        )
        .unwrap();
        assert_eq!(spec.faults, vec![FaultKind::Partition, FaultKind::Clock]);
        assert_eq!(spec.interval, 5.0);
        assert_eq!(
            spec.partition_kinds,
            vec![PartitionKind::MajoritiesRing, PartitionKind::OneWay]
        );
        assert_eq!(spec.clock_max_offset, 30);
        assert_eq!(spec.kill_targets, KillTarget::ALL.to_vec());
        assert_eq!(spec.loss_probability, 0.2);
        spec.validate().unwrap();

        let err = toml::from_str::<NemesisSpec>("fautls = [\"kill\"]").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<NemesisSpec>("pause-targets = [\"all\"]").unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
        assert_eq!(
            toml::from_str::<NemesisSpec>("").unwrap(),
            NemesisSpec::default()
        );
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        let ok = NemesisSpec::default();
        ok.validate().unwrap();
        for (spec, field) in [
            (
                NemesisSpec {
                    interval: 0.0,
                    ..ok.clone()
                },
                "interval",
            ),
            (
                NemesisSpec {
                    jitter: 1.0,
                    ..ok.clone()
                },
                "jitter",
            ),
            (
                NemesisSpec {
                    loss_probability: 0.0,
                    ..ok.clone()
                },
                "loss-probability",
            ),
            (
                NemesisSpec {
                    isolate_leader_on_crash: -1.0,
                    ..ok.clone()
                },
                "isolate-leader-on-crash",
            ),
            (
                NemesisSpec {
                    faults: vec![FaultKind::Partition, FaultKind::Kill],
                    isolate_leader_on_crash: 3.0,
                    ..ok.clone()
                },
                "isolate-leader-on-crash",
            ),
            (
                NemesisSpec {
                    faults: vec![FaultKind::Kill],
                    script: Some(Script::Figure8),
                    ..ok.clone()
                },
                "script",
            ),
            (
                NemesisSpec {
                    faults: vec![FaultKind::Kill],
                    kill_targets: vec![],
                    ..ok.clone()
                },
                "kill-targets",
            ),
        ] {
            let err = spec.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
