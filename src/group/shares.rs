//! The share-group shell (KIP-932): membership (`share`), share sessions,
//! and the share-partitions (`share_partition`) of every share group, kept
//! in the group's slot beside the classic and KIP-848 state, under the same
//! lock and on the same timer.
//!
//! Durability: a share-partition's state is written to the group state log
//! (its whole snapshot, at most `max_in_flight` offsets) and fsynced before
//! any acknowledgement that changed it is answered, and when it is first
//! created (so `share.auto.offset.reset=latest` is resolved once). A lock is
//! not durable: after a restart a record that was handed out and not
//! acknowledged is offered again. Invariant: an acknowledgement reported as
//! successful survives a crash; one reported as failed may survive too (the
//! next write carries it), which only means it is not delivered again.
//!
//! Share sessions (KIP-932's fetch sessions) are held per (group, member),
//! bound to the connection that opened them: when it closes the session ends
//! and the member's locks are released, as Kafka does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::share::{ShareGroup, ShareGroupLimits, ShareHeartbeat, ShareHeartbeatReply};
use super::share_partition::{
    AckBatch, Acquired, Counters, ShareLimits, SharePartition, Snapshot as ShareSnapshot,
};
use super::Topics;
use super::{lock, records, ConsumerError, Coordinator, GroupError, GroupState, Slot, TopicId};
use crate::clock::now_ms;
use crate::storage::state_log::Entry;
use crate::waiters::Waiters;

/// A share-partition of a group: topic id and partition.
pub type SharePartitionKey = (TopicId, i32);

/// The share-group configs a GROUP resource may set (Kafka 4.2's names).
pub const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// Overrides `group.share.record.lock.duration.ms` for one group.
pub const SHARE_RECORD_LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
/// Overrides `group.share.session.timeout.ms` for one group.
pub const SHARE_SESSION_TIMEOUT_MS: &str = "share.session.timeout.ms";
/// Overrides `group.share.heartbeat.interval.ms` for one group.
pub const SHARE_HEARTBEAT_INTERVAL_MS: &str = "share.heartbeat.interval.ms";
/// Which records a share group reads; only `read_uncommitted` is served.
pub const SHARE_ISOLATION_LEVEL: &str = "share.isolation.level";

/// Broker settings of share groups.
#[derive(Debug, Clone, Copy)]
pub struct ShareSettings {
    /// Membership limits, before group overrides.
    pub group: ShareGroupLimits,
    /// Share-partition limits, before group overrides.
    pub partition: ShareLimits,
    /// Shortest lock a group may configure (ms).
    pub lock_ms_min: i64,
    /// Longest lock a group may configure (ms).
    pub lock_ms_max: i64,
    /// Most share sessions at once.
    pub sessions_max: usize,
}

/// What the metrics count for a share group, since it was loaded.
pub type ShareTotals = Counters;

/// A share group's state in its slot.
#[derive(Debug)]
pub(super) struct ShareState {
    /// Membership.
    pub(super) group: ShareGroup,
    /// Share-partitions that have been initialized.
    pub(super) partitions: HashMap<SharePartitionKey, SharePartition>,
    /// ShareFetches parked until a record of the group is offered again or
    /// the window has room.
    pub(super) waiters: Waiters,
    /// Events counted since the group was loaded, for the metrics.
    pub(super) totals: ShareTotals,
}

impl ShareState {
    pub(super) fn new() -> ShareState {
        ShareState {
            group: ShareGroup::new(),
            partitions: HashMap::new(),
            waiters: Waiters::new(),
            totals: ShareTotals::default(),
        }
    }

    /// The earliest deadline: a member's session or a record lock.
    pub(super) fn next_deadline(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter_map(SharePartition::next_deadline)
            .chain(self.group.next_deadline())
            .min()
    }

    /// Adds the counters of `key`'s share-partition to the totals.
    fn count(&mut self, key: &SharePartitionKey) {
        if let Some(p) = self.partitions.get_mut(key) {
            add(&mut self.totals, p.take_counters());
        }
    }

    /// Applies `f` to every share-partition, counting what happened; returns
    /// the sum of what `f` returned.
    fn each(&mut self, mut f: impl FnMut(&mut SharePartition) -> usize) -> usize {
        let mut n = 0;
        for p in self.partitions.values_mut() {
            n += f(p);
            add(&mut self.totals, p.take_counters());
        }
        n
    }
}

