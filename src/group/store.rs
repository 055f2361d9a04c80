//! Group state on disk: an internal log of key/value records, as Kafka's
//! `__consumer_offsets`, replayed on start and compacted by snapshot.
//!
//! Each record's key names a group or a (group, topic, partition); its value starts
//! with a version number that grows with every change computed in memory. Replay
//! keeps, per key, the value with the highest version, so the order in which
//! concurrent writes reach the log does not matter. A tombstone is a value with
//! the "absent" flag set.
//!
//! Compaction rolls the log, writes every live key (with fresh versions) after the
//! roll, makes it durable, and only then deletes the segments before the roll. A
//! crash at any point leaves a log whose replay gives the same state.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::state::{Committed, Group, Member};
use crate::broker::{now_ms, Partition, Syncer};
use crate::log::batch;

const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;
/// Records per batch are capped by bytes so no batch nears the log's max.message.bytes.
const BATCH_BYTES_TARGET: usize = 1 << 20;

/// A key and its encoded value (`None` is a tombstone).
pub type Record = (Vec<u8>, Option<Vec<u8>>);

/// Appends little-endian-free (big-endian) fields to a buffer.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("field under 4 GiB");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
    fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn opt_str(&mut self, v: &Option<String>) -> &mut Self {
        match v {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
}

/// Reads what [`Enc`] wrote; every read is bounds-checked.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }
    fn str(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            _ => Some(Some(self.str()?)),
        }
    }
}

/// The key of a group's membership record.
pub fn group_key(group: &str) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(KIND_GROUP).str(group);
    e.0
}

/// The key of a committed offset's record.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(KIND_OFFSET).str(group).str(topic).i32(partition);
    e.0
}

fn value_header(version: u64, present: bool) -> Enc {
    let mut e = Enc::default();
    e.0.extend_from_slice(&version.to_be_bytes());
    e.u8(u8::from(present));
    e
}

/// A tombstone at `version`.
pub fn tombstone(version: u64) -> Vec<u8> {
    value_header(version, false).0
}

/// An offset commit's value.
pub fn offset_value(version: u64, c: &Committed) -> Vec<u8> {
    let mut e = value_header(version, true);
    e.i64(c.offset)
        .i32(c.leader_epoch)
        .str(&c.metadata)
        .i64(c.commit_timestamp)
        .i64(c.expire_timestamp.unwrap_or(-1));
    e.0
}

/// A group's membership value: generation, protocol, leader and each member with
/// its metadata for the selected protocol and its assignment.
pub fn group_value(version: u64, g: &Group) -> Vec<u8> {
    let mut e = value_header(version, true);
    let protocol = g.protocol.clone();
    e.opt_str(&g.protocol_type)
        .i32(g.generation)
        .opt_str(&protocol)
        .opt_str(&g.leader)
        .i64(g.state_timestamp);
    let p = protocol.unwrap_or_default();
    let members: Vec<&Member> = if g.protocol.is_some() {
        g.members.values().collect()
    } else {
        Vec::new()
    };
    e.i32(members.len() as i32);
    for m in members {
        e.str(&m.id)
            .opt_str(&m.instance_id)
            .str(&m.client_id)
            .str(&m.client_host)
            .i32(m.session_timeout_ms)
            .i32(m.rebalance_timeout_ms)
            .str(&m.protocol_type)
            .bytes(m.metadata(&p).map(|b| &b[..]).unwrap_or(&[]))
            .bytes(&m.assignment);
    }
    e.0
}

fn decode_group(id: &str, now: i64, d: &mut Dec<'_>) -> Option<Group> {
    let protocol_type = d.opt_str()?;
    let generation = d.i32()?;
    let protocol = d.opt_str()?;
    let leader = d.opt_str()?;
    let state_ts = d.i64()?;
    let count = usize::try_from(d.i32()?).ok()?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let id = d.str()?;
        let instance_id = d.opt_str()?;
        let client_id = d.str()?;
        let client_host = d.str()?;
        let session = d.i32()?;
        let rebalance = d.i32()?;
        let ptype = d.str()?;
        let metadata = Bytes::copy_from_slice(d.bytes()?);
        let assignment = Bytes::copy_from_slice(d.bytes()?);
        members.push(Group::restored_member(
            id,
            instance_id,
            client_id,
            client_host,
            session,
            rebalance,
            ptype,
            (protocol.clone().unwrap_or_default(), metadata),
            assignment,
        ));
    }
    Some(Group::restore(
        id,
        now,
        generation,
        protocol_type,
        protocol,
        leader,
        state_ts,
        members,
    ))
}

fn decode_committed(d: &mut Dec<'_>) -> Option<Committed> {
    let offset = d.i64()?;
    let leader_epoch = d.i32()?;
    let metadata = d.str()?;
    let commit_timestamp = d.i64()?;
    let expire = d.i64()?;
    Some(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp: (expire >= 0).then_some(expire),
    })
}

