//! The records inside a batch, without wire types: the codec, bounded
//! decompression, and the validation a produced batch gets before it touches the
//! log (as Kafka's log validator does).
//!
//! Record layout (magic 2): `length varint`, then `attributes i8,
//! timestamp_delta varlong, offset_delta varint, key_length varint, key,
//! value_length varint, value, header_count varint, headers` where each header is
//! `key_length varint, key, value_length varint, value`. Lengths of -1 are null.
//!
//! Compressed payloads are read through a streaming decompressor: records are
//! parsed as they come out and their contents skipped, so validating a batch
//! holds one small reused buffer, never the inflated payload, and stops at
//! `decompressed_bytes_max`.

use std::fmt;
use std::io::Read;

use super::batch::{self, BatchError, BatchHeader, HEADER_BYTES, LOG_OVERHEAD};

/// Bytes read from a decompressor at a time.
const STREAM_CHUNK_BYTES: usize = 16 * 1024;
/// Largest zstd window a batch may ask for (log2: 16 MiB). Clients' batches are
/// far smaller; without a cap a frame could ask the decoder for 2 GiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
/// Snappy as Java and Go clients write it: a 16-byte header, then length-prefixed blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// A batch's compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy, raw or xerial-framed.
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    /// Every codec, in id order.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec named by a batch's attributes.
    pub fn of(attributes: i16) -> Result<Codec, RecordError> {
        Ok(match attributes & batch::ATTR_CODEC_MASK {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => return Err(RecordError::UnknownCodec(other)),
        })
    }
}

/// Why the records of a batch were refused (Kafka's INVALID_RECORD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Compression codec id 5, 6 or 7.
    UnknownCodec(i16),
    /// The compressed payload does not decompress.
    Decompress(String),
    /// The payload inflates past the configured limit.
    TooLarge {
        /// `decompressed_batch_bytes_max`.
        limit: u64,
    },
    /// A record's structure is broken (lengths, varints, header counts).
    Framing {
        /// Index of the record in the batch.
        record: i32,
        /// What is wrong.
        why: &'static str,
    },
    /// A record's offset delta is not its position in the batch.
    OffsetDelta {
        /// Index of the record.
        record: i32,
        /// The delta it carries.
        delta: i32,
    },
    /// Bytes remain after the declared number of records.
    TrailingBytes,
    /// A produced batch carried a base offset other than 0.
    BaseOffset(i64),
    /// A batch kind clients may not write (control batches), or bad producer fields.
    NotAllowed(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::UnknownCodec(c) => write!(f, "unknown compression codec {c}"),
            RecordError::Decompress(e) => write!(f, "records do not decompress: {e}"),
            RecordError::TooLarge { limit } => {
                write!(f, "records inflate past {limit} bytes")
            }
            RecordError::Framing { record, why } => write!(f, "record {record}: {why}"),
            RecordError::OffsetDelta { record, delta } => {
                write!(f, "record {record} has offset delta {delta}")
            }
            RecordError::TrailingBytes => {
                write!(f, "bytes remain after the declared number of records")
            }
            RecordError::BaseOffset(o) => {
                write!(f, "a produced batch must have base offset 0, not {o}")
            }
            RecordError::NotAllowed(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Why a produced batch set was refused: its header or its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidBatch {
    /// Length, magic, CRC or count (the batch header).
    Header(BatchError),
    /// The records inside.
    Records(RecordError),
}

impl fmt::Display for InvalidBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidBatch::Header(e) => write!(f, "{e}"),
            InvalidBatch::Records(e) => write!(f, "{e}"),
        }
    }
}

/// Batches that passed [`validate`]: the only input the log appends. Its fields
/// are private to `log`, so nothing else can make one without validating.
#[derive(Debug)]
pub struct Validated<'a> {
    /// The batches, concatenated.
    pub(super) bytes: &'a [u8],
    /// Where each batch starts, with its header.
    pub(super) batches: Vec<(usize, BatchHeader)>,
    /// The smallest and largest record timestamps (-1, Kafka's "no
    /// timestamp", left out), if any record has one.
    pub(super) timestamps: Option<(i64, i64)>,
    /// Some record has a null key (refused on compacted topics).
    pub(super) keyless: bool,
}

impl<'a> Validated<'a> {
    /// Where each batch starts, with its header.
    pub fn batches(&self) -> &[(usize, BatchHeader)] {
        &self.batches
    }

