//! Topic configs: every name Kafka accepts, with its type, default, broker-level
//! synonym, documentation and validation, and how the ones Sluice honours map
//! onto the log settings. Names, types and units are Kafka's.
//!
//! A valid value Sluice does not act on yet is stored and reported (as Kafka
//! would report it) but logged as "stored, not applied"; [`Spec::applied`] says
//! which. Values Kafka would accept but that would make Sluice silently break a
//! promise (tiered storage) are refused with INVALID_CONFIG.

use std::collections::BTreeMap;

use crate::config::{check_segment_bytes, Config};
use crate::log::compress::Compression;
use crate::log::records::Codec;
use crate::log::LogConfig;

/// Where a reported config value comes from (Kafka's ConfigSource ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set on this topic (DYNAMIC_TOPIC_CONFIG).
    Topic = 1,
    /// Set on this broker at run time (DYNAMIC_BROKER_CONFIG).
    DynamicBroker = 2,
    /// Set for every broker at run time (DYNAMIC_DEFAULT_BROKER_CONFIG).
    DynamicDefault = 3,
    /// Set on the command line or in the environment (STATIC_BROKER_CONFIG).
    Static = 4,
    /// The built-in default (DEFAULT_CONFIG).
    Default = 5,
    /// Set on this group (GROUP_CONFIG).
    Group = 8,
}

/// Kafka's config types (ConfigType ids in DescribeConfigs v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true` / `false`.
    Boolean = 1,
    /// Free text or one of a set.
    String = 2,
    /// 32-bit integer.
    Int = 3,
    /// 16-bit integer.
    Short = 4,
    /// 64-bit integer.
    Long = 5,
    /// Floating point.
    Double = 6,
    /// Comma-separated list.
    List = 7,
}

/// How a value is checked.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// A number in `min..=max`.
    Real(f64, f64),
    /// One of these (case-sensitive, as Kafka's ValidString).
    OneOf(&'static [&'static str]),
    /// A non-empty list of these.
    ListOf(&'static [&'static str]),
    /// `true` or `false` (any case).
    Bool,
    /// Anything (replica throttle lists; `*` or `partition:broker` pairs).
    Any,
}

/// One topic config as Kafka defines it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Kafka's name.
    pub name: &'static str,
    /// Kafka's type.
    pub kind: Kind,
    /// The broker config it defaults from (its synonym).
    pub synonym: &'static str,
    /// Kafka's documentation, shortened; Sluice's behaviour where it differs.
    pub doc: &'static str,
    /// Whether Sluice acts on it today.
    pub applied: bool,
    /// Validation.
    check: Check,
}

const I32: i64 = i32::MAX as i64;
const I64: i64 = i64::MAX;

/// Kafka's default for `flush.messages` and `flush.ms`: never flush explicitly.
pub const FLUSH_NEVER: i64 = i64::MAX;

