//! Client quotas, pure (time injected): Kafka's quota entities (user,
//! client id, their defaults and combinations), the precedence that picks the
//! quota applying to a request, the sampled rate of each quota bucket, and the
//! throttle time a client over its quota must wait (Kafka's
//! `ClientQuotaManager`: `(rate - bound) / bound * window`).
//!
//! A request quota (`request_percentage`) is measured like a byte rate, in
//! percent-seconds of work: a request that kept a thread busy for 10 ms adds
//! 1, so a rate of 100 is one thread's whole time (Kafka's
//! `ClientRequestQuotaManager`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// `producer_byte_rate`: bytes of record batches produced per second.
    Produce,
    /// `consumer_byte_rate`: bytes of fetch responses per second.
    Fetch,
    /// `request_percentage`: the share of one thread's time spent on the
    /// client's requests, in percent.
    Request,
}

impl QuotaKind {
    /// Every kind.
    pub const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    /// Kafka's config key.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
            QuotaKind::Request => "request_percentage",
        }
    }

    /// What `ns` nanoseconds of work add to a request quota's rate:
    /// percent-seconds (Kafka's `nanosToPercentage`).
    pub fn work_units(ns: u64) -> f64 {
        ns as f64 * 100.0 / 1e9
    }

    /// The kind of a config key.
    pub fn from_key(key: &str) -> Option<QuotaKind> {
        QuotaKind::ALL.into_iter().find(|k| k.key() == key)
    }
}

/// One part of an entity: absent, the default (`<default>`), or a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The entity has no component of this type.
    Absent,
    /// The default for every name of this type.
    Default,
    /// One name.
    Name(String),
}

/// A quota entity: a user part and a client-id part (at least one present).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    /// The user (a principal's name, e.g. `alice`, `ANONYMOUS`).
    pub user: Part,
    /// The client id.
    pub client_id: Part,
}

/// Every configured quota: by entity, the bound of each kind (per second).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaConfigs {
    /// The configured entities and their values.
    pub entities: BTreeMap<Entity, BTreeMap<QuotaKind, f64>>,
}

impl QuotaConfigs {
    /// The quota of `kind` for requests from `user` with `client_id`, and the
    /// bucket it is measured in, by Kafka's precedence: user and client id,
    /// user and default client, user, default user and client, default user
    /// and default client, default user, client, default client. A default
    /// applies to each user (or client) on its own.
    pub fn resolve(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<(f64, Entity)> {
        let name = |s: &str| Part::Name(s.to_string());
        let levels = [
            (name(user), name(client_id)),
            (name(user), Part::Default),
            (name(user), Part::Absent),
            (Part::Default, name(client_id)),
            (Part::Default, Part::Default),
            (Part::Default, Part::Absent),
            (Part::Absent, name(client_id)),
            (Part::Absent, Part::Default),
        ];
        for (u, c) in levels {
            let e = Entity {
                user: u,
                client_id: c,
            };
            if let Some(bound) = self.entities.get(&e).and_then(|q| q.get(&kind)) {
                // The bucket names the real user and client where the entity
                // has that part, so each user of a default has its own.
                let bucket = Entity {
                    user: match e.user {
                        Part::Absent => Part::Absent,
                        _ => name(user),
                    },
                    client_id: match e.client_id {
                        Part::Absent => Part::Absent,
                        _ => name(client_id),
                    },
                };
                return Some((*bound, bucket));
            }
        }
        None
    }
}

/// A rate sampled in `samples` windows of `window_ms`, as Kafka's `Rate`: the
/// total of the live windows over their span, the span counted as at least
/// `samples - 1` whole windows (so a client's first burst is spread over the
/// whole span rather than throttled at once).
#[derive(Debug, Clone)]
struct Rate {
    /// (window start, total) per live window, oldest first.
    windows: Vec<(i64, f64)>,
}

impl Rate {
    fn new() -> Rate {
        Rate {
            windows: Vec::new(),
        }
    }

    /// Drops windows older than the span and adds `v` at `now`.
    fn record(&mut self, now: i64, v: f64, window_ms: i64, samples: usize) {
        self.expire(now, window_ms, samples);
        match self.windows.last_mut() {
            Some((start, total)) if now - *start < window_ms => *total += v,
            _ => self.windows.push((now, v)),
        }
    }

    fn expire(&mut self, now: i64, window_ms: i64, samples: usize) {
        let horizon = now - window_ms * samples as i64;
        self.windows.retain(|(start, _)| *start > horizon);
    }

