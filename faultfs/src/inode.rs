//! The inode table: FUSE node ids to backing inodes, each held open as an `O_PATH` descriptor.
//!
//! Node ids are the backing files' own inode numbers (so `stat` and `readdir` show the real ones),
//! except that the backing root and backing inode 1 swap places, because FUSE reserves id 1 for
//! the root. Holding the `O_PATH` descriptor pins the backing inode, so its number cannot be reused
//! by a new file while the kernel may still refer to it.
//!
//! An entry lives while the kernel holds lookups on it or while its file has un-fsynced data (the
//! kernel may forget an inode whose dirty data must survive until `drop` or the next open).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use fuser::{Errno, FileType};

use crate::cache::FileCache;
use crate::sys;

/// A regular file's open backing descriptor and its cache.
pub struct FileData {
    /// The backing file, opened read-write when possible.
    pub file: Arc<File>,
    /// Whether `file` was opened for writing.
    pub writable: bool,
    /// Un-fsynced state.
    pub cache: FileCache,
    /// Modification time of the last cached change, reported until it is flushed or dropped.
    pub mtime: Option<SystemTime>,
    /// Bumped when un-fsynced data of this file is dropped; handles opened before see one `EIO`
    /// from their next fsync, as Linux reports a lost writeback (`errseq`).
    pub errseq: u64,
}

impl FileData {
    /// Wraps an open backing file.
    ///
    /// # Errors
    /// `fstat` of the file failed.
    pub fn new(file: File, writable: bool) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileData {
            file: Arc::new(file),
            writable,
            cache: FileCache::new(len),
            mtime: None,
            errseq: 0,
        })
    }
}

/// One backing inode.
pub struct Inode {
    /// FUSE node id.
    pub ino: u64,
    /// File type, fixed for the inode's life.
    pub kind: FileType,
    /// `O_PATH` descriptor of the backing inode.
    pub path_fd: OwnedFd,
    data: Mutex<Option<FileData>>,
}

impl Inode {
    /// Locks the file's data, opening the backing file on first use.
    ///
    /// # Errors
    /// `EISDIR`/`EINVAL` for non-files; the error of opening the backing file.
    pub fn data(&self) -> Result<DataGuard<'_>, Errno> {
        let mut guard = lock(&self.data);
        if guard.is_none() {
            match self.kind {
                FileType::RegularFile => {}
                FileType::Directory => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            let (fd, writable) = match sys::reopen(self.path_fd.as_fd(), libc::O_RDWR) {
                Ok(fd) => (fd, true),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EACCES | libc::EPERM | libc::EROFS)
                    ) =>
                {
                    (sys::reopen(self.path_fd.as_fd(), libc::O_RDONLY)?, false)
                }
                Err(e) => return Err(e.into()),
            };
            *guard = Some(FileData::new(File::from(fd), writable)?);
        }
        Ok(DataGuard(guard))
    }

    /// Locks the file's data if it was ever opened (`None` inside means "clean, never opened").
    pub fn data_if_loaded(&self) -> MutexGuard<'_, Option<FileData>> {
        lock(&self.data)
    }

    /// Whether the inode may be forgotten: its data is clean or was never opened (a locked data
    /// mutex counts as busy, so this never blocks).
    fn is_clean(&self) -> bool {
        match self.data.try_lock() {
            Ok(d) => d.as_ref().is_none_or(|d| !d.cache.is_dirty()),
            Err(_) => false,
        }
    }
}

/// A locked, loaded [`FileData`].
pub struct DataGuard<'a>(MutexGuard<'a, Option<FileData>>);

impl std::ops::Deref for DataGuard<'_> {
    type Target = FileData;
    fn deref(&self) -> &FileData {
        self.0.as_ref().expect("loaded by Inode::data")
    }
}

impl std::ops::DerefMut for DataGuard<'_> {
    fn deref_mut(&mut self) -> &mut FileData {
        self.0.as_mut().expect("loaded by Inode::data")
    }
}

/// Locks a mutex, ignoring poisoning: a panicking request must not wedge the filesystem.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Entry {
    inode: Arc<Inode>,
    nlookup: u64,
}

