//! DescribeClientQuotas and AlterClientQuotas v0-v1: client quotas on users,
//! client ids, their defaults and combinations, as Kafka's `kafka-configs
//! --entity-type users/clients` manages them. The quotas served are
//! `producer_byte_rate` and `consumer_byte_rate`; other keys are refused.
//! Describing needs DESCRIBE_CONFIGS on the cluster, altering ALTER_CONFIGS.

use std::sync::Arc;

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlterEntityData, EntryData as AlterEntryData,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{sb, Ctx};
use crate::auth::acl::Operation;
use crate::broker::quotas::QuotaChange;
use crate::broker::Broker;
use crate::protocol::{error, ResponseFrame};
use crate::quota::{Entity, Part, QuotaKind};

/// Kafka's entity types for client quotas.
const USER: &str = "user";
/// The client-id entity type.
const CLIENT_ID: &str = "client-id";

/// An entity from (type, name-or-null-for-default) pairs.
fn entity_of<'a>(
    parts: impl Iterator<Item = (&'a str, Option<&'a StrBytes>)>,
) -> Result<Entity, String> {
    let mut e = Entity {
        user: Part::Absent,
        client_id: Part::Absent,
    };
    for (t, name) in parts {
        let part = match name {
            None => Part::Default,
            Some(n) => Part::Name(n.to_string()),
        };
        let slot = match t {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            "ip" => return Err("Connection-rate quotas on ip entities are not supported".into()),
            other => return Err(format!("Unknown entity type {other}")),
        };
        if *slot != Part::Absent {
            return Err(format!("Duplicate {t} entity type"));
        }
        *slot = part;
    }
    if e.user == Part::Absent && e.client_id == Part::Absent {
        return Err("Invalid empty client quota entity".into());
    }
    Ok(e)
}

/// The wire form of an entity: (type, name or null for the default).
fn entity_parts(e: &Entity) -> Vec<(&'static str, Option<String>)> {
    let mut v = Vec::new();
    for (t, p) in [(USER, &e.user), (CLIENT_ID, &e.client_id)] {
        match p {
            Part::Absent => {}
            Part::Default => v.push((t, None)),
            Part::Name(n) => v.push((t, Some(n.clone()))),
        }
    }
    v
}

/// DescribeClientQuotas: the entities whose parts match every component
/// (EXACT a name, DEFAULT the default, SPECIFIED any name); with `strict`,
/// entities with other parts are left out.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeClientQuotasRequest,
) -> ResponseFrame {
    let mut resp = DescribeClientQuotasResponse::default();
    resp.error_message = None;
    if !ctx.may_cluster(broker, Operation::DescribeConfigs) {
        resp.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        resp.error_message = Some(sb("Cluster authorization failed."));
        return ctx.respond(&resp);
    }
    let mut filters: Vec<(&str, i8, Option<String>)> = Vec::new();
    for c in &req.components {
        let t = c.entity_type.as_str();
        if t != USER && t != CLIENT_ID {
            resp.error_code = error::INVALID_REQUEST;
            resp.error_message = Some(sb(format!("Unknown entity type {t}")));
            return ctx.respond(&resp);
        }
        if !matches!(c.match_type, 0..=2) || filters.iter().any(|(ft, _, _)| *ft == t) {
            resp.error_code = error::INVALID_REQUEST;
            resp.error_message = Some(sb(format!("Invalid component for entity type {t}")));
            return ctx.respond(&resp);
        }
        filters.push((t, c.match_type, c._match.as_ref().map(|m| m.to_string())));
    }
    let part_of = |e: &Entity, t: &str| -> Part {
        if t == USER {
            e.user.clone()
        } else {
            e.client_id.clone()
        }
    };
    let mut entries = Vec::new();
    for (e, values) in broker.quotas.describe() {
        let matches = filters
            .iter()
            .all(|(t, m, name)| match (*m, part_of(&e, t)) {
                (0, Part::Name(n)) => name.as_deref() == Some(n.as_str()),
                (0, Part::Default) => name.is_none(),
                (1, Part::Default) => true,
                (2, Part::Name(_) | Part::Default) => true,
                _ => false,
            });
        let strict_ok = !req.strict
            || entity_parts(&e)
                .iter()
                .all(|(t, _)| filters.iter().any(|(ft, _, _)| ft == t));
        if !matches || !strict_ok {
            continue;
        }
        let mut entry = EntryData::default();
        entry.entity = entity_parts(&e)
            .into_iter()
            .map(|(t, n)| {
                let mut d = EntityData::default();
                d.entity_type = sb(t);
                d.entity_name = n.map(sb);
                d
            })
            .collect();
        entry.values = values
            .into_iter()
            .map(|(k, v)| {
                let mut d = ValueData::default();
                d.key = sb(k.key());
                d.value = v;
                d
            })
            .collect();
        entries.push(entry);
    }
    resp.entries = Some(entries);
    ctx.respond(&resp)
}

