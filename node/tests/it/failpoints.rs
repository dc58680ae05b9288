//! Failpoints stop a node exactly where they are named: a crash exits with code 86 leaving on
//! disk what a crash there would, a sleep stalls the Raft loop and lets the cluster move on, a
//! pause armed over HTTP (`--failpoint-api`) holds it until disarmed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{Cluster, Resp, http, put_body};

/// Waits (bounded) for some running node to exit by itself; returns its id and exit code.
fn first_exit(c: &mut Cluster, within: Duration) -> (u64, Option<i32>) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for p in c.nodes.iter_mut().filter(|p| p.running()) {
            if let Some(st) = p.wait_exit(Duration::from_millis(10)) {
                return (p.id, st.code());
            }
        }
    }
    panic!("no node exited within {within:?}\n{}", c.logs());
}

/// The `recovered storage` line of a restarted node's second boot (its log is appended to), waited
/// for (bounded).
fn second_recovered_line(c: &Cluster, id: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = c.node(id).log_text();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("recovered storage"))
            .collect();
        if lines.len() >= 2 {
            return lines[lines.len() - 1].to_string();
        }
        assert!(Instant::now() < deadline, "no restart\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Arms `after-vote` everywhere: the first election's voters crash right after voting. A
/// correct voter restarts with its vote on disk; one with the forget-vote bug restarts without.
fn voter_restarts(bugs: &[&str]) -> String {
    let mut args = vec!["--failpoint", "after-vote", "--pre-vote", "false"];
    args.extend_from_slice(bugs);
    let mut c = Cluster::start(3, &args);
    let (id, code) = first_exit(&mut c, Duration::from_secs(20));
    assert_eq!(
        code,
        Some(86),
        "node {id} exited with {code:?}\n{}",
        c.logs()
    );
    let p = c.node_mut(id);
    assert!(
        p.log_text().contains("failpoint after-vote fired"),
        "{}",
        p.log_text()
    );
    p.extra.retain(|a| a != "--failpoint" && a != "after-vote");
    p.start();
    second_recovered_line(&c, id)
}

#[test]
fn after_vote_crash_leaves_the_vote_on_disk() {
    let line = voter_restarts(&[]);
    assert!(line.contains("vote=Some("), "{line}");
}

#[test]
fn after_vote_crash_with_the_forget_vote_bug_loses_the_vote() {
    let line = voter_restarts(&["--bug", "forget-vote"]);
    assert!(line.contains("vote=None"), "{line}");
}

#[test]
fn before_leader_send_crash_stops_the_first_leader_at_its_first_entry() {
    let mut c = Cluster::start(3, &["--failpoint", "before-leader-send"]);
    let (id, code) = first_exit(&mut c, Duration::from_secs(20));
    assert_eq!(code, Some(86), "{}", c.logs());
    let log = c.node(id).log_text();
    assert!(log.contains("election started"), "{log}");
    assert!(log.contains("failpoint before-leader-send fired"), "{log}");
    // Its no-op was persisted before the crash: it is there after a restart (and nowhere else).
    let p = c.node_mut(id);
    p.extra.clear();
    p.start();
    let line = second_recovered_line(&c, id);
    let field = |name: &str| -> u64 {
        let at = line.find(&format!(" {name}=")).expect(name) + name.len() + 2;
        line[at..].split(' ').next().unwrap().parse().unwrap()
    };
    // One entry beyond the commit index: the leader's no-op, never sent.
    assert_eq!(field("entries"), field("commit") + 1, "{line}");
}

#[test]
fn before_leader_send_sleep_stalls_the_leader_and_the_others_elect_another() {
    let mut c = Cluster::start(3, &["--failpoint", "before-leader-send=1:sleep-2000"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stalled = loop {
        if let Some(p) = c
            .nodes
            .iter()
            .find(|p| p.log_text().contains("stalling the Raft loop"))
        {
            break p.id;
        }
        assert!(Instant::now() < deadline, "no stall\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    // The stalled leader sends no heartbeats: with 300 ms election timeouts another node
    // becomes leader (and stalls in turn) while the first is still asleep.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let others_led = c
            .nodes
            .iter()
            .filter(|p| p.id != stalled)
            .any(|p| p.log_text().contains("to=\"leader\""));
        if others_led {
            break;
        }
        assert!(Instant::now() < deadline, "no second leader\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited: Vec<u64> = c
        .nodes
        .iter_mut()
        .filter_map(|p| p.wait_exit(Duration::from_millis(30)).map(|_| p.id))
        .collect();
    assert!(
        exited.is_empty(),
        "a sleep must not end the process: {exited:?} exited\n{}",
        c.logs()
    );
}

fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Resp {
    http(addr, method, path, body, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

#[test]
fn the_failpoint_api_is_refused_unless_the_node_was_started_with_it() {
    let c = Cluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let r = call(&c.node(1).client(), "GET", "/failpoints", None);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["error"], "failpoint-api-off", "{r:?}");
}

/// `leader-commit` as a pause: the write that moves the commit index is applied and answered,
/// then the Raft loop holds (its `/status`, served by the loop, no longer answers) while
/// `/failpoints` says where it is held; a `DELETE` lets it go on.
#[test]
fn a_leader_commit_pause_answers_the_client_then_holds_the_loop_until_disarmed() {
    let c = Cluster::start(3, &["--failpoint-api"]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let addr = c.node(leader).client();
    let path = "/failpoints/leader-commit";
    for (path, body, says) in [
        (path, json!({"action": "nap"}), "crash, pause or sleep-MS"),
        (path, json!({"action": "pause", "count": 0}), "at least 1"),
        (path, json!({"action": "pause", "when": 1}), "unknown field"),
        (
            "/failpoints/leader-comit",
            json!({"action": "pause"}),
            "unknown failpoint",
        ),
    ] {
        let r = call(&addr, "PUT", path, Some(&body));
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(
            r.body["message"].as_str().unwrap_or("").contains(says),
            "{body}: {r:?}"
        );
    }
    let r = call(
        &addr,
        "PUT",
        path,
        Some(&json!({"action": "pause", "count": 1})),
    );
    assert_eq!(r.body["armed"]["leader-commit"], "pause x1", "{r:?}");

    let w = call(&addr, "PUT", "/kv/x", Some(&put_body(json!(7))));
    assert_eq!(
        w.status, 200,
        "the committing write was not answered: {w:?}"
    );
    let v = call(&addr, "GET", "/failpoints", None);
    assert_eq!(v.body["paused"], "leader-commit", "{v:?}");
    assert_eq!(v.body["hits"]["leader-commit"], 1, "{v:?}");
    assert!(
        http(&addr, "GET", "/status", None, Duration::from_millis(500)).is_err(),
        "the loop answered /status while paused"
    );

    let r = call(&addr, "DELETE", path, None);
    assert_eq!(
        (r.status, r.body["paused"].clone()),
        (200, Value::Null),
        "{r:?}"
    );
    let s = call(&addr, "GET", "/status", None);
    assert_eq!(s.status, 200, "{s:?}");
    assert!(s.body["applied"].as_u64().unwrap() >= 2, "{s:?}");
    assert_eq!(
        call(&addr, "GET", "/failpoints", None).body["armed"],
        json!({})
    );
}
