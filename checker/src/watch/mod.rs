//! The watch checker: judges the responses etcd watchers received against etcd's documented
//! watch guarantees (<https://etcd.io/docs/v3.4/learning/api_guarantees/#watch-apis>) and
//! against the writes the clients made.
//!
//! The recorder writes one `"process":"watch"` line per response (see the history format in
//! `shared/DESIGN.md` and the brief of this module's tests): each watcher (`w1`, `w2`, ...) opens
//! streams (`1`, `2`, ... ; a stream is one (re)open of the watch), and each stream receives
//! `watch-created`, `watch-events`, `watch-progress`, and finally `watch-canceled`,
//! `watch-broken` or `watch-closed`. Each guarantee is checked by name:
//!
//! - `ordered`: on a stream, event revisions never go down; events of different responses
//!   strictly increase (the same revision again in a later response is `atomic`'s business if it
//!   is another key, `unique`'s if it is the same event).
//! - `unique`: no event (key, mod-revision) reaches a watcher twice, within a stream or across
//!   a stream and the streams that resume it. A non-resumed stream is a new watch and starts a
//!   new scope (a watch from an older revision may legitimately see an event again).
//! - `atomic`: the events of one revision arrive in one response, all of them: a revision split
//!   over two responses, or a response with only some of a revision's events while another
//!   source (an acknowledged write, another watcher) shows all of them.
//! - `reliable`: a stream receives every event from its start to the last revision it covers
//!   (its last event or last progress notification, whichever is higher). "Every event" is the
//!   union of what any watcher received and every acknowledged put and delete (with
//!   `deleted >= 1`) at its revision. Revisions need not be consecutive: only known events are
//!   expected. A stream's start is its start revision, or the `watch-created` revision + 1 for
//!   a watch from now (etcd takes the created header after choosing the start, so this never
//!   expects an event the stream could not have). One violation per gap, at the response that
//!   first covered it.
//! - `resumable`: a stream opened at revision s > 0 (resumed, older, future) never delivers an
//!   event below s.
//! - `bookmarkable`: after a progress notification at revision P, no event at or below P
//!   arrives on that stream: the notification promised they had all been sent. etcd 3.4.23 has
//!   etcd-io/etcd#15220 (a requested progress notification overtakes events still queued for an
//!   unsynced watcher), which shows up here.
//! - `consistent`: events agree with the writes: a put event's value was written by a put of
//!   that key (values are unique per key) that did not fail, at the revision etcd acknowledged
//!   for it; the events at an acknowledged revision are that write; two watchers agree on the
//!   events of a revision; an acknowledged write inside some stream's covered range reached at
//!   least one watcher (a write other watchers did receive but a stream missed is `reliable`).
//!   A delete event needs a client delete of its key, or a lease the key was put with (an
//!   expiry deletes without a client).
//!
//! A watch canceled by compaction and a broken stream are not violations: the stream simply
//! covers less. An event can break several guarantees and is counted under each, except that a
//! repeat delivery already counted as going down (`ordered`) or below the start (`resumable`)
//! is not counted again as `unique`, and an event already counted as inconsistent is left out of
//! what other streams are expected to receive. Violations are counted per response (one per
//! guarantee per offending response, with the number of offending events), per gap for
//! `reliable`, and per revision for writes nobody received.
//!
//! Everything is a pass over the history or over maps keyed by revision: a history with half a
//! million watch lines and a million events checks in seconds. This module never reads files.

mod read;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use ahash::{HashMap, HashMapExt};
use serde::Serialize;
use serde_json::{Value, json};
use smallvec::SmallVec;

use crate::Validity;
use crate::history::{History, Outcome};
use read::{Kind, Model, Rev};

/// One of etcd's watch guarantees (and `consistent`: events agree with the writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Guarantee {
    /// Event revisions on a stream never go down.
    Ordered,
    /// No event reaches a watcher twice.
    Unique,
    /// No event between a stream's start and what it covers is dropped.
    Reliable,
    /// A revision's events arrive together, in one response.
    Atomic,
    /// A watch from revision s never delivers an event below s.
    Resumable,
    /// No event at or below a progress notification's revision arrives after it.
    Bookmarkable,
    /// Events agree with the acknowledged writes and with each other.
    Consistent,
}

impl Guarantee {
    /// Every guarantee, in the order the report lists them.
    pub const ALL: [Guarantee; 7] = [
        Guarantee::Ordered,
        Guarantee::Unique,
        Guarantee::Reliable,
        Guarantee::Atomic,
        Guarantee::Resumable,
        Guarantee::Bookmarkable,
        Guarantee::Consistent,
    ];

