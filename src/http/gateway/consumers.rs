//! REST Proxy v2 consumer calls: instances, subscription, assignments,
//! positions, records and offsets. The state they act on is in `instance`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde_json::{json, Value};

use super::error::{no_content, ok_json, RestError};
use super::instance::{self, Instance, Mode, Reset, Settings, TopicPartition};
use super::json::{self, Format};
use super::reader::Budget;
use super::{query_params, Caller, Gateway};
use crate::auth::acl::{Operation, ResourceType};
use crate::quota::QuotaKind;

/// Path of an instance: group and name.
type InstancePath = Path<(String, String)>;

/// The caller's instance, if it may still read the group.
fn instance(
    gw: &Gateway,
    caller: &Caller,
    group: &str,
    name: &str,
) -> Result<Arc<Instance>, RestError> {
    gw.instances.get(group, name, &caller.principal)
}

/// 403 unless the caller may read the group (Kafka's JoinGroup/OffsetCommit rule).
pub(super) fn may_read_group(gw: &Gateway, caller: &Caller, group: &str) -> Result<(), RestError> {
    if gw.may(caller, Operation::Read, ResourceType::Group, group) {
        Ok(())
    } else {
        Err(RestError::forbidden(format!(
            "Not authorized to access group: {group}"
        )))
    }
}

/// 403 unless the caller may read every topic.
pub(super) fn may_read_topics<'a>(
    gw: &Gateway,
    caller: &Caller,
    topics: impl Iterator<Item = &'a String>,
) -> Result<(), RestError> {
    for t in topics {
        if !gw.may(caller, Operation::Read, ResourceType::Topic, t) {
            return Err(RestError::forbidden(format!(
                "Not authorized to access topics: [{t}]"
            )));
        }
    }
    Ok(())
}

/// A string or boolean setting (`"true"`, `true`).
fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer setting given as a number or a string.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `POST /consumers/{group}`: a new instance.
pub(super) async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RestError> {
    may_read_group(&gw, &caller, &group)?;
    if group.trim().is_empty() {
        return Err(RestError::unprocessable(
            422,
            "The group id may not be empty.",
        ));
    }
    let m = json::object(&body)?;
    let invalid = |what: String| {
        RestError::unprocessable(42204, format!("Invalid consumer configuration: {what}"))
    };
    let name = match m.get("id").or_else(|| m.get("name")) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) => format!("rest-consumer-{}", uuid::Uuid::new_v4()),
        Some(_) => {
            return Err(RestError::unprocessable(
                422,
                "name must be a non-empty string",
            ))
        }
    };
    let format = match m.get("format") {
        None | Some(Value::Null) => Format::Binary,
        Some(Value::String(f)) => match Format::from_name(f) {
            Some(f) => f,
            None if ["avro", "jsonschema", "protobuf"]
                .contains(&f.to_ascii_lowercase().as_str()) =>
            {
                return Err(invalid(format!(
                    "format {f} needs a Schema Registry, which Sluice does not have"
                )))
            }
            None => return Err(RestError::unprocessable(422, "Invalid format type.")),
        },
        Some(_) => return Err(RestError::unprocessable(422, "Invalid format type.")),
    };
    let reset = match m.get("auto.offset.reset").and_then(Value::as_str) {
        None => Reset::Latest,
        Some("earliest") => Reset::Earliest,
        Some("latest") => Reset::Latest,
        Some("none") => Reset::None,
        Some(other) => {
            return Err(invalid(format!(
                "Invalid value {other} for configuration auto.offset.reset: String must be one of: latest, earliest, none"
            )))
        }
    };
    let auto_commit = match m.get("auto.commit.enable") {
        None | Some(Value::Null) => true,
        Some(v) => {
            flag(v).ok_or_else(|| invalid("auto.commit.enable must be true or false".into()))?
        }
    };
    let fetch_min_bytes = match m.get("fetch.min.bytes").or_else(|| m.get("responseMinBytes")) {
        None | Some(Value::Null) => -1,
        Some(v) => int(v)
            .filter(|n| (-1..=10_000_000).contains(n))
            .ok_or_else(|| {
                RestError::unprocessable(
                    40001,
                    "Invalid consumer configuration. It does not abide by the constraints: fetch.min.bytes must be between -1 and 10000000",
                )
            })?,
    };
    let request_timeout_ms = match m
        .get("consumer.request.timeout.ms")
        .or_else(|| m.get("requestWaitMs"))
    {
        None | Some(Value::Null) => None,
        Some(v) => Some(int(v).and_then(|n| u64::try_from(n).ok()).ok_or_else(|| {
            invalid("consumer.request.timeout.ms must be a non-negative integer".into())
        })?),
    };
    let settings = Settings {
        format,
        reset,
        auto_commit,
        fetch_min_bytes,
        request_timeout_ms,
    };
    let host = caller.host.clone();
    gw.instances
        .create(&group, &name, &caller.principal, &host, settings)?;
    let base = match &gw.broker.config.http_advertised_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("{}://{host}", gw.scheme)
        }
    };
    let base_uri = format!(
        "{base}/consumers/{}/instances/{}",
        percent_encode(&group),
        percent_encode(&name)
    );
    Ok(ok_json(&json!({"instance_id": name, "base_uri": base_uri})))
}

