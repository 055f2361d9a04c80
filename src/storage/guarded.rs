//! The filesystem as storage sees it: every call goes to the real (or model)
//! filesystem, and any failed fsync, of a file or a directory, takes the data
//! directory offline ([`Health::fail`]). After a failed fsync the kernel may have
//! dropped the dirty pages and will report the next fsync as a success, so
//! nothing written before it can be acknowledged again: the one safe answer is
//! to stop, wherever in the log, the metadata files or the state log it happens.
//!
//! Once offline, every fsync fails here without reaching the kernel. Syncs of one
//! file are serialised, and `syncfs` excludes them all, so a sync that succeeds
//! cannot be one the kernel reports "clean" only because another sync of the same
//! data just failed.

use std::io::{self, IoSlice};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use super::Health;
use crate::log::fs::{DirEntry, Fs, FsFile, Mapping, Open};

/// A filesystem whose fsync failures take `health` offline.
#[derive(Debug)]
pub struct GuardedFs {
    /// Where the calls go.
    inner: Arc<dyn Fs>,
    /// What every sync checks and reports to.
    gate: Arc<SyncGate>,
}

/// Orders syncs against failures.
#[derive(Debug)]
struct SyncGate {
    /// Told of any failed fsync; checked before every sync.
    health: Arc<Health>,
    /// Per-file and directory syncs share it; `syncfs` takes it alone.
    all: RwLock<()>,
}

impl SyncGate {
    /// Runs `sync` unless the directory is offline; reports its failure.
    fn run(
        &self,
        exclusive: bool,
        what: &dyn Fn() -> String,
        sync: &dyn Fn() -> io::Result<()>,
    ) -> io::Result<()> {
        let _shared;
        let _alone;
        if exclusive {
            _alone = self.all.write().unwrap_or_else(|p| p.into_inner());
        } else {
            _shared = self.all.read().unwrap_or_else(|p| p.into_inner());
        }
        if self.health.is_offline() {
            return Err(io::Error::other(
                "the data directory is offline after a failed fsync",
            ));
        }
        watch(&self.health, what, sync())
    }
}

impl GuardedFs {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Fs>, health: Arc<Health>) -> GuardedFs {
        GuardedFs {
            inner,
            gate: Arc::new(SyncGate {
                health,
                all: RwLock::new(()),
            }),
        }
    }
}

/// Whether `e` can only have come from opening (a directory, to sync it), not
/// from fsync(2) itself: fsync never runs out of descriptors or finds no file.
/// Such a failure loses nothing and is reported as an ordinary error.
fn before_sync(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOENT
                | libc::ENOTDIR
                | libc::EACCES
                | libc::ENOMEM
        )
    )
}

/// Reports a failed fsync of `what` before handing the result back.
fn watch(health: &Health, what: &dyn Fn() -> String, r: io::Result<()>) -> io::Result<()> {
    if let Err(e) = &r {
        if !before_sync(e) {
            health.fail(&what(), e);
        }
    }
    r
}

impl Fs for GuardedFs {
    fn open(&self, path: &Path, how: Open) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(GuardedFile {
            inner: self.inner.open(path, how)?,
            gate: self.gate.clone(),
            serial: Mutex::new(()),
            path: path.to_string_lossy().into_owned(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let what = || format!("fsync of directory {}", path.display());
        let started = Instant::now();
        let r = self.gate.run(false, &what, &|| self.inner.sync_dir(path));
        crate::metrics::fsync("dir", started);
        r
    }
}

/// A file of a [`GuardedFs`].
#[derive(Debug)]
struct GuardedFile {
    /// Where the calls go.
    inner: Arc<dyn FsFile>,
    /// What every sync checks and reports to.
    gate: Arc<SyncGate>,
    /// Serialises this file's syncs.
    serial: Mutex<()>,
    /// For the log line.
    path: String,
}

impl GuardedFile {
    fn what(&self) -> String {
        format!("fsync of {}", self.path)
    }

    fn sync(&self, kind: &'static str, f: &dyn Fn() -> io::Result<()>) -> io::Result<()> {
        let _one = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let r = self.gate.run(false, &|| self.what(), f);
        crate::metrics::fsync(kind, started);
        r
    }
}

impl FsFile for GuardedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.inner.write_vectored_at(bufs, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.sync("data", &|| self.inner.sync_data())
    }
    fn sync_all(&self) -> io::Result<()> {
        self.sync("all", &|| self.inner.sync_all())
    }
    fn sync_filesystem(&self) -> io::Result<()> {
        let what = || format!("syncfs (through {})", self.path);
        let started = Instant::now();
        let r = self.gate.run(true, &what, &|| self.inner.sync_filesystem());
        crate::metrics::fsync("filesystem", started);
        r
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn map(&self) -> io::Result<Box<dyn Mapping>> {
        self.inner.map()
    }
    fn readahead(&self, offset: u64, len: u64) {
        self.inner.readahead(offset, len)
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.raw_fd()
    }
}
