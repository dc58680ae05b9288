//! A small JSON-over-HTTP client (hyper) with a per-request timeout, that keeps apart the errors
//! where the request never left (definite) from those where it may have arrived (indeterminate).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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

/// A pooled HTTP/1.1 client for JSON APIs.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose requests give up after `timeout` (connecting included).
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { inner, timeout }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
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

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
