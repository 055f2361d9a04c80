//! Log compaction (`cleanup.policy=compact`): the work of one cleaning, as
//! Kafka's log cleaner does it, without the partition lock.
//!
//! A cleaning of a partition has three phases:
//! 1. **Plan** (under the log lock, [`super::PartitionLog::plan_cleaning`]): the
//!    sealed segments below the first uncleanable offset (the active segment,
//!    the last stable offset, `min.compaction.lag.ms`), with their open files.
//!    Sealed segments never change, so the rest reads them without the lock.
//! 2. **Map and stage** (no lock, [`build_map`] and [`stage`]): the offset map
//!    holds, for each key of the dirty part, its latest offset; each group of
//!    segments is rewritten into `cleaning/` keeping, per key, only the newest
//!    record, with the same offsets (gaps are normal), and fsynced.
//! 3. **Commit and swap** (under the lock, [`commit`] via
//!    [`super::PartitionLog::commit_cleaning`]): if the replaced segments are
//!    still as planned, the manifest `cleaning/swap` is written atomically
//!    (the commit point), the replaced segments' files are removed, the staged
//!    files renamed into place, and the manifest removed.
//!
//! A crash before the manifest leaves the old segments and a `cleaning/`
//! directory that the next start removes; a crash after it is finished by
//! the next start from the manifest ([`recover`]). Either way the log is the
//! old segment set or the new one, never a mix.
//!
//! Tombstones and transaction markers are removed only after
//! `delete.retention.ms` (KIP-534): the first cleaning that keeps one sets its
//! batch's delete horizon (attribute bit 6, the horizon in the base
//! timestamp, record timestamp deltas re-encoded against it) and a later
//! cleaning past the horizon drops it. Records of aborted transactions are
//! removed; a marker is dropped once no record of its transaction remains.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::compress::{self, Compression};
use super::fs::{Fs, FsFile};
use super::records::{self, Codec, RecordError};
use super::segment::{self, Segment, RELATIVE_OFFSET_MAX};
use super::txn_index::{self, AbortedTxn, TXN_INDEX_EXT};
use super::LogConfig;

/// The directory a cleaning stages its segment in, inside the partition's.
pub const CLEANING_DIR: &str = "cleaning";
/// The commit point of a cleaning: `<base> <end>` of the replaced range.
const MANIFEST: &str = "swap";
/// The first offset not yet cleaned, kept across restarts (a lost file only
/// costs a cleaning of the whole log).
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Memory the offset map counts per key: a 128-bit hash and an offset, with
/// the hash table's slack.
pub const MAP_ENTRY_BYTES: u64 = 48;
/// Longest single sleep of the I/O throttle, so a stop is noticed.
const THROTTLE_SLEEP_MAX: Duration = Duration::from_millis(100);

/// Why a cleaning did not finish. Nothing was changed in any case.
#[derive(Debug)]
pub enum CleanError {
    /// The file system failed.
    Io(io::Error),
    /// A stored batch's records do not parse (the segment is damaged).
    Records(RecordError),
    /// A stored batch fails its checks (length, CRC, offsets): the segment is
    /// damaged, and the cleaner leaves it as it is.
    Damaged(String),
    /// The broker is stopping.
    Stopped,
    /// The offset map cannot hold even one batch of the dirty part.
    MapTooSmall,
}

impl From<io::Error> for CleanError {
    fn from(e: io::Error) -> Self {
        CleanError::Io(e)
    }
}

impl std::fmt::Display for CleanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CleanError::Io(e) => write!(f, "i/o error: {e}"),
            CleanError::Records(e) => write!(f, "a stored batch does not parse: {e}"),
            CleanError::Damaged(why) => write!(f, "a sealed segment is damaged: {why}"),
            CleanError::Stopped => write!(f, "stopped"),
            CleanError::MapTooSmall => write!(
                f,
                "the offset map (--log-cleaner-dedupe-buffer-bytes) cannot hold one batch"
            ),
        }
    }
}

