//! DescribeConfigs v1-v4 (the versions kafka-protocol carries; Kafka 4 dropped v0), AlterConfigs v0-v2 and IncrementalAlterConfigs v0-v1
//! for topics, and DescribeConfigs for this broker. Topic changes persist in
//! `topic.meta` and apply without a restart. Of the broker configs, the topic
//! defaults (`log.retention.ms`, `log.segment.bytes`, ...) can be changed at run
//! time for this broker or the whole cluster (dynamic broker configs, persisted
//! in the data directory); the rest are set on the command line and read-only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::{sb, topic_error_code, Ctx};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::topic_config::{self, Kind, Source};
use crate::broker::{Broker, TopicError};
use crate::group::shares;
use crate::protocol::{error, ResponseFrame};

/// Kafka's resource type ids.
const TOPIC: i8 = 2;
/// A broker (its id as the name; "" is the cluster-wide default).
const BROKER: i8 = 4;
/// A broker's log4j loggers: not served.
const BROKER_LOGGER: i8 = 8;
/// A consumer or share group (KIP-848, KIP-932).
const GROUP: i8 = 32;

/// The group configs served: name, type, and what it does. Share-group
/// settings only; others are refused with INVALID_CONFIG.
const GROUP_CONFIGS: &[(&str, Kind, &str)] = &[
    (
        shares::SHARE_AUTO_OFFSET_RESET,
        Kind::String,
        "Where a share group starts reading a partition it has not read: latest or earliest.",
    ),
    (
        shares::SHARE_ISOLATION_LEVEL,
        Kind::String,
        "Which records a share group reads; only read_uncommitted is served.",
    ),
    (
        shares::SHARE_RECORD_LOCK_DURATION_MS,
        Kind::Int,
        "How long a share consumer holds a record before it is offered again.",
    ),
    (
        shares::SHARE_SESSION_TIMEOUT_MS,
        Kind::Int,
        "How long a silent share-group member stays in the group.",
    ),
    (
        shares::SHARE_HEARTBEAT_INTERVAL_MS,
        Kind::Int,
        "How often share-group members heartbeat.",
    ),
];

/// The group configs of `name`, with broker defaults for those not set.
fn group_rows(broker: &Broker, name: &str) -> Result<Vec<Row>, Refusal> {
    if name.is_empty() {
        return Err((error::INVALID_GROUP_ID, "group id is empty".into()));
    }
    let set = broker.groups.group_configs(name);
    let c = &broker.config;
    Ok(GROUP_CONFIGS
        .iter()
        .map(|(key, kind, doc)| {
            let default = match *key {
                shares::SHARE_AUTO_OFFSET_RESET => "latest".to_string(),
                shares::SHARE_ISOLATION_LEVEL => "read_uncommitted".to_string(),
                shares::SHARE_RECORD_LOCK_DURATION_MS => {
                    c.group_share_record_lock_duration_ms.to_string()
                }
                shares::SHARE_SESSION_TIMEOUT_MS => c.group_share_session_timeout_ms.to_string(),
                _ => c.group_share_heartbeat_interval_ms.to_string(),
            };
            let (value, source) = match set.get(*key) {
                Some(v) => (v.clone(), Source::Group),
                None => (default, Source::Default),
            };
            Row {
                name: key.to_string(),
                value: Some(value.clone()),
                source,
                read_only: false,
                kind: *kind,
                doc,
                synonyms: vec![(key.to_string(), value, source)],
            }
        })
        .collect())
}

