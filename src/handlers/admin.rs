//! Cluster and partition admin: CreatePartitions v0-v3, DeleteRecords v0-v2,
//! DescribeCluster v0-v1, DescribeLogDirs v1-v4, OffsetForLeaderEpoch v2-v4 (the versions
//! kafka-protocol carries, as Kafka 4),
//! DescribeTopicPartitions v0, ElectLeaders v0-v2 and DescribeProducers v0, answered as a single-node Kafka broker answers them.
//!
//! Leader epochs: this broker is the only replica and never changes leader, so
//! every batch carries epoch 0 and the epoch cache is `{0: log start}`, true
//! across restarts by construction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ElectLeadersRequest,
    ElectLeadersResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use super::{describe as describe_error, partition_error_code, sb, topic_error_code, Ctx};
use crate::auth::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::broker::Broker;
use crate::protocol::{error, ResponseFrame};

/// The only leader epoch this single-replica broker has used.
const LEADER_EPOCH: i32 = 0;

/// CreatePartitions v0-v3: grow topics (with validate_only).
pub(super) async fn create_partitions(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: CreatePartitionsRequest,
) -> ResponseFrame {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.to_string()).or_default() += 1;
    }
    let node = broker.config.node_id;
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.to_string();
        let outcome: Result<(), (i16, String)> = async {
            if counts[&name] > 1 {
                return Err((
                    error::INVALID_REQUEST,
                    format!("Duplicate topic in request: {name}"),
                ));
            }
            if !ctx.may(broker, Operation::Alter, ResourceType::Topic, &name) {
                return Err((
                    error::TOPIC_AUTHORIZATION_FAILED,
                    "Topic authorization failed.".into(),
                ));
            }
            if let Some(assignments) = &t.assignments {
                let topic = broker.topic(&name).ok_or((
                    error::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("The topic '{name}' does not exist."),
                ))?;
                let adding = i64::from(t.count) - topic.partitions.len() as i64;
                if adding > 0 && assignments.len() as i64 != adding {
                    return Err((
                        error::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "Increasing the number of partitions by {adding} but {} assignments provided.",
                            assignments.len()
                        ),
                    ));
                }
                if let Some(a) = assignments
                    .iter()
                    .find(|a| a.broker_ids.len() != 1 || a.broker_ids[0] != BrokerId(node))
                {
                    return Err((
                        error::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "Unknown broker(s) or replication factor other than 1 in assignment {:?}; the only broker is {node}",
                            a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>()
                        ),
                    ));
                }
            }
            broker
                .create_partitions(&name, t.count, req.validate_only)
                .await
                .map(|_| ())
                .map_err(|e| (topic_error_code(&e), e.to_string()))
        }
        .await;
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name;
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = Some(sb(message));
        }
        resp.results.push(r);
    }
    ctx.respond(&resp)
}

