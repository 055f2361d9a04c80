//! Property test of the log cleaner against a model map: random keyed writes
//! and deletes (in every codec), transactions committed and aborted, rolls,
//! cleanings with a small or large offset map, time passing, reopens, and
//! crashes at every step of a cleaning (each file-system operation of a kind
//! failing from the n-th on, then a power cut). A consumer reading from the
//! start (as read_committed) must see, per key, exactly the latest committed
//! value or, for a deleted key, the tombstone or nothing; offsets strictly
//! increase. After a final full cleaning past `delete.retention.ms`, it sees
//! one record per live key and no deleted key at all.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use sluice::log::batch::{self, BatchHeader};
use sluice::log::cleaner::{self, OffsetMap, Throttle};
use sluice::log::compress::{self, Compression};
use sluice::log::records::{self, Codec, KeyValue};
use sluice::log::sim::{Crash, Fault, Op as FsOp, Rule, SimFs};
use sluice::log::{LogConfig, PartitionLog};

const DIR: &str = "/data/t-0";
const RETENTION_MS: i64 = 1_000;
const TXN_PID: i64 = 7_000;
const FS_OPS: [FsOp; 8] = [
    FsOp::Open,
    FsOp::Read,
    FsOp::Write,
    FsOp::Sync,
    FsOp::SyncDir,
    FsOp::Rename,
    FsOp::Remove,
    FsOp::CreateDir,
];

#[derive(Debug, Clone)]
enum Op {
    /// Plain records: (key, value or tombstone), in a codec.
    Put {
        records: Vec<(u8, bool)>,
        codec: usize,
    },
    /// A transaction of records, committed or aborted.
    Txn {
        records: Vec<(u8, bool)>,
        commit: bool,
    },
    Roll,
    Clean,
    /// A cleaning during which operations of one kind fail from the `skip`-th
    /// on, then a crash and a restart.
    CrashClean {
        op: usize,
        skip: u64,
    },
    Advance {
        ms: i64,
    },
    Reopen,
}

fn recs() -> impl Strategy<Value = Vec<(u8, bool)>> {
    prop::collection::vec((0u8..12, prop::bool::weighted(0.8)), 1..6)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (recs(), 0usize..5).prop_map(|(records, codec)| Op::Put { records, codec }),
        2 => (recs(), any::<bool>()).prop_map(|(records, commit)| Op::Txn { records, commit }),
        2 => Just(Op::Roll),
        2 => Just(Op::Clean),
        2 => (0usize..FS_OPS.len(), 0u64..12).prop_map(|(op, skip)| Op::CrashClean { op, skip }),
        1 => (1i64..700).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_200,
        segment_ms: -1,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: 1 << 20,
        index_interval_bytes: 150,
        index_bytes_max: 4096,
        compact: true,
        delete_retention_ms: RETENTION_MS,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}

fn open(fs: &SimFs, now: i64) -> PartitionLog {
    PartitionLog::open(Arc::new(fs.clone()), Path::new(DIR), config(), true, now)
        .expect("the log opens after any crash")
}

/// A batch of `records` in `codec`, optionally transactional for TXN_PID.
fn batch_of(
    records: &[(Vec<u8>, Option<Vec<u8>>)],
    codec: Codec,
    ts: i64,
    txn: Option<i32>,
) -> Vec<u8> {
    let kv: Vec<KeyValue<'_>> = records
        .iter()
        .map(|(k, v)| (Some(&k[..]), v.as_deref()))
        .collect();
    let mut b = records::build_batch(ts, &kv);
    if let Some(seq) = txn {
        let h = BatchHeader::parse(&b).unwrap();
        batch::set_length_and_attributes(
            &mut b,
            h.batch_length,
            h.attributes | batch::ATTR_TRANSACTIONAL,
        );
        batch::set_producer(&mut b, TXN_PID, 0, seq);
    }
    let h = BatchHeader::parse(&b).unwrap();
    let target = Compression {
        codec,
        level: Compression::default_level(codec),
    };
    compress::recompress(&b, &[(0, h)], target, 1 << 30)
        .unwrap()
        .unwrap_or(b)
}

