//! One client connection: framing with a size cap checked before any allocation,
//! an idle timeout between requests, a deadline for each request to arrive
//! whole, and strictly ordered responses (one request at a time, as Kafka
//! processes a connection).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::log_limit::LogLimit;
use super::{tls, Listener};
use crate::auth::sasl::{AuthStep, SaslSession};
use crate::broker::Broker;
use crate::handlers;
use crate::log::FileSlice;
use crate::metrics;
use crate::protocol::{self, Chunk, DecodeError, ResponseFrame};

/// Idle and deadline closes are logged at most once a second.
static TIMEOUT_LOG: LogLimit = LogLimit::new(1000);
/// Failed authentications likewise (a guessing client cannot flood the log).
static AUTH_LOG: LogLimit = LogLimit::new(1000);

/// Largest frame accepted before a SASL connection has authenticated: the
/// handshake and its tokens are small, and an unauthenticated client must
/// not make the broker allocate `request_bytes_max` (Kafka: 512 KiB).
const PRE_AUTH_FRAME_BYTES_MAX: u32 = 512 * 1024;
/// A failed authentication is answered after this delay, as Kafka's
/// `connection.failed.authentication.delay.ms`, to slow password guessing.
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(100);

/// Read buffer for size prefixes and small requests. Larger request bodies are read
/// into a buffer of their own exact size, so this never grows.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    /// The peer closed.
    Normal,
    /// The broker is shutting down.
    Shutdown,
    /// No request began within `idle_timeout_ms`.
    Idle,
    /// A request began but did not arrive whole within `request_read_timeout_ms`.
    Deadline,
    /// A response could not be sent within `idle_timeout_ms`.
    WriteStalled,
    /// The client sent something we refuse; logged.
    Protocol(String),
    /// SASL authentication failed or was refused; logged, rate-limited.
    Auth(String),
    /// The TLS handshake failed or timed out; logged, rate-limited.
    Handshake(String),
    /// A request came after the SASL session expired (KIP-368).
    Expired,
    /// Socket error.
    Io(io::Error),
}

/// Connection ids, unique for the process (share sessions are bound to one).
static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Serves one connection until it closes, times out or the broker shuts down.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    listener: Arc<Listener>,
) {
    let _ = stream.set_nodelay(true);
    let c = &broker.config;
    metrics::connection_opened();
    let conn = NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let close = match &listener.tls {
        None => serve_inner(&mut stream, peer, &broker, &listener, None, conn).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let limit = Duration::from_millis(c.ssl_handshake_timeout_ms);
            match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                Err(_) => Close::Handshake("the TLS handshake did not finish in time".into()),
                Ok(Err(e)) => Close::Handshake(format!("TLS handshake failed: {e}")),
                Ok(Ok(mut tls_stream)) => {
                    let principal = tls::principal_of(tls_stream.get_ref().1.peer_certificates());
                    tracing::debug!(%peer, listener = %listener.name, %principal, "TLS established");
                    serve_inner(
                        &mut tls_stream,
                        peer,
                        &broker,
                        &listener,
                        Some(principal),
                        conn,
                    )
                    .await
                }
            }
        }
    };
    metrics::connection_gone();
    handlers::connection_closed(&broker, conn);
    metrics::connection_closed(close.label());
    match close {
        Close::Normal | Close::Shutdown => tracing::debug!(%peer, "connection closed"),
        Close::Idle => {
            if let Some(held) = TIMEOUT_LOG.allow() {
                tracing::info!(%peer, idle_timeout_ms = c.idle_timeout_ms, suppressed = held,
                    "closing idle connection");
            }
        }
        Close::Deadline => {
            if let Some(held) = TIMEOUT_LOG.allow() {
                tracing::info!(%peer, request_read_timeout_ms = c.request_read_timeout_ms,
                    suppressed = held, "closing connection: a request did not arrive in time");
            }
        }
        Close::WriteStalled => {
            if let Some(held) = TIMEOUT_LOG.allow() {
                tracing::info!(%peer, suppressed = held,
                    "closing connection: the client stopped reading its response");
            }
        }
        Close::Protocol(why) => tracing::warn!(%peer, "closing connection: {why}"),
        Close::Auth(why) => {
            if let Some(held) = AUTH_LOG.allow() {
                tracing::info!(%peer, listener = %listener.name, suppressed = held,
                    "closing connection: {why}");
            }
        }
        Close::Handshake(why) => {
            if let Some(held) = AUTH_LOG.allow() {
                tracing::info!(%peer, listener = %listener.name, suppressed = held,
                    "closing connection: {why}");
            }
        }
        Close::Expired => tracing::debug!(%peer, listener = %listener.name,
            "closing connection: its SASL session expired without re-authentication"),
        Close::Io(e) => tracing::debug!(%peer, error = %e, "connection error"),
    }
}

