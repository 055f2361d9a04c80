//! A durable key/value state log for coordinators (groups today, transactions
//! next), as Kafka's `__consumer_offsets`: an internal partition of versioned
//! records, replayed on start and compacted by snapshot.
//!
//! Each record's value starts with `u64 version, u8 present`. Versions grow with
//! every change a coordinator computes (taken under that coordinator's lock), and
//! replay keeps, per key, the value with the highest version, so the order in
//! which concurrent writes reach the log does not matter. A tombstone is a value
//! with `present = 0`.
//!
//! Compaction rolls the log, writes every live key (with fresh versions) after
//! the roll, makes it durable, and only then deletes the segments before the
//! roll. A crash at any point leaves a log whose replay gives the same state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{Partition, PartitionError, Syncer};
use crate::clock::now_ms;
use crate::log::records::{self, KeyValue};

/// Bytes of the version header in front of every value.
const VALUE_HEADER_BYTES: usize = 9;
/// Records per batch are capped by bytes so no batch nears the log's max.message.bytes.
const BATCH_BYTES_TARGET: usize = 1 << 20;
/// Bytes read from the log per step of the replay.
const REPLAY_READ_BYTES: u64 = 8 << 20;

/// One change: `value` `None` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, encoded by the coordinator.
    pub key: Vec<u8>,
    /// From [`StateLog::next_version`], taken when the change was computed.
    pub version: u64,
    /// The new value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

impl Entry {
    /// Key and value bytes: what the compaction thresholds count.
    fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len)
    }

    fn encoded_value(&self) -> Vec<u8> {
        let payload = self.value.as_deref().unwrap_or(&[]);
        let mut v = Vec::with_capacity(VALUE_HEADER_BYTES + payload.len());
        v.extend_from_slice(&self.version.to_be_bytes());
        v.push(u8::from(self.value.is_some()));
        v.extend_from_slice(payload);
        v
    }
}

/// The newest live value of every key, as replayed, with its version.
pub type Snapshot = HashMap<Vec<u8>, (u64, Vec<u8>)>;

/// The state log.
pub struct StateLog {
    /// The internal partition (not a topic: invisible to clients).
    partition: Arc<Partition>,
    /// fsync queue shared with the broker.
    syncer: Syncer,
    /// Next record version.
    version: AtomicU64,
    /// Bytes appended since the last snapshot.
    bytes_since_snapshot: AtomicU64,
    /// Size of the last snapshot: compaction waits for the log to outgrow it.
    snapshot_bytes: AtomicU64,
    /// Compact once this many bytes were appended since the last snapshot (and more than the snapshot).
    compact_bytes: u64,
    /// A compaction is running.
    compacting: AtomicBool,
}

impl std::fmt::Debug for StateLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateLog")
            .field("version", &self.version)
            .finish()
    }
}

/// Keeps `(key, version, value)` if it is the newest seen for its key.
fn keep_newest(
    latest: &mut HashMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    key: &[u8],
    version: u64,
    value: Option<&[u8]>,
) {
    if latest.get(key).is_none_or(|(v, _)| *v <= version) {
        latest.insert(key.to_vec(), (version, value.map(<[u8]>::to_vec)));
    }
}

