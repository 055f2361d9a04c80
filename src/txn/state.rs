//! One transactional id under Kafka's transaction protocol (v1), as a pure
//! state machine, like the classic group coordinator's.
//!
//! No I/O and no clock: time comes in as `now` (ms), fresh producer ids come
//! from the caller, and a step says what the outside world must do: persist
//! the new [`Txn`] before it takes effect (the async shell answers
//! CONCURRENT_TRANSACTIONS while such a write is pending) and, for
//! PrepareCommit/PrepareAbort, write the COMMIT/ABORT markers to every partition
//! of the transaction, then report [`markers_written`].
//!
//! States and transitions follow Kafka's `TransactionCoordinator`:
//! Empty -> Ongoing (AddPartitions) -> PrepareCommit/PrepareAbort (EndTxn, or a
//! timeout, which also bumps the epoch to fence the producer) ->
//! CompleteCommit/CompleteAbort (markers written) -> Ongoing again. A new
//! InitProducerId bumps the epoch (fencing older producers); during an ongoing
//! transaction it aborts it first and answers CONCURRENT_TRANSACTIONS so the
//! client retries.

use std::collections::BTreeSet;

/// Kafka's transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction: initialised, or a new epoch.
    Empty,
    /// Partitions were added; the transaction is open.
    Ongoing,
    /// Committing: COMMIT markers are being written.
    PrepareCommit,
    /// Aborting: ABORT markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
    /// Fencing the producer before aborting (an intermediate of InitProducerId
    /// and timeouts; persisted in Kafka, folded into PrepareAbort here).
    PrepareEpochFence,
    /// Expired and removed.
    Dead,
}

impl TxnState {
    /// Every state, in Kafka's order (ListTransactions' filter names).
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::PrepareEpochFence,
        TxnState::Dead,
    ];

    /// The name Kafka reports (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
            TxnState::Dead => "Dead",
        }
    }
}

/// Why a request is refused (the handler picks the code by API version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// `transaction.timeout.ms` is not in `1..=transaction_max_timeout_ms`.
    InvalidTransactionTimeout,
    /// A previous transaction of this id is still completing: retry.
    ConcurrentTransactions,
    /// The producer's epoch is not the current one (PRODUCER_FENCED, or
    /// INVALID_PRODUCER_EPOCH for older versions).
    Fenced,
    /// No such transactional id, or another producer id holds it.
    InvalidProducerIdMapping,
    /// The request does not fit the transaction's state (e.g. commit without begin).
    InvalidTxnState,
}

/// The coordinator's record of one transactional id: what is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// The transactional id.
    pub id: String,
    /// Producer id now.
    pub producer_id: i64,
    /// The producer id before the last one, after an epoch exhaustion (-1 if none).
    pub last_producer_id: i64,
    /// Epoch now.
    pub epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId is recognised (-1 if none).
    pub last_epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions of the open (or completing) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction began (ms), -1 if none.
    pub start_ms: i64,
    /// Last change (ms).
    pub updated_ms: i64,
}

/// The COMMIT or ABORT markers a step asks to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    /// Producer id the markers carry.
    pub producer_id: i64,
    /// Epoch the markers carry.
    pub epoch: i16,
    /// COMMIT (true) or ABORT.
    pub commit: bool,
    /// Every partition of the transaction.
    pub partitions: BTreeSet<(String, i32)>,
}

/// What the client is told once the step is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Success.
    Ok,
    /// InitProducerId: the producer id and epoch to use.
    ProducerId(i64, i16),
    /// The state changed (an ongoing transaction is being aborted) but the
    /// client must retry: CONCURRENT_TRANSACTIONS.
    Retry,
}

/// A state change: persist `next`, then write `markers` if any, then answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The record to persist; it takes effect once durable.
    pub next: Txn,
    /// Markers to write after `next` is durable.
    pub markers: Option<Markers>,
    /// The answer once durable.
    pub answer: Answer,
}

/// An InitProducerId for a transactional id.
#[derive(Debug, Clone, Copy)]
pub struct InitRequest {
    /// `transaction.timeout.ms` asked for.
    pub timeout_ms: i32,
    /// KIP-360 (v3+): the producer id and epoch the client has, if any.
    pub expected: Option<(i64, i16)>,
}

