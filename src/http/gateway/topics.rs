//! Topics, partitions and brokers metadata, and produce, as REST Proxy v2.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use serde_json::{json, Value};

use super::error::{json_with, ok_json, RestError, V2_JSON};
use super::json::{self, Format};
use super::{Caller, Gateway};
use crate::auth::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::broker::append::{Acks, AppendJob};
use crate::broker::{is_internal, Topic};
use crate::log::decode::{encode_batch, partition_for_key, NewRecord};
use crate::log::AppendError;
use crate::quota::QuotaKind;
use crate::storage::PartitionError;

/// The topic, if it exists and the caller may describe it (an unauthorized
/// caller learns nothing of its existence, as in Kafka's Metadata).
pub(super) fn visible_topic(
    gw: &Gateway,
    caller: &Caller,
    name: &str,
) -> Result<Arc<Topic>, RestError> {
    if is_internal(name) || !gw.may(caller, Operation::Describe, ResourceType::Topic, name) {
        return Err(RestError::topic_not_found());
    }
    gw.broker.topic(name).ok_or_else(RestError::topic_not_found)
}

/// A partition's metadata: this broker leads every partition.
fn partition_json(gw: &Gateway, index: i32) -> Value {
    let node = gw.broker.config.node_id;
    json!({
        "partition": index,
        "leader": node,
        "replicas": [{"broker": node, "leader": true, "in_sync": true}],
    })
}

/// `GET /brokers`.
pub(super) async fn brokers(State(gw): State<Arc<Gateway>>) -> Response {
    ok_json(&json!({"brokers": [gw.broker.config.node_id]}))
}

/// `GET /topics`: the names the caller may describe.
pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let mut names: Vec<String> = gw
        .broker
        .topics()
        .iter()
        .filter(|t| !is_internal(&t.name))
        .filter(|t| gw.may(&caller, Operation::Describe, ResourceType::Topic, &t.name))
        .map(|t| t.name.clone())
        .collect();
    names.sort();
    ok_json(&json!(names))
}

/// `GET /topics/{topic}`: partitions, and configs when the caller may describe them.
pub(super) async fn describe(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
) -> Result<Response, RestError> {
    let t = visible_topic(&gw, &caller, &topic)?;
    let configs: BTreeMap<String, String> = if gw.may(
        &caller,
        Operation::DescribeConfigs,
        ResourceType::Topic,
        &topic,
    ) {
        t.configs()
    } else {
        BTreeMap::new()
    };
    let partitions: Vec<Value> = (0..t.partitions.len())
        .map(|i| partition_json(&gw, i as i32))
        .collect();
    Ok(ok_json(&json!({
        "name": t.name,
        "configs": configs,
        "partitions": partitions,
    })))
}

/// `GET /topics/{topic}/partitions`.
pub(super) async fn partitions(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
) -> Result<Response, RestError> {
    let t = visible_topic(&gw, &caller, &topic)?;
    let list: Vec<Value> = (0..t.partitions.len())
        .map(|i| partition_json(&gw, i as i32))
        .collect();
    Ok(ok_json(&Value::Array(list)))
}

/// The partition of a path, or 404 40402.
fn path_partition(t: &Topic, partition: &str) -> Result<i32, RestError> {
    partition
        .parse::<i32>()
        .ok()
        .filter(|p| t.partition(*p).is_some())
        .ok_or_else(RestError::partition_not_found)
}

/// `GET /topics/{topic}/partitions/{partition}`.
pub(super) async fn partition(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((topic, partition)): Path<(String, String)>,
) -> Result<Response, RestError> {
    let t = visible_topic(&gw, &caller, &topic)?;
    let p = path_partition(&t, &partition)?;
    Ok(ok_json(&partition_json(&gw, p)))
}

/// `GET /topics/{topic}/partitions/{partition}/offsets`: log start and high watermark.
pub(super) async fn partition_offsets(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((topic, partition)): Path<(String, String)>,
) -> Result<Response, RestError> {
    let t = visible_topic(&gw, &caller, &topic)?;
    let p = path_partition(&t, &partition)?;
    let part = t.partition(p).ok_or_else(RestError::partition_not_found)?;
    Ok(ok_json(&json!({
        "beginning_offset": part.log_start_offset(),
        "end_offset": part.high_watermark(),
    })))
}

