//! The accept loop: bounded connections (in all and per client address), and
//! shutdown with a drain, on request or when the data directory goes offline.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::net::log_limit::LogLimit;
use crate::net::{connection, Listener};

/// Connections refused for the per-address cap are logged at most once a second.
static REFUSED_LOG: LogLimit = LogLimit::new(1000);
/// Failed accepts (out of file descriptors) likewise.
static ACCEPT_LOG: LogLimit = LogLimit::new(1000);

/// Open connections per client address (Kafka's `max.connections.per.ip`).
#[derive(Debug, Default)]
struct PerAddress {
    /// Count by address; an address leaves the map when its count drops to 0.
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounts itself when dropped.
struct AddressSlot {
    /// The counts to decrement.
    owner: Arc<PerAddress>,
    /// The address counted.
    ip: IpAddr,
}

impl PerAddress {
    /// Counts a connection from `ip`, or `None` if it already has `max`.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut c = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

/// Completes when the data directory goes offline (never, if the sender is gone).
async fn went_offline(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|o| *o).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves clients on `listeners` until `shutdown` completes (or the data
/// directory goes offline), then stops accepting, lets in-flight requests finish
/// (up to `shutdown_timeout_ms`), and flushes, fsyncs and closes every log.
/// Returns an error when the data directory went offline. Each listener
/// accepts into one queue (of one connection per listener), and the limits
/// apply across all of them.
pub async fn run_listeners(
    listeners: Vec<(TcpListener, Arc<Listener>)>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(1);
    let mut acceptors = JoinSet::new();
    for (listener, info) in listeners {
        let tx = accepted_tx.clone();
        acceptors.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        if tx.send((stream, peer, info.clone())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        if let Some(held) = ACCEPT_LOG.allow() {
                            tracing::warn!(error = %crate::sys::describe_io_error(&e), suppressed = held, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    drop(accepted_tx);
    let limit = Arc::new(Semaphore::new(broker.config.connections_max));
    let per_address = Arc::new(PerAddress::default());
    let per_address_max = broker.config.connections_max_per_ip;
    let mut offline = broker.storage.health.watch();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let failed = loop {
        // The permit is taken before accept: at the limit, new connections wait in the backlog.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break false, // never closed; treated as shutdown
            },
            _ = &mut shutdown => break false,
            _ = went_offline(&mut offline) => break true,
        };
        let (stream, peer, info) = tokio::select! {
            r = accepted.recv() => match r {
                Some(x) => x,
                None => break false,
            },
            _ = &mut shutdown => break false,
            _ = went_offline(&mut offline) => break true,
        };
        let Some(slot) = per_address.take(peer.ip(), per_address_max) else {
            if let Some(held) = REFUSED_LOG.allow() {
                tracing::info!(address = %peer.ip(), max = per_address_max, suppressed = held,
                    "rejected a connection: the address already has the maximum of connections");
            }
            crate::metrics::connection_refused("per_ip");
            drop(stream);
            continue;
        };
        crate::metrics::connection_accepted();
        let b = broker.clone();
        tasks.spawn(async move {
            connection::serve(stream, peer, b, info).await;
            drop(slot);
            drop(permit);
        });
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "connection task failed");
            }
        }
    };
    if failed {
        tracing::error!("the data directory is offline: stopping the broker");
    }
    tracing::info!("shutting down: draining connections");
    acceptors.abort_all();
    drop(accepted);
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
    let closed = broker.shutdown().await;
    if failed {
        return Err(io::Error::other(
            "stopped because the data directory went offline (a failed fsync); \
             restart to recover from what is on disk",
        ));
    }
    closed?;
    tracing::info!("shutdown complete");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_counts_and_releases() {
        let p = Arc::new(PerAddress::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = p.take(ip, 2).unwrap();
        let _b = p.take(ip, 2).unwrap();
        assert!(p.take(ip, 2).is_none());
        assert!(p.take("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(p.take(ip, 2).is_some());
    }
}