    /// The batches recompressed into the topic's codec (`compression.type`),
    /// or these unchanged when every batch already has it. The records are
    /// the same, so the checks already made (and the timestamps) still hold.
    pub fn recompressed<'b>(
        self,
        target: super::compress::Compression,
        decompressed_bytes_max: u64,
        buf: &'b mut Vec<u8>,
    ) -> Result<Validated<'b>, RecordError>
    where
        'a: 'b,
    {
        match super::compress::recompress(
            self.bytes,
            &self.batches,
            target,
            decompressed_bytes_max,
        )? {
            None => Ok(self),
            Some(out) => {
                *buf = out;
                let batches = split_stored(buf);
                Ok(Validated {
                    bytes: buf,
                    batches,
                    timestamps: self.timestamps,
                    keyless: self.keyless,
                })
            }
        }
    }
}

/// Checks produced batches completely before anything is written: each batch's
/// header (length, magic, CRC-32C, count), base offset 0, producer fields, no
/// control batches, a known codec, and every record's framing and offset delta,
/// inflating compressed payloads up to `decompressed_bytes_max`.
pub fn validate(bytes: &[u8], decompressed_bytes_max: u64) -> Result<Validated<'_>, InvalidBatch> {
    let batches = batch::split_batches(bytes).map_err(InvalidBatch::Header)?;
    let mut timestamps: Option<(i64, i64)> = None;
    let mut keyless = false;
    for (start, h) in &batches {
        let b = &bytes[*start..*start + h.total_bytes()];
        check_batch(b, h, decompressed_bytes_max, &mut timestamps, &mut keyless)
            .map_err(InvalidBatch::Records)?;
    }
    Ok(Validated {
        bytes,
        batches,
        timestamps,
        keyless,
    })
}

/// Checks that `bytes` is exactly one whole batch, as Kafka requires of each
/// partition's records in a Produce request (v3+). Cheap: the header only.
pub fn single_batch(bytes: &[u8]) -> Result<(), InvalidBatch> {
    let h = BatchHeader::parse(bytes).map_err(InvalidBatch::Header)?;
    let total = h.check_length().map_err(InvalidBatch::Header)?;
    if total > bytes.len() {
        return Err(InvalidBatch::Header(BatchError::Truncated));
    }
    if total < bytes.len() {
        return Err(InvalidBatch::Records(RecordError::NotAllowed(
            "a produce request must carry exactly one record batch per partition",
        )));
    }
    Ok(())
}

/// Validates batches the broker built itself (its internal logs), whose base
/// offsets are 0 and records well formed by construction.
pub fn validate_own(bytes: &[u8]) -> Result<Validated<'_>, InvalidBatch> {
    validate(bytes, u64::MAX)
}

fn check_batch(
    b: &[u8],
    h: &BatchHeader,
    limit: u64,
    timestamps: &mut Option<(i64, i64)>,
    keyless: &mut bool,
) -> Result<(), RecordError> {
    if h.base_offset != 0 {
        return Err(RecordError::BaseOffset(h.base_offset));
    }
    if h.attributes & batch::ATTR_CONTROL != 0 {
        return Err(RecordError::NotAllowed(
            "clients may not write control batches",
        ));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 {
        return Err(RecordError::NotAllowed(
            "an idempotent batch needs a sequence number",
        ));
    }
    walk(b, h, limit, false, &mut |r: &Record| {
        *keyless |= !r.keyed;
        if r.timestamp != -1 {
            *timestamps = Some(match *timestamps {
                None => (r.timestamp, r.timestamp),
                Some((lo, hi)) => (lo.min(r.timestamp), hi.max(r.timestamp)),
            });
        }
        Ok(())
    })
    .map(|_| ())
}

/// What validation and timestamp lookups need of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Offset of the record (batch base offset + offset delta).
    pub offset: i64,
    /// Its timestamp (the batch's max timestamp under LogAppendTime).
    pub timestamp: i64,
    /// Whether its key is not null.
    pub keyed: bool,
}

/// Calls `visit` for each record of stored batch `b`, checking framing as it
/// goes; `visit` returning `Err(())` stops early (not an error). Returns
/// whether it stopped. Stored batches may have gaps in their offset deltas
/// (the cleaner removed records), so only increasing deltas are required.
pub fn for_each_record(
    b: &[u8],
    h: &BatchHeader,
    decompressed_bytes_max: u64,
    visit: &mut dyn FnMut(&Record) -> Result<(), ()>,
) -> Result<bool, RecordError> {
    walk(b, h, decompressed_bytes_max, true, visit)
}

