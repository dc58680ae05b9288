//! Mutual TLS (`--tls-dir`): clients without a certificate of the cluster's CA are refused before
//! any request is read, and forged peers (another CA's certificate, or a valid certificate for
//! another node id, or for a node that is not a member) change neither the cluster's term nor
//! its log, and cannot join. A control shows the same forged messages do move the term when they
//! come from the node the certificate names.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftkv::raft::{Entry, Message, MessageBody, Payload};
use raftkv::transport::Wire;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

use crate::cluster::{Cluster, Resp};

/// A certificate authority for tests.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, PEM.
struct Pair {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(p, key),
            pem: cert.pem(),
        }
    }

    /// A certificate for DNS name `name` (and `ip`), for server and client use; `expired` ended
    /// an hour ago.
    fn issue(&self, name: &str, ip: Option<IpAddr>, expired: bool) -> Pair {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        if let Some(ip) = ip {
            p.subject_alt_names.push(SanType::IpAddress(ip));
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = std::time::SystemTime::now();
        let hour = Duration::from_secs(3600);
        if expired {
            p.not_before = (now - 48 * hour).into();
            p.not_after = (now - hour).into();
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A `--tls-dir` for node `id` at `ip`, under `root`.
    fn node_dir(&self, root: &Path, id: u64, ip: IpAddr) -> String {
        let dir = root.join(format!("tls-n{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = self.issue(&format!("n{id}"), Some(ip), false);
        std::fs::write(dir.join("ca.pem"), &self.pem).unwrap();
        std::fs::write(dir.join("node.pem"), &pair.cert).unwrap();
        std::fs::write(dir.join("node-key.pem"), &pair.key).unwrap();
        dir.display().to_string()
    }
}

/// A TLS 1.3 client configuration trusting `ca`, presenting `pair` if any.
fn client_config(ca: &Ca, pair: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(raftkv::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match pair {
        None => b.with_no_client_auth(),
        Some(p) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(p.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(p.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// One HTTPS exchange with `Connection: close`; `Err` describes a refused handshake or an I/O
/// failure.
fn https(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Resp, String> {
    let sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::IpAddress(addr.ip().into()))
            .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
        payload.len()
    );
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        // A peer that closes without close_notify, after answering.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(Resp {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}

/// Every node's `/status` over TLS.
fn statuses(c: &Cluster, config: &Arc<rustls::ClientConfig>) -> Vec<Value> {
    c.nodes
        .iter()
        .filter(|p| p.running())
        .map(|p| {
            https(p.client, config, "GET", "/status", None)
                .map(|r| r.body)
                .unwrap_or(Value::Null)
        })
        .collect()
}

/// Waits until the running nodes agree on one leader and term; returns (leader, term).
fn wait_leader(c: &Cluster, config: &Arc<rustls::ClientConfig>) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = statuses(c, config);
        let leaders: Vec<&Value> = s.iter().filter(|v| v["role"] == "leader").collect();
        if let [l] = leaders.as_slice() {
            let (id, term) = (l["id"].as_u64().unwrap(), l["term"].as_u64().unwrap());
            if s.iter()
                .filter(|v| v["role"] != "learner")
                .all(|v| v["leader"].as_u64() == Some(id) && v["term"].as_u64() == Some(term))
            {
                return (id, term);
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tls_cluster(ca: &Ca, n: u64) -> Cluster {
    Cluster::start_each(n, |id, root| {
        let ip: IpAddr = format!("127.0.0.{id}").parse().unwrap();
        vec!["--tls-dir".into(), ca.node_dir(root, id, ip)]
    })
}

/// Connects to a node's peer port as `name` with `config` and writes `msgs` as frames. `Err`
/// when the handshake or the writes fail (a refusal may also only show as the closed
/// connection afterwards).
fn send_as_peer(
    addr: SocketAddr,
    to: u64,
    config: &Arc<rustls::ClientConfig>,
    msgs: &[Message],
) -> Result<(), String> {
    let sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), raftkv::tls::node_name(to))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut out = Vec::new();
    for m in msgs {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        m.encode(&mut out);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
    tls.write_all(&out).map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    // The peer never writes back on this connection: reading shows an alert or the close.
    let mut b = [0u8; 16];
    match tls.read(&mut b) {
        Ok(0) => Err("closed by the node".into()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// What a would-be leader `from` in `term` says to `to`: an AppendEntries with one entry, a
/// heartbeat and a RequestVote. Any of them, accepted, moves `to` to `term`.
fn takeover(from: u64, to: u64, term: u64, last_index: u64) -> Vec<Message> {
    let msg = |body| Message {
        from,
        to,
        term,
        body,
    };
    vec![
        msg(MessageBody::Append {
            prev_log_index: last_index,
            prev_log_term: term,
            entries: vec![Entry {
                index: last_index + 1,
                term,
                payload: Payload::Noop,
            }],
            commit: last_index + 1,
        }),
        msg(MessageBody::Heartbeat {
            commit: 0,
            round: 1,
        }),
        msg(MessageBody::Vote {
            last_log_index: last_index + 100,
            last_log_term: term,
            transfer: true,
        }),
    ]
}

#[test]
fn clients_without_a_certificate_of_the_ca_are_refused_before_any_request() {
    let ca = Ca::new("cluster CA");
    let c = tls_cluster(&ca, 3);
    let client = ca.issue("client", None, false);
    let good = client_config(&ca, Some(&client));
    let (leader, _) = wait_leader(&c, &good);
    let follower = c.nodes.iter().find(|p| p.id != leader).unwrap();

    // Through a follower: the request is forwarded to the leader over TLS with the follower's
    // certificate.
    let put = |config: &Arc<rustls::ClientConfig>, v: u64| {
        https(
            follower.client,
            config,
            "PUT",
            "/kv/k",
            Some(&json!({ "value": v })),
        )
    };
    let r = put(&good, 1).unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    let other = Ca::new("another CA");
    let other_client = other.issue("client", None, false);
    let expired = ca.issue("client", None, true);
    let refused = [
        (
            "no certificate",
            client_config(&ca, None),
            "CertificateRequired",
        ),
        (
            "a certificate of another CA",
            client_config(&ca, Some(&other_client)),
            "UnknownCA",
        ),
        (
            "an expired certificate",
            client_config(&ca, Some(&expired)),
            "CertificateExpired",
        ),
    ];
    for (what, config, alert) in &refused {
        for v in [2, 3] {
            let r = put(config, v);
            let e = r.expect_err(&format!("a client with {what} was answered"));
            assert!(
                e.contains(alert),
                "a client with {what}: expected the alert {alert}, got {e}"
            );
        }
    }
    // Plain HTTP to a TLS port gets no HTTP answer.
    let plain = crate::cluster::http(
        &follower.client(),
        "PUT",
        "/kv/k",
        Some(&json!({"value": 4})),
        Duration::from_secs(2),
    );
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "plain HTTP was served: {plain:?}"
    );
    // None of the refused writes took effect.
    let r = https(c.nodes[0].client, &good, "GET", "/kv/k", None).unwrap();
    assert_eq!(r.body["value"], json!(1), "{r:?}");
}

#[test]
fn forged_peers_cannot_vote_append_or_join() {
    let ca = Ca::new("cluster CA");
    let mut c = tls_cluster(&ca, 3);
    let good = client_config(&ca, Some(&ca.issue("client", None, false)));
    let (leader, term) = wait_leader(&c, &good);
    let r = https(
        c.node(leader).client,
        &good,
        "PUT",
        "/kv/k",
        Some(&json!({"value": 1})),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    // The target: a node that is neither n2 nor n3 (the identities forged below) and a
    // follower, so that a taken-over term shows.
    let (target_peer, target_log) = (c.node(1).peer, c.node(1).log.clone());
    // Once every node has applied the write (commit indexes settle with the heartbeats).
    let settled = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let s = statuses(&c, &good);
        if s.iter()
            .all(|v| v["applied"] == s[0]["applied"] && v["commit"] == s[0]["commit"])
        {
            break s;
        }
        assert!(
            Instant::now() < settled,
            "commit indexes never settled: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let applied = before[0]["applied"].as_u64().unwrap();
    let forged_term = term + 100;
    let node_ip = |id: u64| -> IpAddr { format!("127.0.0.{id}").parse().unwrap() };

    let other = Ca::new("another CA");
    let forgeries = [
        // Another CA's certificate for n3, speaking as n3.
        (
            "another CA's certificate for n3",
            client_config(&ca, Some(&other.issue("n3", Some(node_ip(3)), false))),
            3,
        ),
        // A valid certificate for n2, speaking as n3.
        (
            "n2's certificate, speaking as n3",
            client_config(&ca, Some(&ca.issue("n2", Some(node_ip(2)), false))),
            3,
        ),
        // A valid certificate for n9, which is not a member.
        (
            "a certificate for n9, not a member",
            client_config(&ca, Some(&ca.issue("n9", Some(node_ip(9)), false))),
            9,
        ),
    ];
    for (what, config, from) in &forgeries {
        for _ in 0..3 {
            let r = send_as_peer(
                target_peer,
                1,
                config,
                &takeover(*from, 1, forged_term, applied + 10),
            );
            assert!(r.is_err(), "{what}: the connection stayed open");
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = statuses(&c, &good);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            a["term"], b["term"],
            "a forged peer moved the term: {after:?}"
        );
        assert_eq!(a["leader"], b["leader"], "{after:?}");
        assert_eq!(
            a["commit"], b["commit"],
            "a forged peer moved the log: {after:?}"
        );
        assert_eq!(
            a["last_index"], b["last_index"],
            "a forged peer moved the log: {after:?}"
        );
    }
    let log = std::fs::read_to_string(&target_log).unwrap_or_default();
    assert!(
        log.contains("peer connection refused"),
        "n1 logs no refusal:\n{log}"
    );

    // A node with another CA's certificates cannot ask to join: its request is refused at the
    // handshake.
    let i = c.add_joiner(4);
    let root = c.tmp.path().to_path_buf();
    let dir = other.node_dir(&root, 4, node_ip(4));
    c.nodes[i]
        .extra
        .extend(["--tls-dir".to_string(), dir.clone()]);
    c.nodes[i].start();
    let addr = c.nodes[i].addrs();
    let join = json!({"add": 4, "addr": addr});
    let own = client_config(&ca, Some(&other.issue("n4", Some(node_ip(4)), false)));
    let r = https(
        c.node(leader).client,
        &own,
        "POST",
        "/admin/members",
        Some(&join),
    );
    assert!(
        r.is_err(),
        "the forged node's own join request was answered: {r:?}"
    );
    // Added by an operator, it is never promoted: the leader cannot reach it, and it cannot
    // reach the leader, so it never acknowledges an entry.
    let r = https(
        c.node(leader).client,
        &good,
        "POST",
        "/admin/members",
        Some(&join),
    )
    .unwrap();
    assert_eq!(r.status, 503, "the forged node was added: {r:?}");
    let now = statuses(&c, &good);
    for s in &now[..3] {
        assert_eq!(s["members"], json!([1, 2, 3]), "{now:?}");
    }
    // Its own view (asked with its CA): never a term, never an entry.
    let mine = client_config(&other, Some(&other.issue("client", None, false)));
    let s = https(c.nodes[i].client, &mine, "GET", "/status", None)
        .unwrap()
        .body;
    assert_eq!(
        (s["term"].as_u64(), s["applied"].as_u64()),
        (Some(0), Some(0)),
        "{s:?}"
    );
    c.nodes[i].kill();

    // Control: the same messages from n3 with n3's own certificate do take n1 over, so the
    // forged ones above were refused, not ignored by Raft.
    let n3 = client_config(&ca, Some(&ca.issue("n3", Some(node_ip(3)), false)));
    let _ = send_as_peer(
        target_peer,
        1,
        &n3,
        &takeover(3, 1, forged_term, applied + 10),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = https(c.node(1).client, &good, "GET", "/status", None)
            .ok()
            .and_then(|r| r.body["term"].as_u64())
            .unwrap_or(0);
        if t >= forged_term {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n3's own messages did not move n1's term (at {t}): the test's messages are no proof"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_member_with_a_valid_certificate_joins_over_tls() {
    let ca = Ca::new("cluster CA");
    let mut c = tls_cluster(&ca, 3);
    let good = client_config(&ca, Some(&ca.issue("client", None, false)));
    let (leader, _) = wait_leader(&c, &good);
    let i = c.add_joiner(4);
    let root = c.tmp.path().to_path_buf();
    let dir = ca.node_dir(&root, 4, "127.0.0.4".parse().unwrap());
    c.nodes[i].extra.extend(["--tls-dir".to_string(), dir]);
    c.nodes[i].start();
    let addr = c.nodes[i].addrs();
    let r = https(
        c.node(leader).client,
        &good,
        "POST",
        "/admin/members",
        Some(&json!({"add": 4, "addr": addr})),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = https(
        c.nodes[i].client,
        &good,
        "PUT",
        "/kv/j",
        Some(&json!({"value": 7})),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let s = https(c.nodes[i].client, &good, "GET", "/status", None)
        .unwrap()
        .body;
    assert_eq!(s["members"], json!([1, 2, 3, 4]), "{s:?}");
}
