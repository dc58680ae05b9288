//! Hand-made watch histories, each written as JSONL and read through the history reader, so the
//! recorder's format is tested with the checker: one that keeps every promise, one per guarantee
//! that breaks exactly that one, and a large seeded one.

use super::*;
use crate::parse_history;

const K1: &str = "/faultline/watch/k1";
const K2: &str = "/faultline/watch/k2";

/// Builds a history line by line; every line is 1 ms after the one before.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
}

/// An event: `('p', key, value, revision)` for a put, `('d', key, 0, revision)` for a delete.
type Ev<'a> = (char, &'a str, i64, i64);

impl Lines {
    fn push(&mut self, body: String) -> &mut Self {
        let i = self.lines.len();
        self.lines.push(format!(
            "{{\"index\":{i},\"time\":{},{body}}}",
            (i as u64 + 1) * 1_000_000
        ));
        self
    }

    fn client(&mut self, p: u64, kind: &str, f: &str, key: &str, value: &str) -> &mut Self {
        self.push(format!(
            r#""process":{p},"type":"{kind}","f":"{f}","key":"{key}","value":{value},"node":"n1""#
        ))
    }

    /// An acknowledged put.
    fn put(&mut self, key: &str, value: i64, rev: i64) -> &mut Self {
        self.client(1, "invoke", "put", key, &format!(r#"{{"value":{value}}}"#))
            .client(
                1,
                "ok",
                "put",
                key,
                &format!(r#"{{"value":{value},"revision":{rev}}}"#),
            )
    }

    /// A put whose outcome is unknown (a fresh process each time, as after an `info`).
    fn put_info(&mut self, p: u64, key: &str, value: i64) -> &mut Self {
        self.client(p, "invoke", "put", key, &format!(r#"{{"value":{value}}}"#)).push(format!(
            r#""process":{p},"type":"info","f":"put","key":"{key}","value":{{"value":{value}}},"error":"timeout""#
        ))
    }

    /// An acknowledged delete that deleted the key.
    fn delete(&mut self, key: &str, rev: i64) -> &mut Self {
        self.client(2, "invoke", "delete", key, "null").client(
            2,
            "ok",
            "delete",
            key,
            &format!(r#"{{"revision":{rev},"deleted":1}}"#),
        )
    }

    fn watch(&mut self, f: &str, w: &str, s: u64, node: &str, rest: &str) -> &mut Self {
        self.push(format!(
            r#""process":"watch","type":"info","f":"{f}","node":"{node}","value":{{"watcher":"{w}","stream":{s}{rest}}}"#
        ))
    }

    fn open(&mut self, w: &str, s: u64, node: &str, from: &str, start: i64) -> &mut Self {
        self.watch(
            "watch-open",
            w,
            s,
            node,
            &format!(r#","from":"{from}","start-revision":{start}"#),
        )
    }

    fn created(&mut self, w: &str, s: u64, node: &str, rev: i64) -> &mut Self {
        self.watch(
            "watch-created",
            w,
            s,
            node,
            &format!(r#","watch-id":{s},"revision":{rev}"#),
        )
    }

    fn events(&mut self, w: &str, s: u64, node: &str, header: i64, evs: &[Ev<'_>]) -> &mut Self {
        let list: Vec<String> = evs
            .iter()
            .map(|&(t, key, value, rev)| match t {
                'p' => format!(
                    r#"{{"type":"put","key":"{key}","value":{value},"mod-revision":{rev},"create-revision":{rev},"version":1}}"#
                ),
                _ => format!(r#"{{"type":"delete","key":"{key}","mod-revision":{rev}}}"#),
            })
            .collect();
        self.watch(
            "watch-events",
            w,
            s,
            node,
            &format!(r#","revision":{header},"events":[{}]"#, list.join(",")),
        )
    }

    fn progress(&mut self, w: &str, s: u64, node: &str, rev: i64) -> &mut Self {
        self.watch(
            "watch-progress",
            w,
            s,
            node,
            &format!(r#","revision":{rev}"#),
        )
    }

    fn compacted(&mut self, w: &str, s: u64, node: &str, rev: i64, compact: i64) -> &mut Self {
        self.watch(
            "watch-canceled",
            w,
            s,
            node,
            &format!(
                r#","revision":{rev},"compact-revision":{compact},"reason":"mvcc: required revision has been compacted""#
            ),
        )
    }

    fn broken(&mut self, w: &str, s: u64, node: &str) -> &mut Self {
        self.push(format!(
            r#""process":"watch","type":"info","f":"watch-broken","node":"{node}","value":{{"watcher":"{w}","stream":{s}}},"error":"rpc error: code = Unavailable""#
        ))
    }

    fn closed(&mut self, w: &str, s: u64, node: &str) -> &mut Self {
        self.watch("watch-closed", w, s, node, r#","progress-requests":3"#)
    }

    fn history(&self) -> History {
        parse_history(&(self.lines.join("\n") + "\n"), false).unwrap()
    }
}

/// The writes most tests share: revisions 10..=15 and 17 acknowledged (16 is outside the watched
/// prefix), and an indeterminate put that landed at 18.
fn writes() -> Lines {
    let mut l = Lines::default();
    l.put(K1, 1, 10)
        .put(K2, 1, 11)
        .put(K1, 2, 12)
        .delete(K2, 13)
        .put(K1, 3, 14)
        .put(K2, 2, 15)
        .put(K1, 4, 17)
        .put_info(9, K2, 3);
    l
}

/// Every event of [`writes`] from `from` on, as etcd would send them.
fn all(from: i64) -> Vec<Ev<'static>> {
    [
        ('p', K1, 1, 10),
        ('p', K2, 1, 11),
        ('p', K1, 2, 12),
        ('d', K2, 0, 13),
        ('p', K1, 3, 14),
        ('p', K2, 2, 15),
        ('p', K1, 4, 17),
        ('p', K2, 3, 18),
    ]
    .into_iter()
    .filter(|e| e.3 >= from)
    .collect()
}

fn between(from: i64, to: i64) -> Vec<Ev<'static>> {
    all(from).into_iter().filter(|e| e.3 <= to).collect()
}

/// A second watcher that sees everything, on n3 (the source other watchers are compared with).
fn witness(l: &mut Lines) {
    l.open("w9", 1, "n3", "now", 0)
        .created("w9", 1, "n3", 9)
        .events("w9", 1, "n3", 18, &all(10))
        .closed("w9", 1, "n3");
}

/// Asserts that exactly one violation was found, of guarantee `g`, on `watcher`'s stream
/// connected to `member`, and returns it.
fn only<'r>(r: &'r WatchResult, g: Guarantee, watcher: &str, member: &str) -> &'r WatchViolation {
    assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
    for s in &r.guarantees {
        let want = usize::from(s.name == g);
        assert_eq!(s.violations, want, "{}: {:#?}", s.name, r.violations);
    }
    assert_eq!(r.violations.len(), 1, "{:#?}", r.violations);
    let v = &r.violations[0];
    assert_eq!(v.guarantee, g);
    assert_eq!(
        (v.watcher.as_str(), v.member.as_deref()),
        (watcher, Some(member))
    );
    assert!(r.first_violation_time().is_some());
    v
}

#[test]
fn a_history_that_keeps_every_promise_is_valid() {
    let mut l = writes();
    // w1 on n1: from now, broken after revision 13, resumed at 14.
    l.open("w1", 1, "n1", "now", 0)
        .created("w1", 1, "n1", 9)
        .events("w1", 1, "n1", 10, &between(10, 10))
        .events("w1", 1, "n1", 12, &between(11, 12))
        .progress("w1", 1, "n1", 12)
        .events("w1", 1, "n1", 13, &between(13, 13))
        .broken("w1", 1, "n1")
        .open("w1", 2, "n2", "resume", 14)
        .created("w1", 2, "n2", 15)
        .events("w1", 2, "n2", 15, &between(14, 15))
        .events("w1", 2, "n2", 17, &between(17, 17))
        .events("w1", 2, "n2", 18, &between(18, 18))
        .progress("w1", 2, "n2", 18)
        .closed("w1", 2, "n2");
    // w2 on n2: everything, in three responses.
    l.open("w2", 1, "n2", "now", 0)
        .created("w2", 1, "n2", 9)
        .events("w2", 1, "n2", 14, &between(10, 14))
        .events("w2", 1, "n2", 15, &between(15, 15))
        .events("w2", 1, "n2", 18, &between(17, 18))
        .closed("w2", 1, "n2");
    // w3 on n3: from an older, compacted revision (canceled), then re-listed from now.
    l.open("w3", 1, "n3", "older", 5)
        .created("w3", 1, "n3", 15)
        .compacted("w3", 1, "n3", 15, 8)
        .open("w3", 2, "n3", "relist", 0)
        .created("w3", 2, "n3", 15)
        .events("w3", 2, "n3", 17, &between(17, 17))
        .events("w3", 2, "n3", 18, &between(18, 18))
        .progress("w3", 2, "n3", 18)
        .closed("w3", 2, "n3");
    // w4 on n1: from a future revision; waits (a progress notification below its start), then
    // receives 17 and 18.
    l.open("w4", 1, "n1", "future", 17)
        .created("w4", 1, "n1", 12)
        .progress("w4", 1, "n1", 14)
        .events("w4", 1, "n1", 17, &between(17, 17))
        .events("w4", 1, "n1", 18, &between(18, 18))
        .closed("w4", 1, "n1");
    let r = check_watch(&l.history());
    assert_eq!(r.valid, Validity::Valid, "{:#?}", r.violations);
    assert_eq!(r.violation_count(), 0);
    assert_eq!(r.first_violation_time(), None);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let c = &r.counts;
    assert_eq!(
        (c.watchers, c.streams, c.resumes, c.compactions, c.broken),
        (4, 6, 1, 1, 1)
    );
    assert_eq!(
        (c.events, c.progress_notifications, c.acknowledged_writes),
        (20, 4, 7)
    );
    let reliable = r.guarantee(Guarantee::Reliable).unwrap();
    assert_eq!(
        reliable.streams, 5,
        "every stream with a start and something covered"
    );
    assert_eq!(
        reliable.events,
        4 + 4 + 8 + 2 + 2,
        "known revisions each stream covered"
    );
    assert_eq!(
        r.guarantee(Guarantee::Resumable).unwrap().streams,
        2,
        "the resume and the future watch"
    );
    assert_eq!(r.guarantee(Guarantee::Bookmarkable).unwrap().streams, 4);
    assert_eq!(r.guarantee(Guarantee::Ordered).unwrap().events, 20);
}

#[test]
fn an_event_below_an_earlier_one_breaks_ordered() {
    let mut l = writes();
    witness(&mut l);
    l.open("w1", 1, "n2", "now", 0)
        .created("w1", 1, "n2", 9)
        .events("w1", 1, "n2", 11, &between(10, 11))
        .events("w1", 1, "n2", 13, &between(13, 13))
        .events("w1", 1, "n2", 13, &between(12, 12))
        .events("w1", 1, "n2", 18, &all(14));
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Ordered, "w1", "n2");
    assert_eq!(v.stream, 1);
    assert_eq!(v.event.as_ref().unwrap()["mod-revision"], 12);
    assert_eq!(v.previous.as_ref().unwrap().events[0]["mod-revision"], 13);
    assert!(v.message.contains("revision 13"), "{}", v.message);
}

#[test]
fn an_event_delivered_twice_breaks_unique() {
    let mut l = writes();
    witness(&mut l);
    l.open("w1", 1, "n2", "now", 0)
        .created("w1", 1, "n2", 9)
        .events("w1", 1, "n2", 11, &between(10, 11))
        .events("w1", 1, "n2", 13, &between(11, 13))
        .events("w1", 1, "n2", 18, &all(14));
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Unique, "w1", "n2");
    assert_eq!(v.event.as_ref().unwrap()["mod-revision"], 11);
    assert_eq!(v.response.as_ref().unwrap().events_total, 3);
}

#[test]
fn a_revision_split_over_two_responses_breaks_atomic() {
    // Two indeterminate puts that etcd applied in one revision (as a transaction would be).
    let mut l = Lines::default();
    l.put_info(7, K1, 5).put_info(8, K2, 5);
    let both = [('p', K1, 5, 20), ('p', K2, 5, 20)];
    l.open("w9", 1, "n3", "now", 0)
        .created("w9", 1, "n3", 19)
        .events("w9", 1, "n3", 20, &both)
        .open("w1", 1, "n1", "now", 0)
        .created("w1", 1, "n1", 19)
        .events("w1", 1, "n1", 20, &both[..1])
        .events("w1", 1, "n1", 20, &both[1..]);
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Atomic, "w1", "n1");
    assert!(v.message.contains("split"), "{}", v.message);
}

#[test]
fn a_response_with_part_of_a_revision_breaks_atomic() {
    let mut l = Lines::default();
    l.put_info(7, K1, 5).put_info(8, K2, 5);
    let both = [('p', K1, 5, 20), ('p', K2, 5, 20)];
    l.open("w9", 1, "n3", "now", 0)
        .created("w9", 1, "n3", 19)
        .events("w9", 1, "n3", 20, &both)
        .open("w1", 1, "n1", "now", 0)
        .created("w1", 1, "n1", 19)
        .events("w1", 1, "n1", 20, &both[..1]);
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Atomic, "w1", "n1");
    assert!(
        v.message.contains("watcher w9 received them all"),
        "{}",
        v.message
    );
}

#[test]
fn a_skipped_event_other_watchers_received_breaks_reliable() {
    let mut l = writes();
    witness(&mut l);
    l.open("w1", 1, "n2", "now", 0)
        .created("w1", 1, "n2", 9)
        .events("w1", 1, "n2", 11, &between(10, 11))
        .events("w1", 1, "n2", 14, &between(13, 14))
        .closed("w1", 1, "n2");
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Reliable, "w1", "n2");
    assert_eq!(v.stream, 1);
    assert_eq!(
        v.event.as_ref().unwrap()["mod-revision"],
        12,
        "the missed event"
    );
    assert_eq!(
        v.response.as_ref().unwrap().events[0]["mod-revision"],
        13,
        "the response that skipped it"
    );
    assert!(v.message.contains("w9"), "{}", v.message);
}

#[test]
fn a_resumed_stream_delivering_below_its_start_breaks_resumable() {
    let mut l = writes();
    witness(&mut l);
    l.open("w1", 1, "n1", "now", 0)
        .created("w1", 1, "n1", 9)
        .events("w1", 1, "n1", 12, &between(10, 12))
        .broken("w1", 1, "n1")
        .open("w1", 2, "n2", "resume", 13)
        .created("w1", 2, "n2", 14)
        .events("w1", 2, "n2", 14, &between(12, 14))
        .events("w1", 2, "n2", 18, &all(15));
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Resumable, "w1", "n2");
    assert_eq!(v.stream, 2);
    assert!(
        v.message
            .contains("a resumed stream starting at revision 13"),
        "{}",
        v.message
    );
    assert_eq!(v.events, 1, "only revision 12 is below the start");
}

#[test]
fn a_future_watch_delivering_below_its_start_is_named_as_such() {
    let mut l = writes();
    l.open("w4", 1, "n3", "future", 17)
        .created("w4", 1, "n3", 12)
        .events("w4", 1, "n3", 18, &all(15));
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Resumable, "w4", "n3");
    assert!(
        v.message.contains("a watch from a future revision"),
        "{}",
        v.message
    );
}

