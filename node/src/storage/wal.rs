//! The write-ahead log: segment files of checksummed frames.
//!
//! A *frame* is what one `fdatasync` makes durable: the server loop hands the WAL everything one
//! Raft `Ready` needs persisted (hard state, new entries), the WAL encodes it as one frame, writes it
//! with one `write` and syncs once (group commit); the write is acknowledged only after the sync.
//! (At a segment roll the one write is two frames: the new segment's preamble, then the `Ready`'s
//! frame.) So at most one write is ever unsynced, and only the end of the last segment can hold
//! one that a crash interrupted.
//!
//! Frame layout (little endian):
//!
//! ```text
//! [len: u32][crc: u32 = crc32(payload)][hcrc: u32 = crc32(len ++ crc)][payload: len bytes]
//! payload = record*,  record = [kind: u8][len: u32][bytes]
//! ```
//!
//! Segments are named `wal-{seq:016x}.log`; a new one is started when the current one grows past
//! the configured size, and closed segments are deleted once a snapshot covers them.
//!
//! Every `fsync`/`fdatasync` of the storage layer (WAL frames, segment rolls, snapshot files,
//! directories) goes through a [`Syncer`], which issues it, or, under the planted `no-fsync` bug
//! only, skips it and counts what it skipped.
//!
//! # Recovery: torn or corrupt
//!
//! [`Wal::open`] reads every segment in order. A frame that cannot be read is either *torn*, the
//! trace of a write a crash interrupted (it was never acknowledged): the segment is truncated to
//! the frame's offset, the truncation is synced, and a WARN names the file, the offset and how many
//! bytes were cut; or *corrupt*: [`StorageError::Corrupt`] names the file, the frame's offset and
//! the reason, the node refuses to start, and the file is left untouched for an operator.
//!
//! Only the last segment's final frame can be torn, and only in one of these shapes:
//! - *incomplete header*: fewer than 12 bytes remain;
//! - *zero-filled tail*: the header checksum fails and every byte from the frame to the end of the
//!   file is zero (the file was extended but the data never written);
//! - *incomplete frame*: the header is valid but its `len` runs past the end of the file;
//! - *zeroed sectors* (etcd's rule): the header is valid, the frame is complete and ends exactly at
//!   the end of the file, its payload checksum fails, and for some 512-byte-aligned file offset `a`
//!   inside the frame every byte from `a` to the frame's end is zero. Sectors of an appending
//!   write that never reached the disk read back as zeros, so a torn write leaves such a tail.
//!
//! Everything else is corruption, in particular: a payload checksum failure in a complete final
//! frame without that zero tail (a flipped bit: the frame was synced and may have been
//! acknowledged), a header checksum failure followed by any non-zero byte, records that do not
//! parse inside a frame whose checksum holds, and any bad frame in a closed segment or followed by
//! further bytes.
//!
//! What recovery cannot tell, and so accepts:
//! - A segment cut at a frame boundary looks exactly like a crash before the next write: frames
//!   lost whole from the end of the last segment (a truncated file, a lost extent) are not noticed
//!   at all. A final frame cut short (an incomplete header or frame) looks exactly like a crash
//!   during that write and is cut off even if it had been synced; the WARN with its byte count is
//!   the only trace.
//! - A final frame damaged anywhere whose bytes from an aligned offset to its end happen to be
//!   zero in the data itself (a record ending in the high bytes of a small `u64`, for instance)
//!   passes the zeroed-sectors rule and is cut off as torn.
//!
//!
//! It errs the other way, refusing to start, for a torn write that lost a sector inside the final
//! frame but kept a later one, or lost the second half of a final header split across a sector
//! boundary while keeping the first.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::StorageError;

/// Bytes of a frame header.
pub const FRAME_HEADER: usize = 12;

/// One record inside a frame: a kind tag and opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What the bytes are (the caller's namespace).
    pub kind: u8,
    /// The record's contents.
    pub data: Vec<u8>,
}

