//! One consumer group under the KIP-848 protocol (ConsumerGroupHeartbeat), as
//! a pure state machine: time comes in as `now` (ms) and the topics as a
//! snapshot; nothing here does I/O.
//!
//! The model is Kafka's (`GroupMetadataManager`, `CurrentAssignmentBuilder`):
//! the group epoch moves when the membership or the subscribed topics change;
//! the target assignment is recomputed by a server-side assignor whenever the
//! group epoch is ahead of the assignment epoch; each member then moves toward
//! its target on its own heartbeats, revoking first: a partition is given to
//! its new owner only once the old owner has said it no longer owns it, so no
//! partition ever has two owners.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use uuid::Uuid;

use super::embedded;
use super::state::{Group, GroupError, JoinRequest, JoinResult, SyncResult};

/// A topic's id, as assignments name topics.
pub type TopicId = Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// What the state machine needs to know of one existing topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's id.
    pub id: TopicId,
    /// How many partitions it has.
    pub partitions: i32,
}

/// Every existing topic by name, as the broker sees it now.
pub type Topics = BTreeMap<String, TopicInfo>;

/// The server-side assignors (`group.consumer.assignors`), the first the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Broker settings the group enforces.
#[derive(Debug, Clone)]
pub struct ConsumerLimits {
    /// `group.consumer.session.timeout.ms`: a member silent this long is removed.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: told to every member.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: most members in one group.
    pub members_max: usize,
}

impl Default for ConsumerLimits {
    fn default() -> Self {
        ConsumerLimits {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            members_max: 1000,
        }
    }
}

/// Why a heartbeat was refused, each one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerError {
    /// The request breaks a rule of the protocol (the message says which).
    InvalidRequest(String),
    /// The member is not in the group (left, expired, or never joined).
    UnknownMemberId,
    /// The member's epoch is not one the group accepts: it must rejoin.
    FencedMemberEpoch,
    /// Another live member holds the static member's instance id.
    UnreleasedInstanceId,
    /// The instance id is held by a different member id.
    FencedInstanceId,
    /// The requested server assignor does not exist.
    UnsupportedAssignor,
    /// The group has `members_max` members.
    GroupMaxSizeReached,
    /// The subscribed regular expression does not compile.
    InvalidRegularExpression(String),
    /// An offset commit at an epoch other than the member's.
    StaleMemberEpoch,
    /// A classic member (in a group KIP-848 members share) committed at a
    /// generation other than its epoch.
    IllegalGeneration,
    /// A group-level refusal (coordinator stopping, a classic group with
    /// members, too many groups).
    Group(crate::group::GroupError),
}

/// A member's reconciliation state (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// At its target, or moving to it with nothing to wait for.
    Stable,
    /// Must give up partitions before it moves to the new epoch.
    UnrevokedPartitions,
    /// At the new epoch, waiting for partitions others still own.
    UnreleasedPartitions,
}

/// A ConsumerGroupHeartbeat, as the state machine needs it (`None` fields
/// are unchanged since the member's last heartbeat).
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// The request's version (v1+: the client chooses the member id).
    pub version: i16,
    /// The member id (empty on a v0 join: the broker picks `new_member_id`).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for a while.
    pub member_epoch: i32,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// How long the member may take to revoke (-1: unchanged).
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names.
    pub topic_names: Option<Vec<String>>,
    /// Subscribed regular expression (empty: none).
    pub topic_regex: Option<String>,
    /// The server assignor the member asks for.
    pub assignor: Option<String>,
    /// The partitions the member owns now.
    pub owned: Option<Assignment>,
    /// Client id, for describe.
    pub client_id: String,
    /// Client address, for describe.
    pub client_host: String,
    /// The id for a new member when the request carries none (v0).
    pub new_member_id: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member's id.
    pub member_id: String,
    /// Its epoch now.
    pub member_epoch: i32,
    /// When to heartbeat next.
    pub heartbeat_interval_ms: i32,
    /// The partitions it may use now, when they changed or it asked for all.
    pub assignment: Option<Assignment>,
}

/// One member of the group.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Its epoch (-2 while a static member is away).
    pub epoch: i32,
    /// The epoch before the last change (a lost response is forgiven once).
    pub previous_epoch: i32,
    /// Where it is in reconciliation.
    pub state: MemberState,
    /// What it may use now.
    pub assigned: Assignment,
    /// What it must give up before moving on.
    pub pending_revocation: Assignment,
    /// Subscribed topic names.
    pub topic_names: Vec<String>,
    /// Subscribed regular expression, if any.
    pub topic_regex: Option<String>,
    /// `topic_regex` compiled, once, when it changes.
    regex: Option<regex::Regex>,
    /// Its revocation deadline's length.
    pub rebalance_timeout_ms: i32,
    /// Its `group.instance.id`.
    pub instance_id: Option<String>,
    /// Its `client.rack`.
    pub rack_id: Option<String>,
    /// The assignor it asked for.
    pub assignor: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// When it is removed unless it heartbeats.
    session_deadline: i64,
    /// When it is removed unless it has revoked, and the epoch it was at.
    rebalance_deadline: Option<(i64, i32)>,
    /// Set for a member using the classic protocol (JoinGroup, SyncGroup,
    /// Heartbeat) in a group KIP-848 members use too.
    pub classic: Option<ClassicMeta>,
}

/// What a classic-protocol member of a KIP-848 group keeps (Kafka's
/// `classicMemberMetadata`).
#[derive(Debug, Clone)]
pub struct ClassicMeta {
    /// Its session timeout, from its JoinGroup.
    pub session_timeout_ms: i32,
    /// (assignor name, subscription) in its order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// Told to rejoin: removed unless it joins by then.
    join_deadline: Option<i64>,
    /// Joined: removed unless it syncs by then.
    sync_deadline: Option<i64>,
}

impl ClassicMeta {
    /// The protocol it prefers (its JoinGroup answers name it).
    fn first(&self) -> (&str, &[u8]) {
        self.protocols
            .first()
            .map_or(("", &[][..]), |(n, m)| (n.as_str(), &m[..]))
    }
}

impl Member {
    /// A member joining now (epoch 0, nothing assigned), of either protocol:
    /// the join fills in its subscription and the rest.
    fn joining(id: &str, rebalance_timeout_ms: i32) -> Member {
        Member {
            id: id.to_string(),
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            topic_names: Vec::new(),
            topic_regex: None,
            regex: None,
            rebalance_timeout_ms,
            instance_id: None,
            rack_id: None,
            assignor: None,
            client_id: String::new(),
            client_host: String::new(),
            session_deadline: 0,
            rebalance_deadline: None,
            classic: None,
        }
    }
}

/// A group of KIP-848 consumers.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    /// The group id.
    pub id: String,
    /// Moves on every membership or subscription change.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// Members by id.
    members: BTreeMap<String, Member>,
    /// Each member's target assignment.
    target: BTreeMap<String, Assignment>,
    /// Who owns each partition (assigned or pending revocation), and at which epoch.
    owners: HashMap<(TopicId, i32), String>,
    /// The subscribed topics as they were when the target was computed.
    subscribed: BTreeMap<String, TopicInfo>,
}

/// Member ids of members removed by [`ConsumerGroup::tick`].
pub type Expired = Vec<String>;

