//! Produce v3-v11: validate and append each partition's batches, then answer by
//! `acks`: 0 no response, 1 after the write, -1 after the fsync (group commit).

use std::sync::Arc;

use bytes::Bytes;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{sb, Ctx};
use crate::broker::{Broker, Partition};
use crate::log::AppendError;
use crate::protocol::{error, ResponseFrame};

/// One partition's slot in the response: either an early error or an append to do.
struct Slot {
    topic: usize,
    response: PartitionProduceResponse,
    job: Option<(Arc<Partition>, Bytes)>,
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

fn append_error(e: &AppendError) -> i16 {
    match e {
        AppendError::Batch(_) => error::CORRUPT_MESSAGE,
        AppendError::TooLarge { .. } => error::MESSAGE_TOO_LARGE,
        AppendError::InvalidProducerEpoch => error::INVALID_PRODUCER_EPOCH,
        AppendError::OutOfOrderSequence { .. } => error::OUT_OF_ORDER_SEQUENCE_NUMBER,
        AppendError::Unsupported(_) => error::INVALID_RECORD,
        AppendError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            error::UNKNOWN_TOPIC_OR_PARTITION
        }
        AppendError::Io(_) => error::KAFKA_STORAGE_ERROR,
    }
}

/// Handles a Produce request; `None` for acks=0.
pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: ProduceRequest,
) -> Option<ResponseFrame> {
    let acks = req.acks;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut slots = Vec::new();
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let name = td.name.0.to_string();
        let topic = broker.topic(&name);
        let mut tr = TopicProduceResponse::default();
        tr.name = td.name;
        topics.push(tr);
        for pd in td.partition_data {
            let early = if !matches!(acks, -1..=1) {
                Some(partition_error(
                    pd.index,
                    error::INVALID_REQUIRED_ACKS,
                    "acks must be -1, 0 or 1",
                ))
            } else if req.transactional_id.is_some() {
                Some(partition_error(
                    pd.index,
                    error::INVALID_REQUEST,
                    "transactions are not supported yet",
                ))
            } else {
                None
            };
            let partition = topic.as_ref().and_then(|t| t.partition(pd.index));
            let slot = match (early, partition, pd.records) {
                (Some(r), _, _) => Slot {
                    topic: ti,
                    response: r,
                    job: None,
                },
                (None, None, _) => Slot {
                    topic: ti,
                    response: partition_error(
                        pd.index,
                        error::UNKNOWN_TOPIC_OR_PARTITION,
                        "unknown topic or partition",
                    ),
                    job: None,
                },
                (None, Some(_), None) => Slot {
                    topic: ti,
                    response: partition_error(pd.index, error::CORRUPT_MESSAGE, "null record set"),
                    job: None,
                },
                (None, Some(p), Some(records)) => {
                    let mut r = PartitionProduceResponse::default();
                    r.index = pd.index;
                    // The records stay in the request buffer: the log writes them
                    // from there beside their assigned headers.
                    Slot {
                        topic: ti,
                        response: r,
                        job: Some((p.clone(), records)),
                    }
                }
            };
            slots.push(slot);
        }
    }

    // All appends of the request in one blocking task: disk writes stay off the workers.
    let jobs: Vec<Option<(Arc<Partition>, Bytes)>> =
        slots.iter_mut().map(|s| s.job.take()).collect();
    let results = tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|job| job.map(|(p, bytes)| (p.append_blocking(&bytes), p)))
            .collect::<Vec<_>>()
    })
    .await;
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "append task failed");
            slots.iter().map(|_| None).collect()
        }
    };

    let mut durable = Vec::new();
    for (slot, result) in slots.iter_mut().zip(results) {
        let Some((result, partition)) = result else {
            continue;
        };
        match result {
            Ok(info) => {
                slot.response.base_offset = info.base_offset;
                slot.response.log_append_time_ms = -1;
                slot.response.log_start_offset = partition.log_start_offset();
                durable.push((partition, info.last_offset + 1));
            }
            Err(e) => {
                let code = append_error(&e);
                if code == error::KAFKA_STORAGE_ERROR {
                    tracing::error!(error = %e, "append failed");
                } else {
                    tracing::debug!(error = %e, "append refused");
                }
                slot.response = partition_error(slot.response.index, code, e.to_string());
            }
        }
    }
    if acks == 0 {
        return None;
    }
    if acks == -1 {
        broker.wait_durable(durable).await;
    }
    for slot in slots {
        topics[slot.topic].partition_responses.push(slot.response);
    }
    let mut resp = ProduceResponse::default();
    resp.responses = topics;
    Some(ctx.respond(&resp))
}
