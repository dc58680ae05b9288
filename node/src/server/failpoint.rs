//! Failpoints: named places in the Raft loop where the node can be made to crash or stall,
//! armed from the command line (`--failpoint NAME[=PROBABILITY][:ACTION]`) or, with
//! `--failpoint-api`, at run time over HTTP (`PUT`/`DELETE /failpoints/NAME`, `GET /failpoints`).
//!
//! They play the part of etcd's gofail points (`raftBeforeLeaderSend`, `raftAfterSave`, ...)
//! that etcd's robustness tests trigger, also at run time through gofail's HTTP endpoint: a
//! random crash or pause rarely lands in the millisecond between two steps of the protocol, a
//! failpoint lands there every time.
//!
//! - `crash` (the default action): the Raft loop stops taking input at once, waits [`SETTLE`]
//!   so that messages already handed to the transport reach the wire, and returns
//!   [`FailpointHit`]; `raftkv` then exits with [`EXIT_CODE`] without a graceful shutdown.
//!   Nothing after the failpoint is persisted, so the node restarts from exactly what a crash
//!   at that point would leave on disk.
//! - `sleep-MS`: the Raft loop stalls for MS milliseconds there (gofail's `sleep(MS)`), as a
//!   long GC or I/O pause would, then goes on. Its timers do not run meanwhile; the rest of the
//!   cluster may elect another leader.
//! - `pause`: the Raft loop stalls there until the failpoint is disarmed (`DELETE`), at most
//!   [`MAX_PAUSE`]. The HTTP API keeps answering meanwhile; `GET /failpoints` says which
//!   point holds the loop, so a test can wait for it and then act on the rest of the cluster.
//!
//! An arming may carry a count: it fires that many times, then disarms itself.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The process exit code after a failpoint fired (distinct from errors, 1, and signals).
pub const EXIT_CODE: i32 = 86;

/// How long the stopped loop waits for queued messages to be written before it returns.
pub const SETTLE: Duration = Duration::from_millis(50);

/// The longest a `pause` holds the loop when nobody disarms it.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// A place in the loop where a crash can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failpoint {
    /// Right after a granted vote has been persisted and sent: the candidate counts the vote,
    /// its first AppendEntries finds this node gone.
    AfterVote,
    /// On a leader, before AppendEntries carrying new entries are sent: the Ready's entries
    /// are persisted first, so they exist on the leader's disk only (etcd's
    /// `raftBeforeLeaderSend`).
    BeforeLeaderSend,
    /// After a Ready's entries and hard state are persisted, before its messages are sent
    /// (etcd's `raftAfterSave`).
    AfterSave,
    /// On a leader whose commit index advanced: the Ready is persisted and its committed
    /// entries applied (their clients answered), then the failpoint fires before the Ready's
    /// messages, the ones that carry the new commit index and the next entries, are sent. In
    /// etcd the apply runs on its own goroutine and is not held by `raftBeforeLeaderSend`;
    /// this is that moment.
    LeaderCommit,
}

impl Failpoint {
    /// Every failpoint, in the order `--help` lists them.
    pub const ALL: [Failpoint; 4] = [
        Failpoint::AfterVote,
        Failpoint::BeforeLeaderSend,
        Failpoint::AfterSave,
        Failpoint::LeaderCommit,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::AfterVote => "after-vote",
            Failpoint::BeforeLeaderSend => "before-leader-send",
            Failpoint::AfterSave => "after-save",
            Failpoint::LeaderCommit => "leader-commit",
        }
    }

    /// The failpoint with this name, or an error listing the names.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str) -> Result<Failpoint, String> {
        Failpoint::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Failpoint::ALL.iter().map(|f| f.name()).collect();
                format!("unknown failpoint `{name}`; allowed: {}", names.join(", "))
            })
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
    /// Stall the Raft loop until the failpoint is disarmed (at most [`MAX_PAUSE`]).
    Pause,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Crash => f.write_str("crash"),
            Action::Sleep(d) => write!(f, "sleep-{}", d.as_millis()),
            Action::Pause => f.write_str("pause"),
        }
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(a: &str) -> Result<Self, Self::Err> {
        match a {
            "crash" => Ok(Action::Crash),
            "pause" => Ok(Action::Pause),
            _ => a
                .strip_prefix("sleep-")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| Action::Sleep(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!(
                        "action `{a}` is not crash, pause or sleep-MS (MS a positive number of milliseconds)"
                    )
                }),
        }
    }
}

/// One arming: the chance the failpoint fires each time it is reached, its action, and how
/// many more times it may fire (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arming {
    /// In (0, 1].
    pub probability: f64,
    /// What it does.
    pub action: Action,
    /// Fires at most this many more times, then disarms itself.
    pub count: Option<u64>,
}

/// One `--failpoint NAME[=PROBABILITY][:ACTION]` argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailpointArg {
    /// Which failpoint.
    pub point: Failpoint,
    /// How it is armed.
    pub arming: Arming,
}

fn parse_probability(name: &str, p: &str) -> Result<f64, String> {
    p.parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p <= 1.0)
        .ok_or_else(|| format!("failpoint `{name}`: probability `{p}` is not a number in (0, 1]"))
}

