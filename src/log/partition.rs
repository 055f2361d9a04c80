//! A partition's log: an ordered set of segments, the last one active.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, add_sequence};
use super::cleaner::{self, Plan, SegmentView, Staged};
use super::fs::Fs;
use super::producer::{ProducerStates, Verdict};
use super::records::{InvalidBatch, Validated};
use super::segment::{FileSlice, OpenError, Role, Segment, RELATIVE_OFFSET_MAX};
use super::txn_index::{self, AbortedIndex, AbortedTxn, TXN_INDEX_EXT};
use super::LogConfig;

/// Why an append was refused. Nothing was written in any case.
#[derive(Debug)]
pub enum AppendError {
    /// A batch failed validation (header, CRC, records).
    Invalid(InvalidBatch),
    /// A batch is larger than `max.message.bytes`.
    TooLarge {
        /// The batch's size in bytes.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// An idempotent producer's epoch is older than its current one (or a
    /// transaction marker's is).
    InvalidProducerEpoch,
    /// A producer with an open transaction sent a batch outside it (or a
    /// transactional batch for a partition not in its transaction).
    InvalidTxnState,
    /// A transactional batch from a producer id that does not hold the
    /// request's transactional id.
    InvalidProducerIdMapping,
    /// An idempotent producer skipped or reordered sequence numbers.
    OutOfOrderSequence {
        /// Sequence the broker expected.
        expected: i32,
        /// Sequence the batch carried.
        got: i32,
    },
    /// A batch kind this broker does not accept yet (transactional).
    Unsupported(&'static str),
    /// The batches of one append span more offsets than a segment can index.
    OffsetOverflow,
    /// A record's timestamp is outside `message.timestamp.before.max.ms` /
    /// `message.timestamp.after.max.ms` of the broker's clock.
    InvalidTimestamp {
        /// The offending timestamp.
        timestamp: i64,
        /// The broker's clock.
        now_ms: i64,
    },
    /// The file system failed; the caller treats this as fatal for durability.
    Io(io::Error),
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Invalid(e) => write!(f, "{e}"),
            AppendError::TooLarge { size, max } => {
                write!(f, "batch of {size} bytes exceeds max.message.bytes {max}")
            }
            AppendError::InvalidProducerEpoch => {
                write!(f, "producer epoch is older than the current one")
            }
            AppendError::InvalidTxnState => {
                write!(
                    f,
                    "the batch does not fit the producer's transaction (not added to it, or outside it)"
                )
            }
            AppendError::InvalidProducerIdMapping => {
                write!(f, "the transactional id is not held by this producer id")
            }
            AppendError::OutOfOrderSequence { expected, got } => {
                write!(
                    f,
                    "out of order sequence number: expected {expected}, got {got}"
                )
            }
            AppendError::Unsupported(what) => write!(f, "{what} are not supported"),
            AppendError::InvalidTimestamp { timestamp, now_ms } => write!(
                f,
                "timestamp {timestamp} of a record is out of the topic's range around the broker's clock ({now_ms})"
            ),
            AppendError::OffsetOverflow => {
                write!(
                    f,
                    "the batches span more offsets than one segment can index"
                )
            }
            AppendError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// Why a read was refused.
#[derive(Debug)]
pub enum ReadError {
    /// The offset is below the log start or above the log end.
    OutOfRange {
        /// First offset still stored.
        log_start_offset: i64,
        /// Offset the next append will get.
        log_end_offset: i64,
    },
    /// The file system failed.
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Offsets given to an accepted append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The broker's timestamp stamped on the batches (LogAppendTime topics),
    /// -1 otherwise (Produce's `log_append_time_ms`).
    pub log_append_time: i64,
}

/// One partition's segmented log.
#[derive(Debug)]
pub struct PartitionLog {
    /// The file system the segments live on.
    fs: Arc<dyn Fs>,
    /// Directory holding this partition's segments.
    dir: PathBuf,
    /// Effective settings (broker defaults plus topic overrides).
    config: LogConfig,
    /// Segments by base offset; never empty, the last is active.
    segments: BTreeMap<i64, Segment>,
    /// Offset the next appended record gets (the log end offset).
    next_offset: i64,
    /// Every offset below this is on stable storage.
    flushed_offset: i64,
    /// Idempotent producers' recent batches, for duplicate and sequence checks,
    /// and their open transactions.
    producers: ProducerStates,
    /// Aborted transactions, for read_committed fetches.
    aborted: AbortedIndex,
    /// A failed write could not be cut off: the file holds bytes memory does not
    /// account for, so the caller must stop serving this log.
    damaged: bool,
    /// A roll failed after the active segment was synced, maybe leaving the next
    /// segment's files behind: nothing more is appended until a roll succeeds,
    /// so the active segment never grows past where such leftovers begin.
    roll_pending: bool,
    /// The log start set by DeleteRecords (0 if never): offsets below it are gone
    /// even where their segment remains. Persisted in [`LOG_START_FILE`].
    start_floor: i64,
    /// The latest time callers passed in (ms): what a close, which is given no
    /// time, uses to expire idle producers.
    clock_ms: i64,
    /// First offset the cleaner has not cleaned (compacted topics), kept in
    /// [`cleaner::CHECKPOINT_FILE`].
    first_dirty: i64,
}

/// How much of a compacted log awaits the cleaner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirtiness {
    /// Dirty bytes over all cleanable bytes (Kafka's cleanable ratio).
    pub ratio: f64,
    /// Bytes of the segments not cleaned yet (below the cleanable end).
    pub dirty_bytes: u64,
    /// Whether a cleaning is due: the ratio reached `min.cleanable.dirty.ratio`
    /// or a dirty record is older than `max.compaction.lag.ms`.
    pub due: bool,
}

/// Holds the log start offset DeleteRecords set, so a restart keeps it instead
/// of deriving the start from the first segment.
pub const LOG_START_FILE: &str = "log-start-offset";

/// The log start DeleteRecords persisted in `dir`, if any and sane (at most
/// the log end; a damaged file is logged and ignored, which only shows records
/// DeleteRecords had hidden).
fn read_start_floor(fs: &dyn Fs, dir: &Path, log_end: i64) -> io::Result<i64> {
    let path = dir.join(LOG_START_FILE);
    if !fs.exists(&path) {
        return Ok(0);
    }
    let text = super::fs::read_file(fs, &path).unwrap_or_default();
    Ok(
        match std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        {
            Some(n) if (0..=log_end).contains(&n) => n,
            Some(n) if n > log_end => {
                tracing::warn!(dir = %dir.display(), start = n, log_end,
                "the stored log start is past the log end (a torn tail was cut); using the log end");
                // Written back, so that records appended from here on do not fall
                // below a start that a later restart would read again.
                super::fs::write_file_atomic(fs, &path, format!("{log_end}\n").as_bytes())?;
                log_end
            }
            _ => {
                tracing::warn!(dir = %dir.display(), "ignoring an unreadable log-start-offset file");
                0
            }
        },
    )
}

/// Extension of producer-state snapshot files, named by the log end they describe.
const SNAPSHOT_EXT: &str = "snapshot";
/// Producer snapshots kept per partition: the newest, and one before it in case
/// the newest is damaged.
const SNAPSHOTS_KEPT: usize = 2;

/// The offsets of the producer snapshots in `dir`.
fn list_snapshots(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<i64>> {
    Ok(fs
        .list_dir(dir)?
        .iter()
        .filter_map(|e| parse_offset_name(&e.name, SNAPSHOT_EXT))
        .collect())
}

/// What start-up rebuilt from snapshots and the log.
struct Loaded {
    /// Producer state as of the log end.
    producers: ProducerStates,
    /// The offset the replay began at (the snapshot's).
    replayed_from: i64,
    /// Aborts whose markers the replay met.
    aborted: Vec<AbortedTxn>,
}

/// Feeds one stored batch to the producer state; an ABORT marker that ends an
/// open transaction is returned as the abort the transaction index records.
fn replay_batch(
    producers: &mut ProducerStates,
    h: &super::BatchHeader,
    body: Option<&[u8]>,
    now_ms: i64,
) -> Option<AbortedTxn> {
    if h.attributes & batch::ATTR_CONTROL == 0 {
        producers.record(h, now_ms);
        return None;
    }
    let commit = body.and_then(super::records::marker_kind)?;
    let lso = producers.first_unstable_offset().unwrap_or(h.base_offset);
    let first = producers.end_txn(h.producer_id, h.producer_epoch, now_ms)?;
    (!commit).then_some(AbortedTxn {
        producer_id: h.producer_id,
        first_offset: first,
        last_offset: h.base_offset,
        last_stable_offset: lso,
    })
}

/// Rebuilds the producer state: the newest readable snapshot at or below the
/// log end, then every batch after it. Without one (a data directory from
/// before snapshots), the active segment's batches, as before.
fn load_producers(
    fs: &dyn Fs,
    dir: &Path,
    entries: &[super::fs::DirEntry],
    segments: &BTreeMap<i64, Segment>,
    log_end: i64,
    now_ms: i64,
) -> io::Result<Loaded> {
    let mut snaps: Vec<i64> = entries
        .iter()
        .filter_map(|e| parse_offset_name(&e.name, SNAPSHOT_EXT))
        .collect();
    snaps.sort_unstable_by(|a, b| b.cmp(a));
    let mut found = None;
    for s in snaps {
        let path = dir.join(super::segment::file_name(s, SNAPSHOT_EXT));
        if s > log_end {
            // Written before a torn tail was cut: it describes batches that are gone.
            fs.remove_file(&path)?;
            continue;
        }
        match super::fs::read_file(fs, &path)
            .map_err(|e| e.to_string())
            .and_then(|b| ProducerStates::decode(&b))
        {
            Ok(p) => {
                found = Some((s, p));
                break;
            }
            Err(why) => {
                tracing::warn!(file = %path.display(), %why, "ignoring a damaged producer snapshot");
            }
        }
    }
    let (from, mut producers) = match found {
        Some(x) => x,
        None => {
            let active = segments
                .values()
                .next_back()
                .expect("a log always has a segment");
            (active.base_offset, ProducerStates::default())
        }
    };
    let floor = segments
        .range(..=from)
        .next_back()
        .map_or(from, |(b, _)| *b);
    let mut aborted = Vec::new();
    for seg in segments.range(floor..).map(|(_, s)| s) {
        seg.for_each_header(|h, body| {
            if h.base_offset >= from {
                aborted.extend(replay_batch(&mut producers, h, body, now_ms));
            }
        })?;
    }
    Ok(Loaded {
        producers,
        replayed_from: from,
        aborted,
    })
}

/// Builds the aborted-transaction index: each sealed segment's file, the
/// active segment's file below where the replay began, and what the replay
/// found. A damaged file is rebuilt by replaying the whole log, and rewritten.
fn load_aborted(
    fs: &dyn Fs,
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
    loaded: &Loaded,
    now_ms: i64,
) -> io::Result<AbortedIndex> {
    let mut index = AbortedIndex::default();
    let active = *segments
        .keys()
        .next_back()
        .expect("a log always has a segment");
    let mut missing = Vec::new();
    for base in segments.keys() {
        match txn_index::read(fs, dir, *base) {
            Some(v) if *base == active => v
                .into_iter()
                .filter(|a| a.last_offset < loaded.replayed_from)
                .for_each(|a| index.push(a)),
            Some(v) => v.into_iter().for_each(|a| index.push(a)),
            None => missing.push(*base),
        }
    }
    for a in &loaded.aborted {
        index.push(*a);
    }
    if missing.is_empty() {
        return Ok(index);
    }
    tracing::info!(dir = %dir.display(), segments = missing.len(),
        "rebuilding transaction indexes from the log");
    let mut producers = ProducerStates::default();
    let mut rebuilt = AbortedIndex::default();
    for seg in segments.values() {
        seg.for_each_header(|h, body| {
            if let Some(a) = replay_batch(&mut producers, h, body, now_ms) {
                rebuilt.push(a);
            }
        })?;
    }
    let bounds: Vec<i64> = segments.keys().copied().chain([i64::MAX]).collect();
    for pair in bounds.windows(2) {
        let (base, end) = (pair[0], pair[1]);
        let found = rebuilt.in_range(base, end);
        if missing.contains(&base) {
            found.iter().for_each(|a| index.push(*a));
            txn_index::store(fs, dir, base, &found)?;
        }
    }
    Ok(index)
}

/// The offset in a `<offset:020>.<ext>` file name.
fn parse_offset_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn parse_segment_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`. `recover` means the last shutdown was
    /// not clean: the active segment is fully checked and its torn tail cut off.
    /// Damage anywhere else (a sealed segment, segments that overlap) is
    /// [`OpenError::Corrupt`]: the caller serves the partition as offline.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        config: LogConfig,
        recover: bool,
        now_ms: i64,
    ) -> Result<PartitionLog, OpenError> {
        super::fs::create_dir_durable(fs.as_ref(), dir)?;
        // A cleaning interrupted by a crash is finished or undone first.
        cleaner::recover(fs.as_ref(), dir)?;
        let first_dirty = cleaner::read_checkpoint(fs.as_ref(), dir)?.unwrap_or(0);
        let mut bases = Vec::new();
        let entries = fs.list_dir(dir)?;
        for entry in &entries {
            let name = entry.name.as_str();
            if let Some(base) = parse_segment_name(name) {
                bases.push(base);
            } else if name.ends_with(".index")
                || name.ends_with(".timeindex")
                || name.ends_with(TXN_INDEX_EXT)
            {
                // An index without its log is garbage from an interrupted delete.
                let stem = name.split('.').next().unwrap_or("");
                if !entries.iter().any(|e| e.name == format!("{stem}.log")) {
                    fs.remove_file(&dir.join(name))?;
                }
            }
        }
        bases.sort_unstable();
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let last = bases.last().copied();
        for base in bases {
            let is_last = Some(base) == last;
            if let Some(prev) = segments.values().next_back() {
                if prev.next_offset() > base {
                    return Err(OpenError::Corrupt(format!(
                        "{}: segment {} holds offsets up to {}, past the next segment's base {base}",
                        dir.display(),
                        prev.base_offset,
                        prev.next_offset() - 1
                    )));
                }
            }
            let role = if is_last {
                Role::Active { recover }
            } else {
                Role::Sealed
            };
            let mut seg = Segment::open(&fs, dir, base, &config, role, now_ms)?;
            if !is_last {
                // Trims the indexes, preallocated again on open.
                seg.finish_seal()?;
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(&fs, dir, 0, &config, now_ms)?);
        }
        let active = segments
            .values()
            .next_back()
            .expect("a segment was just inserted if none was found");
        let next_offset = active.next_offset();
        let start_floor = read_start_floor(fs.as_ref(), dir, next_offset)?;
        // Producers may retry batches whose acknowledgement a restart or crash
        // lost: the latest snapshot plus the batches after it recognise them.
        let loaded = load_producers(fs.as_ref(), dir, &entries, &segments, next_offset, now_ms)?;
        let aborted = load_aborted(fs.as_ref(), dir, &segments, &loaded, now_ms)?;
        let producers = loaded.producers;
        Ok(PartitionLog {
            fs,
            dir: dir.to_path_buf(),
            config,
            segments,
            next_offset,
            flushed_offset: next_offset,
            producers,
            aborted,
            damaged: false,
            roll_pending: false,
            start_floor,
            clock_ms: now_ms,
            first_dirty,
        })
    }

    /// Moves the log start to `offset` (DeleteRecords; `-1` means the log end):
    /// the new start is made durable first, then the segments wholly below it are
    /// deleted. Returns the new log start (the low watermark).
    pub fn delete_records(&mut self, offset: i64) -> Result<i64, ReadError> {
        let offset = if offset == -1 {
            self.next_offset
        } else {
            offset
        };
        if offset < 0 || offset > self.next_offset {
            return Err(ReadError::OutOfRange {
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.next_offset,
            });
        }
        if offset <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        super::fs::write_file_atomic(
            self.fs.as_ref(),
            &self.dir.join(LOG_START_FILE),
            format!("{offset}\n").as_bytes(),
        )
        .map_err(ReadError::Io)?;
        self.start_floor = offset;
        self.delete_before(offset).map_err(ReadError::Io)?;
        Ok(self.log_start_offset())
    }

    /// The last segment. Invariant: a log always has one (open creates it, and
    /// truncation and deletion keep the first or the active segment).
    fn active(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// The last segment (see [`PartitionLog::active`]).
    fn active_ref(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }

    /// The idempotent producers this partition remembers (DescribeProducers).
    pub fn producers(&self) -> Vec<super::producer::ProducerSummary> {
        self.producers.summaries()
    }

    /// Whether a failed write could not be cut off (see the `damaged` field).
    pub fn is_damaged(&self) -> bool {
        self.damaged
    }

    /// Checks validated batches against this log (size, producer state), assigns
    /// offsets and appends. The records are not modified: assigned headers are
    /// written beside them.
    pub fn append(&mut self, v: &Validated<'_>, now_ms: i64) -> Result<AppendInfo, AppendError> {
        let records = v.bytes;
        let headers = v.batches.clone();
        for (_, h) in &headers {
            let size = h.total_bytes() as u64;
            if size > self.config.max_message_bytes {
                return Err(AppendError::TooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
        }
        if self.config.compact && v.keyless {
            return Err(AppendError::Invalid(InvalidBatch::Records(
                super::records::RecordError::NotAllowed(
                    "Compacted topic cannot accept message without key",
                ),
            )));
        }
        // CreateTime only: LogAppendTime replaces the producer's timestamps.
        if let Some((lo, hi)) = v.timestamps.filter(|_| !self.config.log_append_time) {
            if now_ms.saturating_sub(lo) > self.config.timestamp_before_max_ms {
                return Err(AppendError::InvalidTimestamp {
                    timestamp: lo,
                    now_ms,
                });
            }
            if hi.saturating_sub(now_ms) > self.config.timestamp_after_max_ms {
                return Err(AppendError::InvalidTimestamp {
                    timestamp: hi,
                    now_ms,
                });
            }
        }
        let mut prev: Option<&batch::BatchHeader> = None;
        for (_, h) in &headers {
            if h.attributes & batch::ATTR_CONTROL != 0 {
                return Err(AppendError::Unsupported("control batches from clients"));
            }
            let transactional = h.attributes & batch::ATTR_TRANSACTIONAL != 0;
            if transactional && h.producer_id < 0 {
                return Err(AppendError::Invalid(InvalidBatch::Records(
                    super::records::RecordError::NotAllowed(
                        "a transactional batch needs a producer id",
                    ),
                )));
            }
            if !transactional && self.producers.in_transaction(h.producer_id) {
                return Err(AppendError::InvalidTxnState);
            }
            match prev {
                // Later batches of one request must continue the first one's sequence.
                Some(p) if p.producer_id == h.producer_id && h.producer_id >= 0 => {
                    let expected = add_sequence(p.last_sequence(), 1);
                    if h.producer_epoch != p.producer_epoch || h.base_sequence != expected {
                        return Err(AppendError::OutOfOrderSequence {
                            expected,
                            got: h.base_sequence,
                        });
                    }
                }
                _ => match self.producers.check(h) {
                    Verdict::Append => {}
                    Verdict::Duplicate {
                        base_offset,
                        last_offset,
                    } if headers.len() == 1 => {
                        return Ok(AppendInfo {
                            base_offset,
                            last_offset,
                            log_append_time: -1,
                        });
                    }
                    Verdict::Duplicate { .. } => {
                        return Err(AppendError::Unsupported(
                            "duplicate batches inside multi-batch requests",
                        ));
                    }
                    Verdict::StaleEpoch => return Err(AppendError::InvalidProducerEpoch),
                    Verdict::OutOfOrder { expected, got } => {
                        return Err(AppendError::OutOfOrderSequence { expected, got });
                    }
                },
            }
            prev = Some(h);
        }
        self.write_batches(records, headers, now_ms)
    }

    /// Appends a COMMIT (`commit`) or ABORT marker for `producer_id`'s open
    /// transaction, as the transaction coordinator asks (written even if the
    /// producer wrote nothing here: a newer epoch fences the old producer). An
    /// abort that ends a transaction goes into the aborted-transaction index.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        if self.producers.check_marker(producer_id, epoch).is_err() {
            return Err(AppendError::InvalidProducerEpoch);
        }
        let bytes =
            super::records::build_marker(producer_id, epoch, commit, coordinator_epoch, now_ms);
        let headers = batch::split_batches(&bytes)
            .map_err(|e| AppendError::Invalid(InvalidBatch::Header(e)))?;
        let lso = self.last_stable_offset();
        let info = self.write_batches(&bytes, headers, now_ms)?;
        if let Some(first) = self.producers.end_txn(producer_id, epoch, now_ms) {
            if !commit {
                self.aborted.push(AbortedTxn {
                    producer_id,
                    first_offset: first,
                    last_offset: info.base_offset,
                    last_stable_offset: lso,
                });
            }
        }
        Ok(info)
    }

    /// The last stable offset: below it every transaction is decided (the
    /// first offset of the oldest open transaction, else the log end).
    pub fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .unwrap_or(self.next_offset)
            .min(self.next_offset)
    }

    /// The aborted transactions a read_committed fetch of `[from, upper)` must report.
    pub fn aborted_overlapping(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.aborted.overlapping(from, upper)
    }

    /// Assigns offsets to checked batches, rolls if needed, writes them and
    /// records them in the producer state.
    fn write_batches(
        &mut self,
        records: &[u8],
        mut headers: Vec<(usize, batch::BatchHeader)>,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let base_offset = self.next_offset;
        let mut next = base_offset;
        // LogAppendTime: the broker's clock replaces the producer's (control
        // batches keep theirs, as Kafka's).
        let stamp = self.config.log_append_time;
        for (_, h) in headers.iter_mut() {
            h.base_offset = next;
            next = h.next_offset();
            if stamp && h.attributes & batch::ATTR_CONTROL == 0 {
                h.attributes |= batch::ATTR_LOG_APPEND_TIME;
                h.max_timestamp = now_ms;
            }
        }
        let last_offset = next - 1;
        if last_offset - base_offset > RELATIVE_OFFSET_MAX {
            // Only several batches in one append can span this much (one batch
            // spans at most 2^31 offsets): no segment could index them.
            return Err(AppendError::OffsetOverflow);
        }
        let bytes = records.len() as u64;
        if self.roll_pending
            || self
                .active_ref()
                .needs_roll(bytes, last_offset, &self.config, now_ms)
        {
            self.roll(now_ms).map_err(AppendError::Io)?;
        }
        // Holds: a roll starts the active segment at `base_offset`, and without
        // one `needs_roll` found the range within the active segment's.
        debug_assert!(last_offset - self.active_ref().base_offset <= RELATIVE_OFFSET_MAX);
        if let Err((e, damaged)) = self.active().append(records, &headers, now_ms) {
            self.damaged |= damaged;
            return Err(AppendError::Io(e));
        }
        self.next_offset = next;
        self.clock_ms = self.clock_ms.max(now_ms);
        for (_, h) in &headers {
            if h.attributes & batch::ATTR_CONTROL == 0 {
                self.producers.record(h, now_ms);
            }
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: if stamp { now_ms } else { -1 },
        })
    }

    /// The first offset the cleaner may not touch: the active segment's base,
    /// or an earlier segment's holding an open transaction (past the last
    /// stable offset) or records younger than `min.compaction.lag.ms`.
    fn cleanable_end(&self, now_ms: i64) -> i64 {
        let lso = self.last_stable_offset();
        let lag = self.config.min_compaction_lag_ms;
        let sealed = self.segments.len() - 1;
        self.segments
            .values()
            .take(sealed)
            .find(|s| s.next_offset() > lso || (lag > 0 && s.max_timestamp() > now_ms - lag))
            .unwrap_or(self.active_ref())
            .base_offset
    }

    /// The base of the segment after the one at `base` (the log end for the last).
    fn next_base(&self, base: i64) -> i64 {
        self.segments
            .range(base + 1..)
            .next()
            .map_or(self.next_offset, |(b, _)| *b)
    }

    /// How much of a compacted log is dirty; `None` for other logs.
    pub fn dirtiness(&self, now_ms: i64) -> Option<Dirtiness> {
        if !self.config.compact {
            return None;
        }
        let end = self.cleanable_end(now_ms);
        let first_dirty = self.first_dirty.max(self.log_start_offset());
        let (mut clean, mut dirty) = (0u64, 0u64);
        for (base, seg) in self.segments.range(..end) {
            if self.next_base(*base) <= first_dirty {
                clean += seg.size();
            } else {
                dirty += seg.size();
            }
        }
        let total = clean + dirty;
        let ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        let lag = self.config.max_compaction_lag_ms;
        let overdue = dirty > 0
            && lag < i64::MAX
            && self.header_at(first_dirty).ok().flatten().is_some_and(|h| {
                h.base_offset < end && h.max_timestamp < now_ms.saturating_sub(lag)
            });
        Some(Dirtiness {
            ratio,
            dirty_bytes: dirty,
            due: dirty > 0 && (ratio >= self.config.min_cleanable_dirty_ratio || overdue),
        })
    }

    /// What a cleaning of this (compacted) log works on: the sealed segments
    /// below the cleanable end, with their files; `None` if there are none.
    pub fn plan_cleaning(&self, now_ms: i64, decompressed_bytes_max: u64) -> Option<Plan> {
        if !self.config.compact {
            return None;
        }
        let end = self.cleanable_end(now_ms);
        let segments: Vec<SegmentView> = self
            .segments
            .range(..end)
            .map(|(base, s)| SegmentView {
                base: *base,
                size: s.size(),
                file: s.file(),
            })
            .collect();
        let first = segments.first()?.base;
        Some(Plan {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            config: self.config.clone(),
            first_dirty: self.first_dirty.max(first),
            aborted: self.aborted.overlapping(first, end),
            decompressed_bytes_max,
            segments,
            end,
        })
    }

    /// Swaps a staged cleaning in (see [`cleaner`]): if the replaced segments
    /// are still as planned, their files give way to the staged ones and the
    /// new segment is opened; otherwise the staging is discarded and false
    /// returned. `upto` (after the last group) becomes the first dirty
    /// offset. A failure before the commit point changes nothing; one after
    /// it marks the log damaged: the next start finishes the swap from the
    /// manifest.
    pub fn commit_cleaning(&mut self, staged: &Staged, upto: Option<i64>) -> io::Result<bool> {
        let active = self.active_ref().base_offset;
        let current =
            staged.replaced.iter().all(|(b, size)| {
                *b != active && self.segments.get(b).map(|s| s.size()) == Some(*size)
            }) && self.next_base(staged.replaced.last().map_or(staged.base, |r| r.0)) == staged.end;
        if !current {
            cleaner::discard(self.fs.as_ref(), &self.dir)?;
            return Ok(false);
        }
        if let Err(e) = cleaner::write_manifest(self.fs.as_ref(), &self.dir, staged) {
            // Not committed: the old segments are untouched.
            let _ = cleaner::discard(self.fs.as_ref(), &self.dir);
            return Err(e);
        }
        let swapped = cleaner::roll_forward(self.fs.as_ref(), &self.dir).and_then(|()| {
            for (b, _) in &staged.replaced {
                self.segments.remove(b);
            }
            let mut seg = Segment::open(
                &self.fs,
                &self.dir,
                staged.base,
                &self.config,
                Role::Sealed,
                self.clock_ms,
            )
            .map_err(|e| io::Error::other(e.to_string()))?;
            seg.finish_seal()?;
            self.segments.insert(staged.base, seg);
            for marker in &staged.dropped_aborts {
                self.aborted.remove(*marker);
            }
            Ok(())
        });
        if let Err(e) = swapped {
            self.damaged = true;
            return Err(e);
        }
        if let Some(upto) = upto {
            self.first_dirty = upto;
            cleaner::write_checkpoint(self.fs.as_ref(), &self.dir, upto);
        }
        Ok(true)
    }

    /// Seals the active segment and starts a new one at the log end offset. The
    /// old segment's data is fsynced before the new one exists, so only the last
    /// segment can ever hold a torn write. If the new segment cannot be created,
    /// the old one stays active.
    pub fn roll(&mut self, now_ms: i64) -> io::Result<()> {
        if self.active_ref().size() == 0 {
            self.roll_pending = false;
            return Ok(());
        }
        self.active_ref().sync()?;
        self.roll_pending = true;
        // The sealed segment's aborts are on disk before the next segment exists.
        let sealed = self.active_ref().base_offset;
        let aborts = self.aborted.in_range(sealed, self.next_offset);
        txn_index::store(self.fs.as_ref(), &self.dir, sealed, &aborts)?;
        let seg = Segment::create(&self.fs, &self.dir, self.next_offset, &self.config, now_ms)?;
        self.roll_pending = false;
        if let Err(e) = self.active().finish_seal() {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "trimming a sealed segment's indexes failed; they are rebuilt at the next start");
        }
        self.segments.insert(self.next_offset, seg);
        self.write_producer_snapshot(now_ms);
        Ok(())
    }

    /// Writes the producer state as of the log end to `<log end>.snapshot` (at a
    /// roll and at a clean close), so a restart replays only the batches after
    /// it, and keeps the two newest snapshots. A failure is logged: the state is
    /// derived, and the previous snapshot plus the log still rebuild it.
    fn write_producer_snapshot(&mut self, now_ms: i64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.producers
            .expire(now_ms, self.config.producer_id_expiration_ms);
        let existing = list_snapshots(self.fs.as_ref(), &self.dir).unwrap_or_default();
        if self.producers.is_empty() && existing.is_empty() {
            return; // never had an idempotent producer: no files
        }
        let path = self
            .dir
            .join(super::segment::file_name(self.next_offset, SNAPSHOT_EXT));
        if let Err(e) =
            super::fs::write_file_atomic(self.fs.as_ref(), &path, &self.producers.encode())
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot write a producer snapshot");
            return;
        }
        let mut all = existing;
        all.push(self.next_offset);
        all.sort_unstable();
        all.dedup();
        for old in all.iter().rev().skip(SNAPSHOTS_KEPT) {
            let _ = self
                .fs
                .remove_file(&self.dir.join(super::segment::file_name(*old, SNAPSHOT_EXT)));
        }
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one
    /// batch). `Ok(None)` when `offset` is the log end.
    pub fn read(&self, offset: i64, max_bytes: u64) -> Result<Option<FileSlice>, ReadError> {
        self.read_below(offset, max_bytes, i64::MAX)
    }

    /// As [`PartitionLog::read`], but no batch at or past `max_offset` (the last
    /// stable offset, for read_committed).
    pub fn read_below(
        &self,
        offset: i64,
        max_bytes: u64,
        max_offset: i64,
    ) -> Result<Option<FileSlice>, ReadError> {
        let start = self.log_start_offset();
        if offset < start || offset > self.next_offset {
            return Err(ReadError::OutOfRange {
                log_start_offset: start,
                log_end_offset: self.next_offset,
            });
        }
        if offset == self.next_offset {
            return Ok(None);
        }
        for seg in self.segments_from(offset) {
            if seg.base_offset >= max_offset {
                break;
            }
            if let Some(slice) = seg.read(offset, max_bytes, max_offset)? {
                return Ok(Some(slice));
            }
        }
        Ok(None)
    }

    /// The segments from the one that would hold `offset` on, in order.
    fn segments_from(&self, offset: i64) -> impl Iterator<Item = &Segment> {
        let floor = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(offset, |(b, _)| *b);
        self.segments.range(floor..).map(|(_, s)| s)
    }

    /// The header of the batch holding `offset` (or the first after it, past a
    /// gap): one index lookup and a few header reads.
    pub fn header_at(&self, offset: i64) -> io::Result<Option<super::BatchHeader>> {
        if offset < self.log_start_offset() || offset >= self.next_offset {
            return Ok(None);
        }
        for seg in self.segments_from(offset) {
            if let Some(h) = seg.header_at(offset)? {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// The first batch at or after the log start whose max timestamp is
    /// `>= timestamp`, if any.
    pub fn find_by_timestamp(&self, timestamp: i64) -> io::Result<Option<FileSlice>> {
        let start = self.log_start_offset();
        for seg in self.segments.values() {
            if let Some(slice) = seg.find_by_timestamp(timestamp, start)? {
                return Ok(Some(slice));
            }
        }
        Ok(None)
    }

    /// The first batch holding the log's largest timestamp, with that timestamp.
    pub fn max_timestamp_batch(&self) -> io::Result<Option<(i64, FileSlice)>> {
        let mut best: Option<&Segment> = None;
        for seg in self.segments.values() {
            if seg.size() > 0 && best.is_none_or(|b| seg.max_timestamp() > b.max_timestamp()) {
                best = Some(seg);
            }
        }
        match best {
            Some(seg) => seg.max_timestamp_batch(),
            None => Ok(None),
        }
    }

    /// Removes every batch at or after the one holding `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        if offset >= self.next_offset {
            return Ok(());
        }
        // Whole segments past the cut go; the first segment is kept (maybe emptied)
        // so the log never has none.
        let first = self.log_start_offset();
        let doomed: Vec<i64> = self
            .segments
            .range(offset..)
            .map(|(b, _)| *b)
            .filter(|b| *b != first)
            .collect();
        for base in doomed {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete()?;
                txn_index::store(self.fs.as_ref(), &self.dir, base, &[])?;
            }
        }
        self.aborted.forget_from(offset);
        let active = self.active_ref().base_offset;
        let kept = self.aborted.in_range(active, offset);
        txn_index::store(self.fs.as_ref(), &self.dir, active, &kept)?;
        let seg = self.active();
        seg.truncate_to(offset).map_err(|e| match e {
            OpenError::Io(e) => e,
            OpenError::Corrupt(why) => io::Error::other(why),
        })?;
        self.next_offset = self.active_ref().next_offset();
        self.flushed_offset = self.flushed_offset.min(self.next_offset);
        self.producers.clear();
        // Snapshots past the cut describe batches that are gone.
        for s in list_snapshots(self.fs.as_ref(), &self.dir)? {
            if s > self.next_offset {
                self.fs
                    .remove_file(&self.dir.join(super::segment::file_name(s, SNAPSHOT_EXT)))?;
            }
        }
        self.fs.sync_dir(&self.dir)
    }

