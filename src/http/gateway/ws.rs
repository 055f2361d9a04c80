//! WebSocket consumers and producers (docs/http.md has the frame protocol).
//!
//! A consumer socket pulls with credit: the client grants records (and
//! optionally bytes), the broker pushes while credit lasts and never more.
//! The session reads the log only while it has credit, one frame's worth at
//! a time, and awaits the socket before reading again, so a client that
//! grants nothing costs no buffered records. Consumers in a group are group
//! members (the same `Instance` as REST consumers); acks commit.
//!
//! Pulsar's WebSocket consumer, reader and producer (`/ws/v2/...`) map onto
//! the same sessions: `permit` frames (pull mode) and `receiverQueueSize`
//! (push mode) are credit, `messageId` acks commit.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::Extension;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::consumers::{may_read_group, may_read_topics};
use super::error::RestError;
use super::instance::{self, Instance, Mode, Reset, Settings, TopicPartition};
use super::json::{self, Embed, Format};
use super::reader::{Budget, Fetched};
use super::topics::{append_records, choose_partition, visible_topic, writable_topic};
use super::{pulsar, query_param, query_params, Caller, Gateway};
use crate::log::decode::{DecodedRecord, NewRecord};
use crate::quota::QuotaKind;

/// How long one parked read waits before it is started again (the socket
/// is served meanwhile; this only bounds a read's life).
pub(super) const READ_WAIT: Duration = Duration::from_secs(30);
/// Most records in one native frame.
const FRAME_RECORDS_MAX: u64 = 1000;
/// The smallest read of the log a frame starts with.
const READ_BYTES_MIN: u64 = 64 << 10;
/// Pulsar caps `receiverQueueSize` at this.
const PULSAR_QUEUE_MAX: u64 = 1000;

/// A WebSocket close code: the client broke the protocol.
const POLICY: u16 = 1008;
/// A WebSocket close code: the server failed.
const INTERNAL: u16 = 1011;

/// How records and keys are written for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// An embedded format (base64 or JSON).
    Embedded(Format),
    /// UTF-8 text, invalid bytes replaced (for people and browsers).
    Text,
}

impl Encoding {
    pub(super) fn parse(v: Option<String>) -> Result<Encoding, RestError> {
        match v.as_deref().unwrap_or("binary") {
            "binary" => Ok(Encoding::Embedded(Format::Binary)),
            "json" => Ok(Encoding::Embedded(Format::Json)),
            "string" => Ok(Encoding::Text),
            other => Err(RestError::unprocessable(
                422,
                format!("Unknown format {other:?} (binary, json, string)."),
            )),
        }
    }

    /// What the reader must check (a JSON client needs JSON).
    pub(super) fn read_format(self) -> Format {
        match self {
            Encoding::Embedded(f) => f,
            Encoding::Text => Format::Binary,
        }
    }

    /// How keys and values are written.
    pub(super) fn embed(self) -> Embed {
        match self {
            Encoding::Embedded(Format::Binary) => Embed::Binary,
            Encoding::Embedded(Format::Json) => Embed::Json,
            Encoding::Text => Embed::Text,
        }
    }

    /// Bytes of a key or value a producer sent.
    fn bytes(self, v: Option<&Value>, what: &str) -> Result<Option<Vec<u8>>, RestError> {
        match (self, v) {
            (Encoding::Embedded(f), v) => json::embedded_bytes(f, v, what),
            (Encoding::Text, None | Some(Value::Null)) => Ok(None),
            (Encoding::Text, Some(Value::String(s))) => Ok(Some(s.clone().into_bytes())),
            (Encoding::Text, Some(_)) => {
                Err(RestError::bad_request(format!("{what} must be a string")))
            }
        }
    }
}

/// Settings of a session's consumer: no auto-commit (acks commit).
fn session_settings(reset: Reset) -> Settings {
    Settings {
        format: Format::Binary,
        reset,
        auto_commit: false,
        fetch_min_bytes: -1,
        request_timeout_ms: None,
    }
}

/// 403 unless the caller may read the topic (and the group, if any).
pub(super) fn may_consume(
    gw: &Gateway,
    caller: &Caller,
    topics: &[String],
    group: Option<&str>,
) -> Result<(), RestError> {
    if let Some(g) = group {
        may_read_group(gw, caller, g)?;
    }
    for t in topics {
        visible_topic(gw, caller, t)?;
        may_read_topics(gw, caller, std::iter::once(t))?;
    }
    Ok(())
}

/// Where a session without a group starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// The log start.
    Earliest,
    /// The end of the log.
    Latest,
    /// An offset.
    At(i64),
}

/// The partitions of `topics` (or only `partition` of each), checked to exist.
pub(super) fn partitions_of(
    gw: &Gateway,
    caller: &Caller,
    topics: &[String],
    partition: Option<i32>,
) -> Result<Vec<TopicPartition>, RestError> {
    let mut parts: Vec<TopicPartition> = Vec::new();
    for t in topics {
        let topic = visible_topic(gw, caller, t)?;
        match partition {
            Some(p) if topic.partition(p).is_none() => return Err(RestError::partition_not_found()),
            Some(p) => parts.push((t.clone(), p)),
            None => parts.extend((0..topic.partitions.len() as i32).map(|p| (t.clone(), p))),
        }
    }
    Ok(parts)
}

