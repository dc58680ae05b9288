//! The raftkv server: the I/O shell around the sans-IO Raft core.
//!
//! - [`node`]: the Raft loop, on its own thread. It owns the core, storage and the state machine;
//!   drains every queued input (client proposals, reads, peer messages) before taking one `Ready`,
//!   so that one fsync covers many proposals (group commit), and follows the core's durability
//!   rule (persist, then send, then apply).
//! - [`http`]: the client API (hyper 1), forwarding to the leader; the reference is `node/API.md`.
//! - [`state`]: the deterministic key-value state machine and its snapshot.
//! - [`wire`]: the peer-message encoding (binary for entries and snapshots, JSON otherwise).
//!
//! This module must never acknowledge a client write that is not committed (unless the planted
//! `early-ack` bug is on), and never answer `definite: true` for an operation that may still
//! commit.

pub mod failpoint;
pub mod http;
pub mod node;
pub mod state;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::raft::{Bug, ReadMode};
use crate::storage::{Storage, StorageOptions};
use crate::transport::{PeerAuth, Transport, TransportOptions};
pub use state::Addrs;

/// Everything a node needs to run. `main` builds it from the command line; tests build it too.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's id (not 0).
    pub id: u64,
    /// The initial members' addresses, this node included.
    pub peers: BTreeMap<u64, Addrs>,
    /// Where the HTTP API listens.
    pub client_listen: SocketAddr,
    /// Where the peer transport listens.
    pub peer_listen: SocketAddr,
    /// Directory for the WAL and snapshots.
    pub data_dir: PathBuf,
    /// Minimum election timeout (randomized up to twice this).
    pub election_timeout: Duration,
    /// Leader heartbeat interval.
    pub heartbeat_interval: Duration,
    /// How linearizable reads are served.
    pub read_mode: ReadMode,
    /// Snapshot after this many applied entries (0: never).
    pub snapshot_threshold: u64,
    /// Planted bugs (empty in production).
    pub bugs: BTreeSet<Bug>,
    /// Start as an empty learner that waits to be added (`POST /admin/members`).
    pub join: bool,
    /// How long a client request may take before it is answered 504 (indeterminate).
    pub request_timeout: Duration,
    /// Most entries per AppendEntries message.
    pub max_append_entries: usize,
    /// Most AppendEntries messages in flight per follower.
    pub max_inflight: usize,
    /// WAL segment size.
    pub segment_bytes: u64,
    /// Run a PreVote round before each election (dissertation §9.6).
    pub pre_vote: bool,
    /// Leaders step down without a quorum, followers refuse votes while they hear a leader
    /// (dissertation §6.2, §4.2.3).
    pub check_quorum: bool,
    /// Armed failpoints (none in production).
    pub failpoints: failpoint::Failpoints,
    /// Serve `/failpoints` (arm, disarm and list them over HTTP); off in production.
    pub failpoint_api: bool,
    /// Mutual TLS for peers and clients (`--tls-dir`); plain TCP when `None`.
    pub tls: Option<crate::tls::NodeTls>,
}

impl ServerConfig {
    /// A configuration with defaults for everything but identity, addresses and data dir.
    pub fn new(id: u64, peers: BTreeMap<u64, Addrs>, data_dir: PathBuf) -> anyhow::Result<Self> {
        let me = peers
            .get(&id)
            .with_context(|| format!("--peers has no entry for this node's id {id}"))?;
        let client_listen = resolve(&me.client)?;
        let peer_listen = resolve(&me.peer)?;
        Ok(ServerConfig {
            id,
            peers,
            client_listen,
            peer_listen,
            data_dir,
            election_timeout: Duration::from_millis(1000),
            heartbeat_interval: Duration::from_millis(100),
            read_mode: ReadMode::ReadIndex,
            snapshot_threshold: 10_000,
            bugs: BTreeSet::new(),
            join: false,
            request_timeout: Duration::from_millis(2000),
            max_append_entries: 256,
            max_inflight: 16,
            segment_bytes: 64 << 20,
            pre_vote: true,
            check_quorum: true,
            failpoints: failpoint::Failpoints::default(),
            failpoint_api: false,
            tls: None,
        })
    }

    /// The length of one Raft tick: half the heartbeat interval (the core's heartbeat is 2 ticks).
    pub fn tick(&self) -> Duration {
        (self.heartbeat_interval / 2).max(Duration::from_millis(1))
    }