/// Turns the newest value of every key into groups. Unreadable records are skipped
/// with a warning: they can only come from a newer, incompatible version.
fn build_groups(
    latest: HashMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    now: i64,
) -> HashMap<String, Group> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut offsets = Vec::new();
    for (key, (_, value)) in latest {
        let Some(value) = value else { continue };
        let mut k = Dec(&key);
        let mut v = Dec(&value[9..]);
        let parsed = match k.u8() {
            Some(KIND_GROUP) => k
                .str()
                .and_then(|id| decode_group(&id, now, &mut v).map(|g| groups.insert(id, g)))
                .map(|_| ()),
            Some(KIND_OFFSET) => (|| {
                let group = k.str()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                offsets.push((group, topic, partition, decode_committed(&mut v)?));
                Some(())
            })(),
            _ => None,
        };
        if parsed.is_none() {
            tracing::warn!("skipping an unreadable group log record");
        }
    }
    for (group, topic, partition, c) in offsets {
        groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group, c.commit_timestamp))
            .offsets
            .insert((topic, partition), c);
    }
    groups
}

/// The internal log holding group state.
pub struct Store {
    /// The log (not a topic: invisible to clients).
    partition: Arc<Partition>,
    /// fsync queue shared with the broker.
    syncer: Syncer,
    /// Next record version.
    version: AtomicU64,
    /// Bytes appended since the last snapshot.
    bytes_since_snapshot: AtomicU64,
    /// Size of the last snapshot: compaction waits for the log to outgrow it.
    snapshot_bytes: AtomicU64,
    /// Compact once this many bytes were appended since the last snapshot (and more than the snapshot).
    compact_bytes: u64,
    /// A compaction is running.
    compacting: AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("version", &self.version)
            .finish()
    }
}

impl Store {
    /// Replays the log (blocking) and returns the store and the groups it holds.
    pub fn open(
        partition: Arc<Partition>,
        syncer: Syncer,
        compact_bytes: u64,
    ) -> io::Result<(Store, HashMap<String, Group>)> {
        let mut latest: HashMap<Vec<u8>, (u64, Option<Vec<u8>>)> = HashMap::new();
        let mut max_version = 0u64;
        let mut offset = partition.log_start_offset();
        let mut bytes = 0u64;
        loop {
            let slice = match partition.read_blocking(offset, 8 << 20) {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(e) => return Err(io::Error::other(format!("reading group log: {e:?}"))),
            };
            let buf = slice.read_to_vec()?;
            bytes += buf.len() as u64;
            let batches = batch::split_batches(&buf)
                .map_err(|e| io::Error::other(format!("group log: {e}")))?;
            let Some((_, last)) = batches.last() else {
                break;
            };
            let next = last.next_offset();
            for (at, h) in &batches {
                let b = &buf[*at..*at + h.total_bytes()];
                let Some(records) = batch::records(b) else {
                    tracing::warn!(
                        offset = h.base_offset,
                        "skipping an unreadable group log batch"
                    );
                    continue;
                };
                for (key, value) in records {
                    let (Some(key), Some(value)) = (key, value) else {
                        continue;
                    };
                    // Every value starts with `u64 version, u8 present`.
                    if value.len() < 9 {
                        continue;
                    }
                    let Some(version) = Dec(value).u64() else {
                        continue;
                    };
                    max_version = max_version.max(version);
                    let present = value[8] != 0;
                    let newer = latest.get(key).is_none_or(|(v, _)| *v <= version);
                    if newer {
                        latest.insert(key.to_vec(), (version, present.then(|| value.to_vec())));
                    }
                }
            }
            offset = next;
        }
        let groups = build_groups(latest, now_ms());
        tracing::info!(
            groups = groups.len(),
            log_bytes = bytes,
            "group log replayed"
        );
        Ok((
            Store {
                partition,
                syncer,
                version: AtomicU64::new(max_version + 1),
                bytes_since_snapshot: AtomicU64::new(bytes),
                snapshot_bytes: AtomicU64::new(0),
                compact_bytes,
                compacting: AtomicBool::new(false),
            },
            groups,
        ))
    }

    /// A fresh version. Call it under the group's lock, so versions of one key
    /// grow in the order its changes were computed.
    pub fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends `records` and waits until they are on stable storage. Returns true
    /// when the log has grown enough that the caller should start a compaction.
    pub async fn write(&self, records: Vec<Record>) -> io::Result<bool> {
        if records.is_empty() {
            return Ok(false);
        }
        let size = records_bytes(&records);
        let partition = self.partition.clone();
        let end = tokio::task::spawn_blocking(move || -> io::Result<i64> {
            let mut end = 0;
            for b in batches(&records) {
                let info = partition
                    .append_blocking(&b)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                end = info.last_offset + 1;
            }
            Ok(end)
        })
        .await
        .map_err(io::Error::other)??;
        self.syncer
            .wait_durable(vec![(self.partition.clone(), end)])
            .await;
        Ok(self.note_written(size))
    }

