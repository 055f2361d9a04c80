//! The accept side both HTTP listeners share: a bounded number of open
//! connections (a permit each, taken before accept so the rest wait in the
//! backlog), TLS handshakes in their own tasks under a deadline (a slow client
//! never holds up the next accept), and an idle timeout on every connection
//! that moves no byte either way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The TLS configuration for the next handshake (certificates may be reloaded).
pub type TlsConfig = Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>;

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of one listener.
#[derive(Clone)]
pub struct ListenSettings {
    /// Most connections open at once.
    pub connections_max: usize,
    /// A connection with no traffic for this long is closed.
    pub idle: Duration,
    /// Serve TLS with this configuration.
    pub tls: Option<TlsConfig>,
    /// Names the listener in logs.
    pub name: &'static str,
}

/// Accepted (and, with TLS, handshaken) connections, for `axum::serve`.
pub struct Incoming {
    /// Filled by the accept task.
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    /// The bound address.
    local: SocketAddr,
    /// Stops the accept task when the listener is dropped.
    _accept: AbortOnDrop,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Incoming {
    /// Starts accepting on `listener`.
    pub fn new(listener: TcpListener, settings: ListenSettings) -> io::Result<Incoming> {
        let local = listener.local_addr()?;
        // Connections ready for axum; the permits bound how many exist at all.
        let (tx, rx) = mpsc::channel(16);
        let permits = Arc::new(Semaphore::new(settings.connections_max.max(1)));
        let task = tokio::spawn(accept_loop(listener, permits, settings, tx));
        Ok(Incoming {
            rx,
            local,
            _accept: AbortOnDrop(task),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    settings: ListenSettings,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
) {
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = settings.name, error = %crate::sys::describe_io_error(&e), "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let idle = settings.idle;
        match &settings.tls {
            None => {
                if tx
                    .send((Conn::new(Stream::Plain(stream), permit, idle), addr))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls());
                let (tx, name) = (tx.clone(), settings.name);
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let conn = Conn::new(Stream::Tls(Box::new(s)), permit, idle);
                            let _ = tx.send((conn, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(listener = name, peer = %addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::debug!(listener = name, peer = %addr, "TLS handshake timed out")
                        }
                    }
                });
            }
        }
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (it only does when the listener closes).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A plain or TLS socket.
enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection holding its slot, closed when no byte moves for its idle time.
pub struct Conn {
    /// The socket.
    stream: Stream,
    /// Released when the connection is dropped.
    _permit: OwnedSemaphorePermit,
    /// How long it may stay silent.
    idle_for: Duration,
    /// Reset on every byte read or written.
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Conn {
    fn new(stream: Stream, permit: OwnedSemaphorePermit, idle_for: Duration) -> Conn {
        Conn {
            stream,
            _permit: permit,
            idle_for,
            idle: Box::pin(tokio::time::sleep(idle_for)),
        }
    }

    /// Pushes the idle deadline back: the connection moved a byte.
    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle_for;
        self.idle.as_mut().reset(at);
    }

    /// While the socket waits: an error once the idle time has passed.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle HTTP connection",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match r {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // A peer that reads nothing is as idle as one that sends nothing.
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        };
        match r {
            // A TLS flush waits on a peer that does not read: idle too.
            Poll::Pending => self.poll_idle(cx).map(Err),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        };
        match r {
            Poll::Pending => self.poll_idle(cx).map(Err),
            done => done,
        }
    }
}
