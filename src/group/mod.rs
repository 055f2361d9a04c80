//! The group coordinator: Kafka's classic consumer-group protocol and committed offsets.
//!
//! `state` is the pure state machine of one group; this module is its thin async
//! shell. Each group sits behind its own `std::sync::Mutex`, held only while the
//! state machine runs (never across `.await`). A JoinGroup or SyncGroup that must
//! wait parks on a oneshot channel, completed when the state machine says so. One
//! timer task sleeps until the earliest group deadline (session expiry, end of a
//! join phase) and ticks the groups that are due: no polling loops.
//!
//! Committed offsets and group membership go to the state log
//! (`storage::state_log`, records encoded by `records`), written and fsynced
//! before OffsetCommit is answered, and replayed on start.
//!
//! Invariant: a group's committed offsets change in memory only once the record
//! of the change is durable. Offset changes of a group queue up in order
//! ([`Slot::pending`]); one writer per group writes what is queued, then applies
//! it; a failed write applies nothing, so OffsetFetch never returns what a
//! restart would forget.

pub mod consumer;
pub mod embedded;
pub mod records;
pub mod share;
pub mod share_partition;
pub mod shares;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

pub use consumer::{
    Assignment, ConsumerError, ConsumerGroup, ConsumerLimits, Heartbeat, HeartbeatReply, TopicId,
    TopicInfo, Topics,
};
pub use share::{ShareGroupLimits, ShareHeartbeat, ShareHeartbeatReply};
pub use share_partition::{AckBatch, AckKind, Acquired, ShareLimits};
pub use shares::{
    AckError, SessionError, SessionStep, ShareAdminError, ShareGroupSummary, ShareMemberSummary,
    SharePartitionKey, ShareSettings, ShareWant,
};
pub use state::{
    Committed, Group, GroupError, GroupState, JoinRequest, JoinResult, JoinedMember, Limits, Out,
    Reply, SyncResult,
};

use crate::clock::now_ms;
use crate::config::Config;
use crate::storage::state_log::{Entry, StateLog};
use crate::storage::{Partition, Syncer};

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the selected protocol (Stable groups only).
    pub metadata: Bytes,
    /// Assignment (Stable groups only).
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// Kafka's state name.
    pub state: &'static str,
    /// Protocol type, empty if none.
    pub protocol_type: String,
    /// Selected protocol (Stable only), else empty.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberSummary>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupOverview {
    /// Group id.
    pub group_id: String,
    /// Protocol type, empty for offsets-only groups.
    pub protocol_type: String,
    /// Kafka's state name.
    pub state: &'static str,
    /// `classic` or `consumer` (KIP-848), as ListGroups v5 reports it.
    pub group_type: &'static str,
}

/// A KIP-848 member as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone)]
pub struct ConsumerMemberSummary {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// Its epoch.
    pub member_epoch: i32,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Subscribed topic names.
    pub topic_names: Vec<String>,
    /// Subscribed regex.
    pub topic_regex: Option<String>,
    /// What it owns now.
    pub assignment: Assignment,
    /// What it is moving to.
    pub target: Assignment,
    /// It uses the classic protocol (a group in online migration).
    pub classic: bool,
}

/// A KIP-848 group as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone)]
pub struct ConsumerGroupSummary {
    /// Kafka's state name.
    pub state: &'static str,
    /// The group epoch.
    pub group_epoch: i32,
    /// The target assignment's epoch.
    pub assignment_epoch: i32,
    /// The assignor in use.
    pub assignor: &'static str,
    /// The members.
    pub members: Vec<ConsumerMemberSummary>,
}

/// A group as the metrics see it: state, member count and committed offsets.
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    /// Group id.
    pub group_id: String,
    /// Kafka's state name.
    pub state: &'static str,
    /// Members now.
    pub members: usize,
    /// Committed offsets by (topic, partition).
    pub offsets: Vec<((String, i32), i64)>,
}

/// A change to a group's committed offsets, applied once its records are durable.
#[derive(Debug)]
enum OffsetChange {
    /// Store a committed offset, written at this version.
    Commit((String, i32), Committed, u64),
    /// Forget one.
    Delete((String, i32)),
    /// Store a pending transactional offset of a producer, written at this version.
    TxnPending(i64, (String, i32), Committed, u64),
    /// A producer's pending offsets for these partitions were decided (and, on
    /// commit, written as committed offsets by `Commit` changes beside this one).
    TxnDone(i64, Vec<(String, i32)>),
    /// The group (marked Dead when queued) goes, with all its offsets; if the
    /// write fails it comes back as Empty.
    RemoveGroup,
}

/// Offset changes written together, with whoever waits for them.
#[derive(Debug)]
struct Pending {
    /// Position in the group's queue (see [`Slot::queued`]).
    seq: u64,
    /// The records, versioned when the changes were computed.
    entries: Vec<Entry>,
    /// What to apply once they are durable.
    changes: Vec<OffsetChange>,
    /// Told whether they were applied.
    done: Option<oneshot::Sender<bool>>,
}

/// One group with what is waiting on it.
struct Slot {
    /// The state machine.
    group: Group,
    /// The group's KIP-848 members, when consumers of that protocol use it
    /// (the classic `group` then stays Empty and keeps the offsets). Not
    /// persisted: after a restart members are told UNKNOWN_MEMBER_ID and
    /// rejoin.
    consumer: Option<ConsumerGroup>,
    /// The group's share-group state, when it is a share group (KIP-932);
    /// the classic `group` then stays Empty with no offsets.
    share: Option<shares::ShareState>,
    /// Parked JoinGroups by member id.
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    /// Parked SyncGroups by member id.
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
    /// Offset changes queued for the group's writer, in the order computed. Bounded
    /// by the requests in flight (one per connection) and one expiry pass.
    pending: VecDeque<Pending>,
    /// A writer task is draining `pending`.
    writing: bool,
    /// The version each durable committed offset was written with: compaction
    /// rewrites them at these versions, so later changes still win on replay.
    versions: records::OffsetVersions,
    /// Changes queued so far: a compaction waits for what was queued before it rolled.
    queued: u64,
    /// The last queued change applied (or failed).
    applied: u64,
    /// Transactional offset commits waiting for their transaction's outcome.
    txn_offsets: records::TxnOffsets,
}

impl Slot {
    /// Whether KIP-848 consumers are members.
    fn has_consumers(&self) -> bool {
        self.consumer.as_ref().is_some_and(|c| !c.is_empty())
    }

    fn new(group: Group, versions: records::OffsetVersions) -> Slot {
        Slot {
            group,
            consumer: None,
            share: None,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            pending: VecDeque::new(),
            writing: false,
            versions,
            queued: 0,
            applied: 0,
            txn_offsets: HashMap::new(),
        }
    }

    /// Queues offset changes; true if the caller must start the writer.
    fn queue(&mut self, mut p: Pending) -> bool {
        self.queued += 1;
        p.seq = self.queued;
        self.pending.push_back(p);
        !std::mem::replace(&mut self.writing, true)
    }
}

