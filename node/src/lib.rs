//! raftkv: a Raft-replicated key-value store in the spirit of etcd, the system under test that
//! ships with Faultline.
//!
//! # Layout
//! - [`raft`]: the sans-IO Raft core (no sockets, files, threads or clocks inside).
//! - [`storage`]: the write-ahead log (checksummed frames, group-commit fsync, torn-tail recovery),
//!   hard state and snapshot files.
//! - [`transport`]: the peer transport (persistent TCP per peer, bounded queues, batched frames).
//! - [`tls`]: mutual TLS for peers and clients (`--tls-dir`), a node id bound to its certificate.
//! - [`server`]: the I/O shell: the Raft loop, the HTTP client API (see `node/API.md`), the
//!   key-value state machine, and [`server::run`], which `main` calls.

pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;
pub mod transport;