/// Where a session in no group starts (`offset`: earliest, latest or a
/// number; latest by default) and the one partition it reads, if named.
pub(super) fn start_of(q: &[(String, String)]) -> Result<(Start, Option<i32>), RestError> {
    let start = match query_param(q, "offset").as_deref() {
        None | Some("latest") => Start::Latest,
        Some("earliest") => Start::Earliest,
        Some(n) => Start::At(n.parse().map_err(|_| {
            RestError::unprocessable(422, "offset is earliest, latest or a number")
        })?),
    };
    let partition = match query_param(q, "partition") {
        None => None,
        Some(p) => Some(p.parse().map_err(|_| RestError::partition_not_found())?),
    };
    Ok((start, partition))
}

/// What a consumer session reads: checked before the upgrade, started after
/// it, so an upgrade that fails leaves no group member behind.
pub(super) enum Plan {
    /// A member of `group` subscribed to `topics`.
    Member {
        /// The group.
        group: String,
        /// Its topics.
        topics: Vec<String>,
        /// Where to start without a committed offset.
        reset: Reset,
    },
    /// These partitions from `start`, in no group.
    Partitions {
        /// The partitions.
        parts: Vec<TopicPartition>,
        /// Where to start.
        start: Start,
    },
}

impl Plan {
    /// The session's consumer; the group's refusal, if any.
    pub(super) async fn start(
        self,
        gw: &Arc<Gateway>,
        caller: &Caller,
    ) -> Result<Arc<Instance>, RestError> {
        let name = format!("ws-{}", uuid::Uuid::new_v4());
        // Sessions are not in the registry: they live as long as their socket.
        let timeout = Duration::from_secs(u64::MAX / 4);
        match self {
            Plan::Member {
                group,
                topics,
                reset,
            } => {
                let inst = Instance::new(
                    &group,
                    &name,
                    &caller.principal,
                    &caller.host,
                    session_settings(reset),
                    timeout,
                );
                if let Err(e) = inst.subscribe(gw, Mode::Topics(topics)).await {
                    instance::close(gw, &inst).await;
                    return Err(e);
                }
                Ok(inst)
            }
            Plan::Partitions { parts, start } => {
                let inst = Instance::new(
                    "",
                    &name,
                    &caller.principal,
                    &caller.host,
                    session_settings(Reset::Latest),
                    timeout,
                );
                inst.assign(gw, parts.clone());
                let placed = match start {
                    Start::Earliest => inst.seek_to_edge(gw, parts, false),
                    Start::Latest => inst.seek_to_edge(gw, parts, true),
                    Start::At(o) => inst.seek(parts.into_iter().map(|tp| (tp, o)).collect()),
                };
                if let Err(e) = placed {
                    instance::close(gw, &inst).await;
                    return Err(e);
                }
                Ok(inst)
            }
        }
    }
}

/// Bounds every frame a client may send.
fn limited(ws: WebSocketUpgrade, gw: &Gateway) -> WebSocketUpgrade {
    let max = gw.broker.config.http_request_body_max_bytes;
    // No cap on the write buffer: a session writes one frame and awaits
    // it before reading more, and a frame (whose first record may be as large
    // as max.message.bytes) must never be refused for its size.
    ws.max_message_size(max).max_frame_size(max)
}

/// `GET /v1/ws/consume?topic=&group=&partition=&offset=&format=`.
pub(super) async fn consume(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, RestError> {
    let q = query_params(&query);
    let topics: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "topic")
        .map(|(_, v)| v.clone())
        .collect();
    if topics.is_empty() {
        return Err(RestError::unprocessable(
            422,
            "Name at least one topic (topic=...).",
        ));
    }
    let encoding = Encoding::parse(query_param(&q, "format"))?;
    let group = query_param(&q, "group").filter(|g| !g.is_empty());
    let offset = query_param(&q, "offset");
    may_consume(&gw, &caller, &topics, group.as_deref())?;
    let plan = match &group {
        Some(g) => {
            let reset = match offset.as_deref() {
                None | Some("latest") => Reset::Latest,
                Some("earliest") => Reset::Earliest,
                Some(_) => return Err(RestError::unprocessable(422, "With a group, offset is earliest or latest (where to start without a committed offset).")),
            };
            Plan::Member {
                group: g.clone(),
                topics: topics.clone(),
                reset,
            }
        }
        None => {
            let (start, partition) = start_of(&q)?;
            Plan::Partitions {
                parts: partitions_of(&gw, &caller, &topics, partition)?,
                start,
            }
        }
    };
    let dialect = Dialect::Native {
        encoding,
        group: group.is_some(),
        topics,
    };
    Ok(limited(ws, &gw)
        .on_upgrade(move |socket| consume_session(gw, socket, caller, plan, dialect, 0)))
}

/// What an individual ack did.
enum Ack {
    /// It matched no delivery (a duplicate, or an id never sent).
    Unknown,
    /// It matched, and the offset to commit moved here.
    Moved(i64),
    /// It matched; an earlier delivery still holds the commit back.
    Held,
}

