//! Fetch v4-v18: whole batches straight from segment files, long-polling on a
//! notification until `min_bytes` are available or `max_wait_ms` passes.
//! Fetch sessions (KIP-227) are declined: every response carries session id 0,
//! so clients keep sending full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::FetchRequest;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{describe, partition_error_code, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::log::FileSlice;
use crate::metrics::{self, TopicTraffic};
use crate::protocol::{
    encode_fetch, error, FetchPartitionReply, FetchReply, FetchTopicReply, ResponseFrame,
};
use crate::quota::QuotaKind;
use crate::storage::Partition;

/// One requested partition, resolved.
struct Want {
    /// Index of its topic in the reply.
    topic: usize,
    /// Partition number.
    index: i32,
    /// The partition, if it exists.
    partition: Option<Arc<Partition>>,
    /// The error for a missing topic or partition (by name or by id).
    unknown_code: i16,
    /// Where to read from.
    fetch_offset: i64,
    /// The client's per-partition byte limit.
    partition_max_bytes: i32,
    /// The topic's traffic counters, if the topic exists.
    metrics: Option<Arc<TopicTraffic>>,
}

/// What a read found for one partition.
struct Found {
    /// Kafka error code for the partition.
    error_code: i16,
    /// Whole batches to send, if any.
    records: Option<FileSlice>,
    /// read_committed: the aborted transactions overlapping `records`, as
    /// (producer id, first offset).
    aborted: Vec<(i64, i64)>,
}

impl Found {
    /// No records, with this error code.
    fn empty(error_code: i16) -> Found {
        Found {
            error_code,
            records: None,
            aborted: Vec::new(),
        }
    }
}

/// Reads every wanted partition once, within the response budget (blocking);
/// read_committed reads stop at each partition's last stable offset.
fn read_all(wants: &[Want], max_bytes: u64, read_committed: bool) -> Vec<Found> {
    let mut remaining = max_bytes;
    let mut first = true;
    wants
        .iter()
        .map(|w| {
            let Some(p) = &w.partition else {
                return Found::empty(w.unknown_code);
            };
            let limit = u64::try_from(w.partition_max_bytes.max(0))
                .unwrap_or(0)
                .min(remaining);
            if limit == 0 && !first {
                return Found::empty(error::NONE);
            }
            let read = if read_committed {
                p.read_committed_blocking(w.fetch_offset, limit.max(1))
            } else {
                p.read_blocking(w.fetch_offset, limit.max(1))
                    .map(|s| (s, Vec::new()))
            };
            match read {
                Ok((Some(slice), aborted)) => {
                    // Kafka's rule: the first partition with data always gets one whole
                    // batch, so a consumer never stalls on a batch above its limits.
                    if !first && slice.len > limit {
                        return Found::empty(error::NONE);
                    }
                    first = false;
                    remaining = remaining.saturating_sub(slice.len);
                    Found {
                        error_code: error::NONE,
                        records: Some(slice),
                        aborted: aborted
                            .iter()
                            .map(|a| (a.producer_id, a.first_offset))
                            .collect(),
                    }
                }
                Ok((None, _)) => Found::empty(error::NONE),
                Err(e) => {
                    let error_code = partition_error_code(&e);
                    if e.io_error().is_some() {
                        tracing::error!(partition = p.index, error = %describe(&e), "fetch read failed");
                    }
                    Found::empty(error_code)
                }
            }
        })
        .collect()
}

