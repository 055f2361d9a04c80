//! Idempotent producer state of one partition: the last batches of each producer,
//! so retries are recognised as duplicates and gaps as out-of-order sequences.

use std::collections::{HashMap, VecDeque};

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
}

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

    /// Records an appended batch (offsets assigned).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        self.clock += 1;
        let clock = self.clock;
        if !self.producers.contains_key(&h.producer_id) && self.producers.len() >= PRODUCERS_MAX {
            if let Some(oldest) = self
                .producers
                .iter()
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
            });
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
    }
}

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
        s.record(&a);
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
        s.record(&h(7, 1, 0, 1, 20));
        assert_eq!(s.check(&h(7, 0, 3, 1, 0)), Verdict::StaleEpoch);
        assert_eq!(s.check(&h(8, 0, 42, 1, 0)), Verdict::Append);
    }

    #[test]
    fn sequence_wraps_after_max() {
        let mut s = ProducerStates::default();
        s.record(&h(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&h(1, 0, 0, 1, 0)), Verdict::Append);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            s.record(&h(1, 0, i, 1, i64::from(i)));
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
