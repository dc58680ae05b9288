//! `faultfs corrupt`: seeded damage to the plain files of a stopped node's data directory, the way
//! Jepsen corrupts files: flip a few bits, or cut off a tail, in a random file of a chosen kind.
//!
//! The harness runs it in a short helper container with the node's data volume at `/data` while
//! the node is down (faultfs is not mounted there), reads the one-line JSON [`Report`] it prints,
//! and restarts the node.
//!
//! Three steps, kept apart so the tests can check each:
//! 1. [`find`]: the regular files under the root whose relative path matches a pattern, sorted,
//!    with their sizes. Symlinks are never followed, so nothing outside the root is touched.
//! 2. [`plan`]: from the seed alone (ChaCha8), which non-empty files to damage and how. Pure.
//! 3. [`apply`]: the damage, in place: flipped bytes are read and written back with
//!    `pread`/`pwrite`, a truncation is `ftruncate`; each file is fsynced before the next.
//!
//! The random draws, in order, from one `ChaCha8Rng::seed_from_u64(seed)` stream:
//! - the files: `min(F, candidates)` distinct indices (Floyd's algorithm), damaged in path order;
//! - per file, in that order:
//!   - `--bitflips K`: `min(K, 8 * size)` distinct bit positions (Floyd's algorithm);
//!   - `--bitflip-prob P`: positions with geometric gaps, `floor(ln U / ln(1 - P))` bits skipped
//!     before each flip (U uniform in (0, 1]), which is every bit flipped independently with
//!     probability P at O(flips) cost; if that flips nothing, one uniform bit is flipped;
//!   - `--truncate-max M`: a cut of `floor(exp(U * ln(m + 1)))` bytes, `m = min(M, size)` and U
//!     uniform in [0, 1): log-uniform on 1..=m, so P(cut = c) = ln((c + 1) / c) / ln(m + 1), about
//!     1/c: Zipf-like, small cuts most likely, as Jepsen draws them.
//!
//! A bit is named by `(byte offset, bit)` with bit 0 the least significant (mask `1 << bit`).
//! Flipping is its own inverse: the same bit-flip command run again on the unchanged sizes puts the
//! files back.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::glob::Pattern;

/// What to do to each chosen file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Damage {
    /// Flip this many distinct random bits (all of them if the file has fewer).
    Bitflips(u64),
    /// Flip each bit with this probability, in (0, 1]; at least one bit.
    BitflipProb(f64),
    /// Cut a random tail of 1..=min(this, size) bytes.
    TruncateMax(u64),
}

/// A regular file under the root that matched a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Path relative to the root, components joined with `/`.
    pub rel: String,
    /// Size in bytes when found.
    pub size: u64,
}

/// The damage done (or planned) to one file, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FileDamage {
    /// Bits flipped.
    Bitflips {
        /// Path relative to the root.
        path: String,
        /// Size in bytes (unchanged).
        size: u64,
        /// `[byte offset, bit]` pairs, ascending, distinct; bit 0 is the least significant.
        bitflips: Vec<(u64, u8)>,
    },
    /// A tail cut off.
    Truncated {
        /// Path relative to the root.
        path: String,
        /// Size in bytes before the cut.
        size: u64,
        /// Size in bytes after the cut: `size - cut`.
        truncated_to: u64,
        /// Bytes cut off, at least 1 and at most `size`.
        cut: u64,
    },
}

impl FileDamage {
    /// The file's path relative to the root.
    pub fn path(&self) -> &str {
        match self {
            FileDamage::Bitflips { path, .. } | FileDamage::Truncated { path, .. } => path,
        }
    }
}

/// What `faultfs corrupt` prints: one line of JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The root, as given.
    pub root: String,
    /// How many non-empty regular files matched (the files could be chosen among).
    pub matched: usize,
    /// The damaged files, in path order; empty when nothing matched.
    pub files: Vec<FileDamage>,
}

