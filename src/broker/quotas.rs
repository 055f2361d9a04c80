//! The client quota store: the configured quotas, persisted in
//! [`QUOTAS_FILE`] in the data directory and changed by AlterClientQuotas,
//! and the throttler that measures every client against them.
//!
//! File format (written whole, atomically): a `version=1` line, then one line
//! per value: `<user> <client id> <key> <value>`, each part `-` (absent),
//! `*` (the default) or `=` followed by the name in base64.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::meta::{read_records, write_records};
use crate::log::Fs;
use crate::quota::{Entity, Part, QuotaConfigs, QuotaKind, Throttler};

/// The file holding every client quota.
pub const QUOTAS_FILE: &str = "client-quotas";

/// One change of an AlterClientQuotas request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaChange {
    /// The entity.
    pub entity: Entity,
    /// The quota.
    pub kind: QuotaKind,
    /// The new bound, or `None` to remove it.
    pub value: Option<f64>,
}

/// Every client quota, in memory and on disk, and the throttler.
#[derive(Debug)]
pub struct Quotas {
    /// The file system of the data directory.
    fs: Arc<dyn Fs>,
    /// [`QUOTAS_FILE`]'s path.
    path: PathBuf,
    /// What requests are measured against.
    current: RwLock<Arc<QuotaConfigs>>,
    /// A bit per [`QuotaKind`] some entity has a value of, so a request that
    /// no quota can apply to skips the lookup (and the work metering).
    kinds: AtomicU8,
    /// Held while a change writes the file.
    writing: Mutex<()>,
    /// The rates of every client.
    pub throttler: Throttler,
}

fn encode_part(p: &Part) -> String {
    match p {
        Part::Absent => "-".into(),
        Part::Default => "*".into(),
        Part::Name(n) => format!("={}", B64.encode(n)),
    }
}

fn decode_part(s: &str) -> Option<Part> {
    match s {
        "-" => Some(Part::Absent),
        "*" => Some(Part::Default),
        _ => {
            let b = B64.decode(s.strip_prefix('=')?).ok()?;
            String::from_utf8(b).ok().map(Part::Name)
        }
    }
}

fn kind_bit(kind: QuotaKind) -> u8 {
    1 << kind as u8
}

/// The [`kind_bit`]s of every kind some entity of `c` has.
fn kinds_of(c: &QuotaConfigs) -> u8 {
    c.entities
        .values()
        .flat_map(|v| v.keys())
        .fold(0, |bits, k| bits | kind_bit(*k))
}

impl Quotas {
    /// Loads the quotas of `data_dir` (none if it has no file).
    pub fn load(fs: Arc<dyn Fs>, data_dir: &Path, throttler: Throttler) -> io::Result<Quotas> {
        let path = data_dir.join(QUOTAS_FILE);
        let records = read_records(fs.as_ref(), &path, 4, |f| {
            let [user, client, key, value] = f else {
                return Err("a bad record".into());
            };
            let entity = Entity {
                user: decode_part(user).ok_or("a bad user")?,
                client_id: decode_part(client).ok_or("a bad client id")?,
            };
            let kind = QuotaKind::from_key(key).ok_or("an unknown quota")?;
            let value: f64 = value.parse().map_err(|_| "a bad value")?;
            Ok((entity, kind, value))
        })?;
        let mut configs = QuotaConfigs::default();
        for (entity, kind, value) in records {
            configs
                .entities
                .entry(entity)
                .or_default()
                .insert(kind, value);
        }
        Ok(Quotas {
            fs,
            path,
            kinds: AtomicU8::new(kinds_of(&configs)),
            current: RwLock::new(Arc::new(configs)),
            writing: Mutex::new(()),
            throttler,
        })
    }

    /// The quotas requests are measured against now.
    pub fn current(&self) -> Arc<QuotaConfigs> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any entity has a quota of `kind`.
    pub fn any(&self, kind: QuotaKind) -> bool {
        self.kinds.load(Ordering::Relaxed) & kind_bit(kind) != 0
    }

