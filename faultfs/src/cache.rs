//! The per-file write cache: what a file looks like to readers before it is fsynced.
//!
//! A [`FileCache`] overlays written-but-not-fsynced bytes on a backing file, page by page, and
//! remembers truncations and extensions without applying them. Readers see the overlay; the
//! backing file is touched only by [`FileCache::flush`] (called from fsync), and
//! [`FileCache::discard`] forgets everything since the last flush, as a power failure would.
//!
//! The model, for a file whose backing file is `backing_len` bytes long:
//! - `visible` is the prefix of the backing file that readers may still see: truncating below it
//!   hides the rest (`visible <= backing_len`, `visible <= size`);
//! - `size` is the length readers see;
//! - each cached page holds one contiguous dirty range `lo..hi` of new bytes.
//!
//! A byte at offset `x < size` reads from a dirty page if one covers it, else from the backing file
//! if `x < visible`, else as zero. Every operation costs O(bytes touched / page size) plus a
//! `BTreeMap` step, never O(file size): a WAL append of 4 KiB touches one or two pages.
//!
//! This module does no I/O of its own: the backing file is anything that implements [`Backing`],
//! so the cache is tested against an in-memory file that records what was written through.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Cache page size. Matches the kernel's page and the usual WAL/bbolt write size, so a small write
/// allocates at most two pages and a page rarely needs filling from the backing file.
pub const PAGE: usize = 4096;
const PAGE_U64: u64 = PAGE as u64;

/// The file under the cache: read to fill what the cache does not hold, written on flush.
pub trait Backing {
    /// Reads into `buf` from `offset`; returns how many bytes were read (short at end of file).
    ///
    /// # Errors
    /// Any I/O error of the backing file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`.
    ///
    /// # Errors
    /// Any I/O error of the backing file.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    /// Any I/O error of the backing file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl Backing for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match FileExt::read_at(self, &mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// One cached page: the bytes `lo..hi` of `data` are newer than the backing file.
struct Page {
    lo: usize,
    hi: usize,
    data: Box<[u8; PAGE]>,
}

/// What one [`FileCache::flush`] wrote through to the backing file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Dirty bytes written.
    pub bytes: u64,
    /// `pwrite` calls made (contiguous dirty runs are coalesced).
    pub writes: u64,
}

/// A file's un-fsynced state over its backing file. See the module docs for the model.
pub struct FileCache {
    backing_len: u64,
    visible: u64,
    size: u64,
    pages: BTreeMap<u64, Page>,
    dirty_bytes: u64,
}

impl FileCache {
    /// A clean cache over a backing file of `backing_len` bytes.
    pub fn new(backing_len: u64) -> Self {
        FileCache {
            backing_len,
            visible: backing_len,
            size: backing_len,
            pages: BTreeMap::new(),
            dirty_bytes: 0,
        }
    }

    /// The length readers see.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes written but not yet flushed (overwrites of the same byte count once).
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    /// Whether anything (data, truncation, extension) differs from the backing file.
    pub fn is_dirty(&self) -> bool {
        !self.pages.is_empty() || self.size != self.backing_len || self.visible != self.backing_len
    }

    /// Reads up to `len` bytes at `offset`, short at the cached end of file.
    ///
    /// # Errors
    /// An I/O error reading the backing file.
    pub fn read(&self, backing: &impl Backing, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if offset >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let end = self.size.min(offset.saturating_add(len as u64));
        let mut buf = vec![0u8; (end - offset) as usize];
        self.read_base(backing, offset, &mut buf)?;
        let first = offset / PAGE_U64;
        let last = (end - 1) / PAGE_U64;
        for (&index, page) in self.pages.range(first..=last) {
            let start = index * PAGE_U64;
            let from = (start + page.lo as u64).max(offset);
            let to = (start + page.hi as u64).min(end);
            if from < to {
                let src = &page.data[(from - start) as usize..(to - start) as usize];
                buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
            }
        }
        Ok(buf)
    }

