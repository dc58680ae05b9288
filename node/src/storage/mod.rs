//! Durable storage for one node: the write-ahead log (hard state and log entries) and snapshots.
//!
//! This module knows nothing about Raft beyond "entries have an index and a term": entries are
//! stored as opaque bytes (the server encodes the core's `Entry`). It must never acknowledge a
//! write before it is on disk: [`Storage::persist`] returns only after `fdatasync`. The one
//! exception is the planted `no-fsync` bug ([`StorageOptions::sync`] off), which writes everything
//! to the kernel and never syncs a file or directory.
//!
//! Directory layout under the data dir: `wal/wal-*.log` segments, `snap/snap-*.snap` snapshots.
//!
//! Recovery rebuilds the log by replaying records in order: an entry at index `i` replaces any
//! entries at `i` and above (the Raft log's "drop the conflicting suffix, then append"), the last
//! hard state wins, and a snapshot mark records that a snapshot became durable (entries it covers
//! are dropped; if the log disagrees with the snapshot's term at its index, the whole log is).

pub mod snapshot;
pub mod wal;

use std::io;
use std::path::{Path, PathBuf};

use wal::{Record, Syncer, Wal};

/// Errors from opening or using storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system error.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// Another process holds the data directory.
    #[error("{} is locked by another process ({source}): is another raftkv using this data dir?", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The `flock` error.
        source: io::Error,
    },
    /// Data on disk is damaged somewhere a crash cannot explain; the node refuses to start.
    #[error("corrupt data in {} at offset {offset}: {reason} (refusing to start; inspect or restore the file)", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged frame or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Raft hard state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredHardState {
    /// Current term.
    pub term: u64,
    /// Vote in the current term.
    pub vote: Option<u64>,
    /// Commit index (a hint: recovery clamps it to the recovered log).
    pub commit: u64,
}

/// A log entry as stored: its position plus the encoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Log index.
    pub index: u64,
    /// Term of the entry.
    pub term: u64,
    /// The encoded entry (opaque to storage).
    pub data: Vec<u8>,
}

/// A snapshot as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Last index the snapshot covers.
    pub index: u64,
    /// Term of that index.
    pub term: u64,
    /// Encoded snapshot metadata (membership).
    pub meta: Vec<u8>,
    /// State-machine data.
    pub data: Vec<u8>,
}

/// What [`Storage::open`] recovered.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The last hard state written, with `commit` clamped to the recovered log.
    pub hard_state: Option<StoredHardState>,
    /// The newest durable snapshot.
    pub snapshot: Option<StoredSnapshot>,
    /// Entries after the snapshot, contiguous from `snapshot.index + 1` (or 1).
    pub entries: Vec<StoredEntry>,
    /// A torn final frame was truncated: (file, offset, bytes dropped).
    pub truncated: Option<(PathBuf, u64, u64)>,
}

/// Tuning for [`Storage::open`].
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Start a new WAL segment once the current one exceeds this many bytes.
    pub segment_bytes: u64,
    /// Sync what is written (`true`, the default). `false` is the planted `no-fsync` bug: WAL
    /// frames, segment rolls, snapshot files and directories are written but never
    /// fsynced/fdatasynced, so acknowledged data and votes live only in the kernel's (or
    /// faultfs's) cache.
    pub sync: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes: 64 << 20,
            sync: true,
        }
    }
}

const KIND_HARD_STATE: u8 = 1;
const KIND_ENTRY: u8 = 2;
const KIND_SNAPSHOT_MARK: u8 = 3;
/// Like a snapshot mark, but the snapshot came from a leader and replaces the whole log.
const KIND_SNAPSHOT_RESET: u8 = 4;
const NO_VOTE: u64 = u64::MAX;

fn encode_hard_state(hs: &StoredHardState) -> Record {
    let mut data = Vec::with_capacity(24);
    data.extend_from_slice(&hs.term.to_le_bytes());
    data.extend_from_slice(&hs.vote.unwrap_or(NO_VOTE).to_le_bytes());
    data.extend_from_slice(&hs.commit.to_le_bytes());
    Record {
        kind: KIND_HARD_STATE,
        data,
    }
}

fn encode_entry(e: &StoredEntry) -> Record {
    let mut data = Vec::with_capacity(16 + e.data.len());
    data.extend_from_slice(&e.index.to_le_bytes());
    data.extend_from_slice(&e.term.to_le_bytes());
    data.extend_from_slice(&e.data);
    Record {
        kind: KIND_ENTRY,
        data,
    }
}