#[test]
fn an_event_after_a_progress_notification_that_covered_it_breaks_bookmarkable() {
    // etcd-io/etcd#15220: a requested progress notification at 120 overtakes events 118..120
    // still queued for the watcher.
    let mut l = Lines::default();
    for rev in 115..=121 {
        l.put(K1, rev, rev);
    }
    let ev = |a: i64, b: i64| -> Vec<Ev<'static>> { (a..=b).map(|r| ('p', K1, r, r)).collect() };
    l.open("w1", 1, "n2", "now", 0)
        .created("w1", 1, "n2", 114)
        .events("w1", 1, "n2", 117, &ev(115, 117))
        .progress("w1", 1, "n2", 120)
        .events("w1", 1, "n2", 120, &ev(118, 120))
        .events("w1", 1, "n2", 121, &ev(121, 121))
        .closed("w1", 1, "n2");
    let h = l.history();
    let r = check_watch(&h);
    let v = only(&r, Guarantee::Bookmarkable, "w1", "n2");
    assert_eq!(v.stream, 1);
    assert_eq!(v.events, 3, "118, 119 and 120 all came after the promise");
    assert_eq!(v.event.as_ref().unwrap()["mod-revision"], 118);
    let p = v.previous.as_ref().unwrap();
    assert_eq!((p.f.as_str(), p.revision), ("watch-progress", Some(120)));
    assert!(
        v.message.contains("progress notification at revision 120"),
        "{}",
        v.message
    );
    let at = h
        .ops
        .iter()
        .find(|o| o.f == "watch-events" && o.value["revision"] == 120)
        .unwrap();
    assert_eq!(v.index, at.index);
    assert_eq!(r.first_violation_time(), at.time.map(Duration::from_nanos));
}