/// Epochs at or past this are exhausted: the next bump takes a new producer id.
const EPOCH_MAX: i16 = i16::MAX - 1;

fn bumped(t: &Txn, fresh_pid: &mut dyn FnMut() -> i64) -> Txn {
    let mut n = t.clone();
    n.last_epoch = t.epoch;
    if t.epoch >= EPOCH_MAX {
        n.last_producer_id = t.producer_id;
        n.producer_id = fresh_pid();
        n.epoch = 0;
    } else {
        n.epoch = t.epoch + 1;
    }
    n
}

/// Whether `(pid, epoch)` is what the client may legitimately hold: the
/// current pair, or the one before the last bump (a retry that lost its answer).
fn known_pair(t: &Txn, pid: i64, epoch: i16) -> bool {
    (pid == t.producer_id && (epoch == t.epoch || epoch == t.last_epoch))
        || (pid == t.last_producer_id && epoch == t.last_epoch)
}

/// InitProducerId for transactional id `id` (`cur` is its record, if any).
pub fn init_producer_id(
    cur: Option<&Txn>,
    pending: bool,
    id: &str,
    req: InitRequest,
    timeout_max_ms: i32,
    fresh_pid: &mut dyn FnMut() -> i64,
    now: i64,
) -> Result<Step, TxnError> {
    if req.timeout_ms <= 0 || req.timeout_ms > timeout_max_ms {
        return Err(TxnError::InvalidTransactionTimeout);
    }
    if pending {
        // A change is in flight, the id's first record included.
        return Err(TxnError::ConcurrentTransactions);
    }
    let Some(t) = cur.filter(|t| t.state != TxnState::Dead) else {
        let next = Txn {
            id: id.to_string(),
            producer_id: fresh_pid(),
            last_producer_id: -1,
            epoch: 0,
            last_epoch: -1,
            timeout_ms: req.timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            updated_ms: now,
        };
        let answer = Answer::ProducerId(next.producer_id, next.epoch);
        return Ok(Step {
            next,
            markers: None,
            answer,
        });
    };
    if let Some((pid, epoch)) = req.expected {
        if !known_pair(t, pid, epoch) {
            return Err(TxnError::Fenced);
        }
        // A retry of an InitProducerId already done: answer it again.
        let previous = pid == t.producer_id || pid == t.last_producer_id;
        if previous && epoch == t.last_epoch && t.state == TxnState::Empty {
            return Ok(Step {
                next: t.clone(),
                markers: None,
                answer: Answer::ProducerId(t.producer_id, t.epoch),
            });
        }
    }
    match t.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            Err(TxnError::ConcurrentTransactions)
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let mut next = bumped(t, fresh_pid);
            next.timeout_ms = req.timeout_ms;
            next.state = TxnState::Empty;
            next.partitions.clear();
            next.start_ms = -1;
            next.updated_ms = now;
            let answer = Answer::ProducerId(next.producer_id, next.epoch);
            Ok(Step {
                next,
                markers: None,
                answer,
            })
        }
        TxnState::Ongoing => {
            // Fence the old producer and abort its transaction; the client retries
            // and gets the new epoch once the abort completes.
            let step = fence_and_abort(t, fresh_pid, now);
            Ok(Step {
                answer: Answer::Retry,
                ..step
            })
        }
        TxnState::Dead => unreachable!("filtered above"),
    }
}

/// Bumps the epoch (fencing the producer) and aborts the open transaction.
fn fence_and_abort(t: &Txn, fresh_pid: &mut dyn FnMut() -> i64, now: i64) -> Step {
    let mut next = bumped(t, fresh_pid);
    next.state = TxnState::PrepareAbort;
    next.updated_ms = now;
    let markers = Markers {
        producer_id: next.producer_id,
        epoch: next.epoch,
        commit: false,
        partitions: next.partitions.clone(),
    };
    Step {
        next,
        markers: Some(markers),
        answer: Answer::Ok,
    }
}

