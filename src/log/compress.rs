//! Broker-side compression (`compression.type`): a batch produced in another
//! codec than the topic's is recompressed before it is appended, as Kafka's
//! log validator does. Only the records section changes: the record encoding
//! is the same in every codec, so the header keeps its offsets, timestamps
//! and producer fields, and gets the new codec bits, length and CRC.
//!
//! Memory stays bounded: the old payload streams through the decoder into the
//! encoder (at most `decompressed_bytes_max` inflated bytes), and only the
//! new compressed batch is held.

use std::io::{self, Read};

use super::batch::{self, BatchHeader, HEADER_BYTES, LOG_OVERHEAD};
use super::records::{self, Codec, RecordError};

/// A topic's target codec and level (`compression.type` with its
/// `compression.<codec>.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// The codec every stored batch gets.
    pub codec: Codec,
    /// The codec's level (Kafka's ranges: gzip -1..9, lz4 1..17, zstd
    /// -131072..22); ignored by snappy and uncompressed.
    pub level: i32,
}

impl Compression {
    /// Kafka's default level of `codec` (gzip's -1 is zlib's default, 6).
    pub fn default_level(codec: Codec) -> i32 {
        match codec {
            Codec::Gzip => -1,
            Codec::Lz4 => 9,
            Codec::Zstd => 3,
            Codec::None | Codec::Snappy => 0,
        }
    }
}

/// Xerial snappy framing, as the Java client writes it: magic, version 1,
/// compatible version 1, then length-prefixed raw blocks.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per xerial block (the Java client's block size).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// The batches of `bytes` (split into `batches`) with every batch whose codec
/// is not `target`'s recompressed into it; `None` when all already match, so
/// the common path stays a write of the request buffer. Inflated payloads are
/// bounded by `decompressed_bytes_max` (validation already checked them).
pub fn recompress(
    bytes: &[u8],
    batches: &[(usize, BatchHeader)],
    target: Compression,
    decompressed_bytes_max: u64,
) -> Result<Option<Vec<u8>>, RecordError> {
    let mismatched = |h: &BatchHeader| Codec::of(h.attributes).map(|c| c != target.codec);
    let mut any = false;
    for (_, h) in batches {
        any |= mismatched(h)?;
    }
    if !any {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len());
    for (start, h) in batches {
        let b = &bytes[*start..*start + h.total_bytes()];
        if mismatched(h)? {
            rebuild(b, h, target, decompressed_bytes_max, &mut out)?;
        } else {
            out.extend_from_slice(b);
        }
    }
    Ok(Some(out))
}

/// Appends batch `b` recompressed into `target` to `out`.
fn rebuild(
    b: &[u8],
    h: &BatchHeader,
    target: Compression,
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let at = out.len();
    out.extend_from_slice(&b[..HEADER_BYTES]);
    let mut plain = records::decoder(Codec::of(h.attributes)?, &b[HEADER_BYTES..])?
        .take(limit.saturating_add(1));
    let inflated =
        encode(&mut plain, target, out).map_err(|e| RecordError::Decompress(e.to_string()))?;
    if inflated > limit {
        return Err(RecordError::TooLarge { limit });
    }
    let total = out.len() - at;
    let length = i32::try_from(total - LOG_OVERHEAD)
        .map_err(|_| RecordError::NotAllowed("a recompressed batch is too large"))?;
    let attributes = (h.attributes & !batch::ATTR_CODEC_MASK) | codec_bits(target.codec);
    batch::set_length_and_attributes(&mut out[at..], length, attributes);
    batch::set_crc(&mut out[at..]);
    Ok(())
}

/// The attribute bits naming `codec`.
fn codec_bits(codec: Codec) -> i16 {
    match codec {
        Codec::None => 0,
        Codec::Gzip => 1,
        Codec::Snappy => 2,
        Codec::Lz4 => 3,
        Codec::Zstd => 4,
    }
}