impl ConsumerGroup {
    /// An empty group.
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            owners: HashMap::new(),
            subscribed: BTreeMap::new(),
        }
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// A member's target assignment.
    pub fn target_of(&self, member_id: &str) -> Option<&Assignment> {
        self.target.get(member_id)
    }

    /// Kafka's state name.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.state != MemberState::Stable || m.epoch != self.assignment_epoch)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor the group uses: the one most members ask for, else the default.
    pub fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                if let Some(known) = ASSIGNORS.iter().find(|k| **k == a.as_str()) {
                    *votes.entry(known).or_default() += 1;
                }
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map_or(ASSIGNORS[0], |(name, _)| {
                ASSIGNORS
                    .iter()
                    .find(|k| **k == name)
                    .copied()
                    .unwrap_or(ASSIGNORS[0])
            })
    }

    /// The committing member's epoch check (OffsetCommit v9+): the member
    /// must exist and commit at its current epoch.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), ConsumerError> {
        if epoch < 0 && member_id.is_empty() && self.members.is_empty() {
            return Ok(());
        }
        let m = self
            .members
            .get(member_id)
            .ok_or(ConsumerError::UnknownMemberId)?;
        if m.epoch != epoch {
            return Err(if m.classic.is_some() {
                ConsumerError::IllegalGeneration
            } else {
                ConsumerError::StaleMemberEpoch
            });
        }
        Ok(())
    }

    /// The earliest deadline of any member (session or revocation).
    pub fn next_deadline(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| {
                let classic = m.classic.as_ref();
                std::iter::once(m.session_deadline)
                    .chain(m.rebalance_deadline.map(|(at, _)| at))
                    .chain(classic.and_then(|c| c.join_deadline))
                    .chain(classic.and_then(|c| c.sync_deadline))
            })
            .min()
    }

    /// Removes the members whose session or revocation deadline has passed.
    pub fn tick(&mut self, now: i64) -> Expired {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                let classic = m.classic.as_ref();
                m.session_deadline <= now
                    || m.rebalance_deadline
                        .is_some_and(|(at, epoch)| at <= now && epoch == m.epoch)
                    || classic
                        .and_then(|c| c.join_deadline)
                        .is_some_and(|at| at <= now)
                    || classic
                        .and_then(|c| c.sync_deadline)
                        .is_some_and(|at| at <= now)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        gone
    }

    /// Serves one heartbeat at `now` against the `topics` that exist.
    pub fn heartbeat(
        &mut self,
        req: Heartbeat,
        topics: &Topics,
        limits: &ConsumerLimits,
        now: i64,
    ) -> Result<HeartbeatReply, ConsumerError> {
        validate(&req)?;
        if req.member_epoch < 0 {
            return self.leave(&req);
        }
        let member_id = if req.member_id.is_empty() {
            req.new_member_id.clone()
        } else {
            req.member_id.clone()
        };
        let full = req.rebalance_timeout_ms != -1
            && (req.topic_names.is_some() || req.topic_regex.is_some())
            && req.owned.is_some();
        let mut bump = self.group_epoch == 0;
        // A new regex is compiled once, before anything changes.
        let new_regex = match req.topic_regex.as_deref() {
            Some(re)
                if !re.is_empty()
                    && self
                        .members
                        .get(&member_id)
                        .and_then(|m| m.topic_regex.as_deref())
                        != Some(re) =>
            {
                Some(compile(re)?)
            }
            _ => None,
        };

        // The member: new, replacing a static member, or existing.
        if !self.members.contains_key(&member_id) {
            if req.member_epoch != 0 {
                return Err(ConsumerError::UnknownMemberId);
            }
            let replaced = match &req.instance_id {
                Some(instance) => self.static_holder(instance),
                None => None,
            };
            match replaced {
                // A classic static member is replaced at once (Kafka checks
                // only KIP-848 holders: a classic client sends no leave).
                Some(old)
                    if self.members[&old].epoch != -2 && self.members[&old].classic.is_none() =>
                {
                    return Err(ConsumerError::UnreleasedInstanceId);
                }
                Some(old) => self.replace(&old, &member_id),
                None => {
                    if self.members.len() >= limits.members_max {
                        return Err(ConsumerError::GroupMaxSizeReached);
                    }
                    let mut m = Member::joining(&member_id, req.rebalance_timeout_ms);
                    m.instance_id = req.instance_id.clone();
                    self.members.insert(member_id.clone(), m);
                    bump = true;
                }
            }
        } else {
            let m = &self.members[&member_id];
            if let (Some(instance), Some(mine)) = (&req.instance_id, &m.instance_id) {
                if instance != mine {
                    return Err(ConsumerError::FencedInstanceId);
                }
            }
            // Epoch 0 from a known member is a rejoin (KAFKA-19233): it keeps
            // what it has and is reconciled from there.
            if req.member_epoch != 0 && req.member_epoch != m.epoch {
                let lost_response = req.member_epoch == m.previous_epoch
                    && req
                        .owned
                        .as_ref()
                        .is_some_and(|o| is_subset(o, &m.assigned));
                if !lost_response {
                    return Err(ConsumerError::FencedMemberEpoch);
                }
            }
        }

        let m = self.members.get_mut(&member_id).expect("member present");
        // A member heartbeating this way uses the KIP-848 protocol (it may
        // have replaced a classic static member).
        if m.classic.take().is_some() {
            bump = true;
        }
        if req.member_epoch == 0 && m.epoch == -2 {
            m.epoch = 0;
        }
        if let Some(names) = &req.topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != m.topic_names {
                m.topic_names = names;
                bump = true;
            }
        }
        if let Some(re) = &req.topic_regex {
            let re = Some(re.clone()).filter(|r| !r.is_empty());
            if re != m.topic_regex {
                m.topic_regex = re;
                m.regex = new_regex;
                bump = true;
            }
        }
        if let Some(a) = &req.assignor {
            if m.assignor.as_ref() != Some(a) {
                m.assignor = Some(a.clone());
                bump = true;
            }
        }
        if req.rebalance_timeout_ms != -1 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if req.instance_id.is_some() {
            m.instance_id = req.instance_id.clone();
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id.clone();
        }
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_deadline = now.saturating_add(i64::from(limits.session_timeout_ms));

        // Topics created, deleted or grown since the target was computed.
        let subscribed = self.subscribed_topics(topics);
        if subscribed != self.subscribed {
            self.subscribed = subscribed;
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target();
        }

        let before = self.members[&member_id].assigned.clone();
        self.reconcile(&member_id, req.owned.as_ref(), now);
        let m = &self.members[&member_id];
        let changed = m.assigned != before;
        Ok(HeartbeatReply {
            member_id: member_id.clone(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: limits.heartbeat_interval_ms,
            assignment: (req.member_epoch == 0 || full || changed).then(|| m.assigned.clone()),
        })
    }

    /// A leave (-1) or a static member's temporary leave (-2).
    fn leave(&mut self, req: &Heartbeat) -> Result<HeartbeatReply, ConsumerError> {
        let member_id = match &req.instance_id {
            Some(instance) => {
                let holder = self
                    .static_holder(instance)
                    .ok_or(ConsumerError::UnknownMemberId)?;
                if holder != req.member_id {
                    return Err(ConsumerError::FencedInstanceId);
                }
                holder
            }
            None => {
                if !self.members.contains_key(&req.member_id) {
                    return Err(ConsumerError::UnknownMemberId);
                }
                req.member_id.clone()
            }
        };
        if req.member_epoch == -2 {
            // Kept with its partitions until its session ends or it returns.
            let m = self.members.get_mut(&member_id).expect("member present");
            m.epoch = -2;
            m.pending_revocation.clear();
            m.rebalance_deadline = None;
        } else {
            self.remove(&member_id);
        }
        Ok(HeartbeatReply {
            member_id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// The member holding a static instance id.
    fn static_holder(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }

    /// A static member returning under a new member id takes over the old
    /// one's subscription and assignments.
    fn replace(&mut self, old: &str, new: &str) {
        let Some(mut m) = self.members.remove(old) else {
            return;
        };
        m.id = new.to_string();
        m.epoch = 0;
        m.previous_epoch = 0;
        for owner in self.owners.values_mut() {
            if owner == old {
                *owner = new.to_string();
            }
        }
        if let Some(t) = self.target.remove(old) {
            self.target.insert(new.to_string(), t);
        }
        self.members.insert(new.to_string(), m);
    }

    /// Removes a member: its partitions are free at once and the group epoch
    /// moves so the others share them.
    fn remove(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_none() {
            return;
        }
        self.target.remove(member_id);
        self.owners.retain(|_, owner| owner != member_id);
        self.group_epoch += 1;
        if self.members.is_empty() {
            // Nothing to assign: the (empty) target is current.
            self.assignment_epoch = self.group_epoch;
            self.subscribed.clear();
        }
    }

    /// The existing topics some member subscribes to, by name or regex.
    fn subscribed_topics(&self, topics: &Topics) -> BTreeMap<String, TopicInfo> {
        let mut regexes: Vec<&regex::Regex> = self
            .members
            .values()
            .filter_map(|m| m.regex.as_ref())
            .collect();
        regexes.sort_by_key(|r| r.as_str());
        regexes.dedup_by_key(|r| r.as_str());
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for name in &m.topic_names {
                if let Some(t) = topics.get(name) {
                    out.insert(name.clone(), *t);
                }
            }
        }
        if !regexes.is_empty() {
            for (name, t) in topics {
                if regexes.iter().any(|r| r.is_match(name)) {
                    out.insert(name.clone(), *t);
                }
            }
        }
        out
    }

    /// The topics one member subscribes to, among the group's subscribed ones.
    fn member_topics(&self, m: &Member) -> BTreeSet<String> {
        self.subscribed
            .keys()
            .filter(|name| {
                m.topic_names.iter().any(|n| n == *name)
                    || m.regex.as_ref().is_some_and(|r| r.is_match(name))
            })
            .cloned()
            .collect()
    }

    /// Recomputes every member's target with the group's assignor.
    fn compute_target(&mut self) {
        let subs: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), self.member_topics(m)))
            .collect();
        let target = match self.assignor() {
            "range" => assign_range(&self.members, &subs, &self.subscribed),
            _ => assign_uniform(&subs, &self.subscribed, &self.target),
        };
        self.target = target;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves a member toward its target (Kafka's `CurrentAssignmentBuilder`):
    /// partitions it must lose are revoked first, and it is given partitions
    /// only once no other member owns them.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: i64) {
        let target_epoch = self.assignment_epoch;
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let m = self.members[member_id].clone();
        let next = match m.state {
            MemberState::Stable if m.epoch == target_epoch => return,
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                self.next_assignment(&m, m.epoch, &target, target_epoch, owned)
            }
            MemberState::UnrevokedPartitions => {
                let still_owns = owned.is_none_or(|o| intersects(o, &m.pending_revocation));
                if still_owns {
                    return;
                }
                self.next_assignment(&m, m.epoch + 1, &target, target_epoch, owned)
            }
        };
        let (state, epoch, assigned, pending) = next;
        // Owners: what it keeps or waits to revoke stays its; what it got is its.
        let mut mm = m;
        for (t, ps) in mm.assigned.iter().chain(mm.pending_revocation.iter()) {
            for p in ps {
                self.owners.remove(&(*t, *p));
            }
        }
        for (t, ps) in assigned.iter().chain(pending.iter()) {
            for p in ps {
                self.owners.insert((*t, *p), member_id.to_string());
            }
        }
        if epoch != mm.epoch {
            mm.previous_epoch = mm.epoch;
            mm.epoch = epoch;
        }
        mm.state = state;
        mm.assigned = assigned;
        mm.pending_revocation = pending;
        mm.rebalance_deadline = match mm.rebalance_deadline {
            _ if state != MemberState::UnrevokedPartitions || mm.classic.is_some() => None,
            Some((at, e)) if e == mm.epoch => Some((at, e)),
            _ => {
                let timeout = i64::from(mm.rebalance_timeout_ms.max(0));
                Some((now.saturating_add(timeout), mm.epoch))
            }
        };
        self.members.insert(member_id.to_string(), mm);
    }

    /// The next (state, epoch, assigned, pending revocation) of `m` toward
    /// `target`.
    fn next_assignment(
        &self,
        m: &Member,
        epoch: i32,
        target: &Assignment,
        target_epoch: i32,
        owned: Option<&Assignment>,
    ) -> (MemberState, i32, Assignment, Assignment) {
        let mut keep = Assignment::new();
        let mut revoke = Assignment::new();
        let mut pending_assign = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<TopicId> = target.keys().chain(m.assigned.keys()).copied().collect();
        for t in topics {
            let empty = BTreeSet::new();
            let want = target.get(&t).unwrap_or(&empty);
            let has = m.assigned.get(&t).unwrap_or(&empty);
            let k: BTreeSet<i32> = has.intersection(want).copied().collect();
            let r: BTreeSet<i32> = has.difference(&k).copied().collect();
            let mut a = BTreeSet::new();
            for p in want.difference(&k) {
                let other = self.owners.get(&(t, *p)).is_some_and(|o| o != &m.id);
                if other {
                    unreleased = true;
                } else {
                    a.insert(*p);
                }
            }
            if !k.is_empty() {
                keep.insert(t, k);
            }
            if !r.is_empty() {
                revoke.insert(t, r);
            }
            if !a.is_empty() {
                pending_assign.insert(t, a);
            }
        }
        let owns_revoked = owned.is_none_or(|o| intersects(o, &revoke));
        if !revoke.is_empty() && owns_revoked {
            return (MemberState::UnrevokedPartitions, epoch, keep, revoke);
        }
        if !pending_assign.is_empty() {
            let mut assigned = keep;
            for (t, ps) in pending_assign {
                assigned.entry(t).or_default().extend(ps);
            }
            let state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            return (state, target_epoch, assigned, Assignment::new());
        }
        let state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        (state, target_epoch, keep, Assignment::new())
    }
}