/// The checks AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and the
/// coordinator's partition verification share.
pub fn check_producer(cur: Option<&Txn>, pid: i64, epoch: i16) -> Result<&Txn, TxnError> {
    let t = cur
        .filter(|t| t.state != TxnState::Dead)
        .ok_or(TxnError::InvalidProducerIdMapping)?;
    if t.producer_id != pid {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if t.epoch != epoch {
        return Err(TxnError::Fenced);
    }
    Ok(t)
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's partition): `None`
/// when every partition is already in the open transaction.
pub fn add_partitions(
    cur: Option<&Txn>,
    pending: bool,
    pid: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now: i64,
) -> Result<Option<Step>, TxnError> {
    let t = check_producer(cur, pid, epoch)?;
    if pending {
        return Err(TxnError::ConcurrentTransactions);
    }
    match t.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            Err(TxnError::ConcurrentTransactions)
        }
        TxnState::Dead => Err(TxnError::InvalidProducerIdMapping),
        TxnState::Ongoing if partitions.iter().all(|p| t.partitions.contains(p)) => Ok(None),
        TxnState::Empty
        | TxnState::Ongoing
        | TxnState::CompleteCommit
        | TxnState::CompleteAbort => {
            let mut next = t.clone();
            if t.state != TxnState::Ongoing {
                next.partitions.clear();
                next.start_ms = now;
            }
            next.partitions.extend(partitions.iter().cloned());
            next.state = TxnState::Ongoing;
            next.updated_ms = now;
            Ok(Some(Step {
                next,
                markers: None,
                answer: Answer::Ok,
            }))
        }
    }
}

