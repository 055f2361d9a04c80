//! Regression tests, one per bug the foundation review found on the request
//! paths, each named after its bug. Most run a real broker in-process on the
//! fault-injecting filesystem model (`sluice::log::sim`), so a test can make a
//! write panic, a file vanish, or a machine crash.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::*;
use sluice::config::Config;
use sluice::log::batch::{self, BatchHeader};
use sluice::log::fs::{Fs, Open};
use sluice::log::records::{build_raw_batch, build_test_batch, encode_records, KeyValue};
use sluice::log::sim::{Crash, Fault, Op, SimFs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOC: sluice::alloc::LazyLargeAlloc = sluice::alloc::LazyLargeAlloc;

const DATA: &str = "/data";
const INVALID_RECORD: i16 = 87;
const CORRUPT_MESSAGE: i16 = 2;
const KAFKA_STORAGE_ERROR: i16 = 56;

fn config() -> Config {
    let mut c = Config::for_test(PathBuf::from(DATA));
    c.group_initial_rebalance_delay_ms = 0;
    c
}

async fn produce_code(c: &mut Client, topic: &str, partition: i32, batch: Vec<u8>) -> (i16, i64) {
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req(topic, partition, batch, -1),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Offsets and values of every record of `topic`/0 from `from`, via Fetch.
async fn fetch_offsets(c: &mut Client, topic: &str, from: i64) -> (i16, Vec<i64>) {
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch_req(topic, uuid::Uuid::nil(), from, 0, 1 << 20),
        )
        .await;
    let p = &r.responses[0].partitions[0];
    let mut offsets = Vec::new();
    if let Some(recs) = &p.records {
        let mut at = 0;
        while at < recs.len() {
            let h = BatchHeader::parse(&recs[at..]).unwrap();
            offsets.extend(h.base_offset..=h.last_offset());
            at += h.total_bytes();
        }
    }
    (p.error_code, offsets)
}

#[tokio::test]
async fn regression_batches_claiming_more_offsets_than_they_hold_are_refused() {
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    assert_eq!(create_topic(&mut c, "t", &[]).await.topics[0].error_code, 0);
    // Valid CRC, one record, last offset delta i32::MAX: a few of these used to
    // overflow the segment's 32-bit relative offsets, panic the append task, be
    // acknowledged with error 0, and panic every restart.
    let mut claiming = build_test_batch(1, &[b"x"]);
    claiming[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
    batch::set_crc(&mut claiming);
    for _ in 0..4 {
        assert_eq!(
            produce_code(&mut c, "t", 0, claiming.clone()).await,
            (INVALID_RECORD, -1)
        );
    }
    // Two batches for one partition in one request: Kafka takes exactly one.
    let mut two = build_test_batch(1, &[b"a"]);
    two.extend(build_test_batch(1, &[b"b"]));
    assert_eq!(produce_code(&mut c, "t", 0, two).await.0, INVALID_RECORD);
    // A machine crash now, then a restart: the broker starts, nothing was stored.
    drop(c);
    let broker = b.broker.clone();
    b.abandon().await.unwrap();
    drop(broker);
    let fs = fs.crash(Crash::DropUnsynced);
    let b = TestBroker::start_on(config(), Arc::new(fs)).await;
    let mut c = b.client().await;
    assert_eq!(
        produce_code(&mut c, "t", 0, build_test_batch(1, &[b"ok"])).await,
        (0, 0)
    );
    b.stop().await;
}

/// Builds a batch of `count` records holding `records` (already encoded), with
/// the codec bits `attributes`.
fn raw(attributes: i16, count: i32, records: &[u8]) -> Vec<u8> {
    build_raw_batch(1000, attributes, count, records)
}

fn encoded(values: &[&[u8]]) -> Vec<u8> {
    let kvs: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(*v))).collect();
    encode_records(&kvs)
}