    /// Caches `data` at `offset`, extending the file if it ends past the current size.
    ///
    /// # Errors
    /// An I/O error reading the backing file, when a write leaves a gap inside a cached page that
    /// must be filled from it.
    pub fn write(&mut self, backing: &impl Backing, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let mut index = offset / PAGE_U64;
        while index * PAGE_U64 < end {
            let start = index * PAGE_U64;
            let s = (offset.max(start) - start) as usize;
            let e = (end.min(start + PAGE_U64) - start) as usize;
            let src =
                &data[(start + s as u64 - offset) as usize..(start + e as u64 - offset) as usize];
            match self.pages.get_mut(&index) {
                None => {
                    let mut page = Page {
                        lo: s,
                        hi: e,
                        data: Box::new([0u8; PAGE]),
                    };
                    page.data[s..e].copy_from_slice(src);
                    self.pages.insert(index, page);
                    self.dirty_bytes += (e - s) as u64;
                }
                Some(page) => {
                    let before = (page.hi - page.lo) as u64;
                    // Keep one contiguous range per page: a disjoint write first fills the gap
                    // between it and the cached range with what readers would see there now.
                    if s > page.hi {
                        let (lo, hi) = (page.hi, s);
                        fill_base(backing, self.visible, start, lo, &mut page.data[lo..hi])?;
                    } else if e < page.lo {
                        let (lo, hi) = (e, page.lo);
                        fill_base(backing, self.visible, start, lo, &mut page.data[lo..hi])?;
                    }
                    page.data[s..e].copy_from_slice(src);
                    page.lo = page.lo.min(s);
                    page.hi = page.hi.max(e);
                    self.dirty_bytes += (page.hi - page.lo) as u64 - before;
                }
            }
            index += 1;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the size readers see; cut bytes are forgotten, and bytes past the old end read as zero.
    pub fn truncate(&mut self, len: u64) {
        if len < self.size {
            let keep = len.div_ceil(PAGE_U64);
            for page in self.pages.split_off(&keep).into_values() {
                self.dirty_bytes -= (page.hi - page.lo) as u64;
            }
            let index = len / PAGE_U64;
            let cut = (len - index * PAGE_U64) as usize;
            if cut > 0
                && let Some(page) = self.pages.get_mut(&index)
            {
                if page.hi > cut {
                    let new_hi = cut.max(page.lo);
                    self.dirty_bytes -= (page.hi - new_hi) as u64;
                    page.hi = new_hi;
                }
                if page.hi == page.lo {
                    self.pages.remove(&index);
                }
            }
            self.visible = self.visible.min(len);
        }
        self.size = len;
    }

    /// Writes everything dirty through to `backing`: first the pending truncation, then each
    /// contiguous dirty run with one write, then the final length. The caller syncs the backing
    /// file afterwards. On error the cache stays dirty (a retried flush writes it all again).
    ///
    /// # Errors
    /// An I/O error writing or truncating the backing file.
    pub fn flush(&mut self, backing: &impl Backing) -> io::Result<Flushed> {
        let mut flushed = Flushed::default();
        if self.visible < self.backing_len {
            backing.set_len(self.visible)?;
            self.backing_len = self.visible;
        }
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        for (&index, page) in &self.pages {
            let from = index * PAGE_U64 + page.lo as u64;
            if !run.is_empty() && run_start + run.len() as u64 != from {
                backing.write_all_at(&run, run_start)?;
                flushed.writes += 1;
                self.backing_len = self.backing_len.max(run_start + run.len() as u64);
                run.clear();
            }
            if run.is_empty() {
                run_start = from;
            }
            run.extend_from_slice(&page.data[page.lo..page.hi]);
        }
        if !run.is_empty() {
            backing.write_all_at(&run, run_start)?;
            flushed.writes += 1;
            self.backing_len = self.backing_len.max(run_start + run.len() as u64);
        }
        if self.backing_len != self.size {
            backing.set_len(self.size)?;
            self.backing_len = self.size;
        }
        flushed.bytes = self.dirty_bytes;
        self.pages.clear();
        self.dirty_bytes = 0;
        self.visible = self.size;
        Ok(flushed)
    }

    /// Forgets everything since the last flush; returns how many dirty bytes were dropped.
    pub fn discard(&mut self) -> u64 {
        let dropped = self.dirty_bytes;
        self.pages.clear();
        self.dirty_bytes = 0;
        self.size = self.backing_len;
        self.visible = self.backing_len;
        dropped
    }

    /// Fills `buf` with what readers see at `offset` when no page covers it: the visible backing
    /// prefix, then zeros.
    fn read_base(&self, backing: &impl Backing, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        fill_base(backing, self.visible, offset, 0, buf)
    }
}

/// Fills `buf`, which sits at `base + rel` in the file, from the backing file below `visible` and
/// with zeros above it.
fn fill_base(
    backing: &impl Backing,
    visible: u64,
    base: u64,
    rel: usize,
    buf: &mut [u8],
) -> io::Result<()> {
    let offset = base + rel as u64;
    let from_backing = visible.saturating_sub(offset).min(buf.len() as u64) as usize;
    let got = if from_backing > 0 {
        backing.read_at(&mut buf[..from_backing], offset)?
    } else {
        0
    };
    buf[got..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// An in-memory backing file that records every change made to it.
    #[derive(Default)]
    struct Mem {
        bytes: RefCell<Vec<u8>>,
        log: RefCell<Vec<String>>,
    }

    impl Mem {
        fn with(content: &[u8]) -> Self {
            Mem {
                bytes: RefCell::new(content.to_vec()),
                log: RefCell::default(),
            }
        }
        fn content(&self) -> Vec<u8> {
            self.bytes.borrow().clone()
        }
        fn log(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
    }

    impl Backing for Mem {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let bytes = self.bytes.borrow();
            let start = (offset as usize).min(bytes.len());
            let n = buf.len().min(bytes.len() - start);
            buf[..n].copy_from_slice(&bytes[start..start + n]);
            Ok(n)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.log
                .borrow_mut()
                .push(format!("write {offset} {}", buf.len()));
            let mut bytes = self.bytes.borrow_mut();
            let end = offset as usize + buf.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(buf);
            Ok(())
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.log.borrow_mut().push(format!("set_len {len}"));
            self.bytes.borrow_mut().resize(len as usize, 0);
            Ok(())
        }
    }

    fn all(cache: &FileCache, mem: &Mem) -> Vec<u8> {
        cache.read(mem, 0, usize::MAX / 2).unwrap()
    }

    #[test]
    fn reads_overlay_writes_on_backing_data() {
        let mem = Mem::with(b"0123456789");
        let mut cache = FileCache::new(10);
        cache.write(&mem, 3, b"abc").unwrap();
        assert_eq!(all(&cache, &mem), b"012abc6789");
        assert_eq!(cache.read(&mem, 2, 3).unwrap(), b"2ab");
        assert_eq!(cache.read(&mem, 8, 100).unwrap(), b"89");
        assert_eq!(cache.read(&mem, 10, 5).unwrap(), b"");
        assert_eq!(
            mem.content(),
            b"0123456789",
            "nothing reaches the backing file before flush"
        );
        assert_eq!(cache.dirty_bytes(), 3);
    }

    #[test]
    fn writes_spanning_pages_read_back_and_extend_the_size() {
        let mem = Mem::default();
        let mut cache = FileCache::new(0);
        let data: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8).collect();
        cache.write(&mem, 1000, &data).unwrap();
        assert_eq!(cache.size(), 1000 + data.len() as u64);
        let got = all(&cache, &mem);
        assert!(
            got[..1000].iter().all(|&b| b == 0),
            "the hole before the write reads as zeros"
        );
        assert_eq!(&got[1000..], &data[..]);
        assert_eq!(cache.dirty_bytes(), data.len() as u64);
        assert_eq!(cache.pages.len(), 4);
    }

    #[test]
    fn disjoint_writes_in_one_page_fill_the_gap_from_backing() {
        let mem = Mem::with(&[b'x'; 100]);
        let mut cache = FileCache::new(100);
        cache.write(&mem, 10, b"aa").unwrap();
        cache.write(&mem, 50, b"bb").unwrap();
        cache.write(&mem, 2, b"c").unwrap();
        let mut want = vec![b'x'; 100];
        want[10..12].copy_from_slice(b"aa");
        want[50..52].copy_from_slice(b"bb");
        want[2] = b'c';
        assert_eq!(all(&cache, &mem), want);
        cache.flush(&mem).unwrap();
        assert_eq!(mem.content(), want);
        assert_eq!(
            mem.log(),
            vec!["write 2 50"],
            "one contiguous range per page"
        );
    }

    #[test]
    fn truncate_then_extend_reads_zeros_not_old_data() {
        let mem = Mem::with(b"abcdefghij");
        let mut cache = FileCache::new(10);
        cache.truncate(4);
        assert_eq!(all(&cache, &mem), b"abcd");
        cache.truncate(8);
        assert_eq!(all(&cache, &mem), b"abcd\0\0\0\0");
        cache.write(&mem, 9, b"Z").unwrap();
        assert_eq!(all(&cache, &mem), b"abcd\0\0\0\0\0Z");
        assert_eq!(mem.content(), b"abcdefghij");
        cache.flush(&mem).unwrap();
        assert_eq!(mem.content(), b"abcd\0\0\0\0\0Z");
        assert!(!cache.is_dirty());
    }

    #[test]
    fn truncate_cuts_cached_pages() {
        let mem = Mem::default();
        let mut cache = FileCache::new(0);
        cache.write(&mem, 0, &[7u8; 3 * PAGE]).unwrap();
        cache.truncate(PAGE as u64 + 10);
        assert_eq!(cache.dirty_bytes(), PAGE as u64 + 10);
        assert_eq!(cache.pages.len(), 2);
        cache.truncate(3 * PAGE as u64);
        let got = all(&cache, &mem);
        assert!(got[..PAGE + 10].iter().all(|&b| b == 7));
        assert!(got[PAGE + 10..].iter().all(|&b| b == 0));
        cache.truncate(0);
        assert_eq!(cache.dirty_bytes(), 0);
        assert!(cache.pages.is_empty());
    }

    #[test]
    fn flush_writes_exactly_the_dirty_data() {
        let base: Vec<u8> = vec![b'.'; 4 * PAGE];
        let mem = Mem::with(&base);
        let mut cache = FileCache::new(base.len() as u64);
        // Two adjacent writes straddling a page boundary coalesce into one run.
        cache.write(&mem, PAGE as u64 - 2, b"ab").unwrap();
        cache.write(&mem, PAGE as u64, b"cd").unwrap();
        cache.write(&mem, 3 * PAGE as u64 + 5, b"zz").unwrap();
        let flushed = cache.flush(&mem).unwrap();
        assert_eq!(
            flushed,
            Flushed {
                bytes: 6,
                writes: 2
            }
        );
        assert_eq!(
            mem.log(),
            vec![
                format!("write {} 4", PAGE - 2),
                format!("write {} 2", 3 * PAGE + 5)
            ]
        );
        let mut want = base.clone();
        want[PAGE - 2..PAGE + 2].copy_from_slice(b"abcd");
        want[3 * PAGE + 5..3 * PAGE + 7].copy_from_slice(b"zz");
        assert_eq!(mem.content(), want);
        // A second flush has nothing to write.
        assert_eq!(cache.flush(&mem).unwrap(), Flushed::default());
        assert_eq!(mem.log().len(), 2);
    }

    #[test]
    fn flush_applies_truncation_before_writes_and_final_size_after() {
        let mem = Mem::with(b"0123456789");
        let mut cache = FileCache::new(10);
        cache.truncate(2);
        cache.write(&mem, 5, b"x").unwrap();
        cache.truncate(8);
        cache.flush(&mem).unwrap();
        assert_eq!(mem.log(), vec!["set_len 2", "write 5 1", "set_len 8"]);
        assert_eq!(mem.content(), b"01\0\0\0x\0\0");
    }

    #[test]
    fn discard_drops_unsynced_writes_and_truncations() {
        let mem = Mem::with(b"hello world");
        let mut cache = FileCache::new(11);
        cache.write(&mem, 0, b"HELLO").unwrap();
        cache.flush(&mem).unwrap();
        cache.write(&mem, 6, b"WORLD!!").unwrap();
        cache.truncate(3);
        cache.write(&mem, 20, b"tail").unwrap();
        assert!(cache.is_dirty());
        let dropped = cache.discard();
        assert_eq!(
            dropped, 4,
            "only bytes still cached count (the truncation cut the rest)"
        );
        assert!(!cache.is_dirty());
        assert_eq!(cache.size(), 11);
        assert_eq!(all(&cache, &mem), b"HELLO world");
        assert_eq!(mem.content(), b"HELLO world");
    }

    #[test]
    fn sizes_follow_writes_truncations_and_discards() {
        let mem = Mem::default();
        let mut cache = FileCache::new(0);
        assert!(!cache.is_dirty());
        cache.write(&mem, 100, b"x").unwrap();
        assert_eq!(cache.size(), 101);
        cache.write(&mem, 10, b"y").unwrap();
        assert_eq!(
            cache.size(),
            101,
            "a write inside the file does not change its size"
        );
        cache.truncate(5000);
        assert_eq!(cache.size(), 5000);
        assert!(cache.is_dirty());
        cache.discard();
        assert_eq!(cache.size(), 0);
        cache.truncate(7);
        assert!(cache.is_dirty(), "an extension alone is un-fsynced state");
        cache.flush(&mem).unwrap();
        assert_eq!(mem.content(), vec![0u8; 7]);
    }

    #[test]
    fn overwrite_counts_dirty_bytes_once() {
        let mem = Mem::default();
        let mut cache = FileCache::new(0);
        for _ in 0..10 {
            cache.write(&mem, 0, &[1u8; 100]).unwrap();
        }
        assert_eq!(cache.dirty_bytes(), 100);
    }

    /// Seeded random operations against a plain `Vec<u8>` model of the file.
    #[test]
    fn random_operations_match_a_flat_model() {
        let seed = 0x005e_edfa_u64;
        println!("seed {seed:#x}");
        let mut rng = seed;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mem = Mem::with(&[9u8; 3000]);
        let mut cache = FileCache::new(3000);
        let mut synced: Vec<u8> = vec![9u8; 3000];
        let mut model = synced.clone();
        for step in 0..3000 {
            match next(10) {
                0..=4 => {
                    let off = next(5 * PAGE as u64);
                    let len = 1 + next(2 * PAGE as u64) as usize;
                    let data: Vec<u8> = (0..len).map(|i| (step + i) as u8).collect();
                    cache.write(&mem, off, &data).unwrap();
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                5 | 6 => {
                    let len = next(6 * PAGE as u64) as usize;
                    cache.truncate(len as u64);
                    model.resize(len, 0);
                }
                7 => {
                    cache.flush(&mem).unwrap();
                    synced = model.clone();
                    assert_eq!(mem.content(), synced, "step {step}");
                }
                8 => {
                    cache.discard();
                    model = synced.clone();
                }
                _ => {
                    let off = next(6 * PAGE as u64);
                    let len = next(3 * PAGE as u64) as usize;
                    let want: Vec<u8> =
                        model.iter().skip(off as usize).take(len).copied().collect();
                    assert_eq!(cache.read(&mem, off, len).unwrap(), want, "step {step}");
                }
            }
            assert_eq!(cache.size(), model.len() as u64, "step {step}");
        }
        assert_eq!(all(&cache, &mem), model);
    }
}
