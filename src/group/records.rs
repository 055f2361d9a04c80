//! The group coordinator's records in the state log (`storage::state_log`):
//! keys naming a group or a (group, topic, partition), values holding a group's
//! membership or one committed offset. See docs/on-disk-format.md.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use uuid::Uuid;

use super::share_partition::Snapshot as ShareSnapshot;
use super::state::{Committed, Group, Member};
use crate::storage::codec::{Dec, Enc};
use crate::storage::state_log::Snapshot;

const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;
/// A transactional offset commit not yet decided (kind 2 is the transaction
/// coordinator's, in its own log; kept distinct anyway).
const KIND_TXN_OFFSET: u8 = 3;
/// A share-partition's durable state (KIP-932).
const KIND_SHARE_PARTITION: u8 = 4;
/// A group's configs (IncrementalAlterConfigs on a GROUP resource).
const KIND_GROUP_CONFIG: u8 = 5;

/// The key of a share-partition's state: group, topic id, partition.
pub fn share_key(group: &str, topic: Uuid, partition: i32) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(KIND_SHARE_PARTITION)
        .str(group)
        .bytes(topic.as_bytes())
        .i32(partition);
    e.0
}

/// A share-partition's state: the start offset and the ranges past it.
pub fn share_value(s: &ShareSnapshot) -> Vec<u8> {
    let mut e = Enc::default();
    e.i64(s.start)
        .i32(i32::try_from(s.ranges.len()).unwrap_or(i32::MAX));
    for (first, last, done, deliveries) in &s.ranges {
        e.i64(*first)
            .i64(*last)
            .u8(u8::from(*done))
            .i32(i32::from(*deliveries));
    }
    e.0
}

fn decode_share(v: &mut Dec) -> Option<ShareSnapshot> {
    let start = v.i64()?;
    let n = usize::try_from(v.i32()?).ok()?;
    // Each range is 21 bytes: a count past what the value holds is corrupt.
    if n > v.0.len() / 21 {
        return None;
    }
    let mut ranges = Vec::with_capacity(n);
    for _ in 0..n {
        let first = v.i64()?;
        let last = v.i64()?;
        let done = v.u8()? != 0;
        let deliveries = u16::try_from(v.i32()?).ok()?;
        ranges.push((first, last, done, deliveries));
    }
    Some(ShareSnapshot { start, ranges })
}

/// The key of a group's configs.
pub fn group_config_key(group: &str) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(KIND_GROUP_CONFIG).str(group);
    e.0
}

/// A group's configs, name to value.
pub fn group_config_value(configs: &BTreeMap<String, String>) -> Vec<u8> {
    let mut e = Enc::default();
    e.i32(i32::try_from(configs.len()).unwrap_or(i32::MAX));
    for (k, v) in configs {
        e.str(k).str(v);
    }
    e.0
}

fn decode_group_config(v: &mut Dec) -> Option<BTreeMap<String, String>> {
    let n = v.i32()?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let k = v.str()?;
        out.insert(k, v.str()?);
    }
    Some(out)
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

/// The key of a pending transactional offset commit of `producer_id`.
pub fn txn_offset_key(group: &str, producer_id: i64, topic: &str, partition: i32) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(KIND_TXN_OFFSET)
        .str(group)
        .i64(producer_id)
        .str(topic)
        .i32(partition);
    e.0
}

/// Pending transactional offsets of one group: by producer id, by (topic,
/// partition), the offset and the version its record was written with.
pub type TxnOffsets = HashMap<i64, BTreeMap<(String, i32), (Committed, u64)>>;

/// An offset commit's value.
pub fn offset_value(c: &Committed) -> Vec<u8> {
    let mut e = Enc::default();
    e.i64(c.offset)
        .i32(c.leader_epoch)
        .str(&c.metadata)
        .i64(c.commit_timestamp)
        .i64(c.expire_timestamp.unwrap_or(-1));
    e.0
}