#[tokio::test]
async fn regression_records_inside_batches_are_validated() {
    let mut cfg = config();
    cfg.decompressed_batch_bytes_max = 64 * 1024;
    let b = TestBroker::start_on(cfg, Arc::new(SimFs::new())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "v", &[]).await;
    let three = encoded(&[b"a", b"b", b"c"]);
    let mut shuffled = encoded(&[b"a", b"b"]);
    // The second record's offset delta (after its length, attributes and a
    // one-byte timestamp delta) becomes 2.
    let second = 1 + usize::from(shuffled[0] >> 1);
    shuffled[second + 3] = 2 << 1;
    let mut trailing = three.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    let mut bad_crc = raw(0, 3, &three);
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xff;
    let gzip_garbage = raw(1, 3, b"\x1f\x8b\x08\x00 this is not deflate data");
    let bomb = {
        let zeros = vec![0u8; 1 << 20];
        let huge = encoded(&[&zeros]);
        raw(4, 1, &zstd::encode_all(&huge[..], 3).unwrap())
    };
    let cases: Vec<(&str, Vec<u8>, i16)> = vec![
        ("count says 4, 3 records", raw(0, 4, &three), INVALID_RECORD),
        ("count says 2, 3 records", raw(0, 2, &three), INVALID_RECORD),
        ("offset deltas 0, 2", raw(0, 2, &shuffled), INVALID_RECORD),
        ("codec 6", raw(6, 3, &three), INVALID_RECORD),
        ("gzip that does not inflate", gzip_garbage, INVALID_RECORD),
        (
            "bytes after the last record",
            raw(0, 3, &trailing),
            INVALID_RECORD,
        ),
        ("inflates past the limit", bomb, INVALID_RECORD),
        ("bad crc", bad_crc, CORRUPT_MESSAGE),
    ];
    for (what, batch, code) in cases {
        assert_eq!(
            produce_code(&mut c, "v", 0, batch).await,
            (code, -1),
            "{what}"
        );
    }
    // Nothing was appended: the first good batch gets offset 0, and a fetch
    // returns exactly it.
    assert_eq!(
        produce_code(&mut c, "v", 0, raw(0, 3, &three)).await,
        (0, 0)
    );
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&three).unwrap();
        e.finish().unwrap()
    };
    assert_eq!(produce_code(&mut c, "v", 0, raw(1, 3, &gz)).await, (0, 3));
    assert_eq!(fetch_offsets(&mut c, "v", 0).await, (0, (0..6).collect()));
    b.stop().await;
}

#[tokio::test]
async fn regression_trickling_clients_are_closed_at_the_request_deadline() {
    let mut cfg = config();
    cfg.request_read_timeout_ms = 500;
    let b = TestBroker::start_on(cfg, Arc::new(SimFs::new())).await;
    let mut c = b.client().await;
    // A 1,000-byte request, one byte every 50 ms: 50 s to send it whole. Each
    // byte used to restart the idle timer, so it held its slot for ever.
    c.stream.write_all(&1000i32.to_be_bytes()).await.unwrap();
    let mut closed = false;
    for _ in 0..200 {
        if c.stream.write_all(&[0]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(50), c.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the connection outlived 200 trickled bytes");
    // Between requests the idle timeout (10 minutes) still applies: a quiet
    // connection stays open and answers.
    let mut quiet = b.client().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _: MetadataResponse = quiet
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    b.stop().await;
}

#[tokio::test]
async fn regression_one_address_cannot_take_every_connection() {
    let mut cfg = config();
    cfg.connections_max_per_ip = 3;
    let b = TestBroker::start_on(cfg, Arc::new(SimFs::new())).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = b.client().await;
        let _: MetadataResponse = metadata_all(&mut c).await;
        held.push(c);
    }
    let mut fourth = b.client().await;
    assert!(
        fourth.closed().await,
        "a fourth connection from one address was kept"
    );
    held.pop();
    // The freed slot is released when the broker sees the close.
    let mut answered = false;
    for _ in 0..100 {
        let mut c = b.client().await;
        let id = c
            .send(ApiKey::Metadata, 12, &MetadataRequest::default())
            .await;
        if let Some(mut frame) = c.recv_frame().await {
            let h = ResponseHeader::decode(&mut frame, 1).unwrap();
            assert_eq!(h.correlation_id, id);
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "the freed slot was never reused");
    b.stop().await;
}

use kafka_protocol::protocol::Decodable;

/// Writes `batches` one-record batches straight into partition 0's active
/// segment of topic `t` in `dir` (real files), as a crashed broker would leave them.
fn grow_active_segment(dir: &Path, batches: i64) {
    let seg = dir.join("t/0/00000000000000000000.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    let mut buf = Vec::new();
    for i in 0..batches {
        let mut b = build_test_batch(i, &[&[7u8; 64]]);
        batch::assign(&mut b, i, 0);
        buf.extend_from_slice(&b);
        if buf.len() > 1 << 20 {
            f.write_all(&buf).unwrap();
            buf.clear();
        }
    }
    f.write_all(&buf).unwrap();
    f.sync_all().unwrap();
    for ext in ["index", "timeindex"] {
        let _ = std::fs::remove_file(dir.join(format!("t/0/00000000000000000000.{ext}")));
    }
    let _ = std::fs::remove_file(dir.join(".clean-shutdown"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn regression_listener_binds_only_after_the_data_dir_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = TestBroker::start(dir.path()).await;
        let mut c = b.client().await;
        create_topic(&mut c, "t", &[]).await;
        b.stop().await;
    }
    // An unclean shutdown with a large active segment: recovery reads and checks
    // every batch before the broker may accept anyone.
    grow_active_segment(dir.path(), 300_000);
    let port = free_port();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut refused = 0u32;
    let connected = loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the broker exited: {status}");
        }
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) => {
                refused += 1;
                assert!(refused < 12_000, "the broker never listened");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // The log line is written (stderr is a plain file) before bind() is called.
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("data dir loaded"),
        "a connection was accepted before the data directory was loaded \
         ({refused} refused before it); log so far:\n{text}"
    );
    drop(connected);
    let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let (_, offsets) = fetch_offsets(&mut c, "t", 299_990).await;
    assert_eq!(offsets, (299_990..300_000).collect::<Vec<_>>());
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(text.matches("sluice is ready").count(), 1, "{text}");
}

/// Runs the broker binary with the open-files limit set to `soft`/`hard`.
fn spawn_limited(
    dir: &Path,
    port: u16,
    soft: u64,
    hard: u64,
    log: std::fs::File,
) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

async fn connect_retrying(port: u16) -> Client {
    for _ in 0..2000 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            drop(s);
            return Client::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the broker never listened");
}

#[tokio::test]
async fn regression_too_many_open_files_is_logged_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_path = dir.path().join("stderr.log");
    let mut child = spawn_limited(
        &dir.path().join("data"),
        port,
        128,
        256,
        std::fs::File::create(&log_path).unwrap(),
    );
    let mut c = connect_retrying(port).await;
    // The soft limit was raised to the hard one, and said so.
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("open_files_limit=256"), "{text}");
    // 200 partitions need 600 files: past the limit.
    let r = create_topic_n(&mut c, "big", 200, &[]).await;
    let t = &r.topics[0];
    assert_eq!(t.error_code, KAFKA_STORAGE_ERROR);
    let msg = t
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(msg.contains("too many open files"), "{msg}");
    // The half-made topic released its files and left nothing behind.
    assert_eq!(
        create_topic_n(&mut c, "small", 2, &[]).await.topics[0].error_code,
        0
    );
    let m: MetadataResponse = metadata_all(&mut c).await;
    let names: Vec<String> = m
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(names, vec!["small".to_string()]);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("too many open files"), "no log line: {text}");
}