/// Every topic config Kafka accepts (3.x and 4.x), sorted by name, as reported.
pub const SPECS: &[Spec] = &[
    spec("cleanup.policy", Kind::List, "log.cleanup.policy", true, Check::ListOf(&["delete", "compact"]),
        "delete: old segments are removed by retention.ms and retention.bytes. compact: the log cleaner keeps the latest value per key (keyless records are refused); compact,delete does both."),
    spec("compression.gzip.level", Kind::Int, "compression.gzip.level", true, Check::Range(-1, 9),
        "Compression level for gzip when compression.type is gzip (applied on append when batches are recompressed)."),
    spec("compression.lz4.level", Kind::Int, "compression.lz4.level", true, Check::Range(1, 17),
        "Compression level for lz4 when compression.type is lz4 (applied on append when batches are recompressed)."),
    spec("compression.type", Kind::String, "compression.type", true,
        Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "Final compression of the topic's data: batches in another codec are recompressed on append; producer keeps the producer's codec."),
    spec("compression.zstd.level", Kind::Int, "compression.zstd.level", true, Check::Range(-131_072, 22),
        "Compression level for zstd when compression.type is zstd (applied on append when batches are recompressed)."),
    spec("delete.retention.ms", Kind::Long, "log.cleaner.delete.retention.ms", true, Check::Range(0, I64),
        "How long the cleaner keeps tombstones and transaction markers after it first sees them (KIP-534 delete horizon)."),
    spec("file.delete.delay.ms", Kind::Long, "log.segment.delete.delay.ms", false, Check::Range(0, I64),
        "Delay before a deleted segment's files are removed. Sluice removes them at once; readers keep open files valid."),
    spec("flush.messages", Kind::Long, "log.flush.interval.messages", true, Check::Range(1, I64),
        "Sluice's default 1: acks=all produce is fsynced before it is acknowledged. Larger values acknowledge acks=all from the page cache and fsync once this many messages are unflushed (Kafka's default is 9223372036854775807: never force)."),
    spec("flush.ms", Kind::Long, "log.flush.interval.ms", true, Check::Range(0, I64),
        "Longest time data stays unflushed; the broker's flusher runs every --flush-interval-ms, which bounds how finely this applies."),
    spec("follower.replication.throttled.replicas", Kind::List, "follower.replication.throttled.replicas", true, Check::Any,
        "Replicas to throttle on the follower side; a single-node broker has no followers."),
    spec("index.interval.bytes", Kind::Int, "log.index.interval.bytes", true, Check::Range(0, I32),
        "Bytes between offset-index entries."),
    spec("leader.replication.throttled.replicas", Kind::List, "leader.replication.throttled.replicas", true, Check::Any,
        "Replicas to throttle on the leader side; a single-node broker has no followers."),
    spec("local.retention.bytes", Kind::Long, "log.local.retention.bytes", false, Check::Range(-2, I64),
        "Local retention with tiered storage (stored; Sluice has no tiered storage)."),
    spec("local.retention.ms", Kind::Long, "log.local.retention.ms", false, Check::Range(-2, I64),
        "Local retention with tiered storage (stored; Sluice has no tiered storage)."),
    spec("max.compaction.lag.ms", Kind::Long, "log.cleaner.max.compaction.lag.ms", true, Check::Range(1, I64),
        "A dirty record older than this makes its log due for cleaning whatever the dirty ratio; the active segment also rolls at this age."),
    spec("max.message.bytes", Kind::Int, "message.max.bytes", true, Check::Range(0, I32),
        "Largest record batch the topic accepts."),
    spec("message.downconversion.enable", Kind::Boolean, "log.message.downconversion.enable", true, Check::Bool,
        "Whether old fetch versions may be down-converted; Sluice serves Fetch v4+ only, which never needs it."),
    spec("message.format.version", Kind::String, "log.message.format.version", true, Check::Any,
        "Deprecated; Sluice always stores record batch format v2 (magic 2)."),
    spec("message.timestamp.after.max.ms", Kind::Long, "log.message.timestamp.after.max.ms", true, Check::Range(0, I64),
        "Largest allowed amount a record timestamp may be ahead of the broker's clock (INVALID_TIMESTAMP past it)."),
    spec("message.timestamp.before.max.ms", Kind::Long, "log.message.timestamp.before.max.ms", true, Check::Range(0, I64),
        "Largest allowed amount a record timestamp may be behind the broker's clock (INVALID_TIMESTAMP past it)."),
    spec("message.timestamp.difference.max.ms", Kind::Long, "log.message.timestamp.difference.max.ms", true, Check::Range(0, I64),
        "Deprecated form of message.timestamp.before.max.ms, used when that is not set."),
    spec("message.timestamp.type", Kind::String, "log.message.timestamp.type", true, Check::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps each batch with the broker's clock on append."),
    spec("min.cleanable.dirty.ratio", Kind::Double, "log.cleaner.min.cleanable.ratio", true, Check::Real(0.0, 1.0),
        "Dirty share of the log (bytes not yet cleaned over all cleanable bytes) at which the cleaner compacts it."),
    spec("min.compaction.lag.ms", Kind::Long, "log.cleaner.min.compaction.lag.ms", true, Check::Range(0, I64),
        "Segments holding records younger than this are not cleaned."),
    spec("min.insync.replicas", Kind::Int, "min.insync.replicas", true, Check::Range(1, I32),
        "Replicas that must acknowledge an acks=all write. With one replica, values above 1 make acks=all produce fail with NOT_ENOUGH_REPLICAS, as in Kafka."),
    spec("preallocate", Kind::Boolean, "log.preallocate", false, Check::Bool,
        "Preallocate segment files (stored; Sluice preallocates only the index files)."),
    spec("remote.log.copy.disable", Kind::Boolean, "remote.log.copy.disable", true, Check::Bool,
        "Tiered storage copy switch; Sluice has no tiered storage."),
    spec("remote.log.delete.on.disable", Kind::Boolean, "remote.log.delete.on.disable", true, Check::Bool,
        "Tiered storage cleanup switch; Sluice has no tiered storage."),
    spec("remote.storage.enable", Kind::Boolean, "remote.log.storage.system.enable", true, Check::Bool,
        "Tiered storage; Sluice has none, so only false is accepted."),
    spec("retention.bytes", Kind::Long, "log.retention.bytes", true, Check::Range(-1, I64),
        "Delete the oldest segments while a partition is larger than this; -1 is no limit."),
    spec("retention.ms", Kind::Long, "log.retention.ms", true, Check::Range(-1, I64),
        "Delete segments whose newest record is older than this; -1 keeps data forever."),
    spec("segment.bytes", Kind::Int, "log.segment.bytes", true, Check::Range(1024, I32),
        "Roll to a new segment at this size."),
    spec("segment.index.bytes", Kind::Int, "log.index.size.max.bytes", true, Check::Range(12, I32),
        "Size the offset and time indexes are preallocated to; a full index rolls the segment."),
    spec("segment.jitter.ms", Kind::Long, "log.roll.jitter.ms", false, Check::Range(0, I64),
        "Random jitter subtracted from segment.ms (stored, not applied)."),
    spec("segment.ms", Kind::Long, "log.roll.ms", true, Check::Range(1, I64),
        "Roll to a new segment once the active one is this old."),
    spec("unclean.leader.election.enable", Kind::Boolean, "unclean.leader.election.enable", true, Check::Bool,
        "Whether an out-of-sync replica may become leader; a single replica is always in sync."),
];

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    kind: Kind,
    synonym: &'static str,
    applied: bool,
    check: Check,
    doc: &'static str,
) -> Spec {
    Spec {
        name,
        kind,
        synonym,
        doc,
        applied,
        check,
    }
}