/// Per-partition acknowledgement state of a Pulsar consumer: individual
/// acks become a cumulative commit below the lowest unacknowledged offset.
#[derive(Default)]
struct Acks {
    /// Delivered and not acknowledged, per partition.
    outstanding: BTreeMap<i32, BTreeSet<i64>>,
    /// The offset after the last delivered, per partition.
    delivered_to: BTreeMap<i32, i64>,
    /// The last offset committed, per partition.
    committed: BTreeMap<i32, i64>,
}

impl Acks {
    fn delivered(&mut self, p: i32, offset: i64) {
        self.outstanding.entry(p).or_default().insert(offset);
        self.delivered_to.insert(p, offset + 1);
    }

    fn count(&self) -> u64 {
        self.outstanding.values().map(|s| s.len() as u64).sum()
    }

    /// Acknowledges one offset.
    fn ack(&mut self, p: i32, offset: i64) -> Ack {
        let Some(set) = self.outstanding.get_mut(&p) else {
            return Ack::Unknown;
        };
        if !set.remove(&offset) {
            return Ack::Unknown;
        }
        let Some(to) = set
            .first()
            .copied()
            .or_else(|| self.delivered_to.get(&p).copied())
        else {
            return Ack::Held;
        };
        if self.committed.get(&p).is_some_and(|c| *c >= to) {
            return Ack::Held;
        }
        self.committed.insert(p, to);
        Ack::Moved(to)
    }

    /// Forgets deliveries at or after `offset` (they come again).
    fn rewind(&mut self, p: i32, offset: i64) {
        if let Some(set) = self.outstanding.get_mut(&p) {
            set.retain(|o| *o < offset);
        }
        self.delivered_to.insert(p, offset);
    }
}

/// The frame protocol a session speaks.
enum Dialect {
    /// Sluice's own (`/v1/ws/consume`).
    Native {
        /// How records are written.
        encoding: Encoding,
        /// Whether acks commit (a group member).
        group: bool,
        /// The topics (an ack may omit its topic when there is one).
        topics: Vec<String>,
    },
    /// Pulsar's consumer or reader.
    Pulsar {
        /// The Kafka topic.
        topic: String,
        /// `pullMode=true`: only `permit` frames grant credit.
        pull: bool,
        /// A reader: acks return credit but commit nothing.
        reader: bool,
        /// The push-mode window (`receiverQueueSize`).
        queue: u64,
        /// Acks and commits.
        acks: Acks,
    },
}

/// What a client frame asks for.
enum Command {
    /// Nothing to do.
    None,
    /// More credit.
    Credit { records: u64, bytes: Option<u64> },
    /// Commit (the next offset to read) for a partition.
    Commit(TopicPartition, i64),
    /// Move a partition's position (drops the read in flight).
    Seek(TopicPartition, i64),
    /// A delivery was acknowledged; nothing to commit (yet).
    Acked,
    /// Send this frame back.
    Reply(String),
    /// An error frame, the session goes on.
    Error(RestError),
    /// Close with this code and reason.
    Close(u16, String),
}

