//! ListOffsets v1-v8: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4) and lookups by timestamp, which search inside the found batch.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::Ctx;
use crate::broker::{Broker, Partition};
use crate::log::BatchHeader;
use crate::protocol::{error, ResponseFrame};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Snappy as Java and Go clients write it: a 16-byte header, then length-prefixed blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: u64) -> anyhow::Result<()> {
    let n = snap::raw::decompress_len(block)?;
    anyhow::ensure!(
        (out.len() + n) as u64 <= limit,
        "snappy block inflates past {limit} bytes"
    );
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new().decompress(block, &mut out[start..])?;
    Ok(())
}

/// Inflates a batch's records, refusing to produce more than `limit` bytes, so a
/// stored decompression bomb cannot exhaust memory.
fn inflate(buf: &mut Bytes, codec: Compression, limit: u64) -> anyhow::Result<Bytes> {
    use std::io::Read;
    let input = buf.split_to(buf.len());
    let mut out = Vec::new();
    match codec {
        Compression::None => return Ok(input),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(&input[..])
                .take(limit + 1)
                .read_to_end(&mut out)?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(&input[..])?
                .take(limit + 1)
                .read_to_end(&mut out)?;
        }
        Compression::Lz4 => {
            lz4::Decoder::new(&input[..])?
                .take(limit + 1)
                .read_to_end(&mut out)?;
        }
        Compression::Snappy if input.starts_with(XERIAL_MAGIC) && input.len() >= 16 => {
            let mut rest = &input[16..];
            while !rest.is_empty() {
                anyhow::ensure!(rest.len() >= 4, "truncated xerial block length");
                let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                anyhow::ensure!(rest.len() >= 4 + n, "truncated xerial block");
                snappy_block(&rest[4..4 + n], &mut out, limit)?;
                rest = &rest[4 + n..];
            }
        }
        Compression::Snappy => snappy_block(&input, &mut out, limit)?,
    }
    anyhow::ensure!(
        out.len() as u64 <= limit,
        "batch inflates past {limit} bytes"
    );
    Ok(Bytes::from(out))
}

/// First record in `batch` whose timestamp is `>= ts` (or `== ts` with `exact`),
/// as `(timestamp, offset)`. Falls back to the batch's base offset and max timestamp
/// when the batch cannot be decoded within `limit` (Kafka would decompress it; an
/// answer at batch granularity is still a valid starting point for a consumer).
fn search_batch(batch: Vec<u8>, ts: i64, exact: bool, limit: u64) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(&batch).ok()?;
    let mut buf = Bytes::from(batch);
    let inflate_bounded = |b: &mut Bytes, c: Compression| inflate(b, c, limit);
    match RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(inflate_bounded)) {
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
fn lookup(p: &Partition, ts: i64, limit: u64) -> std::io::Result<(i64, i64)> {
    Ok(match ts {
        LATEST => (-1, p.high_watermark()),
        EARLIEST | EARLIEST_LOCAL => (-1, p.log_start_offset()),
        MAX_TIMESTAMP => match p.max_timestamp_batch_blocking()? {
            Some((max, batch)) => search_batch(batch, max, true, limit).unwrap_or((-1, -1)),
            None => (-1, -1),
        },
        ts => match p.find_by_timestamp_blocking(ts)? {
            Some(batch) => search_batch(batch, ts, false, limit).unwrap_or((-1, -1)),
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
                    (Some(p), true) => match lookup(&p, ts, limit) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflation_is_bounded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let compressed = Bytes::from(gz.finish().unwrap());
        assert!(inflate(&mut compressed.clone(), Compression::Gzip, 1 << 10).is_err());
        assert_eq!(
            inflate(&mut compressed.clone(), Compression::Gzip, 1 << 20)
                .unwrap()
                .len(),
            1 << 20
        );
        let raw = snap::raw::Encoder::new()
            .compress_vec(&vec![1u8; 5000])
            .unwrap();
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&raw);
        assert_eq!(
            inflate(&mut Bytes::from(xerial.clone()), Compression::Snappy, 5000)
                .unwrap()
                .len(),
            5000
        );
        assert!(inflate(&mut Bytes::from(xerial), Compression::Snappy, 4999).is_err());
        assert!(inflate(&mut Bytes::from(raw), Compression::Snappy, 100).is_err());
    }
}