/// Partitions by topic name as topic ids (topics that do not exist dropped).
fn ids_of(parts: &[(String, Vec<i32>)], topics: &Topics) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in parts {
        if let Some(t) = topics.get(name) {
            out.entry(t.id).or_default().extend(ps.iter().copied());
        }
    }
    out
}

/// The classic protocol inside a KIP-848 group (Kafka's online migration,
/// `group.consumer.migration.policy=bidirectional`): a classic group with
/// members becomes a KIP-848 group when a KIP-848 member joins, its classic
/// members staying on JoinGroup/SyncGroup/Heartbeat, each with its own
/// generation (its member epoch) and its partitions from the server-side
/// assignor; when only classic members are left it becomes a classic group
/// again.
impl ConsumerGroup {
    /// The KIP-848 group a classic group with members becomes (Kafka's
    /// `fromClassicGroup`): every member Stable at the generation with the
    /// partitions it was assigned. Refused (why) if the group does not use
    /// the consumer protocol, or a member's subscription or assignment does
    /// not parse or carries assignor data a server assignment would lose.
    pub fn from_classic(
        g: &Group,
        topics: &Topics,
        now: i64,
    ) -> Result<ConsumerGroup, &'static str> {
        if g.protocol_type.as_deref() != Some("consumer") {
            return Err("the classic group does not use the consumer protocol");
        }
        let mut c = ConsumerGroup::new(&g.id);
        c.group_epoch = g.generation;
        c.assignment_epoch = g.generation;
        for m in g.members.values() {
            let chosen = g
                .protocol
                .as_deref()
                .and_then(|p| m.metadata(p))
                .or_else(|| m.protocols.first().map(|(_, md)| md))
                .ok_or("a member has no subscription")?;
            let sub =
                embedded::parse_subscription(chosen).ok_or("a subscription does not parse")?;
            let a =
                embedded::parse_assignment(&m.assignment).ok_or("an assignment does not parse")?;
            if a.user_data {
                return Err(
                    "an assignment carries assignor user data a server assignment would lose",
                );
            }
            let assigned = ids_of(&a.partitions, topics);
            let mut names = sub.topics.clone();
            names.sort();
            names.dedup();
            for (t, ps) in &assigned {
                for p in ps {
                    c.owners.insert((*t, *p), m.id.clone());
                }
            }
            c.target.insert(m.id.clone(), assigned.clone());
            c.members.insert(
                m.id.clone(),
                Member {
                    id: m.id.clone(),
                    epoch: g.generation,
                    previous_epoch: g.generation,
                    state: MemberState::Stable,
                    assigned,
                    pending_revocation: Assignment::new(),
                    topic_names: names,
                    topic_regex: None,
                    regex: None,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    instance_id: m.instance_id.clone(),
                    rack_id: sub.rack_id,
                    assignor: None,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_deadline: now.saturating_add(i64::from(m.session_timeout_ms)),
                    rebalance_deadline: None,
                    classic: Some(ClassicMeta {
                        session_timeout_ms: m.session_timeout_ms,
                        protocols: m.protocols.clone(),
                        join_deadline: None,
                        sync_deadline: None,
                    }),
                },
            );
        }
        c.subscribed = c.subscribed_topics(topics);
        Ok(c)
    }

    /// Whether members are left and every one uses the classic protocol
    /// (the group then becomes a classic group again).
    pub fn only_classic_members(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())
    }

    /// The classic group the remaining (classic) members form, Stable at
    /// the generation they are at, each with its target partitions, about
    /// to rebalance as classic groups do (Kafka's `fromConsumerGroup`).
    pub fn to_classic(&self, now: i64) -> Group {
        let generation = self.members.values().map(|m| m.epoch).max().unwrap_or(0);
        // The protocol every member supports, in the first member's order.
        let protocol = self.members.values().next().and_then(|first| {
            first
                .classic
                .as_ref()?
                .protocols
                .iter()
                .find_map(|(name, _)| {
                    self.members
                        .values()
                        .all(|m| {
                            m.classic
                                .as_ref()
                                .is_some_and(|c| c.protocols.iter().any(|(n, _)| n == name))
                        })
                        .then(|| name.clone())
                })
        });
        let members = self
            .members
            .values()
            .filter_map(|m| {
                let c = m.classic.as_ref()?;
                let name = protocol.clone().unwrap_or_else(|| c.first().0.to_string());
                let metadata = c
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or_else(Bytes::new, |(_, md)| md.clone());
                let target = self.target.get(&m.id).cloned().unwrap_or_default();
                let assignment = embedded::encode_assignment(
                    embedded::version_of(&metadata),
                    &self.names(&target),
                );
                let mut restored = Group::restored_member(
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    c.session_timeout_ms,
                    m.rebalance_timeout_ms,
                    "consumer".into(),
                    (name, metadata),
                    assignment,
                );
                // Every protocol it supports, so later joiners are checked
                // against all of them, as in any classic group.
                if !c.protocols.is_empty() {
                    restored.protocols = c.protocols.clone();
                }
                Some(restored)
            })
            .collect();
        let leader = self.members.keys().next().cloned();
        Group::restore(
            &self.id,
            now,
            generation,
            Some("consumer".into()),
            protocol,
            leader,
            now,
            members,
        )
    }

    /// An assignment with topic names (topics no longer subscribed dropped).
    fn names(&self, a: &Assignment) -> Vec<(String, Vec<i32>)> {
        let by_id: HashMap<TopicId, &str> = self
            .subscribed
            .iter()
            .map(|(name, t)| (t.id, name.as_str()))
            .collect();
        a.iter()
            .filter_map(|(id, ps)| {
                by_id
                    .get(id)
                    .map(|name| (name.to_string(), ps.iter().copied().collect()))
            })
            .collect()
    }

    /// JoinGroup from a classic member (Kafka's
    /// `classicGroupJoinToConsumerGroup`): answered at once, never parked;
    /// every classic member is a follower whose generation is its epoch.
    pub fn classic_join(
        &mut self,
        req: &JoinRequest,
        topics: &Topics,
        limits: &ConsumerLimits,
        now: i64,
    ) -> JoinResult {
        let fail = |member: &str, e| JoinResult {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member.to_string(),
            members: Vec::new(),
        };
        let member_id = if req.member_id.is_empty() {
            req.new_member_id.clone()
        } else {
            req.member_id.clone()
        };
        let known = self.members.contains_key(&member_id);
        let statics = req
            .instance_id
            .as_deref()
            .and_then(|i| self.static_holder(i));
        if !known && statics.is_none() && self.members.len() >= limits.members_max {
            return fail(&req.member_id, GroupError::GroupMaxSizeReached);
        }
        // The consumer protocol, and an assignor name every classic member has.
        let others: Vec<&ClassicMeta> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .filter_map(|m| m.classic.as_ref())
            .collect();
        let shared = req.protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|c| c.protocols.iter().any(|(n, _)| n == name))
        });
        if req.protocol_type != "consumer" || req.protocols.is_empty() || !shared {
            return fail(&req.member_id, GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() && req.require_known_member_id && req.instance_id.is_none() {
            return fail(&member_id, GroupError::MemberIdRequired);
        }
        let Some(sub) = embedded::parse_subscription(&req.protocols[0].1) else {
            return fail(&req.member_id, GroupError::InconsistentGroupProtocol);
        };
        let mut bump = false;
        match statics {
            // A new process of a static member takes its place...
            Some(old) if old != member_id && req.member_id.is_empty() => {
                self.replace(&old, &member_id)
            }
            // ...but a stale one (another member id) is fenced.
            Some(old) if old != member_id => {
                return fail(&req.member_id, GroupError::FencedInstanceId);
            }
            // A static member id the group does not know.
            None if req.instance_id.is_some() && !req.member_id.is_empty() => {
                return fail(&req.member_id, GroupError::UnknownMemberId);
            }
            _ => {}
        }
        if !self.members.contains_key(&member_id) {
            self.members.insert(
                member_id.clone(),
                Member::joining(&member_id, req.rebalance_timeout_ms),
            );
            bump = true;
        }
        let m = self.members.get_mut(&member_id).expect("member present");
        let mut names = sub.topics.clone();
        names.sort();
        names.dedup();
        if names != m.topic_names {
            m.topic_names = names;
            bump = true;
        }
        // A classic member subscribes by names only (KAFKA-19720), and
        // asks for no server assignor.
        if m.topic_regex.take().is_some() || m.assignor.take().is_some() {
            m.regex = None;
            bump = true;
        }
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.instance_id = req.instance_id.clone();
        m.rack_id = sub.rack_id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_deadline = now.saturating_add(i64::from(req.session_timeout_ms));
        m.classic = Some(ClassicMeta {
            session_timeout_ms: req.session_timeout_ms,
            protocols: req.protocols.clone(),
            join_deadline: None,
            sync_deadline: Some(now.saturating_add(i64::from(req.rebalance_timeout_ms.max(0)))),
        });
        let subscribed = self.subscribed_topics(topics);
        if subscribed != self.subscribed {
            self.subscribed = subscribed;
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target();
        }
        let owned = ids_of(&sub.owned, topics);
        self.reconcile(&member_id, Some(&owned), now);
        let m = &self.members[&member_id];
        JoinResult {
            error: None,
            generation: m.epoch,
            protocol_type: Some("consumer".into()),
            protocol_name: Some(req.protocols[0].0.clone()),
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }

    /// The classic member `member_id` (by instance id for a static one).
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: &Option<String>,
    ) -> Result<&Member, GroupError> {
        let m = match instance_id {
            Some(i) => {
                let holder = self.static_holder(i).ok_or(GroupError::UnknownMemberId)?;
                if holder != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
                &self.members[&holder]
            }
            None => self
                .members
                .get(member_id)
                .ok_or(GroupError::UnknownMemberId)?,
        };
        if m.classic.is_none() {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(m)
    }

    /// Tells a classic member to rejoin, arming its join deadline once.
    fn rejoin(&mut self, member_id: &str, now: i64) -> GroupError {
        if let Some(m) = self.members.get_mut(member_id) {
            let timeout = i64::from(m.rebalance_timeout_ms.max(0));
            if let Some(c) = m.classic.as_mut() {
                c.join_deadline.get_or_insert(now.saturating_add(timeout));
            }
        }
        GroupError::RebalanceInProgress
    }

    /// SyncGroup from a classic member: the partitions it may use now
    /// (Kafka's `classicGroupSyncToConsumerGroup`).
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        now: i64,
    ) -> SyncResult {
        let fail = |e| SyncResult {
            error: Some(e),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        };
        let m = match self.classic_member(member_id, instance_id) {
            Ok(m) => m,
            Err(e) => return fail(e),
        };
        if generation != m.epoch {
            return fail(GroupError::IllegalGeneration);
        }
        let c = m.classic.as_ref().expect("classic member");
        let (first, metadata) = c.first();
        if protocol.0.is_some_and(|t| t != "consumer") || protocol.1.is_some_and(|n| n != first) {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        if self.group_epoch > m.epoch && m.state != MemberState::UnrevokedPartitions {
            let id = m.id.clone();
            return fail(self.rejoin(&id, now));
        }
        let name = first.to_string();
        let assignment =
            embedded::encode_assignment(embedded::version_of(metadata), &self.names(&m.assigned));
        let id = m.id.clone();
        let m = self.members.get_mut(&id).expect("member present");
        let c = m.classic.as_mut().expect("classic member");
        c.sync_deadline = None;
        m.session_deadline = now.saturating_add(i64::from(c.session_timeout_ms));
        SyncResult {
            error: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some(name),
            assignment,
        }
    }

    /// Heartbeat from a classic member: REBALANCE_IN_PROGRESS when the
    /// group moved on, it has partitions to give up, or partitions it waits
    /// for are free (Kafka's `classicGroupHeartbeatToConsumerGroup`).
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        let m = self.classic_member(member_id, instance_id)?;
        if generation != m.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        let waiting = self.target.get(&m.id).is_some_and(|t| {
            t.iter().any(|(topic, ps)| {
                ps.iter().any(|p| {
                    !m.assigned.get(topic).is_some_and(|a| a.contains(p))
                        && self.owners.get(&(*topic, *p)).is_some_and(|o| o != &m.id)
                })
            })
        });
        let rejoin = m.epoch < self.group_epoch
            || m.state == MemberState::UnrevokedPartitions
            || (m.state == MemberState::UnreleasedPartitions && !waiting);
        let id = m.id.clone();
        let mm = self.members.get_mut(&id).expect("member present");
        let timeout = mm.classic.as_ref().map_or(0, |c| c.session_timeout_ms);
        mm.session_deadline = now.saturating_add(i64::from(timeout));
        if rejoin {
            return Err(self.rejoin(&id, now));
        }
        Ok(())
    }

    /// LeaveGroup: removes a member (of either protocol, as Kafka's admin
    /// removal may name KIP-848 members too).
    pub fn classic_leave(
        &mut self,
        member_id: &str,
        instance_id: &Option<String>,
    ) -> Result<(), GroupError> {
        let id = match instance_id {
            Some(i) => {
                let holder = self.static_holder(i).ok_or(GroupError::UnknownMemberId)?;
                if !member_id.is_empty() && holder != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
                holder
            }
            None => {
                if !self.members.contains_key(member_id) {
                    return Err(GroupError::UnknownMemberId);
                }
                member_id.to_string()
            }
        };
        self.remove(&id);
        Ok(())
    }
}

