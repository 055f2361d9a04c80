//! Failed authentications per source address: after `max` failures from one
//! address within a window, further attempts from it fail without a password
//! check until the window ends, so guessing passwords from one address is
//! slow however many connections it opens. Bounded: at most `addresses_max`
//! addresses are tracked; when the table is full and nothing in it has
//! expired, a new address is not tracked (failing open rather than growing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Counts of recent failures by address, with time injected.
#[derive(Debug)]
pub struct FailureLimiter {
    /// Failures allowed per address per window; 0 turns the limit off.
    max: u32,
    /// The window's length.
    window_ms: i64,
    /// Most addresses tracked at once.
    addresses_max: usize,
    /// Per address: when its window began and its failures in it.
    seen: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl FailureLimiter {
    /// A limiter allowing `max` failures per `window_ms` per address.
    pub fn new(max: u32, window_ms: i64, addresses_max: usize) -> FailureLimiter {
        FailureLimiter {
            max,
            window_ms,
            addresses_max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` has used up its failures for the current window.
    pub fn blocked(&self, ip: IpAddr, now_ms: i64) -> bool {
        if self.max == 0 {
            return false;
        }
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&ip)
            .is_some_and(|&(since, n)| now_ms - since < self.window_ms && n >= self.max)
    }

    /// Counts a failed authentication from `ip`.
    pub fn record(&self, ip: IpAddr, now_ms: i64) {
        if self.max == 0 {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains_key(&ip) && seen.len() >= self.addresses_max {
            let window = self.window_ms;
            seen.retain(|_, (since, _)| now_ms - *since < window);
            if seen.len() >= self.addresses_max {
                return;
            }
        }
        let entry = seen.entry(ip).or_insert((now_ms, 0));
        if now_ms - entry.0 >= self.window_ms {
            *entry = (now_ms, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_an_address_for_the_rest_of_its_window() {
        let l = FailureLimiter::new(3, 1000, 16);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        // (time, address, record a failure?, blocked afterwards?)
        let table = [
            (0, a, true, false),
            (10, a, true, false),
            (20, a, true, true),
            (30, b, true, false),
            (999, a, false, true),
            (1000, a, false, false),
            (1000, a, true, false),
        ];
        for (i, (now, ip, fail, want)) in table.into_iter().enumerate() {
            if fail {
                l.record(ip, now);
            }
            assert_eq!(l.blocked(ip, now), want, "row {i}");
        }
    }

    #[test]
    fn the_table_is_bounded_and_expired_entries_make_room() {
        let l = FailureLimiter::new(1, 1000, 2);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        l.record(ip(1), 0);
        l.record(ip(2), 0);
        l.record(ip(3), 0);
        assert!(!l.blocked(ip(3), 0), "a full table does not track more");
        assert!(l.blocked(ip(1), 0));
        l.record(ip(3), 1000);
        assert!(l.blocked(ip(3), 1000), "expired entries were dropped");
        assert_eq!(l.seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn zero_turns_it_off() {
        let l = FailureLimiter::new(0, 1000, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for t in 0..10 {
            l.record(ip, t);
        }
        assert!(!l.blocked(ip, 10));
    }
}
