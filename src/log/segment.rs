//! One segment: an append-only file of record batches plus its two derived indexes.

use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::fs::{Fs, FsFile, Open};
use super::index::{OffsetIndex, TimeIndex};
use super::LogConfig;

/// File name of a segment's log file: the base offset, zero-padded to 20 digits.
pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Largest offset distance from a segment's base its 32-bit relative index
/// entries can hold. Appends roll before crossing it; recovery refuses batches past it.
pub const RELATIVE_OFFSET_MAX: i64 = u32::MAX as i64 - 1;

/// A byte range of a segment file holding whole batches, ready to be sent.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The segment file; kept open even if the segment is deleted meanwhile.
    pub file: Arc<dyn FsFile>,
    /// Start of the first batch in the file.
    pub position: u64,
    /// Length in bytes; always covers whole batches.
    pub len: u64,
    /// The offset after the slice's last batch (what a consumer fetches next).
    pub next_offset: i64,
}

impl FileSlice {
    /// Copies the slice into memory (for the few paths that inspect records).
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len).map_err(|_| io::Error::other("slice too large"))?;
        let mut v = vec![0u8; len];
        self.file.read_exact_at(&mut v, self.position)?;
        Ok(v)
    }
}

/// Why a log could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The file system failed.
    Io(io::Error),
    /// The data is damaged where truncation is not the answer (a sealed segment,
    /// or segments that overlap): the partition is served as offline.
    Corrupt(String),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "i/o error: {e}"),
            OpenError::Corrupt(why) => write!(f, "{why}"),
        }
    }
}

/// How a segment is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The last segment, which appends go to. With `recover` (the last shutdown was
    /// not clean) every batch is read and checked and a torn tail is cut off.
    Active {
        /// Check every batch.
        recover: bool,
    },
    /// An earlier segment: complete and fsynced before the next one was created,
    /// so damage in it is corruption, never a torn write.
    Sealed,
}

/// One segment of a partition's log.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the first batch this segment may hold; also its file name.
    pub base_offset: i64,
    /// Path of the `.log` file.
    path: PathBuf,
    /// The file system, for removal.
    fs: Arc<dyn Fs>,
    /// The log file, shared with in-flight fetches that send from it.
    file: Arc<dyn FsFile>,
    /// Bytes of valid batches; appends go here, reads never go past it.
    size: u64,
    /// Offset after the last batch (equals `base_offset` when empty).
    next_offset: i64,
    /// Sparse offset -> position index.
    index: OffsetIndex,
    /// Sparse max-timestamp -> offset index.
    time_index: TimeIndex,
    /// Bytes appended since the last index entry; drives index density.
    bytes_since_index: u64,
    /// Largest batch max timestamp in the segment, -1 when empty.
    max_timestamp: i64,
    /// Base offset of the first batch carrying `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Bytes between index entries (`index.interval.bytes`).
    index_interval_bytes: u64,
    /// Wall-clock ms of the first append (or open), for `segment.ms` rolling.
    created_ms: i64,
}

/// What a scan of a segment's bytes found.
struct Scan {
    /// End of the last valid batch.
    valid_bytes: u64,
    /// Offset after the last valid batch.
    next_offset: i64,
}

fn read_header(file: &dyn FsFile, pos: u64, size: u64) -> io::Result<Option<BatchHeader>> {
    if pos + HEADER_BYTES as u64 > size {
        return Ok(None);
    }
    let mut h = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut h, pos)?;
    Ok(BatchHeader::parse(&h).ok())
}

