//! A share group's membership (KIP-932), as a pure state machine: members
//! join and heartbeat with epochs, and the `simple` assignor spreads the
//! subscribed partitions over them. Unlike a KIP-848 consumer group there is
//! no revocation phase: several members may hold the same partition (the
//! share-partition hands each record to one of them), so a member moves
//! straight to its new assignment. Time comes in as `now` (ms).
//!
//! Which records a member gets is not decided here but by each
//! share-partition (`share_partition`), and only for members that fetch.

use std::collections::{BTreeMap, BTreeSet};

use super::consumer::{Assignment, ConsumerError, TopicId, Topics};

/// The only share assignor Kafka ships (`group.share.assignors`).
pub const ASSIGNOR: &str = "simple";

/// Broker settings a share group enforces.
#[derive(Debug, Clone, Copy)]
pub struct ShareGroupLimits {
    /// `group.share.session.timeout.ms`: a member silent this long leaves.
    pub session_timeout_ms: i64,
    /// `group.share.heartbeat.interval.ms`, told to every member.
    pub heartbeat_interval_ms: i32,
    /// `group.share.max.size`: most members of one group.
    pub members_max: usize,
}

/// A ShareGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct ShareHeartbeat {
    /// Chosen by the client (a UUID); never empty.
    pub member_id: String,
    /// 0 joins, -1 leaves, otherwise the member's current epoch.
    pub member_epoch: i32,
    /// The member's rack, if it said.
    pub rack_id: Option<String>,
    /// The subscription; `None` when unchanged since the last heartbeat.
    pub topic_names: Option<Vec<String>>,
    /// The client id, for describe.
    pub client_id: String,
    /// The client's address, for describe.
    pub client_host: String,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeartbeatReply {
    /// The member id, echoed.
    pub member_id: String,
    /// The member's epoch now (-1 after a leave).
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The member's partitions, when it needs them (joined, resubscribed, or
    /// changed); `None` means "as before".
    pub assignment: Option<Assignment>,
}

/// One member.
#[derive(Debug, Clone)]
pub struct ShareMember {
    /// Member id.
    pub id: String,
    /// Its epoch.
    pub epoch: i32,
    /// The epoch before, still accepted (its answer may have been lost).
    pub previous_epoch: i32,
    /// Rack, as told.
    pub rack_id: Option<String>,
    /// Client id, for describe.
    pub client_id: String,
    /// Client address, for describe.
    pub client_host: String,
    /// Subscribed topic names.
    pub topics: BTreeSet<String>,
    /// Its partitions at `epoch`.
    pub assigned: Assignment,
    /// When its session ends unless it heartbeats.
    deadline: i64,
}

/// A share group's membership.
#[derive(Debug, Clone)]
pub struct ShareGroup {
    /// Bumped by every change of members, subscriptions or their topics.
    pub group_epoch: i32,
    /// The epoch the current target assignment was computed at.
    pub assignment_epoch: i32,
    /// Members by id.
    members: BTreeMap<String, ShareMember>,
    /// The target assignment by member id.
    target: BTreeMap<String, Assignment>,
    /// The subscribed topics as the target assignment saw them: a topic
    /// created, deleted or grown changes the assignment.
    seen: BTreeMap<String, (TopicId, i32)>,
}

impl Default for ShareGroup {
    fn default() -> Self {
        ShareGroup::new()
    }
}