/// Adds counters taken from a share-partition to a group's totals.
fn add(totals: &mut ShareTotals, c: Counters) {
    totals.redelivered += c.redelivered;
    totals.lock_expiries += c.lock_expiries;
    totals.archived += c.archived;
    totals.accepted += c.accepted;
}

/// Why a share session refused a request (Kafka's top-level errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// SHARE_SESSION_NOT_FOUND.
    NotFound,
    /// INVALID_SHARE_SESSION_EPOCH.
    InvalidEpoch,
    /// SHARE_SESSION_LIMIT_REACHED.
    LimitReached,
    /// INVALID_REQUEST, with why.
    InvalidRequest(String),
}

/// A share session: the partitions a member fetches and the epoch its next
/// request must carry.
#[derive(Debug)]
pub(super) struct ShareSession {
    /// The epoch the next request must carry.
    epoch: i32,
    /// The partitions fetched.
    partitions: BTreeSet<SharePartitionKey>,
    /// The connection that opened it.
    conn: u64,
}

/// Every share session, by (group, member).
pub(super) type Sessions = HashMap<(String, String), ShareSession>;

/// A request's share-session step, accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStep {
    /// The partitions to fetch (all of the session's), starting at a
    /// different one each request.
    pub partitions: Vec<SharePartitionKey>,
    /// The session ends with this request (epoch -1): acknowledge, then
    /// [`Coordinator::share_close_session`], fetch nothing.
    pub closing: bool,
}

/// One share-partition a ShareFetch wants, with its log's bounds now.
#[derive(Debug, Clone, Copy)]
pub struct ShareWant {
    /// Topic id and partition.
    pub key: SharePartitionKey,
    /// The log start offset.
    pub log_start: i64,
    /// The high watermark: records below it may be handed out.
    pub high_watermark: i64,
}

/// Why an acknowledgement failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// An offset was not locked by the member (lock expired, another
    /// member's, or never handed out): INVALID_RECORD_STATE.
    InvalidRecordState,
    /// The state could not be made durable: KAFKA_STORAGE_ERROR.
    Storage,
}

/// A share-group member as ShareGroupDescribe reports it.
#[derive(Debug, Clone)]
pub struct ShareMemberSummary {
    /// Member id.
    pub member_id: String,
    /// Rack.
    pub rack_id: Option<String>,
    /// Its epoch.
    pub member_epoch: i32,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Subscribed topic names.
    pub topic_names: Vec<String>,
    /// Its partitions.
    pub assignment: super::Assignment,
}

/// A share group as ShareGroupDescribe and the metrics report it.
#[derive(Debug, Clone)]
pub struct ShareGroupSummary {
    /// Empty or Stable.
    pub state: &'static str,
    /// Group epoch.
    pub group_epoch: i32,
    /// Assignment epoch.
    pub assignment_epoch: i32,
    /// Members.
    pub members: Vec<ShareMemberSummary>,
    /// Start offset of each initialized share-partition.
    pub start_offsets: BTreeMap<SharePartitionKey, i64>,
    /// Records in flight (handed out and not yet done) over all partitions.
    pub in_flight: usize,
    /// Counted events.
    pub totals: ShareTotals,
}

/// What a group's configs say, with broker defaults for what they do not.
struct GroupShareConfig {
    /// Start new share-partitions at the log start (else at its end).
    earliest: bool,
    /// Share-partition limits.
    partition: ShareLimits,
    /// Membership limits.
    group: ShareGroupLimits,
}

impl Coordinator {
    /// The group's share configs over the broker defaults.
    fn share_config(&self, group_id: &str) -> GroupShareConfig {
        let configs = lock(&self.group_configs);
        let get = |k: &str| configs.get(group_id).and_then(|c| c.get(k));
        let num = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        let mut partition = self.share.partition;
        let mut group = self.share.group;
        if let Some(ms) = num(SHARE_RECORD_LOCK_DURATION_MS) {
            partition.lock_ms = ms;
        }
        if let Some(ms) = num(SHARE_SESSION_TIMEOUT_MS) {
            group.session_timeout_ms = ms;
        }
        if let Some(ms) = num(SHARE_HEARTBEAT_INTERVAL_MS).and_then(|v| i32::try_from(v).ok()) {
            group.heartbeat_interval_ms = ms;
        }
        GroupShareConfig {
            earliest: get(SHARE_AUTO_OFFSET_RESET).is_some_and(|v| v == "earliest"),
            partition,
            group,
        }
    }