#[tokio::test]
async fn regression_a_failed_append_task_is_a_storage_error_not_a_success() {
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic_n(&mut c, "t", 2, &[]).await;
    // The write panics inside the blocking append task.
    fs.inject(rule(Op::Write, "/data/t/0/", 0, 1, Fault::Panic));
    assert_eq!(
        produce_code(&mut c, "t", 0, build_test_batch(1, &[b"x"])).await,
        (KAFKA_STORAGE_ERROR, -1)
    );
    // The partition whose lock the panic held is offline until restart; the
    // others are served.
    assert_eq!(
        produce_code(&mut c, "t", 0, build_test_batch(1, &[b"y"]))
            .await
            .0,
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(
        produce_code(&mut c, "t", 1, build_test_batch(1, &[b"z"])).await,
        (0, 0)
    );
    let m: MetadataResponse = metadata_all(&mut c).await;
    let p0 = &m.topics[0].partitions[0];
    assert_eq!(
        (p0.error_code, p0.leader_id.0),
        (5, -1),
        "LEADER_NOT_AVAILABLE, no leader"
    );
    // The shutdown cannot close the offline partition cleanly, and says so.
    assert!(b.stop_result().await.is_err());
}

fn list_offsets_req(topic: &str, partitions: i32, ts: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(ts)
                    })
                    .collect(),
            )])
}

#[tokio::test]
async fn regression_list_offsets_answers_every_partition_when_its_task_fails() {
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic_n(&mut c, "lo", 3, &[]).await;
    for p in 0..3 {
        assert_eq!(
            produce_code(&mut c, "lo", p, build_test_batch(1000, &[b"x"]))
                .await
                .0,
            0
        );
    }
    fs.inject(rule(Op::Read, "/data/lo/1/", 0, 1, Fault::Panic));
    let r: ListOffsetsResponse = c
        .call(ApiKey::ListOffsets, 8, &list_offsets_req("lo", 3, 500))
        .await;
    let got: Vec<(i32, i16)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code))
        .collect();
    assert_eq!(
        got,
        vec![(0, 56), (1, 56), (2, 56)],
        "every partition is answered"
    );
    // The partition whose lock the panic held cannot be closed cleanly.
    assert!(b.stop_result().await.is_err());
}