    /// The name, as etcd's documentation spells it.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::Ordered => "ordered",
            Guarantee::Unique => "unique",
            Guarantee::Reliable => "reliable",
            Guarantee::Atomic => "atomic",
            Guarantee::Resumable => "resumable",
            Guarantee::Bookmarkable => "bookmarkable",
            Guarantee::Consistent => "consistent",
        }
    }

    /// What it promises, in one sentence.
    pub fn promise(self) -> &'static str {
        match self {
            Guarantee::Ordered => {
                "Events are ordered by revision: an event never follows one with a higher revision."
            }
            Guarantee::Unique => "An event never appears on a watch twice.",
            Guarantee::Reliable => {
                "A stream never drops events: it receives every event from its start up to the \
                 revision its latest event or progress notification covers."
            }
            Guarantee::Atomic => {
                "The events of one revision arrive complete, in one response, never split."
            }
            Guarantee::Resumable => {
                "A watch from revision s (a resumed stream, a watch from an older or a future \
                 revision) never delivers an event below s."
            }
            Guarantee::Bookmarkable => {
                "A progress notification at revision P means every event up to P has already \
                 been sent on the stream."
            }
            Guarantee::Consistent => {
                "Events agree with the writes: every acknowledged write a stream covers is \
                 delivered with its revision and value, and no event shows a write that never \
                 happened there."
            }
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How much of the history the watch checker saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WatchCounts {
    /// Distinct watchers.
    pub watchers: usize,
    /// Streams (each (re)open of a watch).
    pub streams: usize,
    /// Responses carrying events or progress.
    pub responses: usize,
    /// Events received, over all streams.
    pub events: usize,
    /// Progress notifications received.
    pub progress_notifications: usize,
    /// Streams opened to resume a broken one.
    pub resumes: usize,
    /// Streams etcd canceled (for any reason).
    pub canceled: usize,
    /// Of which canceled by a compaction.
    pub compactions: usize,
    /// Streams that ended with an error.
    pub broken: usize,
    /// Puts, and deletes that deleted something, that etcd acknowledged with a revision.
    pub acknowledged_writes: usize,
}

/// What one guarantee checked and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuaranteeSummary {
    /// The guarantee.
    pub name: Guarantee,
    /// What it promises.
    pub promise: &'static str,
    /// Streams it applied to.
    pub streams: usize,
    /// Events it examined (for `reliable`: events the streams were expected to receive).
    pub events: usize,
    /// Violations found (all of them, not only those listed).
    pub violations: usize,
}

/// A watch response as shown in a violation: its header and (a window of) its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseView {
    /// `watch-events` or `watch-progress`.
    pub f: String,
    /// The line's `index`.
    pub index: u64,
    /// When it was recorded, ns since the run started.
    pub time: Option<u64>,
    /// The stream it arrived on (the offending response's stream, or an earlier one of the same
    /// watcher for a repeat across a resume).
    pub stream: u64,
    /// The member the watcher was connected to.
    pub node: Option<String>,
    /// The header revision.
    pub revision: Option<i64>,
    /// Up to ten of its events, as recorded, around the one that matters.
    pub events: Vec<Value>,
    /// Events in the response.
    pub events_total: usize,
    /// Position in the response of the first event shown.
    pub events_from: usize,
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchViolation {
    /// Which guarantee.
    pub guarantee: Guarantee,
    /// The watcher (`w3`).
    pub watcher: String,
    /// The etcd member it was connected to (`n2`).
    pub member: Option<String>,
    /// The stream (1-based, per watcher).
    pub stream: u64,
    /// When the offending response arrived, ns since the run started.
    pub time: Option<u64>,
    /// The offending response's history `index`.
    pub index: u64,
    /// What went wrong, in one sentence.
    pub message: String,
    /// How many events of the response (or of the gap) this violation stands for.
    pub events: usize,
    /// The offending event as recorded (for a missing event: the one another watcher received,
    /// or the acknowledged write).
    pub event: Option<Value>,
    /// The offending response.
    pub response: Option<ResponseView>,
    /// The response before it that it contradicts: the progress notification (`bookmarkable`),
    /// the response with the higher revision (`ordered`), the first delivery (`unique`), the
    /// other part of the revision (`atomic`), else the response just before on the stream.
    pub previous: Option<ResponseView>,
}

/// The watch checker's verdict, `results.json`'s `watch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchResult {
    /// `invalid` if any guarantee was broken; `unknown` if there was nothing to check.
    pub valid: Validity,
    /// Why the verdict is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The key prefix the watchers followed: writes outside it are not expected on the watches.
    /// From `watch-open`'s `prefix` when recorded, else the folder (up to the last `/`) that every
    /// event's key shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// What was seen.
    pub counts: WatchCounts,
    /// One row per guarantee, in [`Guarantee::ALL`] order.
    pub guarantees: Vec<GuaranteeSummary>,
    /// The violations, the earliest [`MAX_LISTED`] of each guarantee, by guarantee then index.
    pub violations: Vec<WatchViolation>,
    /// When the first violation happened, ns since the run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_violation_ns: Option<u64>,
    /// Watch lines that could not be read and were skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Wall-clock time of the check.
    pub elapsed_ms: f64,
}