/// AlterClientQuotas: each entry validated on its own, the valid ones applied
/// together and made durable before the answer (unless `validate_only`).
pub(super) async fn alter(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: AlterClientQuotasRequest,
) -> ResponseFrame {
    let allowed = ctx.may_cluster(broker, Operation::AlterConfigs);
    let mut outcome: Vec<Result<Vec<QuotaChange>, (i16, String)>> = Vec::new();
    for entry in &req.entries {
        let r = (|| {
            if !allowed {
                return Err((
                    error::CLUSTER_AUTHORIZATION_FAILED,
                    "Cluster authorization failed.".to_string(),
                ));
            }
            let entity = entity_of(
                entry
                    .entity
                    .iter()
                    .map(|d| (d.entity_type.as_str(), d.entity_name.as_ref())),
            )
            .map_err(|m| (error::INVALID_REQUEST, m))?;
            let mut changes = Vec::new();
            for op in &entry.ops {
                let kind = QuotaKind::from_key(op.key.as_str()).ok_or_else(|| {
                    (
                        error::INVALID_REQUEST,
                        format!(
                            "{} is not a supported quota (producer_byte_rate, consumer_byte_rate, request_percentage)",
                            op.key.as_str()
                        ),
                    )
                })?;
                if changes.iter().any(|c: &QuotaChange| c.kind == kind) {
                    return Err((
                        error::INVALID_REQUEST,
                        format!("Duplicate quota key {}", kind.key()),
                    ));
                }
                // Byte rates are whole bytes per second (Kafka's LONG), a
                // request percentage any positive number (its DOUBLE).
                let whole = kind != QuotaKind::Request;
                let value = if op.remove {
                    None
                } else if op.value > 0.0
                    && op.value.is_finite()
                    && !(whole && op.value.fract() != 0.0)
                {
                    Some(op.value)
                } else if whole {
                    return Err((
                        error::INVALID_REQUEST,
                        format!(
                            "{} must be a positive whole number of bytes per second",
                            kind.key()
                        ),
                    ));
                } else {
                    return Err((
                        error::INVALID_REQUEST,
                        format!("{} must be a positive percentage", kind.key()),
                    ));
                };
                changes.push(QuotaChange {
                    entity: entity.clone(),
                    kind,
                    value,
                });
            }
            Ok(changes)
        })();
        outcome.push(r);
    }
    let changes: Vec<QuotaChange> = outcome
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let written = if changes.is_empty() || req.validate_only {
        Ok(())
    } else {
        let b = broker.clone();
        crate::clock::work::blocking(move || b.quotas.apply(&changes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    if let Err(e) = &written {
        tracing::error!(error = %e, "cannot store client quotas");
    }
    let mut resp = AlterClientQuotasResponse::default();
    resp.entries = req
        .entries
        .iter()
        .zip(outcome)
        .map(|(entry, r)| {
            let mut out = AlterEntryData::default();
            out.entity = entry
                .entity
                .iter()
                .map(|d| {
                    let mut e = AlterEntityData::default();
                    e.entity_type = d.entity_type.clone();
                    e.entity_name = d.entity_name.clone();
                    e
                })
                .collect();
            match (r, &written) {
                (Err((code, msg)), _) => {
                    out.error_code = code;
                    out.error_message = Some(sb(msg));
                }
                (Ok(_), Err(e)) => {
                    out.error_code = error::UNKNOWN_SERVER_ERROR;
                    out.error_message = Some(sb(format!("cannot store the quotas: {e}")));
                }
                // Kafka sends null, not an empty message, on success.
                (Ok(_), Ok(())) => out.error_message = None,
            }
            out
        })
        .collect();
    ctx.respond(&resp)
}
