//! The transaction APIs (KIP-98, transaction protocol v1): AddPartitionsToTxn
//! v0-v4, AddOffsetsToTxn v0-v3, EndTxn v0-v3, TxnOffsetCommit v0-v3,
//! DescribeTransactions v0 and ListTransactions v0-v1. InitProducerId with a
//! transactional id is in `producer_id`. Errors are Kafka's, by version:
//! PRODUCER_FENCED from the versions that know it, INVALID_PRODUCER_EPOCH before.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{sb, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::{Broker, GROUP_LOG_DIR};
use crate::protocol::{error, ResponseFrame};
use crate::txn::state::{TxnError, TxnState};
use crate::txn::CoordError;

/// The Kafka error code of a coordinator error; `fenced_code` is what a fenced
/// producer gets at this API version.
pub(super) fn coord_code(e: CoordError, fenced_code: i16) -> i16 {
    match e {
        CoordError::Txn(TxnError::InvalidTransactionTimeout) => error::INVALID_TRANSACTION_TIMEOUT,
        CoordError::Txn(TxnError::ConcurrentTransactions) => error::CONCURRENT_TRANSACTIONS,
        CoordError::Txn(TxnError::Fenced) => fenced_code,
        CoordError::Txn(TxnError::InvalidProducerIdMapping) => error::INVALID_PRODUCER_ID_MAPPING,
        CoordError::Txn(TxnError::InvalidTxnState) => error::INVALID_TXN_STATE,
        CoordError::NotCoordinator => error::NOT_COORDINATOR,
        CoordError::TooManyIds => error::COORDINATOR_NOT_AVAILABLE,
    }
}

/// PRODUCER_FENCED from `since` on, INVALID_PRODUCER_EPOCH before (KIP-588).
fn fenced(version: i16, since: i16) -> i16 {
    if version >= since {
        error::PRODUCER_FENCED
    } else {
        error::INVALID_PRODUCER_EPOCH
    }
}

/// One transaction's partitions answered with one code each.
fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    code_of: impl Fn(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            let mut r = AddPartitionsToTxnTopicResult::default();
            r.name = t.name.clone();
            r.results_by_partition = t
                .partitions
                .iter()
                .map(|p| {
                    let mut pr = AddPartitionsToTxnPartitionResult::default();
                    pr.partition_index = *p;
                    pr.partition_error_code = code_of(t.name.as_str(), *p);
                    pr
                })
                .collect();
            r
        })
        .collect()
}

/// The client's (v0-v3) AddPartitionsToTxn authorization, as Kafka: WRITE on
/// the transactional id (else every partition fails), WRITE on each topic
/// (else those partitions fail and the rest are not attempted).
fn add_refused(
    broker: &Broker,
    ctx: &Ctx,
    id: &str,
    topics: &[AddPartitionsToTxnTopic],
) -> Option<Vec<AddPartitionsToTxnTopicResult>> {
    if !ctx.may(broker, Operation::Write, ResourceType::TransactionalId, id) {
        return Some(topic_results(topics, |_, _| {
            error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        }));
    }
    let denied: Vec<&str> = topics
        .iter()
        .map(|t| t.name.as_str())
        .filter(|t| !ctx.may(broker, Operation::Write, ResourceType::Topic, t))
        .collect();
    (!denied.is_empty()).then(|| {
        topic_results(topics, |t, _| {
            if denied.contains(&t) {
                error::TOPIC_AUTHORIZATION_FAILED
            } else {
                error::OPERATION_NOT_ATTEMPTED
            }
        })
    })
}

/// Adds (or, v4 `verify_only`, checks) one transaction's partitions.
async fn add_one(
    broker: &Arc<Broker>,
    version: i16,
    id: &str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let partitions: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let unknown: Vec<&(String, i32)> = partitions
        .iter()
        .filter(|(t, p)| {
            broker
                .topic(t)
                .and_then(|t| t.partition(*p).cloned())
                .is_none()
        })
        .collect();
    if !unknown.is_empty() {
        // As Kafka: nothing is added; the others were not attempted.
        return topic_results(topics, |t, p| {
            if unknown.iter().any(|(ut, up)| ut == t && *up == p) {
                error::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                error::OPERATION_NOT_ATTEMPTED
            }
        });
    }
    let fenced_code = fenced(version, 2);
    if verify_only {
        return match broker
            .txns
            .missing_partitions(id, producer_id, epoch, &partitions)
        {
            Ok(missing) => topic_results(topics, |t, p| {
                if missing.iter().any(|(mt, mp)| mt == t && *mp == p) {
                    error::INVALID_TXN_STATE
                } else {
                    error::NONE
                }
            }),
            Err(e) => {
                let code = coord_code(e, fenced_code);
                topic_results(topics, |_, _| code)
            }
        };
    }
    let code = match broker
        .txns
        .add_partitions(id, producer_id, epoch, &partitions)
        .await
    {
        Ok(()) => error::NONE,
        Err(e) => coord_code(e, fenced_code),
    };
    topic_results(topics, |_, _| code)
}