impl WatchResult {
    /// When the first violation happened (time since the run started), for the detection
    /// matrix's time to the first anomaly.
    pub fn first_violation_time(&self) -> Option<Duration> {
        self.first_violation_ns.map(Duration::from_nanos)
    }

    /// The summary row of `g`.
    pub fn guarantee(&self, g: Guarantee) -> Option<&GuaranteeSummary> {
        self.guarantees.iter().find(|s| s.name == g)
    }

    /// Total violations, over all guarantees.
    pub fn violation_count(&self) -> usize {
        self.guarantees.iter().map(|s| s.violations).sum()
    }
}

/// Most violations listed per guarantee (all are counted).
pub const MAX_LISTED: usize = 20;

/// Checks the watch responses of `history` against etcd's watch guarantees.
pub fn check_watch(history: &History) -> WatchResult {
    let started = Instant::now();
    let m = read::read(history);
    let mut c = Checker::new(history, m);
    c.run();
    c.finish(started)
}

/// Which event a violation shows.
#[derive(Debug, Clone, Copy)]
enum Shown {
    /// An event a stream received.
    Seen(u32),
    /// An acknowledged write (a missing event nobody received).
    Write(u32),
}

/// A violation before its JSON is built (only the listed ones get JSON).
#[derive(Debug, Clone)]
struct Finding {
    g: Guarantee,
    stream: u32,
    resp: u32,
    previous: Option<u32>,
    shown: Option<Shown>,
    message: String,
    events: usize,
    index: u64,
    time: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Checked {
    streams: usize,
    events: usize,
}

struct Checker<'h> {
    h: &'h History,
    m: Model,
    /// Acknowledged writes by revision (indices into `m.writes`).
    acked: HashMap<Rev, SmallVec<[u32; 1]>>,
    /// Events already counted as inconsistent.
    bad: Vec<bool>,
    counts: [usize; 7],
    checked: [Checked; 7],
    kept: [Vec<Finding>; 7],
    /// The finding still accumulating events of its response, per guarantee.
    open: [Option<Finding>; 7],
    first: Option<u64>,
}

impl<'h> Checker<'h> {
    fn new(h: &'h History, m: Model) -> Self {
        let mut acked: HashMap<Rev, SmallVec<[u32; 1]>> = HashMap::new();
        for (i, w) in m.writes.iter().enumerate() {
            if let Some(r) = w.rev {
                acked.entry(r).or_default().push(i as u32);
            }
        }
        let bad = vec![false; m.events.len()];
        Checker {
            h,
            m,
            acked,
            bad,
            counts: [0; 7],
            checked: [Checked::default(); 7],
            kept: Default::default(),
            open: Default::default(),
            first: None,
        }
    }

    fn run(&mut self) {
        // Findings merge per response only within one pass: each pass says something else.
        self.consistent_events();
        self.close_all();
        self.stream_order();
        self.close_all();
        self.revision_sets();
        self.close_all();
        self.reliable();
        self.close_all();
    }

    // ----- recording findings -----

    fn finding(
        &self,
        g: Guarantee,
        resp: u32,
        previous: Option<u32>,
        shown: Option<Shown>,
        message: String,
    ) -> Finding {
        let r = &self.m.responses[resp as usize];
        let op = &self.h.ops[r.op];
        Finding {
            g,
            stream: r.stream,
            resp,
            previous,
            shown,
            message,
            events: 1,
            index: op.index,
            time: op.time,
        }
    }

    /// Records a finding, merged with the open one of the same guarantee and response (one
    /// violation per offending response, counting its offending events).
    fn report(&mut self, f: Finding) {
        let slot = f.g.slot();
        if let Some(open) = &mut self.open[slot]
            && open.resp == f.resp
        {
            open.events += f.events;
            return;
        }
        self.close(f.g);
        self.open[slot] = Some(f);
    }

    /// Records a finding that stands on its own (a gap, a revision).
    fn report_alone(&mut self, f: Finding) {
        let g = f.g;
        self.close(g);
        self.open[g.slot()] = Some(f);
        self.close(g);
    }

    fn close_all(&mut self) {
        for g in Guarantee::ALL {
            self.close(g);
        }
    }

    fn close(&mut self, g: Guarantee) {
        let slot = g.slot();
        let Some(f) = self.open[slot].take() else {
            return;
        };
        self.counts[slot] += 1;
        if let Some(t) = f.time {
            self.first = Some(self.first.map_or(t, |x| x.min(t)));
        }
        let kept = &mut self.kept[slot];
        kept.push(f);
        if kept.len() >= 4 * MAX_LISTED {
            kept.sort_by_key(|f| f.index);
            kept.truncate(MAX_LISTED);
        }
    }

