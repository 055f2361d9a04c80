//! Fetching the OAUTHBEARER verification keys (a JWKS document) from an
//! `https://`, `http://` or `file://` URL, and keeping them fresh: fetched
//! again every refresh interval and, at most once per backoff maximum, when a
//! token names a key the set does not have (the identity provider rotated
//! its keys). A failed fetch keeps the keys already loaded and is retried
//! with a doubling backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::auth::oauth::{parse_jwks, KeySet, OAuthValidator};
use crate::config::Config;

/// Where the keys come from and how a fetch is bounded.
#[derive(Debug, Clone)]
pub struct JwksSource {
    /// The endpoint URL, for logs.
    pub url: String,
    /// The parsed endpoint.
    target: Target,
    /// Longest one fetch may take.
    timeout: Duration,
    /// Largest document accepted.
    max_bytes: usize,
}

/// A parsed endpoint URL.
#[derive(Debug, Clone)]
enum Target {
    /// A local file.
    File(PathBuf),
    /// An HTTP(S) endpoint.
    Http {
        /// Host name or address (an IPv6 address without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// The `Host` header (no user info).
        authority: String,
        /// Path and query.
        path: String,
        /// The TLS client settings for `https://`, built once at start.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

/// How often the keys are fetched again.
#[derive(Debug, Clone, Copy)]
pub struct Refresh {
    /// The regular interval.
    pub every: Duration,
    /// The first wait after a failure (doubled after each).
    pub backoff: Duration,
    /// The longest wait after failures, and the least time between fetches
    /// brought forward by unknown keys.
    pub backoff_max: Duration,
}

impl JwksSource {
    /// The source and refresh schedule `c` configures, if any; an endpoint
    /// that cannot be parsed, or a truststore that cannot be read, is an
    /// error at start rather than a fetch failure retried forever.
    pub fn from_config(c: &Config) -> Result<Option<(JwksSource, Refresh)>, String> {
        let Some(url) = c.sasl_oauthbearer_jwks_endpoint_url.clone() else {
            return Ok(None);
        };
        let target = parse_target(&url, c.sasl_oauthbearer_jwks_truststore_location.as_deref())
            .map_err(|e| format!("--sasl-oauthbearer-jwks-endpoint-url {url}: {e}"))?;
        if url.starts_with("http://") {
            tracing::warn!(%url, "the JWKS is fetched without TLS: anyone on the network path can replace the keys");
        }
        let ms = Duration::from_millis;
        Ok(Some((
            JwksSource {
                url,
                target,
                timeout: ms(c.sasl_oauthbearer_jwks_fetch_timeout_ms),
                max_bytes: c.sasl_oauthbearer_jwks_max_bytes,
            },
            Refresh {
                every: ms(c.sasl_oauthbearer_jwks_endpoint_refresh_ms),
                backoff: ms(c.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms),
                backoff_max: ms(c
                    .sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms
                    .max(c.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms)),
            },
        )))
    }

    /// Whether the keys come from a local file.
    pub fn is_file(&self) -> bool {
        matches!(self.target, Target::File(_))
    }

    /// Fetches and parses the key set (keys that verify nothing are logged
    /// and skipped).
    pub async fn fetch(&self) -> Result<KeySet, String> {
        let text = match tokio::time::timeout(self.timeout, self.fetch_text()).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("no answer within {:?}", self.timeout)),
        };
        let (keys, skipped) = parse_jwks(&text)?;
        for why in skipped {
            tracing::info!(url = %self.url, "JWKS {why}: skipped");
        }
        Ok(keys)
    }

    async fn fetch_text(&self) -> Result<String, String> {
        match &self.target {
            Target::File(path) => {
                let path = path.clone();
                let max = self.max_bytes;
                tokio::task::spawn_blocking(move || read_file(&path, max))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Target::Http {
                host,
                port,
                authority,
                path,
                tls,
            } => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
                match tls {
                    Some(config) => {
                        let name = ServerName::try_from(host.clone())
                            .map_err(|e| format!("{host}: {e}"))?;
                        let stream = tokio_rustls::TlsConnector::from(config.clone())
                            .connect(name, tcp)
                            .await
                            .map_err(|e| format!("TLS with {authority}: {e}"))?;
                        self.get(stream, authority, path).await
                    }
                    None => self.get(tcp, authority, path).await,
                }
            }
        }
    }

    /// One HTTP/1.1 GET over `io`; the answer must be a 2xx (redirects are
    /// not followed) with a body of at most `max_bytes`.
    async fn get<IO>(&self, io: IO, authority: &str, path: &str) -> Result<String, String>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        // The connection task ends with this fetch, timed out or not.
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), self.max_bytes)
            .collect()
            .await
            .map_err(|e| format!("the response body: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the response is not UTF-8".to_string())
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The endpoint of `url`, with its TLS settings for `https://`.
fn parse_target(url: &str, truststore: Option<&Path>) -> Result<Target, String> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Target::File(PathBuf::from(path)));
    }
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("not an https://, http:// or file:// URL".into()),
    };
    let raw_host = uri.host().ok_or("the URL has no host")?;
    let host = raw_host.trim_matches(['[', ']']).to_string();
    let default_port = if https { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let authority = match uri.port_u16() {
        Some(p) => format!("{raw_host}:{p}"),
        None => raw_host.to_string(),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let tls = if https {
        ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        Some(Arc::new(tls_config(truststore)?))
    } else {
        None
    };
    Ok(Target::Http {
        host,
        port,
        authority,
        path,
        tls,
    })
}

/// TLS client settings trusting `truststore` (PEM) or the system's CAs.
fn tls_config(truststore: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match truststore {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system store may hold certificates rustls cannot use.
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificates to check the JWKS endpoint with".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A local JWKS file, refused beyond `max` bytes (read through a bound: a
/// device or FIFO reports no length).
fn read_file(path: &Path, max: usize) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(max as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > max {
        return Err(format!("{} is over {max} bytes", path.display()));
    }
    Ok(text)
}

/// Keeps `validator`'s keys fresh from `source` until the task is dropped.
/// `loaded` says whether the first fetch (at start) succeeded: if not, the
/// first retry comes after the backoff rather than the refresh interval.
pub async fn refresh(
    validator: Arc<OAuthValidator>,
    source: JwksSource,
    schedule: Refresh,
    loaded: bool,
) {
    let unknown_key = Arc::new(Notify::new());
    let n = unknown_key.clone();
    validator.on_unknown_key(move || n.notify_one());
    let mut backoff = schedule.backoff;
    let mut next = if loaded {
        schedule.every
    } else {
        schedule.backoff
    };
    let mut last_fetch = Instant::now();
    loop {
        let due = Instant::now() + next;
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = unknown_key.notified() => {
                // Brought forward, but never sooner than the backoff maximum
                // after the last fetch.
                let earliest = last_fetch + schedule.backoff_max;
                tokio::time::sleep_until(earliest.min(due).into()).await;
            }
        }
        last_fetch = Instant::now();
        match source.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %source.url, keys = keys.len(), "JWKS refreshed");
                validator.set_keys(keys);
                backoff = schedule.backoff;
                next = schedule.every;
            }
            Err(e) => {
                tracing::warn!(url = %source.url, error = %e, retry_in = ?backoff,
                    "cannot refresh the JWKS; the keys already loaded stay in use");
                next = backoff;
                backoff = (backoff * 2).min(schedule.backoff_max);
            }
        }
    }
}
