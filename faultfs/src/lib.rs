//! faultfs: a FUSE filesystem that loses what was not fsynced, on command.
//!
//! A `docker kill` never loses data a node wrote but did not fsync: the page cache lives in the
//! host kernel. faultfs is mounted over a node's data directory and keeps written data in its own
//! per-file cache until the file is fsynced, so a simulated power failure (`drop` on the control
//! socket) can discard it; it can also stall fsync, so the node's disk looks stuck while the rest
//! of the process runs. The semantics follow LazyFS (what Jepsen and etcd's robustness tests use):
//! file data, truncations and sizes are cached; directory operations go straight through.
//!
//! It runs inside the node's container as the entrypoint (`faultfs run ... -- NODE ARGS`), so the
//! mount lives exactly as long as the node, and the harness reaches it only through its control
//! socket (`docker exec NODE faultfs ctl drop`). It shares no code with the harness.
//!
//! # Layout
//! - `cache`: the per-file page cache over a backing file: overlay reads, cached truncation,
//!   write-through on fsync, discard on drop. Pure logic over a `Backing` trait.
//! - `inode`: the inode table: node ids to backing inodes held as `O_PATH` descriptors.
//! - `fs`: the `fuser::Filesystem`: data through the cache, directory operations through to the
//!   backing directory; `drop`, `sync_all` and the counters behind `status`.
//! - `faults`: the fsync stall gate (parked replies, released by one worker) and counters.
//! - `control`: the control socket's line protocol, server and client (`ctl`).
//! - `mount`: prerequisites, mounting, the control socket's lifetime, orderly unmount.
//! - `supervise`: the `mount` and `run` foreground modes: signals, the child, exit codes.
//! - `sys`: thin safe wrappers over the `*at` system calls.
//! - `error`: faultfs's own errors.
//! - `corrupt` and `glob`: the `corrupt` subcommand, which needs no mount: seeded bit flips or a
//!   truncated tail in plain files of a stopped node's data directory, chosen by path patterns.

#![deny(missing_docs)]

mod cache;
mod control;
mod corrupt;
mod error;
mod faults;
mod fs;
mod glob;
mod inode;
mod mount;
mod supervise;
mod sys;

pub use cache::{Backing, FileCache, Flushed, PAGE};
pub use control::{Command, CtlError, send};
pub use corrupt::{CorruptError, Damage, FileDamage, Found, Report, apply, corrupt, find, plan};
pub use error::Error;
pub use glob::{Pattern, PatternError};
pub use mount::{Mounted, Options, mount};
pub use supervise::{run, serve};