#[test]
fn an_event_nobody_wrote_breaks_consistent() {
    let mut l = writes();
    witness(&mut l);
    l.open("w1", 1, "n2", "now", 0)
        .created("w1", 1, "n2", 9)
        .events("w1", 1, "n2", 15, &all(10)[..6])
        .events("w1", 1, "n2", 16, &[('p', K1, 99, 16)])
        .events("w1", 1, "n2", 18, &all(17));
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Consistent, "w1", "n2");
    assert!(v.message.contains("nobody invoked"), "{}", v.message);
}

#[test]
fn an_event_at_another_revision_than_its_acknowledged_write_breaks_consistent() {
    let mut l = writes();
    witness(&mut l);
    // Revision 12 shows the value acknowledged at 14.
    let mut evs = all(10);
    evs[2] = ('p', K1, 3, 12);
    l.open("w1", 1, "n2", "now", 0)
        .created("w1", 1, "n2", 9)
        .events("w1", 1, "n2", 18, &evs);
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Consistent, "w1", "n2");
    assert!(
        v.message.contains("acknowledged at revision 14"),
        "{}",
        v.message
    );
}

#[test]
fn an_acknowledged_write_no_watcher_received_breaks_consistent() {
    let mut l = writes();
    for (w, node) in [("w1", "n1"), ("w2", "n2")] {
        l.open(w, 1, node, "now", 0)
            .created(w, 1, node, 9)
            .events(w, 1, node, 11, &between(10, 11))
            .events(w, 1, node, 18, &all(13));
    }
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Consistent, "w1", "n1");
    assert!(
        v.message.contains("never reached any watcher"),
        "{}",
        v.message
    );
    assert_eq!(v.event.as_ref().unwrap()["mod-revision"], 12);
    assert_eq!(v.event.as_ref().unwrap()["value"], 2);
}