impl Close {
    /// The `reason` label of `sluice_connections_closed_total`.
    fn label(&self) -> &'static str {
        match self {
            Close::Normal => "client",
            Close::Shutdown => "shutdown",
            Close::Idle => "idle",
            Close::Deadline => "request_deadline",
            Close::WriteStalled => "write_stalled",
            Close::Protocol(_) => "bad_request",
            Close::Auth(_) => "authentication",
            Close::Handshake(_) => "tls_handshake",
            Close::Expired => "session_expired",
            Close::Io(_) => "io_error",
        }
    }
}

/// Reads until `buf` holds `want` bytes, by `deadline`.
async fn fill<S: Transport>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
    deadline: Instant,
) -> Result<(), Close> {
    while buf.len() < want {
        let n = match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return Err(Close::Deadline),
            Ok(Err(e)) => return Err(Close::Io(e)),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Err(Close::Protocol(
                "connection closed in the middle of a frame".into(),
            ));
        }
    }
    Ok(())
}

/// Waits up to `idle` for the first byte of the next request. `Ok(false)` on a
/// clean close.
async fn await_request<S: Transport>(
    stream: &mut S,
    buf: &mut BytesMut,
    idle: Duration,
) -> Result<bool, Close> {
    match tokio::time::timeout(idle, stream.read_buf(buf)).await {
        Err(_) => Err(Close::Idle),
        Ok(Err(e)) => Err(Close::Io(e)),
        Ok(Ok(0)) => Ok(false),
        Ok(Ok(_)) => Ok(true),
    }
}