#[tokio::test]
async fn regression_a_corrupt_sealed_segment_takes_only_its_partition_offline() {
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic_n(&mut c, "t", 2, &[("segment.bytes", "1024")]).await;
    for i in 0..20 {
        for p in 0..2 {
            produce_code(&mut c, "t", p, build_test_batch(i, &[&[1u8; 100]])).await;
        }
    }
    b.stop().await;
    // Damage the base offset (outside the CRC) of the second batch of partition
    // 0's first, sealed segment, and drop its indexes so start-up rescans it.
    let seg = Path::new("/data/t/0/00000000000000000000.log");
    let f = fs.open(seg, Open::Existing).unwrap();
    let mut h = [0u8; 61];
    f.read_exact_at(&mut h, 0).unwrap();
    let second = BatchHeader::parse(&h).unwrap().total_bytes() as u64;
    f.write_all_vectored_at(&mut [std::io::IoSlice::new(&0i64.to_be_bytes())], second)
        .unwrap();
    for ext in ["index", "timeindex"] {
        fs.remove_file(&seg.with_extension(ext)).unwrap();
    }
    // The broker starts; partition 0 answers KAFKA_STORAGE_ERROR, partition 1 works.
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    assert_eq!(
        produce_code(&mut c, "t", 0, build_test_batch(1, &[b"x"]))
            .await
            .0,
        56
    );
    assert_eq!(fetch_offsets(&mut c, "t", 0).await.0, 56);
    let r: ListOffsetsResponse = c
        .call(ApiKey::ListOffsets, 8, &list_offsets_req("t", 2, -1))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 56);
    assert_eq!(r.topics[0].partitions[1].error_code, 0);
    assert_eq!(
        produce_code(&mut c, "t", 1, build_test_batch(1, &[b"x"])).await,
        (0, 20)
    );
    let m: MetadataResponse = metadata_all(&mut c).await;
    let p0 = &m.topics[0].partitions[0];
    assert_eq!((p0.error_code, p0.leader_id.0), (5, -1));
    assert_eq!(p0.offline_replicas.len(), 1);
    assert_eq!(m.topics[0].partitions[1].error_code, 0);
    b.stop().await;
}

fn offset_delete(group: &str, topic: &str) -> OffsetDeleteRequest {
    OffsetDeleteRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])])
}

async fn commit_code(c: &mut Client, offset: i64) -> i16 {
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &commit("g", "t", &[(0, offset)]))
        .await;
    r.topics[0].partitions[0].error_code
}

#[tokio::test]
async fn regression_committed_offsets_change_only_once_durable() {
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "t", &[]).await;
    assert_eq!(commit_code(&mut c, 5).await, 0);
    assert_eq!(fetch(&mut c, "g", "t").await, vec![(0, 5)]);
    // The group log write fails: the commit is refused and never visible.
    fs.inject(rule(Op::Write, "__consumer_offsets", 0, 1, Fault::Eio));
    assert_eq!(commit_code(&mut c, 9).await, 16, "NOT_COORDINATOR: retry");
    assert_eq!(fetch(&mut c, "g", "t").await, vec![(0, 5)]);
    assert_eq!(commit_code(&mut c, 10).await, 0);
    assert_eq!(fetch(&mut c, "g", "t").await, vec![(0, 10)]);
    // A failed OffsetDelete deletes nothing.
    fs.inject(rule(Op::Write, "__consumer_offsets", 0, 1, Fault::NoSpace));
    let r: OffsetDeleteResponse = c
        .call(ApiKey::OffsetDelete, 0, &offset_delete("g", "t"))
        .await;
    assert_ne!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(fetch(&mut c, "g", "t").await, vec![(0, 10)]);
    // After a crash the broker holds exactly what it acknowledged.
    let broker = b.broker.clone();
    drop(c);
    b.abandon().await.unwrap();
    drop(broker);
    let b = TestBroker::start_on(config(), Arc::new(fs.crash(Crash::DropUnsynced))).await;
    let mut c = b.client().await;
    assert_eq!(fetch(&mut c, "g", "t").await, vec![(0, 10)]);
    b.stop().await;
}