#[test]
fn watchers_disagreeing_on_a_revision_break_consistent() {
    // Revision 18 is the indeterminate put of k2 = 3; w1 says it was k2 = 4, also attempted.
    let mut l = writes();
    l.put_info(10, K2, 4);
    witness(&mut l);
    let mut evs = all(10);
    evs[7] = ('p', K2, 4, 18);
    l.open("w1", 1, "n2", "now", 0)
        .created("w1", 1, "n2", 9)
        .events("w1", 1, "n2", 18, &evs);
    let r = check_watch(&l.history());
    let v = only(&r, Guarantee::Consistent, "w1", "n2");
    assert!(
        v.message.contains("disagrees with watcher w9"),
        "{}",
        v.message
    );
}

#[test]
fn writes_outside_the_watched_folder_are_not_expected() {
    let mut l = writes();
    l.put("/faultline/lease/s0-g1-k0", 1, 16);
    witness(&mut l);
    let r = check_watch(&l.history());
    assert_eq!(r.valid, Validity::Valid, "{:#?}", r.violations);
    assert_eq!(r.prefix.as_deref(), Some("/faultline/watch/"));
    assert_eq!(
        r.counts.acknowledged_writes, 7,
        "the lease key's put is not counted"
    );
}

#[test]
fn a_history_without_watch_lines_is_unknown() {
    let r = check_watch(&writes().history());
    assert_eq!(r.valid, Validity::Unknown);
    assert!(r.reason.as_deref().unwrap().contains("no watch lines"));
}

