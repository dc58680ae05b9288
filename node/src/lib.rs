//! raftkv: a Raft-replicated key-value store in the spirit of etcd, the system under test that
//! ships with Faultline.
//!
//! # Layout
//! - [`raft`]: the sans-IO Raft core (no sockets, files, threads or clocks inside).

pub mod raft;