/// Percent-encodes a path segment.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `DELETE .../instances/{instance}`.
pub(super) async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
) -> Result<Response, RestError> {
    gw.instances
        .delete(&gw, &group, &name, &caller.principal)
        .await?;
    Ok(no_content())
}

/// `POST .../subscription`: `{"topics": [...]}` or `{"topic_pattern": "..."}`.
pub(super) async fn subscribe(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    body: Bytes,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    may_read_group(&gw, &caller, &group)?;
    let m = json::object(&body)?;
    let topics = m.get("topics").filter(|v| !v.is_null());
    let pattern = m.get("topic_pattern").filter(|v| !v.is_null());
    let mode = match (topics, pattern) {
        (None, None) => return Ok(no_content()),
        (Some(_), Some(_)) => {
            return Err(RestError::unprocessable(
                422,
                "Only one of topics and topic_pattern may be given.",
            ))
        }
        (Some(t), None) => {
            let list: Vec<String> = t
                .as_array()
                .ok_or_else(|| RestError::unprocessable(422, "topics must be a list of names"))?
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| RestError::unprocessable(422, "topics must be a list of names"))?;
            may_read_topics(&gw, &caller, list.iter())?;
            Mode::Topics(list)
        }
        (None, Some(p)) => {
            let p = p
                .as_str()
                .ok_or_else(|| RestError::unprocessable(422, "topic_pattern must be a string"))?;
            regex::Regex::new(p).map_err(|e| {
                RestError::unprocessable(422, format!("Invalid topic_pattern: {e}"))
            })?;
            Mode::Pattern(p.to_string())
        }
    };
    if inst.mode() == Mode::Manual {
        return Err(RestError::illegal_state(
            "Subscription to topics, partitions and pattern are mutually exclusive",
        ));
    }
    inst.subscribe(&gw, mode).await?;
    Ok(no_content())
}

/// `GET .../subscription`.
pub(super) async fn subscription(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    Ok(ok_json(&json!({"topics": inst.subscription(&gw)})))
}

/// `DELETE .../subscription`.
pub(super) async fn unsubscribe(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    inst.unsubscribe(&gw).await;
    Ok(no_content())
}

/// Partitions of a body, each existing; 404 40402 otherwise.
fn existing_partitions(gw: &Gateway, body: &[u8]) -> Result<Vec<TopicPartition>, RestError> {
    let m = json::object(body)?;
    let ps = json::partitions(&m)?;
    for (t, p) in &ps {
        if gw
            .broker
            .topic(t)
            .and_then(|x| x.partition(*p).cloned())
            .is_none()
        {
            return Err(RestError::partition_not_found());
        }
    }
    Ok(ps)
}

/// `POST .../assignments`: manual assignment.
pub(super) async fn assign(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    body: Bytes,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    let ps = existing_partitions(&gw, &body)?;
    may_read_topics(&gw, &caller, ps.iter().map(|(t, _)| t))?;
    if matches!(inst.mode(), Mode::Topics(_) | Mode::Pattern(_)) {
        return Err(RestError::illegal_state(
            "Subscription to topics, partitions and pattern are mutually exclusive",
        ));
    }
    inst.assign(&gw, ps);
    Ok(no_content())
}

/// `GET .../assignments`.
pub(super) async fn assignments(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    let owned = inst.owned();
    Ok(ok_json(
        &json!({"partitions": json::partition_list(owned.iter())}),
    ))
}