/// AddPartitionsToTxn v0-v3 (one transaction) and v4 (batched, with `verify_only`).
pub(super) async fn add_partitions(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: AddPartitionsToTxnRequest,
) -> ResponseFrame {
    let v = ctx.version;
    let mut resp = AddPartitionsToTxnResponse::default();
    if v <= 3 {
        if let Some(refused) = add_refused(
            broker,
            ctx,
            req.v3_and_below_transactional_id.as_str(),
            &req.v3_and_below_topics,
        ) {
            resp.results_by_topic_v3_and_below = refused;
            return ctx.respond(&resp);
        }
        resp.results_by_topic_v3_and_below = add_one(
            broker,
            v,
            req.v3_and_below_transactional_id.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
        )
        .await;
        return ctx.respond(&resp);
    }
    // v4+ is sent by brokers verifying transactional produce: CLUSTER_ACTION.
    if !ctx.may_cluster(broker, Operation::ClusterAction) {
        resp.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        return ctx.respond(&resp);
    }
    for t in &req.transactions {
        let mut r = AddPartitionsToTxnResult::default();
        r.transactional_id = t.transactional_id.clone();
        r.topic_results = add_one(
            broker,
            v,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
        )
        .await;
        resp.results_by_transaction.push(r);
    }
    ctx.respond(&resp)
}

/// AddOffsetsToTxn: the group's offsets join the transaction as the group
/// log's partition, as Kafka adds its `__consumer_offsets` partition.
pub(super) async fn add_offsets(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: AddOffsetsToTxnRequest,
) -> ResponseFrame {
    let mut resp = AddOffsetsToTxnResponse::default();
    if !ctx.may(
        broker,
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        resp.error_code = error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return ctx.respond(&resp);
    }
    if !ctx.may(broker, Operation::Read, ResourceType::Group, &req.group_id) {
        resp.error_code = error::GROUP_AUTHORIZATION_FAILED;
        return ctx.respond(&resp);
    }
    if req.group_id.is_empty() {
        resp.error_code = error::INVALID_GROUP_ID;
        return ctx.respond(&resp);
    }
    let partition = [(GROUP_LOG_DIR.to_string(), 0)];
    resp.error_code = match broker
        .txns
        .add_partitions(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            &partition,
        )
        .await
    {
        Ok(()) => error::NONE,
        Err(e) => coord_code(e, fenced(ctx.version, 2)),
    };
    ctx.respond(&resp)
}

/// EndTxn: commits or aborts; answered once the outcome is durable and the
/// markers were written (or a first attempt at them failed; they are retried).
pub(super) async fn end(broker: &Arc<Broker>, ctx: &Ctx, req: EndTxnRequest) -> ResponseFrame {
    let mut resp = EndTxnResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if !ctx.may(
        broker,
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        resp.error_code = error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return ctx.respond(&resp);
    }
    resp.error_code = match broker
        .txns
        .end_txn(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
        )
        .await
    {
        Ok(()) => error::NONE,
        Err(e) => coord_code(e, fenced(ctx.version, 2)),
    };
    ctx.respond(&resp)
}