/// DeleteRecords v0-v2: moves each partition's log start offset (durably) and
/// answers the new low watermark.
pub(super) async fn delete_records(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DeleteRecordsRequest,
) -> ResponseFrame {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        // DELETE on the topic, checked before its existence, as Kafka.
        let denied = !ctx.may(broker, Operation::Delete, ResourceType::Topic, &t.name);
        let topic = broker.topic(t.name.as_str());
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                _ if denied => pr.error_code = error::TOPIC_AUTHORIZATION_FAILED,
                None => pr.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                Some(part) => {
                    let part = part.clone();
                    let offset = p.offset;
                    let done =
                        crate::clock::work::blocking(move || part.delete_records_blocking(offset))
                            .await;
                    match done {
                        Ok(Ok(low)) => pr.low_watermark = low,
                        Ok(Err(e)) => {
                            pr.error_code = partition_error_code(&e);
                            if pr.error_code == error::KAFKA_STORAGE_ERROR {
                                tracing::error!(error = %describe_error(&e), "delete records failed");
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "delete records task failed");
                            pr.error_code = error::KAFKA_STORAGE_ERROR;
                        }
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    ctx.respond(&resp)
}

/// DescribeCluster v0-v1: this broker is the whole cluster and its controller.
pub(super) fn describe_cluster(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeClusterRequest,
) -> ResponseFrame {
    let mut resp = DescribeClusterResponse::default();
    resp.endpoint_type = 1;
    if ctx.version >= 1 && req.endpoint_type != 1 {
        // Kafka brokers list brokers only; controllers are asked directly.
        resp.error_code = error::UNSUPPORTED_ENDPOINT_TYPE;
        resp.error_message = Some(sb("this endpoint serves endpoint type 1 (brokers)"));
        resp.endpoint_type = req.endpoint_type;
        return ctx.respond(&resp);
    }
    let (host, port) = broker.advertised_for(ctx.listener);
    resp.cluster_id = sb(broker.cluster_id.clone());
    resp.controller_id = BrokerId(broker.config.node_id);
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(broker.config.node_id);
    b.host = sb(host);
    b.port = port;
    b.rack = None;
    resp.brokers.push(b);
    // Kafka's "not provided" value unless asked for; 0 without DESCRIBE.
    resp.cluster_authorized_operations = if !req.include_cluster_authorized_operations {
        i32::MIN
    } else if ctx.may_cluster(broker, Operation::Describe) {
        ctx.operations(broker, ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    };
    ctx.respond(&resp)
}

/// DescribeLogDirs v1-v4: the one data directory, its partitions and space.
pub(super) async fn describe_log_dirs(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeLogDirsRequest,
) -> ResponseFrame {
    if !ctx.may_cluster(broker, Operation::Describe) {
        // v3+ say why; before that the answer is just empty, as Kafka.
        let mut resp = DescribeLogDirsResponse::default();
        if ctx.version >= 3 {
            resp.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        }
        return ctx.respond(&resp);
    }
    // (topic, partitions) to report; `None` means every partition.
    // Each topic once, its partitions as a set: the request's lists cost
    // what they weigh, not their product with the topic's partitions.
    let wanted: Vec<(Arc<crate::broker::Topic>, Option<HashSet<i32>>)> = match req.topics {
        None => broker.topics().into_iter().map(|t| (t, None)).collect(),
        Some(ts) => {
            let mut by_name: HashMap<String, HashSet<i32>> = HashMap::new();
            for t in ts {
                by_name
                    .entry(t.topic.to_string())
                    .or_default()
                    .extend(t.partitions);
            }
            let mut v: Vec<_> = by_name
                .into_iter()
                .filter_map(|(name, parts)| broker.topic(&name).map(|t| (t, Some(parts))))
                .collect();
            v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            v
        }
    };
    let dir = broker.config.data_dir.clone();
    let sizes = crate::clock::work::blocking(move || {
        let space = crate::sys::disk_space(&dir).ok();
        let topics: Vec<DescribeLogDirsTopic> = wanted
            .iter()
            .map(|(t, parts)| {
                let mut dt = DescribeLogDirsTopic::default();
                dt.name = kafka_protocol::messages::TopicName(sb(t.name.clone()));
                for p in &t.partitions {
                    if parts.as_ref().is_some_and(|ps| !ps.contains(&p.index)) {
                        continue;
                    }
                    let Ok(stats) = p.stats_blocking() else {
                        continue; // offline: not served from this directory
                    };
                    let mut dp = DescribeLogDirsPartition::default();
                    dp.partition_index = p.index;
                    dp.partition_size = i64::try_from(stats.size_bytes).unwrap_or(i64::MAX);
                    dp.offset_lag = 0;
                    dp.is_future_key = false;
                    dt.partitions.push(dp);
                }
                dt
            })
            .collect();
        (topics, space)
    })
    .await;
    let mut resp = DescribeLogDirsResponse::default();
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = sb(broker.config.data_dir.display().to_string());
    result.total_bytes = -1;
    result.usable_bytes = -1;
    match sizes {
        Ok((topics, space)) => {
            result.topics = topics;
            if let Some((total, free)) = space {
                result.total_bytes = i64::try_from(total).unwrap_or(i64::MAX);
                result.usable_bytes = i64::try_from(free).unwrap_or(i64::MAX);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "describe log dirs task failed");
            result.error_code = error::KAFKA_STORAGE_ERROR;
        }
    }
    if broker.storage.health.is_offline() {
        result.error_code = error::KAFKA_STORAGE_ERROR;
    }
    resp.results.push(result);
    ctx.respond(&resp)
}

/// OffsetForLeaderEpoch v2-v4: the end offset of the requested epoch, from the
/// epoch cache `{0: log start}`.
pub(super) fn offset_for_leader_epoch(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: OffsetForLeaderEpochRequest,
) -> ResponseFrame {
    let mut resp = OffsetForLeaderEpochResponse::default();
    // CLUSTER_ACTION (a follower) covers every topic; otherwise DESCRIBE each.
    let cluster = ctx.may_cluster(broker, Operation::ClusterAction);
    for t in req.topics {
        let denied =
            !cluster && !ctx.may(broker, Operation::Describe, ResourceType::Topic, &t.topic);
        let topic = broker.topic(t.topic.as_str());
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic;
        for p in t.partitions {
            let mut r = EpochEndOffset::default();
            r.partition = p.partition;
            r.leader_epoch = -1;
            r.end_offset = -1;
            match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                _ if denied => r.error_code = error::TOPIC_AUTHORIZATION_FAILED,
                None => r.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                Some(part) if part.is_offline() => r.error_code = error::KAFKA_STORAGE_ERROR,
                // A newer epoch than ours is unknown here. (An older one would be
                // FENCED_LEADER_EPOCH, but epoch 0 is the first there is.)
                Some(_) if p.current_leader_epoch > LEADER_EPOCH => {
                    r.error_code = error::UNKNOWN_LEADER_EPOCH
                }
                Some(part) => {
                    if p.leader_epoch >= 0 && p.leader_epoch <= LEADER_EPOCH {
                        // The requested epoch is the current one: it ends at the log end.
                        r.leader_epoch = LEADER_EPOCH;
                        r.end_offset = part.high_watermark();
                    }
                    // An undefined (-1) or future epoch: undefined epoch and offset, as Kafka.
                }
            }
            tr.partitions.push(r);
        }
        resp.topics.push(tr);
    }
    ctx.respond(&resp)
}

/// ElectLeaders v0-v2: the only replica already leads every partition.
pub(super) fn elect_leaders(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: ElectLeadersRequest,
) -> ResponseFrame {
    let mut resp = ElectLeadersResponse::default();
    if !ctx.may_cluster(broker, Operation::Alter) {
        // As Kafka: the request and each partition it names say so.
        resp.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        for t in req.topic_partitions.unwrap_or_default() {
            let mut tr = ReplicaElectionResult::default();
            tr.topic = t.topic;
            tr.partition_result = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut r = PartitionResult::default();
                    r.partition_id = p;
                    r.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
                    r
                })
                .collect();
            resp.replica_election_results.push(tr);
        }
        return ctx.respond(&resp);
    }
    if req.election_type != 0 && req.election_type != 1 {
        resp.error_code = error::INVALID_REQUEST;
        return ctx.respond(&resp);
    }
    // `None` asks for every partition: none needs an election, so none is listed.
    for t in req.topic_partitions.unwrap_or_default() {
        let topic = broker.topic(t.topic.as_str());
        let mut tr = ReplicaElectionResult::default();
        tr.topic = t.topic;
        for p in t.partitions {
            let mut r = PartitionResult::default();
            r.partition_id = p;
            if topic.as_ref().and_then(|t| t.partition(p)).is_some() {
                r.error_code = error::ELECTION_NOT_NEEDED;
                r.error_message = Some(sb("Leader election not needed for topic partition."));
            } else {
                r.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                r.error_message = Some(sb("The partition does not exist."));
            }
            tr.partition_result.push(r);
        }
        resp.replica_election_results.push(tr);
    }
    ctx.respond(&resp)
}