    /// The response before `resp` on its stream.
    fn before(&self, resp: u32) -> Option<u32> {
        let st = &self.m.streams[self.m.responses[resp as usize].stream as usize];
        let pos = st.responses.binary_search(&resp).ok()?;
        pos.checked_sub(1).map(|p| st.responses[p])
    }

    // ----- descriptions -----

    fn key(&self, k: u32) -> &str {
        &self.m.keys.names[k as usize]
    }

    fn value(&self, v: Option<u32>) -> &str {
        v.map_or("(undecodable)", |v| {
            self.m.values.names[v as usize].as_str()
        })
    }

    fn describe_event(&self, e: u32) -> String {
        let ev = &self.m.events[e as usize];
        match ev.kind {
            Kind::Put => format!(
                "put {} = {} at revision {}",
                self.key(ev.key),
                self.value(ev.value),
                ev.rev
            ),
            Kind::Delete => format!("delete {} at revision {}", self.key(ev.key), ev.rev),
        }
    }

    fn describe_write(&self, w: u32) -> String {
        let wr = &self.m.writes[w as usize];
        let inv = self.h.invocation(&self.h.operations[wr.operation]).index;
        let what = match wr.kind {
            Kind::Put => format!("put {} = {}", self.key(wr.key), self.value(wr.value)),
            Kind::Delete => format!("delete {}", self.key(wr.key)),
        };
        match wr.rev {
            Some(r) => format!("{what} (index {inv}, acknowledged at revision {r})"),
            None => format!("{what} (index {inv})"),
        }
    }

    fn watcher_of_event(&self, e: u32) -> (&str, &str) {
        let r = &self.m.responses[self.m.events[e as usize].resp as usize];
        let st = &self.m.streams[r.stream as usize];
        let node = self.h.ops[r.op].node.as_deref().unwrap_or("?");
        (&self.m.watchers[st.watcher as usize], node)
    }

    fn write_json(&self, w: u32) -> Value {
        let wr = &self.m.writes[w as usize];
        let o = &self.h.operations[wr.operation];
        let inv = self.h.invocation(o);
        let mut v = json!({
            "type": wr.kind.as_str(),
            "key": self.key(wr.key),
            "mod-revision": wr.rev,
            "write-index": inv.index,
        });
        if wr.kind == Kind::Put {
            v["value"] = inv.value.get("value").cloned().unwrap_or(Value::Null);
        }
        v
    }

    // ----- consistent: each event against the writes and the first report of its revision -----

    fn consistent_events(&mut self) {
        let m = &self.m;
        let mut by_value: HashMap<(u32, u32), SmallVec<[u32; 1]>> = HashMap::new();
        for (i, w) in m.writes.iter().enumerate() {
            if let (Kind::Put, Some(v)) = (w.kind, w.value) {
                by_value.entry((w.key, v)).or_default().push(i as u32);
            }
        }
        let mut first: HashMap<(Rev, u32), u32> = HashMap::new();
        let mut streams = vec![false; m.streams.len()];
        for e in 0..m.events.len() as u32 {
            let ev = &self.m.events[e as usize];
            streams[self.m.responses[ev.resp as usize].stream as usize] = true;
            match self.event_problem(e, &by_value, &first) {
                Some(message) => {
                    self.bad[e as usize] = true;
                    let f = self.finding(
                        Guarantee::Consistent,
                        ev.resp,
                        self.before(ev.resp),
                        Some(Shown::Seen(e)),
                        message,
                    );
                    self.report(f);
                }
                None => {
                    first.entry((ev.rev, ev.key)).or_insert(e);
                }
            }
        }
        let n = streams.iter().filter(|&&s| s).count();
        for g in [
            Guarantee::Ordered,
            Guarantee::Unique,
            Guarantee::Atomic,
            Guarantee::Consistent,
        ] {
            self.checked[g.slot()] = Checked {
                streams: n,
                events: self.m.events.len(),
            };
        }
    }

