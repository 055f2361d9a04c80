//! The shared broker handle: the topic registry and topic admin, the metadata
//! files, producer ids, the group coordinator, and clean shutdown.
//!
//! Locks are `std::sync` and held only for short, non-async sections; file I/O
//! runs on tokio's blocking pool. Two async mutexes serialise what must happen
//! one at a time across awaits: topic creation and deletion, and producer-id
//! block reservation.

pub mod acls;
pub mod append;
pub mod credentials;
pub mod meta;
mod producer_ids;
pub mod quotas;
pub mod topic_config;
pub mod topics;
mod txn_markers;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use uuid::Uuid;

use crate::clock::now_ms;
use crate::config::Config;
use crate::group::Coordinator;
use crate::log::{Fs, LogConfig, RealFs};
use crate::storage::{Partition, PartitionError, Storage};
use crate::txn::TxnCoordinator;
use producer_ids::ProducerIds;
use topic_config::{BrokerDefaults, Dynamic};
pub use topics::{is_internal, validate_topic_name, Topic, TopicError, GROUP_LOG_DIR, TXN_LOG_DIR};
use topics::{Topics, DELETED_PREFIX};

/// Present in the data directory only after a clean shutdown.
const CLEAN_MARKER: &str = ".clean-shutdown";

/// Logs the configs of a topic that are stored but not acted on yet.
fn log_not_applied(topic: &str, configs: &BTreeMap<String, String>) {
    let stored = topic_config::not_applied(configs);
    if !stored.is_empty() {
        tracing::warn!(topic, configs = %stored.join(", "),
            "topic configs stored and reported, but not applied by this version of Sluice");
    }
}

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

/// The broker's shared state. Cheap to share behind an `Arc`.
pub struct Broker {
    /// Settings from the command line.
    pub config: Config,
    /// Persistent cluster id (22-character base64 of a UUID, as Kafka's).
    pub cluster_id: String,
    /// Host and port advertised to clients, per listener (by index), set once
    /// the listeners are bound.
    advertised: OnceLock<Vec<(String, i32)>>,
    /// The storage runtime: partitions, group commit, retention, health.
    pub storage: Arc<Storage>,
    /// All topics.
    topics: RwLock<Topics>,
    /// The group coordinator: consumer groups and committed offsets.
    pub groups: Arc<Coordinator>,
    /// The internal log holding group state, closed with the topics on shutdown.
    group_log: Arc<Partition>,
    /// The transaction coordinator: transactional ids, markers, timeouts.
    pub txns: Arc<TxnCoordinator>,
    /// The internal log holding transaction state, closed with the topics.
    txn_log: Arc<Partition>,
    /// Serialises topic creation and deletion (directory changes).
    admin_lock: tokio::sync::Mutex<()>,
    /// Set once shutdown has closed the logs.
    closed: AtomicBool,
    /// Producer ids.
    producer_ids: Arc<ProducerIds>,
    /// Dynamic broker configs (AlterConfigs on a BROKER resource), persisted in
    /// [`topic_config::DYNAMIC_FILE`]; changed under `admin_lock`.
    dynamic: RwLock<Dynamic>,
    /// Becomes true when shutdown starts: parked fetches answer at once.
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    /// SCRAM credentials (AlterUserScramCredentials; SASL authentication).
    pub credentials: Arc<credentials::Credentials>,
    /// The ACLs and the authorizer's policy.
    pub acls: acls::Acls,
    /// Client quotas and every client's measured rates.
    pub quotas: quotas::Quotas,
    /// Failed authentications per source address, shared by every listener.
    pub auth_failures: crate::auth::limiter::FailureLimiter,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cluster_id", &self.cluster_id)
            .finish()
    }
}

/// What loading the data directory produced.
struct Loaded {
    /// From `meta.properties`.
    cluster_id: String,
    /// Every topic found.
    topics: Topics,
    /// The internal group log, recovered.
    group_log: Arc<Partition>,
    /// The internal transaction log, recovered.
    txn_log: Arc<Partition>,
    /// Dynamic broker configs.
    dynamic: Dynamic,
}

impl Broker {
    /// Opens the data directory on the real filesystem (creating it), recovers
    /// every partition and starts the storage tasks. Must run inside a tokio runtime.
    pub async fn open(config: Config) -> io::Result<Arc<Broker>> {
        Broker::open_with(config, Arc::new(RealFs)).await
    }

