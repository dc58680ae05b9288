//! What survives a `drop`: fsynced data byte for byte; nothing un-fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::support::{Fs, pattern};

#[test]
fn fsynced_file_survives_drop_and_unsynced_file_is_gone() {
    let Some(fs) = Fs::start_with(
        "fsynced_file_survives_drop",
        |b| {
            fs::write(b.join("old"), b"old content").unwrap();
        },
        &[],
    ) else {
        return;
    };
    let synced = pattern(100_000 + 17, 1);
    let mut f = File::create(fs.m("synced")).unwrap();
    f.write_all(&synced).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::write(fs.m("unsynced"), pattern(5000, 2)).unwrap();
    fs::write(fs.m("old"), b"new content, longer than the old").unwrap();
    assert_eq!(
        fs::read(fs.m("unsynced")).unwrap(),
        pattern(5000, 2),
        "reads see the cache"
    );
    let new_len = "new content, longer than the old".len();
    assert_eq!(
        fs::metadata(fs.m("old")).unwrap().len(),
        new_len as u64,
        "getattr reports the cached size"
    );
    assert_eq!(
        fs::read(fs.b("unsynced")).unwrap(),
        b"",
        "nothing reached the backing file"
    );
    assert_eq!(fs.status_field("dirty_files"), "2");

    let answer = fs.ctl("drop");
    assert_eq!(
        answer,
        format!("ok dropped {} bytes in 2 files", 5000 + new_len)
    );

    assert_eq!(
        fs::read(fs.m("synced")).unwrap(),
        synced,
        "fsynced data survives byte for byte"
    );
    assert_eq!(fs::read(fs.b("synced")).unwrap(), synced);
    assert_eq!(
        fs::read(fs.m("unsynced")).unwrap(),
        b"",
        "the file exists (create passed through) but is empty"
    );
    assert_eq!(
        fs::read(fs.m("old")).unwrap(),
        b"old content",
        "an overwrite returns to the old content"
    );
    assert_eq!(fs::metadata(fs.m("old")).unwrap().len(), 11);
    assert_eq!(fs.status_field("dirty_bytes"), "0");
    assert_eq!(fs.status_field("drops"), "1");
}

#[test]
fn write_after_fsync_then_drop_returns_to_the_fsynced_bytes() {
    let Some(fs) = Fs::start("write_after_fsync_then_drop") else {
        return;
    };
    let first = pattern(3 * 4096 + 100, 3);
    let mut f = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(fs.m("wal"))
        .unwrap();
    f.write_all(&first).unwrap();
    f.sync_data().unwrap();
    // Overwrite across a page boundary and append, without fsync.
    f.write_all_at(&[0xEE; 5000], 4000).unwrap();
    f.write_all_at(b"appended", first.len() as u64).unwrap();
    let mut now = Vec::new();
    File::open(fs.m("wal"))
        .unwrap()
        .read_to_end(&mut now)
        .unwrap();
    assert_eq!(now.len(), first.len() + 8);
    assert_eq!(&now[4000..9000], &[0xEE; 5000][..]);

    fs.ctl("drop");
    assert_eq!(fs::read(fs.m("wal")).unwrap(), first);
    assert_eq!(f.metadata().unwrap().len(), first.len() as u64);
    // The kernel's copy was invalidated too: a read through the still-open descriptor agrees.
    let mut buf = vec![0u8; first.len() + 100];
    let n = f.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], &first[..]);
}

#[test]
fn unsynced_truncation_is_dropped() {
    let Some(fs) = Fs::start_with(
        "unsynced_truncation_is_dropped",
        |b| {
            fs::write(b.join("f"), pattern(10_000, 4)).unwrap();
        },
        &[],
    ) else {
        return;
    };
    // O_TRUNC reaches faultfs as setattr(size 0), which is cached.
    fs::write(fs.m("f"), b"short").unwrap();
    assert_eq!(fs::read(fs.m("f")).unwrap(), b"short");
    assert_eq!(fs::metadata(fs.b("f")).unwrap().len(), 10_000);
    let f = OpenOptions::new().write(true).open(fs.m("f")).unwrap();
    f.set_len(2).unwrap();
    f.set_len(50).unwrap();
    assert_eq!(
        fs::read(fs.m("f")).unwrap(),
        [b"sh".as_slice(), &[0u8; 48]].concat()
    );
    fs.ctl("drop");
    assert_eq!(fs::read(fs.m("f")).unwrap(), pattern(10_000, 4));

    // fsync applies a truncation to the backing file (through a descriptor opened after the
    // drop: `f` would see the drop's EIO once).
    let f = OpenOptions::new().write(true).open(fs.m("f")).unwrap();
    f.set_len(100).unwrap();
    f.sync_all().unwrap();
    assert_eq!(fs::read(fs.b("f")).unwrap(), pattern(100, 4));
}

#[test]
fn fsync_after_a_drop_reports_eio_once_to_descriptors_that_lost_data() {
    let Some(fs) = Fs::start("fsync_after_a_drop_reports_eio") else {
        return;
    };
    let mut f = File::create(fs.m("f")).unwrap();
    f.write_all(b"will be lost").unwrap();
    fs.ctl("drop");
    f.write_all(b", but this is written back").unwrap();
    let err = f.sync_all().unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "the lost writeback is reported"
    );
    assert_eq!(
        fs::read(fs.b("f")).unwrap(),
        b"\0\0\0\0\0\0\0\0\0\0\0\0, but this is written back",
        "what was written after the drop is written back anyway"
    );
    f.sync_all().expect("reported once, like Linux's errseq");
    File::open(fs.m("f"))
        .unwrap()
        .sync_all()
        .expect("descriptors opened after the drop see no error");
}

