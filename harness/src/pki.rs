//! A throwaway PKI per run (`tls = true`): one CA, one certificate per node and one for the
//! clients, all ECDSA P-256 (rcgen), in a temporary folder outside `results/` that is deleted
//! when the run ends. Nodes get their folder bind-mounted read-only at [`NODE_TLS_DIR`].
//!
//! Node `nK`'s certificate is valid for the DNS name `nK` and its IP address, for both server
//! and client authentication (a node is a client of its peers). raftkv binds a node id to that
//! name (see `node/src/tls.rs`); etcd checks the chain only. The client certificate is valid for
//! `client`, for client authentication only.
//!
//! Each node folder holds `ca.pem`, `node.pem` and `node-key.pem`; the client's holds `ca.pem`,
//! `client.pem` and `client-key.pem`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where a node's TLS folder is mounted in its container.
pub const NODE_TLS_DIR: &str = "/etc/faultline/tls";

/// How long the run's certificates are valid (from an hour ago, for skewed clocks).
const VALID_DAYS: u32 = 30;

/// The clients' side of a run's PKI: the rustls configuration and the PEM texts (tonic, for
/// etcd's gRPC, takes PEM).
pub struct ClientTls {
    /// TLS 1.3, the run's CA as the only root, the client certificate presented.
    pub config: Arc<rustls::ClientConfig>,
    /// The CA certificate.
    pub ca_pem: String,
    /// The client certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// A client configuration from PEM texts: `ca_pem` the only root, `cert_pem`/`key_pem`
    /// presented (none when `cert_pem` is empty).
    ///
    /// # Errors
    /// PEM that does not parse, or a key rustls refuses.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<ClientTls> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.context("the CA certificate's PEM")?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots);
        let config = if cert_pem.is_empty() {
            builder.with_no_client_auth()
        } else {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("the client certificate's PEM")?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .context("the client key's PEM")?;
            builder.with_client_auth_cert(chain, key)?
        };
        Ok(ClientTls {
            config: Arc::new(config),
            ca_pem: ca_pem.to_string(),
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }
}

/// The crypto provider of every TLS configuration of the harness.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One certificate authority: its certificate and the key that signs.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// Whom a certificate is for.
#[derive(Debug, Clone)]
pub enum Holder {
    /// A node: valid for its name and address, as server and client; `also` is where the
    /// harness reaches it when that is not its own address (its engine's host, for published
    /// ports): an IP address or a DNS name.
    Node {
        name: String,
        ip: IpAddr,
        also: Option<String>,
    },
    /// A client: valid for `name`, as a client only.
    Client { name: String },
}

fn key() -> anyhow::Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating a P-256 key")
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Sets `params`' validity from `from` to `to`, relative to now.
fn validity(params: &mut CertificateParams, from: SystemTime, to: SystemTime) {
    params.not_before = from.into();
    params.not_after = to.into();
}

impl Authority {
    /// A new self-signed CA named `name`.
    ///
    /// # Errors
    /// Key generation or signing failures (rcgen).
    pub fn new(name: &str) -> anyhow::Result<Authority> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        validity(&mut params, now - HOUR, now + VALID_DAYS * DAY);
        let key = key()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// A certificate for `holder`, valid from an hour ago for `VALID_DAYS`, or (with
    /// `expired`) one that expired an hour ago.
    ///
    /// # Errors
    /// Key generation or signing failures (rcgen).
    pub fn issue(&self, holder: &Holder, expired: bool) -> anyhow::Result<Issued> {
        let (name, mut sans, usages) = match holder {
            Holder::Node { name, ip, also } => (
                name,
                std::iter::once(Ok(SanType::IpAddress(*ip)))
                    .chain(also.iter().map(|a| match a.parse::<IpAddr>() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => a.clone().try_into().map(SanType::DnsName),
                    }))
                    .collect::<Result<Vec<_>, _>>()?,
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            Holder::Client { name } => {
                (name, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])
            }
        };
        let mut params = CertificateParams::new(vec![name.clone()])?;
        params.subject_alt_names.append(&mut sans);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        let now = SystemTime::now();
        if expired {
            validity(&mut params, now - 2 * DAY, now - HOUR);
        } else {
            validity(&mut params, now - HOUR, now + VALID_DAYS * DAY);
        }
        let key = key()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A run's PKI, on disk in a temporary folder that is removed when this drops.
pub struct RunPki {
    ca: Authority,
    dir: tempfile::TempDir,
    /// Node name -> its folder (certificates made on first use: nodes added during the run too).
    nodes: Mutex<BTreeMap<String, PathBuf>>,
    client: Arc<ClientTls>,
}

impl std::fmt::Debug for RunPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunPki({})", self.dir.path().display())
    }
}

/// Creates `path` (it must not exist) readable by its owner only, and writes `bytes`: private
/// keys (the run's, and the results' signing key).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