    /// As [`Broker::open`], on the given filesystem (a fault-injecting model in tests).
    pub async fn open_with(config: Config, fs: Arc<dyn Fs>) -> io::Result<Arc<Broker>> {
        let storage = Storage::start(&config, fs.clone());
        let (cfg, st) = (config.clone(), storage.clone());
        let loaded = crate::clock::work::blocking(move || Broker::load(&cfg, &st))
            .await
            .map_err(io::Error::other)??;
        let groups = Coordinator::open(&config, loaded.group_log.clone(), storage.syncer()).await?;
        let (cfs, cdir) = (storage.fs.clone(), config.data_dir.clone());
        let credentials =
            crate::clock::work::blocking(move || credentials::Credentials::load(cfs, &cdir))
                .await
                .map_err(io::Error::other)??;
        let (afs, adir, policy) = (
            storage.fs.clone(),
            config.data_dir.clone(),
            acls::AclPolicy::from_config(&config),
        );
        let acls = crate::clock::work::blocking(move || acls::Acls::load(afs, &adir, policy))
            .await
            .map_err(io::Error::other)??;
        let (qfs, qdir) = (storage.fs.clone(), config.data_dir.clone());
        let throttler = crate::quota::Throttler::new(
            i64::try_from(config.quota_window_ms).unwrap_or(i64::MAX),
            config.quota_window_num,
            config.quota_buckets_max,
        );
        let quotas =
            crate::clock::work::blocking(move || quotas::Quotas::load(qfs, &qdir, throttler))
                .await
                .map_err(io::Error::other)??;
        let producer_ids = Arc::new(ProducerIds::new(fs, &config.data_dir));
        let ids = producer_ids.clone();
        let fresh_pid: crate::txn::FreshPid = Arc::new(move || {
            let ids = ids.clone();
            Box::pin(async move { ids.next().await })
        });
        let txns =
            TxnCoordinator::open(&config, loaded.txn_log.clone(), storage.syncer(), fresh_pid)
                .await?;
        let b = Arc::new(Broker {
            cluster_id: loaded.cluster_id,
            advertised: OnceLock::new(),
            storage,
            topics: RwLock::new(loaded.topics),
            groups,
            group_log: loaded.group_log,
            txns,
            txn_log: loaded.txn_log,
            admin_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            producer_ids,
            shutdown_tx: tokio::sync::watch::channel(false).0,
            dynamic: RwLock::new(loaded.dynamic),
            credentials: Arc::new(credentials),
            acls,
            quotas,
            auth_failures: crate::auth::limiter::FailureLimiter::new(
                config.auth_failures_per_ip_max,
                i64::try_from(config.auth_failures_window_ms).unwrap_or(i64::MAX),
                config.auth_failures_addresses_max,
            ),
            config,
        });
        for t in b.topics() {
            t.apply_effective(&b.effective(&t.configs()));
        }
        b.txns.start(Arc::new(txn_markers::BrokerMarkers::new(&b)));
        // Offsets of topics that no longer exist (a crash between deleting a
        // topic and writing its offsets' tombstones) are forgotten now.
        let gone: std::collections::BTreeSet<String> = b
            .groups
            .metrics_view()
            .into_iter()
            .flat_map(|g| g.offsets.into_iter().map(|((t, _), _)| t))
            .filter(|t| b.topic(t).is_none())
            .collect();
        for t in gone {
            let n = b.groups.forget_topic(&t).await;
            tracing::info!(topic = %t, committed_offsets_removed = n,
                "forgot the committed offsets of a deleted topic");
        }
        Ok(b)
    }

