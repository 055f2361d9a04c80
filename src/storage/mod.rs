//! The async runtime over `log`: partitions with their lock-free offsets and
//! parked fetches, the group-commit flusher, retention, and the internal state
//! log that coordinators persist through.
//!
//! Log I/O runs on tokio's blocking pool; locks are `std::sync` and never held
//! across `.await`.
//!
//! Invariant: a failed fsync takes the whole data directory offline ([`Health`]):
//! after one, the page cache can no longer be trusted, so nothing more is
//! acknowledged, and the broker stops (as Kafka does when its last log dir fails).

pub mod cleaner;
pub mod codec;
mod flusher;
pub mod guarded;
pub mod partition;
pub mod retention;
pub mod state_log;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub use flusher::Syncer;
pub use partition::{FlushPolicy, Partition, PartitionError, PartitionStats};

use crate::config::Config;
use crate::log::{Fs, LogConfig, OpenError, PartitionLog};

/// Whether the data directory can still be trusted.
#[derive(Debug)]
pub struct Health {
    /// Set once, by the first failure that leaves memory and disk apart.
    offline: AtomicBool,
    /// Tells watchers (the server) that the directory went offline.
    changed: tokio::sync::watch::Sender<bool>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            offline: AtomicBool::new(false),
            changed: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Health {
    /// Whether the data directory is offline.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Takes the data directory offline after `what` failed with `e`.
    pub fn fail(&self, what: &str, e: &std::io::Error) {
        if !self.offline.swap(true, Ordering::AcqRel) {
            tracing::error!(error = %e,
                "{what} failed: the data directory is offline and nothing more will be acknowledged; \
                 restart the broker to recover from what is on disk");
            self.changed.send_replace(true);
        }
    }

    /// A receiver that becomes true when the data directory goes offline.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.changed.subscribe()
    }
}

/// The storage runtime: every open partition, the flusher and retention tasks.
#[derive(Debug)]
pub struct Storage {
    /// The file system the logs live on (the real one, or a fault-injecting model
    /// in tests), behind the guard that takes the directory offline on a failed fsync.
    pub fs: Arc<dyn Fs>,
    /// The data directory's health, shared with every partition.
    pub health: Arc<Health>,
    /// Handle on the group-commit flusher.
    syncer: Syncer,
    /// Every partition opened here, for the periodic flush and retention; entries
    /// of dropped partitions (deleted topics) are pruned as they are found.
    partitions: Mutex<Vec<Weak<Partition>>>,
    /// `decompressed_batch_bytes_max`, given to every partition's validation.
    decompressed_bytes_max: u64,
    /// Stops the log cleaner threads (at shutdown, before logs close).
    cleaner_stop: Arc<cleaner::CleanerStop>,
}

impl Storage {
    /// Starts the flusher and retention tasks on `fs`, whose every failed fsync
    /// takes the data directory offline. Must run inside a tokio runtime.
    pub fn start(config: &Config, fs: Arc<dyn Fs>) -> Arc<Storage> {
        let health = Arc::new(Health::default());
        let fs: Arc<dyn Fs> = Arc::new(guarded::GuardedFs::new(fs, health.clone()));
        let (syncer, rx) = Syncer::new(config.sync_queue_max);
        let storage = Arc::new(Storage {
            fs,
            health,
            syncer,
            partitions: Mutex::new(Vec::new()),
            decompressed_bytes_max: config.decompressed_batch_bytes_max,
            cleaner_stop: Arc::new(cleaner::CleanerStop::default()),
        });
        cleaner::spawn(
            Arc::downgrade(&storage),
            cleaner::CleanerConfig {
                threads: config.log_cleaner_threads,
                dedupe_buffer_bytes: config.log_cleaner_dedupe_buffer_bytes,
                io_bytes_per_second: config.log_cleaner_io_bytes_per_second,
                backoff: std::time::Duration::from_millis(config.log_cleaner_backoff_ms.max(1)),
            },
            storage.cleaner_stop.clone(),
        );
        tokio::spawn(flusher::run(
            rx,
            Arc::downgrade(&storage),
            flusher::Settings::from_config(config),
        ));
        tokio::spawn(retention::run(
            Arc::downgrade(&storage),
            std::time::Duration::from_millis(config.retention_check_interval_ms.max(1)),
        ));
        storage
    }

    /// Opens (or creates) the log in `dir` as partition `index` (blocking). A log
    /// found corrupt is served as an offline partition instead of failing the
    /// whole broker; other errors (the file system itself failing) are returned.
    pub fn open_partition(
        &self,
        dir: &Path,
        index: i32,
        config: LogConfig,
        recover: bool,
        now_ms: i64,
    ) -> std::io::Result<Arc<Partition>> {
        let p = match PartitionLog::open(self.fs.clone(), dir, config, recover, now_ms) {
            Ok(log) => Partition::new(index, log, self.health.clone(), self.decompressed_bytes_max),
            Err(OpenError::Corrupt(why)) => {
                tracing::error!(dir = %dir.display(), "{why}: serving this partition as offline \
                    (KAFKA_STORAGE_ERROR) until the segment is repaired or removed");
                Partition::offline(index, self.health.clone())
            }
            Err(OpenError::Io(e)) => return Err(e),
        };
        let p = Arc::new(p);
        let mut all = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&p));
        Ok(p)
    }

    /// Stops the log cleaner threads; a cleaning in progress is abandoned
    /// and its staged files removed at the next start.
    pub fn stop_cleaner(&self) {
        self.cleaner_stop.stop();
    }

    /// Every live partition.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        let all = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().filter_map(Weak::upgrade).collect()
    }

    /// Waits until every `(partition, offset)` is on stable storage (group commit:
    /// concurrent callers share fsyncs). Fails if the data directory went offline.
    pub async fn wait_durable(
        &self,
        targets: Vec<(Arc<Partition>, i64)>,
    ) -> Result<(), PartitionError> {
        self.syncer.wait_durable(targets).await
    }

    /// The flusher handle, for components that persist through it.
    pub fn syncer(&self) -> Syncer {
        self.syncer.clone()
    }
}
