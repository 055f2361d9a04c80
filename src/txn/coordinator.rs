//! The transaction coordinator's async shell around the pure state machine
//! ([`super::state`]): transactional ids behind one short-held mutex, their
//! records in the transaction state log, COMMIT/ABORT markers written through
//! a [`MarkerSink`] the broker provides, and one task for timeouts and expiry.
//!
//! Each transactional id has at most one change in flight (`pending`): its
//! record is written and made durable first, then it takes effect; while
//! markers are being written the id stays pending, and requests for it answer
//! CONCURRENT_TRANSACTIONS (clients retry), as Kafka's coordinator does.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::records;
use super::state::{self, Answer, InitRequest, Markers, Step, Txn, TxnError, TxnState};
use crate::clock::now_ms;
use crate::config::Config;
use crate::storage::state_log::{Entry, StateLog};
use crate::storage::{Partition, Syncer};

/// A boxed future, for the injected producer-id source and marker sink.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Hands out producer ids never used before (the broker's block reservation).
pub type FreshPid = Arc<dyn Fn() -> BoxFuture<'static, io::Result<i64>> + Send + Sync>;

/// Where markers go: the broker appends them to every partition of the
/// transaction (and completes the groups' transactional offsets for the
/// group log's partition), and answers once they are durable.
pub trait MarkerSink: Send + Sync {
    /// Writes `m`; `Err` (logged by the coordinator, then retried) if any
    /// partition could not take its marker.
    fn write_markers(&self, m: Markers) -> BoxFuture<'_, Result<(), String>>;
}

/// Why a request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordError {
    /// The state machine refused it.
    Txn(TxnError),
    /// The state log could not be written, or the broker is stopping: the
    /// client retries (NOT_COORDINATOR).
    NotCoordinator,
    /// `transactional_ids_max` ids are held (COORDINATOR_NOT_AVAILABLE).
    TooManyIds,
}

impl From<TxnError> for CoordError {
    fn from(e: TxnError) -> Self {
        CoordError::Txn(e)
    }
}

/// One transactional id.
#[derive(Debug)]
struct Slot {
    /// Its durable record (`None` while its first record is being written).
    txn: Option<Txn>,
    /// A change is being written, or markers are: requests wait.
    pending: bool,
}

/// Settings from the config.
#[derive(Debug, Clone)]
struct Settings {
    /// `transaction.max.timeout.ms`.
    timeout_max_ms: i32,
    /// `transactional.id.expiration.ms`.
    id_expiration_ms: i64,
    /// Timeout and expiry check period.
    check_interval: Duration,
    /// Most ids held.
    ids_max: usize,
}

/// Backoff between attempts at markers that failed (a partition offline).
const MARKER_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest backoff between marker attempts.
const MARKER_RETRY_MAX: Duration = Duration::from_secs(5);

/// The transaction coordinator (this broker coordinates every transactional id).
pub struct TxnCoordinator {
    /// From the config.
    settings: Settings,
    /// Transactional ids.
    txns: Mutex<HashMap<String, Slot>>,
    /// The transaction state log.
    store: StateLog,
    /// Fresh producer ids.
    fresh_pid: FreshPid,
    /// Set once the broker is up: markers go there.
    sink: OnceLock<Arc<dyn MarkerSink>>,
    /// Writes hold this shared; a compaction holds it exclusively, so no
    /// write is in flight in the segments it deletes.
    gate: tokio::sync::RwLock<()>,
    /// Set at shutdown.
    closing: AtomicBool,
    /// The state log has grown enough: the check task compacts it.
    compact_due: AtomicBool,
}