impl Dialect {
    /// Parses one client frame.
    fn command(&mut self, text: &str, credit: u64, credit_max: u64) -> Command {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) else {
            return match self {
                Dialect::Native { .. } => {
                    Command::Close(POLICY, "a frame that is not a JSON object".into())
                }
                Dialect::Pulsar { .. } => {
                    Command::Close(POLICY, "Failed to deserialize from JSON".into())
                }
            };
        };
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
        match self {
            Dialect::Native { group, topics, .. } => {
                let tp = |m: &Map<String, Value>| -> Result<(TopicPartition, i64), RestError> {
                    let topic = match m.get("topic").and_then(Value::as_str) {
                        // Only the session's topics: READ was checked on those.
                        Some(t) if !topics.iter().any(|x| x == t) => {
                            return Err(RestError::illegal_state(format!(
                                "{t} is not a topic of this socket"
                            )))
                        }
                        Some(t) => t.to_string(),
                        None if topics.len() == 1 => topics[0].clone(),
                        None => return Err(RestError::unprocessable(422, "topic may not be null")),
                    };
                    let p = i32::try_from(json::int_field(m, "partition")?)
                        .map_err(|_| RestError::partition_not_found())?;
                    Ok(((topic, p), json::int_field(m, "offset")?))
                };
                match kind {
                    "credit" => {
                        let records = m.get("records").and_then(Value::as_u64).unwrap_or(0);
                        let bytes = m.get("bytes").and_then(Value::as_u64);
                        if credit.saturating_add(records) > credit_max {
                            return Command::Close(
                                POLICY,
                                format!("credit over {credit_max} records (--http-ws-credit-records-max)"),
                            );
                        }
                        Command::Credit { records, bytes }
                    }
                    "ack" if !*group => Command::Error(RestError::illegal_state(
                        "acks commit offsets of a group; this socket has none",
                    )),
                    "ack" => match tp(&m) {
                        Ok((_, o)) if o < 0 => Command::Error(RestError::unprocessable(
                            422,
                            "offset must be 0 or more",
                        )),
                        Ok((tp, o)) => Command::Commit(tp, o.saturating_add(1)),
                        Err(e) => Command::Error(e),
                    },
                    "seek" => match tp(&m) {
                        Ok((tp, o)) => Command::Seek(tp, o),
                        Err(e) => Command::Error(e),
                    },
                    other => Command::Error(RestError::unprocessable(
                        422,
                        format!("Unknown frame type {other:?} (credit, ack, seek)."),
                    )),
                }
            }
            Dialect::Pulsar {
                topic,
                pull,
                reader,
                acks,
                ..
            } => match kind {
                "permit" => match m.get("permitMessages").and_then(Value::as_u64) {
                    None => Command::Close(POLICY, "Failed to deserialize from JSON".into()),
                    Some(_) if !*pull => Command::None,
                    Some(n) => Command::Credit {
                        records: n.min(credit_max.saturating_sub(credit)),
                        bytes: None,
                    },
                },
                "isEndOfTopic" => Command::Reply(json!({"endOfTopic": false}).to_string()),
                "unsubscribe" => Command::Close(1000, "unsubscribed".into()),
                "negativeAcknowledge" => {
                    let Some((p, o)) = m
                        .get("messageId")
                        .and_then(Value::as_str)
                        .and_then(pulsar::parse_message_id)
                    else {
                        return Command::Close(POLICY, "Failed to deserialize from JSON".into());
                    };
                    if !acks.delivered_to.contains_key(&p) {
                        return Command::None;
                    }
                    acks.rewind(p, o);
                    Command::Seek((topic.clone(), p), o)
                }
                // An ack: a frame without a type, or of any other type (as Pulsar).
                _ => {
                    let Some((p, o)) = m
                        .get("messageId")
                        .and_then(Value::as_str)
                        .and_then(pulsar::parse_message_id)
                    else {
                        return Command::Close(POLICY, "Failed to deserialize from JSON".into());
                    };
                    match acks.ack(p, o) {
                        Ack::Moved(to) if !*reader => Command::Commit((topic.clone(), p), to),
                        Ack::Moved(_) | Ack::Held => Command::Acked,
                        Ack::Unknown => Command::None,
                    }
                }
            },
        }
    }

    /// Whether the session may deliver more (Pulsar keeps unacknowledged
    /// deliveries within the credit bound).
    fn may_deliver(&self, credit_max: u64) -> bool {
        match self {
            Dialect::Native { .. } => true,
            Dialect::Pulsar { acks, .. } => acks.count() < credit_max,
        }
    }

    /// The frames of `records`.
    fn frames(&mut self, records: Vec<Fetched>) -> Vec<String> {
        match self {
            Dialect::Native { encoding, .. } => {
                let bytes: u64 = records.iter().map(|(_, r)| r.size()).sum();
                let mut out =
                    String::with_capacity(bytes as usize * 4 / 3 + records.len() * 96 + 32);
                out.push_str("{\"type\":\"records\",\"records\":[");
                for (i, ((t, p), r)) in records.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_native_record(&mut out, *encoding, t, *p, r);
                }
                out.push_str("]}");
                vec![out]
            }
            Dialect::Pulsar { acks, .. } => records
                .into_iter()
                .map(|((_, p), r)| {
                    acks.delivered(p, r.offset);
                    pulsar_message(p, &r).to_string()
                })
                .collect(),
        }
    }

    /// In Pulsar's push mode, an ack or nack of a delivered message gives
    /// one credit back, up to the window (`receiverQueueSize`): the window
    /// when it does.
    fn returns_credit(&self, command: &Command) -> Option<u64> {
        match (self, command) {
            (
                Dialect::Pulsar {
                    pull: false, queue, ..
                },
                Command::Commit(..) | Command::Seek(..) | Command::Acked,
            ) => Some(*queue),
            _ => None,
        }
    }
}

/// Appends a record as native frames and SSE events carry it.
pub(super) fn push_native_record(
    out: &mut String,
    encoding: Encoding,
    topic: &str,
    partition: i32,
    r: &DecodedRecord,
) {
    use std::fmt::Write as _;
    let how = encoding.embed();
    out.push_str("{\"topic\":");
    json::push_str(out, topic);
    let _ = write!(
        out,
        ",\"partition\":{partition},\"offset\":{},\"timestamp\":{},\"key\":",
        r.offset, r.timestamp
    );
    json::push_embedded(out, how, r.key.as_deref());
    out.push_str(",\"value\":");
    json::push_embedded(out, how, r.value.as_deref());
    out.push_str(",\"headers\":[");
    for (i, (k, v)) in r.headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        json::push_str(out, &String::from_utf8_lossy(k));
        out.push_str(",\"value\":");
        // Header values are bytes: only the text form keeps them readable
        // as JSON whatever they hold.
        let header_how = if how == Embed::Json {
            Embed::Binary
        } else {
            how
        };
        json::push_embedded(out, header_how, v.as_deref());
        out.push('}');
    }
    out.push_str("]}");
}

