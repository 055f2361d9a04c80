//! Idempotent producer state of one partition: the last batches of each producer,
//! so retries are recognised as duplicates and gaps as out-of-order sequences,
//! and the first offset of each producer's open transaction, which bounds the
//! last stable offset.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::batch::{add_sequence, BatchHeader};

/// Batches remembered per producer: Kafka clients keep at most 5 in flight.
pub const BATCHES_PER_PRODUCER: usize = 5;

/// Producers remembered per partition; the least recently active is forgotten
/// first (it then gets the leniency of an unknown producer).
pub const PRODUCERS_MAX: usize = 10_000;

/// A remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// Sequence of its first record.
    first_seq: i32,
    /// Sequence of its last record.
    last_seq: i32,
    /// Offset it was stored at.
    base_offset: i64,
    /// Offset of its last record.
    last_offset: i64,
}

/// One producer's state.
#[derive(Debug, Clone)]
struct Entry {
    /// The producer's current epoch.
    epoch: i16,
    /// Its last batches, oldest first.
    batches: VecDeque<Seen>,
    /// Logical clock of the last append, for eviction.
    touched: u64,
    /// Wall time of the last append (ms), for `producer.id.expiration.ms`.
    last_append_ms: i64,
    /// The max timestamp of its last batch (DescribeProducers' `last_timestamp`).
    last_timestamp: i64,
    /// First offset of its open transaction in this partition, -1 if none.
    txn_first: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    /// Producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// Sequence of the last record it appended.
    pub last_sequence: i32,
    /// Max timestamp of its last batch.
    pub last_timestamp: i64,
    /// First offset of its open transaction, -1 if none.
    pub txn_start_offset: i64,
}

/// How a batch relates to what the producer sent before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log at these offsets.
    Duplicate {
        /// Offset the batch was first stored at.
        base_offset: i64,
        /// Last offset of the stored batch.
        last_offset: i64,
    },
    /// The epoch is older than the producer's current one.
    StaleEpoch,
    /// A gap or reorder in sequence numbers.
    OutOfOrder {
        /// The sequence we expected.
        expected: i32,
        /// The sequence we got.
        got: i32,
    },
}

/// Producer state of a partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    /// By producer id, at most `PRODUCERS_MAX`.
    producers: HashMap<i64, Entry>,
    /// Counts appends, to find the least recently active producer.
    clock: u64,
    /// Open transactions as (first offset, producer id): the first bounds the
    /// last stable offset.
    open: BTreeSet<(i64, i64)>,
}

/// Why a COMMIT/ABORT marker was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleMarker;

