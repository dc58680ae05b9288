//! raftkv's integration tests: real `raftkv` processes on loopback addresses (no Docker).
//! One test binary with a module per area keeps link time down.

mod api;
mod bugs;
mod cli;
mod cluster;
mod failover;
mod failpoints;
mod membership;
mod snapshots;
mod tls;
mod wal;