/// Stored batch `b` with its records uncompressed.
fn plain_batch(b: &[u8], h: &BatchHeader) -> Vec<u8> {
    let none = Compression {
        codec: Codec::None,
        level: 0,
    };
    compress::recompress(b, &[(0, *h)], none, 1 << 30)
        .unwrap()
        .unwrap_or_else(|| b.to_vec())
}

/// What a read_committed consumer reading from the start sees: (offset, key,
/// value) of every data record, in order; panics on decreasing offsets.
fn consume(log: &PartitionLog) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut pending: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut offset = log.log_start_offset();
    let mut last = -1i64;
    while let Some(slice) = log.read(offset, 1 << 16).unwrap() {
        let bytes = slice.read_to_vec().unwrap();
        for (at, h) in records::split_stored(&bytes) {
            let b = &bytes[at..at + h.total_bytes()];
            batch::validate_stored(b).expect("stored batches keep their CRC");
            offset = h.next_offset();
            if h.attributes & batch::ATTR_CONTROL != 0 {
                match records::marker_kind(b) {
                    Some(true) => out.append(&mut pending),
                    Some(false) => pending.clear(),
                    None => panic!("unknown control batch"),
                }
                continue;
            }
            let mut offsets = Vec::new();
            records::for_each_record(b, &h, 1 << 30, &mut |r| {
                offsets.push(r.offset);
                Ok(())
            })
            .expect("stored records parse");
            let plain = plain_batch(b, &h);
            let kvs = records::uncompressed(&plain).expect("plain records");
            assert_eq!(kvs.len(), offsets.len());
            for (o, (k, v)) in offsets.into_iter().zip(kvs) {
                assert!(o > last, "offsets strictly increase: {o} after {last}");
                last = o;
                let rec = (
                    o,
                    k.expect("compacted records have keys").to_vec(),
                    v.map(<[u8]>::to_vec),
                );
                if h.attributes & batch::ATTR_TRANSACTIONAL != 0 {
                    pending.push(rec);
                } else {
                    out.push(rec);
                }
            }
        }
    }
    assert!(pending.is_empty(), "every transaction in the test is ended");
    out
}

/// What a read_committed client sees, as the Java client and librdkafka
/// decide it: from the aborted transactions each fetch reports (not from
/// the markers' order), a producer's transactional batches are skipped from
/// an aborted transaction's first offset until that producer's ABORT marker.
fn consume_as_client(log: &PartitionLog) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut aborted_pids = HashSet::new();
    while let Some(slice) = log.read(offset, 1 << 16).unwrap() {
        let mut pending: Vec<_> = log.aborted_overlapping(offset, slice.next_offset);
        pending.sort_by_key(|a| a.first_offset);
        let mut pending = pending.into_iter().peekable();
        let bytes = slice.read_to_vec().unwrap();
        for (at, h) in records::split_stored(&bytes) {
            let b = &bytes[at..at + h.total_bytes()];
            offset = h.next_offset();
            while let Some(a) = pending.next_if(|a| a.first_offset <= h.last_offset()) {
                aborted_pids.insert(a.producer_id);
            }
            if h.attributes & batch::ATTR_CONTROL != 0 {
                if records::marker_kind(b) == Some(false) {
                    aborted_pids.remove(&h.producer_id);
                }
                continue;
            }
            if h.attributes & batch::ATTR_TRANSACTIONAL != 0
                && aborted_pids.contains(&h.producer_id)
            {
                continue;
            }
            let plain = plain_batch(b, &h);
            for (k, v) in records::uncompressed(&plain).expect("plain records") {
                out.push((k.unwrap().to_vec(), v.map(<[u8]>::to_vec)));
            }
        }
    }
    out
}