#[test]
fn a_created_future_watch_that_receives_nothing_kept_its_promises_and_one_never_created_says_nothing()
 {
    // Writes up to revision 20, a watch from revision 1,000 that etcd created: nothing is due.
    let mut l = writes();
    l.open("w1", 1, "n1", "future", 1000)
        .created("w1", 1, "n1", 20)
        .watch("watch-closed", "w1", 1, "n1", "");
    let r = check_watch(&l.history());
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.reason);

    // Opened but never created (the member never answered): nothing was checked.
    let mut l = writes();
    l.open("w1", 1, "n1", "future", 1000)
        .watch("watch-broken", "w1", 1, "n1", "");
    let r = check_watch(&l.history());
    assert_eq!(r.valid, Validity::Unknown);
    assert!(
        r.reason
            .as_deref()
            .unwrap()
            .contains("no watch was created"),
        "{:?}",
        r.reason
    );
}

#[test]
fn malformed_watch_lines_are_skipped_with_a_warning() {
    let mut l = writes();
    witness(&mut l);
    l.push(r#""process":"watch","type":"info","f":"watch-events","value":{"stream":1}"#.into());
    let r = check_watch(&l.history());
    assert_eq!(r.valid, Validity::Valid);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("\"watcher\""), "{:?}", r.warnings);
}