/// [`for_each_record`], generic over the visitor so validation's (which does
/// nothing) costs no call per record.
fn walk<V: FnMut(&Record) -> Result<(), ()> + ?Sized>(
    b: &[u8],
    h: &BatchHeader,
    decompressed_bytes_max: u64,
    stored: bool,
    visit: &mut V,
) -> Result<bool, RecordError> {
    let codec = Codec::of(h.attributes)?;
    let payload = &b[HEADER_BYTES.min(b.len())..];
    let stream = |reader: Box<dyn Read + '_>, visit: &mut V| {
        let mut src = StreamSource::new(reader, decompressed_bytes_max);
        let parsed = parse_records(&mut src, h, stored, visit);
        // A decompressor failure explains whatever the parser then saw.
        match src.error.take() {
            Some(e) => Err(e),
            None => parsed,
        }
    };
    match codec {
        Codec::None => {
            let mut src = SliceSource { b: payload, at: 0 };
            parse_records(&mut src, h, stored, visit)
        }
        Codec::Zstd => ZSTD_CONTEXT.with(|ctx| {
            // One decompression context per thread, reset for each batch:
            // creating one costs more than decompressing a small batch.
            let Ok(mut ctx) = ctx.try_borrow_mut() else {
                return stream(decoder(codec, payload)?, visit);
            };
            let bad =
                |e: usize| RecordError::Decompress(zstd::zstd_safe::get_error_name(e).to_string());
            ctx.reset(zstd::zstd_safe::ResetDirective::SessionOnly)
                .map_err(bad)?;
            ctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(
                ZSTD_WINDOW_LOG_MAX,
            ))
            .map_err(bad)?;
            let reader = zstd::stream::read::Decoder::with_context(payload, &mut ctx);
            stream(Box::new(reader), visit)
        }),
        _ => stream(decoder(codec, payload)?, visit),
    }
}

thread_local! {
    /// The thread's zstd decompression context (see `for_each_record`).
    static ZSTD_CONTEXT: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
        std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
}

/// A streaming decompressor for `payload`.
pub(super) fn decoder<'a>(
    codec: Codec,
    payload: &'a [u8],
) -> Result<Box<dyn Read + 'a>, RecordError> {
    let bad = |e: std::io::Error| RecordError::Decompress(e.to_string());
    Ok(match codec {
        Codec::None => Box::new(payload),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(payload)),
        Codec::Snappy => Box::new(SnappyReader::new(payload)),
        Codec::Lz4 => Box::new(Lz4Reader(Some(lz4::Decoder::new(payload).map_err(bad)?))),
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(payload).map_err(bad)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(bad)?;
            Box::new(d)
        }
    })
}

/// Bytes the record parser reads from: a slice, or a decompressor.
trait Source {
    /// The next byte, or `None` at the end.
    fn byte(&mut self) -> Option<u8>;
    /// Skips `n` bytes; false if fewer remain.
    fn skip(&mut self, n: usize) -> bool;
    /// Whether no byte remains.
    fn at_end(&mut self) -> bool;
    /// Bytes consumed so far.
    fn position(&self) -> u64;
}

/// An uncompressed payload.
struct SliceSource<'a> {
    /// The records section.
    b: &'a [u8],
    /// Read position.
    at: usize,
}

impl Source for SliceSource<'_> {
    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    #[inline]
    fn skip(&mut self, n: usize) -> bool {
        match self.at.checked_add(n) {
            Some(end) if end <= self.b.len() => {
                self.at = end;
                true
            }
            _ => false,
        }
    }
    fn at_end(&mut self) -> bool {
        self.at >= self.b.len()
    }
    fn position(&self) -> u64 {
        self.at as u64
    }
}

thread_local! {
    /// One decompression buffer per thread, reused by every batch.
    static CHUNK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A decompressor read through a reused chunk buffer, counting what comes out.
struct StreamSource<'a> {
    /// The decompressor.
    reader: Box<dyn Read + 'a>,
    /// The chunk buffer, taken from the thread's and put back on drop.
    buf: Vec<u8>,
    /// Read position in `buf`.
    at: usize,
    /// Valid bytes in `buf`.
    len: usize,
    /// Bytes decompressed so far.
    total: u64,
    /// Refuse to decompress more than this.
    limit: u64,
    /// The first failure of the decompressor (reported instead of framing errors).
    error: Option<RecordError>,
    /// The decompressor reported its end.
    eof: bool,
}

