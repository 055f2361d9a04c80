//! Crash test: producers with acks=all against a broker subprocess that is killed
//! with SIGKILL again and again. After every restart each acknowledged record must
//! be present at the offset it was acknowledged with, with its value.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::Client;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use sluice::log::records::build_test_batch;

const ROUNDS: usize = 5;
const PRODUCERS: usize = 4;

/// The broker process; killed with SIGKILL when dropped, so a failing test leaves nothing behind.
struct Broker(Child);

impl Broker {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(dir: &std::path::Path, port: u16) -> Broker {
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    Broker(child)
}

async fn connect(addr: SocketAddr) -> Client {
    for _ in 0..300 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            drop(s);
            return Client::connect(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("broker did not come up");
}

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("crash"))
}

/// Produces until the connection breaks; records `(offset, value)` of every ack.
async fn producer(
    addr: SocketAddr,
    id: usize,
    round: usize,
    acked: Arc<Mutex<BTreeMap<i64, Vec<u8>>>>,
) {
    let mut c = Client::connect(addr).await;
    for n in 0.. {
        let value = format!("r{round}-p{id}-n{n}").into_bytes();
        let pd = PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(Bytes::from(build_test_batch(n, &[&value]))));
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![pd])]);
        let frame = Client::frame(ApiKey::Produce, 9, n as i32, &req);
        if c.send_raw(&frame).await.is_err() {
            return;
        }
        let Some(mut frame) = c.recv_frame().await else {
            return;
        };
        let _ =
            ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(9)).unwrap();
        let r = ProduceResponse::decode(&mut frame, 9).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        acked.lock().unwrap().insert(p.base_offset, value);
    }
}

use kafka_protocol::protocol::Decodable;

/// Reads the whole partition: offset -> value.
async fn read_all(c: &mut Client) -> BTreeMap<i64, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let fp = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20);
        let req = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![fp])]);
        let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let mut records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            assert_eq!(offset, p.high_watermark);
            return out;
        }
        for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
            for rec in set.records {
                out.insert(rec.offset, rec.value.unwrap().to_vec());
                offset = rec.offset + 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..ROUNDS {
        let mut child = start(dir.path(), port);
        let mut c = connect(addr).await;
        // Metadata auto-creates the topic on the first round.
        let md = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
        ]));
        let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &md).await;
        // Everything acknowledged in earlier lives is still there, unchanged.
        let stored = read_all(&mut c).await;
        for (offset, value) in acked.lock().unwrap().iter() {
            assert_eq!(
                stored.get(offset),
                Some(value),
                "round {round}: acknowledged offset {offset} lost"
            );
        }
        let tasks: Vec<_> = (0..PRODUCERS)
            .map(|id| tokio::spawn(producer(addr, id, round, acked.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + 100 * round as u64)).await;
        child.kill();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let mut child = start(dir.path(), port);
    let mut c = connect(addr).await;
    let stored = read_all(&mut c).await;
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "too few acknowledgements ({}) to mean anything",
        acked.len()
    );
    for (offset, value) in acked.iter() {
        assert_eq!(
            stored.get(offset),
            Some(value),
            "acknowledged offset {offset} lost"
        );
    }
    child.kill();
}
