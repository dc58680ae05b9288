//! The FUSE filesystem: file data goes through the per-file cache, everything else through to the
//! backing directory.
//!
//! - Cached (lost by `drop` unless fsynced): file contents written with `write`, truncations and
//!   extensions (`setattr` size, `fallocate` mode 0), and the sizes and mtimes `getattr` reports.
//! - Passed straight through (never lost): create, mknod, mkdir, unlink, rmdir, rename, symlink,
//!   link, chmod, chown, utimes, readdir, fsyncdir. As with LazyFS, an un-fsynced rename or create
//!   survives a drop. Unlinking a file's last link discards its cache.
//! - Not offered: xattrs (`ENOSYS`, so callers see `EOPNOTSUPP`), `fallocate` modes other than 0
//!   and `KEEP_SIZE` (`EOPNOTSUPP`), and locks: fuser does not advertise lock support, so `flock`
//!   and POSIX locks are handled by the kernel locally, which is what a single node needs.
//!
//! Kernel caching: no writeback cache and no `KEEP_CACHE`, so every `write` reaches the cache here
//! at once and every drop can be made visible. By default files are opened without `direct_io` so
//! that shared mmap works (bbolt maps its file `MAP_SHARED`); a drop therefore invalidates each
//! affected inode's kernel pages and attributes with a notification. `--direct-io` opens files
//! with `FOPEN_DIRECT_IO` instead (and asks for `FUSE_DIRECT_IO_ALLOW_MMAP`).
//!
//! fsync never blocks a request thread while stalled: the reply is parked in [`Faults`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::DirEntryExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::faults::Faults;
use crate::inode::{FileData, Inode, Inodes, file_type, lock};
use crate::sys;

/// How long the kernel may cache attributes and names. Safe because nothing else changes the
/// backing directory, and a drop invalidates the inodes it touches.
const TTL: Duration = Duration::from_secs(1);
const GENERATION: Generation = Generation(0);

/// What one `drop` discarded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Dirty bytes discarded.
    pub bytes: u64,
    /// Files whose un-fsynced state (data, truncation or extension) was discarded.
    pub files: u64,
}

/// Un-fsynced state right now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dirty {
    /// Dirty bytes held in caches.
    pub bytes: u64,
    /// Files with any un-fsynced state.
    pub files: u64,
}

struct OpenFile {
    /// The file's `errseq` this handle has seen (see [`FileData::errseq`]).
    errseq: AtomicU64,
}

struct OpenDir {
    file: File,
    entries: Vec<(OsString, u64, FileType)>,
}

/// State shared by the FUSE request threads, the stall worker and the control socket.
pub struct Shared {
    inodes: Inodes,
    /// Stall gate and counters.
    pub faults: Faults,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirs: Mutex<HashMap<u64, Arc<OpenDir>>>,
    next_fh: AtomicU64,
    notifier: OnceLock<Notifier>,
    direct_io: bool,
    root_user: bool,
}

impl Shared {
    /// Opens the backing directory.
    ///
    /// # Errors
    /// The backing directory cannot be opened or is not a directory.
    pub fn new(backing: &Path, direct_io: bool) -> io::Result<Self> {
        Ok(Shared {
            inodes: Inodes::new(sys::open_path(backing)?)?,
            faults: Faults::default(),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            notifier: OnceLock::new(),
            direct_io,
            root_user: sys::geteuid() == 0,
        })
    }