/// `POST /topics/{topic}`.
pub(super) async fn produce(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RestError> {
    produce_records(&gw, &caller, &topic, None, &headers, body).await
}

/// `POST /topics/{topic}/partitions/{partition}`.
pub(super) async fn produce_to_partition(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((topic, partition)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RestError> {
    let p = partition
        .parse::<i32>()
        .map_err(|_| RestError::partition_not_found())?;
    produce_records(&gw, &caller, &topic, Some(p), &headers, body).await
}

/// One record of a produce request, parsed.
struct Incoming {
    /// The partition it names, if any.
    partition: Option<i32>,
    /// Its key and value.
    record: NewRecord,
}

/// Parses `{"records": [...]}` in `format`.
fn parse_records(format: Format, body: &[u8]) -> Result<Vec<Incoming>, RestError> {
    let m = json::object(body)?;
    let records = m
        .get("records")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| RestError::unprocessable(422, "records may not be empty"))?;
    for schema in [
        "key_schema",
        "key_schema_id",
        "value_schema",
        "value_schema_id",
    ] {
        if m.get(schema).is_some_and(|v| !v.is_null()) {
            return Err(RestError::unprocessable(
                422,
                format!("{schema} needs a Schema Registry, which Sluice does not have"),
            ));
        }
    }
    records
        .iter()
        .map(|r| {
            let r = r
                .as_object()
                .ok_or_else(|| RestError::unprocessable(422, "a record must be an object"))?;
            let partition =
                match r.get("partition") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().and_then(|p| i32::try_from(p).ok()).ok_or_else(
                        || RestError::unprocessable(422, "partition must be an int"),
                    )?),
                };
            Ok(Incoming {
                partition,
                record: NewRecord {
                    key: json::embedded_bytes(format, r.get("key"), "key")?,
                    value: json::embedded_bytes(format, r.get("value"), "value")?,
                    headers: Vec::new(),
                },
            })
        })
        .collect()
}

/// REST Proxy's code for a failed append: 50003 when a retry may succeed,
/// 50002 when it will not.
pub(super) fn append_error(e: &PartitionError) -> (u32, String) {
    let retriable = match e {
        PartitionError::Offline | PartitionError::Io(_) | PartitionError::Deleted => true,
        PartitionError::Append(AppendError::Io(_)) => true,
        PartitionError::Append(_) | PartitionError::Read(_) => false,
    };
    (if retriable { 50003 } else { 50002 }, e.to_string())
}

/// The topic a caller may write to, created if missing and allowed
/// (auto-creation on, CREATE on the topic or the cluster). `Err(None)` when
/// the ACLs deny WRITE: callers answer that per record.
pub(super) async fn writable_topic(
    gw: &Gateway,
    caller: &Caller,
    topic: &str,
) -> Result<Arc<Topic>, Option<RestError>> {
    if is_internal(topic) || !gw.may(caller, Operation::Write, ResourceType::Topic, topic) {
        return Err(None);
    }
    match gw.broker.topic(topic) {
        Some(t) => Ok(t),
        None if gw.may(caller, Operation::Create, ResourceType::Topic, topic)
            || gw.may(
                caller,
                Operation::Create,
                ResourceType::Cluster,
                CLUSTER_NAME,
            ) =>
        {
            gw.broker
                .get_or_create(topic)
                .await
                .map_err(|_| Some(RestError::topic_not_found()))
        }
        None => Err(Some(RestError::topic_not_found())),
    }
}

/// The partition of a record: the one named, else where Kafka's default
/// partitioner puts its key, else the next in turn. 404 40402 for a partition
/// the topic does not have.
pub(super) fn choose_partition(
    gw: &Gateway,
    t: &Topic,
    named: Option<i32>,
    key: Option<&[u8]>,
) -> Result<i32, RestError> {
    let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX).max(1);
    let p = match (named, key) {
        (Some(p), _) => p,
        (None, Some(k)) => partition_for_key(k, count),
        (None, None) => (gw.next_partition.fetch_add(1, Ordering::Relaxed) % count as u32) as i32,
    };
    t.partition(p)
        .map(|_| p)
        .ok_or_else(RestError::partition_not_found)
}

/// Batches a produce request is cut into, at most (a record bigger than
/// this goes alone): well under the default `max.message.bytes`, so a large
/// request of small records is never refused for its total.
const PRODUCE_BATCH_BYTES: usize = 256 << 10;