impl ProducerStates {
    /// Judges a batch without changing state. Batches without a producer id always append.
    pub fn check(&self, h: &BatchHeader) -> Verdict {
        if h.producer_id < 0 {
            return Verdict::Append;
        }
        let Some(e) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or state lost with an unclean restart): accept.
            return Verdict::Append;
        };
        if h.producer_epoch < e.epoch {
            return Verdict::StaleEpoch;
        }
        if h.producer_epoch > e.epoch {
            return if h.base_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::OutOfOrder {
                    expected: 0,
                    got: h.base_sequence,
                }
            };
        }
        let last_seq = h.last_sequence();
        if let Some(s) = e
            .batches
            .iter()
            .find(|s| s.first_seq == h.base_sequence && s.last_seq == last_seq)
        {
            return Verdict::Duplicate {
                base_offset: s.base_offset,
                last_offset: s.last_offset,
            };
        }
        match e.batches.back() {
            Some(last) if add_sequence(last.last_seq, 1) != h.base_sequence => {
                Verdict::OutOfOrder {
                    expected: add_sequence(last.last_seq, 1),
                    got: h.base_sequence,
                }
            }
            _ => Verdict::Append,
        }
    }

    /// Records an appended batch (offsets assigned) at wall time `now_ms`.
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        self.clock += 1;
        let clock = self.clock;
        if !self.producers.contains_key(&h.producer_id) && self.producers.len() >= PRODUCERS_MAX {
            // A producer with an open transaction is never forgotten: the last
            // stable offset waits for its marker.
            if let Some(oldest) = self
                .producers
                .iter()
                .filter(|(_, e)| e.txn_first < 0)
                .min_by_key(|(_, e)| e.touched)
                .map(|(k, _)| *k)
            {
                self.producers.remove(&oldest);
            }
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| Entry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                touched: clock,
                last_append_ms: now_ms,
                last_timestamp: h.max_timestamp,
                txn_first: -1,
            });
        if h.attributes & super::batch::ATTR_TRANSACTIONAL != 0 && e.txn_first < 0 {
            e.txn_first = h.base_offset;
            self.open.insert((h.base_offset, h.producer_id));
        }
        e.last_append_ms = e.last_append_ms.max(now_ms);
        e.last_timestamp = h.max_timestamp;
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.touched = clock;
        if e.batches.len() == BATCHES_PER_PRODUCER {
            e.batches.pop_front();
        }
        e.batches.push_back(Seen {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
    }

    /// Forgets everything (after a truncation the remembered offsets may be gone).
    pub fn clear(&mut self) {
        self.producers.clear();
        self.open.clear();
    }

    /// Checks a COMMIT/ABORT marker's epoch: older than the producer's is refused.
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), StaleMarker> {
        match self.producers.get(&producer_id) {
            Some(e) if epoch < e.epoch => Err(StaleMarker),
            _ => Ok(()),
        }
    }

    /// Records a COMMIT/ABORT marker of `producer_id` at `epoch`: its open
    /// transaction (if any) ends; returns that transaction's first offset. A
    /// newer epoch (a fenced producer's transaction aborted by the coordinator)
    /// becomes the producer's, so the fenced one can no longer write.
    pub fn end_txn(&mut self, producer_id: i64, epoch: i16, now_ms: i64) -> Option<i64> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.producers.entry(producer_id).or_insert_with(|| Entry {
            epoch,
            batches: VecDeque::new(),
            touched: clock,
            last_append_ms: now_ms,
            last_timestamp: -1,
            txn_first: -1,
        });
        if epoch > e.epoch {
            e.epoch = epoch;
            e.batches.clear();
        }
        e.touched = clock;
        e.last_append_ms = e.last_append_ms.max(now_ms);
        let first = std::mem::replace(&mut e.txn_first, -1);
        if first < 0 {
            return None;
        }
        self.open.remove(&(first, producer_id));
        Some(first)
    }

    /// The first offset of the oldest open transaction: the last stable offset
    /// when there is one.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.first().map(|(o, _)| *o)
    }

    /// Whether `producer_id` has an open transaction here.
    pub fn in_transaction(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.txn_first >= 0)
    }

    /// Forgets producers that appended nothing for `expiration_ms`
    /// (`producer.id.expiration.ms`); returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first >= 0 || now_ms.saturating_sub(e.last_append_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The producers remembered, by id, with what DescribeProducers reports.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut out: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(id, e)| ProducerSummary {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                txn_start_offset: e.txn_first,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The snapshot file's bytes: `SNAPSHOT_MAGIC`, a version, the entry count,
    /// the entries (producer id, epoch, last append time, last timestamp, open
    /// transaction's first offset, its batches), and a CRC-32C of everything
    /// before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.producers.len() * 64);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_append_ms.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.extend_from_slice(&e.txn_first.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads a snapshot written by [`ProducerStates::encode`]; every count is
    /// checked against the bytes present before anything is allocated.
    pub fn decode(b: &[u8]) -> Result<ProducerStates, String> {
        const HEAD: usize = 4 + 2 + 4;
        if b.len() < HEAD + 4 {
            return Err("producer snapshot too short".into());
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != crc {
            return Err("producer snapshot CRC mismatch".into());
        }
        if &body[..4] != SNAPSHOT_MAGIC {
            return Err("not a producer snapshot".into());
        }
        let version = u16::from_be_bytes([body[4], body[5]]);
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(format!(
                "producer snapshot version {version} is not supported"
            ));
        }
        let count = u32::from_be_bytes([body[6], body[7], body[8], body[9]]) as usize;
        if count > PRODUCERS_MAX {
            return Err(format!("producer snapshot claims {count} producers"));
        }
        let mut at = HEAD;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = body
                .get(at..at + n)
                .ok_or_else(|| "producer snapshot truncated".to_string())?;
            at += n;
            Ok(s)
        };
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let f = take(8 + 2 + 8 + 8)?;
            let id = i64::from_be_bytes(f[0..8].try_into().expect("8 bytes"));
            let epoch = i16::from_be_bytes(f[8..10].try_into().expect("2 bytes"));
            let last_append_ms = i64::from_be_bytes(f[10..18].try_into().expect("8 bytes"));
            let last_timestamp = i64::from_be_bytes(f[18..26].try_into().expect("8 bytes"));
            // Version 1 had no transactions.
            let txn_first = if version >= 2 {
                i64::from_be_bytes(take(8)?.try_into().expect("8 bytes"))
            } else {
                -1
            };
            let n = usize::from(take(1)?[0]);
            if n > BATCHES_PER_PRODUCER {
                return Err(format!(
                    "producer snapshot claims {n} batches for one producer"
                ));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                let f = take(4 + 4 + 8 + 8)?;
                batches.push_back(Seen {
                    first_seq: i32::from_be_bytes(f[0..4].try_into().expect("4 bytes")),
                    last_seq: i32::from_be_bytes(f[4..8].try_into().expect("4 bytes")),
                    base_offset: i64::from_be_bytes(f[8..16].try_into().expect("8 bytes")),
                    last_offset: i64::from_be_bytes(f[16..24].try_into().expect("8 bytes")),
                });
            }
            states.producers.insert(
                id,
                Entry {
                    epoch,
                    batches,
                    touched: 0,
                    last_append_ms,
                    last_timestamp,
                    txn_first,
                },
            );
            if txn_first >= 0 {
                states.open.insert((txn_first, id));
            }
        }
        if at != body.len() {
            return Err("bytes after the last producer in the snapshot".into());
        }
        Ok(states)
    }
}

