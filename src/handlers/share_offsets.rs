//! The share-group offset admin APIs (KIP-932): DescribeShareGroupOffsets,
//! AlterShareGroupOffsets and DeleteShareGroupOffsets, v0. A share group's
//! "offset" on a partition is its share-partition start offset (SPSO):
//! every record below it is done.

use std::sync::Arc;

use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse, DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse, TopicName,
};
use uuid::Uuid;

use super::{sb, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::group::ShareAdminError;
use crate::protocol::{error, ResponseFrame};

/// The Kafka error of a refused share-offset request.
fn admin_error(e: ShareAdminError) -> (i16, String) {
    match e {
        ShareAdminError::NotFound => (
            error::GROUP_ID_NOT_FOUND,
            "Group is not a share group.".into(),
        ),
        ShareAdminError::NonEmpty => (
            error::NON_EMPTY_GROUP,
            "The group has active members; stop them first.".into(),
        ),
        ShareAdminError::Storage => (
            error::KAFKA_STORAGE_ERROR,
            "the share-group state could not be written".into(),
        ),
        ShareAdminError::Group(g) => (super::groups::group_error_code(g), String::new()),
    }
}

/// One described partition.
fn described(index: i32, start: i64, code: i16) -> DescribeShareGroupOffsetsResponsePartition {
    let mut p = DescribeShareGroupOffsetsResponsePartition::default()
        .with_partition_index(index)
        .with_start_offset(start)
        .with_leader_epoch(if start >= 0 { 0 } else { -1 })
        .with_error_code(code);
    p.error_message = None;
    p
}

/// DescribeShareGroupOffsets: DESCRIBE on the group; topics the sender may
/// not DESCRIBE are TOPIC_AUTHORIZATION_FAILED (named) or left out (all).
/// An unknown topic or an uninitialized partition has start offset -1.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeShareGroupOffsetsRequest,
) -> ResponseFrame {
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let name = g.group_id.0.to_string();
            let mut out =
                DescribeShareGroupOffsetsResponseGroup::default().with_group_id(g.group_id);
            out.error_message = None;
            if !ctx.may(broker, Operation::Describe, ResourceType::Group, &name) {
                out.error_code = error::GROUP_AUTHORIZATION_FAILED;
                return out;
            }
            let starts = broker.groups.share_start_offsets(&name);
            match g.topics {
                None => {
                    let Some(starts) = starts else {
                        out.error_code = error::GROUP_ID_NOT_FOUND;
                        out.error_message = Some(sb(format!("Group {name} is not a share group.")));
                        return out;
                    };
                    for ((id, index), start) in starts {
                        let Some(t) = broker.topic_by_id(&id) else {
                            continue;
                        };
                        if !ctx.may(broker, Operation::Describe, ResourceType::Topic, &t.name) {
                            continue;
                        }
                        match out.topics.last_mut() {
                            Some(last) if last.topic_id == id => {
                                last.partitions.push(described(index, start, error::NONE))
                            }
                            _ => out.topics.push(
                                DescribeShareGroupOffsetsResponseTopic::default()
                                    .with_topic_name(TopicName(sb(t.name.clone())))
                                    .with_topic_id(id)
                                    .with_partitions(vec![described(index, start, error::NONE)]),
                            ),
                        }
                    }
                }
                Some(topics) => {
                    for t in topics {
                        let topic = broker.topic(&t.topic_name.0);
                        let allowed = ctx.may(
                            broker,
                            Operation::Describe,
                            ResourceType::Topic,
                            &t.topic_name.0,
                        );
                        let id = topic
                            .as_ref()
                            .filter(|_| allowed)
                            .map_or(Uuid::nil(), |t| t.id);
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|index| {
                                if !allowed {
                                    return described(
                                        *index,
                                        -1,
                                        error::TOPIC_AUTHORIZATION_FAILED,
                                    );
                                }
                                let start = starts
                                    .as_ref()
                                    .and_then(|s| s.get(&(id, *index)))
                                    .copied()
                                    .unwrap_or(-1);
                                described(*index, start, error::NONE)
                            })
                            .collect();
                        out.topics.push(
                            DescribeShareGroupOffsetsResponseTopic::default()
                                .with_topic_name(t.topic_name)
                                .with_topic_id(id)
                                .with_partitions(partitions),
                        );
                    }
                }
            }
            out
        })
        .collect();
    ctx.respond(&DescribeShareGroupOffsetsResponse::default().with_groups(groups))
}