/// Key -> latest offset of the dirty part, bounded in entries. Keys are
/// stored as 128-bit hashes (as Kafka's MD5): a collision, which would drop
/// a live record, is beyond any realistic key count.
#[derive(Debug)]
pub struct OffsetMap {
    /// Key hash -> latest offset.
    map: HashMap<u128, i64>,
    /// Most entries held (from the configured bytes).
    capacity: usize,
}

impl OffsetMap {
    /// A map using about `bytes` of memory.
    pub fn with_memory(bytes: u64) -> OffsetMap {
        OffsetMap {
            map: HashMap::new(),
            capacity: usize::try_from(bytes / MAP_ENTRY_BYTES)
                .unwrap_or(usize::MAX)
                .max(1),
        }
    }

    fn hash(key: &[u8]) -> u128 {
        let half = |seed: u8| {
            let mut h = std::hash::DefaultHasher::new();
            seed.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        (u128::from(half(0)) << 64) | u128::from(half(1))
    }

    /// The latest offset of `key`, if the map holds it.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&Self::hash(key)).copied()
    }

    fn put(&mut self, key: &[u8], offset: i64) {
        self.map.insert(Self::hash(key), offset);
    }

    /// Whether `n` more keys surely fit.
    fn has_room(&self, n: usize) -> bool {
        self.map.len().saturating_add(n) <= self.capacity
    }

    /// Empties the map for the next cleaning (keeps its allocation).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Paces the cleaner's reads and writes to `--log-cleaner-io-bytes-per-second`
/// and notices a stop while it waits.
pub struct Throttle<'a> {
    /// Bytes per second; 0 is unlimited.
    rate: u64,
    /// When pacing started.
    start: Instant,
    /// Bytes read and written since `start`.
    bytes: u64,
    /// Asked between batches: true stops the cleaning.
    stop: &'a dyn Fn() -> bool,
}

