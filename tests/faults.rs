//! Fault injection on the filesystem model (`sluice::log::sim`).
//!
//! `random_faults_never_lose_acknowledged_data` drives the storage layer with
//! random appends (acks=all through group commit, and acks=1), rolls, retention
//! and faults (failed, short and ENOSPC writes, failed fsyncs, failed file
//! creation, directory syncs and truncations), then simulates machine crashes
//! and reopens. After every crash, each batch acknowledged as durable is there,
//! byte for byte, at its offset, and every stored batch is whole.
//! `SLUICE_FAULT_CASES` sets the number of cases (CI: 1500); the long run in
//! docs/testing.md uses 100,000.
//!
//! `fault_matrix` goes through the wire instead: one row per fault and
//! operation, with the error code the client gets and what survives a crash.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use kafka_protocol::messages::*;
use sluice::config::Config;
use sluice::log::batch::{self, BatchHeader};
use sluice::log::records::{self, build_test_batch};
use sluice::log::sim::{Crash, Fault, Op, Rule, SimFs};
use sluice::log::LogConfig;
use sluice::storage::{Partition, PartitionError, Storage};

#[global_allocator]
static ALLOC: sluice::alloc::LazyLargeAlloc = sluice::alloc::LazyLargeAlloc;

/// A small deterministic generator (xorshift64*), so a failing case replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const PARTITIONS: usize = 3;

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_ms: -1,
        retention_ms: -1,
        retention_bytes: 6000,
        max_message_bytes: 1 << 20,
        index_interval_bytes: 256,
        index_bytes_max: 240,
        ..LogConfig::default()
    }
}

fn storage_config() -> Config {
    let mut c = Config::for_test(PathBuf::from("/d"));
    // The periodic flush is part of the model too: it may hit injected faults.
    c.flush_interval_ms = 5;
    c.sync_parallelism = 2;
    c.syncfs_partitions_min = 3;
    c
}

fn partition_dir(p: usize) -> PathBuf {
    PathBuf::from(format!("/d/t/{p}"))
}

/// Opens the storage and its partitions on `fs` as a restarted broker would.
fn open(fs: &SimFs, recover: bool) -> (Arc<Storage>, Vec<Arc<Partition>>) {
    let storage = Storage::start(&storage_config(), Arc::new(fs.clone()));
    let parts = (0..PARTITIONS)
        .map(|p| {
            storage
                .open_partition(&partition_dir(p), p as i32, log_config(), recover, 0)
                .expect("the model filesystem opens")
        })
        .collect();
    (storage, parts)
}

/// What was acknowledged as durable: per partition, `(base offset, batch bytes)`.
type Acked = Vec<Vec<(i64, Vec<u8>)>>;

/// The length a batch at the start of `b` claims, capped to `b` (a damaged
/// length then fails validation instead of panicking the test).
fn stored_len(b: &[u8]) -> usize {
    BatchHeader::parse(b)
        .ok()
        .and_then(|h| h.check_length().ok())
        .unwrap_or(b.len())
        .min(b.len())
}