/// The spec of a topic config name.
pub fn spec_of(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// A config value with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value as Kafka prints it.
    pub value: String,
    /// Its source.
    pub source: Source,
}

/// Dynamic broker configs (set with AlterConfigs on a BROKER resource), by
/// topic config name: the cluster-wide default ("" resource) and this broker's
/// own (its id). On one node both apply to every topic; this broker's wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// DYNAMIC_DEFAULT_BROKER_CONFIG values.
    pub cluster: BTreeMap<String, String>,
    /// DYNAMIC_BROKER_CONFIG values.
    pub node: BTreeMap<String, String>,
}

/// The file holding [`Dynamic`] in the data directory.
pub const DYNAMIC_FILE: &str = "dynamic-broker-configs.properties";

impl Dynamic {
    /// From the properties file's entries (`cluster.<broker name>` and
    /// `node.<broker name>`); unknown or invalid entries are skipped with a warning.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Dynamic {
        let mut d = Dynamic::default();
        for (k, v) in props {
            let (scope, broker_name) = match k.split_once('.') {
                Some(x) => x,
                None => continue,
            };
            let Some(spec) = spec_of_synonym(broker_name) else {
                tracing::warn!(config = %k, "ignoring an unknown dynamic broker config");
                continue;
            };
            let Ok(v) = check(spec.name, v) else {
                tracing::warn!(config = %k, value = %v, "ignoring an invalid dynamic broker config");
                continue;
            };
            match scope {
                "cluster" => d.cluster.insert(spec.name.to_string(), v),
                "node" => d.node.insert(spec.name.to_string(), v),
                _ => continue,
            };
        }
        d
    }

    /// The properties file's entries.
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (scope, m) in [("cluster", &self.cluster), ("node", &self.node)] {
            for (k, v) in m {
                if let Some(spec) = spec_of(k) {
                    out.insert(format!("{scope}.{}", spec.synonym), v.clone());
                }
            }
        }
        out
    }

    /// A topic's overrides on top of these dynamic defaults (the topic wins):
    /// what the effective settings are computed from.
    pub fn merged(&self, topic: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut m = self.cluster.clone();
        m.extend(self.node.clone());
        m.extend(topic.clone());
        m
    }
}