impl<'a> Throttle<'a> {
    /// A throttle at `rate` bytes per second (0: unlimited).
    pub fn new(rate: u64, stop: &'a dyn Fn() -> bool) -> Throttle<'a> {
        Throttle {
            rate,
            start: Instant::now(),
            bytes: 0,
            stop,
        }
    }

    /// Counts `n` bytes of I/O, sleeping while ahead of the rate.
    fn spend(&mut self, n: u64) -> Result<(), CleanError> {
        self.bytes += n;
        loop {
            if (self.stop)() {
                return Err(CleanError::Stopped);
            }
            if self.rate == 0 {
                return Ok(());
            }
            let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
            let elapsed = self.start.elapsed();
            if elapsed >= due {
                return Ok(());
            }
            std::thread::sleep((due - elapsed).min(THROTTLE_SLEEP_MAX));
        }
    }
}

/// A sealed segment as the plan saw it: its open file stays readable even if
/// retention removes it meanwhile (the swap then finds it gone and gives up).
#[derive(Debug, Clone)]
pub struct SegmentView {
    /// First offset it may hold (its file name).
    pub base: i64,
    /// Bytes of batches.
    pub size: u64,
    /// The log file.
    pub file: Arc<dyn FsFile>,
}

/// What one cleaning of a partition works on, taken under the log lock.
#[derive(Debug)]
pub struct Plan {
    /// The file system.
    pub fs: Arc<dyn Fs>,
    /// The partition's directory.
    pub dir: PathBuf,
    /// The partition's settings.
    pub config: LogConfig,
    /// Sealed segments from the log start, all below `end`.
    pub segments: Vec<SegmentView>,
    /// Base of the first segment not cleaned (the end of the cleanable range).
    pub end: i64,
    /// First offset not cleaned before: the map covers `[first_dirty, end)`.
    pub first_dirty: i64,
    /// Aborted transactions with records below `end`.
    pub aborted: Vec<AbortedTxn>,
    /// Largest inflated records section of one batch (`--decompressed-batch-bytes-max`).
    pub decompressed_bytes_max: u64,
}

impl Plan {
    /// Whether a transactional batch of `producer_id` at `offset` belongs to
    /// an aborted transaction.
    fn is_aborted(&self, producer_id: i64, offset: i64) -> bool {
        self.aborted.iter().any(|a| {
            a.producer_id == producer_id && a.first_offset <= offset && offset < a.last_offset
        })
    }
}

/// Every batch of a segment in order, each read whole; `f` returns the bytes
/// it wrote, which count against the throttle with those read.
fn for_each_batch(
    seg: &SegmentView,
    throttle: &mut Throttle<'_>,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<u64, CleanError>,
) -> Result<(), CleanError> {
    let damaged = |pos: u64, why: String| {
        CleanError::Damaged(format!("segment {} at byte {pos}: {why}", seg.base))
    };
    let mut pos = 0u64;
    let mut next = seg.base;
    let mut buf = Vec::new();
    while pos < seg.size {
        if pos + HEADER_BYTES as u64 > seg.size {
            return Err(damaged(pos, "a partial batch header".into()));
        }
        buf.resize(HEADER_BYTES, 0);
        seg.file.read_exact_at(&mut buf, pos)?;
        let h = BatchHeader::parse(&buf).map_err(|e| damaged(pos, e.to_string()))?;
        let total = h.check_length().map_err(|e| damaged(pos, e.to_string()))?;
        if pos + total as u64 > seg.size {
            return Err(damaged(pos, "a batch runs past the segment's end".into()));
        }
        buf.resize(total, 0);
        seg.file.read_exact_at(&mut buf, pos)?;
        let h = batch::validate_stored(&buf).map_err(|e| damaged(pos, e.to_string()))?;
        if h.base_offset < next {
            return Err(damaged(
                pos,
                format!("offset {} goes backwards", h.base_offset),
            ));
        }
        next = h.next_offset();
        let written = f(&h, &buf)?;
        throttle.spend(total as u64 + written)?;
        pos += total as u64;
    }
    Ok(())
}

/// One record of a decompressed records section, borrowed.
struct RawRecord<'a> {
    /// Timestamp delta from the batch's base timestamp.
    ts_delta: i64,
    /// Offset delta from the batch's base offset.
    offset_delta: i32,
    /// The key (`None`: null).
    key: Option<&'a [u8]>,
    /// Whether the value is null (a tombstone).
    tombstone: bool,
    /// From the key length to the end: key, value and headers, unchanged.
    tail: &'a [u8],
}

/// The records of a batch's (decompressed) records section.
fn raw_records<'a>(payload: &'a [u8], count: i32) -> Result<Vec<RawRecord<'a>>, RecordError> {
    let bad = |record, why| RecordError::Framing { record, why };
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 16));
    let mut at = 0usize;
    for i in 0..count {
        let len = records::get_varint(payload, &mut at).ok_or(bad(i, "record length"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|e| *e <= payload.len())
            .ok_or(bad(i, "record length"))?;
        let rec = &payload[at..end];
        let mut p = 1; // attributes
        let ts_delta = records::get_varint(rec, &mut p).ok_or(bad(i, "timestamp delta"))?;
        let offset_delta = records::get_varint(rec, &mut p)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or(bad(i, "offset delta"))?;
        let tail_at = p;
        let key = records::get_bytes(rec, &mut p).ok_or(bad(i, "key"))?;
        let value = records::get_bytes(rec, &mut p).ok_or(bad(i, "value"))?;
        out.push(RawRecord {
            ts_delta,
            offset_delta,
            key,
            tombstone: value.is_none(),
            tail: &rec[tail_at..],
        });
        at = end;
    }
    Ok(out)
}

/// The plain records section of stored batch `b`.
fn inflate(b: &[u8], h: &BatchHeader, limit: u64) -> Result<Vec<u8>, CleanError> {
    let codec = Codec::of(h.attributes).map_err(CleanError::Records)?;
    let payload = &b[HEADER_BYTES..];
    if codec == Codec::None {
        return Ok(payload.to_vec());
    }
    let mut out = Vec::new();
    let mut reader = io::Read::take(
        records::decoder(codec, payload).map_err(CleanError::Records)?,
        limit.saturating_add(1),
    );
    io::Read::read_to_end(&mut reader, &mut out)
        .map_err(|e| CleanError::Records(RecordError::Decompress(e.to_string())))?;
    if out.len() as u64 > limit {
        return Err(CleanError::Records(RecordError::TooLarge { limit }));
    }
    Ok(out)
}