impl Segment {
    /// Opens the log file and both indexes; returns the segment (with `size` set to
    /// the file length and nothing else known yet) and the indexes' old entry counts.
    fn open_files(
        fs: &Arc<dyn Fs>,
        dir: &Path,
        base_offset: i64,
        cfg: &LogConfig,
        create: bool,
        now_ms: i64,
    ) -> io::Result<(Segment, usize, usize)> {
        let path = dir.join(file_name(base_offset, "log"));
        // A file at a new segment's base can only be left from a creation that
        // failed half-way (no segment of the log holds those offsets): reuse it.
        let how = if create {
            Open::Truncate
        } else {
            Open::Existing
        };
        let file = fs.open(&path, how)?;
        let size = file.size()?;
        let (index, old_index) = OffsetIndex::open(
            fs.as_ref(),
            &dir.join(file_name(base_offset, "index")),
            cfg.index_bytes_max,
        )?;
        let (time_index, old_time) = TimeIndex::open(
            fs.as_ref(),
            &dir.join(file_name(base_offset, "timeindex")),
            cfg.index_bytes_max,
        )?;
        let seg = Segment {
            base_offset,
            path,
            fs: fs.clone(),
            file,
            size,
            next_offset: base_offset,
            index,
            time_index,
            bytes_since_index: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            index_interval_bytes: cfg.index_interval_bytes,
            created_ms: now_ms,
        };
        Ok((seg, old_index, old_time))
    }

    /// Creates a new empty segment at `base_offset` in `dir`; its directory entry
    /// is durable when this returns.
    pub fn create(
        fs: &Arc<dyn Fs>,
        dir: &Path,
        base_offset: i64,
        cfg: &LogConfig,
        now_ms: i64,
    ) -> io::Result<Segment> {
        let made = Segment::open_files(fs, dir, base_offset, cfg, true, now_ms)
            .and_then(|(seg, _, _)| fs.sync_dir(dir).map(|()| seg));
        if made.is_err() {
            // Best effort: what is left is reused by the next creation, or
            // removed at start-up (an empty segment inside another's range).
            for ext in ["log", "index", "timeindex"] {
                let _ = fs.remove_file(&dir.join(file_name(base_offset, ext)));
            }
        }
        made
    }

    /// Opens an existing segment. Indexes are trusted when they pass a sanity check
    /// and the bytes after the last entry parse; otherwise (or for an active
    /// segment after an unclean shutdown) every batch is read and checked, and the
    /// indexes rebuilt. Invalid bytes at the end of the active segment are a torn
    /// write and cut off; anywhere in a sealed segment they are corruption.
    pub fn open(
        fs: &Arc<dyn Fs>,
        dir: &Path,
        base_offset: i64,
        cfg: &LogConfig,
        role: Role,
        now_ms: i64,
    ) -> Result<Segment, OpenError> {
        let (mut seg, old_index, old_time) =
            Segment::open_files(fs, dir, base_offset, cfg, false, now_ms)?;
        let file_len = seg.size;
        let recover = role == Role::Active { recover: true };
        let trusted = !recover && seg.index.adopt(old_index, file_len) && {
            // Offsets are relative, so compare against the largest possible relative offset.
            seg.time_index.adopt(old_time, u64::from(u32::MAX))
        };
        if trusted {
            let (rel, pos) = seg.index.lookup(u32::MAX);
            if let Some((ts, rel_ts)) = seg.time_index.last() {
                seg.max_timestamp = ts;
                seg.offset_of_max_timestamp = base_offset + i64::from(rel_ts);
            }
            seg.next_offset = base_offset + i64::from(rel);
            let scan = seg.scan_from(u64::from(pos), false, false)?;
            if scan.valid_bytes == file_len {
                seg.next_offset = scan.next_offset;
                return Ok(seg);
            }
            // The tail does not parse: the indexes are not from this file's life.
        }
        seg.rebuild(role)?;
        Ok(seg)
    }

    /// Scans the whole segment, checking every batch, and rebuilds both indexes
    /// from the valid batches. Invalid bytes after them are cut off in the active
    /// segment and refused (an error) in a sealed one.
    fn rebuild(&mut self, role: Role) -> Result<(), OpenError> {
        self.index.truncate_to_position(0);
        self.time_index.truncate_to_offset(0);
        self.bytes_since_index = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.next_offset = self.base_offset;
        let scan = self.scan_from(0, true, true)?;
        if scan.valid_bytes < self.size {
            if role == Role::Sealed {
                return Err(OpenError::Corrupt(format!(
                    "sealed segment {} is corrupt at byte {} of {} (a batch fails its \
                     checks where the file was complete and fsynced)",
                    self.path.display(),
                    scan.valid_bytes,
                    self.size
                )));
            }
            tracing::warn!(
                segment = %self.path.display(),
                valid = scan.valid_bytes,
                file = self.size,
                "truncating the torn or corrupt tail of the active segment"
            );
            self.file.set_len(scan.valid_bytes)?;
            self.file.sync_all()?;
            self.size = scan.valid_bytes;
        }
        self.next_offset = scan.next_offset;
        Ok(())
    }