    /// Deletes the oldest sealed segments past `retention.ms` or `retention.bytes`.
    /// Returns how many were deleted. The active segment is never deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> io::Result<usize> {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.producers
            .expire(now_ms, self.config.producer_id_expiration_ms);
        let mut total: u64 = self.segments.values().map(|s| s.size()).sum();
        let mut doomed = Vec::new();
        let sealed = self.segments.len().saturating_sub(1);
        for seg in self.segments.values().take(sealed) {
            let by_bytes = self.config.retention_bytes >= 0
                && total.saturating_sub(seg.size()) >= self.config.retention_bytes as u64;
            let by_time = self.config.retention_ms >= 0
                && now_ms - seg.max_timestamp() > self.config.retention_ms;
            if !(by_bytes || by_time) {
                break;
            }
            total -= seg.size();
            doomed.push(seg.base_offset);
        }
        self.delete_segments(&doomed)
    }

    /// Deletes the segments with these base offsets, then makes the removal durable.
    fn delete_segments(&mut self, bases: &[i64]) -> io::Result<usize> {
        for base in bases {
            if let Some(seg) = self.segments.remove(base) {
                seg.delete()?;
                txn_index::store(self.fs.as_ref(), &self.dir, *base, &[])?;
            }
        }
        if let Some(first) = self.segments.keys().next() {
            self.aborted.forget_before(*first);
        }
        if !bases.is_empty() {
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(bases.len())
    }

    /// Deletes every sealed segment that lies wholly below `offset`, moving the log
    /// start forward. Used to drop what a compacted snapshot has superseded.
    pub fn delete_before(&mut self, offset: i64) -> io::Result<usize> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut doomed = Vec::new();
        for pair in bases.windows(2) {
            // A segment ends where the next one begins.
            if pair[1] <= offset {
                doomed.push(pair[0]);
            }
        }
        self.delete_segments(&doomed)
    }

    /// What a flusher must fdatasync to make everything below the returned offset durable.
    pub fn sync_target(&self) -> (Arc<dyn super::fs::FsFile>, i64) {
        (self.active_ref().file(), self.next_offset)
    }

    /// Records that everything below `offset` is durable.
    pub fn mark_flushed(&mut self, offset: i64) {
        self.flushed_offset = self.flushed_offset.max(offset.min(self.next_offset));
    }

    /// Offset below which everything is durable.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }

    /// Syncs the active segment now.
    pub fn flush(&mut self) -> io::Result<()> {
        self.active_ref().sync()?;
        self.flushed_offset = self.next_offset;
        Ok(())
    }

    /// Flushes and trims the active segment's indexes, and snapshots the
    /// producer state; the log must not be appended to after.
    pub fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        // The active segment's aborts first: a snapshot at the log end means
        // start-up replays nothing before it.
        let active = self.active_ref().base_offset;
        let aborts = self.aborted.in_range(active, self.next_offset);
        txn_index::store(self.fs.as_ref(), &self.dir, active, &aborts)?;
        self.write_producer_snapshot(self.clock_ms);
        self.active().finish_seal()
    }

    /// First offset still stored: the first segment's base, or where
    /// DeleteRecords moved the start, whichever is later.
    pub fn log_start_offset(&self) -> i64 {
        let first = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        first.max(self.start_floor.min(self.next_offset))
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The effective settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings (topic config change); applies from the next append.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::fs::RealFs;
    use crate::log::records::{build_test_batch, validate, Validated};

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            segment_ms: -1,
            ..LogConfig::default()
        }
    }

    fn fill(log: &mut PartitionLog, n: usize, ts: i64) {
        for _ in 0..n {
            let b = build_test_batch(ts, &[&[0u8; 200]]);
            log.append(&validate(&b, 1 << 20).unwrap(), 0).unwrap();
        }
    }

    #[test]
    fn retention_by_bytes_deletes_oldest_sealed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            Arc::new(RealFs),
            dir.path(),
            LogConfig {
                retention_bytes: 2048,
                retention_ms: -1,
                ..cfg()
            },
            false,
            0,
        )
        .unwrap();
        fill(&mut log, 40, 1);
        let before = log.segment_count();
        assert!(before > 4);
        let deleted = log.apply_retention(0).unwrap();
        assert!(deleted > 0);
        assert!(log.size_bytes() <= 2048 + 1024);
        assert!(log.log_start_offset() > 0);
        assert_eq!(log.log_end_offset(), 40);
        assert!(matches!(
            log.read(0, 100),
            Err(ReadError::OutOfRange { .. })
        ));
        assert!(log.read(log.log_start_offset(), 100).unwrap().is_some());
    }

    #[test]
    fn delete_records_moves_the_start_durably_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let open = || PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), false, 0).unwrap();
        let mut log = open();
        fill(&mut log, 40, 1);
        let segments = log.segment_count();
        assert_eq!(log.delete_records(25).unwrap(), 25);
        assert!(
            log.segment_count() < segments,
            "whole segments below the start go"
        );
        assert!(matches!(
            log.read(24, 100),
            Err(ReadError::OutOfRange { .. })
        ));
        assert!(log.read(25, 100).unwrap().is_some());
        // Moving backwards is a no-op; past the end is out of range; -1 is the end.
        assert_eq!(log.delete_records(10).unwrap(), 25);
        assert!(matches!(
            log.delete_records(41),
            Err(ReadError::OutOfRange { .. })
        ));
        log.close().unwrap();
        drop(log);
        let mut log = open();
        assert_eq!(
            log.log_start_offset(),
            25,
            "the start is not re-derived from the first segment"
        );
        assert_eq!(log.delete_records(-1).unwrap(), 40);
        drop(log);
        assert_eq!(open().log_start_offset(), 40);
    }

    /// A one-record batch of producer 7, epoch 0, at `seq`.
    fn idem(seq: i32) -> Vec<u8> {
        let mut b = build_test_batch(1, &[&[1u8; 300]]);
        super::batch::set_producer(&mut b, 7, 0, seq);
        b
    }

    fn append_idem(log: &mut PartitionLog, seq: i32) -> AppendInfo {
        log.append(&validate(&idem(seq), 1 << 20).unwrap(), 0)
            .unwrap()
    }

    #[test]
    fn retried_batches_are_recognised_across_clean_restarts_rolls_and_crashes() {
        let dir = tempfile::tempdir().unwrap();
        let open = || PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), false, 0).unwrap();
        let mut log = open();
        for seq in 0..8 {
            assert_eq!(append_idem(&mut log, seq).base_offset, i64::from(seq));
        }
        assert!(log.segment_count() > 2, "small segments roll and snapshot");
        log.close().unwrap();
        drop(log);
        // A clean restart: the snapshot written at close knows the last batches.
        let mut log = open();
        let retry = append_idem(&mut log, 6);
        assert_eq!(
            (retry.base_offset, log.log_end_offset()),
            (6, 8),
            "written twice"
        );
        assert!(matches!(
            log.append(&validate(&idem(10), 1 << 20).unwrap(), 0),
            Err(AppendError::OutOfOrderSequence {
                expected: 8,
                got: 10
            })
        ));
        append_idem(&mut log, 8);
        // A crash (no close): the snapshot of the last roll plus the batches after it.
        drop(log);
        let mut log = PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), true, 0).unwrap();
        assert_eq!(
            append_idem(&mut log, 8).base_offset,
            8,
            "retry after a crash"
        );
        assert_eq!(log.log_end_offset(), 9);
        // Only the two newest snapshots are kept.
        let snapshots = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "snapshot")
            })
            .count();
        assert!(snapshots <= 2, "{snapshots} snapshots");
    }

    /// A one-record transactional batch of producer `pid`, epoch 0, at `seq`.
    fn txn_batch(pid: i64, seq: i32) -> Vec<u8> {
        let payload = crate::log::records::encode_records(&[(None, Some(&[2u8; 300][..]))]);
        let mut b = crate::log::records::build_raw_batch(1, batch::ATTR_TRANSACTIONAL, 1, &payload);
        super::batch::set_producer(&mut b, pid, 0, seq);
        b
    }

    fn append_txn(log: &mut PartitionLog, pid: i64, seq: i32) -> i64 {
        log.append(&validate(&txn_batch(pid, seq), 1 << 20).unwrap(), 0)
            .unwrap()
            .base_offset
    }

    #[test]
    fn transactions_bound_the_stable_offset_and_aborts_are_indexed_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            |recover| PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), recover, 0).unwrap();
        let mut log = open(false);
        assert_eq!(append_txn(&mut log, 1, 0), 0); // pid 1 opens at 0
        assert_eq!(append_txn(&mut log, 2, 0), 1); // pid 2 opens at 1
        assert_eq!(log.last_stable_offset(), 0);
        // Nothing at or past the LSO is read.
        assert!(log.read_below(0, 1 << 20, 0).unwrap().is_none());
        assert_eq!(append_txn(&mut log, 1, 1), 2);
        // A non-transactional batch from a producer inside a transaction is refused.
        let mut plain = build_test_batch(1, &[b"x"]);
        super::batch::set_producer(&mut plain, 1, 0, 2);
        assert!(matches!(
            log.append(&validate(&plain, 1 << 20).unwrap(), 0),
            Err(AppendError::InvalidTxnState)
        ));
        let commit = log.append_marker(1, 0, true, 0, 0).unwrap();
        assert_eq!(commit.base_offset, 3);
        assert_eq!(log.last_stable_offset(), 1, "pid 2 is still open");
        let slice = log.read_below(0, 1 << 20, 1).unwrap().unwrap();
        assert_eq!(slice.next_offset, 1, "only the batch below the LSO");
        append_txn(&mut log, 2, 1); // 4
        assert!(log.segment_count() > 1, "small segments roll");
        let abort = log.append_marker(2, 0, false, 0, 0).unwrap();
        assert_eq!(abort.base_offset, 5);
        assert_eq!(log.last_stable_offset(), 6);
        let want = vec![AbortedTxn {
            producer_id: 2,
            first_offset: 1,
            last_offset: 5,
            last_stable_offset: 1,
        }];
        assert_eq!(log.aborted_overlapping(0, 6), want);
        assert_eq!(log.aborted_overlapping(6, 10), vec![]);
        // A marker from an older epoch is refused; a newer one fences.
        log.append_marker(2, 3, false, 0, 0).unwrap();
        assert!(matches!(
            log.append_marker(2, 2, false, 0, 0),
            Err(AppendError::InvalidProducerEpoch)
        ));
        assert!(matches!(
            log.append(&validate(&txn_batch(2, 2), 1 << 20).unwrap(), 0),
            Err(AppendError::InvalidProducerEpoch)
        ));
        // pid 3 opens a transaction that stays open over restarts.
        let open_at = append_txn(&mut log, 3, 0);
        log.close().unwrap();
        drop(log);
        let mut log = open(false);
        assert_eq!(
            log.aborted_overlapping(0, 100),
            want,
            "after a clean restart"
        );
        assert_eq!(log.last_stable_offset(), open_at);
        append_txn(&mut log, 3, 1);
        log.append_marker(3, 0, false, 0, 0).unwrap();
        append_txn(&mut log, 4, 0);
        let lso = log.last_stable_offset();
        let aborts = log.aborted_overlapping(0, 100);
        assert_eq!(aborts.len(), 2);
        drop(log); // a crash
        let log = open(true);
        assert_eq!(log.aborted_overlapping(0, 100), aborts, "after a crash");
        assert_eq!(log.last_stable_offset(), lso);
        drop(log);
        // A damaged index file is rebuilt from the log.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "txnindex") {
                std::fs::write(&p, b"junk").unwrap();
            }
        }
        let log = open(true);
        assert_eq!(log.aborted_overlapping(0, 100), aborts, "rebuilt");
    }

    #[test]
    fn log_append_time_stamps_the_stored_batch_with_a_valid_crc() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            log_append_time: true,
            ..cfg()
        };
        let mut log = PartitionLog::open(Arc::new(RealFs), dir.path(), config, false, 0).unwrap();
        let b = build_test_batch(1_000, &[b"a", b"bc"]);
        let info = log.append(&validate(&b, 1 << 20).unwrap(), 50_000).unwrap();
        assert_eq!(info.log_append_time, 50_000);
        let stored = log
            .read(0, 1 << 20)
            .unwrap()
            .unwrap()
            .read_to_vec()
            .unwrap();
        let h = batch::validate(&stored).expect("the stored CRC matches the new header");
        assert_eq!(h.max_timestamp, 50_000);
        assert_ne!(h.attributes & batch::ATTR_LOG_APPEND_TIME, 0);
        let mut seen = Vec::new();
        crate::log::records::for_each_record(&stored, &h, 1 << 20, &mut |r| {
            seen.push(r.timestamp);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![50_000, 50_000],
            "consumers read the broker's time"
        );
        assert!(log.find_by_timestamp(50_000).unwrap().is_some());
        // The producer's timestamps are not checked against the window.
        let future = build_test_batch(50_000 + 36_000_000, &[b"x"]);
        log.append(&validate(&future, 1 << 20).unwrap(), 50_000)
            .unwrap();
    }

    #[test]
    fn timestamps_outside_the_topics_window_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            timestamp_before_max_ms: 1_000,
            timestamp_after_max_ms: 500,
            ..cfg()
        };
        let mut log = PartitionLog::open(Arc::new(RealFs), dir.path(), config, false, 0).unwrap();
        let now = 10_000;
        let at = |ts: i64| build_test_batch(ts, &[b"v"]);
        for ts in [9_000, 10_500, 10_000] {
            log.append(&validate(&at(ts), 1 << 20).unwrap(), now)
                .unwrap_or_else(|e| panic!("{ts}: {e}"));
        }
        for ts in [8_999, 10_501] {
            assert!(
                matches!(
                    log.append(&validate(&at(ts), 1 << 20).unwrap(), now),
                    Err(AppendError::InvalidTimestamp { timestamp, .. }) if timestamp == ts
                ),
                "{ts}"
            );
        }
        assert_eq!(log.log_end_offset(), 3, "nothing refused was written");
    }

    #[test]
    fn a_damaged_snapshot_falls_back_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let open = || PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), false, 0).unwrap();
        let mut log = open();
        for seq in 0..6 {
            append_idem(&mut log, seq);
        }
        log.close().unwrap();
        drop(log);
        let mut snaps: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "snapshot"))
            .collect();
        snaps.sort();
        assert_eq!(snaps.len(), 2);
        std::fs::write(snaps.last().unwrap(), b"garbage").unwrap();
        let mut log = open();
        assert_eq!(
            append_idem(&mut log, 5).base_offset,
            5,
            "the older snapshot and the log after it"
        );
    }

    #[test]
    fn retention_by_time_spares_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            Arc::new(RealFs),
            dir.path(),
            LogConfig {
                retention_ms: 1000,
                ..cfg()
            },
            false,
            0,
        )
        .unwrap();
        fill(&mut log, 20, 5_000);
        assert_eq!(log.apply_retention(5_500).unwrap(), 0, "nothing is old yet");
        let n = log.apply_retention(10_000).unwrap();
        assert!(n >= 1, "the sealed segments go");
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_end_offset(), 20);
    }

    #[test]
    fn segment_ms_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            Arc::new(RealFs),
            dir.path(),
            LogConfig {
                segment_ms: 100,
                ..LogConfig::default()
            },
            false,
            0,
        )
        .unwrap();
        let b = build_test_batch(1, &[b"a"]);
        log.append(&validate(&b, 1 << 20).unwrap(), 0).unwrap();
        let b = build_test_batch(1, &[b"b"]);
        log.append(&validate(&b, 1 << 20).unwrap(), 50).unwrap();
        assert_eq!(log.segment_count(), 1);
        let b = build_test_batch(1, &[b"c"]);
        log.append(&validate(&b, 1 << 20).unwrap(), 150).unwrap();
        assert_eq!(log.segment_count(), 2);
    }

    /// A batch with a valid CRC claiming `last_offset_delta` (regression: such
    /// batches used to panic the append path and every later restart).
    fn claiming(delta: i32) -> Vec<u8> {
        let mut b = build_test_batch(1, &[b"x"]);
        b[23..27].copy_from_slice(&delta.to_be_bytes());
        crate::log::batch::set_crc(&mut b);
        b
    }

    #[test]
    fn regression_offset_spans_past_the_relative_range_roll_or_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), false, 0).unwrap();
        let one = claiming(i32::MAX);
        let h = crate::log::BatchHeader::parse(&one).unwrap();
        // Validation refuses such a batch; the log's own guards must hold even so.
        assert!(validate(&one, 1 << 20).is_err());
        let single = Validated {
            bytes: &one,
            batches: vec![(0, h)],
            timestamps: None,
            keyless: true,
        };
        log.append(&single, 0).unwrap();
        log.append(&single, 0).unwrap();
        assert_eq!(log.segment_count(), 2, "the second append rolled");
        assert_eq!(log.log_end_offset(), 2 * (i64::from(i32::MAX) + 1));
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let double = Validated {
            bytes: &two,
            batches: vec![(0, h), (one.len(), h)],
            timestamps: None,
            keyless: true,
        };
        assert!(matches!(
            log.append(&double, 0),
            Err(AppendError::OffsetOverflow)
        ));
        drop(log);
        // Recovery checks every batch of the active segment: no panic, no bad batch kept.
        let log = PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), true, 0).unwrap();
        assert_eq!(log.segment_count(), 2);
    }

    #[test]
    fn regression_out_of_range_base_offsets_at_start_up_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), false, 0).unwrap();
        fill(&mut log, 12, 1);
        assert!(log.segment_count() >= 3);
        log.close().unwrap();
        drop(log);
        // Rewrite a base offset (not under the CRC) far past the segment's range,
        // in the active segment: its tail is cut at start-up.
        let mut bases: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        bases.sort();
        let poke = |name: &str| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join(name))
                .unwrap();
            f.write_all_at(&(1i64 << 40).to_be_bytes(), 0).unwrap();
        };
        poke(bases.last().unwrap());
        let log = PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), true, 0).unwrap();
        let first_active = parse_segment_name(bases.last().unwrap()).unwrap();
        assert_eq!(
            log.log_end_offset(),
            first_active,
            "the active segment was emptied"
        );
        drop(log);
        // The same in a sealed segment is corruption: refused, not truncated.
        poke(&bases[0]);
        for ext in ["index", "timeindex"] {
            let _ = std::fs::remove_file(dir.path().join(bases[0].replace("log", ext)));
        }
        match PartitionLog::open(Arc::new(RealFs), dir.path(), cfg(), false, 0) {
            Err(OpenError::Corrupt(why)) => assert!(why.contains("sealed segment"), "{why}"),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
