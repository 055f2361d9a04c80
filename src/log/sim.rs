//! A model filesystem for fault-injection tests: files and directories in
//! memory, with a model page cache. Each file holds what reads see and, apart,
//! what an fsync made durable; each directory holds its current entries and, apart,
//! those its last fsync made durable. [`SimFs::crash`] keeps only the durable
//! parts, as a power cut would, and faults ([`Rule`]) make chosen operations fail.
//!
//! After a failed fsync the model behaves as Linux does: the dirty pages count as
//! written back, so a later fsync "succeeds" without making them durable. A
//! broker that retries the fsync and acknowledges loses data in this model.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IoSlice};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{DirEntry, Fs, FsFile, Mapping, Open};

/// Operations a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opening or creating a file.
    Open,
    /// Reading a file.
    Read,
    /// Writing a file (including a mapping's write-back).
    Write,
    /// fdatasync, fsync or syncfs.
    Sync,
    /// Changing a file's length.
    SetLen,
    /// fsync of a directory.
    SyncDir,
    /// Renaming.
    Rename,
    /// Removing a file or directory.
    Remove,
    /// Creating a directory.
    CreateDir,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with EIO.
    Eio,
    /// Fails with ENOSPC.
    NoSpace,
    /// Fails with EMFILE (too many open files).
    TooManyFiles,
    /// Fails with ENOENT (the file vanished under the broker).
    NotFound,
    /// A write stores only part of what it was given and reports that (writes only).
    Short,
    /// The operation panics (a bug in the I/O path).
    Panic,
}

/// A fault to inject: on operations of kind `op` whose path contains `path`,
/// skip the first `skip`, then fire `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The operation kind.
    pub op: Op,
    /// Only paths containing this (empty: every path).
    pub path: String,
    /// Matching operations let through before the first fault.
    pub skip: u64,
    /// How many times to fire (`u64::MAX`: until cleared).
    pub times: u64,
    /// What happens.
    pub fault: Fault,
}

/// What survives a simulated crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Only what was fsynced: every unsynced byte and directory entry is gone.
    DropUnsynced,
    /// As `DropUnsynced`, but of each file that was appended to since its last
    /// fsync, a prefix of the appended bytes chosen by `seed` survives: a torn write.
    TornAppends {
        /// Chooses the prefixes.
        seed: u64,
    },
}

/// A regular file.
#[derive(Debug, Clone, Default)]
struct FileNode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// A sync failed: later syncs report success without making anything durable.
    sync_broken: bool,
    /// Directory entries naming this file.
    links: usize,
}

/// A directory.
#[derive(Debug, Clone, Default)]
struct DirNode {
    /// Current entries: name to inode.
    entries: BTreeMap<String, u64>,
    /// Entries as of the last fsync of this directory.
    durable: BTreeMap<String, u64>,
}

/// An inode.
#[derive(Debug, Clone)]
enum Node {
    /// A regular file.
    File(FileNode),
    /// A directory.
    Dir(DirNode),
}

/// The whole model.
#[derive(Debug, Clone)]
struct State {
    /// Inodes by number; the root directory is inode 0.
    nodes: HashMap<u64, Node>,
    /// Next inode number.
    next: u64,
    /// Armed faults.
    rules: Vec<Rule>,
    /// Bytes of linked files allowed; writes past it fail with ENOSPC.
    capacity: Option<u64>,
    /// Faults that fired, for tests to check a case exercised what it meant to.
    fired: u64,
}

const ROOT: u64 = 0;

