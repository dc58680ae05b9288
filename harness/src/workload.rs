//! Named workloads: one TOML file each in `workloads/`, plus the command line's overrides.
//!
//! A bad file gets an error that names the file, the line and the field, and what is allowed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::generator::{GeneratorConfig, Mix, Shape};
use crate::nemesis::{NemesisSpec, Script};
use crate::txn::{BankSpec, TxnSpec};

/// Which kind of system the workload runs against: the client protocol of its target file
/// (`targets/<name>.toml`, see [`crate::target`]), or Galera, built in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// raftkv, the Raft key-value store of this workspace.
    #[default]
    Raftkv,
    /// etcd 3.4 from Debian's `etcd-server` package, through its v3 gRPC API.
    Etcd,
    /// NATS JetStream 2.9 from Debian's `nats-server` package: KV registers and a queue stream.
    Nats,
    /// MariaDB 10.11 with Galera 4 from Debian's `mariadb-server` and `galera-4` packages:
    /// transactions over SQL.
    Galera,
    /// Any system whose client speaks the exec protocol (JSON lines on stdin and stdout).
    Exec,
}

impl Target {
    /// The name used in workload files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Raftkv => "raftkv",
            Target::Etcd => "etcd",
            Target::Nats => "nats",
            Target::Galera => "galera",
            Target::Exec => "exec",
        }
    }
}

/// Keys and values of the register workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Keys {
    /// Keys in use at once.
    #[serde(default = "default_active_keys")]
    pub active: usize,
    /// Operations on a key before it is replaced by a fresh one (keeps each key's history small
    /// enough to check exhaustively).
    #[serde(default = "default_ops_per_key")]
    pub ops_per_key: u64,
    /// Values are drawn from `0..value-range`.
    #[serde(default = "default_value_range")]
    pub value_range: u32,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            active: default_active_keys(),
            ops_per_key: default_ops_per_key(),
            value_range: default_value_range(),
        }
    }
}

fn default_active_keys() -> usize {
    4
}
fn default_ops_per_key() -> u64 {
    200
}
fn default_value_range() -> u32 {
    5
}

/// How the nodes are started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeOptions {
    /// Planted bugs to enable (raftkv's `--bug`).
    #[serde(default)]
    pub bugs: Vec<String>,
    /// Extra arguments for every node.
    #[serde(default)]
    pub args: Vec<String>,
    /// etcd only: reads with `serializable: true`, answered from a member's local state without
    /// consulting the leader, so they may be stale (not linearizable).
    #[serde(default)]
    pub serializable_reads: bool,
    /// etcd only: which client API the clients speak, `grpc` (default: every workload) or
    /// `gateway` (the v3 JSON gateway; registers only).
    #[serde(default)]
    pub etcd_client: EtcdApi,
    /// Put each node's data directory on faultfs, the storage-fault filesystem (implied by the
    /// `stall` and `power` faults). Writes then stay in faultfs's cache until fsynced, so a `kill` of such a
    /// node loses what it had not fsynced, as a power failure would.
    #[serde(default)]
    pub faultfs: bool,
    /// NATS only: how KV reads are served, `leader` (the bucket's stream with `allow_direct:
    /// false`: every read from the stream leader; default) or `direct` (`allow_direct: true`:
    /// any replica that is nearly caught up answers).
    #[serde(default)]
    pub nats_reads: NatsReads,
}

/// How NATS KV reads are served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NatsReads {
    /// From the stream leader.
    #[default]
    Leader,
    /// From any replica (`allow_direct`).
    Direct,
}

/// etcd's client APIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdApi {
    /// The v3 gRPC API (`etcd-client`): registers, watches, leases.
    #[default]
    Grpc,
    /// The v3 JSON gateway over HTTP/1.1: registers only.
    Gateway,
}

impl EtcdApi {
    /// The name used in workload files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EtcdApi::Grpc => "grpc",
            EtcdApi::Gateway => "gateway",
        }
    }
}

