//! The lease checker: a lease whose keepalives etcd acknowledged within its TTL must not be
//! revoked, and the keys attached to it must not vanish, while it lives.
//!
//! Why the bound is sound without a shared clock with etcd: an acknowledged keepalive `k`
//! (`ok`, `ttl > 0`) was processed by the leader at some moment `p` between its invocation and
//! its completion, and that set the lease's expiry to `p + TTL >= invoke(k) + TTL`. Leader
//! changes only extend leases (a new leader refreshes every lease on promotion). An `ok` grant
//! likewise promises the lease lives until at least `invoke(grant) + TTL`. So the lease must
//! exist until `invoke(k) + TTL` for every such `k`.
//!
//! An observation that the lease is gone happened at the latest at its completion `c`:
//! - a keepalive answered with `ttl <= 0` (etcd says the lease does not exist),
//! - a put with that lease that failed definitely with "lease not found",
//! - a get, invoked after an `ok` put of that key with that lease had completed, that returns
//!   nothing or a value of another lease, when no other write of that key (a delete, a put
//!   without that lease, not failed) could have come in between.
//!
//! If `c + tolerance < invoke(k) + TTL` for some promise `k` of the same lease, the history is
//! invalid: either the lease was gone before `k` was processed (a revoked lease came back) or it
//! was revoked before the expiry `k` set. The first is `revoked-while-kept-alive` (keepalive and
//! put evidence), the second kind is `key-vanished` (get evidence). The tolerance absorbs how
//! late the harness records a completion it has already received. A lease some client asked to
//! revoke (`lease-revoke`, not failed, invoked before the observation completed) proves nothing.
//!
//! This module never reads files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ahash::HashMap;
use serde::Serialize;
use serde_json::Value;

use crate::Validity;
use crate::history::{History, Operation, Outcome};

/// How to judge leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOptions {
    /// An observation must come at least this much before a promised expiry to count.
    pub tolerance: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            tolerance: Duration::from_millis(100),
        }
    }
}

/// What a lease violation is evidence of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseViolationKind {
    /// A keepalive or a put found the lease gone before an acknowledged promise ran out.
    RevokedWhileKeptAlive,
    /// A key attached to the lease was gone before an acknowledged promise ran out.
    KeyVanished,
}

impl LeaseViolationKind {
    /// The name as serialized.
    pub fn name(self) -> &'static str {
        match self {
            LeaseViolationKind::RevokedWhileKeptAlive => "revoked-while-kept-alive",
            LeaseViolationKind::KeyVanished => "key-vanished",
        }
    }
}

/// A client operation as a violation shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseOpView {
    /// `lease-grant`, `lease-keepalive`, `put` or `get`.
    pub f: String,
    /// The client process.
    pub process: u64,
    /// The member it talked to.
    pub node: Option<String>,
    /// The key, for puts and gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The invocation's history `index`.
    pub invoke_index: u64,
    /// Invocation time, ns since the run started.
    pub invoke_time: Option<u64>,
    /// The completion's history `index`.
    pub complete_index: Option<u64>,
    /// Completion time, ns since the run started.
    pub complete_time: Option<u64>,
    /// The completion's value.
    pub value: Value,
    /// The completion's `error`, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LeaseOpView {
    fn new(history: &History, o: &Operation) -> LeaseOpView {
        let inv = history.invocation(o);
        let done = history.completion(o);
        LeaseOpView {
            f: inv.f.clone(),
            process: o.process,
            node: inv.node.clone(),
            key: history.key(o).map(str::to_string),
            invoke_index: inv.index,
            invoke_time: inv.time,
            complete_index: done.map(|d| d.index),
            complete_time: done.and_then(|d| d.time),
            value: done.map_or(Value::Null, |d| d.value.clone()),
            error: done.and_then(|d| d.error.clone()),
        }
    }
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseViolation {
    /// What the observation shows.
    pub kind: LeaseViolationKind,
    /// The lease.
    pub lease: i64,
    /// The key that vanished (`key-vanished`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What went wrong, in one sentence.
    pub message: String,
    /// When the observation completed, ns since the run started.
    pub time: u64,
    /// The observation's completion `index`.
    pub index: u64,
    /// The operation that found the lease (or its key) gone.
    pub observation: LeaseOpView,
    /// The acknowledged grant or keepalive that promised it would live longer.
    pub promise: LeaseOpView,
    /// The promised expiry: the promise's invocation + its TTL, ns since the run started.
    pub promised_until: u64,
    /// The promise's TTL, seconds.
    pub ttl: i64,
    /// How long before the promised expiry the observation completed, ms.
    pub early_ms: f64,
}