/// All inodes the kernel knows about (plus forgotten ones with dirty data).
pub struct Inodes {
    root_dev: u64,
    root_ino: u64,
    map: RwLock<HashMap<u64, Entry>>,
    foreign: Mutex<HashMap<(u64, u64), u64>>,
    next_foreign: AtomicU64,
}

impl Inodes {
    /// A table holding the backing root as node 1.
    ///
    /// # Errors
    /// The backing root cannot be opened or is not a directory.
    pub fn new(root: OwnedFd) -> io::Result<Self> {
        let st = sys::fstat(root.as_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        let inode = Arc::new(Inode {
            ino: fuser::INodeNo::ROOT.0,
            kind: FileType::Directory,
            path_fd: root,
            data: Mutex::new(None),
        });
        let mut map = HashMap::new();
        map.insert(
            inode.ino,
            Entry {
                inode,
                nlookup: u64::MAX / 2,
            },
        );
        Ok(Inodes {
            root_dev: st.st_dev,
            root_ino: st.st_ino,
            map: RwLock::new(map),
            foreign: Mutex::new(HashMap::new()),
            next_foreign: AtomicU64::new(1 << 62),
        })
    }

    /// The node id for a backing inode on the root's device, as `readdir` reports it.
    pub fn node_id(&self, backing_ino: u64) -> u64 {
        if backing_ino == self.root_ino {
            fuser::INodeNo::ROOT.0
        } else if backing_ino == fuser::INodeNo::ROOT.0 {
            self.root_ino
        } else {
            backing_ino
        }
    }

    /// The node id for a backing `(dev, ino)`; inodes of other devices (mounts inside the backing
    /// directory) get ids from a separate range.
    pub fn node_id_of(&self, st: &libc::stat) -> u64 {
        if st.st_dev == self.root_dev {
            return self.node_id(st.st_ino);
        }
        *lock(&self.foreign)
            .entry((st.st_dev, st.st_ino))
            .or_insert_with(|| self.next_foreign.fetch_add(1, Ordering::Relaxed))
    }

    /// The inode for a node id.
    ///
    /// # Errors
    /// `ENOENT` for an unknown id (a stale handle).
    pub fn get(&self, ino: u64) -> Result<Arc<Inode>, Errno> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&ino).map(|e| e.inode.clone()).ok_or(Errno::ENOENT)
    }

    /// The inode behind a backing `stat`, if it is in the table.
    pub fn find(&self, st: &libc::stat) -> Option<Arc<Inode>> {
        self.get(self.node_id_of(st)).ok()
    }

    /// Records one kernel lookup of the inode at `path_fd` (with `st` its stat), adding it to the
    /// table if new. `data` seeds a new entry's file data (a just-created file's open descriptor);
    /// an existing entry keeps its own.
    pub fn remember(
        &self,
        path_fd: OwnedFd,
        st: &libc::stat,
        data: Option<FileData>,
    ) -> Arc<Inode> {
        let ino = self.node_id_of(st);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&ino) {
            entry.nlookup += 1;
            return entry.inode.clone();
        }
        let inode = Arc::new(Inode {
            ino,
            kind: file_type(st.st_mode),
            path_fd,
            data: Mutex::new(data),
        });
        map.insert(
            ino,
            Entry {
                inode: inode.clone(),
                nlookup: 1,
            },
        );
        inode
    }

    /// Records one more kernel lookup of an inode already in the table (a hard link's reply).
    pub fn add_lookup(&self, ino: u64) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&ino) {
            entry.nlookup += 1;
        }
    }

    /// The kernel dropped `n` lookups; forgets the inode when none remain and its data is clean.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&ino) {
            entry.nlookup = entry.nlookup.saturating_sub(n);
            if entry.nlookup == 0 && entry.inode.is_clean() {
                map.remove(&ino);
            }
        }
    }

    /// Every inode in the table.
    pub fn all(&self) -> Vec<Arc<Inode>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values().map(|e| e.inode.clone()).collect()
    }

    /// Forgets inodes the kernel no longer holds whose data has become clean.
    pub fn collect_garbage(&self) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.nlookup > 0 || !e.inode.is_clean());
    }
}

/// The FUSE file type of a `st_mode`.
pub fn file_type(mode: libc::mode_t) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}