    fn event_problem(
        &self,
        e: u32,
        by_value: &HashMap<(u32, u32), SmallVec<[u32; 1]>>,
        first: &HashMap<(Rev, u32), u32>,
    ) -> Option<String> {
        let m = &self.m;
        let ev = &m.events[e as usize];
        let what = || self.describe_event(e);
        match ev.kind {
            Kind::Put => {
                let Some(v) = ev.value else {
                    return Some(format!(
                        "Event {} carries a value that is not JSON, which no client wrote.",
                        what()
                    ));
                };
                let Some(ws) = by_value.get(&(ev.key, v)) else {
                    return Some(format!(
                        "Event {} shows a write nobody invoked: no client put that value to that key.",
                        what()
                    ));
                };
                let writes = || ws.iter().map(|&w| (w, &m.writes[w as usize]));
                if !writes().any(|(_, w)| w.rev == Some(ev.rev)) {
                    if let Some((w, _)) = writes().find(|(_, w)| w.rev.is_some()) {
                        return Some(format!(
                            "Event {} disagrees with the acknowledged {}.",
                            what(),
                            self.describe_write(w)
                        ));
                    }
                    if writes().all(|(_, w)| w.outcome == Outcome::Fail) {
                        let (w, _) = writes().next()?;
                        return Some(format!(
                            "Event {} shows the {}, which failed definitely.",
                            what(),
                            self.describe_write(w)
                        ));
                    }
                }
            }
            Kind::Delete => {
                if !m.deleted(ev.key) && !m.leased(ev.key) {
                    return Some(format!(
                        "Event {} shows a delete nobody invoked: no client deleted that key \
                         and no lease held it.",
                        what()
                    ));
                }
            }
        }
        if let Some(ws) = self.acked.get(&ev.rev) {
            let same = ws.iter().any(|&w| {
                let w = &m.writes[w as usize];
                w.key == ev.key
                    && w.kind == ev.kind
                    && (w.kind == Kind::Delete || w.value == ev.value)
            });
            if !same {
                return Some(format!(
                    "Event {} contradicts the write acknowledged at that revision: {}.",
                    what(),
                    self.describe_write(ws[0])
                ));
            }
        } else if let Some(&f) = first.get(&(ev.rev, ev.key)) {
            let other = &m.events[f as usize];
            if other.kind != ev.kind || other.value != ev.value {
                let (w, node) = self.watcher_of_event(f);
                return Some(format!(
                    "Event {} disagrees with watcher {w} (on {node}), which received {} at \
                     the same revision.",
                    what(),
                    self.describe_event(f)
                ));
            }
        }
        None
    }

    // ----- ordered, unique, atomic (split), resumable, bookmarkable: one walk per stream -----

    fn stream_order(&mut self) {
        let mut order: Vec<u32> = (0..self.m.streams.len() as u32).collect();
        order.sort_by_key(|&s| {
            let st = &self.m.streams[s as usize];
            (st.watcher, st.number)
        });
        // (key, revision) -> the response that delivered it, over the watcher's current scope.
        let mut scope: HashMap<(u32, Rev), u32> = HashMap::new();
        let mut watcher = None;
        for s in order {
            let st = &self.m.streams[s as usize];
            if watcher != Some(st.watcher) || st.from != "resume" {
                scope.clear();
                watcher = Some(st.watcher);
            }
            let start = st.start;
            let kind = st.describe();
            let responses = st.responses.clone();
            let mut counted_resumable = false;
            let mut counted_bookmarkable = false;
            let mut max: Option<(Rev, u32)> = None;
            let mut progress: Option<(Rev, u32)> = None;
            for r in responses {
                let resp = &self.m.responses[r as usize];
                if resp.progress {
                    if let Some(p) = resp.header
                        && progress.is_none_or(|(q, _)| p >= q)
                    {
                        progress = Some((p, r));
                    }
                    if !counted_bookmarkable {
                        counted_bookmarkable = true;
                        self.checked[Guarantee::Bookmarkable.slot()].streams += 1;
                    }
                    continue;
                }
                for e in resp.events.clone() {
                    let ev = self.m.events[e as usize].clone();
                    let shown = Some(Shown::Seen(e));
                    let mut below_start = false;
                    if start > 0 {
                        if !counted_resumable {
                            counted_resumable = true;
                            self.checked[Guarantee::Resumable.slot()].streams += 1;
                        }
                        self.checked[Guarantee::Resumable.slot()].events += 1;
                        if ev.rev < start {
                            below_start = true;
                            let msg = format!(
                                "Event {} arrived on {kind} starting at revision {start}.",
                                self.describe_event(e)
                            );
                            let f =
                                self.finding(Guarantee::Resumable, r, self.before(r), shown, msg);
                            self.report(f);
                        }
                    }
                    match max {
                        Some((m, mr)) if ev.rev < m => {
                            // Going down already says it; a repeat is not counted again.
                            let msg = if mr == r {
                                format!(
                                    "Event {} follows an event at revision {m} in the same response.",
                                    self.describe_event(e)
                                )
                            } else {
                                format!(
                                    "Event {} arrived after an event at revision {m} on this stream.",
                                    self.describe_event(e)
                                )
                            };
                            let f = self.finding(Guarantee::Ordered, r, Some(mr), shown, msg);
                            self.report(f);
                        }
                        Some((m, mr)) if ev.rev == m && mr != r => {
                            if let Some(&d) = scope.get(&(ev.key, ev.rev)) {
                                if !below_start {
                                    let msg = format!(
                                        "Event {} was delivered again, in a later response.",
                                        self.describe_event(e)
                                    );
                                    let f = self.finding(Guarantee::Unique, r, Some(d), shown, msg);
                                    self.report(f);
                                }
                            } else {
                                let msg = format!(
                                    "Event {} arrived in a later response than other events \
                                     of revision {m}: the revision was split.",
                                    self.describe_event(e)
                                );
                                let f = self.finding(Guarantee::Atomic, r, Some(mr), shown, msg);
                                self.report(f);
                            }
                        }
                        _ => {
                            if !below_start && let Some(&d) = scope.get(&(ev.key, ev.rev)) {
                                let msg = if d == r {
                                    format!(
                                        "Event {} appears twice in one response.",
                                        self.describe_event(e)
                                    )
                                } else if self.m.responses[d as usize].stream != s {
                                    format!(
                                        "Event {} was delivered again after the watch \
                                         resumed: an earlier stream of this watcher had it.",
                                        self.describe_event(e)
                                    )
                                } else {
                                    format!("Event {} was delivered again.", self.describe_event(e))
                                };
                                let f = self.finding(Guarantee::Unique, r, Some(d), shown, msg);
                                self.report(f);
                            }
                        }
                    }
                    if let Some((p, pr)) = progress {
                        self.checked[Guarantee::Bookmarkable.slot()].events += 1;
                        if ev.rev <= p {
                            let msg = format!(
                                "Event {} arrived after a progress notification at revision \
                                 {p}, which promised every event up to {p} had been sent.",
                                self.describe_event(e)
                            );
                            let f = self.finding(Guarantee::Bookmarkable, r, Some(pr), shown, msg);
                            self.report(f);
                        }
                    }
                    scope.entry((ev.key, ev.rev)).or_insert(r);
                    if max.is_none_or(|(m, _)| ev.rev > m) {
                        max = Some((ev.rev, r));
                    }
                }
            }
        }
    }