impl ShareGroup {
    /// An empty group.
    pub fn new() -> ShareGroup {
        ShareGroup {
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }

    /// Whether no member is in the group.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's state name: Empty or Stable (a share group never waits on
    /// its members to reconcile).
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = &ShareMember> {
        self.members.values()
    }

    /// The earliest member session deadline.
    pub fn next_deadline(&self) -> Option<i64> {
        self.members.values().map(|m| m.deadline).min()
    }

    /// Handles a heartbeat against the `topics` that exist now.
    pub fn heartbeat(
        &mut self,
        req: ShareHeartbeat,
        topics: &Topics,
        limits: &ShareGroupLimits,
        now: i64,
    ) -> Result<ShareHeartbeatReply, ConsumerError> {
        if req.member_id.is_empty() {
            return Err(invalid("MemberId can't be empty."));
        }
        if req.member_id.len() > 36 {
            return Err(invalid("MemberId can't be longer than 36 characters."));
        }
        if req.rack_id.as_deref() == Some("") {
            return Err(invalid("RackId can't be empty."));
        }
        if req.member_epoch < -1 {
            return Err(invalid("MemberEpoch is invalid."));
        }
        if req.member_epoch == 0 && req.topic_names.as_ref().is_none_or(|t| t.is_empty()) {
            return Err(invalid(
                "SubscribedTopicNames must be set in first request.",
            ));
        }
        if req.member_epoch == -1 {
            if self.members.remove(&req.member_id).is_none() {
                return Err(ConsumerError::UnknownMemberId);
            }
            self.target.remove(&req.member_id);
            self.rebalance(topics);
            return Ok(ShareHeartbeatReply {
                member_id: req.member_id,
                member_epoch: -1,
                heartbeat_interval_ms: limits.heartbeat_interval_ms,
                assignment: None,
            });
        }
        let mut changed = false;
        if req.member_epoch == 0 {
            if !self.members.contains_key(&req.member_id) {
                if self.members.len() >= limits.members_max {
                    return Err(ConsumerError::GroupMaxSizeReached);
                }
                changed = true;
            }
        } else {
            let Some(m) = self.members.get(&req.member_id) else {
                return Err(ConsumerError::UnknownMemberId);
            };
            if req.member_epoch != m.epoch && req.member_epoch != m.previous_epoch {
                return Err(ConsumerError::FencedMemberEpoch);
            }
        }
        let full = req.topic_names.is_some();
        let m = self
            .members
            .entry(req.member_id.clone())
            .or_insert_with(|| ShareMember {
                id: req.member_id.clone(),
                epoch: 0,
                previous_epoch: 0,
                rack_id: None,
                client_id: String::new(),
                client_host: String::new(),
                topics: BTreeSet::new(),
                assigned: Assignment::new(),
                deadline: now,
            });
        if req.member_epoch == 0 {
            // A rejoin starts over: its assignment is sent again.
            m.epoch = 0;
        }
        m.deadline = now.saturating_add(limits.session_timeout_ms);
        m.rack_id = req.rack_id;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        if let Some(names) = req.topic_names {
            let names: BTreeSet<String> = names.into_iter().collect();
            if names != m.topics {
                m.topics = names;
                changed = true;
            }
        }
        if changed || self.subscribed_topics(topics) != self.seen {
            self.rebalance(topics);
        }
        let m = self
            .members
            .get_mut(&req.member_id)
            .expect("inserted above");
        let mut moved = false;
        if m.epoch != self.assignment_epoch {
            let target = self.target.get(&m.id).cloned().unwrap_or_default();
            moved = target != m.assigned || m.epoch == 0;
            m.previous_epoch = m.epoch;
            m.epoch = self.assignment_epoch;
            m.assigned = target;
        }
        Ok(ShareHeartbeatReply {
            member_id: m.id.clone(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: limits.heartbeat_interval_ms,
            assignment: (req.member_epoch == 0 || full || moved).then(|| m.assigned.clone()),
        })
    }

    /// Removes members whose session ended; returns their ids. The others'
    /// partitions are recomputed over the topics as last seen (a heartbeat
    /// catches any change since).
    pub fn tick(&mut self, now: i64) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
            self.target.remove(id);
        }
        if !gone.is_empty() {
            self.group_epoch += 1;
            self.target = simple_assign(&self.members, &self.target, &self.seen);
            self.assignment_epoch = self.group_epoch;
        }
        gone
    }

    /// The subscribed topics that exist, with their ids and sizes.
    fn subscribed_topics(&self, topics: &Topics) -> BTreeMap<String, (TopicId, i32)> {
        self.members
            .values()
            .flat_map(|m| m.topics.iter())
            .filter_map(|name| {
                topics
                    .get(name)
                    .map(|t| (name.clone(), (t.id, t.partitions)))
            })
            .collect()
    }

    /// A new group epoch and target assignment.
    fn rebalance(&mut self, topics: &Topics) {
        self.group_epoch += 1;
        self.seen = self.subscribed_topics(topics);
        self.target = simple_assign(&self.members, &self.target, &self.seen);
        self.assignment_epoch = self.group_epoch;
    }
}

fn invalid(why: &str) -> ConsumerError {
    ConsumerError::InvalidRequest(why.to_string())
}