    /// The quota of `kind` applying to `user` with `client_id` and the
    /// bucket it is measured in (`None` without one), resolved once so a
    /// request can record against it twice.
    pub fn bucket(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<(f64, Entity)> {
        if !self.any(kind) {
            return None;
        }
        self.current().resolve(kind, user, client_id)
    }

    /// Records `amount` (bytes, or work units) of `kind` in `bucket` (from
    /// [`Quotas::bucket`]) at `now`: the throttle time in ms.
    pub fn record_in(&self, kind: QuotaKind, bucket: &(f64, Entity), amount: f64, now: i64) -> u64 {
        self.throttler
            .record(kind, &bucket.1, bucket.0, amount, now)
    }

    /// Measures `amount` (bytes, or work units) of `kind` from `user` with
    /// `client_id` at `now`: the throttle time in ms (0 without a quota or
    /// within it), and the bucket it was recorded in.
    pub fn record(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        amount: f64,
        now: i64,
    ) -> (u64, Option<Entity>) {
        match self.bucket(kind, user, client_id) {
            None => (0, None),
            Some(b) => (self.record_in(kind, &b, amount, now), Some(b.1)),
        }
    }

    /// The most one response of `kind` may carry for `user` with `client_id`
    /// (`None` without a quota).
    pub fn response_limit(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<u64> {
        if !self.any(kind) {
            return None;
        }
        self.current()
            .resolve(kind, user, client_id)
            .map(|(bound, _)| self.throttler.window_limit(bound))
    }

    /// Applies `changes` and rewrites the file (blocking).
    pub fn apply(&self, changes: &[QuotaChange]) -> io::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.current()).clone();
        for c in changes {
            let values = next.entities.entry(c.entity.clone()).or_default();
            match c.value {
                Some(v) => {
                    values.insert(c.kind, v);
                }
                None => {
                    values.remove(&c.kind);
                }
            }
        }
        next.entities.retain(|_, v| !v.is_empty());
        let records = next.entities.iter().flat_map(|(e, values)| {
            values.iter().map(move |(kind, v)| {
                format!(
                    "{} {} {} {v}",
                    encode_part(&e.user),
                    encode_part(&e.client_id),
                    kind.key()
                )
            })
        });
        write_records(self.fs.as_ref(), &self.path, records)?;
        self.kinds.store(kinds_of(&next), Ordering::Relaxed);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Every configured entity and its values.
    pub fn describe(&self) -> BTreeMap<Entity, BTreeMap<QuotaKind, f64>> {
        self.current().entities.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RealFs;

    #[test]
    fn quotas_persist_and_removals_apply() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Fs> = Arc::new(RealFs);
        let q = Quotas::load(fs.clone(), dir.path(), Throttler::new(1000, 11, 16)).unwrap();
        let alice = Entity {
            user: Part::Name("alice with spaces".into()),
            client_id: Part::Default,
        };
        let clients = Entity {
            user: Part::Absent,
            client_id: Part::Default,
        };
        q.apply(&[
            QuotaChange {
                entity: alice.clone(),
                kind: QuotaKind::Produce,
                value: Some(1024.0),
            },
            QuotaChange {
                entity: clients.clone(),
                kind: QuotaKind::Fetch,
                value: Some(2048.0),
            },
        ])
        .unwrap();
        q.apply(&[QuotaChange {
            entity: clients,
            kind: QuotaKind::Fetch,
            value: None,
        }])
        .unwrap();
        let again = Quotas::load(fs, dir.path(), Throttler::new(1000, 11, 16)).unwrap();
        let d = again.describe();
        assert_eq!(d.len(), 1);
        assert_eq!(d[&alice][&QuotaKind::Produce], 1024.0);
        // Without a quota nothing is measured.
        assert_eq!(
            again.record(QuotaKind::Fetch, "bob", "c", 1e9, 0),
            (0, None)
        );
    }
}