fn err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_string())
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Path components, normalised (no `.`, `..` resolved, relative = from the root).
fn components(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl State {
    fn new() -> State {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        State {
            nodes,
            next: 1,
            rules: Vec::new(),
            capacity: None,
            fired: 0,
        }
    }

    /// Fires the first armed rule matching `op` on `path`, if any.
    fn fault(&mut self, op: Op, path: &str) -> Option<Fault> {
        for r in &mut self.rules {
            if r.op != op || !path.contains(r.path.as_str()) || r.times == 0 {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            r.times -= 1;
            self.fired += 1;
            return Some(r.fault);
        }
        None
    }

    fn dir(&self, ino: u64) -> io::Result<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(err(io::ErrorKind::NotFound, "not a directory")),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(err(io::ErrorKind::NotFound, "not a directory")),
        }
    }

    fn file_mut(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(err(io::ErrorKind::NotFound, "not a file")),
        }
    }

    /// The inode at `parts`.
    fn lookup(&self, parts: &[String]) -> io::Result<u64> {
        let mut ino = ROOT;
        for p in parts {
            ino = *self
                .dir(ino)?
                .entries
                .get(p)
                .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file or directory"))?;
        }
        Ok(ino)
    }

    /// Removes the entry `path` from its directory; returns the inode it named.
    fn take_entry(&mut self, path: &Path) -> io::Result<u64> {
        let (dir, name) = self.parent(path)?;
        self.dir_mut(dir)?
            .entries
            .remove(&name)
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file or directory"))
    }

    /// The parent directory's inode and the last name of `path`.
    fn parent(&self, path: &Path) -> io::Result<(u64, String)> {
        let mut parts = components(path);
        let name = parts
            .pop()
            .ok_or_else(|| err(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        Ok((self.lookup(&parts)?, name))
    }

    fn alloc(&mut self, node: Node) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, node);
        ino
    }

    /// Bytes held by linked files.
    fn used(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match n {
                Node::File(f) if f.links > 0 => f.data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Drops one link to `ino` (files) when a name goes away.
    fn unlink(&mut self, ino: u64) {
        if let Some(Node::File(f)) = self.nodes.get_mut(&ino) {
            f.links = f.links.saturating_sub(1);
        }
    }

    /// The state after a power cut: durable contents and durable entries only.
    fn crashed(&self, mode: Crash) -> State {
        let mut rng = match mode {
            Crash::DropUnsynced => 0,
            Crash::TornAppends { seed } => seed | 1,
        };
        let mut nodes = HashMap::new();
        // Walk from the root through durable entries: what is unreachable is gone.
        let mut stack = vec![ROOT];
        let mut keys: Vec<u64> = Vec::new();
        while let Some(ino) = stack.pop() {
            if nodes.contains_key(&ino) {
                continue;
            }
            keys.push(ino);
            match self.nodes.get(&ino) {
                Some(Node::Dir(d)) => {
                    stack.extend(d.durable.values().copied());
                    nodes.insert(
                        ino,
                        Node::Dir(DirNode {
                            entries: d.durable.clone(),
                            durable: d.durable.clone(),
                        }),
                    );
                }
                Some(Node::File(f)) => {
                    let mut data = f.durable.clone();
                    if rng != 0
                        && !f.sync_broken
                        && f.data.len() > f.durable.len()
                        && f.data.starts_with(&f.durable)
                    {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let extra = f.data.len() - f.durable.len();
                        let keep = usize::try_from(rng % (extra as u64 + 1)).unwrap_or(0);
                        data.extend_from_slice(&f.data[f.durable.len()..f.durable.len() + keep]);
                    }
                    nodes.insert(
                        ino,
                        Node::File(FileNode {
                            durable: data.clone(),
                            data,
                            sync_broken: false,
                            links: 0,
                        }),
                    );
                }
                None => {}
            }
        }
        let mut s = State {
            nodes,
            next: self.next,
            rules: Vec::new(),
            capacity: self.capacity,
            fired: 0,
        };
        // Count links afresh from the surviving directories.
        let linked: Vec<u64> = s
            .nodes
            .values()
            .filter_map(|n| match n {
                Node::Dir(d) => Some(d.entries.values().copied().collect::<Vec<_>>()),
                Node::File(_) => None,
            })
            .flatten()
            .collect();
        for ino in linked {
            if let Some(Node::File(f)) = s.nodes.get_mut(&ino) {
                f.links += 1;
            }
        }
        s
    }
}

/// The model filesystem. Clones share one state.
#[derive(Debug, Clone)]
pub struct SimFs {
    /// Shared by every handle of this filesystem.
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

impl SimFs {
    /// An empty filesystem.
    pub fn new() -> SimFs {
        SimFs {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The model never panics while holding its lock (injected panics drop it
        // first), so a poisoned lock only follows a panic elsewhere: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms a fault.
    pub fn inject(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().rules.clear();
    }

    /// Limits the bytes files may hold (`None`: unlimited); writes past it fail
    /// with ENOSPC, after storing what fits.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// Bytes held by files now.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }

    /// How many injected faults have fired.
    pub fn faults_fired(&self) -> u64 {
        self.lock().fired
    }

    /// A new filesystem holding what a power cut at this moment would leave. This
    /// one stays usable (for the threads of the "dead" process) but shares nothing
    /// with the result.
    pub fn crash(&self, mode: Crash) -> SimFs {
        let s = self.lock().crashed(mode);
        SimFs {
            state: Arc::new(Mutex::new(s)),
        }
    }

    /// Runs `f` on the state unless an injected fault for `op` on `path` fires.
    fn op<R>(
        &self,
        op: Op,
        path: &Path,
        f: impl FnOnce(&mut State) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut s = self.lock();
        match s.fault(op, &path.to_string_lossy()) {
            None => f(&mut s),
            Some(fault) => {
                drop(s);
                Err(injected(fault))
            }
        }
    }
}

/// The error (or panic) of an injected fault.
fn injected(fault: Fault) -> io::Error {
    match fault {
        Fault::Eio | Fault::Short => errno(libc::EIO),
        Fault::NoSpace => errno(libc::ENOSPC),
        Fault::TooManyFiles => errno(libc::EMFILE),
        Fault::NotFound => errno(libc::ENOENT),
        Fault::Panic => panic!("injected panic in the filesystem"),
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, how: Open) -> io::Result<Arc<dyn FsFile>> {
        let ino = self.op(Op::Open, path, |s| {
            let (dir, name) = s.parent(path)?;
            let existing = s.dir(dir)?.entries.get(&name).copied();
            match (existing, how) {
                (Some(_), Open::CreateNew) => Err(err(io::ErrorKind::AlreadyExists, "file exists")),
                (Some(ino), _) => {
                    let f = s.file_mut(ino)?;
                    if how == Open::Truncate {
                        f.data.clear();
                    }
                    Ok(ino)
                }
                (None, Open::Existing) => Err(err(io::ErrorKind::NotFound, "no such file")),
                (None, _) => {
                    let ino = s.alloc(Node::File(FileNode {
                        links: 1,
                        ..FileNode::default()
                    }));
                    s.dir_mut(dir)?.entries.insert(name, ino);
                    Ok(ino)
                }
            }
        })?;
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            path: path.to_string_lossy().into_owned(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.op(Op::CreateDir, path, |s| {
            let mut ino = ROOT;
            for p in components(path) {
                let next = s.dir(ino)?.entries.get(&p).copied();
                ino = match next {
                    Some(n) => {
                        s.dir(n)?;
                        n
                    }
                    None => {
                        let n = s.alloc(Node::Dir(DirNode::default()));
                        s.dir_mut(ino)?.entries.insert(p, n);
                        n
                    }
                };
            }
            Ok(())
        })
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let s = self.lock();
        let d = s.dir(s.lookup(&components(path))?)?;
        Ok(d.entries
            .iter()
            .map(|(name, ino)| DirEntry {
                name: name.clone(),
                is_dir: matches!(s.nodes.get(ino), Some(Node::Dir(_))),
            })
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().lookup(&components(path)).is_ok()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.op(Op::Rename, from, |s| {
            let (tdir, tname) = s.parent(to)?;
            let ino = s.take_entry(from)?;
            if let Some(old) = s.dir_mut(tdir)?.entries.insert(tname, ino) {
                s.unlink(old);
            }
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.op(Op::Remove, path, |s| {
            let ino = s.take_entry(path)?;
            s.unlink(ino);
            Ok(())
        })
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.op(Op::Remove, path, |s| {
            let ino = s.take_entry(path)?;
            let mut stack = vec![ino];
            while let Some(i) = stack.pop() {
                match s.nodes.get(&i) {
                    Some(Node::Dir(d)) => stack.extend(d.entries.values().copied()),
                    _ => s.unlink(i),
                }
            }
            Ok(())
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.op(Op::SyncDir, path, |s| {
            let ino = s.lookup(&components(path))?;
            let d = s.dir_mut(ino)?;
            d.durable = d.entries.clone();
            Ok(())
        })
    }
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
struct SimFile {
    /// The filesystem (its state holds the contents).
    fs: SimFs,
    /// The inode; stays valid after the name is removed, as on Unix.
    ino: u64,
    /// The path it was opened as, for fault rules.
    path: String,
}

impl SimFile {
    fn op<R>(&self, op: Op, f: impl FnOnce(&mut State, u64) -> io::Result<R>) -> io::Result<R> {
        let ino = self.ino;
        self.fs.op(op, Path::new(&self.path), |s| f(s, ino))
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        let fault = s.fault(Op::Sync, &self.path);
        let f = s.file_mut(self.ino)?;
        match fault {
            None if !f.sync_broken => {
                f.durable = f.data.clone();
                Ok(())
            }
            None => Ok(()),
            Some(fault) => {
                // As Linux: the dirty pages are dropped from write-back.
                f.sync_broken = true;
                drop(s);
                Err(injected(fault))
            }
        }
    }
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.op(Op::Read, |s, ino| {
            let f = s.file_mut(ino)?;
            let Ok(at) = usize::try_from(offset) else {
                return Ok(0);
            };
            if at >= f.data.len() {
                return Ok(0);
            }
            let n = buf.len().min(f.data.len() - at);
            buf[..n].copy_from_slice(&f.data[at..at + n]);
            Ok(n)
        })
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        let mut s = self.fs.lock();
        let fault = s.fault(Op::Write, &self.path);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut allowed = match fault {
            None => total,
            Some(Fault::Short) => total / 2,
            Some(other) => {
                drop(s);
                return Err(injected(other));
            }
        };
        let at = usize::try_from(offset).map_err(io::Error::other)?;
        if let Some(cap) = s.capacity {
            let len = s.file_mut(self.ino)?.data.len();
            let growth = (at + allowed).saturating_sub(len) as u64;
            let free = cap.saturating_sub(s.used());
            if growth > free {
                let cut = usize::try_from(growth - free).unwrap_or(usize::MAX);
                allowed = allowed.saturating_sub(cut);
                if allowed == 0 {
                    return Err(errno(libc::ENOSPC));
                }
            }
        }
        let f = s.file_mut(self.ino)?;
        let mut pos = at;
        let mut left = allowed;
        for b in bufs {
            if left == 0 {
                break;
            }
            let n = b.len().min(left);
            if f.data.len() < pos + n {
                f.data.resize(pos + n, 0);
            }
            f.data[pos..pos + n].copy_from_slice(&b[..n]);
            pos += n;
            left -= n;
        }
        Ok(allowed)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_filesystem(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        if let Some(fault) = s.fault(Op::Sync, &self.path) {
            for n in s.nodes.values_mut() {
                if let Node::File(f) = n {
                    if f.data != f.durable {
                        f.sync_broken = true;
                    }
                }
            }
            drop(s);
            return Err(injected(fault));
        }
        for n in s.nodes.values_mut() {
            match n {
                Node::File(f) if !f.sync_broken => f.durable = f.data.clone(),
                Node::File(_) => {}
                Node::Dir(d) => d.durable = d.entries.clone(),
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.op(Op::SetLen, |s, ino| {
            let len = usize::try_from(len).map_err(io::Error::other)?;
            let cur = s.file_mut(ino)?.data.len();
            if let Some(cap) = s.capacity {
                if len > cur && (len - cur) as u64 > cap.saturating_sub(s.used()) {
                    return Err(errno(libc::ENOSPC));
                }
            }
            s.file_mut(ino)?.data.resize(len, 0);
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        let mut s = self.fs.lock();
        Ok(s.file_mut(self.ino)?.data.len() as u64)
    }

    fn map(&self) -> io::Result<Box<dyn Mapping>> {
        let data = {
            let mut s = self.fs.lock();
            s.file_mut(self.ino)?.data.clone()
        };
        Ok(Box::new(SimMapping {
            file: SimFile {
                fs: self.fs.clone(),
                ino: self.ino,
                path: self.path.clone(),
            },
            data,
        }))
    }

    fn readahead(&self, _offset: u64, _len: u64) {}

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// A "mapping" of a [`SimFile`]: a private copy written back on flush, so unflushed
/// index entries are lost in a crash, as unsynced mmap pages may be.
#[derive(Debug)]
struct SimMapping {
    /// Where flushes go.
    file: SimFile,
    /// The mapped bytes.
    data: Vec<u8>,
}

impl Mapping for SimMapping {
    fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    fn flush(&self) -> io::Result<()> {
        self.file
            .write_all_vectored_at(&mut [IoSlice::new(&self.data)], 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(f: &Arc<dyn FsFile>, at: u64, b: &[u8]) {
        f.write_all_vectored_at(&mut [IoSlice::new(b)], at).unwrap();
    }

    fn read(fs: &SimFs, p: &str) -> Vec<u8> {
        crate::log::fs::read_file(fs, Path::new(p)).unwrap()
    }

    #[test]
    fn a_crash_keeps_only_what_was_synced() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let f = fs.open(Path::new("/d/a"), Open::CreateNew).unwrap();
        write(&f, 0, b"hello");
        f.sync_data().unwrap();
        write(&f, 5, b" world");
        // The file's name is not durable until its directory is synced.
        assert!(!fs.crash(Crash::DropUnsynced).exists(Path::new("/d/a")));
        fs.sync_dir(Path::new("/d")).unwrap();
        let after = fs.crash(Crash::DropUnsynced);
        assert_eq!(read(&after, "/d/a"), b"hello");
        assert_eq!(read(&fs, "/d/a"), b"hello world");
    }

    #[test]
    fn torn_appends_keep_a_prefix_of_the_unsynced_tail() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/a"), Open::CreateNew).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        write(&f, 0, b"base");
        f.sync_data().unwrap();
        write(&f, 4, b"0123456789");
        let mut seen = std::collections::HashSet::new();
        for seed in 0..64 {
            let data = read(&fs.crash(Crash::TornAppends { seed }), "/a");
            assert!(data.starts_with(b"base"));
            assert!(b"base0123456789".starts_with(&data));
            seen.insert(data.len());
        }
        assert!(seen.len() > 3, "prefixes vary with the seed");
    }

    #[test]
    fn a_failed_sync_loses_the_dirty_data_for_good() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/a"), Open::CreateNew).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        write(&f, 0, b"x");
        fs.inject(Rule {
            op: Op::Sync,
            path: String::new(),
            skip: 0,
            times: 1,
            fault: Fault::Eio,
        });
        assert!(f.sync_data().is_err());
        f.sync_data().unwrap(); // "succeeds"
        assert_eq!(read(&fs.crash(Crash::DropUnsynced), "/a"), b"");
    }

    #[test]
    fn capacity_gives_enospc_and_recovers() {
        let fs = SimFs::new();
        fs.set_capacity(Some(10));
        let f = fs.open(Path::new("/a"), Open::CreateNew).unwrap();
        let n = f.write_vectored_at(&[IoSlice::new(&[1u8; 16])], 0).unwrap();
        assert_eq!(n, 10, "what fits is written");
        let e = f
            .write_vectored_at(&[IoSlice::new(&[1u8; 4])], 10)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        f.set_len(6).unwrap();
        fs.set_capacity(None);
        write(&f, 6, &[2u8; 8]);
        assert_eq!(f.size().unwrap(), 14);
    }

    #[test]
    fn renamed_directories_and_unlinked_files() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("data/t/0")).unwrap();
        let f = fs.open(Path::new("data/t/0/x"), Open::CreateNew).unwrap();
        write(&f, 0, b"abc");
        fs.rename(Path::new("data/t"), Path::new("data/.deleted-t"))
            .unwrap();
        assert!(fs.exists(Path::new("data/.deleted-t/0/x")));
        fs.remove_dir_all(Path::new("data/.deleted-t")).unwrap();
        assert!(!fs.exists(Path::new("data/.deleted-t")));
        // An open handle still reads the removed file.
        let mut b = [0u8; 3];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"abc");
        assert_eq!(fs.used_bytes(), 0);
    }
}
