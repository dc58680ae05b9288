//! The peer transport: Raft messages between nodes over persistent TCP connections.
//!
//! One outbound connection per peer, owned by a writer task with a bounded queue. Sending never
//! blocks and never grows memory without bound: when a peer's queue is full (slow or dead peer)
//! the message is dropped and counted, which Raft tolerates (it retries by itself). The writer
//! drains everything queued into one buffer per `write` (batching), does not wait for replies
//! (pipelining), reconnects with exponential back-off, and gives up on a connection whose write
//! stalls (a partitioned peer) so that a healed link is used again promptly.
//!
//! Wire format: frames of `[len: u32 little endian][the message's `Wire` encoding]`. Without TLS,
//! inbound connections are anonymous and every message names its sender. With TLS
//! (`--tls-dir`), both ends present certificates of the cluster's CA; an inbound connection may
//! carry only messages whose sender is the node its certificate names (see `crate::tls`) and who
//! is admitted (a member this node knows of, not removed). A message from anyone else closes the
//! connection, undelivered.
//!
//! This module must never block the caller or interpret messages.

use std::collections::HashMap;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest frame accepted (snapshots travel as single messages).
pub const MAX_FRAME: usize = 1 << 30;

/// How a message travels: an encoding chosen by the message type (the Raft messages use a binary
/// fast path for entries and snapshots, JSON for the rest).
pub trait Wire: Sized + Send + 'static {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes one message.
    ///
    /// # Errors
    /// A description of what is malformed.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
    /// The node the message says it comes from.
    fn sender(&self) -> u64;
}

/// Tuning for the transport.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Messages queued per peer before new ones are dropped.
    pub queue_len: usize,
    /// Bytes written per batch at most.
    pub max_batch_bytes: usize,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Connect attempts and batch writes that take longer are abandoned.
    pub io_timeout: Duration,
    /// An inbound connection silent this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            queue_len: 4096,
            max_batch_bytes: 4 << 20,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(1000),
            io_timeout: Duration::from_millis(2000),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters, for logs and tests.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages dropped because a queue was full or the peer unreachable.
    pub dropped: AtomicU64,
    /// Messages written to sockets.
    pub sent: AtomicU64,
    /// Batch writes (one `write_all` each).
    pub batches: AtomicU64,
    /// Outbound connections established.
    pub connects: AtomicU64,
    /// Inbound connections closed because a message's sender was not the node the peer's
    /// certificate names, or not admitted.
    pub refused: AtomicU64,
}

struct Peer<M> {
    addr: String,
    tx: mpsc::Sender<M>,
    task: JoinHandle<()>,
}

/// Outbound side: a writer per peer. Cheap to share behind an `Arc`.
pub struct Transport<M> {
    peers: Mutex<HashMap<u64, Peer<M>>>,
    /// Peers removed from the membership: their messages are refused under TLS.
    removed: Mutex<std::collections::HashSet<u64>>,
    options: TransportOptions,
    stats: Arc<TransportStats>,
    runtime: tokio::runtime::Handle,
    tls: Option<Arc<rustls::ClientConfig>>,
    _m: PhantomData<fn(M)>,
}

impl<M: Wire> Transport<M> {
    /// A transport that spawns its writer tasks on `runtime`.
    pub fn new(options: TransportOptions, runtime: tokio::runtime::Handle) -> Self {
        Transport {
            peers: Mutex::new(HashMap::new()),
            removed: Mutex::new(std::collections::HashSet::new()),
            options,
            stats: Arc::new(TransportStats::default()),
            runtime,
            tls: None,
            _m: PhantomData,
        }
    }

    /// Connects to peers over TLS with this configuration (this node's certificate, the CA),
    /// checking that peer `ID` presents a certificate for `nID`.
    pub fn with_tls(mut self, client: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(client);
        self
    }

    /// Whether messages from `id` are accepted: a peer with an address that was not removed.
    pub fn admits(&self, id: u64) -> bool {
        self.has_peer(id) && !self.removed.lock().unwrap().contains(&id)
    }

    /// Marks `id` removed from (or, with `false`, added again to) the membership.
    pub fn set_removed(&self, id: u64, removed: bool) {
        let mut r = self.removed.lock().unwrap();
        if removed {
            r.insert(id);
        } else {
            r.remove(&id);
        }
    }