/// A record read back at recovery, with where it was found (for error messages).
#[derive(Debug, Clone)]
pub struct Located {
    /// The record.
    pub record: Record,
    /// Segment sequence number it was read from.
    pub segment: u64,
    /// Path of the segment file.
    pub path: PathBuf,
    /// Offset of the enclosing frame in that file.
    pub offset: u64,
}

/// What [`Wal::open`] found besides the records.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// A torn final frame was cut off: (file, offset it was truncated to, bytes dropped).
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// Number of segment files read.
    pub segments: usize,
}

/// The write side of the log: appends frames to the current segment.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    seq: u64,
    size: u64,
    /// Closed segments, oldest first, with the highest entry index each holds (caller-defined).
    closed: Vec<(u64, u64)>,
    /// Highest entry index written into the current segment.
    current_max: u64,
    buf: Vec<u8>,
    syncer: Syncer,
}

fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Fsync a directory so that creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The storage layer's one way to make data durable: every `sync_data`, `sync_all` and directory
/// sync goes through here.
///
/// [`Syncer::new`]`(true)` (the default) issues each call and counts it. `Syncer::new(false)` is
/// the planted `no-fsync` bug: the calls return `Ok` without touching the disk, so everything is
/// written to the kernel and never made durable; they are counted as skipped instead. Clones
/// share their counters.
#[derive(Debug, Clone)]
pub struct Syncer {
    enabled: bool,
    counts: Arc<SyncCounts>,
}

#[derive(Debug, Default)]
struct SyncCounts {
    issued: AtomicU64,
    skipped: AtomicU64,
}

impl Default for Syncer {
    fn default() -> Self {
        Syncer::new(true)
    }
}

impl Syncer {
    /// A syncer that issues its syncs (`true`, the only correct choice) or skips them (`false`:
    /// the planted `no-fsync` bug).
    pub fn new(enabled: bool) -> Self {
        Syncer {
            enabled,
            counts: Arc::default(),
        }
    }

    /// Whether syncs are issued.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `fdatasync(file)`.
    ///
    /// # Errors
    /// The sync's error.
    pub fn sync_data(&self, file: &File) -> io::Result<()> {
        if !self.enabled {
            return self.skip();
        }
        self.counts.issued.fetch_add(1, Ordering::Relaxed);
        file.sync_data()
    }

    /// `fsync(file)`.
    ///
    /// # Errors
    /// The sync's error.
    pub fn sync_all(&self, file: &File) -> io::Result<()> {
        if !self.enabled {
            return self.skip();
        }
        self.counts.issued.fetch_add(1, Ordering::Relaxed);
        file.sync_all()
    }

    /// [`sync_dir`]: makes creations, renames and deletions in `dir` durable.
    ///
    /// # Errors
    /// Opening or syncing the directory.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if !self.enabled {
            return self.skip();
        }
        self.counts.issued.fetch_add(1, Ordering::Relaxed);
        sync_dir(dir)
    }

    fn skip(&self) -> io::Result<()> {
        self.counts.skipped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sync calls issued to the kernel (files and directories) by this syncer and its clones.
    pub fn issued(&self) -> u64 {
        self.counts.issued.load(Ordering::Relaxed)
    }

    /// Sync calls skipped (only under the planted `no-fsync` bug).
    pub fn skipped(&self) -> u64 {
        self.counts.skipped.load(Ordering::Relaxed)
    }
}

/// Encodes records as one frame appended to `out`.
pub fn encode_frame(records: &[Record], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    for r in records {
        out.push(r.kind);
        out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.data);
    }
    let len = (out.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&header);
    out[start..start + 8].copy_from_slice(&header);
    out[start + 8..start + 12].copy_from_slice(&hcrc.to_le_bytes());
}

fn decode_records(payload: &[u8]) -> Option<Vec<Record>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        if payload.len() - at < 5 {
            return None;
        }
        let kind = payload[at];
        let len = u32::from_le_bytes(payload[at + 1..at + 5].try_into().ok()?) as usize;
        at += 5;
        if payload.len() - at < len {
            return None;
        }
        out.push(Record {
            kind,
            data: payload[at..at + len].to_vec(),
        });
        at += len;
    }
    Some(out)
}

