//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.
//! Translation only: the rules live in `group`.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{sb, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::group::{Committed, GroupError, JoinRequest};
use crate::protocol::{error, ResponseFrame};

/// The Kafka error code of a group error.
pub(super) fn group_error_code(e: GroupError) -> i16 {
    match e {
        GroupError::CoordinatorNotAvailable | GroupError::TooManyGroups => {
            error::COORDINATOR_NOT_AVAILABLE
        }
        GroupError::NotCoordinator => error::NOT_COORDINATOR,
        GroupError::IllegalGeneration => error::ILLEGAL_GENERATION,
        GroupError::InconsistentGroupProtocol => error::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::InvalidGroupId => error::INVALID_GROUP_ID,
        GroupError::UnknownMemberId => error::UNKNOWN_MEMBER_ID,
        GroupError::InvalidSessionTimeout => error::INVALID_SESSION_TIMEOUT,
        GroupError::RebalanceInProgress => error::REBALANCE_IN_PROGRESS,
        GroupError::MemberIdRequired => error::MEMBER_ID_REQUIRED,
        GroupError::FencedInstanceId => error::FENCED_INSTANCE_ID,
        GroupError::GroupMaxSizeReached => error::GROUP_MAX_SIZE_REACHED,
        GroupError::NonEmptyGroup => error::NON_EMPTY_GROUP,
        GroupError::GroupIdNotFound => error::GROUP_ID_NOT_FOUND,
        GroupError::GroupSubscribedToTopic => error::GROUP_SUBSCRIBED_TO_TOPIC,
        GroupError::OffsetMetadataTooLarge => error::OFFSET_METADATA_TOO_LARGE,
        GroupError::StaleMemberEpoch => error::STALE_MEMBER_EPOCH,
    }
}

fn code_of(r: &Result<(), GroupError>) -> i16 {
    r.err().map_or(error::NONE, group_error_code)
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// Whether the sender may do `op` on group `id`.
fn may_group(broker: &Broker, ctx: &Ctx, op: Operation, id: &str) -> bool {
    ctx.may(broker, op, ResourceType::Group, id)
}

/// FindCoordinator: this broker coordinates every group and transactional id.
pub(super) fn find_coordinator(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: FindCoordinatorRequest,
) -> ResponseFrame {
    let (host, port) = &broker.advertised_for(ctx.listener);
    let node = BrokerId(broker.config.node_id);
    // DESCRIBE on the group or transactional id, as Kafka.
    let refusal = |key: &str| -> Option<(i16, &'static str)> {
        match req.key_type {
            0 if !may_group(broker, ctx, Operation::Describe, key) => Some((
                error::GROUP_AUTHORIZATION_FAILED,
                "Group authorization failed.",
            )),
            1 if !ctx.may(
                broker,
                Operation::Describe,
                ResourceType::TransactionalId,
                key,
            ) =>
            {
                Some((
                    error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "Transactional Id authorization failed.",
                ))
            }
            0 | 1 => None,
            _ => Some((error::INVALID_REQUEST, "unknown coordinator key type")),
        }
    };
    let mut resp = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let refused = refusal(&key);
                let mut c = CoordinatorEntry::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(sb(host.clone()))
                    .with_port(*port);
                if let Some((code, msg)) = refused {
                    c = c
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(sb(msg)));
                }
                c
            })
            .collect();
    } else {
        match refusal(&req.key) {
            None => {
                resp = resp
                    .with_node_id(node)
                    .with_host(sb(host.clone()))
                    .with_port(*port);
            }
            Some((code, msg)) => {
                resp = resp
                    .with_error_code(code)
                    .with_node_id(BrokerId(-1))
                    .with_host(sb(""))
                    .with_port(-1);
                if ctx.version >= 1 {
                    resp.error_message = Some(sb(msg));
                }
            }
        }
    }
    ctx.respond(&resp)
}

/// JoinGroup: may park until the group's join phase ends.
pub(super) async fn join(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    client_id: &str,
    client_host: &str,
    req: JoinGroupRequest,
) -> ResponseFrame {
    if !may_group(broker, ctx, Operation::Read, &req.group_id) {
        let mut resp = JoinGroupResponse::default()
            .with_error_code(error::GROUP_AUTHORIZATION_FAILED)
            .with_generation_id(-1)
            .with_member_id(req.member_id.clone());
        if ctx.version < 7 {
            resp.protocol_name = Some(sb(""));
        }
        return ctx.respond(&resp);
    }
    let rebalance_timeout_ms = if ctx.version == 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: opt_string(&req.group_instance_id),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
        new_member_id: String::new(),
    };
    let started = std::time::Instant::now();
    let topics = || super::consumer_groups::topics(broker);
    let r = broker.groups.join(&req.group_id, join, &topics).await;
    crate::metrics::group_parked(true, started);
    let old = ctx.version < 7;
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(error::NONE, group_error_code))
        .with_generation_id(r.generation)
        .with_protocol_name(match (r.protocol_name, old) {
            (Some(p), _) => Some(sb(p)),
            (None, true) => Some(sb("")),
            (None, false) => None,
        })
        .with_leader(sb(r.leader))
        .with_member_id(sb(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(m.member_id))
                        .with_group_instance_id(m.instance_id.map(sb))
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    if !old {
        resp.protocol_type = r.protocol_type.map(sb);
    }
    ctx.respond(&resp)
}