/// Fills `map` with the latest offset of each key in `[plan.first_dirty,
/// plan.end)`, skipping control batches and aborted records. Stops at a
/// batch boundary when the map is full; returns the offset the cleaning
/// covers up to (exclusive).
pub fn build_map(
    plan: &Plan,
    map: &mut OffsetMap,
    throttle: &mut Throttle<'_>,
) -> Result<i64, CleanError> {
    let limit = plan.decompressed_bytes_max;
    let mut upto = plan.first_dirty;
    let mut full = false;
    for seg in &plan.segments {
        if full {
            break;
        }
        let next_base = next_base(plan, seg.base);
        if next_base <= plan.first_dirty {
            continue;
        }
        for_each_batch(seg, throttle, |h, b| {
            if full || h.next_offset() <= plan.first_dirty {
                return Ok(0);
            }
            let count = usize::try_from(h.records_count).unwrap_or(0);
            if !map.has_room(count) {
                full = true;
                return Ok(0);
            }
            upto = h.next_offset();
            let control = h.attributes & batch::ATTR_CONTROL != 0;
            let aborted = h.attributes & batch::ATTR_TRANSACTIONAL != 0
                && plan.is_aborted(h.producer_id, h.base_offset);
            if control || aborted {
                return Ok(0);
            }
            let plain = inflate(b, h, limit)?;
            for r in raw_records(&plain, h.records_count).map_err(CleanError::Records)? {
                if let Some(k) = r.key {
                    map.put(k, h.base_offset + i64::from(r.offset_delta));
                }
            }
            Ok(0)
        })?;
        if !full {
            upto = upto.max(next_base.min(plan.end));
        }
    }
    if upto <= plan.first_dirty && full {
        return Err(CleanError::MapTooSmall);
    }
    Ok(upto)
}

/// Base of the segment after the one at `base` (or the plan's end).
fn next_base(plan: &Plan, base: i64) -> i64 {
    plan.segments
        .iter()
        .map(|s| s.base)
        .find(|b| *b > base)
        .unwrap_or(plan.end)
}

/// Groups consecutive segments below `upto` so that each group is rewritten
/// into one segment no larger than `segment.bytes` (by their current sizes)
/// and within one segment's offset range. Each group is `(first index, last
/// index exclusive)` into `plan.segments`.
pub fn groups(plan: &Plan, upto: i64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    let segs = &plan.segments;
    while i < segs.len() && segs[i].base < upto {
        let mut j = i + 1;
        let mut size = segs[i].size;
        while j < segs.len()
            && segs[j].base < upto
            && size + segs[j].size <= plan.config.segment_bytes
            && next_base(plan, segs[j].base) - 1 - segs[i].base <= RELATIVE_OFFSET_MAX
        {
            size += segs[j].size;
            j += 1;
        }
        out.push((i, j));
        i = j;
    }
    out
}

/// State carried from one group to the next within a cleaning: which
/// producers' current transactions still have records, so their markers stay.
#[derive(Debug, Default)]
pub struct TxnTracker {
    /// Producers with a retained record since their last marker.
    retained: HashSet<i64>,
    /// ABORT markers dropped in the current group (their offsets): their
    /// aborted-transaction entries go too, or read_committed consumers would
    /// keep skipping the producer's later transactions.
    dropped_aborts: Vec<i64>,
    /// Keyless records dropped in the current group.
    keyless: u64,
}

