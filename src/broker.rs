//! The shared broker state: topics and their partition logs, durability (group
//! commit), long-poll wakeups, retention and clean shutdown.
//!
//! Locks are `std::sync` and held only for short, non-async sections; log I/O runs
//! on tokio's blocking pool, never on a worker thread.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

use crate::config::Config;
use crate::group::Coordinator;
use crate::log::segment::sync_dir;
use crate::log::{AppendError, AppendInfo, FileSlice, LogConfig, PartitionLog, ReadError};
use crate::topic_config;

const META_FILE: &str = "meta.properties";
const TOPIC_META_FILE: &str = "topic.meta";
const CLEAN_MARKER: &str = ".clean-shutdown";
const DELETED_PREFIX: &str = ".deleted-";
const PRODUCER_IDS_FILE: &str = "producer-ids.properties";
/// Directory of the internal group log; the name is reserved, as in Kafka.
pub const GROUP_LOG_DIR: &str = "__consumer_offsets";

/// The internal group log keeps everything until compaction replaces it.
fn group_log_config(config: &Config) -> LogConfig {
    LogConfig {
        segment_bytes: 100 << 20,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: u64::from(config.request_bytes_max).max(64 << 20),
        ..config.log_defaults()
    }
}
/// Producer ids reserved on disk at a time: one fsync per this many producers.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why a topic operation failed; `handlers` maps each to a Kafka error code.
#[derive(Debug)]
pub enum TopicError {
    /// The name breaks Kafka's rules (length, characters).
    InvalidName(String),
    /// A topic of that name exists.
    AlreadyExists,
    /// No such topic.
    Unknown,
    /// Partition count out of range.
    InvalidPartitions(String),
    /// A config name or value was refused.
    InvalidConfig(String),
    /// The file system failed.
    Io(io::Error),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::InvalidName(m)
            | TopicError::InvalidPartitions(m)
            | TopicError::InvalidConfig(m) => {
                write!(f, "{m}")
            }
            TopicError::AlreadyExists => write!(f, "topic already exists"),
            TopicError::Unknown => write!(f, "unknown topic"),
            TopicError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// Largest partition count one topic may have: each partition holds open files
/// and mapped indexes, so this bounds what one CreateTopics can make us allocate.
pub const PARTITIONS_MAX: i32 = 10_000;

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() || name.len() > 249 {
        return Err(TopicError::InvalidName(format!(
            "topic name length must be 1..249, got {}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(TopicError::InvalidName(format!(
            "topic name cannot be {name:?}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(TopicError::InvalidName(format!(
            "topic name {name:?} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// One partition: its log plus what readers need without taking the log lock.
#[derive(Debug)]
pub struct Partition {
    /// Partition number within its topic.
    pub index: i32,
    /// The log; locked only inside blocking tasks, for short sections.
    log: Mutex<PartitionLog>,
    /// Log end offset (= high watermark on a single replica), readable lock-free.
    log_end: AtomicI64,
    /// Log start offset, readable lock-free.
    log_start: AtomicI64,
    /// Every offset below this is fsynced; read lock-free by producers waiting on acks=all.
    flushed: AtomicI64,
    /// Fetches parked until this partition gets data. Each connection parks at most
    /// one fetch, so the list is bounded by `connections_max`; dead entries are pruned.
    waiters: Mutex<Vec<Weak<Notify>>>,
    /// Set when the topic is deleted: appends fail and parked fetches wake.
    deleted: AtomicBool,
}

impl Partition {
    fn new(index: i32, log: PartitionLog) -> Partition {
        Partition {
            index,
            log_end: AtomicI64::new(log.log_end_offset()),
            log_start: AtomicI64::new(log.log_start_offset()),
            flushed: AtomicI64::new(log.flushed_offset()),
            log: Mutex::new(log),
            waiters: Mutex::new(Vec::new()),
            deleted: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PartitionLog> {
        // A panic while holding the lock leaves the log consistent at the last
        // completed append (appends are all-or-nothing), so poisoning is ignored.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// High watermark: every offset below it is readable.
    pub fn high_watermark(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// First offset still stored.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Whether the topic was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Registers a parked fetch to be notified on the next append.
    pub fn register_waiter(&self, n: &Arc<Notify>) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= 64 {
            w.retain(|x| x.strong_count() > 0);
        }
        w.push(Arc::downgrade(n));
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
        for w in waiters {
            if let Some(n) = w.upgrade() {
                n.notify_one();
            }
        }
    }

    /// Appends `records` (blocking; call from a blocking task).
    pub fn append_blocking(&self, records: &[u8]) -> Result<AppendInfo, AppendError> {
        let info = {
            let mut log = self.lock();
            if self.is_deleted() {
                return Err(AppendError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    "topic deleted",
                )));
            }
            let info = log.append(records, now_ms())?;
            self.log_end.store(log.log_end_offset(), Ordering::Release);
            info
        };
        self.wake_waiters();
        Ok(info)
    }

    /// Reads whole batches from `offset` (blocking: index lookup and header reads).
    /// Pre-reads the range into the page cache so the later send does not block on disk.
    pub fn read_blocking(
        &self,
        offset: i64,
        max_bytes: u64,
    ) -> Result<Option<FileSlice>, ReadError> {
        let slice = self.lock().read(offset, max_bytes)?;
        if let Some(s) = &slice {
            readahead(s);
        }
        Ok(slice)
    }

    /// First batch with max timestamp `>= ts` (blocking).
    pub fn find_by_timestamp_blocking(&self, ts: i64) -> io::Result<Option<Vec<u8>>> {
        let slice = self.lock().find_by_timestamp(ts)?;
        slice.map(|s| s.read_to_vec()).transpose()
    }

    /// The batch holding the largest timestamp, with that timestamp (blocking).
    pub fn max_timestamp_batch_blocking(&self) -> io::Result<Option<(i64, Vec<u8>)>> {
        let found = self.lock().max_timestamp_batch()?;
        found
            .map(|(ts, s)| s.read_to_vec().map(|v| (ts, v)))
            .transpose()
    }
}

#[cfg(target_os = "linux")]
fn readahead(s: &FileSlice) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; failure only costs a later disk wait.
    unsafe {
        libc::readahead(
            s.file.as_raw_fd(),
            s.position as libc::off64_t,
            s.len as usize,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn readahead(_s: &FileSlice) {}

/// A topic: a name, a stable id, its partitions and config overrides.
#[derive(Debug)]
pub struct Topic {
    /// Kafka topic name.
    pub name: String,
    /// Stable non-zero UUID, persisted in `topic.meta`.
    pub id: Uuid,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<Arc<Partition>>,
    /// Config overrides set at creation.
    pub configs: BTreeMap<String, String>,
    /// Effective log settings.
    pub log_config: LogConfig,
    /// Directory of the topic.
    dir: PathBuf,
}

impl Topic {
    /// The partition with this wire index, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// The topic registry, shared with background tasks.
#[derive(Debug, Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

/// A request to make partitions durable up to given offsets: one per produce
/// request, so the queue bound counts waiting requests, not partitions.
struct SyncRequest {
    /// `(partition, offset)` pairs not yet durable when the request was queued.
    targets: Vec<(Arc<Partition>, i64)>,
    /// Answered once every target is on stable storage.
    done: oneshot::Sender<()>,
}

/// A handle on the group-commit flusher: wait until data is on stable storage.
#[derive(Clone)]
pub struct Syncer {
    /// Queue to the flusher task.
    tx: mpsc::Sender<SyncRequest>,
}

impl Syncer {
    /// Waits until every `(partition, offset)` is on stable storage (group commit:
    /// concurrent callers share fsyncs).
    pub async fn wait_durable(&self, mut targets: Vec<(Arc<Partition>, i64)>) {
        targets.retain(|(p, offset)| p.flushed_offset() < *offset);
        if targets.is_empty() {
            return;
        }
        let (done, rx) = oneshot::channel();
        if self.tx.send(SyncRequest { targets, done }).await.is_err() {
            io_fatal("flusher", &io::Error::other("flusher stopped"));
        }
        // The flusher only drops a sender when the process is exiting.
        let _ = rx.await;
    }
}

/// The broker's shared state. Cheap to share behind an `Arc`.
pub struct Broker {
    /// Settings from the command line.
    pub config: Config,
    /// Persistent cluster id (22-character base64 of a UUID, as Kafka's).
    pub cluster_id: String,
    /// Host and port advertised to clients.
    pub advertised: (String, i32),
    /// All topics.
    topics: Arc<RwLock<Topics>>,
    /// Handle on the group-commit flusher.
    syncer: Syncer,
    /// The group coordinator: consumer groups and committed offsets.
    pub groups: Arc<Coordinator>,
    /// The internal log holding group state, closed with the topics on shutdown.
    group_log: Arc<Partition>,
    /// Serialises topic creation and deletion (directory changes).
    admin_lock: tokio::sync::Mutex<()>,
    /// Set once shutdown has closed the logs.
    closed: AtomicBool,
    /// Producer ids: next to hand out and the end of the block reserved on disk.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Becomes true when shutdown starts: parked fetches answer at once.
    shutdown_tx: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cluster_id", &self.cluster_id)
            .finish()
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn read_properties(path: &Path) -> io::Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Writes a properties file atomically: temp file, fsync, rename, fsync dir.
fn write_properties(path: &Path, props: &BTreeMap<String, String>) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    for (k, v) in props {
        writeln!(f, "{k}={v}")?;
    }
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn io_fatal(what: &str, e: &io::Error) -> ! {
    tracing::error!(error = %e, "{what} failed; stopping: the page cache can no longer be trusted");
    std::process::exit(70)
}

impl Broker {
    /// Opens the data directory (creating it), recovers every partition and starts
    /// the flusher and retention tasks. Must run inside a tokio runtime.
    pub async fn open(config: Config, advertised: (String, i32)) -> io::Result<Arc<Broker>> {
        let cfg = config.clone();
        let (cluster_id, topics, group_log) =
            tokio::task::spawn_blocking(move || Broker::load(&cfg))
                .await
                .map_err(io::Error::other)??;
        let topics = Arc::new(RwLock::new(topics));
        let (sync_tx, sync_rx) = mpsc::channel(config.sync_queue_max);
        let syncer = Syncer { tx: sync_tx };
        let groups = Coordinator::open(&config, group_log.clone(), syncer.clone()).await?;
        tokio::spawn(flusher(
            sync_rx,
            topics.clone(),
            Duration::from_millis(config.flush_interval_ms.max(1)),
            config.sync_parallelism,
            config.syncfs_partitions_min,
        ));
        tokio::spawn(retention(
            topics.clone(),
            Duration::from_millis(config.retention_check_interval_ms.max(1)),
        ));
        Ok(Arc::new(Broker {
            config,
            cluster_id,
            advertised,
            topics,
            syncer,
            groups,
            group_log,
            admin_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            shutdown_tx: tokio::sync::watch::channel(false).0,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
        }))
    }

    fn load(config: &Config) -> io::Result<(String, Topics, Arc<Partition>)> {
        let dir = &config.data_dir;
        fs::create_dir_all(dir)?;
        let meta_path = dir.join(META_FILE);
        let cluster_id = if meta_path.exists() {
            let props = read_properties(&meta_path)?;
            let node: i32 = props
                .get("node.id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            if node != config.node_id {
                return Err(io::Error::other(format!(
                    "data dir belongs to node.id {node}, but --node-id is {}",
                    config.node_id
                )));
            }
            props
                .get("cluster.id")
                .cloned()
                .ok_or_else(|| io::Error::other("meta.properties lacks cluster.id"))?
        } else {
            let id = base64url(Uuid::new_v4().as_bytes());
            let mut props = BTreeMap::new();
            props.insert("version".into(), "1".into());
            props.insert("cluster.id".into(), id.clone());
            props.insert("node.id".into(), config.node_id.to_string());
            write_properties(&meta_path, &props)?;
            id
        };
        let marker = dir.join(CLEAN_MARKER);
        let recover = !marker.exists();
        if recover {
            tracing::info!(
                "last shutdown was not clean: checking the active segment of every partition"
            );
        }
        let mut topics = Topics::default();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(DELETED_PREFIX) {
                fs::remove_dir_all(entry.path())?;
                continue;
            }
            if !entry.file_type()?.is_dir() || name == GROUP_LOG_DIR {
                continue;
            }
            match load_topic(&entry.path(), config, recover)? {
                Some(t) => {
                    let t = Arc::new(t);
                    topics.by_id.insert(t.id, t.clone());
                    topics.by_name.insert(t.name.clone(), t);
                }
                None => {
                    tracing::warn!(dir = %entry.path().display(), "ignoring directory without topic.meta")
                }
            }
        }
        let group_log = PartitionLog::open(
            &dir.join(GROUP_LOG_DIR),
            group_log_config(config),
            recover,
            now_ms(),
        )?;
        let group_log = Arc::new(Partition::new(0, group_log));
        // From here on, appends may happen: the next start must check again unless closed cleanly.
        if marker.exists() {
            fs::remove_file(&marker)?;
            sync_dir(dir)?;
        }
        tracing::info!(topics = topics.by_name.len(), cluster_id, "data dir loaded");
        Ok((cluster_id, topics, group_log))
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The topic of that name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_topics().by_name.get(name).cloned()
    }

    /// The topic of that id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.read_topics().by_id.get(id).cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.read_topics().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Validates a topic creation without doing it; returns partitions and log config.
    pub fn check_create(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(i32, LogConfig), TopicError> {
        validate_topic_name(name)?;
        if name == GROUP_LOG_DIR {
            return Err(TopicError::InvalidName(format!(
                "{name} is reserved for the broker's group state"
            )));
        }
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}"
            )));
        }
        let log_config = topic_config::apply(&self.config.log_defaults(), configs)
            .map_err(TopicError::InvalidConfig)?;
        if self.topic(name).is_some() {
            return Err(TopicError::AlreadyExists);
        }
        Ok((partitions, log_config))
    }

    /// Creates a topic (partitions -1 means the default count).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let _admin = self.admin_lock.lock().await;
        let (partitions, log_config) = self.check_create(name, partitions, &configs)?;
        let dir = self.config.data_dir.join(name);
        let name_owned = name.to_string();
        let topic = tokio::task::spawn_blocking(move || {
            create_topic_files(dir, name_owned, partitions, configs, log_config)
        })
        .await
        .map_err(|e| TopicError::Io(io::Error::other(e)))?
        .map_err(TopicError::Io)?;
        let topic = Arc::new(topic);
        let mut t = self.topics.write().unwrap_or_else(|p| p.into_inner());
        t.by_id.insert(topic.id, topic.clone());
        t.by_name.insert(topic.name.clone(), topic.clone());
        tracing::info!(topic = %topic.name, id = %topic.id, partitions, "topic created");
        Ok(topic)
    }

    /// Returns the topic, creating it with defaults if auto-creation is on.
    pub async fn get_or_create(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !self.config.auto_create_topics || name == GROUP_LOG_DIR {
            validate_topic_name(name)?;
            return Err(TopicError::Unknown);
        }
        match self.create_topic(name, -1, BTreeMap::new()).await {
            Err(TopicError::AlreadyExists) => self.topic(name).ok_or(TopicError::Unknown),
            other => other,
        }
    }

    /// Deletes a topic: it disappears at once; its files are removed in the background.
    pub async fn delete_topic(&self, topic: &Arc<Topic>) -> Result<(), TopicError> {
        let _admin = self.admin_lock.lock().await;
        {
            let mut t = self.topics.write().unwrap_or_else(|p| p.into_inner());
            if t.by_id.remove(&topic.id).is_none() {
                return Err(TopicError::Unknown);
            }
            t.by_name.remove(&topic.name);
        }
        for p in &topic.partitions {
            // Taking the log lock orders this after any in-flight append.
            let _log = p.lock();
            p.deleted.store(true, Ordering::Release);
        }
        for p in &topic.partitions {
            p.wake_waiters();
        }
        let from = topic.dir.clone();
        let to = self
            .config
            .data_dir
            .join(format!("{DELETED_PREFIX}{}", topic.id));
        let data_dir = self.config.data_dir.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            fs::rename(&from, &to)?;
            sync_dir(&data_dir)?;
            fs::remove_dir_all(&to)
        })
        .await
        .map_err(|e| TopicError::Io(io::Error::other(e)))?
        .map_err(TopicError::Io)?;
        tracing::info!(topic = %topic.name, "topic deleted");
        Ok(())
    }

    /// Waits until every `(partition, offset)` is on stable storage (group commit:
    /// concurrent callers share fsyncs).
    pub async fn wait_durable(&self, targets: Vec<(Arc<Partition>, i64)>) {
        self.syncer.wait_durable(targets).await
    }

    /// A producer id never handed out before, in this life or an earlier one.
    /// Ids are reserved on disk in blocks, so a restart skips to the next block.
    pub async fn next_producer_id(&self) -> io::Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let path = self.config.data_dir.join(PRODUCER_IDS_FILE);
            let (start, end) = tokio::task::spawn_blocking(move || -> io::Result<(i64, i64)> {
                let start = if path.exists() {
                    read_properties(&path)?
                        .get("next.block")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                let end = start + PRODUCER_ID_BLOCK;
                let mut props = BTreeMap::new();
                props.insert("next.block".to_string(), end.to_string());
                write_properties(&path, &props)?;
                Ok((start, end))
            })
            .await
            .map_err(io::Error::other)??;
            *ids = (start, end);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Tells parked requests that the broker is stopping.
    pub fn begin_shutdown(&self) {
        self.shutdown_tx.send_replace(true);
        self.groups.begin_shutdown();
    }

    /// A receiver that becomes true when shutdown starts.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Flushes and closes every log and records a clean shutdown.
    pub async fn shutdown(&self) -> io::Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let topics = self.topics();
        let dir = self.config.data_dir.clone();
        let group_log = self.group_log.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let parts = topics.iter().flat_map(|t| t.partitions.iter());
            for p in parts.chain(std::iter::once(&group_log)) {
                let mut log = p.lock();
                log.close()?;
                // Appends after close would go unindexed: refuse them.
                p.deleted.store(true, Ordering::Release);
            }
            fs::File::create(dir.join(CLEAN_MARKER))?.sync_all()?;
            sync_dir(&dir)
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Partition {
    /// The file to sync and the offset it makes durable, or `None` when nothing
    /// is waiting to be synced. Taken under the log lock; the sync runs outside it.
    fn sync_target(&self) -> Option<(Arc<std::fs::File>, i64)> {
        let log = self.lock();
        (log.flushed_offset() < log.log_end_offset()).then(|| log.sync_target())
    }

    /// Records that everything below `end` is durable, once its sync returned.
    fn mark_flushed(&self, end: i64) {
        let mut log = self.lock();
        log.mark_flushed(end);
        self.flushed.store(log.flushed_offset(), Ordering::Release);
    }

    /// Every offset below this is on stable storage (lock-free: never waits for an append).
    fn flushed_offset(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Seals the active segment (if it holds data) and starts a new one; returns the
    /// log end offset, where the new segment begins (blocking).
    pub fn roll_blocking(&self) -> io::Result<i64> {
        let mut log = self.lock();
        log.roll(now_ms())?;
        Ok(log.log_end_offset())
    }

    /// Deletes the sealed segments wholly below `offset` (blocking).
    pub fn delete_before_blocking(&self, offset: i64) -> io::Result<usize> {
        let mut log = self.lock();
        let n = log.delete_before(offset)?;
        self.log_start
            .store(log.log_start_offset(), Ordering::Release);
        Ok(n)
    }
}

fn create_topic_files(
    dir: PathBuf,
    name: String,
    partitions: i32,
    configs: BTreeMap<String, String>,
    log_config: LogConfig,
) -> io::Result<Topic> {
    if dir.exists() {
        // Left over from a creation interrupted before topic.meta was written.
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    let now = now_ms();
    let mut parts = Vec::new();
    for i in 0..partitions {
        let log = PartitionLog::open(&dir.join(i.to_string()), log_config.clone(), false, now)?;
        parts.push(Arc::new(Partition::new(i, log)));
    }
    sync_dir(&dir)?;
    let id = loop {
        let id = Uuid::new_v4();
        if !id.is_nil() {
            break id;
        }
    };
    let mut props = BTreeMap::new();
    props.insert("version".to_string(), "1".to_string());
    props.insert("name".to_string(), name.clone());
    props.insert("id".to_string(), id.to_string());
    props.insert("partitions".to_string(), partitions.to_string());
    for (k, v) in &configs {
        props.insert(format!("config.{k}"), v.clone());
    }
    // topic.meta is written last: a topic exists on disk once it is there.
    write_properties(&dir.join(TOPIC_META_FILE), &props)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(Topic {
        name,
        id,
        partitions: parts,
        configs,
        log_config,
        dir,
    })
}

fn load_topic(dir: &Path, config: &Config, recover: bool) -> io::Result<Option<Topic>> {
    let meta = dir.join(TOPIC_META_FILE);
    if !meta.exists() {
        return Ok(None);
    }
    let props = read_properties(&meta)?;
    let bad = |what: &str| io::Error::other(format!("{}: bad {what}", meta.display()));
    let name = props.get("name").cloned().ok_or_else(|| bad("name"))?;
    let id: Uuid = props
        .get("id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("id"))?;
    let partitions: i32 = props
        .get("partitions")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("partitions"))?;
    let configs: BTreeMap<String, String> = props
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("config.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let log_config =
        topic_config::apply(&config.log_defaults(), &configs).map_err(io::Error::other)?;
    let now = now_ms();
    let mut parts = Vec::new();
    for i in 0..partitions {
        let log = PartitionLog::open(&dir.join(i.to_string()), log_config.clone(), recover, now)?;
        parts.push(Arc::new(Partition::new(i, log)));
    }
    Ok(Some(Topic {
        name,
        id,
        partitions: parts,
        configs,
        log_config,
        dir: dir.to_path_buf(),
    }))
}

fn all_partitions(topics: &RwLock<Topics>) -> Vec<Arc<Partition>> {
    let t = topics.read().unwrap_or_else(|p| p.into_inner());
    t.by_name
        .values()
        .flat_map(|t| t.partitions.iter().cloned())
        .collect()
}

/// fsyncs each partition once, outside its lock, and records how far it is durable.
fn sync_partitions(parts: &[Arc<Partition>]) {
    for p in parts {
        let Some((file, end)) = p.sync_target() else {
            continue;
        };
        if let Err(e) = file.sync_data() {
            io_fatal("fsync", &e);
        }
        p.mark_flushed(end);
    }
}

/// Makes every partition in `parts` durable with one `syncfs(2)` of the data
/// directory's filesystem: one journal commit and one device flush, where
/// fdatasync would cost one of each per partition.
#[cfg(target_os = "linux")]
fn sync_filesystem(parts: &[Arc<Partition>]) {
    use std::os::fd::AsRawFd;
    let targets: Vec<(&Arc<Partition>, Arc<std::fs::File>, i64)> = parts
        .iter()
        .filter_map(|p| p.sync_target().map(|(file, end)| (p, file, end)))
        .collect();
    let Some((_, file, _)) = targets.first() else {
        return;
    };
    // SAFETY: a plain syscall on an open descriptor.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        io_fatal("syncfs", &io::Error::last_os_error());
    }
    for (p, _, end) in targets {
        p.mark_flushed(end);
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(parts: &[Arc<Partition>]) {
    sync_partitions(parts)
}

/// Makes `parts` durable. Up to `syncfs_partitions_min` partitions: fdatasync
/// each, with up to `parallelism` in flight (the device and the journal merge
/// concurrent flushes). From there on: one `syncfs`, which also writes other
/// dirty files of the filesystem but costs one flush instead of hundreds.
async fn sync_round(parts: Vec<Arc<Partition>>, parallelism: usize, syncfs_min: usize) {
    if parts.is_empty() {
        return;
    }
    if parts.len() >= syncfs_min {
        if tokio::task::spawn_blocking(move || sync_filesystem(&parts))
            .await
            .is_err()
        {
            io_fatal("syncfs task", &io::Error::other("panicked"));
        }
        return;
    }
    let per_task = parts.len().div_ceil(parallelism.max(1));
    let mut tasks = Vec::with_capacity(parallelism);
    let mut rest = parts;
    while !rest.is_empty() {
        let tail = rest.split_off(per_task.min(rest.len()));
        let chunk = std::mem::replace(&mut rest, tail);
        tasks.push(tokio::task::spawn_blocking(move || sync_partitions(&chunk)));
    }
    for t in tasks {
        if t.await.is_err() {
            io_fatal("fsync task", &io::Error::other("panicked"));
        }
    }
}

/// The group-commit flusher: takes every queued request, fsyncs each partition
/// once, and answers all of them. Between bursts it flushes on `interval`.
async fn flusher(
    mut rx: mpsc::Receiver<SyncRequest>,
    topics: Arc<RwLock<Topics>>,
    interval: Duration,
    parallelism: usize,
    syncfs_min: usize,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
        let parts: Vec<Arc<Partition>> = if batch.is_empty() {
            all_partitions(&topics)
        } else {
            let mut seen = std::collections::HashSet::new();
            batch
                .iter()
                .flat_map(|r| r.targets.iter())
                .filter(|(p, _)| seen.insert(Arc::as_ptr(p)))
                .map(|(p, _)| p.clone())
                .collect()
        };
        sync_round(parts, parallelism, syncfs_min).await;
        for r in batch {
            debug_assert!(r
                .targets
                .iter()
                .all(|(p, o)| p.flushed_offset() >= *o || p.is_deleted()));
            let _ = r.done.send(());
        }
    }
}

/// Applies retention to every partition on a fixed cadence.
async fn retention(topics: Arc<RwLock<Topics>>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let parts = all_partitions(&topics);
        let res = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            for p in parts {
                let mut log = p.lock();
                if p.is_deleted() {
                    continue;
                }
                match log.apply_retention(now) {
                    Ok(0) => {}
                    Ok(n) => {
                        p.log_start.store(log.log_start_offset(), Ordering::Release);
                        tracing::info!(
                            partition = p.index,
                            segments = n,
                            start = log.log_start_offset(),
                            "retention deleted segments"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "retention failed"),
                }
            }
        })
        .await;
        if res.is_err() {
            tracing::error!("retention task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_22_chars() {
        let id = base64url(Uuid::new_v4().as_bytes());
        assert_eq!(id.len(), 22);
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("a.b_c-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