/// The topic config whose broker synonym is `broker_name`.
pub fn spec_of_synonym(broker_name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.synonym == broker_name)
}

/// The broker-level values topic configs default from: the built-in defaults,
/// the command line, and dynamic broker configs.
#[derive(Debug, Clone, Default)]
pub struct BrokerDefaults {
    /// By topic config name: its broker synonym's values, most specific first
    /// (this broker's dynamic value, the cluster's, then the static or default one).
    values: BTreeMap<&'static str, Vec<Value>>,
}

impl BrokerDefaults {
    /// Defaults from the broker's settings and dynamic configs: a flag given on
    /// the command line or in the environment counts as STATIC_BROKER_CONFIG.
    pub fn new(c: &Config, dynamic: &Dynamic) -> BrokerDefaults {
        let mut values = BTreeMap::new();
        for s in SPECS {
            let source = match flag_of(s.name) {
                Some(field) if c.explicit.contains(field) => Source::Static,
                _ => Source::Default,
            };
            let mut chain = Vec::new();
            if let Some(v) = dynamic.node.get(s.name) {
                chain.push(Value {
                    value: v.clone(),
                    source: Source::DynamicBroker,
                });
            }
            if let Some(v) = dynamic.cluster.get(s.name) {
                chain.push(Value {
                    value: v.clone(),
                    source: Source::DynamicDefault,
                });
            }
            chain.push(Value {
                value: broker_value(c, s.name),
                source,
            });
            values.insert(s.name, chain);
        }
        BrokerDefaults { values }
    }

    /// The effective broker-level value of topic config `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).and_then(|c| c.first())
    }

    /// Every broker-level value of topic config `name`, most specific first.
    pub fn chain(&self, name: &str) -> &[Value] {
        self.values.get(name).map_or(&[], |c| c.as_slice())
    }
}

/// The `Config` field that sets topic config `name`'s broker default, if any.
fn flag_of(name: &str) -> Option<&'static str> {
    Some(match name {
        "retention.ms" => "retention_ms",
        "retention.bytes" => "retention_bytes",
        "segment.bytes" => "segment_bytes",
        "segment.ms" => "segment_ms",
        "max.message.bytes" => "max_message_bytes",
        "flush.ms" => "flush_interval_ms",
        _ => return None,
    })
}

/// The broker's value for topic config `name`, from the flags that set it.
fn broker_value(c: &Config, name: &str) -> String {
    let log = c.log_defaults();
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "compression.gzip.level" => "-1".into(),
        "compression.lz4.level" => "9".into(),
        "compression.zstd.level" => "3".into(),
        "delete.retention.ms" => "86400000".into(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" => "1".into(),
        "flush.ms" => c.flush_interval_ms.to_string(),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "local.retention.bytes" | "local.retention.ms" => "-2".into(),
        "max.compaction.lag.ms" => i64::MAX.to_string(),
        "max.message.bytes" => log.max_message_bytes.to_string(),
        "message.downconversion.enable" => "true".into(),
        "message.format.version" => "3.0-IV1".into(),
        "message.timestamp.after.max.ms" => "3600000".into(),
        "message.timestamp.before.max.ms" | "message.timestamp.difference.max.ms" => {
            i64::MAX.to_string()
        }
        "message.timestamp.type" => "CreateTime".into(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "min.compaction.lag.ms" | "segment.jitter.ms" => "0".into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => log.retention_bytes.to_string(),
        "retention.ms" => log.retention_ms.to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.index.bytes" => log.index_bytes_max.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            String::new()
        }
        _ => "false".into(),
    }
}

