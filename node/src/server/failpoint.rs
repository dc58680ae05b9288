//! Failpoints: named places in the Raft loop where the node can be made to crash or stall,
//! armed from the command line (`--failpoint NAME[=PROBABILITY][:sleep-MS]`).
//!
//! They play the part of etcd's gofail points (`raftBeforeLeaderSend`, `raftAfterSave`, ...)
//! that etcd's robustness tests trigger: a random crash or pause rarely lands in the
//! millisecond between two steps of the protocol, a failpoint lands there every time.
//!
//! - Crash (the default action): the Raft loop stops taking input at once, waits [`SETTLE`] so
//!   that messages already handed to the transport reach the wire, and returns
//!   [`FailpointHit`]; `raftkv` then exits with [`EXIT_CODE`] without a graceful shutdown.
//!   Nothing after the failpoint is persisted, so the node restarts from exactly what a crash
//!   at that point would leave on disk.
//! - `sleep-MS`: the Raft loop stalls for MS milliseconds there (gofail's `sleep(MS)`), as a
//!   long GC or I/O pause would, then goes on. Its timers do not run meanwhile; the rest of the
//!   cluster may elect another leader.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The process exit code after a failpoint fired (distinct from errors, 1, and signals).
pub const EXIT_CODE: i32 = 86;

/// How long the stopped loop waits for queued messages to be written before it returns.
pub const SETTLE: Duration = Duration::from_millis(50);

/// A place in the loop where a crash can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failpoint {
    /// Right after a granted vote has been persisted and sent: the candidate counts the vote,
    /// its first AppendEntries finds this node gone.
    AfterVote,
    /// On a leader, before AppendEntries carrying new entries are sent: the entries exist on
    /// the leader's disk only (etcd's `raftBeforeLeaderSend`).
    BeforeLeaderSend,
    /// After a Ready's entries and hard state are persisted, before its messages are sent
    /// (etcd's `raftAfterSave`).
    AfterSave,
}

impl Failpoint {
    /// Every failpoint, in the order `--help` lists them.
    pub const ALL: [Failpoint; 3] = [
        Failpoint::AfterVote,
        Failpoint::BeforeLeaderSend,
        Failpoint::AfterSave,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::AfterVote => "after-vote",
            Failpoint::BeforeLeaderSend => "before-leader-send",
            Failpoint::AfterSave => "after-save",
        }
    }
}

impl fmt::Display for Failpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a failpoint does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop as a crash would (the process exits with [`EXIT_CODE`]).
    Crash,
    /// Stall the Raft loop this long, then go on.
    Sleep(Duration),
}

/// Armed failpoints, each with the probability that it fires when reached and its action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failpoints {
    armed: BTreeMap<Failpoint, (f64, Action)>,
}

/// One `--failpoint NAME[=PROBABILITY][:sleep-MS]` argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailpointArg {
    /// Which failpoint.
    pub point: Failpoint,
    /// The chance it fires each time it is reached, in (0, 1].
    pub probability: f64,
    /// What it does.
    pub action: Action,
}

impl FromStr for FailpointArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (s, action) = match s.split_once(':') {
            None => (s, Action::Crash),
            Some((rest, a)) => {
                let ms = a
                    .strip_prefix("sleep-")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        format!(
                            "failpoint `{s}`: action `{a}` is not sleep-MS (MS a positive number of milliseconds)"
                        )
                    })?;
                (rest, Action::Sleep(Duration::from_millis(ms)))
            }
        };
        let (name, p) = match s.split_once('=') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        };
        let point = Failpoint::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Failpoint::ALL.iter().map(|f| f.name()).collect();
                format!("unknown failpoint `{name}`; allowed: {}", names.join(", "))
            })?;
        let probability = match p {
            None => 1.0,
            Some(p) => p
                .parse::<f64>()
                .ok()
                .filter(|p| *p > 0.0 && *p <= 1.0)
                .ok_or_else(|| {
                    format!("failpoint `{name}`: probability `{p}` is not a number in (0, 1]")
                })?,
        };
        Ok(FailpointArg {
            point,
            probability,
            action,
        })
    }
}

