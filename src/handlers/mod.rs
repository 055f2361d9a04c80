//! Request handlers, one file per API family. Kafka error codes are chosen here,
//! from the typed errors of `broker` and `log`.

mod acls;
mod admin;
mod api_versions;
mod configs;
mod consumer_groups;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;
mod producer_id;
mod quotas;
pub mod sasl;
mod scram;
mod share;
mod share_offsets;
mod topics;
mod txn;

use std::sync::Arc;

use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::auth::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::broker::{Broker, TopicError};
use crate::log::{AppendError, ReadError};
use crate::protocol::{
    encode_response, error, ErrorCodes, Request, RequestFrame, ResponseFrame, Throttled,
};
use crate::quota::QuotaKind;
use crate::storage::PartitionError;

/// Runs one request. `None` means no response is sent (Produce with acks=0).
///
/// Under a request quota (`request_percentage`) the request's work time is
/// measured (its handler's polls and the blocking work it awaits, not the
/// time it is parked) and recorded against the client; a client already over
/// its quota when the request arrives is answered with that throttle time and
/// its connection is muted for it (Kafka's `ClientRequestQuotaManager`).
pub async fn dispatch(broker: &Arc<Broker>, req: RequestFrame) -> Option<ResponseFrame> {
    let mut ctx = Ctx::of(&req);
    let client_id = req.client_id.as_deref().unwrap_or("");
    let Some(bucket) = broker
        .quotas
        .bucket(QuotaKind::Request, user_of(&req.principal), client_id)
    else {
        return route(broker, ctx, req).await;
    };
    let quotas = &broker.quotas;
    let now = crate::clock::now_ms;
    ctx.throttle_ms = quotas.record_in(QuotaKind::Request, &bucket, 0.0, now());
    if ctx.throttle_ms > 0 {
        crate::metrics::throttled(QuotaKind::Request.key(), ctx.throttle_ms);
    }
    let (response, ns) = crate::clock::work::metered(route(broker, ctx, req)).await;
    quotas.record_in(
        QuotaKind::Request,
        &bucket,
        QuotaKind::work_units(ns),
        now(),
    );
    response
}

/// Records `ns` of work done for a request outside its handler (writing its
/// response) against the sender's request quota, without throttling for it
/// now (Kafka's network-thread time): later requests see it.
pub fn record_send_work(broker: &Broker, principal: &str, client_id: &str, ns: u64) {
    let quotas = &broker.quotas;
    if let Some(bucket) = quotas.bucket(QuotaKind::Request, user_of(principal), client_id) {
        let units = QuotaKind::work_units(ns);
        quotas.record_in(QuotaKind::Request, &bucket, units, crate::clock::now_ms());
    }
}

/// A connection closed: what was bound to it ends (share sessions, whose
/// records are offered again at once).
pub fn connection_closed(broker: &Broker, conn: u64) {
    broker.groups.share_connection_closed(conn);
}

/// Whether any request quota is configured (so the work of sending
/// responses is worth measuring).
pub fn request_quotas(broker: &Broker) -> bool {
    broker.quotas.any(QuotaKind::Request)
}

