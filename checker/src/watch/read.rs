//! Reading a history into what the watch checker needs: watchers and their streams, the
//! responses and events each stream received (from `"process":"watch"` lines), and the writes
//! the clients made (puts and deletes, with the revision etcd acknowledged).
//!
//! Keys and values are interned to small integers so that the checks compare and hash numbers,
//! not strings: a history can hold a million events. Malformed watch lines are skipped with a
//! warning rather than failing the check: the recorder is best effort, the verdict is not.

use ahash::HashMap;
use serde_json::Value;

use crate::history::{History, Op, Outcome};

/// An etcd revision.
pub(super) type Rev = i64;

/// What an event or a write does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Put,
    Delete,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Put => "put",
            Kind::Delete => "delete",
        }
    }
}

/// One event of a `watch-events` response.
#[derive(Debug, Clone)]
pub(super) struct Event {
    pub kind: Kind,
    pub key: u32,
    /// The interned value of a put; `None` for a delete or a value that could not be decoded.
    pub value: Option<u32>,
    pub rev: Rev,
    /// Index into [`Model::responses`].
    pub resp: u32,
    /// Position in the response's `events` list.
    pub pos: u32,
}

/// A response a stream received that carries a revision promise: events or a progress
/// notification.
#[derive(Debug, Clone)]
pub(super) struct Response {
    /// Position in [`History::ops`].
    pub op: usize,
    /// Index into [`Model::streams`].
    pub stream: u32,
    pub progress: bool,
    /// The header revision.
    pub header: Option<Rev>,
    /// Range of [`Model::events`].
    pub events: std::ops::Range<u32>,
}

/// One (re)open of a watch by a watcher.
#[derive(Debug, Clone, Default)]
pub(super) struct Stream {
    /// Index into [`Model::watchers`].
    pub watcher: u32,
    /// The stream number the recorder gave it (1-based per watcher).
    pub number: u64,
    /// `now`, `older`, `future`, `resume`, `relist` (empty when no `watch-open` was recorded).
    pub from: String,
    /// The requested start revision; 0 means "from now".
    pub start: Rev,
    /// The `watch-created` header revision.
    pub created: Option<Rev>,
    /// The member of its first line.
    pub node: Option<String>,
    /// Indices into [`Model::responses`], in order of arrival.
    pub responses: Vec<u32>,
    /// The compact revision of a cancel caused by compaction.
    pub compacted: Option<Rev>,
    pub canceled: bool,
    pub broken: bool,
}

impl Stream {
    /// What kind of watch it is, for messages: "a resumed stream", ...
    pub(super) fn describe(&self) -> String {
        match self.from.as_str() {
            "resume" => "a resumed stream".into(),
            "older" => "a watch from an older revision".into(),
            "future" => "a watch from a future revision".into(),
            "relist" => "a watch re-listed after a cancel".into(),
            "now" => "a watch from now".into(),
            _ => format!("a watch from revision {}", self.start),
        }
    }
}

/// A client put or delete.
#[derive(Debug, Clone)]
pub(super) struct Write {
    /// Index into [`History::operations`].
    pub operation: usize,
    pub kind: Kind,
    pub key: u32,
    /// The interned value of a put (`None` for deletes, or a put without a value).
    pub value: Option<u32>,
    pub outcome: Outcome,
    /// The revision etcd acknowledged (ok puts; ok deletes that deleted something).
    pub rev: Option<Rev>,
}

/// Interns strings as dense integers.
#[derive(Debug, Default)]
pub(super) struct Interner {
    ids: HashMap<String, u32>,
    pub names: Vec<String>,
}

impl Interner {
    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }
}

/// Everything read from one history.
#[derive(Debug, Default)]
pub(super) struct Model {
    pub keys: Interner,
    pub values: Interner,
    pub watchers: Vec<String>,
    pub streams: Vec<Stream>,
    pub responses: Vec<Response>,
    pub events: Vec<Event>,
    pub writes: Vec<Write>,
    /// Keys some put attached to a lease: their deletes may come from an expiry, with no client
    /// delete behind them.
    pub leased_keys: Vec<bool>,
    /// Keys some client tried to delete.
    pub deleted_keys: Vec<bool>,
    /// The watched prefix (see `WatchResult::prefix`).
    pub prefix: Option<String>,
    /// Watch lines seen at all.
    pub watch_lines: usize,
    pub progress: usize,
    pub warnings: Vec<String>,
}

