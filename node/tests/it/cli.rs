//! The command line: help, planted-bug names, bad flags.

use std::process::Command;

fn raftkv(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn help_documents_every_flag() {
    let (ok, text) = raftkv(&["--help"]);
    assert!(ok);
    for flag in [
        "--id",
        "--peers",
        "--client-addr",
        "--peer-addr",
        "--data-dir",
        "--election-timeout",
        "--heartbeat-interval",
        "--read-mode",
        "--snapshot-threshold",
        "--bug",
        "--join",
        "--request-timeout",
        "--pre-vote",
        "--check-quorum",
        "--failpoint",
        "--log-level",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(text.contains("lease-ignores-skew") && text.contains("linearizable"));
    assert!(text.contains("no-fsync"), "--help lacks no-fsync:\n{text}");
}

#[test]
fn misspelled_bug_is_refused_listing_the_known_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = raftkv(&[
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:1/127.0.0.1:2",
        "--data-dir",
        d,
        "--bug",
        "stale-reads",
    ]);
    assert!(!ok);
    for name in [
        "stale-read",
        "forget-vote",
        "commit-old-term",
        "skip-prev-check",
        "early-ack",
        "lease-ignores-skew",
        "no-fsync",
        "txn-split",
        "cas-stale-compare",
    ] {
        assert!(text.contains(name), "error does not list {name}:\n{text}");
    }
}

#[test]
fn no_fsync_is_a_known_bug_and_close_misspellings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = [
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:1/127.0.0.1:2",
        "--data-dir",
        d,
    ];
    for bad in ["no_fsync", "nofsync", "no-fsyncs"] {
        let (ok, text) = raftkv(&[&base[..], &["--bug", bad]].concat());
        assert!(!ok);
        assert!(
            text.contains(&format!("unknown bug \"{bad}\"")) && text.contains("no-fsync"),
            "{bad}: {text}"
        );
    }
    // The name itself parses: what stops this node is only its unusable addresses.
    let (ok, text) = raftkv(
        &[
            &base[..],
            &["--bug", "no-fsync", "--client-addr", "nowhere"],
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(
        !text.contains("unknown bug") && text.contains("nowhere"),
        "{text}"
    );
}

#[test]
fn misspelled_failpoint_and_bad_probability_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = [
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:1/127.0.0.1:2",
        "--data-dir",
        d,
    ];
    let (ok, text) = raftkv(&[&base[..], &["--failpoint", "after-votes"]].concat());
    assert!(!ok);
    assert!(
        text.contains("--failpoint")
            && text.contains("after-votes")
            && text.contains("after-vote, before-leader-send, after-save"),
        "{text}"
    );
    let (ok, text) = raftkv(&[&base[..], &["--failpoint", "after-vote=2"]].concat());
    assert!(!ok);
    assert!(text.contains("(0, 1]"), "{text}");
}

#[test]
fn peers_without_a_client_address_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = raftkv(&["--id", "1", "--peers", "1=127.0.0.1:2380", "--data-dir", d]);
    assert!(!ok);
    assert!(text.contains("PEERHOST:PORT/CLIENTHOST:PORT"), "{text}");
    let (ok, text) = raftkv(&[
        "--id",
        "2",
        "--peers",
        "1=127.0.0.1:1/127.0.0.1:2",
        "--data-dir",
        d,
    ]);
    assert!(!ok);
    assert!(text.contains("no entry for this node's id 2"), "{text}");
}