/// A staged group: its segment is in `cleaning/`, fsynced, not yet committed.
#[derive(Debug)]
pub struct Staged {
    /// Base of the new segment (and of the first replaced one).
    pub base: i64,
    /// Base of the first segment after the replaced ones.
    pub end: i64,
    /// The replaced segments: base and size as planned (the swap checks them).
    pub replaced: Vec<(i64, u64)>,
    /// Bytes of the replaced segments.
    pub bytes_before: u64,
    /// Bytes of the new segment.
    pub bytes_after: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Of those, keyless records (accepted before the topic was compacted).
    pub keyless_removed: u64,
    /// Offsets of the ABORT markers removed: their aborted-transaction
    /// entries are removed with them.
    pub dropped_aborts: Vec<i64>,
}

/// Rewrites the group `plan.segments[from..to]` into `cleaning/`: per key
/// only the record `map` names (or any past `upto`), aborted records and
/// expired tombstones and markers dropped. The commit ([`commit`]) is the
/// log's, under its lock, once it has checked the plan still holds.
pub fn stage(
    plan: &Plan,
    (from, to): (usize, usize),
    map: &OffsetMap,
    upto: i64,
    txns: &mut TxnTracker,
    throttle: &mut Throttle<'_>,
    now_ms: i64,
) -> Result<Staged, CleanError> {
    let fs = &plan.fs;
    let cdir = plan.dir.join(CLEANING_DIR);
    if !fs.exists(&plan.dir) {
        // The topic was deleted: nothing to clean, and no directory to re-create.
        return Err(CleanError::Io(io::ErrorKind::NotFound.into()));
    }
    if fs.exists(&cdir) {
        fs.remove_dir_all(&cdir)?;
    }
    fs.create_dir_all(&cdir)?;
    fs.sync_dir(&plan.dir)?;
    let base = plan.segments[from].base;
    let end = next_base(plan, plan.segments[to - 1].base);
    let mut seg = Segment::create(fs, &cdir, base, &plan.config, now_ms)?;
    let limit = plan.decompressed_bytes_max;
    let mut removed = 0u64;
    let mut bytes_before = 0u64;
    let horizon = now_ms.saturating_add(plan.config.delete_retention_ms);
    for view in &plan.segments[from..to] {
        bytes_before += view.size;
        for_each_batch(view, throttle, |h, b| {
            let out = clean_batch(plan, h, b, map, upto, txns, now_ms, horizon, limit)?;
            removed +=
                u64::from(h.records_count.max(0) as u32) - out.as_ref().map_or(0, |o| o.1 as u64);
            let bytes: std::borrow::Cow<'_, [u8]> = match out {
                None => return Ok(0),
                Some((Kept::All, _)) => b.into(),
                Some((Kept::Rebuilt(v), _)) => v.into(),
            };
            let header = BatchHeader::parse(&bytes)
                .map_err(|e| CleanError::Damaged(format!("a rebuilt batch: {e}")))?;
            seg.append(&bytes, &[(0, header)], now_ms)
                .map_err(|(e, _)| CleanError::Io(e))?;
            Ok(bytes.len() as u64)
        })?;
    }
    seg.sync()?;
    seg.finish_seal()?;
    let bytes_after = seg.size();
    drop(seg);
    let dropped_aborts = std::mem::take(&mut txns.dropped_aborts);
    let keyless_removed = std::mem::take(&mut txns.keyless);
    let aborts: Vec<AbortedTxn> = plan
        .aborted
        .iter()
        .filter(|a| {
            (base..end).contains(&a.last_offset) && !dropped_aborts.contains(&a.last_offset)
        })
        .copied()
        .collect();
    // Always written, empty or not: the swap then replaces the old segment's
    // file by rename and never has to remove one.
    txn_index::write(fs.as_ref(), &cdir, base, &aborts)?;
    fs.sync_dir(&cdir)?;
    Ok(Staged {
        base,
        end,
        replaced: plan.segments[from..to]
            .iter()
            .map(|s| (s.base, s.size))
            .collect(),
        bytes_before,
        bytes_after,
        records_removed: removed,
        keyless_removed,
        dropped_aborts,
    })
}