/// Runs one request with its context.
async fn route(broker: &Arc<Broker>, ctx: Ctx, req: RequestFrame) -> Option<ResponseFrame> {
    match req.body {
        Request::ApiVersions(r) => Some(api_versions::handle(&ctx, r)),
        Request::Metadata(r) => Some(metadata::handle(broker, &ctx, r).await),
        Request::Produce(r) => {
            let client_id = req.client_id.as_deref().unwrap_or("");
            produce::handle(broker, &ctx, client_id, r).await
        }
        Request::Fetch(r) => {
            let client_id = req.client_id.as_deref().unwrap_or("");
            Some(fetch::handle(broker, &ctx, client_id, r).await)
        }
        Request::ListOffsets(r) => Some(list_offsets::handle(broker, &ctx, r).await),
        Request::CreateTopics(r) => Some(topics::create(broker, &ctx, r).await),
        Request::DeleteTopics(r) => Some(topics::delete(broker, &ctx, r).await),
        Request::InitProducerId(r) => Some(producer_id::handle(broker, &ctx, r).await),
        Request::FindCoordinator(r) => Some(groups::find_coordinator(broker, &ctx, r)),
        Request::JoinGroup(r) => {
            let client_id = req.client_id.as_deref().unwrap_or("");
            Some(groups::join(broker, &ctx, client_id, &req.client_host, r).await)
        }
        Request::SyncGroup(r) => Some(groups::sync(broker, &ctx, r).await),
        Request::Heartbeat(r) => Some(groups::heartbeat(broker, &ctx, r)),
        Request::LeaveGroup(r) => Some(groups::leave(broker, &ctx, r).await),
        Request::OffsetCommit(r) => Some(groups::offset_commit(broker, &ctx, r).await),
        Request::OffsetFetch(r) => Some(groups::offset_fetch(broker, &ctx, r)),
        Request::ListGroups(r) => Some(groups::list(broker, &ctx, r)),
        Request::DescribeGroups(r) => Some(groups::describe(broker, &ctx, r)),
        Request::DeleteGroups(r) => Some(groups::delete(broker, &ctx, r).await),
        Request::OffsetDelete(r) => Some(groups::offset_delete(broker, &ctx, r).await),
        Request::DescribeConfigs(r) => Some(configs::describe(broker, &ctx, r)),
        Request::AlterConfigs(r) => Some(configs::alter(broker, &ctx, r).await),
        Request::IncrementalAlterConfigs(r) => {
            Some(configs::incremental_alter(broker, &ctx, r).await)
        }
        Request::CreatePartitions(r) => Some(admin::create_partitions(broker, &ctx, r).await),
        Request::DeleteRecords(r) => Some(admin::delete_records(broker, &ctx, r).await),
        Request::DescribeCluster(r) => Some(admin::describe_cluster(broker, &ctx, r)),
        Request::DescribeLogDirs(r) => Some(admin::describe_log_dirs(broker, &ctx, r).await),
        Request::OffsetForLeaderEpoch(r) => Some(admin::offset_for_leader_epoch(broker, &ctx, r)),
        Request::DescribeTopicPartitions(r) => {
            Some(admin::describe_topic_partitions(broker, &ctx, r))
        }
        Request::ElectLeaders(r) => Some(admin::elect_leaders(broker, &ctx, r)),
        Request::DescribeProducers(r) => Some(admin::describe_producers(broker, &ctx, r).await),
        Request::AddPartitionsToTxn(r) => Some(txn::add_partitions(broker, &ctx, r).await),
        Request::AddOffsetsToTxn(r) => Some(txn::add_offsets(broker, &ctx, r).await),
        Request::EndTxn(r) => Some(txn::end(broker, &ctx, r).await),
        Request::TxnOffsetCommit(r) => Some(txn::offset_commit(broker, &ctx, r).await),
        Request::DescribeTransactions(r) => Some(txn::describe(broker, &ctx, r)),
        Request::ListTransactions(r) => Some(txn::list(broker, &ctx, r)),
        Request::DescribeUserScramCredentials(r) => Some(scram::describe(broker, &ctx, r)),
        Request::AlterUserScramCredentials(r) => Some(scram::alter(broker, &ctx, r).await),
        Request::CreateAcls(r) => Some(acls::create(broker, &ctx, r).await),
        Request::DescribeAcls(r) => Some(acls::describe(broker, &ctx, r)),
        Request::DeleteAcls(r) => Some(acls::delete(broker, &ctx, r).await),
        Request::DescribeClientQuotas(r) => Some(quotas::describe(broker, &ctx, r)),
        Request::AlterClientQuotas(r) => Some(quotas::alter(broker, &ctx, r).await),
        Request::ConsumerGroupHeartbeat(r) => {
            let client_id = req.client_id.as_deref().unwrap_or("");
            Some(consumer_groups::heartbeat(broker, &ctx, client_id, r))
        }
        Request::ConsumerGroupDescribe(r) => Some(consumer_groups::describe(broker, &ctx, r)),
        Request::ShareGroupHeartbeat(r) => {
            let client_id = req.client_id.as_deref().unwrap_or("");
            Some(share::heartbeat(broker, &ctx, client_id, r))
        }
        Request::ShareGroupDescribe(r) => Some(share::describe(broker, &ctx, r)),
        Request::ShareFetch(r) => Some(share::fetch(broker, &ctx, r).await),
        Request::ShareAcknowledge(r) => Some(share::acknowledge_request(broker, &ctx, r).await),
        Request::DescribeShareGroupOffsets(r) => Some(share_offsets::describe(broker, &ctx, r)),
        Request::AlterShareGroupOffsets(r) => Some(share_offsets::alter(broker, &ctx, r).await),
        Request::DeleteShareGroupOffsets(r) => Some(share_offsets::delete(broker, &ctx, r).await),
        // On a listener without SASL (the connection's authenticator answers
        // these on SASL listeners).
        Request::SaslHandshake(_) | Request::SaslAuthenticate(_) => Some(sasl::illegal_state(
            &ctx,
            "SASL is not enabled on this listener",
        )),
    }
}