/// What the lease checker saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeaseCounts {
    /// Distinct leases with an acknowledged grant or keepalive.
    pub leases: usize,
    /// `ok` grants.
    pub grants: usize,
    /// `ok` keepalives with `ttl > 0`.
    pub keepalives_ok: usize,
    /// Observations that a lease or its key was gone.
    pub observations: usize,
}

/// The lease checker's verdict, `results.json`'s `lease`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseResult {
    /// `invalid` when a lease or its key was gone before a promised expiry.
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was seen.
    pub counts: LeaseCounts,
    /// The tolerance used, ms.
    pub tolerance_ms: f64,
    /// Violations of each kind (all of them, not only those listed).
    pub violation_counts: BTreeMap<LeaseViolationKind, usize>,
    /// The violations, the earliest twenty of each kind, by kind then time.
    pub violations: Vec<LeaseViolation>,
    /// When the first violation happened, ns since the run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_violation_ns: Option<u64>,
    /// Operations that could not be judged (no times, a lease or ttl missing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Wall-clock time of the check.
    pub elapsed_ms: f64,
}

impl LeaseResult {
    /// When the first violation happened (time since the run started), for the detection
    /// matrix's time to the first anomaly.
    pub fn first_violation_time(&self) -> Option<Duration> {
        self.first_violation_ns.map(Duration::from_nanos)
    }

    /// Total violations.
    pub fn violation_count(&self) -> usize {
        self.violation_counts.values().sum()
    }
}

/// Most violations listed per kind (all are counted).
const MAX_LISTED: usize = 20;

/// A promise: the lease lives at least until `until`.
#[derive(Debug, Clone, Copy)]
struct Promise {
    invoked: u64,
    until: u64,
    ttl: i64,
    operation: usize,
}

#[derive(Debug, Clone)]
struct Observation {
    kind: LeaseViolationKind,
    lease: i64,
    at: u64,
    operation: usize,
    key: Option<String>,
}

/// A put or delete of a key, for deciding whether a get's missing key is explained by a write.
#[derive(Debug, Clone, Copy)]
struct KeyWrite {
    operation: usize,
    lease: Option<i64>,
    invoked: u64,
    /// `None`: indeterminate, may take effect any time after `invoked`.
    completed: Option<u64>,
    ok: bool,
}

fn lease_of(v: &Value) -> Option<i64> {
    v.get("lease").and_then(Value::as_i64).filter(|&l| l != 0)
}

fn ttl_of(v: &Value) -> Option<i64> {
    v.get("ttl").and_then(Value::as_i64)
}

const NS_PER_S: u64 = 1_000_000_000;

