//! Micro-benchmarks of the wire layer's hot paths: decoding a Produce request
//! (the records stay a slice of the frame) and assembling a Fetch response
//! (headers in memory, records as file ranges). Run with
//! `cargo bench --bench protocol`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice::log::fs::{Fs, FsFile, Open, RealFs};
use sluice::log::records::build_test_batch;
use sluice::log::FileSlice;
use sluice::protocol::{
    decode_request, encode_fetch, FetchPartitionReply, FetchReply, FetchTopicReply,
};

/// Partitions per request: what a producer spreading over a 16-partition topic sends.
const PARTITIONS: i32 = 16;

/// A Produce v9 frame (without the size prefix) carrying one 16 x 1 KiB batch per partition.
fn produce_frame() -> Bytes {
    let value = vec![b'x'; 1024];
    let values: Vec<&[u8]> = (0..16).map(|_| &value[..]).collect();
    let batch = Bytes::from(build_test_batch(1_700_000_000_000, &values));
    let partitions = (0..PARTITIONS)
        .map(|i| {
            PartitionProduceData::default()
                .with_index(i)
                .with_records(Some(batch.clone()))
        })
        .collect();
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench")))
        .with_partition_data(partitions);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![topic]);
    let version = 9;
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(&mut buf, ApiKey::Produce.request_header_version(version))
        .expect("header");
    req.encode(&mut buf, version).expect("body");
    buf.freeze()
}

fn decode(c: &mut Criterion) {
    let frame = produce_frame();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode_produce_16x16KiB", |b| {
        b.iter(|| decode_request(black_box(frame.clone())).expect("decodes"))
    });
    g.finish();
}

fn fetch_assembly(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("segment");
    let mut f = std::fs::File::create(&path).expect("file");
    let chunk = vec![0u8; 1 << 20];
    std::io::Write::write_all(&mut f, &chunk).expect("write");
    let file: Arc<dyn FsFile> = RealFs.open(&path, Open::Existing).expect("open");
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Elements(PARTITIONS as u64));
    g.bench_function("fetch_v12_16_partitions", |b| {
        b.iter(|| {
            let partitions = (0..PARTITIONS)
                .map(|i| FetchPartitionReply {
                    index: i,
                    error_code: 0,
                    high_watermark: 1_000_000,
                    last_stable_offset: 1_000_000,
                    log_start_offset: 0,
                    aborted: None,
                    records: Some(FileSlice {
                        file: file.clone(),
                        position: (i as u64) * 65_536,
                        len: 65_536,
                        next_offset: 0,
                    }),
                })
                .collect();
            let reply = FetchReply {
                error_code: 0,
                session_id: 0,
                throttle_time_ms: 0,
                topics: vec![FetchTopicReply {
                    name: "bench".into(),
                    id: uuid::Uuid::nil(),
                    partitions,
                }],
            };
            encode_fetch(12, 7, black_box(reply))
        })
    });
    g.finish();
}

criterion_group!(benches, decode, fetch_assembly);
criterion_main!(benches);