/// Why `faultfs corrupt` failed. The message names the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}{}", path.display(), done_note(done))]
pub struct CorruptError {
    /// What was being done: "read directory", "open", "write", ...
    pub op: &'static str,
    /// The file or directory, under the root.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
    /// Files already damaged (and fsynced) before the failure, relative to the root.
    pub done: Vec<String>,
}

fn done_note(done: &[String]) -> String {
    if done.is_empty() {
        String::new()
    } else {
        format!(" (already damaged: {})", done.join(", "))
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> CorruptError {
    CorruptError {
        op,
        path: path.to_path_buf(),
        source,
        done: Vec::new(),
    }
}

/// The regular files under `root` whose relative path matches any pattern, sorted by that path.
/// Directories are descended, symlinks (to files or directories) and other file types skipped.
pub fn find(root: &Path, patterns: &[Pattern]) -> Result<Vec<Found>, CorruptError> {
    let meta = std::fs::metadata(root).map_err(|e| io_err("read root", root, e))?;
    if !meta.is_dir() {
        return Err(io_err(
            "read root",
            root,
            io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err("read directory", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("read directory", &dir, e))?;
            let name = entry.file_name();
            let rel = if rel_dir.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel_dir}/{}", name.to_string_lossy())
            };
            let path = entry.path();
            // The entry's own type: a symlink stays a symlink.
            let kind = entry.file_type().map_err(|e| io_err("stat", &path, e))?;
            if kind.is_dir() {
                stack.push((path, rel));
            } else if kind.is_file() && patterns.iter().any(|p| p.matches(&rel)) {
                let size = entry
                    .metadata()
                    .map_err(|e| io_err("stat", &path, e))?
                    .len();
                found.push(Found { rel, size });
            }
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(found)
}

/// `amount` distinct values in `0..n`, ascending (Floyd's algorithm: `amount` draws).
fn distinct(rng: &mut ChaCha8Rng, n: u64, amount: u64) -> BTreeSet<u64> {
    let amount = amount.min(n);
    let mut chosen = BTreeSet::new();
    for j in n - amount..n {
        let t = rng.random_range(0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen
}

/// Bit positions in `0..bits`, each present with probability `p`, by geometric gaps; at least one.
fn bernoulli_bits(rng: &mut ChaCha8Rng, bits: u64, p: f64) -> Vec<u64> {
    let mut out = Vec::new();
    if p >= 1.0 {
        out.extend(0..bits);
        return out;
    }
    // ln(1 - p), exact for tiny p.
    let log_q = (-p).ln_1p();
    let mut pos = 0u64;
    while pos < bits {
        let u = 1.0 - rng.random::<f64>(); // (0, 1]
        let gap = (u.ln() / log_q).floor();
        // `as` saturates: a huge gap ends the loop.
        let gap = if gap.is_finite() {
            gap as u64
        } else {
            u64::MAX
        };
        match pos.checked_add(gap) {
            Some(at) if at < bits => {
                out.push(at);
                pos = at + 1;
            }
            _ => break,
        }
    }
    if out.is_empty() {
        out.push(rng.random_range(0..bits));
    }
    out
}

/// A tail length in 1..=max, log-uniform (P(c) = ln((c+1)/c) / ln(max+1)).
fn zipf_cut(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    let u: f64 = rng.random();
    let c = (u * ((max as f64) + 1.0).ln()).exp().floor();
    (c as u64).clamp(1, max)
}

/// Which files to damage and how, from the seed alone. `found` must be sorted (as [`find`]
/// returns it); empty files are never chosen. Returns the damage in path order.
pub fn plan(found: &[Found], seed: u64, damage: Damage, files: usize) -> Vec<FileDamage> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let candidates: Vec<&Found> = found.iter().filter(|f| f.size > 0).collect();
    let picks = distinct(&mut rng, candidates.len() as u64, files as u64);
    picks
        .into_iter()
        .map(|i| {
            let f = candidates[i as usize];
            let bits = f.size.saturating_mul(8);
            let flips = |positions: &mut dyn Iterator<Item = u64>| FileDamage::Bitflips {
                path: f.rel.clone(),
                size: f.size,
                bitflips: positions.map(|b| (b / 8, (b % 8) as u8)).collect(),
            };
            match damage {
                Damage::Bitflips(k) => flips(&mut distinct(&mut rng, bits, k).into_iter()),
                Damage::BitflipProb(p) => flips(&mut bernoulli_bits(&mut rng, bits, p).into_iter()),
                Damage::TruncateMax(max) => {
                    let cut = zipf_cut(&mut rng, max.min(f.size));
                    FileDamage::Truncated {
                        path: f.rel.clone(),
                        size: f.size,
                        truncated_to: f.size - cut,
                        cut,
                    }
                }
            }
        })
        .collect()
}

/// Flipped bytes within this distance are read and written back as one span.
const SPAN: u64 = 64 * 1024;

/// Flips `bitflips` (ascending) in `file`: one `pread` and one `pwrite` per span of nearby flips.
fn flip(file: &File, bitflips: &[(u64, u8)]) -> Result<(), (&'static str, io::Error)> {
    let mut buf = Vec::new();
    let mut i = 0;
    while i < bitflips.len() {
        let start = bitflips[i].0;
        let mut j = i;
        while j < bitflips.len() && bitflips[j].0 < start + SPAN {
            j += 1;
        }
        let end = bitflips[j - 1].0 + 1;
        buf.resize((end - start) as usize, 0);
        file.read_exact_at(&mut buf, start)
            .map_err(|e| ("read", e))?;
        for &(offset, bit) in &bitflips[i..j] {
            buf[(offset - start) as usize] ^= 1 << bit;
        }
        file.write_all_at(&buf, start).map_err(|e| ("write", e))?;
        i = j;
    }
    Ok(())
}

/// Does `damage` (from [`plan`]) to the files under `root`, each fsynced before the next. A file
/// whose size is no longer the planned one is refused (`EIO`): something else is writing to it.
pub fn apply(root: &Path, damage: &[FileDamage]) -> Result<(), CorruptError> {
    let mut done = Vec::new();
    for d in damage {
        let path = root.join(d.path());
        let fail = |op, source, done: &Vec<String>| CorruptError {
            op,
            path: path.clone(),
            source,
            done: done.clone(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| fail("open", e, &done))?;
        let len = file.metadata().map_err(|e| fail("stat", e, &done))?.len();
        let (FileDamage::Bitflips { size, .. } | FileDamage::Truncated { size, .. }) = d;
        if len != *size {
            let e = io::Error::other(format!("its size changed from {size} to {len} bytes"));
            return Err(fail("damage", e, &done));
        }
        match d {
            FileDamage::Bitflips { bitflips, .. } => {
                flip(&file, bitflips).map_err(|(op, e)| fail(op, e, &done))?
            }
            FileDamage::Truncated { truncated_to, .. } => file
                .set_len(*truncated_to)
                .map_err(|e| fail("truncate", e, &done))?,
        }
        file.sync_all().map_err(|e| fail("fsync", e, &done))?;
        done.push(d.path().to_string());
    }
    Ok(())
}

/// The whole command: find, plan, apply. `root` is reported as given.
pub fn corrupt(
    root: &Path,
    patterns: &[Pattern],
    seed: u64,
    damage: Damage,
    files: usize,
) -> Result<Report, CorruptError> {
    let found = find(root, patterns)?;
    let damaged = plan(&found, seed, damage, files);
    apply(root, &damaged)?;
    Ok(Report {
        root: root.to_string_lossy().into_owned(),
        matched: found.iter().filter(|f| f.size > 0).count(),
        files: damaged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Pattern {
        Pattern::new(p).unwrap()
    }

    /// Deterministic, varied bytes.
    fn bytes(len: usize, salt: u8) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(salt as u64);
        (0..len).map(|_| rng.random()).collect()
    }

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    /// The bits that differ between two equally long byte strings, as (offset, bit).
    fn diff(before: &[u8], after: &[u8]) -> Vec<(u64, u8)> {
        assert_eq!(before.len(), after.len());
        let mut out = Vec::new();
        for (i, (a, b)) in before.iter().zip(after).enumerate() {
            for bit in 0..8 {
                if (a ^ b) & (1 << bit) != 0 {
                    out.push((i as u64, bit));
                }
            }
        }
        out
    }

    fn found(sizes: &[u64]) -> Vec<Found> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Found {
                rel: format!("f{i:03}"),
                size,
            })
            .collect()
    }

    #[test]
    fn find_matches_components_and_double_star_under_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        for rel in [
            "etcd/member/wal/0-0.wal",
            "etcd/member/wal/1-9.wal",
            "etcd/member/wal/0.tmp",
            "etcd/member/wal/old/2-3.wal",
            "etcd/member/snap/db",
            "nats/jetstream/$G/streams/s/msgs/1.blk",
            "nats/jetstream/$G/streams/s/msgs/1.idx",
            "logs/wal-1.log",
            "wal-0.log",
        ] {
            write(&root, rel, b"x");
        }
        // Outside the root, and reachable from it only through symlinks: never matched.
        write(dir.path(), "outside/wal-9.log", b"x");
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("wal-0.log"), root.join("wal-l.log")).unwrap();

        let rels = |pats: &[&str]| -> Vec<String> {
            let pats: Vec<Pattern> = pats.iter().map(|p| pat(p)).collect();
            find(&root, &pats)
                .unwrap()
                .into_iter()
                .map(|f| f.rel)
                .collect()
        };
        assert_eq!(
            rels(&["etcd/member/wal/*.wal"]),
            ["etcd/member/wal/0-0.wal", "etcd/member/wal/1-9.wal"]
        );
        assert_eq!(rels(&["**/wal-*.log"]), ["logs/wal-1.log", "wal-0.log"]);
        assert_eq!(
            rels(&["nats/jetstream/**/*.blk", "etcd/**/*.wal"]),
            [
                "etcd/member/wal/0-0.wal",
                "etcd/member/wal/1-9.wal",
                "etcd/member/wal/old/2-3.wal",
                "nats/jetstream/$G/streams/s/msgs/1.blk",
            ]
        );
        assert_eq!(
            rels(&["**"]).len(),
            9,
            "symlinks are not files: {:?}",
            rels(&["**"])
        );
        assert!(rels(&["outside/*"]).is_empty());
        assert!(rels(&["link/*"]).is_empty());
        assert!(rels(&["*.snap"]).is_empty());

        let err = find(&dir.path().join("nope"), &[pat("*")]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn bitflips_change_exactly_the_reported_bits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sizes = [1usize, 3, 100, 70_000, 300_000];
        let before: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let data = bytes(n, i as u8);
                write(root, &format!("f{i}.wal"), &data);
                data
            })
            .collect();
        for (k, seed) in [(1, 1), (2, 2), (5, 3), (1000, 4)] {
            let report = corrupt(root, &[pat("*.wal")], seed, Damage::Bitflips(k), 5).unwrap();
            assert_eq!(report.matched, 5);
            assert_eq!(report.files.len(), 5);
            for (i, d) in report.files.iter().enumerate() {
                let FileDamage::Bitflips {
                    path,
                    size,
                    bitflips,
                } = d
                else {
                    panic!("{d:?}")
                };
                assert_eq!(path, &format!("f{i}.wal"));
                assert_eq!(*size, sizes[i] as u64);
                assert_eq!(bitflips.len() as u64, k.min(*size * 8), "{path}");
                let after = std::fs::read(root.join(path)).unwrap();
                assert_eq!(&diff(&before[i], &after), bitflips, "{path}, seed {seed}");
                // Flipping is its own inverse: put the file back for the next round.
                std::fs::write(root.join(path), &before[i]).unwrap();
            }
        }
    }

    #[test]
    fn same_seed_same_damage_other_seed_other_damage() {
        let files = found(&[10_000; 20]);
        for damage in [
            Damage::Bitflips(2),
            Damage::BitflipProb(1e-3),
            Damage::TruncateMax(1023),
        ] {
            let a = plan(&files, 42, damage, 3);
            assert_eq!(a, plan(&files, 42, damage, 3), "{damage:?}");
            assert_ne!(a, plan(&files, 43, damage, 3), "{damage:?}");
            assert_eq!(a.len(), 3);
        }
        // On disk too: two copies of the same files, the same seed, the same bytes after.
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let results: Vec<(Report, Vec<u8>)> = dirs
            .iter()
            .map(|d| {
                write(d.path(), "a/x.log", &bytes(5000, 1));
                write(d.path(), "a/y.log", &bytes(5000, 2));
                let r = corrupt(d.path(), &[pat("a/*.log")], 9, Damage::Bitflips(3), 1).unwrap();
                let data = std::fs::read(d.path().join(r.files[0].path())).unwrap();
                (
                    Report {
                        root: String::new(),
                        ..r
                    },
                    data,
                )
            })
            .collect();
        assert_eq!(results[0], results[1]);
    }

    #[test]
    fn seeds_choose_among_all_candidates() {
        let files = found(&[100; 10]);
        let mut seen = BTreeSet::new();
        for seed in 0..200 {
            let d = plan(&files, seed, Damage::Bitflips(1), 2);
            assert_eq!(d.len(), 2);
            assert!(d[0].path() < d[1].path(), "distinct, in path order");
            seen.extend(d.iter().map(|d| d.path().to_string()));
        }
        assert_eq!(seen.len(), 10);
        // More files asked for than there are: all of them.
        assert_eq!(plan(&files, 1, Damage::Bitflips(1), 50).len(), 10);
    }

    #[test]
    fn truncation_cuts_exactly_cut_bytes_and_never_below_zero() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut cuts = Vec::new();
        for seed in 0..40 {
            for (size, max) in [
                (1usize, 1023u64),
                (5, 1023),
                (4000, 1023),
                (4000, 1),
                (64, 64),
            ] {
                let data = bytes(size, seed as u8);
                write(root, "wal/x.wal", &data);
                let r = corrupt(root, &[pat("wal/*")], seed, Damage::TruncateMax(max), 1).unwrap();
                let FileDamage::Truncated {
                    size: s,
                    truncated_to,
                    cut,
                    ..
                } = r.files[0]
                else {
                    panic!("{:?}", r.files[0])
                };
                assert_eq!(s, size as u64);
                assert!(
                    cut >= 1 && cut <= max.min(size as u64),
                    "cut {cut} of {size}"
                );
                assert_eq!(truncated_to, s - cut);
                let after = std::fs::read(root.join("wal/x.wal")).unwrap();
                assert_eq!(after.len() as u64, truncated_to);
                assert_eq!(
                    after[..],
                    data[..truncated_to as usize],
                    "only the tail goes"
                );
                if (size, max) == (4000, 1023) {
                    cuts.push(cut);
                }
            }
        }
        // Log-uniform: small cuts are common, large ones happen.
        let small = cuts.iter().filter(|&&c| c <= 32).count();
        assert!(small >= 10, "{cuts:?}");
        assert!(cuts.iter().any(|&c| c > 100), "{cuts:?}");
    }

    #[test]
    fn zipf_cut_is_log_uniform() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 100_000;
        let mut counts = vec![0u32; 1024];
        for _ in 0..n {
            let c = zipf_cut(&mut rng, 1023);
            assert!((1..=1023).contains(&c));
            counts[c as usize] += 1;
        }
        // P(1) = ln 2 / ln 1024 = 0.1; P(c <= 31) = ln 32 / ln 1024 = 0.5.
        let p1 = counts[1] as f64 / n as f64;
        let p31 = counts[..32].iter().sum::<u32>() as f64 / n as f64;
        assert!((p1 - 0.1).abs() < 0.01, "{p1}");
        assert!((p31 - 0.5).abs() < 0.01, "{p31}");
        assert_eq!(zipf_cut(&mut rng, 1), 1);
    }

    #[test]
    fn probability_mode_flips_about_p_times_the_bits() {
        let files = found(&[1 << 20]); // 8 Mi bits
        let bits = (8u64 << 20) as f64;
        for (p, seed) in [(1e-3, 1), (1e-4, 2), (1e-5, 3)] {
            let d = plan(&files, seed, Damage::BitflipProb(p), 1);
            let FileDamage::Bitflips { bitflips, .. } = &d[0] else {
                panic!()
            };
            let expect = p * bits;
            let n = bitflips.len() as f64;
            // Binomial: sd = sqrt(expect); 5 sd either side, plus a little.
            let slack = 5.0 * expect.sqrt() + 2.0;
            assert!(
                (n - expect).abs() < slack,
                "p {p}: {n} flips, expected {expect}"
            );
            assert!(
                bitflips.windows(2).all(|w| w[0] < w[1]),
                "ascending, distinct"
            );
            assert!(bitflips.iter().all(|&(o, b)| o < 1 << 20 && b < 8));
        }
        // Tiny p on a small file still flips one bit; p = 1 flips every bit.
        let small = found(&[10]);
        for seed in 0..20 {
            let d = plan(&small, seed, Damage::BitflipProb(1e-9), 1);
            let FileDamage::Bitflips { bitflips, .. } = &d[0] else {
                panic!()
            };
            assert_eq!(bitflips.len(), 1);
        }
        let d = plan(&small, 0, Damage::BitflipProb(1.0), 1);
        let FileDamage::Bitflips { bitflips, .. } = &d[0] else {
            panic!()
        };
        assert_eq!(bitflips.len(), 80);
    }

    #[test]
    fn empty_files_are_never_chosen() {
        let files = found(&[0, 5, 0, 0, 7, 0]);
        for seed in 0..100 {
            for damage in [Damage::Bitflips(3), Damage::TruncateMax(10)] {
                let d = plan(&files, seed, damage, 3);
                let paths: Vec<&str> = d.iter().map(|d| d.path()).collect();
                assert_eq!(paths, ["f001", "f004"]);
            }
        }
        assert!(plan(&found(&[0, 0]), 1, Damage::Bitflips(1), 1).is_empty());

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.wal", b"");
        let r = corrupt(dir.path(), &[pat("*.wal")], 1, Damage::Bitflips(1), 1).unwrap();
        assert_eq!((r.matched, r.files.len()), (0, 0));
        assert_eq!(std::fs::read(dir.path().join("a.wal")).unwrap(), b"");
    }

    #[test]
    fn report_json_shape() {
        let report = Report {
            root: "/data".into(),
            matched: 3,
            files: vec![
                FileDamage::Bitflips {
                    path: "a/b.wal".into(),
                    size: 10,
                    bitflips: vec![(1, 0), (7, 7)],
                },
                FileDamage::Truncated {
                    path: "c.wal".into(),
                    size: 10,
                    truncated_to: 4,
                    cut: 6,
                },
            ],
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"root":"/data","matched":3,"files":[{"path":"a/b.wal","size":10,"bitflips":[[1,0],[7,7]]},{"path":"c.wal","size":10,"truncated_to":4,"cut":6}]}"#
        );
    }

    #[test]
    fn a_changed_size_is_refused_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "w/a.wal", b"12345");
        let damage = [FileDamage::Truncated {
            path: "w/a.wal".into(),
            size: 9,
            truncated_to: 8,
            cut: 1,
        }];
        let err = apply(dir.path(), &damage).unwrap_err().to_string();
        assert!(
            err.contains("w/a.wal") && err.contains("size changed"),
            "{err}"
        );
        let missing = [FileDamage::Bitflips {
            path: "w/gone.wal".into(),
            size: 1,
            bitflips: vec![(0, 0)],
        }];
        let err = apply(dir.path(), &missing).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot open ") && err.contains("w/gone.wal"),
            "{err}"
        );
    }
}