    /// (per second, span in ms) at `now`.
    fn measure(&self, now: i64, window_ms: i64, samples: usize) -> (f64, f64) {
        let total: f64 = self.windows.iter().map(|(_, v)| v).sum();
        let elapsed = self
            .windows
            .first()
            .map_or(0, |(start, _)| now - start)
            .max(0);
        let min_span = window_ms * (samples.saturating_sub(1)).max(1) as i64;
        let span = elapsed.max(min_span) as f64;
        (total * 1000.0 / span, span)
    }
}

/// The quota buckets of every client, bounded in number.
#[derive(Debug)]
pub struct Throttler {
    /// One sample window.
    window_ms: i64,
    /// Windows kept.
    samples: usize,
    /// Most buckets kept; idle ones are dropped first.
    buckets_max: usize,
    /// The rate of each (kind, bucket), and when idle buckets were last swept.
    rates: Mutex<(Buckets, i64)>,
}

/// Rates by quota kind and bucket.
type Buckets = HashMap<(QuotaKind, Entity), Rate>;

/// The bucket every client shares while the table is full: a flood of new
/// client ids is throttled together instead of growing memory.
fn overflow_bucket() -> Entity {
    Entity {
        user: Part::Absent,
        client_id: Part::Name("<overflow>".into()),
    }
}

impl Throttler {
    /// Buckets measured in `samples` windows of `window_ms`.
    pub fn new(window_ms: i64, samples: usize, buckets_max: usize) -> Throttler {
        Throttler {
            window_ms: window_ms.max(1),
            samples: samples.max(2),
            buckets_max,
            rates: Mutex::new((HashMap::new(), i64::MIN)),
        }
    }

    /// Most a client is ever throttled: the whole sampled span for a byte
    /// rate, one window for a request quota (as Kafka).
    fn max_throttle_ms(&self, kind: QuotaKind) -> f64 {
        match kind {
            QuotaKind::Request => self.window_ms as f64,
            _ => (self.window_ms * self.samples as i64) as f64,
        }
    }

    /// Records `amount` (bytes, or [`QuotaKind::work_units`]) against
    /// `bucket` (whose bound is `bound` per second) and returns how long the
    /// client must now wait (ms; 0 within quota).
    pub fn record(
        &self,
        kind: QuotaKind,
        bucket: &Entity,
        bound: f64,
        amount: f64,
        now: i64,
    ) -> u64 {
        let mut guard = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let (rates, last_sweep) = &mut *guard;
        let mut key = (kind, bucket.clone());
        if rates.len() >= self.buckets_max && !rates.contains_key(&key) {
            // Idle buckets go, at most once a window (a sweep is a scan).
            if now.saturating_sub(*last_sweep) >= self.window_ms {
                *last_sweep = now;
                let horizon = now - self.window_ms * self.samples as i64;
                rates.retain(|_, r| r.windows.last().is_some_and(|(s, _)| *s > horizon));
            }
            if rates.len() >= self.buckets_max {
                key = (kind, overflow_bucket());
            }
        }
        let rate = rates.entry(key).or_insert_with(Rate::new);
        rate.record(now, amount, self.window_ms, self.samples);
        let (per_s, span) = rate.measure(now, self.window_ms, self.samples);
        throttle_ms(per_s, bound, span, self.max_throttle_ms(kind))
    }