impl<'a> StreamSource<'a> {
    fn new(reader: Box<dyn Read + 'a>, limit: u64) -> StreamSource<'a> {
        let mut buf = CHUNK.with(|c| std::mem::take(&mut *c.borrow_mut()));
        buf.resize(STREAM_CHUNK_BYTES, 0);
        StreamSource {
            reader,
            buf,
            at: 0,
            len: 0,
            total: 0,
            limit,
            error: None,
            eof: false,
        }
    }

    /// Refills the chunk; false at the end or on an error (kept in `error`).
    fn fill(&mut self) -> bool {
        if self.eof || self.error.is_some() {
            return false;
        }
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.total += n as u64;
                    if self.total > self.limit {
                        self.error = Some(RecordError::TooLarge { limit: self.limit });
                        return false;
                    }
                    self.at = 0;
                    self.len = n;
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(RecordError::Decompress(e.to_string()));
                    return false;
                }
            }
        }
    }
}

impl Drop for StreamSource<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        CHUNK.with(|c| *c.borrow_mut() = buf);
    }
}

impl Source for StreamSource<'_> {
    fn byte(&mut self) -> Option<u8> {
        if self.at >= self.len && !self.fill() {
            return None;
        }
        let v = self.buf[self.at];
        self.at += 1;
        Some(v)
    }
    fn skip(&mut self, mut n: usize) -> bool {
        while n > 0 {
            if self.at >= self.len && !self.fill() {
                return false;
            }
            let step = n.min(self.len - self.at);
            self.at += step;
            n -= step;
        }
        true
    }
    fn at_end(&mut self) -> bool {
        self.at >= self.len && !self.fill()
    }
    fn position(&self) -> u64 {
        self.total - (self.len - self.at) as u64
    }
}