/// Checks a reopened log against what was acknowledged.
fn check(case: u64, p: &Partition, acked: &[(i64, Vec<u8>)], trace: &[String]) {
    let fail = |why: String| -> ! {
        panic!(
            "case {case}: partition {}: {why}\nops:\n{}",
            p.index,
            trace.join("\n")
        )
    };
    if p.is_offline() {
        fail("offline after a restart".into());
    }
    let (start, end) = (p.log_start_offset(), p.high_watermark());
    if let Some((base, b)) = acked.last() {
        let last = BatchHeader::parse(b).unwrap().last_offset_delta;
        if end < base + i64::from(last) + 1 {
            fail(format!("log end {end} is below acknowledged offset {base}"));
        }
    }
    // Every stored batch is whole, and offsets are contiguous.
    let mut next = start;
    while next < end {
        let slice = match p.read_blocking(next, 4096) {
            Ok(Some(s)) => s,
            other => fail(format!("read at {next} of [{start}, {end}): {other:?}")),
        };
        let bytes = slice.read_to_vec().unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let h = match batch::validate(&bytes[at..at + stored_len(&bytes[at..])]) {
                Ok(h) => h,
                Err(e) => fail(format!("a damaged batch is visible at {next}: {e}")),
            };
            if h.base_offset != next {
                fail(format!(
                    "batch at {} where {next} was expected",
                    h.base_offset
                ));
            }
            next = h.next_offset();
            at += h.total_bytes();
        }
    }
    // Every acknowledged batch still stored is there, byte for byte.
    for (base, b) in acked.iter().filter(|(base, _)| *base >= start) {
        let slice = p
            .read_blocking(*base, 1)
            .unwrap_or_else(|e| fail(format!("read at acknowledged {base}: {e}")))
            .unwrap_or_else(|| fail(format!("acknowledged batch {base} is gone")));
        let stored = slice.read_to_vec().unwrap();
        let h = BatchHeader::parse(&stored).unwrap();
        let n = h.total_bytes();
        if h.base_offset != *base
            || stored[batch::ASSIGNED_PREFIX_BYTES..n] != b[batch::ASSIGNED_PREFIX_BYTES..]
        {
            fail(format!("acknowledged batch {base} differs"));
        }
    }
}

fn random_fault(rng: &mut Rng) -> Rule {
    let (op, fault) = match rng.below(9) {
        0 => (Op::Write, Fault::Eio),
        1 => (Op::Write, Fault::Short),
        2 => (Op::Write, Fault::NoSpace),
        3 => (Op::Sync, Fault::Eio),
        4 => (Op::SetLen, Fault::Eio),
        5 => (Op::Open, Fault::TooManyFiles),
        6 => (Op::SyncDir, Fault::Eio),
        7 => (Op::Read, Fault::Eio),
        _ => (Op::Remove, Fault::Eio),
    };
    let path = match rng.below(4) {
        0 => String::new(),
        p => format!("/d/t/{}/", p - 1),
    };
    Rule {
        op,
        path,
        skip: rng.below(4),
        times: 1 + rng.below(2),
        fault,
    }
}

