//! One consumer group under Kafka's classic protocol, as a pure state machine.
//!
//! No I/O, no clock, no randomness: time comes in as `now` (ms), new member ids
//! come in with the request, and everything the outside world must do (answer a
//! parked JoinGroup or SyncGroup, persist the group) comes back as [`Out`] values.
//! The async shell in `group::mod` owns the locks, the waiters and the timer.
//!
//! States and transitions follow Kafka's `GroupCoordinator`:
//! Empty -> PreparingRebalance -> CompletingRebalance -> Stable, back to
//! PreparingRebalance on any membership change, and Dead once deleted.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

/// A member waiting for its first JoinGroup to complete is dropped after this long
/// (Kafka's `NewMemberJoinTimeoutMs`): it cannot heartbeat before it has a generation.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

/// The group states of Kafka's classic protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join before a new generation.
    PreparingRebalance,
    /// Generation formed; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed; members heartbeat.
    Stable,
    /// Deleted; no longer in the registry.
    Dead,
}

impl GroupState {
    /// The name Kafka reports in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Group-level errors, each one Kafka error code (mapped in `handlers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// The group is being deleted; the client should look up the coordinator again.
    CoordinatorNotAvailable,
    /// The coordinator is shutting down.
    NotCoordinator,
    /// The member's generation is not the group's.
    IllegalGeneration,
    /// The member's protocol type or protocols do not match the group's.
    InconsistentGroupProtocol,
    /// Empty or otherwise unusable group id.
    InvalidGroupId,
    /// The member id is not in the group.
    UnknownMemberId,
    /// Session timeout outside the broker's allowed range.
    InvalidSessionTimeout,
    /// A rebalance is under way: rejoin.
    RebalanceInProgress,
    /// A dynamic member must rejoin with the member id it was given (JoinGroup v4+).
    MemberIdRequired,
    /// Another member holds this `group.instance.id`.
    FencedInstanceId,
    /// The group has `group_members_max` members.
    GroupMaxSizeReached,
    /// The group has members, so it cannot be deleted.
    NonEmptyGroup,
    /// No such group.
    GroupIdNotFound,
    /// The group still consumes the topic whose offsets were to be deleted.
    GroupSubscribedToTopic,
    /// The commit's metadata string is longer than allowed.
    OffsetMetadataTooLarge,
    /// The broker cannot take another group (`groups_max`).
    TooManyGroups,
    /// A KIP-848 member committed at an epoch other than its own.
    StaleMemberEpoch,
}

/// Broker-wide settings the state machine enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Delay before the first generation of an empty group forms (Kafka's
    /// `group.initial.rebalance.delay.ms`), so members starting together join one generation.
    pub initial_rebalance_delay_ms: i64,
    /// Smallest session timeout accepted (`group.min.session.timeout.ms`).
    pub session_timeout_ms_min: i32,
    /// Largest session timeout accepted (`group.max.session.timeout.ms`).
    pub session_timeout_ms_max: i32,
    /// Most members (plus pending members) in one group (`group.max.size`).
    pub members_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            initial_rebalance_delay_ms: 3000,
            session_timeout_ms_min: 6000,
            session_timeout_ms_max: 1_800_000,
            members_max: 1000,
        }
    }
}

/// A JoinGroup request, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id, empty for a new member.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address, reported by DescribeGroups.
    pub client_host: String,
    /// How long the member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// How long a rebalance may wait for this member to rejoin.
    pub rebalance_timeout_ms: i32,
    /// e.g. "consumer".
    pub protocol_type: String,
    /// (assignor name, opaque metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member gets MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
    /// The id to give this member if it is new (chosen by the shell: `client_id-uuid`).
    pub new_member_id: String,
}

/// One entry of the leader's member list in a JoinGroup response.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Its `group.instance.id`.
    pub instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    /// `None` for success.
    pub error: Option<GroupError>,
    /// The generation formed (-1 on error).
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected assignor.
    pub protocol_name: Option<String>,
    /// Member id of the leader.
    pub leader: String,
    /// The member's id (the new one for MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Every member with its metadata: only for the leader.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    fn error(member_id: &str, e: GroupError) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    /// `None` for success.
    pub error: Option<GroupError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected assignor.
    pub protocol_name: Option<String>,
    /// This member's assignment (opaque bytes from the leader).
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(e: GroupError) -> SyncResult {
        SyncResult {
            error: Some(e),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Either an answer now, or the caller parks until an [`Out`] names its member id.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<T> {
    /// Answer immediately.
    Now(T),
    /// Park the request under this member id.
    Parked(String),
}

/// What the shell must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Complete the JoinGroup parked under this member id.
    Join(String, JoinResult),
    /// Complete the SyncGroup parked under this member id.
    Sync(String, SyncResult),
    /// Persist the group's membership (after a generation's assignment, or on becoming empty).
    StoreGroup,
    /// A rebalance began, for this reason (counted in the metrics).
    Rebalance(RebalanceCause),
}

/// Why a rebalance began: the label of `sluice_group_rebalances_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceCause {
    /// A member joined.
    NewMember,
    /// A member rejoined with other protocols, or the leader asked for a new assignment.
    MemberUpdate,
    /// A member left with LeaveGroup.
    MemberLeave,
    /// A member's session expired.
    SessionTimeout,
    /// A member did not send SyncGroup within the rebalance timeout.
    SyncTimeout,
}

