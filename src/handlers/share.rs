//! Share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe,
//! ShareFetch and ShareAcknowledge, v1 (what librdkafka sends).
//!
//! ShareFetch applies the acknowledgements it carries (durably), then hands
//! out records under locks and long-polls like Fetch: parked on the
//! partitions' waiters and the group's (a record offered again), never a
//! sleep loop. Record bytes go from the segment files to the socket as in
//! Fetch; only the runs of offsets handed out are listed as acquired.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch, PartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::share_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions,
};
use kafka_protocol::messages::{
    GroupId, ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest,
    ShareGroupDescribeRequest, ShareGroupDescribeResponse, ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse, TopicName,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::consumer_groups::{describe_refusal, error_of, topics};
use super::{sb, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::group::{
    AckBatch, AckError, AckKind, Acquired, Assignment, SessionError, SharePartitionKey, ShareWant,
};
use crate::log::FileSlice;
use crate::protocol::{
    encode_share_fetch, error, ResponseFrame, ShareFetchPartitionReply, ShareFetchReply,
    ShareFetchTopicReply,
};
use crate::storage::Partition;

/// Kafka's limit on a share member id (a UUID in any of its spellings).
const MEMBER_ID_MAX: usize = 36;

/// ShareGroupHeartbeat: READ on the group and DESCRIBE on each named topic,
/// as Kafka; then the group's membership state machine.
pub(super) fn heartbeat(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    client_id: &str,
    req: ShareGroupHeartbeatRequest,
) -> ResponseFrame {
    let mut resp = ShareGroupHeartbeatResponse::default();
    let group_id = req.group_id.0.to_string();
    let refuse = |mut resp: ShareGroupHeartbeatResponse, code, message: Option<String>| {
        resp.error_code = code;
        resp.error_message = message.map(sb);
        ctx.respond(&resp)
    };
    if !ctx.may(broker, Operation::Read, ResourceType::Group, &group_id) {
        return refuse(resp, error::GROUP_AUTHORIZATION_FAILED, None);
    }
    if let Some(names) = &req.subscribed_topic_names {
        if names
            .iter()
            .any(|n| !ctx.may(broker, Operation::Describe, ResourceType::Topic, &n.0))
        {
            return refuse(resp, error::TOPIC_AUTHORIZATION_FAILED, None);
        }
    }
    let hb = crate::group::ShareHeartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|v| v.iter().map(|t| t.0.to_string()).collect()),
        client_id: client_id.to_string(),
        client_host: ctx.client_host.to_string(),
    };
    match broker
        .groups
        .share_heartbeat(&group_id, hb, &topics(broker))
    {
        Ok(r) => {
            resp.error_message = None;
            resp.member_id = Some(sb(r.member_id));
            resp.member_epoch = r.member_epoch;
            resp.heartbeat_interval_ms = r.heartbeat_interval_ms;
            resp.assignment = r.assignment.map(|a| {
                HeartbeatAssignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            });
            ctx.respond(&resp)
        }
        Err(e) => {
            let (code, message) = error_of(e);
            refuse(resp, code, message)
        }
    }
}

/// ShareGroupDescribe: DESCRIBE on each group; an id that is not a share
/// group is GROUP_ID_NOT_FOUND, as Kafka.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: ShareGroupDescribeRequest,
) -> ResponseFrame {
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            let name = id.0.to_string();
            let mut g = DescribedGroup::default().with_group_id(GroupId(sb(name.clone())));
            g.error_message = None;
            if let Some(code) = describe_refusal(broker, ctx, &name) {
                g.error_code = code;
                return g;
            }
            let Some(sh) = broker.groups.share_describe(&name) else {
                g.error_code = error::GROUP_ID_NOT_FOUND;
                g.error_message = Some(sb(format!("Group {name} is not a share group.")));
                g.group_state = sb("Dead");
                return g;
            };
            g.group_state = sb(sh.state);
            g.group_epoch = sh.group_epoch;
            g.assignment_epoch = sh.assignment_epoch;
            g.assignor_name = sb(crate::group::share::ASSIGNOR);
            g.authorized_operations = if req.include_authorized_operations {
                ctx.operations(broker, ResourceType::Group, &name)
            } else {
                i32::MIN
            };
            g.members = sh
                .members
                .into_iter()
                .map(|m| {
                    let mut d = DescribedMember::default()
                        .with_member_id(sb(m.member_id))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(sb(m.client_id))
                        .with_client_host(sb(m.client_host))
                        .with_subscribed_topic_names(
                            m.topic_names
                                .into_iter()
                                .map(|n| TopicName(sb(n)))
                                .collect(),
                        )
                        .with_assignment(described(broker, &m.assignment));
                    d.rack_id = m.rack_id.map(sb);
                    d
                })
                .collect();
            g
        })
        .collect();
    ctx.respond(&ShareGroupDescribeResponse::default().with_groups(groups))
}