/// Reads a zigzag varint of at most `max_bytes` bytes (5 for int32, 10 for int64).
#[inline]
fn varint<S: Source + ?Sized>(src: &mut S, max_bytes: u32) -> Option<i64> {
    // Most varints of a record (attributes aside: deltas, null key, small
    // lengths) fit one byte.
    let first = src.byte()?;
    if first & 0x80 == 0 {
        return Some(i64::from(first >> 1) ^ -i64::from(first & 1));
    }
    let mut z = u64::from(first & 0x7f);
    for i in 1..max_bytes {
        let byte = src.byte()?;
        z |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

fn varint32<S: Source + ?Sized>(src: &mut S) -> Option<i32> {
    i32::try_from(varint(src, 5)?).ok()
}

/// Skips a length-prefixed field of the record that began at `start` and is
/// `len` bytes long: the field must lie inside it; null (-1) only if
/// `nullable`. `Some(is_null)` when it is well formed.
fn skip_field<S: Source>(src: &mut S, start: u64, len: u64, nullable: bool) -> Option<bool> {
    let n = varint32(src)?;
    if n == -1 && nullable {
        return Some(true);
    }
    let n = u64::try_from(n).ok()?;
    let used = src.position() - start;
    (n <= len.saturating_sub(used) && src.skip(n as usize)).then_some(false)
}

/// Parses `h.records_count` records from `src`, checking what Kafka checks and
/// that each offset delta is the record's position (`stored`: that the deltas
/// increase up to the batch's last offset delta, as compaction leaves them),
/// then that nothing is left.
/// Generic over the source, so reading a byte is inlined (a record is a dozen
/// varint reads: small records would pay a call for each).
fn parse_records<S: Source, V: FnMut(&Record) -> Result<(), ()> + ?Sized>(
    src: &mut S,
    h: &BatchHeader,
    stored: bool,
    visit: &mut V,
) -> Result<bool, RecordError> {
    let log_append_time = h.attributes & batch::ATTR_LOG_APPEND_TIME != 0;
    let mut prev_delta = -1;
    for i in 0..h.records_count {
        let bad = |why| RecordError::Framing { record: i, why };
        let len = varint32(src).ok_or_else(|| bad("unreadable record length"))?;
        let len = u64::try_from(len).map_err(|_| bad("negative record length"))?;
        let start = src.position();
        // Record attributes are unused (always 0 from Kafka's clients); some
        // consumers read the byte as a varint, so anything else breaks them.
        let attributes = src
            .byte()
            .ok_or_else(|| bad("record shorter than its length"))?;
        if attributes != 0 {
            return Err(bad("record attributes must be 0"));
        }
        let ts_delta = varint(src, 10).ok_or_else(|| bad("unreadable timestamp delta"))?;
        let delta = varint32(src).ok_or_else(|| bad("unreadable offset delta"))?;
        let in_place = if stored {
            delta > prev_delta && delta <= h.last_offset_delta
        } else {
            delta == i
        };
        if !in_place {
            return Err(RecordError::OffsetDelta { record: i, delta });
        }
        prev_delta = delta;
        let field = |src: &mut S, nullable: bool, what| {
            skip_field(src, start, len, nullable).ok_or_else(|| bad(what))
        };
        let key_null = field(src, true, "bad key length")?;
        field(src, true, "bad value length")?;
        let headers = varint32(src).ok_or_else(|| bad("unreadable header count"))?;
        if headers < 0 || u64::try_from(headers).unwrap_or(0) > len {
            return Err(bad("bad header count"));
        }
        for _ in 0..headers {
            field(src, false, "bad header key length")?;
            field(src, true, "bad header value length")?;
        }
        if src.position() - start != len {
            return Err(bad("record length disagrees with its contents"));
        }
        let timestamp = if log_append_time {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        let r = Record {
            offset: h.base_offset + i64::from(delta),
            timestamp,
            keyed: !key_null,
        };
        if visit(&r).is_err() {
            return Ok(true);
        }
    }
    if !src.at_end() {
        return Err(RecordError::TrailingBytes);
    }
    Ok(false)
}

/// An LZ4 frame decoder that also requires the frame to end: the `lz4` crate
/// reports a frame cut before its end mark as a clean end of data, which some
/// consumers (kafka-python) then fail on. Bytes after the frame are refused too.
struct Lz4Reader<'a>(Option<lz4::Decoder<&'a [u8]>>);

impl Read for Lz4Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let Some(d) = self.0.as_mut() else {
            return Ok(0);
        };
        let n = d.read(out)?;
        if n > 0 || out.is_empty() {
            return Ok(n);
        }
        let Some(d) = self.0.take() else {
            return Ok(0);
        };
        let (rest, ended) = d.finish();
        ended.map_err(|_| std::io::Error::other("the LZ4 frame is incomplete"))?;
        if !rest.is_empty() {
            return Err(std::io::Error::other("bytes after the LZ4 frame"));
        }
        Ok(0)
    }
}

/// Snappy, raw (one block, as librdkafka writes) or xerial-framed (as Java and
/// Go clients write), decompressed a block at a time. A block's inflated size is
/// read from its preamble and bounded before any allocation.
struct SnappyReader<'a> {
    /// Blocks not yet decompressed.
    rest: &'a [u8],
    /// Whether `rest` is xerial blocks (else one raw block).
    xerial: bool,
    /// The current block, decompressed.
    block: Vec<u8>,
    /// Read position in `block`.
    at: usize,
}

/// Largest decompressed snappy block accepted (a raw block is the whole payload).
const SNAPPY_BLOCK_BYTES_MAX: usize = 64 << 20;

impl<'a> SnappyReader<'a> {
    fn new(payload: &'a [u8]) -> SnappyReader<'a> {
        let xerial = payload.starts_with(XERIAL_MAGIC) && payload.len() >= XERIAL_HEADER_BYTES;
        SnappyReader {
            rest: if xerial {
                &payload[XERIAL_HEADER_BYTES..]
            } else {
                payload
            },
            xerial,
            block: Vec::new(),
            at: 0,
        }
    }

    fn next_block(&mut self) -> std::io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let input = if self.xerial {
            if self.rest.len() < 4 {
                return Err(std::io::Error::other("truncated xerial block length"));
            }
            let n = u32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]);
            let n = usize::try_from(n).map_err(std::io::Error::other)?;
            let end = 4usize
                .checked_add(n)
                .filter(|e| *e <= self.rest.len())
                .ok_or_else(|| std::io::Error::other("truncated xerial block"))?;
            let block = &self.rest[4..end];
            self.rest = &self.rest[end..];
            block
        } else {
            std::mem::take(&mut self.rest)
        };
        let n = snap::raw::decompress_len(input).map_err(std::io::Error::other)?;
        if n > SNAPPY_BLOCK_BYTES_MAX {
            return Err(std::io::Error::other("snappy block too large"));
        }
        self.block.resize(n, 0);
        snap::raw::Decoder::new()
            .decompress(input, &mut self.block)
            .map_err(std::io::Error::other)?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// First record in `batch` whose timestamp is `>= ts` (or `== ts` with `exact`),