/// Applies SET and DELETE to a group's configs and checks the result as
/// Kafka's `GroupConfig` does.
fn incremental_group(
    broker: &Broker,
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = current.clone();
    for (name, op, value) in ops {
        if !GROUP_CONFIGS.iter().any(|(k, _, _)| k == name) {
            return Err((
                error::INVALID_CONFIG,
                format!("Unknown group config name: {name}"),
            ));
        }
        match *op {
            SET => {
                let v = value.clone().ok_or((
                    error::INVALID_REQUEST,
                    format!("Null value not supported for: {name}"),
                ))?;
                out.insert(name.clone(), v.trim().to_string());
            }
            DELETE => {
                out.remove(name);
            }
            _ => {
                return Err((
                    error::INVALID_CONFIG,
                    format!(
                        "Config value append or subtract is not allowed for config key: {name}"
                    ),
                ))
            }
        }
    }
    let c = &broker.config;
    let int = |k: &str, default: i32| -> Result<i64, Refusal> {
        match out.get(k) {
            None => Ok(i64::from(default)),
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                (
                    error::INVALID_CONFIG,
                    format!("Invalid value {v} for configuration {k}: Not a number of type INT"),
                )
            }),
        }
    };
    let (min, max) = broker.groups.share_lock_bounds();
    let lock = int(
        shares::SHARE_RECORD_LOCK_DURATION_MS,
        c.group_share_record_lock_duration_ms,
    )?;
    if !(min..=max).contains(&lock) {
        return Err((
            error::INVALID_CONFIG,
            format!(
                "{} must be between {min} and {max}",
                shares::SHARE_RECORD_LOCK_DURATION_MS
            ),
        ));
    }
    let session = int(
        shares::SHARE_SESSION_TIMEOUT_MS,
        c.group_share_session_timeout_ms,
    )?;
    let heartbeat = int(
        shares::SHARE_HEARTBEAT_INTERVAL_MS,
        c.group_share_heartbeat_interval_ms,
    )?;
    if heartbeat < 1 || session <= heartbeat || session > i64::from(i32::MAX) {
        return Err((
            error::INVALID_CONFIG,
            format!(
                "{} must be positive and below {}",
                shares::SHARE_HEARTBEAT_INTERVAL_MS,
                shares::SHARE_SESSION_TIMEOUT_MS
            ),
        ));
    }
    if let Some(v) = out.get(shares::SHARE_AUTO_OFFSET_RESET) {
        if v != "latest" && v != "earliest" {
            return Err((
                error::INVALID_CONFIG,
                format!(
                    "Invalid value {v} for configuration {}: latest or earliest (by_duration is not supported)",
                    shares::SHARE_AUTO_OFFSET_RESET
                ),
            ));
        }
    }
    if let Some(v) = out.get(shares::SHARE_ISOLATION_LEVEL) {
        if v != "read_uncommitted" {
            return Err((
                error::INVALID_CONFIG,
                format!(
                    "Invalid value {v} for configuration {}: only read_uncommitted is supported",
                    shares::SHARE_ISOLATION_LEVEL
                ),
            ));
        }
    }
    Ok(out)
}

/// An error for one resource: code and message.
type Refusal = (i16, String);

/// One config row as DescribeConfigs reports it.
struct Row {
    /// Name.
    name: String,
    /// Value; `None` for sensitive ones.
    value: Option<String>,
    /// Where it comes from.
    source: Source,
    /// Whether AlterConfigs may change it.
    read_only: bool,
    /// Kafka type.
    kind: Kind,
    /// Documentation (v3+).
    doc: &'static str,
    /// Synonyms (v1+), most specific first.
    synonyms: Vec<(String, String, Source)>,
}

fn topic_rows(broker: &Broker, name: &str) -> Result<Vec<Row>, Refusal> {
    let topic = broker.topic(name).ok_or((
        error::UNKNOWN_TOPIC_OR_PARTITION,
        format!("Topic {name} does not exist"),
    ))?;
    let defaults = broker.topic_defaults();
    Ok(topic_config::describe(&defaults, &topic.configs())
        .into_iter()
        .map(|d| Row {
            name: d.spec.name.to_string(),
            value: Some(d.value.value),
            source: d.value.source,
            read_only: false,
            kind: d.spec.kind,
            doc: d.spec.doc,
            synonyms: d
                .synonyms
                .into_iter()
                .map(|(n, v)| (n, v.value, v.source))
                .collect(),
        })
        .collect())
}

