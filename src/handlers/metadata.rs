//! Metadata: brokers, cluster id, controller, topics and partitions; auto-creates
//! requested topics when allowed. With ACLs, as Kafka: the topics a client may
//! not DESCRIBE are left out of "all topics" and answered
//! TOPIC_AUTHORIZATION_FAILED when named; auto-creation needs CREATE on the
//! cluster or the topic; authorized operations are answered when asked for.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{sb, topic_error_code, Ctx};
use crate::auth::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::broker::{Broker, Topic, TopicError};
use crate::protocol::{error, ResponseFrame};

fn describe(broker: &Broker, ctx: &Ctx, topic: &Topic, ops: bool) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(sb(topic.name.clone())));
    if ops {
        t.topic_authorized_operations = ctx.operations(broker, ResourceType::Topic, &topic.name);
    }
    if ctx.version >= 10 {
        t.topic_id = topic.id;
    }
    t.partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.index;
            mp.leader_epoch = 0;
            mp.replica_nodes = vec![node];
            if p.is_offline() {
                // As Kafka with its only replica's log dir offline: no leader.
                mp.error_code = error::LEADER_NOT_AVAILABLE;
                mp.leader_id = BrokerId(-1);
                mp.offline_replicas = if ctx.version >= 5 {
                    vec![node]
                } else {
                    Vec::new()
                };
            } else {
                mp.leader_id = node;
                mp.isr_nodes = vec![node];
            }
            mp
        })
        .collect();
    t
}

fn failed(ctx: &Ctx, name: Option<String>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.error_code = code;
    t.name = name.map(|n| TopicName(sb(n)));
    if ctx.version >= 10 {
        t.topic_id = id;
    }
    t
}

/// Answers Metadata v0-v12.
pub(super) async fn handle(broker: &Arc<Broker>, ctx: &Ctx, req: MetadataRequest) -> ResponseFrame {
    let mut resp = MetadataResponse::default();
    let (host, port) = broker.advertised_for(ctx.listener);
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(broker.config.node_id);
    b.host = sb(host);
    b.port = port;
    resp.brokers = vec![b];
    if ctx.version >= 2 {
        resp.cluster_id = Some(sb(broker.cluster_id.clone()));
    }
    resp.controller_id = BrokerId(broker.config.node_id);
    // v0: an empty list means all topics; v1+: null means all.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => Some(t),
    };
    let auto_create =
        broker.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
    let ops = ctx.version >= 8 && req.include_topic_authorized_operations;
    if ctx.version >= 8 && req.include_cluster_authorized_operations {
        // As Kafka: 0 without DESCRIBE on the cluster.
        resp.cluster_authorized_operations = if ctx.may_cluster(broker, Operation::Describe) {
            ctx.operations(broker, ResourceType::Cluster, CLUSTER_NAME)
        } else {
            0
        };
    }
    let may_describe = |name: &str| ctx.may(broker, Operation::Describe, ResourceType::Topic, name);
    match requested {
        None => {
            resp.topics = broker
                .topics()
                .iter()
                .filter(|t| may_describe(&t.name))
                .map(|t| describe(broker, ctx, t, ops))
                .collect()
        }
        Some(list) => {
            let may_create_any = ctx.may_cluster(broker, Operation::Create);
            for rt in list {
                let entry = match rt.name {
                    Some(name) if !may_describe(&name.0) => failed(
                        ctx,
                        Some(name.0.to_string()),
                        uuid::Uuid::nil(),
                        error::TOPIC_AUTHORIZATION_FAILED,
                    ),
                    Some(name) => {
                        let name = name.0.to_string();
                        let may_create = may_create_any
                            || ctx.may(broker, Operation::Create, ResourceType::Topic, &name);
                        let found = if auto_create && !may_create && broker.topic(&name).is_none() {
                            // Kafka answers a topic it may not create as unauthorized.
                            Err(None)
                        } else if auto_create {
                            broker.get_or_create(&name).await.map_err(Some)
                        } else {
                            broker
                                .topic(&name)
                                .ok_or(TopicError::Unknown)
                                .or_else(|e| {
                                    crate::broker::validate_topic_name(&name)
                                        .map(|_| Err(e))
                                        .unwrap_or_else(Err)
                                })
                                .map_err(Some)
                        };
                        match found {
                            Ok(t) => describe(broker, ctx, &t, ops),
                            Err(None) => failed(
                                ctx,
                                Some(name),
                                uuid::Uuid::nil(),
                                error::TOPIC_AUTHORIZATION_FAILED,
                            ),
                            Err(Some(e)) => {
                                failed(ctx, Some(name), uuid::Uuid::nil(), topic_error_code(&e))
                            }
                        }
                    }
                    None => match broker.topic_by_id(&rt.topic_id) {
                        Some(t) if !may_describe(&t.name) => {
                            failed(ctx, None, rt.topic_id, error::TOPIC_AUTHORIZATION_FAILED)
                        }
                        Some(t) => describe(broker, ctx, &t, ops),
                        None => failed(ctx, None, rt.topic_id, error::UNKNOWN_TOPIC_ID),
                    },
                };
                resp.topics.push(entry);
            }
        }
    }
    ctx.respond(&resp)
}
