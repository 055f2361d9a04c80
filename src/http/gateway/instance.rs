//! REST consumer instances: real members of Kafka consumer groups.
//!
//! A subscribed instance is a KIP-848 member of its group: a task per
//! instance heartbeats the group coordinator, takes the partitions the
//! server-side assignor gives it, and gives revoked ones back at once
//! (committing them first with auto-commit), so a REST consumer and a
//! librdkafka consumer of one group share its partitions. A manually assigned
//! instance joins nothing. Positions (the next offset to return) start from
//! the committed offset, else `auto.offset.reset`.
//!
//! A records request is a long poll: it parks on the partitions' waiters,
//! the mechanism Kafka's Fetch parks on, and on the instance's assignment
//! changes, until records arrive or its deadline passes.
//!
//! Locks are short and never held across an await: reads snapshot the
//! positions, read on the blocking pool, and advance only positions nobody
//! moved meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, Semaphore};

use super::error::RestError;
use super::json::Format;
use super::reader::{self, Budget, Fetched};
use super::Gateway;
use crate::auth::acl::{Operation, ResourceType};
use crate::config::Config;
use crate::group::{Assignment, ConsumerError, GroupError, Heartbeat};

/// How often auto-commit commits (the Java consumer's `auto.commit.interval.ms`).
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// How often expired instances are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How long a subscribe waits for the first assignment before answering.
const FIRST_ASSIGNMENT_WAIT: Duration = Duration::from_secs(1);
/// Pause after a refused heartbeat before the next, so a failing group is not spun on.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The rebalance timeout the members declare: they revoke at once.
const REBALANCE_TIMEOUT_MS: i32 = 30_000;

/// A partition: topic name and index.
pub type TopicPartition = (String, i32);

/// What to do without a valid position (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The log start.
    Earliest,
    /// The high watermark.
    Latest,
    /// Fail the read.
    None,
}

/// What the instance consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Nothing yet.
    Idle,
    /// Topics, through the group.
    Topics(Vec<String>),
    /// Topics matching a (RE2) pattern, through the group.
    Pattern(String),
    /// Partitions chosen by the client, outside the group's assignment.
    Manual,
}

/// Immutable settings of an instance, from its create request.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Embedded format of its records.
    pub format: Format,
    /// `auto.offset.reset`.
    pub reset: Reset,
    /// `auto.commit.enable`.
    pub auto_commit: bool,
    /// `fetch.min.bytes`: a read waits for this many bytes (≤ 0: any record).
    pub fetch_min_bytes: i64,
    /// `consumer.request.timeout.ms`: the wait of a read naming no timeout.
    pub request_timeout_ms: Option<u64>,
}

/// The changing part of an instance.
struct State {
    /// When it expires unless used.
    expires: Instant,
    /// What it consumes.
    mode: Mode,
    /// Its group member id (chosen here, as KIP-848 clients do).
    member_id: String,
    /// Its member epoch; 0 until joined.
    epoch: i32,
    /// The partitions it reads.
    owned: BTreeSet<TopicPartition>,
    /// Next offset to return, per owned partition (absent: not resolved yet).
    positions: BTreeMap<TopicPartition, i64>,
    /// Positions last committed by auto-commit.
    auto_committed: BTreeMap<TopicPartition, i64>,
    /// Where the next read starts among the owned partitions (fairness).
    rotate: usize,
    /// The membership and auto-commit task, while one runs.
    task: Option<tokio::task::JoinHandle<()>>,
    /// The group's last refusal of the member, answered to reads.
    error: Option<RestError>,
    /// Over its fetch quota: the next read waits until then.
    muted_until: Option<Instant>,
    /// The subscribed pattern, compiled.
    pattern: Option<(String, regex::Regex)>,
}