/// Streams `plain` compressed with `target` onto `out`; returns the bytes read.
fn encode(plain: &mut dyn Read, target: Compression, out: &mut Vec<u8>) -> io::Result<u64> {
    match target.codec {
        Codec::None => io::copy(plain, out),
        Codec::Gzip => {
            let level = if target.level < 0 { 6 } else { target.level };
            let level = flate2::Compression::new(level.clamp(1, 9) as u32);
            let mut w = flate2::write::GzEncoder::new(out, level);
            let n = io::copy(plain, &mut w)?;
            w.finish()?;
            Ok(n)
        }
        Codec::Snappy => {
            out.extend_from_slice(XERIAL_HEADER);
            let mut enc = snap::raw::Encoder::new();
            let mut block = vec![0u8; XERIAL_BLOCK_BYTES];
            let mut packed = vec![0u8; snap::raw::max_compress_len(XERIAL_BLOCK_BYTES)];
            let mut n = 0u64;
            loop {
                let got = read_full(plain, &mut block)?;
                if got == 0 {
                    return Ok(n);
                }
                n += got as u64;
                let len = enc
                    .compress(&block[..got], &mut packed)
                    .map_err(io::Error::other)?;
                out.extend_from_slice(&(len as u32).to_be_bytes());
                out.extend_from_slice(&packed[..len]);
            }
        }
        Codec::Lz4 => {
            // The frame the Java client writes: 64 KiB independent blocks, no
            // checksums, no content size (its reader accepts only that much).
            let mut w = lz4::EncoderBuilder::new()
                .level(target.level.clamp(1, 17) as u32)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(out)?;
            let n = io::copy(plain, &mut w)?;
            let (_, done) = w.finish();
            done?;
            Ok(n)
        }
        Codec::Zstd => {
            let mut w = zstd::stream::write::Encoder::new(out, target.level)?;
            let n = io::copy(plain, &mut w)?;
            w.finish()?;
            Ok(n)
        }
    }
}

/// Fills `buf` from `r` as far as it goes; the count is short only at the end.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::{build_batch, validate, KeyValue};

    /// Every codec to every codec keeps the records, offsets and producer
    /// fields, and the result passes full validation.
    #[test]
    fn every_codec_round_trips_into_every_other() {
        let values: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("value-{i}-{}", "x".repeat(i % 97)).into_bytes())
            .collect();
        let records: Vec<KeyValue<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    if i % 3 == 0 { None } else { Some(&v[..6]) },
                    if i % 7 == 0 { None } else { Some(&v[..]) },
                )
            })
            .collect();
        let plain = build_batch(1_700_000_000_000, &records);
        let expect = records::uncompressed(&plain).expect("plain batch");
        for from in Codec::ALL {
            let h = BatchHeader::parse(&plain).unwrap();
            let src = recompress(
                &plain,
                &[(0, h)],
                Compression {
                    codec: from,
                    level: Compression::default_level(from),
                },
                1 << 30,
            )
            .unwrap()
            .unwrap_or_else(|| plain.clone());
            let mut src = src;
            batch::set_producer(&mut src, 7, 2, 40);
            for to in Codec::ALL {
                let target = Compression {
                    codec: to,
                    level: Compression::default_level(to),
                };
                let batches = batch::split_batches(&src).unwrap();
                let out = recompress(&src, &batches, target, 1 << 30).unwrap();
                let out = match out {
                    None => {
                        assert_eq!(from, to);
                        continue;
                    }
                    Some(o) => o,
                };
                let v = validate(&out, 1 << 30).unwrap();
                let h = v.batches()[0].1;
                assert_eq!(Codec::of(h.attributes).unwrap(), to);
                assert_eq!(
                    (h.producer_id, h.producer_epoch, h.base_sequence),
                    (7, 2, 40)
                );
                assert_eq!(h.records_count, 500);
                assert_eq!(h.last_offset_delta, 499);
                // Back to plain: the same records.
                let back = recompress(
                    &out,
                    &batch::split_batches(&out).unwrap(),
                    Compression {
                        codec: Codec::None,
                        level: 0,
                    },
                    1 << 30,
                )
                .unwrap()
                .unwrap_or(out);
                assert_eq!(
                    records::uncompressed(&back).unwrap(),
                    expect,
                    "{from:?}->{to:?}"
                );
            }
        }
    }

    #[test]
    fn inflating_past_the_limit_is_refused() {
        let big = vec![b'a'; 100_000];
        let plain = build_batch(0, &[(None, Some(&big))]);
        let h = BatchHeader::parse(&plain).unwrap();
        let gz = recompress(
            &plain,
            &[(0, h)],
            Compression {
                codec: Codec::Gzip,
                level: -1,
            },
            1 << 20,
        )
        .unwrap()
        .unwrap();
        let h = BatchHeader::parse(&gz).unwrap();
        let err = recompress(
            &gz,
            &[(0, h)],
            Compression {
                codec: Codec::Zstd,
                level: 3,
            },
            1000,
        )
        .unwrap_err();
        assert_eq!(err, RecordError::TooLarge { limit: 1000 });
    }
}