/// `POST .../positions`: `{"offsets": [{topic, partition, offset}]}`, or
/// `{"timestamps": [{topic, partition, timestamp}]}` (ISO-8601).
pub(super) async fn seek(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    body: Bytes,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    let m = json::object(&body)?;
    let mut to = Vec::new();
    if let Some(list) = m.get("offsets").and_then(Value::as_array) {
        for o in list {
            let o = o
                .as_object()
                .ok_or_else(|| RestError::unprocessable(422, "an offset must be an object"))?;
            let p = i32::try_from(json::int_field(o, "partition")?)
                .map_err(|_| RestError::partition_not_found())?;
            to.push((
                (json::string_field(o, "topic")?.to_string(), p),
                json::int_field(o, "offset")?,
            ));
        }
    }
    if let Some(list) = m.get("timestamps").and_then(Value::as_array) {
        let mut wanted = Vec::with_capacity(list.len());
        for o in list {
            let o = o
                .as_object()
                .ok_or_else(|| RestError::unprocessable(422, "a timestamp must be an object"))?;
            let p = i32::try_from(json::int_field(o, "partition")?)
                .map_err(|_| RestError::partition_not_found())?;
            let topic = json::string_field(o, "topic")?.to_string();
            let text = json::string_field(o, "timestamp")?;
            let ts = super::iso8601::parse_ms(text).ok_or_else(|| {
                RestError::unprocessable(
                    422,
                    format!("timestamp {text:?} is not an ISO-8601 instant"),
                )
            })?;
            let part = gw
                .broker
                .topic(&topic)
                .and_then(|t| t.partition(p).cloned())
                .ok_or_else(RestError::partition_not_found)?;
            wanted.push(((topic, p), ts, part));
        }
        // The first offset at or after each timestamp (as ListOffsets finds
        // it); past the newest record, the end of the log.
        let limit = gw.broker.config.decompressed_batch_bytes_max;
        let found = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(tp, ts, part)| {
                    let at = match part.find_by_timestamp_blocking(ts) {
                        Ok(Some(batch)) => crate::log::records::search_timestamp(
                            &batch,
                            ts,
                            false,
                            limit,
                            part.log_start_offset(),
                        )
                        .map(|(_, o)| o),
                        Ok(None) => None,
                        Err(e) => return Err(RestError::retriable(e.to_string())),
                    };
                    Ok((tp, at.unwrap_or_else(|| part.high_watermark())))
                })
                .collect::<Result<Vec<_>, RestError>>()
        })
        .await
        .map_err(|e| RestError::kafka(format!("the lookup failed: {e}")))??;
        to.extend(found);
    }
    inst.seek(to)?;
    Ok(no_content())
}

/// `POST .../positions/beginning`.
pub(super) async fn seek_to_beginning(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    body: Bytes,
) -> Result<Response, RestError> {
    seek_to_edge(&gw, &caller, &group, &name, &body, false)
}

/// `POST .../positions/end`.
pub(super) async fn seek_to_end(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    body: Bytes,
) -> Result<Response, RestError> {
    seek_to_edge(&gw, &caller, &group, &name, &body, true)
}

/// Seeks the body's partitions to the log start (`end`: the high watermark).
fn seek_to_edge(
    gw: &Gateway,
    caller: &Caller,
    group: &str,
    name: &str,
    body: &[u8],
    end: bool,
) -> Result<Response, RestError> {
    let inst = instance(gw, caller, group, name)?;
    let ps = existing_partitions(gw, body)?;
    inst.seek_to_edge(gw, ps, end)?;
    Ok(no_content())
}

