//! One segment: an append-only file of record batches plus its two derived indexes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::index::{OffsetIndex, TimeIndex};
use super::LogConfig;

/// File name of a segment's log file: the base offset, zero-padded to 20 digits.
pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// A byte range of a segment file holding whole batches, ready to be sent.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The segment file; kept open even if the segment is deleted meanwhile.
    pub file: Arc<File>,
    /// Start of the first batch in the file.
    pub position: u64,
    /// Length in bytes; always covers whole batches.
    pub len: u64,
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

/// One segment of a partition's log.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the first batch this segment may hold; also its file name.
    pub base_offset: i64,
    /// Path of the `.log` file.
    path: PathBuf,
    /// The log file, shared with in-flight fetches that send from it.
    file: Arc<File>,
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

fn read_header(file: &File, pos: u64, size: u64) -> io::Result<Option<BatchHeader>> {
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
        dir: &Path,
        base_offset: i64,
        cfg: &LogConfig,
        create: bool,
        now_ms: i64,
    ) -> io::Result<(Segment, usize, usize)> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(&path)?;
        let size = file.metadata()?.len();
        let (index, old_index) = OffsetIndex::open(
            &dir.join(file_name(base_offset, "index")),
            cfg.index_bytes_max,
        )?;
        let (time_index, old_time) = TimeIndex::open(
            &dir.join(file_name(base_offset, "timeindex")),
            cfg.index_bytes_max,
        )?;
        let seg = Segment {
            base_offset,
            path,
            file: Arc::new(file),
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

    /// Creates a new empty segment at `base_offset` in `dir`.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        cfg: &LogConfig,
        now_ms: i64,
    ) -> io::Result<Segment> {
        let (seg, _, _) = Segment::open_files(dir, base_offset, cfg, true, now_ms)?;
        sync_dir(dir)?;
        Ok(seg)
    }

    /// Opens an existing segment. With `recover`, every batch is read and checked
    /// (CRC-32C included), the file is truncated after the last valid batch and the
    /// indexes are rebuilt. Without it the indexes are trusted if they pass a sanity
    /// check, and only the tail after the last index entry is read.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        cfg: &LogConfig,
        recover: bool,
        now_ms: i64,
    ) -> io::Result<Segment> {
        let (mut seg, old_index, old_time) =
            Segment::open_files(dir, base_offset, cfg, false, now_ms)?;
        let file_len = seg.size;
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
            if scan.valid_bytes != file_len {
                // The tail does not parse: the indexes are not from this file's life.
                return Segment::open(dir, base_offset, cfg, true, now_ms);
            }
            seg.next_offset = scan.next_offset;
        } else {
            seg.rebuild()?;
        }
        Ok(seg)
    }

    /// Scans the whole segment, checking every batch, truncates any invalid tail and
    /// rebuilds both indexes from the surviving batches.
    fn rebuild(&mut self) -> io::Result<()> {
        self.index.truncate_to_position(0);
        self.time_index.truncate_to_offset(0);
        self.bytes_since_index = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.next_offset = self.base_offset;
        let scan = self.scan_from(0, true, true)?;
        if scan.valid_bytes < self.size {
            tracing::warn!(
                segment = %self.path.display(),
                valid = scan.valid_bytes,
                file = self.size,
                "truncating torn or corrupt tail"
            );
            self.file.set_len(scan.valid_bytes)?;
            self.file.sync_all()?;
            self.size = scan.valid_bytes;
        }
        self.next_offset = scan.next_offset;
        Ok(())
    }

    /// Walks batches from `pos` to the end of the file. With `check_crc` each batch
    /// is read whole and validated; with `index` the indexes are extended as by appends.
    fn scan_from(&mut self, mut pos: u64, check_crc: bool, index: bool) -> io::Result<Scan> {
        let size = self.size;
        let mut next = self.next_offset;
        let mut buf = Vec::new();
        while let Some(h) = read_header(&self.file, pos, size)? {
            let Ok(total) = h.check_length() else { break };
            let total = total as u64;
            if pos + total > size || h.base_offset < next || h.magic != batch::MAGIC_V2 {
                break;
            }
            if check_crc {
                buf.resize(total as usize, 0);
                self.file.read_exact_at(&mut buf, pos)?;
                if batch::validate(&buf).is_err() {
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
            ok &= self
                .index
                .append(rel, u32::try_from(pos).expect("segment below 2 GiB"));
            let rel_ts = self.relative(self.offset_of_max_timestamp);
            ok &= self.time_index.maybe_append(self.max_timestamp, rel_ts);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += total;
        ok
    }

    fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.base_offset).expect("relative offset fits u32")
    }

    /// Calls `f` with every batch header in order (blocking reads of 61 bytes each).
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> io::Result<()> {
        let mut pos = 0u64;
        while let Some(h) = read_header(&self.file, pos, self.size)? {
            f(&h);
            pos += h.total_bytes() as u64;
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
            || last_offset - self.base_offset > i64::from(u32::MAX - 1)
            || (cfg.segment_ms >= 0 && now_ms - self.created_ms >= cfg.segment_ms)
    }

    /// Writes already validated batches at the end of the segment, each with the
    /// base offset its header in `headers` was assigned.
    /// On error the segment is unchanged (the partial write is cut off).
    pub fn append(
        &mut self,
        bytes: &[u8],
        headers: &[(usize, BatchHeader)],
        now_ms: i64,
    ) -> io::Result<()> {
        if self.size == 0 {
            self.created_ms = now_ms;
        }
        if let Err(e) = write_batches_at(&self.file, bytes, headers, self.size) {
            // Leave no partial batch behind; if even this fails the caller stops the broker.
            self.file.set_len(self.size)?;
            return Err(e);
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
        while let Some(h) = read_header(&self.file, pos, self.size)? {
            if h.next_offset() > offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_bytes() as u64;
        }
        Ok(None)
    }

    /// Whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (but always at least that first batch).
    pub fn read(&self, offset: i64, max_bytes: u64) -> io::Result<Option<FileSlice>> {
        let Some((start, first)) = self.locate(offset)? else {
            return Ok(None);
        };
        let mut end = start + first.total_bytes() as u64;
        let limit = start.saturating_add(max_bytes).min(self.size);
        if end < limit {
            // Jump near the limit with the index, then walk batch headers.
            let rel_limit = u64::from(
                self.index
                    .floor_position(u32::try_from(limit).unwrap_or(u32::MAX)),
            );
            let mut pos = rel_limit.max(end);
            while let Some(h) = read_header(&self.file, pos, self.size)? {
                let next = pos + h.total_bytes() as u64;
                if next > limit {
                    break;
                }
                pos = next;
            }
            end = end.max(pos);
        }
        Ok(Some(FileSlice {
            file: self.file.clone(),
            position: start,
            len: end - start,
        }))
    }

    /// The first batch whose max timestamp is `>= timestamp`.
    pub fn find_by_timestamp(&self, timestamp: i64) -> io::Result<Option<FileSlice>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let rel = self.time_index.scan_start(timestamp);
        let (_, pos) = self.index.lookup(rel);
        let mut pos = u64::from(pos);
        while let Some(h) = read_header(&self.file, pos, self.size)? {
            if h.max_timestamp >= timestamp {
                return Ok(Some(FileSlice {
                    file: self.file.clone(),
                    position: pos,
                    len: h.total_bytes() as u64,
                }));
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
        match self.locate(self.offset_of_max_timestamp)? {
            Some((pos, h)) => Ok(Some((
                self.max_timestamp,
                FileSlice {
                    file: self.file.clone(),
                    position: pos,
                    len: h.total_bytes() as u64,
                },
            ))),
            None => Ok(None),
        }
    }

    /// Cuts the segment so that it ends before the batch holding `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
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
        self.rebuild()
    }

    /// fdatasync of the log file: makes appended batches durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The file handle, so a flusher can sync without holding the partition lock.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Seals the segment when it stops being active: final time index entry,
    /// indexes trimmed and synced, data synced.
    pub fn seal(&mut self) -> io::Result<()> {
        if self.offset_of_max_timestamp >= 0 {
            let rel = self.relative(self.offset_of_max_timestamp);
            self.time_index.maybe_append(self.max_timestamp, rel);
        }
        self.file.sync_data()?;
        self.index.trim()?;
        self.time_index.trim()
    }

    /// Removes the segment's files; open readers keep their handle until done.
    pub fn delete(self) -> io::Result<()> {
        let paths = [
            self.path.clone(),
            self.index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        drop(self);
        for p in paths {
            match fs::remove_file(&p) {
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

/// fsyncs a directory so that created, renamed or removed entries are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Most iovecs passed to one `pwritev` (Linux's `IOV_MAX`).
const IOVECS_MAX: usize = 1024;

/// Writes the batches of `bytes` at `offset` with one vectored write per up to
/// 512 batches: each batch's assigned prefix from a small buffer, its remainder
/// straight from the request buffer (no copy of the records in user space).
fn write_batches_at(
    file: &File,
    bytes: &[u8],
    headers: &[(usize, BatchHeader)],
    offset: u64,
) -> io::Result<()> {
    let prefixes: Vec<[u8; batch::ASSIGNED_PREFIX_BYTES]> = headers
        .iter()
        .map(|(start, h)| batch::assigned_prefix(&bytes[*start..], h.base_offset, 0))
        .collect();
    let mut slices = Vec::with_capacity(2 * headers.len());
    for ((start, h), prefix) in headers.iter().zip(&prefixes) {
        let end = start + h.total_bytes();
        slices.push(io::IoSlice::new(prefix));
        slices.push(io::IoSlice::new(
            &bytes[start + batch::ASSIGNED_PREFIX_BYTES..end],
        ));
    }
    let mut at = offset;
    let mut rest: &mut [io::IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let n = pwritev(file, &rest[..rest.len().min(IOVECS_MAX)], at)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        at += n as u64;
        io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

#[cfg(unix)]
fn pwritev(file: &File, slices: &[io::IoSlice<'_>], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    loop {
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, the slices
        // outlive the call, and the count is at most IOV_MAX.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                slices.len() as libc::c_int,
                off,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