/// as `(timestamp, offset)`. Records are read through the bounded streaming
/// decoder; a batch that cannot be read within `limit` is answered with its base
/// offset and max timestamp (a valid starting point for a consumer).
pub fn search_timestamp(
    batch: &[u8],
    ts: i64,
    exact: bool,
    limit: u64,
    log_start: i64,
) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    let mut found = None;
    let mut visit = |r: &Record| {
        // Records below the log start (DeleteRecords) are gone, as in Kafka.
        if r.offset < log_start {
            return Ok(());
        }
        let hit = if exact {
            r.timestamp == ts
        } else {
            r.timestamp >= ts
        };
        if hit {
            found = Some((r.timestamp, r.offset));
            return Err(());
        }
        Ok(())
    };
    match for_each_record(batch, &header, limit, &mut visit) {
        Ok(_) => found,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read batch for timestamp search; using its base offset");
            Some((header.max_timestamp, header.base_offset.max(log_start)))
        }
    }
}

/// The batches of a buffer read back from the log (validated when written):
/// headers only, stopping at the first one that does not fit.
pub fn split_stored(b: &[u8]) -> Vec<(usize, BatchHeader)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Ok(h) = BatchHeader::parse(&b[pos..]) {
        let Ok(total) = h.check_length() else { break };
        if pos + total > b.len() {
            break;
        }
        out.push((pos, h));
        pos += total;
    }
    out
}

/// A record's key and value, borrowed from its batch (`None` is null).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

pub(super) fn get_varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut src = SliceSource { b, at: *at };
    let v = varint(&mut src, 10);
    *at = src.at;
    v
}

pub(super) fn get_bytes<'a>(b: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = get_varint(b, at)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let end = at.checked_add(len)?;
    let v = b.get(*at..end)?;
    *at = end;
    Some(Some(v))
}

/// The keys and values of an uncompressed batch, or `None` if it is compressed
/// or its records do not parse. Headers are skipped. For the broker's own logs.
pub fn uncompressed(b: &[u8]) -> Option<Vec<KeyValue<'_>>> {
    let h = BatchHeader::parse(b).ok()?;
    if h.attributes & batch::ATTR_CODEC_MASK != 0 {
        return None;
    }
    let end = h.total_bytes().min(b.len());
    let mut at = HEADER_BYTES;
    let mut out = Vec::new();
    for _ in 0..h.records_count {
        let len = usize::try_from(get_varint(b, &mut at)?).ok()?;
        let rec_end = at.checked_add(len)?;
        if rec_end > end {
            return None;
        }
        let rec = &b[at..rec_end];
        let mut p = 1; // attributes
        get_varint(rec, &mut p)?; // timestamp delta
        get_varint(rec, &mut p)?; // offset delta
        let key = get_bytes(rec, &mut p)?;
        let value = get_bytes(rec, &mut p)?;
        out.push((key, value));
        at = rec_end;
    }
    Some(out)
}

pub(super) fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
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

/// The records section of an uncompressed batch of `(key, value)` records, all
/// with timestamp delta 0.
pub fn encode_records(records: &[KeyValue<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut r = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        r.clear();
        r.push(0u8); // attributes
        put_varint(&mut r, 0); // timestamp delta
        put_varint(&mut r, i as i64); // offset delta
        put_bytes(&mut r, *key);
        put_bytes(&mut r, *value);
        put_varint(&mut r, 0); // headers
        put_varint(&mut body, r.len() as i64);
        body.extend_from_slice(&r);
    }
    body
}

