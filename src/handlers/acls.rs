//! CreateAcls, DescribeAcls and DeleteAcls v1-v3: the authorizer's bindings,
//! as Kafka's admin clients manage them. With the authorizer off
//! (`--authorizer none`) they answer SECURITY_DISABLED, as Kafka without an
//! `authorizer.class.name`. Creating and deleting need ALTER on the cluster,
//! describing DESCRIBE.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{sb, Ctx};
use crate::auth::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::broker::Broker;
use crate::protocol::{error, ResponseFrame};

/// The message of SECURITY_DISABLED (Kafka's, for DescribeAcls).
const DISABLED: &str = "No Authorizer is configured on the broker";
/// Kafka's message of SECURITY_DISABLED for CreateAcls and DeleteAcls.
const DISABLED_CHANGE: &str = "No Authorizer is configured.";

/// A filter from its wire fields, or Kafka's reason it is invalid.
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let resource_type = ResourceType::from_code(resource_type)
        .ok_or_else(|| format!("Invalid resource type filter {resource_type}"))?;
    let pattern = PatternType::from_code(pattern)
        .ok_or_else(|| format!("Invalid pattern type filter {pattern}"))?;
    let operation = Operation::from_code(operation)
        .ok_or_else(|| format!("Invalid operation filter {operation}"))?;
    let permission = Permission::from_code(permission)
        .ok_or_else(|| format!("Invalid permission type filter {permission}"))?;
    Ok(AclFilter {
        resource_type,
        name: name.map(|n| n.to_string()),
        pattern,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation,
        permission,
    })
}

/// CreateAcls: each creation validated on its own; the valid ones stored in
/// one write.
pub(super) async fn create(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: CreateAclsRequest,
) -> ResponseFrame {
    let mut resp = CreateAclsResponse::default();
    let refuse = |code: i16, msg: &str| {
        let mut r = AclCreationResult::default();
        r.error_code = code;
        r.error_message = Some(sb(msg.to_string()));
        r
    };
    if !broker.acls.enabled() {
        resp.results = req
            .creations
            .iter()
            .map(|_| refuse(error::SECURITY_DISABLED, DISABLED_CHANGE))
            .collect();
        return ctx.respond(&resp);
    }
    if !ctx.may_cluster(broker, Operation::Alter) {
        resp.results = req
            .creations
            .iter()
            .map(|_| {
                refuse(
                    error::CLUSTER_AUTHORIZATION_FAILED,
                    "Cluster authorization failed.",
                )
            })
            .collect();
        return ctx.respond(&resp);
    }
    let outcome: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            let pattern = PatternType::from_code(c.resource_pattern_type)
                .ok_or_else(|| format!("Invalid pattern type {}", c.resource_pattern_type))?;
            let b = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or_else(|| format!("Invalid resource type {}", c.resource_type))?,
                name: c.resource_name.to_string(),
                pattern,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: Operation::from_code(c.operation)
                    .ok_or_else(|| format!("Invalid operation {}", c.operation))?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or_else(|| format!("Invalid permission type {}", c.permission_type))?,
            };
            b.validate().map_err(|e| e.0)?;
            Ok(b)
        })
        .collect();
    // As Kafka: a binding naming ANY (or MATCH) cannot even be built, and the
    // whole request fails with UNKNOWN_SERVER_ERROR.
    let any = req.creations.iter().any(|c| {
        c.resource_type == ResourceType::Any as i8
            || c.resource_pattern_type == PatternType::Any as i8
            || c.resource_pattern_type == PatternType::Match as i8
            || c.operation == Operation::Any as i8
            || c.permission_type == Permission::Any as i8
    });
    if any {
        resp.results = req
            .creations
            .iter()
            .map(|_| {
                let mut r = AclCreationResult::default();
                r.error_code = error::UNKNOWN_SERVER_ERROR;
                r
            })
            .collect();
        return ctx.respond(&resp);
    }
    let valid: Vec<AclBinding> = outcome.iter().filter_map(|r| r.clone().ok()).collect();
    let written = if valid.is_empty() {
        Ok(())
    } else {
        let b = broker.clone();
        crate::clock::work::blocking(move || b.acls.create(&valid))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    if let Err(e) = &written {
        tracing::error!(error = %e, "cannot store ACLs");
    }
    resp.results = outcome
        .into_iter()
        .map(|r| match (r, &written) {
            (Err(msg), _) => refuse(error::INVALID_REQUEST, &msg),
            (Ok(_), Err(e)) => refuse(
                error::UNKNOWN_SERVER_ERROR,
                &format!("cannot store the ACL: {e}"),
            ),
            (Ok(_), Ok(())) => {
                // Kafka sends null, not an empty message, on success.
                let mut r = AclCreationResult::default();
                r.error_message = None;
                r
            }
        })
        .collect();
    ctx.respond(&resp)
}