/// `GET .../records?timeout=&max_bytes=`: a long poll, answered as soon as
/// records are there (or `fetch.min.bytes` of them), else at the timeout.
pub(super) async fn records(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    let format = inst.settings.format;
    if !json::accepts(&headers, format) {
        return Err(RestError::new(
            StatusCode::NOT_ACCEPTABLE,
            40601,
            "The requested embedded data format does not match the deserializer for this consumer instance",
        ));
    }
    may_read_group(&gw, &caller, &group)?;
    may_read_topics(&gw, &caller, inst.owned().iter().map(|(t, _)| t))?;
    let c = &gw.broker.config;
    let default = inst
        .settings
        .request_timeout_ms
        .unwrap_or(c.http_consumer_request_timeout_ms);
    let q = query_params(&query);
    // The first value of a parameter, as JAX-RS's `@QueryParam`.
    let number = |name: &str| {
        q.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    let timeout = match number("timeout") {
        Some(t) if t >= 0 => t as u64,
        _ => default,
    }
    .min(c.http_consumer_request_timeout_max_ms);
    let max_bytes = match number("max_bytes") {
        Some(b) if b > 0 => b as u64,
        _ => u64::MAX,
    }
    .min(c.http_consumer_request_max_bytes);
    let budget = Budget {
        records: c.http_consumer_request_records_max,
        bytes: max_bytes,
    };
    gw.pause(inst.muted_ms()).await;
    let fetched =
        instance::read(&gw, &inst, Duration::from_millis(timeout), budget, format).await?;
    // Over its quota, the instance's next records call waits (the records
    // read now are answered now: their positions already moved).
    let bytes: u64 = fetched.iter().map(|(_, r)| r.size()).sum();
    inst.mute_for(gw.quota_ms(&caller, QuotaKind::Fetch, bytes));
    // Base64 or JSON of up to the byte budget: off the workers.
    let body = tokio::task::spawn_blocking(move || {
        use std::fmt::Write as _;
        let how = match format {
            Format::Binary => json::Embed::Binary,
            Format::Json => json::Embed::Json,
        };
        let bytes: u64 = fetched.iter().map(|(_, r)| r.size()).sum();
        let mut out = String::with_capacity(bytes as usize * 4 / 3 + fetched.len() * 64 + 2);
        out.push('[');
        for (i, ((t, p), r)) in fetched.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"topic\":");
            json::push_str(&mut out, t);
            out.push_str(",\"key\":");
            json::push_embedded(&mut out, how, r.key.as_deref());
            out.push_str(",\"value\":");
            json::push_embedded(&mut out, how, r.value.as_deref());
            let _ = write!(out, ",\"partition\":{p},\"offset\":{}}}", r.offset);
        }
        out.push(']');
        out
    })
    .await
    .map_err(|e| RestError::kafka(format!("the response failed: {e}")))?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response())
}

/// `POST .../offsets`: commits the body's offsets plus one (REST Proxy's
/// convention: the client names the last record it processed), or with no
/// body every position the instance holds.
pub(super) async fn commit(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    body: Bytes,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    may_read_group(&gw, &caller, &group)?;
    let m = json::object(&body)?;
    match m.get("offsets").and_then(Value::as_array) {
        None => inst.commit_all(&gw).await?,
        Some(list) => {
            let mut offsets = Vec::with_capacity(list.len());
            for o in list {
                let o = o
                    .as_object()
                    .ok_or_else(|| RestError::unprocessable(422, "an offset must be an object"))?;
                let t = json::string_field(o, "topic")?.to_string();
                let p = i32::try_from(json::int_field(o, "partition")?)
                    .map_err(|_| RestError::partition_not_found())?;
                let offset = json::int_field(o, "offset")?;
                if offset < -1 {
                    return Err(RestError::unprocessable(422, "offset must be -1 or more"));
                }
                let metadata = o
                    .get("metadata")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                offsets.push(((t, p), offset.saturating_add(1), metadata));
            }
            may_read_topics(&gw, &caller, offsets.iter().map(|((t, _), _, _)| t))?;
            inst.commit(&gw, offsets).await?;
        }
    }
    Ok(ok_json(&json!([])))
}

/// `GET .../offsets` with a body naming partitions: their committed offsets
/// as stored (the +1'd values), leaving out partitions with none.
pub(super) async fn committed(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((group, name)): InstancePath,
    body: Bytes,
) -> Result<Response, RestError> {
    let inst = instance(&gw, &caller, &group, &name)?;
    if gw
        .may(&caller, Operation::Describe, ResourceType::Group, &group)
        .then_some(())
        .is_none()
    {
        return Err(RestError::forbidden(format!(
            "Not authorized to access group: {group}"
        )));
    }
    let m = json::object(&body)?;
    if m.get("partitions").is_none() {
        return Err(RestError::partition_not_found());
    }
    // As OffsetFetch: only topics the caller may describe.
    let ps: Vec<TopicPartition> = json::partitions(&m)?
        .into_iter()
        .filter(|(t, _)| gw.may(&caller, Operation::Describe, ResourceType::Topic, t))
        .collect();
    let found = gw.broker.groups.fetch_offsets(&inst.group, Some(ps));
    let offsets: Vec<Value> = found
        .into_iter()
        .filter_map(|((t, p), c)| {
            let c = c?;
            Some(json!({"topic": t, "partition": p, "offset": c.offset, "metadata": c.metadata}))
        })
        .collect();
    Ok(ok_json(&json!({"offsets": offsets})))
}