impl FromStr for FailpointArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (s, action) = match s.split_once(':') {
            None => (s, Action::Crash),
            Some((rest, a)) => (
                rest,
                a.parse::<Action>()
                    .map_err(|e| format!("failpoint `{s}`: {e}"))?,
            ),
        };
        let (name, p) = match s.split_once('=') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        };
        let point = Failpoint::parse(name)?;
        let probability = match p {
            None => 1.0,
            Some(p) => parse_probability(name, p)?,
        };
        Ok(FailpointArg {
            point,
            arming: Arming {
                probability,
                action,
                count: None,
            },
        })
    }
}

/// The body of `PUT /failpoints/NAME`: `{"action": "pause", "probability": 1.0, "count": 1}`
/// (only `action` is required).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmRequest {
    /// `crash`, `pause` or `sleep-MS`.
    pub action: String,
    /// In (0, 1]; 1 when absent.
    #[serde(default)]
    pub probability: Option<f64>,
    /// Fire at most this many times (at least 1); unlimited when absent.
    #[serde(default)]
    pub count: Option<u64>,
}

impl ArmRequest {
    /// The arming this request asks for.
    ///
    /// # Errors
    /// A bad action, probability or count, named.
    pub fn arming(&self, point: Failpoint) -> Result<Arming, String> {
        let action = self
            .action
            .parse::<Action>()
            .map_err(|e| format!("failpoint `{point}`: {e}"))?;
        let probability = match self.probability {
            None => 1.0,
            Some(p) => parse_probability(point.name(), &p.to_string())?,
        };
        if self.count == Some(0) {
            return Err(format!("failpoint `{point}`: count must be at least 1"));
        }
        Ok(Arming {
            probability,
            action,
            count: self.count,
        })
    }
}

/// What `GET /failpoints` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailpointsView {
    /// Armed points and their arming, as `ACTION[ p=P][ xCOUNT]`.
    pub armed: BTreeMap<String, String>,
    /// How often each point fired since the process started.
    pub hits: BTreeMap<String, u64>,
    /// The point holding the Raft loop in a `pause` now, if any.
    pub paused: Option<String>,
    /// The Raft term when that pause began.
    pub paused_term: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    armed: BTreeMap<Failpoint, Arming>,
    hits: BTreeMap<Failpoint, u64>,
    paused: Option<(Failpoint, u64)>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a point is disarmed (a paused loop re-checks).
    changed: Condvar,
}

/// The armed failpoints, shared by the Raft loop (which fires them) and the HTTP API (which
/// arms, disarms and lists them). Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct Failpoints {
    shared: Arc<Shared>,
}

