//! Metric names and recording helpers, shared by every layer (a leaf module).
//!
//! Counters and histograms recorded on request paths go through the `metrics`
//! facade into the Prometheus recorder installed by [`install`]; their handles
//! are cached per API (and per connection), so the hot path pays an atomic add,
//! not a registry lookup. Per-topic traffic is counted in [`TopicTraffic`],
//! held by the topic. Gauges that describe state (partitions, lag, groups, the
//! process) are computed when `/metrics` is scraped, by `http::scrape`, so they
//! never go stale and cost nothing between scrapes.
//!
//! Names follow Prometheus conventions: a `sluice_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` on counters, and bounded label sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use ::metrics::{Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests received, by API and version.
pub const REQUESTS: &str = "sluice_requests_total";
/// Error codes in responses, by API and Kafka error name (one per partition or resource).
pub const REQUEST_ERRORS: &str = "sluice_request_errors_total";
/// Time of each request phase (queue, handle, send), by API.
pub const REQUEST_PHASE_SECONDS: &str = "sluice_request_phase_seconds";
/// Whole-request latency from the frame arriving to the response sent, by API.
pub const REQUEST_SECONDS: &str = "sluice_request_duration_seconds";
/// Request frame bytes received, by API.
pub const REQUEST_BYTES: &str = "sluice_request_bytes_total";
/// Response bytes sent, by API.
pub const RESPONSE_BYTES: &str = "sluice_response_bytes_total";
/// Records appended, by topic (rendered at scrape time from [`TopicTraffic`]).
pub const TOPIC_RECORDS_IN: &str = "sluice_topic_records_in_total";
/// Record batch bytes appended, by topic.
pub const TOPIC_BYTES_IN: &str = "sluice_topic_bytes_in_total";
/// Offsets handed to consumers by Fetch (records, before compaction gaps), by topic.
pub const TOPIC_RECORDS_OUT: &str = "sluice_topic_records_out_total";
/// Record batch bytes sent by Fetch, by topic.
pub const TOPIC_BYTES_OUT: &str = "sluice_topic_bytes_out_total";
/// Produced batches refused, by reason.
pub const PRODUCE_REJECTED: &str = "sluice_produce_rejected_batches_total";
/// Fetches that parked waiting for data.
pub const FETCH_PARKED: &str = "sluice_fetch_parked_total";
/// Throttle times given to clients over a quota, by quota (its count is the
/// throttled responses, its sum the time).
pub const QUOTA_THROTTLE_SECONDS: &str = "sluice_quota_throttle_seconds";
/// Parked fetches that ended, by what ended them (data, timeout, shutdown).
pub const FETCH_WOKEN: &str = "sluice_fetch_woken_total";
/// WebSocket sessions of the HTTP gateway open now.
pub const HTTP_WS_SESSIONS: &str = "sluice_http_ws_sessions";
/// Record bytes read for WebSocket consumers and not yet written to their
/// sockets: what credit-based flow keeps bounded.
pub const HTTP_WS_BUFFERED_BYTES: &str = "sluice_http_ws_buffered_bytes";
/// Records pushed to WebSocket consumers.
pub const HTTP_WS_RECORDS_SENT: &str = "sluice_http_ws_records_sent_total";
/// Connections open now.
pub const CONNECTIONS_OPEN: &str = "sluice_connections_open";
/// Connections accepted.
pub const CONNECTIONS_ACCEPTED: &str = "sluice_connections_accepted_total";
/// Connections refused, by limit.
pub const CONNECTIONS_REFUSED: &str = "sluice_connections_refused_total";
/// Connections closed, by reason.
pub const CONNECTIONS_CLOSED: &str = "sluice_connections_closed_total";
/// Duration of each fsync, by kind (data, all, dir, filesystem).
pub const FSYNC_SECONDS: &str = "sluice_fsync_duration_seconds";
/// Produce requests (and state-log writes) answered by one group-commit round.
pub const GROUP_COMMIT_REQUESTS: &str = "sluice_group_commit_requests";
/// Partitions made durable by one group-commit round.
pub const GROUP_COMMIT_PARTITIONS: &str = "sluice_group_commit_partitions";
/// Requests waiting for the flusher, sampled at each round.
pub const FLUSHER_QUEUE_DEPTH: &str = "sluice_flusher_queue_depth";
/// Rebalances begun, by cause.
pub const GROUP_REBALANCES: &str = "sluice_group_rebalances_total";
/// Transactions completed, by outcome (commit or abort).
pub const TXN_COMPLETED: &str = "sluice_transactions_completed_total";
/// COMMIT/ABORT markers written to partitions.
pub const TXN_MARKERS: &str = "sluice_transaction_markers_total";
/// Log cleanings completed.
pub const CLEANER_CLEANINGS: &str = "sluice_log_cleaner_cleanings_total";
/// Bytes of segments the cleaner replaced.
pub const CLEANER_BYTES_READ: &str = "sluice_log_cleaner_bytes_read_total";
/// Bytes of the cleaned segments that replaced them.
pub const CLEANER_BYTES_WRITTEN: &str = "sluice_log_cleaner_bytes_written_total";
/// Time of each cleaning of a partition.
pub const CLEANER_SECONDS: &str = "sluice_log_cleaner_cleaning_seconds";
/// Time a JoinGroup waited for its answer.
pub const JOIN_PARKED_SECONDS: &str = "sluice_group_join_parked_seconds";
/// Time a SyncGroup waited for its answer.
pub const SYNC_PARKED_SECONDS: &str = "sluice_group_sync_parked_seconds";

