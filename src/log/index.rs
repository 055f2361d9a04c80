//! Sparse, memory-mapped indexes over one segment. Both are derived data: the
//! segment file is the truth, and an index that fails its sanity check is rebuilt
//! by scanning the segment.
//!
//! - [`OffsetIndex`]: 8-byte entries `(relative_offset u32, position u32)`.
//! - [`TimeIndex`]: 12-byte entries `(max_timestamp i64, relative_offset u32)`.
//!
//! Files are preallocated to their maximum size while a segment is active and
//! trimmed to the used length when the segment is sealed or closed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{Fs, FsFile, Mapping, Open};

/// A file of fixed-size entries mapped into memory.
#[derive(Debug)]
struct MmapFile {
    /// Where the entries live, so the file can be trimmed or removed.
    path: PathBuf,
    /// Keeps the file open for `set_len` on trim.
    file: Arc<dyn FsFile>,
    /// The mapping of the preallocated file; `None` while it has zero length.
    mmap: Option<Box<dyn Mapping>>,
    /// Number of valid entries.
    entries: usize,
    /// Bytes per entry.
    entry_bytes: usize,
    /// Maximum number of entries the preallocated file holds.
    capacity: usize,
}

impl MmapFile {
    /// Opens (creating if needed) with room for `max_bytes / entry_bytes` entries.
    /// Returns the file and the number of entry-aligned bytes it held before
    /// preallocation, for the caller's sanity check.
    fn open(
        fs: &dyn Fs,
        path: &Path,
        entry_bytes: usize,
        max_bytes: usize,
    ) -> io::Result<(MmapFile, usize)> {
        let file = fs.open(path, Open::Create)?;
        let old_len = usize::try_from(file.size()?).unwrap_or(usize::MAX);
        let capacity = (max_bytes / entry_bytes).max(1);
        let old_entries = (old_len / entry_bytes).min(capacity);
        let len = capacity * entry_bytes;
        file.set_len(len as u64)?;
        let mmap = file.map()?;
        Ok((
            MmapFile {
                path: path.to_path_buf(),
                file,
                mmap: Some(mmap),
                entries: 0,
                entry_bytes,
                capacity,
            },
            old_entries,
        ))
    }

    /// Entry `i`; only called for `i < entries`. Invariant: an index with
    /// entries is mapped (open maps it; a trim that cannot remap drops the entries).
    fn entry(&self, i: usize) -> &[u8] {
        let m = self.mmap.as_ref().expect("an index with entries is mapped");
        &m.bytes()[i * self.entry_bytes..(i + 1) * self.entry_bytes]
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        debug_assert_eq!(bytes.len(), self.entry_bytes);
        if self.entries >= self.capacity {
            return false;
        }
        let at = self.entries * self.entry_bytes;
        let Some(m) = self.mmap.as_mut() else {
            // Capacity is zero exactly when unmapped, so this is unreachable.
            return false;
        };
        m.bytes_mut()[at..at + self.entry_bytes].copy_from_slice(bytes);
        self.entries += 1;
        true
    }

    fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    /// Number of leading entries for which `pred` holds; `pred` must be true for a
    /// prefix and false after it (entries are sorted), so this is a binary search.
    fn partition_point(&self, pred: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if pred(self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Writes the mapping back and trims the file to the used length. On failure
    /// the index forgets its entries (lookups then scan from the segment's start:
    /// slower, still right) rather than keep entries it cannot map.
    fn trim(&mut self) -> io::Result<()> {
        let trimmed = (|| {
            if let Some(m) = self.mmap.take() {
                m.flush()?;
            }
            self.file
                .set_len((self.entries * self.entry_bytes) as u64)?;
            self.file.sync_all()?;
            if self.entries > 0 {
                self.mmap = Some(self.file.map()?);
            }
            Ok(())
        })();
        match trimmed {
            Ok(()) => self.capacity = self.entries,
            Err(_) => {
                self.mmap = None;
                self.entries = 0;
                self.capacity = 0;
            }
        }
        trimmed
    }

    /// Forgets entries past the first `n` (log truncation).
    fn truncate_entries(&mut self, n: usize) {
        self.entries = self.entries.min(n);
    }

    fn flush(&self) -> io::Result<()> {
        match &self.mmap {
            Some(m) => m.flush(),
            None => Ok(()),
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Maps a relative offset to the byte position of the batch that starts there.
#[derive(Debug)]
pub struct OffsetIndex {
    /// Backing mapped file of 8-byte entries.
    inner: MmapFile,
}

/// Offset index entry size in bytes.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Time index entry size in bytes.
pub const TIME_ENTRY_BYTES: usize = 12;

impl OffsetIndex {
    /// Opens the index; `old_entries` is how many entries the file held before.
    pub fn open(fs: &dyn Fs, path: &Path, max_bytes: usize) -> io::Result<(OffsetIndex, usize)> {
        let (inner, old) = MmapFile::open(fs, path, OFFSET_ENTRY_BYTES, max_bytes)?;
        Ok((OffsetIndex { inner }, old))
    }

    /// Reads entry `i` as `(relative_offset, position)`.
    fn raw(&self, i: usize) -> (u32, u32) {
        let e = self.inner.entry(i);
        (be_u32(&e[0..4]), be_u32(&e[4..8]))
    }

    /// Accepts the first `n` pre-existing entries if they are strictly increasing
    /// and point inside a segment of `segment_bytes`. Returns whether they passed.
    pub fn adopt(&mut self, n: usize, segment_bytes: u64) -> bool {
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..n {
            let (rel, pos) = self.raw(i);
            if u64::from(pos) >= segment_bytes {
                return false;
            }
            if let Some((prel, ppos)) = prev {
                if rel <= prel || pos <= ppos {
                    return false;
                }
            }
            prev = Some((rel, pos));
        }
        self.inner.entries = n;
        true
    }

    /// Appends an entry; false when the index is full (the segment must roll).
    pub fn append(&mut self, relative_offset: u32, position: u32) -> bool {
        if let Some((last_rel, _)) = self.last() {
            debug_assert!(relative_offset > last_rel);
        }
        let mut e = [0u8; OFFSET_ENTRY_BYTES];
        e[0..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..8].copy_from_slice(&position.to_be_bytes());
        self.inner.push(&e)
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<(u32, u32)> {
        self.inner.entries.checked_sub(1).map(|i| self.raw(i))
    }

    /// The entry with the largest relative offset `<= target`, or `(0, 0)`.
    pub fn lookup(&self, target: u32) -> (u32, u32) {
        match self.inner.partition_point(|e| be_u32(&e[0..4]) <= target) {
            0 => (0, 0),
            n => self.raw(n - 1),
        }
    }

    /// The largest indexed position `<= position`, or 0.
    pub fn floor_position(&self, position: u32) -> u32 {
        match self.inner.partition_point(|e| be_u32(&e[4..8]) <= position) {
            0 => 0,
            n => self.raw(n - 1).1,
        }
    }

    /// Drops entries for positions at or past `position` (log truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        let mut n = self.inner.entries;
        while n > 0 && self.raw(n - 1).1 >= position {
            n -= 1;
        }
        self.inner.truncate_entries(n);
    }

    /// Whether no more entries fit.
    pub fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.entries
    }

    /// Whether the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.inner.entries == 0
    }

    /// Writes dirty pages back.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Flushes and trims the file to its used length (segment sealed or closed).
    pub fn trim(&mut self) -> io::Result<()> {
        self.inner.trim()
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

/// Maps a timestamp to the relative offset of the last batch whose max timestamp it is.
#[derive(Debug)]
pub struct TimeIndex {
    /// Backing mapped file of 12-byte entries.
    inner: MmapFile,
}

impl TimeIndex {
    /// Opens the index; `old_entries` is how many entries the file held before.
    pub fn open(fs: &dyn Fs, path: &Path, max_bytes: usize) -> io::Result<(TimeIndex, usize)> {
        let (inner, old) = MmapFile::open(fs, path, TIME_ENTRY_BYTES, max_bytes)?;
        Ok((TimeIndex { inner }, old))
    }

    fn raw(&self, i: usize) -> (i64, u32) {
        let e = self.inner.entry(i);
        (be_i64(&e[0..8]), be_u32(&e[8..12]))
    }

    /// Accepts the first `n` pre-existing entries if timestamps and offsets strictly
    /// increase and offsets stay below `next_relative`.
    pub fn adopt(&mut self, n: usize, next_relative: u64) -> bool {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..n {
            let (ts, rel) = self.raw(i);
            if u64::from(rel) >= next_relative {
                return false;
            }
            if let Some((pts, prel)) = prev {
                if ts <= pts || rel <= prel {
                    return false;
                }
            }
            prev = Some((ts, rel));
        }
        self.inner.entries = n;
        true
    }

    /// Appends `(timestamp, relative_offset)` if the timestamp is newer than the last entry.
    /// False only when the index is full.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) -> bool {
        if let Some((last_ts, last_rel)) = self.last() {
            if timestamp <= last_ts || relative_offset <= last_rel {
                return true;
            }
        }
        let mut e = [0u8; TIME_ENTRY_BYTES];
        e[0..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..12].copy_from_slice(&relative_offset.to_be_bytes());
        self.inner.push(&e)
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.inner.entries.checked_sub(1).map(|i| self.raw(i))
    }

    /// The relative offset to start scanning from to find the first batch whose max
    /// timestamp is `>= target`: the offset of the last entry with timestamp `< target`
    /// (every batch up to it has a smaller max timestamp), or 0.
    pub fn scan_start(&self, target: i64) -> u32 {
        match self.inner.partition_point(|e| be_i64(&e[0..8]) < target) {
            0 => 0,
            n => self.raw(n - 1).1,
        }
    }

    /// Drops entries for offsets at or past `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let mut n = self.inner.entries;
        while n > 0 && self.raw(n - 1).1 >= relative_offset {
            n -= 1;
        }
        self.inner.truncate_entries(n);
    }

    /// Whether no more entries fit.
    pub fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    /// Writes dirty pages back.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Flushes and trims the file to its used length.
    pub fn trim(&mut self) -> io::Result<()> {
        self.inner.trim()
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::fs::RealFs;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut idx, old) = OffsetIndex::open(&RealFs, &dir.path().join("a.index"), 1024).unwrap();
        assert_eq!(old, 0);
        assert_eq!(idx.lookup(5), (0, 0));
        assert!(idx.append(10, 100));
        assert!(idx.append(20, 200));
        assert_eq!(idx.lookup(9), (0, 0));
        assert_eq!(idx.lookup(10), (10, 100));
        assert_eq!(idx.lookup(19), (10, 100));
        assert_eq!(idx.lookup(25), (20, 200));
        idx.trim().unwrap();
        drop(idx);
        let (mut idx, old) = OffsetIndex::open(&RealFs, &dir.path().join("a.index"), 1024).unwrap();
        assert_eq!(old, 2);
        assert!(idx.adopt(old, 1000));
        assert_eq!(idx.lookup(25), (20, 200));
    }

    #[test]
    fn damaged_offset_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.index");
        let (mut idx, _) = OffsetIndex::open(&RealFs, &p, 1024).unwrap();
        idx.append(10, 100);
        idx.append(20, 200);
        idx.trim().unwrap();
        drop(idx);
        let (mut idx, old) = OffsetIndex::open(&RealFs, &p, 1024).unwrap();
        // Segment shorter than the last position: the index is from another life.
        assert!(!idx.adopt(old, 150));
        assert!(idx.is_empty());
    }

    #[test]
    fn time_index_scan_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, _) = TimeIndex::open(&RealFs, &dir.path().join("a.timeindex"), 1200).unwrap();
        assert!(t.maybe_append(100, 1));
        assert!(t.maybe_append(100, 2)); // not newer: skipped
        assert!(t.maybe_append(200, 5));
        assert_eq!(t.last(), Some((200, 5)));
        assert_eq!(t.scan_start(50), 0);
        assert_eq!(t.scan_start(100), 0);
        assert_eq!(t.scan_start(150), 1);
        assert_eq!(t.scan_start(500), 5);
        t.truncate_to_offset(5);
        assert_eq!(t.last(), Some((100, 1)));
    }
}
