//! The write-ahead log: segment files of checksummed frames.
//!
//! A *frame* is what one `fdatasync` makes durable: the server loop hands the WAL everything one
//! Raft `Ready` needs persisted (hard state, new entries), the WAL encodes it as one frame, writes it
//! with one `write` and syncs once (group commit). Because at most one frame is ever unsynced, only
//! the last frame of the last segment can be torn by a crash; a bad frame anywhere else is
//! corruption, and recovery refuses to start rather than silently dropping acknowledged data.
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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
    /// Cannot be read; `torn` says whether it looks like the interrupted last write.
    Bad {
        torn: bool,
        why: &'static str,
    },
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
        let torn = rest.iter().all(|&b| b == 0);
        return Frame::Bad {
            torn,
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
        return Frame::Bad {
            torn: end == buf.len(),
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
    /// A torn final frame of the last segment is truncated away (and reported); any other unreadable
    /// frame is [`StorageError::Corrupt`] naming the file and offset.
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
                    Frame::Bad { torn: true, .. } if is_last => {
                        let f = OpenOptions::new().write(true).open(&path)?;
                        f.set_len(at as u64)?;
                        f.sync_all()?;
                        report.truncated = Some((path.clone(), at as u64, (buf.len() - at) as u64));
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
                let file = create_segment(dir, 1)?;
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
        self.file.sync_data()?;
        self.size += self.buf.len() as u64;
        self.current_max = self.current_max.max(max_index);
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let next = self.seq + 1;
        let file = create_segment(&self.dir, next)?;
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
            sync_dir(&self.dir)?;
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

fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(segment_name(seq)))?;
    file.sync_all()?;
    sync_dir(dir)?;
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
}
