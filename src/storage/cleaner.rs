//! The log cleaner threads: each picks the dirtiest compacted partition whose
//! cleaning is due and cleans it (see `log::cleaner` for a cleaning's phases).
//! They are plain threads, not tokio tasks: a cleaning reads and writes whole
//! segments and sleeps to keep under `--log-cleaner-io-bytes-per-second`.
//! The partition lock is held only to plan and to swap, so produce and fetch
//! go on meanwhile.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Partition, PartitionError, Storage};
use crate::clock::now_ms;
use crate::log::cleaner::{self, CleanError, CleanReport, OffsetMap, Throttle};

/// The cleaner's settings (broker flags).
#[derive(Debug, Clone, Copy)]
pub struct CleanerConfig {
    /// Cleaner threads; 0 disables compaction (`log.cleaner.threads`,
    /// `log.cleaner.enable=false`).
    pub threads: usize,
    /// Memory for the offset maps, shared by the threads
    /// (`log.cleaner.dedupe.buffer.size`).
    pub dedupe_buffer_bytes: u64,
    /// Read plus write rate of all cleaning, 0 unlimited
    /// (`log.cleaner.io.max.bytes.per.second`).
    pub io_bytes_per_second: u64,
    /// Pause when no partition needs cleaning (`log.cleaner.backoff.ms`).
    pub backoff: Duration,
}

/// A partition whose cleaning failed (a damaged segment, a full disk) is
/// left alone this many backoffs (5 minutes at Kafka's 15 s), so it neither
/// spins the cleaner nor starves the other partitions.
const FAILED_BACKOFF_FACTOR: u32 = 20;

/// Tells the cleaner threads to stop, waking them from their pause.
#[derive(Debug, Default)]
pub struct CleanerStop {
    /// Set once to stop.
    stopped: Mutex<bool>,
    /// Wakes paused threads.
    wake: Condvar,
    /// Lock-free copy of `stopped`, asked between batches.
    flag: AtomicBool,
}

impl CleanerStop {
    /// Stops every cleaner thread; a cleaning in progress is abandoned (its
    /// staged files are removed at the next start).
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.flag.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Waits up to `d`; true if stopped.
    fn pause(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, d, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// Starts the cleaner threads (none when `config.threads` is 0).
pub(super) fn spawn(storage: Weak<Storage>, config: CleanerConfig, stop: Arc<CleanerStop>) {
    let threads = config.threads;
    for n in 0..threads {
        let (storage, stop) = (storage.clone(), stop.clone());
        let map_bytes = config.dedupe_buffer_bytes / threads as u64;
        let spawned = std::thread::Builder::new()
            .name(format!("sluice-cleaner-{n}"))
            .spawn(move || run(storage, config, map_bytes, stop));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a log cleaner thread; compaction is off");
        }
    }
}

/// One cleaner thread's loop.
fn run(storage: Weak<Storage>, config: CleanerConfig, map_bytes: u64, stop: Arc<CleanerStop>) {
    let mut map = OffsetMap::with_memory(map_bytes);
    loop {
        if stop.is_stopped() {
            return;
        }
        let Some(s) = storage.upgrade() else {
            return;
        };
        let parts = s.partitions();
        drop(s);
        let now = now_ms();
        let mut best: Option<(Arc<Partition>, f64)> = None;
        for p in parts {
            let Ok(Some(d)) = p.dirtiness_blocking(now) else {
                continue;
            };
            p.note_dirty_ratio(d.ratio);
            if d.due && p.cleanable_now(now) && best.as_ref().is_none_or(|(_, r)| d.ratio > *r) {
                best = Some((p, d.ratio));
            }
        }
        let Some((p, _)) = best else {
            if stop.pause(config.backoff) {
                return;
            }
            continue;
        };
        if !p.begin_cleaning() {
            // Another thread has it; look again after a pause.
            if stop.pause(config.backoff) {
                return;
            }
            continue;
        }
        let started = Instant::now();
        // Stops at a broker shutdown, and when the topic is deleted.
        let is_stopped = || stop.is_stopped() || p.is_deleted() || p.is_offline();
        let mut throttle = Throttle::new(
            config.io_bytes_per_second / config.threads.max(1) as u64,
            &is_stopped,
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            clean(&p, &mut map, &mut throttle)
        }))
        .unwrap_or_else(|_| Err(CleanFailure::Failed("the cleaning panicked".into())));
        p.end_cleaning();
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(r) => {
                crate::metrics::cleaning_done(r.bytes_before, r.bytes_after, secs);
                tracing::info!(
                    partition = p.index,
                    groups = r.groups,
                    before = r.bytes_before,
                    after = r.bytes_after,
                    removed = r.records_removed,
                    dirty_from = r.upto,
                    seconds = secs,
                    "cleaned"
                );
                if r.groups == 0 {
                    // Nothing swapped in (the plan went stale): look again
                    // after a backoff rather than at once.
                    p.defer_cleaning(now_ms().saturating_add(config.backoff.as_millis() as i64));
                }
                if r.keyless_removed > 0 {
                    tracing::warn!(partition = p.index, records = r.keyless_removed,
                        "the cleaner removed keyless records (written before the topic was compacted), as Kafka's does");
                }
            }
            Err(CleanFailure::Stopped) if stop.is_stopped() => return,
            Err(CleanFailure::Stopped | CleanFailure::Gone) => {}
            Err(CleanFailure::Failed(e)) => {
                let retry = config.backoff * FAILED_BACKOFF_FACTOR;
                tracing::error!(partition = p.index, error = %e, retry_in = ?retry,
                    "cleaning failed; the partition is left as it is until then");
                p.defer_cleaning(now_ms().saturating_add(retry.as_millis() as i64));
            }
        }
    }
}

/// Why a cleaning ended early.
#[derive(Debug)]
enum CleanFailure {
    /// The broker is stopping.
    Stopped,
    /// The partition was deleted or went offline.
    Gone,
    /// Anything else (logged; the next attempt waits a backoff).
    Failed(String),
}

impl From<PartitionError> for CleanFailure {
    fn from(e: PartitionError) -> Self {
        match e {
            PartitionError::Deleted | PartitionError::Offline => CleanFailure::Gone,
            e => CleanFailure::Failed(e.to_string()),
        }
    }
}

impl From<CleanError> for CleanFailure {
    fn from(e: CleanError) -> Self {
        match e {
            CleanError::Stopped => CleanFailure::Stopped,
            e => CleanFailure::Failed(e.to_string()),
        }
    }
}

/// Cleans partition `p` once: plan under the lock, map and stage outside
/// it, swap each group in under the lock.
fn clean(
    p: &Partition,
    map: &mut OffsetMap,
    throttle: &mut Throttle<'_>,
) -> Result<CleanReport, CleanFailure> {
    let now = now_ms();
    let Some(plan) = p.with_log(|log| log.plan_cleaning(now, p.decompressed_bytes_max()))? else {
        return Ok(CleanReport::default());
    };
    let mut gone = None;
    let result = cleaner::run(&plan, map, throttle, now, |staged, upto| {
        p.commit_cleaning_blocking(staged, upto).map_err(|e| {
            let io = io::Error::other(e.to_string());
            gone = Some(e);
            CleanError::Io(io)
        })
    });
    match (result, gone) {
        (Ok(r), _) => Ok(r),
        (Err(_), Some(e)) => Err(e.into()),
        (Err(e), None) => Err(e.into()),
    }
}