/// AlterShareGroupOffsets: READ on the group and on each topic; the group
/// must have no members. Unknown topics and partitions are
/// UNKNOWN_TOPIC_OR_PARTITION.
pub(super) async fn alter(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: AlterShareGroupOffsetsRequest,
) -> ResponseFrame {
    let mut resp = AlterShareGroupOffsetsResponse::default();
    resp.error_message = None;
    let name = req.group_id.0.to_string();
    let top = |mut resp: AlterShareGroupOffsetsResponse, code: i16, m: String| {
        resp.error_code = code;
        resp.error_message = (!m.is_empty()).then(|| sb(m));
        ctx.respond(&resp)
    };
    if name.is_empty() {
        return top(resp, error::INVALID_GROUP_ID, "group id is empty".into());
    }
    if !ctx.may(broker, Operation::Read, ResourceType::Group, &name) {
        return top(resp, error::GROUP_AUTHORIZATION_FAILED, String::new());
    }
    let mut starts = Vec::new();
    for t in req.topics {
        let topic = broker.topic(&t.topic_name.0);
        let code = if !ctx.may(
            broker,
            Operation::Read,
            ResourceType::Topic,
            &t.topic_name.0,
        ) {
            error::TOPIC_AUTHORIZATION_FAILED
        } else if topic.is_none() {
            error::UNKNOWN_TOPIC_OR_PARTITION
        } else {
            error::NONE
        };
        let id = topic.as_ref().map_or(Uuid::nil(), |t| t.id);
        let mut rt = AlterShareGroupOffsetsResponseTopic::default()
            .with_topic_name(t.topic_name.clone())
            .with_topic_id(id);
        for p in t.partitions {
            let exists = topic
                .as_ref()
                .is_some_and(|t| t.partition(p.partition_index).is_some());
            let code = if code == error::NONE && !exists {
                error::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                code
            };
            if code == error::NONE {
                starts.push(((id, p.partition_index), p.start_offset));
            }
            let mut rp = AlterShareGroupOffsetsResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(code);
            rp.error_message = None;
            rt.partitions.push(rp);
        }
        resp.responses.push(rt);
    }
    match broker.groups.share_alter_offsets(&name, &starts).await {
        Ok(()) => ctx.respond(&resp),
        Err(e) => {
            let (code, m) = admin_error(e);
            resp.responses.clear();
            top(resp, code, m)
        }
    }
}

/// DeleteShareGroupOffsets: DELETE on the group, READ on each topic; the
/// group must have no members. A topic with no state is
/// UNKNOWN_TOPIC_OR_PARTITION, as Kafka.
pub(super) async fn delete(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DeleteShareGroupOffsetsRequest,
) -> ResponseFrame {
    let mut resp = DeleteShareGroupOffsetsResponse::default();
    resp.error_message = None;
    let name = req.group_id.0.to_string();
    let top = |mut resp: DeleteShareGroupOffsetsResponse, code: i16, m: String| {
        resp.error_code = code;
        resp.error_message = (!m.is_empty()).then(|| sb(m));
        ctx.respond(&resp)
    };
    if name.is_empty() {
        return top(resp, error::INVALID_GROUP_ID, "group id is empty".into());
    }
    if !ctx.may(broker, Operation::Delete, ResourceType::Group, &name) {
        return top(resp, error::GROUP_AUTHORIZATION_FAILED, String::new());
    }
    let mut ids = Vec::new();
    let mut rows: Vec<(TopicName, Uuid, i16)> = Vec::new();
    for t in req.topics {
        let allowed = ctx.may(
            broker,
            Operation::Read,
            ResourceType::Topic,
            &t.topic_name.0,
        );
        match broker.topic(&t.topic_name.0) {
            _ if !allowed => {
                rows.push((t.topic_name, Uuid::nil(), error::TOPIC_AUTHORIZATION_FAILED))
            }
            None => rows.push((t.topic_name, Uuid::nil(), error::UNKNOWN_TOPIC_OR_PARTITION)),
            Some(topic) => {
                ids.push(topic.id);
                rows.push((t.topic_name, topic.id, error::NONE));
            }
        }
    }
    let had = match broker.groups.share_delete_offsets(&name, &ids).await {
        Ok(h) => h,
        Err(e) => {
            let (code, m) = admin_error(e);
            return top(resp, code, m);
        }
    };
    let mut had = had.into_iter();
    for (topic_name, id, code) in rows {
        let (code, message) = if code == error::NONE && !had.next().unwrap_or(false) {
            (
                error::UNKNOWN_TOPIC_OR_PARTITION,
                Some(sb("There is no offset information to delete.")),
            )
        } else {
            (code, None)
        };
        let mut r = DeleteShareGroupOffsetsResponseTopic::default()
            .with_topic_name(topic_name)
            .with_topic_id(id)
            .with_error_code(code);
        r.error_message = message;
        resp.responses.push(r);
    }
    ctx.respond(&resp)
}