enum Frame {
    Ok {
        records: Vec<Record>,
        next: usize,
    },
    /// Cannot be read; `torn` says whether it looks like the interrupted last write (if it is
    /// the last segment's final frame), `why` what is wrong.
    Bad {
        torn: bool,
        why: &'static str,
    },
}

/// Sector size for the zeroed-sectors rule: the smallest unit a disk writes atomically.
pub const SECTOR: usize = 512;

/// Whether `buf[from..end]` ends in zeros starting at or before a [`SECTOR`]-aligned offset inside
/// it, that is `buf[a..end]` is all zero for some `a` in `from..end` with `a % SECTOR == 0`
/// (offsets in `buf` are file offsets).
fn ends_in_zeroed_sectors(buf: &[u8], from: usize, end: usize) -> bool {
    let zeros = buf[from..end].iter().rev().take_while(|&&b| b == 0).count();
    (end - zeros).next_multiple_of(SECTOR) < end
}

fn read_frame(buf: &[u8], at: usize) -> Frame {
    let rest = &buf[at..];
    if rest.len() < FRAME_HEADER {
        return Frame::Bad {
            torn: true,
            why: "incomplete frame header",
        };
    }
    let header = &rest[..8];
    let hcrc = u32::from_le_bytes(rest[8..12].try_into().unwrap());
    if crc32fast::hash(header) != hcrc {
        // An all-zero tail is a file extended by the crash but never written.
        if rest.iter().all(|&b| b == 0) {
            return Frame::Bad {
                torn: true,
                why: "zero-filled tail (frame header checksum mismatch)",
            };
        }
        return Frame::Bad {
            torn: false,
            why: "frame header checksum mismatch",
        };
    }
    let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    if rest.len() - FRAME_HEADER < len {
        return Frame::Bad {
            torn: true,
            why: "frame extends past the end of the file",
        };
    }
    let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
    let end = at + FRAME_HEADER + len;
    if crc32fast::hash(payload) != crc {
        // A complete frame was written whole or torn by sectors: only zeroed sectors at its end
        // (and nothing after it) explain a mismatch without damage to synced data.
        if end == buf.len() && ends_in_zeroed_sectors(buf, at, end) {
            return Frame::Bad {
                torn: true,
                why: "frame checksum mismatch in a final frame ending in zeroed sectors",
            };
        }
        return Frame::Bad {
            torn: false,
            why: "frame checksum mismatch",
        };
    }
    match decode_records(payload) {
        Some(records) => Frame::Ok { records, next: end },
        None => Frame::Bad {
            torn: false,
            why: "malformed records inside a valid frame",
        },
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir`, returning the writer and every record in order.
    ///
    /// A torn final frame of the last segment is truncated away (logged at WARN and reported); any
    /// other unreadable frame is [`StorageError::Corrupt`] naming the file and offset. The module
    /// documentation states which frames count as torn.
    ///
    /// `max_index` maps a record to the highest entry index it carries (0 for none), so that
    /// [`Wal::compact`] knows which closed segments a snapshot covers.
    ///
    /// # Errors
    /// I/O errors, and corruption as described.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        max_index: impl Fn(&Record) -> u64,
    ) -> Result<(Wal, Vec<Located>, OpenReport), StorageError> {
        Wal::open_with(dir, segment_bytes, Syncer::default(), max_index)
    }

    /// [`Wal::open`] with every sync (the truncation of a torn tail, new segments, appends,
    /// rolls, compaction) going through `syncer`.
    ///
    /// # Errors
    /// As for [`Wal::open`].
    pub fn open_with(
        dir: &Path,
        segment_bytes: u64,
        syncer: Syncer,
        max_index: impl Fn(&Record) -> u64,
    ) -> Result<(Wal, Vec<Located>, OpenReport), StorageError> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_segment_name(&e.file_name().to_string_lossy()))
            .collect();
        seqs.sort_unstable();
        let mut report = OpenReport {
            segments: seqs.len(),
            ..Default::default()
        };
        let mut records = Vec::new();
        let mut closed = Vec::new();
        let mut last_size = 0;
        let mut last_max = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_name(seq));
            let is_last = i + 1 == seqs.len();
            let mut buf = Vec::new();
            File::open(&path)?.read_to_end(&mut buf)?;
            let mut at = 0;
            let mut seg_max = 0;
            while at < buf.len() {
                match read_frame(&buf, at) {
                    Frame::Ok { records: rs, next } => {
                        for record in rs {
                            seg_max = seg_max.max(max_index(&record));
                            records.push(Located {
                                record,
                                segment: seq,
                                path: path.clone(),
                                offset: at as u64,
                            });
                        }
                        at = next;
                    }
                    Frame::Bad { torn: true, why } if is_last => {
                        let f = OpenOptions::new().write(true).open(&path)?;
                        f.set_len(at as u64)?;
                        syncer.sync_all(&f)?;
                        let bytes = (buf.len() - at) as u64;
                        tracing::warn!(
                            file = %path.display(),
                            offset = at,
                            bytes,
                            reason = why,
                            "cut a torn tail off the last WAL segment"
                        );
                        report.truncated = Some((path.clone(), at as u64, bytes));
                        buf.truncate(at);
                        break;
                    }
                    Frame::Bad { why, .. } => {
                        return Err(StorageError::Corrupt {
                            path,
                            offset: at as u64,
                            reason: why.to_string(),
                        });
                    }
                }
            }
            if is_last {
                last_size = buf.len() as u64;
                last_max = seg_max;
            } else {
                closed.push((seq, seg_max));
            }
        }
        let (file, seq, size) = match seqs.last() {
            Some(&seq) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(dir.join(segment_name(seq)))?;
                (file, seq, last_size)
            }
            None => {
                let file = create_segment(dir, 1, &syncer)?;
                (file, 1, 0)
            }
        };
        let wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            file,
            seq,
            size,
            closed,
            current_max: last_max,
            buf: Vec::new(),
            syncer,
        };
        Ok((wal, records, report))
    }

    /// Appends `records` as one frame and syncs it (one `fdatasync`). `max_index` is the highest
    /// entry index among them (0 for none). If the current segment is full, a new segment is
    /// started first, and `preamble` (for example the current hard state) is written at its head.
    ///
    /// # Errors
    /// I/O errors; after one the WAL must not be used again (the caller should exit).
    pub fn append(
        &mut self,
        records: &[Record],
        max_index: u64,
        preamble: impl FnOnce() -> Vec<Record>,
    ) -> io::Result<()> {
        self.buf.clear();
        if self.size > 0 && self.size >= self.segment_bytes {
            self.roll()?;
            encode_frame(&preamble(), &mut self.buf);
        }
        encode_frame(records, &mut self.buf);
        self.file.write_all(&self.buf)?;
        self.syncer.sync_data(&self.file)?;
        self.size += self.buf.len() as u64;
        self.current_max = self.current_max.max(max_index);
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        self.syncer.sync_all(&self.file)?;
        let next = self.seq + 1;
        let file = create_segment(&self.dir, next, &self.syncer)?;
        self.closed.push((self.seq, self.current_max));
        self.file = file;
        self.seq = next;
        self.size = 0;
        self.current_max = 0;
        Ok(())
    }

    /// Deletes closed segments whose entries are all at or below `snapshot_index` (a durable
    /// snapshot covers them). The current segment is never deleted. Returns how many were removed.
    ///
    /// # Errors
    /// I/O errors.
    pub fn compact(&mut self, snapshot_index: u64) -> io::Result<usize> {
        // Only a prefix may go: a later segment's records are read after an earlier one's.
        let n = self
            .closed
            .iter()
            .take_while(|(_, max)| *max <= snapshot_index)
            .count();
        for (seq, _) in self.closed.drain(..n) {
            fs::remove_file(self.dir.join(segment_name(seq)))?;
        }
        if n > 0 {
            self.syncer.sync_dir(&self.dir)?;
        }
        Ok(n)
    }

    /// Number of segment files (closed plus current).
    pub fn segment_count(&self) -> usize {
        self.closed.len() + 1
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn create_segment(dir: &Path, seq: u64, syncer: &Syncer) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(segment_name(seq)))?;
    syncer.sync_all(&file)?;
    syncer.sync_dir(dir)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: u8, s: &str) -> Record {
        Record {
            kind,
            data: s.as_bytes().to_vec(),
        }
    }

    fn open(dir: &Path) -> Result<(Wal, Vec<Located>, OpenReport), StorageError> {
        Wal::open(dir, 1 << 20, |r| r.kind as u64)
    }

    fn kinds(rs: &[Located]) -> Vec<u8> {
        rs.iter().map(|l| l.record.kind).collect()
    }

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, rs, _) = open(dir.path()).unwrap();
        assert!(rs.is_empty());
        wal.append(&[rec(1, "a"), rec(2, "bb")], 2, Vec::new)
            .unwrap();
        wal.append(&[rec(3, "")], 3, Vec::new).unwrap();
        drop(wal);
        let (_, rs, report) = open(dir.path()).unwrap();
        assert_eq!(kinds(&rs), vec![1, 2, 3]);
        assert_eq!(rs[1].record.data, b"bb");
        assert!(report.truncated.is_none());
    }

    #[test]
    fn torn_final_frame_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(dir.path()).unwrap();
        wal.append(&[rec(1, "first")], 1, Vec::new).unwrap();
        wal.append(&[rec(2, "second frame payload")], 2, Vec::new)
            .unwrap();
        drop(wal);
        let path = dir.path().join(segment_name(1));
        let len = fs::metadata(&path).unwrap().len();
        for cut in [len - 1, len - 10, len - 20] {
            let copy = tempfile::tempdir().unwrap();
            let p2 = copy.path().join(segment_name(1));
            fs::copy(&path, &p2).unwrap();
            OpenOptions::new()
                .write(true)
                .open(&p2)
                .unwrap()
                .set_len(cut)
                .unwrap();
            let (mut wal, rs, report) = open(copy.path()).unwrap();
            assert_eq!(kinds(&rs), vec![1], "cut at {cut}");
            let (p, off, _) = report.truncated.expect("truncation reported");
            assert_eq!(p, p2);
            assert_eq!(off, (FRAME_HEADER + 5 + 5) as u64);
            wal.append(&[rec(3, "after")], 3, Vec::new).unwrap();
            drop(wal);
            let (_, rs, report) = open(copy.path()).unwrap();
            assert_eq!(kinds(&rs), vec![1, 3]);
            assert!(report.truncated.is_none());
        }
    }

    #[test]
    fn zeroed_tail_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(dir.path()).unwrap();
        wal.append(&[rec(1, "x")], 1, Vec::new).unwrap();
        drop(wal);
        let path = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        drop(f);
        let (_, rs, report) = open(dir.path()).unwrap();
        assert_eq!(kinds(&rs), vec![1]);
        assert_eq!(report.truncated.unwrap().2, 4096);
    }

    #[test]
    fn flipped_byte_in_the_middle_is_refused_with_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(dir.path()).unwrap();
        wal.append(&[rec(1, "first")], 1, Vec::new).unwrap();
        wal.append(&[rec(2, "second")], 2, Vec::new).unwrap();
        wal.append(&[rec(3, "third")], 3, Vec::new).unwrap();
        drop(wal);
        let path = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let second = FRAME_HEADER + 5 + 5;
        bytes[second + FRAME_HEADER + 6] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = open(dir.path()).unwrap_err();
        match &err {
            StorageError::Corrupt {
                path: p, offset, ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*offset, second as u64);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("wal-0000000000000001.log") && msg.contains(&second.to_string()),
            "{msg}"
        );
        // The file is left untouched for an operator to inspect.
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn corrupt_header_in_the_middle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(dir.path()).unwrap();
        wal.append(&[rec(1, "first")], 1, Vec::new).unwrap();
        wal.append(&[rec(2, "second")], 2, Vec::new).unwrap();
        drop(wal);
        let path = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&path).unwrap();
        bytes[2] ^= 0x01; // length field of the first frame
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            open(dir.path()),
            Err(StorageError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn segments_roll_and_compact_deletes_covered_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = Wal::open(dir.path(), 64, |r| r.kind as u64).unwrap();
        for i in 1..=10u8 {
            wal.append(&[rec(i, &"p".repeat(40))], i as u64, || {
                vec![rec(200, "hs")]
            })
            .unwrap();
        }
        assert!(wal.segment_count() > 3, "{}", wal.segment_count());
        let before = wal.segment_count();
        let removed = wal.compact(5).unwrap();
        assert!(removed >= 3);
        assert_eq!(wal.segment_count(), before - removed);
        drop(wal);
        let (_, rs, _) = Wal::open(dir.path(), 64, |r| r.kind as u64).unwrap();
        let ks: Vec<u8> = kinds(&rs).into_iter().filter(|&k| k != 200).collect();
        assert_eq!(*ks.last().unwrap(), 10);
        assert!(ks.iter().all(|&k| k >= 5));
        // Every segment after the first begins with the preamble.
        assert_eq!(rs[0].record.kind, 200);
    }

    #[test]
    fn damage_in_a_closed_segment_is_refused_even_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = Wal::open(dir.path(), 32, |r| r.kind as u64).unwrap();
        for i in 1..=4u8 {
            wal.append(&[rec(i, &"q".repeat(40))], i as u64, Vec::new)
                .unwrap();
        }
        drop(wal);
        let path = dir.path().join(segment_name(1));
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert!(matches!(
            Wal::open(dir.path(), 32, |r| r.kind as u64),
            Err(StorageError::Corrupt { .. })
        ));
    }

    /// Runs `f` with a subscriber that records log lines, and returns them with `f`'s result.
    fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    /// A segment of two frames: a small one, then a final one from `FIRST_END` to `LONG_END`
    /// across the 512-byte offsets 512, 1024 and 1536, with no zero byte in its payload's data.
    fn two_frames_the_last_across_sectors(dir: &Path) -> (PathBuf, Vec<u8>) {
        let (mut wal, _, _) = open(dir).unwrap();
        wal.append(&[rec(1, "first")], 1, Vec::new).unwrap();
        wal.append(&[rec(2, &"p".repeat(1500))], 2, Vec::new)
            .unwrap();
        drop(wal);
        let path = dir.join(segment_name(1));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), LONG_END);
        (path, bytes)
    }

    const FIRST_END: usize = FRAME_HEADER + 5 + 5;
    const LONG_END: usize = FIRST_END + FRAME_HEADER + 5 + 1500;

    #[test]
    fn flipped_bit_in_the_final_frame_is_refused_with_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (path, good) = two_frames_the_last_across_sectors(dir.path());
        for at in FIRST_END..LONG_END {
            let mut bytes = good.clone();
            bytes[at] ^= 1 << (at % 8);
            fs::write(&path, &bytes).unwrap();
            let err = open(dir.path()).unwrap_err();
            let StorageError::Corrupt {
                path: p,
                offset,
                reason,
            } = &err
            else {
                panic!("byte {at}: unexpected {err:?}");
            };
            assert_eq!((p, *offset), (&path, FIRST_END as u64), "byte {at}");
            let expected = if at < FIRST_END + FRAME_HEADER {
                "frame header checksum mismatch"
            } else {
                "frame checksum mismatch"
            };
            assert_eq!(reason, expected, "byte {at}");
            let msg = err.to_string();
            assert!(
                msg.contains("wal-0000000000000001.log")
                    && msg.contains(&format!("offset {FIRST_END}"))
                    && msg.contains("refusing to start"),
                "{msg}"
            );
            // Refused, not repaired: the file is untouched.
            assert_eq!(fs::read(&path).unwrap(), bytes, "byte {at}");
        }
    }

    #[test]
    fn final_frame_ending_in_zeroed_sectors_is_torn() {
        for zero_from in [512, 700, 1024, 1536] {
            let dir = tempfile::tempdir().unwrap();
            let (path, mut bytes) = two_frames_the_last_across_sectors(dir.path());
            bytes[zero_from..].fill(0);
            fs::write(&path, &bytes).unwrap();
            let ((mut wal, rs, report), logs) = with_logs(|| open(dir.path()).unwrap());
            assert_eq!(kinds(&rs), vec![1], "zeros from {zero_from}");
            let bytes_cut = (LONG_END - FIRST_END) as u64;
            assert_eq!(
                report.truncated,
                Some((path.clone(), FIRST_END as u64, bytes_cut))
            );
            assert_eq!(fs::metadata(&path).unwrap().len(), FIRST_END as u64);
            assert!(
                logs.contains("WARN")
                    && logs.contains("cut a torn tail")
                    && logs.contains(&format!("offset={FIRST_END}"))
                    && logs.contains(&format!("bytes={bytes_cut}"))
                    && logs.contains("zeroed sectors"),
                "{logs}"
            );
            wal.append(&[rec(3, "after")], 3, Vec::new).unwrap();
            drop(wal);
            let (_, rs, report) = open(dir.path()).unwrap();
            assert_eq!(kinds(&rs), vec![1, 3]);
            assert!(report.truncated.is_none());
        }
    }

    #[test]
    fn zeros_that_do_not_reach_back_to_a_sector_boundary_are_corruption() {
        // Zeros from just past an aligned offset to the end: no whole sector tail was lost.
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = two_frames_the_last_across_sectors(dir.path());
        bytes[1537..].fill(0);
        fs::write(&path, &bytes).unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { offset, reason, .. }
                if *offset == FIRST_END as u64 && reason == "frame checksum mismatch"),
            "{err:?}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn zeroed_sectors_are_corruption_unless_the_frame_ends_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = two_frames_the_last_across_sectors(dir.path());
        bytes[1024..].fill(0);
        let mut more = Vec::new();
        encode_frame(&[rec(3, "later")], &mut more);
        bytes.extend_from_slice(&more);
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            open(dir.path()),
            Err(StorageError::Corrupt { offset, .. }) if offset == FIRST_END as u64
        ));
    }

    #[test]
    fn final_frame_cut_short_is_torn_and_logged_but_a_cut_at_a_boundary_is_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (path, good) = two_frames_the_last_across_sectors(dir.path());
        // Every cut inside the final frame: its header (incomplete header) or its payload
        // (extends past the end of the file).
        for cut in FIRST_END + 1..LONG_END {
            fs::write(&path, &good[..cut]).unwrap();
            let ((_, rs, report), logs) = with_logs(|| open(dir.path()).unwrap());
            assert_eq!(kinds(&rs), vec![1], "cut at {cut}");
            let bytes_cut = (cut - FIRST_END) as u64;
            assert_eq!(
                report.truncated,
                Some((path.clone(), FIRST_END as u64, bytes_cut)),
                "cut at {cut}"
            );
            let why = if cut < FIRST_END + FRAME_HEADER {
                "incomplete frame header"
            } else {
                "frame extends past the end of the file"
            };
            assert!(
                logs.contains("WARN")
                    && logs.contains(&format!("bytes={bytes_cut}"))
                    && logs.contains(why),
                "cut at {cut}: {logs}"
            );
            assert_eq!(fs::metadata(&path).unwrap().len(), FIRST_END as u64);
        }
        // A cut at the frame boundary looks like a crash before the second write: the frame is
        // gone without a trace, and nothing is logged.
        fs::write(&path, &good[..FIRST_END]).unwrap();
        let ((_, rs, report), logs) = with_logs(|| open(dir.path()).unwrap());
        assert_eq!(kinds(&rs), vec![1]);
        assert!(report.truncated.is_none());
        assert!(!logs.contains("torn"), "{logs}");
    }
}
