//! `faultfs corrupt` through the binary, on plain files in a temp dir (no FUSE needed): the JSON
//! report must describe exactly what changed on disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{BIN, pattern};

fn corrupt(root: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("corrupt")
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// Parses the single stdout line, asserting exit 0.
fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// A small etcd-like data directory; returns each file's contents by relative path.
fn seed_dir(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let files = [
        (
            "etcd/member/wal/0000000000000000-0000000000000000.wal",
            9000,
        ),
        (
            "etcd/member/wal/0000000000000001-0000000000000042.wal",
            3000,
        ),
        ("etcd/member/wal/0000000000000002-0000000000000077.wal", 0),
        ("etcd/member/wal/0.tmp", 4096),
        ("etcd/member/snap/db", 8192),
    ];
    let mut out = BTreeMap::new();
    for (i, (rel, len)) in files.into_iter().enumerate() {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data = pattern(len, i as u8 * 7 + 1);
        std::fs::write(&path, &data).unwrap();
        out.insert(rel.to_string(), data);
    }
    out
}

/// Every file under `root` that differs from `before`, as rel path to new contents.
fn changed(root: &Path, before: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    before
        .iter()
        .filter_map(|(rel, old)| {
            let now = std::fs::read(root.join(rel)).unwrap();
            (now != *old).then(|| (rel.clone(), now))
        })
        .collect()
}

#[test]
fn corrupt_bitflips_report_matches_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let before = seed_dir(root);
    let out = corrupt(
        root,
        &[
            "--glob",
            "etcd/member/wal/*.wal",
            "--seed",
            "7",
            "--bitflips",
            "3",
            "--files",
            "5",
        ],
    );
    let r = report(&out);
    assert_eq!(r["root"], root.to_string_lossy().as_ref());
    assert_eq!(
        r["matched"], 2,
        "the empty WAL and 0.tmp are not candidates: {r}"
    );
    let files = r["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let changed = changed(root, &before);
    assert_eq!(changed.len(), 2, "only the reported files changed");
    for f in files {
        let rel = f["path"].as_str().unwrap();
        let old = &before[rel];
        let new = &changed[rel];
        assert_eq!(f["size"], old.len());
        assert_eq!(new.len(), old.len());
        let mut diff = Vec::new();
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            for bit in 0..8u8 {
                if (a ^ b) >> bit & 1 == 1 {
                    diff.push(serde_json::json!([i, bit]));
                }
            }
        }
        assert_eq!(diff.len(), 3);
        assert_eq!(&Value::from(diff), &f["bitflips"], "{rel}");
    }
}

#[test]
fn corrupt_same_seed_same_damage_and_truncation_report() {
    let runs: Vec<(Value, BTreeMap<String, Vec<u8>>)> = [11, 11, 12]
        .into_iter()
        .map(|seed| {
            let dir = tempfile::tempdir().unwrap();
            let before = seed_dir(dir.path());
            let out = corrupt(
                dir.path(),
                &[
                    "--glob",
                    "**/*.wal",
                    "--glob",
                    "etcd/member/snap/db",
                    "--seed",
                    &seed.to_string(),
                    "--truncate-max",
                    "1023",
                    "--files",
                    "2",
                ],
            );
            let mut r = report(&out);
            assert_eq!(r["matched"], 3, "{r}");
            let files = r["files"].as_array().unwrap();
            assert_eq!(files.len(), 2);
            let changed = changed(dir.path(), &before);
            assert_eq!(changed.len(), 2);
            for f in files {
                let rel = f["path"].as_str().unwrap();
                let (size, to, cut) = (
                    f["size"].as_u64().unwrap(),
                    f["truncated_to"].as_u64().unwrap(),
                    f["cut"].as_u64().unwrap(),
                );
                assert_eq!(size as usize, before[rel].len());
                assert!((1..=1023).contains(&cut) && to == size - cut, "{f}");
                assert_eq!(
                    changed[rel],
                    before[rel][..to as usize],
                    "{rel}: only the tail"
                );
            }
            r["root"] = Value::Null;
            (r, changed)
        })
        .collect();
    assert_eq!(runs[0], runs[1], "same seed, same damage");
    assert_ne!(runs[0].0, runs[2].0, "another seed, other damage");
}

#[test]
fn corrupt_probability_mode_and_no_match() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let before = seed_dir(root);
    let r = report(&corrupt(
        root,
        &[
            "--glob",
            "etcd/member/snap/*",
            "--seed",
            "1",
            "--bitflip-prob",
            "0.001",
        ],
    ));
    let flips = r["files"][0]["bitflips"].as_array().unwrap();
    assert!(
        !flips.is_empty() && flips.len() < 200,
        "about 65 of 65536 bits: {r}"
    );
    assert_eq!(changed(root, &before).len(), 1);

    for glob in [
        "*.wal",
        "etcd/member/wal/*.nothing",
        "etcd/member/wal/0000000000000002-*",
    ] {
        let r = report(&corrupt(
            root,
            &["--glob", glob, "--seed", "1", "--bitflips", "2"],
        ));
        assert_eq!(r["matched"], 0, "{glob}: {r}");
        assert_eq!(r["files"], serde_json::json!([]), "{glob}");
    }
}

#[test]
fn corrupt_exit_codes_for_bad_arguments_and_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_dir(root);
    for args in [
        &["--glob", "*", "--seed", "1"][..],
        &[
            "--glob",
            "*",
            "--seed",
            "1",
            "--bitflips",
            "1",
            "--truncate-max",
            "9",
        ],
        &["--glob", "*", "--seed", "1", "--bitflip-prob", "0"],
        &["--glob", "*", "--seed", "1", "--bitflip-prob", "1.5"],
        &["--glob", "*", "--seed", "1", "--bitflips", "0"],
        &[
            "--glob",
            "*",
            "--seed",
            "1",
            "--bitflips",
            "1",
            "--files",
            "0",
        ],
        &["--glob", "/etc/*", "--seed", "1", "--bitflips", "1"],
        &["--glob", "../*", "--seed", "1", "--bitflips", "1"],
        &["--seed", "1", "--bitflips", "1"],
        &["--glob", "*", "--bitflips", "1"],
    ] {
        let out = corrupt(root, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    let missing = root.join("no-such-dir");
    let out = corrupt(&missing, &["--glob", "*", "--seed", "1", "--bitflips", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&*missing.to_string_lossy()), "{err}");
    assert!(out.stdout.is_empty());
}
