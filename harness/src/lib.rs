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
//! - [`generator`]: seeded operations (independent keys rotated after a budget) and pacing.
//! - [`client`]: one process's connection to one node; every answer becomes ok, fail or info.
//! - [`store`]: the run folder, `run.json`, and the history writer (flushed line by line).
//! - [`workload`]: named workloads (`workloads/*.toml`) and their validation.
//! - [`db`]: systems under test (Jepsen's DB): raftkv and etcd containers, readiness, the leader.
//! - [`galera`]: MariaDB Galera Cluster as a system under test: node flags, the `[galera]`
//!   table, readiness by wsrep state, n1 as the nominal leader.
//! - [`watch`]: the etcd watch workload: writers with revisions, watchers on every member that
//!   ask for progress and resume broken streams; every response recorded.
//! - [`lease`]: the etcd lease workload: leases granted, kept alive through followers, their
//!   keys read back.
//! - [`queue`]: the NATS queue workload: writers publishing unique values, a drain by every
//!   client after the heal; and the NATS streams a run needs, made before its clients start.
//! - [`txn`]: the transactional workloads: Elle's list-append and rw-register transactions over
//!   a rotating key pool, and Jepsen's bank.
//! - [`runner`]: one run end to end: cluster, clients, nemesis, heal, final reads, teardown, check.
//! - [`check_cmd`]: `faultline check`.
//! - [`matrix`]: `faultline matrix`: the workloads with a `[matrix]` table (bugs to detect and
//!   controls), each over several seeds.
//! - [`bench`]: `faultline bench`: the `perf` workload, raftkv against etcd.
//! - [`nemesis`]: faults (partition, kill, pause, clock, loss, delay), their seeded schedule,
//!   applying and healing them; outcomes (`installed`, `skipped`, `indeterminate`) are data.
//! - [`pki`]: a throwaway PKI per run (`tls = true`): a CA, node and client certificates
//!   (ECDSA P-256), mounted into the nodes read-only.
//! - [`report`]: `faultline report`: a run's metrics, `report.html` and `results/index.html`.
//! - [`sign`]: signed results: `manifest.json` (sha256 of run.json, history.jsonl,
//!   results.json) signed with ECDSA P-256 by a key outside `results/`; `faultline verify`.
//! - [`serve`]: `faultline serve`: the results folder over HTTP, read-only.
//! - [`compare`]: `faultline compare`: runs side by side, with a noise decision per metric.
//! - [`workspace`]: finding the project folder (workloads, results, the node's sources).

pub mod bench;
pub mod check_cmd;
pub mod cli;
pub mod client;
pub mod compare;
pub mod control;
pub mod db;
pub mod galera;
pub mod generator;
pub mod lease;
pub mod matrix;
pub mod nemesis;
pub mod pki;
pub mod queue;
pub mod report;
pub mod runner;
pub mod serve;
pub mod sign;
pub mod store;
pub mod target;
pub mod txn;
pub mod watch;
pub mod workload;
pub mod workspace;