impl Failpoints {
    /// Arms the given failpoints (a later argument for the same point wins).
    pub fn new(args: impl IntoIterator<Item = FailpointArg>) -> Self {
        Failpoints {
            armed: args
                .into_iter()
                .map(|a| (a.point, (a.probability, a.action)))
                .collect(),
        }
    }

    /// Whether any failpoint is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Whether `point` is armed at all (cheap test before building its condition).
    pub fn armed(&self, point: Failpoint) -> bool {
        self.armed.contains_key(&point)
    }

    /// What `point` does now: `None` unless it is armed and a draw falls under its
    /// probability.
    pub fn fires(&self, point: Failpoint) -> Option<Action> {
        self.armed
            .get(&point)
            .filter(|(p, _)| *p >= 1.0 || rand::random::<f64>() < *p)
            .map(|(_, a)| *a)
    }

    /// The armed points as `name=probability[:sleep-MS]`, for the startup log.
    pub fn describe(&self) -> Vec<String> {
        self.armed
            .iter()
            .map(|(f, (p, a))| match a {
                Action::Crash => format!("{f}={p}"),
                Action::Sleep(d) => format!("{f}={p}:sleep-{}", d.as_millis()),
            })
            .collect()
    }
}

/// The error the Raft loop returns when a failpoint fired.
#[derive(Debug, thiserror::Error)]
#[error("failpoint {0} fired: stopping as a crash would")]
pub struct FailpointHit(pub Failpoint);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_probabilities() {
        let a: FailpointArg = "after-vote".parse().unwrap();
        assert_eq!(a.point, Failpoint::AfterVote);
        assert_eq!(a.probability, 1.0);
        let b: FailpointArg = "before-leader-send=0.25".parse().unwrap();
        assert_eq!(b.point, Failpoint::BeforeLeaderSend);
        assert_eq!(b.probability, 0.25);
        assert_eq!(b.action, Action::Crash);
        let c: FailpointArg = "before-leader-send=0.5:sleep-2500".parse().unwrap();
        assert_eq!(c.probability, 0.5);
        assert_eq!(c.action, Action::Sleep(Duration::from_millis(2500)));
        let d: FailpointArg = "after-save:sleep-10".parse().unwrap();
        assert_eq!(
            (d.probability, d.action),
            (1.0, Action::Sleep(Duration::from_millis(10)))
        );
        let fps = Failpoints::new([c, d]);
        assert_eq!(
            fps.describe(),
            ["before-leader-send=0.5:sleep-2500", "after-save=1:sleep-10"]
        );
    }

    #[test]
    fn rejects_unknown_names_and_bad_probabilities() {
        let e = "after-vot".parse::<FailpointArg>().unwrap_err();
        assert!(
            e.contains("after-vot") && e.contains("after-vote, before-leader-send"),
            "{e}"
        );
        for bad in [
            "after-vote=0",
            "after-vote=1.5",
            "after-vote=x",
            "after-vote=-1",
        ] {
            let e = bad.parse::<FailpointArg>().unwrap_err();
            assert!(e.contains("(0, 1]"), "{bad}: {e}");
        }
        for bad in [
            "after-vote:sleep",
            "after-vote:sleep-0",
            "after-vote:nap-5",
            "after-vote=0.5:sleep-x",
        ] {
            let e = bad.parse::<FailpointArg>().unwrap_err();
            assert!(e.contains("sleep-MS"), "{bad}: {e}");
        }
    }

    #[test]
    fn fires_only_when_armed() {
        let fps = Failpoints::new(["after-save".parse().unwrap()]);
        assert_eq!(fps.fires(Failpoint::AfterSave), Some(Action::Crash));
        assert_eq!(fps.fires(Failpoint::AfterVote), None);
        assert_eq!(Failpoints::default().fires(Failpoint::AfterSave), None);
    }
}
