//! Topics: names, ids, partitions and config overrides; their directories on
//! disk (created with `topic.meta` written last, deleted by renaming away first).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::meta::{read_properties, write_properties};
use super::topic_config;
use crate::clock::now_ms;
use crate::config::Config;
use crate::log::LogConfig;
use crate::metrics::TopicTraffic;
use crate::storage::{Partition, Storage};

/// A topic's description file; a topic exists on disk once it is written.
pub const TOPIC_META_FILE: &str = "topic.meta";
/// Prefix of a deleted topic's directory while its files are removed.
pub const DELETED_PREFIX: &str = ".deleted-";
/// Directory of the internal group log; the name is reserved, as in Kafka.
pub const GROUP_LOG_DIR: &str = "__consumer_offsets";
/// Directory of the internal transaction state log (Kafka's topic name; not a topic here).
pub const TXN_LOG_DIR: &str = "__transaction_state";

/// Whether `name` is one of the broker's internal logs, never a topic.
pub fn is_internal(name: &str) -> bool {
    name == GROUP_LOG_DIR || name == TXN_LOG_DIR
}

/// Partition count a topic read from disk may have: what `--partitions-max`
/// allows at most (a larger count in `topic.meta` is damage).
const PARTITIONS_ON_DISK_MAX: i32 = 100_000;

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
    /// The request itself is malformed (a null value, a duplicate key).
    InvalidRequest(String),
    /// The file system failed.
    Io(io::Error),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::InvalidName(m)
            | TopicError::InvalidPartitions(m)
            | TopicError::InvalidConfig(m)
            | TopicError::InvalidRequest(m) => write!(f, "{m}"),
            TopicError::AlreadyExists => write!(f, "topic already exists"),
            TopicError::Unknown => write!(f, "unknown topic"),
            TopicError::Io(e) => write!(f, "{}", crate::sys::describe_io_error(e)),
        }
    }
}

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

/// A topic: a name, a stable id, its partitions and config overrides.
#[derive(Debug)]
pub struct Topic {
    /// Kafka topic name.
    pub name: String,
    /// Stable non-zero UUID, persisted in `topic.meta`.
    pub id: Uuid,
    /// Partitions, indexed by partition number. CreatePartitions replaces the
    /// whole `Topic` in the registry with a longer list.
    pub partitions: Vec<Arc<Partition>>,
    /// Config overrides (changed by AlterConfigs, under the broker's admin lock).
    configs: RwLock<BTreeMap<String, String>>,
    /// `min.insync.replicas`, read by every acks=all produce without a lock.
    min_insync_replicas: AtomicI64,
    /// Directory of the topic.
    pub(super) dir: PathBuf,
    /// Traffic counters, shared with the `Topic` values CreatePartitions makes.
    pub metrics: Arc<TopicTraffic>,
}