/// Answers to deliver once the records written before them are durable.
enum Delivery {
    /// A parked JoinGroup and its answer.
    Join(oneshot::Sender<JoinResult>, JoinResult),
    /// A parked SyncGroup and its answer.
    Sync(oneshot::Sender<SyncResult>, SyncResult),
}

impl Delivery {
    fn send(self) {
        // A dropped receiver is a client that went away: nothing to do.
        match self {
            Delivery::Join(tx, r) => drop(tx.send(r)),
            Delivery::Sync(tx, r) => drop(tx.send(r)),
        }
    }
}

/// Settings of the coordinator beyond the state machine's [`Limits`].
#[derive(Debug, Clone)]
struct Settings {
    /// Most groups held at once.
    groups_max: usize,
    /// Offsets of empty groups expire after this (ms).
    offsets_retention_ms: i64,
    /// How often expiry runs.
    retention_check_interval: Duration,
    /// Longest metadata string an OffsetCommit may carry.
    offset_metadata_bytes_max: usize,
}

/// Deadlines of groups, earliest first; at most one entry per group.
#[derive(Default)]
struct Timers {
    /// (deadline ms, group id).
    queue: BTreeSet<(i64, String)>,
    /// The deadline each group is queued under.
    by_group: HashMap<String, i64>,
}

/// The coordinator for every group (this broker coordinates them all).
pub struct Coordinator {
    /// Enforced by the state machine.
    limits: Limits,
    /// Enforced by the KIP-848 state machines.
    consumer_limits: ConsumerLimits,
    /// Share-group settings.
    share: ShareSettings,
    /// Share sessions by (group, member).
    sessions: Mutex<shares::Sessions>,
    /// Group configs (GROUP resources) by group id; durable, and independent
    /// of whether the group exists, as in Kafka.
    group_configs: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// The rest of the settings.
    settings: Settings,
    /// Groups by id.
    groups: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
    /// The internal state log.
    store: Arc<StateLog>,
    /// Group deadlines for the timer task.
    timers: Mutex<Timers>,
    /// Wakes the timer task when an earlier deadline is queued.
    timer_wake: Arc<Notify>,
    /// Set at shutdown: parked requests are answered and no new ones park.
    closing: AtomicBool,
    /// Notified whenever a group's writer finishes a batch (compaction waits on it).
    writes_done: Notify,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State-machine calls leave the group consistent between steps; a panic
    // elsewhere must not wedge every later request on this group.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Coordinator {
    /// Replays the group log and starts the timer task.
    pub async fn open(
        config: &Config,
        log: Arc<Partition>,
        syncer: Syncer,
    ) -> io::Result<Arc<Coordinator>> {
        let compact = config.group_log_compact_bytes;
        let (store, snapshot) =
            tokio::task::spawn_blocking(move || StateLog::open(log, syncer, compact))
                .await
                .map_err(io::Error::other)?
                .map_err(|e| io::Error::other(format!("replaying the group log: {e}")))?;
        let records::Replayed {
            groups,
            mut versions,
            mut txn_offsets,
            shares,
            group_configs,
        } = records::build_groups(snapshot, now_ms());
        tracing::info!(groups = groups.len(), "group log replayed");
        let limits = Limits {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            session_timeout_ms_min: config.group_session_timeout_ms_min,
            session_timeout_ms_max: config.group_session_timeout_ms_max,
            members_max: config.group_members_max,
        };
        let settings = Settings {
            groups_max: config.groups_max,
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            retention_check_interval: Duration::from_millis(
                config.offsets_retention_check_interval_ms.max(1),
            ),
            offset_metadata_bytes_max: config.offset_metadata_bytes_max,
        };
        let consumer_limits = ConsumerLimits {
            session_timeout_ms: config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            members_max: config.group_members_max,
        };
        let share = ShareSettings {
            group: ShareGroupLimits {
                session_timeout_ms: i64::from(config.group_share_session_timeout_ms),
                heartbeat_interval_ms: config.group_share_heartbeat_interval_ms,
                members_max: config.group_share_max_size,
            },
            partition: ShareLimits {
                max_in_flight: config.group_share_partition_max_record_locks,
                lock_ms: i64::from(config.group_share_record_lock_duration_ms),
                delivery_limit: config.group_share_delivery_count_limit,
            },
            lock_ms_min: i64::from(config.group_share_min_record_lock_duration_ms),
            lock_ms_max: i64::from(config.group_share_max_record_lock_duration_ms),
            sessions_max: config.group_share_max_share_sessions,
        };
        let coordinator = Arc::new(Coordinator {
            limits,
            consumer_limits,
            share,
            sessions: Mutex::new(HashMap::new()),
            group_configs: Mutex::new(group_configs),
            settings,
            groups: Mutex::new(HashMap::new()),
            store: Arc::new(store),
            timers: Mutex::new(Timers::default()),
            timer_wake: Arc::new(Notify::new()),
            closing: AtomicBool::new(false),
            writes_done: Notify::new(),
        });
        for (id, group) in groups {
            coordinator.schedule(&group);
            let v = versions.remove(&id).unwrap_or_default();
            let mut slot = Slot::new(group, v);
            slot.txn_offsets = txn_offsets.remove(&id).unwrap_or_default();
            lock(&coordinator.groups).insert(id, Arc::new(Mutex::new(slot)));
        }
        for (id, partitions) in shares {
            let sh = coordinator.restore_share(&id, partitions);
            let slot = coordinator.slot(&id).unwrap_or_else(|| {
                Arc::new(Mutex::new(Slot::new(
                    Group::new(&id, now_ms()),
                    HashMap::new(),
                )))
            });
            lock(&slot).share = Some(sh);
            lock(&coordinator.groups).insert(id, slot);
        }
        tokio::spawn(timer_task(
            Arc::downgrade(&coordinator),
            coordinator.timer_wake.clone(),
        ));
        tokio::spawn(expiry_task(
            Arc::downgrade(&coordinator),
            coordinator.settings.retention_check_interval,
        ));
        Ok(coordinator)
    }

    fn slot(&self, id: &str) -> Option<Arc<Mutex<Slot>>> {
        lock(&self.groups).get(id).cloned()
    }

    fn slot_or_create(&self, id: &str) -> Result<Arc<Mutex<Slot>>, GroupError> {
        let mut map = lock(&self.groups);
        if let Some(s) = map.get(id) {
            return Ok(s.clone());
        }
        if map.len() >= self.settings.groups_max {
            tracing::warn!(
                groups = map.len(),
                "groups_max reached: refusing a new group"
            );
            return Err(GroupError::TooManyGroups);
        }
        let slot = Arc::new(Mutex::new(Slot::new(
            Group::new(id, now_ms()),
            HashMap::new(),
        )));
        map.insert(id.to_string(), slot.clone());
        Ok(slot)
    }