/// Checks what a consumer sees against the model.
fn check(log: &PartitionLog, model: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    let seen = consume(log);
    let by_client: Vec<_> = seen
        .iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        consume_as_client(log),
        by_client,
        "the aborted-transaction list agrees with the markers"
    );
    let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for (_, k, v) in seen {
        last.insert(k, v);
    }
    for (k, v) in &last {
        assert!(model.contains_key(k), "a key never written: {k:?}");
        assert_eq!(model[k].is_some(), v.is_some(), "key {k:?}");
    }
    for (k, v) in model {
        match v {
            Some(v) => assert_eq!(last.get(k), Some(&Some(v.clone())), "latest value of {k:?}"),
            None => assert!(
                matches!(last.get(k), None | Some(None)),
                "deleted key {k:?} came back"
            ),
        }
    }
}

/// One cleaning of the whole cleanable range with the given map.
fn clean(log: &mut PartitionLog, map: &mut OffsetMap, now: i64) -> Result<(), cleaner::CleanError> {
    let Some(plan) = log.plan_cleaning(now, 1 << 30) else {
        return Ok(());
    };
    let never = || false;
    let mut throttle = Throttle::new(0, &never);
    cleaner::run(&plan, map, &mut throttle, now, |staged, upto| {
        log.commit_cleaning(staged, upto)
            .map_err(cleaner::CleanError::Io)
    })
    .map(|_| ())
}

struct World {
    fs: SimFs,
    log: PartitionLog,
    model: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    now: i64,
    n: u64,
    seq: i32,
    map_bytes: u64,
}

impl World {
    fn values(&mut self, records: &[(u8, bool)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        records
            .iter()
            .map(|(k, live)| {
                self.n += 1;
                let key = format!("key-{k}").into_bytes();
                let value = live.then(|| format!("v{}-{}", k, self.n).into_bytes());
                (key, value)
            })
            .collect()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put { records, codec } => {
                let recs = self.values(records);
                let b = batch_of(&recs, Codec::ALL[*codec], self.now, None);
                self.log
                    .append(&records::validate(&b, 1 << 30).unwrap(), self.now)
                    .unwrap();
                self.log.flush().unwrap();
                for (k, v) in recs {
                    self.model.insert(k, v);
                }
            }
            Op::Txn { records, commit } => {
                let recs = self.values(records);
                let b = batch_of(&recs, Codec::None, self.now, Some(self.seq));
                self.seq += recs.len() as i32;
                self.log
                    .append(&records::validate(&b, 1 << 30).unwrap(), self.now)
                    .unwrap();
                self.log
                    .append_marker(TXN_PID, 0, *commit, 0, self.now)
                    .unwrap();
                self.log.flush().unwrap();
                if *commit {
                    for (k, v) in recs {
                        self.model.insert(k, v);
                    }
                }
            }
            Op::Roll => self.log.roll(self.now).unwrap(),
            Op::Clean => {
                let mut map = OffsetMap::with_memory(self.map_bytes);
                clean(&mut self.log, &mut map, self.now).unwrap();
            }
            Op::CrashClean { op, skip } => {
                self.fs.inject(Rule {
                    op: FS_OPS[*op],
                    path: String::new(),
                    skip: *skip,
                    times: u64::MAX,
                    fault: Fault::Eio,
                });
                let mut map = OffsetMap::with_memory(self.map_bytes);
                let _ = clean(&mut self.log, &mut map, self.now);
                self.fs.clear_faults();
                self.fs = self.fs.crash(Crash::DropUnsynced);
                self.log = open(&self.fs, self.now);
            }
            Op::Advance { ms } => self.now += ms,
            Op::Reopen => {
                self.log.close().unwrap();
                self.log = open(&self.fs, self.now);
            }
        }
    }
}