    /// Walks batches from `pos` to the end of the file. With `check_crc` each batch
    /// is read whole and validated; with `index` the indexes are extended as by
    /// appends. Stops at the first batch that is invalid: bad length, past the end,
    /// offsets going backwards or outside this segment's relative range, bad magic
    /// or (checked) CRC.
    fn scan_from(&mut self, mut pos: u64, check_crc: bool, index: bool) -> io::Result<Scan> {
        let size = self.size;
        let mut next = self.next_offset;
        let mut buf = Vec::new();
        while let Some(h) = read_header(self.file.as_ref(), pos, size)? {
            let Ok(total) = h.check_length() else { break };
            let total = total as u64;
            let in_range = h.base_offset >= next
                && h.last_offset() >= h.base_offset
                && h.last_offset() - self.base_offset <= RELATIVE_OFFSET_MAX;
            if pos + total > size || !in_range || h.magic != batch::MAGIC_V2 {
                break;
            }
            if check_crc {
                buf.resize(total as usize, 0);
                self.file.read_exact_at(&mut buf, pos)?;
                if batch::validate_stored(&buf).is_err() {
                    break;
                }
            }
            if index {
                self.note_batch(&h, pos, total);
            } else {
                self.note_timestamp(&h);
            }
            next = h.next_offset();
            pos += total;
        }
        Ok(Scan {
            valid_bytes: pos,
            next_offset: next,
        })
    }

