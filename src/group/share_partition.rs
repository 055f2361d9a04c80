//! One share-partition of a share group (KIP-932), as a pure state machine:
//! which records of a topic-partition are available to the group's
//! consumers, handed out under a time-limited lock, acknowledged, or given up
//! on. Time comes in as `now` (ms); nothing here does I/O. The coordinator
//! (`group::shares`) serves it through ShareFetch and ShareAcknowledge.
//!
//! The window of records the group is working on runs from the share-partition
//! start offset (SPSO) to the end offset (SPEO). Below the start every record
//! is done; within the window each offset has a state and a delivery count; at
//! most `max_in_flight` offsets are in the window, so a group that stops
//! acknowledging holds a bounded amount of state.

use std::collections::BTreeMap;

/// The settings a share-partition enforces (Kafka's `group.share.*`).
#[derive(Debug, Clone, Copy)]
pub struct ShareLimits {
    /// `group.share.partition.max.record.locks`: most offsets in the window.
    pub max_in_flight: i64,
    /// `group.share.record.lock.duration.ms`: how long a consumer holds a
    /// record before it is offered again.
    pub lock_ms: i64,
    /// `group.share.delivery.count.limit`: deliveries before a record is
    /// given up on (archived).
    pub delivery_limit: u16,
}

impl Default for ShareLimits {
    fn default() -> Self {
        ShareLimits {
            max_in_flight: 2000,
            lock_ms: 30_000,
            delivery_limit: 5,
        }
    }
}

/// How a consumer acknowledges records (ShareAcknowledge's types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// 0: offsets with no record (compacted away, control records).
    Gap,
    /// 1: processed.
    Accept,
    /// 2: not processed; offer it again.
    Release,
    /// 3: unprocessable; never offer it again.
    Reject,
}

/// The state of one offset in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// May be handed out.
    Available,
    /// Handed out to `member` until `deadline`.
    Acquired {
        /// The member holding it.
        member: String,
        /// When the lock ends (ms).
        deadline: i64,
    },
    /// Done: processed.
    Acknowledged,
    /// Done: rejected, a gap, or over the delivery limit.
    Archived,
}

/// One offset in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// Its state.
    pub state: RecordState,
    /// How many times it has been handed out.
    pub deliveries: u16,
}

/// A run of offsets handed out together, as ShareFetch's acquired records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    /// First offset.
    pub first: i64,
    /// Last offset (inclusive).
    pub last: i64,
    /// The delivery count of every offset in the run.
    pub deliveries: u16,
}

/// One acknowledgement batch of ShareFetch or ShareAcknowledge: a range and
/// either one kind for all of it or one kind per offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBatch {
    /// First offset.
    pub first: i64,
    /// Last offset (inclusive).
    pub last: i64,
    /// One kind, or `last - first + 1` kinds.
    pub kinds: Vec<AckKind>,
}

impl AckBatch {
    /// The kind for `offset` (which lies in the batch).
    fn kind_of(&self, offset: i64) -> AckKind {
        if self.kinds.len() == 1 {
            return self.kinds[0];
        }
        let i = usize::try_from(offset - self.first).unwrap_or(0);
        self.kinds.get(i).copied().unwrap_or(AckKind::Accept)
    }
}

/// What happened to a share-partition's records since the counters were
/// last taken, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records handed out again (delivery count above 1).
    pub redelivered: u64,
    /// Locks that ran out.
    pub lock_expiries: u64,
    /// Records given up on: rejected, or at the delivery limit.
    pub archived: u64,
    /// Records acknowledged as processed.
    pub accepted: u64,
}

/// Why an acknowledgement was refused (INVALID_RECORD_STATE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRecordState {
    /// The first offset that was not the member's to acknowledge.
    pub offset: i64,
}

/// What the durable state of a share-partition holds (Kafka's share
/// coordinator state): the start offset and, for offsets past it that are
/// not simply new, their state and delivery count. A lock is not durable:
/// after a restart an acquired record is available again, with its count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The share-partition start offset.
    pub start: i64,
    /// (first, last, done, deliveries): `done` is acknowledged or archived.
    pub ranges: Vec<(i64, i64, bool, u16)>,
}

/// One share-partition.
#[derive(Debug, Clone)]
pub struct SharePartition {
    /// Every offset below is done.
    start: i64,
    /// The window: offsets from `start` that have been handed out at least once.
    window: BTreeMap<i64, InFlight>,
    /// Settings.
    limits: ShareLimits,
    /// Events since the coordinator last took them.
    counters: Counters,
}

