//! KIP-848 consumer groups: ConsumerGroupHeartbeat and ConsumerGroupDescribe.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};

use super::groups::group_error_code;
use super::{sb, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::group::{Assignment, ConsumerError, Heartbeat, Topics};
use crate::protocol::{error, ResponseFrame};

/// The topics that exist now, as the state machine sees them.
pub(super) fn topics(broker: &Broker) -> Topics {
    broker.group_topics()
}

/// The Kafka error code and message of a refused heartbeat.
pub(super) fn error_of(e: ConsumerError) -> (i16, Option<String>) {
    match e {
        ConsumerError::InvalidRequest(m) => (error::INVALID_REQUEST, Some(m)),
        ConsumerError::UnknownMemberId => (error::UNKNOWN_MEMBER_ID, None),
        ConsumerError::FencedMemberEpoch => (error::FENCED_MEMBER_EPOCH, None),
        ConsumerError::UnreleasedInstanceId => (error::UNRELEASED_INSTANCE_ID, None),
        ConsumerError::FencedInstanceId => (error::FENCED_INSTANCE_ID, None),
        ConsumerError::UnsupportedAssignor => (error::UNSUPPORTED_ASSIGNOR, None),
        ConsumerError::GroupMaxSizeReached => (error::GROUP_MAX_SIZE_REACHED, None),
        ConsumerError::InvalidRegularExpression(m) => (error::INVALID_REGULAR_EXPRESSION, Some(m)),
        ConsumerError::StaleMemberEpoch => (error::STALE_MEMBER_EPOCH, None),
        ConsumerError::IllegalGeneration => (error::ILLEGAL_GENERATION, None),
        ConsumerError::Group(g) => (group_error_code(g), None),
    }
}

/// ConsumerGroupHeartbeat: READ on the group and DESCRIBE on each named
/// topic, as Kafka; then the group's state machine.
pub(super) fn heartbeat(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    client_id: &str,
    req: ConsumerGroupHeartbeatRequest,
) -> ResponseFrame {
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    let group_id = req.group_id.0.to_string();
    let refuse = |mut resp: ConsumerGroupHeartbeatResponse, code, message: Option<String>| {
        resp.error_code = code;
        resp.error_message = message.map(sb);
        ctx.respond(&resp)
    };
    if !ctx.may(broker, Operation::Read, ResourceType::Group, &group_id) {
        return refuse(resp, error::GROUP_AUTHORIZATION_FAILED, None);
    }
    if let Some(names) = &req.subscribed_topic_names {
        if names
            .iter()
            .any(|n| !ctx.may(broker, Operation::Describe, ResourceType::Topic, &n.0))
        {
            return refuse(resp, error::TOPIC_AUTHORIZATION_FAILED, None);
        }
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut a = Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a
    });
    let hb = Heartbeat {
        version: ctx.version,
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|v| v.iter().map(|t| t.0.to_string()).collect()),
        topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: client_id.to_string(),
        client_host: ctx.client_host.to_string(),
        new_member_id: String::new(),
    };
    match broker
        .groups
        .consumer_heartbeat(&group_id, hb, &topics(broker))
    {
        Ok(r) => {
            resp.member_id = Some(sb(r.member_id));
            resp.member_epoch = r.member_epoch;
            resp.heartbeat_interval_ms = r.heartbeat_interval_ms;
            resp.assignment = r.assignment.map(|a| {
                HeartbeatAssignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            });
            ctx.respond(&resp)
        }
        Err(e) => {
            let (code, message) = error_of(e);
            refuse(resp, code, message)
        }
    }
}

/// An assignment with topic names, for describe.
fn described(broker: &Broker, a: &Assignment) -> DescribedAssignment {
    DescribedAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, ps)| {
                let name = broker
                    .topic_by_id(id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                DescribedTopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(sb(name)))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

/// Why a group may not be described (ConsumerGroupDescribe,
/// ShareGroupDescribe): an empty id, then DESCRIBE on the group, as Kafka.
pub(super) fn describe_refusal(broker: &Broker, ctx: &Ctx, name: &str) -> Option<i16> {
    if name.is_empty() {
        return Some(error::INVALID_GROUP_ID);
    }
    if !ctx.may(broker, Operation::Describe, ResourceType::Group, name) {
        return Some(error::GROUP_AUTHORIZATION_FAILED);
    }
    None
}

/// ConsumerGroupDescribe: DESCRIBE on each group; a group that is not a
/// KIP-848 group is GROUP_ID_NOT_FOUND, as Kafka.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: ConsumerGroupDescribeRequest,
) -> ResponseFrame {
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            let name = id.0.to_string();
            let mut g = DescribedGroup::default().with_group_id(GroupId(sb(name.clone())));
            g.error_message = None;
            if let Some(code) = describe_refusal(broker, ctx, &name) {
                g.error_code = code;
                return g;
            }
            let Some(c) = broker.groups.consumer_describe(&name) else {
                g.error_code = error::GROUP_ID_NOT_FOUND;
                g.error_message = Some(sb(format!("Group {name} is not a consumer group.")));
                g.group_state = sb("Dead");
                return g;
            };
            g.group_state = sb(c.state);
            g.group_epoch = c.group_epoch;
            g.assignment_epoch = c.assignment_epoch;
            g.assignor_name = sb(c.assignor);
            if req.include_authorized_operations {
                g.authorized_operations = ctx.operations(broker, ResourceType::Group, &name);
            }
            g.members = c
                .members
                .into_iter()
                .map(|m| {
                    let mut d = DescribedMember::default()
                        .with_member_id(sb(m.member_id))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(sb(m.client_id))
                        .with_client_host(sb(m.client_host))
                        .with_subscribed_topic_names(
                            m.topic_names
                                .into_iter()
                                .map(|n| TopicName(sb(n)))
                                .collect(),
                        )
                        .with_assignment(described(broker, &m.assignment))
                        .with_target_assignment(described(broker, &m.target));
                    d.instance_id = m.instance_id.map(sb);
                    d.rack_id = m.rack_id.map(sb);
                    d.subscribed_topic_regex = m.topic_regex.map(sb);
                    if ctx.version >= 1 {
                        // 0: classic protocol (a group in migration), 1: consumer.
                        d.member_type = if m.classic { 0 } else { 1 };
                    }
                    d
                })
                .collect();
            g
        })
        .collect();
    ctx.respond(&ConsumerGroupDescribeResponse::default().with_groups(groups))
}