/// Most warnings kept (the count of the rest is added to the last one).
const MAX_WARNINGS: usize = 20;

impl Model {
    fn warn(&mut self, op: &Op, message: impl std::fmt::Display) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings
                .push(format!("line {} (index {}): {message}", op.line, op.index));
        }
    }

    fn flag(v: &mut Vec<bool>, key: u32) {
        let k = key as usize;
        if v.len() <= k {
            v.resize(k + 1, false);
        }
        v[k] = true;
    }

    /// Whether some put attached `key` to a lease.
    pub(super) fn leased(&self, key: u32) -> bool {
        self.leased_keys.get(key as usize).copied().unwrap_or(false)
    }

    /// Whether some client invoked a delete of `key`.
    pub(super) fn deleted(&self, key: u32) -> bool {
        self.deleted_keys
            .get(key as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The JSON of an observed event, as recorded.
    pub(super) fn event_json<'h>(&self, history: &'h History, e: u32) -> &'h Value {
        let ev = &self.events[e as usize];
        let op = &history.ops[self.responses[ev.resp as usize].op];
        &op.value["events"][ev.pos as usize]
    }
}

/// The canonical text of a value, for interning: two values are the same iff their JSON is.
fn canonical(v: &Value) -> String {
    v.to_string()
}

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

/// Reads `history` into a [`Model`].
pub(super) fn read(history: &History) -> Model {
    let mut m = Model::default();
    let mut streams: HashMap<(u32, u64), u32> = HashMap::default();
    let mut watchers: HashMap<String, u32> = HashMap::default();
    for (pos, op) in history.ops.iter().enumerate() {
        if op.process != crate::Process::Watch {
            continue;
        }
        m.watch_lines += 1;
        let Some(watcher) = op.value.get("watcher").and_then(Value::as_str) else {
            m.warn(op, "watch line without a \"watcher\" string: skipped");
            continue;
        };
        let Some(number) = op.value.get("stream").and_then(Value::as_u64) else {
            m.warn(op, "watch line without an integer \"stream\": skipped");
            continue;
        };
        let w = *watchers.entry(watcher.to_string()).or_insert_with(|| {
            m.watchers.push(watcher.to_string());
            (m.watchers.len() - 1) as u32
        });
        let s = *streams.entry((w, number)).or_insert_with(|| {
            m.streams.push(Stream {
                watcher: w,
                number,
                node: op.node.clone(),
                ..Stream::default()
            });
            (m.streams.len() - 1) as u32
        });
        match op.f.as_str() {
            "watch-open" => {
                let st = &mut m.streams[s as usize];
                st.from = op
                    .value
                    .get("from")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                st.start = int(&op.value, "start-revision").unwrap_or(0);
                if let Some(p) = op.value.get("prefix").and_then(Value::as_str) {
                    m.prefix = Some(p.to_string());
                }
            }
            "watch-created" => m.streams[s as usize].created = int(&op.value, "revision"),
            "watch-events" => read_events(&mut m, op, pos, s),
            "watch-progress" => {
                m.progress += 1;
                let r = m.responses.len() as u32;
                let at = m.events.len() as u32;
                m.responses.push(Response {
                    op: pos,
                    stream: s,
                    progress: true,
                    header: int(&op.value, "revision"),
                    events: at..at,
                });
                m.streams[s as usize].responses.push(r);
                if int(&op.value, "revision").is_none() {
                    m.warn(op, "watch-progress without a \"revision\"");
                }
            }
            "watch-canceled" => {
                let st = &mut m.streams[s as usize];
                st.canceled = true;
                st.compacted = int(&op.value, "compact-revision").filter(|&c| c > 0);
            }
            "watch-broken" => m.streams[s as usize].broken = true,
            "watch-closed" => {}
            other => m.warn(op, format!("unknown watch line {other:?}: ignored")),
        }
    }
    if m.prefix.is_none() {
        m.prefix = folder_of(&m.keys.names);
    }
    read_writes(history, &mut m);
    m
}

