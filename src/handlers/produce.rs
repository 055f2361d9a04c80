//! Produce v3-v11: validate and append each partition's batch, then answer by
//! `acks`: 0 no response, 1 after the write, -1 after the fsync (group commit).

use std::sync::Arc;

use bytes::Bytes;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{describe, partition_error_code, sb, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::append::{Acks, AppendJob, PreAppend};
use crate::broker::Broker;
use crate::log::records::{self, InvalidBatch, RecordError};
use crate::log::AppendError;
use crate::log::BatchError;
use crate::protocol::{error, ResponseFrame};
use crate::quota::QuotaKind;
use crate::storage::Partition;

/// An append to do: the partition, its records (still in the request buffer)
/// and its topic's name.
type Job = (Arc<Partition>, Bytes, String);

/// One partition's slot in the response: either an early error or an append to do.
struct Slot {
    /// Index of its topic in the response.
    topic: usize,
    /// The partition's answer, filled as the append goes.
    response: PartitionProduceResponse,
    /// The append to do, if the partition passed the early checks.
    job: Option<Job>,
}

fn partition_error(index: i32, code: i16, message: impl Into<String>) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = index;
    r.error_code = code;
    r.base_offset = -1;
    r.log_append_time_ms = -1;
    r.log_start_offset = -1;
    r.error_message = Some(sb(message.into()));
    r
}

/// The Kafka error of a batch that failed validation: CORRUPT_MESSAGE for a
/// damaged batch (length, magic, CRC), INVALID_RECORD for a well-formed one whose
/// contents break the rules, as Kafka's log validator answers.
pub(super) fn invalid_batch_code(e: &InvalidBatch) -> i16 {
    match e {
        InvalidBatch::Header(BatchError::BadCount { .. }) | InvalidBatch::Records(_) => {
            error::INVALID_RECORD
        }
        InvalidBatch::Header(_) => error::CORRUPT_MESSAGE,
    }
}

/// Whether the (single, header-checked) batch is zstd-compressed.
fn is_zstd(batch: &[u8]) -> bool {
    crate::log::BatchHeader::parse(batch)
        .is_ok_and(|h| records::Codec::of(h.attributes) == Ok(records::Codec::Zstd))
}

/// A transactional batch is accepted only inside its producer's open
/// transaction: the request names the transactional id, which this producer
/// id and epoch hold, and the partition was added to the transaction (the
/// verification of KIP-890 part 1, which keeps a zombie's or a stray batch
/// from opening a transaction no marker will ever end). Runs under the
/// partition's log lock, so no marker lands between it and the append.
fn verify_transactional(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    h: &crate::log::BatchHeader,
) -> Result<(), AppendError> {
    use crate::txn::state::TxnError;
    use crate::txn::CoordError;
    if h.attributes & crate::log::batch::ATTR_TRANSACTIONAL == 0 {
        return Ok(());
    }
    let Some(id) = transactional_id.filter(|id| !id.is_empty()) else {
        return Err(AppendError::Invalid(InvalidBatch::Records(
            RecordError::NotAllowed("a transactional batch needs the request's transactional id"),
        )));
    };
    let p = [(topic.to_string(), partition)];
    match broker
        .txns
        .missing_partitions(id, h.producer_id, h.producer_epoch, &p)
    {
        Ok(missing) if missing.is_empty() => Ok(()),
        Ok(_) => Err(AppendError::InvalidTxnState),
        Err(CoordError::Txn(TxnError::Fenced)) => Err(AppendError::InvalidProducerEpoch),
        Err(_) => Err(AppendError::InvalidProducerIdMapping),
    }
}