impl RunPki {
    /// A new CA and client certificate for run `run_id`, in a new temporary folder.
    ///
    /// # Errors
    /// Certificate generation or file system failures.
    pub fn new(run_id: &str) -> anyhow::Result<RunPki> {
        let dir = tempfile::Builder::new()
            .prefix("faultline-pki-")
            .tempdir()
            .context("creating the run's PKI folder")?;
        let ca = Authority::new(&format!("faultline run {run_id} CA"))?;
        let issued = ca.issue(
            &Holder::Client {
                name: "client".into(),
            },
            false,
        )?;
        let client_dir = dir.path().join("client");
        std::fs::create_dir(&client_dir)?;
        std::fs::write(client_dir.join("ca.pem"), &ca.cert_pem)?;
        std::fs::write(client_dir.join("client.pem"), &issued.cert_pem)?;
        write_private(
            &client_dir.join("client-key.pem"),
            issued.key_pem.as_bytes(),
        )?;
        let client = Arc::new(ClientTls::from_pem(
            &ca.cert_pem,
            &issued.cert_pem,
            &issued.key_pem,
        )?);
        Ok(RunPki {
            ca,
            dir,
            nodes: Mutex::new(BTreeMap::new()),
            client,
        })
    }

    /// The clients' TLS.
    pub fn client(&self) -> Arc<ClientTls> {
        self.client.clone()
    }

    /// The CA.
    pub fn authority(&self) -> &Authority {
        &self.ca
    }

    /// Node `name`'s folder (`ca.pem`, `node.pem`, `node-key.pem`), made on first use with a
    /// certificate for `name` and `ip` (and `also`, where the harness reaches it when that is
    /// another address).
    ///
    /// # Errors
    /// Certificate generation or file system failures.
    pub fn node_dir(
        &self,
        name: &str,
        ip: Ipv4Addr,
        also: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = nodes.get(name) {
            return Ok(d.clone());
        }
        let issued = self.ca.issue(
            &Holder::Node {
                name: name.to_string(),
                ip: IpAddr::V4(ip),
                also: also.map(str::to_string),
            },
            false,
        )?;
        let d = self.dir.path().join(name);
        std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
        std::fs::write(d.join("ca.pem"), &self.ca.cert_pem)?;
        std::fs::write(d.join("node.pem"), &issued.cert_pem)?;
        // Readable by the node's user whoever it is (the folder is private to this run and is
        // mounted read-only); etcd runs as root, raftkv too.
        write_private(&d.join("node-key.pem"), issued.key_pem.as_bytes())?;
        nodes.insert(name.to_string(), d.clone());
        Ok(d)
    }

    /// The bind mount of node `name`'s folder at [`NODE_TLS_DIR`], read-only.
    ///
    /// # Errors
    /// As [`RunPki::node_dir`].
    pub fn bind(&self, name: &str, ip: Ipv4Addr, also: Option<&str>) -> anyhow::Result<String> {
        Ok(format!(
            "{}:{NODE_TLS_DIR}:ro",
            self.node_dir(name, ip, also)?.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_name_the_node_and_its_address_and_chain_to_the_ca() {
        let pki = RunPki::new("t").unwrap();
        let d = pki
            .node_dir("n2", Ipv4Addr::new(10, 1, 0, 3), None)
            .unwrap();
        let cert = CertificateDer::from_pem_file(d.join("node.pem")).unwrap();
        let ee = webpki::EndEntityCert::try_from(&cert).unwrap();
        let name = |s: &str| rustls::pki_types::ServerName::try_from(s.to_string()).unwrap();
        assert!(ee.verify_is_valid_for_subject_name(&name("n2")).is_ok());
        assert!(
            ee.verify_is_valid_for_subject_name(&name("10.1.0.3"))
                .is_ok()
        );
        assert!(ee.verify_is_valid_for_subject_name(&name("n3")).is_err());
        // The same folder on a second call, and the key is private.
        assert_eq!(
            pki.node_dir("n2", Ipv4Addr::new(10, 1, 0, 3), None)
                .unwrap(),
            d
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("node-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        // The chain: the CA's certificate verifies the node's.
        let ca = CertificateDer::from_pem_file(d.join("ca.pem")).unwrap();
        let anchor = webpki::anchor_from_trusted_cert(&ca).unwrap();
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        ee.verify_for_usage(
            algs.all,
            &[anchor],
            &[],
            rustls::pki_types::UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .unwrap();
    }

    #[test]
    fn folders_are_removed_with_the_pki() {
        let pki = RunPki::new("t").unwrap();
        let d = pki.node_dir("n1", Ipv4Addr::LOCALHOST, None).unwrap();
        assert!(d.join("node.pem").exists());
        drop(pki);
        assert!(!d.exists());
    }
}
