//! Whole records of stored batches, for the paths that hand record contents
//! to something other than a Kafka client (the HTTP gateway): keys, values,
//! headers and timestamps, decompressed within a bound. Also the encoder of
//! the batches those paths produce (records with headers and timestamps).
//!
//! Kafka clients never go through here: Fetch sends stored batches as they are.

use std::io::Read;

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::records::{self, get_bytes, get_varint, put_varint, Codec, RecordError};

/// One record, owned, with its position and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (the batch's under LogAppendTime).
    pub timestamp: i64,
    /// The key, `None` when null.
    pub key: Option<Vec<u8>>,
    /// The value, `None` when null (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order: key, and value (`None` when null).
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl DecodedRecord {
    /// Bytes of key and value, what REST Proxy counts against `max_bytes`.
    pub fn size(&self) -> u64 {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, |b| b.len() as u64);
        len(&self.key) + len(&self.value)
    }
}

/// What a batch decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A transaction marker or another control batch: no user records.
    Control,
    /// The batch's records, and whether none is left after them (false when
    /// `records_max` cut the batch short).
    Records(Vec<DecodedRecord>, bool),
}

/// Decodes stored batch `b` (whose header is `h`), inflating at most
/// `decompressed_bytes_max` bytes. Records before `from_offset` are skipped
/// without copying (a read starts at the batch holding the wanted offset),
/// and at most `records_max` are returned.
pub fn decode_batch(
    b: &[u8],
    h: &BatchHeader,
    from_offset: i64,
    records_max: usize,
    decompressed_bytes_max: u64,
) -> Result<Decoded, RecordError> {
    if h.attributes & batch::ATTR_CONTROL != 0 {
        return Ok(Decoded::Control);
    }
    let body = records_section(b, h, decompressed_bytes_max)?;
    decode_records(&body, h, from_offset, records_max)
}

/// Whether the batch's records are compressed (a caller may keep what
/// [`records_section`] inflated for the next read of the same batch).
pub fn is_compressed(h: &BatchHeader) -> bool {
    h.attributes & batch::ATTR_CODEC_MASK != 0
}