async fn run_case(case: u64, ops: usize) {
    let mut rng = Rng(case.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut fs = SimFs::new();
    let mut acked: Acked = vec![Vec::new(); PARTITIONS];
    let mut trace = Vec::new();
    let (mut storage, mut parts) = open(&fs, false);
    let mut value = 0u64;
    for _ in 0..ops {
        match rng.below(100) {
            // Appends; acks=all waits for the group commit of several at once.
            0..=54 => {
                let n = 1 + rng.below(3) as usize;
                let mut written = Vec::new();
                for _ in 0..n {
                    let p = rng.below(PARTITIONS as u64) as usize;
                    value += 1;
                    let body = vec![(value % 251) as u8; 1 + rng.below(300) as usize];
                    let b = build_test_batch(value as i64, &[&body]);
                    let part = parts[p].clone();
                    let bytes = b.clone();
                    let r = tokio::task::spawn_blocking(move || part.append_blocking(&bytes))
                        .await
                        .unwrap_or(Err(PartitionError::Offline));
                    trace.push(format!(
                        "append p{p} {} bytes -> {:?}",
                        b.len(),
                        r.as_ref().map(|i| i.base_offset)
                    ));
                    if let Ok(info) = r {
                        written.push((p, info.base_offset, info.last_offset + 1, b));
                    }
                }
                if rng.chance(70) {
                    let targets = written
                        .iter()
                        .map(|(p, _, end, _)| (parts[*p].clone(), *end))
                        .collect();
                    // Data fsynced before the directory went offline may still be
                    // acknowledged; the crash checks hold either way.
                    let r = storage.wait_durable(targets).await;
                    trace.push(format!("acks=all wait -> {}", r.is_ok()));
                    if r.is_ok() {
                        for (p, base, _, b) in written {
                            acked[p].push((base, b));
                        }
                    }
                }
            }
            55..=62 => {
                let p = rng.below(PARTITIONS as u64) as usize;
                let part = parts[p].clone();
                let r = tokio::task::spawn_blocking(move || part.roll_blocking()).await;
                trace.push(format!("roll p{p} -> {:?}", r.map(|r| r.is_ok())));
            }
            63..=67 => {
                let p = rng.below(PARTITIONS as u64) as usize;
                let part = parts[p].clone();
                let r = tokio::task::spawn_blocking(move || part.apply_retention_blocking(0)).await;
                trace.push(format!("retention p{p} -> {:?}", r.map(|r| r.ok())));
            }
            68..=82 => {
                let rule = random_fault(&mut rng);
                trace.push(format!("inject {rule:?}"));
                fs.inject(rule);
            }
            83..=87 => {
                let cap = fs.used_bytes() + rng.below(600);
                trace.push(format!("disk full at {cap} bytes"));
                fs.set_capacity(Some(cap));
            }
            88..=91 => {
                trace.push("space returns".into());
                fs.set_capacity(None);
            }
            // A machine crash, then a restart that recovers and is checked.
            _ => {
                let mode = if rng.chance(50) {
                    Crash::DropUnsynced
                } else {
                    Crash::TornAppends { seed: rng.next() }
                };
                trace.push(format!("crash {mode:?}"));
                drop(parts);
                drop(storage);
                fs = fs.crash(mode);
                // The operator frees space before restarting (a broker cannot
                // preallocate its indexes on a full disk).
                fs.set_capacity(None);
                (storage, parts) = open(&fs, true);
                for (p, part) in parts.iter().enumerate() {
                    let part = part.clone();
                    let acked_p = acked[p].clone();
                    let t = trace.clone();
                    tokio::task::spawn_blocking(move || check(case, &part, &acked_p, &t))
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                }
            }
        }
    }
    // A final crash and check.
    drop(parts);
    drop(storage);
    fs = fs.crash(Crash::DropUnsynced);
    fs.set_capacity(None);
    let (_storage, parts) = open(&fs, true);
    for (p, part) in parts.iter().enumerate() {
        let part = part.clone();
        let acked_p = acked[p].clone();
        let t = trace.clone();
        tokio::task::spawn_blocking(move || check(case, &part, &acked_p, &t))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_never_lose_acknowledged_data() {
    let cases: u64 = std::env::var("SLUICE_FAULT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let first: u64 = std::env::var("SLUICE_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for case in first..first + cases {
        run_case(case, 60).await;
    }
    eprintln!(
        "fault cases run: {cases} (seeds {first}..{})",
        first + cases
    );
}

// ---------------------------------------------------------------------------
// The fault matrix, through the wire.

const STORAGE: i16 = 56;

fn config() -> Config {
    let mut c = Config::for_test(PathBuf::from("/data"));
    c.group_initial_rebalance_delay_ms = 0;
    c
}

async fn produce_code(c: &mut Client, topic: &str, acks: i16, value: &[u8]) -> (i16, i64) {
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req(topic, 0, build_test_batch(1, &[value]), acks),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Values of every record of `topic`/0, read back with Fetch (one segment per
/// fetch, so it fetches until the high watermark).
async fn values(c: &mut Client, topic: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let r: FetchResponse = c
            .call(
                ApiKey::Fetch,
                12,
                &fetch_req(topic, uuid::Uuid::nil(), next, 0, 1 << 20),
            )
            .await;
        let p = &r.responses[0].partitions[0];
        let recs = p.records.clone().unwrap_or_default();
        let mut at = 0;
        while at < recs.len() {
            let h = BatchHeader::parse(&recs[at..]).unwrap();
            let b = &recs[at..at + h.total_bytes()];
            for (_, v) in records::uncompressed(b).unwrap() {
                out.push(v.unwrap_or_default().to_vec());
            }
            next = h.next_offset();
            at += h.total_bytes();
        }
        if recs.is_empty() || next >= p.high_watermark {
            return out;
        }
    }
}

/// Crashes the broker's machine and starts a new broker on what survived.
async fn crash_and_restart(b: TestBroker, fs: &SimFs) -> (TestBroker, SimFs) {
    let keep = b.broker.clone();
    let _ = b.abandon().await;
    drop(keep);
    let fs = fs.crash(Crash::DropUnsynced);
    (
        TestBroker::start_on(config(), Arc::new(fs.clone())).await,
        fs,
    )
}

/// One row: a fault armed before an operation, the code the client gets, and
/// whether the broker keeps serving.
struct Row {
    fault: Rule,
    /// The code the faulted produce (acks=all) gets.
    code: i16,
    /// Whether the data directory stays online (else the broker stops).
    online: bool,
}

#[tokio::test]
async fn fault_matrix_produce() {
    let rows = [
        // A failed write is cut off: refused, nothing stored, the partition serves on.
        Row {
            fault: rule(Op::Write, "/data/t/", 0, 1, Fault::Eio),
            code: STORAGE,
            online: true,
        },
        // A short write is continued: the produce succeeds.
        Row {
            fault: rule(Op::Write, "/data/t/", 0, 1, Fault::Short),
            code: 0,
            online: true,
        },
        // A full disk: refused; it works again once space returns.
        Row {
            fault: rule(Op::Write, "/data/t/", 0, 1, Fault::NoSpace),
            code: STORAGE,
            online: true,
        },
        // A file that vanished: a storage error, not an unknown topic.
        Row {
            fault: rule(Op::Write, "/data/t/", 0, 1, Fault::NotFound),
            code: STORAGE,
            online: true,
        },
        // A failed fsync: never acknowledged; the data directory goes offline.
        Row {
            fault: rule(Op::Sync, "/data/t/", 0, 1, Fault::Eio),
            code: STORAGE,
            online: false,
        },
        // A full disk found at fsync time: the same.
        Row {
            fault: rule(Op::Sync, "/data/t/", 0, 1, Fault::NoSpace),
            code: STORAGE,
            online: false,
        },
    ];
    for (i, row) in rows.iter().enumerate() {
        let fs = SimFs::new();
        let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
        let mut c = b.client().await;
        create_topic(&mut c, "t", &[]).await;
        assert_eq!(
            produce_code(&mut c, "t", -1, b"before").await,
            (0, 0),
            "row {i}"
        );
        fs.inject(row.fault.clone());
        let (code, _) = produce_code(&mut c, "t", -1, b"faulted").await;
        assert_eq!(code, row.code, "row {i}: {:?}", row.fault);
        assert!(fs.faults_fired() > 0, "row {i}: the fault never fired");
        let acked_faulted = code == 0;
        if row.online {
            let (code, _) = produce_code(&mut c, "t", -1, b"after").await;
            assert_eq!(code, 0, "row {i}: the broker did not recover");
            assert!(!b.broker.storage.health.is_offline(), "row {i}");
        } else {
            assert!(b.broker.storage.health.is_offline(), "row {i}");
            // Offline: nothing more is acknowledged, and the server stops (so
            // the connection may already be closed).
            let id = c
                .send(
                    ApiKey::Produce,
                    9,
                    &produce_req("t", 0, build_test_batch(1, &[b"after"]), -1),
                )
                .await;
            if let Some(mut frame) = c.recv_frame().await {
                use kafka_protocol::protocol::Decodable;
                ResponseHeader::decode(&mut frame, 1).unwrap();
                let r = ProduceResponse::decode(&mut frame, 9).unwrap();
                assert_eq!(
                    r.responses[0].partition_responses[0].error_code, STORAGE,
                    "row {i} (id {id})"
                );
            }
            drop(c);
            let keep = b.broker.clone();
            assert!(
                b.finished().await.is_err(),
                "row {i}: the server kept running"
            );
            drop(keep);
            let fs = fs.crash(Crash::DropUnsynced);
            let b = TestBroker::start_on(config(), Arc::new(fs)).await;
            let mut c = b.client().await;
            let got = values(&mut c, "t").await;
            assert_eq!(got.first().map(|v| &v[..]), Some(&b"before"[..]), "row {i}");
            b.stop().await;
            continue;
        }
        drop(c);
        let (b, _fs) = crash_and_restart(b, &fs).await;
        let mut c = b.client().await;
        let got = values(&mut c, "t").await;
        let mut want: Vec<&[u8]> = vec![b"before"];
        if acked_faulted {
            want.push(b"faulted");
        }
        want.push(b"after");
        assert_eq!(got, want, "row {i}: after a crash");
        b.stop().await;
    }
}

/// Stops a broker whose data directory went offline, crashes its machine, and
/// starts a new broker on what survived.
async fn after_offline(b: TestBroker, fs: &SimFs) -> TestBroker {
    assert!(b.broker.storage.health.is_offline());
    let keep = b.broker.clone();
    assert!(
        b.finished().await.is_err(),
        "the server kept running offline"
    );
    drop(keep);
    TestBroker::start_on(config(), Arc::new(fs.crash(Crash::DropUnsynced))).await
}

#[tokio::test]
async fn fault_matrix_roll_and_topic_creation() {
    // Rolls create files: a failure there refuses the produce, and the next roll
    // recreates what was left half-made; a failed directory fsync takes the data
    // directory offline.
    for (i, (fault, online)) in [
        (
            rule(Op::Open, "/data/t/0/", 0, 1, Fault::TooManyFiles),
            true,
        ),
        (rule(Op::SetLen, "/data/t/0/", 0, 1, Fault::NoSpace), true),
        (rule(Op::SyncDir, "/data/t/0", 0, 1, Fault::Eio), false),
        (rule(Op::Sync, "/data/t/0/", 0, 1, Fault::Eio), false),
    ]
    .into_iter()
    .enumerate()
    {
        let fs = SimFs::new();
        let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
        let mut c = b.client().await;
        create_topic(&mut c, "t", &[("segment.bytes", "1024")]).await;
        let big = vec![3u8; 600];
        assert_eq!(produce_code(&mut c, "t", -1, &big).await.0, 0);
        fs.inject(fault.clone());
        // This one needs a roll.
        assert_eq!(
            produce_code(&mut c, "t", -1, &big).await.0,
            STORAGE,
            "row {i}: {fault:?}"
        );
        drop(c);
        let b = if online {
            let mut c = b.client().await;
            assert_eq!(
                produce_code(&mut c, "t", -1, &big).await,
                (0, 1),
                "row {i}: {fault:?}"
            );
            crash_and_restart(b, &fs).await.0
        } else {
            after_offline(b, &fs).await
        };
        let mut c = b.client().await;
        let want = if online { 2 } else { 1 };
        assert_eq!(values(&mut c, "t").await.len(), want, "row {i}: {fault:?}");
        b.stop().await;
    }
    // Topic creation: a failure leaves no topic, and a retry works; a failed
    // directory fsync takes the data directory offline.
    for (i, (fault, online)) in [
        (rule(Op::Open, "/data/n/", 0, 1, Fault::TooManyFiles), true),
        (rule(Op::Write, "/data/n/topic", 0, 1, Fault::NoSpace), true),
        (rule(Op::SyncDir, "/data/n", 0, 1, Fault::Eio), false),
    ]
    .into_iter()
    .enumerate()
    {
        let fs = SimFs::new();
        let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
        let mut c = b.client().await;
        fs.inject(fault.clone());
        let r = create_topic_n(&mut c, "n", 3, &[]).await;
        assert_eq!(r.topics[0].error_code, STORAGE, "row {i}: {fault:?}");
        assert!(b.broker.topic("n").is_none(), "row {i}");
        drop(c);
        let b = if online {
            b
        } else {
            after_offline(b, &fs).await
        };
        let mut c = b.client().await;
        assert_eq!(
            create_topic_n(&mut c, "n", 3, &[]).await.topics[0].error_code,
            0,
            "row {i}"
        );
        assert_eq!(produce_code(&mut c, "n", -1, b"x").await, (0, 0), "row {i}");
        b.stop().await;
    }
}

#[tokio::test]
async fn fault_matrix_reads_and_group_commits() {
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "t", &[]).await;
    produce_code(&mut c, "t", -1, b"x").await;
    // A failed read is a storage error for that fetch only.
    fs.inject(rule(Op::Read, "/data/t/0/", 0, 1, Fault::Eio));
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch_req("t", uuid::Uuid::nil(), 0, 0, 1 << 20),
        )
        .await;
    assert_eq!(r.responses[0].partitions[0].error_code, STORAGE);
    assert_eq!(values(&mut c, "t").await, vec![b"x".to_vec()]);
    // A failed fsync of the group log: the commit is not acknowledged, and the
    // data directory goes offline.
    fs.inject(rule(Op::Sync, "__consumer_offsets", 0, 1, Fault::Eio));
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &commit("g", "t", &[(0, 1)]))
        .await;
    assert_ne!(r.topics[0].partitions[0].error_code, 0);
    drop(c);
    let b = after_offline(b, &fs).await;
    let mut c = b.client().await;
    assert!(fetch(&mut c, "g", "t").await.is_empty());
    assert_eq!(values(&mut c, "t").await, vec![b"x".to_vec()]);
    b.stop().await;
}

/// `flush.messages` and `flush.ms` choose the durability model per topic. By
/// default (flush.messages=1) acks=all is fsynced before it is acknowledged and
/// survives a machine crash. With Kafka's own defaults it is acknowledged from
/// the page cache, so a machine crash may lose it, as with Kafka. With
/// flush.messages=2 the second message asks for a flush without waiting for it.
#[tokio::test]
async fn flush_messages_and_flush_ms_choose_the_durability_model() {
    let never = i64::MAX.to_string();
    let fs = SimFs::new();
    let b = TestBroker::start_on(config(), Arc::new(fs.clone())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "safe", &[]).await;
    create_topic(
        &mut c,
        "kafka-model",
        &[("flush.messages", &never), ("flush.ms", &never)],
    )
    .await;
    create_topic(
        &mut c,
        "every-2",
        &[("flush.messages", "2"), ("flush.ms", &never)],
    )
    .await;
    for topic in ["safe", "kafka-model", "every-2"] {
        assert_eq!(
            produce_code(&mut c, topic, -1, b"one").await.0,
            0,
            "{topic}"
        );
    }
    assert_eq!(produce_code(&mut c, "every-2", -1, b"two").await.0, 0);
    // The flush every-2 asked for completes in the background.
    let p = b.broker.topic("every-2").unwrap().partitions[0].clone();
    for _ in 0..500 {
        if p.flushed_offset() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(p.flushed_offset(), 2, "flush.messages=2 did not flush");
    let kafka_model = b.broker.topic("kafka-model").unwrap().partitions[0].clone();
    assert_eq!(
        kafka_model.flushed_offset(),
        0,
        "flush.ms=MAX flushed anyway"
    );
    drop((p, kafka_model));
    let (b, _fs) = crash_and_restart(b, &fs).await;
    let mut c = b.client().await;
    assert_eq!(values(&mut c, "safe").await, vec![b"one".to_vec()]);
    assert_eq!(values(&mut c, "every-2").await.len(), 2);
    assert!(
        values(&mut c, "kafka-model").await.is_empty(),
        "unflushed data survived a simulated power cut"
    );
    b.stop().await;
}