/// What every handler needs from the request header.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// API key, for the response header version.
    pub api_key: kafka_protocol::messages::ApiKey,
    /// API version the request used; the response uses the same.
    pub version: i16,
    /// Echoed in the response header.
    pub correlation_id: i32,
    /// The listener the request came through (its advertised endpoint).
    pub listener: usize,
    /// The connection it came on: share sessions are bound to it.
    pub conn: u64,
    /// Who sent it (`User:<name>`), for the authorizer.
    pub principal: Arc<str>,
    /// The client's address as Kafka reports it (`/ip`); ACLs match the ip.
    pub client_host: Arc<str>,
    /// How long the client must wait under its request quota (ms, 0 within
    /// it or without one): set on every response and the connection muted.
    pub throttle_ms: u64,
}

impl Ctx {
    /// The header fields of `req`.
    fn of(req: &RequestFrame) -> Ctx {
        Ctx {
            api_key: req.api_key,
            version: req.api_version,
            correlation_id: req.correlation_id,
            listener: req.listener,
            conn: req.conn,
            principal: req.principal.clone(),
            client_host: req.client_host.clone(),
            throttle_ms: 0,
        }
    }

    /// The client's address as ACLs name it.
    fn host(&self) -> &str {
        self.client_host
            .strip_prefix('/')
            .unwrap_or(&self.client_host)
    }

    /// Whether the sender may do `op` on the resource `(t, name)`.
    fn may(&self, broker: &Broker, op: Operation, t: ResourceType, name: &str) -> bool {
        broker
            .acls
            .allowed(&self.principal, self.host(), op, t, name)
    }