/// The records section of batch `b`: borrowed when uncompressed, else
/// inflated (at most `decompressed_bytes_max` bytes).
pub fn records_section<'a>(
    b: &'a [u8],
    h: &BatchHeader,
    decompressed_bytes_max: u64,
) -> Result<std::borrow::Cow<'a, [u8]>, RecordError> {
    let end = h.total_bytes().min(b.len());
    let payload = &b[HEADER_BYTES.min(end)..end];
    let codec = Codec::of(h.attributes)?;
    if codec == Codec::None {
        return Ok(std::borrow::Cow::Borrowed(payload));
    }
    let mut out = Vec::new();
    records::decoder(codec, payload)?
        .take(decompressed_bytes_max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| RecordError::Decompress(e.to_string()))?;
    if out.len() as u64 > decompressed_bytes_max {
        return Err(RecordError::TooLarge {
            limit: decompressed_bytes_max,
        });
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Decodes the records section `body` of a (non-control) batch with header
/// `h`: from `from_offset`, at most `records_max` records.
pub fn decode_records(
    body: &[u8],
    h: &BatchHeader,
    from_offset: i64,
    records_max: usize,
) -> Result<Decoded, RecordError> {
    let log_append_time = h.attributes & batch::ATTR_LOG_APPEND_TIME != 0;
    let count = usize::try_from(h.records_count).unwrap_or(0);
    // Each record takes at least 7 bytes: the count cannot ask for more room than that.
    let mut out = Vec::with_capacity(count.min(body.len() / 7 + 1).min(records_max));
    let mut at = 0usize;
    let mut complete = true;
    for i in 0..h.records_count {
        if out.len() >= records_max {
            complete = false;
            break;
        }
        let bad = |why| RecordError::Framing { record: i, why };
        let len = get_varint(body, &mut at).ok_or_else(|| bad("unreadable record length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative record length"))?;
        let rec = at
            .checked_add(len)
            .and_then(|e| body.get(at..e))
            .ok_or_else(|| bad("record past the batch"))?;
        at += len;
        let mut p = 1; // attributes
        let ts_delta = get_varint(rec, &mut p).ok_or_else(|| bad("bad timestamp delta"))?;
        let delta = get_varint(rec, &mut p).ok_or_else(|| bad("bad offset delta"))?;
        let key = get_bytes(rec, &mut p).ok_or_else(|| bad("bad key"))?;
        let value = get_bytes(rec, &mut p).ok_or_else(|| bad("bad value"))?;
        let offset = h.base_offset.wrapping_add(delta);
        if offset < from_offset {
            continue;
        }
        let n = get_varint(rec, &mut p).ok_or_else(|| bad("bad header count"))?;
        let n = usize::try_from(n).map_err(|_| bad("negative header count"))?;
        let mut headers = Vec::with_capacity(n.min(rec.len() / 2));
        for _ in 0..n {
            let k = get_bytes(rec, &mut p)
                .flatten()
                .ok_or_else(|| bad("bad header key"))?;
            let v = get_bytes(rec, &mut p).ok_or_else(|| bad("bad header value"))?;
            headers.push((k.to_vec(), v.map(<[u8]>::to_vec)));
        }
        out.push(DecodedRecord {
            offset,
            timestamp: if log_append_time {
                h.max_timestamp
            } else {
                h.base_timestamp.wrapping_add(ts_delta)
            },
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
        });
    }
    Ok(Decoded::Records(out, complete))
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// The key, `None` for null.
    pub key: Option<Vec<u8>>,
    /// The value, `None` for null.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

/// An uncompressed, non-idempotent batch of `records` (at least one), all
/// stamped `timestamp` (CreateTime).
pub fn encode_batch(timestamp: i64, records: &[NewRecord]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body = Vec::new();
    let mut r = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        r.clear();
        r.push(0u8); // attributes
        put_varint(&mut r, 0); // timestamp delta
        put_varint(&mut r, i as i64); // offset delta
        put_bytes(&mut r, rec.key.as_deref());
        put_bytes(&mut r, rec.value.as_deref());
        put_varint(&mut r, rec.headers.len() as i64);
        for (k, v) in &rec.headers {
            put_bytes(&mut r, Some(k));
            put_bytes(&mut r, v.as_deref());
        }
        put_varint(&mut body, r.len() as i64);
        body.extend_from_slice(&r);
    }
    let count = i32::try_from(records.len()).unwrap_or(i32::MAX);
    records::build_raw_batch(timestamp, 0, count, &body)
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`): the default
/// partitioner hashes keys with it, so a keyed record produced over HTTP lands
/// in the partition a Java or librdkafka (`murmur2_random`) producer picks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` as Kafka's default partitioner
/// picks it: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> NewRecord {
        NewRecord {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }

    #[test]
    fn encoded_batches_validate_and_decode_back() {
        let records = vec![
            rec(
                Some(b"k1"),
                Some(b"v1"),
                &[(b"h", Some(b"x")), (b"n", None)],
            ),
            rec(None, None, &[]),
            rec(Some(b""), Some(&[0u8; 300]), &[]),
        ];
        let mut b = encode_batch(1_700_000_000_000, &records);
        crate::log::records::validate(&b, 1 << 20).expect("a valid batch");
        batch::assign(&mut b, 40, 0);
        let h = BatchHeader::parse(&b).unwrap();
        let Decoded::Records(out, true) = decode_batch(&b, &h, 0, usize::MAX, 1 << 20).unwrap()
        else {
            panic!("not a control batch");
        };
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].offset, 40);
        assert_eq!(out[0].timestamp, 1_700_000_000_000);
        assert_eq!(out[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(out[0].headers, records[0].headers);
        assert_eq!(out[1].key, None);
        assert_eq!(out[1].value, None);
        assert_eq!(out[2].value.as_ref().map(Vec::len), Some(300));
        assert_eq!(out[2].size(), 300);
        // A read from inside the batch skips the records before it.
        let Decoded::Records(tail, true) = decode_batch(&b, &h, 42, usize::MAX, 1 << 20).unwrap()
        else {
            panic!("not a control batch");
        };
        assert_eq!(tail.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![42]);
        let Decoded::Records(one, false) = decode_batch(&b, &h, 0, 1, 1 << 20).unwrap() else {
            panic!("not a control batch");
        };
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn markers_are_control_batches() {
        let b = crate::log::records::build_marker(7, 0, true, 0, 1);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            decode_batch(&b, &h, 0, usize::MAX, 1 << 20).unwrap(),
            Decoded::Control
        );
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let b = encode_batch(1, &[rec(Some(b"key"), Some(b"value"), &[])]);
        let h = BatchHeader::parse(&b).unwrap();
        for cut in HEADER_BYTES..b.len() {
            let _ = decode_batch(&b[..cut], &h, 0, usize::MAX, 1 << 20);
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 3] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), want, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(partition_for_key(b"foobar", 1), 0);
    }
}