#[test]
fn rename_carries_the_cache_and_unlink_discards_it() {
    let Some(fs) = Fs::start("rename_carries_the_cache") else {
        return;
    };
    fs::write(fs.m("tmp"), b"snapshot").unwrap();
    fs::rename(fs.m("tmp"), fs.m("final")).unwrap();
    assert_eq!(
        fs::read(fs.b("final")).unwrap(),
        b"",
        "the rename passed through; the data did not"
    );
    assert_eq!(fs::read(fs.m("final")).unwrap(), b"snapshot");
    File::open(fs.m("final")).unwrap().sync_all().unwrap();
    assert_eq!(fs::read(fs.b("final")).unwrap(), b"snapshot");

    fs::write(fs.m("doomed"), pattern(8192, 5)).unwrap();
    assert_eq!(fs.status_field("dirty_files"), "1");
    fs::remove_file(fs.m("doomed")).unwrap();
    assert_eq!(fs.status_field("dirty_files"), "0");
    assert!(!fs.b("doomed").exists());
}

#[test]
fn directories_symlinks_and_links_pass_through() {
    let Some(fs) = Fs::start("directories_symlinks_and_links_pass_through") else {
        return;
    };
    fs::create_dir_all(fs.m("a/b")).unwrap();
    fs::write(fs.m("a/b/f"), b"x").unwrap();
    std::os::unix::fs::symlink("b/f", fs.m("a/link")).unwrap();
    fs::hard_link(fs.m("a/b/f"), fs.m("a/hard")).unwrap();
    assert_eq!(fs::read_link(fs.m("a/link")).unwrap().to_str(), Some("b/f"));
    assert_eq!(fs::read(fs.m("a/link")).unwrap(), b"x");
    assert_eq!(
        fs::read(fs.m("a/hard")).unwrap(),
        b"x",
        "a hard link shares the inode's cache"
    );
    let mut names: Vec<String> = fs::read_dir(fs.m("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "hard", "link"]);
    assert!(fs.b("a/b").is_dir() && fs.b("a/link").is_symlink());
    fs::remove_file(fs.m("a/hard")).unwrap();
    assert_eq!(
        fs.status_field("dirty_files"),
        "1",
        "one link left: the cache stays"
    );
    fs::remove_file(fs.m("a/link")).unwrap();
    fs::remove_file(fs.m("a/b/f")).unwrap();
    fs::remove_dir(fs.m("a/b")).unwrap();
    assert!(!fs.b("a/b").exists());
    // fsyncdir goes through.
    File::open(fs.m("a")).unwrap().sync_all().unwrap();
}

#[test]
fn mmap_reads_see_cached_writes_and_the_drop() {
    let Some(fs) = Fs::start("mmap_reads_see_cached_writes_and_the_drop") else {
        return;
    };
    let f = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(fs.m("db"))
        .unwrap();
    f.write_all_at(&[b'A'; 8192], 0).unwrap();
    f.sync_data().unwrap();
    // bbolt's pattern: a read-only shared map, writes with pwrite, fdatasync.
    // SAFETY: mapping 8192 bytes of a file that is 8192 bytes long, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        map,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the map is 8192 bytes long and readable until munmap.
    let view = || unsafe { std::slice::from_raw_parts(map as *const u8, 8192).to_vec() };
    f.write_all_at(b"BBBB", 4096).unwrap();
    assert_eq!(&view()[4096..4100], b"BBBB", "the map sees a cached write");
    fs.ctl("drop");
    assert_eq!(&view()[4096..4100], b"AAAA", "the map sees the drop");
    f.write_all_at(b"CCCC", 0).unwrap();
    let err = f.sync_data().unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "this descriptor lost data to the drop"
    );
    fs.ctl("drop");
    assert_eq!(&view()[..4], b"CCCC", "fsynced data stays");
    // SAFETY: unmapping what was mapped above.
    unsafe { libc::munmap(map, 8192) };
}

#[test]
fn fallocate_extends_in_the_cache() {
    let Some(fs) = Fs::start("fallocate_extends_in_the_cache") else {
        return;
    };
    let f = File::create(fs.m("wal")).unwrap();
    // SAFETY: fallocate on an open descriptor.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 64 * 1024) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(f.metadata().unwrap().len(), 64 * 1024);
    // SAFETY: as above.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20) };
    assert_eq!(rc, 0);
    assert_eq!(f.metadata().unwrap().len(), 64 * 1024);
    fs.ctl("drop");
    assert_eq!(f.metadata().unwrap().len(), 0);
}

#[test]
fn orderly_unmount_writes_cached_data_through() {
    let Some(fs) = Fs::start("orderly_unmount_writes_cached_data_through") else {
        return;
    };
    fs::write(fs.m("f"), b"page cache survives a process exit").unwrap();
    let mut fs = fs;
    let err = fs.stop();
    assert!(
        err.contains("wrote through 34 un-fsynced bytes in 1 files"),
        "{err}"
    );
    assert_eq!(
        fs::read(fs.b("f")).unwrap(),
        b"page cache survives a process exit"
    );
}
