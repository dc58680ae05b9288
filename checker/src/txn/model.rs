//! Consistency models and the anomalies each forbids: the part of Elle's
//! `consistency_model.clj` (after Adya, Bailis et al., Cerone et al.) that covers the six models
//! Faultline names, restricted to the anomalies this checker can find.
//!
//! Every rw edge this checker infers is an item anti-dependency (there are no predicate reads),
//! so its `G-single` and `G-nonadjacent` are Elle's `G-single-item` and `G-nonadjacent-item`,
//! which imply `G2-item`: repeatable read forbids them too.
//!
//! Elle's table, spelled out (each model also forbids what the weaker ones forbid):
//! - read uncommitted (PL-1): `G0`, `duplicate-elements`;
//! - read committed (PL-2): `G1a`, `G1b`, `G1c` (and what implies them: `incompatible-order`,
//!   `dirty-update`, `future-read`);
//! - repeatable read (PL-2.99): `G2-item` and what implies it (`G-single`, `G-nonadjacent`,
//!   `lost-update`);
//! - snapshot isolation: `internal`, `G-single`, `G-nonadjacent`, `lost-update` (not `G2-item`:
//!   write skew is allowed);
//! - serializable (PL-3): the union of repeatable read and snapshot isolation;
//! - strict serializable: also every `-process` and `-realtime` cycle.
//!
//! Elle does not make repeatable read forbid `internal`; neither does this table.

use serde::{Deserialize, Serialize};

/// A transactional consistency model, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ConsistencyModel {
    /// Adya's PL-1: no write cycles (`G0`).
    ReadUncommitted,
    /// Adya's PL-2: no aborted, intermediate or circular reads (`G1`).
    ReadCommitted,
    /// Adya's PL-2.99: also no item anti-dependency cycles (`G2-item`), no lost updates.
    RepeatableRead,
    /// Snapshot isolation (Adya's PL-SI, generalized): no `G1`, no cycle whose rw edges are
    /// all non-adjacent, no lost update, internal consistency.
    SnapshotIsolation,
    /// Conflict serializability (Adya's PL-3): no dependency cycle at all.
    Serializable,
    /// Serializability in real-time order (Adya's PL-SS): no cycle even with real-time edges.
    #[default]
    StrictSerializable,
}

/// The six models, weakest first.
pub const ALL_MODELS: [ConsistencyModel; 6] = [
    ConsistencyModel::ReadUncommitted,
    ConsistencyModel::ReadCommitted,
    ConsistencyModel::RepeatableRead,
    ConsistencyModel::SnapshotIsolation,
    ConsistencyModel::Serializable,
    ConsistencyModel::StrictSerializable,
];

const RU: &[&str] = &["G0", "duplicate-elements"];
const RC: &[&str] = &[
    "G1a",
    "G1b",
    "G1c",
    "incompatible-order",
    "dirty-update",
    "future-read",
];
const RR: &[&str] = &["G-single", "G-nonadjacent", "G2-item", "lost-update"];
const SI: &[&str] = &["internal", "G-single", "G-nonadjacent", "lost-update"];
const SER: &[&str] = &["G2-item"];

impl ConsistencyModel {
    /// Parses a model's name: `read-uncommitted`, `read-committed`, `repeatable-read`,
    /// `snapshot-isolation`, `serializable`, `strict-serializable` (also Adya's `PL-1`, `PL-2`,
    /// `PL-2.99`, `PL-SI`, `PL-3`, `PL-SS`, and `strong-serializable`).
    ///
    /// # Errors
    /// A message listing the known names.
    pub fn parse(s: &str) -> Result<ConsistencyModel, String> {
        use ConsistencyModel::*;
        Ok(match s.trim().trim_start_matches(':') {
            "read-uncommitted" | "PL-1" => ReadUncommitted,
            "read-committed" | "PL-2" => ReadCommitted,
            "repeatable-read" | "PL-2.99" => RepeatableRead,
            "snapshot-isolation" | "PL-SI" | "si" => SnapshotIsolation,
            "serializable" | "PL-3" | "conflict-serializable" => Serializable,
            "strict-serializable" | "strong-serializable" | "PL-SS" => StrictSerializable,
            other => {
                return Err(format!(
                    "unknown consistency model {other:?} (known: read-uncommitted, \
                     read-committed, repeatable-read, snapshot-isolation, serializable, \
                     strict-serializable)"
                ));
            }
        })
    }

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        use ConsistencyModel::*;
        match self {
            ReadUncommitted => "read-uncommitted",
            ReadCommitted => "read-committed",
            RepeatableRead => "repeatable-read",
            SnapshotIsolation => "snapshot-isolation",
            Serializable => "serializable",
            StrictSerializable => "strict-serializable",
        }
    }

    /// True when every history this model allows is also allowed by `other` (a model implies
    /// itself). Repeatable read and snapshot isolation are incomparable.
    pub fn implies(self, other: ConsistencyModel) -> bool {
        use ConsistencyModel::*;
        match (self, other) {
            (a, b) if a == b => true,
            (RepeatableRead, SnapshotIsolation) | (SnapshotIsolation, RepeatableRead) => false,
            (a, b) => a > b,
        }
    }

    /// True when this model forbids the anomaly named `anomaly` (names as in
    /// [`TxnResult::anomalies`](super::TxnResult::anomalies)). Unknown names (such as
    /// `cycle-search-timeout`) are forbidden by none.
    pub fn forbids(self, anomaly: &str) -> bool {
        use ConsistencyModel::*;
        let (base, variant) = split_variant(anomaly);
        if variant.is_some() {
            // Process and real-time cycles only break real-time (and session) orders.
            return self == StrictSerializable && is_cycle(base);
        }
        let lists: &[&[&str]] = match self {
            ReadUncommitted => &[RU],
            ReadCommitted => &[RU, RC],
            RepeatableRead => &[RU, RC, RR],
            SnapshotIsolation => &[RU, RC, SI],
            Serializable | StrictSerializable => &[RU, RC, RR, SI, SER],
        };
        lists.iter().any(|l| l.contains(&base))
    }

    /// Whether the search must look at process and real-time edges.
    pub(crate) fn needs_realtime(self) -> bool {
        self == ConsistencyModel::StrictSerializable
    }

    /// Whether rw (anti-dependency) edges matter.
    pub(crate) fn needs_rw(self) -> bool {
        self >= ConsistencyModel::RepeatableRead
    }
}