/// Normalises and checks one value; the error is Kafka's INVALID_CONFIG message.
pub fn check(name: &str, value: &str) -> Result<String, String> {
    let spec = spec_of(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let v = value.trim();
    let bad = |why: String| format!("Invalid value {value} for configuration {name}: {why}");
    match spec.check {
        Check::Range(min, max) => {
            let n: i64 = v
                .parse()
                .map_err(|_| bad(format!("Not a number of type {:?}", spec.kind).to_uppercase()))?;
            if n < min || n > max {
                return Err(bad(format!("Value must be in [{min}, {max}]")));
            }
            Ok(n.to_string())
        }
        Check::Real(min, max) => {
            let n: f64 = v
                .parse()
                .map_err(|_| bad("Not a number of type DOUBLE".into()))?;
            if !(min..=max).contains(&n) {
                return Err(bad(format!("Value must be in [{min}, {max}]")));
            }
            Ok(v.to_string())
        }
        Check::OneOf(allowed) => {
            if !allowed.contains(&v) {
                return Err(bad(format!(
                    "String must be one of: {}",
                    allowed.join(", ")
                )));
            }
            Ok(v.to_string())
        }
        Check::ListOf(allowed) => {
            let items: Vec<&str> = v.split(',').map(str::trim).collect();
            if items.iter().any(|i| i.is_empty()) {
                return Err(bad("the list must not be empty".into()));
            }
            if let Some(i) = items.iter().find(|i| !allowed.contains(i)) {
                return Err(bad(format!("{i} is not one of: {}", allowed.join(", "))));
            }
            Ok(items.join(","))
        }
        Check::Bool => match v.to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => Ok(b.to_string()),
            _ => Err(bad("Expected value to be either true or false".into())),
        },
        Check::Any => Ok(v.to_string()),
    }
}

/// Validates a topic's overrides (names and values) and returns the effective
/// log settings over `defaults` (the broker's log defaults). Errors are
/// INVALID_CONFIG messages.
pub fn apply(
    defaults: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut c = defaults.clone();
    let num = |name: &str, v: &str| -> Result<i64, String> {
        check(name, v)?
            .parse()
            .map_err(|_| format!("{name} must be an integer"))
    };
    for (name, v) in configs {
        let v = check(name, v)?;
        match name.as_str() {
            "retention.ms" => c.retention_ms = num(name, &v)?,
            "retention.bytes" => c.retention_bytes = num(name, &v)?,
            "segment.bytes" => {
                let n = num(name, &v)? as u64;
                check_segment_bytes(n)?;
                c.segment_bytes = n;
            }
            "segment.ms" => c.segment_ms = num(name, &v)?,
            "message.timestamp.after.max.ms" => c.timestamp_after_max_ms = num(name, &v)?,
            "message.timestamp.before.max.ms" => c.timestamp_before_max_ms = num(name, &v)?,
            // Deprecated: applies only where before.max.ms is not set, as Kafka.
            "message.timestamp.difference.max.ms"
                if !configs.contains_key("message.timestamp.before.max.ms") =>
            {
                c.timestamp_before_max_ms = num(name, &v)?
            }
            "max.message.bytes" => c.max_message_bytes = num(name, &v)? as u64,
            "delete.retention.ms" => c.delete_retention_ms = num(name, &v)?,
            "min.compaction.lag.ms" => c.min_compaction_lag_ms = num(name, &v)?,
            "max.compaction.lag.ms" => c.max_compaction_lag_ms = num(name, &v)?,
            "min.cleanable.dirty.ratio" => {
                c.min_cleanable_dirty_ratio =
                    v.parse().map_err(|_| format!("{name} must be a number"))?
            }
            "index.interval.bytes" => c.index_interval_bytes = num(name, &v)? as u64,
            "segment.index.bytes" => {
                c.index_bytes_max =
                    usize::try_from(num(name, &v)?).map_err(|_| "segment.index.bytes too large")?
            }
            "remote.storage.enable" if v == "true" => {
                return Err(
                    "Tiered Storage functionality is disabled in the broker (Sluice has no tiered storage)"
                        .into(),
                );
            }
            _ => {}
        }
    }
    // LogAppendTime replaces the producer's timestamps, so Kafka does not
    // check them.
    c.log_append_time =
        configs.get("message.timestamp.type").map(String::as_str) == Some("LogAppendTime");
    if c.log_append_time {
        c.timestamp_before_max_ms = i64::MAX;
        c.timestamp_after_max_ms = i64::MAX;
    }
    c.compression = compression(configs);
    // A compacted-only topic is never trimmed by retention.
    if let Some(p) = configs.get("cleanup.policy") {
        let policy = |name: &str| p.split(',').any(|x| x.trim() == name);
        c.compact = policy("compact");
        if !policy("delete") {
            c.retention_ms = -1;
            c.retention_bytes = -1;
        }
    }
    if c.compact {
        if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
            return Err(format!(
                "min.compaction.lag.ms ({}) must not exceed max.compaction.lag.ms ({})",
                c.min_compaction_lag_ms, c.max_compaction_lag_ms
            ));
        }
        // As Kafka: the active segment, which is never cleaned, rolls by
        // max.compaction.lag.ms too, so no record waits longer than that.
        if c.max_compaction_lag_ms < i64::MAX {
            c.segment_ms = if c.segment_ms < 0 {
                c.max_compaction_lag_ms
            } else {
                c.segment_ms.min(c.max_compaction_lag_ms)
            };
        }
    }
    Ok(c)
}