/// A workload as written in `workloads/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Workload {
    /// The file's stem; not written in the file.
    #[serde(skip_deserializing, default)]
    pub name: String,
    /// One sentence: what the workload does and what it is for.
    pub description: String,
    /// The system under test: a target file's name (`targets/<name>.toml`), a path to one, or
    /// `galera`.
    #[serde(rename = "target", default = "default_target")]
    pub target_name: String,
    /// The kind of system `target_name` is (its client protocol); set when the file is read.
    #[serde(skip)]
    pub target: Target,
    /// The target file (none for the built-in `galera`); read with the workload.
    #[serde(skip)]
    pub system: Option<crate::target::TargetFile>,
    /// Number of nodes.
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// Seconds of the main phase (clients and nemesis).
    pub time_limit: f64,
    /// Total operations per second across all clients (0: as fast as they can).
    pub rate: f64,
    /// Client processes.
    pub concurrency: usize,
    /// Seconds before an operation without an answer is recorded as indeterminate.
    #[serde(default = "default_op_timeout")]
    pub op_timeout: f64,
    /// Seconds the clients keep running after everything was healed.
    #[serde(default = "default_recovery")]
    pub recovery: f64,
    /// Operation mix.
    #[serde(default)]
    pub ops: Mix,
    /// Keys and values.
    #[serde(default)]
    pub keys: Keys,
    /// Faults; absent means none.
    #[serde(default)]
    pub nemesis: Option<NemesisSpec>,
    /// Node options.
    #[serde(default)]
    pub node: NodeOptions,
    /// Every node and client speaks mutual TLS 1.3 with the run's throwaway certificates
    /// (ECDSA P-256, see `pki`): peers and clients must present one. Needs the target file's
    /// `[node] tls-args`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// etcd only: the watch workload instead of registers (writers put and delete under a
    /// prefix; watchers on every member record every response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchSpec>,
    /// etcd only: the lease workload instead of registers (leases granted, kept alive through
    /// members, keys attached and read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseSpec>,
    /// NATS only: the queue workload instead of registers (unique values published to one
    /// replicated stream, drained by every client after the heal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSpec>,
    /// Transactions (Elle's list-append or rw-register) instead of registers, checked for the
    /// consistency model the table names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnSpec>,
    /// Bank transfers and reads instead of registers: the total never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<BankSpec>,
    /// Galera only: isolation level, snapshot isolation, `wsrep_sync_wait` of every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<crate::galera::GaleraSpec>,
    /// Makes the workload a row of `faultline matrix` (its label, bug or control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<crate::matrix::RowSpec>,
}

/// The `[queue]` table: `concurrency` publishers send unique values (`{"writer", "n"}`) to one
/// stream of `replicas` (0: every node) at `rate`; after the faults, the heal and `recovery`,
/// every client drains the stream from its first message (at most `drain-timeout` seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct QueueSpec {
    /// Replicas of the stream (0: one per node). Default 0.
    pub replicas: usize,
    /// Seconds each drain may take. Default 60.
    pub drain_timeout: f64,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            replicas: 0,
            drain_timeout: 60.0,
        }
    }
}

/// [`WorkloadError::Invalid`] for `field` of `file`, as an `Err` of any type.
fn invalid<T>(file: &str, field: &str, message: impl Into<String>) -> Result<T, WorkloadError> {
    Err(WorkloadError::Invalid {
        file: file.to_string(),
        field: field.to_string(),
        message: message.into(),
    })
}

/// What a run's clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Registers or lists (`[ops]`), checked for linearizability.
    Register,
    /// etcd watches (`[watch]`), checked against etcd's watch guarantees.
    Watch,
    /// etcd leases (`[lease]`), checked for leases revoked while kept alive.
    Lease,
    /// A NATS queue stream (`[queue]`), checked for lost and unexpected messages.
    Queue,
    /// Transactions (`[txn]`), checked for the anomalies their consistency model forbids.
    Txn,
    /// Bank transfers (`[bank]`), checked for a constant total.
    Bank,
}

/// Where a watcher's first watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchFrom {
    /// Revision 1: the whole (uncompacted) history is replayed first.
    First,
    /// `older-by` revisions before the current one.
    Older,
    /// From now (no start revision).
    Now,
    /// `future-by` revisions after the current one: the watch waits for them.
    Future,
}

impl WatchFrom {
    /// The name recorded in `watch-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchFrom::First => "first",
            WatchFrom::Older => "older",
            WatchFrom::Now => "now",
            WatchFrom::Future => "future",
        }
    }
}

/// The `[watch]` table: writers put and delete keys under `prefix` (`concurrency` of them at
/// `rate`), and `watchers-per-member` watchers on every member follow the prefix, ask for
/// progress notifications and resume broken streams as a controller does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct WatchSpec {
    /// The watched prefix; every key written is under it. Default `/faultline/watch/`.
    pub prefix: String,
    /// Keys under the prefix. Default 8.
    pub keys: usize,
    /// Every n-th write of a writer is a delete (0: never). Default 10.
    pub delete_every: u32,
    /// Watchers on each member. Default 4.
    pub watchers_per_member: usize,
    /// Where watchers start, assigned round robin. Default first, older, now, future.
    pub from: Vec<WatchFrom>,
    /// How far back an `older` watcher starts. Default 1000.
    pub older_by: i64,
    /// How far ahead a `future` watcher starts. Default 100.
    pub future_by: i64,
    /// Seconds between progress requests on each watch (0: never). Default 0.005.
    pub progress_interval: f64,
    /// Puts before the watchers start, so that `first` and `older` watchers have history to
    /// replay. Default 5000.
    pub prefill: u64,
    /// Seconds between compactions (0: none). Default 0.
    pub compact_interval: f64,
    /// A compaction keeps this many revisions. Default 1000.
    pub compact_keep: i64,
}