/// Handles a Produce request; `None` for acks=0.
pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    client_id: &str,
    req: ProduceRequest,
) -> Option<ResponseFrame> {
    let acks = req.acks;
    // What producer_byte_rate counts: the record bytes of the request.
    let request_bytes: u64 = req
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_ref())
        .map(|r| r.len() as u64)
        .sum();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    // The topic of each response entry, for its traffic counters.
    let mut known = Vec::with_capacity(req.topic_data.len());
    let mut slots = Vec::new();
    let txn_id = req.transactional_id.as_ref().map(|t| t.to_string());
    // As Kafka: a transactional producer needs WRITE on its transactional id
    // (else every partition fails), and WRITE on each topic, checked before
    // the topic's existence so that an unauthorized client learns nothing.
    let txn_denied = txn_id
        .as_deref()
        .is_some_and(|id| !ctx.may(broker, Operation::Write, ResourceType::TransactionalId, id));
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let topic_name = td.name.0.to_string();
        let denied = !ctx.may(broker, Operation::Write, ResourceType::Topic, &topic_name);
        let topic = broker.topic(td.name.0.as_str());
        known.push(topic.clone());
        let mut tr = TopicProduceResponse::default();
        tr.name = td.name;
        topics.push(tr);
        for pd in td.partition_data {
            let partition = topic.as_ref().and_then(|t| t.partition(pd.index));
            let (response, job) = match (partition, pd.records) {
                _ if !matches!(acks, -1..=1) => (
                    partition_error(
                        pd.index,
                        error::INVALID_REQUIRED_ACKS,
                        "acks must be -1, 0 or 1",
                    ),
                    None,
                ),
                _ if txn_denied => (
                    partition_error(
                        pd.index,
                        error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        "Transactional Id authorization failed.",
                    ),
                    None,
                ),
                _ if denied => (
                    partition_error(
                        pd.index,
                        error::TOPIC_AUTHORIZATION_FAILED,
                        "Topic authorization failed.",
                    ),
                    None,
                ),
                (None, _) => (
                    partition_error(
                        pd.index,
                        error::UNKNOWN_TOPIC_OR_PARTITION,
                        "unknown topic or partition",
                    ),
                    None,
                ),
                (Some(_), _)
                    if acks == -1
                        && topic.as_ref().is_some_and(|t| t.min_insync_replicas() > 1) =>
                {
                    // As Kafka with fewer in-sync replicas than min.insync.replicas.
                    (
                        partition_error(
                            pd.index,
                            error::NOT_ENOUGH_REPLICAS,
                            "min.insync.replicas is above 1 and this broker is the only replica",
                        ),
                        None,
                    )
                }
                (Some(_), None) => (
                    partition_error(pd.index, error::CORRUPT_MESSAGE, "null record set"),
                    None,
                ),
                (Some(p), Some(records)) => match records::single_batch(&records) {
                    Err(e) => (
                        partition_error(pd.index, invalid_batch_code(&e), e.to_string()),
                        None,
                    ),
                    Ok(()) if ctx.version < 7 && is_zstd(&records) => (
                        // As Kafka: zstd came with Produce v7 (KIP-110).
                        partition_error(
                            pd.index,
                            error::UNSUPPORTED_COMPRESSION_TYPE,
                            "zstd needs Produce v7 or later",
                        ),
                        None,
                    ),
                    Ok(()) => {
                        let mut r = PartitionProduceResponse::default();
                        r.index = pd.index;
                        // The records stay in the request buffer: the log writes them
                        // from there beside their assigned headers.
                        (r, Some((p.clone(), records, topic_name.clone())))
                    }
                },
            };
            slots.push(Slot {
                topic: ti,
                response,
                job,
            });
        }
    }

    // All appends of the request in one blocking task: validation and disk
    // writes stay off the workers.
    let mut parts = Vec::new();
    let mut jobs = Vec::new();
    for (i, s) in slots.iter_mut().enumerate() {
        let Some((p, bytes, topic_name)) = s.job.take() else {
            continue;
        };
        let Some(topic) = known[s.topic].clone() else {
            continue;
        };
        let (b, txn_id, index) = (broker.clone(), txn_id.clone(), p.index);
        let check: PreAppend = Box::new(move |h: &crate::log::BatchHeader| {
            verify_transactional(&b, txn_id.as_deref(), &topic_name, index, h)
        });
        parts.push((i, p.clone()));
        jobs.push(AppendJob {
            partition: p,
            topic,
            bytes,
            check: Some(check),
        });
    }
    // Written with acks=1, durable too with acks=-1 (the flush policy permitting).
    let wait = if acks == -1 {
        Acks::Durable
    } else {
        Acks::Written
    };
    let results = broker.append_batches(jobs, wait).await;
    for ((i, p), result) in parts.into_iter().zip(results) {
        let slot = &mut slots[i];
        match result {
            Ok(info) => {
                slot.response.base_offset = info.base_offset;
                slot.response.log_append_time_ms = info.log_append_time;
                slot.response.log_start_offset = p.log_start_offset();
            }
            Err(e) => {
                let code = partition_error_code(&e);
                let message = describe(&e);
                if code == error::KAFKA_STORAGE_ERROR {
                    tracing::error!(partition = slot.response.index, error = %message, "append failed");
                } else {
                    tracing::debug!(error = %message, "append refused");
                }
                slot.response = partition_error(slot.response.index, code, message);
            }
        }
    }
    // The data is kept whatever the quota says; a client over it is told to
    // wait (throttle_time_ms) and its connection is muted for that long.
    let (throttle, _) = ctx.throttle(broker, client_id, QuotaKind::Produce, request_bytes);
    if acks == 0 {
        // No response: muting is the sleep before the next request is read.
        let throttle = throttle.max(ctx.throttle_ms);
        if throttle > 0 {
            let mut shutdown = broker.shutdown_signal();
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(throttle)) => {}
                _ = shutdown.changed() => {}
            }
        }
        return None;
    }
    for slot in slots {
        if slot.response.error_code != error::NONE {
            crate::metrics::produce_rejected(crate::protocol::error_name(slot.response.error_code));
        }
        topics[slot.topic].partition_responses.push(slot.response);
    }
    let mut resp = ProduceResponse::default();
    resp.responses = topics;
    resp.throttle_time_ms = i32::try_from(throttle).unwrap_or(i32::MAX);
    let mut frame = ctx.respond(&resp);
    frame.throttle_ms = frame.throttle_ms.max(throttle);
    Some(frame)
}
