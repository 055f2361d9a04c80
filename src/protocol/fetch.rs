//! The zero-copy Fetch response encoder (v4-v18): everything but the records is
//! written into small buffers; record bytes stay in segment files, referenced
//! as [`Chunk::File`], until the connection sends them.

use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use super::{Chunk, ErrorTally, ResponseFrame};
use crate::log::FileSlice;

/// A Fetch response whose record bytes stay in segment files until sent.
#[derive(Debug, Default)]
pub struct FetchReply {
    /// Top-level error (v7+).
    pub error_code: i16,
    /// Fetch session id (v7+); 0 means no session.
    pub session_id: i32,
    /// How long the client is throttled for (a quota), in ms.
    pub throttle_time_ms: i32,
    /// Per-topic results.
    pub topics: Vec<FetchTopicReply>,
}

/// One topic of a [`FetchReply`].
#[derive(Debug)]
pub struct FetchTopicReply {
    /// Name (v4-v12).
    pub name: String,
    /// Topic id (v13+).
    pub id: Uuid,
    /// Per-partition results.
    pub partitions: Vec<FetchPartitionReply>,
}

/// One partition of a [`FetchReply`].
#[derive(Debug)]
pub struct FetchPartitionReply {
    /// Partition number.
    pub index: i32,
    /// Kafka error code.
    pub error_code: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset (v5+).
    pub log_start_offset: i64,
    /// Aborted transactions; `None` encodes as null (read_uncommitted).
    pub aborted: Option<Vec<(i64, i64)>>,
    /// Whole batches from the log; `None` sends an empty (not null) record set.
    pub records: Option<FileSlice>,
}

impl FetchReply {
    /// Bytes of record data in the reply.
    pub fn record_bytes(&self) -> u64 {
        self.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref())
            .map(|r| r.len)
            .sum()
    }
}

/// Writes an unsigned varint (compact lengths, tagged-field counts).
pub(super) fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Writes an array length. Arrays here hold what a request of at most
/// `request_bytes_max` (< 2 GiB) asked for, so the count fits an i32.
pub(super) fn put_array_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
    }
}

/// Writes a topic name; the names of known topics are at most 249 bytes, and an
/// unknown one is echoed from a request string, which is at most i16::MAX.
fn put_string(buf: &mut BytesMut, flexible: bool, s: &str) {
    if flexible {
        put_uvarint(buf, s.len() as u64 + 1);
    } else {
        buf.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    }
    buf.put_slice(s.as_bytes());
}

/// Encodes a Fetch response (v4 to v18) around raw batch ranges: record bytes are
/// never copied into this buffer, only referenced as [`Chunk::File`].
pub fn encode_fetch(version: i16, correlation_id: i32, reply: FetchReply) -> ResponseFrame {
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut errors = ErrorTally::default();
    errors.add(reply.error_code);
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut buf, 0); // response header tagged fields
    }
    buf.put_i32(reply.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(reply.error_code);
        buf.put_i32(reply.session_id);
    }
    put_array_len(&mut buf, flexible, reply.topics.len());
    for t in reply.topics {
        if version >= 13 {
            buf.put_slice(t.id.as_bytes());
        } else {
            put_string(&mut buf, flexible, &t.name);
        }
        put_array_len(&mut buf, flexible, t.partitions.len());
        for p in t.partitions {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            errors.add(p.error_code);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            match &p.aborted {
                None if flexible => put_uvarint(&mut buf, 0),
                None => buf.put_i32(-1),
                Some(list) => {
                    put_array_len(&mut buf, flexible, list.len());
                    for (producer_id, first_offset) in list {
                        buf.put_i64(*producer_id);
                        buf.put_i64(*first_offset);
                        if flexible {
                            put_uvarint(&mut buf, 0);
                        }
                    }
                }
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let len = p.records.as_ref().map_or(0, |r| r.len);
            if flexible {
                put_uvarint(&mut buf, len + 1);
            } else {
                let Ok(len) = i32::try_from(len) else {
                    return ResponseFrame::failed("fetch response over 2 GiB".into());
                };
                buf.put_i32(len);
            }
            if let Some(r) = p.records {
                if r.len > 0 {
                    chunks.push(Chunk::Mem(buf.split().freeze()));
                    chunks.push(Chunk::File(r));
                }
            }
            if flexible {
                put_uvarint(&mut buf, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut buf, 0); // top-level tagged fields
    }
    chunks.push(Chunk::Mem(buf.freeze()));
    finish_frame(chunks, errors, reply.throttle_time_ms, "fetch")
}

/// A response of `chunks` whose first (in-memory) chunk begins with a
/// placeholder size: the size is patched in, or the response fails if it is
/// over 2 GiB. Shared by the zero-copy encoders (Fetch, ShareFetch).
pub(super) fn finish_frame(
    chunks: Vec<Chunk>,
    errors: ErrorTally,
    throttle_time_ms: i32,
    what: &str,
) -> ResponseFrame {
    let mut frame = ResponseFrame::new(chunks);
    frame.errors = errors;
    frame.throttle_ms = u64::try_from(throttle_time_ms).unwrap_or(0);
    let Ok(size) = i32::try_from(frame.wire_len() - 4) else {
        return ResponseFrame::failed(format!("{what} response over 2 GiB"));
    };
    if let Some(Chunk::Mem(first)) = frame.chunks.first_mut() {
        let mut b = BytesMut::from(&first[..]);
        b[0..4].copy_from_slice(&size.to_be_bytes());
        *first = b.freeze();
    }
    frame
}
