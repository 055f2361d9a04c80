//! CreateTopics and DeleteTopics. With ACLs, as Kafka: creating needs CREATE
//! on the cluster or the topic (checked before existence: an unauthorized
//! client cannot learn that a topic exists), and the configs are returned only
//! with DESCRIBE_CONFIGS; deleting needs DELETE on the cluster, or DESCRIBE
//! and DELETE on the topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};

use super::{sb, topic_error_code, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::topic_config;
use crate::broker::{Broker, TopicError};
use crate::protocol::{error, ResponseFrame};

/// Checks a CreatableTopic's shape; returns (partitions, configs) or (code, message).
fn check_shape(
    broker: &Broker,
    t: &CreatableTopic,
) -> Result<(i32, BTreeMap<String, String>), (i16, String)> {
    let node = broker.config.node_id;
    let mut partitions = t.num_partitions;
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((
                error::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        let mut seen: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        seen.sort_unstable();
        let consecutive = seen
            .iter()
            .enumerate()
            .all(|(i, p)| i32::try_from(i).ok() == Some(*p));
        if !consecutive {
            return Err((
                error::INVALID_REPLICA_ASSIGNMENT,
                "partitions must be numbered 0..n without gaps".into(),
            ));
        }
        if let Some(a) = t
            .assignments
            .iter()
            .find(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
        {
            return Err((
                error::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "partition {} must be assigned to exactly broker {node}",
                    a.partition_index
                ),
            ));
        }
        partitions = i32::try_from(t.assignments.len()).unwrap_or(i32::MAX);
    } else if t.replication_factor != 1 && t.replication_factor != -1 {
        return Err((
            error::INVALID_REPLICATION_FACTOR,
            format!(
                "Replication factor: {} larger than available brokers: 1.",
                t.replication_factor
            ),
        ));
    }
    if partitions == 0 || partitions < -1 {
        return Err((
            error::INVALID_PARTITIONS,
            format!("Number of partitions must be larger than 0, got {partitions}"),
        ));
    }
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(v) = &c.value else {
            return Err((
                error::INVALID_CONFIG,
                format!("Null value not supported for topic config {}", c.name),
            ));
        };
        let v = topic_config::check(c.name.as_str(), v).map_err(|e| (error::INVALID_CONFIG, e))?;
        configs.insert(c.name.to_string(), v);
    }
    Ok((partitions, configs))
}

fn config_list(broker: &Broker, configs: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    topic_config::describe(&broker.topic_defaults(), configs)
        .into_iter()
        .map(|e| {
            let mut c = CreatableTopicConfigs::default();
            c.name = sb(e.spec.name);
            c.value = Some(sb(e.value.value));
            c.config_source = e.value.source as i8;
            c.read_only = false;
            c.is_sensitive = false;
            c
        })
        .collect()
}

/// CreateTopics v2-v7, with validate_only.
pub(super) async fn create(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: CreateTopicsRequest,
) -> ResponseFrame {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut resp = CreateTopicsResponse::default();
    let may_create_any = ctx.may_cluster(broker, Operation::Create);
    for t in &req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let outcome: Result<(), (i16, String)> = async {
            if counts[&name] > 1 {
                return Err((
                    error::INVALID_REQUEST,
                    format!("Create topics request from client contains multiple entries for topic {name}"),
                ));
            }
            if !may_create_any && !ctx.may(broker, Operation::Create, ResourceType::Topic, &name) {
                return Err((error::TOPIC_AUTHORIZATION_FAILED, "Authorization failed.".into()));
            }
            let (partitions, configs) = check_shape(broker, t)?;
            let to_err = |e: TopicError| (topic_error_code(&e), e.to_string());
            if req.validate_only {
                let (n, _) = broker.check_create(&name, partitions, &configs).map_err(to_err)?;
                r.num_partitions = n;
                r.replication_factor = 1;
                r.configs = Some(config_list(broker, &configs));
            } else {
                let topic = broker.create_topic(&name, partitions, configs).await.map_err(to_err)?;
                r.topic_id = topic.id;
                r.num_partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
                r.replication_factor = 1;
                r.configs = Some(config_list(broker, &topic.configs()));
            }
            Ok(())
        }
        .await;
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = Some(sb(message));
        }
        if r.error_code == error::NONE
            && !ctx.may(
                broker,
                Operation::DescribeConfigs,
                ResourceType::Topic,
                &name,
            )
        {
            // Created, but its configs are not the client's to see.
            r.configs = None;
            r.topic_config_error_code = error::TOPIC_AUTHORIZATION_FAILED;
            r.num_partitions = -1;
            r.replication_factor = -1;
        }
        if ctx.version < 5 {
            r.configs = None;
            r.topic_config_error_code = error::NONE;
        }
        if ctx.version < 7 {
            r.topic_id = uuid::Uuid::nil();
        }
        resp.topics.push(r);
    }
    ctx.respond(&resp)
}

/// DeleteTopics v1-v6, by name or (v6) by topic id.
pub(super) async fn delete(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DeleteTopicsRequest,
) -> ResponseFrame {
    // Normalise both request shapes into (name, id) pairs.
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if ctx.version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut resp = DeleteTopicsResponse::default();
    let may_delete_any = ctx.may_cluster(broker, Operation::Delete);
    let may = |op, name: &str| may_delete_any || ctx.may(broker, op, ResourceType::Topic, name);
    for (name, id) in wanted {
        let mut r = DeletableTopicResult::default();
        r.name = name.clone().map(|n| TopicName(sb(n)));
        if ctx.version >= 6 {
            r.topic_id = id;
        }
        let unauthorized = || {
            (
                error::TOPIC_AUTHORIZATION_FAILED,
                "Topic authorization failed.".to_string(),
            )
        };
        let topic = match (&name, id.is_nil()) {
            (Some(_), false) => Err((
                error::INVALID_REQUEST,
                "give a topic name or an id, not both".to_string(),
            )),
            // As Kafka: without DESCRIBE, whether it exists is not told.
            (Some(n), true) if !may(Operation::Describe, n) => Err(unauthorized()),
            (Some(n), true) => match broker.topic(n) {
                None => Err((
                    error::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("unknown topic {n}"),
                )),
                Some(_) if !may(Operation::Delete, n) => Err(unauthorized()),
                Some(t) => Ok(t),
            },
            (None, false) => match broker.topic_by_id(&id) {
                None => Err((error::UNKNOWN_TOPIC_ID, format!("unknown topic id {id}"))),
                Some(t) if !may(Operation::Delete, &t.name) => {
                    if may(Operation::Describe, &t.name) {
                        r.name = Some(TopicName(sb(t.name.clone())));
                    }
                    Err(unauthorized())
                }
                Some(t) => Ok(t),
            },
            (None, true) => Err((
                error::INVALID_REQUEST,
                "neither topic name nor id".to_string(),
            )),
        };
        let outcome = match topic {
            Ok(t) => {
                r.name = Some(TopicName(sb(t.name.clone())));
                if ctx.version >= 6 {
                    r.topic_id = t.id;
                }
                broker
                    .delete_topic(&t)
                    .await
                    .map_err(|e| (topic_error_code(&e), e.to_string()))
            }
            Err(e) => Err(e),
        };
        if let Err((code, message)) = outcome {
            r.error_code = code;
            if ctx.version >= 5 {
                r.error_message = Some(sb(message));
            }
        }
        resp.responses.push(r);
    }
    ctx.respond(&resp)
}