#[tokio::test]
async fn regression_offset_expiry_that_cannot_be_written_expires_nothing() {
    let fs = SimFs::new();
    let mut cfg = config();
    cfg.offsets_retention_minutes = 0;
    cfg.offsets_retention_check_interval_ms = 50;
    let b = TestBroker::start_on(cfg, Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "t", &[]).await;
    // Every group-log write after the commit's fails.
    fs.inject(rule(
        Op::Write,
        "__consumer_offsets",
        1,
        u64::MAX,
        Fault::Eio,
    ));
    assert_eq!(commit_code(&mut c, 7).await, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fetch(&mut c, "g", "t").await,
        vec![(0, 7)],
        "expired without a durable tombstone"
    );
    fs.clear_faults();
    let mut gone = false;
    for _ in 0..200 {
        if fetch(&mut c, "g", "t").await.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the offset never expired once writes worked again");
    b.stop().await;
}

#[tokio::test]
async fn regression_a_vanished_file_is_a_storage_error_not_a_deleted_topic() {
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "t", &[]).await;
    fs.inject(rule(Op::Write, "/data/t/0/", 0, 1, Fault::NotFound));
    assert_eq!(
        produce_code(&mut c, "t", 0, build_test_batch(1, &[b"x"])).await,
        (KAFKA_STORAGE_ERROR, -1),
        "ENOENT from the disk is not UNKNOWN_TOPIC_OR_PARTITION"
    );
    // The write was cut off cleanly: the partition keeps working.
    assert_eq!(
        produce_code(&mut c, "t", 0, build_test_batch(1, &[b"y"])).await,
        (0, 0)
    );
    b.stop().await;
}

#[tokio::test]
async fn regression_compaction_keeps_what_a_failed_change_left_in_place() {
    let fs = SimFs::new();
    let mut cfg = config();
    // Compact the group log after nearly every write.
    cfg.group_log_compact_bytes = 1;
    let b = TestBroker::start_on(cfg.clone(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic_n(&mut c, "t", 2, &[]).await;
    for (p, o) in [(0, 5), (1, 6), (1, 7)] {
        let r: OffsetCommitResponse = c
            .call(ApiKey::OffsetCommit, 8, &commit("g", "t", &[(p, o)]))
            .await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    // A deletion whose write fails leaves the offset in place; compactions
    // racing with it must keep it on disk too.
    // (Compactions write too: the fault holds until the deletion has failed.)
    fs.inject(rule(
        Op::Write,
        "__consumer_offsets",
        0,
        u64::MAX,
        Fault::Eio,
    ));
    let r: OffsetDeleteResponse = c
        .call(ApiKey::OffsetDelete, 0, &offset_delete("g", "t"))
        .await;
    assert_ne!(r.topics[0].partitions[0].error_code, 0);
    fs.clear_faults();
    for o in 8..12 {
        let r: OffsetCommitResponse = c
            .call(ApiKey::OffsetCommit, 8, &commit("g", "t", &[(1, o)]))
            .await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    let mut want = fetch(&mut c, "g", "t").await;
    want.sort();
    assert_eq!(want, vec![(0, 5), (1, 11)]);
    drop(c);
    let keep = b.broker.clone();
    b.abandon().await.unwrap();
    drop(keep);
    let b = TestBroker::start_on(cfg, Arc::new(fs.crash(Crash::DropUnsynced))).await;
    let mut c = b.client().await;
    let mut got = fetch(&mut c, "g", "t").await;
    got.sort();
    assert_eq!(got, want, "memory and disk agree after compactions");
    b.stop().await;
}

/// Idempotent producer state used to be rebuilt from the active segment only,
/// and only after an unclean stop: after a clean restart, a producer retrying a
/// batch whose acknowledgement it lost had it written twice. Snapshots (at every
/// roll and at a clean close) plus the batches after them now survive restarts.
#[tokio::test]
async fn regression_a_retried_batch_after_a_clean_restart_is_not_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.data_dir = dir.path().to_path_buf();
    let b = TestBroker::start_with(cfg.clone()).await;
    let mut c = b.client().await;
    create_topic(&mut c, "idem", &[]).await;
    let r: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let batch = |seq: i32| {
        let mut b = build_test_batch(1, &[b"v".as_slice()]);
        batch::set_producer(&mut b, pid, epoch, seq);
        b
    };
    for seq in 0..3 {
        assert_eq!(
            produce_code(&mut c, "idem", 0, batch(seq)).await,
            (0, i64::from(seq))
        );
    }
    b.stop().await;
    let b = TestBroker::start_with(cfg).await;
    let mut c = b.client().await;
    // The retry is answered with the original offset and appends nothing.
    assert_eq!(produce_code(&mut c, "idem", 0, batch(2)).await, (0, 2));
    assert_eq!(produce_code(&mut c, "idem", 0, batch(3)).await, (0, 3));
    assert_eq!(fetch_offsets(&mut c, "idem", 0).await.1, vec![0, 1, 2, 3]);
    b.stop().await;
}