/// Latency buckets in seconds: 50 µs to 60 s, for requests, fsyncs and parked waits.
const SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Count buckets for group-commit rounds.
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The installed recorder's handle, if [`install`] ran in this process.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder for the process (once; later calls return
/// the same handle). Must run before any handle is cached: handles taken before
/// it record nowhere. `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Some(h);
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Prefix("sluice_group_commit_".into()),
                COUNT_BUCKETS,
            )
        });
    let builder = match builder {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure the metrics recorder");
            return None;
        }
    };
    match builder.install_recorder() {
        Ok(h) => {
            describe();
            let _ = HANDLE.set(h);
            HANDLE.get()
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

/// The installed recorder's handle.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get()
}

fn describe() {
    describe_counter!(REQUESTS, "Requests received, by API and version.");
    describe_counter!(
        REQUEST_ERRORS,
        "Error codes in responses, by API and Kafka error name (one per partition or resource)."
    );
    describe_histogram!(
        REQUEST_PHASE_SECONDS,
        Unit::Seconds,
        "Time of each request phase: queue (frame read to handler start), handle, send."
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Request latency from the whole frame read to the response written."
    );
    describe_counter!(
        REQUEST_BYTES,
        Unit::Bytes,
        "Request bytes received, by API."
    );
    describe_counter!(RESPONSE_BYTES, Unit::Bytes, "Response bytes sent, by API.");
    describe_counter!(PRODUCE_REJECTED, "Produced batches refused, by reason.");
    describe_counter!(FETCH_PARKED, "Fetches that parked waiting for data.");
    describe_histogram!(
        QUOTA_THROTTLE_SECONDS,
        Unit::Seconds,
        "Throttle times of responses over a client quota, by quota (producer_byte_rate, consumer_byte_rate)."
    );
    describe_counter!(TXN_COMPLETED, "Transactions completed, by outcome.");
    describe_counter!(TXN_MARKERS, "COMMIT/ABORT markers written to partitions.");
    describe_counter!(CLEANER_CLEANINGS, "Log cleanings completed.");
    describe_counter!(
        CLEANER_BYTES_READ,
        Unit::Bytes,
        "Bytes of the segments the log cleaner replaced."
    );
    describe_counter!(
        CLEANER_BYTES_WRITTEN,
        Unit::Bytes,
        "Bytes of the cleaned segments that replaced them."
    );
    describe_histogram!(
        CLEANER_SECONDS,
        Unit::Seconds,
        "Time of each cleaning of a partition."
    );
    describe_counter!(
        FETCH_WOKEN,
        "Parked fetches that ended, by what ended them."
    );
    describe_gauge!(
        HTTP_WS_SESSIONS,
        "WebSocket sessions of the HTTP gateway open now."
    );
    describe_gauge!(
        HTTP_WS_BUFFERED_BYTES,
        Unit::Bytes,
        "Record bytes read for WebSocket consumers and not yet written to their sockets."
    );
    describe_counter!(
        HTTP_WS_RECORDS_SENT,
        "Records pushed to WebSocket consumers."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open.");
    describe_counter!(CONNECTIONS_ACCEPTED, "Client connections accepted.");
    describe_counter!(CONNECTIONS_REFUSED, "Client connections refused, by limit.");
    describe_counter!(CONNECTIONS_CLOSED, "Client connections closed, by reason.");
    describe_histogram!(
        FSYNC_SECONDS,
        Unit::Seconds,
        "Duration of each fsync, by kind."
    );
    describe_histogram!(
        GROUP_COMMIT_REQUESTS,
        "Waiting requests answered by one group-commit round."
    );
    describe_histogram!(
        GROUP_COMMIT_PARTITIONS,
        "Partitions made durable by one group-commit round."
    );
    describe_gauge!(
        FLUSHER_QUEUE_DEPTH,
        "Requests queued for the group-commit flusher, sampled each round."
    );
    describe_counter!(
        GROUP_REBALANCES,
        "Consumer-group rebalances begun, by cause."
    );
    describe_histogram!(
        JOIN_PARKED_SECONDS,
        Unit::Seconds,
        "Time a JoinGroup waited for its answer."
    );
    describe_histogram!(
        SYNC_PARKED_SECONDS,
        Unit::Seconds,
        "Time a SyncGroup waited for its answer."
    );
}

/// Handles for one API (and one version): what each request records.
#[derive(Clone)]
pub struct ApiMetrics {
    /// `sluice_requests_total{api, version}`.
    pub requests: Counter,
    /// `sluice_request_bytes_total{api}`.
    pub request_bytes: Counter,
    /// `sluice_response_bytes_total{api}`.
    pub response_bytes: Counter,
    /// `sluice_request_phase_seconds{api, phase="queue"}`.
    pub queue: Histogram,
    /// `sluice_request_phase_seconds{api, phase="handle"}`.
    pub handle: Histogram,
    /// `sluice_request_phase_seconds{api, phase="send"}`.
    pub send: Histogram,
    /// `sluice_request_duration_seconds{api}`.
    pub total: Histogram,
    /// The API's name, for error counters registered on demand.
    api: &'static str,
}

impl ApiMetrics {
    /// Counts `count` occurrences of `error` (a Kafka error name) in a response.
    pub fn errors(&self, error: &'static str, count: u64) {
        counter!(REQUEST_ERRORS, "api" => self.api, "error" => error).increment(count);
    }
}

/// Cached handles per (API name, version): registered once, then an atomic add.
static API_METRICS: OnceLock<Mutex<HashMap<(&'static str, i16), ApiMetrics>>> = OnceLock::new();

/// The handles of one API version (`api` is a static name such as "Produce").
pub fn api(api: &'static str, version: i16) -> ApiMetrics {
    let table = API_METRICS.get_or_init(Default::default);
    let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
    t.entry((api, version))
        .or_insert_with(|| {
            let phase =
                |p: &'static str| histogram!(REQUEST_PHASE_SECONDS, "api" => api, "phase" => p);
            ApiMetrics {
                requests: counter!(REQUESTS, "api" => api, "version" => version.to_string()),
                request_bytes: counter!(REQUEST_BYTES, "api" => api),
                response_bytes: counter!(RESPONSE_BYTES, "api" => api),
                queue: phase("queue"),
                handle: phase("handle"),
                send: phase("send"),
                total: histogram!(REQUEST_SECONDS, "api" => api),
                api,
            }
        })
        .clone()
}

/// Per-topic traffic counters, held by the topic (shared by every `Topic` value
/// CreatePartitions makes of it) and rendered at scrape time with the topic, so
/// a deleted topic's series go with it. The data path pays one atomic add each.
#[derive(Debug, Default)]
pub struct TopicTraffic {
    /// Records appended.
    pub records_in: AtomicU64,
    /// Batch bytes appended.
    pub bytes_in: AtomicU64,
    /// Offsets sent by Fetch.
    pub records_out: AtomicU64,
    /// Batch bytes sent by Fetch.
    pub bytes_out: AtomicU64,
}

impl TopicTraffic {
    /// Counts an append.
    pub fn appended(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts records sent to a consumer.
    pub fn fetched(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `(records in, bytes in, records out, bytes out)`.
    pub fn read(&self) -> [u64; 4] {
        [
            self.records_in.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.records_out.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        ]
    }
}

/// Counts a refused produced batch.
pub fn produce_rejected(reason: &'static str) {
    counter!(PRODUCE_REJECTED, "reason" => reason).increment(1);
}

/// Counts a response throttled for `ms` by the quota `quota`.
pub fn throttled(quota: &'static str, ms: u64) {
    histogram!(QUOTA_THROTTLE_SECONDS, "quota" => quota).record(ms as f64 / 1000.0);
}

/// Moves the open WebSocket sessions gauge by `delta`.
pub fn http_ws_sessions(delta: i32) {
    gauge!(HTTP_WS_SESSIONS).increment(f64::from(delta));
}

/// Moves the WebSocket buffered-bytes gauge by `delta`.
pub fn http_ws_buffered(delta: f64) {
    gauge!(HTTP_WS_BUFFERED_BYTES).increment(delta);
}

/// Counts records pushed to WebSocket consumers.
pub fn http_ws_records_sent(n: u64) {
    counter!(HTTP_WS_RECORDS_SENT).increment(n);
}

/// Counts a fetch that parked.
pub fn fetch_parked() {
    counter!(FETCH_PARKED).increment(1);
}

/// Counts a parked fetch ending: `by` is "data", "timeout" or "shutdown".
pub fn fetch_woken(by: &'static str) {
    counter!(FETCH_WOKEN, "by" => by).increment(1);
}

/// Kafka client connections open now (also for the console, which must not
/// depend on the Prometheus recorder being installed).
static OPEN_CONNECTIONS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Counts a Kafka connection opening.
pub fn connection_opened() {
    OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    gauge!(CONNECTIONS_OPEN).increment(1.0);
}

/// Counts a Kafka connection going away.
pub fn connection_gone() {
    OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    gauge!(CONNECTIONS_OPEN).decrement(1.0);
}

/// Kafka client connections open now.
pub fn connections_open_now() -> i64 {
    OPEN_CONNECTIONS.load(Ordering::Relaxed)
}

/// Counts an accepted connection.
pub fn connection_accepted() {
    counter!(CONNECTIONS_ACCEPTED).increment(1);
}

/// Counts a connection refused by `limit` (e.g. "per_ip").
pub fn connection_refused(limit: &'static str) {
    counter!(CONNECTIONS_REFUSED, "limit" => limit).increment(1);
}

/// Counts a closed connection by `reason`.
pub fn connection_closed(reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// Records one fsync of `kind` that started at `started`.
pub fn fsync(kind: &'static str, started: Instant) {
    histogram!(FSYNC_SECONDS, "kind" => kind).record(started.elapsed().as_secs_f64());
}

/// Records one group-commit round.
pub fn group_commit(requests: usize, partitions: usize, queued: usize) {
    histogram!(GROUP_COMMIT_REQUESTS).record(requests as f64);
    histogram!(GROUP_COMMIT_PARTITIONS).record(partitions as f64);
    gauge!(FLUSHER_QUEUE_DEPTH).set(queued as f64);
}

/// Counts a completed transaction and the markers it wrote.
pub fn txn_markers(commit: bool, markers: usize) {
    let outcome = if commit { "commit" } else { "abort" };
    counter!(TXN_COMPLETED, "outcome" => outcome).increment(1);
    counter!(TXN_MARKERS).increment(markers as u64);
}

/// Records one cleaning: bytes replaced, bytes written, its duration.
pub fn cleaning_done(before: u64, after: u64, seconds: f64) {
    counter!(CLEANER_CLEANINGS).increment(1);
    counter!(CLEANER_BYTES_READ).increment(before);
    counter!(CLEANER_BYTES_WRITTEN).increment(after);
    histogram!(CLEANER_SECONDS).record(seconds);
}

/// Counts a rebalance begun for `cause`.
pub fn rebalance(cause: &'static str) {
    counter!(GROUP_REBALANCES, "cause" => cause).increment(1);
}

/// Records how long a JoinGroup (`join`) or SyncGroup waited.
pub fn group_parked(join: bool, started: Instant) {
    let name = if join {
        JOIN_PARKED_SECONDS
    } else {
        SYNC_PARKED_SECONDS
    };
    histogram!(name).record(started.elapsed().as_secs_f64());
}