/// SyncGroup: the leader's call completes everyone's.
pub(super) async fn sync(broker: &Arc<Broker>, ctx: &Ctx, req: SyncGroupRequest) -> ResponseFrame {
    if !may_group(broker, ctx, Operation::Read, &req.group_id) {
        return ctx.respond(
            &SyncGroupResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
        );
    }
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let started = std::time::Instant::now();
    let r = broker
        .groups
        .sync(
            &req.group_id,
            &req.member_id,
            &opt_string(&req.group_instance_id),
            req.generation_id,
            (req.protocol_type.as_deref(), req.protocol_name.as_deref()),
            assignments,
        )
        .await;
    crate::metrics::group_parked(false, started);
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(error::NONE, group_error_code))
        .with_assignment(r.assignment);
    if ctx.version >= 5 {
        resp.protocol_type = r.protocol_type.map(sb);
        resp.protocol_name = r.protocol_name.map(sb);
    }
    ctx.respond(&resp)
}

/// Heartbeat.
pub(super) fn heartbeat(broker: &Arc<Broker>, ctx: &Ctx, req: HeartbeatRequest) -> ResponseFrame {
    if !may_group(broker, ctx, Operation::Read, &req.group_id) {
        return ctx.respond(
            &HeartbeatResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
        );
    }
    let r = broker.groups.heartbeat(
        &req.group_id,
        &req.member_id,
        &opt_string(&req.group_instance_id),
        req.generation_id,
    );
    ctx.respond(&HeartbeatResponse::default().with_error_code(code_of(&r)))
}

/// LeaveGroup: one member (v0-v2) or a batch (v3+).
pub(super) async fn leave(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: LeaveGroupRequest,
) -> ResponseFrame {
    if !may_group(broker, ctx, Operation::Read, &req.group_id) {
        return ctx.respond(
            &LeaveGroupResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
        );
    }
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id)))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let resp = match broker.groups.leave(&req.group_id, &members).await {
        Err(e) => LeaveGroupResponse::default().with_error_code(group_error_code(e)),
        Ok(results) if ctx.version < 3 => {
            LeaveGroupResponse::default().with_error_code(results.first().map_or(0, code_of))
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((m, i), r)| {
                    MemberResponse::default()
                        .with_member_id(sb(m))
                        .with_group_instance_id(i.map(sb))
                        .with_error_code(code_of(&r))
                })
                .collect(),
        ),
    };
    ctx.respond(&resp)
}

/// OffsetCommit: answered once the offsets are durable.
pub(super) async fn offset_commit(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: OffsetCommitRequest,
) -> ResponseFrame {
    // Which partitions exist decides which are committed (Kafka answers
    // UNKNOWN_TOPIC_OR_PARTITION for the rest).
    // READ on the group (else every partition fails) and on each topic.
    let group_denied = !may_group(broker, ctx, Operation::Read, &req.group_id);
    let mut to_commit = Vec::new();
    let mut known = Vec::new();
    for t in &req.topics {
        let topic = broker.topic(&t.name);
        let refused = if group_denied {
            Some(error::GROUP_AUTHORIZATION_FAILED)
        } else if !ctx.may(broker, Operation::Read, ResourceType::Topic, &t.name) {
            Some(error::TOPIC_AUTHORIZATION_FAILED)
        } else {
            None
        };
        for p in &t.partitions {
            let exists = topic
                .as_ref()
                .is_some_and(|tp| tp.partition(p.partition_index).is_some());
            let status = match refused {
                Some(code) => Err(code),
                None if exists => Ok(()),
                None => Err(error::UNKNOWN_TOPIC_OR_PARTITION),
            };
            known.push(status);
            if status.is_ok() {
                to_commit.push((
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    opt_string(&p.committed_metadata).unwrap_or_default(),
                ));
            }
        }
    }
    let retention =
        (ctx.version <= 4 && req.retention_time_ms >= 0).then_some(req.retention_time_ms);
    let mut results = if to_commit.is_empty() {
        Vec::new()
    } else {
        broker
            .groups
            .commit(
                &req.group_id,
                &req.member_id,
                &opt_string(&req.group_instance_id),
                req.generation_id_or_member_epoch,
                retention,
                to_commit,
            )
            .await
    }
    .into_iter();
    let mut known = known.into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let err = match known.next() {
                                Some(Ok(())) => results
                                    .next()
                                    .map_or(error::UNKNOWN_SERVER_ERROR, |r| code_of(&r)),
                                Some(Err(code)) => code,
                                None => error::UNKNOWN_SERVER_ERROR,
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(err)
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&OffsetCommitResponse::default().with_topics(topics))
}

