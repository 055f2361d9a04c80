//! The zero-copy ShareFetch response encoder (v1, KIP-932): as for Fetch,
//! record bytes stay in segment files, referenced as [`Chunk::File`], until
//! the connection sends them. A partition's records may be several runs of
//! whole batches (the offsets handed out need not be contiguous), sent back
//! to back as one record set.

use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use super::fetch::{finish_frame, put_array_len, put_uvarint};
use super::{Chunk, ErrorTally, ResponseFrame};
use crate::log::FileSlice;

/// A ShareFetch response whose record bytes stay in segment files until sent.
#[derive(Debug, Default)]
pub struct ShareFetchReply {
    /// How long the client is throttled for (a quota), in ms.
    pub throttle_time_ms: i32,
    /// Top-level error (session, authorization).
    pub error_code: i16,
    /// Top-level error message.
    pub error_message: Option<String>,
    /// How long the records handed out stay locked (ms).
    pub acquisition_lock_timeout_ms: i32,
    /// Per-topic results.
    pub topics: Vec<ShareFetchTopicReply>,
}

/// One topic of a [`ShareFetchReply`].
#[derive(Debug)]
pub struct ShareFetchTopicReply {
    /// Topic id.
    pub id: Uuid,
    /// Per-partition results.
    pub partitions: Vec<ShareFetchPartitionReply>,
}

/// One partition of a [`ShareFetchReply`].
#[derive(Debug, Default)]
pub struct ShareFetchPartitionReply {
    /// Partition number.
    pub index: i32,
    /// Fetch error code.
    pub error_code: i16,
    /// Fetch error message.
    pub error_message: Option<String>,
    /// The outcome of the acknowledgements the request carried for it.
    pub acknowledge_error_code: i16,
    /// Acknowledgement error message.
    pub acknowledge_error_message: Option<String>,
    /// The leader as the client should see it: (id, epoch).
    pub leader: (i32, i32),
    /// Whole batches covering the records handed out, in offset order;
    /// empty sends an empty (never null) record set.
    pub records: Vec<FileSlice>,
    /// The records handed out: (first, last, delivery count).
    pub acquired: Vec<(i64, i64, i16)>,
}

fn put_nullable_string(buf: &mut BytesMut, s: &Option<String>) {
    match s {
        None => put_uvarint(buf, 0),
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
    }
}

/// Encodes a ShareFetch v1 response around raw batch ranges.
pub fn encode_share_fetch(correlation_id: i32, reply: ShareFetchReply) -> ResponseFrame {
    let mut chunks = Vec::new();
    let mut errors = ErrorTally::default();
    errors.add(reply.error_code);
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id);
    put_uvarint(&mut buf, 0); // response header tagged fields
    buf.put_i32(reply.throttle_time_ms);
    buf.put_i16(reply.error_code);
    put_nullable_string(&mut buf, &reply.error_message);
    buf.put_i32(reply.acquisition_lock_timeout_ms);
    put_array_len(&mut buf, true, reply.topics.len());
    for t in reply.topics {
        buf.put_slice(t.id.as_bytes());
        put_array_len(&mut buf, true, t.partitions.len());
        for p in t.partitions {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            errors.add(p.error_code);
            put_nullable_string(&mut buf, &p.error_message);
            buf.put_i16(p.acknowledge_error_code);
            errors.add(p.acknowledge_error_code);
            put_nullable_string(&mut buf, &p.acknowledge_error_message);
            buf.put_i32(p.leader.0);
            buf.put_i32(p.leader.1);
            put_uvarint(&mut buf, 0); // current_leader tagged fields
                                      // librdkafka rejects a null record set: always send bytes.
            let len: u64 = p.records.iter().map(|r| r.len).sum();
            put_uvarint(&mut buf, len + 1);
            for r in p.records {
                if r.len > 0 {
                    chunks.push(Chunk::Mem(buf.split().freeze()));
                    chunks.push(Chunk::File(r));
                }
            }
            put_array_len(&mut buf, true, p.acquired.len());
            for (first, last, count) in p.acquired {
                buf.put_i64(first);
                buf.put_i64(last);
                buf.put_i16(count);
                put_uvarint(&mut buf, 0);
            }
            put_uvarint(&mut buf, 0); // partition tagged fields
        }
        put_uvarint(&mut buf, 0); // topic tagged fields
    }
    put_array_len(&mut buf, true, 0); // node_endpoints: only for leader changes
    put_uvarint(&mut buf, 0); // top-level tagged fields
    chunks.push(Chunk::Mem(buf.freeze()));
    finish_frame(chunks, errors, reply.throttle_time_ms, "share fetch")
}