fn encode_mark(index: u64, term: u64, reset: bool) -> Record {
    let mut data = Vec::with_capacity(16);
    data.extend_from_slice(&index.to_le_bytes());
    data.extend_from_slice(&term.to_le_bytes());
    let kind = if reset {
        KIND_SNAPSHOT_RESET
    } else {
        KIND_SNAPSHOT_MARK
    };
    Record { kind, data }
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
    ))
}

/// The index an entry record carries, for segment bookkeeping.
fn record_max_index(r: &Record) -> u64 {
    match r.kind {
        KIND_ENTRY | KIND_SNAPSHOT_MARK | KIND_SNAPSHOT_RESET => u64_at(&r.data, 0).unwrap_or(0),
        _ => 0,
    }
}

/// The node's durable state: write side. Reads happen once, in [`Storage::open`].
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    wal: Wal,
    hard_state: StoredHardState,
    snapshot_index: u64,
    fsyncs: u64,
    /// Writes that `fsyncs` would have counted, made without a sync (planted `no-fsync` only).
    unsynced_writes: u64,
    entries_written: u64,
    /// Every sync of files and directories goes through it (shared with the WAL).
    syncer: Syncer,
    /// The in-memory hard state differs from the last one written (commit only).
    hs_dirty: bool,
    /// Holds an exclusive `flock` on `LOCK` for as long as the storage is open.
    _lock: std::fs::File,
}

/// Takes an exclusive lock on `dir/LOCK`, so that two processes never share a data dir.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StorageError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    // SAFETY: a valid descriptor owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(StorageError::Locked { path, source: err });
    }
    Ok(file)
}