/// The checks Kafka makes before the state machine
/// (`throwIfConsumerGroupHeartbeatRequestIsInvalid`).
fn validate(req: &Heartbeat) -> Result<(), ConsumerError> {
    let invalid = |m: &str| Err(ConsumerError::InvalidRequest(m.to_string()));
    if req.member_id.trim().is_empty()
        && (req.version >= 1 || req.member_epoch > 0 || req.member_epoch == -1)
    {
        return invalid("MemberId can't be empty.");
    }
    if req
        .instance_id
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return invalid("RackId can't be empty.");
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if !req
                .owned
                .as_ref()
                .is_some_and(|o| o.values().all(BTreeSet::is_empty))
            {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if req.topic_names.is_none() && req.topic_regex.is_none() {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        -2 if req.instance_id.is_none() => {
            return invalid("InstanceId can't be null.");
        }
        e if e < -2 => return invalid("MemberEpoch is invalid."),
        _ => {}
    }
    if let Some(a) = &req.assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Err(ConsumerError::UnsupportedAssignor);
        }
    }
    Ok(())
}

/// A subscription regex, matched against whole topic names (RE2 syntax, as
/// Kafka's RE2/J with `matches()`).
fn compile(re: &str) -> Result<regex::Regex, ConsumerError> {
    regex::Regex::new(&format!("^(?:{re})$"))
        .map_err(|e| ConsumerError::InvalidRegularExpression(e.to_string()))
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|bs| ps.is_subset(bs)))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|bs| !ps.is_disjoint(bs)))
}

