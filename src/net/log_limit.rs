//! Rate-limited log lines: a misbehaving or numerous set of clients must not be
//! able to flood the log. Each limiter lets one line through per interval and
//! counts what it held back.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::clock::now_ms;

/// At most one line per `interval_ms`.
#[derive(Debug)]
pub struct LogLimit {
    /// The interval between lines.
    interval_ms: i64,
    /// When the last line went through (ms).
    last_ms: AtomicI64,
    /// Lines held back since then.
    suppressed: AtomicU64,
}

impl LogLimit {
    /// A limiter letting one line through per `interval_ms`.
    pub const fn new(interval_ms: i64) -> LogLimit {
        LogLimit {
            interval_ms,
            last_ms: AtomicI64::new(i64::MIN),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.interval_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval() {
        let l = LogLimit::new(60_000);
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.last_ms.store(0, Ordering::Relaxed);
        assert_eq!(l.allow(), Some(2));
    }
}
