//! Fetching the OAUTHBEARER verification keys (a JWKS document) from an
//! `https://`, `http://` or `file://` URL, and keeping them fresh: fetched
//! again every refresh interval and, at most once per backoff maximum, when a
//! token names a key the set does not have (the identity provider rotated
//! its keys). A failed fetch keeps the keys already loaded and is retried
//! with a doubling backoff.

use std::path::PathBuf;
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
    /// The endpoint URL.
    pub url: String,
    /// CA certificates (PEM) for an `https://` endpoint; `None`: the system's.
    pub truststore: Option<PathBuf>,
    /// Longest one fetch may take.
    pub timeout: Duration,
    /// Largest document accepted.
    pub max_bytes: usize,
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
    /// The source and refresh schedule `c` configures, if any.
    pub fn from_config(c: &Config) -> Option<(JwksSource, Refresh)> {
        let url = c.sasl_oauthbearer_jwks_endpoint_url.clone()?;
        let ms = Duration::from_millis;
        Some((
            JwksSource {
                url,
                truststore: c.sasl_oauthbearer_jwks_truststore_location.clone(),
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
        ))
    }

    /// Fetches and parses the key set.
    pub async fn fetch(&self) -> Result<KeySet, String> {
        let text = match tokio::time::timeout(self.timeout, self.fetch_text()).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("no answer within {:?}", self.timeout)),
        };
        parse_jwks(&text)
    }

    async fn fetch_text(&self) -> Result<String, String> {
        if let Some(path) = self.url.strip_prefix("file://") {
            let path = PathBuf::from(path);
            let max = self.max_bytes;
            return tokio::task::spawn_blocking(move || read_file(&path, max))
                .await
                .map_err(|e| e.to_string())?;
        }
        let uri: http::Uri = self.url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("not an https://, http:// or file:// URL".into()),
        };
        let host = uri.host().ok_or("the URL has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        if https {
            let config = self.tls_config()?;
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| format!("{host}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
            self.get(tls, &authority, &path).await
        } else {
            self.get(tcp, &authority, &path).await
        }
    }

    /// One HTTP/1.1 GET over `io`; the body must be a success and bounded.
    async fn get<IO>(&self, io: IO, authority: &str, path: &str) -> Result<String, String>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let result = async {
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
        .await;
        driver.abort();
        result
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = RootCertStore::empty();
        match &self.truststore {
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
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
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
}

/// A local JWKS file, refused beyond `max` bytes.
fn read_file(path: &std::path::Path, max: usize) -> Result<String, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > max as u64 {
        return Err(format!("{} is over {max} bytes", path.display()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
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
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = unknown_key.notified() => {
                // Brought forward, but never sooner than the backoff maximum
                // after the last fetch.
                let earliest = last_fetch + schedule.backoff_max;
                let due = Instant::now() + next;
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
