//! raftkv: a Raft-replicated key-value store in the spirit of etcd, the system under test that
//! ships with Faultline.
//!
//! # Layout
//! - [`raft`]: the sans-IO Raft core (no sockets, files, threads or clocks inside).
//! - [`storage`]: the write-ahead log (checksummed frames, group-commit fsync, torn-tail recovery),
//!   hard state and snapshot files.

pub mod raft;
pub mod storage;
pub mod transport;
