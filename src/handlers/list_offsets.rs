//! ListOffsets v1-v8: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4) and lookups by timestamp, which search inside the found batch.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;

use super::Ctx;
use crate::broker::{Broker, Partition};
use crate::log::BatchHeader;
use crate::protocol::{error, ResponseFrame};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// First record in `batch` whose timestamp is `>= ts` (or `== ts` with `exact`),
/// as `(timestamp, offset)`. Falls back to the batch's base offset and max timestamp
/// when the batch cannot be decoded (an unknown codec).
fn search_batch(batch: Vec<u8>, ts: i64, exact: bool) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(&batch).ok()?;
    let mut buf = Bytes::from(batch);
    match RecordBatchDecoder::decode(&mut buf) {
        Ok(set) => set
            .records
            .iter()
            .find(|r| {
                if exact {
                    r.timestamp == ts
                } else {
                    r.timestamp >= ts
                }
            })
            .map(|r| (r.timestamp, r.offset)),
        Err(e) => {
            tracing::debug!(error = %e, "cannot decode batch for timestamp search; using its base offset");
            Some((header.max_timestamp, header.base_offset))
        }
    }
}

/// `(timestamp, offset)` for one partition query (blocking).
fn lookup(p: &Partition, ts: i64) -> std::io::Result<(i64, i64)> {
    Ok(match ts {
        LATEST => (-1, p.high_watermark()),
        EARLIEST | EARLIEST_LOCAL => (-1, p.log_start_offset()),
        MAX_TIMESTAMP => match p.max_timestamp_batch_blocking()? {
            Some((max, batch)) => search_batch(batch, max, true).unwrap_or((-1, -1)),
            None => (-1, -1),
        },
        ts => match p.find_by_timestamp_blocking(ts)? {
            Some(batch) => search_batch(batch, ts, false).unwrap_or((-1, -1)),
            None => (-1, -1),
        },
    })
}

/// Handles ListOffsets.
pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: ListOffsetsRequest,
) -> ResponseFrame {
    let v = ctx.version;
    let mut queries = Vec::new();
    let mut resp = ListOffsetsResponse::default();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = broker.topic(&t.name.0);
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        resp.topics.push(tr);
        for p in &t.partitions {
            let partition = topic.as_ref().and_then(|t| {
                usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            });
            let valid_special = p.timestamp >= 0
                || p.timestamp == LATEST
                || p.timestamp == EARLIEST
                || (p.timestamp == MAX_TIMESTAMP && v >= 7)
                || (p.timestamp == EARLIEST_LOCAL && v >= 8);
            queries.push((
                ti,
                p.partition_index,
                partition.cloned(),
                p.timestamp,
                valid_special,
            ));
        }
    }
    let answers = tokio::task::spawn_blocking(move || {
        queries
            .into_iter()
            .map(|(ti, index, partition, ts, valid)| {
                let mut r = ListOffsetsPartitionResponse::default();
                r.partition_index = index;
                r.timestamp = -1;
                r.offset = -1;
                match (partition, valid) {
                    (None, _) => r.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                    (Some(_), false) => r.error_code = error::INVALID_REQUEST,
                    (Some(p), true) => match lookup(&p, ts) {
                        Ok((t, o)) => {
                            r.timestamp = t;
                            r.offset = o;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "list offsets read failed");
                            r.error_code = error::KAFKA_STORAGE_ERROR;
                        }
                    },
                }
                (ti, r)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (ti, mut r) in answers {
        if v >= 4 && r.error_code == error::NONE {
            r.leader_epoch = 0;
        }
        resp.topics[ti].partitions.push(r);
    }
    ctx.respond(&resp)
}
