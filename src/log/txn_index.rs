//! Aborted transactions of a partition: what a `read_committed` fetch must
//! tell the consumer to skip, as Kafka's transaction index.
//!
//! In memory, one list for the whole partition ordered by the marker's offset.
//! On disk, a `<base>.txnindex` file for each segment whose ABORT markers it
//! holds, written whole (atomically, durably) before the segment is sealed and,
//! for the active segment, at a clean close. No file means no aborts: the
//! file is in place before the next segment exists. A damaged file is rebuilt
//! from the log at start-up.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::fs::Fs;

/// One aborted transaction of one producer in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose transaction aborted.
    pub producer_id: i64,
    /// Offset of its first batch in this partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
    /// The last stable offset just before the marker: never above
    /// `first_offset`, and never falling, so a search can stop at the first
    /// entry whose value is past the range asked about.
    pub last_stable_offset: i64,
}

/// File extension of a segment's transaction index.
pub const TXN_INDEX_EXT: &str = "txnindex";
/// First bytes of a transaction index file.
const MAGIC: &[u8; 4] = b"SLTX";
/// Format version.
const VERSION: u16 = 1;
/// Bytes of one entry.
const ENTRY_BYTES: usize = 32;
/// Magic, version, count.
const HEAD_BYTES: usize = 4 + 2 + 4;

/// Every aborted transaction still in the log, by marker offset.
#[derive(Debug, Default)]
pub struct AbortedIndex {
    /// By `last_offset` (marker offsets are unique).
    by_marker: BTreeMap<i64, AbortedTxn>,
}

impl AbortedIndex {
    /// Adds an abort (its marker was just appended, or found by a rebuild).
    pub fn push(&mut self, a: AbortedTxn) {
        self.by_marker.insert(a.last_offset, a);
    }

    /// The aborted transactions a fetch of `[from, upper)` must report: those
    /// with records in that range (first offset below `upper`, marker at or
    /// after `from`), in marker order.
    pub fn overlapping(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let mut out = Vec::new();
        for a in self.by_marker.range(from..).map(|(_, a)| a) {
            if a.last_stable_offset >= upper {
                // Every later transaction began at or after this one's LSO.
                break;
            }
            if a.first_offset < upper {
                out.push(*a);
            }
        }
        out
    }

    /// Forgets the abort whose ABORT marker at `marker` the cleaner removed.
    pub fn remove(&mut self, marker: i64) {
        self.by_marker.remove(&marker);
    }

    /// The aborts whose marker lies in `[from, to)` (one segment's), in order.
    pub fn in_range(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.by_marker.range(from..to).map(|(_, a)| *a).collect()
    }

    /// Forgets the aborts whose marker is below `offset` (their segments are gone).
    pub fn forget_before(&mut self, offset: i64) {
        self.by_marker = self.by_marker.split_off(&offset);
    }

    /// Forgets the aborts whose marker is at or after `offset` (truncation).
    pub fn forget_from(&mut self, offset: i64) {
        self.by_marker.split_off(&offset);
    }

    /// Aborted transactions held.
    pub fn len(&self) -> usize {
        self.by_marker.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_marker.is_empty()
    }
}

/// The bytes of a transaction index file holding `entries`.
pub fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_BYTES + entries.len() * ENTRY_BYTES + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(entries.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for a in entries {
        for v in [
            a.producer_id,
            a.first_offset,
            a.last_offset,
            a.last_stable_offset,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Reads a file written by [`encode`]; the count is checked against the bytes
/// present before anything is allocated.
pub fn decode(b: &[u8]) -> Result<Vec<AbortedTxn>, String> {
    if b.len() < HEAD_BYTES + 4 {
        return Err("transaction index too short".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err("transaction index CRC mismatch".into());
    }
    if &body[..4] != MAGIC || u16::from_be_bytes([body[4], body[5]]) != VERSION {
        return Err("not a transaction index of a known version".into());
    }
    let count = u32::from_be_bytes([body[6], body[7], body[8], body[9]]) as usize;
    if body.len() != HEAD_BYTES + count.saturating_mul(ENTRY_BYTES) {
        return Err(format!(
            "transaction index claims {count} entries in {} bytes",
            body.len()
        ));
    }
    let field =
        |e: &[u8], i: usize| i64::from_be_bytes(e[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Ok(body[HEAD_BYTES..]
        .chunks_exact(ENTRY_BYTES)
        .map(|e| AbortedTxn {
            producer_id: field(e, 0),
            first_offset: field(e, 1),
            last_offset: field(e, 2),
            last_stable_offset: field(e, 3),
        })
        .collect())
}

/// Path of the transaction index of the segment at `base`.
pub fn path(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(super::segment::file_name(base, TXN_INDEX_EXT))
}

/// Writes the transaction index of the segment at `base` (atomically, durably).
pub fn write(fs: &dyn Fs, dir: &Path, base: i64, entries: &[AbortedTxn]) -> io::Result<()> {
    super::fs::write_file_atomic(fs, &path(dir, base), &encode(entries))
}

/// Reads the transaction index of the segment at `base` (empty if there is
/// none); `None` if it is damaged (logged), so the caller rebuilds it.
pub fn read(fs: &dyn Fs, dir: &Path, base: i64) -> Option<Vec<AbortedTxn>> {
    let p = path(dir, base);
    if !fs.exists(&p) {
        return Some(Vec::new());
    }
    match super::fs::read_file(fs, &p)
        .map_err(|e| e.to_string())
        .and_then(|b| decode(&b))
    {
        Ok(v) => Some(v),
        Err(why) => {
            tracing::warn!(file = %p.display(), %why, "rebuilding a damaged transaction index");
            None
        }
    }
}

/// Writes the index of the segment at `base` if it holds aborts, and removes a
/// stale file if it holds none.
pub fn store(fs: &dyn Fs, dir: &Path, base: i64, entries: &[AbortedTxn]) -> io::Result<()> {
    if entries.is_empty() {
        let p = path(dir, base);
        return match fs.remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    write(fs, dir, base, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn files_round_trip_and_refuse_damage() {
        let v = vec![a(1, 0, 10, 0), a(2, 5, 20, 5)];
        let b = encode(&v);
        assert_eq!(decode(&b).unwrap(), v);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
        for cut in [0, 9, b.len() - 1] {
            assert!(decode(&b[..cut]).is_err());
        }
        let mut flipped = b.clone();
        flipped[20] ^= 1;
        assert!(decode(&flipped).is_err());
    }

    #[test]
    fn a_fetch_gets_the_aborts_overlapping_its_range() {
        let mut idx = AbortedIndex::default();
        // pid 1 aborts [0..=10]; pid 2 aborts [5..=20]; pid 3 aborts [30..=40].
        idx.push(a(1, 0, 10, 0));
        idx.push(a(2, 5, 20, 5));
        idx.push(a(3, 30, 40, 30));
        let pids = |v: Vec<AbortedTxn>| v.iter().map(|a| a.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(idx.overlapping(0, 6)), vec![1, 2]);
        assert_eq!(pids(idx.overlapping(11, 25)), vec![2]);
        assert_eq!(pids(idx.overlapping(21, 30)), Vec::<i64>::new());
        assert_eq!(pids(idx.overlapping(21, 31)), vec![3]);
        idx.forget_before(11);
        assert_eq!(idx.len(), 2);
        idx.forget_from(40);
        assert_eq!(pids(idx.in_range(0, 100)), vec![2]);
    }
}