    fn load(config: &Config, storage: &Storage) -> io::Result<Loaded> {
        let fs = storage.fs.as_ref();
        let dir = &config.data_dir;
        crate::log::fs::create_dir_durable(fs, dir)?;
        let cluster_id = meta::cluster_id(fs, dir, config.node_id)?;
        let marker = dir.join(CLEAN_MARKER);
        let recover = !fs.exists(&marker);
        if recover {
            tracing::info!(
                "last shutdown was not clean: checking the active segment of every partition"
            );
        }
        let dynamic_path = dir.join(topic_config::DYNAMIC_FILE);
        let dynamic = if fs.exists(&dynamic_path) {
            Dynamic::from_properties(&meta::read_properties(fs, &dynamic_path)?)
        } else {
            Dynamic::default()
        };
        let mut topics = Topics::default();
        let mut names: Vec<_> = fs.list_dir(dir)?;
        names.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in names {
            let path = dir.join(&entry.name);
            if entry.name.starts_with(DELETED_PREFIX) {
                fs.remove_dir_all(&path)?;
                continue;
            }
            if !entry.is_dir || is_internal(&entry.name) {
                continue;
            }
            match topics::load_topic(storage, &path, config, &dynamic, recover)? {
                Some(t) => topics.insert(Arc::new(t)),
                None => {
                    tracing::warn!(dir = %path.display(), "ignoring directory without topic.meta")
                }
            }
        }
        let group_log = storage.open_partition(
            &dir.join(GROUP_LOG_DIR),
            0,
            group_log_config(config),
            recover,
            now_ms(),
        )?;
        let txn_log = storage.open_partition(
            &dir.join(TXN_LOG_DIR),
            0,
            group_log_config(config),
            recover,
            now_ms(),
        )?;
        if txn_log.is_offline() {
            return Err(io::Error::other(
                "the transaction log is corrupt; repair or remove __transaction_state to start",
            ));
        }
        if group_log.is_offline() {
            return Err(io::Error::other(
                "the group log is corrupt; repair or remove __consumer_offsets to start",
            ));
        }
        // From here on, appends may happen: the next start must check again unless closed cleanly.
        if fs.exists(&marker) {
            fs.remove_file(&marker)?;
            fs.sync_dir(dir)?;
        }
        tracing::info!(topics = topics.by_name.len(), cluster_id, "data dir loaded");
        Ok(Loaded {
            cluster_id,
            topics,
            group_log,
            txn_log,
            dynamic,
        })
    }

    /// Records the address clients are told to connect to, from the bound listener.
    pub fn set_advertised(&self, bound: SocketAddr) {
        let _ = self.advertised.set(vec![self.config.advertised(bound)]);
    }

    /// Records the advertised address of every listener, by index.
    pub fn set_listeners(&self, advertised: Vec<(String, i32)>) {
        let _ = self.advertised.set(advertised);
    }

    /// Host and port clients are told to connect to (the first listener's).
    pub fn advertised(&self) -> (String, i32) {
        self.advertised_for(0)
    }

