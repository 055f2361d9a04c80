//! Group commit: producers with acks=all (and the state log) queue what they need
//! durable; the flusher takes everything queued, fsyncs each partition once, and
//! answers all of them. Between bursts it flushes every partition on a cadence.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Partition, PartitionError, Storage};
use crate::config::Config;
use crate::log::FsFile;

/// A request to make partitions durable up to given offsets: one per produce
/// request, so the queue bound counts waiting requests, not partitions.
pub(super) struct SyncRequest {
    /// `(partition, offset)` pairs not yet durable when the request was queued.
    targets: Vec<(Arc<Partition>, i64)>,
    /// Answered once every target is on stable storage (true) or cannot be (false).
    done: oneshot::Sender<bool>,
}

/// A handle on the group-commit flusher: wait until data is on stable storage.
#[derive(Debug, Clone)]
pub struct Syncer {
    /// Queue to the flusher task, bounded by `sync_queue_max` (backpressure).
    tx: mpsc::Sender<SyncRequest>,
}

impl std::fmt::Debug for SyncRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRequest")
            .field("targets", &self.targets.len())
            .finish()
    }
}

impl Syncer {
    /// A handle and the queue the flusher task reads.
    pub(super) fn new(queue_max: usize) -> (Syncer, mpsc::Receiver<SyncRequest>) {
        let (tx, rx) = mpsc::channel(queue_max.max(1));
        (Syncer { tx }, rx)
    }

    /// Waits until every `(partition, offset)` is on stable storage (group commit:
    /// concurrent callers share fsyncs). Fails once the data directory is offline.
    pub async fn wait_durable(
        &self,
        mut targets: Vec<(Arc<Partition>, i64)>,
    ) -> Result<(), PartitionError> {
        targets.retain(|(p, offset)| p.flushed_offset() < *offset);
        if targets.is_empty() {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        if self.tx.send(SyncRequest { targets, done }).await.is_err() {
            // The flusher ends only with the storage runtime.
            return Err(PartitionError::Offline);
        }
        match rx.await {
            Ok(true) => Ok(()),
            _ => Err(PartitionError::Offline),
        }
    }
}

impl Syncer {
    /// Asks for `targets` to be made durable without waiting (`flush.messages`
    /// reached). If the queue is full the request is dropped rather than waited
    /// for: the flusher is busy, and the partition's `flush.ms` still bounds how
    /// long its data stays unflushed.
    pub fn request_flush(&self, targets: Vec<(Arc<Partition>, i64)>) {
        let (done, _) = oneshot::channel();
        let _ = self.tx.try_send(SyncRequest { targets, done });
    }
}

/// The flusher's settings, from the broker config.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Flush everything on this cadence between bursts (acks=0/1 data).
    interval: Duration,
    /// fdatasyncs in flight at once.
    parallelism: usize,
    /// From this many partitions in one round on, one `syncfs` instead.
    syncfs_min: usize,
}

impl Settings {
    /// The flusher's part of the broker config.
    pub(super) fn from_config(c: &Config) -> Settings {
        Settings {
            interval: Duration::from_millis(c.flush_interval_ms.max(1)),
            parallelism: c.sync_parallelism.max(1),
            syncfs_min: c.syncfs_partitions_min,
        }
    }
}

/// fsyncs each partition once, outside its lock, and records how far it is durable.
fn sync_partitions(parts: &[Arc<Partition>]) -> std::io::Result<()> {
    for p in parts {
        let Some((file, end)) = p.sync_target() else {
            continue;
        };
        file.sync_data()?;
        p.mark_flushed(end);
    }
    Ok(())
}

/// Makes every partition in `parts` durable with one `syncfs(2)` of the data
/// directory's filesystem: one journal commit and one device flush, where
/// fdatasync would cost one of each per partition.
fn sync_filesystem(parts: &[Arc<Partition>]) -> std::io::Result<()> {
    let targets: Vec<(&Arc<Partition>, Arc<dyn FsFile>, i64)> = parts
        .iter()
        .filter_map(|p| p.sync_target().map(|(file, end)| (p, file, end)))
        .collect();
    let Some((_, file, _)) = targets.first() else {
        return Ok(());
    };
    file.sync_filesystem()?;
    for (p, _, end) in targets {
        p.mark_flushed(end);
    }
    Ok(())
}

/// Makes `parts` durable. Up to `syncfs_min` partitions: fdatasync each, with up
/// to `parallelism` in flight (the device and the journal merge concurrent
/// flushes). From there on: one `syncfs`, which also writes other dirty files of
/// the filesystem but costs one flush instead of hundreds.
async fn sync_round(parts: Vec<Arc<Partition>>, s: Settings) -> std::io::Result<()> {
    if parts.is_empty() {
        return Ok(());
    }
    let join = |r: Result<std::io::Result<()>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| Err(std::io::Error::other(format!("sync task failed: {e}"))))
    };
    if parts.len() >= s.syncfs_min {
        return join(tokio::task::spawn_blocking(move || sync_filesystem(&parts)).await);
    }
    let per_task = parts.len().div_ceil(s.parallelism);
    let mut tasks = Vec::with_capacity(s.parallelism);
    let mut rest = parts;
    while !rest.is_empty() {
        let tail = rest.split_off(per_task.min(rest.len()));
        let chunk = std::mem::replace(&mut rest, tail);
        tasks.push(tokio::task::spawn_blocking(move || sync_partitions(&chunk)));
    }
    let mut result = Ok(());
    for t in tasks {
        let r = join(t.await);
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// The flusher task: takes every queued request, fsyncs each partition once, and
/// answers all of them. Between bursts it flushes on `interval`. Ends when the
/// storage runtime is dropped.
pub(super) async fn run(mut rx: mpsc::Receiver<SyncRequest>, storage: Weak<Storage>, s: Settings) {
    let mut tick = tokio::time::interval(s.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When partitions were last checked against their `flush.ms`: under steady
    // acks=all traffic the round is never empty, so the check rides along.
    let mut last_pass = tokio::time::Instant::now();
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            req = rx.recv() => match req {
                Some(r) => batch.push(r),
                None => return,
            },
            _ = tick.tick() => {}
        }
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let requests = batch.len();
        let Some(storage) = storage.upgrade() else {
            return;
        };
        let parts: Vec<Arc<Partition>> = {
            // Raw pointers identify partitions; the set ends before any await.
            let mut seen = HashSet::new();
            let mut parts: Vec<Arc<Partition>> = batch
                .iter()
                .flat_map(|r| r.targets.iter())
                .filter(|(p, _)| seen.insert(Arc::as_ptr(p)))
                .map(|(p, _)| p.clone())
                .collect();
            if batch.is_empty() || last_pass.elapsed() >= s.interval {
                // The periodic pass: partitions whose `flush.ms` has come round.
                last_pass = tokio::time::Instant::now();
                let now = crate::clock::now_ms();
                parts.extend(
                    storage
                        .partitions()
                        .into_iter()
                        .filter(|p| p.flush_due(now) && seen.insert(Arc::as_ptr(p))),
                );
            }
            parts
        };
        if requests > 0 {
            crate::metrics::group_commit(requests, parts.len(), rx.len());
        }
        if let Err(e) = sync_round(parts, s).await {
            storage.health.fail("fsync", &e);
        }
        for r in batch {
            // A partition that went offline (or a failed round) was not synced:
            // its waiters hear so instead of a false acknowledgement.
            let durable = r
                .targets
                .iter()
                .all(|(p, o)| p.flushed_offset() >= *o || p.is_deleted());
            let _ = r.done.send(durable && !storage.health.is_offline());
        }
    }
}
