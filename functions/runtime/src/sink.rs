//! Sending output CloudEvents to `K_SINK` the way Knative expects: binary
//! mode, `K_CE_OVERRIDES` applied, trace context attached, retried with
//! back-off while the receiver is down; with `INTERNAL_TOKEN` set, the
//! token goes along as a bearer credential.
//!
//! Ingest sends one event per accepted case, so this is the hottest client
//! code in the project: the URI and the fixed headers are prepared once, the
//! event is encoded straight into headers (`events::http::encode_binary`),
//! and requests go over a pooled hyper client (plain HTTP, or HTTPS through
//! rustls with the platform's roots).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use events::Event;
use events::http::SendError;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::auth::Secret;
use crate::retry::Backoff;

/// The pooled HTTP client the sinks of a thread share.
pub type SinkClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

thread_local! {
    /// One pool per thread: a connection worker's requests reuse connections
    /// whose tasks run on the same thread (see `workers`).
    static CLIENT: SinkClient = client();
}

/// Builds a client: keep-alive pool below the servers' idle close
/// (HEADER_READ_TIMEOUT_MS, 30 s by default), so a pooled connection is not
/// reused as it closes; HTTP/1.1, which every Knative receiver speaks.
pub fn client() -> SinkClient {
    crate::install_crypto_provider();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(3)));
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match builder
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
    {
        Ok(b) => b.https_or_http().enable_http1().wrap_connector(http),
        Err(e) => {
            // No usable root store: plain HTTP still works, HTTPS sinks fail
            // on send with the reason.
            tracing::warn!(error = %e, "no TLS roots for HTTPS sinks");
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        }
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// How much of a receiver's answer is read (the status is what counts; the
/// body is read so the connection goes back to the pool, and quoted in errors).
const RESPONSE_LIMIT: usize = 64 * 1024;

/// Where a function's output events go (its `K_SINK`).
#[derive(Clone)]
pub struct Sink {
    url: Arc<str>,
    uri: Result<Uri, String>,
    /// `K_CE_OVERRIDES` as `ce-` headers, and the bearer token: the same on every send.
    fixed: Arc<HeaderMap>,
    timeout: Duration,
}

impl Sink {
    pub fn new(url: &str, overrides: &[(String, String)]) -> Sink {
        let uri = match url.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) => Ok(u),
            Ok(_) => Err(format!("the sink {url:?} is not an http(s) URL")),
            Err(e) => Err(format!("the sink {url:?} is not a URL: {e}")),
        };
        let mut fixed = HeaderMap::new();
        for (k, v) in overrides {
            // Config checked the names; a value HTTP cannot carry is skipped loudly.
            match (
                HeaderName::try_from(format!("ce-{k}")),
                HeaderValue::from_str(v),
            ) {
                (Ok(name), Ok(value)) => {
                    fixed.insert(name, value);
                }
                _ => {
                    tracing::warn!(extension = %k, "K_CE_OVERRIDES entry cannot be sent as a header")
                }
            }
        }
        Sink {
            url: url.into(),
            uri,
            fixed: Arc::new(fixed),
            timeout: Duration::from_secs(10),
        }
    }

    /// Sends `token` as `Authorization: Bearer` with every event.
    pub fn with_bearer(mut self, token: Option<Secret>) -> Sink {
        if let Some(t) = token
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
        {
            v.set_sensitive(true);
            Arc::make_mut(&mut self.fixed).insert(AUTHORIZATION, v);
        }
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP request that carries `event`: binary mode, with the
    /// `K_CE_OVERRIDES` extensions, the trace context (as the `traceparent`
    /// extension and header) and the bearer token.
    pub fn request(
        &self,
        event: &Event,
        traceparent: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, SendError> {
        let uri = self.uri.clone().map_err(SendError::Encode)?;
        let (mut headers, body) = events::http::encode_binary(event)?;
        for (k, v) in self.fixed.iter() {
            headers.insert(k, v.clone());
        }
        if let Some(t) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert(HeaderName::from_static("ce-traceparent"), t.clone());
            headers.insert(HeaderName::from_static(crate::trace::HEADER), t);
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// One attempt; any 2xx is success.
    pub async fn send(&self, event: &Event, traceparent: Option<&str>) -> Result<(), SendError> {
        let req = self.request(event, traceparent)?;
        let exchange = async {
            let resp = CLIENT
                .with(|c| c.request(req))
                .await
                .map_err(|e| SendError::Transport(transport_reason(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), RESPONSE_LIMIT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, SendError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SendError::Transport(format!("no answer within {:?}", self.timeout)))??;
        if status.is_success() {
            return Ok(());
        }
        Err(SendError::Status {
            status,
            body: String::from_utf8_lossy(&body).chars().take(500).collect(),
        })
    }

    /// Retries retryable failures with back-off until `deadline` has passed.
    pub async fn send_with_retry(
        &self,
        event: &Event,
        traceparent: Option<&str>,
        deadline: Duration,
    ) -> Result<(), SendError> {
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        loop {
            match self.send(event, traceparent).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && start.elapsed() < deadline => {
                    tracing::warn!(error = %e, sink = %self.url, "sink send failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The innermost cause of a client error ("connection refused", a TLS
/// failure), which is what an operator needs to read.
fn transport_reason(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}
