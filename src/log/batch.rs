//! RecordBatch (magic 2) header: parsing, validation and in-place offset assignment.
//!
//! The log only needs the fixed 61-byte header to assign offsets and index a
//! batch; the records inside are checked once, on produce, by `records`. The
//! layout is Kafka's (see docs/on-disk-format.md).

use std::fmt;

/// Size of the fixed RecordBatch header in bytes.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batch_length`'s coverage starts: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// The only record format this broker accepts and stores.
pub const MAGIC_V2: i8 = 2;

const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
/// CRC-32C covers everything from the attributes field to the end of the batch.
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORDS_COUNT: usize = 57;
/// Attributes bits holding the compression codec.
pub const ATTR_CODEC_MASK: i16 = 0x07;
/// Attributes bit: every record's timestamp is the batch's max timestamp (LogAppendTime).
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attributes bit marking a transactional batch.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attributes bit marking a control batch (transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;
/// Attributes bit: the base timestamp is the batch's delete horizon (KIP-534),
/// after which the cleaner may drop its tombstones and markers.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Why a batch was rejected. Each maps to one Kafka error in `handlers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a header, or a batch length that runs past the buffer.
    Truncated,
    /// A batch length field that is negative or smaller than a header.
    BadLength(i32),
    /// A magic byte other than 2 (message format v0/v1 is not supported).
    BadMagic(i8),
    /// The stored CRC-32C does not match the batch bytes.
    BadCrc {
        /// The checksum carried in the batch header.
        stored: u32,
        /// The checksum computed over the batch bytes.
        computed: u32,
    },
    /// Record count and last offset delta disagree, or either is out of range.
    BadCount {
        /// The `records_count` header field.
        records: i32,
        /// The `last_offset_delta` header field.
        last_offset_delta: i32,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated => write!(f, "truncated record batch"),
            BatchError::BadLength(n) => write!(f, "invalid batch length {n}"),
            BatchError::BadMagic(m) => write!(f, "unsupported magic {m}"),
            BatchError::BadCrc { stored, computed } => {
                write!(
                    f,
                    "crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            BatchError::BadCount {
                records,
                last_offset_delta,
            } => write!(
                f,
                "records count {records} inconsistent with last offset delta {last_offset_delta}"
            ),
        }
    }
}

impl std::error::Error for BatchError {}

// Field readers; callers have checked that `b` holds the header.
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    be_u32(b, at) as i32
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    (u64::from(be_u32(b, at)) << 32 | u64::from(be_u32(b, at + 4))) as i64
}

