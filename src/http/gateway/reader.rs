//! Reading records for HTTP consumers: from a set of positions, within a
//! budget of records and bytes, decoded (the gateway hands keys and values
//! to clients that are not Kafka clients). Synchronous: runs on the
//! blocking pool.

use super::error::RestError;
use super::instance::TopicPartition;
use super::json::Format;
use crate::broker::Broker;
use crate::log::batch::ATTR_CONTROL;
use crate::log::decode::{
    decode_batch, decode_records, is_compressed, records_section, Decoded, DecodedRecord,
};
use crate::log::records::split_stored;
use crate::log::ReadError;
use crate::storage::PartitionError;

/// A record and its partition.
pub type Fetched = (TopicPartition, DecodedRecord);

/// How much one read may return.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Most records.
    pub records: usize,
    /// Most key and value bytes; the first record comes back whatever its size.
    pub bytes: u64,
}

/// What a read found.
pub struct ReadOut {
    /// The records, partition by partition, in offset order.
    pub records: Vec<Fetched>,
    /// Per partition read: (position read from, next position).
    pub advanced: Vec<(TopicPartition, i64, i64)>,
    /// Key and value bytes read.
    pub bytes: u64,
    /// Partitions whose position is out of the log's range.
    pub resets: Vec<TopicPartition>,
    /// The budget stopped the read (more records were there).
    pub full: bool,
}

/// Whether `format` can carry the record: a JSON consumer needs JSON keys and values.
fn fits(format: Format, r: &DecodedRecord) -> Result<(), String> {
    if format != Format::Json {
        return Ok(());
    }
    for b in [&r.key, &r.value].into_iter().flatten() {
        serde_json::from_slice::<serde::de::IgnoredAny>(b).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The records section of the last compressed batch a consumer read only
/// part of, kept for its next read: a consumer with little credit would
/// otherwise inflate the same batch again for every frame.
#[derive(Debug, Default)]
pub struct Inflated {
    /// The batch: partition, base offset, CRC.
    key: Option<(TopicPartition, i64, u32)>,
    /// Its inflated records section.
    body: Vec<u8>,
}

/// Inflated batches larger than this are not kept (memory per consumer).
const INFLATED_KEEP_MAX: usize = 4 << 20;

/// Reads from each position in turn until the budget is spent.
pub fn read_blocking(
    broker: &Broker,
    positions: &[(TopicPartition, i64)],
    budget: Budget,
    format: Format,
    cache: &std::sync::Mutex<Inflated>,
) -> Result<ReadOut, RestError> {
    let decompressed_max = broker.config.decompressed_batch_bytes_max;
    let mut out = ReadOut {
        records: Vec::new(),
        advanced: Vec::new(),
        bytes: 0,
        resets: Vec::new(),
        full: false,
    };
    let full = |out: &ReadOut| out.records.len() >= budget.records || out.bytes >= budget.bytes;
    for ((t, p), from) in positions {
        if full(&out) {
            break;
        }
        let Some(part) = broker.topic(t).and_then(|x| x.partition(*p).cloned()) else {
            continue;
        };
        let slice = match part.read_blocking(*from, budget.bytes.saturating_sub(out.bytes).max(1)) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(PartitionError::Read(ReadError::OutOfRange { .. })) => {
                out.resets.push((t.clone(), *p));
                continue;
            }
            Err(e) => return Err(RestError::retriable(e.to_string())),
        };
        let bytes = slice
            .read_to_vec()
            .map_err(|e| RestError::retriable(e.to_string()))?;
        let mut next = *from;
        'batches: for (at, h) in split_stored(&bytes) {
            let b = &bytes[at..at + h.total_bytes()];
            let left = budget.records.saturating_sub(out.records.len()).max(1);
            let decoded = if is_compressed(&h) && h.attributes & ATTR_CONTROL == 0 {
                // A compressed batch read in parts (small credit) is inflated
                // once: what the last read inflated is kept for the next.
                let key = ((t.clone(), *p), h.base_offset, h.crc);
                let kept = {
                    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
                    (c.key.as_ref() == Some(&key)).then(|| std::mem::take(&mut c.body))
                };
                let body = match kept {
                    Some(body) => Ok(body),
                    None => records_section(b, &h, decompressed_max).map(|c| c.into_owned()),
                };
                body.and_then(|body| {
                    let d = decode_records(&body, &h, next, left)?;
                    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
                    if matches!(d, Decoded::Records(_, false)) && body.len() <= INFLATED_KEEP_MAX {
                        *c = Inflated {
                            key: Some(key),
                            body,
                        };
                    } else {
                        *c = Inflated::default();
                    }
                    Ok(d)
                })
            } else {
                decode_batch(b, &h, next, left, decompressed_max)
            };
            let (records, complete) = match decoded {
                Ok(Decoded::Control) => {
                    next = next.max(h.next_offset());
                    continue;
                }
                Ok(Decoded::Records(r, complete)) => (r, complete),
                Err(e) => {
                    return Err(RestError::kafka(format!(
                        "A stored batch of {t}-{p} does not decode: {e}"
                    )))
                }
            };
            for r in records {
                let size = r.size();
                if !out.records.is_empty() && (full(&out) || out.bytes + size > budget.bytes) {
                    out.full = true;
                    break 'batches;
                }
                if let Err(e) = fits(format, &r) {
                    if out.records.is_empty() {
                        return Err(RestError::new(
                            axum::http::StatusCode::REQUEST_TIMEOUT,
                            40801,
                            format!(
                                "Error deserializing key/value for partition {t}-{p} at offset {}: {e}",
                                r.offset
                            ),
                        ));
                    }
                    // Return what came before; the next read fails on it.
                    break 'batches;
                }
                out.bytes += size;
                next = r.offset + 1;
                out.records.push(((t.clone(), *p), r));
            }
            if !complete {
                // Cut short by the record budget: the rest of the batch is
                // for the next read.
                out.full = true;
                break;
            }
            // Every record of the batch was taken (compaction may leave gaps).
            next = next.max(h.next_offset());
        }
        if next > *from {
            out.advanced.push(((t.clone(), *p), *from, next));
        }
    }
    out.full |= full(&out);
    Ok(out)
}