/// DescribeAcls: the bindings one filter matches, grouped by resource pattern.
pub(super) fn describe(broker: &Arc<Broker>, ctx: &Ctx, req: DescribeAclsRequest) -> ResponseFrame {
    let mut resp = DescribeAclsResponse::default();
    resp.error_message = None;
    if !broker.acls.enabled() {
        resp.error_code = error::SECURITY_DISABLED;
        resp.error_message = Some(sb(DISABLED.to_string()));
        return ctx.respond(&resp);
    }
    if !ctx.may_cluster(broker, Operation::Describe) {
        resp.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        resp.error_message = Some(sb("Cluster authorization failed.".to_string()));
        return ctx.respond(&resp);
    }
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        // As Kafka: a filter with a code it does not know matches nothing.
        Err(msg) => {
            tracing::debug!("DescribeAcls filter matches nothing: {msg}");
            return ctx.respond(&resp);
        }
    };
    let mut grouped: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in broker.acls.current().bindings() {
        if !f.matches(&b) {
            continue;
        }
        let mut d = AclDescription::default();
        d.principal = sb(b.principal.clone());
        d.host = sb(b.host.clone());
        d.operation = b.operation as i8;
        d.permission_type = b.permission as i8;
        grouped
            .entry((b.resource_type as i8, b.name.clone(), b.pattern as i8))
            .or_default()
            .push(d);
    }
    resp.resources = grouped
        .into_iter()
        .map(|((t, name, pattern), acls)| {
            let mut r = DescribeAclsResource::default();
            r.resource_type = t;
            r.resource_name = sb(name);
            r.pattern_type = pattern;
            r.acls = acls;
            r
        })
        .collect();
    ctx.respond(&resp)
}

/// DeleteAcls: per filter, the bindings it removed.
pub(super) async fn delete(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DeleteAclsRequest,
) -> ResponseFrame {
    let mut resp = DeleteAclsResponse::default();
    let refuse = |code: i16, msg: String| {
        let mut r = DeleteAclsFilterResult::default();
        r.error_code = code;
        r.error_message = Some(sb(msg));
        r
    };
    if !broker.acls.enabled() {
        resp.filter_results = req
            .filters
            .iter()
            .map(|_| refuse(error::SECURITY_DISABLED, DISABLED_CHANGE.to_string()))
            .collect();
        return ctx.respond(&resp);
    }
    if !ctx.may_cluster(broker, Operation::Alter) {
        resp.filter_results = req
            .filters
            .iter()
            .map(|_| {
                refuse(
                    error::CLUSTER_AUTHORIZATION_FAILED,
                    "Cluster authorization failed.".into(),
                )
            })
            .collect();
        return ctx.respond(&resp);
    }
    let parsed: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|r| r.clone().ok()).collect();
    let removed = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        let b = broker.clone();
        crate::clock::work::blocking(move || b.acls.delete(&valid))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    if let Err(e) = &removed {
        tracing::error!(error = %e, "cannot store ACLs");
    }
    let mut removed_each = match &removed {
        Ok(v) => v.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    resp.filter_results = parsed
        .into_iter()
        .map(|p| match (p, &removed) {
            (Err(msg), _) => refuse(error::INVALID_REQUEST, msg),
            (Ok(_), Err(e)) => refuse(
                error::UNKNOWN_SERVER_ERROR,
                format!("cannot store the ACLs: {e}"),
            ),
            (Ok(_), Ok(_)) => {
                let mut r = DeleteAclsFilterResult::default();
                r.error_message = None;
                r.matching_acls = removed_each
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        let mut m = DeleteAclsMatchingAcl::default();
                        m.error_message = None;
                        m.resource_type = b.resource_type as i8;
                        m.resource_name = sb(b.name);
                        m.pattern_type = b.pattern as i8;
                        m.principal = sb(b.principal);
                        m.host = sb(b.host);
                        m.operation = b.operation as i8;
                        m.permission_type = b.permission as i8;
                        m
                    })
                    .collect();
                r
            }
        })
        .collect();
    ctx.respond(&resp)
}
