//! Micro-benchmarks of the log's hot paths: batch validation (CRC-32C over the
//! batch), append to a segment, and reads that go through the offset index.
//! Run with `cargo bench --bench log`; numbers are throughput per batch.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice::log::batch::{build_test_batch, validate};
use sluice::log::{LogConfig, PartitionLog};

/// A batch of 16 records of 1 KiB: what a producer with a small linger sends.
fn batch_16k() -> Vec<u8> {
    let value = vec![b'x'; 1024];
    let values: Vec<&[u8]> = (0..16).map(|_| &value[..]).collect();
    build_test_batch(1_700_000_000_000, &values)
}

fn validation(c: &mut Criterion) {
    let b = batch_16k();
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("validate_16x1KiB", |bench| {
        bench.iter(|| validate(black_box(&b)).expect("valid"))
    });
    g.finish();
}

fn append_and_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), false, 0).expect("open");
    let b = batch_16k();
    let mut g = c.benchmark_group("partition");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("append_16x1KiB", |bench| {
        bench.iter(|| log.append(black_box(&b), 0).expect("append"))
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