/// Checks that leases kept alive were not revoked, and their keys did not vanish, early.
pub fn check_lease(history: &History, opts: &LeaseOptions) -> LeaseResult {
    let started = Instant::now();
    let tolerance = opts.tolerance.as_nanos() as u64;
    let mut counts = LeaseCounts::default();
    let mut warnings = Vec::new();
    let mut promises: HashMap<i64, Vec<Promise>> = HashMap::default();
    let mut observations: Vec<Observation> = Vec::new();
    let mut revoked: HashMap<i64, u64> = HashMap::default();
    let mut writes: HashMap<&str, Vec<KeyWrite>> = HashMap::default();
    let mut gets: Vec<usize> = Vec::new();
    let mut lease_ops = 0;
    let mut warn = |o: &Operation, what: &str| {
        if warnings.len() < MAX_LISTED {
            warnings.push(format!(
                "{} at index {}: {what}",
                history.invocation(o).f,
                history.invocation(o).index
            ));
        }
    };
    for (i, o) in history.operations.iter().enumerate() {
        let inv = history.invocation(o);
        let done = history.completion(o);
        let done_value = done.map_or(&Value::Null, |d| &d.value);
        let ok = o.outcome == Outcome::Ok;
        match inv.f.as_str() {
            "lease-grant" | "lease-keepalive" => {
                lease_ops += 1;
                if !ok {
                    continue;
                }
                let (Some(lease), Some(ttl)) = (
                    lease_of(done_value).or_else(|| lease_of(&inv.value)),
                    ttl_of(done_value),
                ) else {
                    warn(o, "ok without a lease or a ttl: not judged");
                    continue;
                };
                let (Some(invoked), Some(completed)) = (inv.time, done.and_then(|d| d.time)) else {
                    warn(o, "no times recorded: not judged");
                    continue;
                };
                if inv.f == "lease-grant" {
                    counts.grants += 1;
                }
                if ttl > 0 {
                    if inv.f == "lease-keepalive" {
                        counts.keepalives_ok += 1;
                    }
                    promises.entry(lease).or_default().push(Promise {
                        invoked,
                        until: invoked + ttl as u64 * NS_PER_S,
                        ttl,
                        operation: i,
                    });
                } else if inv.f == "lease-keepalive" {
                    observations.push(Observation {
                        kind: LeaseViolationKind::RevokedWhileKeptAlive,
                        lease,
                        at: completed,
                        operation: i,
                        key: None,
                    });
                }
            }
            "lease-revoke" => {
                lease_ops += 1;
                if let (Some(lease), Some(t), false) =
                    (lease_of(&inv.value), inv.time, o.outcome == Outcome::Fail)
                {
                    let r = revoked.entry(lease).or_insert(t);
                    *r = (*r).min(t);
                }
            }
            "put" | "delete" => {
                let lease = lease_of(&inv.value);
                let failed_not_found = o.outcome == Outcome::Fail
                    && done
                        .and_then(|d| d.error.as_deref())
                        .is_some_and(|e| e.to_ascii_lowercase().contains("lease not found"));
                if let (Some(lease), true, Some(at)) =
                    (lease, failed_not_found, done.and_then(|d| d.time))
                {
                    observations.push(Observation {
                        kind: LeaseViolationKind::RevokedWhileKeptAlive,
                        lease,
                        at,
                        operation: i,
                        key: None,
                    });
                }
                if let (Some(key), Some(invoked), false) =
                    (history.key(o), inv.time, o.outcome == Outcome::Fail)
                {
                    writes.entry(key).or_default().push(KeyWrite {
                        operation: i,
                        lease: if inv.f == "put" { lease } else { None },
                        invoked,
                        completed: if ok { done.and_then(|d| d.time) } else { None },
                        ok: ok && inv.f == "put",
                    });
                }
            }
            "get" if ok => gets.push(i),
            _ => {}
        }
    }
    counts.leases = promises.len();
    for &g in &gets {
        if let Some(obs) = vanished(history, g, &writes) {
            observations.push(obs);
        }
    }
    counts.observations = observations.len();
    for p in promises.values_mut() {
        p.sort_by_key(|p| p.invoked);
    }
    // Prefix maxima of the promised expiry, per lease, in order of invocation.
    let best: HashMap<i64, Vec<usize>> = promises
        .iter()
        .map(|(&l, ps)| {
            let mut best: Vec<usize> = Vec::with_capacity(ps.len());
            for (j, p) in ps.iter().enumerate() {
                let b = match best.last() {
                    Some(&b) if ps[b].until >= p.until => b,
                    _ => j,
                };
                best.push(b);
            }
            (l, best)
        })
        .collect();

    let mut violations: Vec<LeaseViolation> = Vec::new();
    let mut violation_counts: BTreeMap<LeaseViolationKind, usize> = BTreeMap::new();
    let mut first: Option<u64> = None;
    for obs in &observations {
        if revoked.get(&obs.lease).is_some_and(|&t| t <= obs.at) {
            continue;
        }
        let Some(ps) = promises.get(&obs.lease) else {
            continue;
        };
        // The promise in force (invoked by then) with the latest expiry; else the first made
        // after it, which found a lease already reported gone.
        let before = ps.partition_point(|p| p.invoked <= obs.at);
        let candidate = match before {
            0 => None,
            n => Some(best[&obs.lease][n - 1]),
        }
        .filter(|&j| obs.at + tolerance < ps[j].until)
        .or_else(|| (before < ps.len() && obs.at + tolerance < ps[before].until).then_some(before));
        let Some(j) = candidate else {
            continue;
        };
        let p = ps[j];
        *violation_counts.entry(obs.kind).or_default() += 1;
        first = Some(first.map_or(obs.at, |f| f.min(obs.at)));
        let observation = LeaseOpView::new(history, &history.operations[obs.operation]);
        let promise = LeaseOpView::new(history, &history.operations[p.operation]);
        let early_ms = (p.until - obs.at) as f64 / 1e6;
        let came_back = p.invoked > obs.at;
        let seen = match (obs.kind, observation.f.as_str()) {
            (LeaseViolationKind::KeyVanished, _) => format!(
                "a get of {} (index {}) found the key gone or of another lease",
                obs.key.as_deref().unwrap_or("?"),
                observation.invoke_index
            ),
            (_, "lease-keepalive") => format!(
                "a keepalive (index {}) was answered ttl {}",
                observation.invoke_index,
                ttl_of(&observation.value).unwrap_or(0)
            ),
            (_, f) => format!(
                "a {f} (index {}) failed with {:?}",
                observation.invoke_index,
                observation.error.as_deref().unwrap_or_default()
            ),
        };
        let message = if came_back {
            format!(
                "Lease {} was gone ({seen}, {:.3} s) yet a later {} (index {}) kept it alive for \
                 {} s: a revoked lease came back.",
                obs.lease,
                obs.at as f64 / 1e9,
                promise.f,
                promise.invoke_index,
                p.ttl
            )
        } else {
            format!(
                "Lease {} was gone {early_ms:.0} ms before the expiry its acknowledged {} (index \
                 {}, ttl {} s) promised: {seen}.",
                obs.lease, promise.f, promise.invoke_index, p.ttl
            )
        };
        violations.push(LeaseViolation {
            kind: obs.kind,
            lease: obs.lease,
            key: obs.key.clone(),
            message,
            time: obs.at,
            index: observation
                .complete_index
                .unwrap_or(observation.invoke_index),
            observation,
            promise,
            promised_until: p.until,
            ttl: p.ttl,
            early_ms,
        });
    }
    violations.sort_by_key(|v| (v.kind, v.time));
    let mut listed = Vec::new();
    for chunk in violations.chunk_by(|a, b| a.kind == b.kind) {
        listed.extend(chunk.iter().take(MAX_LISTED).cloned());
    }
    let total: usize = violation_counts.values().sum();
    let (valid, reason) = if total > 0 {
        (Validity::Invalid, None)
    } else if lease_ops == 0 {
        (
            Validity::Unknown,
            Some("the history has no lease operations: nothing to check".to_string()),
        )
    } else if promises.is_empty() {
        (
            Validity::Unknown,
            Some("no lease was granted or kept alive (ok): nothing to check".to_string()),
        )
    } else {
        (Validity::Valid, None)
    };
    LeaseResult {
        valid,
        reason,
        counts,
        tolerance_ms: opts.tolerance.as_secs_f64() * 1e3,
        violation_counts,
        violations: listed,
        first_violation_ns: first,
        warnings,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

/// The observation an `ok` get `g` makes, if it shows that a key put with a lease is gone: the
/// key is absent or holds a value of another lease, after an `ok` put with that lease completed,
/// and no other write of the key can explain it.
fn vanished(
    history: &History,
    g: usize,
    writes: &HashMap<&str, Vec<KeyWrite>>,
) -> Option<Observation> {
    let o = &history.operations[g];
    let key = history.key(o)?;
    let ws = writes.get(key)?;
    let invoked = history.invocation(o).time?;
    let done = history.completion(o)?;
    let completed = done.time?;
    // The latest ok put with a lease that had completed before the get began.
    let p1 = ws
        .iter()
        .filter(|w| w.ok && w.lease.is_some() && w.completed.is_some_and(|c| c < invoked))
        .max_by_key(|w| w.completed)?;
    let lease = p1.lease?;
    if !done.value.is_null() && lease_of(&done.value) == Some(lease) {
        return None;
    }
    // Another write not of that lease that may have taken effect after p1 and before the get.
    let explained = ws.iter().any(|w| {
        w.operation != p1.operation
            && w.lease != Some(lease)
            && w.invoked < completed
            && w.completed.is_none_or(|c| c >= p1.invoked)
    });
    (!explained).then(|| Observation {
        kind: LeaseViolationKind::KeyVanished,
        lease,
        at: completed,
        operation: g,
        key: Some(key.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_history;

    /// A history from `(process, type, f, key, value, ms)` rows; errors go in the value's
    /// `error` field and are lifted to the line.
    fn history(rows: &[(u64, &str, &str, &str, &str, u64)]) -> History {
        let text: String = rows
            .iter()
            .enumerate()
            .map(|(i, &(p, t, f, key, value, ms))| {
                let key = if key.is_empty() {
                    String::new()
                } else {
                    format!(r#","key":"{key}""#)
                };
                let v: Value = serde_json::from_str(value).unwrap();
                let error = v
                    .get("error")
                    .map_or(String::new(), |e| format!(r#","error":{e}"#));
                format!(
                    "{{\"index\":{i},\"time\":{},\"process\":{p},\"type\":\"{t}\",\"f\":\"{f}\"{key},\"value\":{value},\"node\":\"n1\"{error}}}\n",
                    ms * 1_000_000
                )
            })
            .collect();
        parse_history(&text, false).unwrap()
    }

    /// Granted at 0 s (ttl 5), kept alive at 3 s, then a keepalive answered `ttl` at `at_ms`.
    #[rustfmt::skip]
    fn kept_alive_then_gone(at_ms: u64) -> History {
        history(&[
            (1, "invoke", "lease-grant",     "", r#"{"ttl":5}"#,               0),
            (1, "ok",     "lease-grant",     "", r#"{"lease":7587,"ttl":5}"#,  10),
            (1, "invoke", "lease-keepalive", "", r#"{"lease":7587}"#,          3_000),
            (1, "ok",     "lease-keepalive", "", r#"{"lease":7587,"ttl":5}"#,  3_010),
            (1, "invoke", "lease-keepalive", "", r#"{"lease":7587}"#,          at_ms - 10),
            (1, "ok",     "lease-keepalive", "", r#"{"lease":7587,"ttl":0}"#,  at_ms),
        ])
    }

    #[test]
    fn a_lease_gone_before_its_kept_alive_expiry_is_invalid() {
        let r = check_lease(&kept_alive_then_gone(6_000), &LeaseOptions::default());
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        assert_eq!(r.violation_count(), 1);
        let v = &r.violations[0];
        assert_eq!(v.kind, LeaseViolationKind::RevokedWhileKeptAlive);
        assert_eq!(v.lease, 7587);
        assert_eq!(
            v.promise.invoke_index, 2,
            "the keepalive at 3 s, not the grant"
        );
        assert_eq!(v.observation.complete_index, Some(5));
        assert_eq!(v.observation.process, 1);
        assert_eq!(v.observation.node.as_deref(), Some("n1"));
        assert_eq!(v.promised_until, 8_000_000_000);
        assert_eq!(v.early_ms, 2_000.0);
        assert_eq!(r.first_violation_time(), Some(Duration::from_secs(6)));
        assert_eq!(
            (
                r.counts.leases,
                r.counts.grants,
                r.counts.keepalives_ok,
                r.counts.observations
            ),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn a_lease_gone_after_its_promised_expiry_is_valid() {
        let r = check_lease(&kept_alive_then_gone(8_500), &LeaseOptions::default());
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        assert!(r.violations.is_empty());
        assert_eq!(r.counts.observations, 1);
    }

    #[test]
    fn an_observation_within_the_tolerance_of_the_expiry_is_valid() {
        // 50 ms early: inside the default 100 ms, outside a 10 ms tolerance.
        let h = kept_alive_then_gone(7_950);
        assert_eq!(
            check_lease(&h, &LeaseOptions::default()).valid,
            Validity::Valid
        );
        let tight = LeaseOptions {
            tolerance: Duration::from_millis(10),
        };
        let r = check_lease(&h, &tight);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.violations[0].early_ms, 50.0);
        assert_eq!(r.tolerance_ms, 10.0);
    }

    #[rustfmt::skip]
    #[test]
    fn a_key_vanishing_while_its_lease_is_kept_alive_is_key_vanished() {
        let h = history(&[
            (1, "invoke", "lease-grant",     "",   r#"{"ttl":5}"#,                                 0),
            (1, "ok",     "lease-grant",     "",   r#"{"lease":7,"ttl":5}"#,                       10),
            (2, "invoke", "put",             "/k", r#"{"value":1,"lease":7}"#,                     20),
            (2, "ok",     "put",             "/k", r#"{"value":1,"lease":7,"revision":5}"#,        30),
            (1, "invoke", "lease-keepalive", "",   r#"{"lease":7}"#,                               2_000),
            (1, "ok",     "lease-keepalive", "",   r#"{"lease":7,"ttl":5}"#,                       2_010),
            (2, "invoke", "get",             "/k", "null",                                         4_000),
            (2, "ok",     "get",             "/k", "null",                                         4_010),
        ]);
        let r = check_lease(&h, &LeaseOptions::default());
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        let v = &r.violations[0];
        assert_eq!(v.kind, LeaseViolationKind::KeyVanished);
        assert_eq!(v.key.as_deref(), Some("/k"));
        assert_eq!(v.observation.f, "get");
        assert_eq!(v.promise.f, "lease-keepalive");
        assert_eq!(v.early_ms, 2_990.0);
    }

    #[rustfmt::skip]
    #[test]
    fn a_key_gone_after_a_delete_that_may_have_come_between_is_no_evidence() {
        let h = history(&[
            (1, "invoke", "lease-grant", "",   r#"{"ttl":5}"#,                          0),
            (1, "ok",     "lease-grant", "",   r#"{"lease":7,"ttl":5}"#,                10),
            (2, "invoke", "put",         "/k", r#"{"value":1,"lease":7}"#,              20),
            (2, "ok",     "put",         "/k", r#"{"value":1,"lease":7,"revision":5}"#, 30),
            (3, "invoke", "delete",      "/k", "null",                                  40),
            (3, "info",   "delete",      "/k", r#"{"error":"timeout"}"#,                1_040),
            (2, "invoke", "get",         "/k", "null",                                  2_000),
            (2, "ok",     "get",         "/k", "null",                                  2_010),
        ]);
        let r = check_lease(&h, &LeaseOptions::default());
        assert_eq!(r.valid, Validity::Valid, "{r:#?}");
        assert_eq!(r.counts.observations, 0);
    }

    #[rustfmt::skip]
    #[test]
    fn a_put_refused_with_lease_not_found_while_kept_alive_is_invalid() {
        let h = history(&[
            (1, "invoke", "lease-grant", "",   r#"{"ttl":10}"#,                            0),
            (1, "ok",     "lease-grant", "",   r#"{"lease":9,"ttl":10}"#,                  10),
            (2, "invoke", "put",         "/k", r#"{"value":1,"lease":9}"#,                 1_000),
            (2, "fail",   "put",         "/k", r#"{"value":1,"lease":9,"error":"etcdserver: requested lease not found"}"#, 1_010),
        ]);
        let r = check_lease(&h, &LeaseOptions::default());
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        assert_eq!(r.violations[0].kind, LeaseViolationKind::RevokedWhileKeptAlive);
        assert_eq!(r.violations[0].promise.f, "lease-grant");
    }

    #[rustfmt::skip]
    #[test]
    fn a_keepalive_acknowledged_after_the_lease_was_reported_gone_is_a_lease_come_back() {
        let h = history(&[
            (1, "invoke", "lease-grant",     "", r#"{"ttl":5}"#,              0),
            (1, "ok",     "lease-grant",     "", r#"{"lease":3,"ttl":5}"#,    10),
            (1, "invoke", "lease-keepalive", "", r#"{"lease":3}"#,            7_000),
            (1, "ok",     "lease-keepalive", "", r#"{"lease":3,"ttl":0}"#,    7_010),
            (1, "invoke", "lease-keepalive", "", r#"{"lease":3}"#,            8_000),
            (1, "ok",     "lease-keepalive", "", r#"{"lease":3,"ttl":5}"#,    8_010),
        ]);
        let r = check_lease(&h, &LeaseOptions::default());
        assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
        assert!(r.violations[0].message.contains("came back"), "{}", r.violations[0].message);
    }

    #[test]
    fn a_history_without_lease_operations_is_unknown() {
        let h = history(&[
            (1, "invoke", "get", "/k", "null", 0),
            (1, "ok", "get", "/k", "null", 1),
        ]);
        let r = check_lease(&h, &LeaseOptions::default());
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.reason.unwrap().contains("no lease operations"));
    }
}