/// The longest common prefix of `keys`, cut after its last `/`: the folder the watchers
/// followed, as far as their events show. Writes outside it were never theirs to see (a history
/// may also hold another workload's keys); inferring too short a folder only expects more.
fn folder_of(keys: &[String]) -> Option<String> {
    let first = keys.first()?;
    let mut common = first.len();
    for k in &keys[1..] {
        common = first
            .bytes()
            .zip(k.bytes())
            .take(common)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Cut at a `/` (ASCII), never inside a multi-byte character.
    let cut = first.as_bytes()[..common]
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    Some(first[..cut].to_string())
}

fn read_events(m: &mut Model, op: &Op, pos: usize, s: u32) {
    let r = m.responses.len() as u32;
    let at = m.events.len() as u32;
    let list = op.value.get("events").and_then(Value::as_array);
    if list.is_none() {
        m.warn(op, "watch-events without an \"events\" list");
    }
    for (i, e) in list.into_iter().flatten().enumerate() {
        let kind = match e.get("type").and_then(Value::as_str) {
            Some("put") => Kind::Put,
            Some("delete") => Kind::Delete,
            other => {
                m.warn(op, format!("event {i}: unknown type {other:?}: skipped"));
                continue;
            }
        };
        let (Some(key), Some(rev)) = (e.get("key").and_then(Value::as_str), int(e, "mod-revision"))
        else {
            m.warn(
                op,
                format!("event {i}: no \"key\" or \"mod-revision\": skipped"),
            );
            continue;
        };
        let value = match (kind, e.get("value")) {
            (Kind::Put, Some(v)) if !v.is_null() => Some(m.values.intern(&canonical(v))),
            _ => None,
        };
        m.events.push(Event {
            kind,
            key: m.keys.intern(key),
            value,
            rev,
            resp: r,
            pos: i as u32,
        });
    }
    m.responses.push(Response {
        op: pos,
        stream: s,
        progress: false,
        header: int(&op.value, "revision"),
        events: at..m.events.len() as u32,
    });
    m.streams[s as usize].responses.push(r);
}

fn read_writes(history: &History, m: &mut Model) {
    for (i, o) in history.operations.iter().enumerate() {
        let inv = history.invocation(o);
        let kind = match inv.f.as_str() {
            "put" => Kind::Put,
            "delete" => Kind::Delete,
            _ => continue,
        };
        let Some(key) = history.key(o) else { continue };
        if m.prefix.as_deref().is_some_and(|p| !key.starts_with(p)) {
            continue;
        }
        let key = m.keys.intern(key);
        let value = match kind {
            Kind::Put => inv
                .value
                .get("value")
                .map(|v| m.values.intern(&canonical(v))),
            Kind::Delete => None,
        };
        if kind == Kind::Put && inv.value.get("lease").is_some_and(|l| !l.is_null()) {
            Model::flag(&mut m.leased_keys, key);
        }
        if kind == Kind::Delete {
            Model::flag(&mut m.deleted_keys, key);
        }
        let done = history.completion(o).map(|c| &c.value);
        let rev = match (o.outcome, kind, done) {
            (Outcome::Ok, Kind::Put, Some(v)) => int(v, "revision"),
            // A delete that deleted nothing made no revision and no event.
            (Outcome::Ok, Kind::Delete, Some(v)) if int(v, "deleted").unwrap_or(0) >= 1 => {
                int(v, "revision")
            }
            _ => None,
        };
        m.writes.push(Write {
            operation: i,
            kind,
            key,
            value,
            outcome: o.outcome,
            rev,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::folder_of;

    #[test]
    fn the_watched_folder_is_the_common_prefix_up_to_a_slash() {
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let f = |ks: &[&str]| folder_of(&keys(ks));
        assert_eq!(
            f(&["/faultline/watch/k1", "/faultline/watch/k10"]).as_deref(),
            Some("/faultline/watch/")
        );
        assert_eq!(
            f(&["/faultline/watch/k1"]).as_deref(),
            Some("/faultline/watch/")
        );
        assert_eq!(f(&["/a/é1", "/a/é2"]).as_deref(), Some("/a/"));
        assert_eq!(f(&["x", "y"]).as_deref(), Some(""));
        assert_eq!(f(&[]), None);
    }
}
