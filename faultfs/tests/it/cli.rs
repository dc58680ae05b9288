//! The binary's modes: `run` (exit code, signal forwarding, no mount left) and mount errors.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, fuse_unavailable, is_mounted};

fn run_args(dir: &std::path::Path) -> Vec<String> {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    vec![
        "run".into(),
        "--backing".into(),
        p("backing"),
        "--mount".into(),
        p("mnt"),
        "--control".into(),
        p("ctl.sock"),
        "--".into(),
    ]
}

#[test]
fn run_exits_with_the_child_code_and_leaves_no_mount() {
    if let Some(reason) = fuse_unavailable() {
        eprintln!("skipping run_exits_with_the_child_code: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = format!("echo unsynced > {}/mnt/f; exit 7", dir.path().display());
    let out = Command::new(BIN)
        .args(run_args(dir.path()))
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("cannot mount") {
        eprintln!("skipping run_exits_with_the_child_code: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(!is_mounted(&dir.path().join("mnt")), "mount left behind");
    assert!(!dir.path().join("ctl.sock").exists(), "socket left behind");
    assert_eq!(
        std::fs::read(dir.path().join("backing/f")).unwrap(),
        b"unsynced\n",
        "a child's exit loses nothing"
    );
}

#[test]
fn run_forwards_sigterm_and_reports_the_signal() {
    if let Some(reason) = fuse_unavailable() {
        eprintln!("skipping run_forwards_sigterm: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(run_args(dir.path()))
        .args(["sleep", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mnt = dir.path().join("mnt");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !is_mounted(&mnt) {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            eprintln!(
                "skipping run_forwards_sigterm: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "sleep died of the forwarded SIGTERM"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(!is_mounted(&mnt));
}

#[test]
fn mount_failure_names_the_mount_point_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--backing"])
        .arg(dir.path().join("b"))
        .arg("--mount")
        .arg(&not_a_dir)
        .arg("--control")
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&format!("cannot mount faultfs at {}", not_a_dir.display())),
        "{err}"
    );
    assert!(err.contains("File exists"), "{err}");
}

#[test]
fn ctl_exit_codes_say_ok_error_or_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["ctl", "--control"])
        .arg(dir.path().join("nobody.sock"))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}