    /// The group's slot as a share group, created if `create` and the id is
    /// free. A group of another type is GROUP_ID_NOT_FOUND, as Kafka.
    fn share_slot(&self, group_id: &str, create: bool) -> Result<Arc<Mutex<Slot>>, ConsumerError> {
        let slot = if create {
            self.slot_or_create(group_id)
                .map_err(ConsumerError::Group)?
        } else {
            self.slot(group_id).ok_or(ConsumerError::UnknownMemberId)?
        };
        let mut s = lock(&slot);
        if s.share.is_none() {
            let g = &s.group;
            let other = g.state != GroupState::Empty
                || g.protocol_type.is_some()
                || !g.offsets.is_empty()
                || !s.txn_offsets.is_empty()
                || s.has_consumers();
            if other || g.state == GroupState::Dead {
                return Err(ConsumerError::Group(GroupError::GroupIdNotFound));
            }
            s.share = Some(ShareState::new());
        }
        drop(s);
        Ok(slot)
    }

    /// Handles ShareGroupHeartbeat against the `topics` that exist.
    pub fn share_heartbeat(
        &self,
        group_id: &str,
        req: ShareHeartbeat,
        topics: &Topics,
    ) -> Result<ShareHeartbeatReply, ConsumerError> {
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ConsumerError::Group(GroupError::NotCoordinator));
        }
        if group_id.trim().is_empty() {
            return Err(ConsumerError::InvalidRequest(
                "GroupId can't be empty.".into(),
            ));
        }
        let limits = self.share_config(group_id).group;
        // After a restart members are not known (soft state): they rejoin.
        let slot = self.share_slot(group_id, req.member_epoch == 0)?;
        let mut s = lock(&slot);
        let sh = s.share.as_mut().expect("share_slot made it");
        let reply = sh.group.heartbeat(req, topics, &limits, now_ms());
        let next = sh.next_deadline();
        drop(s);
        self.schedule_at(group_id, next);
        reply
    }

    /// Steps the share session of (group, member) for a ShareFetch (`fetch`)
    /// or ShareAcknowledge at `epoch`: 0 opens one (ShareFetch only), -1
    /// closes it, others must match its epoch. `adds` and `forgotten` change
    /// its partitions.
    #[allow(clippy::too_many_arguments)]
    pub fn share_session(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        conn: u64,
        adds: &[SharePartitionKey],
        forgotten: &[SharePartitionKey],
        has_acks: bool,
        fetch: bool,
    ) -> Result<SessionStep, SessionError> {
        let key = (group_id.to_string(), member_id.to_string());
        let mut sessions = lock(&self.sessions);
        if epoch == 0 {
            if !fetch {
                return Err(SessionError::InvalidEpoch);
            }
            if has_acks {
                return Err(SessionError::InvalidRequest(
                    "Acknowledge data present on initial fetch for a share session".into(),
                ));
            }
            let replaced = sessions.remove(&key);
            if replaced.is_none() && sessions.len() >= self.share.sessions_max {
                return Err(SessionError::LimitReached);
            }
            let partitions: BTreeSet<SharePartitionKey> = adds.iter().copied().collect();
            let step = SessionStep {
                partitions: partitions.iter().copied().collect(),
                closing: false,
            };
            sessions.insert(
                key,
                ShareSession {
                    epoch: 1,
                    partitions,
                    conn,
                },
            );
            return Ok(step);
        }
        let Some(session) = sessions.get_mut(&key) else {
            return Err(SessionError::NotFound);
        };
        if epoch == -1 {
            return Ok(SessionStep {
                partitions: Vec::new(),
                closing: true,
            });
        }
        if epoch != session.epoch {
            return Err(SessionError::InvalidEpoch);
        }
        session.epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        if fetch {
            session.partitions.extend(adds.iter().copied());
            for f in forgotten {
                session.partitions.remove(f);
            }
        }
        // Each request starts at a different partition, so one with a deep
        // backlog does not take every request's `max_records` (fairness).
        let mut partitions: Vec<SharePartitionKey> = session.partitions.iter().copied().collect();
        if !partitions.is_empty() {
            let turn = usize::try_from(session.epoch).unwrap_or(0) % partitions.len();
            partitions.rotate_left(turn);
        }
        Ok(SessionStep {
            partitions,
            closing: false,
        })
    }

    /// Ends the share session of (group, member) and releases every record
    /// the member holds in the group.
    pub fn share_close_session(&self, group_id: &str, member_id: &str) {
        lock(&self.sessions).remove(&(group_id.to_string(), member_id.to_string()));
        self.share_release_member(group_id, member_id);
    }

    /// A connection closed: the share sessions it opened end.
    pub fn share_connection_closed(&self, conn: u64) {
        let ended: Vec<(String, String)> = {
            let mut sessions = lock(&self.sessions);
            let keys: Vec<(String, String)> = sessions
                .iter()
                .filter(|(_, s)| s.conn == conn)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &keys {
                sessions.remove(k);
            }
            keys
        };
        for (group, member) in ended {
            self.share_release_member(&group, &member);
        }
    }

    fn share_release_member(&self, group_id: &str, member_id: &str) {
        let Some(slot) = self.slot(group_id) else {
            return;
        };
        let mut s = lock(&slot);
        let Some(sh) = s.share.as_mut() else { return };
        let released = sh.each(|p| p.release_member(member_id));
        if released > 0 {
            tracing::debug!(
                group = group_id,
                member = member_id,
                released,
                "share session ended: its records are offered again"
            );
            sh.waiters.wake();
        }
    }

    /// Creates the share-partitions of `wants` the group does not have yet,
    /// at the start its `share.auto.offset.reset` says, durably. Partitions
    /// whose start could not be made durable are left out (the next fetch
    /// tries again); returns false if any was.
    pub async fn share_init(self: &Arc<Self>, group_id: &str, wants: &[ShareWant]) -> bool {
        let config = self.share_config(group_id);
        let Ok(slot) = self.share_slot(group_id, true) else {
            return false;
        };
        let (entries, created) = {
            let mut s = lock(&slot);
            let Some(sh) = s.share.as_mut() else {
                return false;
            };
            let mut created = Vec::new();
            let mut fresh = Vec::new();
            for w in wants {
                if sh.partitions.contains_key(&w.key) {
                    continue;
                }
                let start = if config.earliest {
                    w.log_start
                } else {
                    w.high_watermark
                };
                let p = SharePartition::new(start, config.partition);
                fresh.push((w.key, p.snapshot()));
                sh.partitions.insert(w.key, p);
                created.push((w.key, start));
            }
            let entries: Vec<Entry> = fresh
                .iter()
                .map(|(k, snap)| self.share_entry(group_id, *k, snap))
                .collect();
            (entries, created)
        };
        if entries.is_empty() || self.write(entries).await {
            return true;
        }
        // Forget what was created, unless a fetch has used it meanwhile (its
        // acknowledgements then carry the start to the log).
        let mut s = lock(&slot);
        if let Some(sh) = s.share.as_mut() {
            for (k, start) in created {
                if sh
                    .partitions
                    .get(&k)
                    .is_some_and(|p| p.in_flight() == 0 && p.start() == start)
                {
                    sh.partitions.remove(&k);
                }
            }
        }
        false
    }

    fn share_entry(&self, group_id: &str, key: SharePartitionKey, snap: &ShareSnapshot) -> Entry {
        self.entry(
            records::share_key(group_id, key.0, key.1),
            Some(records::share_value(snap)),
        )
    }

    /// Hands `member` records of the group's initialized share-partitions in
    /// `wants`, at most `max_records` in all, oldest offered-again first.
    pub fn share_acquire(
        &self,
        group_id: &str,
        member_id: &str,
        wants: &[ShareWant],
        max_records: usize,
    ) -> Vec<Vec<Acquired>> {
        let none = || wants.iter().map(|_| Vec::new()).collect();
        let Some(slot) = self.slot(group_id) else {
            return none();
        };
        let now = now_ms();
        let mut s = lock(&slot);
        let Some(sh) = s.share.as_mut() else {
            return none();
        };
        let mut left = max_records;
        let mut out = Vec::with_capacity(wants.len());
        for w in wants {
            let got = match sh.partitions.get_mut(&w.key) {
                Some(p) if left > 0 => {
                    p.move_start(w.log_start);
                    let got = p.acquire(member_id, w.high_watermark, left, now);
                    let n: i64 = got.iter().map(|a| a.last - a.first + 1).sum();
                    left = left.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
                    got
                }
                _ => Vec::new(),
            };
            sh.count(&w.key);
            out.push(got);
        }
        let next = sh.next_deadline();
        drop(s);
        self.schedule_at(group_id, next);
        out
    }

    /// Gives back records `member` acquired that did not fit the response.
    pub fn share_unacquire(
        &self,
        group_id: &str,
        member_id: &str,
        key: SharePartitionKey,
        first: i64,
        last: i64,
    ) {
        let Some(slot) = self.slot(group_id) else {
            return;
        };
        let mut s = lock(&slot);
        if let Some(sh) = s.share.as_mut() {
            if let Some(p) = sh.partitions.get_mut(&key) {
                let given_back = p.unacquire(member_id, first, last);
                sh.totals.redelivered = sh.totals.redelivered.saturating_sub(given_back);
            }
        }
    }

    /// Parks `n` until a record of the group is offered again or done.
    pub fn share_register(&self, group_id: &str, n: &Arc<Notify>) {
        if let Some(slot) = self.slot(group_id) {
            if let Some(sh) = lock(&slot).share.as_ref() {
                sh.waiters.register(n);
            }
        }
    }

    /// The group's record lock duration, told to share consumers.
    pub fn share_lock_ms(&self, group_id: &str) -> i32 {
        i32::try_from(self.share_config(group_id).partition.lock_ms).unwrap_or(i32::MAX)
    }

    /// Applies `member`'s acknowledgements, all or nothing per partition,
    /// and answers once the changed states are durable.
    pub async fn share_acknowledge(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        acks: Vec<(SharePartitionKey, Vec<AckBatch>)>,
    ) -> Vec<Result<(), AckError>> {
        let Some(slot) = self.slot(group_id) else {
            return acks
                .iter()
                .map(|_| Err(AckError::InvalidRecordState))
                .collect();
        };
        let (mut results, entries) = {
            let mut s = lock(&slot);
            let Some(sh) = s.share.as_mut() else {
                return acks
                    .iter()
                    .map(|_| Err(AckError::InvalidRecordState))
                    .collect();
            };
            let mut results = Vec::with_capacity(acks.len());
            let mut changed = Vec::new();
            for (key, batches) in &acks {
                let r = match sh.partitions.get_mut(key) {
                    Some(p) => p
                        .acknowledge_all(member_id, batches)
                        .map_err(|_| AckError::InvalidRecordState),
                    None => Err(AckError::InvalidRecordState),
                };
                if r.is_ok() {
                    changed.push(*key);
                }
                sh.count(key);
                results.push(r);
            }
            let entries: Vec<Entry> = changed
                .iter()
                .filter_map(|k| {
                    let p = sh.partitions.get(k)?;
                    Some(self.share_entry(group_id, *k, &p.snapshot()))
                })
                .collect();
            if !changed.is_empty() {
                // Released records and a moved start let parked fetches go on.
                sh.waiters.wake();
            }
            (results, entries)
        };
        if !entries.is_empty() && !self.write(entries).await {
            for r in results.iter_mut() {
                if r.is_ok() {
                    *r = Err(AckError::Storage);
                }
            }
        }
        results
    }

    /// A share group for ShareGroupDescribe and the metrics; `None` if the
    /// id is not one.
    pub fn share_describe(&self, group_id: &str) -> Option<ShareGroupSummary> {
        let slot = self.slot(group_id)?;
        let s = lock(&slot);
        let sh = s.share.as_ref()?;
        Some(ShareGroupSummary {
            state: sh.group.state(),
            group_epoch: sh.group.group_epoch,
            assignment_epoch: sh.group.assignment_epoch,
            members: sh
                .group
                .members()
                .map(|m| ShareMemberSummary {
                    member_id: m.id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    topic_names: m.topics.iter().cloned().collect(),
                    assignment: m.assigned.clone(),
                })
                .collect(),
            start_offsets: sh.partitions.iter().map(|(k, p)| (*k, p.start())).collect(),
            in_flight: sh.partitions.values().map(SharePartition::in_flight).sum(),
            totals: sh.totals,
        })
    }

    /// The ids of every share group.
    pub fn share_groups(&self) -> Vec<String> {
        let slots: Vec<(String, Arc<Mutex<Slot>>)> = lock(&self.groups)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out: Vec<String> = slots
            .into_iter()
            .filter(|(_, s)| lock(s).share.is_some())
            .map(|(k, _)| k)
            .collect();
        out.sort();
        out
    }

    /// A group's configs as set (name to value).
    pub fn group_configs(&self, group_id: &str) -> BTreeMap<String, String> {
        lock(&self.group_configs)
            .get(group_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The lock durations a group may set (ms): the broker's min and max.
    pub fn share_lock_bounds(&self) -> (i64, i64) {
        (self.share.lock_ms_min, self.share.lock_ms_max)
    }

    /// Replaces a group's configs, durably: TooManyGroups past `groups_max`
    /// groups with configs, NotCoordinator if the write failed (and then
    /// nothing changed). Share-partitions take a new lock duration for
    /// the locks they give from now on.
    pub async fn set_group_configs(
        self: &Arc<Self>,
        group_id: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), GroupError> {
        // Memory changes first, under the lock the version is taken under,
        // so a compaction in between writes the new configs, not the old.
        let (entry, old) = {
            let mut all = lock(&self.group_configs);
            if !all.contains_key(group_id) && all.len() >= self.settings.groups_max {
                // As many groups with configs as groups may exist at all.
                return Err(GroupError::TooManyGroups);
            }
            let entry = self.entry(
                records::group_config_key(group_id),
                (!configs.is_empty()).then(|| records::group_config_value(&configs)),
            );
            let old = if configs.is_empty() {
                all.remove(group_id)
            } else {
                all.insert(group_id.to_string(), configs.clone())
            };
            (entry, old)
        };
        if !self.write(vec![entry]).await {
            let mut all = lock(&self.group_configs);
            if all.get(group_id) == (!configs.is_empty()).then_some(&configs) {
                match old {
                    Some(o) => all.insert(group_id.to_string(), o),
                    None => all.remove(group_id),
                };
            }
            return Err(GroupError::NotCoordinator);
        }
        let limits = self.share_config(group_id).partition;
        if let Some(slot) = self.slot(group_id) {
            if let Some(sh) = lock(&slot).share.as_mut() {
                for p in sh.partitions.values_mut() {
                    p.set_limits(limits);
                }
            }
        }
        Ok(())
    }

    /// Runs a share group's deadlines: member sessions and record locks.
    pub(super) fn share_tick(&self, id: &str, s: &mut Slot, now: i64) {
        let Some(sh) = s.share.as_mut() else { return };
        for member in sh.group.tick(now) {
            tracing::info!(
                group = id,
                member,
                "share-group member removed: session timeout"
            );
        }
        let expired = sh.each(|p| p.expire(now));
        if expired > 0 {
            sh.waiters.wake();
        }
        let next = sh.next_deadline();
        self.schedule_at(id, next);
    }

    /// Rebuilds share state from the log: partitions from their snapshots.
    pub(super) fn restore_share(
        &self,
        group_id: &str,
        partitions: HashMap<SharePartitionKey, ShareSnapshot>,
    ) -> ShareState {
        let limits = self.share_config(group_id).partition;
        let mut sh = ShareState::new();
        sh.partitions = partitions
            .iter()
            .map(|(k, snap)| (*k, SharePartition::restore(snap, limits)))
            .collect();
        sh
    }

    /// Every live share key for a compaction: each share-partition's state
    /// and each group's configs, at fresh versions (memory is the truth, and
    /// each state was changed under the lock its version is taken under).
    pub(super) fn share_compaction_records(&self, s: &Slot, out: &mut Vec<Entry>) {
        if s.group.state == GroupState::Dead {
            // Being deleted: its tombstones are newer than anything written
            // here; if the deletion fails the next compaction writes it.
            return;
        }
        if let Some(sh) = s.share.as_ref() {
            for (k, p) in &sh.partitions {
                out.push(self.share_entry(&s.group.id, *k, &p.snapshot()));
            }
        }
    }

    /// Every group's configs, for a compaction.
    pub(super) fn group_config_records(&self, out: &mut Vec<Entry>) {
        let all = lock(&self.group_configs).clone();
        for (id, configs) in all {
            out.push(self.entry(
                records::group_config_key(&id),
                Some(records::group_config_value(&configs)),
            ));
        }
    }
}

/// Why a share-offset admin request was refused for the whole group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareAdminError {
    /// Not a share group (GROUP_ID_NOT_FOUND).
    NotFound,
    /// The group has members (NON_EMPTY_GROUP).
    NonEmpty,
    /// The change could not be made durable (KAFKA_STORAGE_ERROR).
    Storage,
    /// Too many groups, or the coordinator is stopping.
    Group(GroupError),
}

