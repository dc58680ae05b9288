//! Signed results through the command line (no Docker): `faultline verify`, and `report`,
//! `check` and `compare` on a signed run before and after one byte of its history changed. The
//! signing key is a temporary one (`FAULTLINE_SIGNING_KEY`), never the user's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RUN: &str = "20261122T024631Z";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn faultline(key: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_SIGNING_KEY", key)
        .output()
        .expect("run faultline")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Two copies of the committed run, in a results folder of their own.
fn runs(tmp: &Path) -> (PathBuf, PathBuf) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/register-partition");
    let a = tmp.join("results/register-partition/20261122T024631Z");
    let b = tmp.join("results/register-partition/20261122T024632Z");
    copy_dir(&data.join(RUN), &a);
    copy_dir(&data.join(RUN), &b);
    (a, b)
}

#[test]
fn a_signed_run_verifies_until_a_byte_changes_and_report_does_not_sign_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("config/signing-key.p8");
    let (a, b) = runs(tmp.path());
    let a_str = a.to_str().unwrap();

    // Unsigned: verify says so and fails.
    let o = faultline(&key, &["verify", a_str]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not signed"), "{}", text(&o));

    // Signed with the temporary key: verifies, as this machine's key.
    let signer = faultline::sign::Signer::load_or_create(&key).unwrap();
    signer.sign_run(&a).unwrap();
    signer.sign_run(&b).unwrap();
    let o = faultline(
        &key,
        &["verify", a_str, "--public-key", &signer.public_key()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("this machine's key"), "{}", text(&o));

    // `report` rewrites results.json (its metrics) and signs the run again.
    let o = faultline(&key, &["report", a_str]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("does not verify"), "{}", text(&o));
    let o = faultline(&key, &["verify", a_str]);
    assert_eq!(o.status.code(), Some(0), "after report: {}", text(&o));

    // Another key is not this one.
    let other = tmp.path().join("other.p8");
    let other_key = faultline::sign::Signer::load_or_create(&other).unwrap();
    let o = faultline(
        &key,
        &["verify", a_str, "--public-key", &other_key.public_key()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // One byte of the history changes.
    let h = a.join("history.jsonl");
    let mut bytes = std::fs::read(&h).unwrap();
    let i = bytes.iter().position(|&c| c == b':').unwrap();
    bytes[i + 1] ^= 1;
    std::fs::write(&h, bytes).unwrap();
    let o = faultline(&key, &["verify", a_str]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("history.jsonl changed since it was signed"),
        "{}",
        text(&o)
    );
    // `compare` warns about it, the untouched run does not.
    let o = faultline(
        &key,
        &[
            "compare",
            a_str,
            b.to_str().unwrap(),
            "--out",
            tmp.path().join("c.html").to_str().unwrap(),
        ],
    );
    let t = text(&o);
    assert!(
        t.contains(&format!("{a_str} does not verify")),
        "compare did not warn:\n{t}"
    );
    assert!(
        !t.contains(&format!("{} does not verify", b.display())),
        "{t}"
    );
    // `report` warns and does not sign the changed run again: it stays unverifiable.
    let o = faultline(&key, &["report", a_str]);
    assert!(text(&o).contains("does not verify"), "{}", text(&o));
    let o = faultline(&key, &["verify", a_str]);
    assert_eq!(o.status.code(), Some(1), "after report: {}", text(&o));
}