impl std::fmt::Debug for TxnCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnCoordinator").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TxnCoordinator {
    /// Replays the transaction state log in `log` (blocking work on the pool).
    pub async fn open(
        config: &Config,
        log: Arc<Partition>,
        syncer: Syncer,
        fresh_pid: FreshPid,
    ) -> io::Result<Arc<TxnCoordinator>> {
        let compact = config.group_log_compact_bytes;
        let (store, snapshot) =
            tokio::task::spawn_blocking(move || StateLog::open(log, syncer, compact))
                .await
                .map_err(io::Error::other)?
                .map_err(|e| io::Error::other(format!("replaying the transaction log: {e}")))?;
        let mut txns = HashMap::new();
        for (key, (_, value)) in snapshot {
            let Some(id) = records::txn_id_of(&key) else {
                tracing::warn!("skipping an unreadable transaction log record");
                continue;
            };
            match records::decode_txn(&id, &value) {
                Some(t) => {
                    txns.insert(
                        id,
                        Slot {
                            txn: Some(t),
                            pending: false,
                        },
                    );
                }
                None => tracing::warn!(id, "skipping an unreadable transaction record"),
            }
        }
        tracing::info!(transactional_ids = txns.len(), "transaction log replayed");
        Ok(Arc::new(TxnCoordinator {
            settings: Settings {
                timeout_max_ms: config.transaction_max_timeout_ms,
                id_expiration_ms: config.transactional_id_expiration_ms,
                check_interval: Duration::from_millis(config.transaction_check_interval_ms),
                ids_max: config.transactional_ids_max,
            },
            txns: Mutex::new(txns),
            store,
            fresh_pid,
            sink: OnceLock::new(),
            gate: tokio::sync::RwLock::new(()),
            closing: AtomicBool::new(false),
            compact_due: AtomicBool::new(false),
        }))
    }

    /// Starts serving: markers go to `sink`; transactions a crash left
    /// completing are completed; the timeout and expiry task starts.
    pub fn start(self: &Arc<Self>, sink: Arc<dyn MarkerSink>) {
        let _ = self.sink.set(sink);
        let completing: Vec<(String, Markers)> = {
            let mut txns = lock(&self.txns);
            txns.iter_mut()
                .filter_map(|(id, slot)| {
                    let m = slot.txn.as_ref().and_then(state::recover)?;
                    slot.pending = true;
                    Some((id.clone(), m))
                })
                .collect()
        };
        for (id, m) in completing {
            tracing::info!(transactional_id = %id, commit = m.commit,
                "completing a transaction the last run left in flight");
            let me = self.clone();
            tokio::spawn(async move { me.complete(id, m, None).await });
        }
        tokio::spawn(check_task(
            Arc::downgrade(self),
            self.settings.check_interval,
        ));
    }

    /// Stops taking requests (shutdown); marker retries end.
    pub fn begin_shutdown(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Takes the id's lock-free checks and marks it pending if `f` returns a
    /// step; `f` gets the durable record and whether a change is in flight.
    fn begin<T>(
        &self,
        id: &str,
        create: bool,
        f: impl FnOnce(Option<&Txn>, bool) -> Result<T, TxnError>,
        step_of: impl Fn(&T) -> Option<&Step>,
    ) -> Result<T, CoordError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(CoordError::NotCoordinator);
        }
        let mut txns = lock(&self.txns);
        if !txns.contains_key(id) {
            if !create {
                return Ok(f(None, false)?);
            }
            if txns.len() >= self.settings.ids_max {
                tracing::warn!(
                    ids = txns.len(),
                    "transactional_ids_max reached: refusing a new transactional id"
                );
                return Err(CoordError::TooManyIds);
            }
        }
        let (txn, pending) = txns
            .get(id)
            .map_or((None, false), |s| (s.txn.as_ref(), s.pending));
        let out = f(txn, pending)?;
        if step_of(&out).is_some() {
            txns.entry(id.to_string())
                .or_insert(Slot {
                    txn: None,
                    pending: false,
                })
                .pending = true;
        }
        Ok(out)
    }

    /// Clears the id's pending flag (and drops a slot whose first record failed).
    fn end_pending(&self, id: &str) {
        let mut txns = lock(&self.txns);
        if let Some(s) = txns.get_mut(id) {
            s.pending = false;
            if s.txn.is_none() {
                txns.remove(id);
            }
        }
    }

    /// Writes `t` durably, then makes it the id's record. False (logged) if
    /// the write failed.
    async fn persist(&self, t: &Txn) -> bool {
        let _gate = self.gate.read().await;
        let entry = Entry {
            key: records::txn_key(&t.id),
            version: self.store.next_version(),
            value: Some(records::txn_value(t)),
        };
        match self.store.write(vec![entry]).await {
            Ok(compact) => {
                if let Some(s) = lock(&self.txns).get_mut(&t.id) {
                    s.txn = Some(t.clone());
                }
                if compact {
                    // Started by whoever holds an `Arc`: see `check_task`.
                    self.compact_due.store(true, Ordering::Release);
                }
                true
            }
            Err(e) => {
                tracing::error!(transactional_id = %t.id, error = %e, "writing the transaction log failed");
                false
            }
        }
    }

    /// Runs a step: persists it, answers, and completes its markers if any
    /// (`wait_markers`: answer only after the first marker attempt).
    async fn run(self: &Arc<Self>, step: Step, wait_markers: bool) -> Result<Answer, CoordError> {
        let id = step.next.id.clone();
        if !self.persist(&step.next).await {
            self.end_pending(&id);
            return Err(CoordError::NotCoordinator);
        }
        match step.markers {
            None => {
                self.end_pending(&id);
            }
            Some(m) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let me = self.clone();
                tokio::spawn(async move { me.complete(id, m, Some(tx)).await });
                if wait_markers {
                    let _ = rx.await;
                }
            }
        }
        Ok(step.answer)
    }

    /// Writes the markers (retrying with backoff until they land or the broker
    /// stops), then records the transaction complete. `first` is told once it
    /// is complete, or after a first attempt that failed (the outcome is
    /// durable either way; the retries go on).
    async fn complete(
        self: Arc<Self>,
        id: String,
        m: Markers,
        mut first: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let Some(sink) = self.sink.get().cloned() else {
            return;
        };
        let mut backoff = MARKER_RETRY_MIN;
        loop {
            match sink.write_markers(m.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                    tracing::warn!(transactional_id = %id, error = %e,
                        "writing transaction markers failed; retrying");
                    if self.closing.load(Ordering::Acquire) {
                        // The next start completes it from the log.
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MARKER_RETRY_MAX);
                }
            }
        }
        if self.closing.load(Ordering::Acquire) {
            // Some partitions may have closed before their marker: the next
            // start writes them all again (they are idempotent) and completes.
            return;
        }
        let done = lock(&self.txns)
            .get(&id)
            .and_then(|s| s.txn.as_ref())
            .and_then(|t| state::markers_written(t, now_ms()));
        if let Some(done) = done {
            if !self.persist(&done).await {
                // The transaction stays Prepare*: the next start writes the
                // markers again (they are idempotent) and completes it.
                tracing::error!(transactional_id = %id, "cannot record a completed transaction");
            }
        }
        self.end_pending(&id);
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), CoordError> {
        let fresh = (self.fresh_pid)()
            .await
            .map_err(|_| CoordError::NotCoordinator)?;
        let req = InitRequest {
            timeout_ms,
            expected,
        };
        let max = self.settings.timeout_max_ms;
        let step = self.begin(
            id,
            true,
            |cur, pending| {
                state::init_producer_id(cur, pending, id, req, max, &mut || fresh, now_ms())
            },
            |s| Some(s),
        )?;
        // A retried InitProducerId answered from the record as it is: nothing to write.
        let unchanged = lock(&self.txns)
            .get(id)
            .and_then(|s| s.txn.as_ref())
            .is_some_and(|t| *t == step.next && step.markers.is_none());
        if unchanged {
            self.end_pending(id);
            return match step.answer {
                Answer::ProducerId(p, e) => Ok((p, e)),
                _ => Err(CoordError::Txn(TxnError::ConcurrentTransactions)),
            };
        }
        match self.run(step, false).await? {
            Answer::ProducerId(p, e) => Ok((p, e)),
            Answer::Retry | Answer::Ok => Err(CoordError::Txn(TxnError::ConcurrentTransactions)),
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group log's partition).
    pub async fn add_partitions(
        self: &Arc<Self>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), CoordError> {
        let step = self.begin(
            id,
            false,
            |cur, pending| {
                state::add_partitions(cur, pending, producer_id, epoch, partitions, now_ms())
            },
            Option::as_ref,
        )?;
        match step {
            None => Ok(()),
            Some(step) => self.run(step, false).await.map(|_| ()),
        }
    }

    /// Checks that `partitions` are all in the open transaction (AddPartitionsToTxn
    /// v4 `verify_only`): the ones that are not.
    pub fn missing_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<(String, i32)>, CoordError> {
        let txns = lock(&self.txns);
        let t = state::check_producer(
            txns.get(id).and_then(|s| s.txn.as_ref()),
            producer_id,
            epoch,
        )?;
        Ok(partitions
            .iter()
            .filter(|p| t.state != TxnState::Ongoing || !t.partitions.contains(*p))
            .cloned()
            .collect())
    }

    /// EndTxn: answers once the outcome is durable and the markers were tried.
    pub async fn end_txn(
        self: &Arc<Self>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), CoordError> {
        let step = self.begin(
            id,
            false,
            |cur, pending| state::end_txn(cur, pending, producer_id, epoch, commit, now_ms()),
            Option::as_ref,
        )?;
        match step {
            None => Ok(()),
            Some(step) => self.run(step, true).await.map(|_| ()),
        }
    }

    /// The record of one transactional id (DescribeTransactions).
    pub fn describe(&self, id: &str) -> Option<Txn> {
        lock(&self.txns)
            .get(id)
            .and_then(|s| s.txn.clone())
            .filter(|t| t.state != TxnState::Dead)
    }

    /// Every transactional id's record (ListTransactions), by id.
    pub fn list(&self) -> Vec<Txn> {
        let mut v: Vec<Txn> = lock(&self.txns)
            .values()
            .filter_map(|s| s.txn.clone())
            .filter(|t| t.state != TxnState::Dead)
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Aborts the open transactions past their timeout (fencing their
    /// producers) and forgets ids idle past `transactional.id.expiration.ms`.
    async fn check(self: &Arc<Self>) {
        let now = now_ms();
        let (due, idle): (Vec<String>, Vec<String>) = {
            let mut txns = lock(&self.txns);
            let mut due = Vec::new();
            let mut idle = Vec::new();
            let mut stuck = Vec::new();
            for (id, s) in txns.iter_mut() {
                let Some(t) = s.txn.as_ref().filter(|_| !s.pending) else {
                    continue;
                };
                // Markers written but the completion record failed: try again.
                if let Some(m) = state::recover(t) {
                    s.pending = true;
                    stuck.push((id.clone(), m));
                    continue;
                }
                match t.state {
                    TxnState::Ongoing
                        if now >= t.start_ms.saturating_add(i64::from(t.timeout_ms)) =>
                    {
                        due.push(id.clone())
                    }
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                        if now.saturating_sub(t.updated_ms) >= self.settings.id_expiration_ms =>
                    {
                        idle.push(id.clone())
                    }
                    _ => {}
                }
            }
            drop(txns);
            for (id, m) in stuck {
                let me = self.clone();
                tokio::spawn(async move { me.complete(id, m, None).await });
            }
            (due, idle)
        };
        for id in due {
            let Ok(fresh) = (self.fresh_pid)().await else {
                continue;
            };
            let step = self.begin(
                &id,
                false,
                |cur, pending| {
                    Ok(cur.and_then(|t| state::expire(t, pending, &mut || fresh, now_ms())))
                },
                Option::as_ref,
            );
            if let Ok(Some(step)) = step {
                tracing::info!(transactional_id = %id, timeout_ms = step.next.timeout_ms,
                    "aborting a transaction past its timeout");
                let _ = self.run(step, false).await;
            }
        }
        for id in idle {
            self.expire_id(&id).await;
        }
        if self.compact_due.swap(false, Ordering::AcqRel) {
            self.compact().await;
        }
    }

    /// Forgets an idle transactional id: a tombstone, then removal. Checked
    /// again under the lock: it may have been used since it was found idle.
    async fn expire_id(&self, id: &str) {
        {
            let mut txns = lock(&self.txns);
            let now = now_ms();
            match txns.get_mut(id) {
                Some(s)
                    if !s.pending
                        && s.txn.as_ref().is_some_and(|t| {
                            matches!(
                                t.state,
                                TxnState::Empty
                                    | TxnState::CompleteCommit
                                    | TxnState::CompleteAbort
                            ) && now.saturating_sub(t.updated_ms) >= self.settings.id_expiration_ms
                        }) =>
                {
                    s.pending = true
                }
                _ => return,
            }
        }
        let _gate = self.gate.read().await;
        let entry = Entry {
            key: records::txn_key(id),
            version: self.store.next_version(),
            value: None,
        };
        let ok = self.store.write(vec![entry]).await.is_ok();
        let mut txns = lock(&self.txns);
        if ok {
            txns.remove(id);
            tracing::info!(transactional_id = %id, "expired an idle transactional id");
        } else if let Some(s) = txns.get_mut(id) {
            s.pending = false;
        }
    }

    /// Rewrites every live record after a roll and drops the log before it.
    /// Holds the write gate: no write is in flight meanwhile, and every
    /// durable change is in memory.
    async fn compact(&self) {
        let _gate = self.gate.write().await;
        let base = match self.store.begin_snapshot().await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "transaction log compaction failed to roll");
                return;
            }
        };
        let entries: Vec<Entry> = lock(&self.txns)
            .values()
            .filter_map(|s| s.txn.as_ref())
            .map(|t| Entry {
                key: records::txn_key(&t.id),
                version: self.store.next_version(),
                value: Some(records::txn_value(t)),
            })
            .collect();
        if let Err(e) = self.store.finish_snapshot(base, entries).await {
            tracing::error!(error = %e, "transaction log compaction failed");
        }
    }

    /// Transactional ids by state name, for the metrics.
    pub fn state_counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for s in lock(&self.txns).values() {
            if let Some(t) = &s.txn {
                *counts.entry(t.state.name()).or_default() += 1;
            }
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }
}

/// Runs [`TxnCoordinator::check`] every interval until the coordinator is dropped.
async fn check_task(me: std::sync::Weak<TxnCoordinator>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(me) = me.upgrade() else { return };
        if me.closing.load(Ordering::Acquire) {
            return;
        }
        me.check().await;
    }
}