/// A group's membership value: generation, protocol, leader and each member with
/// its metadata for the selected protocol and its assignment.
pub fn group_value(g: &Group) -> Vec<u8> {
    let mut e = Enc::default();
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

/// The version each committed offset of a group was written with.
pub type OffsetVersions = HashMap<(String, i32), u64>;

/// What the group log replays into.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Groups by id.
    pub groups: HashMap<String, Group>,
    /// The versions of each group's committed offsets.
    pub versions: HashMap<String, OffsetVersions>,
    /// Each group's pending transactional offsets.
    pub txn_offsets: HashMap<String, TxnOffsets>,
    /// Each share group's share-partitions by (topic id, partition).
    pub shares: HashMap<String, HashMap<(Uuid, i32), ShareSnapshot>>,
    /// Each group's configs.
    pub group_configs: HashMap<String, BTreeMap<String, String>>,
}

/// Turns the newest value of every key into groups, with the versions of their
/// offsets and their pending transactional offsets. Unreadable records are
/// skipped with a warning: they can only come from a newer, incompatible version.
pub fn build_groups(snapshot: Snapshot, now: i64) -> Replayed {
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut versions: HashMap<String, OffsetVersions> = HashMap::new();
    let mut txn_offsets: HashMap<String, TxnOffsets> = HashMap::new();
    let mut offsets = Vec::new();
    let mut shares: HashMap<String, HashMap<(Uuid, i32), ShareSnapshot>> = HashMap::new();
    let mut group_configs = HashMap::new();
    for (key, (version, value)) in snapshot {
        let mut k = Dec(&key);
        let mut v = Dec(&value);
        let parsed = match k.u8() {
            Some(KIND_GROUP) => k
                .str()
                .and_then(|id| decode_group(&id, now, &mut v).map(|g| groups.insert(id, g)))
                .map(|_| ()),
            Some(KIND_OFFSET) => (|| {
                let group = k.str()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                offsets.push((group, topic, partition, version, decode_committed(&mut v)?));
                Some(())
            })(),
            Some(KIND_TXN_OFFSET) => (|| {
                let group = k.str()?;
                let producer_id = k.i64()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                let c = decode_committed(&mut v)?;
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, c.commit_timestamp));
                txn_offsets
                    .entry(group)
                    .or_default()
                    .entry(producer_id)
                    .or_default()
                    .insert((topic, partition), (c, version));
                Some(())
            })(),
            Some(KIND_SHARE_PARTITION) => (|| {
                let group = k.str()?;
                let topic = Uuid::from_slice(k.bytes()?).ok()?;
                let partition = k.i32()?;
                let state = decode_share(&mut v)?;
                shares
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), state);
                Some(())
            })(),
            Some(KIND_GROUP_CONFIG) => (|| {
                let group = k.str()?;
                group_configs.insert(group, decode_group_config(&mut v)?);
                Some(())
            })(),
            _ => None,
        };
        if parsed.is_none() {
            tracing::warn!("skipping an unreadable group log record");
        }
    }
    for (group, topic, partition, version, c) in offsets {
        versions
            .entry(group.clone())
            .or_default()
            .insert((topic.clone(), partition), version);
        groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group, c.commit_timestamp))
            .offsets
            .insert((topic, partition), c);
    }
    Replayed {
        groups,
        versions,
        txn_offsets,
        shares,
        group_configs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let c = Committed {
            offset: 30,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp: 5,
            expire_timestamp: None,
        };
        let mut snap = HashMap::new();
        snap.insert(offset_key("g", "t", 0), (7, offset_value(&c)));
        snap.insert(txn_offset_key("g", 9, "t", 1), (8, offset_value(&c)));
        let r = build_groups(snap, 0);
        assert_eq!(r.groups["g"].offsets[&("t".to_string(), 0)], c);
        assert_eq!(r.versions["g"][&("t".to_string(), 0)], 7);
        assert_eq!(r.txn_offsets["g"][&9][&("t".to_string(), 1)], (c, 8));
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
        let mut snap = HashMap::new();
        snap.insert(group_key("g"), (1, group_value(&g)));
        let back = &build_groups(snap, 100).groups["g"];
        assert_eq!(back.generation, 4);
        assert_eq!(back.state, crate::group::GroupState::Stable);
        assert_eq!(back.leader.as_deref(), Some("m1"));
        let m = &back.members["m1"];
        assert_eq!(m.instance_id.as_deref(), Some("i1"));
        assert_eq!(&m.assignment[..], b"asg");
        assert_eq!(&m.metadata("range").unwrap()[..], b"sub");
    }
}
