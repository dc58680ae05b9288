//! `stall MS`: fsyncs block, everything else continues.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::support::Fs;

#[test]
fn stall_blocks_fsync_while_other_reads_complete() {
    let Some(fs) = Fs::start("stall_blocks_fsync_while_other_reads_complete") else {
        return;
    };
    fs::write(fs.m("other"), b"readable during the stall").unwrap();
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(fs.m("wal"))
        .unwrap();
    f.write_all(b"entry").unwrap();

    fs.ctl("stall 1500");
    let done = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = mpsc::channel();
    let fsync = {
        let done = done.clone();
        std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            let t0 = Instant::now();
            f.sync_data().unwrap();
            done.store(true, Ordering::SeqCst);
            t0.elapsed()
        })
    };
    started.recv().unwrap();
    // Wait until faultfs has parked the fsync, so the read below really overlaps it.
    let deadline = Instant::now() + Duration::from_secs(1);
    while fs.status_field("fsyncs_waiting") != "1" {
        assert!(Instant::now() < deadline, "the fsync was not parked");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        fs::read(fs.m("other")).unwrap(),
        b"readable during the stall"
    );
    fs::write(fs.m("third"), b"writes continue too").unwrap();
    assert!(
        !done.load(Ordering::SeqCst),
        "the read returned while the fsync was still blocked"
    );

    let took = fsync.join().unwrap();
    assert!(
        took >= Duration::from_millis(1300),
        "fsync took only {took:?}"
    );
    assert_eq!(
        fs::read(fs.b("wal")).unwrap(),
        b"entry",
        "a released fsync persists"
    );
    assert_eq!(fs.status_field("fsyncs_stalled"), "1");
    assert_eq!(fs.status_field("stalled"), "false");
}

#[test]
fn unstall_releases_parked_fsyncs_at_once() {
    let Some(fs) = Fs::start("unstall_releases_parked_fsyncs_at_once") else {
        return;
    };
    fs.ctl("stall 600000");
    let mut f = File::create(fs.m("f")).unwrap();
    f.write_all(b"x").unwrap();
    let fsync = std::thread::spawn(move || {
        f.sync_all().unwrap();
        Instant::now()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!fsync.is_finished(), "fsync blocked by the stall");
    assert!(
        fs.status_field("stall_remaining_ms")
            .parse::<u64>()
            .unwrap()
            > 500_000
    );
    let released_at = Instant::now();
    assert_eq!(fs.ctl("unstall"), "ok unstalled, 1 fsyncs released");
    let finished = fsync.join().unwrap();
    assert!(finished.duration_since(released_at) < Duration::from_secs(30));
    assert_eq!(fs::read(fs.b("f")).unwrap(), b"x");
}