/// Serves requests on an established stream. `tls_principal` is the TLS
/// client's principal (its certificate subject, or ANONYMOUS) on TLS listeners.
async fn serve_inner<S: Transport>(
    stream: &mut S,
    peer: SocketAddr,
    broker: &Arc<Broker>,
    listener: &Listener,
    tls_principal: Option<String>,
    conn: u64,
) -> Close {
    // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d; ACLs,
    // logs and limits name them as Kafka does, by their IPv4 address.
    let ip = peer.ip().to_canonical();
    let client_host: Arc<str> = format!("/{ip}").into();
    let idle = Duration::from_millis(broker.config.idle_timeout_ms);
    let request_timeout = Duration::from_millis(broker.config.request_read_timeout_ms);
    let reauth_ms = i64::try_from(broker.config.connections_max_reauth_ms).unwrap_or(i64::MAX);
    let mut sasl = listener
        .sasl
        .clone()
        .map(|m| SaslSession::new(m, reauth_ms).with_oauth(listener.oauth.clone()));
    // Who the requests come from: set again when SASL authentication succeeds.
    let mut principal: Arc<str> = format!(
        "User:{}",
        tls_principal.as_deref().unwrap_or(protocol::ANONYMOUS)
    )
    .into();
    let mut shutdown = broker.shutdown_signal();
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    // Metric handles of the APIs this connection used: no global lookup per request.
    let mut api_cache: Vec<((i16, i16), metrics::ApiMetrics)> = Vec::new();
    loop {
        // Keep room to read ahead; frames split off earlier may still hold the old
        // allocation, in which case this starts a fresh one.
        if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 4 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        // Between requests: wait for the next request to begin, or shutdown.
        if buf.is_empty() {
            if *shutdown.borrow() {
                return Close::Shutdown;
            }
            let got = tokio::select! {
                r = await_request(stream, &mut buf, idle) => r,
                _ = shutdown.changed() => return Close::Shutdown,
            };
            match got {
                Ok(true) => {}
                Ok(false) => return Close::Normal,
                Err(c) => return c,
            }
        }
        // From its first byte, the request must arrive whole by this deadline: a
        // client trickling bytes cannot hold the connection slot forever.
        let deadline = Instant::now() + request_timeout;
        if let Err(c) = fill(stream, &mut buf, 4, deadline).await {
            return c;
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let authenticating = sasl.as_ref().is_some_and(|s| !s.is_authenticated());
        let max = if authenticating {
            broker
                .config
                .request_bytes_max
                .min(PRE_AUTH_FRAME_BYTES_MAX)
        } else {
            broker.config.request_bytes_max
        };
        // After SaslHandshake v0 the tokens come as raw frames, any size.
        let raw_token = sasl.as_ref().is_some_and(|s| s.expects_raw_token());
        // Checked before a single byte of the body is allocated.
        let size = match u32::try_from(size) {
            Ok(s) if s > max => {
                return Close::Protocol(format!("request of {s} bytes exceeds the limit {max}"))
            }
            Ok(s) if s < 8 && !raw_token => {
                return Close::Protocol(format!("request of {s} bytes is shorter than a header"))
            }
            Ok(s) => s as usize,
            Err(_) => return Close::Protocol(format!("negative request size {size}")),
        };
        buf.advance(4);
        let frame = if buf.len() >= size {
            buf.split_to(size).freeze()
        } else {
            // The body goes into a buffer of exactly its size, read straight from
            // the socket: only the few bytes already buffered are copied, and a
            // pipelined next request never has to be moved out of the way.
            let mut body = BytesMut::with_capacity(size);
            body.extend_from_slice(&buf);
            buf.clear();
            if let Err(c) = fill(stream, &mut body, size, deadline).await {
                return c;
            }
            body.freeze()
        };
        if raw_token {
            let session = sasl.as_mut().expect("raw tokens only on SASL connections");
            match raw_sasl_token(broker, session, &frame, ip) {
                Ok(reply) => {
                    let mut out = Vec::with_capacity(4 + reply.len());
                    out.extend_from_slice(&(reply.len() as u32).to_be_bytes());
                    out.extend_from_slice(&reply);
                    if let Some(user) = session.user() {
                        principal = format!("User:{user}").into();
                    }
                    let write = async {
                        stream.write_all(&out).await?;
                        stream.flush().await
                    };
                    match tokio::time::timeout(idle, write).await {
                        Err(_) => return Close::WriteStalled,
                        Ok(Err(e)) => return Close::Io(e),
                        Ok(Ok(())) => continue,
                    }
                }
                Err(why) => {
                    // Kafka closes without an answer in the legacy framing.
                    tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                    return Close::Auth(why);
                }
            }
        }
        let arrived = std::time::Instant::now();
        let frame_bytes = frame.len() as u64 + 4;
        let mut close_after = None;
        // Under a request quota, the client id whose quota the response's
        // sending is counted against.
        let mut send_quota: Option<String> = None;
        let (response, api) = match protocol::decode_request(frame) {
            Ok(mut req) => {
                if !req.is_sasl() && handlers::request_quotas(broker) {
                    send_quota = Some(req.client_id.as_deref().unwrap_or("").to_string());
                }
                req.client_host = client_host.clone();
                req.principal = principal.clone();
                req.listener = listener.index;
                req.conn = conn;
                if !req.is_sasl()
                    && !req.is_api_versions()
                    && sasl.as_ref().is_some_and(|s| !s.is_authenticated())
                {
                    return Close::Auth(format!(
                        "a {} request before SASL authentication",
                        protocol::api_name_of(req.api_key as i16)
                    ));
                }
                // An expired session (KIP-368) serves nothing but a new
                // SaslHandshake; anything else closes, unanswered, as Kafka.
                if !req.is_sasl_handshake()
                    && sasl
                        .as_ref()
                        .is_some_and(|s| s.expired(crate::clock::now_ms()))
                {
                    return Close::Expired;
                }
                tracing::trace!(api = ?req.api_key, version = req.api_version, client = ?req.client_id, "request");
                let i = api_metrics(&mut api_cache, req.api_key as i16, req.api_version);
                let started = std::time::Instant::now();
                api_cache[i]
                    .1
                    .queue
                    .record((started - arrived).as_secs_f64());
                let response = match sasl.as_mut() {
                    Some(session) if req.is_sasl() => {
                        let answer = handlers::sasl::handle(broker, session, req, ip);
                        if answer.failed {
                            tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                        }
                        close_after = answer.close;
                        if let Some(user) = session.user() {
                            principal = format!("User:{user}").into();
                        }
                        Some(answer.response)
                    }
                    _ => handlers::dispatch(broker, req).await,
                };
                api_cache[i]
                    .1
                    .handle
                    .record(started.elapsed().as_secs_f64());
                (response, Some(i))
            }
            Err(DecodeError::ApiVersionsTooNew { correlation_id }) => {
                (Some(protocol::api_versions_fallback(correlation_id)), None)
            }
            Err(e) => return Close::Protocol(e.to_string()),
        };
        let api = api.map(|i| &api_cache[i].1);
        if let Some(api) = api {
            api.requests.increment(1);
            api.request_bytes.increment(frame_bytes);
        }
        if let Some(response) = response {
            if let Some(why) = response.failed {
                return Close::Protocol(why);
            }
            // Counted before the write: a client that reads the response and
            // then scrapes the metrics must see its own request counted.
            if let Some(api) = api {
                api.response_bytes.increment(response.wire_len());
                for (code, n) in response.errors.iter() {
                    api.errors(protocol::error_name(code), u64::from(n));
                }
            }
            let sending = std::time::Instant::now();
            let write = tokio::time::timeout(idle, write_response(stream, &response));
            let written = match &send_quota {
                None => write.await,
                Some(client_id) => {
                    let (r, ns) = crate::clock::work::metered(write).await;
                    handlers::record_send_work(broker, &principal, client_id, ns);
                    r
                }
            };
            match written {
                Err(_) => return Close::WriteStalled,
                Ok(Err(e)) => return Close::Io(e),
                Ok(Ok(())) => {}
            }
            if let Some(api) = api {
                api.send.record(sending.elapsed().as_secs_f64());
            }
            // A client over its quota: nothing more is read from it until its
            // throttle time has passed (Kafka mutes the channel, KIP-219).
            if response.throttle_ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(response.throttle_ms)) => {}
                    _ = shutdown.changed() => return Close::Shutdown,
                }
            }
        }
        if let Some(api) = api {
            api.total.record(arrived.elapsed().as_secs_f64());
        }
        if let Some(why) = close_after {
            return Close::Auth(why);
        }
    }
}