    /// Counts appended bytes; true when a compaction is due and none is running.
    fn note_written(&self, bytes: u64) -> bool {
        let since = self
            .bytes_since_snapshot
            .fetch_add(bytes, Ordering::Relaxed)
            + bytes;
        since
            >= self
                .compact_bytes
                .max(self.snapshot_bytes.load(Ordering::Relaxed))
            && !self.compacting.swap(true, Ordering::AcqRel)
    }

    /// Step 1 of compaction: roll, so the snapshot starts a segment. Returns its base.
    pub async fn begin_snapshot(&self) -> io::Result<i64> {
        let p = self.partition.clone();
        tokio::task::spawn_blocking(move || p.roll_blocking())
            .await
            .map_err(io::Error::other)?
    }

    /// Step 2: write the snapshot, make it durable, and delete what it supersedes.
    pub async fn finish_snapshot(&self, base: i64, records: Vec<Record>) -> io::Result<()> {
        let size = records_bytes(&records);
        let res = async {
            self.write(records).await?;
            let p = self.partition.clone();
            tokio::task::spawn_blocking(move || p.delete_before_blocking(base))
                .await
                .map_err(io::Error::other)?
        }
        .await;
        self.snapshot_bytes.store(size, Ordering::Relaxed);
        self.bytes_since_snapshot.store(size, Ordering::Relaxed);
        self.compacting.store(false, Ordering::Release);
        res.map(|n| tracing::info!(segments = n, snapshot_bytes = size, "group log compacted"))
    }
}

/// Key and value bytes of `records`: what the compaction thresholds count.
fn records_bytes(records: &[Record]) -> u64 {
    records.iter().map(|(k, v)| record_bytes(k, v) as u64).sum()
}

fn record_bytes(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len)
}

/// Packs records into batches of about [`BATCH_BYTES_TARGET`] bytes.
fn batches(records: &[Record]) -> Vec<Vec<u8>> {
    let now = now_ms();
    let mut out = Vec::new();
    let mut chunk: Vec<batch::KeyValue<'_>> = Vec::new();
    let mut size = 0;
    for (k, v) in records {
        let len = record_bytes(k, v);
        if !chunk.is_empty() && size + len > BATCH_BYTES_TARGET {
            out.push(batch::build_batch(now, &chunk));
            chunk.clear();
            size = 0;
        }
        chunk.push((Some(k), v.as_deref()));
        size += len;
    }
    if !chunk.is_empty() {
        out.push(batch::build_batch(now, &chunk));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_wins_whatever_the_order() {
        let c = |o| Committed {
            offset: o,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 5,
            expire_timestamp: None,
        };
        let key = offset_key("g", "t", 0);
        let mut latest = HashMap::new();
        for (version, value) in [
            (3u64, offset_value(3, &c(30))),
            (2, offset_value(2, &c(20))),
        ] {
            let newer = latest
                .get(&key)
                .is_none_or(|(v, _): &(u64, Option<Vec<u8>>)| *v <= version);
            if newer {
                latest.insert(key.clone(), (version, Some(value)));
            }
        }
        let groups = build_groups(latest, 0);
        assert_eq!(groups["g"].offsets[&("t".to_string(), 0)].offset, 30);
    }

    #[test]
    fn group_value_round_trips() {
        let mut g = Group::new("g", 1);
        g.generation = 4;
        g.protocol_type = Some("consumer".into());
        g.protocol = Some("range".into());
        g.leader = Some("m1".into());
        g.members.insert(
            "m1".into(),
            Group::restored_member(
                "m1".into(),
                Some("i1".into()),
                "c".into(),
                "/127.0.0.1".into(),
                10_000,
                30_000,
                "consumer".into(),
                ("range".into(), Bytes::from_static(b"sub")),
                Bytes::from_static(b"asg"),
            ),
        );
        let v = group_value(9, &g);
        let mut latest = HashMap::new();
        latest.insert(group_key("g"), (9, Some(v)));
        let back = &build_groups(latest, 100)["g"];
        assert_eq!(back.generation, 4);
        assert_eq!(back.state, super::super::state::GroupState::Stable);
        assert_eq!(back.leader.as_deref(), Some("m1"));
        let m = &back.members["m1"];
        assert_eq!(m.instance_id.as_deref(), Some("i1"));
        assert_eq!(&m.assignment[..], b"asg");
        assert_eq!(&m.metadata("range").unwrap()[..], b"sub");
    }
}
