//! Process resources: the open-files limit, and error messages that name the
//! resource an I/O error ran out of.

use std::io;

/// The lock file in a data directory.
pub const LOCK_FILE: &str = ".lock";

/// Takes the data directory's exclusive lock (`flock` on [`LOCK_FILE`]), held
/// while the returned file is open: one broker, or one offline tool, per data
/// directory. The kernel drops it when the process dies, so a crash leaves no
/// stale lock.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own, with constant flags.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock {
            format!(
                "{} is in use by another sluice process (a running broker?)",
                dir.display()
            )
        } else {
            format!("cannot lock {}: {e}", path.display())
        });
    }
    Ok(f)
}

/// The soft and hard `RLIMIT_NOFILE`.
pub fn open_files_limit() -> io::Result<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((l.rlim_cur, l.rlim_max))
}

/// Raises the soft open-files limit to the hard one: every partition holds a
/// segment file and two index files open, so the common default of 1,024 runs
/// out near 300 partitions. Returns the limit in force afterwards.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let (soft, hard) = open_files_limit()?;
    if soft >= hard {
        return Ok(soft);
    }
    let l = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hard)
}

/// What the process uses, for the metrics (Linux `/proc/self`; zeros elsewhere).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft open-files limit.
    pub max_fds: u64,
    /// Process start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Reads the process's CPU time, memory and open files from `/proc/self`.
pub fn process_stats() -> ProcessStats {
    let mut s = ProcessStats {
        max_fds: open_files_limit().map(|(soft, _)| soft).unwrap_or(0),
        ..ProcessStats::default()
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: likewise.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // From field 3 (state) on: utime is field 14, stime 15, starttime 22,
            // vsize 23, rss 24; `f[0]` is field 3.
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            s.cpu_seconds = (num(11) + num(12)) as f64 / ticks;
            s.virtual_bytes = num(20);
            s.resident_bytes = num(21) * page;
            if let Some(boot) = boot_time_seconds() {
                s.start_time_seconds = boot as f64 + num(19) as f64 / ticks;
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        s.open_fds = dir.count() as u64;
    }
    s
}

/// Boot time from `/proc/stat` (`btime`), seconds since the Unix epoch.
fn boot_time_seconds() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Total and available bytes of the filesystem holding `path` (available: what
/// an unprivileged writer may still use, as `df` reports).
pub fn disk_space(path: &std::path::Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string; statvfs writes into `st`.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// `e` as a message, naming the limit when a resource ran out.
pub fn describe_io_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            let limit = open_files_limit()
                .map(|(soft, _)| soft.to_string())
                .unwrap_or_else(|_| "unknown".into());
            format!(
                "too many open files (the limit is {limit}; each partition holds 3 files per \
                 segment open): raise `ulimit -n` or use fewer partitions ({e})"
            )
        }
        Some(libc::ENOSPC) => format!("the data directory's disk is full ({e})"),
        _ => format!("i/o error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_resources_are_named() {
        let m = describe_io_error(&io::Error::from_raw_os_error(libc::EMFILE));
        assert!(m.contains("too many open files"), "{m}");
        let m = describe_io_error(&io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(m.contains("disk is full"), "{m}");
    }
}
