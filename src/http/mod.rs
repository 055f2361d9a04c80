//! The HTTP listener (axum on hyper): `/metrics` for Prometheus, `/healthz`
//! (the process is up) and `/readyz` (the data directory is loaded, the Kafka
//! listener accepts, the data directory is online). It starts before the data
//! directory loads, so probes see "not ready" during recovery rather than a
//! refused connection. The gateway (`gateway`: REST Proxy v2, WebSocket,
//! SSE, console) is a second listener on the same stack (`listener`).

pub mod gateway;
pub mod listener;
mod scrape;

use listener::{Incoming, ListenSettings};

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::broker::Broker;

/// A metrics connection that moves nothing for this long is closed, so dead
/// or stalled clients do not hold one of the `metrics_connections_max` slots.
const HTTP_IDLE: Duration = Duration::from_secs(60);
/// How often histogram samples are folded into buckets when nobody scrapes, so
/// they never pile up in memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Scrapes computed at once; more are answered 503 (each one walks every partition).
const SCRAPES_MAX: usize = 2;

/// What the HTTP handlers read: the broker once it is loaded, and readiness.
#[derive(Debug)]
pub struct HttpState {
    /// Set once the data directory is loaded.
    broker: OnceLock<Arc<Broker>>,
    /// Set once the Kafka listener accepts connections.
    accepting: AtomicBool,
    /// Bounds concurrent scrapes.
    scrapes: Arc<Semaphore>,
}

impl Default for HttpState {
    fn default() -> Self {
        HttpState {
            broker: OnceLock::new(),
            accepting: AtomicBool::new(false),
            scrapes: Arc::new(Semaphore::new(SCRAPES_MAX)),
        }
    }
}

impl HttpState {
    /// Records the loaded broker: `/metrics` reports it from now on.
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// Records that the Kafka listener accepts connections (or no longer does).
    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Release);
    }

    /// Why the broker is not ready, if it is not.
    fn not_ready(&self) -> Option<&'static str> {
        let Some(b) = self.broker.get() else {
            return Some("loading the data directory");
        };
        if b.storage.health.is_offline() {
            return Some("the data directory is offline (a failed fsync); restart to recover");
        }
        if !self.accepting.load(Ordering::Acquire) {
            return Some("the Kafka listener is not accepting connections");
        }
        None
    }
}

/// Serves HTTP on `listener` until `shutdown` completes, with at most
/// `connections_max` connections open at once.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    connections_max: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Some(h) = crate::metrics::handle() {
        let h = h.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                h.run_upkeep();
            }
        });
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let listener = Incoming::new(
        listener,
        ListenSettings {
            connections_max,
            idle: HTTP_IDLE,
            tls: None,
            name: "metrics",
        },
    )?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    match state.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let Ok(permit) = state.scrapes.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once\n",
        )
            .into_response();
    };
    let broker = state.broker.get().cloned();
    let ready = state.not_ready().is_none();
    // Partition stats and lag timestamps take log locks and read headers: off the workers.
    let body = tokio::task::spawn_blocking(move || {
        // Held by the render itself: a client that goes away does not free the
        // slot while the scrape still runs.
        let _permit = permit;
        let mut out = crate::metrics::handle()
            .map(|h| h.render())
            .unwrap_or_default();
        scrape::render(&mut out, broker.as_deref(), ready);
        out
    })
    .await;
    match body {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n").into_response()
        }
    }
}