/// Wraps a records section in a batch header with a valid CRC: `count` records
/// stamped `base_timestamp`, compressed with the codec bits in `attributes`.
pub fn build_raw_batch(
    base_timestamp: i64,
    attributes: i16,
    count: i32,
    payload: &[u8],
) -> Vec<u8> {
    let length = i32::try_from(HEADER_BYTES - LOG_OVERHEAD + payload.len())
        .expect("test and internal batches are far below 2 GiB");
    let mut b = Vec::with_capacity(HEADER_BYTES + payload.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&length.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(batch::MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(payload);
    batch::set_crc(&mut b);
    b
}

/// A COMMIT or ABORT control batch (KIP-98's transaction marker) of
/// `producer_id` at `epoch`: one record whose key is (version 0, type: 0 abort,
/// 1 commit) and whose value is (version 0, coordinator epoch).
pub fn build_marker(
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let key = [0, 0, 0, u8::from(commit)];
    let mut value = vec![0u8, 0];
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let payload = encode_records(&[(Some(&key[..]), Some(&value[..]))]);
    let mut b = build_raw_batch(
        timestamp,
        batch::ATTR_CONTROL | batch::ATTR_TRANSACTIONAL,
        1,
        &payload,
    );
    batch::set_producer(&mut b, producer_id, epoch, -1);
    b
}

/// What a control batch marks: `Some(true)` COMMIT, `Some(false)` ABORT,
/// `None` for anything else (another control type, or unreadable).
pub fn marker_kind(b: &[u8]) -> Option<bool> {
    let records = uncompressed(b)?;
    let (key, _) = records.first()?;
    match (*key)? {
        [_, _, 0, 0, ..] => Some(false),
        [_, _, 0, 1, ..] => Some(true),
        _ => None,
    }
}

/// Builds a valid uncompressed, non-idempotent batch of `(key, value)` records, all
/// stamped `base_timestamp`. The broker's own internal logs are written with it.
pub fn build_batch(base_timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let count = i32::try_from(records.len()).expect("internal batches hold few records");
    build_raw_batch(base_timestamp, 0, count, &encode_records(records))
}

/// Builds a valid uncompressed batch of records with the given values and null keys.
/// Used by tests and benchmarks; real clients build their own batches.
pub fn build_test_batch(base_timestamp: i64, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(*v))).collect();
    build_batch(base_timestamp, &records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn kv(n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![(i % 251) as u8; size]).collect()
    }

    fn payload(values: &[Vec<u8>]) -> Vec<u8> {
        let recs: Vec<KeyValue<'_>> = values
            .iter()
            .map(|v| (Some(&b"k"[..]), Some(&v[..])))
            .collect();
        encode_records(&recs)
    }

    fn compress(codec: Codec, raw: &[u8]) -> Vec<u8> {
        match codec {
            Codec::None => raw.to_vec(),
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            Codec::Snappy => snap::raw::Encoder::new().compress_vec(raw).unwrap(),
            Codec::Lz4 => {
                let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
                e.write_all(raw).unwrap();
                let (out, r) = e.finish();
                r.unwrap();
                out
            }
            Codec::Zstd => zstd::encode_all(raw, 3).unwrap(),
        }
    }

    const CODECS: [(Codec, i16); 5] = [
        (Codec::None, 0),
        (Codec::Gzip, 1),
        (Codec::Snappy, 2),
        (Codec::Lz4, 3),
        (Codec::Zstd, 4),
    ];

    #[test]
    fn valid_batches_pass_in_every_codec() {
        let values = kv(50, 100);
        let raw = payload(&values);
        for (codec, attr) in CODECS {
            let b = build_raw_batch(5, attr, 50, &compress(codec, &raw));
            let v = validate(&b, 1 << 20).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(v.batches().len(), 1);
        }
    }

    #[test]
    fn xerial_snappy_is_read_block_by_block() {
        let raw = payload(&kv(20, 300));
        let mut x = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for part in raw.chunks(1000) {
            let c = snap::raw::Encoder::new().compress_vec(part).unwrap();
            x.extend_from_slice(&(c.len() as u32).to_be_bytes());
            x.extend_from_slice(&c);
        }
        validate(&build_raw_batch(1, 2, 20, &x), 1 << 20).unwrap();
    }

    fn refused(b: &[u8], limit: u64) -> RecordError {
        match validate(b, limit) {
            Err(InvalidBatch::Records(e)) => e,
            other => panic!("expected a record error, got {other:?}"),
        }
    }

    #[test]
    fn broken_records_are_refused() {
        let raw = payload(&kv(3, 10));
        // Count says 4, records hold 3: premature end.
        let b = build_raw_batch(1, 0, 4, &raw);
        assert!(matches!(
            refused(&b, 1 << 20),
            RecordError::Framing { record: 3, .. }
        ));
        // Count says 2, records hold 3: trailing bytes.
        let b = build_raw_batch(1, 0, 2, &raw);
        assert_eq!(refused(&b, 1 << 20), RecordError::TrailingBytes);
        // Unknown codec.
        let b = build_raw_batch(1, 6, 3, &raw);
        assert_eq!(refused(&b, 1 << 20), RecordError::UnknownCodec(6));
        // Garbage that claims to be compressed.
        for attr in 1..=4 {
            let b = build_raw_batch(1, attr, 3, &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
            assert!(
                matches!(
                    refused(&b, 1 << 20),
                    RecordError::Decompress(_) | RecordError::Framing { .. }
                ),
                "codec {attr}"
            );
        }
    }

    #[test]
    fn record_attributes_must_be_zero() {
        // Found by the fuzzer: kafka-python reads this byte as a varint.
        let mut raw = encode_records(&[(Some(&b"k"[..]), Some(&b"v"[..]))]);
        raw[1] = 0x80;
        let b = build_raw_batch(1, 0, 1, &raw);
        assert!(matches!(
            refused(&b, 1 << 20),
            RecordError::Framing { record: 0, .. }
        ));
    }

    #[test]
    fn compressed_payloads_must_end_cleanly() {
        // Found by the fuzzer: an LZ4 frame cut before its end mark still held
        // every record; librdkafka read it, kafka-python could not.
        let raw = payload(&kv(20, 100));
        for (codec, attr) in CODECS.iter().skip(1) {
            let full = compress(*codec, &raw);
            for cut in 1..=4 {
                let b = build_raw_batch(1, *attr, 20, &full[..full.len() - cut]);
                assert!(validate(&b, 1 << 20).is_err(), "{codec:?} cut by {cut}");
            }
            let mut extra = full.clone();
            extra.extend_from_slice(b"junk");
            let b = build_raw_batch(1, *attr, 20, &extra);
            assert!(
                validate(&b, 1 << 20).is_err(),
                "{codec:?} with trailing bytes"
            );
        }
    }

    #[test]
    fn offset_deltas_must_count_up() {
        let recs: Vec<KeyValue<'_>> = vec![(None, Some(b"a")), (None, Some(b"b"))];
        let mut raw = encode_records(&recs);
        // Record 1 starts after record 0: len varint, then attributes, ts delta, offset delta.
        let first_len = (raw[0] >> 1) as usize;
        let second = 1 + first_len;
        raw[second + 3] = 2 << 1; // offset delta 2 instead of 1
        let b = build_raw_batch(1, 0, 2, &raw);
        assert_eq!(
            refused(&b, 1 << 20),
            RecordError::OffsetDelta {
                record: 1,
                delta: 2
            }
        );
    }

    #[test]
    fn inflation_is_bounded() {
        let raw = payload(&kv(100, 1000));
        for (codec, attr) in CODECS.iter().skip(1) {
            let b = build_raw_batch(1, *attr, 100, &compress(*codec, &raw));
            assert_eq!(
                refused(&b, 10_000),
                RecordError::TooLarge { limit: 10_000 },
                "{codec:?}"
            );
            validate(&b, raw.len() as u64).unwrap();
        }
    }

    #[test]
    fn records_visit_offsets_and_timestamps() {
        let b = build_test_batch(100, &[b"a", b"b", b"c"]);
        let h = BatchHeader::parse(&b).unwrap();
        let mut seen = Vec::new();
        let mut visit = |r: &Record| {
            seen.push(*r);
            if r.offset == 1 {
                Err(())
            } else {
                Ok(())
            }
        };
        assert!(for_each_record(&b, &h, 1 << 20, &mut visit).unwrap());
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[1],
            Record {
                offset: 1,
                timestamp: 100,
                keyed: false,
            }
        );
    }

    #[test]
    fn key_values_round_trip() {
        let b = build_batch(7, &[(Some(b"k"), None), (None, Some(b"value"))]);
        validate_own(&b).unwrap();
        let r = uncompressed(&b).unwrap();
        assert_eq!(
            r,
            vec![(Some(&b"k"[..]), None), (None, Some(&b"value"[..]))]
        );
        let mut cut = b.clone();
        cut.truncate(b.len() - 2);
        assert!(uncompressed(&cut).is_none());
    }
}