/// The `uniform` assignor: every member gets within one partition of any
/// other member that could take the same partitions, and partitions stay
/// where the previous target put them unless balance needs them to move.
fn assign_uniform(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicInfo>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    // Each partition's eligible members.
    let mut eligible: BTreeMap<(TopicId, i32), Vec<&String>> = BTreeMap::new();
    for (name, t) in topics {
        let members: Vec<&String> = subs
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        for p in 0..t.partitions {
            eligible.insert((t.id, p), members.clone());
        }
    }
    let mut owner: BTreeMap<(TopicId, i32), String> = BTreeMap::new();
    let mut load: BTreeMap<String, usize> = subs.keys().map(|m| (m.clone(), 0)).collect();
    // Sticky: what the previous target gave a member it may still have.
    for (m, a) in previous {
        if !load.contains_key(m) {
            continue;
        }
        for (t, ps) in a {
            for p in ps {
                if eligible.get(&(*t, *p)).is_some_and(|e| e.contains(&m)) {
                    owner.insert((*t, *p), m.clone());
                    *load.get_mut(m).expect("member") += 1;
                }
            }
        }
    }
    // The rest, most constrained first, each to its least-loaded candidate.
    let mut free: Vec<(&(TopicId, i32), &Vec<&String>)> = eligible
        .iter()
        .filter(|(k, _)| !owner.contains_key(*k))
        .collect();
    free.sort_by_key(|(k, e)| (e.len(), **k));
    for (k, e) in free {
        let m = e
            .iter()
            .min_by_key(|m| (load[**m], (**m).clone()))
            .expect("eligible is not empty");
        owner.insert(*k, (*m).clone());
        *load.get_mut(*m).expect("member") += 1;
    }
    // Balance: move partitions from the most loaded member to a candidate
    // with at least two fewer, until none can move.
    let mut moves = eligible.len() * subs.len().max(1);
    while moves > 0 {
        moves -= 1;
        let mut best: Option<((TopicId, i32), String)> = None;
        let mut gain = 1;
        for (k, from) in owner.iter().rev() {
            for to in &eligible[k] {
                let d = load[from] as i64 - load[*to] as i64;
                if d > gain {
                    gain = d;
                    best = Some((*k, (*to).clone()));
                }
            }
        }
        let Some((k, to)) = best else {
            break;
        };
        let from = owner.insert(k, to.clone()).expect("owned");
        *load.get_mut(&from).expect("member") -= 1;
        *load.get_mut(&to).expect("member") += 1;
    }
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for ((t, p), m) in owner {
        out.entry(m).or_default().entry(t).or_default().insert(p);
    }
    out
}

