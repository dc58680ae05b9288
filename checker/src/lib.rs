//! Faultline's checker: reads histories and judges them.
//!
//! Layout:
//! - [`history`]: ops as recorded, paired into operations, validated.
//! - `format`: readers for Faultline's `history.jsonl` and Jepsen's EDN ([`read_history`]).
//! - [`model`]: sequential specifications (CAS register, kv, list-append, mutex,
//!   multi-register) behind the small [`Model`] trait.
//! - `linearizable`: the memoized, partitioned Wing-Gong/Lowe search ([`check`]).
//! - `counterexample`: what an `invalid` verdict shows, as JSON and SVG ([`Counterexample`]).
//! - `stats`: counts per function, outcome and key ([`stats()`]).
//! - [`perf`]: latency per op, latency quantiles per window, throughput per second ([`Perf`]).
//! - [`availability`]: nemesis intervals, availability per second, recovery after faults,
//!   the leader timeline.
//! - [`plot`]: the report's SVG plots (plotters), nemesis intervals shaded.
//! - [`report`]: `report.html`, the results index and `compare.html`, self-contained HTML.
//!
//! What `faultline run` calls:
//! ```no_run
//! let history = faultline_checker::read_history("results/x/history.jsonl".as_ref())?;
//! let result = faultline_checker::check(&history, &faultline_checker::CheckOptions::default())?;
//! if let Some(c) = result.counterexample() { std::fs::write("counterexample.svg", &c.svg)?; }
//! let results = faultline_checker::Results::new(result, faultline_checker::stats(&history));
//! std::fs::write("results.json", serde_json::to_string_pretty(&results)?)?;
//! std::process::exit(results.valid.exit_code());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod availability;
mod counterexample;
mod error;
mod format;
pub mod history;
mod linearizable;
pub mod model;
pub mod perf;
pub mod plot;
pub mod report;
mod stats;

pub use availability::{StatusSample, parse_status};
pub use counterexample::{Counterexample, OpSummary};
pub use error::Error;
pub use format::{parse_edn, parse_edn_value, parse_history, parse_jsonl, read_history};
pub use history::{History, Op, OpType, Operation, Outcome, Process};
pub use linearizable::{CheckOptions, CheckResult, KeyResult, check, check_with};
pub use model::{Model, ModelKind};
pub use perf::Perf;
pub use stats::{Counts, Stats, stats};

use serde::{Deserialize, Serialize};

/// A checker's verdict. Ordered `Valid < Unknown < Invalid`, so the verdict of several checkers
/// (or keys) is their `max()`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    /// The property holds.
    #[default]
    Valid,
    /// The checker could not decide (budget exhausted, or not enough information).
    Unknown,
    /// The property is violated.
    Invalid,
}

impl Validity {
    /// `valid`, `unknown` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Unknown => "unknown",
            Validity::Invalid => "invalid",
        }
    }

    /// The exit code `faultline` uses: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

impl std::fmt::Display for Validity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run's `results.json` holds: the overall verdict, the linearizability result and
/// the stats. `valid` is the linearizability verdict (stats are informational).
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The overall verdict.
    pub valid: Validity,
    /// The linearizability check.
    pub linearizable: CheckResult,
    /// Outcome counts.
    pub stats: Stats,
}

impl Results {
    /// Bundles a check result with the history's stats.
    pub fn new(linearizable: CheckResult, stats: Stats) -> Results {
        Results {
            valid: linearizable.valid,
            linearizable,
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Validity::*;

    #[test]
    fn validity_composes_by_max() {
        assert_eq!([Valid, Unknown, Valid].into_iter().max(), Some(Unknown));
        assert_eq!([Unknown, Invalid, Valid].into_iter().max(), Some(Invalid));
        assert!(Valid < Unknown && Unknown < Invalid);
    }
}