    /// Queues the group's next deadline if it is earlier than what is queued.
    fn schedule(&self, group: &Group) {
        self.schedule_at(&group.id, group.next_deadline());
    }

    /// Queues `deadline` for group `id` if it is earlier than what is queued.
    fn schedule_at(&self, id: &str, deadline: Option<i64>) {
        let Some(deadline) = deadline else {
            return;
        };
        let mut t = lock(&self.timers);
        match t.by_group.get(id) {
            Some(d) if *d <= deadline => return,
            Some(d) => {
                let old = (*d, id.to_string());
                t.queue.remove(&old);
            }
            None => {}
        }
        t.by_group.insert(id.to_string(), deadline);
        let first = t.queue.first().is_none_or(|(d, _)| deadline < *d);
        t.queue.insert((deadline, id.to_string()));
        drop(t);
        if first {
            self.timer_wake.notify_one();
        }
    }

    /// Turns state-machine output into waiter completions and log records. Runs
    /// under the slot lock; returns what must wait for the records to be durable.
    fn apply(&self, slot: &mut Slot, outs: Vec<Out>) -> (Vec<Entry>, Vec<Delivery>) {
        let mut records = Vec::new();
        let mut deferred = Vec::new();
        for out in outs {
            let delivery = match out {
                Out::StoreGroup => {
                    records.push(self.entry(
                        records::group_key(&slot.group.id),
                        Some(records::group_value(&slot.group)),
                    ));
                    continue;
                }
                Out::Rebalance(cause) => {
                    crate::metrics::rebalance(cause.label());
                    continue;
                }
                Out::Join(member, r) => slot.joins.remove(&member).map(|tx| Delivery::Join(tx, r)),
                Out::Sync(member, r) => slot.syncs.remove(&member).map(|tx| Delivery::Sync(tx, r)),
            };
            if let Some(d) = delivery {
                if records.is_empty() {
                    d.send();
                } else {
                    deferred.push(d);
                }
            }
        }
        self.schedule(&slot.group);
        (records, deferred)
    }