impl Failpoints {
    /// Arms the given failpoints (a later argument for the same point wins).
    pub fn new(args: impl IntoIterator<Item = FailpointArg>) -> Self {
        let fps = Failpoints::default();
        for a in args {
            fps.arm(a.point, a.arming);
        }
        fps
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms `point` (replacing an earlier arming).
    pub fn arm(&self, point: Failpoint, arming: Arming) {
        self.lock().armed.insert(point, arming);
    }

    /// Disarms `point` and releases the loop if it is paused there. Whether it was armed.
    pub fn disarm(&self, point: Failpoint) -> bool {
        let mut st = self.lock();
        let was = st.armed.remove(&point).is_some();
        if st.paused.is_some_and(|(p, _)| p == point) {
            // Released: the loop goes on as soon as it wakes.
            st.paused = None;
        }
        drop(st);
        self.shared.changed.notify_all();
        was
    }

    /// Whether any failpoint is armed.
    pub fn is_empty(&self) -> bool {
        self.lock().armed.is_empty()
    }

    /// Whether `point` is armed at all (cheap test before building its condition).
    pub fn armed(&self, point: Failpoint) -> bool {
        self.lock().armed.contains_key(&point)
    }

    /// What `point` does now: `None` unless it is armed and a draw falls under its
    /// probability. A firing counts as a hit and uses up one of the arming's count.
    pub fn fires(&self, point: Failpoint) -> Option<Action> {
        let mut st = self.lock();
        let arming = st.armed.get_mut(&point)?;
        if arming.probability < 1.0 && rand::random::<f64>() >= arming.probability {
            return None;
        }
        let action = arming.action;
        if let Some(n) = &mut arming.count {
            *n -= 1;
            if *n == 0 && action != Action::Pause {
                st.armed.remove(&point);
            }
        }
        *st.hits.entry(point).or_default() += 1;
        Some(action)
    }

    /// Holds the calling (Raft loop) thread while `point` stays armed, at most [`MAX_PAUSE`];
    /// `term` is shown in [`FailpointsView::paused_term`]. A counted arming used up by this
    /// pause is removed when the pause ends. Returns how long it held.
    pub fn pause(&self, point: Failpoint, term: u64) -> Duration {
        let start = Instant::now();
        let mut st = self.lock();
        st.paused = Some((point, term));
        while st.armed.contains_key(&point) {
            let left = MAX_PAUSE.saturating_sub(start.elapsed());
            if left.is_zero() {
                tracing::warn!(failpoint = %point, "pause held the loop for its longest; going on");
                break;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if st.armed.get(&point).is_some_and(|a| a.count == Some(0)) {
            st.armed.remove(&point);
        }
        st.paused = None;
        start.elapsed()
    }

    /// The armed points as `name=probability[:ACTION]`, for the startup log.
    pub fn describe(&self) -> Vec<String> {
        self.lock()
            .armed
            .iter()
            .map(|(f, a)| match a.action {
                Action::Crash => format!("{f}={}", a.probability),
                other => format!("{f}={}:{other}", a.probability),
            })
            .collect()
    }

    /// Armed points, hits and the pause, for `GET /failpoints`.
    pub fn view(&self) -> FailpointsView {
        let st = self.lock();
        FailpointsView {
            armed: st
                .armed
                .iter()
                .map(|(f, a)| {
                    let mut s = a.action.to_string();
                    if a.probability < 1.0 {
                        s.push_str(&format!(" p={}", a.probability));
                    }
                    if let Some(n) = a.count {
                        s.push_str(&format!(" x{n}"));
                    }
                    (f.name().to_string(), s)
                })
                .collect(),
            hits: st
                .hits
                .iter()
                .map(|(f, n)| (f.name().to_string(), *n))
                .collect(),
            paused: st.paused.map(|(f, _)| f.name().to_string()),
            paused_term: st.paused.map(|(_, t)| t),
        }
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
        assert_eq!(a.arming.probability, 1.0);
        let b: FailpointArg = "before-leader-send=0.25".parse().unwrap();
        assert_eq!(b.point, Failpoint::BeforeLeaderSend);
        assert_eq!(b.arming.probability, 0.25);
        assert_eq!(b.arming.action, Action::Crash);
        let c: FailpointArg = "before-leader-send=0.5:sleep-2500".parse().unwrap();
        assert_eq!(c.arming.probability, 0.5);
        assert_eq!(c.arming.action, Action::Sleep(Duration::from_millis(2500)));
        let d: FailpointArg = "after-save:sleep-10".parse().unwrap();
        assert_eq!(
            (d.arming.probability, d.arming.action),
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
        let p: FailpointArg = "leader-commit:pause".parse().unwrap();
        assert_eq!(
            (p.point, p.arming.action),
            (Failpoint::LeaderCommit, Action::Pause)
        );
    }

    #[test]
    fn fires_only_when_armed() {
        let fps = Failpoints::new(["after-save".parse().unwrap()]);
        assert_eq!(fps.fires(Failpoint::AfterSave), Some(Action::Crash));
        assert_eq!(fps.fires(Failpoint::AfterVote), None);
        assert_eq!(Failpoints::default().fires(Failpoint::AfterSave), None);
        assert_eq!(fps.view().hits.get("after-save"), Some(&1));
    }

    #[test]
    fn a_counted_arming_fires_that_often_then_disarms_itself() {
        let fps = Failpoints::default();
        let req = ArmRequest {
            action: "sleep-5".into(),
            probability: None,
            count: Some(2),
        };
        fps.arm(
            Failpoint::AfterSave,
            req.arming(Failpoint::AfterSave).unwrap(),
        );
        assert_eq!(fps.view().armed["after-save"], "sleep-5 x2");
        let sleep = Some(Action::Sleep(Duration::from_millis(5)));
        assert_eq!(fps.fires(Failpoint::AfterSave), sleep);
        assert_eq!(fps.fires(Failpoint::AfterSave), sleep);
        assert_eq!(fps.fires(Failpoint::AfterSave), None);
        assert!(fps.view().armed.is_empty());
        assert_eq!(fps.view().hits["after-save"], 2);
        for (bad, what) in [("nap", "crash, pause or sleep-MS"), ("crash", "at least 1")] {
            let req = ArmRequest {
                action: bad.into(),
                probability: None,
                count: Some(0),
            };
            let e = req.arming(Failpoint::AfterVote).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn a_pause_holds_the_thread_until_disarmed_and_shows_meanwhile() {
        let fps = Failpoints::default();
        fps.arm(
            Failpoint::LeaderCommit,
            Arming {
                probability: 1.0,
                action: Action::Pause,
                count: Some(1),
            },
        );
        assert_eq!(fps.fires(Failpoint::LeaderCommit), Some(Action::Pause));
        let held = {
            let fps = fps.clone();
            std::thread::spawn(move || fps.pause(Failpoint::LeaderCommit, 7))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while fps.view().paused.is_none() {
            assert!(Instant::now() < deadline, "the pause never showed");
            std::thread::sleep(Duration::from_millis(1));
        }
        let v = fps.view();
        assert_eq!(
            (v.paused.as_deref(), v.paused_term),
            (Some("leader-commit"), Some(7))
        );
        assert!(!held.is_finished(), "the pause ended while still armed");
        assert!(fps.disarm(Failpoint::LeaderCommit));
        held.join().unwrap();
        let v = fps.view();
        assert_eq!((v.paused, v.armed.len()), (None, 0));
    }
}