/// One SASL token in the legacy framing (after SaslHandshake v0): the reply
/// token to send, or why authentication failed.
fn raw_sasl_token(
    broker: &Broker,
    session: &mut SaslSession,
    token: &[u8],
    ip: std::net::IpAddr,
) -> Result<Vec<u8>, String> {
    let step = handlers::sasl::authenticate(broker, session, token, ip, crate::clock::now_ms())
        .map_err(|e| format!("{e:?}"))?;
    match step {
        AuthStep::Challenge(c) => Ok(c),
        AuthStep::Success { response, .. } => Ok(response),
        AuthStep::Failure { reason, .. } => Err(format!("authentication failed: {reason}")),
    }
}

/// The index in the connection's cache of one API version's metric handles (a
/// connection uses a handful of APIs, so a short list).
fn api_metrics(
    cache: &mut Vec<((i16, i16), metrics::ApiMetrics)>,
    key: i16,
    version: i16,
) -> usize {
    let k = (key, version);
    if let Some(i) = cache.iter().position(|(c, _)| *c == k) {
        return i;
    }
    cache.push((k, metrics::api(protocol::api_name_of(key), version)));
    cache.len() - 1
}

/// Writes a response: memory chunks with `write_all`, file chunks with `sendfile`
/// (record bytes go from the page cache to the socket without a user-space copy).
/// A response of several chunks is corked, so its small header and trailer pieces
/// travel in the same segments as the file data instead of as packets of their own.
async fn write_response<S: Transport>(stream: &mut S, response: &ResponseFrame) -> io::Result<()> {
    let corked = response.chunks.len() > 1 && set_cork(stream.socket(), true);
    for chunk in &response.chunks {
        match chunk {
            Chunk::Mem(b) => stream.write_all(b).await?,
            Chunk::File(f) => stream.send_file(f).await?,
        }
    }
    // TLS holds back what it has not yet written as records.
    stream.flush().await?;
    if corked {
        set_cork(stream.socket(), false);
    }
    Ok(())
}

