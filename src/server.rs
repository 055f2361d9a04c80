//! The accept loop: bounded connections, and shutdown with a drain.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;

/// Serves clients on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (up to `shutdown_timeout_ms`), and flushes,
/// fsyncs and closes every log.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(broker.config.connections_max));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before accept: at the limit, new connections wait in the backlog.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let b = broker.clone();
        tasks.spawn(async move {
            connection::serve(stream, peer, b).await;
            drop(permit);
        });
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "connection task failed");
            }
        }
    }
    tracing::info!("shutting down: draining connections");
    drop(listener);
    broker.begin_shutdown();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(
        Duration::from_millis(broker.config.shutdown_timeout_ms),
        drain,
    )
    .await
    .is_err()
    {
        tracing::warn!("shutdown timeout: dropping remaining connections");
        tasks.abort_all();
    }
    broker.shutdown().await?;
    tracing::info!("shutdown complete");
    Ok(())
}