/// A record as Pulsar's ConsumerMessage.
fn pulsar_message(partition: i32, r: &DecodedRecord) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut m = Map::new();
    m.insert(
        "messageId".into(),
        pulsar::message_id(partition, r.offset).into(),
    );
    m.insert(
        "payload".into(),
        b64(r.value.as_deref().unwrap_or_default()).into(),
    );
    let props: Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            (String::from_utf8_lossy(k).into_owned(), Value::String(v))
        })
        .collect();
    m.insert("properties".into(), Value::Object(props));
    m.insert(
        "publishTime".into(),
        super::iso8601::format_ms(r.timestamp).into(),
    );
    m.insert("redeliveryCount".into(), 0.into());
    if let Some(k) = &r.key {
        m.insert("key".into(), String::from_utf8_lossy(k).into_owned().into());
    }
    Value::Object(m)
}

/// An error frame (native) before a close or not.
fn error_frame(e: &RestError) -> String {
    json!({"type": "error", "error_code": e.code, "message": e.message}).to_string()
}

/// Tells the client of a refusal that does not end the session: an error
/// frame in Sluice's protocol; Pulsar's has none (its clients would read one
/// as a message), so it is only logged. False once the socket is gone.
async fn report(socket: &mut WebSocket, dialect: &Dialect, e: &RestError) -> bool {
    match dialect {
        Dialect::Native { .. } => socket
            .send(Message::Text(error_frame(e).into()))
            .await
            .is_ok(),
        Dialect::Pulsar { .. } => {
            tracing::debug!(error = %e.message, "Pulsar WebSocket frame refused");
            true
        }
    }
}