    /// Remembers the batch if it carries the segment's largest timestamp so far.
    fn note_timestamp(&mut self, h: &BatchHeader) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
    }

    /// Updates indexes and timestamp bookkeeping for a batch written at `pos`.
    /// Returns false if an index is full (caller rolls before the next append).
    fn note_batch(&mut self, h: &BatchHeader, pos: u64, total: u64) -> bool {
        let mut ok = true;
        self.note_timestamp(h);
        if self.bytes_since_index >= self.index_interval_bytes && pos > 0 {
            let rel = self.relative(h.base_offset);
            // Positions fit: a segment rolls past `segment.bytes` (at most i32::MAX)
            // and one append is at most `request_bytes_max` (at most i32::MAX).
            let pos = u32::try_from(pos).unwrap_or(u32::MAX);
            ok &= self.index.append(rel, pos);
            let rel_ts = self.relative(self.offset_of_max_timestamp);
            ok &= self.time_index.maybe_append(self.max_timestamp, rel_ts);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += total;
        ok
    }

    /// `offset` relative to the base. Every batch in a segment lies within
    /// [`RELATIVE_OFFSET_MAX`] of its base: appends roll first and recovery stops
    /// at batches outside it, so the fallback is unreachable.
    fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.base_offset).unwrap_or(u32::MAX)
    }

    /// Calls `f` with every batch header in order, and the batch itself for
    /// control batches (transaction markers, a few dozen bytes each); blocking
    /// reads of 61 bytes per batch.
    pub fn for_each_header(
        &self,
        mut f: impl FnMut(&BatchHeader, Option<&[u8]>),
    ) -> io::Result<()> {
        /// Control batches are one small record; a larger one is not read.
        const CONTROL_BATCH_BYTES_MAX: usize = 4096;
        let mut pos = 0u64;
        let mut buf = Vec::new();
        while let Some(h) = read_header(self.file.as_ref(), pos, self.size)? {
            let total = h.total_bytes();
            if h.attributes & batch::ATTR_CONTROL != 0 && total <= CONTROL_BATCH_BYTES_MAX {
                buf.resize(total, 0);
                self.file.read_exact_at(&mut buf, pos)?;
                f(&h, Some(&buf));
            } else {
                f(&h, None);
            }
            pos += total as u64;
        }
        Ok(())
    }

    /// Whether appending `bytes` more (ending at `last_offset`) needs a new segment first.
    pub fn needs_roll(&self, bytes: u64, last_offset: i64, cfg: &LogConfig, now_ms: i64) -> bool {
        if self.size == 0 {
            return false;
        }
        self.size + bytes > cfg.segment_bytes
            || self.index.is_full()
            || self.time_index.is_full()
            || last_offset - self.base_offset > RELATIVE_OFFSET_MAX
            || (cfg.segment_ms >= 0 && now_ms - self.created_ms >= cfg.segment_ms)
    }

    /// Writes validated batches at the end of the segment, each with the base
    /// offset its header in `headers` was assigned. On error the segment is
    /// unchanged in memory and the partial write is cut off; if even the cut
    /// fails, the second element of the error is true.
    pub fn append(
        &mut self,
        bytes: &[u8],
        headers: &[(usize, BatchHeader)],
        now_ms: i64,
    ) -> Result<(), (io::Error, bool)> {
        if self.size == 0 {
            self.created_ms = now_ms;
        }
        if let Err(e) = write_batches_at(self.file.as_ref(), bytes, headers, self.size) {
            // Leave no partial batch behind.
            let damaged = self.file.set_len(self.size).is_err();
            return Err((e, damaged));
        }
        for (start, h) in headers {
            let pos = self.size + *start as u64;
            let total = h.total_bytes() as u64;
            self.note_batch(h, pos, total);
            self.next_offset = h.next_offset();
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Finds the start position of the batch containing `offset`, scanning at most
    /// from the floor index entry. `None` when no batch at or after `offset` exists.
    fn locate(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        let target = offset
            .saturating_sub(self.base_offset)
            .clamp(0, i64::from(u32::MAX)) as u32;
        let mut pos = u64::from(self.index.lookup(target).1);
        while let Some(h) = read_header(self.file.as_ref(), pos, self.size)? {
            if h.next_offset() > offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_bytes() as u64;
        }
        Ok(None)
    }

    /// The header of the batch holding `offset` (or the first after it).
    pub fn header_at(&self, offset: i64) -> io::Result<Option<BatchHeader>> {
        Ok(self.locate(offset)?.map(|(_, h)| h))
    }

    /// Whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (but always at least that first batch), and none from `max_offset` on
    /// (a batch boundary: the last stable offset).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        max_offset: i64,
    ) -> io::Result<Option<FileSlice>> {
        let Some((start, first)) = self.locate(offset)? else {
            return Ok(None);
        };
        if first.base_offset >= max_offset {
            return Ok(None);
        }
        let mut end = start + first.total_bytes() as u64;
        let mut next_offset = first.next_offset();
        let mut stop = self.size;
        if max_offset < self.next_offset {
            if let Some((pos, _)) = self.locate(max_offset)? {
                stop = pos;
            }
        }
        let limit = start.saturating_add(max_bytes).min(stop);
        if end < limit {
            // Jump near the limit with the index, then walk batch headers.
            let rel_limit = u64::from(
                self.index
                    .floor_position(u32::try_from(limit).unwrap_or(u32::MAX)),
            );
            let mut pos = rel_limit.max(end);
            // The offset of the batch starting at `pos`.
            let at_pos = loop {
                let Some(h) = read_header(self.file.as_ref(), pos, self.size)? else {
                    break self.next_offset;
                };
                let next = pos + h.total_bytes() as u64;
                if next > limit {
                    break h.base_offset;
                }
                pos = next;
            };
            if pos > end {
                end = pos;
                next_offset = at_pos;
            }
        }
        Ok(Some(self.slice(start, end - start, next_offset)))
    }

    fn slice(&self, position: u64, len: u64, next_offset: i64) -> FileSlice {
        FileSlice {
            file: self.file.clone(),
            position,
            len,
            next_offset,
        }
    }

    /// The first batch whose max timestamp is `>= timestamp` and that holds
    /// offsets at or after `min_offset` (the log start).
    pub fn find_by_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> io::Result<Option<FileSlice>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let rel = self.time_index.scan_start(timestamp);
        let (_, pos) = self.index.lookup(rel);
        let mut pos = u64::from(pos);
        while let Some(h) = read_header(self.file.as_ref(), pos, self.size)? {
            if h.max_timestamp >= timestamp && h.next_offset() > min_offset {
                return Ok(Some(self.slice(
                    pos,
                    h.total_bytes() as u64,
                    h.next_offset(),
                )));
            }
            pos += h.total_bytes() as u64;
        }
        Ok(None)
    }

    /// The batch holding this segment's largest timestamp, with that timestamp.
    pub fn max_timestamp_batch(&self) -> io::Result<Option<(i64, FileSlice)>> {
        if self.max_timestamp < 0 && self.offset_of_max_timestamp < 0 {
            return Ok(None);
        }
        Ok(self.locate(self.offset_of_max_timestamp)?.map(|(pos, h)| {
            let slice = self.slice(pos, h.total_bytes() as u64, h.next_offset());
            (self.max_timestamp, slice)
        }))
    }

    /// Cuts the segment so that it ends before the batch holding `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), OpenError> {
        let Some((pos, _)) = self.locate(offset)? else {
            return Ok(());
        };
        self.file.set_len(pos)?;
        self.file.sync_all()?;
        self.size = pos;
        let rel = self.relative(offset.max(self.base_offset));
        self.index
            .truncate_to_position(u32::try_from(pos).unwrap_or(u32::MAX));
        self.time_index.truncate_to_offset(rel);
        // Recompute next offset and max timestamp from what is left.
        self.rebuild(Role::Active { recover: true })
    }

    /// fdatasync of the log file: makes appended batches durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The file handle, so a flusher can sync without holding the partition lock.
    pub fn file(&self) -> Arc<dyn FsFile> {
        self.file.clone()
    }

    /// Finishes a segment that stopped being active (its data already fsynced):
    /// final time index entry, indexes trimmed to their used length and synced.
    /// Indexes are derived, so a failure here costs a rebuild at the next start.
    pub fn finish_seal(&mut self) -> io::Result<()> {
        if self.offset_of_max_timestamp >= 0 {
            let rel = self.relative(self.offset_of_max_timestamp);
            self.time_index.maybe_append(self.max_timestamp, rel);
        }
        self.index.trim()?;
        self.time_index.trim()
    }

    /// Syncs the data, then trims the indexes (a clean close).
    pub fn seal(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.finish_seal()
    }

    /// Removes the segment's files; open readers keep their handle until done.
    pub fn delete(self) -> io::Result<()> {
        let paths = [
            self.path.clone(),
            self.index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        let fs = self.fs.clone();
        drop(self);
        for p in paths {
            match fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Bytes of valid batches.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Offset after the last batch.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Largest batch timestamp, -1 when empty.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
}

/// Writes the batches of `bytes` at `offset` with vectored writes: each batch's
/// assigned prefix from a small buffer, its remainder straight from the request
/// buffer (no copy of the records in user space).
/// What a batch's stored bytes begin with in place of the request's.
enum Head {
    /// The assigned base offset and leader epoch; the rest is the request's.
    Prefix([u8; batch::ASSIGNED_PREFIX_BYTES]),
    /// A whole rewritten header (LogAppendTime stamping, CRC recomputed).
    Full([u8; batch::HEADER_BYTES]),
}

impl Head {
    fn bytes(&self) -> &[u8] {
        match self {
            Head::Prefix(p) => p,
            Head::Full(h) => h,
        }
    }
}

fn write_batches_at(
    file: &dyn FsFile,
    bytes: &[u8],
    headers: &[(usize, BatchHeader)],
    offset: u64,
) -> io::Result<()> {
    // Most batches change only in the assigned prefix; a stamped one
    // (LogAppendTime) gets a whole new header with its CRC recomputed.
    let heads: Vec<Head> = headers
        .iter()
        .map(
            |(start, h)| match batch::stamped_header(&bytes[*start..], h) {
                Some(full) => Head::Full(full),
                None => Head::Prefix(batch::assigned_prefix(&bytes[*start..], h.base_offset, 0)),
            },
        )
        .collect();
    let mut slices = Vec::with_capacity(2 * headers.len());
    for ((start, h), head) in headers.iter().zip(&heads) {
        let head = head.bytes();
        slices.push(IoSlice::new(head));
        slices.push(IoSlice::new(
            &bytes[start + head.len()..start + h.total_bytes()],
        ));
    }
    file.write_all_vectored_at(&mut slices, offset)
}