impl Storage {
    /// Opens the storage under `dir` (creating it), replays the WAL and loads the newest snapshot.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] naming the file and offset for damage a crash cannot explain, and
    /// I/O errors. A torn final WAL frame is not an error: it is truncated and reported.
    pub fn open(dir: &Path, options: StorageOptions) -> Result<(Storage, Recovered), StorageError> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let syncer = Syncer::new(options.sync);
        let fresh = !dir.join("wal").exists();
        std::fs::create_dir_all(dir.join("wal"))?;
        std::fs::create_dir_all(dir.join("snap"))?;
        if fresh {
            // Make the new directories themselves durable.
            syncer.sync_dir(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                syncer.sync_dir(parent)?;
            }
        }
        let snap = snapshot::load_latest(&dir.join("snap"))?;
        let (wal, records, report) = Wal::open_with(
            &dir.join("wal"),
            options.segment_bytes,
            syncer.clone(),
            record_max_index,
        )?;
        let snap_index = snap.as_ref().map_or(0, |s| s.index);
        // `entries` holds indices base+1 ..= base+len.
        let mut base = 0u64;
        let mut entries: Vec<StoredEntry> = Vec::new();
        let mut hard_state: Option<StoredHardState> = None;
        // Drops what snapshot (index, term) covers; a log that disagrees with it goes entirely.
        let apply_snapshot =
            |entries: &mut Vec<StoredEntry>, base: &mut u64, index: u64, term: u64| {
                match entries
                    .iter()
                    .position(|e| e.index == index && e.term == term)
                {
                    Some(p) => {
                        entries.drain(..=p);
                    }
                    None => entries.clear(),
                }
                *base = index;
            };
        for located in records {
            let r = &located.record;
            let corrupt = |reason: String| StorageError::Corrupt {
                path: located.path.clone(),
                offset: located.offset,
                reason,
            };
            match r.kind {
                KIND_HARD_STATE => {
                    let (Some(term), Some(vote), Some(commit)) =
                        (u64_at(&r.data, 0), u64_at(&r.data, 1), u64_at(&r.data, 2))
                    else {
                        return Err(corrupt("short hard-state record".into()));
                    };
                    let vote = (vote != NO_VOTE).then_some(vote);
                    hard_state = Some(StoredHardState { term, vote, commit });
                }
                KIND_ENTRY => {
                    let (Some(index), Some(term)) = (u64_at(&r.data, 0), u64_at(&r.data, 1)) else {
                        return Err(corrupt("short entry record".into()));
                    };
                    if index <= base {
                        continue; // covered by a snapshot
                    }
                    let next = base + entries.len() as u64 + 1;
                    if index > next {
                        // Segments holding only snapshot-covered entries may have been deleted.
                        if entries.is_empty() && index - 1 <= snap_index {
                            base = index - 1;
                        } else {
                            return Err(corrupt(format!(
                                "gap in the log: entry {index} follows {}",
                                next - 1
                            )));
                        }
                    }
                    entries.truncate((index - base - 1) as usize);
                    entries.push(StoredEntry {
                        index,
                        term,
                        data: r.data[16..].to_vec(),
                    });
                }
                KIND_SNAPSHOT_MARK | KIND_SNAPSHOT_RESET => {
                    let (Some(index), Some(term)) = (u64_at(&r.data, 0), u64_at(&r.data, 1)) else {
                        return Err(corrupt("short snapshot-mark record".into()));
                    };
                    if index <= base {
                        continue;
                    }
                    if index > snap_index {
                        return Err(corrupt(format!(
                            "the log records snapshot {index} as durable but the newest snapshot file is at {snap_index}"
                        )));
                    }
                    if r.kind == KIND_SNAPSHOT_RESET {
                        entries.clear();
                        base = index;
                    } else {
                        apply_snapshot(&mut entries, &mut base, index, term);
                    }
                }
                other => return Err(corrupt(format!("unknown record kind {other}"))),
            }
        }
        // The newest snapshot file may not have reached the WAL as a mark (crash in between).
        if let Some(s) = &snap
            && base < s.index
        {
            apply_snapshot(&mut entries, &mut base, s.index, s.term);
        }
        let last = base + entries.len() as u64;
        if let Some(hs) = hard_state.as_mut() {
            hs.commit = hs.commit.clamp(snap_index, last.max(snap_index));
        }
        let storage = Storage {
            dir: dir.to_path_buf(),
            wal,
            hard_state: hard_state.unwrap_or_default(),
            snapshot_index: snap_index,
            fsyncs: 0,
            unsynced_writes: 0,
            entries_written: 0,
            syncer,
            hs_dirty: false,
            _lock: lock,
        };
        let recovered = Recovered {
            hard_state,
            snapshot: snap,
            entries,
            truncated: report.truncated,
        };
        Ok((storage, recovered))
    }

    /// Makes a new hard state and/or entries durable with one write and one `fdatasync`.
    /// Entries replace any stored entries at the same index and above. A hard state that only
    /// moves the commit index is written with the next entries (or term/vote change) instead.
    ///
    /// # Errors
    /// I/O errors. The node must stop after one: it cannot know what reached the disk.
    pub fn persist(
        &mut self,
        hard_state: Option<StoredHardState>,
        entries: &[StoredEntry],
    ) -> io::Result<()> {
        let mut must_write = !entries.is_empty();
        if let Some(hs) = hard_state {
            // Term and vote must be durable before anything that depends on them is sent; the
            // commit index is only a hint (Raft re-learns it), so a change of commit alone
            // waits for the next write instead of costing an fsync of its own.
            must_write |= hs.term != self.hard_state.term || hs.vote != self.hard_state.vote;
            self.hs_dirty |= hs != self.hard_state;
            self.hard_state = hs;
        }
        if !must_write {
            return Ok(());
        }
        let mut records = Vec::with_capacity(entries.len() + 1);
        if self.hs_dirty {
            records.push(encode_hard_state(&self.hard_state));
            self.hs_dirty = false;
        }
        records.extend(entries.iter().map(encode_entry));
        let max = entries.iter().map(|e| e.index).max().unwrap_or(0);
        let hs = self.hard_state;
        self.wal
            .append(&records, max, || vec![encode_hard_state(&hs)])?;
        self.count_write();
        self.entries_written += entries.len() as u64;
        Ok(())
    }

    /// Makes `snap` durable (atomically), records it in the WAL, then deletes the WAL segments and
    /// older snapshot it makes redundant. With `reset` (a snapshot received from a leader) every
    /// stored entry is discarded; without (a local compaction) entries after the snapshot stay.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_snapshot(&mut self, snap: &StoredSnapshot, reset: bool) -> io::Result<()> {
        if snap.index <= self.snapshot_index && !reset {
            return Ok(());
        }
        snapshot::save_with(&self.dir.join("snap"), snap, &self.syncer)?;
        let hs = self.hard_state;
        self.wal.append(
            &[encode_mark(snap.index, snap.term, reset)],
            snap.index,
            || vec![encode_hard_state(&hs)],
        )?;
        self.count_write();
        self.snapshot_index = snap.index;
        self.wal.compact(snap.index)?;
        Ok(())
    }

    /// Index of the newest durable snapshot (0 for none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    fn count_write(&mut self) {
        if self.syncer.enabled() {
            self.fsyncs += 1;
        } else {
            self.unsynced_writes += 1;
        }
    }

    /// Number of WAL `fdatasync` calls made by `persist` and `save_snapshot` since open: one
    /// per WAL write. Always 0 under the planted `no-fsync` bug, which syncs nothing.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// WAL writes by `persist` and `save_snapshot` since open that were left unsynced (the
    /// planted `no-fsync` bug; always 0 otherwise): what [`Storage::fsyncs`] would have counted.
    pub fn unsynced_writes(&self) -> u64 {
        self.unsynced_writes
    }

    /// Whether this storage syncs what it writes (false only under the planted `no-fsync` bug).
    pub fn syncs(&self) -> bool {
        self.syncer.enabled()
    }

    /// Every sync (of WAL segments, snapshot files and directories, including the ones at open)
    /// issued since open, and every sync skipped under the planted `no-fsync` bug.
    pub fn sync_calls(&self) -> (u64, u64) {
        (self.syncer.issued(), self.syncer.skipped())
    }

    /// Number of entries written by `persist` since open.
    pub fn entries_written(&self) -> u64 {
        self.entries_written
    }

    /// Number of WAL segment files.
    pub fn segment_count(&self) -> usize {
        self.wal.segment_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> StoredEntry {
        StoredEntry {
            index,
            term,
            data: format!("{index}@{term}").into_bytes(),
        }
    }

    fn idx(es: &[StoredEntry]) -> Vec<(u64, u64)> {
        es.iter().map(|e| (e.index, e.term)).collect()
    }

    fn hs(term: u64, vote: Option<u64>, commit: u64) -> StoredHardState {
        StoredHardState { term, vote, commit }
    }

    #[test]
    fn hard_state_and_entries_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert!(r.hard_state.is_none() && r.entries.is_empty() && r.snapshot.is_none());
        s.persist(Some(hs(1, Some(2), 0)), &[]).unwrap();
        s.persist(None, &[e(1, 1), e(2, 1)]).unwrap();
        s.persist(Some(hs(2, None, 2)), &[e(3, 2)]).unwrap();
        assert_eq!(s.fsyncs(), 3);
        assert_eq!(s.entries_written(), 3);
        drop(s);
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert_eq!(r.hard_state, Some(hs(2, None, 2)));
        assert_eq!(idx(&r.entries), vec![(1, 1), (2, 1), (3, 2)]);
        assert_eq!(r.entries[2].data, b"3@2");
    }

    #[test]
    fn commit_only_change_rides_with_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        s.persist(Some(hs(1, Some(1), 0)), &[e(1, 1), e(2, 1)])
            .unwrap();
        assert_eq!(s.fsyncs(), 1);
        s.persist(Some(hs(1, Some(1), 2)), &[]).unwrap();
        assert_eq!(s.fsyncs(), 1, "a commit-only change must not fsync");
        s.persist(None, &[e(3, 1)]).unwrap();
        assert_eq!(s.fsyncs(), 2);
        // A vote change is written at once.
        s.persist(Some(hs(2, Some(3), 2)), &[]).unwrap();
        assert_eq!(s.fsyncs(), 3);
        drop(s);
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert_eq!(r.hard_state, Some(hs(2, Some(3), 2)));
        assert_eq!(r.entries.len(), 3);
    }

    #[test]
    fn a_data_dir_is_opened_by_one_storage_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        let err = Storage::open(dir.path(), StorageOptions::default()).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
        drop(s);
        Storage::open(dir.path(), StorageOptions::default()).unwrap();
    }

    #[test]
    fn later_entry_replaces_conflicting_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        s.persist(None, &[e(1, 1), e(2, 1), e(3, 1), e(4, 1)])
            .unwrap();
        s.persist(None, &[e(3, 2)]).unwrap();
        drop(s);
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert_eq!(idx(&r.entries), vec![(1, 1), (2, 1), (3, 2)]);
    }

    #[test]
    fn commit_is_clamped_to_recovered_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        s.persist(Some(hs(1, None, 9)), &[e(1, 1)]).unwrap();
        drop(s);
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert_eq!(r.hard_state.unwrap().commit, 1);
    }

    #[test]
    fn snapshot_drops_covered_entries_and_compacts_segments() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StorageOptions {
            segment_bytes: 256,
            ..StorageOptions::default()
        };
        let (mut s, _) = Storage::open(dir.path(), opts.clone()).unwrap();
        s.persist(Some(hs(3, Some(1), 0)), &[]).unwrap();
        for i in 1..=40 {
            s.persist(Some(hs(3, Some(1), i - 1)), &[e(i, 3)]).unwrap();
        }
        let before = s.segment_count();
        assert!(before > 4);
        let snap = StoredSnapshot {
            index: 30,
            term: 3,
            meta: b"m".to_vec(),
            data: b"state@30".to_vec(),
        };
        s.save_snapshot(&snap, false).unwrap();
        assert!(
            s.segment_count() < before,
            "{} -> {}",
            before,
            s.segment_count()
        );
        drop(s);
        let (_, r) = Storage::open(dir.path(), opts).unwrap();
        assert_eq!(r.snapshot.as_ref().unwrap().data, b"state@30");
        assert_eq!(r.entries.first().unwrap().index, 31);
        assert_eq!(r.entries.last().unwrap().index, 40);
        let hs = r.hard_state.unwrap();
        assert_eq!((hs.term, hs.vote, hs.commit), (3, Some(1), 39));
    }

    #[test]
    fn installed_snapshot_with_other_term_discards_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        s.persist(None, &[e(1, 1), e(2, 1), e(3, 1), e(4, 1), e(5, 1)])
            .unwrap();
        // A leader sends snapshot 3@2: the log restarts after it.
        s.save_snapshot(
            &StoredSnapshot {
                index: 3,
                term: 2,
                meta: vec![],
                data: vec![],
            },
            true,
        )
        .unwrap();
        drop(s);
        let (mut s, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert!(r.entries.is_empty(), "{:?}", idx(&r.entries));
        s.persist(None, &[e(4, 2)]).unwrap();
        drop(s);
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert_eq!(idx(&r.entries), vec![(4, 2)]);
    }

    #[test]
    fn received_snapshot_discards_even_a_matching_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        s.persist(None, &[e(1, 1), e(2, 1), e(3, 2), e(4, 2)])
            .unwrap();
        s.save_snapshot(
            &StoredSnapshot {
                index: 3,
                term: 2,
                meta: vec![],
                data: vec![],
            },
            true,
        )
        .unwrap();
        drop(s);
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert!(r.entries.is_empty());
        assert_eq!(r.snapshot.unwrap().index, 3);
    }

    #[test]
    fn local_snapshot_keeps_matching_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        s.persist(None, &[e(1, 1), e(2, 1), e(3, 2), e(4, 2)])
            .unwrap();
        s.save_snapshot(
            &StoredSnapshot {
                index: 3,
                term: 2,
                meta: vec![],
                data: vec![],
            },
            false,
        )
        .unwrap();
        drop(s);
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert_eq!(idx(&r.entries), vec![(4, 2)]);
    }

    /// After one step: sync calls (issued, skipped), `fsyncs()`, `unsynced_writes()`.
    type SyncStep = ((u64, u64), u64, u64);

    /// Everything that syncs: a fresh open (directory syncs), writes, a segment roll, a snapshot
    /// with compaction, and a reopen that truncates a torn tail. Returns the storage's sync
    /// calls (issued, skipped) and its `fsyncs()`/`unsynced_writes()` after each step, and the
    /// number of segment rolls during 12 writes.
    fn sync_script(sync: bool) -> (Vec<SyncStep>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let opts = StorageOptions {
            segment_bytes: 256,
            sync,
        };
        let mut steps = Vec::new();
        let (mut s, _) = Storage::open(&data, opts.clone()).unwrap();
        let mut record =
            |s: &Storage| steps.push((s.sync_calls(), s.fsyncs(), s.unsynced_writes()));
        record(&s);
        s.persist(Some(hs(1, Some(1), 0)), &[e(1, 1)]).unwrap();
        record(&s);
        s.persist(Some(hs(1, Some(1), 1)), &[]).unwrap(); // commit only: nothing written
        record(&s);
        let mut i = 2;
        while s.segment_count() == 1 {
            s.persist(None, &[e(i, 1)]).unwrap();
            i += 1;
        }
        record(&s); // rolled
        let rolled = i;
        let segments = s.segment_count();
        for j in rolled..rolled + 12 {
            s.persist(None, &[e(j, 1)]).unwrap();
        }
        let rolls = (s.segment_count() - segments) as u64;
        record(&s);
        let snap = StoredSnapshot {
            index: rolled + 8,
            term: 1,
            meta: b"m".to_vec(),
            data: b"d".to_vec(),
        };
        let before = s.segment_count();
        s.save_snapshot(&snap, false).unwrap();
        assert!(
            s.segment_count() < before,
            "the snapshot compacted segments"
        );
        record(&s);
        drop(s);
        // A torn tail: reopening truncates it (and syncs the truncation, unless no-fsync).
        let mut segs: Vec<_> = std::fs::read_dir(data.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segs.sort();
        let last = segs.last().unwrap();
        let len = std::fs::metadata(last).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (s, r) = Storage::open(&data, opts).unwrap();
        assert!(r.truncated.is_some());
        // Unsynced or not, what was written is read back (it is in the kernel's cache).
        assert_eq!(r.snapshot.unwrap().index, rolled + 8);
        assert_eq!(r.entries.last().unwrap().index, rolled + 11); // the mark was torn
        assert_eq!(r.hard_state.unwrap().term, 1);
        record(&s);
        (steps, rolls)
    }

    #[test]
    fn every_sync_is_issued_by_default() {
        let (steps, rolls) = sync_script(true);
        let (issued, fsyncs): (Vec<u64>, Vec<u64>) =
            steps.iter().map(|((i, _), f, _)| (*i, *f)).unzip();
        assert!(
            steps
                .iter()
                .all(|((_, skipped), _, unsynced)| *skipped == 0 && *unsynced == 0)
        );
        // Fresh open: data dir and its parent, then the first segment and the wal dir.
        assert_eq!(issued[0], 4);
        // One fdatasync per write; none for a commit-only change.
        assert_eq!((issued[1], fsyncs[1]), (5, 1));
        assert_eq!((issued[2], fsyncs[2]), (5, 1));
        // Writes until the roll: one each, plus fsync of the old segment, of the new one and
        // of the directory.
        let writes = fsyncs[3] - fsyncs[2];
        assert_eq!(issued[3] - issued[2], writes + 3);
        // 12 writes, each roll among them 3 more.
        assert!(rolls > 0);
        assert_eq!(
            (issued[4] - issued[3], fsyncs[4] - fsyncs[3]),
            (12 + 3 * rolls, 12)
        );
        // The snapshot: its file, the directory twice, its WAL mark (3 more if that rolls), the
        // compaction's directory sync.
        let d = issued[5] - issued[4];
        assert!(d == 5 || d == 5 + 3, "{d}");
        assert_eq!(fsyncs[5] - fsyncs[4], 1);
        // Reopen: the truncated tail is synced; the per-open counters start again.
        assert_eq!(steps[6], ((1, 0), 0, 0));
    }

    #[test]
    fn the_no_fsync_bug_issues_no_sync_at_all() {
        let (on, _) = sync_script(true);
        let (off, _) = sync_script(false);
        for (k, (((issued, skipped), fsyncs, unsynced), ((issued_on, _), fsyncs_on, _))) in
            off.iter().zip(&on).enumerate()
        {
            assert_eq!((*issued, *fsyncs), (0, 0), "step {k}: a sync was issued");
            // Every sync the correct storage issues is skipped instead, one for one.
            assert_eq!(skipped, issued_on, "step {k}");
            assert_eq!(unsynced, fsyncs_on, "step {k}");
        }
    }

    /// The storage layer syncs only through the `Syncer`: no `sync_data`/`sync_all` elsewhere.
    #[test]
    fn no_sync_bypasses_the_syncer() {
        let code = |src: &'static str| src.split("#[cfg(test)]").next().unwrap();
        let count =
            |src: &str| src.matches(".sync_data()").count() + src.matches(".sync_all()").count();
        assert_eq!(count(code(include_str!("mod.rs"))), 0);
        assert_eq!(count(code(include_str!("snapshot.rs"))), 0);
        // wal.rs: `sync_dir` and the Syncer's own `sync_data` and `sync_all`.
        assert_eq!(count(code(include_str!("wal.rs"))), 3);
    }

    #[test]
    fn torn_tail_loses_only_the_unsynced_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        s.persist(Some(hs(1, Some(1), 0)), &[e(1, 1), e(2, 1)])
            .unwrap();
        s.persist(Some(hs(1, Some(1), 2)), &[e(3, 1), e(4, 1)])
            .unwrap();
        drop(s);
        let seg = dir.path().join("wal").join("wal-0000000000000001.log");
        let len = std::fs::metadata(&seg).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let (_, r) = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        assert_eq!(idx(&r.entries), vec![(1, 1), (2, 1)]);
        assert_eq!(r.hard_state, Some(hs(1, Some(1), 0)));
        assert!(r.truncated.is_some());
    }
}