/// The append jobs of `records` (in order, in batches of at most
/// [`PRODUCE_BATCH_BYTES`] per partition): the jobs, each job's partition,
/// and per record its job and index in that job's batch.
#[allow(clippy::type_complexity)]
fn batches(
    t: &Arc<Topic>,
    records: Vec<(i32, NewRecord)>,
) -> (Vec<AppendJob>, Vec<i32>, Vec<(usize, i64)>) {
    let mut by_partition: BTreeMap<i32, Vec<(usize, NewRecord)>> = BTreeMap::new();
    let n = records.len();
    for (i, (p, r)) in records.into_iter().enumerate() {
        by_partition.entry(p).or_default().push((i, r));
    }
    let now = crate::clock::now_ms();
    // Per record: (its job, its index in the job's batch).
    let mut placed = vec![(usize::MAX, 0i64); n];
    let mut job_partition = Vec::new();
    let mut jobs = Vec::new();
    for (p, recs) in by_partition {
        let Some(part) = t.partition(p) else {
            continue;
        };
        let mut batch: Vec<NewRecord> = Vec::new();
        let mut bytes = 0usize;
        let mut flush = |batch: &mut Vec<NewRecord>, jobs: &mut Vec<AppendJob>| {
            if !batch.is_empty() {
                jobs.push(AppendJob {
                    partition: part.clone(),
                    topic: t.clone(),
                    bytes: Bytes::from(encode_batch(now, batch)),
                    check: None,
                });
                job_partition.push(p);
                batch.clear();
            }
        };
        for (i, r) in recs {
            let size = 24
                + r.key.as_ref().map_or(0, Vec::len)
                + r.value.as_ref().map_or(0, Vec::len)
                + r.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 8)
                    .sum::<usize>();
            if !batch.is_empty() && bytes + size > PRODUCE_BATCH_BYTES {
                flush(&mut batch, &mut jobs);
                bytes = 0;
            }
            placed[i] = (jobs.len(), batch.len() as i64);
            batch.push(r);
            bytes += size;
        }
        flush(&mut batch, &mut jobs);
    }
    (jobs, job_partition, placed)
}

/// Appends records to their partitions (in order, in batches of at most
/// [`PRODUCE_BATCH_BYTES`]) and answers once durable (acks=all): per record,
/// its (partition, offset) or REST Proxy's error code and message.
pub(super) async fn append_records(
    gw: &Gateway,
    t: &Arc<Topic>,
    records: Vec<(i32, NewRecord)>,
) -> Vec<Result<(i32, i64), (u32, String)>> {
    if t.min_insync_replicas() > 1 {
        // As Kafka's acks=all with fewer in-sync replicas than required.
        let why = "NOT_ENOUGH_REPLICAS: min.insync.replicas is above 1 and this broker is the only replica";
        return records
            .iter()
            .map(|_| Err((50003, why.to_string())))
            .collect();
    }
    // Encoding a body's worth of records is CPU work: off the workers.
    let topic = t.clone();
    let Ok((jobs, job_partition, placed)) =
        tokio::task::spawn_blocking(move || batches(&topic, records)).await
    else {
        return Vec::new();
    };
    let results = gw.broker.append_batches(jobs, Acks::Durable).await;
    placed
        .into_iter()
        .map(|(job, i)| match results.get(job) {
            Some(Ok(info)) => Ok((job_partition[job], info.base_offset + i)),
            Some(Err(e)) => Err(append_error(e)),
            None => Err((40402, "Partition not found.".to_string())),
        })
        .collect()
}

/// Produces a request's records: keyed ones where Kafka's default
/// partitioner puts them, the others round-robin, unless a partition is
/// named. Answers once every batch is durable (acks=all).
async fn produce_records(
    gw: &Arc<Gateway>,
    caller: &Caller,
    topic: &str,
    path_partition: Option<i32>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, RestError> {
    let format = json::produce_format(headers)?;
    let size = body.len() as u64;
    // Parsing and base64 of up to a body's bytes: off the workers.
    let records = tokio::task::spawn_blocking(move || parse_records(format, &body))
        .await
        .map_err(|e| RestError::kafka(format!("the request failed: {e}")))??;
    let t = match writable_topic(gw, caller, topic).await {
        Ok(t) => t,
        Err(Some(e)) => return Err(e),
        Err(None) => {
            // As REST Proxy: each record fails with the producer's authorization error.
            let offsets: Vec<Value> = records
                .iter()
                .map(|_| {
                    json!({"partition": null, "offset": null, "error_code": 40301,
                        "error": format!("Not authorized to access topics: [{topic}]")})
                })
                .collect();
            return Ok(produce_response(StatusCode::FORBIDDEN, offsets));
        }
    };
    let mut placed = Vec::with_capacity(records.len());
    for r in records {
        let p = choose_partition(
            gw,
            &t,
            path_partition.or(r.partition),
            r.record.key.as_deref(),
        )?;
        placed.push((p, r.record));
    }
    gw.throttle(caller, QuotaKind::Produce, size).await;
    let offsets: Vec<Value> = append_records(gw, &t, placed)
        .await
        .into_iter()
        .map(|r| match r {
            Ok((p, offset)) => {
                json!({"partition": p, "offset": offset, "error_code": null, "error": null})
            }
            Err((code, message)) => {
                json!({"partition": null, "offset": null, "error_code": code, "error": message})
            }
        })
        .collect();
    Ok(produce_response(StatusCode::OK, offsets))
}

/// REST Proxy's ProduceResponse.
fn produce_response(status: StatusCode, offsets: Vec<Value>) -> Response {
    json_with(
        status,
        V2_JSON,
        &json!({"offsets": offsets, "key_schema_id": null, "value_schema_id": null}),
    )
}