    /// The most a client with `bound` per second may take in one response:
    /// what the quota allows over the minimum span (as Kafka caps a fetch),
    /// so that no single response is over the quota by itself.
    pub fn window_limit(&self, bound: f64) -> u64 {
        let span_s = (self.window_ms * (self.samples as i64 - 1)) as f64 / 1000.0;
        (bound * span_s).max(1.0) as u64
    }
}

/// Kafka's throttle time for a rate over its bound: the time the client must
/// stay idle for the rate over the span to come back to the bound.
fn throttle_ms(rate: f64, bound: f64, span_ms: f64, max_ms: f64) -> u64 {
    if bound <= 0.0 || rate <= bound {
        return 0;
    }
    ((rate - bound) / bound * span_ms).min(max_ms).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(user: Part, client_id: Part) -> Entity {
        Entity { user, client_id }
    }
    fn n(s: &str) -> Part {
        Part::Name(s.into())
    }

    #[test]
    fn precedence_by_table() {
        use Part::{Absent, Default};
        let mut c = QuotaConfigs::default();
        let mut set = |ent: Entity, v: f64| {
            c.entities
                .entry(ent)
                .or_default()
                .insert(QuotaKind::Produce, v);
        };
        set(e(Absent, Default), 8.0);
        set(e(Absent, n("app")), 7.0);
        set(e(Default, Absent), 6.0);
        set(e(Default, Default), 5.0);
        set(e(Default, n("app")), 4.0);
        set(e(n("alice"), Absent), 3.0);
        set(e(n("alice"), Default), 2.0);
        set(e(n("alice"), n("app")), 1.0);
        // (user, client, bound, bucket)
        let table = [
            ("alice", "app", 1.0, e(n("alice"), n("app"))),
            ("alice", "other", 2.0, e(n("alice"), n("other"))),
            ("bob", "app", 4.0, e(n("bob"), n("app"))),
            ("bob", "other", 5.0, e(n("bob"), n("other"))),
        ];
        for (user, client, bound, bucket) in table {
            assert_eq!(
                c.resolve(QuotaKind::Produce, user, client),
                Some((bound, bucket)),
                "{user}/{client}"
            );
        }
        assert_eq!(c.resolve(QuotaKind::Fetch, "alice", "app"), None);
        // Fewer levels configured: the user's own, then a default user's
        // bucket is per user, a client's is shared by its users.
        let mut c = QuotaConfigs::default();
        c.entities
            .entry(e(Default, Absent))
            .or_default()
            .insert(QuotaKind::Fetch, 6.0);
        c.entities
            .entry(e(Absent, n("app")))
            .or_default()
            .insert(QuotaKind::Produce, 7.0);
        assert_eq!(
            c.resolve(QuotaKind::Fetch, "bob", "x"),
            Some((6.0, e(n("bob"), Absent)))
        );
        assert_eq!(
            c.resolve(QuotaKind::Produce, "bob", "app"),
            Some((7.0, e(Absent, n("app"))))
        );
    }

    #[test]
    fn throttle_brings_the_rate_back_to_the_bound() {
        // 1000 B/s, 10 windows of 100 ms (span at least 900 ms).
        let t = Throttler::new(100, 10, 16);
        let b = e(n("u"), Part::Absent);
        assert_eq!(t.record(QuotaKind::Produce, &b, 1000.0, 500.0, 0), 0);
        // 1500 B over the minimum span of 900 ms: 1667 B/s, 600 ms to wait.
        assert_eq!(t.record(QuotaKind::Produce, &b, 1000.0, 1000.0, 10), 600);
        // After waiting, the same total over a longer span is within bound.
        assert_eq!(t.record(QuotaKind::Produce, &b, 1000.0, 0.0, 1500), 0);
        // Throttles never exceed the whole span.
        assert_eq!(t.record(QuotaKind::Produce, &b, 1000.0, 1e6, 1500), 1000);
        // Still over: recording nothing answers the time left to wait.
        assert_eq!(t.record(QuotaKind::Produce, &b, 1000.0, 0.0, 1600), 1000);
    }

    #[test]
    fn request_quota_in_percent_of_a_thread() {
        // Kafka's own example: a 1 % quota (10 ms of work a second), 11
        // windows of 1 s. 4 ms a second for 10 s is within it.
        let t = Throttler::new(1000, 11, 16);
        let b = e(n("ANONYMOUS"), n("test-client"));
        let ms = |v: f64| QuotaKind::work_units((v * 1e6) as u64);
        for i in 0..10 {
            assert_eq!(t.record(QuotaKind::Request, &b, 1.0, ms(4.0), i * 1000), 0);
        }
        // A spike half a window later: 107.1 ms over 10.5 s is 1.02 %, so
        // (1.02 - 1) / 1 * 10.5 s = 210 ms.
        assert_eq!(t.record(QuotaKind::Request, &b, 1.0, ms(67.1), 10_500), 210);
        // A request quota's throttle is at most one window.
        assert_eq!(
            t.record(QuotaKind::Request, &b, 1.0, ms(10_000.0), 10_600),
            1000
        );
    }

    #[test]
    fn buckets_are_bounded() {
        let t = Throttler::new(100, 10, 2);
        for i in 0..3 {
            t.record(
                QuotaKind::Fetch,
                &e(n(&format!("u{i}")), Part::Absent),
                1.0,
                1.0,
                0,
            );
        }
        // Full with nothing idle: the third shares the overflow bucket.
        assert_eq!(t.rates.lock().unwrap().0.len(), 3);
        assert!(t
            .rates
            .lock()
            .unwrap()
            .0
            .contains_key(&(QuotaKind::Fetch, overflow_bucket())));
        t.record(
            QuotaKind::Fetch,
            &e(n("late"), Part::Absent),
            1.0,
            1.0,
            5000,
        );
        assert_eq!(
            t.rates.lock().unwrap().0.len(),
            1,
            "idle buckets were dropped"
        );
    }
}
