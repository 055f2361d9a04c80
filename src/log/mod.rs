//! The storage engine: one append-only, segmented log per partition.
//!
//! Synchronous by design and free of wire types: callers in `storage` run it on
//! blocking threads. Every file operation goes through the [`Fs`] seam. See
//! docs/on-disk-format.md for the file layout.
//!
//! Invariants: the `.log` files are the truth; `.index` and `.timeindex` are
//! derived and rebuilt whenever they fail a sanity check or the shutdown was not
//! clean. Only fully validated batches ([`records::Validated`]) are appended, and
//! only the last segment of a log can hold a torn write.

pub mod batch;
pub mod cleaner;
pub mod compress;
pub mod decode;
pub mod fs;
pub mod index;
pub mod partition;
pub mod producer;
pub mod records;
pub mod segment;
pub mod sim;
pub mod txn_index;

pub use batch::{BatchError, BatchHeader};
pub use fs::{Fs, FsFile, RealFs};
pub use partition::{AppendError, AppendInfo, PartitionLog, ReadError};
pub use segment::{FileSlice, OpenError};

/// Per-partition log settings, from broker defaults overridden by topic configs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll to a new segment once the active one would exceed this (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll once the active segment is this old, in ms; -1 disables (`segment.ms`).
    pub segment_ms: i64,
    /// Delete sealed segments whose newest record is older than this; -1 keeps forever (`retention.ms`).
    pub retention_ms: i64,
    /// Delete oldest sealed segments while the log exceeds this; -1 disables (`retention.bytes`).
    pub retention_bytes: i64,
    /// Largest accepted batch in bytes (`max.message.bytes`).
    pub max_message_bytes: u64,
    /// Bytes between sparse index entries (`index.interval.bytes`): smaller is faster lookups, larger indexes.
    pub index_interval_bytes: u64,
    /// Size each index file is preallocated to (`segment.index.bytes`); a full index rolls the segment.
    pub index_bytes_max: usize,
    /// Idempotent producers idle this long are forgotten (`producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// A record timestamp further behind the broker's clock is refused
    /// (`message.timestamp.before.max.ms`; `i64::MAX` accepts any).
    pub timestamp_before_max_ms: i64,
    /// A record timestamp further ahead of the broker's clock is refused
    /// (`message.timestamp.after.max.ms`; Kafka 4's default is one hour).
    pub timestamp_after_max_ms: i64,
    /// `message.timestamp.type=LogAppendTime`: each appended batch is stamped
    /// with the broker's clock (its max timestamp and timestamp-type bit).
    pub log_append_time: bool,
    /// `compression.type`: batches in another codec are recompressed into
    /// this one on append; `None` keeps the producer's (`producer`).
    pub compression: Option<compress::Compression>,
    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest
    /// record per key, and keyless records are refused.
    pub compact: bool,
    /// How long the cleaner keeps tombstones and transaction markers after
    /// it first saw them (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Dirty share of the log at which it is cleaned (`min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: f64,
    /// Records younger than this are not cleaned (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// A dirty record older than this forces a cleaning, whatever the ratio
    /// (`max.compaction.lag.ms`).
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1024 * 1024 + 12,
            index_interval_bytes: 4096,
            index_bytes_max: 10 * 1024 * 1024,
            producer_id_expiration_ms: 86_400_000,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            log_append_time: false,
            compression: None,
            compact: false,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}
