//! Process resources: the open-files limit, and error messages that name the
//! resource an I/O error ran out of.

use std::io;

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