    /// Hands over the session's notifier, used to invalidate kernel caches on a drop.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Discards everything not yet fsynced, in every file, and makes the kernel forget what it
    /// cached of those files.
    pub fn drop_unsynced(&self) -> Dropped {
        let mut dropped = Dropped::default();
        let mut touched = Vec::new();
        for inode in self.inodes.all() {
            let mut guard = inode.data_if_loaded();
            if let Some(d) = guard.as_mut()
                && d.cache.is_dirty()
            {
                dropped.bytes += d.cache.discard();
                dropped.files += 1;
                d.errseq += 1;
                d.mtime = None;
                touched.push(inode.ino);
            }
        }
        if let Some(notifier) = self.notifier.get() {
            for ino in touched {
                // ENOENT means the kernel holds nothing of this inode: nothing to invalidate.
                let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
            }
        }
        self.inodes.collect_garbage();
        let c = &self.faults.counters;
        c.drops.fetch_add(1, Ordering::Relaxed);
        c.dropped_bytes.fetch_add(dropped.bytes, Ordering::Relaxed);
        c.dropped_files.fetch_add(dropped.files, Ordering::Relaxed);
        dropped
    }

    /// Writes everything un-fsynced through and syncs it, as an orderly unmount does.
    ///
    /// # Errors
    /// The first I/O error; the other files are still attempted.
    pub fn sync_all(&self) -> io::Result<Dirty> {
        let mut synced = Dirty::default();
        let mut first_error = None;
        for inode in self.inodes.all() {
            let mut guard = inode.data_if_loaded();
            let Some(d) = guard.as_mut() else { continue };
            if !d.cache.is_dirty() {
                continue;
            }
            let result = d
                .cache
                .flush(&*d.file)
                .and_then(|f| d.file.sync_data().map(|()| f));
            match result {
                Ok(f) => {
                    synced.bytes += f.bytes;
                    synced.files += 1;
                    d.mtime = None;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(synced), Err)
    }

    /// Un-fsynced state right now.
    pub fn dirty(&self) -> Dirty {
        let mut dirty = Dirty::default();
        for inode in self.inodes.all() {
            if let Some(d) = inode.data_if_loaded().as_ref()
                && d.cache.is_dirty()
            {
                dirty.bytes += d.cache.dirty_bytes();
                dirty.files += 1;
            }
        }
        dirty
    }

    /// Writes one file's cache through and syncs the backing file. Counted in `fsyncs`.
    fn fsync_file(&self, ino: u64, fh: u64, datasync: bool) -> Result<(), Errno> {
        let result = self.fsync_file_inner(ino, fh, datasync);
        self.faults.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn fsync_file_inner(&self, ino: u64, fh: u64, datasync: bool) -> Result<(), Errno> {
        let inode = self.inodes.get(ino)?;
        let handle = lock(&self.files).get(&fh).cloned();
        let (file, lost) = {
            let mut guard = inode.data_if_loaded();
            let Some(d) = guard.as_mut() else {
                return Ok(());
            };
            // Like Linux after a failed writeback: write back what is dirty now, then report the
            // earlier loss once to each descriptor that was open when it happened.
            let lost =
                handle.is_some_and(|h| h.errseq.swap(d.errseq, Ordering::Relaxed) != d.errseq);
            if d.cache.is_dirty() {
                d.cache.flush(&*d.file)?;
                d.mtime = None;
            }
            (d.file.clone(), lost)
        };
        // Outside the lock: the data is in the backing file already, so readers and writers of
        // this file need not wait for the disk.
        sys::sync_fd(file.as_fd(), datasync)?;
        if lost { Err(Errno::EIO) } else { Ok(()) }
    }

    fn fsync_dir(&self, fh: u64, datasync: bool) -> Result<(), Errno> {
        let dir = lock(&self.dirs).get(&fh).cloned();
        let result = match dir {
            Some(dir) => sys::sync_fd(dir.file.as_fd(), datasync).map_err(Errno::from),
            None => Err(Errno::EBADF),
        };
        self.faults.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn attr_of(&self, inode: &Inode, st: &libc::stat) -> FileAttr {
        let mut attr = stat_to_attr(inode.ino, st);
        if inode.kind == FileType::RegularFile
            && let Some(d) = inode.data_if_loaded().as_ref()
        {
            overlay_attr(&mut attr, d);
        }
        attr
    }

    fn getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let inode = self.inodes.get(ino)?;
        let st = sys::fstat(inode.path_fd.as_fd())?;
        Ok(self.attr_of(&inode, &st))
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let parent = self.inodes.get(parent)?;
        let fd = sys::openat(
            parent.path_fd.as_fd(),
            name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )?;
        let st = sys::fstat(fd.as_fd())?;
        let inode = self.inodes.remember(fd, &st, None);
        Ok(self.attr_of(&inode, &st))
    }

    /// Gives a node created by a request its requested mode (the kernel already applied the
    /// caller's umask; ours must not apply again) and, when we are root, the caller's ownership.
    fn adopt_new(&self, req: &Request, fd: impl AsFd, mode: u32, parent: &Inode) -> io::Result<()> {
        let st = sys::fstat(fd.as_fd())?;
        let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
        let inherited = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            st.st_mode & libc::S_ISGID
        } else {
            0
        };
        let want = (mode & 0o7777) | inherited;
        if !is_link && st.st_mode & 0o7777 != want {
            sys::chmod_fd(fd.as_fd(), want)?;
        }
        if self.root_user && (req.uid() != st.st_uid || req.gid() != st.st_gid) {
            let parent_st = sys::fstat(parent.path_fd.as_fd())?;
            let gid = if parent_st.st_mode & libc::S_ISGID != 0 {
                None
            } else {
                Some(req.gid())
            };
            sys::chown_fd(fd.as_fd(), Some(req.uid()), gid)?;
        }
        Ok(())
    }

    /// Looks up a node just created by name in `parent` and records the kernel's lookup of it.
    fn enter_new(
        &self,
        req: &Request,
        parent: &Inode,
        name: &OsStr,
        mode: Option<u32>,
    ) -> Result<FileAttr, Errno> {
        let fd = sys::openat(
            parent.path_fd.as_fd(),
            name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )?;
        // Symlinks (mode None) have no mode of their own; only their ownership is adopted.
        self.adopt_new(req, &fd, mode.unwrap_or(0), parent)?;
        let st = sys::fstat(fd.as_fd())?;
        let inode = self.inodes.remember(fd, &st, None);
        Ok(self.attr_of(&inode, &st))
    }

    fn create(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let parent = self.inodes.get(parent)?;
        let dir = parent.path_fd.as_fd();
        let excl = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NOFOLLOW;
        let (fd, created) = match sys::openat(dir, name, excl, mode & 0o7777) {
            Ok(fd) => (fd, true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && flags & libc::O_EXCL == 0 => (
                sys::openat(dir, name, libc::O_RDWR | libc::O_NOFOLLOW, 0)?,
                false,
            ),
            Err(e) => return Err(e.into()),
        };
        let file = File::from(fd);
        if created {
            self.adopt_new(req, &file, mode, &parent)?;
        }
        let path_fd = sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let st = sys::fstat(path_fd.as_fd())?;
        let inode = self
            .inodes
            .remember(path_fd, &st, Some(FileData::new(file, true)?));
        let errseq = inode.data()?.errseq;
        let fh = self.open_handle(errseq);
        Ok((self.attr_of(&inode, &st), fh))
    }

    fn open_handle(&self, errseq: u64) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(
            fh,
            Arc::new(OpenFile {
                errseq: AtomicU64::new(errseq),
            }),
        );
        fh
    }

    fn open(&self, ino: u64, flags: i32) -> Result<u64, Errno> {
        let inode = self.inodes.get(ino)?;
        let d = inode.data()?;
        if flags & libc::O_ACCMODE != libc::O_RDONLY && !d.writable {
            return Err(Errno::EACCES);
        }
        Ok(self.open_handle(d.errseq))
    }

    fn fopen_flags(&self) -> FopenFlags {
        if self.direct_io {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        }
    }

    fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let inode = self.inodes.get(ino)?;
        let d = inode.data()?;
        Ok(d.cache.read(&*d.file, offset, size as usize)?)
    }

    fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let inode = self.inodes.get(ino)?;
        let mut guard = inode.data()?;
        let d = &mut *guard;
        d.cache.write(&*d.file, offset, data)?;
        d.mtime = Some(SystemTime::now());
        Ok(data.len() as u32)
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr, Errno> {
        let inode = self.inodes.get(ino)?;
        let fd = inode.path_fd.as_fd();
        if let Some(mode) = mode
            && inode.kind != FileType::Symlink
        {
            sys::chmod_fd(fd, mode & 0o7777)?;
        }
        if uid.is_some() || gid.is_some() {
            sys::chown_fd(fd, uid, gid)?;
        }
        if let Some(size) = size {
            let mut d = inode.data()?;
            d.cache.truncate(size);
            d.mtime = Some(SystemTime::now());
        }
        if atime.is_some() || mtime.is_some() {
            sys::utimens_fd(fd, atime.map(to_timespec), mtime.map(to_timespec))?;
            if mtime.is_some()
                && let Some(d) = inode.data_if_loaded().as_mut()
            {
                d.mtime = None;
            }
        }
        let st = sys::fstat(fd)?;
        Ok(self.attr_of(&inode, &st))
    }

    fn fallocate(&self, ino: u64, offset: u64, length: u64, mode: i32) -> Result<(), Errno> {
        let inode = self.inodes.get(ino)?;
        match mode {
            0 => {
                let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
                let mut d = inode.data()?;
                if end > d.cache.size() {
                    d.cache.truncate(end);
                    d.mtime = Some(SystemTime::now());
                }
                Ok(())
            }
            // Reserving blocks without changing the size changes nothing a reader can see.
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// After `name` stopped naming the inode `st` (unlink, rename over it): if that was its last
    /// link, its un-fsynced data can never reach the disk, so drop it.
    fn after_unlink(&self, st: &libc::stat) {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return;
        }
        let Some(inode) = self.inodes.find(st) else {
            return;
        };
        if sys::fstat(inode.path_fd.as_fd()).is_ok_and(|now| now.st_nlink == 0) {
            if let Some(d) = inode.data_if_loaded().as_mut() {
                d.cache.discard();
                d.mtime = None;
            }
            self.inodes.collect_garbage();
        }
    }

    fn opendir(&self, ino: u64) -> Result<u64, Errno> {
        let inode = self.inodes.get(ino)?;
        let fd = sys::openat(
            inode.path_fd.as_fd(),
            OsStr::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        let file = File::from(fd);
        let mut entries = vec![
            (OsString::from("."), ino, FileType::Directory),
            (OsString::from(".."), ino, FileType::Directory),
        ];
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let kind = entry
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            entries.push((entry.file_name(), self.inodes.node_id(entry.ino()), kind));
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, Arc::new(OpenDir { file, entries }));
        Ok(fh)
    }

    fn statfs(&self) -> Result<libc::statvfs, Errno> {
        // By descriptor, not by path: the mount may sit on top of the backing directory itself.
        let root = self.inodes.get(INodeNo::ROOT.0)?;
        Ok(sys::fstatvfs(root.path_fd.as_fd())?)
    }
}

/// The FUSE face of [`Shared`].
pub struct FaultFs(pub Arc<Shared>);

impl Filesystem for FaultFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if self.0.direct_io
            && config
                .capabilities()
                .contains(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
        {
            let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.0.lookup(parent.0, name) {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.0.setattr(ino.0, mode, uid, gid, size, atime, mtime) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let result = self
            .0
            .inodes
            .get(ino.0)
            .and_then(|i| Ok(sys::readlink_fd(i.path_fd.as_fd())?));
        match result {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let result = self.0.inodes.get(parent.0).and_then(|p| {
            sys::mknodat(p.path_fd.as_fd(), name, mode, rdev)?;
            self.0.enter_new(req, &p, name, Some(mode))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.0.inodes.get(parent.0).and_then(|p| {
            sys::mkdirat(p.path_fd.as_fd(), name, mode & 0o7777)?;
            self.0.enter_new(req, &p, name, Some(mode))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.0.inodes.get(parent.0).and_then(|p| {
            let st = sys::lstatat(p.path_fd.as_fd(), name).ok();
            sys::unlinkat(p.path_fd.as_fd(), name, 0)?;
            if let Some(st) = st {
                self.0.after_unlink(&st);
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self
            .0
            .inodes
            .get(parent.0)
            .and_then(|p| Ok(sys::unlinkat(p.path_fd.as_fd(), name, libc::AT_REMOVEDIR)?));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.0.inodes.get(parent.0).and_then(|p| {
            sys::symlinkat(target, p.path_fd.as_fd(), link_name)?;
            self.0.enter_new(req, &p, link_name, None)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let p = self.0.inodes.get(parent.0)?;
            let np = self.0.inodes.get(newparent.0)?;
            let replaced = sys::lstatat(np.path_fd.as_fd(), newname).ok();
            let flags = flags.bits();
            sys::renameat2(p.path_fd.as_fd(), name, np.path_fd.as_fd(), newname, flags)?;
            if flags & libc::RENAME_EXCHANGE == 0
                && let Some(st) = replaced
            {
                self.0.after_unlink(&st);
            }
            Ok::<(), Errno>(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            let inode = self.0.inodes.get(ino.0)?;
            let np = self.0.inodes.get(newparent.0)?;
            sys::link_fd(inode.path_fd.as_fd(), np.path_fd.as_fd(), newname)?;
            self.0.inodes.add_lookup(ino.0);
            let st = sys::fstat(inode.path_fd.as_fd())?;
            Ok::<FileAttr, Errno>(self.0.attr_of(&inode, &st))
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.0.open(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), self.0.fopen_flags()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.0.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() persists nothing.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.0.files).remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let shared = self.0.clone();
        let op = Box::new(move || match shared.fsync_file(ino.0, fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
        if let Some(op) = self.0.faults.gate(op) {
            op();
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(dir) = lock(&self.0.dirs).get(&fh.0).cloned() else {
            reply.error(Errno::EBADF);
            return;
        };
        for (i, (name, ino, kind)) in dir.entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.0.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let shared = self.0.clone();
        let op = Box::new(move || match shared.fsync_dir(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
        if let Some(op) = self.0.faults.gate(op) {
            op();
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.0.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.0.create(req, parent.0, name, mode, flags) {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                GENERATION,
                FileHandle(fh),
                self.0.fopen_flags(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.0.fallocate(ino.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

fn stat_to_attr(ino: u64, st: &libc::stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: system_time(st.st_atime, st.st_atime_nsec),
        mtime: system_time(st.st_mtime, st.st_mtime_nsec),
        ctime: system_time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// Reports the cached size and mtime over the backing file's.
fn overlay_attr(attr: &mut FileAttr, d: &FileData) {
    attr.size = d.cache.size();
    if let Some(mtime) = d.mtime {
        attr.mtime = mtime;
        attr.ctime = mtime;
    }
    if d.cache.is_dirty() {
        attr.blocks = attr.blocks.max(attr.size.div_ceil(512));
    }
}

fn system_time(sec: i64, nsec: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64);
    if sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(sec as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + nanos
    }
}

fn to_timespec(t: TimeOrNow) -> Option<libc::timespec> {
    match t {
        TimeOrNow::Now => None,
        TimeOrNow::SpecificTime(t) => {
            let (sec, nsec) = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                Err(e) => {
                    let d = e.duration();
                    let mut sec = -(d.as_secs() as i64);
                    let mut nsec = -(d.subsec_nanos() as i64);
                    if nsec < 0 {
                        sec -= 1;
                        nsec += 1_000_000_000;
                    }
                    (sec, nsec)
                }
            };
            Some(libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            })
        }
    }
}
