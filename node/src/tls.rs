//! Mutual TLS (`--tls-dir`): TLS 1.3 for the peer transport and the client API, certificates
//! required on both ends, and a peer's node id bound to its certificate.
//!
//! The directory holds `ca.pem` (the one certificate authority trusted, for peers and clients),
//! `node.pem` (this node's certificate chain) and `node-key.pem` (its private key, PKCS#8). Any
//! key type rustls accepts works; Faultline's per-run PKI makes ECDSA P-256 ones.
//!
//! Identity: node `ID` must present a certificate valid for the DNS name `nID` (`n3` for node
//! 3), as a server (when a node connects to it) and as a client (when it connects to a node).
//! An inbound peer connection may only carry messages whose sender is the node its certificate
//! names, and that node must be a member (see `transport`). Clients need any certificate the CA
//! signed; nodes forward client requests to the leader with their own.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// File names inside `--tls-dir`.
pub const CA_FILE: &str = "ca.pem";
/// This node's certificate chain.
pub const CERT_FILE: &str = "node.pem";
/// This node's private key.
pub const KEY_FILE: &str = "node-key.pem";

/// The TLS configurations of one node: what it accepts (peers and clients) and how it connects
/// (to peers, and to the leader when it forwards a request).
#[derive(Clone)]
pub struct NodeTls {
    /// Accepts TLS 1.3 connections from holders of a certificate the CA signed.
    pub server: Arc<ServerConfig>,
    /// Connects with this node's certificate, trusting only the CA.
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

/// The crypto provider of every configuration here (ring, whatever else is linked in).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The DNS name node `id`'s certificate must be valid for.
pub fn node_name(id: u64) -> ServerName<'static> {
    ServerName::try_from(format!("n{id}")).expect("n<digits> is a valid DNS name")
}

/// Whether `cert` (an end-entity certificate whose chain was verified already) names node `id`.
pub fn names_node(cert: &CertificateDer<'_>, id: u64) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&node_name(id)).is_ok()
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in it",
        path.display()
    );
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("{}: no PEM private key in it", path.display()))
}

impl NodeTls {
    /// Loads `dir`/`ca.pem`, `node.pem` and `node-key.pem`.
    ///
    /// # Errors
    /// A missing or unreadable file, or one rustls refuses, named with its path.
    pub fn load(dir: &Path) -> anyhow::Result<NodeTls> {
        let ca = read_certs(&dir.join(CA_FILE))?;
        let chain = read_certs(&dir.join(CERT_FILE))?;
        let key = read_key(&dir.join(KEY_FILE))?;
        NodeTls::new(ca, chain, key)
    }

    /// The configurations from a CA, a certificate chain and its key.
    ///
    /// # Errors
    /// A CA certificate or key rustls refuses.
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> anyhow::Result<NodeTls> {
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c).context("the CA certificate")?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .context("building the client-certificate verifier")?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("this node's certificate and key")?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3")?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("this node's certificate and key")?;
        Ok(NodeTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}
