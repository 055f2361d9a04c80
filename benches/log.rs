//! Micro-benchmarks of the log's hot paths: batch validation (the header and
//! CRC-32C alone, and the full record validation produce runs, per codec),
//! append to a segment, and reads that go through the offset index.
//! Run with `cargo bench --bench log`; numbers are throughput per batch.

use std::io::Write;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice::log::batch::validate;
use sluice::log::records::{self, build_raw_batch, encode_records, KeyValue};
use sluice::log::{LogConfig, PartitionLog, RealFs};

/// 16 records of 1 KiB: what a producer with a small linger sends. The values
/// are text-like (words from a small vocabulary), so codecs compress them as
/// they would JSON or logs, neither trivially nor not at all.
fn records_16k() -> Vec<u8> {
    let words = [
        "order", "id", "customer", "amount", "status", "shipped", "2026", "EUR",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let values: Vec<Vec<u8>> = (0..16)
        .map(|_| {
            let mut v = Vec::with_capacity(1024);
            while v.len() < 1024 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                v.extend_from_slice(words[(seed % 8) as usize].as_bytes());
                v.extend_from_slice(format!("={} ", seed % 10_000).as_bytes());
            }
            v.truncate(1024);
            v
        })
        .collect();
    let kvs: Vec<KeyValue<'_>> = values
        .iter()
        .map(|v| (Some(&b"key"[..]), Some(&v[..])))
        .collect();
    encode_records(&kvs)
}

fn compressed(codec: &str, raw: &[u8]) -> (i16, Vec<u8>) {
    match codec {
        "none" => (0, raw.to_vec()),
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(raw).expect("gzip");
            (1, e.finish().expect("gzip"))
        }
        "snappy" => (
            2,
            snap::raw::Encoder::new().compress_vec(raw).expect("snappy"),
        ),
        "lz4" => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
            e.write_all(raw).expect("lz4");
            let (out, r) = e.finish();
            r.expect("lz4");
            (3, out)
        }
        _ => (4, zstd::encode_all(raw, 3).expect("zstd")),
    }
}

/// Inflates `payload` with the codec's library, the plainest way.
fn inflate(codec: &str, payload: &[u8], len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::with_capacity(len);
    match codec {
        "gzip" => {
            flate2::read::GzDecoder::new(payload)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "snappy" => {
            out = snap::raw::Decoder::new()
                .decompress_vec(payload)
                .expect("snappy")
        }
        "lz4" => {
            lz4::Decoder::new(payload)
                .expect("lz4")
                .read_to_end(&mut out)
                .expect("lz4");
        }
        _ => out = zstd::bulk::decompress(payload, len).expect("zstd"),
    }
    out
}

fn batch(codec: &str) -> Vec<u8> {
    let (attr, payload) = compressed(codec, &records_16k());
    build_raw_batch(1_700_000_000_000, attr, 16, &payload)
}

fn validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    let plain = batch("none");
    // Throughput counts the uncompressed record bytes, as produce MB/s does.
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("header_crc/none", |bench| {
        bench.iter(|| validate(black_box(&plain)).expect("valid"))
    });
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let b = batch(codec);
        g.bench_function(format!("full/{codec}"), |bench| {
            bench.iter(|| records::validate(black_box(&b), 64 << 20).expect("valid"))
        });
    }
    // Small records: the per-record walk, 160 records of 100 B.
    let small: Vec<Vec<u8>> = (0..160).map(|i| vec![b'a' + (i % 26) as u8; 100]).collect();
    let kvs: Vec<KeyValue<'_>> = small.iter().map(|v| (None, Some(&v[..]))).collect();
    let b100 = build_raw_batch(1_700_000_000_000, 0, 160, &encode_records(&kvs));
    g.bench_function("header_crc/none_100B", |bench| {
        bench.iter(|| validate(black_box(&b100)).expect("valid"))
    });
    g.bench_function("full/none_100B", |bench| {
        bench.iter(|| records::validate(black_box(&b100), 64 << 20).expect("valid"))
    });
    // The codec alone, inflating the same payload into memory: the floor under
    // full validation of a compressed batch.
    let raw = records_16k();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let (_, payload) = compressed(codec, &raw);
        g.bench_function(format!("inflate_only/{codec}"), |bench| {
            bench.iter(|| inflate(codec, black_box(&payload), raw.len()))
        });
    }
    g.finish();
}

fn append_and_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(Arc::new(RealFs), dir.path(), LogConfig::default(), false, 0)
        .expect("open");
    let b = batch("none");
    let v = records::validate(&b, 64 << 20).expect("valid");
    let mut g = c.benchmark_group("partition");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("append_16x1KiB", |bench| {
        bench.iter(|| log.append(black_box(&v), 0).expect("append"))
    });
    let end = log.log_end_offset();
    g.bench_function("index_lookup_read", |bench| {
        let mut i = 0i64;
        bench.iter(|| {
            i = (i + 7919) % end;
            log.read(black_box(i), 1 << 20).expect("read")
        })
    });
    g.finish();
}

criterion_group!(benches, validation, append_and_read);
criterion_main!(benches);