impl Default for WatchSpec {
    fn default() -> Self {
        Self {
            prefix: "/faultline/watch/".into(),
            keys: 8,
            delete_every: 10,
            watchers_per_member: 4,
            from: vec![
                WatchFrom::First,
                WatchFrom::Older,
                WatchFrom::Now,
                WatchFrom::Future,
            ],
            older_by: 1000,
            future_by: 100,
            progress_interval: 0.005,
            prefill: 5000,
            compact_interval: 0.0,
            compact_keep: 1000,
        }
    }
}

/// Which members the lease workload's keepalives go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepaliveVia {
    /// Members that do not lead when the lease is granted (the leader still takes the
    /// keepalives that followers forward).
    Followers,
    /// Any member, round robin.
    Any,
}

/// The `[lease]` table: `leases` leases alive at once, each granted with `ttl`, kept alive every
/// `keepalive-interval` seconds through a member (`keepalive-via`), with `keys-per-lease` keys
/// attached, rewritten every `put-interval` seconds and read back every `get-interval` seconds;
/// after `lifetime` seconds a lease is let go (no more keepalives) and a fresh one takes its
/// place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LeaseSpec {
    /// Key prefix. Default `/faultline/lease/`.
    pub prefix: String,
    /// Leases at once. Default 6.
    pub leases: usize,
    /// TTL asked for, seconds. Default 5.
    pub ttl: i64,
    /// Seconds between keepalives of one lease. Default 1.
    pub keepalive_interval: f64,
    /// Where keepalives go. Default followers.
    pub keepalive_via: KeepaliveVia,
    /// Keys attached to each lease. Default 1.
    pub keys_per_lease: usize,
    /// Seconds between reads of a lease's keys. Default 0.5.
    pub get_interval: f64,
    /// Seconds between puts of a new value to a lease's keys (still attached to it), as a
    /// Kubernetes node renews its heartbeat object (0: never). Writes are what make a leader's
    /// raft loop touch its disk: without them a stalled fsync goes unnoticed. Default 1.
    pub put_interval: f64,
    /// Seconds a lease is kept alive before it is let go (0: until the run ends). Default 0.
    pub lifetime: f64,
}

impl Default for LeaseSpec {
    fn default() -> Self {
        Self {
            prefix: "/faultline/lease/".into(),
            leases: 6,
            ttl: 5,
            keepalive_interval: 1.0,
            keepalive_via: KeepaliveVia::Followers,
            keys_per_lease: 1,
            get_interval: 0.5,
            put_interval: 1.0,
            lifetime: 0.0,
        }
    }
}

fn default_target() -> String {
    "raftkv".into()
}
fn default_nodes() -> usize {
    3
}
fn default_op_timeout() -> f64 {
    2.0
}
fn default_recovery() -> f64 {
    5.0
}

/// A workload that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// No file of that name.
    #[error("no workload named '{name}' in {dir} (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Where we looked.
        dir: String,
        /// The names that exist.
        known: String,
    },
    /// The file is not valid TOML or has a wrong field.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A field has a value outside its allowed range.
    #[error("{file}: field `{field}`: {message}")]
    Invalid {
        /// The file (or `command line`).
        file: String,
        /// The field.
        field: String,
        /// What is allowed.
        message: String,
    },
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Names of the workloads in `dir`, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

/// Reads `dir/<name>.toml` (or a path to a TOML file).
///
/// # Errors
/// [`WorkloadError`] naming the file, line and field.
pub fn load(dir: &Path, name: &str) -> Result<Workload, WorkloadError> {
    let path = if name.ends_with(".toml") {
        PathBuf::from(name)
    } else {
        dir.join(format!("{name}.toml"))
    };
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(WorkloadError::Unknown {
                name: name.to_string(),
                dir: dir.display().to_string(),
                known: list(dir).join(", "),
            });
        }
        Err(source) => return Err(WorkloadError::Io { file, source }),
    };
    let mut w = parse(&text, &file)?;
    w.name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
        .to_string();
    Ok(w)
}

/// Parses and validates a workload's text; `file` names it in errors.
///
/// # Errors
/// [`WorkloadError::Parse`] or [`WorkloadError::Invalid`].
pub fn parse(text: &str, file: &str) -> Result<Workload, WorkloadError> {
    let mut w: Workload = toml::from_str(text).map_err(|e| WorkloadError::Parse {
        file: file.to_string(),
        message: parse_message(text, &e),
    })?;
    w.resolve_target(file)?;
    w.validate(file)?;
    Ok(w)
}