impl State {
    /// Positions that moved since the last auto-commit.
    fn uncommitted(&self) -> BTreeMap<TopicPartition, i64> {
        self.positions
            .iter()
            .filter(|(tp, o)| self.auto_committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect()
    }
}

/// One REST consumer instance.
pub struct Instance {
    /// Its group.
    pub group: String,
    /// Its name (`instance_id`).
    pub name: String,
    /// The principal that created it: nobody else may use it.
    pub owner: String,
    /// Where its creator connected from (the member's client host).
    host: String,
    /// Its settings.
    pub settings: Settings,
    /// What changes.
    state: Mutex<State>,
    /// Bumped when the owned partitions change: parked reads look again.
    assignment: watch::Sender<u64>,
    /// Wakes the membership task (subscription changed, closing).
    wake: Notify,
    /// One read at a time.
    reads: Semaphore,
    /// The compressed batch its last read stopped inside, inflated.
    inflated: Mutex<reader::Inflated>,
    /// Set once closed: every later call finds nothing.
    closed: AtomicBool,
    /// How long it lives unused.
    timeout: Duration,
}

impl Instance {
    /// A new instance, owning nothing (outside any registry: WebSocket and
    /// SSE sessions hold theirs for their life).
    pub fn new(
        group: &str,
        name: &str,
        owner: &str,
        host: &str,
        settings: Settings,
        timeout: Duration,
    ) -> Arc<Instance> {
        let (assignment, _) = watch::channel(0);
        Arc::new(Instance {
            group: group.to_string(),
            name: name.to_string(),
            owner: owner.to_string(),
            host: host.to_string(),
            settings,
            state: Mutex::new(State {
                expires: Instant::now() + timeout,
                mode: Mode::Idle,
                member_id: uuid::Uuid::new_v4().to_string(),
                epoch: 0,
                owned: BTreeSet::new(),
                positions: BTreeMap::new(),
                auto_committed: BTreeMap::new(),
                rotate: 0,
                task: None,
                error: None,
                muted_until: None,
                pattern: None,
            }),
            assignment,
            wake: Notify::new(),
            reads: Semaphore::new(1),
            inflated: Mutex::new(reader::Inflated::default()),
            closed: AtomicBool::new(false),
            timeout,
        })
    }

    /// Mutes the instance's reads for `ms` (a fetch-quota throttle).
    pub fn mute_for(&self, ms: u64) {
        if ms > 0 {
            self.lock().muted_until = Some(Instant::now() + Duration::from_millis(ms));
        }
    }

    /// How long its reads are still muted, in ms.
    pub fn muted_ms(&self) -> u64 {
        self.lock().muted_until.map_or(0, |t| {
            t.saturating_duration_since(Instant::now()).as_millis() as u64
        })
    }