#[test]
fn violations_are_counted_in_full_but_listed_up_to_the_cap() {
    let mut l = Lines::default();
    for rev in 1..=100 {
        l.put(K1, rev, rev);
    }
    l.open("w1", 1, "n1", "now", 0).created("w1", 1, "n1", 0);
    for rev in 1..=100 {
        // A progress notification one revision ahead, every time: each event then breaks it.
        l.progress("w1", 1, "n1", rev)
            .events("w1", 1, "n1", rev, &[('p', K1, rev, rev)]);
    }
    let r = check_watch(&l.history());
    assert_eq!(
        r.guarantee(Guarantee::Bookmarkable).unwrap().violations,
        100
    );
    assert_eq!(r.violations.len(), MAX_LISTED);
    assert_eq!(
        r.violations[0].event.as_ref().unwrap()["mod-revision"],
        1,
        "the earliest are kept"
    );
}

/// A seeded run of 12 watchers with progress notifications, batches and resumes over `revs`
/// revisions (every seventh revision belongs to keys outside the prefix).
fn generated(seed: u64, revs: i64) -> (String, usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<String> = (0..10).map(|k| format!("/faultline/watch/k{k}")).collect();
    let mut counters = [0i64; 10];
    // (time ns, line without index/time)
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut events: Vec<(i64, String)> = Vec::new();
    let mut p = 0u64;
    for rev in 1..=revs {
        if rev % 7 == 0 {
            continue;
        }
        let k = rng.random_range(0..10);
        counters[k] += 1;
        let (key, value) = (&keys[k], counters[k]);
        let t = rev as u64 * 1_000_000;
        p = (p + 1) % 20;
        out.push((t, format!(r#""process":{p},"type":"invoke","f":"put","key":"{key}","value":{{"value":{value}}}"#)));
        out.push((t + 500_000, format!(r#""process":{p},"type":"ok","f":"put","key":"{key}","value":{{"value":{value},"revision":{rev}}}"#)));
        events.push((rev, format!(r#"{{"type":"put","key":"{key}","value":{value},"mod-revision":{rev},"create-revision":{rev},"version":{value}}}"#)));
    }
    for w in 1..=12 {
        let node = format!("n{}", w % 3 + 1);
        let line = |f: &str, s: u64, rest: String| {
            format!(
                r#""process":"watch","type":"info","f":"{f}","node":"{node}","value":{{"watcher":"w{w}","stream":{s}{rest}}}"#
            )
        };
        let mut s = 1;
        let mut t = 100_000 + w as u64;
        out.push((
            t,
            line(
                "watch-open",
                s,
                r#","from":"now","start-revision":0"#.into(),
            ),
        ));
        out.push((
            t + 1,
            line("watch-created", s, r#","watch-id":1,"revision":0"#.into()),
        ));
        let mut i = 0;
        while i < events.len() {
            let n = rng.random_range(1..=8).min(events.len() - i);
            let batch = &events[i..i + n];
            let last = batch[n - 1].0;
            t = t.max(last as u64 * 1_000_000 + 600_000) + rng.random_range(1..200_000);
            let list: Vec<&str> = batch.iter().map(|e| e.1.as_str()).collect();
            out.push((
                t,
                line(
                    "watch-events",
                    s,
                    format!(r#","revision":{last},"events":[{}]"#, list.join(",")),
                ),
            ));
            for _ in 0..rng.random_range(1..=4) {
                t += rng.random_range(1..5_000);
                out.push((
                    t,
                    line("watch-progress", s, format!(r#","revision":{last}"#)),
                ));
            }
            i += n;
            if rng.random_bool(0.002) && i < events.len() {
                out.push((t + 1, format!(r#""process":"watch","type":"info","f":"watch-broken","node":"{node}","value":{{"watcher":"w{w}","stream":{s}}},"error":"unavailable""#)));
                s += 1;
                out.push((
                    t + 2,
                    line(
                        "watch-open",
                        s,
                        format!(r#","from":"resume","start-revision":{}"#, last + 1),
                    ),
                ));
                out.push((
                    t + 3,
                    line(
                        "watch-created",
                        s,
                        format!(r#","watch-id":1,"revision":{last}"#),
                    ),
                ));
                t += 4;
            }
        }
        out.push((
            t + 1,
            line("watch-closed", s, r#","progress-requests":1"#.into()),
        ));
    }
    out.sort_by_key(|l| l.0);
    let n = out.len();
    let text: String = out
        .iter()
        .enumerate()
        .map(|(i, (t, rest))| format!("{{\"index\":{i},\"time\":{t},{rest}}}\n"))
        .collect();
    (text, n)
}

#[test]
fn a_large_generated_history_that_keeps_every_promise_is_valid() {
    let seed = 20_261_203;
    let (text, lines) = generated(seed, 30_000);
    let h = parse_history(&text, false).unwrap();
    let watch_lines = h.watch_ops().count();
    let started = Instant::now();
    let r = check_watch(&h);
    eprintln!(
        "generated watch history (seed {seed}): {lines} lines, {watch_lines} watch lines, {} events, checked in {:.2} s",
        r.counts.events,
        started.elapsed().as_secs_f64()
    );
    assert!(watch_lines > 190_000, "{watch_lines} watch lines");
    assert_eq!(r.valid, Validity::Valid, "seed {seed}: {:#?}", r.violations);
    assert_eq!(r.counts.watchers, 12);
    assert_eq!(r.counts.events, 12 * (30_000 - 30_000 / 7) as usize);
    assert!(r.counts.resumes > 0, "seed {seed}: the run has resumes");
}