/// TxnOffsetCommit: offsets held pending in the group until the transaction
/// ends. The producer must hold the transactional id at this epoch (a stale
/// epoch is INVALID_PRODUCER_EPOCH, as Kafka's log check answers) with the
/// group added to its open transaction (else INVALID_TXN_STATE).
pub(super) async fn offset_commit(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: TxnOffsetCommitRequest,
) -> ResponseFrame {
    let flat: Vec<(String, i32, i64, i32, String)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                )
            })
        })
        .collect();
    let id = req.transactional_id.as_str();
    // As Kafka: WRITE on the transactional id and READ on the group refuse
    // every partition; READ on a topic refuses its own.
    let whole = if !ctx.may(broker, Operation::Write, ResourceType::TransactionalId, id) {
        Some(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !ctx.may(broker, Operation::Read, ResourceType::Group, &req.group_id) {
        Some(error::GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    };
    let refused_topic =
        |t: &str| whole.is_none() && !ctx.may(broker, Operation::Read, ResourceType::Topic, t);
    let (flat, refused): (Vec<_>, Vec<_>) = flat
        .into_iter()
        .partition(|f| whole.is_none() && !refused_topic(&f.0));
    let refused: Vec<((String, i32), i16)> = refused
        .into_iter()
        .map(|f| {
            let code = whole.unwrap_or(error::TOPIC_AUTHORIZATION_FAILED);
            ((f.0, f.1), code)
        })
        .collect();
    let keys: Vec<(String, i32)> = flat.iter().map(|f| (f.0.clone(), f.1)).collect();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    // The transaction must be open with the group added (AddOffsetsToTxn),
    // checked under the group's lock so no completion slips in between.
    let verify =
        || match broker
            .txns
            .missing_partitions(id, pid, epoch, &[(GROUP_LOG_DIR.to_string(), 0)])
        {
            Ok(missing) if missing.is_empty() => Ok(()),
            Ok(_) => Err(error::INVALID_TXN_STATE),
            Err(e) => Err(coord_code(e, error::INVALID_PRODUCER_EPOCH)),
        };
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let codes: Vec<i16> = if keys.is_empty() {
        Vec::new()
    } else {
        match broker
            .groups
            .txn_commit(
                req.group_id.as_str(),
                pid,
                req.member_id.as_str(),
                &instance,
                req.generation_id,
                flat,
                verify,
            )
            .await
        {
            Err(code) => vec![code; keys.len()],
            Ok(results) => results
                .into_iter()
                .map(|r| match r {
                    Ok(()) => error::NONE,
                    Err(e) => super::groups::group_error_code(e),
                })
                .collect(),
        }
    };
    let mut by_topic: BTreeMap<String, Vec<TxnOffsetCommitResponsePartition>> = BTreeMap::new();
    let mut order = Vec::new();
    for ((topic, partition), code) in keys.into_iter().zip(codes).chain(refused) {
        let mut p = TxnOffsetCommitResponsePartition::default();
        p.partition_index = partition;
        p.error_code = code;
        if !by_topic.contains_key(&topic) {
            order.push(topic.clone());
        }
        by_topic.entry(topic).or_default().push(p);
    }
    let mut resp = TxnOffsetCommitResponse::default();
    for topic in order {
        let mut t = TxnOffsetCommitResponseTopic::default();
        t.partitions = by_topic.remove(&topic).unwrap_or_default();
        t.name = TopicName(sb(topic));
        resp.topics.push(t);
    }
    ctx.respond(&resp)
}

/// DescribeTransactions v0.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeTransactionsRequest,
) -> ResponseFrame {
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut s = describe_transactions_response::TransactionState::default();
        let allowed = ctx.may(
            broker,
            Operation::Describe,
            ResourceType::TransactionalId,
            &id,
        );
        match broker.txns.describe(id.as_str()) {
            _ if !allowed => {
                s.error_code = error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
                s.producer_id = ProducerId(-1);
                s.producer_epoch = -1;
                s.transaction_start_time_ms = -1;
                s.transaction_state = sb("");
            }
            None => {
                s.error_code = error::TRANSACTIONAL_ID_NOT_FOUND;
                s.producer_id = ProducerId(-1);
                s.producer_epoch = -1;
                s.transaction_start_time_ms = -1;
                s.transaction_state = sb("");
            }
            Some(t) => {
                s.transaction_state = sb(t.state.name());
                s.transaction_timeout_ms = t.timeout_ms;
                s.transaction_start_time_ms = t.start_ms;
                s.producer_id = ProducerId(t.producer_id);
                s.producer_epoch = t.epoch;
                let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                // Topics the sender may not DESCRIBE are left out, as Kafka.
                for (topic, p) in &t.partitions {
                    if ctx.may(broker, Operation::Describe, ResourceType::Topic, topic) {
                        topics.entry(topic.as_str()).or_default().push(*p);
                    }
                }
                s.topics = topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let mut d = TopicData::default();
                        d.topic = TopicName(sb(topic.to_string()));
                        d.partitions = partitions;
                        d
                    })
                    .collect();
            }
        }
        s.transactional_id = id;
        resp.transaction_states.push(s);
    }
    ctx.respond(&resp)
}

/// ListTransactions v0-v1: filtered by state, producer id and (v1) by how
/// long the transaction has been open.
pub(super) fn list(broker: &Arc<Broker>, ctx: &Ctx, req: ListTransactionsRequest) -> ResponseFrame {
    let mut resp = ListTransactionsResponse::default();
    resp.unknown_state_filters = req
        .state_filters
        .iter()
        .filter(|s| !TxnState::ALL.iter().any(|t| t.name() == s.as_str()))
        .cloned()
        .collect();
    let now = crate::clock::now_ms();
    let duration = if ctx.version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    resp.transaction_states = broker
        .txns
        .list()
        .into_iter()
        .filter(|t| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == t.state.name())
        })
        .filter(|t| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == t.producer_id)
        })
        .filter(|t| duration < 0 || (t.start_ms >= 0 && now - t.start_ms > duration))
        .filter(|t| {
            ctx.may(
                broker,
                Operation::Describe,
                ResourceType::TransactionalId,
                &t.id,
            )
        })
        .map(|t| {
            let mut s = list_transactions_response::TransactionState::default();
            s.transactional_id = TransactionalId(sb(t.id.clone()));
            s.producer_id = ProducerId(t.producer_id);
            s.transaction_state = sb(t.state.name());
            s
        })
        .collect();
    ctx.respond(&resp)
}