    /// A record at a fresh version: call under the lock of the group it describes.
    fn entry(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Entry {
        Entry {
            key,
            version: self.store.next_version(),
            value,
        }
    }

    /// Writes `records`, then delivers `deferred`, without holding any lock.
    fn persist_then_deliver(self: &Arc<Self>, records: Vec<Entry>, deferred: Vec<Delivery>) {
        if records.is_empty() {
            deferred.into_iter().for_each(Delivery::send);
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { me.deliver_after(records, deferred).await });
    }

    /// Writes `records` (if any), then delivers `deferred`.
    async fn deliver_after(self: &Arc<Self>, records: Vec<Entry>, deferred: Vec<Delivery>) {
        if !records.is_empty() {
            self.write(records).await;
        }
        deferred.into_iter().for_each(Delivery::send);
    }

    /// Writes `records` durably; false (logged) if that failed.
    async fn write(self: &Arc<Self>, records: Vec<Entry>) -> bool {
        match self.store.write(records).await {
            Ok(compact) => {
                if compact {
                    let me = self.clone();
                    tokio::spawn(async move { me.compact().await });
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the group log failed");
                false
            }
        }
    }

    /// Queues offset changes of the group in `slot` (whose lock the caller holds,
    /// as `s`) and returns a receiver told whether they were applied. Starts the
    /// group's writer if none runs.
    fn queue_changes(
        self: &Arc<Self>,
        slot: &Arc<Mutex<Slot>>,
        s: &mut Slot,
        entries: Vec<Entry>,
        changes: Vec<OffsetChange>,
    ) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let start = s.queue(Pending {
            seq: 0,
            entries,
            changes,
            done: Some(tx),
        });
        if start {
            let me = self.clone();
            let slot = slot.clone();
            // A task of its own: the writer outlives any one request.
            tokio::spawn(async move { me.drain_pending(slot).await });
        }
        rx
    }

    /// The group's writer: writes everything queued in one append, applies it
    /// once durable (or nothing, if the write failed), tells the waiters, and
    /// repeats until the queue is empty.
    async fn drain_pending(self: Arc<Self>, slot: Arc<Mutex<Slot>>) {
        loop {
            let batch: Vec<Pending> = {
                let mut s = lock(&slot);
                if s.pending.is_empty() {
                    s.writing = false;
                    return;
                }
                s.pending.drain(..).collect()
            };
            let entries: Vec<Entry> = batch.iter().flat_map(|p| p.entries.clone()).collect();
            let ok = self.write(entries).await;
            let mut done = Vec::with_capacity(batch.len());
            {
                let mut s = lock(&slot);
                for mut p in batch {
                    for change in std::mem::take(&mut p.changes) {
                        self.apply_change(&slot, &mut s, change, ok);
                    }
                    s.applied = s.applied.max(p.seq);
                    done.extend(p.done.take());
                }
            }
            self.writes_done.notify_waiters();
            for tx in done {
                let _ = tx.send(ok);
            }
        }
    }

    /// Applies one offset change after its write succeeded (`ok`), or undoes what
    /// was done when it was queued after its write failed.
    fn apply_change(&self, slot: &Arc<Mutex<Slot>>, s: &mut Slot, change: OffsetChange, ok: bool) {
        match (change, ok) {
            (OffsetChange::Commit(key, c, version), true) => {
                s.versions.insert(key.clone(), version);
                s.group.offsets.insert(key, c);
            }
            (OffsetChange::Delete(key), true) => {
                s.versions.remove(&key);
                s.group.offsets.remove(&key);
            }
            (OffsetChange::RemoveGroup, true) => {
                s.group.offsets.clear();
                s.share = None;
                s.versions.clear();
                s.txn_offsets.clear();
                let id = s.group.id.clone();
                let mut groups = lock(&self.groups);
                if groups.get(&id).is_some_and(|g| Arc::ptr_eq(g, slot)) {
                    groups.remove(&id);
                }
                drop(groups);
                let mut t = lock(&self.timers);
                if let Some(d) = t.by_group.remove(&id) {
                    t.queue.remove(&(d, id));
                }
            }
            (OffsetChange::RemoveGroup, false) => s.group.undo_dead(now_ms()),
            (OffsetChange::TxnPending(pid, key, c, version), true) => {
                s.txn_offsets
                    .entry(pid)
                    .or_default()
                    .insert(key, (c, version));
            }
            (OffsetChange::TxnDone(pid, keys), true) => {
                if let Some(m) = s.txn_offsets.get_mut(&pid) {
                    for k in &keys {
                        m.remove(k);
                    }
                    if m.is_empty() {
                        s.txn_offsets.remove(&pid);
                    }
                }
            }
            (
                OffsetChange::Commit(..)
                | OffsetChange::Delete(_)
                | OffsetChange::TxnPending(..)
                | OffsetChange::TxnDone(..),
                false,
            ) => {}
        }
    }

    /// Waits for queued changes; maps a failed write to NOT_COORDINATOR for each
    /// success in `results` (the client retries), since nothing acknowledged may be lost.
    async fn await_changes<T>(
        rx: Option<oneshot::Receiver<bool>>,
        results: Vec<Result<T, GroupError>>,
    ) -> Vec<Result<T, GroupError>> {
        let ok = match rx {
            Some(rx) => rx.await.unwrap_or(false),
            None => true,
        };
        if ok {
            return results;
        }
        results
            .into_iter()
            .map(|r| r.and(Err(GroupError::NotCoordinator)))
            .collect()
    }

    /// Writes a snapshot of every live key and drops the log before it. Offset
    /// changes queued before the roll are waited for (their records sit in the
    /// segments about to go); then every durable offset is rewritten at the
    /// version it was written with, so changes queued since still win on replay,
    /// whether they land or fail. Membership, whose truth is memory, gets fresh
    /// versions.
    async fn compact(self: &Arc<Self>) {
        let base = match self.store.begin_snapshot().await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "group log compaction failed to roll");
                return;
            }
        };
        let slots: Vec<Arc<Mutex<Slot>>> = lock(&self.groups).values().cloned().collect();
        let targets: Vec<(Arc<Mutex<Slot>>, u64)> = slots
            .into_iter()
            .map(|slot| {
                let queued = lock(&slot).queued;
                (slot, queued)
            })
            .collect();
        loop {
            let waiting = self.writes_done.notified();
            if targets.iter().all(|(slot, q)| lock(slot).applied >= *q) {
                break;
            }
            // Bounded: each writer finishes its queue in order.
            let _ = tokio::time::timeout(Duration::from_millis(100), waiting).await;
        }
        let mut records = Vec::new();
        for (slot, _) in &targets {
            let s = lock(slot);
            let g = &s.group;
            if g.state != GroupState::Dead && g.protocol_type.is_some() {
                records.push(self.entry(records::group_key(&g.id), Some(records::group_value(g))));
            }
            // A Dead group still listed is being removed: its offsets stay until
            // the tombstones (newer versions) land, and come back if they fail.
            for ((topic, partition), c) in &g.offsets {
                let key = records::offset_key(&g.id, topic, *partition);
                let version = match s.versions.get(&(topic.clone(), *partition)) {
                    Some(v) => *v,
                    None => self.store.next_version(),
                };
                records.push(Entry {
                    key,
                    version,
                    value: Some(records::offset_value(c)),
                });
            }
            self.share_compaction_records(&s, &mut records);
            for (pid, pending) in &s.txn_offsets {
                for ((topic, partition), (c, version)) in pending {
                    records.push(Entry {
                        key: records::txn_offset_key(&g.id, *pid, topic, *partition),
                        version: *version,
                        value: Some(records::offset_value(c)),
                    });
                }
            }
        }
        self.group_config_records(&mut records);
        if let Err(e) = self.store.finish_snapshot(base, records).await {
            tracing::error!(error = %e, "group log compaction failed");
        }
    }

    /// Handles JoinGroup: answers at once or parks until the join phase ends.
    pub async fn join(
        self: &Arc<Self>,
        group_id: &str,
        mut req: JoinRequest,
        topics: &(dyn Fn() -> Topics + Sync),
    ) -> JoinResult {
        let member_id = req.member_id.clone();
        let err = |e| JoinResult {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.clone(),
            members: Vec::new(),
        };
        if group_id.is_empty() {
            return err(GroupError::InvalidGroupId);
        }
        if self.closing.load(Ordering::Acquire) {
            return err(GroupError::NotCoordinator);
        }
        let slot = if req.member_id.is_empty() {
            match self.slot_or_create(group_id) {
                Ok(s) => s,
                Err(e) => return err(e),
            }
        } else {
            match self.slot(group_id) {
                Some(s) => s,
                None => return err(GroupError::UnknownMemberId),
            }
        };
        let prefix = req.instance_id.as_deref().unwrap_or(&req.client_id);
        req.new_member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        let (tx, rx) = oneshot::channel();
        let (now_reply, records, deferred) = {
            let mut s = lock(&slot);
            if s.share.is_some() {
                return err(GroupError::InconsistentGroupProtocol);
            }
            if s.has_consumers() {
                // A classic member in a KIP-848 group (online migration):
                // answered at once, never parked.
                let l = &self.limits;
                if req.session_timeout_ms < l.session_timeout_ms_min
                    || req.session_timeout_ms > l.session_timeout_ms_max
                {
                    return err(GroupError::InvalidSessionTimeout);
                }
                let now = now_ms();
                let c = s.consumer.as_mut().expect("has consumers");
                let r = c.classic_join(&req, &topics(), &self.consumer_limits, now);
                let next = c.next_deadline();
                drop(s);
                self.schedule_at(group_id, next);
                return r;
            }
            let (reply, outs) = s.group.join(now_ms(), &self.limits, req);
            let now_reply = match reply {
                Reply::Now(r) => Some(r),
                Reply::Parked(member) => {
                    if let Some(old) = s.joins.insert(member.clone(), tx) {
                        // The member sent a second JoinGroup: the first is superseded.
                        drop(old.send(JoinResult {
                            member_id: member.clone(),
                            ..err(GroupError::RebalanceInProgress)
                        }));
                    }
                    None
                }
            };
            let (records, deferred) = self.apply(&mut s, outs);
            (now_reply, records, deferred)
        };
        if let Some(r) = now_reply {
            // A returning static member is persisted before it is answered.
            self.deliver_after(records, deferred).await;
            return r;
        }
        self.persist_then_deliver(records, deferred);
        rx.await
            .unwrap_or_else(|_| err(GroupError::RebalanceInProgress))
    }

    /// Handles SyncGroup: answers at once or parks until the leader's assignment.
    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let err = |e| SyncResult {
            error: Some(e),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        };
        if group_id.is_empty() {
            return err(GroupError::InvalidGroupId);
        }
        if self.closing.load(Ordering::Acquire) {
            return err(GroupError::NotCoordinator);
        }
        let Some(slot) = self.slot(group_id) else {
            return err(GroupError::UnknownMemberId);
        };
        let (tx, rx) = oneshot::channel();
        let (records, deferred) = {
            let mut s = lock(&slot);
            if let Some(c) = s.consumer.as_mut().filter(|c| !c.is_empty()) {
                let r = c.classic_sync(member_id, instance_id, generation, protocol, now_ms());
                let next = c.next_deadline();
                drop(s);
                self.schedule_at(group_id, next);
                return r;
            }
            let (reply, outs) = s.group.sync(
                now_ms(),
                member_id,
                instance_id,
                generation,
                protocol,
                assignments,
            );
            match reply {
                Reply::Now(r) => {
                    let (records, deferred) = self.apply(&mut s, outs);
                    drop(s);
                    self.persist_then_deliver(records, deferred);
                    return r;
                }
                Reply::Parked(member) => {
                    if let Some(old) = s.syncs.insert(member, tx) {
                        drop(old.send(err(GroupError::RebalanceInProgress)));
                    }
                    self.apply(&mut s, outs)
                }
            }
        };
        self.persist_then_deliver(records, deferred);
        rx.await
            .unwrap_or_else(|_| err(GroupError::RebalanceInProgress))
    }

    /// Handles Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let slot = self.slot(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut s = lock(&slot);
        if let Some(c) = s.consumer.as_mut().filter(|c| !c.is_empty()) {
            let r = c.classic_heartbeat(member_id, instance_id, generation, now_ms());
            let next = c.next_deadline();
            drop(s);
            self.schedule_at(group_id, next);
            return r;
        }
        let r = s
            .group
            .heartbeat(now_ms(), member_id, instance_id, generation);
        self.schedule(&s.group);
        r
    }

    /// A KIP-848 group left with only classic members becomes a classic
    /// group again (Kafka's online downgrade), keeping its offsets; its
    /// members are told to rejoin. Returns the effects to apply.
    fn maybe_downgrade(&self, s: &mut Slot, now: i64) -> Vec<Out> {
        let Some(c) = s.consumer.as_ref().filter(|c| c.only_classic_members()) else {
            return Vec::new();
        };
        let mut g = c.to_classic(now);
        g.offsets = std::mem::take(&mut s.group.offsets);
        tracing::info!(
            group = %g.id,
            members = g.members.len(),
            "only classic members are left: the group is a classic group again"
        );
        s.group = g;
        s.consumer = None;
        s.group.rebalance_now(now)
    }

    /// Handles LeaveGroup: one result per member, or a group-level error.
    pub async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let Some(slot) = self.slot(group_id) else {
            return Ok(members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect());
        };
        let (results, records, deferred) = {
            let mut s = lock(&slot);
            if s.group.state == GroupState::Dead {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            let now = now_ms();
            let mut outs = Vec::new();
            let results: Vec<_> = match s.consumer.as_mut().filter(|c| !c.is_empty()) {
                Some(c) => {
                    let r: Vec<_> = members.iter().map(|(m, i)| c.classic_leave(m, i)).collect();
                    self.schedule_at(group_id, c.next_deadline());
                    if r.iter().any(Result::is_ok) {
                        outs = self.maybe_downgrade(&mut s, now);
                    }
                    r
                }
                None => members
                    .iter()
                    .map(|(m, i)| s.group.leave(now, m, i, &mut outs))
                    .collect(),
            };
            let (records, deferred) = self.apply(&mut s, outs);
            (results, records, deferred)
        };
        self.persist_then_deliver(records, deferred);
        Ok(results)
    }

    /// The group an offset commit goes to: NOT_COORDINATOR while stopping; an
    /// unknown group is created only by a commit without a generation (-1).
    fn commit_slot(&self, group_id: &str, generation: i32) -> Result<Arc<Mutex<Slot>>, GroupError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(GroupError::NotCoordinator);
        }
        match self.slot(group_id) {
            Some(s) => Ok(s),
            None if generation < 0 => self.slot_or_create(group_id),
            None => Err(GroupError::IllegalGeneration),
        }
    }

    /// Handles OffsetCommit. `offsets` are (topic, partition, offset, leader epoch,
    /// metadata); the result has one entry per offset. Answers once durable.
    pub async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        retention_ms: Option<i64>,
        offsets: Vec<(String, i32, i64, i32, String)>,
    ) -> Vec<Result<(), GroupError>> {
        let all = |e: GroupError| offsets.iter().map(|_| Err(e)).collect::<Vec<_>>();
        let slot = match self.commit_slot(group_id, generation) {
            Ok(s) => s,
            Err(e) => return all(e),
        };
        let now = now_ms();
        let (rx, results) = {
            let mut s = lock(&slot);
            if s.share.is_some() {
                // A share group has no committed offsets (as Kafka).
                return all(GroupError::GroupIdNotFound);
            }
            let checked = match s.consumer.as_ref().filter(|c| !c.is_empty()) {
                // A KIP-848 member commits at its member epoch (v9+).
                Some(c) => c.check_commit(member_id, generation).map_err(|e| match e {
                    ConsumerError::StaleMemberEpoch => GroupError::StaleMemberEpoch,
                    ConsumerError::IllegalGeneration => GroupError::IllegalGeneration,
                    _ => GroupError::UnknownMemberId,
                }),
                None => s
                    .group
                    .check_commit(now, member_id, instance_id, generation),
            };
            if let Err(e) = checked {
                return all(e);
            }
            let (results, records, changes) = self.offset_changes(
                offsets,
                now,
                retention_ms.map(|r| now.saturating_add(r)),
                |t, p| records::offset_key(group_id, t, p),
                OffsetChange::Commit,
            );
            self.schedule(&s.group);
            let rx =
                (!records.is_empty()).then(|| self.queue_changes(&slot, &mut s, records, changes));
            (rx, results)
        };
        Self::await_changes(rx, results).await
    }

    /// The records and changes of committed offsets (OffsetCommit's, or a
    /// transaction's pending ones, keyed and changed by the caller), with one
    /// result per offset: metadata over `offset.metadata.max.bytes` is refused.
    fn offset_changes(
        &self,
        offsets: Vec<(String, i32, i64, i32, String)>,
        now: i64,
        expire_timestamp: Option<i64>,
        key: impl Fn(&str, i32) -> Vec<u8>,
        change: impl Fn((String, i32), Committed, u64) -> OffsetChange,
    ) -> (Vec<Result<(), GroupError>>, Vec<Entry>, Vec<OffsetChange>) {
        let mut results = Vec::with_capacity(offsets.len());
        let mut entries = Vec::new();
        let mut changes = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in offsets {
            if metadata.len() > self.settings.offset_metadata_bytes_max {
                results.push(Err(GroupError::OffsetMetadataTooLarge));
                continue;
            }
            let c = Committed {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp: now,
                expire_timestamp,
            };
            let entry = self.entry(key(&topic, partition), Some(records::offset_value(&c)));
            changes.push(change((topic, partition), c, entry.version));
            entries.push(entry);
            results.push(Ok(()));
        }
        (results, entries, changes)
    }

    /// Committed offsets of a group: the given partitions, or all of them.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<((String, i32), Option<Committed>)> {
        let slot = self.slot(group_id);
        let guard = slot.as_ref().map(|s| lock(s));
        let offsets = guard.as_ref().map(|s| &s.group.offsets);
        match partitions {
            Some(ps) => ps
                .into_iter()
                .map(|k| {
                    let c = offsets.and_then(|o| o.get(&k)).cloned();
                    (k, c)
                })
                .collect(),
            None => offsets
                .map(|o| {
                    o.iter()
                        .map(|(k, c)| (k.clone(), Some(c.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// TxnOffsetCommit: stores offsets of `producer_id`'s open transaction,
    /// durably but invisible to OffsetFetch until the transaction commits
    /// ([`Coordinator::complete_txn`]). Member checks as OffsetCommit's when a
    /// generation is given (v3+). `verify` (the transaction is open and holds
    /// the group) runs under the group's lock, so the change is queued before
    /// any completion of that transaction looks at the group.
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit<E>(
        self: &Arc<Self>,
        group_id: &str,
        producer_id: i64,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        offsets: Vec<(String, i32, i64, i32, String)>,
        verify: impl FnOnce() -> Result<(), E>,
    ) -> Result<Vec<Result<(), GroupError>>, E> {
        let all = |e: GroupError| Ok(offsets.iter().map(|_| Err(e)).collect::<Vec<_>>());
        if group_id.is_empty() && !self.closing.load(Ordering::Acquire) {
            return all(GroupError::InvalidGroupId);
        }
        let slot = match self.commit_slot(group_id, generation) {
            Ok(s) => s,
            Err(e) => return all(e),
        };
        let now = now_ms();
        let (rx, results) = {
            let mut s = lock(&slot);
            verify()?;
            if s.share.is_some() {
                return all(GroupError::GroupIdNotFound);
            }
            if generation >= 0 || !member_id.is_empty() {
                let checked = match s.consumer.as_ref().filter(|c| !c.is_empty()) {
                    // As Kafka: a stale epoch is ILLEGAL_GENERATION here.
                    Some(c) => c.check_commit(member_id, generation).map_err(|e| match e {
                        ConsumerError::StaleMemberEpoch | ConsumerError::IllegalGeneration => {
                            GroupError::IllegalGeneration
                        }
                        _ => GroupError::UnknownMemberId,
                    }),
                    None => s
                        .group
                        .check_commit(now, member_id, instance_id, generation),
                };
                if let Err(e) = checked {
                    return all(e);
                }
            }
            let (results, entries, changes) = self.offset_changes(
                offsets,
                now,
                None,
                |t, p| records::txn_offset_key(group_id, producer_id, t, p),
                |key, c, version| OffsetChange::TxnPending(producer_id, key, c, version),
            );
            let rx =
                (!entries.is_empty()).then(|| self.queue_changes(&slot, &mut s, entries, changes));
            (rx, results)
        };
        Ok(Self::await_changes(rx, results).await)
    }

    /// Waits until every change queued on `slot` so far is applied (or failed).
    async fn wait_applied(&self, slot: &Arc<Mutex<Slot>>) {
        let target = lock(slot).queued;
        loop {
            let waiting = self.writes_done.notified();
            if lock(slot).applied >= target {
                return;
            }
            // Bounded: the group's writer finishes its queue in order.
            let _ = tokio::time::timeout(Duration::from_millis(100), waiting).await;
        }
    }

    /// The transaction of `producer_id` ended: on commit its pending offsets
    /// become the groups' committed offsets, on abort they are dropped. True
    /// once that is durable in every group (idempotent: a repeat finds nothing).
    pub async fn complete_txn(self: &Arc<Self>, producer_id: i64, commit: bool) -> bool {
        let slots: Vec<Arc<Mutex<Slot>>> = lock(&self.groups).values().cloned().collect();
        let mut waits = Vec::new();
        for slot in slots {
            // A TxnOffsetCommit queued before the transaction left Ongoing may
            // still be in flight: its offsets are part of this outcome.
            self.wait_applied(&slot).await;
            let mut s = lock(&slot);
            let Some(pending) = s.txn_offsets.get(&producer_id).cloned() else {
                continue;
            };
            let group_id = s.group.id.clone();
            let mut entries = Vec::new();
            let mut changes = Vec::new();
            for ((topic, partition), (c, _)) in &pending {
                entries.push(self.entry(
                    records::txn_offset_key(&group_id, producer_id, topic, *partition),
                    None,
                ));
                if commit {
                    let e = self.entry(
                        records::offset_key(&group_id, topic, *partition),
                        Some(records::offset_value(c)),
                    );
                    changes.push(OffsetChange::Commit(
                        (topic.clone(), *partition),
                        c.clone(),
                        e.version,
                    ));
                    entries.push(e);
                }
            }
            changes.push(OffsetChange::TxnDone(
                producer_id,
                pending.keys().cloned().collect(),
            ));
            waits.push(self.queue_changes(&slot, &mut s, entries, changes));
        }
        let mut ok = true;
        for rx in waits {
            ok &= rx.await.unwrap_or(false);
        }
        ok
    }

    /// The partitions of `group_id` with a transactional offset commit pending
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them).
    pub fn unstable_partitions(&self, group_id: &str) -> BTreeSet<(String, i32)> {
        self.slot(group_id)
            .map(|slot| {
                lock(&slot)
                    .txn_offsets
                    .values()
                    .flat_map(|m| m.keys().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets every group's committed offsets for `topic` (it was deleted), as
    /// Kafka does: tombstones go to the group log, and a topic re-created under
    /// the same name starts without the old offsets. Returns how many offsets
    /// were removed; a failed write is logged and leaves them in place.
    pub async fn forget_topic(self: &Arc<Self>, topic: &str) -> usize {
        let slots: Vec<Arc<Mutex<Slot>>> = lock(&self.groups).values().cloned().collect();
        let mut waits = Vec::new();
        let mut removed = 0;
        for slot in slots {
            let mut s = lock(&slot);
            let keys: Vec<(String, i32)> = s
                .group
                .offsets
                .keys()
                .filter(|(t, _)| t == topic)
                .cloned()
                .collect();
            if keys.is_empty() {
                continue;
            }
            removed += keys.len();
            let group_id = s.group.id.clone();
            let records = keys
                .iter()
                .map(|(t, p)| self.entry(records::offset_key(&group_id, t, *p), None))
                .collect();
            let changes = keys.into_iter().map(OffsetChange::Delete).collect();
            waits.push((
                group_id,
                self.queue_changes(&slot, &mut s, records, changes),
            ));
        }
        for (group, rx) in waits {
            if !rx.await.unwrap_or(false) {
                tracing::warn!(
                    group,
                    topic,
                    "could not forget the offsets of a deleted topic"
                );
            }
        }
        removed
    }

    /// Every live group with its committed offsets, for the metrics; each group
    /// is locked only while it is copied.
    pub fn metrics_view(&self) -> Vec<GroupMetrics> {
        let slots: Vec<Arc<Mutex<Slot>>> = lock(&self.groups).values().cloned().collect();
        let mut out: Vec<GroupMetrics> = slots
            .iter()
            .filter_map(|slot| {
                let s = lock(slot);
                if s.share.is_some() {
                    // Share groups have metrics of their own.
                    return None;
                }
                let g = &s.group;
                // A KIP-848 group's state and members are its consumer view.
                let (state, members) = match s.consumer.as_ref().filter(|c| !c.is_empty()) {
                    Some(c) => (c.state(), c.members().count()),
                    None => (g.state.name(), g.members.len()),
                };
                (g.state != GroupState::Dead).then(|| GroupMetrics {
                    group_id: g.id.clone(),
                    state,
                    members,
                    offsets: g
                        .offsets
                        .iter()
                        .map(|(k, c)| (k.clone(), c.offset))
                        .collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Every live group.
    pub fn list(&self) -> Vec<GroupOverview> {
        let slots: Vec<Arc<Mutex<Slot>>> = lock(&self.groups).values().cloned().collect();
        let mut out: Vec<GroupOverview> = slots
            .iter()
            .filter_map(|slot| {
                let s = lock(slot);
                let g = &s.group;
                if let Some(sh) = s.share.as_ref() {
                    return Some(GroupOverview {
                        group_id: g.id.clone(),
                        protocol_type: "share".into(),
                        state: sh.group.state(),
                        group_type: "share",
                    });
                }
                if let Some(c) = s.consumer.as_ref().filter(|c| !c.is_empty()) {
                    return Some(GroupOverview {
                        group_id: g.id.clone(),
                        protocol_type: "consumer".into(),
                        state: c.state(),
                        group_type: "consumer",
                    });
                }
                (g.state != GroupState::Dead).then(|| GroupOverview {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state.name(),
                    group_type: "classic",
                })
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Describes a group; an unknown group is reported Dead, as Kafka does.
    pub fn describe(&self, group_id: &str) -> GroupSummary {
        let dead = GroupSummary {
            state: GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        let Some(slot) = self.slot(group_id) else {
            return dead;
        };
        let s = lock(&slot);
        if s.has_consumers() || s.share.is_some() {
            // Not a classic group: Kafka describes it as Dead (before v6).
            return dead;
        }
        let g = &s.group;
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        GroupSummary {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol).cloned().unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// Marks an empty group Dead and queues tombstones for it and its offsets
    /// (under its lock); it leaves the registry once they are durable.
    fn remove_group(
        self: &Arc<Self>,
        slot: &Arc<Mutex<Slot>>,
        s: &mut Slot,
    ) -> oneshot::Receiver<bool> {
        let id = s.group.id.clone();
        s.group.mark_dead(now_ms());
        let mut records = vec![self.entry(records::group_key(&id), None)];
        for (topic, partition) in s.group.offsets.keys() {
            records.push(self.entry(records::offset_key(&id, topic, *partition), None));
        }
        // A share group's share-partitions go with it.
        if let Some(sh) = s.share.as_ref() {
            for (topic, partition) in sh.partitions.keys() {
                records.push(self.entry(records::share_key(&id, *topic, *partition), None));
            }
        }
        // Pending transactional offsets go with the group (their
        // transaction's marker then finds nothing).
        for (pid, pending) in &s.txn_offsets {
            for (topic, partition) in pending.keys() {
                records
                    .push(self.entry(records::txn_offset_key(&id, *pid, topic, *partition), None));
            }
        }
        self.queue_changes(slot, s, records, vec![OffsetChange::RemoveGroup])
    }

    /// Handles DeleteGroups: one result per group.
    pub async fn delete_groups(self: &Arc<Self>, ids: &[String]) -> Vec<Result<(), GroupError>> {
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(slot) = self.slot(id) else {
                results.push(Err(GroupError::GroupIdNotFound));
                continue;
            };
            let rx = {
                let mut s = lock(&slot);
                match s.group.state {
                    _ if s.has_consumers() => Err(GroupError::NonEmptyGroup),
                    _ if s.share.as_ref().is_some_and(|sh| !sh.group.is_empty()) => {
                        Err(GroupError::NonEmptyGroup)
                    }
                    GroupState::Dead => Err(GroupError::GroupIdNotFound),
                    GroupState::Empty => Ok(self.remove_group(&slot, &mut s)),
                    _ => Err(GroupError::NonEmptyGroup),
                }
            };
            let r = match rx {
                Ok(rx) => Self::await_changes(Some(rx), vec![Ok(())]).await.remove(0),
                Err(e) => Err(e),
            };
            results.push(r);
        }
        results
    }

    /// Handles OffsetDelete: per-partition results, or a group-level error.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<((String, i32), Result<(), GroupError>)>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let slot = self.slot(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let mut records = Vec::new();
        let mut changes = Vec::new();
        let (keys, results, rx) = {
            let mut s = lock(&slot);
            let subscribed = match s.group.state {
                GroupState::Dead => return Err(GroupError::GroupIdNotFound),
                GroupState::Empty => Vec::new(),
                _ => s
                    .group
                    .subscribed_topics()
                    .ok_or(GroupError::NonEmptyGroup)?,
            };
            let mut keys = Vec::new();
            let mut results = Vec::new();
            for key in partitions {
                if subscribed.contains(&key.0) {
                    results.push(Err(GroupError::GroupSubscribedToTopic));
                } else {
                    if s.group.offsets.contains_key(&key) {
                        records
                            .push(self.entry(records::offset_key(group_id, &key.0, key.1), None));
                        changes.push(OffsetChange::Delete(key.clone()));
                    }
                    results.push(Ok(()));
                }
                keys.push(key);
            }
            let rx =
                (!records.is_empty()).then(|| self.queue_changes(&slot, &mut s, records, changes));
            (keys, results, rx)
        };
        let results = Self::await_changes(rx, results).await;
        Ok(keys.into_iter().zip(results).collect())
    }

    /// Expires old offsets and drops empty groups with nothing left; each change
    /// applies once durable.
    async fn expire_offsets(self: &Arc<Self>) {
        let now = now_ms();
        let slots: Vec<Arc<Mutex<Slot>>> = lock(&self.groups).values().cloned().collect();
        let mut expired = 0usize;
        let mut waits = Vec::new();
        for slot in slots {
            let mut s = lock(&slot);
            if !s.pending.is_empty() || s.has_consumers() || s.share.is_some() {
                // Offsets are changing right now, or KIP-848 members use them,
                // or it is a share group (kept, as Kafka keeps them).
                continue;
            }
            if s.group.state == GroupState::Empty
                && s.group.offsets.is_empty()
                && s.txn_offsets.is_empty()
            {
                waits.push(self.remove_group(&slot, &mut s));
                continue;
            }
            let doomed = s
                .group
                .expired_offsets(now, self.settings.offsets_retention_ms);
            if doomed.is_empty() {
                continue;
            }
            expired += doomed.len();
            let id = s.group.id.clone();
            let records = doomed
                .iter()
                .map(|k| self.entry(records::offset_key(&id, &k.0, k.1), None))
                .collect();
            let changes = doomed.into_iter().map(OffsetChange::Delete).collect();
            waits.push(self.queue_changes(&slot, &mut s, records, changes));
        }
        let mut failed = 0usize;
        for rx in waits {
            if !rx.await.unwrap_or(false) {
                failed += 1;
            }
        }
        if expired > 0 {
            tracing::info!(
                offsets = expired,
                failed_groups = failed,
                "expired committed offsets"
            );
        }
    }

    /// Runs the deadlines of one group.
    fn tick(self: &Arc<Self>, id: &str) {
        let Some(slot) = self.slot(id) else { return };
        let (records, deferred) = {
            let mut s = lock(&slot);
            let now = now_ms();
            let mut outs = Vec::new();
            if let Some(c) = s.consumer.as_mut() {
                let gone = c.tick(now);
                for member in &gone {
                    tracing::info!(
                        group = id,
                        member,
                        "KIP-848 group member removed: session, rebalance, join or sync timeout"
                    );
                }
                self.schedule_at(id, c.next_deadline());
                if !gone.is_empty() {
                    outs = self.maybe_downgrade(&mut s, now);
                }
            }
            self.share_tick(id, &mut s, now);
            outs.extend(s.group.tick(now, &self.limits));
            self.apply(&mut s, outs)
        };
        self.persist_then_deliver(records, deferred);
    }

    /// Handles ConsumerGroupHeartbeat (KIP-848) against the `topics` that
    /// exist. A classic group with members keeps its protocol (as Kafka with
    /// upgrades disabled: GROUP_ID_NOT_FOUND); an empty one is taken over,
    /// offsets kept.
    pub fn consumer_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        mut req: Heartbeat,
        topics: &Topics,
    ) -> Result<HeartbeatReply, ConsumerError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(ConsumerError::Group(GroupError::NotCoordinator));
        }
        if group_id.trim().is_empty() {
            return Err(ConsumerError::InvalidRequest(
                "GroupId can't be empty.".into(),
            ));
        }
        let slot = if req.member_epoch == 0 {
            self.slot_or_create(group_id)
                .map_err(ConsumerError::Group)?
        } else {
            // Unknown after a restart (membership is not persisted): the
            // member rejoins, where Kafka's GROUP_ID_NOT_FOUND would be fatal
            // to librdkafka.
            self.slot(group_id).ok_or(ConsumerError::UnknownMemberId)?
        };
        req.new_member_id = uuid::Uuid::new_v4().to_string();
        let mut s = lock(&slot);
        if s.share.is_some() {
            return Err(ConsumerError::Group(GroupError::GroupIdNotFound));
        }
        let now = now_ms();
        let mut outs = Vec::new();
        let leaving = req.member_epoch < 0;
        let reply = match s.group.state {
            GroupState::Dead => {
                return Err(ConsumerError::Group(GroupError::CoordinatorNotAvailable))
            }
            GroupState::Empty => {
                let c = s
                    .consumer
                    .get_or_insert_with(|| ConsumerGroup::new(group_id));
                c.heartbeat(req, topics, &self.consumer_limits, now)
            }
            // A classic group with members: a joining KIP-848 member makes it
            // a KIP-848 group its classic members stay in (Kafka's online
            // upgrade); nothing changes unless the join succeeds.
            _ if req.member_epoch == 0
                && s.group.members.len() < self.consumer_limits.members_max =>
            {
                let mut c = match ConsumerGroup::from_classic(&s.group, topics, now) {
                    Ok(c) => c,
                    Err(why) => {
                        tracing::info!(group = group_id, "cannot upgrade the classic group: {why}");
                        return Err(ConsumerError::Group(GroupError::GroupIdNotFound));
                    }
                };
                let reply = c.heartbeat(req, topics, &self.consumer_limits, now)?;
                tracing::info!(
                    group = group_id,
                    members = s.group.members.len(),
                    "a KIP-848 member joined a classic group: upgraded, its classic members stay"
                );
                outs = s.group.hand_over_members(now);
                s.consumer = Some(c);
                Ok(reply)
            }
            // A KIP-848 member the group no longer knows (mixed membership
            // is not persisted, or it was removed as the group went back to
            // classic): it rejoins with epoch 0, where Kafka's
            // GROUP_ID_NOT_FOUND would be fatal to librdkafka.
            _ if req.member_epoch > 0 => return Err(ConsumerError::UnknownMemberId),
            _ => return Err(ConsumerError::Group(GroupError::GroupIdNotFound)),
        };
        if let Some(c) = s.consumer.as_ref() {
            self.schedule_at(group_id, c.next_deadline());
        }
        if leaving && reply.is_ok() {
            outs.extend(self.maybe_downgrade(&mut s, now));
        }
        let (records, deferred) = self.apply(&mut s, outs);
        drop(s);
        self.persist_then_deliver(records, deferred);
        reply
    }

    /// A KIP-848 group for ConsumerGroupDescribe; `None` if the id is not one.
    pub fn consumer_describe(&self, group_id: &str) -> Option<ConsumerGroupSummary> {
        let slot = self.slot(group_id)?;
        let s = lock(&slot);
        let c = s.consumer.as_ref().filter(|c| !c.is_empty())?;
        Some(ConsumerGroupSummary {
            state: c.state(),
            group_epoch: c.group_epoch,
            assignment_epoch: c.assignment_epoch,
            assignor: c.assignor(),
            members: c
                .members()
                .map(|m| ConsumerMemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    topic_names: m.topic_names.clone(),
                    topic_regex: m.topic_regex.clone(),
                    assignment: m.assigned.clone(),
                    target: c.target_of(&m.id).cloned().unwrap_or_default(),
                    classic: m.classic.is_some(),
                })
                .collect(),
        })
    }

    /// Answers every parked JoinGroup and SyncGroup with NOT_COORDINATOR, so
    /// connections drain quickly at shutdown.
    pub fn begin_shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let slots: Vec<Arc<Mutex<Slot>>> = lock(&self.groups).values().cloned().collect();
        for slot in slots {
            let mut s = lock(&slot);
            let outs = s.group.abandon_waiters(GroupError::NotCoordinator);
            // Only answers come out, no records, so `apply` delivers them at once.
            let (records, deferred) = self.apply(&mut s, outs);
            debug_assert!(records.is_empty() && deferred.is_empty());
        }
    }
}

/// Sleeps until the earliest group deadline (or an earlier one is queued) and ticks
/// the groups that are due. Ends when the coordinator is dropped.
async fn timer_task(coordinator: std::sync::Weak<Coordinator>, wake: Arc<Notify>) {
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let now = now_ms();
        let mut due = Vec::new();
        let next = {
            let mut t = lock(&c.timers);
            while let Some((d, _)) = t.queue.first() {
                if *d > now {
                    break;
                }
                let (_, id) = t.queue.pop_first().expect("peeked");
                t.by_group.remove(&id);
                due.push(id);
            }
            t.queue.first().map(|(d, _)| *d)
        };
        for id in due {
            c.tick(&id);
        }
        // Ticks may have queued earlier deadlines; the Notify permit covers that.
        let wait = match next {
            Some(d) => Duration::from_millis(u64::try_from(d - now).unwrap_or(0).max(1)),
            None => Duration::from_secs(3600),
        };
        // Only a weak reference is held while asleep, so a dropped broker ends the task.
        drop(c);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Runs offset expiry every `interval`.
async fn expiry_task(coordinator: std::sync::Weak<Coordinator>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        c.expire_offsets().await;
    }
}
