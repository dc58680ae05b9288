//! The `raftkv` server binary: parses the command line and calls [`raftkv::server::run`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use raftkv::raft::{Bug, ReadMode};
use raftkv::server::failpoint::{EXIT_CODE, FailpointArg, FailpointHit, Failpoints};
use raftkv::server::{Addrs, ServerConfig, resolve};

/// A Raft-replicated key-value store (the system under test that ships with Faultline).
///
/// Start every initial member with the same --peers list. The HTTP API is documented in
/// node/API.md.
#[derive(Debug, Parser)]
#[command(name = "raftkv", version)]
struct Cli {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long)]
    id: u64,
    /// The initial members, this node included: ID=PEERHOST:PORT/CLIENTHOST:PORT,... (the peer
    /// address is for Raft traffic, the client address for the HTTP API; other nodes use both).
    #[arg(long, value_delimiter = ',', required = true)]
    peers: Vec<String>,
    /// Listen address of the HTTP API [default: this node's client address in --peers].
    #[arg(long)]
    client_addr: Option<String>,
    /// Listen address of the peer transport [default: this node's peer address in --peers].
    #[arg(long)]
    peer_addr: Option<String>,
    /// Directory for the write-ahead log and snapshots (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Minimum election timeout in milliseconds (each timeout is randomized up to twice this).
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Leader heartbeat interval in milliseconds (a Raft tick is half of it).
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// How GET is made linearizable: ReadIndex (a heartbeat round per batch of reads) or leader
    /// leases (no round trip; relies on bounded clock drift).
    #[arg(long, value_enum, default_value_t = ReadModeArg::Linearizable)]
    read_mode: ReadModeArg,
    /// Take a snapshot and compact the log after this many applied entries (0: never).
    #[arg(long, default_value_t = 10_000)]
    snapshot_threshold: u64,
    /// Enable a planted bug (repeatable): stale-read, forget-vote, commit-old-term,
    /// skip-prev-check, early-ack, lease-ignores-skew, no-fsync (the WAL, snapshots and
    /// directories are never fsynced), txn-split, cas-stale-compare (a follower refuses a CAS
    /// from its own applied value instead of forwarding it), conf-change-concurrent (a membership
    /// change is accepted while another is uncommitted, and answered once appended). For
    /// testing the tester only.
    #[arg(long = "bug", value_name = "NAME")]
    bugs: Vec<Bug>,
    /// Start as an empty learner that waits to be added with POST /admin/members (--peers
    /// lists the existing members and this node).
    #[arg(long)]
    join: bool,
    /// Milliseconds before a client request is answered 504 (indeterminate).
    #[arg(long, default_value_t = 2000)]
    request_timeout: u64,
    /// Most entries per AppendEntries message.
    #[arg(long, default_value_t = 256)]
    max_append_entries: usize,
    /// Most AppendEntries messages in flight per follower.
    #[arg(long, default_value_t = 16)]
    max_inflight: usize,
    /// Run a PreVote round before each election (dissertation §9.6). etcd 3.4 defaults to off.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = true, value_name = "BOOL")]
    pre_vote: bool,
    /// CheckQuorum and leader stickiness: a leader steps down when it has not heard from a
    /// majority for an election timeout; followers that hear a leader refuse votes.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = true, value_name = "BOOL")]
    check_quorum: bool,
    /// Arm a failpoint (repeatable): NAME[=PROBABILITY][:ACTION], NAME one of after-vote,
    /// before-leader-send, after-save, leader-commit; ACTION crash (the default: the node stops
    /// as a crash would and exits with code 86), sleep-MS (stall the Raft loop that long) or
    /// pause (stall until disarmed over HTTP). For testing the tester only.
    #[arg(long = "failpoint", value_name = "NAME[=P][:ACTION]")]
    failpoints: Vec<FailpointArg>,
    /// Serve /failpoints: arm, disarm and list failpoints over HTTP at run time. Anyone who
    /// reaches the client port can then crash or stall the node. For testing the tester only.
    #[arg(long)]
    failpoint_api: bool,
    /// Mutual TLS 1.3 for peers and clients: DIR holds ca.pem (the only CA trusted), node.pem
    /// and node-key.pem (this node's certificate, valid for the DNS name nID, and its key). Peers
    /// and clients must present a certificate of that CA; a peer's messages must come from the
    /// node its certificate names, and from a member. Without it, plain TCP and anyone may talk.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax): error, warn, info, debug, trace, or e.g.
    /// "raftkv=debug".
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReadModeArg {
    /// ReadIndex (dissertation §6.4).
    Linearizable,
    /// Leader leases (dissertation §6.4.1).
    Lease,
}

fn parse_peers(list: &[String]) -> anyhow::Result<BTreeMap<u64, Addrs>> {
    let mut peers = BTreeMap::new();
    for item in list.iter().filter(|s| !s.is_empty()) {
        let (id, addrs) = item.split_once('=').with_context(|| {
            format!("--peers entry {item:?} must be ID=PEERHOST:PORT/CLIENTHOST:PORT")
        })?;
        let id: u64 = id
            .parse()
            .with_context(|| format!("--peers entry {item:?}: bad id"))?;
        anyhow::ensure!(id != 0, "--peers entry {item:?}: id 0 is reserved");
        let addrs =
            Addrs::parse(addrs).map_err(|e| anyhow::anyhow!("--peers entry {item:?}: {e}"))?;
        anyhow::ensure!(
            peers.insert(id, addrs).is_none(),
            "--peers lists id {id} twice"
        );
    }
    Ok(peers)
}

fn config(cli: Cli) -> anyhow::Result<ServerConfig> {
    let peers = parse_peers(&cli.peers)?;
    let mut c = ServerConfig::new(cli.id, peers, cli.data_dir)?;
    if let Some(a) = &cli.client_addr {
        c.client_listen = resolve(a)?;
    }
    if let Some(a) = &cli.peer_addr {
        c.peer_listen = resolve(a)?;
    }
    c.election_timeout = Duration::from_millis(cli.election_timeout);
    c.heartbeat_interval = Duration::from_millis(cli.heartbeat_interval);
    c.read_mode = match cli.read_mode {
        ReadModeArg::Linearizable => ReadMode::ReadIndex,
        ReadModeArg::Lease => ReadMode::Lease,
    };
    c.snapshot_threshold = cli.snapshot_threshold;
    c.bugs = cli.bugs.into_iter().collect::<BTreeSet<_>>();
    c.join = cli.join;
    c.request_timeout = Duration::from_millis(cli.request_timeout);
    c.max_append_entries = cli.max_append_entries;
    c.max_inflight = cli.max_inflight;
    c.pre_vote = cli.pre_vote;
    c.check_quorum = cli.check_quorum;
    c.failpoints = Failpoints::new(cli.failpoints);
    c.failpoint_api = cli.failpoint_api;
    if let Some(dir) = &cli.tls_dir {
        c.tls = Some(
            raftkv::tls::NodeTls::load(dir)
                .with_context(|| format!("--tls-dir {}", dir.display()))?,
        );
    }
    c.raft_config()?;
    Ok(c)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("bad --log-level {:?}", cli.log_level))?;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let config = config(cli)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(raftkv::server::run(config, shutdown_signal()));
    if let Err(e) = &result
        && let Some(hit) = e.downcast_ref::<FailpointHit>()
    {
        eprintln!("raftkv: {hit}; exiting with code {EXIT_CODE}");
        std::process::exit(EXIT_CODE);
    }
    result
}