impl Topic {
    /// The topic's config overrides.
    pub fn configs(&self) -> BTreeMap<String, String> {
        self.configs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the overrides in memory (after they were written to `topic.meta`).
    pub(super) fn set_configs(&self, configs: BTreeMap<String, String>) {
        *self.configs.write().unwrap_or_else(|p| p.into_inner()) = configs;
    }

    /// Applies the settings read outside the log (flush policy, min.insync.replicas)
    /// from `effective`: the topic's overrides over the dynamic broker defaults.
    pub(super) fn apply_effective(&self, effective: &BTreeMap<String, String>) {
        let flush = topic_config::flush_policy(effective);
        for p in &self.partitions {
            p.set_flush_policy(flush);
        }
        self.min_insync_replicas.store(
            topic_config::min_insync_replicas(effective),
            Ordering::Release,
        );
    }

    /// `min.insync.replicas`: above 1, acks=all writes cannot be satisfied by
    /// this single replica.
    pub fn min_insync_replicas(&self) -> i64 {
        self.min_insync_replicas.load(Ordering::Acquire)
    }

    /// A topic from its parts.
    fn build(
        name: String,
        id: Uuid,
        partitions: Vec<Arc<Partition>>,
        configs: BTreeMap<String, String>,
        dir: PathBuf,
        metrics: Arc<TopicTraffic>,
    ) -> Topic {
        Topic {
            // Set with the flush policy by `apply_effective`, which the broker
            // calls before it serves the topic (the dynamic defaults count too).
            min_insync_replicas: AtomicI64::new(1),
            name,
            id,
            partitions,
            configs: RwLock::new(configs),
            dir,
            metrics,
        }
    }

    /// The same topic with `more` partitions appended (CreatePartitions).
    pub(super) fn with_partitions(&self, more: Vec<Arc<Partition>>) -> Topic {
        let mut partitions = self.partitions.clone();
        partitions.extend(more);
        Topic::build(
            self.name.clone(),
            self.id,
            partitions,
            self.configs(),
            self.dir.clone(),
            self.metrics.clone(),
        )
    }

    /// The partition with this wire index, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// The topic registry.
#[derive(Debug, Default)]
pub(super) struct Topics {
    /// By name.
    pub by_name: HashMap<String, Arc<Topic>>,
    /// By id.
    pub by_id: HashMap<Uuid, Arc<Topic>>,
}

impl Topics {
    /// Adds a topic under its name and id.
    pub fn insert(&mut self, t: Arc<Topic>) {
        self.by_id.insert(t.id, t.clone());
        self.by_name.insert(t.name.clone(), t);
    }
}

/// Opens (or creates) partitions `0..count` of the topic in `dir` (blocking).
fn open_partitions(
    storage: &Storage,
    dir: &Path,
    count: i32,
    log_config: &LogConfig,
    recover: bool,
) -> io::Result<Vec<Arc<Partition>>> {
    let now = now_ms();
    (0..count)
        .map(|i| {
            storage.open_partition(
                &dir.join(i.to_string()),
                i,
                log_config.clone(),
                recover,
                now,
            )
        })
        .collect()
}

/// Writes (or atomically replaces) a topic's `topic.meta`.
pub(super) fn write_topic_meta(
    fs: &dyn crate::log::Fs,
    dir: &Path,
    name: &str,
    id: Uuid,
    partitions: i32,
    configs: &BTreeMap<String, String>,
) -> io::Result<()> {
    let mut props = BTreeMap::new();
    props.insert("version".to_string(), "1".to_string());
    props.insert("name".to_string(), name.to_string());
    props.insert("id".to_string(), id.to_string());
    props.insert("partitions".to_string(), partitions.to_string());
    for (k, v) in configs {
        props.insert(format!("config.{k}"), v.clone());
    }
    write_properties(fs, &dir.join(TOPIC_META_FILE), &props)
}

/// Opens partitions `from..to` of an existing topic (CreatePartitions), then
/// records the new count in `topic.meta`; on failure the new partition
/// directories are removed again (blocking).
pub(super) fn add_partition_files(
    storage: &Storage,
    topic: &Topic,
    to: i32,
    log_config: &LogConfig,
) -> io::Result<Vec<Arc<Partition>>> {
    let fs = storage.fs.as_ref();
    let from = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    let made = (|| {
        let now = now_ms();
        let parts = (from..to)
            .map(|i| {
                let dir = topic.dir.join(i.to_string());
                if fs.exists(&dir) {
                    // Left over from an interrupted CreatePartitions: never visible, so empty it.
                    fs.remove_dir_all(&dir)?;
                }
                storage.open_partition(&dir, i, log_config.clone(), false, now)
            })
            .collect::<io::Result<Vec<_>>>()?;
        fs.sync_dir(&topic.dir)?;
        write_topic_meta(fs, &topic.dir, &topic.name, topic.id, to, &topic.configs())?;
        Ok(parts)
    })();
    if made.is_err() {
        for i in from..to {
            let _ = fs.remove_dir_all(&topic.dir.join(i.to_string()));
        }
    }
    made
}

/// Creates a topic's directory and partitions, writing `topic.meta` last
/// (blocking). On failure nothing is left behind.
pub(super) fn create_topic_files(
    storage: &Storage,
    dir: PathBuf,
    name: String,
    partitions: i32,
    configs: BTreeMap<String, String>,
    log_config: LogConfig,
) -> io::Result<Topic> {
    let fs = storage.fs.as_ref();
    if fs.exists(&dir) {
        // Left over from a creation interrupted before topic.meta was written.
        fs.remove_dir_all(&dir)?;
    }
    let made = (|| {
        crate::log::fs::create_dir_durable(fs, &dir)?;
        let parts = open_partitions(storage, &dir, partitions, &log_config, false)?;
        fs.sync_dir(&dir)?;
        let id = loop {
            let id = Uuid::new_v4();
            if !id.is_nil() {
                break id;
            }
        };
        // topic.meta is written last: a topic exists on disk once it is there.
        write_topic_meta(fs, &dir, &name, id, partitions, &configs)?;
        if let Some(parent) = dir.parent() {
            fs.sync_dir(parent)?;
        }
        Ok((id, parts))
    })();
    match made {
        Ok((id, partitions)) => {
            let metrics = Arc::new(TopicTraffic::default());
            Ok(Topic::build(name, id, partitions, configs, dir, metrics))
        }
        Err(e) => {
            // The half-made partitions are dropped (closing their files) first.
            if let Err(cleanup) = fs.remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %cleanup,
                    "cannot remove a half-created topic; it is removed at the next creation or start");
            }
            Err(e)
        }
    }
}

/// Loads the topic in `dir`, or `None` if it has no `topic.meta` (blocking).
pub(super) fn load_topic(
    storage: &Storage,
    dir: &Path,
    config: &Config,
    dynamic: &topic_config::Dynamic,
    recover: bool,
) -> io::Result<Option<Topic>> {
    let fs = storage.fs.as_ref();
    let meta = dir.join(TOPIC_META_FILE);
    if !fs.exists(&meta) {
        return Ok(None);
    }
    let props = read_properties(fs, &meta)?;
    let bad = |what: &str| io::Error::other(format!("{}: bad {what}", meta.display()));
    let name = props.get("name").cloned().ok_or_else(|| bad("name"))?;
    let id: Uuid = props
        .get("id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("id"))?;
    let partitions: i32 = props
        .get("partitions")
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=PARTITIONS_ON_DISK_MAX).contains(n))
        .ok_or_else(|| bad("partitions"))?;
    let configs: BTreeMap<String, String> = props
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("config.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let log_config = topic_config::apply(&config.log_defaults(), &dynamic.merged(&configs))
        .map_err(io::Error::other)?;
    let parts = open_partitions(storage, dir, partitions, &log_config, recover)?;
    let metrics = Arc::new(TopicTraffic::default());
    Ok(Some(Topic::build(
        name,
        id,
        parts,
        configs,
        dir.to_path_buf(),
        metrics,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("a.b_c-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
