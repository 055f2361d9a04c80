//! DescribeUserScramCredentials v0 and AlterUserScramCredentials v0: the
//! SCRAM users of the broker, as Kafka's admin clients manage them. Clients
//! send a salt and the salted password, never the password; the broker keeps
//! only the derived keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::{sb, Ctx};
use crate::auth::acl::Operation;
use crate::auth::scram::{Credential, Mechanism, ITERATIONS_MAX, ITERATIONS_MIN};
use crate::broker::credentials::Change;
use crate::broker::Broker;
use crate::protocol::{error, ResponseFrame};

/// DescribeUserScramCredentials: every user (null or empty list) or the
/// ones named, with their mechanisms and iterations.
pub(super) fn describe(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: DescribeUserScramCredentialsRequest,
) -> ResponseFrame {
    if !ctx.may_cluster(broker, Operation::Describe) {
        // As Kafka: the request and each user it names say so.
        let mut resp = DescribeUserScramCredentialsResponse::default();
        resp.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        resp.error_message = Some(sb("Cluster authorization failed."));
        resp.results = req
            .users
            .unwrap_or_default()
            .into_iter()
            .map(|u| {
                let mut r = DescribeUserScramCredentialsResult::default();
                r.user = u.name;
                r.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
                r
            })
            .collect();
        return ctx.respond(&resp);
    }
    let all = broker.credentials.describe();
    let info = |mechs: &Vec<(Mechanism, i32)>| {
        mechs
            .iter()
            .map(|(m, i)| {
                let mut c = CredentialInfo::default();
                c.mechanism = m.id();
                c.iterations = *i;
                c
            })
            .collect()
    };
    let mut results = Vec::new();
    match req.users.filter(|u| !u.is_empty()) {
        None => {
            for (user, mechs) in &all {
                let mut r = DescribeUserScramCredentialsResult::default();
                r.user = sb(user.clone());
                r.credential_infos = info(mechs);
                results.push(r);
            }
        }
        Some(users) => {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for u in &users {
                *seen.entry(u.name.to_string()).or_default() += 1;
            }
            for (user, n) in seen {
                let mut r = DescribeUserScramCredentialsResult::default();
                r.user = sb(user.clone());
                if n > 1 {
                    r.error_code = error::DUPLICATE_RESOURCE;
                    r.error_message = Some(sb(format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}")));
                } else if let Some(mechs) = all.get(&user) {
                    r.credential_infos = info(mechs);
                } else {
                    r.error_code = error::RESOURCE_NOT_FOUND;
                    r.error_message = Some(sb(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )));
                }
                results.push(r);
            }
        }
    }
    let mut resp = DescribeUserScramCredentialsResponse::default();
    resp.results = results;
    ctx.respond(&resp)
}

/// Why one alteration is refused: Kafka's error code and message.
type Refusal = (i16, String);

/// AlterUserScramCredentials: deletions and upsertions, each user at most
/// once per request, checked as Kafka does, then applied together and made
/// durable before the answer.
pub(super) async fn alter(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: AlterUserScramCredentialsRequest,
) -> ResponseFrame {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for name in req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name))
    {
        *count.entry(name.to_string()).or_default() += 1;
    }
    // Per user: Ok(change) or the error to answer.
    let mut outcome: Vec<(String, Result<Change, Refusal>)> = Vec::new();
    // ALTER on the cluster, as Kafka: each user is refused otherwise.
    let allowed = ctx.may_cluster(broker, Operation::Alter);
    let check = |user: &str, mech: i8| -> Result<Mechanism, Refusal> {
        if !allowed {
            return Err((
                error::CLUSTER_AUTHORIZATION_FAILED,
                "Cluster authorization failed.".into(),
            ));
        }
        if user.is_empty() {
            return Err((
                error::UNACCEPTABLE_CREDENTIAL,
                "Username must not be empty".into(),
            ));
        }
        if count.get(user).copied().unwrap_or(0) > 1 {
            return Err((
                error::DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request".into(),
            ));
        }
        Mechanism::from_id(mech).ok_or_else(|| {
            (
                error::UNSUPPORTED_SASL_MECHANISM,
                "Unknown SCRAM mechanism".into(),
            )
        })
    };
    for d in &req.deletions {
        let user = d.name.to_string();
        let r = check(&user, d.mechanism).and_then(|mechanism| {
            if broker.credentials.has(&user, mechanism) {
                Ok(Change::Delete {
                    user: user.clone(),
                    mechanism,
                })
            } else {
                Err((
                    error::RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist".into(),
                ))
            }
        });
        outcome.push((user, r));
    }
    for u in &req.upsertions {
        let user = u.name.to_string();
        let r = check(&user, u.mechanism).and_then(|mechanism| {
            if u.iterations < ITERATIONS_MIN {
                return Err((error::UNACCEPTABLE_CREDENTIAL, "Too few iterations".into()));
            }
            if u.iterations > ITERATIONS_MAX {
                return Err((error::UNACCEPTABLE_CREDENTIAL, "Too many iterations".into()));
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((
                    error::UNACCEPTABLE_CREDENTIAL,
                    "Salt and salted password must not be empty".into(),
                ));
            }
            Ok(Change::Upsert {
                user: user.clone(),
                mechanism,
                credential: Credential::from_salted_password(
                    mechanism,
                    &u.salted_password,
                    &u.salt,
                    u.iterations,
                ),
            })
        });
        outcome.push((user, r));
    }
    let changes: Vec<Change> = outcome
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let written = if changes.is_empty() {
        Ok(())
    } else {
        let store = broker.credentials.clone();
        crate::clock::work::blocking(move || store.apply(&changes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    if let Err(e) = &written {
        tracing::error!(error = %e, "cannot store SCRAM credentials");
    }
    let mut resp = AlterUserScramCredentialsResponse::default();
    resp.results = outcome
        .into_iter()
        .map(|(user, r)| {
            let mut res = AlterUserScramCredentialsResult::default();
            res.user = sb(user);
            match (r, &written) {
                (Err((code, msg)), _) => {
                    res.error_code = code;
                    res.error_message = Some(sb(msg));
                }
                (Ok(_), Err(e)) => {
                    res.error_code = error::KAFKA_STORAGE_ERROR;
                    res.error_message = Some(sb(format!("cannot store the credential: {e}")));
                }
                (Ok(_), Ok(())) => {}
            }
            res
        })
        .collect();
    ctx.respond(&resp)
}