/// What is kept of a batch.
enum Kept {
    /// The batch unchanged.
    All,
    /// A rebuilt batch with fewer records or a delete horizon.
    Rebuilt(Vec<u8>),
}

/// Decides batch `b`'s fate; `None` drops it whole. The count is the records kept.
#[allow(clippy::too_many_arguments)]
fn clean_batch(
    plan: &Plan,
    h: &BatchHeader,
    b: &[u8],
    map: &OffsetMap,
    upto: i64,
    txns: &mut TxnTracker,
    now_ms: i64,
    horizon: i64,
    limit: u64,
) -> Result<Option<(Kept, usize)>, CleanError> {
    let count = usize::try_from(h.records_count).unwrap_or(0);
    if h.base_offset >= upto {
        return Ok(Some((Kept::All, count)));
    }
    let has_horizon = h.attributes & batch::ATTR_DELETE_HORIZON != 0;
    let expired = has_horizon && now_ms >= h.base_timestamp;
    let transactional = h.attributes & batch::ATTR_TRANSACTIONAL != 0;
    if h.attributes & batch::ATTR_CONTROL != 0 {
        // A marker whose transaction kept no record may go after the horizon.
        let alone = !txns.retained.remove(&h.producer_id);
        return Ok(match (alone, has_horizon) {
            (true, true) if expired => {
                if records::marker_kind(b) == Some(false) {
                    txns.dropped_aborts.push(h.base_offset);
                }
                None
            }
            (true, false) => Some((Kept::Rebuilt(with_horizon(b, h, horizon, limit)?), count)),
            _ => Some((Kept::All, count)),
        });
    }
    if transactional && plan.is_aborted(h.producer_id, h.base_offset) {
        return Ok(None);
    }
    let plain = inflate(b, h, limit)?;
    let recs = raw_records(&plain, h.records_count).map_err(CleanError::Records)?;
    let mut keep = Vec::with_capacity(recs.len());
    let mut new_tombstone = false;
    for (i, r) in recs.iter().enumerate() {
        let offset = h.base_offset + i64::from(r.offset_delta);
        let latest = match r.key {
            // Keyless records cannot be compacted; Kafka's cleaner drops them.
            None => {
                txns.keyless += 1;
                false
            }
            Some(k) => map.get(k).is_none_or(|o| o <= offset),
        };
        if !latest || (r.tombstone && expired) {
            continue;
        }
        new_tombstone |= r.tombstone && !has_horizon;
        keep.push(i);
    }
    if keep.is_empty() {
        return Ok(None);
    }
    if transactional {
        txns.retained.insert(h.producer_id);
    }
    if keep.len() == recs.len() && !new_tombstone {
        return Ok(Some((Kept::All, count)));
    }
    let kept: Vec<&RawRecord<'_>> = keep.iter().map(|i| &recs[*i]).collect();
    let horizon = if has_horizon {
        Some(h.base_timestamp)
    } else if new_tombstone {
        Some(horizon)
    } else {
        None
    };
    let n = kept.len();
    Ok(Some((
        Kept::Rebuilt(rebuild_records(h, &kept, horizon, limit)?),
        n,
    )))
}

/// `b` (a control batch) with its delete horizon set.
fn with_horizon(
    b: &[u8],
    h: &BatchHeader,
    horizon: i64,
    limit: u64,
) -> Result<Vec<u8>, CleanError> {
    let plain = inflate(b, h, limit)?;
    let recs = raw_records(&plain, h.records_count).map_err(CleanError::Records)?;
    let kept: Vec<&RawRecord<'_>> = recs.iter().collect();
    rebuild_records(h, &kept, Some(horizon), limit)
}

