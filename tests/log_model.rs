//! Property test: the segmented log behaves like a plain in-memory list of batches
//! under random appends, rolls, truncations, torn writes and reopens.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use sluice::log::batch::{self, BatchHeader};
use sluice::log::records::{build_test_batch, validate};
use sluice::log::RealFs;
use sluice::log::{LogConfig, PartitionLog};
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    Append { values: Vec<Vec<u8>>, ts: i64 },
    Roll,
    Truncate { frac: f64 },
    Reopen { clean: bool },
    TornTail { garbage: Vec<u8> },
    Read { frac: f64, max_bytes: u64 },
    FindTs { ts: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6), 0i64..1000)
            .prop_map(|(values, ts)| Op::Append { values, ts }),
        1 => Just(Op::Roll),
        1 => (0.0f64..1.0).prop_map(|frac| Op::Truncate { frac }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => prop::collection::vec(any::<u8>(), 1..100).prop_map(|garbage| Op::TornTail { garbage }),
        4 => (0.0f64..1.0, 1u64..3000).prop_map(|(frac, max_bytes)| Op::Read { frac, max_bytes }),
        1 => (0i64..1100).prop_map(|ts| Op::FindTs { ts }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        segment_ms: -1,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: 1 << 20,
        index_interval_bytes: 100,
        index_bytes_max: 64,
        ..LogConfig::default()
    }
}

/// The model: batches as stored (offsets assigned), in order.
struct Model {
    batches: Vec<(i64, Vec<u8>)>,
    end: i64,
}

impl Model {
    fn holding(&self, offset: i64) -> Option<usize> {
        self.batches.iter().position(|(base, b)| {
            let h = BatchHeader::parse(b).unwrap();
            *base <= offset && offset <= h.last_offset()
        })
    }
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(Arc::new(RealFs), dir.path(), config(), false, 0).unwrap();
        let mut model = Model { batches: Vec::new(), end: 0 };
        for op in ops {
            match op {
                Op::Append { values, ts } => {
                    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                    let b = build_test_batch(ts, &refs);
                    let info = log.append(&validate(&b, 1 << 20).unwrap(), 0).unwrap();
                    prop_assert_eq!(info.base_offset, model.end);
                    // Reads must return the batch with its assigned base offset.
                    let mut stored = b.clone();
                    batch::assign(&mut stored, model.end, 0);
                    model.end = info.last_offset + 1;
                    model.batches.push((info.base_offset, stored));
                }
                Op::Roll => log.roll(0).unwrap(),
                Op::Truncate { frac } => {
                    if model.batches.is_empty() { continue; }
                    let i = ((model.batches.len() as f64) * frac) as usize;
                    let cut = model.batches[i].0;
                    log.truncate_to(cut).unwrap();
                    model.batches.truncate(i);
                    model.end = cut;
                }
                Op::Reopen { clean } => {
                    if clean { log.close().unwrap(); }
                    drop(log);
                    log = PartitionLog::open(Arc::new(RealFs), dir.path(), config(), !clean, 0).unwrap();
                }
                Op::TornTail { garbage } => {
                    drop(log);
                    let mut f = OpenOptions::new().append(true).open(last_segment(dir.path())).unwrap();
                    f.write_all(&garbage).unwrap();
                    drop(f);
                    log = PartitionLog::open(Arc::new(RealFs), dir.path(), config(), true, 0).unwrap();
                }
                Op::Read { frac, max_bytes } => {
                    let offset = (model.end as f64 * frac) as i64;
                    let got = log.read(offset, max_bytes).unwrap();
                    match model.holding(offset) {
                        None => prop_assert!(got.is_none()),
                        Some(i) => {
                            let bytes = got.expect("data").read_to_vec().unwrap();
                            let parts = batch::split_batches(&bytes).unwrap();
                            prop_assert!(parts.len() == 1 || bytes.len() as u64 <= max_bytes);
                            for (k, (start, h)) in parts.iter().enumerate() {
                                let (base, want) = &model.batches[i + k];
                                prop_assert_eq!(h.base_offset, *base);
                                prop_assert_eq!(&bytes[*start..*start + h.total_bytes()], want.as_slice());
                            }
                        }
                    }
                }
                Op::FindTs { ts } => {
                    let want = model.batches.iter().find(|(_, b)| BatchHeader::parse(b).unwrap().max_timestamp >= ts);
                    let got = log.find_by_timestamp(ts).unwrap();
                    match want {
                        None => prop_assert!(got.is_none()),
                        Some((base, _)) => {
                            let bytes = got.expect("batch").read_to_vec().unwrap();
                            prop_assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, *base);
                        }
                    }
                }
            }
            prop_assert_eq!(log.log_end_offset(), model.end);
            prop_assert_eq!(log.log_start_offset(), 0);
        }
    }
}
