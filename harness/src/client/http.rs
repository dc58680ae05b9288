//! A small JSON-over-HTTP client (hyper) with a per-request timeout, that keeps apart the errors
//! where the request never left (definite) from those where it may have arrived (indeterminate).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::pki::ClientTls;

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The connection could not be opened, so the request was never sent.
    #[error("connect: {0}")]
    Connect(String),
    /// No answer within the timeout; the request may have been delivered.
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    /// The connection failed after the request may have been sent.
    #[error("transport: {0}")]
    Transport(String),
}

impl HttpError {
    /// True when the request cannot have reached the server.
    pub fn is_definite(&self) -> bool {
        matches!(self, HttpError::Connect(_))
    }
}

/// A pooled HTTP/1.1 client for JSON APIs, over TLS (HTTPS with a client certificate) when the
/// run's nodes require it.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    tls: Option<Arc<ClientTls>>,
}

impl HttpClient {
    /// A plain-HTTP client whose requests give up after `timeout` (connecting included).
    pub fn new(timeout: Duration) -> Self {
        Self::with_tls(timeout, None)
    }

    /// A client whose requests give up after `timeout`; with `tls`, it speaks HTTPS (see
    /// [`HttpClient::scheme`]) and presents the run's client certificate.
    pub fn with_tls(timeout: Duration, tls: Option<Arc<ClientTls>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let config = match &tls {
            Some(t) => (*t.config).clone(),
            // Plain HTTP never uses it.
            None => rustls::ClientConfig::builder_with_provider(crate::pki::provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            inner,
            timeout,
            tls,
        }
    }

    /// A client with the same TLS and another timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self::with_tls(timeout, self.tls.clone())
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The TLS the client speaks, if any.
    pub fn tls(&self) -> Option<&Arc<ClientTls>> {
        self.tls.as_ref()
    }

    /// `https` when the client speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Sends a request with an optional JSON body; returns the status and the body parsed as JSON
    /// (`Value::Null` when it is empty or not JSON).
    ///
    /// # Errors
    /// [`HttpError`] when no HTTP answer came.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), HttpError> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| HttpError::Connect(format!("bad request for {url}: {e}")))?;
        let exchange = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                if e.is_connect() {
                    HttpError::Connect(root_cause(&e))
                } else if let Some(alert) = handshake_refusal(&e) {
                    // TLS 1.3: the client finishes its side of the handshake and sends the
                    // request before the server has checked its certificate; the server's
                    // refusal arrives as an alert instead of an answer. It never read the
                    // request, so the operation certainly did not happen.
                    HttpError::Connect(format!("the server refused the TLS handshake: {alert}"))
                } else {
                    HttpError::Transport(root_cause(&e))
                }
            })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| HttpError::Transport(format!("reading the body: {e}")))?
                .to_bytes();
            Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }
}

/// The alert, if `e` is a server's refusal of the client's certificate (an alert received that
/// only a handshake sends).
fn handshake_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::AlertDescription as A;
    let mut cur = Some(e);
    while let Some(err) = cur {
        let tls = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| err.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::AlertReceived(alert)) = tls
            && matches!(
                alert,
                A::CertificateRequired
                    | A::BadCertificate
                    | A::UnknownCA
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::CertificateRevoked
                    | A::UnsupportedCertificate
                    | A::AccessDenied
                    | A::HandshakeFailure
                    | A::DecryptError
            )
        {
            return Some(format!("{alert:?}"));
        }
        cur = err.source();
    }
    None
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, Holder, RunPki};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// A TLS 1.3 server on loopback that requires a client certificate of `pki`'s CA and
    /// answers every request `200 {}`; returns its address.
    async fn server(pki: &RunPki) -> std::net::SocketAddr {
        let dir = pki
            .node_dir("n1", std::net::Ipv4Addr::LOCALHOST, None)
            .unwrap();
        let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            crate::pki::provider(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(crate::pki::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_file(dir.join("node.pem")).unwrap()],
                PrivateKeyDer::from_pem_file(dir.join("node-key.pem")).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    if tls.read(&mut buf).await.unwrap_or(0) > 0 {
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                            .await;
                        let _ = tls.flush().await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_refused_client_certificate_is_a_definite_failure() {
        let pki = RunPki::new("t").unwrap();
        let addr = server(&pki).await;
        let url = format!("https://{addr}/kv/x");
        let t = Duration::from_secs(5);
        // The run's client: answered.
        let good = HttpClient::with_tls(t, Some(pki.client()));
        let (status, _) = good.request(Method::PUT, &url, None).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        // Another CA's client, an expired one, none: refused by the server, definitely.
        let other = Authority::new("another CA").unwrap();
        let client = Holder::Client {
            name: "client".into(),
        };
        let foreign = other.issue(&client, false).unwrap();
        let expired = pki.authority().issue(&client, true).unwrap();
        let ca = &pki.authority().cert_pem;
        for (what, tls) in [
            (
                "another CA",
                ClientTls::from_pem(ca, &foreign.cert_pem, &foreign.key_pem),
            ),
            (
                "expired",
                ClientTls::from_pem(ca, &expired.cert_pem, &expired.key_pem),
            ),
            ("no certificate", ClientTls::from_pem(ca, "", "")),
        ] {
            let c = HttpClient::with_tls(t, Some(Arc::new(tls.unwrap())));
            let e = c.request(Method::PUT, &url, None).await.unwrap_err();
            assert!(e.is_definite(), "{what}: {e:?} is not definite");
        }
        // A server this client's CA did not sign: refused by the client before sending.
        let stranger = HttpClient::with_tls(
            t,
            Some(Arc::new(
                ClientTls::from_pem(&other.cert_pem, &foreign.cert_pem, &foreign.key_pem).unwrap(),
            )),
        );
        let e = stranger.request(Method::PUT, &url, None).await.unwrap_err();
        assert!(e.is_definite(), "{e:?}");
    }
}