/// The `range` assignor: per topic, its members in order (static members
/// by instance id first, then by member id) each take a contiguous range,
/// the first ones one more when the partitions do not divide evenly.
fn assign_range(
    members: &BTreeMap<String, Member>,
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicInfo>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (name, t) in topics {
        let mut ms: Vec<&Member> = members
            .values()
            .filter(|m| subs.get(&m.id).is_some_and(|s| s.contains(name)))
            .collect();
        if ms.is_empty() {
            continue;
        }
        ms.sort_by(|a, b| match (&a.instance_id, &b.instance_id) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.id.cmp(&b.id),
        });
        let n = ms.len() as i32;
        let (quota, extra) = (t.partitions / n, t.partitions % n);
        let mut start = 0;
        for (i, m) in ms.iter().enumerate() {
            let len = quota + i32::from((i as i32) < extra);
            if len > 0 {
                out.get_mut(&m.id)
                    .expect("member")
                    .insert(t.id, (start..start + len).collect());
            }
            start += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn t(id: u128) -> TopicId {
        Uuid::from_u128(id)
    }

    fn parts(a: &Assignment) -> Vec<i32> {
        a.values().flatten().copied().collect()
    }

    fn join(member: &str, names: &[&str]) -> Heartbeat {
        Heartbeat {
            version: 1,
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 300_000,
            topic_names: Some(names.iter().map(|s| s.to_string()).collect()),
            topic_regex: Some(String::new()),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        }
    }

    fn beat(member: &str, epoch: i32, owned: Option<&Assignment>) -> Heartbeat {
        Heartbeat {
            version: 1,
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: owned.cloned(),
            ..Heartbeat::default()
        }
    }

    /// A client as librdkafka behaves: it heartbeats with its epoch, takes
    /// any assignment it is given and acknowledges it on the next heartbeat.
    struct Client {
        id: String,
        epoch: i32,
        owned: Assignment,
        ack: bool,
    }

    impl Client {
        fn join(g: &mut ConsumerGroup, id: &str, ts: &Topics, now: i64) -> Client {
            let r = g
                .heartbeat(join(id, &["t"]), ts, &ConsumerLimits::default(), now)
                .unwrap();
            let mut c = Client {
                id: id.into(),
                epoch: r.member_epoch,
                owned: Assignment::new(),
                ack: false,
            };
            c.take(r);
            c
        }
        fn take(&mut self, r: HeartbeatReply) {
            self.epoch = r.member_epoch;
            if let Some(a) = r.assignment {
                if a != self.owned {
                    self.owned = a;
                    self.ack = true;
                }
            }
        }
        fn beat(&mut self, g: &mut ConsumerGroup, ts: &Topics, now: i64) {
            let owned = self.ack.then(|| self.owned.clone());
            self.ack = false;
            let r = g
                .heartbeat(
                    beat(&self.id, self.epoch, owned.as_ref()),
                    ts,
                    &ConsumerLimits::default(),
                    now,
                )
                .unwrap();
            self.take(r);
        }
    }

    /// No partition is ever owned by two clients, whatever they believe.
    fn no_overlap(cs: &[&Client]) {
        let mut seen = BTreeSet::new();
        for c in cs {
            for (t, ps) in &c.owned {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{p} owned twice");
                }
            }
        }
    }

    #[test]
    fn three_members_split_six_partitions_revoking_before_assigning() {
        let ts = topics(&[("t", 1, 6)]);
        let mut g = ConsumerGroup::new("g");
        let mut a = Client::join(&mut g, "a", &ts, 0);
        assert_eq!((a.epoch, parts(&a.owned)), (1, vec![0, 1, 2, 3, 4, 5]));
        let mut b = Client::join(&mut g, "b", &ts, 1);
        // b waits: every partition is still a's.
        assert_eq!((b.epoch, parts(&b.owned)), (2, vec![]));
        assert_eq!(g.members["b"].state, MemberState::UnreleasedPartitions);
        a.beat(&mut g, &ts, 2);
        // a is told to keep half (its epoch does not move until it revokes).
        assert_eq!((a.epoch, parts(&a.owned)), (1, vec![0, 1, 2]));
        no_overlap(&[&a, &b]);
        b.beat(&mut g, &ts, 3);
        assert_eq!(parts(&b.owned), Vec::<i32>::new(), "not before a revoked");
        a.beat(&mut g, &ts, 4); // a acknowledges: it owns 0..2 only
        assert_eq!(a.epoch, 2);
        b.beat(&mut g, &ts, 5);
        assert_eq!((b.epoch, parts(&b.owned)), (2, vec![3, 4, 5]));
        let mut c = Client::join(&mut g, "c", &ts, 6);
        for now in 7..12 {
            for x in [&mut a, &mut b, &mut c] {
                x.beat(&mut g, &ts, now);
            }
            no_overlap(&[&a, &b, &c]);
        }
        for x in [&a, &b, &c] {
            assert_eq!(
                x.owned.values().map(BTreeSet::len).sum::<usize>(),
                2,
                "{}",
                x.id
            );
            assert_eq!(x.epoch, 3);
        }
        // Sticky: a and b kept partitions they had.
        assert!(parts(&a.owned).iter().all(|p| [0, 1, 2].contains(p)));
        assert!(parts(&b.owned).iter().all(|p| [3, 4, 5].contains(p)));
        assert_eq!(g.state(), "Stable");

        // c leaves: the others share its partitions without losing theirs.
        let (a_had, b_had) = (parts(&a.owned), parts(&b.owned));
        let r = g
            .heartbeat(beat("c", -1, None), &ts, &ConsumerLimits::default(), 12)
            .unwrap();
        assert_eq!(r.member_epoch, -1);
        for now in 13..16 {
            a.beat(&mut g, &ts, now);
            b.beat(&mut g, &ts, now);
            no_overlap(&[&a, &b]);
        }
        assert_eq!(parts(&a.owned).len() + parts(&b.owned).len(), 6);
        assert!(a_had.iter().all(|p| parts(&a.owned).contains(p)));
        assert!(b_had.iter().all(|p| parts(&b.owned).contains(p)));

        // b goes silent: after the session timeout a takes everything.
        let limits = ConsumerLimits::default();
        assert_eq!(g.tick(16), Expired::new());
        let expiry = 15 + i64::from(limits.session_timeout_ms);
        assert_eq!(g.next_deadline(), Some(expiry.min(15 + 45_000)));
        a.beat(&mut g, &ts, expiry - 1);
        assert_eq!(g.tick(expiry), vec!["b".to_string()]);
        a.beat(&mut g, &ts, expiry + 1);
        assert_eq!(parts(&a.owned), vec![0, 1, 2, 3, 4, 5]);
        // b comes back with its old epoch: it must rejoin.
        let e = g.heartbeat(beat("b", b.epoch, None), &ts, &limits, expiry + 2);
        assert_eq!(e, Err(ConsumerError::UnknownMemberId));
    }

    #[test]
    fn epochs_are_checked_as_kafka_does() {
        let ts = topics(&[("t", 1, 2)]);
        let l = ConsumerLimits::default();
        let mut g = ConsumerGroup::new("g");
        let a = g.heartbeat(join("a", &["t"]), &ts, &l, 0).unwrap();
        assert_eq!(a.member_epoch, 1);
        let full = Some(a.assignment.clone().unwrap());
        // (epoch sent, owned sent, expected)
        let table: Vec<(i32, Option<Assignment>, Result<i32, ConsumerError>)> = vec![
            (1, None, Ok(1)),
            (2, None, Err(ConsumerError::FencedMemberEpoch)),
            (7, full.clone(), Err(ConsumerError::FencedMemberEpoch)),
            (0, Some(Assignment::new()), Ok(1)), // a rejoin keeps the member (KAFKA-19233)
        ];
        for (epoch, owned, want) in table {
            let mut req = beat("a", epoch, owned.as_ref());
            if epoch == 0 {
                req = join("a", &["t"]);
            }
            let got = g.heartbeat(req, &ts, &l, 1).map(|r| r.member_epoch);
            assert_eq!(got, want, "epoch {epoch}");
        }
        // A lost response: the previous epoch with owned partitions it has.
        g.heartbeat(join("b", &["t"]), &ts, &l, 2).unwrap();
        let r = g.heartbeat(beat("a", 1, None), &ts, &l, 3).unwrap(); // told to revoke one
        assert_eq!(r.member_epoch, 1);
        let kept = r.assignment.unwrap();
        let r = g.heartbeat(beat("a", 1, Some(&kept)), &ts, &l, 4).unwrap();
        assert_eq!(r.member_epoch, 2);
        let r = g.heartbeat(beat("a", 1, Some(&kept)), &ts, &l, 5).unwrap();
        assert_eq!(
            r.member_epoch, 2,
            "the previous epoch is forgiven with a subset"
        );
        let e = g.heartbeat(beat("a", 1, None), &ts, &l, 6);
        assert_eq!(
            e,
            Err(ConsumerError::FencedMemberEpoch),
            "not without owned partitions"
        );
        assert_eq!(g.check_commit("a", 2), Ok(()));
        assert_eq!(g.check_commit("a", 1), Err(ConsumerError::StaleMemberEpoch));
        assert_eq!(g.check_commit("z", 2), Err(ConsumerError::UnknownMemberId));
    }

    #[test]
    fn invalid_requests_by_table() {
        let ts = topics(&[("t", 1, 1)]);
        let l = ConsumerLimits::default();
        let mut no_id = join("", &["t"]);
        no_id.version = 1;
        let mut no_timeout = join("a", &["t"]);
        no_timeout.rebalance_timeout_ms = -1;
        let mut owned_on_join = join("a", &["t"]);
        owned_on_join.owned = Some([(t(1), [0].into())].into());
        let mut nothing = join("a", &["t"]);
        nothing.topic_names = None;
        nothing.topic_regex = None;
        let mut static_leave = beat("a", -2, None);
        static_leave.instance_id = None;
        let mut bad_assignor = join("a", &["t"]);
        bad_assignor.assignor = Some("sticky".into());
        let mut bad_regex = join("a", &[]);
        bad_regex.topic_regex = Some("(".into());
        let cases = [
            (no_id, "MemberId"),
            (no_timeout, "RebalanceTimeoutMs"),
            (owned_on_join, "TopicPartitions"),
            (nothing, "SubscribedTopicNames"),
            (static_leave, "InstanceId"),
            (beat("a", -3, None), "MemberEpoch"),
        ];
        for (req, what) in cases {
            match ConsumerGroup::new("g").heartbeat(req, &ts, &l, 0) {
                Err(ConsumerError::InvalidRequest(m)) => assert!(m.contains(what), "{m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let mut g = ConsumerGroup::new("g");
        assert_eq!(
            g.heartbeat(bad_assignor, &ts, &l, 0),
            Err(ConsumerError::UnsupportedAssignor)
        );
        assert!(matches!(
            g.heartbeat(bad_regex, &ts, &l, 0),
            Err(ConsumerError::InvalidRegularExpression(_))
        ));
        assert!(g.is_empty(), "a refused join leaves no member behind");
        assert_eq!(
            g.heartbeat(beat("ghost", 3, None), &ts, &l, 0),
            Err(ConsumerError::UnknownMemberId)
        );
        // A v0 join without an id gets the one the broker picked.
        let mut v0 = join("", &["t"]);
        v0.version = 0;
        v0.new_member_id = "picked".into();
        assert_eq!(g.heartbeat(v0, &ts, &l, 0).unwrap().member_id, "picked");
        let small = ConsumerLimits {
            members_max: 1,
            ..ConsumerLimits::default()
        };
        assert_eq!(
            g.heartbeat(join("b", &["t"]), &ts, &small, 0),
            Err(ConsumerError::GroupMaxSizeReached)
        );
    }

    #[test]
    fn static_members_keep_their_partitions_across_a_restart() {
        let ts = topics(&[("t", 1, 4)]);
        let l = ConsumerLimits::default();
        let mut g = ConsumerGroup::new("g");
        let mut a = join("a1", &["t"]);
        a.instance_id = Some("i-a".into());
        g.heartbeat(a.clone(), &ts, &l, 0).unwrap();
        let b = Client::join(&mut g, "b", &ts, 1);
        let _ = b;
        // Settle: a revokes half, b takes it.
        let r = g.heartbeat(beat("a1", 1, None), &ts, &l, 2).unwrap();
        let kept = r.assignment.unwrap();
        g.heartbeat(beat("a1", 1, Some(&kept)), &ts, &l, 3).unwrap();
        let epoch = g.group_epoch;
        // a leaves for a restart (-2): nothing moves, the epoch stays.
        let mut away = beat("a1", -2, None);
        away.instance_id = Some("i-a".into());
        assert_eq!(g.heartbeat(away, &ts, &l, 4).unwrap().member_epoch, -2);
        assert_eq!(g.group_epoch, epoch);
        // Its new process (a new member id) gets the same partitions back.
        let mut back = join("a2", &["t"]);
        back.instance_id = Some("i-a".into());
        let r = g.heartbeat(back.clone(), &ts, &l, 5).unwrap();
        assert_eq!(r.assignment, Some(kept));
        assert_eq!(g.group_epoch, epoch);
        // A second process with the same instance id while a2 is live.
        back.member_id = "a3".into();
        assert_eq!(
            g.heartbeat(back, &ts, &l, 6),
            Err(ConsumerError::UnreleasedInstanceId)
        );
    }

    #[test]
    fn topics_created_later_and_regexes_are_assigned() {
        let l = ConsumerLimits::default();
        let mut g = ConsumerGroup::new("g");
        let mut sub = join("a", &[]);
        sub.topic_regex = Some("orders-.*".into());
        let none = topics(&[("other", 9, 3)]);
        let r = g.heartbeat(sub, &none, &l, 0).unwrap();
        assert_eq!(r.assignment, Some(Assignment::new()));
        // A matching topic appears: the next heartbeat brings it.
        let ts = topics(&[("other", 9, 3), ("orders-eu", 2, 2), ("orders", 3, 1)]);
        let r = g
            .heartbeat(beat("a", r.member_epoch, None), &ts, &l, 1)
            .unwrap();
        assert_eq!(r.assignment, Some([(t(2), [0, 1].into())].into()));
        assert_eq!(r.member_epoch, 2);
        // The partition count grows.
        let ts = topics(&[("orders-eu", 2, 3)]);
        let r = g.heartbeat(beat("a", 2, None), &ts, &l, 2).unwrap();
        assert_eq!(r.assignment, Some([(t(2), [0, 1, 2].into())].into()));
    }

    #[test]
    fn uniform_balances_mixed_subscriptions_and_range_is_contiguous() {
        let ts: BTreeMap<String, TopicInfo> = topics(&[("x", 1, 4), ("y", 2, 2)]);
        let subs: BTreeMap<String, BTreeSet<String>> = [
            ("a".to_string(), ["x".to_string()].into()),
            ("b".to_string(), ["x".to_string(), "y".to_string()].into()),
        ]
        .into();
        let out = assign_uniform(&subs, &ts, &BTreeMap::new());
        let count = |m: &str| out[m].values().map(BTreeSet::len).sum::<usize>();
        assert_eq!((count("a"), count("b")), (3, 3));
        assert!(!out["a"].contains_key(&t(2)), "a is not subscribed to y");

        let mut g = ConsumerGroup::new("g");
        let l = ConsumerLimits::default();
        for m in ["a", "b"] {
            let mut j = join(m, &["x", "y"]);
            j.assignor = Some("range".into());
            g.heartbeat(j, &ts, &l, 0).unwrap();
        }
        assert_eq!(g.assignor(), "range");
        assert_eq!(
            g.target_of("a"),
            Some(&[(t(1), [0, 1].into()), (t(2), [0].into())].into())
        );
        assert_eq!(
            g.target_of("b"),
            Some(&[(t(1), [2, 3].into()), (t(2), [1].into())].into())
        );
    }

    /// A ConsumerProtocolSubscription: v0 (eager clients) or v1 with the
    /// partitions owned (cooperative clients).
    fn subscription(topic: &str, owned: Option<&[i32]>) -> Bytes {
        use bytes::BufMut;
        let mut b = bytes::BytesMut::new();
        b.put_i16(if owned.is_some() { 1 } else { 0 });
        b.put_i32(1);
        b.put_i16(topic.len() as i16);
        b.put_slice(topic.as_bytes());
        b.put_i32(-1);
        if let Some(ps) = owned {
            b.put_i32(i32::from(!ps.is_empty()));
            if !ps.is_empty() {
                b.put_i16(topic.len() as i16);
                b.put_slice(topic.as_bytes());
                b.put_i32(ps.len() as i32);
                for p in ps {
                    b.put_i32(*p);
                }
            }
        }
        b.freeze()
    }

    fn classic_join(member: &str, sub: Bytes) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), sub)],
            require_known_member_id: true,
            new_member_id: format!("{member}-new"),
        }
    }

    /// The partitions of topic "t" a SyncGroup answer assigns.
    fn synced(r: &SyncResult) -> BTreeSet<i32> {
        assert_eq!(r.error, None, "{r:?}");
        let a = embedded::parse_assignment(&r.assignment).unwrap();
        a.partitions.into_iter().flat_map(|(_, ps)| ps).collect()
    }

    #[test]
    fn classic_members_stay_through_an_online_upgrade_and_downgrade() {
        let ts = topics(&[("t", 1, 6)]);
        let limits = ConsumerLimits::default();
        let member = |id: &str, parts: &[i32]| {
            Group::restored_member(
                id.into(),
                None,
                "c".into(),
                "/h".into(),
                10_000,
                10_000,
                "consumer".into(),
                ("range".into(), subscription("t", None)),
                embedded::encode_assignment(0, &[("t".into(), parts.to_vec())]),
            )
        };
        let classic = Group::restore(
            "g",
            0,
            5,
            Some("consumer".into()),
            Some("range".into()),
            Some("a".into()),
            0,
            vec![member("a", &[0, 1, 2]), member("b", &[3, 4, 5])],
        );
        let mut g = ConsumerGroup::from_classic(&classic, &ts, 0).unwrap();
        assert_eq!((g.group_epoch, g.state()), (5, "Stable"));
        assert!(g.only_classic_members());
        // A KIP-848 member joins: the others own everything for now.
        let c = g.heartbeat(join("c", &["t"]), &ts, &limits, 1).unwrap();
        assert_eq!(c.member_epoch, 6);
        assert_eq!(c.assignment, Some(Assignment::new()));
        // a (eager) is told to rejoin, revokes everything, rejoins at epoch 6.
        let none = None;
        assert_eq!(
            g.classic_heartbeat("a", &none, 5, 2),
            Err(GroupError::RebalanceInProgress)
        );
        assert_eq!(g.check_commit("a", 5), Ok(()), "still at generation 5");
        let j = g.classic_join(&classic_join("a", subscription("t", None)), &ts, &limits, 3);
        assert_eq!((j.error, j.generation, j.leader.as_str()), (None, 6, ""));
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
        let a = synced(&g.classic_sync("a", &none, 6, (Some("consumer"), Some("range")), 4));
        assert_eq!(a.len(), 2);
        assert_eq!(
            g.check_commit("a", 5),
            Err(ConsumerError::IllegalGeneration),
            "a classic member commits at its epoch"
        );
        // b (cooperative) keeps consuming: first it gives up what it must.
        let j = g.classic_join(
            &classic_join("b", subscription("t", Some(&[3, 4, 5]))),
            &ts,
            &limits,
            5,
        );
        assert_eq!(j.generation, 5, "revoking first, still at its old epoch");
        let kept = synced(&g.classic_sync("b", &none, 5, (None, None), 6));
        assert!(kept.len() < 3 && kept.is_subset(&[3, 4, 5].into()));
        assert_eq!(
            g.classic_heartbeat("b", &none, 5, 7),
            Err(GroupError::RebalanceInProgress)
        );
        let owned: Vec<i32> = kept.iter().copied().collect();
        let j = g.classic_join(
            &classic_join("b", subscription("t", Some(&owned))),
            &ts,
            &limits,
            8,
        );
        assert_eq!(j.generation, 6);
        let b = synced(&g.classic_sync("b", &none, 6, (None, None), 9));
        // c gets the rest; nobody shares a partition.
        let c = g
            .heartbeat(beat("c", 6, Some(&Assignment::new())), &ts, &limits, 10)
            .unwrap();
        let c: BTreeSet<i32> = c.assignment.unwrap().values().flatten().copied().collect();
        assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c));
        assert_eq!(a.len() + b.len() + c.len(), 6);
        assert_eq!(g.classic_heartbeat("a", &none, 6, 11), Ok(()));
        // c leaves: only classic members are left, a classic group again,
        // rebalancing with their partitions as the last assignment.
        g.heartbeat(beat("c", -1, None), &ts, &limits, 12).unwrap();
        assert!(g.only_classic_members());
        let mut back = g.to_classic(13);
        assert_eq!(
            (
                back.generation,
                back.protocol.as_deref(),
                back.members.len()
            ),
            (6, Some("range"), 2)
        );
        back.rebalance_now(14);
        assert_eq!(back.state, crate::group::GroupState::PreparingRebalance);
    }

    #[test]
    fn classic_joins_into_a_kip848_group_are_checked_as_kafka_does() {
        let ts = topics(&[("t", 1, 2)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("k", &["t"]), &ts, &limits, 0).unwrap();
        // v4+: a new member is given its id first.
        let j = g.classic_join(&classic_join("", subscription("t", None)), &ts, &limits, 1);
        assert_eq!(
            (j.error, j.member_id.as_str()),
            (Some(GroupError::MemberIdRequired), "-new")
        );
        let mut bad = classic_join("x", subscription("t", None));
        bad.protocol_type = "connect".into();
        assert_eq!(
            g.classic_join(&bad, &ts, &limits, 1).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
        // A subscription cut short: refused, nothing joins.
        let garbage = classic_join("x", Bytes::from_static(&[0, 0, 0x7f]));
        assert_eq!(
            g.classic_join(&garbage, &ts, &limits, 1).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
        let j = g.classic_join(&classic_join("x", subscription("t", None)), &ts, &limits, 1);
        assert_eq!(j.error, None);
        let none = None;
        assert_eq!(
            g.classic_heartbeat("x", &none, j.generation + 1, 2),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.classic_heartbeat("k", &none, 1, 2),
            Err(GroupError::UnknownMemberId),
            "a KIP-848 member does not use Heartbeat"
        );
        // A classic member that never syncs is removed after its rebalance timeout.
        assert!(g.tick(10_002).contains(&"x".to_string()));
    }

    #[test]
    fn static_members_move_between_protocols_as_kafka_lets_them() {
        let ts = topics(&[("t", 1, 2)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("k", &["t"]), &ts, &limits, 0).unwrap();
        let mut classic = classic_join("", subscription("t", None));
        classic.instance_id = Some("i".into());
        let j = g.classic_join(&classic, &ts, &limits, 1);
        assert_eq!(j.error, None);
        let first = j.member_id.clone();
        // A stale process of the instance (another member id) is fenced.
        let mut stale = classic.clone();
        stale.member_id = "old".into();
        assert_eq!(
            g.classic_join(&stale, &ts, &limits, 2).error,
            Some(GroupError::FencedInstanceId)
        );
        // A new classic process of it takes its place...
        classic.new_member_id = "second".into();
        let j = g.classic_join(&classic, &ts, &limits, 3);
        assert_eq!((j.error, j.member_id.as_str()), (None, "second"));
        assert!(!g.members.contains_key(&first));
        // ...and so does a KIP-848 one, at once (a classic client sends no
        // leave), which then uses the KIP-848 protocol only.
        let mut upgraded = join("k2", &["t"]);
        upgraded.instance_id = Some("i".into());
        g.heartbeat(upgraded, &ts, &limits, 4).unwrap();
        assert!(g.members["k2"].classic.is_none());
        assert!(!g.members.contains_key("second"));
        assert!(!g.only_classic_members());
    }
}