/// A batch with `h`'s fields and offsets holding `kept`, in `h`'s codec,
/// with the delete horizon (bit 6, in the base timestamp) if given.
fn rebuild_records(
    h: &BatchHeader,
    kept: &[&RawRecord<'_>],
    horizon: Option<i64>,
    limit: u64,
) -> Result<Vec<u8>, CleanError> {
    let log_append_time = h.attributes & batch::ATTR_LOG_APPEND_TIME != 0;
    let base_ts = horizon.unwrap_or(h.base_timestamp);
    let mut max_ts = if log_append_time { h.max_timestamp } else { -1 };
    let mut plain = Vec::new();
    let mut rec = Vec::new();
    for r in kept {
        let ts = h.base_timestamp.wrapping_add(r.ts_delta);
        if !log_append_time {
            max_ts = max_ts.max(ts);
        }
        rec.clear();
        rec.push(0u8);
        records::put_varint(&mut rec, ts.wrapping_sub(base_ts));
        records::put_varint(&mut rec, i64::from(r.offset_delta));
        rec.extend_from_slice(r.tail);
        records::put_varint(&mut plain, rec.len() as i64);
        plain.extend_from_slice(&rec);
    }
    let codec = Codec::of(h.attributes).map_err(CleanError::Records)?;
    let mut attributes = h.attributes & !batch::ATTR_DELETE_HORIZON;
    if horizon.is_some() {
        attributes |= batch::ATTR_DELETE_HORIZON;
    }
    let count = i32::try_from(kept.len()).expect("fewer records than the batch held");
    let mut out =
        records::build_raw_batch(base_ts, attributes & !batch::ATTR_CODEC_MASK, count, &plain);
    batch::set_fields(&mut out, h, base_ts, max_ts);
    if codec != Codec::None {
        let batches = [(0usize, BatchHeader::parse(&out).expect("just built"))];
        let target = Compression {
            codec,
            level: Compression::default_level(codec),
        };
        out = compress::recompress(&out, &batches, target, limit)
            .map_err(CleanError::Records)?
            .unwrap_or(out);
    }
    Ok(out)
}

/// What one cleaning of a partition did, for the log and the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanReport {
    /// Segment groups swapped in.
    pub groups: usize,
    /// Bytes of the segments replaced.
    pub bytes_before: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_after: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Of those, keyless records.
    pub keyless_removed: u64,
    /// The first offset left dirty.
    pub upto: i64,
}

/// Runs a planned cleaning: builds the map, then stages each group and hands
/// it to `commit` (the log's swap, under its lock; false: the plan went
/// stale, stop). A group that fails is discarded; committed ones stay.
pub fn run(
    plan: &Plan,
    map: &mut OffsetMap,
    throttle: &mut Throttle<'_>,
    now_ms: i64,
    mut commit: impl FnMut(&Staged, Option<i64>) -> Result<bool, CleanError>,
) -> Result<CleanReport, CleanError> {
    map.clear();
    // Set while a commit runs: its manifest may be on disk, and then only
    // the next start (which rolls it forward) may touch the staging.
    let mut committing = false;
    let result = (|| {
        let upto = build_map(plan, map, throttle)?;
        let groups = groups(plan, upto);
        let mut txns = TxnTracker::default();
        let mut report = CleanReport {
            upto,
            ..CleanReport::default()
        };
        for (n, group) in groups.iter().enumerate() {
            let staged = stage(plan, *group, map, upto, &mut txns, throttle, now_ms)?;
            let last = n + 1 == groups.len();
            committing = true;
            if !commit(&staged, last.then_some(upto))? {
                break;
            }
            committing = false;
            report.groups += 1;
            report.bytes_before += staged.bytes_before;
            report.bytes_after += staged.bytes_after;
            report.records_removed += staged.records_removed;
            report.keyless_removed += staged.keyless_removed;
        }
        Ok(report)
    })();
    if result.is_err() && !committing {
        // Nothing was committed for the failed group: its staging goes.
        if let Err(e) = discard(plan.fs.as_ref(), &plan.dir) {
            tracing::warn!(dir = %plan.dir.display(), error = %e, "cannot remove a staged cleaning");
        }
    }
    result
}

/// Reads the manifest of a staged cleaning: `(base, end)`.
fn read_manifest(fs: &dyn Fs, cdir: &Path) -> Option<(i64, i64)> {
    let text = super::fs::read_file(fs, &cdir.join(MANIFEST)).ok()?;
    let text = std::str::from_utf8(&text).ok()?;
    let mut it = text.split_whitespace().map(|t| t.parse::<i64>().ok());
    Some((it.next()??, it.next()??))
}