impl Coordinator {
    /// The start offset of each initialized share-partition of a share
    /// group; `None` if the id is not a share group.
    pub fn share_start_offsets(&self, group_id: &str) -> Option<BTreeMap<SharePartitionKey, i64>> {
        let slot = self.slot(group_id)?;
        let s = lock(&slot);
        let sh = s.share.as_ref()?;
        Some(sh.partitions.iter().map(|(k, p)| (*k, p.start())).collect())
    }

    /// AlterShareGroupOffsets: sets the start of each listed share-partition
    /// (a negative start forgets it: the next fetch starts where
    /// `share.auto.offset.reset` says). The group must have no members; it
    /// is created if it does not exist, as Kafka.
    pub async fn share_alter_offsets(
        self: &Arc<Self>,
        group_id: &str,
        starts: &[(SharePartitionKey, i64)],
    ) -> Result<(), ShareAdminError> {
        let slot = self.share_slot(group_id, true).map_err(|e| match e {
            ConsumerError::Group(GroupError::GroupIdNotFound) => ShareAdminError::NotFound,
            ConsumerError::Group(g) => ShareAdminError::Group(g),
            _ => ShareAdminError::NotFound,
        })?;
        let entries = {
            let mut s = lock(&slot);
            let Some(sh) = s.share.as_mut() else {
                return Err(ShareAdminError::NotFound);
            };
            if !sh.group.is_empty() {
                return Err(ShareAdminError::NonEmpty);
            }
            let limits = self.share_config(group_id).partition;
            let mut entries = Vec::with_capacity(starts.len());
            for (key, start) in starts {
                let key_bytes = records::share_key(group_id, key.0, key.1);
                if *start < 0 {
                    sh.partitions.remove(key);
                    entries.push(self.entry(key_bytes, None));
                } else {
                    let p = SharePartition::new(*start, limits);
                    entries.push(self.entry(key_bytes, Some(records::share_value(&p.snapshot()))));
                    sh.partitions.insert(*key, p);
                }
            }
            sh.waiters.wake();
            entries
        };
        if entries.is_empty() || self.write(entries).await {
            Ok(())
        } else {
            Err(ShareAdminError::Storage)
        }
    }

    /// DeleteShareGroupOffsets: forgets every share-partition of each
    /// listed topic; per topic, whether it had any. The group must exist
    /// as a share group and have no members.
    pub async fn share_delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        topics: &[TopicId],
    ) -> Result<Vec<bool>, ShareAdminError> {
        let slot = self.slot(group_id).ok_or(ShareAdminError::NotFound)?;
        let (had, entries) = {
            let mut s = lock(&slot);
            let Some(sh) = s.share.as_mut() else {
                return Err(ShareAdminError::NotFound);
            };
            if !sh.group.is_empty() {
                return Err(ShareAdminError::NonEmpty);
            }
            let mut had = Vec::with_capacity(topics.len());
            let mut entries = Vec::new();
            for topic in topics {
                let keys: Vec<SharePartitionKey> = sh
                    .partitions
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .copied()
                    .collect();
                had.push(!keys.is_empty());
                for k in keys {
                    sh.partitions.remove(&k);
                    entries.push(self.entry(records::share_key(group_id, k.0, k.1), None));
                }
            }
            (had, entries)
        };
        if entries.is_empty() || self.write(entries).await {
            Ok(had)
        } else {
            Err(ShareAdminError::Storage)
        }
    }
}