    /// Whether the sender may do `op` on the cluster.
    fn may_cluster(&self, broker: &Broker, op: Operation) -> bool {
        self.may(broker, op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether the sender may do `op` on some resource of type `t`.
    fn may_any(&self, broker: &Broker, op: Operation, t: ResourceType) -> bool {
        broker.acls.allowed_any(&self.principal, self.host(), op, t)
    }

    /// The sender's user name, for quotas (`ANONYMOUS` if unauthenticated).
    fn user(&self) -> &str {
        user_of(&self.principal)
    }

    /// Records `bytes` of `kind` against the sender's quota: the throttle
    /// time (ms, 0 within quota or without one) and the bucket recorded in.
    fn throttle(
        &self,
        broker: &Broker,
        client_id: &str,
        kind: QuotaKind,
        bytes: u64,
    ) -> (u64, Option<crate::quota::Entity>) {
        let (ms, bucket) = broker.quotas.record(
            kind,
            self.user(),
            client_id,
            bytes as f64,
            crate::clock::now_ms(),
        );
        if ms > 0 {
            crate::metrics::throttled(kind.key(), ms);
        }
        (ms, bucket)
    }

    /// The `authorized_operations` bitfield of `(t, name)` for the sender.
    fn operations(&self, broker: &Broker, t: ResourceType, name: &str) -> i32 {
        broker
            .acls
            .operations(&self.principal, self.host(), t, name)
    }

    /// The response frame of `body`, with the request quota's throttle time
    /// if it is longer than the one the handler set.
    fn respond<T: Encodable + ErrorCodes + Throttled + Clone>(&self, body: &T) -> ResponseFrame {
        let own = u64::try_from(body.throttle_time_ms()).unwrap_or(0);
        if self.throttle_ms <= own {
            return encode_response(self.api_key, self.version, self.correlation_id, body);
        }
        let mut body = body.clone();
        body.set_throttle_time_ms(i32::try_from(self.throttle_ms).unwrap_or(i32::MAX));
        let mut frame = encode_response(self.api_key, self.version, self.correlation_id, &body);
        frame.throttle_ms = self.throttle_ms;
        frame
    }
}

/// The user name of a principal (`User:alice` is `alice`), as quotas name it.
fn user_of(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

/// The Kafka error code and message for a topic operation failure.
pub(crate) fn topic_error_code(e: &TopicError) -> i16 {
    match e {
        TopicError::InvalidName(_) => error::INVALID_TOPIC_EXCEPTION,
        TopicError::AlreadyExists => error::TOPIC_ALREADY_EXISTS,
        TopicError::Unknown => error::UNKNOWN_TOPIC_OR_PARTITION,
        TopicError::InvalidPartitions(_) => error::INVALID_PARTITIONS,
        TopicError::InvalidConfig(_) => error::INVALID_CONFIG,
        TopicError::InvalidRequest(_) => error::INVALID_REQUEST,
        TopicError::Io(_) => error::KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code of a failed partition operation. Validation failures of
/// produced batches are mapped by `produce::invalid_batch_code`.
pub(crate) fn partition_error_code(e: &PartitionError) -> i16 {
    match e {
        PartitionError::Deleted => error::UNKNOWN_TOPIC_OR_PARTITION,
        PartitionError::Offline | PartitionError::Io(_) => error::KAFKA_STORAGE_ERROR,
        PartitionError::Read(ReadError::OutOfRange { .. }) => error::OFFSET_OUT_OF_RANGE,
        PartitionError::Read(ReadError::Io(_)) => error::KAFKA_STORAGE_ERROR,
        PartitionError::Append(e) => match e {
            AppendError::Invalid(v) => produce::invalid_batch_code(v),
            AppendError::TooLarge { .. } => error::MESSAGE_TOO_LARGE,
            AppendError::InvalidProducerEpoch => error::INVALID_PRODUCER_EPOCH,
            AppendError::InvalidTxnState => error::INVALID_TXN_STATE,
            AppendError::InvalidProducerIdMapping => error::INVALID_PRODUCER_ID_MAPPING,
            AppendError::InvalidTimestamp { .. } => error::INVALID_TIMESTAMP,
            AppendError::OutOfOrderSequence { .. } => error::OUT_OF_ORDER_SEQUENCE_NUMBER,
            AppendError::Unsupported(_) | AppendError::OffsetOverflow => error::INVALID_RECORD,
            AppendError::Io(_) => error::KAFKA_STORAGE_ERROR,
        },
    }
}

/// A partition error for a log line: an exhausted resource (open files, disk
/// space) is named with its limit.
pub(crate) fn describe(e: &PartitionError) -> String {
    match e.io_error() {
        Some(io) => crate::sys::describe_io_error(io),
        None => e.to_string(),
    }
}

/// A `StrBytes` from an owned string.
pub(crate) fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