fn run(ops: &[Op], map_bytes: u64) {
    let fs = SimFs::new();
    let log = open(&fs, 1_000);
    let mut w = World {
        fs,
        log,
        model: BTreeMap::new(),
        now: 1_000,
        n: 0,
        seq: 0,
        map_bytes,
    };
    for op in ops {
        w.apply(op);
        check(&w.log, &w.model);
    }
    // Everything sealed, cleaned, then cleaned again past the delete horizon:
    // one record per live key, no deleted key.
    w.apply(&Op::Roll);
    for _ in 0..40 {
        w.apply(&Op::Clean);
    }
    w.apply(&Op::Advance {
        ms: RETENTION_MS + 1,
    });
    for _ in 0..40 {
        w.apply(&Op::Clean);
    }
    check(&w.log, &w.model);
    let seen = consume(&w.log);
    let live: HashSet<&Vec<u8>> = w
        .model
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k)
        .collect();
    let keys: Vec<&Vec<u8>> = seen.iter().map(|(_, k, _)| k).collect();
    assert_eq!(keys.len(), live.len(), "one record per live key: {keys:?}");
    assert!(
        keys.iter().all(|k| live.contains(k)),
        "no deleted key after the horizon"
    );
    // And a restart keeps exactly that.
    w.apply(&Op::Reopen);
    assert_eq!(consume(&w.log), seen);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SLUICE_COMPACTION_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cleaning_keeps_the_latest_committed_value_per_key(
        ops in prop::collection::vec(op(), 1..60),
        small_map in any::<bool>(),
    ) {
        // A small map covers a few keys per cleaning: partial cleanings.
        let map_bytes = if small_map { cleaner::MAP_ENTRY_BYTES * 6 } else { 1 << 20 };
        run(&ops, map_bytes);
    }
}

/// A plain scenario, step by step: superseded values go, a tombstone stays
/// until its horizon, aborted records go, the active segment is untouched.
#[test]
fn cleaning_by_example() {
    let mut ops = Vec::new();
    for round in 0..6 {
        ops.push(Op::Put {
            records: (0..5).map(|k| (k, true)).collect(),
            codec: round % 5,
        });
        ops.push(Op::Roll);
    }
    ops.push(Op::Put {
        records: vec![(1, false)],
        codec: 0,
    });
    ops.push(Op::Txn {
        records: vec![(2, true), (3, true)],
        commit: false,
    });
    ops.push(Op::Txn {
        records: vec![(4, true)],
        commit: true,
    });
    ops.push(Op::Roll);
    ops.push(Op::Clean);
    run(&ops, 1 << 20);
    run(&ops, cleaner::MAP_ENTRY_BYTES * 6);
}

/// A sealed segment damaged on disk (a flipped byte) is refused, not
/// rewritten with a fresh CRC or cut short: the cleaning fails and leaves the
/// files as they were.
#[test]
fn a_damaged_segment_is_left_alone() {
    use sluice::log::fs::Open;
    use sluice::log::segment::file_name;
    use sluice::log::Fs;

    let fs = SimFs::new();
    let mut log = open(&fs, 1_000);
    for i in 0..30u8 {
        let recs = vec![(format!("key-{}", i % 5).into_bytes(), Some(vec![i; 40]))];
        let b = batch_of(&recs, Codec::None, 1_000, None);
        log.append(&records::validate(&b, 1 << 30).unwrap(), 1_000)
            .unwrap();
    }
    log.roll(1_000).unwrap();
    let path = Path::new(DIR).join(file_name(0, "log"));
    let f = fs.open(&path, Open::Existing).unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, 200).unwrap();
    byte[0] ^= 0xff;
    f.write_all_vectored_at(&mut [std::io::IoSlice::new(&byte)], 200)
        .unwrap();
    let before = sluice::log::fs::read_file(&fs, &path).unwrap();
    let mut map = OffsetMap::with_memory(1 << 20);
    let err = clean(&mut log, &mut map, 1_000).unwrap_err();
    assert!(matches!(err, cleaner::CleanError::Damaged(_)), "{err}");
    assert_eq!(sluice::log::fs::read_file(&fs, &path).unwrap(), before);
    assert!(!fs.exists(&Path::new(DIR).join(cleaner::CLEANING_DIR)));
}