impl StateLog {
    /// Replays the log (blocking) and returns it with the newest live value of every key.
    pub fn open(
        partition: Arc<Partition>,
        syncer: Syncer,
        compact_bytes: u64,
    ) -> Result<(StateLog, Snapshot), PartitionError> {
        let mut latest: HashMap<Vec<u8>, (u64, Option<Vec<u8>>)> = HashMap::new();
        let mut max_version = 0u64;
        let mut offset = partition.log_start_offset();
        let mut bytes = 0u64;
        while let Some(slice) = partition.read_blocking(offset, REPLAY_READ_BYTES)? {
            let buf = slice.read_to_vec()?;
            bytes += buf.len() as u64;
            let mut next = offset;
            for (at, h) in records::split_stored(&buf) {
                next = h.next_offset();
                let b = &buf[at..at + h.total_bytes()];
                let Some(records) = records::uncompressed(b) else {
                    tracing::warn!(
                        offset = h.base_offset,
                        "skipping an unreadable state log batch"
                    );
                    continue;
                };
                for (key, value) in records {
                    let (Some(key), Some(value)) = (key, value) else {
                        continue;
                    };
                    if value.len() < VALUE_HEADER_BYTES {
                        continue;
                    }
                    let mut v = [0u8; 8];
                    v.copy_from_slice(&value[..8]);
                    let version = u64::from_be_bytes(v);
                    max_version = max_version.max(version);
                    let present = value[8] != 0;
                    let payload = present.then(|| &value[VALUE_HEADER_BYTES..]);
                    keep_newest(&mut latest, key, version, payload);
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        let snapshot = latest
            .into_iter()
            .filter_map(|(k, (version, v))| v.map(|v| (k, (version, v))))
            .collect();
        Ok((
            StateLog {
                partition,
                syncer,
                version: AtomicU64::new(max_version + 1),
                bytes_since_snapshot: AtomicU64::new(bytes),
                snapshot_bytes: AtomicU64::new(0),
                compact_bytes,
                compacting: AtomicBool::new(false),
            },
            snapshot,
        ))
    }

    /// A fresh version. Call it under the lock of whatever the key describes, so
    /// versions of one key grow in the order its changes were computed.
    pub fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends `entries` and waits until they are on stable storage. Returns true
    /// when the log has grown enough that the caller should start a compaction.
    pub async fn write(&self, entries: Vec<Entry>) -> Result<bool, PartitionError> {
        if entries.is_empty() {
            return Ok(false);
        }
        let size: u64 = entries.iter().map(|e| e.bytes() as u64).sum();
        let partition = self.partition.clone();
        let end = crate::clock::work::blocking(move || -> Result<i64, PartitionError> {
            let mut end = 0;
            for b in batches(&entries) {
                end = partition.append_blocking(&b)?.last_offset + 1;
            }
            Ok(end)
        })
        .await
        .map_err(|e| PartitionError::Io(std::io::Error::other(format!("append task: {e}"))))??;
        self.syncer
            .wait_durable(vec![(self.partition.clone(), end)])
            .await?;
        Ok(self.note_written(size))
    }

    /// Counts appended bytes; true when a compaction is due and none is running.
    fn note_written(&self, bytes: u64) -> bool {
        let since = self
            .bytes_since_snapshot
            .fetch_add(bytes, Ordering::Relaxed)
            + bytes;
        since
            >= self
                .compact_bytes
                .max(self.snapshot_bytes.load(Ordering::Relaxed))
            && !self.compacting.swap(true, Ordering::AcqRel)
    }

    /// Step 1 of compaction: roll, so the snapshot starts a segment. Returns its base.
    pub async fn begin_snapshot(&self) -> Result<i64, PartitionError> {
        let p = self.partition.clone();
        let res = crate::clock::work::blocking(move || p.roll_blocking())
            .await
            .unwrap_or_else(|e| Err(PartitionError::Io(std::io::Error::other(e.to_string()))));
        if res.is_err() {
            self.compacting.store(false, Ordering::Release);
        }
        res
    }

    /// Step 2: write the snapshot, make it durable, and delete what it supersedes.
    /// The snapshot must hold every live key as durable now, each at the version
    /// it was written with (or a fresh one where memory is the truth), and no
    /// write queued before step 1 may still be in flight: it sits in the
    /// segments about to be deleted.
    pub async fn finish_snapshot(
        &self,
        base: i64,
        entries: Vec<Entry>,
    ) -> Result<(), PartitionError> {
        let size: u64 = entries.iter().map(|e| e.bytes() as u64).sum();
        let res = async {
            self.write(entries).await?;
            let p = self.partition.clone();
            crate::clock::work::blocking(move || p.delete_before_blocking(base))
                .await
                .unwrap_or_else(|e| Err(PartitionError::Io(std::io::Error::other(e.to_string()))))
        }
        .await;
        self.snapshot_bytes.store(size, Ordering::Relaxed);
        self.bytes_since_snapshot.store(size, Ordering::Relaxed);
        self.compacting.store(false, Ordering::Release);
        res.map(|n| tracing::info!(segments = n, snapshot_bytes = size, "state log compacted"))
    }
}

/// Packs entries into batches of about [`BATCH_BYTES_TARGET`] bytes.
fn batches(entries: &[Entry]) -> Vec<Vec<u8>> {
    let now = now_ms();
    let values: Vec<Vec<u8>> = entries.iter().map(Entry::encoded_value).collect();
    let mut out = Vec::new();
    let mut chunk: Vec<KeyValue<'_>> = Vec::new();
    let mut size = 0;
    for (e, v) in entries.iter().zip(&values) {
        let len = e.key.len() + v.len();
        if !chunk.is_empty() && size + len > BATCH_BYTES_TARGET {
            out.push(records::build_batch(now, &chunk));
            chunk.clear();
            size = 0;
        }
        chunk.push((Some(&e.key), Some(v)));
        size += len;
    }
    if !chunk.is_empty() {
        out.push(records::build_batch(now, &chunk));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_wins_whatever_the_order() {
        let mut latest = HashMap::new();
        keep_newest(&mut latest, b"k", 3, Some(b"thirty"));
        keep_newest(&mut latest, b"k", 2, Some(b"twenty"));
        assert_eq!(latest[&b"k"[..]], (3, Some(b"thirty".to_vec())));
        keep_newest(&mut latest, b"k", 4, None);
        assert_eq!(latest[&b"k"[..]], (4, None));
    }

    #[test]
    fn entries_encode_their_version_and_presence() {
        let e = Entry {
            key: b"k".to_vec(),
            version: 7,
            value: Some(b"v".to_vec()),
        };
        let v = e.encoded_value();
        assert_eq!(&v[..8], &7u64.to_be_bytes());
        assert_eq!(v[8], 1);
        assert_eq!(&v[9..], b"v");
        let t = Entry { value: None, ..e };
        assert_eq!(t.encoded_value()[8], 0);
    }
}