impl std::fmt::Display for ConsistencyModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The cycle anomalies, most severe first.
pub(crate) const CYCLE_BASES: [&str; 5] = ["G0", "G1c", "G-single", "G-nonadjacent", "G2-item"];

fn is_cycle(base: &str) -> bool {
    CYCLE_BASES.contains(&base)
}

/// Splits `G0-process` into (`G0`, Some(`process`)).
pub(crate) fn split_variant(name: &str) -> (&str, Option<&str>) {
    for v in ["process", "realtime"] {
        if let Some(b) = name.strip_suffix(v).and_then(|b| b.strip_suffix('-'))
            && is_cycle(b)
        {
            return (b, Some(v));
        }
    }
    (name, None)
}

/// The models (of the six) that the anomalies found rule out: `not` the weakest of them (as
/// Elle's boundary), `also_not` the stronger rest.
pub(crate) fn boundary<'a>(
    anomalies: impl Iterator<Item = &'a str> + Clone,
) -> (Vec<ConsistencyModel>, Vec<ConsistencyModel>) {
    let out: Vec<ConsistencyModel> = ALL_MODELS
        .into_iter()
        .filter(|m| anomalies.clone().any(|a| m.forbids(a)))
        .collect();
    let (not, also): (Vec<_>, Vec<_>) = out
        .iter()
        .partition(|m| !out.iter().any(|o| o != *m && m.implies(*o)));
    (not, also)
}

/// Anomalies whose presence in an SCC makes searching for `name` there redundant (Elle's
/// implied anomalies, among cycles): a more severe base with an equal or weaker variant.
pub(crate) fn implies_cycle(found: &str, other: &str) -> bool {
    let (fb, fv) = split_variant(found);
    let (ob, ov) = split_variant(other);
    let rank = |v: Option<&str>| match v {
        None => 0,
        Some("process") => 1,
        _ => 2,
    };
    let base_implies = match fb {
        "G0" => matches!(ob, "G0" | "G1c"),
        "G1c" => ob == "G1c",
        "G-single" => matches!(ob, "G-single" | "G-nonadjacent" | "G2-item"),
        "G-nonadjacent" => matches!(ob, "G-nonadjacent" | "G2-item"),
        "G2-item" => ob == "G2-item",
        _ => false,
    };
    base_implies && rank(ov) >= rank(fv)
}

#[cfg(test)]
mod tests {
    use super::ConsistencyModel::*;
    use super::*;

    #[test]
    fn the_table_follows_elle() {
        assert!(ReadUncommitted.forbids("G0") && !ReadUncommitted.forbids("G1a"));
        assert!(ReadCommitted.forbids("G1c") && !ReadCommitted.forbids("G-single"));
        assert!(RepeatableRead.forbids("G2-item") && !RepeatableRead.forbids("internal"));
        assert!(SnapshotIsolation.forbids("G-single") && !SnapshotIsolation.forbids("G2-item"));
        assert!(SnapshotIsolation.forbids("lost-update"));
        assert!(Serializable.forbids("G2-item") && !Serializable.forbids("G2-item-realtime"));
        assert!(StrictSerializable.forbids("G0-process"));
        assert!(StrictSerializable.forbids("G-single-realtime"));
        assert!(!StrictSerializable.forbids("cycle-search-timeout"));
        for a in ["G0", "G1a", "internal", "G2-item", "lost-update"] {
            assert!(StrictSerializable.forbids(a), "{a}");
        }
    }

    #[test]
    fn boundary_names_the_weakest_models_ruled_out() {
        let (not, also) = boundary(["G2-item"].into_iter());
        assert_eq!(not, vec![RepeatableRead]);
        assert_eq!(also, vec![Serializable, StrictSerializable]);
        let (not, _) = boundary(["G-single"].into_iter());
        assert_eq!(not, vec![RepeatableRead, SnapshotIsolation]);
        let (not, also) = boundary(["G1c-realtime"].into_iter());
        assert_eq!((not, also), (vec![StrictSerializable], vec![]));
        assert_eq!(
            ConsistencyModel::parse("PL-SI").unwrap(),
            ConsistencyModel::SnapshotIsolation
        );
        assert!(ConsistencyModel::parse("linearizable").is_err());
    }

    #[test]
    fn implication_between_cycles() {
        assert!(implies_cycle("G0", "G1c-process"));
        assert!(!implies_cycle("G0-process", "G1c"));
        assert!(implies_cycle("G-single", "G2-item-realtime"));
        assert!(!implies_cycle("G1c", "G-single"));
        assert_eq!(
            split_variant("G2-item-realtime"),
            ("G2-item", Some("realtime"))
        );
        assert_eq!(split_variant("lost-update"), ("lost-update", None));
    }
}