    // ----- atomic (partial) and consistent (disagreeing sets): per revision -----

    /// Each stream's revisions as sets of keys, against what the writers or other watchers show
    /// at that revision.
    fn revision_sets(&mut self) {
        // Per stream: (revision, key, event) sorted, one per (revision, key), and whether any
        // event of that revision on the stream was inconsistent.
        let mut per_stream: Vec<Vec<(Rev, u32, u32)>> = vec![Vec::new(); self.m.streams.len()];
        for (e, ev) in self.m.events.iter().enumerate() {
            let s = self.m.responses[ev.resp as usize].stream as usize;
            per_stream[s].push((ev.rev, ev.key, e as u32));
        }
        for list in &mut per_stream {
            list.sort_unstable();
            list.dedup_by_key(|x| (x.0, x.1));
        }
        // Revisions nobody acknowledged: the union of keys the watchers saw, and the stream that
        // saw the most.
        let mut union: HashMap<Rev, SmallVec<[u32; 2]>> = HashMap::new();
        let mut best: HashMap<Rev, (usize, u32)> = HashMap::new();
        for (s, list) in per_stream.iter().enumerate() {
            for group in list.chunk_by(|a, b| a.0 == b.0) {
                let rev = group[0].0;
                if self.acked.contains_key(&rev) || group.iter().any(|x| self.bad[x.2 as usize]) {
                    continue;
                }
                let u = union.entry(rev).or_default();
                for x in group {
                    if !u.contains(&x.1) {
                        u.push(x.1);
                    }
                }
                let b = best.entry(rev).or_insert((0, s as u32));
                if group.len() > b.0 {
                    *b = (group.len(), s as u32);
                }
            }
        }
        for list in &per_stream {
            for group in list.chunk_by(|a, b| a.0 == b.0) {
                let rev = group[0].0;
                if group.iter().any(|x| self.bad[x.2 as usize]) {
                    continue;
                }
                let truth: SmallVec<[u32; 2]> = match self.acked.get(&rev) {
                    Some(ws) => {
                        let mut k: SmallVec<[u32; 2]> =
                            ws.iter().map(|&w| self.m.writes[w as usize].key).collect();
                        k.sort_unstable();
                        k.dedup();
                        k
                    }
                    None => union.get(&rev).cloned().unwrap_or_default(),
                };
                if group.len() >= truth.len() {
                    continue;
                }
                let missing: Vec<&str> = truth
                    .iter()
                    .filter(|k| !group.iter().any(|x| x.1 == **k))
                    .map(|&k| self.key(k))
                    .collect();
                let e = group.iter().map(|x| x.2).min().unwrap_or(group[0].2);
                let resp = self.m.events[e as usize].resp;
                let (g, msg) = match (self.acked.contains_key(&rev), best.get(&rev)) {
                    (true, _) => (
                        Guarantee::Atomic,
                        format!(
                            "Revision {rev} has {} acknowledged events, but this stream received \
                             only {} (missing: {}).",
                            truth.len(),
                            group.len(),
                            missing.join(", ")
                        ),
                    ),
                    (false, Some(&(n, s))) if n == truth.len() => {
                        let st = &self.m.streams[s as usize];
                        (
                            Guarantee::Atomic,
                            format!(
                                "Revision {rev} has {n} events (watcher {} received them all), \
                                 but this stream received only {} (missing: {}).",
                                self.m.watchers[st.watcher as usize],
                                group.len(),
                                missing.join(", ")
                            ),
                        )
                    }
                    _ => (
                        Guarantee::Consistent,
                        format!(
                            "Watchers disagree on revision {rev}: this stream received {} event(s), \
                             others received events of {} instead.",
                            group.len(),
                            missing.join(", ")
                        ),
                    ),
                };
                let f = self.finding(g, resp, self.before(resp), Some(Shown::Seen(e)), msg);
                self.report(f);
            }
        }
    }

