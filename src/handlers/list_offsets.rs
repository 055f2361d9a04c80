//! ListOffsets v1-v8: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4) and lookups by timestamp, which search inside the found batch.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{partition_error_code, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::log::records;
use crate::protocol::{error, ResponseFrame};
use crate::storage::{Partition, PartitionError};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// `(timestamp, offset)` for one partition query (blocking). Under
/// read_committed, the latest offset is the last stable offset and nothing at
/// or past it is found by timestamp, as Kafka answers.
fn lookup(
    p: &Partition,
    ts: i64,
    limit: u64,
    read_committed: bool,
) -> Result<(i64, i64), PartitionError> {
    if p.is_offline() {
        return Err(PartitionError::Offline);
    }
    let found = lookup_uncommitted(p, ts, limit)?;
    if !read_committed {
        return Ok(found);
    }
    let lso = p.last_stable_offset();
    Ok(match ts {
        LATEST => (-1, lso),
        ts if (ts >= 0 || ts == MAX_TIMESTAMP) && found.1 >= lso => (-1, -1),
        _ => found,
    })
}

fn lookup_uncommitted(p: &Partition, ts: i64, limit: u64) -> Result<(i64, i64), PartitionError> {
    Ok(match ts {
        LATEST => (-1, p.high_watermark()),
        EARLIEST | EARLIEST_LOCAL => (-1, p.log_start_offset()),
        MAX_TIMESTAMP => match p.max_timestamp_batch_blocking()? {
            Some((max, batch)) => {
                records::search_timestamp(&batch, max, true, limit, p.log_start_offset())
                    .unwrap_or((-1, -1))
            }
            None => (-1, -1),
        },
        ts => match p.find_by_timestamp_blocking(ts)? {
            Some(batch) => {
                records::search_timestamp(&batch, ts, false, limit, p.log_start_offset())
                    .unwrap_or((-1, -1))
            }
            None => (-1, -1),
        },
    })
}

/// One partition's answer before any lookup: offsets unknown.
fn blank(index: i32) -> ListOffsetsPartitionResponse {
    let mut r = ListOffsetsPartitionResponse::default();
    r.partition_index = index;
    r.timestamp = -1;
    r.offset = -1;
    r
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
        // DESCRIBE on the topic, checked before its existence, as Kafka.
        if !ctx.may(broker, Operation::Describe, ResourceType::Topic, &t.name.0) {
            tr.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = blank(p.partition_index);
                    r.error_code = error::TOPIC_AUTHORIZATION_FAILED;
                    r
                })
                .collect();
            resp.topics.push(tr);
            continue;
        }
        resp.topics.push(tr);
        for p in &t.partitions {
            let partition = topic.as_ref().and_then(|t| t.partition(p.partition_index));
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
    let limit = broker.config.decompressed_batch_bytes_max;
    let read_committed = v >= 2 && req.isolation_level == 1;
    // Every queried partition is answered, by the task or, if it failed, here.
    let fallback: Vec<(usize, i32)> = queries.iter().map(|q| (q.0, q.1)).collect();
    let answers = crate::clock::work::blocking(move || {
        queries
            .into_iter()
            .map(|(ti, index, partition, ts, valid)| {
                let mut r = blank(index);
                match (partition, valid) {
                    (None, _) => r.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                    (Some(_), false) => r.error_code = error::INVALID_REQUEST,
                    (Some(p), true) => match lookup(&p, ts, limit, read_committed) {
                        Ok((t, o)) => {
                            r.timestamp = t;
                            r.offset = o;
                        }
                        Err(e) => {
                            r.error_code = partition_error_code(&e);
                            if r.error_code == error::KAFKA_STORAGE_ERROR {
                                tracing::error!(partition = index, error = %super::describe(&e), "list offsets failed");
                            }
                        }
                    },
                }
                (ti, r)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "the list offsets task failed");
        fallback
            .into_iter()
            .map(|(ti, index)| {
                let mut r = blank(index);
                r.error_code = error::KAFKA_STORAGE_ERROR;
                (ti, r)
            })
            .collect()
    });
    for (ti, mut r) in answers {
        if v >= 4 && r.error_code == error::NONE {
            r.leader_epoch = 0;
        }
        resp.topics[ti].partitions.push(r);
    }
    ctx.respond(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::build_test_batch;

    #[test]
    fn search_finds_the_record_inside_the_batch() {
        let b = build_test_batch(1000, &[b"a", b"b", b"c"]);
        assert_eq!(
            records::search_timestamp(&b, 1000, false, 1 << 20, 0),
            Some((1000, 0))
        );
        assert_eq!(
            records::search_timestamp(&b, 1000, true, 1 << 20, 0),
            Some((1000, 0))
        );
        assert_eq!(records::search_timestamp(&b, 1001, false, 1 << 20, 0), None);
        // Below the log start (DeleteRecords), records are skipped.
        assert_eq!(
            records::search_timestamp(&b, 1000, false, 1 << 20, 2),
            Some((1000, 2))
        );
    }
}