/// First bytes of a producer snapshot file.
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";
/// Format version of producer snapshots (2 added the open transaction's first offset).
const SNAPSHOT_VERSION: u16 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut s = ProducerStates::default();
        let a = h(7, 0, 0, 3, 10);
        assert_eq!(s.check(&a), Verdict::Append);
        s.record(&a, 0);
        assert_eq!(
            s.check(&h(7, 0, 0, 3, 0)),
            Verdict::Duplicate {
                base_offset: 10,
                last_offset: 12
            }
        );
        assert_eq!(
            s.check(&h(7, 0, 5, 1, 0)),
            Verdict::OutOfOrder {
                expected: 3,
                got: 5
            }
        );
        assert_eq!(s.check(&h(7, 0, 3, 1, 0)), Verdict::Append);
        assert_eq!(
            s.check(&h(7, 1, 4, 1, 0)),
            Verdict::OutOfOrder {
                expected: 0,
                got: 4
            }
        );
        s.record(&h(7, 1, 0, 1, 20), 0);
        assert_eq!(s.check(&h(7, 0, 3, 1, 0)), Verdict::StaleEpoch);
        assert_eq!(s.check(&h(8, 0, 42, 1, 0)), Verdict::Append);
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&h(1, 2, i, 1, i64::from(i)), 100);
        }
        s.record(&h(9, 0, 0, 4, 50), 200);
        let bytes = s.encode();
        let back = ProducerStates::decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.summaries(), s.summaries());
        assert_eq!(
            back.summaries()[0],
            ProducerSummary {
                producer_id: 1,
                epoch: 2,
                last_sequence: 6,
                last_timestamp: 0,
                txn_start_offset: -1,
            }
        );
        assert_eq!(
            back.check(&h(1, 2, 6, 1, 0)),
            Verdict::Duplicate {
                base_offset: 6,
                last_offset: 6
            }
        );
        assert_eq!(back.check(&h(1, 1, 7, 1, 0)), Verdict::StaleEpoch);
        assert_eq!(back.check(&h(9, 0, 4, 1, 0)), Verdict::Append);
        for cut in [0, 5, bytes.len() - 1] {
            assert!(
                ProducerStates::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[12] ^= 1;
        assert!(ProducerStates::decode(&flipped).is_err());
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::default();
        s.record(&h(1, 0, 0, 1, 0), 1_000);
        s.record(&h(2, 0, 0, 1, 1), 5_000);
        assert_eq!(s.expire(6_000, 3_000), 1);
        assert_eq!(
            s.check(&h(1, 0, 7, 1, 0)),
            Verdict::Append,
            "forgotten: lenient"
        );
        assert_ne!(s.check(&h(2, 0, 7, 1, 0)), Verdict::Append);
    }

    #[test]
    fn sequence_wraps_after_max() {
        let mut s = ProducerStates::default();
        s.record(&h(1, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(s.check(&h(1, 0, 0, 1, 0)), Verdict::Append);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            s.record(&h(1, 0, i, 1, i64::from(i)), 0);
        }
        assert_eq!(
            s.check(&h(1, 0, 0, 1, 0)),
            Verdict::OutOfOrder {
                expected: 6,
                got: 0
            }
        );
        assert_eq!(
            s.check(&h(1, 0, 1, 1, 0)),
            Verdict::Duplicate {
                base_offset: 1,
                last_offset: 1
            }
        );
    }
}