/// An assignment with topic names, for describe.
fn described(broker: &Broker, a: &Assignment) -> DescribedAssignment {
    DescribedAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, ps)| {
                let name = broker
                    .topic_by_id(id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                DescribedTopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(sb(name)))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

/// Checks one partition's acknowledgement batches as Kafka does: ranges in
/// order, not overlapping, one type or one per offset, types 0 to 3.
fn ack_batches(raw: &[(i64, i64, &[i8])]) -> Result<Vec<AckBatch>, &'static str> {
    let mut out = Vec::with_capacity(raw.len());
    let mut after = i64::MIN;
    for (first, last, types) in raw {
        if first > last {
            return Err("first offset above last offset");
        }
        if *first <= after && after != i64::MIN {
            return Err("acknowledgement batches overlap or are out of order");
        }
        // i128: a client may send the whole i64 range.
        let span = i128::from(*last) - i128::from(*first) + 1;
        if types.is_empty() || (types.len() != 1 && types.len() as i128 != span) {
            return Err("acknowledge types must be one, or one per offset");
        }
        let kinds = types
            .iter()
            .map(|t| match t {
                0 => Ok(AckKind::Gap),
                1 => Ok(AckKind::Accept),
                2 => Ok(AckKind::Release),
                3 => Ok(AckKind::Reject),
                _ => Err("unknown acknowledge type"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(AckBatch {
            first: *first,
            last: *last,
            kinds,
        });
        after = *last;
    }
    Ok(out)
}

/// A partition's acknowledgement batches as the request has them:
/// (first, last, types).
type RawAcks = Vec<(i64, i64, Vec<i8>)>;

/// A request's acknowledgements by partition: partitions without any are
/// left out, and a partition listed twice (librdkafka may) has its batches
/// merged in offset order.
fn merged_acks(
    entries: impl Iterator<Item = (SharePartitionKey, RawAcks)>,
) -> BTreeMap<SharePartitionKey, RawAcks> {
    let mut acks: BTreeMap<SharePartitionKey, RawAcks> = BTreeMap::new();
    for (key, raw) in entries.filter(|(_, raw)| !raw.is_empty()) {
        acks.entry(key).or_default().extend(raw);
    }
    for batches in acks.values_mut() {
        batches.sort_by_key(|b| b.0);
    }
    acks
}

/// The acknowledgements of one partition, resolved and checked: the batches
/// to apply, or the error to answer with.
type AckPlan = (SharePartitionKey, Result<Vec<AckBatch>, (i16, String)>);

/// Resolves and checks the acknowledgements of a request, then applies the
/// good ones (durably). Results in the order of `acks`.
async fn acknowledge(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    group: &str,
    member: &str,
    acks: Vec<(SharePartitionKey, RawAcks)>,
) -> Vec<(SharePartitionKey, i16, Option<String>)> {
    let plans: Vec<AckPlan> = acks
        .into_iter()
        .map(|(key, raw)| {
            let refs: Vec<(i64, i64, &[i8])> =
                raw.iter().map(|(f, l, t)| (*f, *l, t.as_slice())).collect();
            let plan = match broker.topic_by_id(&key.0) {
                None => Err((error::UNKNOWN_TOPIC_ID, "unknown topic id".to_string())),
                Some(t) if !ctx.may(broker, Operation::Read, ResourceType::Topic, &t.name) => {
                    Err((error::TOPIC_AUTHORIZATION_FAILED, String::new()))
                }
                Some(t) if t.partition(key.1).is_none() => Err((
                    error::UNKNOWN_TOPIC_OR_PARTITION,
                    "unknown partition".to_string(),
                )),
                Some(_) => ack_batches(&refs).map_err(|m| (error::INVALID_REQUEST, m.to_string())),
            };
            (key, plan)
        })
        .collect();
    let good: Vec<(SharePartitionKey, Vec<AckBatch>)> = plans
        .iter()
        .filter_map(|(k, p)| p.as_ref().ok().map(|b| (*k, b.clone())))
        .collect();
    let mut applied = broker
        .groups
        .share_acknowledge(group, member, good)
        .await
        .into_iter();
    plans
        .into_iter()
        .map(|(key, plan)| match plan {
            Err((code, m)) => (key, code, (!m.is_empty()).then_some(m)),
            Ok(_) => match applied.next() {
                Some(Ok(())) | None => (key, error::NONE, None),
                Some(Err(AckError::InvalidRecordState)) => (
                    key,
                    error::INVALID_RECORD_STATE,
                    Some("a record is not held by this member".into()),
                ),
                Some(Err(AckError::Storage)) => (key, error::KAFKA_STORAGE_ERROR, None),
            },
        })
        .collect()
}

/// The Kafka error of a refused share-session step.
fn session_error(e: SessionError) -> (i16, Option<String>) {
    match e {
        SessionError::NotFound => (error::SHARE_SESSION_NOT_FOUND, None),
        SessionError::InvalidEpoch => (error::INVALID_SHARE_SESSION_EPOCH, None),
        SessionError::LimitReached => (error::SHARE_SESSION_LIMIT_REACHED, None),
        SessionError::InvalidRequest(m) => (error::INVALID_REQUEST, Some(m)),
    }
}

/// Group and member id of a share request, checked as Kafka does.
fn ids(
    group: Option<&GroupId>,
    member: Option<&kafka_protocol::protocol::StrBytes>,
) -> Result<(String, String), (i16, String)> {
    let group = group.map(|g| g.0.to_string()).unwrap_or_default();
    let member = member.map(|m| m.to_string()).unwrap_or_default();
    if group.is_empty() {
        return Err((error::INVALID_GROUP_ID, "group id is empty".into()));
    }
    if member.is_empty() || member.len() > MEMBER_ID_MAX {
        return Err((error::INVALID_REQUEST, "invalid member id".into()));
    }
    Ok((group, member))
}

/// One partition a ShareFetch reads, resolved.
struct Want {
    /// Topic id and partition.
    key: SharePartitionKey,
    /// The partition.
    partition: Arc<Partition>,
}

/// What was read for one partition: the batches and the runs they carry.
struct Got {
    /// Batches covering `acquired`.
    records: Vec<FileSlice>,
    /// Runs handed out and sent.
    acquired: Vec<Acquired>,
}

/// Reads batches covering each partition's acquired runs, within
/// `max_bytes` (the first partition with data always gets one batch); runs
/// or parts of runs that did not fit are returned as not sent.
fn read_acquired(
    wants: &[Want],
    acquired: Vec<Vec<Acquired>>,
    max_bytes: u64,
) -> (Vec<Got>, Vec<(SharePartitionKey, i64, i64)>) {
    let mut remaining = max_bytes;
    let mut first = true;
    let mut unsent = Vec::new();
    let mut out = Vec::with_capacity(wants.len());
    for (w, runs) in wants.iter().zip(acquired) {
        let mut got = Got {
            records: Vec::new(),
            acquired: Vec::new(),
        };
        // Offsets below this are covered by batches already read.
        let mut covered = i64::MIN;
        let mut full = false;
        for run in runs {
            if full {
                unsent.push((w.key, run.first, run.last));
                continue;
            }
            let mut from = run.first.max(covered);
            while from <= run.last {
                let limit = if first { remaining.max(1) } else { remaining };
                if limit == 0 {
                    break;
                }
                // Only batches holding offsets of this run: nothing the
                // member was not given uses up the response.
                match w.partition.read_below_blocking(from, limit, run.last + 1) {
                    Ok(Some(slice)) if first || slice.len <= remaining => {
                        first = false;
                        remaining = remaining.saturating_sub(slice.len);
                        covered = slice.next_offset;
                        from = slice.next_offset;
                        got.records.push(slice);
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(offset = from, error = ?e, "share fetch read failed");
                        break;
                    }
                }
            }
            let sent_to = from.min(run.last + 1);
            if sent_to > run.first {
                got.acquired.push(Acquired {
                    first: run.first,
                    last: sent_to - 1,
                    deliveries: run.deliveries,
                });
            }
            if sent_to <= run.last {
                unsent.push((w.key, sent_to, run.last));
                full = true;
            }
        }
        out.push(got);
    }
    (out, unsent)
}

/// Whether a share-partition may be fetched: NONE, or the error to answer.
fn partition_error(broker: &Broker, ctx: &Ctx, key: &SharePartitionKey) -> i16 {
    match broker.topic_by_id(&key.0) {
        None => error::UNKNOWN_TOPIC_ID,
        Some(t) if !ctx.may(broker, Operation::Read, ResourceType::Topic, &t.name) => {
            error::TOPIC_AUTHORIZATION_FAILED
        }
        Some(t) if t.partition(key.1).is_none() => error::UNKNOWN_TOPIC_OR_PARTITION,
        Some(_) => error::NONE,
    }
}

/// One partition's entry in a ShareFetch response.
fn partition_reply(index: i32) -> ShareFetchPartitionReply {
    ShareFetchPartitionReply {
        index,
        leader: (-1, -1),
        ..ShareFetchPartitionReply::default()
    }
}

/// ShareFetch: the share session, the piggy-backed acknowledgements, then
/// records handed out under locks (long-polling up to `max_wait_ms`).
pub(super) async fn fetch(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: ShareFetchRequest,
) -> ResponseFrame {
    let mut reply = ShareFetchReply {
        throttle_time_ms: i32::try_from(ctx.throttle_ms).unwrap_or(i32::MAX),
        ..ShareFetchReply::default()
    };
    let top = |mut reply: ShareFetchReply, code: i16, message: Option<String>| {
        reply.error_code = code;
        reply.error_message = message;
        let mut frame = encode_share_fetch(ctx.correlation_id, reply);
        frame.throttle_ms = ctx.throttle_ms;
        frame
    };
    let (group, member) = match ids(req.group_id.as_ref(), req.member_id.as_ref()) {
        Ok(x) => x,
        Err((code, m)) => return top(reply, code, Some(m)),
    };
    if !ctx.may(broker, Operation::Read, ResourceType::Group, &group) {
        return top(reply, error::GROUP_AUTHORIZATION_FAILED, None);
    }
    reply.acquisition_lock_timeout_ms = broker.groups.share_lock_ms(&group);
    // A topic may be listed twice (librdkafka: once to add, once to ack):
    // merge by partition, in first-seen order.
    let mut order: Vec<SharePartitionKey> = Vec::new();
    let mut seen: HashSet<SharePartitionKey> = HashSet::new();
    for t in &req.topics {
        for p in &t.partitions {
            let key = (t.topic_id, p.partition_index);
            if seen.insert(key) {
                order.push(key);
            }
        }
    }
    let acks = merged_acks(req.topics.iter().flat_map(|t| {
        t.partitions.iter().map(move |p| {
            let batches = p.acknowledgement_batches.iter();
            let raw = batches.map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
            ((t.topic_id, p.partition_index), raw.collect())
        })
    }));
    // Only partitions that exist and may be read join the session (so it
    // is bounded by the partitions there are); the others are answered
    // with their error this once.
    let mut refused: Vec<(SharePartitionKey, i16)> = Vec::new();
    order.retain(|key| {
        let code = partition_error(broker, ctx, key);
        if code != error::NONE {
            refused.push((*key, code));
        }
        code == error::NONE
    });
    let forgotten: Vec<SharePartitionKey> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    let step = match broker.groups.share_session(
        &group,
        &member,
        req.share_session_epoch,
        ctx.conn,
        &order,
        &forgotten,
        !acks.is_empty(),
        true,
    ) {
        Ok(s) => s,
        Err(e) => {
            let (code, m) = session_error(e);
            return top(reply, code, m);
        }
    };
    let initial = req.share_session_epoch == 0;
    let mut parts: BTreeMap<SharePartitionKey, ShareFetchPartitionReply> = BTreeMap::new();
    for (key, code) in refused {
        parts
            .entry(key)
            .or_insert_with(|| partition_reply(key.1))
            .error_code = code;
    }
    let acked = acknowledge(broker, ctx, &group, &member, acks.into_iter().collect()).await;
    for (key, code, message) in acked {
        let p = parts.entry(key).or_insert_with(|| partition_reply(key.1));
        p.acknowledge_error_code = code;
        p.acknowledge_error_message = message;
    }
    if step.closing {
        broker.groups.share_close_session(&group, &member);
    }
    // The partitions to fetch, resolved; the unresolvable answer an error.
    let mut wants = Vec::new();
    for key in &step.partitions {
        let code = partition_error(broker, ctx, key);
        if let Some(p) = broker
            .topic_by_id(&key.0)
            .and_then(|t| t.partition(key.1).cloned())
            .filter(|_| code == error::NONE)
        {
            wants.push(Want {
                key: *key,
                partition: p,
            });
        }
        if code != error::NONE || initial {
            parts
                .entry(*key)
                .or_insert_with(|| partition_reply(key.1))
                .error_code = code;
        }
    }
    let max_records = usize::try_from(req.max_records.max(0))
        .unwrap_or(0)
        .min(usize::try_from(broker.config.group_share_partition_max_record_locks).unwrap_or(0));
    let max_bytes = u64::try_from(req.max_bytes.max(0))
        .unwrap_or(0)
        .min(u64::from(broker.config.fetch_bytes_max));
    if !step.closing && max_records > 0 && max_bytes > 0 && !wants.is_empty() {
        let got = acquire(
            broker,
            &group,
            &member,
            &wants,
            max_records,
            max_bytes,
            &req,
        )
        .await;
        for (w, g) in wants.iter().zip(got) {
            if g.acquired.is_empty() {
                continue;
            }
            let p = parts
                .entry(w.key)
                .or_insert_with(|| partition_reply(w.key.1));
            p.records = g.records;
            p.acquired = g
                .acquired
                .iter()
                .map(|a| {
                    (
                        a.first,
                        a.last,
                        i16::try_from(a.deliveries).unwrap_or(i16::MAX),
                    )
                })
                .collect();
        }
    }
    let mut topics: Vec<ShareFetchTopicReply> = Vec::new();
    for ((id, _), p) in parts {
        match topics.last_mut() {
            Some(t) if t.id == id => t.partitions.push(p),
            _ => topics.push(ShareFetchTopicReply {
                id,
                partitions: vec![p],
            }),
        }
    }
    reply.topics = topics;
    let mut frame = encode_share_fetch(ctx.correlation_id, reply);
    frame.throttle_ms = ctx.throttle_ms;
    frame
}

/// Hands out records of `wants` to `member`, parking until some are
/// available or `max_wait_ms` passes; returns what was read per partition.
async fn acquire(
    broker: &Arc<Broker>,
    group: &str,
    member: &str,
    wants: &[Want],
    max_records: usize,
    max_bytes: u64,
    req: &ShareFetchRequest,
) -> Vec<Got> {
    let none = || {
        wants
            .iter()
            .map(|_| Got {
                records: Vec::new(),
                acquired: Vec::new(),
            })
            .collect()
    };
    let max_wait = Duration::from_millis(
        u64::try_from(req.max_wait_ms)
            .unwrap_or(0)
            .min(broker.config.fetch_wait_ms_max),
    );
    let deadline = Instant::now() + max_wait;
    let notify = Arc::new(Notify::new());
    let mut shutdown = broker.shutdown_signal();
    let groups = &broker.groups;
    loop {
        // Register before looking, so an append or a release in between still wakes us.
        for w in wants {
            w.partition.register_waiter(&notify);
        }
        let bounds: Vec<ShareWant> = wants
            .iter()
            .map(|w| ShareWant {
                key: w.key,
                log_start: w.partition.log_start_offset(),
                high_watermark: w.partition.high_watermark(),
            })
            .collect();
        groups.share_init(group, &bounds).await;
        groups.share_register(group, &notify);
        let acquired = groups.share_acquire(group, member, &bounds, max_records);
        if acquired.iter().any(|a| !a.is_empty()) {
            let parts: Vec<Want> = wants
                .iter()
                .map(|w| Want {
                    key: w.key,
                    partition: w.partition.clone(),
                })
                .collect();
            let read = crate::clock::work::blocking(move || {
                let (got, unsent) = read_acquired(&parts, acquired, max_bytes);
                (got, unsent)
            })
            .await;
            return match read {
                Ok((got, unsent)) => {
                    for (key, first, last) in unsent {
                        groups.share_unacquire(group, member, key, first, last);
                    }
                    got
                }
                Err(e) => {
                    // The records stay locked until their lock runs out.
                    tracing::error!(error = %e, "share fetch read task failed");
                    none()
                }
            };
        }
        if *shutdown.borrow() || Instant::now() >= deadline {
            return none();
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// ShareAcknowledge: the share session, then the acknowledgements, answered
/// once durable; epoch -1 ends the session and releases what the member
/// still holds.
pub(super) async fn acknowledge_request(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: ShareAcknowledgeRequest,
) -> ResponseFrame {
    let mut resp = ShareAcknowledgeResponse::default();
    resp.error_message = None;
    let top = |mut resp: ShareAcknowledgeResponse, code: i16, m: Option<String>| {
        resp.error_code = code;
        resp.error_message = m.map(sb);
        ctx.respond(&resp)
    };
    let (group, member) = match ids(req.group_id.as_ref(), req.member_id.as_ref()) {
        Ok(x) => x,
        Err((code, m)) => return top(resp, code, Some(m)),
    };
    if !ctx.may(broker, Operation::Read, ResourceType::Group, &group) {
        return top(resp, error::GROUP_AUTHORIZATION_FAILED, None);
    }
    let acks = merged_acks(req.topics.iter().flat_map(|t| {
        t.partitions.iter().map(move |p| {
            let batches = p.acknowledgement_batches.iter();
            let raw = batches.map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
            ((t.topic_id, p.partition_index), raw.collect())
        })
    }));
    let step = match broker.groups.share_session(
        &group,
        &member,
        req.share_session_epoch,
        ctx.conn,
        &[],
        &[],
        !acks.is_empty(),
        false,
    ) {
        Ok(s) => s,
        Err(e) => {
            let (code, m) = session_error(e);
            return top(resp, code, m);
        }
    };
    let acked = acknowledge(broker, ctx, &group, &member, acks.into_iter().collect()).await;
    if step.closing {
        broker.groups.share_close_session(&group, &member);
    }
    let mut topics: Vec<ShareAcknowledgeTopicResponse> = Vec::new();
    for ((id, index), code, message) in acked {
        let mut p = PartitionData::default()
            .with_partition_index(index)
            .with_error_code(code)
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(-1)
                    .with_leader_epoch(-1),
            );
        p.error_message = message.map(sb);
        match topics.last_mut() {
            Some(t) if t.topic_id == id => t.partitions.push(p),
            _ => topics.push(
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(id)
                    .with_partitions(vec![p]),
            ),
        }
    }
    resp.responses = topics;
    ctx.respond(&resp)
}
