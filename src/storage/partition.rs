//! One partition at run time: its log behind a short-held lock, the offsets
//! readers need without that lock, and the fetches parked on it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::Health;
use crate::clock::now_ms;
use crate::log::compress::Compression;
use crate::log::records;
use crate::log::txn_index::AbortedTxn;
use crate::log::{AppendError, AppendInfo, FileSlice, FsFile, PartitionLog, ReadError};
use crate::waiters::Waiters;

/// Why a partition operation did not happen. `handlers` maps each to a Kafka error.
#[derive(Debug)]
pub enum PartitionError {
    /// The topic was deleted.
    Deleted,
    /// The partition cannot be served: its log was found corrupt at start-up, an
    /// operation on it failed half-way, or the data directory went offline.
    Offline,
    /// The log refused the append (validation, producer state) or failed it.
    Append(AppendError),
    /// The read was out of range or failed.
    Read(ReadError),
    /// Another file-system failure.
    Io(io::Error),
}

impl std::fmt::Display for PartitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionError::Deleted => write!(f, "the topic was deleted"),
            PartitionError::Offline => write!(f, "the partition is offline"),
            PartitionError::Append(e) => write!(f, "{e}"),
            PartitionError::Read(ReadError::OutOfRange {
                log_start_offset,
                log_end_offset,
            }) => write!(
                f,
                "offset out of range [{log_start_offset}, {log_end_offset}]"
            ),
            PartitionError::Read(ReadError::Io(e)) | PartitionError::Io(e) => {
                write!(f, "i/o error: {e}")
            }
        }
    }
}

impl PartitionError {
    /// The file-system error underneath, if there is one (for log lines that
    /// name an exhausted resource).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            PartitionError::Append(AppendError::Io(e))
            | PartitionError::Read(ReadError::Io(e))
            | PartitionError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for PartitionError {
    fn from(e: io::Error) -> Self {
        PartitionError::Io(e)
    }
}

/// A partition's size and offsets, as the metrics report them.
#[derive(Debug, Clone, Copy)]
pub struct PartitionStats {
    /// First offset stored.
    pub log_start_offset: i64,
    /// Offset the next record gets (the high watermark on one replica).
    pub log_end_offset: i64,
    /// Bytes of every segment.
    pub size_bytes: u64,
    /// Segment files.
    pub segments: usize,
}

/// A check of one batch header an append runs under the log lock (the
/// transaction verification of Produce).
pub type BatchCheck<'a> = dyn Fn(&crate::log::BatchHeader) -> Result<(), AppendError> + 'a;

/// One partition: its log plus what readers need without taking the log lock.
#[derive(Debug)]
pub struct Partition {
    /// Partition number within its topic.
    pub index: i32,
    /// The log; `None` when it could not be loaded (served as offline). Locked only
    /// inside blocking tasks, for short sections.
    log: Mutex<Option<PartitionLog>>,
    /// Log end offset (= high watermark on a single replica), readable lock-free.
    log_end: AtomicI64,
    /// Log start offset, readable lock-free.
    log_start: AtomicI64,
    /// Last stable offset (below it every transaction is decided), readable lock-free.
    lso: AtomicI64,
    /// Every offset below this is fsynced; read lock-free by producers waiting on acks=all.
    flushed: AtomicI64,
    /// Fetches parked until this partition gets data. Each connection parks at most
    /// one fetch, so the list is bounded by `connections_max`; dead entries are pruned.
    waiters: Waiters,
    /// Set when the topic is deleted: operations fail and parked fetches wake.
    deleted: AtomicBool,
    /// Set when this partition's log can no longer be trusted in memory (a panic
    /// while its lock was held, or a failed write that could not be cut off).
    offline: AtomicBool,
    /// The data directory's health: once it is offline, so is every partition.
    health: Arc<Health>,
    /// Appended batches may inflate to at most this (`decompressed_batch_bytes_max`).
    decompressed_bytes_max: u64,
    /// `flush.messages`: 1 (the default) makes acks=all wait for the fsync; more
    /// acknowledges from the page cache and asks for a flush once this many
    /// messages are unflushed.
    flush_messages: AtomicI64,
    /// `flush.ms`: the flusher's periodic pass syncs this partition once its last
    /// flush is at least this old.
    flush_ms: AtomicI64,
    /// When the partition was last flushed (ms), for `flush.ms`.
    last_flush_ms: AtomicI64,
    /// The topic's `compression.type` (a copy of the log config's), read
    /// before the log lock so recompression runs outside it.
    compression: Mutex<Option<Compression>>,
    /// A cleaner thread is cleaning this partition (one at a time).
    cleaning: AtomicBool,
    /// After a failed cleaning, the cleaner leaves this partition alone until
    /// this time (ms), so one damaged log does not starve the others.
    clean_retry_at: AtomicI64,
    /// The dirty ratio the cleaner last saw (f64 bits; NaN for logs that are
    /// not compacted), for the metrics.
    dirty_ratio: AtomicU64,
}

/// How a partition's data reaches stable storage (`flush.messages`, `flush.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// `flush.messages` (at least 1).
    pub messages: i64,
    /// `flush.ms` (at least 0).
    pub ms: i64,
}