/// toml's message, with the line number spelled out.
pub(crate) fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

impl Workload {
    /// Reads the target file `target_name` names (from the project's `targets/`, or a path to a
    /// `.toml` file) and sets `target` and `system` from it; `galera` is built in.
    ///
    /// # Errors
    /// [`WorkloadError::Invalid`] for `target`, with the target file's own error (its line and
    /// field) when it is bad.
    pub fn resolve_target(&mut self, file: &str) -> Result<(), WorkloadError> {
        if self.target_name == "galera" {
            self.target = Target::Galera;
            self.system = None;
            return Ok(());
        }
        let dir = crate::target::dir(&crate::workspace::root());
        let system =
            crate::target::load(&dir, &self.target_name).map_err(|e| WorkloadError::Invalid {
                file: file.to_string(),
                field: "target".into(),
                message: e.to_string(),
            })?;
        self.target = system.client.protocol.protocol();
        self.system = Some(system);
        Ok(())
    }

    /// Checks the ranges of every field.
    ///
    /// # Errors
    /// [`WorkloadError::Invalid`] naming the field and what is allowed.
    pub fn validate(&self, file: &str) -> Result<(), WorkloadError> {
        let bad = |field: &str, message: &str| invalid(file, field, message);
        if !(1..=9).contains(&self.nodes) {
            return bad(
                "nodes",
                &format!("{} is not allowed: 1 to 9 nodes", self.nodes),
            );
        }
        if !(self.time_limit > 0.0 && self.time_limit.is_finite()) {
            return bad("time-limit", "must be a positive number of seconds");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return bad(
                "rate",
                "must be 0 (unlimited) or a positive number of operations per second",
            );
        }
        if !(1..=1024).contains(&self.concurrency) {
            return bad(
                "concurrency",
                &format!(
                    "{} is not allowed: 1 to 1024 client processes",
                    self.concurrency
                ),
            );
        }
        if !(self.op_timeout > 0.0 && self.op_timeout <= 600.0) {
            return bad("op-timeout", "must be between 0 and 600 seconds");
        }
        if !(self.recovery >= 0.0 && self.recovery <= 600.0) {
            return bad("recovery", "must be between 0 and 600 seconds");
        }
        if self.tls {
            match &self.system {
                None => {
                    return bad(
                        "tls",
                        "the galera target does not run over TLS (only targets whose file has `[node] tls-args`)",
                    );
                }
                Some(t) if t.node.tls_args.is_none() => {
                    return bad(
                        "tls",
                        &format!(
                            "targets/{}.toml has no `[node] tls-args`: it does not say how its nodes run over mutual TLS",
                            t.name
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        if self.ops.total() == 0 {
            return bad(
                "ops",
                "at least one of read, write, cas, append needs a positive weight",
            );
        }
        if self.ops.append > 0 && self.ops.write + self.ops.cas > 0 {
            return bad(
                "ops.append",
                "appends cannot be mixed with write or cas: a key holds either a register or a list (use read and append)",
            );
        }
        if self.ops.append > 0 && self.target == Target::Etcd {
            return bad(
                "ops.append",
                "the etcd client has no append (etcd has no atomic list append); use read, write and cas",
            );
        }
        if self.keys.active == 0 {
            return bad("keys.active", "at least one key must be active");
        }
        self.validate_etcd_workloads(file)?;
        self.validate_nats(file)?;
        self.validate_txn(file)?;
        crate::galera::validate(self).or_else(|(field, message)| invalid(file, field, message))?;
        if let Some(spec) = &self.nemesis {
            spec.validate().map_err(|e| WorkloadError::Invalid {
                file: file.to_string(),
                field: "nemesis".into(),
                message: e.0.clone(),
            })?;
        }
        if let Some(spec) = self
            .nemesis
            .as_ref()
            .filter(|s| s.faults.contains(&crate::nemesis::FaultKind::Member))
        {
            if !matches!(
                self.kind(),
                Kind::Register | Kind::Txn | Kind::Bank | Kind::Queue
            ) {
                return bad(
                    "nemesis.faults",
                    "`member` changes which nodes the clients talk to: register, txn, bank and queue workloads only (watchers and lease holders stay on their nodes)",
                );
            }
            if spec.member_max.is_some_and(|m| m < self.nodes) {
                return bad(
                    "nemesis.member-max",
                    &format!("must be at least `nodes` ({})", self.nodes),
                );
            }
            if let Some(t) = &self.system
                && t.node.join_args.is_none()
            {
                return bad(
                    "nemesis.faults",
                    &format!(
                        "`member` needs a target whose nodes can join a running cluster: targets/{}.toml has no `[node] join-args`",
                        self.target_name
                    ),
                );
            }
        }
        if let Some(script) = self.nemesis.as_ref().and_then(|n| n.script) {
            if self.target != Target::Raftkv {
                return bad(
                    "nemesis.script",
                    &format!(
                        "{script} arms raftkv's failpoints over HTTP; it runs against raftkv only"
                    ),
                );
            }
            if self.nodes != 3 {
                return bad(
                    "nemesis.script",
                    &format!("{script} needs exactly 3 nodes, not {}", self.nodes),
                );
            }
            if !self.node.args.iter().any(|a| a == "--failpoint-api") {
                return bad(
                    "nemesis.script",
                    &format!(
                        "{script} needs `--failpoint-api` in `node.args` (raftkv refuses run-time failpoints without it)"
                    ),
                );
            }
            if script == Script::Revote && self.node.args.iter().any(|a| a == "--failpoint") {
                return bad(
                    "nemesis.script",
                    "revote arms `after-vote` itself, once per round: `--failpoint` in `node.args` would crash every restarted voter again",
                );
            }
        }
        if !self.node.bugs.is_empty()
            && self
                .system
                .as_ref()
                .is_some_and(|t| t.node.bug_args.is_none())
        {
            return bad(
                "node.bugs",
                &format!(
                    "targets/{}.toml has no `bug-args`: planted bugs exist only in raftkv",
                    self.target_name
                ),
            );
        }
        if self.target == Target::Raftkv && self.node.serializable_reads {
            return bad(
                "node.serializable-reads",
                "is an etcd option (target = \"etcd\"); raftkv's read mode is `--read-mode` in `node.args`",
            );
        }
        if self.target == Target::Exec && self.node.serializable_reads {
            return bad(
                "node.serializable-reads",
                "is an etcd option (target = \"etcd\"); an exec client reads as it chooses",
            );
        }
        for bug in &self.node.bugs {
            if self.target == Target::Raftkv && !KNOWN_BUGS.contains(&bug.as_str()) {
                return bad(
                    "node.bugs",
                    &format!("unknown bug '{bug}' (known: {})", KNOWN_BUGS.join(", ")),
                );
            }
        }
        crate::matrix::validate(self).or_else(|(field, message)| invalid(file, field, message))?;
        Ok(())
    }

    /// Whether the nodes' data directories are on faultfs: asked for, or needed by a fault.
    pub fn uses_faultfs(&self) -> bool {
        self.node.faultfs
            || self.nemesis.as_ref().is_some_and(|n| {
                use crate::nemesis::FaultKind;
                n.faults.contains(&FaultKind::Stall) || n.faults.contains(&FaultKind::Power)
            })
    }

    /// What the run's clients do.
    pub fn kind(&self) -> Kind {
        if self.watch.is_some() {
            Kind::Watch
        } else if self.lease.is_some() {
            Kind::Lease
        } else if self.queue.is_some() {
            Kind::Queue
        } else if self.txn.is_some() {
            Kind::Txn
        } else if self.bank.is_some() {
            Kind::Bank
        } else {
            Kind::Register
        }
    }

    /// `[txn]` and `[bank]`: one at a time, not mixed with `[ops]` or another workload table,
    /// on a target that has transactions, values in range. Galera alone has no registers.
    fn validate_txn(&self, file: &str) -> Result<(), WorkloadError> {
        let bad = |field: &str, message: String| invalid(file, field, message);
        let others = self.watch.is_some() || self.lease.is_some() || self.queue.is_some();
        let table = match (&self.txn, &self.bank) {
            (None, None) if self.target == Target::Galera => {
                return bad(
                    "target",
                    "Galera runs the transactional workloads: add a `[txn]` or a `[bank]` table"
                        .into(),
                );
            }
            (None, None) => return Ok(()),
            (Some(_), Some(_)) => {
                return bad(
                    "bank",
                    "a workload has either a `[txn]` or a `[bank]` table, not both".into(),
                );
            }
            (Some(_), None) => "txn",
            (None, Some(_)) => "bank",
        };
        if others {
            return bad(
                table,
                format!(
                    "the {table} workload cannot be mixed with `[watch]`, `[lease]` or `[queue]`"
                ),
            );
        }
        if self.ops != Mix::default() {
            return bad(
                "ops",
                format!(
                    "`[ops]` is for register workloads; the {table} workload makes its own operations"
                ),
            );
        }
        let targets: &[Target] = if table == "txn" {
            &[Target::Raftkv, Target::Etcd, Target::Galera, Target::Exec]
        } else {
            &[Target::Galera]
        };
        if !targets.contains(&self.target) {
            let names: Vec<&str> = targets.iter().map(|t| t.as_str()).collect();
            return bad(
                table,
                format!(
                    "the {table} workload runs against {} (not {})",
                    names.join(", "),
                    self.target.as_str()
                ),
            );
        }
        if self.target == Target::Etcd && self.node.etcd_client != EtcdApi::Grpc {
            return bad(
                "node.etcd-client",
                "transactions go through etcd's gRPC API".into(),
            );
        }
        if let Some(t) = &self.txn {
            if t.keys == 0 {
                return bad("txn.keys", "at least one key must be active".into());
            }
            if t.max_writes_per_key == 0 {
                return bad("txn.max-writes-per-key", "at least 1".into());
            }
            if t.min_ops == 0 || t.min_ops > t.max_ops || t.max_ops > 64 {
                return bad(
                    "txn.min-ops",
                    format!(
                        "1 <= min-ops <= max-ops <= 64, not {}..{}",
                        t.min_ops, t.max_ops
                    ),
                );
            }
            if let Some(m) = t
                .search
                .as_deref()
                .filter(|m| !crate::txn::MODELS.contains(m))
            {
                return bad(
                    "txn.search",
                    format!(
                        "unknown consistency model '{m}' (known: {})",
                        crate::txn::MODELS.join(", ")
                    ),
                );
            }
            if !crate::txn::MODELS.contains(&t.model.as_str()) {
                return bad(
                    "txn.model",
                    format!(
                        "unknown consistency model '{}' (known: {})",
                        t.model,
                        crate::txn::MODELS.join(", ")
                    ),
                );
            }
        }
        if let Some(b) = &self.bank {
            if b.accounts < 2 {
                return bad("bank.accounts", "at least 2 accounts".into());
            }
            if b.total < 0 || b.max_transfer < 1 {
                return bad(
                    "bank.total",
                    "total must be >= 0 and max-transfer >= 1".into(),
                );
            }
        }
        Ok(())
    }

    /// NATS: registers (read, write, cas) or the `[queue]` table; the queue only on NATS.
    fn validate_nats(&self, file: &str) -> Result<(), WorkloadError> {
        let bad = |field: &str, message: &str| invalid(file, field, message);
        if let Some(q) = &self.queue {
            if self.target != Target::Nats {
                return bad(
                    "queue",
                    "the queue workload runs against NATS only (target = \"nats\")",
                );
            }
            if self.ops != Mix::default() {
                return bad(
                    "ops",
                    "`[ops]` is for register workloads; the queue workload publishes and drains",
                );
            }
            if q.replicas > self.nodes {
                return bad("queue.replicas", "at most one replica per node");
            }
            if !(q.drain_timeout > 0.0 && q.drain_timeout.is_finite()) {
                return bad("queue.drain-timeout", "a positive number of seconds");
            }
        }
        if self.target == Target::Nats {
            if self.ops.append > 0 {
                return bad(
                    "ops.append",
                    "NATS KV has no atomic list append; use read, write and cas",
                );
            }
            if self.watch.is_some() || self.lease.is_some() {
                return bad("target", "`[watch]` and `[lease]` are etcd workloads");
            }
            if self.node.serializable_reads {
                return bad(
                    "node.serializable-reads",
                    "is an etcd option; NATS has `nats-reads`",
                );
            }
        }
        Ok(())
    }

    /// The `[watch]` and `[lease]` tables: etcd over gRPC only, one at a time, not mixed with
    /// `[ops]`, values in range.
    fn validate_etcd_workloads(&self, file: &str) -> Result<(), WorkloadError> {
        let bad = |field: &str, message: String| invalid(file, field, message);
        let table = match (&self.watch, &self.lease) {
            (None, None) => return Ok(()),
            (Some(_), Some(_)) => {
                return bad(
                    "lease",
                    "a workload has either a `[watch]` or a `[lease]` table, not both".into(),
                );
            }
            (Some(_), None) => "watch",
            (None, Some(_)) => "lease",
        };
        if self.target != Target::Etcd {
            return bad(
                table,
                format!("the {table} workload runs against etcd only (target = \"etcd\")"),
            );
        }
        if self.node.etcd_client != EtcdApi::Grpc {
            return bad(
                "node.etcd-client",
                format!("the {table} workload needs etcd's gRPC API (the gateway has no streams)"),
            );
        }
        if self.ops != Mix::default() {
            return bad(
                "ops",
                format!(
                    "`[ops]` is for register workloads; the {table} workload's clients do their own operations"
                ),
            );
        }
        if let Some(w) = &self.watch {
            if w.prefix.is_empty() {
                return bad("watch.prefix", "must not be empty".into());
            }
            if w.keys == 0 {
                return bad("watch.keys", "at least one key".into());
            }
            if w.watchers_per_member == 0 || w.watchers_per_member > 64 {
                return bad("watch.watchers-per-member", "1 to 64".into());
            }
            if w.from.is_empty() {
                return bad(
                    "watch.from",
                    "at least one of first, older, now, future".into(),
                );
            }
            if w.older_by < 1 || w.future_by < 1 {
                return bad(
                    if w.older_by < 1 {
                        "watch.older-by"
                    } else {
                        "watch.future-by"
                    },
                    "must be at least 1 revision".into(),
                );
            }
            if !(w.progress_interval >= 0.0 && w.progress_interval.is_finite()) {
                return bad(
                    "watch.progress-interval",
                    "0 (never) or a number of seconds".into(),
                );
            }
            if !(w.compact_interval >= 0.0 && w.compact_interval.is_finite()) {
                return bad(
                    "watch.compact-interval",
                    "0 (never) or a number of seconds".into(),
                );
            }
            if w.compact_keep < 1 {
                return bad("watch.compact-keep", "must keep at least 1 revision".into());
            }
        }
        if let Some(l) = &self.lease {
            if l.prefix.is_empty() {
                return bad("lease.prefix", "must not be empty".into());
            }
            if !(1..=256).contains(&l.leases) {
                return bad("lease.leases", "1 to 256 leases at once".into());
            }
            if !(2..=3600).contains(&l.ttl) {
                return bad(
                    "lease.ttl",
                    "2 to 3600 seconds (etcd raises smaller TTLs to its minimum)".into(),
                );
            }
            if !(l.keepalive_interval > 0.0 && l.keepalive_interval < l.ttl as f64) {
                return bad(
                    "lease.keepalive-interval",
                    "more than 0 and less than the TTL".into(),
                );
            }
            if !(l.get_interval > 0.0 && l.get_interval.is_finite()) {
                return bad("lease.get-interval", "a positive number of seconds".into());
            }
            if !(l.put_interval >= 0.0 && l.put_interval.is_finite()) {
                return bad(
                    "lease.put-interval",
                    "0 (never) or a number of seconds".into(),
                );
            }
            if l.keys_per_lease == 0 {
                return bad("lease.keys-per-lease", "at least 1".into());
            }
            if !(l.lifetime >= 0.0 && l.lifetime.is_finite()) {
                return bad(
                    "lease.lifetime",
                    "0 (the whole run) or a number of seconds".into(),
                );
            }
            if l.keepalive_via == KeepaliveVia::Followers && self.nodes < 2 {
                return bad(
                    "lease.keepalive-via",
                    "followers needs at least 2 nodes".into(),
                );
            }
        }
        Ok(())
    }

    /// The generator's configuration.
    pub fn generator(&self) -> GeneratorConfig {
        GeneratorConfig {
            mix: self.ops,
            active_keys: self.keys.active,
            ops_per_key: self.keys.ops_per_key,
            value_range: self.keys.value_range,
            rate: self.rate,
            concurrency: self.concurrency,
            shape: match (&self.txn, &self.bank) {
                (Some(t), _) => Shape::Txn(t.clone()),
                (None, Some(b)) => Shape::Bank(b.clone()),
                (None, None) => Shape::Register,
            },
        }
    }
}

/// raftkv's planted bugs (its `--bug` flag).
pub const KNOWN_BUGS: &[&str] = &[
    "stale-read",
    "forget-vote",
    "commit-old-term",
    "skip-prev-check",
    "early-ack",
    "lease-ignores-skew",
    "no-fsync",
    "txn-split",
    "cas-stale-compare",
    "conf-change-concurrent",
];

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
description = "test"
time-limit = 10
rate = 50
concurrency = 4
[ops]
read = 2
write = 1
"#;

    #[test]
    fn a_minimal_workload_gets_defaults() {
        let w = parse(GOOD, "w.toml").unwrap();
        assert_eq!(w.nodes, 3);
        assert_eq!(
            w.ops,
            Mix {
                read: 2,
                write: 1,
                cas: 0,
                append: 0,
                cas_from_read: false,
            }
        );
        assert_eq!(w.keys, Keys::default());
        assert!(w.nemesis.is_none());
        assert_eq!(w.target, Target::Raftkv);
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let text = format!("{GOOD}\nbogus = 1\n");
        let err = parse(&text, "workloads/x.toml").unwrap_err().to_string();
        assert!(err.starts_with("workloads/x.toml: line 10"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let text = GOOD.replace("rate = 50", "rate = \"fast\"");
        let err = parse(&text, "w.toml").unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_the_field_and_the_allowed_range() {
        let err = parse(&format!("nodes = 12\n{GOOD}"), "w.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "w.toml: field `nodes`: 12 is not allowed: 1 to 9 nodes"
        );
        let err = parse(
            &format!("{GOOD}\n[node]\nbugs = [\"stale-reads\"]\n"),
            "w.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("node.bugs") && err.contains("stale-read,"),
            "{err}"
        );
        let err = parse(&GOOD.replace("read = 2\nwrite = 1", "read = 0"), "w.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`ops`"), "{err}");
    }

    #[test]
    fn etcd_options_are_checked_against_the_target() {
        let w = parse(
            &format!("target = \"etcd\"\n{GOOD}\n[node]\nserializable-reads = true\n"),
            "w.toml",
        )
        .unwrap();
        assert_eq!(w.target, Target::Etcd);
        assert!(w.node.serializable_reads);
        let err = parse(
            &format!("target = \"etcd\"\n{GOOD}\n[node]\nbugs = [\"stale-read\"]\n"),
            "w.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("only in raftkv"), "{err}");
        let err = parse(
            &format!("{GOOD}\n[node]\nserializable-reads = true\n"),
            "w.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("etcd option"), "{err}");
    }

    #[test]
    fn the_figure_8_script_needs_three_raftkv_nodes_with_the_failpoint_api() {
        let script = "[nemesis]\nscript = \"figure-8\"\n";
        let api = "[node]\nargs = [\"--failpoint-api\"]\n";
        let w = parse(&format!("{GOOD}\n{script}{api}"), "w.toml").unwrap();
        assert_eq!(w.nemesis.unwrap().script, Some(Script::Figure8));
        for (toml, says) in [
            (format!("{GOOD}\n{script}"), "--failpoint-api"),
            (format!("nodes = 5\n{GOOD}\n{script}{api}"), "not 5"),
            (
                format!("target = \"etcd\"\n{GOOD}\n{script}{api}"),
                "raftkv only",
            ),
            (
                format!("{GOOD}\n{script}faults = [\"kill\"]\n{api}"),
                "runs alone",
            ),
        ] {
            let err = parse(&toml, "w.toml").unwrap_err().to_string();
            assert!(
                err.contains(says) && err.contains("w.toml"),
                "{toml}: {err}"
            );
        }
    }

    #[test]
    fn the_revote_script_has_the_same_needs_and_arms_after_vote_itself() {
        let script = "[nemesis]\nscript = \"revote\"\n";
        let api = "[node]\nargs = [\"--failpoint-api\"]\n";
        let w = parse(&format!("{GOOD}\n{script}{api}"), "w.toml").unwrap();
        assert_eq!(w.nemesis.unwrap().script, Some(Script::Revote));
        let cli = "[node]\nargs = [\"--failpoint-api\", \"--failpoint\", \"after-vote\"]\n";
        for (toml, says) in [
            (
                format!("{GOOD}\n{script}"),
                "revote needs `--failpoint-api`",
            ),
            (
                format!("nodes = 5\n{GOOD}\n{script}{api}"),
                "revote needs exactly 3 nodes",
            ),
            (format!("{GOOD}\n{script}{cli}"), "every restarted voter"),
        ] {
            let err = parse(&toml, "w.toml").unwrap_err().to_string();
            assert!(
                err.contains(says) && err.contains("nemesis.script"),
                "{toml}: {err}"
            );
        }
    }

    #[test]
    fn appends_are_not_mixed_with_register_ops_nor_sent_to_etcd() {
        let appends = GOOD.replace("read = 2\nwrite = 1", "read = 1\nappend = 2");
        let w = parse(&appends, "w.toml").unwrap();
        assert_eq!((w.ops.read, w.ops.append, w.ops.write), (1, 2, 0));
        let err = parse(&GOOD.replace("read = 2", "read = 2\nappend = 1"), "w.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`ops.append`") && err.contains("mixed"),
            "{err}"
        );
        let err = parse(&format!("target = \"etcd\"\n{appends}"), "w.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`ops.append`") && err.contains("etcd"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_workload_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("register-none.toml"), GOOD).unwrap();
        let err = load(dir.path(), "register-nope").unwrap_err().to_string();
        assert!(
            err.contains("register-nope") && err.contains("known: register-none"),
            "{err}"
        );
        assert_eq!(
            load(dir.path(), "register-none").unwrap().name,
            "register-none"
        );
    }

    #[test]
    fn every_shipped_workload_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
        let names = list(&dir);
        for want in [
            "register-none",
            "register-partition",
            "register-kill",
            "register-pause",
            "register-clock",
            "register-loss",
            "register-all",
            "perf",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "workloads/{want}.toml is missing"
            );
        }
        for name in names {
            load(&dir, &name).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