/// Kafka's `simple` share assignor: every subscribed partition goes to
/// `ceil(members / partitions)` members (so with more members than
/// partitions they share them), balanced by count, keeping a member's
/// partitions where balance allows.
fn simple_assign(
    members: &BTreeMap<String, ShareMember>,
    current: &BTreeMap<String, Assignment>,
    topics: &BTreeMap<String, (TopicId, i32)>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    let parts: Vec<(&str, TopicId, i32)> = topics
        .iter()
        .flat_map(|(name, (id, n))| (0..*n).map(move |p| (name.as_str(), *id, p)))
        .collect();
    if parts.is_empty() || members.is_empty() {
        return out;
    }
    let sharing = members.len().div_ceil(parts.len());
    let eligible = |topic: &str| -> Vec<&String> {
        members
            .values()
            .filter(|m| m.topics.contains(topic))
            .map(|m| &m.id)
            .collect()
    };
    let wanted: Vec<usize> = parts
        .iter()
        .map(|(t, _, _)| sharing.min(eligible(t).len()))
        .collect();
    let total: usize = wanted.iter().sum();
    let quota = total.div_ceil(members.len());
    let mut load: BTreeMap<&String, usize> = members.keys().map(|id| (id, 0)).collect();
    let mut holders: Vec<BTreeSet<&String>> = vec![BTreeSet::new(); parts.len()];
    // Keep what members hold while they are within their quota.
    for (i, (topic, id, p)) in parts.iter().enumerate() {
        for m in eligible(topic) {
            let held = current
                .get(m)
                .and_then(|a| a.get(id))
                .is_some_and(|ps| ps.contains(p));
            if held && holders[i].len() < wanted[i] && load[m] < quota {
                holders[i].insert(m);
                *load.get_mut(m).expect("every member") += 1;
            }
        }
    }
    // Fill the rest from the least loaded.
    for (i, (topic, _, _)) in parts.iter().enumerate() {
        while holders[i].len() < wanted[i] {
            let Some(m) = eligible(topic)
                .into_iter()
                .filter(|m| !holders[i].contains(m))
                .min_by_key(|m| (load[m], *m))
            else {
                break;
            };
            holders[i].insert(m);
            *load.get_mut(m).expect("every member") += 1;
        }
    }
    for (i, (_, id, p)) in parts.iter().enumerate() {
        for m in &holders[i] {
            out.get_mut(*m)
                .expect("every member")
                .entry(*id)
                .or_default()
                .insert(*p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer::TopicInfo;
    use uuid::Uuid;

    const LIMITS: ShareGroupLimits = ShareGroupLimits {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        members_max: 3,
    };

    fn topics(list: &[(&str, u128, i32)]) -> Topics {
        list.iter()
            .map(|(n, id, p)| {
                (
                    n.to_string(),
                    TopicInfo {
                        id: Uuid::from_u128(*id),
                        partitions: *p,
                    },
                )
            })
            .collect()
    }

    fn join(member: &str, names: &[&str]) -> ShareHeartbeat {
        ShareHeartbeat {
            member_id: member.into(),
            member_epoch: 0,
            topic_names: Some(names.iter().map(|s| s.to_string()).collect()),
            ..ShareHeartbeat::default()
        }
    }

    fn beat(member: &str, epoch: i32) -> ShareHeartbeat {
        ShareHeartbeat {
            member_id: member.into(),
            member_epoch: epoch,
            ..ShareHeartbeat::default()
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn requests_are_validated_as_kafka_does() {
        let t = topics(&[("t", 1, 1)]);
        let mut g = ShareGroup::new();
        let cases = [
            (join("", &["t"]), "MemberId can't be empty."),
            (
                join("m", &[]),
                "SubscribedTopicNames must be set in first request.",
            ),
            (
                beat("m", 0),
                "SubscribedTopicNames must be set in first request.",
            ),
            (beat("m", -2), "MemberEpoch is invalid."),
            (
                ShareHeartbeat {
                    rack_id: Some(String::new()),
                    ..join("m", &["t"])
                },
                "RackId can't be empty.",
            ),
        ];
        for (req, why) in cases {
            match g.heartbeat(req, &t, &LIMITS, 0) {
                Err(ConsumerError::InvalidRequest(m)) => assert_eq!(m, why),
                other => panic!("{why}: {other:?}"),
            }
        }
        assert!(g.is_empty());
    }

    #[test]
    fn members_split_partitions_and_share_them_when_fewer() {
        let t = topics(&[("t", 1, 6)]);
        let mut g = ShareGroup::new();
        let a = g.heartbeat(join("a", &["t"]), &t, &LIMITS, 0).unwrap();
        assert_eq!(
            (a.member_epoch, count(a.assignment.as_ref().unwrap())),
            (1, 6)
        );
        g.heartbeat(join("b", &["t"]), &t, &LIMITS, 0).unwrap();
        g.heartbeat(join("c", &["t"]), &t, &LIMITS, 0).unwrap();
        // a learns of the new epoch on its next heartbeat and jumps to it.
        let a = g.heartbeat(beat("a", 1), &t, &LIMITS, 1).unwrap();
        assert_eq!(a.member_epoch, 3);
        let mut all = BTreeSet::new();
        for m in ["a", "b", "c"] {
            let epoch = g.members[m].epoch;
            let r = g.heartbeat(beat(m, epoch), &t, &LIMITS, 2).unwrap();
            let a = g.members.get(m).unwrap().assigned.clone();
            assert_eq!(count(&a), 2, "{m}: {r:?}");
            for p in &a[&Uuid::from_u128(1)] {
                assert!(all.insert(*p), "partition {p} given twice");
            }
        }
        // One partition, three members: all three share it.
        let one = topics(&[("t", 1, 1)]);
        let mut g = ShareGroup::new();
        for m in ["a", "b", "c"] {
            g.heartbeat(join(m, &["t"]), &one, &LIMITS, 0).unwrap();
        }
        for m in ["a", "b", "c"] {
            let epoch = g.members[m].epoch;
            let r = g.heartbeat(beat(m, epoch), &one, &LIMITS, 0).unwrap();
            assert_eq!(g.members[m].assigned.len(), 1, "{m}: {r:?}");
        }
    }

    #[test]
    fn epochs_fence_and_tolerate_a_lost_answer() {
        let t = topics(&[("t", 1, 2)]);
        let mut g = ShareGroup::new();
        g.heartbeat(join("a", &["t"]), &t, &LIMITS, 0).unwrap();
        g.heartbeat(join("b", &["t"]), &t, &LIMITS, 0).unwrap();
        // a moves from 1 to 2; its answer is lost, so it says 1 again.
        assert_eq!(
            g.heartbeat(beat("a", 1), &t, &LIMITS, 0)
                .unwrap()
                .member_epoch,
            2
        );
        assert_eq!(
            g.heartbeat(beat("a", 1), &t, &LIMITS, 0)
                .unwrap()
                .member_epoch,
            2
        );
        assert!(matches!(
            g.heartbeat(beat("a", 7), &t, &LIMITS, 0),
            Err(ConsumerError::FencedMemberEpoch)
        ));
        assert!(matches!(
            g.heartbeat(beat("zz", 2), &t, &LIMITS, 0),
            Err(ConsumerError::UnknownMemberId)
        ));
        // Unchanged heartbeats carry no assignment.
        assert_eq!(
            g.heartbeat(beat("a", 2), &t, &LIMITS, 0)
                .unwrap()
                .assignment,
            None
        );
        // A fourth member is over the limit of 3 only once 3 are in.
        g.heartbeat(join("c", &["t"]), &t, &LIMITS, 0).unwrap();
        assert!(matches!(
            g.heartbeat(join("d", &["t"]), &t, &LIMITS, 0),
            Err(ConsumerError::GroupMaxSizeReached)
        ));
        // Leaving answers -1 and rebalances.
        let epoch = g.group_epoch;
        assert_eq!(
            g.heartbeat(beat("c", -1), &t, &LIMITS, 0)
                .unwrap()
                .member_epoch,
            -1
        );
        assert_eq!(g.group_epoch, epoch + 1);
    }

    #[test]
    fn leaving_or_expiring_keeps_the_others_partitions_and_topics_count() {
        let t = topics(&[("t", 1, 4)]);
        let mut g = ShareGroup::new();
        for m in ["a", "b"] {
            g.heartbeat(join(m, &["t"]), &t, &LIMITS, 0).unwrap();
        }
        g.heartbeat(beat("a", 1), &t, &LIMITS, 0).unwrap();
        let a_before = g.members["a"].assigned.clone();
        assert_eq!(count(&a_before), 2);
        // b goes silent and expires; a keeps its two and gets b's.
        g.heartbeat(beat("a", 2), &t, &LIMITS, 40_000).unwrap();
        assert_eq!(g.next_deadline(), Some(45_000));
        assert_eq!(g.tick(45_000), vec!["b".to_string()]);
        let r = g.heartbeat(beat("a", 2), &t, &LIMITS, 45_001).unwrap();
        let after = r.assignment.unwrap();
        assert_eq!(count(&after), 4);
        for p in &a_before[&Uuid::from_u128(1)] {
            assert!(after[&Uuid::from_u128(1)].contains(p));
        }
        // A topic growing changes the assignment on the next heartbeat.
        let grown = topics(&[("t", 1, 5)]);
        let r = g.heartbeat(beat("a", 3), &grown, &LIMITS, 45_002).unwrap();
        assert_eq!(count(&r.assignment.unwrap()), 5);
        // A topic that does not exist yet assigns nothing until it does.
        let mut g = ShareGroup::new();
        let r = g.heartbeat(join("a", &["later"]), &t, &LIMITS, 0).unwrap();
        assert_eq!(r.assignment, Some(Assignment::new()));
        let t2 = topics(&[("t", 1, 4), ("later", 2, 1)]);
        let r = g.heartbeat(beat("a", 1), &t2, &LIMITS, 1).unwrap();
        assert_eq!(count(&r.assignment.unwrap()), 1);
    }
}