/// Finishes or undoes a cleaning interrupted by a crash, before the log is
/// opened: with a manifest the swap is completed, without one the staged
/// files are removed.
pub fn recover(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let cdir = dir.join(CLEANING_DIR);
    if !fs.exists(&cdir) {
        return Ok(());
    }
    if fs.exists(&cdir.join(MANIFEST)) {
        tracing::info!(dir = %dir.display(), "finishing a cleaning interrupted after its commit");
        return roll_forward(fs, dir);
    }
    tracing::info!(dir = %dir.display(), "removing a cleaning interrupted before its commit");
    fs.remove_dir_all(&cdir)?;
    fs.sync_dir(dir)
}

/// Commits a staged cleaning: writes its manifest, atomically and durably
/// ([`roll_forward`] then swaps it in). Called under the log lock after
/// checking that the replaced segments are still there as planned: a
/// manifest is never written for a plan that retention or DeleteRecords
/// overtook.
pub fn write_manifest(fs: &dyn Fs, dir: &Path, staged: &Staged) -> io::Result<()> {
    let manifest = format!("{} {}\n", staged.base, staged.end);
    super::fs::write_file_atomic(
        fs,
        &dir.join(CLEANING_DIR).join(MANIFEST),
        manifest.as_bytes(),
    )
}

/// The swap of a committed cleaning: removes the replaced segments' files,
/// moves the staged ones into place, removes the manifest. Idempotent, so a
/// crash at any step is finished by running it again.
pub fn roll_forward(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let cdir = dir.join(CLEANING_DIR);
    let Some((base, end)) = read_manifest(fs, &cdir) else {
        // The manifest is written atomically: unreadable means damaged disk.
        return Err(io::Error::other(format!(
            "{}: unreadable cleaning manifest",
            cdir.display()
        )));
    };
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    for entry in fs.list_dir(dir)? {
        let Some(b) = entry
            .name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        if b > base && b < end {
            for ext in ["log", "index", "timeindex", TXN_INDEX_EXT] {
                if let Err(e) = fs.remove_file(&dir.join(segment::file_name(b, ext))) {
                    if !gone(&e) {
                        return Err(e);
                    }
                }
            }
        }
    }
    // Every staged file replaces the first segment's by rename (the staging
    // always has all four), so a repeated run only moves what is left; the
    // intermediate states are never opened, as this runs before the log is.
    for ext in ["index", "timeindex", TXN_INDEX_EXT, "log"] {
        let name = segment::file_name(base, ext);
        if fs.exists(&cdir.join(&name)) {
            fs.rename(&cdir.join(&name), &dir.join(&name))?;
        }
    }
    fs.sync_dir(dir)?;
    fs.remove_dir_all(&cdir)?;
    fs.sync_dir(dir)
}

/// Removes a staged cleaning that will not be committed (the plan went stale).
pub fn discard(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let cdir = dir.join(CLEANING_DIR);
    if fs.exists(&cdir) {
        fs.remove_dir_all(&cdir)?;
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// The first dirty offset stored in `dir`, if any (an unreadable value is
/// ignored: the next cleaning then covers the whole log).
pub fn read_checkpoint(fs: &dyn Fs, dir: &Path) -> io::Result<Option<i64>> {
    let path = dir.join(CHECKPOINT_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let text = super::fs::read_file(fs, &path)?;
    Ok(std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse().ok()))
}

/// Stores the first dirty offset (atomically; a failure is logged, since a
/// lost checkpoint only costs a longer cleaning).
pub fn write_checkpoint(fs: &dyn Fs, dir: &Path, offset: i64) {
    if let Err(e) = super::fs::write_file_atomic(
        fs,
        &dir.join(CHECKPOINT_FILE),
        format!("{offset}\n").as_bytes(),
    ) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot store the cleaner checkpoint");
    }
}