/// DescribeTopicPartitions v0 (newer Java admin clients): topics by name (all
/// when none are named), at most `response_partition_limit` partitions a
/// response, continued from the request's cursor.
pub(super) fn describe_topic_partitions(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeTopicPartitionsRequest,
) -> ResponseFrame {
    use kafka_protocol::messages::describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    };
    let node = BrokerId(broker.config.node_id);
    let limit = usize::try_from(req.response_partition_limit.clamp(1, 2000)).unwrap_or(2000);
    // (name, topic if it exists), sorted by name, as Kafka pages through them.
    let may_describe = |name: &str| ctx.may(broker, Operation::Describe, ResourceType::Topic, name);
    // All topics: the ones the sender may DESCRIBE; named ones are answered
    // TOPIC_AUTHORIZATION_FAILED below, as Kafka.
    let mut wanted: Vec<(String, Option<Arc<crate::broker::Topic>>)> = if req.topics.is_empty() {
        broker
            .topics()
            .into_iter()
            .filter(|t| may_describe(&t.name))
            .map(|t| (t.name.clone(), Some(t)))
            .collect()
    } else {
        req.topics
            .iter()
            .map(|t| (t.name.to_string(), broker.topic(t.name.as_str())))
            .collect()
    };
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    let (cursor_topic, cursor_partition) = req.cursor.as_ref().map_or((String::new(), 0), |c| {
        (c.topic_name.to_string(), c.partition_index)
    });
    let mut resp = DescribeTopicPartitionsResponse::default();
    // As Kafka: a negative cursor partition, or a cursor naming a topic the
    // request does not list, is an invalid request (every topic says so).
    let bad_cursor = req.cursor.is_some()
        && (cursor_partition < 0
            || (!req.topics.is_empty() && !wanted.iter().any(|(n, _)| *n == cursor_topic)));
    if bad_cursor {
        for (name, _) in wanted {
            let mut t = DescribeTopicPartitionsResponseTopic::default();
            t.name = Some(kafka_protocol::messages::TopicName(sb(name)));
            t.error_code = error::INVALID_REQUEST;
            t.topic_authorized_operations = i32::MIN;
            resp.topics.push(t);
        }
        return ctx.respond(&resp);
    }
    let mut budget = limit;
    for (name, topic) in wanted {
        if name < cursor_topic {
            continue;
        }
        let mut t = DescribeTopicPartitionsResponseTopic::default();
        t.name = Some(kafka_protocol::messages::TopicName(sb(name.clone())));
        t.topic_authorized_operations = i32::MIN;
        if !may_describe(&name) {
            t.error_code = error::TOPIC_AUTHORIZATION_FAILED;
            resp.topics.push(t);
            continue;
        }
        let Some(topic) = topic else {
            t.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
            resp.topics.push(t);
            continue;
        };
        t.topic_id = topic.id;
        t.topic_authorized_operations = ctx.operations(broker, ResourceType::Topic, &name);
        let first = if name == cursor_topic {
            cursor_partition
        } else {
            0
        };
        for p in topic.partitions.iter().filter(|p| p.index >= first) {
            if budget == 0 {
                let mut c = Cursor::default();
                c.topic_name = kafka_protocol::messages::TopicName(sb(name.clone()));
                c.partition_index = p.index;
                resp.next_cursor = Some(c);
                break;
            }
            budget -= 1;
            let mut dp = DescribeTopicPartitionsResponsePartition::default();
            dp.partition_index = p.index;
            dp.leader_epoch = LEADER_EPOCH;
            dp.replica_nodes = vec![node];
            dp.eligible_leader_replicas = Some(Vec::new());
            dp.last_known_elr = Some(Vec::new());
            if p.is_offline() {
                dp.error_code = error::LEADER_NOT_AVAILABLE;
                dp.leader_id = BrokerId(-1);
                dp.offline_replicas = vec![node];
            } else {
                dp.leader_id = node;
                dp.isr_nodes = vec![node];
            }
            t.partitions.push(dp);
        }
        resp.topics.push(t);
        if resp.next_cursor.is_some() {
            break;
        }
    }
    ctx.respond(&resp)
}