/// EndTxn: `None` when the request is a retry of a transaction already
/// completed the same way (success, nothing to do).
pub fn end_txn(
    cur: Option<&Txn>,
    pending: bool,
    pid: i64,
    epoch: i16,
    commit: bool,
    now: i64,
) -> Result<Option<Step>, TxnError> {
    let t = check_producer(cur, pid, epoch)?;
    if pending {
        return Err(TxnError::ConcurrentTransactions);
    }
    match (t.state, commit) {
        (TxnState::Ongoing, _) => {
            let mut next = t.clone();
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.updated_ms = now;
            let markers = Markers {
                producer_id: t.producer_id,
                epoch: t.epoch,
                commit,
                partitions: t.partitions.clone(),
            };
            Ok(Some(Step {
                next,
                markers: Some(markers),
                answer: Answer::Ok,
            }))
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(TxnError::ConcurrentTransactions)
        }
        (TxnState::PrepareEpochFence, _) => Err(TxnError::ConcurrentTransactions),
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// Every marker of a PrepareCommit/PrepareAbort was written: the transaction
/// completes. `None` in any other state.
pub fn markers_written(cur: &Txn, now: i64) -> Option<Txn> {
    let state = match cur.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return None,
    };
    let mut next = cur.clone();
    next.state = state;
    next.partitions.clear();
    next.start_ms = -1;
    next.updated_ms = now;
    Some(next)
}

/// An open transaction past its timeout is aborted with an epoch bump, so the
/// producer that left it is fenced. `None` if it is not due.
pub fn expire(
    cur: &Txn,
    pending: bool,
    fresh_pid: &mut dyn FnMut() -> i64,
    now: i64,
) -> Option<Step> {
    if pending || cur.state != TxnState::Ongoing {
        return None;
    }
    if now < cur.start_ms.saturating_add(i64::from(cur.timeout_ms)) {
        return None;
    }
    Some(fence_and_abort(cur, fresh_pid, now))
}

/// After a restart: the markers a transaction that was completing still needs
/// (they are idempotent to write again).
pub fn recover(cur: &Txn) -> Option<Markers> {
    let commit = match cur.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return None,
    };
    Some(Markers {
        producer_id: cur.producer_id,
        epoch: cur.epoch,
        commit,
        partitions: cur.partitions.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i32 = 900_000;

    fn pids() -> impl FnMut() -> i64 {
        let mut next = 100;
        move || {
            next += 1;
            next
        }
    }

    fn init(
        cur: Option<&Txn>,
        pending: bool,
        expected: Option<(i64, i16)>,
        now: i64,
    ) -> Result<Step, TxnError> {
        let req = InitRequest {
            timeout_ms: 60_000,
            expected,
        };
        init_producer_id(cur, pending, "t", req, MAX, &mut pids(), now)
    }

    fn p(n: i32) -> (String, i32) {
        ("topic".to_string(), n)
    }

    /// Init, then add partitions 0 and 1: an Ongoing transaction at epoch 0.
    fn ongoing() -> Txn {
        let t = init(None, false, None, 0).unwrap().next;
        add_partitions(Some(&t), false, t.producer_id, 0, &[p(0), p(1)], 10)
            .unwrap()
            .unwrap()
            .next
    }

    #[test]
    fn a_transaction_commits_and_aborts_through_every_state() {
        let t = init(None, false, None, 0).unwrap();
        assert_eq!(t.answer, Answer::ProducerId(101, 0));
        let t = t.next;
        assert_eq!(t.state, TxnState::Empty);
        let o = ongoing();
        assert_eq!(
            (o.state, o.start_ms, o.partitions.len()),
            (TxnState::Ongoing, 10, 2)
        );
        // Adding what is already there changes nothing.
        assert_eq!(
            add_partitions(Some(&o), false, 101, 0, &[p(1)], 20),
            Ok(None)
        );
        let s = end_txn(Some(&o), false, 101, 0, true, 30).unwrap().unwrap();
        assert_eq!(s.next.state, TxnState::PrepareCommit);
        let m = s.markers.unwrap();
        assert!(m.commit && m.partitions.len() == 2 && m.epoch == 0);
        // While markers are written: retries of the same outcome wait, the other is refused.
        assert_eq!(
            end_txn(Some(&s.next), false, 101, 0, true, 31),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            end_txn(Some(&s.next), false, 101, 0, false, 31),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            add_partitions(Some(&s.next), false, 101, 0, &[p(2)], 31),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = markers_written(&s.next, 40).unwrap();
        assert_eq!(
            (done.state, done.partitions.len()),
            (TxnState::CompleteCommit, 0)
        );
        // A retried commit succeeds; an abort of a committed transaction does not.
        assert_eq!(end_txn(Some(&done), false, 101, 0, true, 41), Ok(None));
        assert_eq!(
            end_txn(Some(&done), false, 101, 0, false, 41),
            Err(TxnError::InvalidTxnState)
        );
        // The next transaction starts afresh and aborts.
        let o2 = add_partitions(Some(&done), false, 101, 0, &[p(5)], 50)
            .unwrap()
            .unwrap()
            .next;
        assert_eq!((o2.start_ms, o2.partitions.len()), (50, 1));
        let a = end_txn(Some(&o2), false, 101, 0, false, 60)
            .unwrap()
            .unwrap();
        assert_eq!(a.next.state, TxnState::PrepareAbort);
        assert_eq!(
            markers_written(&a.next, 70).unwrap().state,
            TxnState::CompleteAbort
        );
    }

    #[test]
    fn misuse_gets_kafkas_errors() {
        let t = init(None, false, None, 0).unwrap().next;
        // Commit without begin.
        assert_eq!(
            end_txn(Some(&t), false, 101, 0, true, 1),
            Err(TxnError::InvalidTxnState)
        );
        // Unknown id, another producer id, an old epoch.
        assert_eq!(
            end_txn(None, false, 101, 0, true, 1),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            add_partitions(Some(&t), false, 999, 0, &[p(0)], 1),
            Err(TxnError::InvalidProducerIdMapping)
        );
        let bumped = init(Some(&t), false, None, 2).unwrap().next;
        assert_eq!(bumped.epoch, 1);
        assert_eq!(
            add_partitions(Some(&bumped), false, 101, 0, &[p(0)], 3),
            Err(TxnError::Fenced)
        );
        // Timeouts outside 1..=max.
        for timeout_ms in [0, -1, MAX + 1] {
            let req = InitRequest {
                timeout_ms,
                expected: None,
            };
            assert_eq!(
                init_producer_id(None, false, "t", req, MAX, &mut pids(), 0),
                Err(TxnError::InvalidTransactionTimeout)
            );
        }
        // A write in flight: everything waits, a new id's first one too.
        assert_eq!(
            init(None, true, None, 5),
            Err(TxnError::ConcurrentTransactions)
        );
        let o = ongoing();
        assert_eq!(
            init(Some(&o), true, None, 5),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            end_txn(Some(&o), true, 101, 0, true, 5),
            Err(TxnError::ConcurrentTransactions)
        );
    }

    #[test]
    fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
        let o = ongoing();
        let s = init(Some(&o), false, None, 20).unwrap();
        assert_eq!(
            s.answer,
            Answer::Retry,
            "CONCURRENT_TRANSACTIONS while the abort completes"
        );
        assert_eq!((s.next.state, s.next.epoch), (TxnState::PrepareAbort, 1));
        let m = s.markers.unwrap();
        assert!(!m.commit && m.epoch == 1 && m.partitions.len() == 2);
        // The old producer is fenced at once.
        assert_eq!(
            end_txn(Some(&s.next), false, 101, 0, true, 21),
            Err(TxnError::Fenced)
        );
        assert_eq!(
            init(Some(&s.next), false, None, 21),
            Err(TxnError::ConcurrentTransactions)
        );
        let aborted = markers_written(&s.next, 22).unwrap();
        // The retry gets the next epoch.
        assert_eq!(
            init(Some(&aborted), false, None, 23).unwrap().answer,
            Answer::ProducerId(101, 2)
        );
    }

    #[test]
    fn kip_360_retries_are_recognised_and_strangers_fenced() {
        let t = init(None, false, None, 0).unwrap().next; // 101/0
        let t1 = init(Some(&t), false, Some((101, 0)), 1).unwrap().next; // bump to 101/1
        assert_eq!((t1.epoch, t1.last_epoch), (1, 0));
        // The same request again (its answer was lost): the same answer, no bump.
        let again = init(Some(&t1), false, Some((101, 0)), 2).unwrap();
        assert_eq!(again.answer, Answer::ProducerId(101, 1));
        assert_eq!(again.next, t1);
        // A pair the coordinator never handed out is fenced.
        assert_eq!(
            init(Some(&t1), false, Some((101, 7)), 2),
            Err(TxnError::Fenced)
        );
        assert_eq!(
            init(Some(&t1), false, Some((55, 1)), 2),
            Err(TxnError::Fenced)
        );
    }

    #[test]
    fn an_exhausted_epoch_takes_a_new_producer_id() {
        let mut t = init(None, false, None, 0).unwrap().next;
        t.epoch = EPOCH_MAX;
        let s = init_producer_id(
            Some(&t),
            false,
            "t",
            InitRequest {
                timeout_ms: 1000,
                expected: None,
            },
            MAX,
            &mut || 555,
            1,
        )
        .unwrap();
        assert_eq!(s.answer, Answer::ProducerId(555, 0));
        assert_eq!(
            (s.next.last_producer_id, s.next.last_epoch),
            (101, EPOCH_MAX)
        );
    }

    #[test]
    fn timed_out_transactions_abort_with_an_epoch_bump() {
        let o = ongoing(); // started at 10, timeout 60 s
        assert_eq!(expire(&o, false, &mut pids(), 60_009), None);
        assert_eq!(
            expire(&o, true, &mut pids(), 60_010),
            None,
            "not while a write is pending"
        );
        let s = expire(&o, false, &mut pids(), 60_010).unwrap();
        assert_eq!((s.next.state, s.next.epoch), (TxnState::PrepareAbort, 1));
        assert!(!s.markers.unwrap().commit);
        let done = markers_written(&s.next, 60_011).unwrap();
        assert_eq!(expire(&done, false, &mut pids(), 1 << 40), None);
    }

    #[test]
    fn a_restart_in_every_state_completes_or_leaves_what_was_in_flight() {
        let o = ongoing();
        let commit = end_txn(Some(&o), false, 101, 0, true, 1)
            .unwrap()
            .unwrap()
            .next;
        let abort = end_txn(Some(&o), false, 101, 0, false, 1)
            .unwrap()
            .unwrap()
            .next;
        let cases: [(&Txn, Option<bool>); 6] = [
            (&init(None, false, None, 0).unwrap().next, None),
            (&o, None), // stays open; its timeout aborts it
            (&commit, Some(true)),
            (&abort, Some(false)),
            (&markers_written(&commit, 2).unwrap(), None),
            (&markers_written(&abort, 2).unwrap(), None),
        ];
        for (t, want) in cases {
            let got = recover(t).map(|m| m.commit);
            assert_eq!(got, want, "{:?}", t.state);
            if let Some(m) = recover(t) {
                assert_eq!(m.partitions, t.partitions);
                let done = markers_written(t, 3).unwrap();
                assert!(matches!(
                    done.state,
                    TxnState::CompleteCommit | TxnState::CompleteAbort
                ));
            }
        }
    }
}