impl SharePartition {
    /// A share-partition starting at `start` (from `share.auto.offset.reset`).
    pub fn new(start: i64, limits: ShareLimits) -> SharePartition {
        SharePartition {
            start,
            window: BTreeMap::new(),
            limits,
            counters: Counters::default(),
        }
    }

    /// The settings in force.
    pub fn limits(&self) -> ShareLimits {
        self.limits
    }

    /// Changes the settings (a group config changed); locks already given
    /// keep their deadlines.
    pub fn set_limits(&mut self, limits: ShareLimits) {
        self.limits = limits;
    }

    /// Takes the events counted since the last call.
    pub fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.counters)
    }

    /// Offsets in the window (locked, offered again, or done but above an
    /// unfinished one): what `max_in_flight` bounds.
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }

    /// The share-partition start offset.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// The next offset never handed out (SPEO).
    pub fn end(&self) -> i64 {
        self.window
            .last_key_value()
            .map_or(self.start, |(o, _)| o + 1)
    }

    /// The state of one offset in the window.
    pub fn get(&self, offset: i64) -> Option<&InFlight> {
        self.window.get(&offset)
    }

    /// Offsets currently locked by some member.
    pub fn acquired(&self) -> usize {
        self.window
            .values()
            .filter(|r| matches!(r.state, RecordState::Acquired { .. }))
            .count()
    }

    /// Hands `member` at most `max_records` offsets below `log_end` (the last
    /// stable offset): first those offered again, oldest first, then new ones
    /// while the window has room.
    pub fn acquire(
        &mut self,
        member: &str,
        log_end: i64,
        max_records: usize,
        now: i64,
    ) -> Vec<Acquired> {
        let deadline = now.saturating_add(self.limits.lock_ms);
        let mut got: Vec<(i64, u16)> = Vec::new();
        for (offset, r) in self.window.iter_mut() {
            if got.len() >= max_records {
                break;
            }
            if r.state == RecordState::Available {
                r.deliveries = r.deliveries.saturating_add(1);
                self.counters.redelivered += 1;
                r.state = RecordState::Acquired {
                    member: member.to_string(),
                    deadline,
                };
                got.push((*offset, r.deliveries));
            }
        }
        let mut next = self.end();
        while got.len() < max_records
            && next < log_end
            && next < self.start.saturating_add(self.limits.max_in_flight)
        {
            self.window.insert(
                next,
                InFlight {
                    state: RecordState::Acquired {
                        member: member.to_string(),
                        deadline,
                    },
                    deliveries: 1,
                },
            );
            got.push((next, 1));
            next += 1;
        }
        runs(&got)
    }

    /// Applies `member`'s acknowledgement of `first..=last`. Every offset
    /// must be locked by that member; otherwise nothing changes.
    pub fn acknowledge(
        &mut self,
        member: &str,
        first: i64,
        last: i64,
        kind: AckKind,
    ) -> Result<(), InvalidRecordState> {
        self.acknowledge_all(
            member,
            &[AckBatch {
                first,
                last,
                kinds: vec![kind],
            }],
        )
    }

    /// Applies a request's acknowledgement batches, all or nothing: every
    /// offset at or above the start must be locked by `member` (offsets below
    /// the start are already done and skipped, as Kafka does).
    pub fn acknowledge_all(
        &mut self,
        member: &str,
        batches: &[AckBatch],
    ) -> Result<(), InvalidRecordState> {
        for b in batches {
            for offset in b.first.max(self.start)..=b.last {
                let mine = self.window.get(&offset).is_some_and(
                    |r| matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member),
                );
                if !mine {
                    return Err(InvalidRecordState { offset });
                }
            }
        }
        let limit = self.limits.delivery_limit;
        for b in batches {
            for offset in b.first.max(self.start)..=b.last {
                let r = self.window.get_mut(&offset).expect("checked above");
                r.state = match b.kind_of(offset) {
                    AckKind::Accept => {
                        self.counters.accepted += 1;
                        RecordState::Acknowledged
                    }
                    AckKind::Gap => RecordState::Archived,
                    AckKind::Reject => {
                        self.counters.archived += 1;
                        RecordState::Archived
                    }
                    AckKind::Release => {
                        let s = offered_again(r.deliveries, limit);
                        if s == RecordState::Archived {
                            self.counters.archived += 1;
                        }
                        s
                    }
                };
            }
        }
        self.advance();
        Ok(())
    }

    /// Gives back offsets `member` acquired but that were never sent (the
    /// response had no room for them): as if never handed out this time.
    /// Returns how many of them were redeliveries (no longer to be counted).
    pub fn unacquire(&mut self, member: &str, first: i64, last: i64) -> u64 {
        let mut redeliveries = 0;
        for offset in first..=last {
            if let Some(r) = self.window.get_mut(&offset) {
                if matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member) {
                    r.deliveries = r.deliveries.saturating_sub(1);
                    if r.deliveries > 0 {
                        redeliveries += 1;
                    }
                    r.state = RecordState::Available;
                }
            }
        }
        // New offsets given back at the end leave the window again.
        while let Some(entry) = self.window.last_entry() {
            if entry.get().deliveries != 0 || entry.get().state != RecordState::Available {
                break;
            }
            entry.remove();
        }
        redeliveries
    }

    /// The log's start moved past the share-partition's (retention, record
    /// deletion): what is gone is done.
    pub fn move_start(&mut self, log_start: i64) {
        if log_start <= self.start {
            return;
        }
        self.window = self.window.split_off(&log_start);
        self.start = log_start;
        self.advance();
    }

    /// Ends locks whose time is up: those records are offered again (or
    /// archived at the delivery limit). Returns how many locks ended.
    pub fn expire(&mut self, now: i64) -> usize {
        let limit = self.limits.delivery_limit;
        let mut n = 0;
        for r in self.window.values_mut() {
            if matches!(r.state, RecordState::Acquired { deadline, .. } if deadline <= now) {
                r.state = offered_again(r.deliveries, limit);
                if r.state == RecordState::Archived {
                    self.counters.archived += 1;
                }
                n += 1;
            }
        }
        self.counters.lock_expiries += n as u64;
        self.advance();
        n
    }

    /// Releases every lock `member` holds (its share session ended).
    pub fn release_member(&mut self, member: &str) -> usize {
        let limit = self.limits.delivery_limit;
        let mut n = 0;
        for r in self.window.values_mut() {
            if matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member) {
                r.state = offered_again(r.deliveries, limit);
                if r.state == RecordState::Archived {
                    self.counters.archived += 1;
                }
                n += 1;
            }
        }
        self.advance();
        n
    }

    /// The earliest lock deadline.
    pub fn next_deadline(&self) -> Option<i64> {
        self.window
            .values()
            .filter_map(|r| match r.state {
                RecordState::Acquired { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// Moves the start past offsets that are done.
    fn advance(&mut self) {
        while let Some(entry) = self.window.first_entry() {
            if *entry.key() != self.start
                || !matches!(
                    entry.get().state,
                    RecordState::Acknowledged | RecordState::Archived
                )
            {
                break;
            }
            entry.remove();
            self.start += 1;
        }
    }

    /// What must be durable: the start and the window, with locks as
    /// available records (a lock does not survive a restart).
    pub fn snapshot(&self) -> Snapshot {
        let mut ranges: Vec<(i64, i64, bool, u16)> = Vec::new();
        for (offset, r) in &self.window {
            let done = matches!(r.state, RecordState::Acknowledged | RecordState::Archived);
            // A locked record is saved as before this delivery: after a
            // crash it is offered again, even at its last allowed delivery.
            let deliveries = match r.state {
                RecordState::Acquired { .. } => r.deliveries.saturating_sub(1),
                _ => r.deliveries,
            };
            match ranges.last_mut() {
                Some((_, last, d, n)) if *last + 1 == *offset && *d == done && *n == deliveries => {
                    *last = *offset;
                }
                _ => ranges.push((*offset, *offset, done, deliveries)),
            }
        }
        Snapshot {
            start: self.start,
            ranges,
        }
    }

    /// The share-partition a snapshot describes, every lock released.
    pub fn restore(s: &Snapshot, limits: ShareLimits) -> SharePartition {
        let mut p = SharePartition::new(s.start, limits);
        for (first, last, done, deliveries) in &s.ranges {
            for offset in (*first).max(s.start)..=*last {
                p.window.insert(
                    offset,
                    InFlight {
                        state: if *done {
                            RecordState::Archived
                        } else {
                            offered_again(*deliveries, limits.delivery_limit)
                        },
                        deliveries: *deliveries,
                    },
                );
            }
        }
        p.advance();
        p
    }
}

/// A record offered again after `deliveries` deliveries: available, or
/// archived once it reached the limit.
fn offered_again(deliveries: u16, limit: u16) -> RecordState {
    if deliveries >= limit {
        RecordState::Archived
    } else {
        RecordState::Available
    }
}

/// Offsets (ascending, with their counts) as runs of consecutive offsets
/// with the same count.
fn runs(got: &[(i64, u16)]) -> Vec<Acquired> {
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<Acquired> = Vec::new();
    for (offset, deliveries) in sorted {
        match out.last_mut() {
            Some(a) if a.last + 1 == offset && a.deliveries == deliveries => a.last = offset,
            _ => out.push(Acquired {
                first: offset,
                last: offset,
                deliveries,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: i64, last: i64, deliveries: u16) -> Acquired {
        Acquired {
            first,
            last,
            deliveries,
        }
    }

    fn limits() -> ShareLimits {
        ShareLimits {
            max_in_flight: 10,
            lock_ms: 1000,
            delivery_limit: 3,
        }
    }

    #[test]
    fn consumers_get_different_records_and_the_start_follows_acks() {
        let mut p = SharePartition::new(0, limits());
        assert_eq!(p.acquire("a", 6, 3, 0), vec![run(0, 2, 1)]);
        assert_eq!(p.acquire("b", 6, 3, 0), vec![run(3, 5, 1)]);
        assert_eq!(
            p.acquire("c", 6, 3, 0),
            vec![],
            "nothing left below the log end"
        );
        // b finishes first: the start waits for a.
        p.acknowledge("b", 3, 5, AckKind::Accept).unwrap();
        assert_eq!(p.start(), 0);
        // Only the holder may acknowledge.
        assert_eq!(
            p.acknowledge("b", 0, 0, AckKind::Accept),
            Err(InvalidRecordState { offset: 0 })
        );
        assert_eq!(
            p.acknowledge("a", 2, 3, AckKind::Accept),
            Err(InvalidRecordState { offset: 3 }),
            "nothing changes when part of the range is not the member's"
        );
        assert_eq!(p.get(2).unwrap().deliveries, 1);
        p.acknowledge("a", 0, 2, AckKind::Accept).unwrap();
        assert_eq!((p.start(), p.end()), (6, 6));
    }

    #[test]
    fn released_and_expired_records_come_back_with_a_higher_count() {
        let mut p = SharePartition::new(0, limits());
        p.acquire("a", 4, 4, 0);
        p.acknowledge("a", 0, 0, AckKind::Release).unwrap();
        p.acknowledge("a", 1, 1, AckKind::Reject).unwrap();
        p.acknowledge("a", 3, 3, AckKind::Accept).unwrap();
        // 0 was released; 2 is still locked until 1000.
        assert_eq!(p.acquire("b", 4, 10, 500), vec![run(0, 0, 2)]);
        assert_eq!(p.next_deadline(), Some(1000));
        assert_eq!(p.expire(999), 0);
        assert_eq!(p.expire(1000), 1);
        // 2 comes back; 1 (rejected) never does.
        assert_eq!(p.acquire("b", 4, 10, 1000), vec![run(2, 2, 2)]);
        p.acknowledge("b", 0, 0, AckKind::Accept).unwrap();
        p.acknowledge("b", 2, 2, AckKind::Accept).unwrap();
        assert_eq!(p.start(), 4);
        assert_eq!(p.acquire("b", 4, 10, 1000), vec![]);
    }

    #[test]
    fn the_delivery_limit_archives_and_the_window_is_bounded() {
        let mut p = SharePartition::new(0, limits());
        for round in 1..=3u16 {
            assert_eq!(p.acquire("a", 1, 1, 0), vec![run(0, 0, round)]);
            p.acknowledge("a", 0, 0, AckKind::Release).unwrap();
        }
        // Three deliveries: given up on, and the start moves past it.
        assert_eq!(p.start(), 1);
        assert_eq!(p.acquire("a", 1, 1, 0), vec![]);
        // A consumer that never acknowledges holds at most max_in_flight.
        let got = p.acquire("a", 1_000, 1_000, 0);
        assert_eq!(got, vec![run(1, 10, 1)]);
        assert_eq!(p.acquired(), 10);
        assert_eq!(p.acquire("b", 1_000, 1_000, 0), vec![]);
        // Its session ends: everything is offered again.
        assert_eq!(p.release_member("a"), 10);
        assert_eq!(p.acquire("b", 1_000, 1_000, 0), vec![run(1, 10, 2)]);
    }

    #[test]
    fn a_restart_keeps_acknowledgements_and_redelivers_the_rest() {
        let mut p = SharePartition::new(5, limits());
        p.acquire("a", 11, 6, 0); // 5..=10
        p.acknowledge("a", 5, 6, AckKind::Accept).unwrap();
        p.acknowledge("a", 8, 8, AckKind::Accept).unwrap();
        p.acknowledge("a", 9, 9, AckKind::Release).unwrap();
        // In every state: acknowledged (8), released (9), locked (7, 10).
        let s = p.snapshot();
        assert_eq!(s.start, 7);
        let mut back = SharePartition::restore(&s, limits());
        assert_eq!((back.start(), back.end()), (7, 11));
        // What was not acknowledged comes back; 8 never does. A lock is not
        // durable: 7 and 10 count as delivered once (this delivery), 9 twice.
        assert_eq!(
            back.acquire("b", 12, 10, 0),
            vec![run(7, 7, 1), run(9, 9, 2), run(10, 11, 1)]
        );
        assert_eq!(back.get(8).unwrap().state, RecordState::Archived);
        for o in [7, 9, 10, 11] {
            back.acknowledge("b", o, o, AckKind::Accept).unwrap();
        }
        assert_eq!(back.start(), 12);
        // A snapshot of a finished window is just the start.
        assert_eq!(
            back.snapshot(),
            Snapshot {
                start: 12,
                ranges: vec![]
            }
        );
        // A record locked on its last allowed delivery when the broker
        // stops is offered again after the restart, not given up on.
        let mut p = SharePartition::new(0, limits());
        for _ in 0..2 {
            p.acquire("a", 1, 1, 0);
            p.acknowledge("a", 0, 0, AckKind::Release).unwrap();
        }
        assert_eq!(p.acquire("a", 1, 1, 0), vec![run(0, 0, 3)]);
        let mut back = SharePartition::restore(&p.snapshot(), limits());
        assert_eq!(back.acquire("b", 1, 1, 0), vec![run(0, 0, 3)]);
    }

    #[test]
    fn batches_apply_all_or_nothing_with_a_kind_per_offset() {
        let mut p = SharePartition::new(0, limits());
        p.acquire("a", 6, 6, 0);
        let per_offset = AckBatch {
            first: 0,
            last: 2,
            kinds: vec![AckKind::Accept, AckKind::Release, AckKind::Reject],
        };
        let foreign = AckBatch {
            first: 5,
            last: 7,
            kinds: vec![AckKind::Accept],
        };
        // 6 and 7 were never handed out: nothing of the request applies.
        assert_eq!(
            p.acknowledge_all("a", &[per_offset.clone(), foreign]),
            Err(InvalidRecordState { offset: 6 })
        );
        assert_eq!(
            p.get(0).unwrap().state,
            RecordState::Acquired {
                member: "a".into(),
                deadline: 1000
            }
        );
        p.acknowledge_all("a", &[per_offset]).unwrap();
        assert_eq!(p.get(1).unwrap().state, RecordState::Available);
        assert_eq!(p.get(2).unwrap().state, RecordState::Archived);
        assert_eq!(p.start(), 1);
        // Offsets below the start are done already and skipped.
        p.acknowledge("a", 0, 0, AckKind::Accept).unwrap();
        let c = p.take_counters();
        assert_eq!((c.accepted, c.archived), (1, 1));
    }

    #[test]
    fn records_not_sent_are_given_back_and_a_moved_log_start_is_followed() {
        let mut p = SharePartition::new(0, limits());
        assert_eq!(p.acquire("a", 10, 6, 0), vec![run(0, 5, 1)]);
        // Only 0..=2 fit the response: 3..=5 leave the window again.
        p.unacquire("a", 3, 5);
        assert_eq!(p.end(), 3);
        assert_eq!(p.acquire("b", 10, 2, 0), vec![run(3, 4, 1)]);
        // A redelivered record given back keeps its earlier count.
        p.acknowledge("a", 0, 0, AckKind::Release).unwrap();
        assert_eq!(p.acquire("b", 10, 1, 0), vec![run(0, 0, 2)]);
        p.unacquire("b", 0, 0);
        assert_eq!(p.get(0).unwrap().deliveries, 1);
        // Retention removed offsets 0..8: they are done.
        p.move_start(8);
        assert_eq!((p.start(), p.end()), (8, 8));
        assert_eq!(p.acquire("a", 10, 5, 0), vec![run(8, 9, 1)]);
    }
}