/// Committed offsets (or none) by partition, grouped by topic.
/// By topic: (partition, committed offset, partition error code).
type TopicOffsets = Vec<(String, Vec<(i32, Option<Committed>, i16)>)>;

/// One group's committed offsets, grouped by topic in request order (or all).
/// With `require_stable` (v7+), a partition with a transactional commit
/// pending answers UNSTABLE_OFFSET_COMMIT, as Kafka does.
fn fetch_group(
    broker: &Arc<Broker>,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> TopicOffsets {
    let unstable = if require_stable {
        broker.groups.unstable_partitions(group)
    } else {
        Default::default()
    };
    let flat = wanted.as_ref().map(|w| {
        w.iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    });
    let found = broker.groups.fetch_offsets(group, flat);
    let mut out: TopicOffsets = Vec::new();
    for ((topic, partition), c) in found {
        let entry = if unstable.contains(&(topic.clone(), partition)) {
            (partition, None, error::UNSTABLE_OFFSET_COMMIT)
        } else {
            (partition, c, error::NONE)
        };
        match out.last_mut() {
            Some((t, ps)) if *t == topic => ps.push(entry),
            _ => out.push((topic, vec![entry])),
        }
    }
    out
}

/// The topics of a group's offsets the sender may DESCRIBE: the others are
/// answered TOPIC_AUTHORIZATION_FAILED when named, left out when all were
/// asked for, as Kafka.
fn describable(broker: &Broker, ctx: &Ctx, found: TopicOffsets, named: bool) -> TopicOffsets {
    found
        .into_iter()
        .filter_map(|(topic, ps)| {
            if ctx.may(broker, Operation::Describe, ResourceType::Topic, &topic) {
                Some((topic, ps))
            } else if named {
                let ps = ps
                    .into_iter()
                    .map(|(p, _, _)| (p, None, error::TOPIC_AUTHORIZATION_FAILED))
                    .collect();
                Some((topic, ps))
            } else {
                None
            }
        })
        .collect()
}

fn committed_fields(c: Option<Committed>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

/// OffsetFetch: one group (v1-v7) or several (v8+).
pub(super) fn offset_fetch(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: OffsetFetchRequest,
) -> ResponseFrame {
    if ctx.version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                if !may_group(broker, ctx, Operation::Describe, &g.group_id) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(error::GROUP_AUTHORIZATION_FAILED);
                }
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let named = wanted.is_some();
                let found = fetch_group(broker, &g.group_id, wanted, req.require_stable);
                let topics = describable(broker, ctx, found, named)
                    .into_iter()
                    .map(|(topic, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(sb(topic)))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, c, code)| {
                                        let (offset, epoch, metadata) = committed_fields(c);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(sb(metadata)))
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return ctx.respond(&OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let require_stable = ctx.version >= 7 && req.require_stable;
    if !may_group(broker, ctx, Operation::Describe, &req.group_id) {
        // v2+: a top-level error; v0-1 have none, so each named partition carries it.
        let mut resp = OffsetFetchResponse::default();
        if ctx.version >= 2 {
            resp.error_code = error::GROUP_AUTHORIZATION_FAILED;
        } else {
            resp.topics = req
                .topics
                .iter()
                .flatten()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(-1)
                                        .with_metadata(Some(sb("")))
                                        .with_error_code(error::GROUP_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        return ctx.respond(&resp);
    }
    let named = wanted.is_some();
    let found = fetch_group(broker, &req.group_id, wanted, require_stable);
    let topics = describable(broker, ctx, found, named)
        .into_iter()
        .map(|(topic, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(sb(topic)))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, c, code)| {
                            let (offset, epoch, metadata) = committed_fields(c);
                            let mut part = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(sb(metadata)))
                                .with_error_code(code);
                            if ctx.version >= 5 {
                                part.committed_leader_epoch = epoch;
                            }
                            part
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&OffsetFetchResponse::default().with_topics(topics))
}

/// ListGroups, with the state (v4+) and type (v5+) filters.
pub(super) fn list(broker: &Arc<Broker>, ctx: &Ctx, req: ListGroupsRequest) -> ResponseFrame {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    // DESCRIBE on the cluster lists every group; otherwise the groups the
    // sender may DESCRIBE, as Kafka.
    let all = ctx.may_cluster(broker, Operation::Describe);
    let groups = {
        broker
            .groups
            .list()
            .into_iter()
            .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
            .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
            .filter(|g| all || may_group(broker, ctx, Operation::Describe, &g.group_id))
            .map(|g| {
                let mut l = ListedGroup::default()
                    .with_group_id(GroupId(sb(g.group_id)))
                    .with_protocol_type(sb(g.protocol_type));
                if ctx.version >= 4 {
                    l.group_state = sb(g.state);
                }
                if ctx.version >= 5 {
                    l.group_type = sb(g.group_type);
                }
                l
            })
            .collect()
    };
    ctx.respond(&ListGroupsResponse::default().with_groups(groups))
}

/// DescribeGroups; unknown groups are reported Dead, as Kafka does before v6.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeGroupsRequest,
) -> ResponseFrame {
    let groups = req
        .groups
        .iter()
        .map(|id| {
            if !may_group(broker, ctx, Operation::Describe, id) {
                return DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(error::GROUP_AUTHORIZATION_FAILED)
                    .with_group_state(sb(""))
                    .with_protocol_type(sb(""))
                    .with_protocol_data(sb(""));
            }
            let s = broker.groups.describe(id);
            let mut g = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_group_state(sb(s.state))
                .with_protocol_type(sb(s.protocol_type))
                .with_protocol_data(sb(s.protocol))
                .with_members(
                    s.members
                        .into_iter()
                        .map(|m| {
                            let mut d = DescribedGroupMember::default()
                                .with_member_id(sb(m.member_id))
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment);
                            if ctx.version >= 4 {
                                d.group_instance_id = m.instance_id.map(sb);
                            }
                            d
                        })
                        .collect(),
                );
            if ctx.version >= 3 && req.include_authorized_operations {
                g.authorized_operations = ctx.operations(broker, ResourceType::Group, id);
            }
            g
        })
        .collect();
    ctx.respond(&DescribeGroupsResponse::default().with_groups(groups))
}

/// DeleteGroups: only empty groups can go.
pub(super) async fn delete(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DeleteGroupsRequest,
) -> ResponseFrame {
    // DELETE on each group; the others are deleted.
    let allowed: Vec<bool> = req
        .groups_names
        .iter()
        .map(|g| may_group(broker, ctx, Operation::Delete, g))
        .collect();
    let ids: Vec<String> = req
        .groups_names
        .iter()
        .zip(&allowed)
        .filter(|(_, ok)| **ok)
        .map(|(g, _)| g.to_string())
        .collect();
    let mut deleted = broker.groups.delete_groups(&ids).await.into_iter();
    let results = req
        .groups_names
        .into_iter()
        .zip(allowed)
        .map(|(id, ok)| {
            let code = if ok {
                deleted
                    .next()
                    .map_or(error::UNKNOWN_SERVER_ERROR, |r| code_of(&r))
            } else {
                error::GROUP_AUTHORIZATION_FAILED
            };
            kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    ctx.respond(&DeleteGroupsResponse::default().with_results(results))
}

/// OffsetDelete: not for topics the group still consumes.
pub(super) async fn offset_delete(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: OffsetDeleteRequest,
) -> ResponseFrame {
    if !may_group(broker, ctx, Operation::Delete, &req.group_id) {
        return ctx.respond(
            &OffsetDeleteResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
        );
    }
    // READ on each topic; the partitions of the others are refused.
    let topic_ok = |name: &str| ctx.may(broker, Operation::Read, ResourceType::Topic, name);
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .filter(|t| topic_ok(&t.name))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let resp = match broker
        .groups
        .delete_offsets(&req.group_id, partitions)
        .await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(group_error_code(e)),
        Ok(results) => {
            let mut results = results.into_iter();
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    let exists = broker.topic(&t.name);
                    let allowed = topic_ok(&t.name);
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    if !allowed {
                                        return OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(error::TOPIC_AUTHORIZATION_FAILED);
                                    }
                                    let r = results.next().map(|(_, r)| r);
                                    let known = exists.as_ref().is_some_and(|tp| {
                                        tp.partition(p.partition_index).is_some()
                                    });
                                    let err = match r {
                                        Some(Err(e)) => group_error_code(e),
                                        _ if !known => error::UNKNOWN_TOPIC_OR_PARTITION,
                                        _ => error::NONE,
                                    };
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(err)
                                })
                                .collect(),
                        )
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    };
    ctx.respond(&resp)
}