/// The header fields of one batch the log needs, read from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the `batch_length` field.
    pub batch_length: i32,
    /// Magic byte; always 2 for batches the log accepted.
    pub magic: i8,
    /// Stored CRC-32C of the bytes from attributes to the end.
    pub crc: u32,
    /// Compression codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (producer's create time).
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `b` (which must hold at least [`HEADER_BYTES`]).
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        if b.len() < HEADER_BYTES {
            return Err(BatchError::Truncated);
        }
        Ok(BatchHeader {
            base_offset: be_i64(b, OFF_BASE_OFFSET),
            batch_length: be_i32(b, OFF_BATCH_LENGTH),
            magic: b[OFF_MAGIC] as i8,
            crc: be_u32(b, OFF_CRC),
            attributes: be_i16(b, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(b, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(b, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(b, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(b, OFF_PRODUCER_ID),
            producer_epoch: be_i16(b, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(b, OFF_BASE_SEQUENCE),
            records_count: be_i32(b, OFF_RECORDS_COUNT),
        })
    }

    /// Total bytes of the batch on disk, including the 12-byte log overhead.
    /// Only meaningful once `batch_length` was checked by [`BatchHeader::check_length`].
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Checks the length field is at least a header; returns the total size.
    pub fn check_length(&self) -> Result<usize, BatchError> {
        const MIN: i32 = (HEADER_BYTES - LOG_OVERHEAD) as i32;
        if self.batch_length < MIN {
            return Err(BatchError::BadLength(self.batch_length));
        }
        Ok(self.total_bytes())
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Sequence number of the last record (sequences wrap to 0 after `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Offset just past this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
}

/// `seq + delta` with Kafka's wrap-around to 0 after `i32::MAX`.
pub fn add_sequence(seq: i32, delta: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(delta);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

/// Validates one complete batch's header: length, magic, CRC-32C, and (as
/// Kafka's log validator) a positive record count equal to `last_offset_delta + 1`.
/// `b` must be exactly the batch (as split by [`split_batches`]).
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    check(b, false)
}

/// As [`validate`] for a batch read back from the log, where compaction may
/// have removed records: the count may be below `last_offset_delta + 1`.
pub fn validate_stored(b: &[u8]) -> Result<BatchHeader, BatchError> {
    check(b, true)
}

fn check(b: &[u8], stored: bool) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(b)?;
    let total = h.check_length()?;
    if total != b.len() {
        return Err(BatchError::Truncated);
    }
    if h.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(h.magic));
    }
    let computed = crc32c::crc32c(&b[OFF_ATTRIBUTES..]);
    if computed != h.crc {
        return Err(BatchError::BadCrc {
            stored: h.crc,
            computed,
        });
    }
    let full = i64::from(h.last_offset_delta) + 1;
    let count = i64::from(h.records_count);
    let counted = if stored { count <= full } else { count == full };
    if h.records_count < 1 || h.last_offset_delta < 0 || !counted {
        return Err(BatchError::BadCount {
            records: h.records_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Splits a buffer of concatenated batches into `(start, header)` pairs,
/// validating each completely. Fails on the first bad batch.
pub fn split_batches(b: &[u8]) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < b.len() {
        let h = BatchHeader::parse(&b[pos..])?;
        let total = h.check_length()?;
        let end = pos.checked_add(total).ok_or(BatchError::Truncated)?;
        if end > b.len() {
            return Err(BatchError::Truncated);
        }
        let h = validate(&b[pos..end])?;
        out.push((pos, h));
        pos = end;
    }
    if out.is_empty() {
        return Err(BatchError::Truncated);
    }
    Ok(out)
}

/// Bytes at the front of a batch that the log rewrites on append: base offset,
/// length (unchanged) and partition leader epoch. None of them is under the CRC.
pub const ASSIGNED_PREFIX_BYTES: usize = OFF_LEADER_EPOCH + 4;

/// The first [`ASSIGNED_PREFIX_BYTES`] of batch `b` as stored once assigned
/// `base_offset` and `leader_epoch`: the rest of the batch is written unchanged
/// from the request buffer, so appends need no private copy of the records.
pub fn assigned_prefix(
    b: &[u8],
    base_offset: i64,
    leader_epoch: i32,
) -> [u8; ASSIGNED_PREFIX_BYTES] {
    let mut p = [0u8; ASSIGNED_PREFIX_BYTES];
    p.copy_from_slice(&b[..ASSIGNED_PREFIX_BYTES]);
    assign(&mut p, base_offset, leader_epoch);
    p
}

/// The stored header of batch `b` when the log rewrites more than the assigned
/// prefix: `h` (as assigned) differs from `b` in its attributes or max
/// timestamp (LogAppendTime stamping). The CRC is recomputed over the new
/// header fields and the records, which stay in `b` and are written from
/// there. `None` when the assigned prefix suffices.
pub fn stamped_header(b: &[u8], h: &BatchHeader) -> Option<[u8; HEADER_BYTES]> {
    let attributes = i16::from_be_bytes([b[OFF_ATTRIBUTES], b[OFF_ATTRIBUTES + 1]]);
    let max_timestamp = i64::from_be_bytes(
        b[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8]
            .try_into()
            .expect("8 bytes"),
    );
    if attributes == h.attributes && max_timestamp == h.max_timestamp {
        return None;
    }
    let mut head = [0u8; HEADER_BYTES];
    head.copy_from_slice(&b[..HEADER_BYTES]);
    assign(&mut head, h.base_offset, 0);
    head[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&h.attributes.to_be_bytes());
    head[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&h.max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&head[OFF_ATTRIBUTES..]),
        &b[HEADER_BYTES..h.total_bytes()],
    );
    head[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Some(head)
}

/// Makes a built batch an idempotent producer's (tests and tools): producer id,
/// epoch and base sequence, with the CRC recomputed.
pub fn set_producer(b: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    b[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    b[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    b[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    set_crc(b);
}

/// Sets the batch length and attributes of batch `b` (after its records were
/// re-encoded); the CRC is then stale until [`set_crc`].
pub fn set_length_and_attributes(b: &mut [u8], length: i32, attributes: i16) {
    b[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
}

/// Gives a batch the cleaner rebuilt `h`'s offsets and producer
/// fields, the given timestamps, and its CRC.
pub fn set_fields(b: &mut [u8], h: &BatchHeader, base_timestamp: i64, max_timestamp: i64) {
    assign(b, h.base_offset, 0);
    b[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&h.last_offset_delta.to_be_bytes());
    b[OFF_BASE_TIMESTAMP..OFF_BASE_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    b[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    set_producer(b, h.producer_id, h.producer_epoch, h.base_sequence);
}

/// Recomputes the CRC-32C of the complete batch `b` (after building or changing it).
pub fn set_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[OFF_ATTRIBUTES..]);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the base offset and partition leader epoch of the batch starting at `b`.
pub fn assign(b: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(
        b.len() >= ASSIGNED_PREFIX_BYTES,
        "assign on a truncated batch"
    );
    b[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    b[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::build_test_batch;

    #[test]
    fn valid_batch_round_trips() {
        let b = build_test_batch(1000, &[b"a", b"bc", b"def"]);
        let h = validate(&b).unwrap();
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1000);
        assert_eq!(h.total_bytes(), b.len());
    }

    #[test]
    fn assign_keeps_crc_valid() {
        let mut b = build_test_batch(1, &[b"x"]);
        assign(&mut b, 12345, 7);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 12345);
    }

    #[test]
    fn flipped_bit_is_a_crc_error() {
        let mut b = build_test_batch(1, &[b"hello"]);
        let last = b.len() - 2;
        b[last] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn negative_and_short_lengths_are_rejected() {
        let mut b = build_test_batch(1, &[b"hello"]);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(split_batches(&b), Err(BatchError::BadLength(-5)));
        b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(split_batches(&b), Err(BatchError::Truncated));
        assert_eq!(split_batches(&b[..30]), Err(BatchError::Truncated));
        assert_eq!(split_batches(&[]), Err(BatchError::Truncated));
    }

    #[test]
    fn old_magic_is_rejected() {
        let mut b = build_test_batch(1, &[b"hello"]);
        b[OFF_MAGIC] = 1;
        assert_eq!(validate(&b), Err(BatchError::BadMagic(1)));
    }

    #[test]
    fn count_must_match_the_offset_delta() {
        let mut b = build_test_batch(1, &[b"a", b"b"]);
        b[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4].copy_from_slice(&7i32.to_be_bytes());
        set_crc(&mut b);
        assert!(matches!(validate(&b), Err(BatchError::BadCount { .. })));
    }

    #[test]
    fn split_handles_several_batches() {
        let mut b = build_test_batch(1, &[b"a"]);
        b.extend(build_test_batch(2, &[b"b", b"c"]));
        let parts = split_batches(&b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1.records_count, 2);
    }
}
