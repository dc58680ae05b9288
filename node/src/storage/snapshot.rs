//! Snapshot files: one file per snapshot, written atomically (temp file, fsync, rename, fsync dir).
//!
//! Layout: `[magic "RKVSNAP1"][crc32 of the rest: u32][meta_len: u32][meta][data]`, named
//! `snap-{index:020}-{term:020}.snap`. Only the newest snapshot is kept once a newer one is durable.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::wal::Syncer;
use super::{StorageError, StoredSnapshot};

const MAGIC: &[u8; 8] = b"RKVSNAP1";

fn file_name(index: u64, term: u64) -> String {
    format!("snap-{index:020}-{term:020}.snap")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (i, t) = rest.split_once('-')?;
    Some((i.parse().ok()?, t.parse().ok()?))
}

/// Snapshot files in `dir`, newest (highest index) last.
fn list(dir: &Path) -> io::Result<Vec<(u64, u64, PathBuf)>> {
    let mut out: Vec<_> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            parse_name(&name).map(|(i, t)| (i, t, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Writes `snap` into `dir` atomically and removes older snapshot files.
///
/// # Errors
/// I/O errors; the previous snapshot stays valid if this fails.
pub fn save(dir: &Path, snap: &StoredSnapshot) -> io::Result<PathBuf> {
    save_with(dir, snap, &Syncer::default())
}

/// [`save`] with the file and directory syncs going through `syncer`.
///
/// # Errors
/// As for [`save`].
pub fn save_with(dir: &Path, snap: &StoredSnapshot, syncer: &Syncer) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let name = file_name(snap.index, snap.term);
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(&name);
    let mut body = Vec::with_capacity(8 + snap.meta.len() + snap.data.len());
    body.extend_from_slice(&(snap.meta.len() as u32).to_le_bytes());
    body.extend_from_slice(&snap.meta);
    body.extend_from_slice(&snap.data);
    let crc = crc32fast::hash(&body);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&crc.to_le_bytes())?;
        f.write_all(&body)?;
        syncer.sync_all(&f)?;
    }
    fs::rename(&tmp, &path)?;
    syncer.sync_dir(dir)?;
    for (i, t, p) in list(dir)? {
        if (i, t) != (snap.index, snap.term) && i <= snap.index {
            fs::remove_file(p)?;
        }
    }
    syncer.sync_dir(dir)?;
    Ok(path)
}

/// Loads the newest snapshot in `dir`, if any, after removing leftover temp files.
///
/// # Errors
/// [`StorageError::Corrupt`] if the newest file fails its checksum (older ones were deleted only
/// after it was durable, so there is nothing safe to fall back to), and I/O errors.
pub fn load_latest(dir: &Path) -> Result<Option<StoredSnapshot>, StorageError> {
    fs::create_dir_all(dir)?;
    for e in fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            fs::remove_file(e.path())?;
        }
    }
    let Some((index, term, path)) = list(dir)?.pop() else {
        return Ok(None);
    };
    let bytes = fs::read(&path)?;
    let corrupt = |reason: &str| StorageError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: reason.to_string(),
    };
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a snapshot file (bad magic or too short)"));
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let body = &bytes[12..];
    if crc32fast::hash(body) != crc {
        return Err(corrupt("snapshot checksum mismatch"));
    }
    let meta_len = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
    if body.len() < 4 + meta_len {
        return Err(corrupt("snapshot meta length out of range"));
    }
    Ok(Some(StoredSnapshot {
        index,
        term,
        meta: body[4..4 + meta_len].to_vec(),
        data: body[4 + meta_len..].to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(index: u64, data: &str) -> StoredSnapshot {
        StoredSnapshot {
            index,
            term: 2,
            meta: b"{\"m\":1}".to_vec(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn newest_snapshot_wins_and_older_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_latest(dir.path()).unwrap().is_none());
        save(dir.path(), &snap(10, "ten")).unwrap();
        save(dir.path(), &snap(20, "twenty")).unwrap();
        let s = load_latest(dir.path()).unwrap().unwrap();
        assert_eq!(
            (s.index, s.term, s.data.as_slice()),
            (20, 2, &b"twenty"[..])
        );
        assert_eq!(s.meta, b"{\"m\":1}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftover_temp_file_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &snap(10, "ten")).unwrap();
        fs::write(
            dir.path().join(format!("{}.tmp", file_name(30, 3))),
            b"half written",
        )
        .unwrap();
        let s = load_latest(dir.path()).unwrap().unwrap();
        assert_eq!(s.index, 10);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Any damage to the newest snapshot file (a flipped bit in the magic, the checksum, the
    /// meta length or the data; a truncation, down to an empty file as a lost unsynced write
    /// leaves it) refuses it, naming the file.
    #[test]
    fn every_flipped_bit_and_truncation_of_a_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = save(dir.path(), &snap(10, "some state")).unwrap();
        let good = fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let refused = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            let err = load_latest(dir.path()).unwrap_err();
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&name) && msg.contains("refusing to start"),
                "{msg}"
            );
            msg
        };
        for at in 0..good.len() {
            let mut bytes = good.clone();
            bytes[at] ^= 0x04;
            let msg = refused(&bytes);
            let expected = if at < 8 {
                "bad magic"
            } else {
                "snapshot checksum mismatch"
            };
            assert!(msg.contains(expected), "byte {at}: {msg}");
        }
        for len in 0..good.len() {
            refused(&good[..len]);
        }
        fs::write(&path, &good).unwrap();
        assert_eq!(load_latest(dir.path()).unwrap().unwrap().index, 10);
    }

    #[test]
    fn corrupt_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = save(dir.path(), &snap(10, "some state")).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = load_latest(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("snapshot checksum mismatch"),
            "{err}"
        );
    }
}