    /// Sets (or changes) a peer's address. Changing the address restarts its connection.
    pub fn set_peer(&self, id: u64, addr: &str) {
        let mut peers = self.peers.lock().unwrap();
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        if let Some(old) = peers.remove(&id) {
            old.task.abort();
        }
        let (tx, rx) = mpsc::channel(self.options.queue_len);
        let task = self.runtime.spawn(writer(
            id,
            addr.to_string(),
            rx,
            self.options.clone(),
            self.stats.clone(),
            self.tls.clone(),
        ));
        peers.insert(
            id,
            Peer {
                addr: addr.to_string(),
                tx,
                task,
            },
        );
    }

    /// Forgets a peer and closes its connection.
    pub fn remove_peer(&self, id: u64) {
        if let Some(old) = self.peers.lock().unwrap().remove(&id) {
            old.task.abort();
        }
    }

    /// Whether `id` has an address.
    pub fn has_peer(&self, id: u64) -> bool {
        self.peers.lock().unwrap().contains_key(&id)
    }

    /// Queues `msg` for `to` without blocking. Returns false if it was dropped (unknown peer or
    /// full queue).
    pub fn send(&self, to: u64, msg: M) -> bool {
        let peers = self.peers.lock().unwrap();
        let ok = peers.get(&to).is_some_and(|p| p.tx.try_send(msg).is_ok());
        if !ok {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The transport's counters.
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// The counters, shared (the inbound side counts refused connections in them).
    pub fn stats_handle(&self) -> Arc<TransportStats> {
        self.stats.clone()
    }
}

impl<M> Drop for Transport<M> {
    fn drop(&mut self) {
        for (_, p) in self.peers.lock().unwrap().drain() {
            p.task.abort();
        }
    }
}

fn encode<M: Wire>(msg: &M, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    msg.encode(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

async fn writer<M: Wire>(
    id: u64,
    addr: String,
    mut rx: mpsc::Receiver<M>,
    options: TransportOptions,
    stats: Arc<TransportStats>,
    tls: Option<Arc<rustls::ClientConfig>>,
) {
    let mut backoff = options.min_backoff;
    let mut buf = Vec::new();
    loop {
        // Wait for something to send before connecting: idle peers hold no connection attempts.
        let Some(first) = rx.recv().await else { return };
        let connected = tokio::time::timeout(
            options.io_timeout,
            connect(id, &addr, &options, tls.as_ref()),
        )
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
        let (mut read_half, mut stream) = match connected {
            Ok(halves) => halves,
            Err(e) => {
                tracing::debug!(peer = id, %addr, error = %e, "peer connect failed");
                drop_queued(&mut rx, &stats, 1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
                continue;
            }
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = id, %addr, "peer connected");
        backoff = options.min_backoff;
        // The peer never writes on this connection; reading only notices it closing.
        let mut closed = Box::pin(async move {
            let mut b = [0u8; 64];
            loop {
                match read_half.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let mut next = Some(first);
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = rx.recv() => match m { Some(m) => m, None => return },
                    _ = &mut closed => break,
                },
            };
            buf.clear();
            encode(&msg, &mut buf);
            let mut n = 1u64;
            while buf.len() < options.max_batch_bytes {
                match rx.try_recv() {
                    Ok(m) => {
                        encode(&m, &mut buf);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            let write = async {
                stream.write_all(&buf).await?;
                // TLS buffers records; plain TCP flushes nothing.
                stream.flush().await
            };
            match tokio::time::timeout(options.io_timeout, write).await {
                Ok(Ok(())) => {
                    stats.sent.fetch_add(n, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = id, %addr, error = %e, "peer write failed; reconnecting");
                    stats.dropped.fetch_add(n, Ordering::Relaxed);
                    break;
                }
                Err(_) => {
                    tracing::debug!(peer = id, %addr, "peer write stalled; reconnecting");
                    stats.dropped.fetch_add(n, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Opens a connection to peer `id` at `addr`: TCP, then TLS when configured (the peer must
/// present a certificate for `nID`).
async fn connect(
    id: u64,
    addr: &str,
    options: &TransportOptions,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<(ReadHalf, WriteHalf)> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    // Under a partition (packets silently dropped) writes still land in the socket buffer;
    // without a user timeout the kernel would retransmit with back-off for minutes, and
    // messages written after the heal would wait behind that. Give up after `io_timeout`.
    if let Err(e) = set_user_timeout(&stream, options.io_timeout) {
        tracing::debug!(error = %e, "TCP_USER_TIMEOUT not set");
    }
    match tls {
        None => {
            let (r, w) = stream.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Some(config) => {
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(crate::tls::node_name(id), stream)
                .await?;
            let (r, w) = tokio::io::split(tls);
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// Sets `TCP_USER_TIMEOUT`: the connection fails once sent data stays unacknowledged this long.
///
/// # Errors
/// The `setsockopt` error.
pub fn set_user_timeout(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let ms: libc::c_uint = timeout.as_millis().min(u32::MAX as u128) as libc::c_uint;
    // SAFETY: a valid socket descriptor, and a pointer/length pair to a live c_uint.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn drop_queued<M>(rx: &mut mpsc::Receiver<M>, stats: &TransportStats, already: u64) {
    let mut n = already;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    stats.dropped.fetch_add(n, Ordering::Relaxed);
}

/// What an inbound peer connection must prove under TLS.
#[derive(Clone)]
pub struct PeerAuth {
    /// Accepts TLS 1.3 with a certificate of the cluster's CA required.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Whether messages from this node id are accepted at all (a member this node knows of).
    pub admits: Arc<dyn Fn(u64) -> bool + Send + Sync>,
    /// Counts refused connections.
    pub stats: Arc<TransportStats>,
}

impl PeerAuth {
    /// The check of an inbound connection's messages: `cert` is the certificate the peer
    /// presented. Every message's sender must be the node `cert` names, and admitted.
    fn check(&self, cert: rustls::pki_types::CertificateDer<'static>) -> impl FnMut(u64) -> bool {
        let admits = self.admits.clone();
        let mut bound: Option<u64> = None;
        move |sender| {
            let named = match bound {
                Some(b) => b == sender,
                None => crate::tls::names_node(&cert, sender),
            };
            if named {
                bound = Some(sender);
            }
            named && admits(sender)
        }
    }

    /// Accepts TLS on `stream` (within `handshake`) and reads its frames, every message held to
    /// the certificate the peer presented.
    async fn read_frames<M: Wire>(
        &self,
        stream: TcpStream,
        handshake: Duration,
        idle: Duration,
        deliver: &(dyn Fn(M) + Send + Sync),
    ) -> io::Result<()> {
        let tls = tokio::time::timeout(handshake, self.acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate")
            })?;
        read_frames(tls, idle, deliver, self.check(cert)).await
    }
}

/// Accepts peer connections on `listener` and calls `deliver` with every decoded message. Runs
/// until the listener fails or the task is aborted. With `auth`, connections are TLS and their
/// messages are held to the peer's certificate.
pub async fn serve<M, F>(
    listener: TcpListener,
    options: TransportOptions,
    auth: Option<PeerAuth>,
    deliver: F,
) where
    M: Wire,
    F: Fn(M) + Send + Sync + 'static,
{
    let deliver = Arc::new(deliver);
    // Connection tasks die with this future (shutdown, tests that "kill" a peer).
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, from) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let deliver = deliver.clone();
        let idle = options.idle_timeout;
        let handshake = options.io_timeout;
        let auth = auth.clone();
        conns.spawn(async move {
            let result = match &auth {
                None => read_frames(stream, idle, &*deliver, |_| true).await,
                Some(auth) => auth.read_frames(stream, handshake, idle, &*deliver).await,
            };
            if let Err(e) = result {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    tracing::warn!(%from, error = %e, "peer connection refused");
                    if let Some(auth) = &auth {
                        auth.stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    tracing::debug!(%from, error = %e, "peer connection closed");
                }
            }
        });
    }
}

async fn read_frames<M: Wire, S: AsyncRead + Unpin>(
    stream: S,
    idle: Duration,
    deliver: &(dyn Fn(M) + Send + Sync),
    mut admit: impl FnMut(u64) -> bool,
) -> io::Result<()> {
    let mut r = BufReader::with_capacity(64 << 10, stream);
    let mut payload = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(idle, r.read_exact(&mut len)).await {
            Ok(res) => {
                res?;
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle peer connection",
                ));
            }
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes"),
            ));
        }
        payload.resize(len, 0);
        r.read_exact(&mut payload).await?;
        let msg = M::decode(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !admit(msg.sender()) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "a message from node {} on a connection whose certificate does not name it, or from a node that is not a member",
                    msg.sender()
                ),
            ));
        }
        deliver(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Msg {
        from: u64,
        seq: u64,
        body: Vec<u8>,
    }

    impl Wire for Msg {
        fn encode(&self, out: &mut Vec<u8>) {
            serde_json::to_writer(out, self).unwrap();
        }
        fn decode(bytes: &[u8]) -> Result<Self, String> {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())
        }
        fn sender(&self) -> u64 {
            self.from
        }
    }

    async fn receiver() -> (String, mpsc::UnboundedReceiver<Msg>, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let h = tokio::spawn(serve(
            l,
            TransportOptions::default(),
            None,
            move |m: Msg| {
                let _ = tx.send(m);
            },
        ));
        (addr, rx, h)
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_batched() {
        let (addr, mut rx, _h) = receiver().await;
        let t = Transport::<Msg>::new(
            TransportOptions::default(),
            tokio::runtime::Handle::current(),
        );
        t.set_peer(2, &addr);
        for seq in 0..2000 {
            assert!(t.send(
                2,
                Msg {
                    from: 1,
                    seq,
                    body: vec![seq as u8; 10]
                }
            ));
        }
        for seq in 0..2000 {
            let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(m.seq, seq);
        }
        let batches = t.stats().batches.load(Ordering::Relaxed);
        assert!(batches < 2000, "every message was its own write: {batches}");
    }

    #[tokio::test]
    async fn outbound_connections_give_up_on_unacknowledged_data() {
        use std::os::fd::AsRawFd;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        set_user_timeout(&s, Duration::from_millis(1500)).unwrap();
        let mut v: libc::c_uint = 0;
        let mut len = std::mem::size_of::<libc::c_uint>() as libc::socklen_t;
        // SAFETY: valid descriptor and out-pointers to live locals.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                (&mut v as *mut libc::c_uint).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(v, 1500);
    }

    #[tokio::test]
    async fn full_queue_drops_instead_of_growing() {
        let opts = TransportOptions {
            queue_len: 8,
            ..Default::default()
        };
        let t = Transport::<Msg>::new(opts, tokio::runtime::Handle::current());
        // Nobody listens here; the writer is stuck connecting or backing off.
        t.set_peer(3, "127.0.0.1:9");
        let accepted = (0..1000)
            .filter(|&seq| {
                t.send(
                    3,
                    Msg {
                        from: 1,
                        seq,
                        body: vec![],
                    },
                )
            })
            .count();
        assert!(accepted <= 9 + 1, "accepted {accepted}");
        assert!(t.stats().dropped.load(Ordering::Relaxed) >= 990);
        assert!(
            !t.send(
                4,
                Msg {
                    from: 1,
                    seq: 0,
                    body: vec![]
                }
            ),
            "unknown peer"
        );
    }

    #[tokio::test]
    async fn reconnects_after_peer_restarts() {
        let opts = TransportOptions {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        };
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tx2 = tx.clone();
        let h = tokio::spawn(serve(l, opts.clone(), None, move |m: Msg| {
            let _ = tx2.send(m);
        }));
        let t = Transport::<Msg>::new(opts.clone(), tokio::runtime::Handle::current());
        t.set_peer(2, &addr.to_string());
        t.send(
            2,
            Msg {
                from: 1,
                seq: 1,
                body: vec![],
            },
        );
        assert_eq!(rx.recv().await.unwrap().seq, 1);
        // Peer goes away (listener and its connections), then comes back on the same address.
        h.abort();
        let _ = h.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let l = TcpListener::bind(addr).await.unwrap();
        let _h = tokio::spawn(serve(l, opts, None, move |m: Msg| {
            let _ = tx.send(m);
        }));
        // Keep sending until one gets through: messages sent into the dead connection are lost.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut seq = 2;
        loop {
            t.send(
                2,
                Msg {
                    from: 1,
                    seq,
                    body: vec![],
                },
            );
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
                assert!(m.seq >= 2);
                break;
            }
            seq += 1;
            assert!(tokio::time::Instant::now() < deadline, "never reconnected");
        }
        assert!(t.stats().connects.load(Ordering::Relaxed) >= 2);
    }
}