async fn close_with(socket: &mut WebSocket, code: u16, reason: String) {
    // A close frame's reason is at most 123 bytes of UTF-8.
    let mut reason = reason;
    if reason.len() > 120 {
        let mut cut = 120;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// A read in flight.
type PendingRead = Pin<Box<dyn Future<Output = Result<Vec<Fetched>, RestError>> + Send>>;

/// Serves one consumer socket until it closes.
async fn consume_session(
    gw: Arc<Gateway>,
    mut socket: WebSocket,
    caller: Caller,
    plan: Plan,
    mut dialect: Dialect,
    initial_credit: u64,
) {
    let inst = match plan.start(&gw, &caller).await {
        Ok(i) => i,
        Err(e) => {
            if matches!(dialect, Dialect::Native { .. }) {
                let _ = socket.send(Message::Text(error_frame(&e).into())).await;
            }
            close_with(&mut socket, INTERNAL, e.message).await;
            return;
        }
    };
    let c = &gw.broker.config;
    let credit_max = c.http_ws_credit_records_max;
    let frame_bytes = c.http_ws_frame_bytes_max;
    let mut ping = tokio::time::interval(Duration::from_millis(c.http_ws_ping_interval_ms));
    ping.tick().await;
    let mut credit = initial_credit;
    let mut byte_credit: Option<u64> = None;
    let mut pending: Option<PendingRead> = None;
    // Mean key and value bytes of the records sent (a guess until some are).
    let mut avg_record = frame_bytes;
    let mut changes = inst.assignment_changes();
    let native_group = matches!(dialect, Dialect::Native { group: true, .. });
    if native_group {
        let _ = socket
            .send(Message::Text(assignment_frame(&inst).into()))
            .await;
    }
    crate::metrics::http_ws_sessions(1);
    loop {
        let has_bytes = byte_credit.is_none_or(|b| b > 0);
        if pending.is_none() && credit > 0 && has_bytes && dialect.may_deliver(credit_max) {
            let records = credit.min(FRAME_RECORDS_MAX);
            // What the credit can take, from the record sizes seen so far: a
            // read of whole batches past it would be read and thrown away.
            let wanted = records.saturating_mul(avg_record).saturating_mul(5) / 4;
            let budget = Budget {
                records: records as usize,
                bytes: byte_credit
                    .unwrap_or(u64::MAX)
                    .min(frame_bytes)
                    .min(wanted.max(READ_BYTES_MIN)),
            };
            let (g, i, f) = (
                gw.clone(),
                inst.clone(),
                match &dialect {
                    Dialect::Native { encoding, .. } => encoding.read_format(),
                    Dialect::Pulsar { .. } => Format::Binary,
                },
            );
            pending = Some(Box::pin(async move {
                instance::read(&g, &i, READ_WAIT, budget, f).await
            }));
        }
        tokio::select! {
            msg = socket.recv() => {
                let text = match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        close_with(&mut socket, 1003, "frames are JSON text".into()).await;
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                let command = dialect.command(&text, credit, credit_max);
                if let Some(window) = dialect.returns_credit(&command) {
                    credit = (credit + 1).min(window);
                }
                match command {
                    Command::None | Command::Acked => {}
                    Command::Credit { records, bytes } => {
                        credit += records;
                        if let Some(b) = bytes {
                            let total = byte_credit.unwrap_or(0).saturating_add(b);
                            byte_credit = Some(total);
                        }
                    }
                    Command::Commit(tp, _) if !inst.owned().contains(&tp) => {
                        // Given to another member meanwhile: its commits win.
                        let e = RestError::illegal_state(format!(
                            "{}-{} is not assigned to this socket now",
                            tp.0, tp.1
                        ));
                        if !report(&mut socket, &dialect, &e).await {
                            break;
                        }
                    }
                    Command::Commit(tp, next) => {
                        if let Err(e) = inst.commit(&gw, vec![(tp, next, String::new())]).await {
                            if !report(&mut socket, &dialect, &e).await {
                                break;
                            }
                        }
                    }
                    Command::Seek(tp, offset) => {
                        pending = None;
                        if let Err(e) = inst.seek(vec![(tp, offset)]) {
                            if !report(&mut socket, &dialect, &e).await {
                                break;
                            }
                        }
                    }
                    Command::Reply(frame) => {
                        if socket.send(Message::Text(frame.into())).await.is_err() {
                            break;
                        }
                    }
                    Command::Error(e) => {
                        if !report(&mut socket, &dialect, &e).await {
                            break;
                        }
                    }
                    Command::Close(code, reason) => {
                        if matches!(dialect, Dialect::Native { .. }) && code != 1000 {
                            let e = RestError::unprocessable(422, reason.clone());
                            let _ = socket.send(Message::Text(error_frame(&e).into())).await;
                        }
                        close_with(&mut socket, code, reason).await;
                        break;
                    }
                }
            }
            r = async { pending.as_mut().expect("guarded by the branch condition").await }, if pending.is_some() => {
                pending = None;
                match r {
                    Ok(records) if records.is_empty() => {}
                    Ok(records) => {
                        let n = records.len() as u64;
                        let bytes: u64 = records.iter().map(|(_, r)| r.size()).sum();
                        avg_record = (bytes / n).max(1);
                        credit = credit.saturating_sub(n);
                        if let Some(b) = byte_credit.as_mut() {
                            *b = b.saturating_sub(bytes);
                        }
                        crate::metrics::http_ws_buffered(bytes as f64);
                        let mut failed = false;
                        for frame in dialect.frames(records) {
                            if socket.send(Message::Text(frame.into())).await.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        crate::metrics::http_ws_buffered(-(bytes as f64));
                        crate::metrics::http_ws_records_sent(n);
                        gw.throttle(&caller, QuotaKind::Fetch, bytes).await;
                        if failed {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = report(&mut socket, &dialect, &e).await;
                        close_with(&mut socket, INTERNAL, e.message).await;
                        break;
                    }
                }
            }
            _ = changes.changed(), if native_group => {
                if socket.send(Message::Text(assignment_frame(&inst).into())).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            _ = gw.stopped() => {
                close_with(&mut socket, 1001, "the broker is stopping".into()).await;
                break;
            }
        }
    }
    drop(pending);
    crate::metrics::http_ws_sessions(-1);
    instance::close(&gw, &inst).await;
}

/// `{"type":"assignment","partitions":[...]}`.
fn assignment_frame(inst: &Instance) -> String {
    let owned = inst.owned();
    json!({"type": "assignment", "partitions": json::partition_list(owned.iter())}).to_string()
}

/// `GET /v1/ws/produce?topic=&format=`: records in, an ack per record out.
pub(super) async fn produce(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, RestError> {
    let q = query_params(&query);
    let topic = query_param(&q, "topic")
        .ok_or_else(|| RestError::unprocessable(422, "topic may not be null"))?;
    let encoding = Encoding::parse(query_param(&q, "format"))?;
    let t = producible(&gw, &caller, &topic).await?;
    Ok(limited(ws, &gw).on_upgrade(move |socket| {
        produce_session(gw, socket, caller, t, Producer::Native(encoding))
    }))
}

/// The topic a producer socket writes to: 403 without WRITE (a socket has
/// no per-record answer to give before it exists).
async fn producible(
    gw: &Gateway,
    caller: &Caller,
    topic: &str,
) -> Result<Arc<crate::broker::Topic>, RestError> {
    writable_topic(gw, caller, topic).await.map_err(|e| {
        e.unwrap_or_else(|| {
            RestError::forbidden(format!("Not authorized to access topics: [{topic}]"))
        })
    })
}

/// The frame protocol of a producer socket.
#[derive(Clone, Copy)]
enum Producer {
    /// Sluice's own.
    Native(Encoding),
    /// Pulsar's.
    Pulsar,
}

impl Producer {
    /// A record of a client frame, its correlation id, and its named partition.
    fn parse(self, text: &str) -> Result<(Value, Option<i32>, NewRecord), (Value, RestError)> {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) else {
            return Err((
                Value::Null,
                RestError::bad_request("a frame that is not a JSON object"),
            ));
        };
        match self {
            Producer::Native(enc) => {
                let id = m.get("id").cloned().unwrap_or(Value::Null);
                let fail = |e| (id.clone(), e);
                let partition = match m.get("partition") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().and_then(|p| i32::try_from(p).ok()).ok_or_else(
                        || fail(RestError::unprocessable(422, "partition must be an int")),
                    )?),
                };
                let mut headers = Vec::new();
                if let Some(list) = m.get("headers").and_then(Value::as_array) {
                    for h in list {
                        let k = h.get("key").and_then(Value::as_str).ok_or_else(|| {
                            fail(RestError::unprocessable(422, "a header needs a key"))
                        })?;
                        let v = enc.bytes(h.get("value"), "header value").map_err(fail)?;
                        headers.push((k.as_bytes().to_vec(), v));
                    }
                }
                let record = NewRecord {
                    key: enc.bytes(m.get("key"), "key").map_err(fail)?,
                    value: enc.bytes(m.get("value"), "value").map_err(fail)?,
                    headers,
                };
                Ok((id, partition, record))
            }
            Producer::Pulsar => {
                let ctx = m.get("context").cloned().unwrap_or(Value::Null);
                let payload = m
                    .get("payload")
                    .and_then(Value::as_str)
                    .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
                    .ok_or_else(|| {
                        (
                            ctx.clone(),
                            RestError::new(
                                axum::http::StatusCode::BAD_REQUEST,
                                7,
                                "Invalid payload encoding",
                            ),
                        )
                    })?;
                let headers = m
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| {
                        p.iter()
                            .map(|(k, v)| {
                                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                                (k.as_bytes().to_vec(), Some(v.into_bytes()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let key = m
                    .get("key")
                    .and_then(Value::as_str)
                    .map(|k| k.as_bytes().to_vec());
                Ok((
                    ctx,
                    None,
                    NewRecord {
                        key,
                        value: Some(payload),
                        headers,
                    },
                ))
            }
        }
    }

    fn ack(self, id: &Value, result: Result<(i32, i64), (u32, String)>) -> String {
        match (self, result) {
            (Producer::Native(_), Ok((p, o))) => {
                json!({"type": "ack", "id": id, "partition": p, "offset": o}).to_string()
            }
            (Producer::Native(_), Err((code, msg))) => {
                json!({"type": "ack", "id": id, "error_code": code, "error": msg}).to_string()
            }
            (Producer::Pulsar, Ok((p, o))) => json!({
                "result": "ok", "messageId": pulsar::message_id(p, o), "context": id,
                "errorCode": 0, "schemaVersion": 0,
            })
            .to_string(),
            (Producer::Pulsar, Err((code, msg))) => {
                // Pulsar's WebSocketError codes: 7 invalid payload, 8 anything else.
                let code = if code == 7 { 7 } else { 8 };
                json!({"result": format!("send-error:{code}"), "errorMsg": msg, "context": id,
                    "errorCode": 0, "schemaVersion": 0})
                .to_string()
            }
        }
    }
}

/// Serves one producer socket: reads what the client has sent (up to the
/// in-flight bound), appends it as one batch per partition, acks each record,
/// and only then reads again.
async fn produce_session(
    gw: Arc<Gateway>,
    mut socket: WebSocket,
    caller: Caller,
    t: Arc<crate::broker::Topic>,
    kind: Producer,
) {
    let inflight = gw.broker.config.http_ws_produce_inflight_max;
    // What one batch of frames may hold: as much as one REST produce body.
    let batch_bytes_max = gw.broker.config.http_request_body_max_bytes;
    let mut ping = tokio::time::interval(Duration::from_millis(
        gw.broker.config.http_ws_ping_interval_ms,
    ));
    ping.tick().await;
    'session: loop {
        let first = tokio::select! {
            m = socket.recv() => m,
            _ = gw.stopped() => {
                close_with(&mut socket, 1001, "the broker is stopping".into()).await;
                break;
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let mut frames = Vec::new();
        let mut batch_bytes = 0usize;
        let mut next = first;
        loop {
            match next {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    if frames.is_empty() {
                        break 'session;
                    }
                    break;
                }
                Some(Ok(Message::Text(t))) => {
                    batch_bytes += t.len();
                    frames.push(t.to_string());
                }
                Some(Ok(Message::Binary(_))) => {
                    close_with(&mut socket, 1003, "frames are JSON text".into()).await;
                    break 'session;
                }
                Some(Ok(_)) => {}
            }
            if frames.len() >= inflight || batch_bytes >= batch_bytes_max {
                break;
            }
            // Whatever else already arrived joins this batch.
            match tokio::time::timeout(Duration::ZERO, socket.recv()).await {
                Ok(m) => next = m,
                Err(_) => break,
            }
        }
        let mut acks: Vec<Option<String>> = Vec::with_capacity(frames.len());
        let mut ids = Vec::new();
        let mut records = Vec::new();
        for f in &frames {
            match kind.parse(f) {
                Ok((id, named, record)) => {
                    match choose_partition(&gw, &t, named, record.key.as_deref()) {
                        Ok(p) => {
                            acks.push(None);
                            ids.push((acks.len() - 1, id));
                            records.push((p, record));
                        }
                        Err(e) => acks.push(Some(kind.ack(&id, Err((e.code, e.message))))),
                    }
                }
                Err((id, e)) => acks.push(Some(kind.ack(&id, Err((e.code, e.message))))),
            }
        }
        let results = if records.is_empty() {
            Vec::new()
        } else {
            gw.throttle(&caller, QuotaKind::Produce, batch_bytes as u64)
                .await;
            append_records(&gw, &t, records).await
        };
        for ((slot, id), r) in ids.into_iter().zip(results) {
            acks[slot] = Some(kind.ack(&id, r));
        }
        for a in acks.into_iter().flatten() {
            if socket.send(Message::Text(a.into())).await.is_err() {
                break 'session;
            }
        }
    }
}

/// The Kafka topic of a Pulsar path, 404 for tenants and namespaces other
/// than `public/default`.
fn pulsar_topic(
    gw: &Gateway,
    caller: &Caller,
    domain: &str,
    tenant: &str,
    ns: &str,
    topic: &str,
) -> Result<String, RestError> {
    let t = pulsar_name(domain, tenant, ns, topic)?;
    visible_topic(gw, caller, &t)?;
    Ok(t)
}

/// The Kafka topic a Pulsar path names; 404 for tenants and namespaces
/// other than `public/default`.
fn pulsar_name(domain: &str, tenant: &str, ns: &str, topic: &str) -> Result<String, RestError> {
    pulsar::topic_of(domain, tenant, ns, topic).ok_or_else(|| {
        RestError::new(
            axum::http::StatusCode::NOT_FOUND,
            404,
            "Only persistent://public/default/<topic> maps to a Kafka topic.",
        )
    })
}

/// A Pulsar consumer's (or reader's) dialect and initial credit:
/// `receiverQueueSize` (≤ 1000) in push mode, nothing until `permit` frames
/// in pull mode.
fn pulsar_dialect(topic: String, q: &[(String, String)], reader: bool) -> (Dialect, u64) {
    let pull = query_param(q, "pullMode").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let queue = query_param(q, "receiverQueueSize")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(PULSAR_QUEUE_MAX)
        .clamp(1, PULSAR_QUEUE_MAX);
    let dialect = Dialect::Pulsar {
        topic,
        pull,
        reader,
        queue,
        acks: Acks::default(),
    };
    (dialect, if pull { 0 } else { queue })
}

/// `GET /ws/v2/consumer/{domain}/{tenant}/{namespace}/{topic}/{subscription}`:
/// the subscription is the consumer group (Exclusive and Failover
/// subscriptions; Shared ones are refused).
pub(super) async fn pulsar_consumer(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((domain, tenant, ns, topic, subscription)): Path<(String, String, String, String, String)>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, RestError> {
    let q = query_params(&query);
    let topic = pulsar_topic(&gw, &caller, &domain, &tenant, &ns, &topic)?;
    match query_param(&q, "subscriptionType").as_deref() {
        None | Some("Exclusive") | Some("Failover") => {}
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "Invalid query params: subscriptionType {other} is not supported (Exclusive, Failover: Kafka consumer groups)"
            )))
        }
    }
    may_consume(
        &gw,
        &caller,
        std::slice::from_ref(&topic),
        Some(&subscription),
    )?;
    // A new Pulsar subscription starts at the end of the topic.
    let plan = Plan::Member {
        group: subscription,
        topics: vec![topic.clone()],
        reset: Reset::Latest,
    };
    let (dialect, credit) = pulsar_dialect(topic, &q, false);
    Ok(limited(ws, &gw)
        .on_upgrade(move |socket| consume_session(gw, socket, caller, plan, dialect, credit)))
}

/// `GET /ws/v2/reader/{domain}/{tenant}/{namespace}/{topic}?messageId=`:
/// every partition from `earliest`, `latest` (the default) or a message id.
pub(super) async fn pulsar_reader(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((domain, tenant, ns, topic)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, RestError> {
    let q = query_params(&query);
    let topic = pulsar_topic(&gw, &caller, &domain, &tenant, &ns, &topic)?;
    may_consume(&gw, &caller, std::slice::from_ref(&topic), None)?;
    let (start, partition) = match query_param(&q, "messageId").as_deref() {
        None | Some("latest") => (Start::Latest, None),
        Some("earliest") => (Start::Earliest, None),
        Some(id) => {
            let (p, o) = pulsar::parse_message_id(id)
                .ok_or_else(|| RestError::bad_request("Invalid query params: messageId"))?;
            // Pulsar starts a reader after the message it names.
            (Start::At(o.saturating_add(1)), Some(p))
        }
    };
    let plan = Plan::Partitions {
        parts: partitions_of(&gw, &caller, std::slice::from_ref(&topic), partition)?,
        start,
    };
    let (dialect, credit) = pulsar_dialect(topic, &q, true);
    Ok(limited(ws, &gw)
        .on_upgrade(move |socket| consume_session(gw, socket, caller, plan, dialect, credit)))
}

/// `GET /ws/v2/producer/{domain}/{tenant}/{namespace}/{topic}`.
pub(super) async fn pulsar_producer(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path((domain, tenant, ns, topic)): Path<(String, String, String, String)>,
    ws: WebSocketUpgrade,
) -> Result<Response, RestError> {
    let topic = pulsar_name(&domain, &tenant, &ns, &topic)?;
    let t = producible(&gw, &caller, &topic).await?;
    Ok(limited(ws, &gw)
        .on_upgrade(move |socket| produce_session(gw, socket, caller, t, Producer::Pulsar)))
}
