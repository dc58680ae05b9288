//! A faultfs mounted by the real binary (`faultfs mount`) for one test, and small helpers.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_faultfs");

/// A mounted faultfs; unmounted (SIGTERM to its process) on drop.
pub struct Fs {
    _dir: TempDir,
    pub backing: PathBuf,
    pub mount: PathBuf,
    pub sock: PathBuf,
    child: Option<Child>,
}

/// Why FUSE cannot be used here, if it cannot.
pub fn fuse_unavailable() -> Option<String> {
    match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => None,
        Err(e) => Some(format!("cannot open /dev/fuse: {e}")),
    }
}

impl Fs {
    /// Mounts a fresh faultfs, or prints why it cannot and returns `None`.
    pub fn start(test: &str) -> Option<Fs> {
        Self::start_with(test, |_| {}, &[])
    }

    /// Like [`Fs::start`], after `prepare(backing)` seeds the backing directory.
    pub fn start_with(test: &str, prepare: impl FnOnce(&Path), extra: &[&str]) -> Option<Fs> {
        if let Some(reason) = fuse_unavailable() {
            eprintln!("skipping {test}: {reason}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("backing");
        let mount = dir.path().join("mnt");
        let sock = dir.path().join("ctl.sock");
        std::fs::create_dir(&backing).unwrap();
        prepare(&backing);
        let mut child = Command::new(BIN)
            .arg("mount")
            .arg("--backing")
            .arg(&backing)
            .arg("--mount")
            .arg(&mount)
            .arg("--control")
            .arg(&sock)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(is_mounted(&mount) && sock.exists()) {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                if err.contains("cannot mount") {
                    eprintln!("skipping {test}: mounting refused: {}", err.trim());
                    return None;
                }
                panic!("faultfs mount exited with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "faultfs did not mount within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Fs {
            _dir: dir,
            backing,
            mount,
            sock,
            child: Some(child),
        })
    }

    pub fn m(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }

    pub fn b(&self, name: &str) -> PathBuf {
        self.backing.join(name)
    }

    /// Sends a control command; panics unless the answer starts with `ok`.
    pub fn ctl(&self, command: &str) -> String {
        let answer = faultfs::send(&self.sock, command, Duration::from_secs(30)).unwrap();
        assert!(answer.starts_with("ok"), "{command}: {answer}");
        answer
    }

    /// `status` as (key, value) lookups on its JSON.
    pub fn status_field(&self, key: &str) -> String {
        let status = self.ctl("status");
        let pat = format!("\"{key}\":");
        let rest = &status[status
            .find(&pat)
            .unwrap_or_else(|| panic!("{key} in {status}"))
            + pat.len()..];
        rest.split([',', '}']).next().unwrap().to_string()
    }

    /// Stops faultfs with SIGTERM and waits for it; returns its stderr. The temp dir stays.
    pub fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        // SAFETY: kill(2) of our own, not yet reaped, child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            status.success(),
            "faultfs mount exited with {status}: {err}"
        );
        assert!(!is_mounted(&self.mount), "still mounted after SIGTERM");
        err
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(child) = self.child.as_mut() {
                // SAFETY: kill(2) of our own, not yet reaped, child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let _ = child.wait();
            }
        } else {
            self.stop();
        }
    }
}

/// Whether `path` is a mount point in this mount namespace (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let path = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*path))
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