/// DescribeProducers v0: the idempotent producers each partition remembers
/// (last 5 batches per producer, snapshotted across restarts) with the first
/// offset of each one's open transaction. Markers carry no coordinator epoch
/// here (one coordinator, never moved), so it is reported as -1.
pub(super) async fn describe_producers(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeProducersRequest,
) -> ResponseFrame {
    use kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    // (topic index in the response, partition index, the partition if it exists)
    let mut wanted = Vec::new();
    let mut resp = DescribeProducersResponse::default();
    for (ti, t) in req.topics.into_iter().enumerate() {
        // READ on the topic, as Kafka; refused partitions are answered below.
        let topic = if ctx.may(broker, Operation::Read, ResourceType::Topic, &t.name) {
            Ok(broker.topic(t.name.as_str()))
        } else {
            Err(())
        };
        let mut tr = TopicResponse::default();
        tr.name = t.name;
        resp.topics.push(tr);
        let mut seen = HashSet::new();
        for p in t.partition_indexes {
            if seen.insert(p) {
                let partition = match &topic {
                    Err(()) => Err(error::TOPIC_AUTHORIZATION_FAILED),
                    Ok(t) => Ok(t.as_ref().and_then(|t| t.partition(p)).cloned()),
                };
                wanted.push((ti, p, partition));
            }
        }
    }
    let read = crate::clock::work::blocking(move || {
        wanted
            .into_iter()
            .map(|(ti, index, p)| {
                let r = match &p {
                    Err(code) => Err(*code),
                    Ok(None) => Err(error::UNKNOWN_TOPIC_OR_PARTITION),
                    Ok(Some(p)) => p.producers_blocking().map_err(|e| partition_error_code(&e)),
                };
                (ti, index, r)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let Ok(read) = read else {
        tracing::error!("describe producers task failed");
        for t in &mut resp.topics {
            t.partitions.clear();
        }
        return ctx.respond(&resp);
    };
    for (ti, index, r) in read {
        let mut pr = PartitionResponse::default();
        pr.partition_index = index;
        match r {
            Ok(producers) => {
                pr.active_producers = producers
                    .into_iter()
                    .map(|p| {
                        let mut s = ProducerState::default();
                        s.producer_id = kafka_protocol::messages::ProducerId(p.producer_id);
                        s.producer_epoch = i32::from(p.epoch);
                        s.last_sequence = p.last_sequence;
                        s.last_timestamp = p.last_timestamp;
                        s.coordinator_epoch = -1;
                        s.current_txn_start_offset = p.txn_start_offset;
                        s
                    })
                    .collect();
            }
            Err(code) => pr.error_code = code,
        }
        resp.topics[ti].partitions.push(pr);
    }
    ctx.respond(&resp)
}