/// Handles a Fetch request.
pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    client_id: &str,
    req: FetchRequest,
) -> ResponseFrame {
    let v = ctx.version;
    let mut reply = FetchReply::default();
    // Over its request quota: an empty response with the throttle time, as
    // Kafka answers a throttled fetch (nothing is read or waited for).
    if ctx.throttle_ms > 0 {
        reply.throttle_time_ms = i32::try_from(ctx.throttle_ms).unwrap_or(i32::MAX);
        return encode_fetch(v, ctx.correlation_id, reply);
    }
    if req.session_id != 0 && req.session_epoch != -1 {
        // We never hand out sessions, so any id is unknown.
        reply.error_code = error::FETCH_SESSION_ID_NOT_FOUND;
        return encode_fetch(v, ctx.correlation_id, reply);
    }
    let mut wants = Vec::new();
    // A follower's fetch (a replica id) needs CLUSTER_ACTION, a consumer's
    // READ on each topic, as Kafka.
    let replica = req.replica_id.0 >= 0 || req.replica_state.replica_id.0 >= 0;
    let follower_denied = replica && !ctx.may_cluster(broker, Operation::ClusterAction);
    for (ti, ft) in req.topics.iter().enumerate() {
        let (topic, unknown_code) = if v >= 13 {
            (broker.topic_by_id(&ft.topic_id), error::UNKNOWN_TOPIC_ID)
        } else {
            (broker.topic(&ft.topic.0), error::UNKNOWN_TOPIC_OR_PARTITION)
        };
        // By name, unauthorized comes before unknown; an unknown id stays unknown.
        let name = topic.as_ref().map(|t| t.name.as_str());
        let denied = follower_denied
            || match (v >= 13, name) {
                (true, None) => false,
                (_, n) => !ctx.may(
                    broker,
                    Operation::Read,
                    ResourceType::Topic,
                    n.unwrap_or(&ft.topic.0),
                ),
            };
        let (topic, unknown_code) = if denied {
            (None, error::TOPIC_AUTHORIZATION_FAILED)
        } else {
            (topic, unknown_code)
        };
        reply.topics.push(FetchTopicReply {
            name: topic
                .as_ref()
                .map_or_else(|| ft.topic.0.to_string(), |t| t.name.clone()),
            id: ft.topic_id,
            partitions: Vec::with_capacity(ft.partitions.len()),
        });
        for fp in &ft.partitions {
            let partition = topic.as_ref().and_then(|t| t.partition(fp.partition));
            wants.push(Want {
                topic: ti,
                index: fp.partition,
                partition: partition.cloned(),
                unknown_code: if topic.is_some() {
                    error::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    unknown_code
                },
                fetch_offset: fp.fetch_offset,
                partition_max_bytes: fp.partition_max_bytes,
                metrics: topic.as_ref().map(|t| t.metrics.clone()),
            });
        }
    }
    let max_wait = Duration::from_millis(
        u64::try_from(req.max_wait_ms)
            .unwrap_or(0)
            .min(broker.config.fetch_wait_ms_max),
    );
    let mut max_bytes = u64::try_from(req.max_bytes)
        .unwrap_or(0)
        .clamp(1, u64::from(broker.config.fetch_bytes_max));
    // Under a consumer_byte_rate quota no response may exceed what the quota
    // allows over its window, or it would be throttled forever (as Kafka).
    if let Some(limit) = broker
        .quotas
        .response_limit(QuotaKind::Fetch, ctx.user(), client_id)
    {
        max_bytes = max_bytes.min(limit.max(1));
    }
    let min_bytes = u64::try_from(req.min_bytes).unwrap_or(0);
    let deadline = Instant::now() + max_wait;
    let read_committed = req.isolation_level == 1;
    let notify = Arc::new(Notify::new());
    let mut shutdown = broker.shutdown_signal();
    let wants = Arc::new(wants);
    let mut parked = false;
    let found = loop {
        // Register before reading, so an append between the read and the wait still wakes us.
        for w in wants.iter() {
            if let Some(p) = &w.partition {
                p.register_waiter(&notify);
            }
        }
        let ws = wants.clone();
        let found =
            match crate::clock::work::blocking(move || read_all(&ws, max_bytes, read_committed))
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    // A panic while reading: the partition it held is offline now.
                    tracing::error!(error = %e, "fetch task failed");
                    wants
                        .iter()
                        .map(|_| Found::empty(error::KAFKA_STORAGE_ERROR))
                        .collect()
                }
            };
        let bytes: u64 = found
            .iter()
            .filter_map(|f| f.records.as_ref())
            .map(|r| r.len)
            .sum();
        let any_error = found.iter().any(|f| f.error_code != error::NONE);
        let ready = bytes >= min_bytes.max(1) || any_error;
        let stopping = *shutdown.borrow();
        if ready || stopping || Instant::now() >= deadline {
            if parked {
                metrics::fetch_woken(if ready {
                    "data"
                } else if stopping {
                    "shutdown"
                } else {
                    "timeout"
                });
            }
            break found;
        }
        if !parked {
            parked = true;
            metrics::fetch_parked();
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    };
    // consumer_byte_rate: a client already over its quota gets an empty
    // response with the throttle time (its connection then muted); otherwise
    // the data goes out, counted, and the client waits for what it took.
    // (Kafka instead withholds any response that would cross the quota; with
    // a first batch larger than the quota's window that never gets through.)
    let (already, _) = ctx.throttle(broker, client_id, QuotaKind::Fetch, 0);
    if already > 0 {
        let empty = FetchReply {
            throttle_time_ms: i32::try_from(already).unwrap_or(i32::MAX),
            ..FetchReply::default()
        };
        return encode_fetch(v, ctx.correlation_id, empty);
    }
    let bytes: u64 = found
        .iter()
        .filter_map(|f| f.records.as_ref())
        .map(|r| r.len)
        .sum();
    let (throttle, _) = ctx.throttle(broker, client_id, QuotaKind::Fetch, bytes);
    reply.throttle_time_ms = i32::try_from(throttle).unwrap_or(i32::MAX);
    for (w, f) in wants.iter().zip(found) {
        if let (Some(m), Some(r)) = (&w.metrics, &f.records) {
            m.fetched(
                u64::try_from(r.next_offset - w.fetch_offset).unwrap_or(0),
                r.len,
            );
        }
        let (hw, lso, start) = match &w.partition {
            Some(p) if f.error_code != error::KAFKA_STORAGE_ERROR => (
                p.high_watermark(),
                p.last_stable_offset(),
                p.log_start_offset(),
            ),
            _ => (-1, -1, -1),
        };
        reply.topics[w.topic].partitions.push(FetchPartitionReply {
            index: w.index,
            error_code: f.error_code,
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: start,
            aborted: read_committed.then_some(f.aborted),
            records: f.records,
        });
    }
    encode_fetch(v, ctx.correlation_id, reply)
}