    // ----- reliable, and acknowledged writes nobody received -----

    fn reliable(&mut self) {
        // Every known event's revision: acknowledged writes and consistent events.
        let mut known: Vec<Rev> = self.acked.keys().copied().collect();
        // The first event received at each revision (consistent or not), by any stream.
        let mut first_at: HashMap<Rev, u32> = HashMap::new();
        for (e, ev) in self.m.events.iter().enumerate() {
            first_at.entry(ev.rev).or_insert(e as u32);
            if !self.bad[e] {
                known.push(ev.rev);
            }
        }
        known.sort_unstable();
        known.dedup();
        // Revisions nobody received, with the first stream that covered them and the response
        // that did.
        let mut unseen: HashMap<Rev, (u32, u32)> = HashMap::new();
        for s in 0..self.m.streams.len() as u32 {
            let st = &self.m.streams[s as usize];
            let start = if st.start > 0 {
                st.start
            } else if let Some(c) = st.created {
                c + 1
            } else {
                continue;
            };
            // Coverage: the revision covered after each response, where it grows.
            let mut cover: Vec<(Rev, u32)> = Vec::new();
            let mut delivered: Vec<Rev> = Vec::new();
            for &r in &st.responses {
                let resp = &self.m.responses[r as usize];
                let top = if resp.progress {
                    resp.header
                } else {
                    let evs = &self.m.events[resp.events.start as usize..resp.events.end as usize];
                    delivered.extend(evs.iter().map(|e| e.rev));
                    evs.iter().map(|e| e.rev).max()
                };
                if let Some(t) = top
                    && cover.last().is_none_or(|c| t > c.0)
                {
                    cover.push((t, r));
                }
            }
            let Some(&(end, _)) = cover.last() else {
                continue;
            };
            delivered.sort_unstable();
            delivered.dedup();
            let lo = known.partition_point(|&x| x < start);
            let hi = known.partition_point(|&x| x <= end);
            if lo >= hi {
                continue;
            }
            let slot = Guarantee::Reliable.slot();
            self.checked[slot].streams += 1;
            self.checked[slot].events += hi - lo;
            let covering = |rev: Rev| cover[cover.partition_point(|c| c.0 < rev)].1;
            let mut gaps: Vec<(Rev, Rev, usize)> = Vec::new();
            let mut open: Option<(Rev, Rev, usize)> = None;
            let mut d = delivered.partition_point(|&x| x < start);
            for &rev in &known[lo..hi] {
                while d < delivered.len() && delivered[d] < rev {
                    d += 1;
                }
                if d < delivered.len() && delivered[d] == rev {
                    gaps.extend(open.take());
                } else if first_at.contains_key(&rev) {
                    let g = open.get_or_insert((rev, rev, 0));
                    g.1 = rev;
                    g.2 += 1;
                } else {
                    unseen.entry(rev).or_insert((s, covering(rev)));
                }
            }
            gaps.extend(open);
            for (a, b, n) in gaps {
                let e = first_at[&a];
                let (w, node) = self.watcher_of_event(e);
                let range = if a == b {
                    format!("revision {a}")
                } else {
                    format!("revisions {a}..{b}")
                };
                let msg = format!(
                    "The stream missed {n} event(s) at {range} that other watchers received \
                     (first: {} to watcher {w} on {node}), though it covered up to revision {end} \
                     from its start at {start}.",
                    self.describe_event(e)
                );
                let resp = covering(a);
                let f = self.finding(
                    Guarantee::Reliable,
                    resp,
                    self.before(resp),
                    Some(Shown::Seen(e)),
                    msg,
                );
                self.report_alone(f);
            }
        }
        let mut unseen: Vec<(Rev, (u32, u32))> = unseen.into_iter().collect();
        unseen.sort_unstable();
        for (rev, (_, resp)) in unseen {
            let Some(ws) = self.acked.get(&rev) else {
                continue;
            };
            let w = ws[0];
            let msg = format!(
                "The acknowledged {} never reached any watcher, though this stream covered its \
                 revision.",
                self.describe_write(w)
            );
            let f = self.finding(
                Guarantee::Consistent,
                resp,
                self.before(resp),
                Some(Shown::Write(w)),
                msg,
            );
            self.report_alone(f);
        }
    }