/// The codec and level `compression.type` and `compression.<codec>.level`
/// ask for; `None` for `producer` (keep the producer's codec).
fn compression(configs: &BTreeMap<String, String>) -> Option<Compression> {
    let codec = match configs.get("compression.type").map(String::as_str) {
        Some("uncompressed") => Codec::None,
        Some("gzip") => Codec::Gzip,
        Some("snappy") => Codec::Snappy,
        Some("lz4") => Codec::Lz4,
        Some("zstd") => Codec::Zstd,
        _ => return None,
    };
    let level_key = match codec {
        Codec::Gzip => "compression.gzip.level",
        Codec::Lz4 => "compression.lz4.level",
        Codec::Zstd => "compression.zstd.level",
        Codec::None | Codec::Snappy => "",
    };
    let level = configs
        .get(level_key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(Compression::default_level(codec));
    Some(Compression { codec, level })
}

/// The values of `configs` that are stored but not acted on yet, for a log line.
pub fn not_applied(configs: &BTreeMap<String, String>) -> Vec<String> {
    configs
        .iter()
        .filter(|(k, _)| spec_of(k).is_some_and(|s| !s.applied))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// `flush.messages` and `flush.ms` of a topic: by default 1 (acks=all waits for
/// the fsync) and the broker's flush interval (0 here: every flusher pass).
pub fn flush_policy(configs: &BTreeMap<String, String>) -> crate::storage::FlushPolicy {
    let get = |k: &str, d: i64| configs.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    crate::storage::FlushPolicy {
        messages: get("flush.messages", 1).max(1),
        ms: get("flush.ms", 0).max(0),
    }
}

/// `min.insync.replicas` of a topic (1 unless overridden).
pub fn min_insync_replicas(configs: &BTreeMap<String, String>) -> i64 {
    configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// One config as DescribeConfigs reports it for a topic.
#[derive(Debug, Clone)]
pub struct Described {
    /// Its spec.
    pub spec: &'static Spec,
    /// Effective value and source.
    pub value: Value,
    /// Where else it is set, most specific first (DescribeConfigs synonyms).
    pub synonyms: Vec<(String, Value)>,
}

/// Every topic config with its effective value, source and synonyms.
pub fn describe(broker: &BrokerDefaults, configs: &BTreeMap<String, String>) -> Vec<Described> {
    SPECS
        .iter()
        .map(|spec| {
            let mut synonyms = Vec::new();
            let topic = configs.get(spec.name).map(|v| Value {
                value: v.clone(),
                source: Source::Topic,
            });
            if let Some(t) = &topic {
                synonyms.push((spec.name.to_string(), t.clone()));
            }
            for v in broker.chain(spec.name) {
                synonyms.push((spec.synonym.to_string(), v.clone()));
            }
            let broker_value = broker.get(spec.name).cloned().unwrap_or(Value {
                value: String::new(),
                source: Source::Default,
            });
            Described {
                spec,
                value: topic.unwrap_or(broker_value),
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_configs_apply() {
        let m = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let c = apply(&LogConfig::default(), &m).unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.segment_bytes, 4096);
        let d = describe(
            &BrokerDefaults::new(&Config::for_test("/x".into()), &Dynamic::default()),
            &m,
        );
        assert_eq!(d.len(), SPECS.len());
        let r = d.iter().find(|e| e.spec.name == "retention.ms").unwrap();
        assert_eq!(r.value.value, "1000");
        assert_eq!(r.value.source, Source::Topic);
        assert_eq!(r.synonyms[1].0, "log.retention.ms");
    }

    #[test]
    fn every_kafka_value_kafka_accepts_is_accepted() {
        for (k, v) in [
            ("cleanup.policy", "compact,delete"),
            ("cleanup.policy", "compact"),
            ("compression.type", "zstd"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.insync.replicas", "2"),
            ("flush.messages", "9223372036854775807"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("unclean.leader.election.enable", "TRUE"),
            ("leader.replication.throttled.replicas", "*"),
        ] {
            apply(&LogConfig::default(), &map(&[(k, v)]))
                .unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
    }

    #[test]
    fn unknown_and_invalid_are_errors() {
        for (k, v) in [
            ("no.such", "1"),
            ("retention.ms", "x"),
            ("cleanup.policy", "forever"),
            ("cleanup.policy", ""),
            ("segment.bytes", "10"),
            ("segment.index.bytes", "1000000000000"),
            ("max.message.bytes", "-1"),
            ("compression.type", "brotli"),
            ("min.cleanable.dirty.ratio", "2"),
            ("remote.storage.enable", "true"),
            ("preallocate", "yes"),
        ] {
            assert!(
                apply(&LogConfig::default(), &map(&[(k, v)])).is_err(),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn dynamic_broker_defaults_layer_under_topic_overrides() {
        let mut d = Dynamic::default();
        d.cluster.insert("retention.ms".into(), "5000".into());
        d.node.insert("retention.ms".into(), "6000".into());
        d.node.insert("segment.ms".into(), "7000".into());
        let back = Dynamic::from_properties(&d.to_properties());
        assert_eq!(back, d);
        let b = BrokerDefaults::new(&Config::for_test("/x".into()), &d);
        let chain = b.chain("retention.ms");
        assert_eq!(chain.len(), 3);
        assert_eq!(
            (chain[0].value.as_str(), chain[0].source),
            ("6000", Source::DynamicBroker)
        );
        assert_eq!(chain[1].source, Source::DynamicDefault);
        let m = d.merged(&map(&[("segment.ms", "8000")]));
        let c = apply(&LogConfig::default(), &m).unwrap();
        assert_eq!((c.retention_ms, c.segment_ms), (6000, 8000));
    }

    #[test]
    fn compact_only_topics_are_never_trimmed() {
        let c = apply(
            &LogConfig::default(),
            &map(&[("cleanup.policy", "compact")]),
        )
        .unwrap();
        assert_eq!((c.retention_ms, c.retention_bytes), (-1, -1));
        let c = apply(
            &LogConfig::default(),
            &map(&[("cleanup.policy", "compact,delete")]),
        )
        .unwrap();
        assert_eq!(c.retention_ms, LogConfig::default().retention_ms);
        assert!(c.compact);
        assert!(not_applied(&map(&[
            ("cleanup.policy", "compact"),
            ("retention.ms", "5")
        ]))
        .is_empty());
    }

    #[test]
    fn compaction_settings_are_applied() {
        let c = apply(
            &LogConfig::default(),
            &map(&[
                ("cleanup.policy", "compact"),
                ("delete.retention.ms", "100"),
                ("min.cleanable.dirty.ratio", "0.25"),
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "5000"),
            ]),
        )
        .unwrap();
        assert!(c.compact);
        assert_eq!(c.delete_retention_ms, 100);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(
            (c.min_compaction_lag_ms, c.max_compaction_lag_ms),
            (10, 5000)
        );
        assert_eq!(
            c.segment_ms, 5000,
            "the active segment rolls by max.compaction.lag.ms"
        );
        let bad = apply(
            &LogConfig::default(),
            &map(&[
                ("cleanup.policy", "compact"),
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "5"),
            ]),
        );
        assert!(bad.is_err());
        let plain = apply(
            &LogConfig::default(),
            &map(&[("max.compaction.lag.ms", "5")]),
        )
        .unwrap();
        assert!(!plain.compact);
        assert_eq!(plain.segment_ms, LogConfig::default().segment_ms);
    }
}
