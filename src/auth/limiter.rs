//! Failed authentications per source address: after `max` failures from one
//! address within a window, further attempts from it fail without a password
//! check until the window ends, so guessing passwords from one address is
//! slow however many connections it opens. IPv6 addresses count by their
//! /64 (one host can hold a whole /64). Bounded: at most `addresses_max`
//! addresses are tracked; when the table is full and nothing in it has
//! expired, new addresses share one overflow entry (so a spread-out attack
//! is limited as a whole, and memory does not grow).

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
        let ip = key_of(ip);
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let over = |k: &IpAddr| {
            seen.get(k)
                .is_some_and(|&(since, n)| now_ms - since < self.window_ms && n >= self.max)
        };
        over(&ip)
            || (!seen.contains_key(&ip) && seen.len() >= self.addresses_max && over(&OVERFLOW))
    }

    /// Counts a failed authentication from `ip`.
    pub fn record(&self, ip: IpAddr, now_ms: i64) {
        if self.max == 0 {
            return;
        }
        let mut ip = key_of(ip);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains_key(&ip) && seen.len() >= self.addresses_max {
            let window = self.window_ms;
            seen.retain(|_, (since, _)| now_ms - *since < window);
            if seen.len() >= self.addresses_max {
                ip = OVERFLOW;
            }
        }
        let entry = seen.entry(ip).or_insert((now_ms, 0));
        if now_ms - entry.0 >= self.window_ms {
            *entry = (now_ms, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The entry new addresses share while the table is full.
const OVERFLOW: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// What failures are counted by: an IPv4 address (mapped ones included), or
/// an IPv6 address's /64.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
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
        assert!(l.blocked(ip(1), 0));
        // A full table: new addresses share the overflow entry.
        assert!(l.blocked(ip(3), 0), "the overflow entry is at its limit");
        assert!(l.blocked(ip(4), 0), "and so is every other new address");
        l.record(ip(3), 1000);
        assert!(l.blocked(ip(3), 1000), "expired entries were dropped");
        assert_eq!(l.seen.lock().unwrap().len(), 1);
        // An IPv6 /64 counts as one address; mapped IPv4 as IPv4.
        let l = FailureLimiter::new(1, 1000, 16);
        l.record("2001:db8::1".parse().unwrap(), 0);
        assert!(l.blocked("2001:db8::2".parse().unwrap(), 0));
        assert!(!l.blocked("2001:db8:0:1::2".parse().unwrap(), 0));
        l.record("::ffff:10.0.0.9".parse().unwrap(), 0);
        assert!(l.blocked("10.0.0.9".parse().unwrap(), 0));
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