/// The broker's own settings under Kafka's names, with their values.
fn broker_rows(broker: &Broker, name: &str) -> Result<Vec<Row>, Refusal> {
    let c = &broker.config;
    if name.is_empty() {
        // The cluster-wide dynamic defaults set so far.
        let dynamic = broker.dynamic();
        return Ok(dynamic
            .cluster
            .iter()
            .filter_map(|(k, v)| topic_config::spec_of(k).map(|s| (s, v)))
            .map(|(spec, v)| Row {
                name: spec.synonym.to_string(),
                value: Some(v.clone()),
                source: Source::DynamicDefault,
                read_only: false,
                kind: spec.kind,
                doc: spec.doc,
                synonyms: vec![(spec.synonym.to_string(), v.clone(), Source::DynamicDefault)],
            })
            .collect());
    }
    if name != c.node_id.to_string() {
        return Err((
            error::INVALID_REQUEST,
            format!(
                "Unexpected broker id, expected {} but received {name}",
                c.node_id
            ),
        ));
    }
    let (host, port) = broker.advertised();
    let fixed = |n: &str, v: String, kind: Kind, doc: &'static str| Row {
        name: n.to_string(),
        value: Some(v),
        source: Source::Default,
        read_only: true,
        kind,
        doc,
        synonyms: Vec::new(),
    };
    let flag = |n: &str, field: &str, v: String, kind: Kind, doc: &'static str| {
        let source = if c.explicit.contains(field) {
            Source::Static
        } else {
            Source::Default
        };
        Row {
            synonyms: vec![(n.to_string(), v.clone(), source)],
            source,
            ..fixed(n, v, kind, doc)
        }
    };
    let mut rows = vec![
        flag(
            "broker.id",
            "node_id",
            c.node_id.to_string(),
            Kind::Int,
            "This broker's id (--node-id).",
        ),
        flag(
            "node.id",
            "node_id",
            c.node_id.to_string(),
            Kind::Int,
            "This broker's id (--node-id).",
        ),
        flag(
            "listeners",
            "listen",
            format!("PLAINTEXT://{}", c.listen),
            Kind::String,
            "Where clients connect (--listen).",
        ),
        flag(
            "advertised.listeners",
            "advertised_listener",
            format!("PLAINTEXT://{host}:{port}"),
            Kind::String,
            "What clients are told to connect to (--advertised-listener).",
        ),
        flag(
            "log.dirs",
            "data_dir",
            c.data_dir.display().to_string(),
            Kind::String,
            "The data directory (--data-dir).",
        ),
        flag(
            "log.dir",
            "data_dir",
            c.data_dir.display().to_string(),
            Kind::String,
            "The data directory (--data-dir).",
        ),
        flag(
            "num.partitions",
            "default_partitions",
            c.default_partitions.to_string(),
            Kind::Int,
            "Partitions of an auto-created topic (--default-partitions).",
        ),
        flag(
            "auto.create.topics.enable",
            "auto_create_topics",
            c.auto_create_topics.to_string(),
            Kind::Boolean,
            "Create topics named in Metadata (--auto-create-topics).",
        ),
        flag(
            "socket.request.max.bytes",
            "request_bytes_max",
            c.request_bytes_max.to_string(),
            Kind::Int,
            "Largest request (--request-bytes-max).",
        ),
        flag(
            "max.connections",
            "connections_max",
            c.connections_max.to_string(),
            Kind::Int,
            "Most connections (--connections-max).",
        ),
        flag(
            "max.connections.per.ip",
            "connections_max_per_ip",
            c.connections_max_per_ip.to_string(),
            Kind::Int,
            "Most connections from one address (--connections-max-per-ip).",
        ),
        flag(
            "connections.max.idle.ms",
            "idle_timeout_ms",
            c.idle_timeout_ms.to_string(),
            Kind::Long,
            "Idle connections close after this (--idle-timeout-ms).",
        ),
        flag(
            "fetch.max.bytes",
            "fetch_bytes_max",
            c.fetch_bytes_max.to_string(),
            Kind::Int,
            "Largest fetch response (--fetch-bytes-max).",
        ),
        flag(
            "log.retention.check.interval.ms",
            "retention_check_interval_ms",
            c.retention_check_interval_ms.to_string(),
            Kind::Long,
            "How often retention runs.",
        ),
        flag(
            "group.initial.rebalance.delay.ms",
            "group_initial_rebalance_delay_ms",
            c.group_initial_rebalance_delay_ms.to_string(),
            Kind::Int,
            "Wait for more members before a new group's first generation.",
        ),
        flag(
            "group.min.session.timeout.ms",
            "group_session_timeout_ms_min",
            c.group_session_timeout_ms_min.to_string(),
            Kind::Int,
            "Shortest session timeout allowed.",
        ),
        flag(
            "group.max.session.timeout.ms",
            "group_session_timeout_ms_max",
            c.group_session_timeout_ms_max.to_string(),
            Kind::Int,
            "Longest session timeout allowed.",
        ),
        flag(
            "group.max.size",
            "group_members_max",
            c.group_members_max.to_string(),
            Kind::Int,
            "Most members in a group.",
        ),
        flag(
            "offsets.retention.minutes",
            "offsets_retention_minutes",
            c.offsets_retention_minutes.to_string(),
            Kind::Int,
            "Committed offsets of an empty group expire after this.",
        ),
        flag(
            "offsets.retention.check.interval.ms",
            "offsets_retention_check_interval_ms",
            c.offsets_retention_check_interval_ms.to_string(),
            Kind::Long,
            "How often offset expiry runs.",
        ),
        flag(
            "offset.metadata.max.bytes",
            "offset_metadata_bytes_max",
            c.offset_metadata_bytes_max.to_string(),
            Kind::Int,
            "Longest offset commit metadata.",
        ),
        fixed(
            "default.replication.factor",
            "1".into(),
            Kind::Int,
            "A single-node broker keeps one replica.",
        ),
        fixed(
            "offsets.topic.replication.factor",
            "1".into(),
            Kind::Short,
            "A single-node broker keeps one replica.",
        ),
        fixed(
            "transaction.state.log.replication.factor",
            "1".into(),
            Kind::Short,
            "A single-node broker keeps one replica.",
        ),
        fixed(
            "delete.topic.enable",
            "true".into(),
            Kind::Boolean,
            "Topics can be deleted.",
        ),
    ];
    // The broker-level synonyms of every topic config.
    let defaults = broker.topic_defaults();
    for spec in topic_config::SPECS {
        if rows.iter().any(|r| r.name == spec.synonym) {
            continue;
        }
        if let Some(v) = defaults.get(spec.name) {
            rows.push(Row {
                name: spec.synonym.to_string(),
                value: Some(v.value.clone()),
                source: v.source,
                // Topic defaults can be changed at run time (dynamic broker configs).
                read_only: false,
                kind: spec.kind,
                doc: spec.doc,
                synonyms: defaults
                    .chain(spec.name)
                    .iter()
                    .map(|v| (spec.synonym.to_string(), v.value.clone(), v.source))
                    .collect(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// The authorization a config request needs, as Kafka: DESCRIBE_CONFIGS or
/// ALTER_CONFIGS on the topic, or on the cluster for broker resources.
fn refusal(
    broker: &Broker,
    ctx: &Ctx,
    resource_type: i8,
    name: &str,
    alter: bool,
) -> Option<Refusal> {
    let op = if alter {
        Operation::AlterConfigs
    } else {
        Operation::DescribeConfigs
    };
    match resource_type {
        TOPIC if !ctx.may(broker, op, ResourceType::Topic, name) => Some((
            error::TOPIC_AUTHORIZATION_FAILED,
            "Topic authorization failed.".into(),
        )),
        GROUP if !ctx.may(broker, op, ResourceType::Group, name) => Some((
            error::GROUP_AUTHORIZATION_FAILED,
            "Group authorization failed.".into(),
        )),
        BROKER | BROKER_LOGGER if !ctx.may_cluster(broker, op) => Some((
            error::CLUSTER_AUTHORIZATION_FAILED,
            "Cluster authorization failed.".into(),
        )),
        _ => None,
    }
}

/// DescribeConfigs v1-v4.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeConfigsRequest,
) -> ResponseFrame {
    let v = ctx.version;
    let mut resp = DescribeConfigsResponse::default();
    // Each resource is described once: a request repeating one cannot
    // multiply the response.
    let mut seen: HashSet<(i8, String)> = HashSet::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let first = seen.insert((res.resource_type, name.clone()));
        let refused = refusal(broker, ctx, res.resource_type, &name, false);
        let rows = match res.resource_type {
            _ if !first => Err((
                error::INVALID_REQUEST,
                format!("Duplicate resource {name} in the request"),
            )),
            _ if refused.is_some() => Err(refused.unwrap_or_default()),
            TOPIC => topic_rows(broker, &name),
            BROKER => broker_rows(broker, &name),
            GROUP => group_rows(broker, &name),
            BROKER_LOGGER => Err((
                error::INVALID_REQUEST,
                "describing broker loggers is not supported".to_string(),
            )),
            t => Err((error::INVALID_REQUEST, format!("unknown resource type {t}"))),
        };
        let mut result = DescribeConfigsResult::default();
        result.resource_type = res.resource_type;
        result.resource_name = res.resource_name;
        match rows {
            Ok(rows) => {
                // Null or empty: every config, as Kafka.
                let keys: Option<HashSet<String>> = res
                    .configuration_keys
                    .filter(|k| !k.is_empty())
                    .map(|k| k.iter().map(|s| s.to_string()).collect());
                for r in rows {
                    if keys.as_ref().is_some_and(|k| !k.contains(&r.name)) {
                        continue;
                    }
                    let mut c = DescribeConfigsResourceResult::default();
                    c.name = sb(r.name);
                    c.value = r.value.map(sb);
                    c.read_only = r.read_only;
                    c.is_sensitive = false;
                    c.config_source = r.source as i8;
                    if req.include_synonyms {
                        c.synonyms = r
                            .synonyms
                            .into_iter()
                            .map(|(n, val, s)| {
                                let mut syn = DescribeConfigsSynonym::default();
                                syn.name = sb(n);
                                syn.value = Some(sb(val));
                                syn.source = s as i8;
                                syn
                            })
                            .collect();
                    }
                    if v >= 3 {
                        c.config_type = r.kind as i8;
                        if req.include_documentation {
                            c.documentation = Some(sb(r.doc));
                        }
                    }
                    result.configs.push(c);
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(sb(message));
            }
        }
        resp.results.push(result);
    }
    ctx.respond(&resp)
}

/// Which dynamic scope a BROKER resource names: `Ok(true)` for this broker,
/// `Ok(false)` for the cluster-wide default ("").
fn broker_scope(broker: &Broker, name: &str) -> Result<bool, Refusal> {
    if name.is_empty() {
        return Ok(false);
    }
    if name == broker.config.node_id.to_string() {
        return Ok(true);
    }
    Err((
        error::INVALID_REQUEST,
        format!(
            "Unexpected broker id, expected {} but received {name}",
            broker.config.node_id
        ),
    ))
}

/// Broker config names (the topic-default synonyms, such as `log.retention.ms`)
/// and values to topic config names, checked. Other broker configs are static.
fn broker_values(values: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal> {
    let fixed: Vec<&String> = values
        .keys()
        .filter(|k| topic_config::spec_of_synonym(k).is_none())
        .collect();
    if !fixed.is_empty() {
        return Err((
            error::INVALID_REQUEST,
            format!(
                "Cannot update these configs dynamically: {:?} (they are set on the command line)",
                fixed
            ),
        ));
    }
    values
        .into_iter()
        .map(|(k, v)| {
            let spec = topic_config::spec_of_synonym(&k).expect("checked above");
            topic_config::check(spec.name, &v)
                .map(|v| (spec.name.to_string(), v))
                .map_err(|e| (error::INVALID_CONFIG, e.replace(spec.name, &k)))
        })
        .collect()
}

/// A refusal computed inside the broker's admin lock, carried as a `TopicError`.
fn as_topic_error((code, message): Refusal) -> TopicError {
    if code == error::INVALID_CONFIG {
        TopicError::InvalidConfig(message)
    } else {
        TopicError::InvalidRequest(message)
    }
}

/// Changes one scope of the dynamic broker configs with `change` (run under
/// the broker's admin lock on the current values, by topic config name).
async fn alter_broker(
    broker: &Broker,
    node: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>,
    validate_only: bool,
) -> Result<(), Refusal> {
    broker
        .alter_dynamic(
            node,
            |current| change(current).map_err(as_topic_error),
            validate_only,
        )
        .await
        .map_err(|e| (topic_error_code(&e), e.to_string()))
}

/// Checks every key and value of a topic's new overrides (INVALID_CONFIG).
fn checked(configs: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal> {
    configs
        .into_iter()
        .map(|(k, v)| {
            topic_config::check(&k, &v)
                .map(|v| (k, v))
                .map_err(|e| (error::INVALID_CONFIG, e))
        })
        .collect()
}

/// Changes a topic's overrides with `change` (run under the broker's admin
/// lock on the current overrides).
async fn alter_topic(
    broker: &Broker,
    name: &str,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>,
    validate_only: bool,
) -> Result<(), Refusal> {
    broker
        .alter_topic_configs(
            name,
            |current| change(current).map_err(as_topic_error),
            validate_only,
        )
        .await
        .map_err(|e| (topic_error_code(&e), e.to_string()))
}

/// Resources named more than once in one request: Kafka refuses them all.
fn duplicates<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> HashMap<(i8, String), usize> {
    let mut seen = HashMap::new();
    for (t, n) in resources {
        *seen.entry((t, n.to_string())).or_insert(0) += 1;
    }
    seen
}

/// AlterConfigs v0-v2: the given set replaces all of a topic's overrides.
pub(super) async fn alter(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: AlterConfigsRequest,
) -> ResponseFrame {
    let counts = duplicates(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome: Result<(), Refusal> = async {
            if counts[&(res.resource_type, name.clone())] > 1 {
                return Err((
                    error::INVALID_REQUEST,
                    format!("Duplicate resource {name} in the request"),
                ));
            }
            if let Some(r) = refusal(broker, ctx, res.resource_type, &name, true) {
                return Err(r);
            }
            let mut configs = BTreeMap::new();
            for c in &res.configs {
                let Some(v) = &c.value else {
                    return Err((
                        error::INVALID_REQUEST,
                        format!("Null value not supported for: {}", c.name.as_str()),
                    ));
                };
                if configs.insert(c.name.to_string(), v.to_string()).is_some() {
                    return Err((
                        error::INVALID_REQUEST,
                        "Error due to duplicate config keys".to_string(),
                    ));
                }
            }
            match res.resource_type {
                TOPIC => {
                    let configs = checked(configs)?;
                    alter_topic(broker, &name, |_| Ok(configs), req.validate_only).await
                }
                BROKER => {
                    let node = broker_scope(broker, &name)?;
                    let values = broker_values(configs)?;
                    alter_broker(broker, node, |_| Ok(values), req.validate_only).await
                }
                t => Err((
                    error::INVALID_REQUEST,
                    format!("unsupported resource type {t}"),
                )),
            }
        }
        .await;
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = Some(sb(message));
        }
        resp.responses.push(r);
    }
    ctx.respond(&resp)
}

/// Kafka's AlterConfigOp types.
const SET: i8 = 0;
/// Remove the override.
const DELETE: i8 = 1;
/// Add to a list.
const APPEND: i8 = 2;
/// Remove from a list.
const SUBTRACT: i8 = 3;

/// APPEND (items not there yet, in order) or SUBTRACT `value`'s comma-separated
/// items to or from the list `base`.
fn list_op(base: &str, op: i8, value: Option<&str>) -> String {
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut items = list(base);
    let change = list(value.unwrap_or(""));
    if op == APPEND {
        for c in change {
            if !items.contains(&c) {
                items.push(c);
            }
        }
    } else {
        items.retain(|i| !change.contains(i));
    }
    items.join(",")
}

/// Applies incremental operations to a topic's current overrides.
fn incremental(
    broker: &Broker,
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = current.clone();
    let defaults = broker.topic_defaults();
    for (name, op, value) in ops {
        let spec = topic_config::spec_of(name).ok_or((
            error::INVALID_CONFIG,
            format!("Unknown topic config name: {name}"),
        ))?;
        match *op {
            SET => {
                let v = value.clone().ok_or((
                    error::INVALID_REQUEST,
                    format!("Null value not supported for: {name}"),
                ))?;
                out.insert(name.clone(), v);
            }
            DELETE => {
                out.remove(name);
            }
            APPEND | SUBTRACT => {
                if spec.kind != Kind::List {
                    let what = if *op == APPEND { "append" } else { "subtract" };
                    return Err((
                        error::INVALID_CONFIG,
                        format!("Config value {what} is not allowed for config key: {name}"),
                    ));
                }
                let base = out
                    .get(name)
                    .cloned()
                    .or_else(|| defaults.get(name).map(|d| d.value.clone()))
                    .unwrap_or_default();
                out.insert(name.clone(), list_op(&base, *op, value.as_deref()));
            }
            other => {
                return Err((
                    error::INVALID_REQUEST,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(out)
}

/// Applies incremental operations to dynamic broker configs (by broker name).
fn incremental_broker(
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = current.clone();
    for (name, op, value) in ops {
        let spec = topic_config::spec_of_synonym(name).ok_or((
            error::INVALID_REQUEST,
            format!("Cannot update these configs dynamically: [{name:?}] (they are set on the command line)"),
        ))?;
        match *op {
            SET => {
                let v = value.clone().ok_or((
                    error::INVALID_REQUEST,
                    format!("Null value not supported for: {name}"),
                ))?;
                out.insert(name.clone(), v);
            }
            DELETE => {
                out.remove(name);
            }
            APPEND | SUBTRACT if spec.kind == Kind::List => {
                let base = out.get(name).cloned().unwrap_or_default();
                out.insert(name.clone(), list_op(&base, *op, value.as_deref()));
            }
            APPEND | SUBTRACT => {
                return Err((
                    error::INVALID_CONFIG,
                    format!(
                        "Config value append or subtract is not allowed for config key: {name}"
                    ),
                ))
            }
            other => {
                return Err((
                    error::INVALID_REQUEST,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(out)
}

/// IncrementalAlterConfigs v0-v1: SET, DELETE, APPEND and SUBTRACT on topic overrides.
pub(super) async fn incremental_alter(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: IncrementalAlterConfigsRequest,
) -> ResponseFrame {
    let counts = duplicates(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome: Result<(), Refusal> = async {
            if counts[&(res.resource_type, name.clone())] > 1 {
                return Err((
                    error::INVALID_REQUEST,
                    format!("Duplicate resource {name} in the request"),
                ));
            }
            if let Some(r) = refusal(broker, ctx, res.resource_type, &name, true) {
                return Err(r);
            }
            let ops: Vec<(String, i8, Option<String>)> = res
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.to_string()),
                    )
                })
                .collect();
            let mut keys: Vec<&String> = ops.iter().map(|(k, _, _)| k).collect();
            keys.sort();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err((
                    error::INVALID_REQUEST,
                    "Error due to duplicate config keys".to_string(),
                ));
            }
            match res.resource_type {
                TOPIC => {
                    let change = |current: &BTreeMap<String, String>| {
                        checked(incremental(broker, current, &ops)?)
                    };
                    alter_topic(broker, &name, change, req.validate_only).await
                }
                BROKER => {
                    let node = broker_scope(broker, &name)?;
                    let change = |current: &BTreeMap<String, String>| {
                        // Work in broker names, as the request does.
                        let current: BTreeMap<String, String> = current
                            .iter()
                            .filter_map(|(k, v)| {
                                topic_config::spec_of(k).map(|s| (s.synonym.to_string(), v.clone()))
                            })
                            .collect();
                        broker_values(incremental_broker(&current, &ops)?)
                    };
                    alter_broker(broker, node, change, req.validate_only).await
                }
                GROUP => {
                    if name.is_empty() {
                        return Err((error::INVALID_GROUP_ID, "group id is empty".into()));
                    }
                    let current = broker.groups.group_configs(&name);
                    let next = incremental_group(broker, &current, &ops)?;
                    if req.validate_only || next == current {
                        return Ok(());
                    }
                    match broker.groups.set_group_configs(&name, next).await {
                        Ok(()) => Ok(()),
                        Err(crate::group::GroupError::TooManyGroups) => Err((
                            error::INVALID_REQUEST,
                            "as many groups have configs as groups may exist (groups_max)".into(),
                        )),
                        Err(_) => Err((
                            error::KAFKA_STORAGE_ERROR,
                            "the group configs could not be written".into(),
                        )),
                    }
                }
                t => Err((
                    error::INVALID_REQUEST,
                    format!("unsupported resource type {t}"),
                )),
            }
        }
        .await;
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = Some(sb(message));
        }
        resp.responses.push(r);
    }
    ctx.respond(&resp)
}
