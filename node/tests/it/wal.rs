//! Damaged write-ahead logs: a torn tail is repaired, damage in the middle is refused.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::cluster::{Cluster, http, last_segment, put_body, read};

/// A one-node cluster with `n` acknowledged writes, then killed.
fn written_then_killed(n: u64) -> Cluster {
    let mut c = Cluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let addr = c.node(1).client();
    for i in 0..n {
        let r = http(
            &addr,
            "PUT",
            &format!("/kv/k{i}"),
            Some(&put_body(json!(i))),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
    }
    c.node_mut(1).kill();
    c
}

#[test]
fn torn_final_wal_record_is_truncated_on_restart() {
    let mut c = written_then_killed(20);
    let seg = last_segment(&c.node(1).dir);
    let len = std::fs::metadata(&seg).unwrap().len();
    // A frame header promising 4096 bytes, followed by only a few: a write cut short by a crash.
    let mut header = Vec::new();
    header.extend_from_slice(&4096u32.to_le_bytes());
    header.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    let hcrc = crc32fast::hash(&header);
    header.extend_from_slice(&hcrc.to_le_bytes());
    header.extend_from_slice(b"partial payload");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&header)
        .unwrap();

    c.node_mut(1).start();
    c.wait_leader(Duration::from_secs(20));
    let addr = c.node(1).client();
    for i in 0..20u64 {
        assert_eq!(
            read(std::slice::from_ref(&addr), &format!("k{i}")),
            json!(i)
        );
    }
    assert!(
        c.node(1)
            .log_text()
            .contains("truncated a torn final WAL record"),
        "{}",
        c.logs()
    );
    // The torn bytes are gone and new writes append after the good data.
    let r = http(
        &addr,
        "PUT",
        "/kv/after",
        Some(&put_body(json!("ok"))),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    c.node_mut(1).kill();
    let new_len = std::fs::metadata(last_segment(&c.node(1).dir))
        .unwrap()
        .len();
    assert!(
        new_len > len,
        "appends continued after the truncation point"
    );
    c.node_mut(1).start();
    c.wait_leader(Duration::from_secs(20));
    assert_eq!(read(&[c.node(1).client()], "after"), json!("ok"));
    assert!(
        c.node(1)
            .log_text()
            .matches("truncated a torn")
            .nth(1)
            .is_none(),
        "the second restart found no damage"
    );
}

#[test]
fn flipped_byte_in_the_middle_of_the_wal_is_refused_with_a_clear_error() {
    let mut c = written_then_killed(20);
    let seg = last_segment(&c.node(1).dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    c.node_mut(1).start();
    let status = c
        .node_mut(1)
        .wait_exit(Duration::from_secs(20))
        .expect("the node must refuse to start");
    assert!(!status.success());
    let log = c.node(1).log_text();
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        log.contains("corrupt data in") && log.contains(&name) && log.contains("at offset"),
        "unclear error:\n{log}"
    );
    // The damaged file is left alone for an operator.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
}