impl RebalanceCause {
    /// Every cause, for metrics that report each one.
    pub const ALL: [RebalanceCause; 5] = [
        RebalanceCause::NewMember,
        RebalanceCause::MemberUpdate,
        RebalanceCause::MemberLeave,
        RebalanceCause::SessionTimeout,
        RebalanceCause::SyncTimeout,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            RebalanceCause::NewMember => "new_member",
            RebalanceCause::MemberUpdate => "member_update",
            RebalanceCause::MemberLeave => "member_leave",
            RebalanceCause::SessionTimeout => "session_timeout",
            RebalanceCause::SyncTimeout => "sync_timeout",
        }
    }
}

/// One member of the group.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id, reported by DescribeGroups.
    pub client_id: String,
    /// Client address, reported by DescribeGroups.
    pub client_host: String,
    /// Session timeout in ms.
    pub session_timeout_ms: i32,
    /// Rebalance timeout in ms.
    pub rebalance_timeout_ms: i32,
    /// The member's protocol type.
    pub protocol_type: String,
    /// (assignor name, metadata) in order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// Current assignment (empty until the leader syncs).
    pub assignment: Bytes,
    /// A JoinGroup of this member is parked.
    awaiting_join: bool,
    /// A SyncGroup of this member is parked.
    awaiting_sync: bool,
    /// Joined in the current rebalance and has never had a generation.
    is_new: bool,
    /// Sent SyncGroup in the current generation.
    synced: bool,
    /// Removed when `now` passes this without a heartbeat.
    heartbeat_deadline: i64,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m)
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Whether the session timeout applies right now (parked requests keep a member alive).
    fn keep_alive(&self) -> bool {
        (self.awaiting_join && !self.is_new) || self.awaiting_sync
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The offset.
    pub offset: i64,
    /// Leader epoch the consumer saw, -1 if unknown.
    pub leader_epoch: i32,
    /// Client's metadata string.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
    /// Explicit expiry from OffsetCommit v2-v4's retention time, if any.
    pub expire_timestamp: Option<i64>,
}

/// One group: membership, generation and committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Current state.
    pub state: GroupState,
    /// When the state last changed (ms); offsets of an empty group expire from here.
    pub state_timestamp: i64,
    /// Generation id; bumps on every completed join.
    pub generation: i32,
    /// Protocol type shared by the members ("consumer"), `None` for offsets-only groups.
    pub protocol_type: Option<String>,
    /// Assignor selected for the current generation.
    pub protocol: Option<String>,
    /// Member id of the leader.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: HashMap<String, i64>,
    /// Static members: instance id -> member id.
    statics: HashMap<String, String>,
    /// In PreparingRebalance: when the join phase ends.
    join_deadline: Option<i64>,
    /// In the initial delay of an empty group: rebalance time still available.
    initial_delay_remaining: Option<i64>,
    /// A member joined during the initial delay, which extends it.
    new_member_added: bool,
    /// In CompletingRebalance: members that have not sent SyncGroup by then are removed.
    sync_deadline: Option<i64>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), Committed>,
}