impl FlushPolicy {
    /// Whether acks=all must wait for the fsync.
    pub fn sync_before_ack(&self) -> bool {
        self.messages <= 1
    }
}

impl Partition {
    /// A partition serving `log`.
    pub fn new(
        index: i32,
        log: PartitionLog,
        health: Arc<Health>,
        decompressed_bytes_max: u64,
    ) -> Partition {
        Partition {
            index,
            log_end: AtomicI64::new(log.log_end_offset()),
            log_start: AtomicI64::new(log.log_start_offset()),
            lso: AtomicI64::new(log.last_stable_offset()),
            flushed: AtomicI64::new(log.flushed_offset()),
            compression: Mutex::new(log.config().compression),
            log: Mutex::new(Some(log)),
            waiters: Waiters::new(),
            deleted: AtomicBool::new(false),
            offline: AtomicBool::new(false),
            health,
            decompressed_bytes_max,
            flush_messages: AtomicI64::new(1),
            flush_ms: AtomicI64::new(0),
            last_flush_ms: AtomicI64::new(crate::clock::now_ms()),
            cleaning: AtomicBool::new(false),
            clean_retry_at: AtomicI64::new(0),
            dirty_ratio: AtomicU64::new(f64::NAN.to_bits()),
        }
    }

    /// A partition whose log could not be loaded: every operation answers
    /// [`PartitionError::Offline`] until the operator repairs it and restarts.
    pub fn offline(index: i32, health: Arc<Health>) -> Partition {
        Partition {
            index,
            log_end: AtomicI64::new(-1),
            log_start: AtomicI64::new(-1),
            lso: AtomicI64::new(-1),
            flushed: AtomicI64::new(-1),
            log: Mutex::new(None),
            waiters: Waiters::new(),
            deleted: AtomicBool::new(false),
            offline: AtomicBool::new(true),
            health,
            decompressed_bytes_max: 0,
            flush_messages: AtomicI64::new(1),
            flush_ms: AtomicI64::new(0),
            last_flush_ms: AtomicI64::new(0),
            compression: Mutex::new(None),
            cleaning: AtomicBool::new(false),
            clean_retry_at: AtomicI64::new(0),
            dirty_ratio: AtomicU64::new(f64::NAN.to_bits()),
        }
    }

    /// Sets `flush.messages` and `flush.ms` (a topic config change applies at once).
    pub fn set_flush_policy(&self, p: FlushPolicy) {
        self.flush_messages
            .store(p.messages.max(1), Ordering::Release);
        self.flush_ms.store(p.ms.max(0), Ordering::Release);
    }

    /// The partition's `flush.messages` and `flush.ms`.
    pub fn flush_policy(&self) -> FlushPolicy {
        FlushPolicy {
            messages: self.flush_messages.load(Ordering::Acquire),
            ms: self.flush_ms.load(Ordering::Acquire),
        }
    }