    /// The core's configuration derived from this one.
    ///
    /// # Errors
    /// Timeouts that do not leave an election timeout longer than the heartbeat interval.
    pub fn raft_config(&self) -> anyhow::Result<crate::raft::Config> {
        let tick_ms = self.tick().as_millis().max(1) as u64;
        let mut c = crate::raft::Config::new(self.id);
        c.heartbeat_tick = 2;
        c.election_tick = (self.election_timeout.as_millis() as u64 / tick_ms).max(3);
        anyhow::ensure!(
            c.election_tick > c.heartbeat_tick,
            "--election-timeout must be longer than --heartbeat-interval"
        );
        c.max_append_entries = self.max_append_entries.max(1);
        c.max_inflight = self.max_inflight.max(1);
        c.read_mode = self.read_mode;
        if self.bugs.contains(&Bug::LeaseIgnoresSkew) {
            c.read_mode = ReadMode::Lease;
        }
        c.snapshot_threshold = self.snapshot_threshold;
        c.pre_vote = self.pre_vote;
        c.check_quorum = self.check_quorum;
        c.tick_millis = tick_ms;
        c.bugs = self.bugs.clone();
        c.seed = self.id ^ std::process::id() as u64;
        Ok(c)
    }
}

/// Resolves `host:port` to one socket address.
///
/// # Errors
/// Unresolvable or malformed addresses.
pub fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr:?}"))?
        .next()
        .with_context(|| format!("{addr:?} resolves to nothing"))
}

/// Runs a node until `shutdown` completes or a fatal error (corrupt storage, failed fsync).
///
/// # Errors
/// Startup failures (bind, storage recovery, bad configuration) and fatal runtime errors.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let raft_config = config.raft_config()?;
    tracing::info!(
        id = config.id,
        peers = ?config.peers.iter().map(|(i, a)| format!("{i}={a}")).collect::<Vec<_>>(),
        data_dir = %config.data_dir.display(),
        bugs = ?config.bugs.iter().map(|b| b.name()).collect::<Vec<_>>(),
        join = config.join,
        pre_vote = config.pre_vote,
        check_quorum = config.check_quorum,
        "starting raftkv"
    );
    if config.failpoint_api {
        tracing::warn!(
            "FAILPOINT API ON: any HTTP client can crash or stall this node (/failpoints)"
        );
    }
    if !config.failpoints.is_empty() {
        tracing::warn!(failpoints = ?config.failpoints.describe(), "FAILPOINTS ARMED: this node will stop as if it crashed when one fires");
    }
    if !config.bugs.is_empty() {
        tracing::warn!(bugs = ?config.bugs.iter().map(|b| b.name()).collect::<Vec<_>>(), "PLANTED BUGS ENABLED: this node is deliberately unsafe");
    }
    let sync = !config.bugs.contains(&Bug::NoFsync);
    if !sync {
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            "FSYNC DISABLED by the planted bug no-fsync: the WAL (entries, term, vote, commit), snapshots and directories are written but never fsynced; a power failure loses acknowledged writes and votes"
        );
    }
    let (storage, recovered) = Storage::open(
        &config.data_dir,
        StorageOptions {
            segment_bytes: config.segment_bytes,
            sync,
        },
    )
    .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    if let Some((path, offset, bytes)) = &recovered.truncated {
        tracing::warn!(file = %path.display(), offset, bytes, "truncated a torn final WAL record");
    }
    let peer_listener = tokio::net::TcpListener::bind(config.peer_listen)
        .await
        .with_context(|| format!("binding the peer address {}", config.peer_listen))?;
    let client_listener = tokio::net::TcpListener::bind(config.client_listen)
        .await
        .with_context(|| format!("binding the client address {}", config.client_listen))?;

    let mut transport = Transport::new(
        TransportOptions::default(),
        tokio::runtime::Handle::current(),
    );
    if let Some(tls) = &config.tls {
        transport = transport.with_tls(tls.client.clone());
    }
    let transport = Arc::new(transport);
    let (handle, events) = node::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let loop_handle = handle.clone();
    let node = node::Node::boot(
        config.clone(),
        raft_config,
        storage,
        recovered,
        transport.clone(),
    )?;
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            let result = node.run(events);
            let _ = done_tx.send(result);
        })?;

    let peer_handle = handle.clone();
    let auth = config.tls.as_ref().map(|tls| {
        let admitting = transport.clone();
        PeerAuth {
            acceptor: tokio_rustls::TlsAcceptor::from(tls.server.clone()),
            admits: Arc::new(move |id| admitting.admits(id)),
            stats: transport.stats_handle(),
        }
    });
    let peer_task = tokio::spawn(crate::transport::serve(
        peer_listener,
        TransportOptions::default(),
        auth,
        move |m| peer_handle.message(m),
    ));
    let api = Arc::new(
        http::Api::new(
            config.id,
            handle.clone(),
            config.request_timeout,
            config.failpoint_api.then(|| config.failpoints.clone()),
            config.tls.as_ref().map(|t| t.client.clone()),
        )
        .with_split_txns(config.bugs.contains(&Bug::TxnSplit)),
    );
    let acceptor = config
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.server.clone()));
    let http_task = tokio::spawn(http::serve(client_listener, api, acceptor));
    tracing::info!(
        client = %config.client_listen,
        peer = %config.peer_listen,
        tls = config.tls.is_some(),
        "listening"
    );

    let result = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
        r = done_rx => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow::anyhow!("the raft loop panicked")),
        }
    };
    http_task.abort();
    peer_task.abort();
    loop_handle.stop();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    result
}