    // ----- the result -----

    fn view(&self, resp: u32, focus: Option<u32>) -> ResponseView {
        const SHOWN: usize = 10;
        let r = &self.m.responses[resp as usize];
        let op = &self.h.ops[r.op];
        let all: &[Value] = op
            .value
            .get("events")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let total = all.len();
        let from = match focus {
            Some(p) => (p as usize).saturating_sub(SHOWN / 2),
            None => total.saturating_sub(SHOWN),
        }
        .min(total.saturating_sub(SHOWN));
        let to = (from + SHOWN).min(total);
        ResponseView {
            f: op.f.clone(),
            index: op.index,
            time: op.time,
            stream: self.m.streams[r.stream as usize].number,
            node: op.node.clone(),
            revision: r.header,
            events: all[from..to].to_vec(),
            events_total: total,
            events_from: from,
        }
    }

    fn violation(&self, f: &Finding) -> WatchViolation {
        let st = &self.m.streams[f.stream as usize];
        let focus = match f.shown {
            Some(Shown::Seen(e)) if self.m.events[e as usize].resp == f.resp => {
                Some(self.m.events[e as usize].pos)
            }
            _ => None,
        };
        let event = match f.shown {
            Some(Shown::Seen(e)) => Some(self.m.event_json(self.h, e).clone()),
            Some(Shown::Write(w)) => Some(self.write_json(w)),
            None => None,
        };
        let op = &self.h.ops[self.m.responses[f.resp as usize].op];
        WatchViolation {
            guarantee: f.g,
            watcher: self.m.watchers[st.watcher as usize].clone(),
            member: op.node.clone().or_else(|| st.node.clone()),
            stream: st.number,
            time: f.time,
            index: f.index,
            message: f.message.clone(),
            events: f.events,
            event,
            response: Some(self.view(f.resp, focus)),
            previous: f.previous.map(|p| self.view(p, None)),
        }
    }

    fn finish(mut self, started: Instant) -> WatchResult {
        let m = &self.m;
        let counts = WatchCounts {
            watchers: m.watchers.len(),
            streams: m.streams.len(),
            responses: m.responses.len(),
            events: m.events.len(),
            progress_notifications: m.progress,
            resumes: m.streams.iter().filter(|s| s.from == "resume").count(),
            canceled: m.streams.iter().filter(|s| s.canceled).count(),
            compactions: m.streams.iter().filter(|s| s.compacted.is_some()).count(),
            broken: m.streams.iter().filter(|s| s.broken).count(),
            acknowledged_writes: m.writes.iter().filter(|w| w.rev.is_some()).count(),
        };
        let guarantees = Guarantee::ALL
            .iter()
            .map(|&g| GuaranteeSummary {
                name: g,
                promise: g.promise(),
                streams: self.checked[g.slot()].streams,
                events: self.checked[g.slot()].events,
                violations: self.counts[g.slot()],
            })
            .collect();
        let mut violations = Vec::new();
        for g in Guarantee::ALL {
            let mut kept = std::mem::take(&mut self.kept[g.slot()]);
            kept.sort_by_key(|f| f.index);
            kept.truncate(MAX_LISTED);
            violations.extend(kept.iter().map(|f| self.violation(f)));
        }
        let total: usize = self.counts.iter().sum();
        let (valid, reason) = if total > 0 {
            (Validity::Invalid, None)
        } else if m.watch_lines == 0 {
            (
                Validity::Unknown,
                Some(
                    "the history has no watch lines (\"process\":\"watch\"): nothing to check"
                        .into(),
                ),
            )
        } else if m.events.is_empty()
            && m.progress == 0
            && m.streams.iter().all(|s| s.created.is_none())
        {
            // A watch that etcd created and that received nothing (one from a future revision
            // never reached, say) was checked: it kept its promises. One never created was not.
            (
                Validity::Unknown,
                Some(format!(
                    "{} watch lines but no watch was created and none received anything: nothing to check",
                    m.watch_lines
                )),
            )
        } else {
            (Validity::Valid, None)
        };
        WatchResult {
            valid,
            reason,
            prefix: self.m.prefix.clone(),
            counts,
            guarantees,
            violations,
            first_violation_ns: self.first,
            warnings: self.m.warnings.clone(),
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        }
    }
}