    /// Messages appended but not yet fsynced.
    pub fn unflushed(&self) -> i64 {
        (self.high_watermark() - self.flushed_offset()).max(0)
    }

    /// Whether the periodic flush should sync this partition now (`flush.ms`).
    pub(super) fn flush_due(&self, now_ms: i64) -> bool {
        self.unflushed() > 0
            && now_ms.saturating_sub(self.last_flush_ms.load(Ordering::Acquire))
                >= self.flush_ms.load(Ordering::Acquire)
    }

    /// The log lock, poison or not: for callers that only order themselves after
    /// in-flight operations or close the log.
    fn lock_raw(&self) -> MutexGuard<'_, Option<PartitionLog>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the log if the partition can be served.
    pub(super) fn with_log<R>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> R,
    ) -> Result<R, PartitionError> {
        let mut guard = match self.log.lock() {
            Ok(g) => g,
            Err(_) => {
                // A panic mid-operation may have left memory and disk apart.
                if !self.offline.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        partition = self.index,
                        "an operation on this partition panicked; it is offline until restart"
                    );
                }
                return Err(PartitionError::Offline);
            }
        };
        if self.is_deleted() {
            return Err(PartitionError::Deleted);
        }
        if self.is_offline() {
            return Err(PartitionError::Offline);
        }
        match guard.as_mut() {
            Some(log) => Ok(f(log)),
            None => Err(PartitionError::Offline),
        }
    }

    /// High watermark: every offset below it is readable.
    pub fn high_watermark(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// Last stable offset: what read_committed consumers may read up to.
    pub fn last_stable_offset(&self) -> i64 {
        self.lso.load(Ordering::Acquire)
    }

    /// First offset still stored.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Whether the topic was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Whether the partition cannot be served (its own state, or the data directory's).
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire) || self.health.is_offline()
    }

    /// Marks the partition deleted once in-flight operations are done, and wakes
    /// its parked fetches.
    pub fn mark_deleted(&self) {
        {
            // Taking the log lock orders this after any in-flight append.
            let _log = self.lock_raw();
            self.deleted.store(true, Ordering::Release);
        }
        self.wake_waiters();
    }

    /// Registers a parked fetch to be notified on the next append.
    pub fn register_waiter(&self, n: &Arc<Notify>) {
        self.waiters.register(n);
    }

    /// Wakes every parked fetch (after an append, a deletion or a failure).
    pub fn wake_waiters(&self) {
        self.waiters.wake();
    }

    /// Validates `records` completely (outside the log lock), then appends them
    /// (blocking; call from a blocking task).
    pub fn append_blocking(&self, records: &[u8]) -> Result<AppendInfo, PartitionError> {
        self.append_checked(records, None)
    }

    /// As [`Partition::append_blocking`], with `check` run on each batch header
    /// under the log lock first: nothing else is appended to this partition
    /// (a transaction marker included) between the check and the append.
    pub fn append_checked(
        &self,
        records: &[u8],
        check: Option<&BatchCheck<'_>>,
    ) -> Result<AppendInfo, PartitionError> {
        let invalid = |e| PartitionError::Append(AppendError::Invalid(e));
        let mut valid = records::validate(records, self.decompressed_bytes_max).map_err(invalid)?;
        // Recompression (a topic codec other than the batch's) runs here,
        // outside the log lock, into a buffer this append owns.
        let mut recompressed = Vec::new();
        let target = *self.compression.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(target) = target {
            valid = valid
                .recompressed(target, self.decompressed_bytes_max, &mut recompressed)
                .map_err(|e| invalid(records::InvalidBatch::Records(e)))?;
        }
        self.write_with(|log| {
            if let Some(check) = check {
                for (_, h) in valid.batches() {
                    check(h)?;
                }
            }
            log.append(&valid, now_ms())
        })
    }

    /// Runs one write on the log: a failed write that could not be cut off
    /// takes the partition offline; the offsets readers see are published and
    /// parked fetches wake once it succeeded.
    fn write_with(
        &self,
        write: impl FnOnce(&mut PartitionLog) -> Result<AppendInfo, AppendError>,
    ) -> Result<AppendInfo, PartitionError> {
        let info = self.with_log(|log| {
            let result = write(log);
            if let Err(AppendError::Io(e)) = &result {
                if log.is_damaged() {
                    self.offline.store(true, Ordering::Release);
                    tracing::error!(partition = self.index, error = %e,
                        "a failed write could not be cut off; the partition is offline until restart");
                }
            }
            self.publish_offsets(log);
            result
        })?;
        let info = info.map_err(PartitionError::Append)?;
        self.wake_waiters();
        Ok(info)
    }

    /// Stores the offsets readers see without the lock (after a write).
    fn publish_offsets(&self, log: &PartitionLog) {
        self.log_end.store(log.log_end_offset(), Ordering::Release);
        self.lso.store(log.last_stable_offset(), Ordering::Release);
    }

    /// Appends a COMMIT or ABORT marker for `producer_id`'s transaction
    /// (blocking); parked fetches wake, since the last stable offset may move.
    pub fn append_marker_blocking(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<AppendInfo, PartitionError> {
        self.write_with(|log| {
            log.append_marker(producer_id, epoch, commit, coordinator_epoch, now_ms())
        })
    }

    /// read_committed: whole batches from `offset` below the last stable
    /// offset, with the aborted transactions overlapping what is returned
    /// (blocking).
    pub fn read_committed_blocking(
        &self,
        offset: i64,
        max_bytes: u64,
    ) -> Result<(Option<FileSlice>, Vec<AbortedTxn>), PartitionError> {
        let (slice, aborted) = self
            .with_log(|log| {
                let lso = log.last_stable_offset();
                log.read_below(offset, max_bytes, lso).map(|slice| {
                    let aborted = slice
                        .as_ref()
                        .map(|s| log.aborted_overlapping(offset, s.next_offset))
                        .unwrap_or_default();
                    (slice, aborted)
                })
            })?
            .map_err(PartitionError::Read)?;
        if let Some(s) = &slice {
            s.file.readahead(s.position, s.len);
        }
        Ok((slice, aborted))
    }

    /// Reads whole batches from `offset` (blocking: index lookup and header reads).
    /// Pre-reads the range into the page cache so the later send does not block on disk.
    pub fn read_blocking(
        &self,
        offset: i64,
        max_bytes: u64,
    ) -> Result<Option<FileSlice>, PartitionError> {
        let slice = self
            .with_log(|log| log.read(offset, max_bytes))?
            .map_err(PartitionError::Read)?;
        if let Some(s) = &slice {
            s.file.readahead(s.position, s.len);
        }
        Ok(slice)
    }

    /// As [`Partition::read_blocking`], but no batch starting at or past
    /// `max_offset` (a share fetch reads only what it handed out).
    pub fn read_below_blocking(
        &self,
        offset: i64,
        max_bytes: u64,
        max_offset: i64,
    ) -> Result<Option<FileSlice>, PartitionError> {
        let slice = self
            .with_log(|log| log.read_below(offset, max_bytes, max_offset))?
            .map_err(PartitionError::Read)?;
        if let Some(s) = &slice {
            s.file.readahead(s.position, s.len);
        }
        Ok(slice)
    }

    /// How much of this compacted log awaits the cleaner (`None` for other
    /// logs; blocking: takes the log lock and may read a batch header).
    pub fn dirtiness_blocking(
        &self,
        now_ms: i64,
    ) -> Result<Option<crate::log::partition::Dirtiness>, PartitionError> {
        self.with_log(|log| log.dirtiness(now_ms))
    }

    /// `--decompressed-batch-bytes-max`, which bounds what the cleaner inflates too.
    pub(super) fn decompressed_bytes_max(&self) -> u64 {
        self.decompressed_bytes_max
    }

    /// Records the dirty ratio the cleaner saw, for the metrics.
    pub(super) fn note_dirty_ratio(&self, ratio: f64) {
        self.dirty_ratio.store(ratio.to_bits(), Ordering::Release);
    }

    /// The dirty ratio the cleaner last saw; `None` if it never looked (a
    /// log that is not compacted).
    pub fn dirty_ratio(&self) -> Option<f64> {
        let r = f64::from_bits(self.dirty_ratio.load(Ordering::Acquire));
        (!r.is_nan()).then_some(r)
    }

    /// Claims this partition for one cleaner thread; false if another has it.
    pub(super) fn begin_cleaning(&self) -> bool {
        !self.cleaning.swap(true, Ordering::AcqRel)
    }

    /// Releases the claim of [`Partition::begin_cleaning`].
    pub(super) fn end_cleaning(&self) {
        self.cleaning.store(false, Ordering::Release);
    }

    /// Whether a cleaner may pick this partition now: not claimed, not
    /// backing off after a failure.
    pub(super) fn cleanable_now(&self, now_ms: i64) -> bool {
        !self.cleaning.load(Ordering::Acquire)
            && self.clean_retry_at.load(Ordering::Acquire) <= now_ms
    }

    /// Leaves this partition alone until `until_ms` (a cleaning failed).
    pub(super) fn defer_cleaning(&self, until_ms: i64) {
        self.clean_retry_at.store(until_ms, Ordering::Release);
    }

    /// Swaps a staged cleaning in (blocking); false if the plan went stale. A
    /// swap that failed half-way takes the partition offline: the next start
    /// finishes it from its manifest.
    pub(super) fn commit_cleaning_blocking(
        &self,
        staged: &crate::log::cleaner::Staged,
        upto: Option<i64>,
    ) -> Result<bool, PartitionError> {
        let (done, damaged) = self.with_log(|log| {
            let r = log.commit_cleaning(staged, upto);
            self.publish_offsets(log);
            (r, log.is_damaged())
        })?;
        done.map_err(|e| {
            if damaged {
                self.offline.store(true, Ordering::Release);
                tracing::error!(partition = self.index, error = %e,
                    "a cleaning's swap failed half-way; the partition is offline until a restart finishes it");
            }
            PartitionError::Io(e)
        })
    }

    /// Replaces the log settings (a topic config change); they apply from the
    /// next append, roll or retention pass (blocking: takes the log lock).
    pub fn set_config_blocking(&self, config: crate::log::LogConfig) -> Result<(), PartitionError> {
        *self.compression.lock().unwrap_or_else(|p| p.into_inner()) = config.compression;
        self.with_log(|log| log.set_config(config))
    }

    /// The idempotent producers of this partition (blocking: takes the log lock).
    pub fn producers_blocking(
        &self,
    ) -> Result<Vec<crate::log::producer::ProducerSummary>, PartitionError> {
        self.with_log(|log| log.producers())
    }

    /// The log settings in force (blocking: takes the log lock briefly).
    pub fn config_blocking(&self) -> Result<crate::log::LogConfig, PartitionError> {
        self.with_log(|log| log.config().clone())
    }

    /// Sizes and offsets for the metrics (blocking: takes the log lock briefly).
    pub fn stats_blocking(&self) -> Result<PartitionStats, PartitionError> {
        self.with_log(|log| PartitionStats {
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            size_bytes: log.size_bytes(),
            segments: log.segment_count(),
        })
    }

    /// The timestamp of the first record of the batch holding `offset`, if the
    /// log holds it (blocking: one index lookup and a header read).
    pub fn timestamp_at_blocking(&self, offset: i64) -> Result<Option<i64>, PartitionError> {
        let h = self.with_log(|log| log.header_at(offset))??;
        // A cleaned batch's base timestamp may be its delete horizon (KIP-534).
        Ok(h.map(|h| {
            if h.attributes & crate::log::batch::ATTR_DELETE_HORIZON != 0 {
                h.max_timestamp
            } else {
                h.base_timestamp
            }
        }))
    }

    /// First batch with max timestamp `>= ts`, read into memory (blocking).
    pub fn find_by_timestamp_blocking(&self, ts: i64) -> Result<Option<Vec<u8>>, PartitionError> {
        let slice = self.with_log(|log| log.find_by_timestamp(ts))??;
        Ok(slice.map(|s| s.read_to_vec()).transpose()?)
    }

    /// The batch holding the largest timestamp, with that timestamp (blocking).
    pub fn max_timestamp_batch_blocking(&self) -> Result<Option<(i64, Vec<u8>)>, PartitionError> {
        let found = self.with_log(|log| log.max_timestamp_batch())??;
        Ok(found
            .map(|(ts, s)| s.read_to_vec().map(|v| (ts, v)))
            .transpose()?)
    }

    /// Seals the active segment (if it holds data) and starts a new one; returns the
    /// log end offset, where the new segment begins (blocking).
    pub fn roll_blocking(&self) -> Result<i64, PartitionError> {
        self.with_log(|log| {
            log.roll(now_ms())?;
            Ok(log.log_end_offset())
        })?
    }

    /// DeleteRecords: moves the log start to `offset` (-1: the high watermark),
    /// durably; returns the new log start (blocking).
    pub fn delete_records_blocking(&self, offset: i64) -> Result<i64, PartitionError> {
        self.with_log(|log| {
            let r = log.delete_records(offset);
            self.log_start
                .store(log.log_start_offset(), Ordering::Release);
            r
        })?
        .map_err(PartitionError::Read)
    }

    /// Deletes the sealed segments wholly below `offset` (blocking).
    pub fn delete_before_blocking(&self, offset: i64) -> Result<usize, PartitionError> {
        self.with_log(|log| {
            let n = log.delete_before(offset);
            self.log_start
                .store(log.log_start_offset(), Ordering::Release);
            n
        })?
        .map_err(PartitionError::Io)
    }

    /// Applies `retention.ms` / `retention.bytes` (blocking); returns how many
    /// segments were deleted.
    pub fn apply_retention_blocking(&self, now_ms: i64) -> Result<usize, PartitionError> {
        self.with_log(|log| {
            let n = log.apply_retention(now_ms);
            self.log_start
                .store(log.log_start_offset(), Ordering::Release);
            n
        })?
        .map_err(PartitionError::Io)
    }

    /// Flushes and seals the log for a clean shutdown; later operations are refused.
    pub fn close_blocking(&self) -> io::Result<()> {
        if self.log.is_poisoned() {
            // A panic mid-operation: what the log holds in memory is suspect.
            self.offline.store(true, Ordering::Release);
        }
        let mut log = self.lock_raw();
        // Appends after close would go unindexed: refuse them.
        self.deleted.store(true, Ordering::Release);
        match log.as_mut() {
            Some(l) if !self.is_offline() => l.close(),
            // Never loaded, so never changed: nothing to close.
            None => Ok(()),
            Some(_) => Err(io::Error::other(format!(
                "partition {} is offline",
                self.index
            ))),
        }
    }

    /// The file to sync and the offset it makes durable, or `None` when nothing
    /// is waiting to be synced. Taken under the log lock; the sync runs outside it.
    pub(super) fn sync_target(&self) -> Option<(Arc<dyn FsFile>, i64)> {
        self.with_log(|log| {
            (log.flushed_offset() < log.log_end_offset()).then(|| log.sync_target())
        })
        .ok()
        .flatten()
    }

    /// Records that everything below `end` is durable, once its sync returned.
    pub(super) fn mark_flushed(&self, end: i64) {
        let mut log = self.lock_raw();
        if let Some(log) = log.as_mut() {
            log.mark_flushed(end);
            self.flushed.store(log.flushed_offset(), Ordering::Release);
            self.last_flush_ms
                .store(crate::clock::now_ms(), Ordering::Release);
        }
    }

    /// Every offset below this is on stable storage (lock-free: never waits for an append).
    pub fn flushed_offset(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }
}