/// A connection's byte stream: plain TCP, where file data goes by `sendfile`,
/// or TLS, where it is read in bounded chunks and encrypted.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Writes a range of a segment file.
    fn send_file(&mut self, slice: &FileSlice) -> impl Future<Output = io::Result<()>> + Send;
    /// The TCP socket beneath, for socket options.
    fn socket(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    async fn send_file(&mut self, slice: &FileSlice) -> io::Result<()> {
        match slice.file.raw_fd() {
            Some(fd) => sendfile(self, fd, slice).await,
            None => send_file_buffered(self, slice).await,
        }
    }

    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    async fn send_file(&mut self, slice: &FileSlice) -> io::Result<()> {
        send_file_buffered(self, slice).await
    }

    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// File data sent through a user-space buffer: TLS must encrypt it, and the
/// test file system has no descriptor. Read on the blocking pool in chunks of
/// this size, so a large fetch costs one chunk of memory, not its whole size.
const FILE_CHUNK_BYTES: u64 = 256 * 1024;

/// Sends a file range by reading it in [`FILE_CHUNK_BYTES`] pieces off the
/// async workers.
async fn send_file_buffered<W: AsyncWrite + Unpin>(w: &mut W, slice: &FileSlice) -> io::Result<()> {
    let end = slice.position + slice.len;
    let mut at = slice.position;
    while at < end {
        let n = (end - at).min(FILE_CHUNK_BYTES);
        let file = slice.file.clone();
        let chunk = crate::clock::work::blocking(move || {
            let mut v = vec![0u8; n as usize];
            file.read_exact_at(&mut v, at).map(|()| v)
        })
        .await
        .map_err(io::Error::other)??;
        w.write_all(&chunk).await?;
        at += n;
    }
    Ok(())
}

/// Sets or clears `TCP_CORK`; returns whether it took effect. Clearing it sends
/// whatever is still held back.
#[cfg(target_os = "linux")]
fn set_cork(stream: &TcpStream, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = on.into();
    // SAFETY: a plain setsockopt on an open socket with a correctly sized value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn set_cork(_stream: &TcpStream, _on: bool) -> bool {
    false
}

#[cfg(target_os = "linux")]
async fn sendfile(
    stream: &mut TcpStream,
    file: std::os::fd::RawFd,
    slice: &FileSlice,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = stream.as_raw_fd();
    let mut offset = libc::off_t::try_from(slice.position).map_err(io::Error::other)?;
    let end = offset + libc::off_t::try_from(slice.len).map_err(io::Error::other)?;
    while offset < end {
        stream.writable().await?;
        let remaining = usize::try_from(end - offset).map_err(io::Error::other)?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call; the kernel
            // advances `offset` by the bytes it sent.
            let n = unsafe { libc::sendfile(sock, file, &mut offset, remaining) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment shorter than indexed",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
async fn sendfile(
    stream: &mut TcpStream,
    _file: std::os::fd::RawFd,
    slice: &FileSlice,
) -> io::Result<()> {
    stream.write_all(&slice.read_to_vec()?).await
}