    /// Host and port of listener `index`: Metadata answers a client with the
    /// endpoint of the listener it connected through (KIP-103).
    pub fn advertised_for(&self, index: usize) -> (String, i32) {
        self.advertised
            .get()
            .and_then(|v| v.get(index).or_else(|| v.first()).cloned())
            .unwrap_or_else(|| self.config.advertised(self.config.listen))
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

    /// Every config of a topic with its effective value (its own, else the
    /// broker's, else the default), as DescribeConfigs reports them.
    pub fn topic_configs(&self, t: &Topic) -> BTreeMap<String, String> {
        topic_config::describe(&self.topic_defaults(), &t.configs())
            .into_iter()
            .map(|d| (d.spec.name.to_string(), d.value.value))
            .collect()
    }

    /// The topics that exist now, as the group coordinator's assignors see them.
    pub fn group_topics(&self) -> crate::group::Topics {
        self.topics()
            .iter()
            .map(|t| {
                let partitions = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                let info = crate::group::TopicInfo {
                    id: t.id,
                    partitions,
                };
                (t.name.clone(), info)
            })
            .collect()
    }

    /// Validates a topic creation without doing it; returns partitions and log config.
    pub fn check_create(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(i32, LogConfig), TopicError> {
        validate_topic_name(name)?;
        if is_internal(name) {
            return Err(TopicError::InvalidName(format!(
                "{name} is reserved for the broker's internal state"
            )));
        }
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        let max = self.config.partitions_max;
        if !(1..=max).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {max}, got {partitions}"
            )));
        }
        let log_config = self.log_config_for(configs)?;
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
        let storage = self.storage.clone();
        let topic = crate::clock::work::blocking(move || {
            topics::create_topic_files(&storage, dir, name_owned, partitions, configs, log_config)
        })
        .await
        .map_err(|e| TopicError::Io(io::Error::other(e)))?
        .map_err(|e| {
            tracing::error!(
                topic = name,
                partitions,
                "cannot create topic: {}",
                crate::sys::describe_io_error(&e)
            );
            TopicError::Io(e)
        })?;
        let topic = Arc::new(topic);
        topic.apply_effective(&self.effective(&topic.configs()));
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.clone());
        tracing::info!(topic = %topic.name, id = %topic.id, partitions, "topic created");
        log_not_applied(&topic.name, &topic.configs());
        Ok(topic)
    }

    /// The broker-level values topic configs default from.
    pub fn topic_defaults(&self) -> BrokerDefaults {
        BrokerDefaults::new(&self.config, &self.dynamic())
    }

    /// The dynamic broker configs.
    pub fn dynamic(&self) -> Dynamic {
        self.dynamic
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A topic's overrides over the dynamic broker defaults.
    fn effective(&self, topic: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        self.dynamic().merged(topic)
    }

    /// The log settings of a topic with these overrides.
    fn log_config_for(&self, topic: &BTreeMap<String, String>) -> Result<LogConfig, TopicError> {
        topic_config::apply(&self.config.log_defaults(), &self.effective(topic))
            .map_err(TopicError::InvalidConfig)
    }

    /// Replaces the dynamic broker configs of one scope (this broker's when
    /// `node`, else the cluster-wide default) with what `change` makes of the
    /// current ones (by topic config name), after checking every topic still gets valid settings; persists them
    /// and applies them to every topic at once.
    pub async fn alter_dynamic(
        &self,
        node: bool,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.admin_lock.lock().await;
        let mut next = self.dynamic();
        let scope = if node {
            &mut next.node
        } else {
            &mut next.cluster
        };
        *scope = change(scope)?;
        let defaults = self.config.log_defaults();
        let topics = self.topics();
        let mut plans = Vec::with_capacity(topics.len());
        for t in &topics {
            let configs = t.configs();
            let effective = next.merged(&configs);
            let log = topic_config::apply(&defaults, &effective)
                .map_err(|e| TopicError::InvalidConfig(format!("{e} (for topic {})", t.name)))?;
            plans.push((t.clone(), effective, log));
        }
        if validate_only {
            return Ok(());
        }
        let fs = self.storage.fs.clone();
        let path = self.config.data_dir.join(topic_config::DYNAMIC_FILE);
        let props = next.to_properties();
        crate::clock::work::blocking(move || {
            meta::write_properties(fs.as_ref(), &path, &props)?;
            for (t, _, log) in &plans {
                for p in &t.partitions {
                    match p.set_config_blocking(log.clone()) {
                        Ok(()) | Err(PartitionError::Offline) | Err(PartitionError::Deleted) => {}
                        Err(e) => return Err(io::Error::other(e.to_string())),
                    }
                }
            }
            Ok(plans)
        })
        .await
        .map_err(|e| TopicError::Io(io::Error::other(e)))?
        .map_err(TopicError::Io)
        .map(|plans| {
            for (t, effective, _) in &plans {
                t.apply_effective(effective);
            }
        })?;
        *self.dynamic.write().unwrap_or_else(|p| p.into_inner()) = next;
        tracing::info!(
            scope = if node { "broker" } else { "cluster" },
            "dynamic broker configs changed"
        );
        Ok(())
    }

    /// Replaces a topic's config overrides with what `change` makes of the
    /// current ones (validated first), in
    /// `topic.meta` and then in every partition: retention, rolling and size
    /// limits apply from the next append or retention pass, without a restart.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.admin_lock.lock().await;
        let topic = self.topic(name).ok_or(TopicError::Unknown)?;
        // Read, change and write under the admin lock: concurrent changes apply
        // one after the other, none lost.
        let configs = change(&topic.configs())?;
        let log_config = self.log_config_for(&configs)?;
        if validate_only {
            return Ok(());
        }
        let effective = self.effective(&configs);
        let fs = self.storage.fs.clone();
        let t = topic.clone();
        let new = configs.clone();
        crate::clock::work::blocking(move || -> Result<(), PartitionError> {
            topics::write_topic_meta(
                fs.as_ref(),
                &t.dir,
                &t.name,
                t.id,
                i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                &new,
            )?;
            t.set_configs(new);
            t.apply_effective(&effective);
            for p in &t.partitions {
                match p.set_config_blocking(log_config.clone()) {
                    Ok(()) | Err(PartitionError::Offline) | Err(PartitionError::Deleted) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| TopicError::Io(io::Error::other(e)))?
        .map_err(|e| TopicError::Io(io::Error::other(e.to_string())))?;
        tracing::info!(topic = name, ?configs, "topic configs changed");
        log_not_applied(name, &configs);
        Ok(())
    }

    /// Grows a topic to `count` partitions (CreatePartitions): the new ones are
    /// created, then `topic.meta` records the count, then the registry serves
    /// the longer topic. Fewer partitions than now is INVALID_PARTITIONS.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let _admin = self.admin_lock.lock().await;
        let topic = self.topic(name).ok_or(TopicError::Unknown)?;
        let now = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if count < now {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {now} partitions, which is higher than the requested {count}."
            )));
        }
        if count == now {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic already has {now} partitions."
            )));
        }
        let max = self.config.partitions_max;
        if count > max {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be at most {max}, got {count}"
            )));
        }
        let log_config = self.log_config_for(&topic.configs())?;
        if validate_only {
            return Ok(topic);
        }
        let storage = self.storage.clone();
        let t = topic.clone();
        let more = crate::clock::work::blocking(move || {
            topics::add_partition_files(&storage, &t, count, &log_config)
        })
        .await
        .map_err(|e| TopicError::Io(io::Error::other(e)))?
        .map_err(|e| {
            tracing::error!(
                topic = name,
                count,
                "cannot add partitions: {}",
                crate::sys::describe_io_error(&e)
            );
            TopicError::Io(e)
        })?;
        let grown = Arc::new(topic.with_partitions(more));
        grown.apply_effective(&self.effective(&grown.configs()));
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(grown.clone());
        tracing::info!(topic = name, from = now, to = count, "partitions added");
        Ok(grown)
    }

    /// Returns the topic, creating it with defaults if auto-creation is on.
    pub async fn get_or_create(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !self.config.auto_create_topics || is_internal(name) {
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
        // The topic as registered now: CreatePartitions may have replaced the
        // `Topic` the caller looked up with a longer one.
        let topic = {
            let mut t = self.topics.write().unwrap_or_else(|p| p.into_inner());
            let Some(current) = t.by_id.remove(&topic.id) else {
                return Err(TopicError::Unknown);
            };
            t.by_name.remove(&current.name);
            current
        };
        for p in &topic.partitions {
            p.mark_deleted();
        }
        let from = topic.dir.clone();
        let data_dir = self.config.data_dir.clone();
        let to = data_dir.join(format!("{DELETED_PREFIX}{}", topic.id));
        let fs = self.storage.fs.clone();
        crate::clock::work::blocking(move || -> io::Result<()> {
            fs.rename(&from, &to)?;
            fs.sync_dir(&data_dir)?;
            fs.remove_dir_all(&to)
        })
        .await
        .map_err(|e| TopicError::Io(io::Error::other(e)))?
        .map_err(TopicError::Io)?;
        let forgotten = self.groups.forget_topic(&topic.name).await;
        tracing::info!(topic = %topic.name, committed_offsets_removed = forgotten, "topic deleted");
        Ok(())
    }

    /// Waits until every `(partition, offset)` is on stable storage (group commit:
    /// concurrent callers share fsyncs). Fails once the data directory is offline.
    pub async fn wait_durable(
        &self,
        targets: Vec<(Arc<Partition>, i64)>,
    ) -> Result<(), PartitionError> {
        self.storage.wait_durable(targets).await
    }

    /// A producer id never handed out before, in this life or an earlier one.
    pub async fn next_producer_id(&self) -> io::Result<i64> {
        self.producer_ids.next().await
    }

    /// Tells parked requests that the broker is stopping.
    pub fn begin_shutdown(&self) {
        self.shutdown_tx.send_replace(true);
        self.groups.begin_shutdown();
        self.txns.begin_shutdown();
    }

    /// A receiver that becomes true when shutdown starts.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Flushes and closes every log and records a clean shutdown. With the data
    /// directory offline nothing is recorded: the next start recovers from disk.
    pub async fn shutdown(&self) -> io::Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.storage.stop_cleaner();
        let topics = self.topics();
        let dir = self.config.data_dir.clone();
        let internal = [self.group_log.clone(), self.txn_log.clone()];
        let storage = self.storage.clone();
        crate::clock::work::blocking(move || -> io::Result<()> {
            let fs = storage.fs.as_ref();
            let parts = topics.iter().flat_map(|t| t.partitions.iter());
            let mut clean = !storage.health.is_offline();
            for p in parts.chain(internal.iter()) {
                if let Err(e) = p.close_blocking() {
                    tracing::warn!(partition = p.index, error = %e, "not closed cleanly");
                    clean = false;
                }
            }
            if !clean {
                return Err(io::Error::other(
                    "some partitions could not be closed; the next start recovers from disk",
                ));
            }
            let marker = fs.open(&dir.join(CLEAN_MARKER), crate::log::fs::Open::Create)?;
            marker.sync_all()?;
            fs.sync_dir(Path::new(&dir))
        })
        .await
        .map_err(io::Error::other)?
    }
}
