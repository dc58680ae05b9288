//! Faultline: a Jepsen-style fault-injection harness for replicated databases.
//!
//! It boots real node binaries in Docker containers, drives client workloads while injecting
//! faults through container networking, records every operation in a history, and checks it with
//! [`faultline_checker`]. The modules follow Jepsen's vocabulary.
//!
//! # Layout
//! - [`control`]: Docker: images built locally (no registry), a network and containers per run,
//!   exec, teardown and `clean`.
//! - [`cli`]: the `faultline` command line (clap), one function per subcommand.
//! - [`nemesis`]: faults (partition, kill, pause, clock, loss, delay), their seeded schedule,
//!   applying and healing them; outcomes (`installed`, `skipped`, `indeterminate`) are data.
//! - [`workspace`]: finding the project folder (workloads, results, the node's sources).

pub mod cli;
pub mod control;
pub mod nemesis;
pub mod workspace;