    /// A receiver of its assignment changes.
    pub fn assignment_changes(&self) -> watch::Receiver<u64> {
        self.assignment.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes the expiry back: the instance was used.
    fn touch(&self) {
        self.lock().expires = Instant::now() + self.timeout;
    }

    fn bump(&self) {
        self.assignment.send_modify(|v| *v += 1);
    }

    /// Its subscription: topic names (those a pattern matches now).
    pub fn subscription(&self, gw: &Gateway) -> Vec<String> {
        let mode = self.lock().mode.clone();
        match mode {
            Mode::Topics(t) => t,
            Mode::Pattern(p) => self.pattern_topics(gw, &p),
            Mode::Idle | Mode::Manual => Vec::new(),
        }
    }

    /// The topics a pattern matches now that its owner may read: a pattern
    /// reaches only what its owner could subscribe to by name.
    fn pattern_topics(&self, gw: &Gateway, pattern: &str) -> Vec<String> {
        // Compiled once per pattern (heartbeats ask every few seconds).
        let re = {
            let mut s = self.lock();
            match &s.pattern {
                Some((p, re)) if p == pattern => re.clone(),
                _ => {
                    let Ok(re) = regex::Regex::new(&format!("^(?:{pattern})$")) else {
                        return Vec::new();
                    };
                    s.pattern = Some((pattern.to_string(), re.clone()));
                    re
                }
            }
        };
        let may = |t: &str| {
            let acls = &gw.broker.acls;
            acls.allowed(
                &self.owner,
                &self.host,
                Operation::Describe,
                ResourceType::Topic,
                t,
            ) && acls.allowed(
                &self.owner,
                &self.host,
                Operation::Read,
                ResourceType::Topic,
                t,
            )
        };
        let mut names: Vec<String> = gw
            .broker
            .topics()
            .iter()
            .filter(|t| {
                !crate::broker::is_internal(&t.name) && re.is_match(&t.name) && may(&t.name)
            })
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The partitions it reads now.
    pub fn owned(&self) -> Vec<TopicPartition> {
        self.lock().owned.iter().cloned().collect()
    }

    /// Subscribes to `mode` (topics or a pattern), replacing a subscription.
    /// Waits briefly for the first assignment; the group's refusal, if any.
    pub async fn subscribe(
        self: &Arc<Self>,
        gw: &Arc<Gateway>,
        mode: Mode,
    ) -> Result<(), RestError> {
        let mut rx = self.assignment.subscribe();
        rx.borrow_and_update();
        {
            let mut s = self.lock();
            s.mode = mode;
            s.error = None;
            self.ensure_task(gw, &mut s);
        }
        self.wake.notify_one();
        let _ = tokio::time::timeout(FIRST_ASSIGNMENT_WAIT, rx.changed()).await;
        match self.lock().error.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether it is manually assigned (subscribing is refused), or subscribed
    /// (assigning is refused).
    pub fn mode(&self) -> Mode {
        self.lock().mode.clone()
    }

    /// Drops the subscription or assignment: the task leaves the group.
    pub async fn unsubscribe(self: &Arc<Self>, gw: &Arc<Gateway>) {
        let commit = {
            let mut s = self.lock();
            let was_manual = s.mode == Mode::Manual;
            s.mode = Mode::Idle;
            if was_manual {
                s.owned.clear();
                std::mem::take(&mut s.positions)
            } else {
                BTreeMap::new()
            }
        };
        if self.settings.auto_commit && !commit.is_empty() {
            let _ = self.commit_positions(gw, commit).await;
        }
        self.bump();
        self.wake.notify_one();
    }

    /// Assigns `partitions` manually (replacing any earlier assignment).
    pub fn assign(self: &Arc<Self>, gw: &Arc<Gateway>, partitions: Vec<TopicPartition>) {
        let was_member = {
            let mut s = self.lock();
            // Still a member (its task has not left since the unsubscribe):
            // it leaves now, as a new member id if it subscribes again.
            let was = (s.epoch > 0).then(|| {
                s.epoch = 0;
                std::mem::replace(&mut s.member_id, uuid::Uuid::new_v4().to_string())
            });
            s.mode = Mode::Manual;
            s.owned = partitions.into_iter().collect();
            let owned = s.owned.clone();
            s.positions.retain(|tp, _| owned.contains(tp));
            self.ensure_task(gw, &mut s);
            was
        };
        if let Some(member_id) = was_member {
            leave(gw, self, member_id);
        }
        self.bump();
    }

    /// Sets positions; 409 for a partition it does not own.
    pub fn seek(&self, to: Vec<(TopicPartition, i64)>) -> Result<(), RestError> {
        let mut s = self.lock();
        if let Some(((t, p), _)) = to.iter().find(|(tp, _)| !s.owned.contains(tp)) {
            return Err(RestError::illegal_state(format!(
                "No current assignment for partition {t}-{p}"
            )));
        }
        for (tp, offset) in to {
            s.positions.insert(tp, offset.max(0));
        }
        drop(s);
        self.bump();
        Ok(())
    }

    /// Starts the membership task unless one runs.
    fn ensure_task(self: &Arc<Self>, gw: &Arc<Gateway>, s: &mut State) {
        // A task that decided to end cleared this under the lock, so a
        // subscription made after that decision gets a task of its own.
        if s.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        s.task = Some(tokio::spawn(membership(gw.clone(), self.clone())));
    }

    /// Who commits: its member id and epoch while in the group, else a
    /// simple consumer (no member, generation -1).
    fn committer(&self) -> (String, i32) {
        let s = self.lock();
        match s.mode {
            Mode::Topics(_) | Mode::Pattern(_) if s.epoch > 0 => (s.member_id.clone(), s.epoch),
            _ => (String::new(), -1),
        }
    }

    /// Commits `offsets` (the next offset to read, per partition) as this
    /// member. A commit that raced a rebalance (its epoch moved on meanwhile)
    /// is tried once more at the new epoch, as the Java consumer retries.
    pub async fn commit(
        &self,
        gw: &Gateway,
        offsets: Vec<(TopicPartition, i64, String)>,
    ) -> Result<(), RestError> {
        let (member, epoch) = self.committer();
        match commit_as(gw, &self.group, &member, epoch, offsets.clone()).await {
            Err(
                GroupError::StaleMemberEpoch
                | GroupError::IllegalGeneration
                | GroupError::UnknownMemberId,
            ) if self.committer() != (member.clone(), epoch) => {
                let (member, epoch) = self.committer();
                commit_as(gw, &self.group, &member, epoch, offsets)
                    .await
                    .map_err(commit_error)
            }
            other => other.map_err(commit_error),
        }
    }

    /// Commits positions, remembering them as auto-committed.
    async fn commit_positions(
        &self,
        gw: &Gateway,
        positions: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), RestError> {
        let list = positions
            .iter()
            .map(|(tp, o)| (tp.clone(), *o, String::new()))
            .collect();
        self.commit(gw, list).await?;
        let mut s = self.lock();
        s.auto_committed.extend(positions);
        Ok(())
    }

    /// Commits every position it holds (a commit without a body).
    pub async fn commit_all(&self, gw: &Gateway) -> Result<(), RestError> {
        let positions = self.lock().positions.clone();
        if positions.is_empty() {
            return Ok(());
        }
        self.commit_positions(gw, positions).await
    }

    /// Positions that moved since the last auto-commit.
    fn uncommitted(&self) -> BTreeMap<TopicPartition, i64> {
        self.lock().uncommitted()
    }

    /// Seeks owned partitions to the log start (`end`: the high watermark).
    pub fn seek_to_edge(
        &self,
        gw: &Gateway,
        partitions: Vec<TopicPartition>,
        end: bool,
    ) -> Result<(), RestError> {
        let mut to = Vec::with_capacity(partitions.len());
        for (t, p) in partitions {
            let part = gw
                .broker
                .topic(&t)
                .and_then(|x| x.partition(p).cloned())
                .ok_or_else(RestError::partition_not_found)?;
            let o = if end {
                part.high_watermark()
            } else {
                part.log_start_offset()
            };
            to.push(((t, p), o));
        }
        self.seek(to)
    }
}

/// REST Proxy's answer to a refused commit.
fn commit_error(e: GroupError) -> RestError {
    match e {
        GroupError::NotCoordinator | GroupError::CoordinatorNotAvailable => {
            RestError::retriable(format!("The group coordinator is not available ({e:?})."))
        }
        GroupError::StaleMemberEpoch
        | GroupError::IllegalGeneration
        | GroupError::UnknownMemberId
        | GroupError::RebalanceInProgress => RestError::illegal_state(format!(
            "Commit cannot be completed since the group has already rebalanced ({e:?})"
        )),
        other => RestError::kafka(format!("The commit failed: {other:?}")),
    }
}

/// The registry of instances, bounded by `--http-consumer-instances-max`.
pub struct Instances {
    /// By (group, name).
    map: Mutex<HashMap<(String, String), Arc<Instance>>>,
    /// Most instances.
    max: usize,
    /// How long an instance lives unused.
    timeout: Duration,
    /// Set when the gateway stops: no new instances.
    stopping: AtomicBool,
    /// Most instances of one principal.
    per_principal_max: usize,
}

impl Instances {
    /// An empty registry with the config's limits.
    pub fn new(c: &Config) -> Instances {
        Instances {
            map: Mutex::new(HashMap::new()),
            max: c.http_consumer_instances_max,
            timeout: Duration::from_millis(c.http_consumer_instance_timeout_ms),
            stopping: AtomicBool::new(false),
            per_principal_max: c.http_consumer_instances_per_principal_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Instance>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates an instance; 409 40902 if the name is taken in the group, 429 when full.
    pub fn create(
        &self,
        group: &str,
        name: &str,
        owner: &str,
        host: &str,
        settings: Settings,
    ) -> Result<Arc<Instance>, RestError> {
        let mut map = self.lock();
        if self.stopping.load(Ordering::Acquire) {
            return Err(RestError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                503,
                "The broker is stopping.",
            ));
        }
        let key = (group.to_string(), name.to_string());
        if map.contains_key(&key) {
            return Err(RestError::new(
                axum::http::StatusCode::CONFLICT,
                40902,
                "Consumer with specified consumer ID already exists in the specified consumer group.",
            ));
        }
        let mine = map.values().filter(|i| i.owner == owner).count();
        if mine >= self.per_principal_max {
            return Err(RestError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                429,
                format!(
                    "Too many consumer instances of {owner} ({}, --http-consumer-instances-per-principal-max); delete some first.",
                    self.per_principal_max
                ),
            ));
        }
        if map.len() >= self.max {
            return Err(RestError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                429,
                format!("Too many consumer instances ({}, --http-consumer-instances-max); delete some first.", self.max),
            ));
        }
        let inst = Instance::new(group, name, owner, host, settings, self.timeout);
        map.insert(key, inst.clone());
        Ok(inst)
    }

    /// The caller's instance, touched; 404 40403 when unknown or another's.
    pub fn get(
        &self,
        group: &str,
        name: &str,
        principal: &str,
    ) -> Result<Arc<Instance>, RestError> {
        let inst = self
            .lock()
            .get(&(group.to_string(), name.to_string()))
            .cloned()
            .filter(|i| i.owner == principal)
            .ok_or_else(RestError::instance_not_found)?;
        inst.touch();
        Ok(inst)
    }

    /// Removes and closes the caller's instance.
    pub async fn delete(
        &self,
        gw: &Gateway,
        group: &str,
        name: &str,
        principal: &str,
    ) -> Result<(), RestError> {
        let inst = {
            let mut map = self.lock();
            let key = (group.to_string(), name.to_string());
            match map.get(&key) {
                Some(i) if i.owner == principal => map.remove(&key),
                _ => None,
            }
        }
        .ok_or_else(RestError::instance_not_found)?;
        close(gw, &inst).await;
        Ok(())
    }

    /// Closes every instance (the gateway is stopping): members leave their
    /// groups and auto-commit instances commit.
    pub async fn close_all(&self, gw: &Arc<Gateway>) {
        self.stopping.store(true, Ordering::Release);
        let all: Vec<Arc<Instance>> = self.lock().drain().map(|(_, i)| i).collect();
        // All at once: each may wait on a commit and a leave.
        let closing: Vec<_> = all
            .into_iter()
            .map(|inst| {
                let gw = gw.clone();
                tokio::spawn(async move { close(&gw, &inst).await })
            })
            .collect();
        for c in closing {
            let _ = c.await;
        }
    }
}

/// Closes an instance: its task commits (with auto-commit) and leaves the group.
pub async fn close(gw: &Gateway, inst: &Arc<Instance>) {
    inst.closed.store(true, Ordering::Release);
    inst.wake.notify_one();
    inst.bump();
    let task = inst.lock().task.take();
    match task {
        Some(t) => {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        None if inst.settings.auto_commit => {
            let _ = inst.commit_all(gw).await;
        }
        None => {}
    }
    tracing::debug!(group = %inst.group, instance = %inst.name, "REST consumer instance closed");
}

/// Closes instances unused for their timeout, every second.
pub async fn reap(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let expired: Vec<Arc<Instance>> = {
            let mut map = gw.instances.lock();
            let keys: Vec<(String, String)> = map
                .iter()
                .filter(|(_, i)| i.lock().expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for inst in expired {
            tracing::info!(group = %inst.group, instance = %inst.name, "REST consumer instance expired");
            close(&gw, &inst).await;
        }
    }
}

/// Commits offsets as `member` at `epoch` (or as a simple consumer).
async fn commit_as(
    gw: &Gateway,
    group: &str,
    member: &str,
    epoch: i32,
    offsets: Vec<(TopicPartition, i64, String)>,
) -> Result<(), GroupError> {
    let offsets = offsets
        .into_iter()
        .map(|((t, p), o, m)| (t, p, o, -1, m))
        .collect();
    let results = gw
        .broker
        .groups
        .commit(group, member, &None, epoch, None, offsets)
        .await;
    match results.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// A membership task ending: the member it was, and what to commit first.
struct Exit {
    /// Its member id.
    member_id: String,
    /// Its epoch (0: it never joined).
    epoch: i32,
    /// Positions to commit (auto-commit).
    commit: BTreeMap<TopicPartition, i64>,
}

impl Instance {
    /// Ends the task when the instance is closed or consumes nothing: takes
    /// the membership and the positions to commit under one lock, and clears
    /// the task, so a later subscription starts afresh as a new member.
    fn exit(&self) -> Option<Exit> {
        let mut s = self.lock();
        if !self.closed.load(Ordering::Acquire) && s.mode != Mode::Idle {
            return None;
        }
        let commit = if self.settings.auto_commit {
            s.uncommitted()
        } else {
            BTreeMap::new()
        };
        let exit = Exit {
            member_id: std::mem::replace(&mut s.member_id, uuid::Uuid::new_v4().to_string()),
            epoch: std::mem::replace(&mut s.epoch, 0),
            commit,
        };
        s.owned.clear();
        s.positions.clear();
        s.task = None;
        Some(exit)
    }
}

/// The instance's life in its group: heartbeats while subscribed, taking and
/// giving back partitions; auto-commits; leaves on unsubscribe or close.
async fn membership(gw: Arc<Gateway>, inst: Arc<Instance>) {
    let mut last_commit = Instant::now();
    loop {
        if let Some(exit) = inst.exit() {
            if !exit.commit.is_empty() {
                let (member, epoch) = if exit.epoch > 0 {
                    (exit.member_id.as_str(), exit.epoch)
                } else {
                    ("", -1)
                };
                let offsets = exit
                    .commit
                    .into_iter()
                    .map(|(tp, o)| (tp, o, String::new()))
                    .collect();
                if let Err(e) = commit_as(&gw, &inst.group, member, epoch, offsets).await {
                    tracing::info!(group = %inst.group, error = ?e, "auto-commit on leaving failed");
                }
            }
            if exit.epoch > 0 {
                leave(&gw, &inst, exit.member_id);
            }
            inst.bump();
            return;
        }
        let mode = inst.mode();
        let mut wait = AUTO_COMMIT_INTERVAL;
        if matches!(mode, Mode::Topics(_) | Mode::Pattern(_)) {
            wait = heartbeat(&gw, &inst, mode).await.min(AUTO_COMMIT_INTERVAL);
        }
        if inst.settings.auto_commit && last_commit.elapsed() >= AUTO_COMMIT_INTERVAL {
            last_commit = Instant::now();
            let moved = inst.uncommitted();
            if !moved.is_empty() {
                if let Err(e) = inst.commit_positions(&gw, moved).await {
                    tracing::debug!(group = %inst.group, error = %e.message, "auto-commit failed");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inst.wake.notified() => {}
        }
    }
}

/// Leaves the group (epoch -1), giving back every partition.
fn leave(gw: &Gateway, inst: &Instance, member_id: String) {
    let hb = Heartbeat {
        version: 1,
        member_id,
        member_epoch: -1,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: -1,
        topic_names: None,
        topic_regex: None,
        assignor: None,
        owned: None,
        client_id: client_id(inst),
        client_host: inst.host.clone(),
        new_member_id: String::new(),
    };
    let _ = gw
        .broker
        .groups
        .consumer_heartbeat(&inst.group, hb, &gw.broker.group_topics());
}

fn client_id(inst: &Instance) -> String {
    format!("sluice-rest-{}", inst.name)
}

/// One heartbeat; returns when the next is due.
async fn heartbeat(gw: &Arc<Gateway>, inst: &Arc<Instance>, mode: Mode) -> Duration {
    let (member_id, epoch, owned) = {
        let s = inst.lock();
        (s.member_id.clone(), s.epoch, s.owned.clone())
    };
    let mut assignment: Assignment = Assignment::new();
    for (t, p) in &owned {
        if let Some(topic) = gw.broker.topic(t) {
            assignment.entry(topic.id).or_default().insert(*p);
        }
    }
    let topic_names = match mode {
        Mode::Topics(t) => Some(t),
        // A pattern is resolved here, within the owner's ACLs, and sent as names.
        Mode::Pattern(p) => Some(inst.pattern_topics(gw, &p)),
        _ => None,
    };
    let hb = Heartbeat {
        version: 1,
        member_id,
        member_epoch: epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        topic_names,
        topic_regex: None,
        assignor: None,
        owned: Some(assignment),
        client_id: client_id(inst),
        client_host: inst.host.clone(),
        new_member_id: String::new(),
    };
    let reply = gw
        .broker
        .groups
        .consumer_heartbeat(&inst.group, hb, &gw.broker.group_topics());
    match reply {
        Ok(r) => {
            let next =
                Duration::from_millis(u64::try_from(r.heartbeat_interval_ms).unwrap_or(5000));
            let Some(a) = r.assignment else {
                let mut s = inst.lock();
                if s.member_id == r.member_id
                    && matches!(s.mode, Mode::Topics(_) | Mode::Pattern(_))
                {
                    s.epoch = r.member_epoch;
                    s.error = None;
                }
                return next;
            };
            let mut target = BTreeSet::new();
            for (id, ps) in a {
                if let Some(t) = gw.broker.topic_by_id(&id) {
                    target.extend(ps.into_iter().map(|p| (t.name.clone(), p)));
                }
            }
            // Revoked partitions stop being read at once, then their
            // positions are committed before the coordinator hears they are
            // given back, as the Java consumer's auto-commit does in its
            // rebalance.
            let (changed, revoked, member, epoch) = {
                let mut s = inst.lock();
                if !matches!(s.mode, Mode::Topics(_) | Mode::Pattern(_))
                    || s.member_id != r.member_id
                {
                    // Unsubscribed or assigned meanwhile: this answer is stale.
                    return Duration::ZERO;
                }
                s.member_id = r.member_id;
                s.epoch = r.member_epoch;
                s.error = None;
                let revoked: BTreeMap<TopicPartition, i64> = s
                    .positions
                    .iter()
                    .filter(|(tp, _)| !target.contains(*tp))
                    .map(|(tp, o)| (tp.clone(), *o))
                    .collect();
                let changed = s.owned != target;
                s.positions.retain(|tp, _| target.contains(tp));
                s.owned = target;
                (changed, revoked, s.member_id.clone(), s.epoch)
            };
            if changed {
                inst.bump();
            }
            if inst.settings.auto_commit && !revoked.is_empty() {
                let offsets = revoked
                    .iter()
                    .map(|(tp, o)| (tp.clone(), *o, String::new()))
                    .collect();
                if commit_as(gw, &inst.group, &member, epoch, offsets)
                    .await
                    .is_ok()
                {
                    inst.lock().auto_committed.extend(revoked);
                }
            }
            if changed {
                // Tell the coordinator at once what is owned now, so
                // partitions revoked here reach their next owner quickly.
                return Duration::ZERO;
            }
            next
        }
        Err(ConsumerError::UnknownMemberId | ConsumerError::FencedMemberEpoch) => {
            // Rejoin from scratch, owning nothing.
            {
                let mut s = inst.lock();
                s.epoch = 0;
                s.owned.clear();
                s.positions.clear();
            }
            inst.bump();
            RETRY_PAUSE
        }
        Err(e) => {
            tracing::info!(group = %inst.group, instance = %inst.name, error = ?e, "REST consumer heartbeat refused");
            // Kept for the client: subscribe and records answer it.
            let why = match e {
                ConsumerError::Group(GroupError::GroupIdNotFound) => format!(
                    "The group {} cannot take this member: it is a classic group whose members' assignments carry assignor data, or a share group",
                    inst.group
                ),
                other => format!("The group refused the member: {other:?}"),
            };
            inst.lock().error = Some(RestError::kafka(why));
            inst.bump();
            RETRY_PAUSE * 4
        }
    }
}

/// Resolves positions of owned partitions that have none: the committed
/// offset, else `auto.offset.reset`.
fn resolve_positions(
    gw: &Gateway,
    inst: &Instance,
) -> Result<Vec<(TopicPartition, i64)>, RestError> {
    let (owned, known, rotate) = {
        let mut s = inst.lock();
        s.rotate = s.rotate.wrapping_add(1);
        (s.owned.clone(), s.positions.clone(), s.rotate)
    };
    let missing: Vec<TopicPartition> = owned
        .iter()
        .filter(|tp| !known.contains_key(*tp))
        .cloned()
        .collect();
    let mut found = BTreeMap::new();
    if !missing.is_empty() {
        let committed = gw
            .broker
            .groups
            .fetch_offsets(&inst.group, Some(missing.clone()));
        for (tp, c) in committed {
            let at = match c {
                Some(c) if c.offset >= 0 => c.offset,
                _ => reset_position(gw, inst, &tp)?,
            };
            found.insert(tp, at);
        }
        let mut s = inst.lock();
        for (tp, at) in &found {
            if s.owned.contains(tp) {
                s.positions.entry(tp.clone()).or_insert(*at);
            }
        }
    }
    let mut all: Vec<(TopicPartition, i64)> = owned
        .into_iter()
        .filter_map(|tp| {
            let at = known.get(&tp).or_else(|| found.get(&tp)).copied()?;
            Some((tp, at))
        })
        .collect();
    if !all.is_empty() {
        let n = all.len();
        all.rotate_left(rotate % n);
    }
    Ok(all)
}

/// Where `auto.offset.reset` puts a partition.
fn reset_position(
    gw: &Gateway,
    inst: &Instance,
    (t, p): &TopicPartition,
) -> Result<i64, RestError> {
    let part = gw
        .broker
        .topic(t)
        .and_then(|x| x.partition(*p).cloned())
        .ok_or_else(RestError::partition_not_found)?;
    match inst.settings.reset {
        Reset::Earliest => Ok(part.log_start_offset()),
        Reset::Latest => Ok(part.high_watermark()),
        Reset::None => Err(RestError::kafka(format!(
            "Undefined offset with no reset policy for partitions: [{t}-{p}]"
        ))),
    }
}

/// A read: waits up to `timeout` for records from the positions, at most
/// `budget` of them, each passing `format`'s check (a JSON consumer stops
/// before bytes that are not JSON, and fails when the first is).
pub async fn read(
    gw: &Arc<Gateway>,
    inst: &Arc<Instance>,
    timeout: Duration,
    budget: Budget,
    format: Format,
) -> Result<Vec<Fetched>, RestError> {
    let Ok(_one) = inst.reads.acquire().await else {
        return Err(RestError::instance_not_found());
    };
    if matches!(inst.mode(), Mode::Idle) {
        return Err(RestError::illegal_state(
            "Consumer is not subscribed to any topics or assigned any partitions",
        ));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = inst.assignment.subscribe();
    loop {
        changes.borrow_and_update();
        if inst.closed.load(Ordering::Acquire) {
            return Err(RestError::instance_not_found());
        }
        let positions = resolve_positions(gw, inst)?;
        if positions.is_empty() {
            if let Some(e) = inst.lock().error.clone() {
                return Err(e);
            }
        }
        let notify = Arc::new(Notify::new());
        for ((t, p), _) in &positions {
            if let Some(part) = gw.broker.topic(t).and_then(|x| x.partition(*p).cloned()) {
                part.register_waiter(&notify);
            }
        }
        let (b, pos, me) = (gw.broker.clone(), positions.clone(), inst.clone());
        let out = tokio::task::spawn_blocking(move || {
            reader::read_blocking(&b, &pos, budget, format, &me.inflated)
        })
        .await
        .map_err(|e| RestError::kafka(format!("the read failed: {e}")))??;
        if !out.resets.is_empty() {
            let mut fixed = Vec::new();
            for tp in &out.resets {
                fixed.push((tp.clone(), reset_position(gw, inst, tp)?));
            }
            let mut s = inst.lock();
            for (tp, at) in fixed {
                if s.owned.contains(&tp) {
                    s.positions.insert(tp, at);
                }
            }
            continue;
        }
        // fetch.min.bytes, within what one read may return: a read that
        // filled its budget answers, as REST Proxy's does.
        let min = u64::try_from(inst.settings.fetch_min_bytes)
            .unwrap_or(0)
            .min(budget.bytes);
        let enough = !out.records.is_empty() && (min == 0 || out.bytes >= min || out.full);
        if out.records.is_empty() && !out.advanced.is_empty() {
            // Only batches without records for the client (transaction
            // markers, compacted-away tails): step past them and read on, or
            // a consumer whose segment ends with one would never move.
            let mut s = inst.lock();
            for (tp, from, next) in &out.advanced {
                if s.owned.contains(tp) && s.positions.get(tp) == Some(from) {
                    s.positions.insert(tp.clone(), *next);
                }
            }
            continue;
        }
        let timed_out = tokio::time::Instant::now() >= deadline;
        if enough || (timed_out && !out.records.is_empty()) {
            // Keep only records of partitions still owned at the positions
            // they were read from (a seek or rebalance meanwhile wins).
            let mut s = inst.lock();
            let mut keep = BTreeSet::new();
            for (tp, from, next) in out.advanced {
                if s.owned.contains(&tp) && s.positions.get(&tp) == Some(&from) {
                    s.positions.insert(tp.clone(), next);
                    keep.insert(tp);
                }
            }
            drop(s);
            inst.touch();
            return Ok(out
                .records
                .into_iter()
                .filter(|(tp, _)| keep.contains(tp))
                .collect());
        }
        if timed_out {
            inst.touch();
            return Ok(Vec::new());
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = gw.stopped() => return Ok(Vec::new()),
        }
    }
}