fn opt_eq(a: &Option<String>, b: &str) -> bool {
    a.as_deref() == Some(b)
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, now: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_timestamp: now,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            join_deadline: None,
            initial_delay_remaining: None,
            new_member_added: false,
            sync_deadline: None,
            offsets: BTreeMap::new(),
        }
    }

    /// Rebuilds a group read back from the log: Stable with its members, or Empty.
    /// Members get a fresh session, as Kafka does when it loads a group.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: &str,
        now: i64,
        generation: i32,
        protocol_type: Option<String>,
        protocol: Option<String>,
        leader: Option<String>,
        state_timestamp: i64,
        members: Vec<Member>,
    ) -> Group {
        let mut g = Group::new(id, state_timestamp);
        g.generation = generation;
        g.protocol_type = protocol_type;
        g.protocol = protocol;
        for mut m in members {
            m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
            if let Some(i) = &m.instance_id {
                g.statics.insert(i.clone(), m.id.clone());
            }
            g.members.insert(m.id.clone(), m);
        }
        if g.members.is_empty() || g.protocol.is_none() {
            g.members.clear();
            g.statics.clear();
            g.protocol = None;
        } else {
            g.state = GroupState::Stable;
            g.leader = leader
                .filter(|l| g.members.contains_key(l))
                .or_else(|| g.members.keys().next().cloned());
        }
        g
    }

    /// A member as restored from the log.
    #[allow(clippy::too_many_arguments)]
    pub fn restored_member(
        id: String,
        instance_id: Option<String>,
        client_id: String,
        client_host: String,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        protocol_type: String,
        protocol: (String, Bytes),
        assignment: Bytes,
    ) -> Member {
        Member {
            id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type,
            protocols: vec![protocol],
            assignment,
            awaiting_join: false,
            awaiting_sync: false,
            is_new: false,
            synced: true,
            heartbeat_deadline: 0,
        }
    }

    /// Members plus pending members: what `members_max` bounds.
    pub fn size(&self) -> usize {
        self.members.len() + self.pending.len()
    }

    fn transition(&mut self, now: i64, to: GroupState) {
        self.state = to;
        self.state_timestamp = now;
    }

    /// The largest rebalance timeout among members: how long a join phase may last.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Assignors every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            c.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        c
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        opt_eq(&self.protocol_type, protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(p, _)| p == c))
    }

    /// Each member votes for its most preferred candidate; most votes wins, ties to the
    /// candidate the leader (or first member) prefers.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        let preferring = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())?;
        preferring
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|n| votes.iter().any(|(c, v)| c == *n && *v == best))
            .cloned()
    }

    fn is_static_fenced(&self, member_id: &str, instance_id: &Option<String>) -> bool {
        match instance_id {
            Some(i) => match self.statics.get(i) {
                Some(owner) => owner != member_id,
                None => false,
            },
            None => false,
        }
    }

    fn refresh(&mut self, now: i64, member_id: &str) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
        }
    }

    fn join_result_for(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.clone();
        let members = if with_members {
            let p = protocol.as_deref().unwrap_or("");
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(p).cloned().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Handles JoinGroup for an existing group (the shell creates groups).
    pub fn join(
        &mut self,
        now: i64,
        limits: &Limits,
        req: JoinRequest,
    ) -> (Reply<JoinResult>, Vec<Out>) {
        let mut out = Vec::new();
        let reply = self.do_join(now, limits, req, &mut out);
        (reply, out)
    }

    fn do_join(
        &mut self,
        now: i64,
        limits: &Limits,
        req: JoinRequest,
        out: &mut Vec<Out>,
    ) -> Reply<JoinResult> {
        let err = |e| Reply::Now(JoinResult::error(&req.member_id, e));
        if req.session_timeout_ms < limits.session_timeout_ms_min
            || req.session_timeout_ms > limits.session_timeout_ms_max
        {
            return err(GroupError::InvalidSessionTimeout);
        }
        if self.state == GroupState::Dead {
            return err(GroupError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return err(GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            if self.size() >= limits.members_max {
                return err(GroupError::GroupMaxSizeReached);
            }
            return self.join_unknown(now, limits, req, out);
        }
        if self.pending.contains_key(&req.member_id) {
            let id = req.member_id.clone();
            self.add_member_and_rebalance(now, limits, id.clone(), req, out);
            return Reply::Parked(id);
        }
        if self.is_static_fenced(&req.member_id, &req.instance_id) {
            return err(GroupError::FencedInstanceId);
        }
        let instance_unknown = req
            .instance_id
            .as_ref()
            .is_some_and(|i| !self.statics.contains_key(i));
        if !self.members.contains_key(&req.member_id) || instance_unknown {
            return err(GroupError::UnknownMemberId);
        }
        let id = req.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(now, &req);
                self.try_complete_join(now, out);
                Reply::Parked(id)
            }
            GroupState::CompletingRebalance => {
                if self.members[&id].same_protocols(&req.protocols) {
                    // A retry of a JoinGroup whose answer was lost: answer it again.
                    let leader = self.leader.as_deref() == Some(id.as_str());
                    self.refresh(now, &id);
                    Reply::Now(self.join_result_for(&id, leader))
                } else {
                    self.update_member(now, &req);
                    self.prepare_rebalance(now, RebalanceCause::MemberUpdate, out);
                    Reply::Parked(id)
                }
            }
            GroupState::Stable => {
                let leader = self.leader.as_deref() == Some(id.as_str());
                if leader || !self.members[&id].same_protocols(&req.protocols) {
                    // The leader rejoining is how clients ask for a new assignment
                    // (e.g. after a topic's partition count changed).
                    self.update_member(now, &req);
                    self.prepare_rebalance(now, RebalanceCause::MemberUpdate, out);
                    Reply::Parked(id)
                } else {
                    self.refresh(now, &id);
                    Reply::Now(self.join_result_for(&id, false))
                }
            }
            GroupState::Empty | GroupState::Dead => err(GroupError::UnknownMemberId),
        }
    }

    fn join_unknown(
        &mut self,
        now: i64,
        limits: &Limits,
        req: JoinRequest,
        out: &mut Vec<Out>,
    ) -> Reply<JoinResult> {
        let new_id = req.new_member_id.clone();
        if let Some(old_id) = req
            .instance_id
            .as_ref()
            .and_then(|i| self.statics.get(i))
            .cloned()
        {
            return self.replace_static(now, old_id, new_id, req, out);
        }
        if req.require_known_member_id && req.instance_id.is_none() {
            self.pending
                .insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
            return Reply::Now(JoinResult::error(&new_id, GroupError::MemberIdRequired));
        }
        self.add_member_and_rebalance(now, limits, new_id.clone(), req, out);
        Reply::Parked(new_id)
    }

    /// A static member restarted: it takes over its old member's place. In a stable
    /// group with unchanged protocols it gets the current generation back at once,
    /// with the old leader id so it does not recompute the assignment.
    fn replace_static(
        &mut self,
        now: i64,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        out: &mut Vec<Out>,
    ) -> Reply<JoinResult> {
        let current_leader = self.leader.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(&old_id) else {
            return Reply::Now(JoinResult::error(
                &req.member_id,
                GroupError::UnknownMemberId,
            ));
        };
        if member.awaiting_join {
            out.push(Out::Join(
                old_id.clone(),
                JoinResult::error(&old_id, GroupError::FencedInstanceId),
            ));
        }
        if member.awaiting_sync {
            out.push(Out::Sync(
                old_id.clone(),
                SyncResult::error(GroupError::FencedInstanceId),
            ));
        }
        member.id = new_id.clone();
        member.awaiting_join = false;
        member.awaiting_sync = false;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        let protocols_changed = !member.same_protocols(&req.protocols);
        self.members.insert(new_id.clone(), member);
        if let Some(i) = &req.instance_id {
            self.statics.insert(i.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        self.update_member(now, &req);
        match self.state {
            GroupState::Stable if !protocols_changed => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.awaiting_join = false;
                }
                self.refresh(now, &new_id);
                out.push(Out::StoreGroup);
                let mut r = self.join_result_for(&new_id, false);
                r.leader = current_leader;
                Reply::Now(r)
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, RebalanceCause::NewMember, out);
                Reply::Parked(new_id)
            }
            _ => {
                self.try_complete_join(now, out);
                Reply::Parked(new_id)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now: i64,
        limits: &Limits,
        id: String,
        req: JoinRequest,
        out: &mut Vec<Out>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            id: id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
            synced: false,
            heartbeat_deadline: now + NEW_MEMBER_JOIN_TIMEOUT_MS,
        };
        self.members.insert(id.clone(), member);
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        match &req.instance_id {
            Some(i) => {
                self.statics.insert(i.clone(), id.clone());
            }
            None => {
                self.pending.remove(&id);
            }
        }
        if self.state == GroupState::PreparingRebalance && self.initial_delay_remaining.is_some() {
            self.new_member_added = true;
        }
        self.maybe_prepare_rebalance(now, limits.initial_rebalance_delay_ms, out);
        self.try_complete_join(now, out);
    }

    fn update_member(&mut self, now: i64, req: &JoinRequest) {
        let id = if req.member_id.is_empty() {
            &req.new_member_id
        } else {
            &req.member_id
        };
        if let Some(m) = self.members.get_mut(id) {
            m.protocols = req.protocols.clone();
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.awaiting_join = true;
            if !m.is_new {
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, now: i64, initial_delay_ms: i64, out: &mut Vec<Out>) {
        match self.state {
            GroupState::Empty => {
                let timeout = self.rebalance_timeout_ms();
                self.join_deadline = Some(now + initial_delay_ms);
                self.initial_delay_remaining = Some((timeout - initial_delay_ms).max(0));
                self.new_member_added = false;
                self.transition(now, GroupState::PreparingRebalance);
                out.push(Out::Rebalance(RebalanceCause::NewMember));
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, RebalanceCause::NewMember, out)
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
    }

    /// Starts a join phase from Stable or CompletingRebalance: parked SyncGroups
    /// learn of it, and everyone gets the rebalance timeout to rejoin.
    fn prepare_rebalance(&mut self, now: i64, cause: RebalanceCause, out: &mut Vec<Out>) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_assignments(GroupError::RebalanceInProgress, out);
        }
        if !matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            return;
        }
        self.sync_deadline = None;
        self.join_deadline = Some(now + self.rebalance_timeout_ms());
        self.initial_delay_remaining = None;
        self.transition(now, GroupState::PreparingRebalance);
        out.push(Out::Rebalance(cause));
        self.try_complete_join(now, out);
    }

    fn reset_assignments(&mut self, error: GroupError, out: &mut Vec<Out>) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if m.awaiting_sync {
                m.awaiting_sync = false;
                out.push(Out::Sync(m.id.clone(), SyncResult::error(error)));
            }
        }
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    fn try_complete_join(&mut self, now: i64, out: &mut Vec<Out>) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay_remaining.is_none()
            && self.all_joined()
        {
            self.complete_join(now, out);
        }
    }

    /// Ends a join phase: drops dynamic members that did not rejoin, forms the next
    /// generation and answers every parked JoinGroup.
    fn complete_join(&mut self, now: i64, out: &mut Vec<Out>) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.drop_member(&id, out);
        }
        self.join_deadline = None;
        self.initial_delay_remaining = None;
        self.new_member_added = false;
        if self.members.is_empty() {
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            self.transition(now, GroupState::Empty);
            out.push(Out::StoreGroup);
            return;
        }
        if !self.members.values().any(|m| m.awaiting_join) {
            // Only absent static members are left: give them another timeout.
            self.join_deadline = Some(now + self.rebalance_timeout_ms());
            return;
        }
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.awaiting_join);
        if !leader_joined {
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join)
                .map(|m| m.id.clone());
        }
        self.generation += 1;
        self.protocol = self.select_protocol();
        self.transition(now, GroupState::CompletingRebalance);
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""),
            leader = self.leader.as_deref().unwrap_or(""),
            "group rebalanced"
        );
        self.sync_deadline = Some(now + self.rebalance_timeout_ms());
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id, id == leader);
            let m = self.members.get_mut(&id).expect("listed member");
            m.synced = false;
            if m.awaiting_join {
                m.awaiting_join = false;
                m.is_new = false;
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                out.push(Out::Join(id, result));
            }
        }
    }

    /// Removes a member without triggering anything else.
    fn drop_member(&mut self, id: &str, out: &mut Vec<Out>) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if m.awaiting_join {
            out.push(Out::Join(
                id.to_string(),
                JoinResult::error("", GroupError::UnknownMemberId),
            ));
        }
        if m.awaiting_sync {
            out.push(Out::Sync(
                id.to_string(),
                SyncResult::error(GroupError::UnknownMemberId),
            ));
        }
        if let Some(i) = &m.instance_id {
            if self.statics.get(i).map(String::as_str) == Some(id) {
                self.statics.remove(i);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Removes a member and moves the group on: a rebalance, or completing a join phase.
    fn remove_member(&mut self, now: i64, id: &str, cause: RebalanceCause, out: &mut Vec<Out>) {
        self.drop_member(id, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, cause, out)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Handles SyncGroup.
    pub fn sync(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> (Reply<SyncResult>, Vec<Out>) {
        let mut out = Vec::new();
        let now_err = |e| (Reply::Now(SyncResult::error(e)), Vec::new());
        if self.state == GroupState::Dead {
            return now_err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(member_id, instance_id) {
            return now_err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return now_err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return now_err(GroupError::IllegalGeneration);
        }
        let (ptype, pname) = protocol;
        if ptype.is_some_and(|t| !opt_eq(&self.protocol_type, t))
            || pname.is_some_and(|n| !opt_eq(&self.protocol, n))
        {
            return now_err(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => now_err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => now_err(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                self.refresh(now, member_id);
                self.mark_synced(member_id);
                let r = self.sync_result(member_id);
                (Reply::Now(r), out)
            }
            GroupState::CompletingRebalance => {
                {
                    let m = self.members.get_mut(member_id).expect("checked above");
                    m.awaiting_sync = true;
                    m.synced = true;
                }
                self.refresh(now, member_id);
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.transition(now, GroupState::Stable);
                    self.mark_synced(member_id);
                    out.push(Out::StoreGroup);
                    let ids: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.awaiting_sync)
                        .map(|m| m.id.clone())
                        .collect();
                    for id in ids {
                        let r = self.sync_result(&id);
                        if let Some(m) = self.members.get_mut(&id) {
                            m.awaiting_sync = false;
                        }
                        self.refresh(now, &id);
                        out.push(Out::Sync(id, r));
                    }
                }
                (Reply::Parked(member_id.to_string()), out)
            }
        }
    }

    /// Records that `member_id` synced; once every member has, no sync deadline remains.
    fn mark_synced(&mut self, member_id: &str) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.synced = true;
        }
        if self.members.values().all(|m| m.synced) {
            self.sync_deadline = None;
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Handles Heartbeat.
    pub fn heartbeat(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(member_id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.refresh(now, member_id);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.refresh(now, member_id);
                Ok(())
            }
        }
    }

    /// Handles one member of a LeaveGroup (`member_id` may be empty for a static member).
    pub fn leave(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: &Option<String>,
        out: &mut Vec<Out>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if !member_id.is_empty() && self.is_static_fenced(member_id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if self.pending.remove(member_id).is_some() {
            self.try_complete_join(now, out);
            return Ok(());
        }
        let id = match instance_id.as_ref().and_then(|i| self.statics.get(i)) {
            Some(id) => id.clone(),
            None if self.members.contains_key(member_id) => member_id.to_string(),
            None => return Err(GroupError::UnknownMemberId),
        };
        self.remove_member(now, &id, RebalanceCause::MemberLeave, out);
        Ok(())
    }

    /// Checks an OffsetCommit against the group; `Ok` means the offsets may be stored.
    pub fn check_commit(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(member_id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            // A consumer using assign(): the group only stores its offsets.
            return Ok(());
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Stable | GroupState::PreparingRebalance => {
                self.refresh(now, member_id);
                Ok(())
            }
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
        }
    }

    /// Topics the members subscribed to (from their consumer-protocol metadata), or
    /// `None` if the group is not a consumer group with a selected protocol.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            topics.extend(parse_subscription(m.metadata(protocol)?)?);
        }
        topics.sort();
        topics.dedup();
        Some(topics)
    }

    /// The earliest time something is due: a session expiry, a pending member's
    /// expiry, the end of a join phase or of the sync phase.
    pub fn next_deadline(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter(|m| !m.keep_alive())
            .map(|m| m.heartbeat_deadline);
        let pending = self.pending.values().copied();
        members
            .chain(pending)
            .chain(self.join_deadline)
            .chain(self.sync_deadline)
            .min()
    }

    /// Applies everything due at `now`.
    pub fn tick(&mut self, now: i64, limits: &Limits) -> Vec<Out> {
        let mut out = Vec::new();
        if self.state == GroupState::Dead {
            return out;
        }
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending.remove(&id);
            self.try_complete_join(now, &mut out);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.keep_alive() && m.heartbeat_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(now, &id, RebalanceCause::SessionTimeout, &mut out);
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            match self.initial_delay_remaining {
                Some(remaining) if self.new_member_added && remaining > 0 => {
                    let delay = limits.initial_rebalance_delay_ms.min(remaining);
                    self.initial_delay_remaining = Some(remaining - delay);
                    self.new_member_added = false;
                    self.join_deadline = Some(now + delay);
                }
                _ => self.complete_join(now, &mut out),
            }
        }
        // As Kafka's pending-sync timeout: a member of the generation that has not
        // sent SyncGroup within the rebalance timeout is dropped, even if the leader
        // already made the group Stable (it may have vanished mid-join).
        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && self.sync_deadline.is_some_and(|d| d <= now)
        {
            let lagging: Vec<String> = self
                .members
                .values()
                .filter(|m| !m.synced)
                .map(|m| m.id.clone())
                .collect();
            self.sync_deadline = None;
            for id in lagging {
                tracing::info!(group = %self.id, member = %id, "member did not sync in time");
                self.remove_member(now, &id, RebalanceCause::SyncTimeout, &mut out);
            }
        }
        out
    }

    /// Answers every parked request with `error` (the broker is shutting down).
    pub fn abandon_waiters(&mut self, error: GroupError) -> Vec<Out> {
        let mut out = Vec::new();
        for m in self.members.values_mut() {
            if m.awaiting_join {
                m.awaiting_join = false;
                out.push(Out::Join(m.id.clone(), JoinResult::error(&m.id, error)));
            }
            if m.awaiting_sync {
                m.awaiting_sync = false;
                out.push(Out::Sync(m.id.clone(), SyncResult::error(error)));
            }
        }
        out
    }

    /// Its members moved into a KIP-848 group (Kafka's online upgrade):
    /// parked requests are told to rejoin, and the group keeps only its
    /// offsets, Empty, with its membership record rewritten.
    pub fn hand_over_members(&mut self, now: i64) -> Vec<Out> {
        let mut out = self.abandon_waiters(GroupError::RebalanceInProgress);
        self.members.clear();
        self.pending.clear();
        self.statics.clear();
        self.leader = None;
        self.protocol = None;
        self.protocol_type = None;
        self.join_deadline = None;
        self.sync_deadline = None;
        self.initial_delay_remaining = None;
        self.new_member_added = false;
        self.transition(now, GroupState::Empty);
        out.push(Out::StoreGroup);
        out
    }

    /// Starts a rebalance of a Stable group now (a KIP-848 group that
    /// became classic again: its members rejoin as a classic group).
    pub fn rebalance_now(&mut self, now: i64) -> Vec<Out> {
        let mut out = vec![Out::StoreGroup];
        self.prepare_rebalance(now, RebalanceCause::MemberLeave, &mut out);
        out
    }

    /// Marks the group deleted.
    pub fn mark_dead(&mut self, now: i64) {
        self.transition(now, GroupState::Dead);
    }

    /// Undoes [`Group::mark_dead`] of an empty group whose deletion could not be
    /// made durable: it is Empty again, offsets intact.
    pub fn undo_dead(&mut self, now: i64) {
        if self.state == GroupState::Dead && self.members.is_empty() {
            self.transition(now, GroupState::Empty);
        }
    }

    /// Offsets due to expire at `now` under `retention_ms` (Kafka's rules: offsets of
    /// an empty group expire `retention_ms` after it became empty, or after the commit
    /// for offsets-only groups; a consumer group keeps offsets of topics it consumes).
    pub fn expired_offsets(&self, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
        // Kafka 2.1+: the clock starts when an empty group became empty (or at the
        // commit for offsets-only groups); a stable consumer group only loses offsets
        // of topics it no longer subscribes to, counted from their commit.
        let subscribed = match self.state {
            GroupState::Empty => Some(Vec::new()),
            GroupState::Stable => self.subscribed_topics(),
            _ => None,
        };
        let became_empty = (self.state == GroupState::Empty && self.protocol_type.is_some())
            .then_some(self.state_timestamp);
        self.offsets
            .iter()
            .filter(|((topic, _), c)| {
                if let Some(e) = c.expire_timestamp {
                    return now >= e;
                }
                let Some(subscribed) = &subscribed else {
                    return false;
                };
                if subscribed.contains(topic) {
                    return false;
                }
                let base = became_empty.unwrap_or(c.commit_timestamp);
                now.saturating_sub(base) >= retention_ms
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Topics of a ConsumerProtocolSubscription (any version: they all start with
/// `version: i16, topics: [string]`), or `None` if it does not parse.
pub fn parse_subscription(b: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize;
    let count = i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let count = usize::try_from(count).ok()?;
    let mut topics = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        let len = usize::try_from(len).ok()?;
        let name = std::str::from_utf8(b.get(at..at + len)?).ok()?;
        at += len;
        topics.push(name.to_string());
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: i32 = 10_000;
    const REBALANCE: i32 = 30_000;

    fn limits() -> Limits {
        Limits {
            initial_rebalance_delay_ms: 3000,
            ..Limits::default()
        }
    }

    fn sub(topics: &[&str]) -> Bytes {
        let mut b = vec![0, 1];
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        Bytes::from(b)
    }

    fn req(member: &str, new_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), sub(&["t"]))],
            require_known_member_id: false,
            new_member_id: new_id.into(),
        }
    }

    /// A group driven by events at controlled times, collecting what it emits.
    struct Harness {
        g: Group,
        limits: Limits,
        now: i64,
        outs: Vec<Out>,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                g: Group::new("g", 0),
                limits: limits(),
                now: 0,
                outs: Vec::new(),
            }
        }
        fn join(&mut self, r: JoinRequest) -> Reply<JoinResult> {
            let (reply, outs) = self.g.join(self.now, &self.limits, r);
            self.outs.extend(outs);
            reply
        }
        fn sync(
            &mut self,
            member: &str,
            generation: i32,
            assignments: &[(&str, &[u8])],
        ) -> Reply<SyncResult> {
            let a = assignments
                .iter()
                .map(|(m, b)| (m.to_string(), Bytes::copy_from_slice(b)))
                .collect();
            let (reply, outs) = self
                .g
                .sync(self.now, member, &None, generation, (None, None), a);
            self.outs.extend(outs);
            reply
        }
        fn at(&mut self, t: i64) {
            self.now = t;
            let outs = self.g.tick(t, &self.limits);
            self.outs.extend(outs);
        }
        /// The JoinGroup answer emitted for `member`, consumed.
        fn joined(&mut self, member: &str) -> Option<JoinResult> {
            let i = self
                .outs
                .iter()
                .position(|o| matches!(o, Out::Join(m, _) if m == member))?;
            match self.outs.remove(i) {
                Out::Join(_, r) => Some(r),
                _ => unreachable!(),
            }
        }
        fn synced(&mut self, member: &str) -> Option<SyncResult> {
            let i = self
                .outs
                .iter()
                .position(|o| matches!(o, Out::Sync(m, _) if m == member))?;
            match self.outs.remove(i) {
                Out::Sync(_, r) => Some(r),
                _ => unreachable!(),
            }
        }
        /// Forms a stable generation with `members`: all join at time 0, so a second
        /// member extends the initial delay once; they sync at 6 s.
        fn stable(members: &[&str]) -> Harness {
            let mut h = Harness::new();
            for m in members {
                assert_eq!(h.join(req("", m)), Reply::Parked(m.to_string()));
            }
            h.at(3000);
            h.at(6000);
            let leader = h.g.leader.clone().unwrap();
            for m in members {
                assert!(h.joined(m).unwrap().error.is_none());
            }
            let asg: Vec<(&str, &[u8])> = members.iter().map(|m| (*m, m.as_bytes())).collect();
            for m in members {
                if *m != leader {
                    assert_eq!(h.sync(m, 1, &[]), Reply::Parked(m.to_string()));
                }
            }
            assert_eq!(h.sync(&leader, 1, &asg), Reply::Parked(leader.clone()));
            for m in members {
                assert_eq!(&h.synced(m).unwrap().assignment[..], m.as_bytes());
            }
            assert_eq!(h.g.state, GroupState::Stable);
            h.outs.clear();
            h
        }
    }

    #[test]
    fn member_id_required_then_initial_delay_then_generation_one() {
        let mut h = Harness::new();
        let mut r = req("", "m1");
        r.require_known_member_id = true;
        let Reply::Now(first) = h.join(r.clone()) else {
            panic!("expected an immediate answer")
        };
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        assert_eq!(first.member_id, "m1");
        assert_eq!(h.g.state, GroupState::Empty);
        r.member_id = "m1".into();
        assert_eq!(h.join(r), Reply::Parked("m1".into()));
        assert_eq!(h.g.state, GroupState::PreparingRebalance);
        // The initial delay holds the join phase open even though everyone has joined.
        h.at(2999);
        assert!(h.joined("m1").is_none());
        h.at(3000);
        let j = h.joined("m1").unwrap();
        assert_eq!((j.generation, j.leader.as_str()), (1, "m1"));
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
        assert_eq!(j.members.len(), 1);
        assert_eq!(h.g.state, GroupState::CompletingRebalance);
    }

    #[test]
    fn initial_delay_extends_while_members_keep_arriving() {
        let mut h = Harness::new();
        h.join(req("", "m1"));
        h.at(2000);
        h.join(req("", "m2"));
        h.at(3000);
        assert!(
            h.joined("m1").is_none(),
            "a member arrived: the delay extends"
        );
        h.at(6000);
        assert_eq!(h.joined("m1").unwrap().members.len(), 2);
        assert_eq!(h.joined("m2").unwrap().generation, 1);
    }

    #[test]
    fn a_new_member_triggers_a_rebalance_the_others_learn_of_by_heartbeat() {
        let mut h = Harness::stable(&["a", "b"]);
        h.now = 7000;
        assert_eq!(h.join(req("", "c")), Reply::Parked("c".into()));
        assert_eq!(h.g.state, GroupState::PreparingRebalance);
        assert_eq!(
            h.g.heartbeat(7100, "a", &None, 1),
            Err(GroupError::RebalanceInProgress)
        );
        h.now = 7200;
        assert_eq!(h.join(req("a", "")), Reply::Parked("a".into()));
        assert!(h.joined("c").is_none());
        assert_eq!(h.join(req("b", "")), Reply::Parked("b".into()));
        // Everyone rejoined: generation 2 forms at once, only the leader gets the members.
        let a = h.joined("a").unwrap();
        let b = h.joined("b").unwrap();
        let c = h.joined("c").unwrap();
        assert_eq!((a.generation, b.generation, c.generation), (2, 2, 2));
        assert_eq!(a.leader, "a");
        assert_eq!(a.members.len(), 3);
        assert!(b.members.is_empty() && c.members.is_empty());
        // A stale generation is refused; the old assignment is gone.
        assert_eq!(
            h.sync("b", 1, &[]),
            Reply::Now(SyncResult::error(GroupError::IllegalGeneration))
        );
    }

    #[test]
    fn session_expiry_evicts_and_a_lone_survivor_rebalances() {
        let mut h = Harness::stable(&["a", "b"]);
        // Only b heartbeats.
        for t in (7000..=15_000).step_by(2000) {
            h.g.heartbeat(t, "b", &None, 1).unwrap();
            h.at(t);
        }
        assert!(
            h.g.members.contains_key("a"),
            "a's session (10 s from 6 s) has not expired"
        );
        h.g.heartbeat(16_000, "b", &None, 1).unwrap();
        h.at(16_000);
        assert!(!h.g.members.contains_key("a"));
        assert_eq!(h.g.state, GroupState::PreparingRebalance);
        h.now = 16_100;
        assert_eq!(h.join(req("b", "")), Reply::Parked("b".into()));
        let j = h.joined("b").unwrap();
        assert_eq!(
            (j.generation, j.leader.as_str(), j.members.len()),
            (2, "b", 1)
        );
    }

    #[test]
    fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
        let mut h = Harness::stable(&["a", "b"]);
        h.now = 7000;
        h.join(req("a", ""));
        // b keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
        for t in (8000..37_000).step_by(1000) {
            let _ = h.g.heartbeat(t, "b", &None, 1);
            h.at(t);
        }
        assert!(h.joined("a").is_none());
        h.at(37_000);
        let j = h.joined("a").unwrap();
        assert_eq!(j.members.len(), 1);
        assert!(!h.g.members.contains_key("b"));
        assert_eq!(h.joined("b"), None);
    }

    #[test]
    fn the_last_member_leaving_empties_the_group() {
        let mut h = Harness::stable(&["a", "b"]);
        let mut out = Vec::new();
        assert_eq!(h.g.leave(4000, "a", &None, &mut out), Ok(()));
        assert_eq!(h.g.leader.as_deref(), Some("b"), "the leader left: b leads");
        assert_eq!(h.g.state, GroupState::PreparingRebalance);
        assert_eq!(h.g.leave(4001, "b", &None, &mut out), Ok(()));
        assert_eq!(h.g.state, GroupState::Empty);
        assert!(out.contains(&Out::StoreGroup));
        assert_eq!(
            h.g.leave(4002, "b", &None, &mut out),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn static_member_restart_keeps_the_generation() {
        let mut h = Harness::new();
        for (m, i) in [("a", "ia"), ("b", "ib")] {
            let mut r = req("", m);
            r.instance_id = Some(i.into());
            h.join(r);
        }
        h.at(3000);
        h.at(6000);
        let leader = h.joined("a").unwrap().leader;
        h.joined("b");
        h.sync("b", 1, &[]);
        h.sync("a", 1, &[("a", b"A"), ("b", b"B")]);
        h.outs.clear();
        assert_eq!(leader, "a");
        // a restarts: unknown member id, same instance id.
        h.now = 7000;
        let mut r = req("", "a2");
        r.instance_id = Some("ia".into());
        let Reply::Now(j) = h.join(r) else {
            panic!("a stable group answers a returning static member at once")
        };
        assert_eq!(
            (j.error, j.generation, j.member_id.as_str()),
            (None, 1, "a2")
        );
        assert_eq!(
            j.leader, "a",
            "the old leader id: the new member must not reassign"
        );
        assert!(h.outs.contains(&Out::StoreGroup));
        assert_eq!(h.g.state, GroupState::Stable);
        let Reply::Now(s) = h.sync("a2", 1, &[]) else {
            panic!("stable sync answers at once")
        };
        assert_eq!(&s.assignment[..], b"A");
        // The old incarnation is fenced.
        assert_eq!(
            h.g.heartbeat(7001, "a", &Some("ia".into()), 1),
            Err(GroupError::FencedInstanceId)
        );
        assert_eq!(h.g.heartbeat(7001, "b", &Some("ib".into()), 1), Ok(()));
    }

    #[test]
    fn errors_follow_kafka() {
        struct Row {
            what: &'static str,
            edit: fn(&mut JoinRequest),
            want: GroupError,
        }
        let rows = [
            Row {
                what: "session timeout below the minimum",
                edit: |r| r.session_timeout_ms = 10,
                want: GroupError::InvalidSessionTimeout,
            },
            Row {
                what: "session timeout above the maximum",
                edit: |r| r.session_timeout_ms = i32::MAX,
                want: GroupError::InvalidSessionTimeout,
            },
            Row {
                what: "another protocol type",
                edit: |r| r.protocol_type = "connect".into(),
                want: GroupError::InconsistentGroupProtocol,
            },
            Row {
                what: "no common assignor",
                edit: |r| r.protocols = vec![("roundrobin".into(), Bytes::new())],
                want: GroupError::InconsistentGroupProtocol,
            },
            Row {
                what: "an unknown member id",
                edit: |r| r.member_id = "ghost".into(),
                want: GroupError::UnknownMemberId,
            },
        ];
        for row in rows {
            let mut h = Harness::stable(&["a"]);
            let mut r = req("", "n");
            (row.edit)(&mut r);
            match h.join(r) {
                Reply::Now(j) => assert_eq!(j.error, Some(row.want), "{}", row.what),
                other => panic!("{}: parked: {other:?}", row.what),
            }
        }
        let mut h = Harness::stable(&["a"]);
        h.limits.members_max = 1;
        let Reply::Now(j) = h.join(req("", "n")) else {
            panic!()
        };
        assert_eq!(j.error, Some(GroupError::GroupMaxSizeReached));
        // Commits: outsiders may only commit to an empty group.
        assert_eq!(
            h.g.check_commit(5000, "", &None, -1),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            h.g.check_commit(5000, "a", &None, 7),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(h.g.check_commit(5000, "a", &None, 1), Ok(()));
        let mut empty = Group::new("e", 0);
        assert_eq!(empty.check_commit(0, "", &None, -1), Ok(()));
    }

    #[test]
    fn commits_during_completing_rebalance_are_refused() {
        let mut h = Harness::new();
        h.join(req("", "a"));
        h.at(3000);
        assert_eq!(h.g.state, GroupState::CompletingRebalance);
        assert_eq!(
            h.g.check_commit(3001, "a", &None, 1),
            Err(GroupError::RebalanceInProgress)
        );
        // A member that never syncs is removed at the rebalance timeout.
        h.at(3000 + i64::from(REBALANCE));
        assert_eq!(h.g.state, GroupState::Empty);
    }

    #[test]
    fn pending_members_expire() {
        let mut h = Harness::new();
        let mut r = req("", "p");
        r.require_known_member_id = true;
        h.join(r);
        assert_eq!(h.g.size(), 1);
        assert_eq!(h.g.next_deadline(), Some(i64::from(SESSION)));
        h.at(i64::from(SESSION));
        assert_eq!(h.g.size(), 0);
    }

    #[test]
    fn offsets_of_empty_groups_expire_and_subscribed_ones_stay() {
        let c = |ts| Committed {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: ts,
            expire_timestamp: None,
        };
        let week = 7 * 24 * 3600 * 1000;
        let mut h = Harness::stable(&["a"]);
        h.g.offsets.insert(("t".into(), 0), c(0));
        h.g.offsets.insert(("old".into(), 0), c(0));
        assert_eq!(
            h.g.expired_offsets(week, week),
            vec![("old".to_string(), 0)]
        );
        let mut out = Vec::new();
        h.g.leave(week, "a", &None, &mut out).unwrap();
        assert_eq!(h.g.state, GroupState::Empty);
        assert!(h.g.expired_offsets(2 * week - 1, week).is_empty());
        assert_eq!(h.g.expired_offsets(2 * week, week).len(), 2);
    }

    #[test]
    fn subscription_parsing_is_bounded() {
        assert_eq!(
            parse_subscription(&sub(&["a", "bc"])),
            Some(vec!["a".into(), "bc".into()])
        );
        assert_eq!(parse_subscription(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(parse_subscription(&[]), None);
    }
}
