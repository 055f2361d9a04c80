//! The filesystem seam: every file operation of the log (and of the broker's
//! metadata files) goes through [`Fs`] and [`FsFile`], so tests can swap the real
//! filesystem for [`super::sim::SimFs`], a model that injects faults and
//! simulates a machine crash.
//!
//! Dynamic dispatch costs one indirect call per operation, next to a syscall.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Create it; fail if it exists. Read-write.
    CreateNew,
    /// Open it, creating it empty if missing. Read-write.
    Create,
    /// Create it, or cut an existing one to zero length. Read-write.
    Truncate,
    /// Open an existing file read-write.
    Existing,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// File name within the directory.
    pub name: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// A filesystem: the real one ([`RealFs`]) or a model for tests.
pub trait Fs: Send + Sync + Debug {
    /// Opens a file.
    fn open(&self, path: &Path, how: Open) -> io::Result<Arc<dyn FsFile>>;
    /// Creates a directory and any missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists a directory's entries (in no particular order).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Renames a file or directory (atomically, within one filesystem).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; open handles keep working until dropped.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a directory, so that entries created, renamed or removed in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// An open file.
pub trait FsFile: Send + Sync + Debug {
    /// Reads at `offset`; returns the bytes read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes `bufs` in order at `offset`; may write fewer bytes than given.
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize>;
    /// fdatasync: written data is on stable storage once this returns Ok.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync: data and metadata (the length) are on stable storage.
    fn sync_all(&self) -> io::Result<()>;
    /// syncfs: everything written on this file's filesystem is on stable storage.
    fn sync_filesystem(&self) -> io::Result<()>;
    /// Sets the length, cutting or zero-extending.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Maps the whole file for reading and writing (the indexes).
    fn map(&self) -> io::Result<Box<dyn Mapping>>;
    /// Advises the kernel to read a range into the page cache (a hint; no error).
    fn readahead(&self, offset: u64, len: u64);
    /// The descriptor, where there is one, for `sendfile(2)`.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd>;

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `bufs` at `offset`, continuing after short writes.
    fn write_all_vectored_at(&self, bufs: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
        /// Linux's `IOV_MAX`: most iovecs one call may take.
        const IOVECS_MAX: usize = 1024;
        let mut rest = bufs;
        while !rest.is_empty() {
            let n = self.write_vectored_at(&rest[..rest.len().min(IOVECS_MAX)], offset)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            offset += n as u64;
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }
}

/// A writable view of a whole file (an index).
pub trait Mapping: Send + Sync + Debug {
    /// The mapped bytes.
    fn bytes(&self) -> &[u8];
    /// The mapped bytes, for writing.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Writes changed bytes back to the file (not yet durable: sync the file for that).
    fn flush(&self) -> io::Result<()>;
}

/// Reads a whole (small) file.
pub fn read_file(fs: &dyn Fs, path: &Path) -> io::Result<Vec<u8>> {
    let f = fs.open(path, Open::Existing)?;
    let len = usize::try_from(f.size()?).map_err(io::Error::other)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replaces a (small) file atomically and durably: temp file, fsync, rename, fsync
/// of the directory.
pub fn write_file_atomic(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = fs.open(&tmp, Open::Truncate)?;
    f.write_all_vectored_at(&mut [IoSlice::new(bytes)], 0)?;
    f.sync_all()?;
    drop(f);
    fs.rename(&tmp, path)?;
    fs.sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates `dir` and any missing parents, fsyncing each new directory's parent
/// so the new entries survive a crash.
pub fn create_dir_durable(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    if fs.exists(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(fs, parent)?;
    }
    fs.create_dir_all(dir)?;
    fs.sync_dir(
        dir.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Fs for RealFs {
    fn open(&self, path: &Path, how: Open) -> io::Result<Arc<dyn FsFile>> {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        match how {
            Open::CreateNew => o.create_new(true),
            Open::Create => o.create(true).truncate(false),
            Open::Truncate => o.create(true).truncate(true),
            Open::Existing => &mut o,
        };
        Ok(Arc::new(RealFile(o.open(path)?)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            out.push(DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                is_dir: e.file_type()?.is_dir(),
            });
        }
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// A file of the real filesystem.
#[derive(Debug)]
struct RealFile(File);

impl FsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        let count = libc::c_int::try_from(bufs.len()).map_err(io::Error::other)?;
        loop {
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix and the slices
            // outlive the call; callers pass at most IOV_MAX of them.
            let n = unsafe {
                libc::pwritev(
                    self.0.as_raw_fd(),
                    bufs.as_ptr().cast::<libc::iovec>(),
                    count,
                    off,
                )
            };
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    #[cfg(target_os = "linux")]
    fn sync_filesystem(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor.
        if unsafe { libc::syncfs(self.0.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn sync_filesystem(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn map(&self) -> io::Result<Box<dyn Mapping>> {
        // SAFETY: the file belongs to this process's data directory; no other
        // process is expected to truncate it while mapped.
        let mmap = unsafe { memmap2::MmapMut::map_mut(&self.0)? };
        // Without MADV_RANDOM the first fault on a preallocated (sparse) index reads
        // ahead up to the device's `read_ahead_kb` (8 MiB on some virtual disks):
        // megabytes of zeroed page cache per partition. Advice only: a failure
        // costs read-around, never correctness.
        let _ = mmap.advise(memmap2::Advice::Random);
        Ok(Box::new(RealMapping(mmap)))
    }

    #[cfg(target_os = "linux")]
    fn readahead(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(len)) = (libc::off64_t::try_from(offset), usize::try_from(len)) else {
            return;
        };
        // SAFETY: a plain syscall on an open descriptor; failure only costs a later disk wait.
        unsafe {
            libc::readahead(self.0.as_raw_fd(), off, len);
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn readahead(&self, _offset: u64, _len: u64) {}

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.0.as_raw_fd())
    }
}

/// An mmap of a real file.
#[derive(Debug)]
struct RealMapping(memmap2::MmapMut);

impl Mapping for RealMapping {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}
