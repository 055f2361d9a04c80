//! InitProducerId v0-v5: a fresh producer id (or a KIP-360 epoch bump) for
//! idempotent producers; for a transactional id, the transaction coordinator's
//! producer id and epoch (fencing older producers of the id).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::protocol::{error, ResponseFrame};

/// Hands out a fresh producer id, or bumps the epoch of a known one (KIP-360).
pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: &Ctx,
    req: InitProducerIdRequest,
) -> ResponseFrame {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = &req.transactional_id {
        if id.is_empty() {
            // As Kafka: null means idempotent; an empty id is an error.
            resp.error_code = error::INVALID_REQUEST;
            return ctx.respond(&resp);
        }
        if !ctx.may(broker, Operation::Write, ResourceType::TransactionalId, id) {
            resp.error_code = error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            return ctx.respond(&resp);
        }
        let expected = (ctx.version >= 3 && req.producer_id.0 >= 0 && req.producer_epoch >= 0)
            .then_some((req.producer_id.0, req.producer_epoch));
        match broker
            .txns
            .init_producer_id(id.as_str(), req.transaction_timeout_ms, expected)
            .await
        {
            Ok((pid, epoch)) => {
                resp.producer_id = ProducerId(pid);
                resp.producer_epoch = epoch;
            }
            Err(e) => {
                let fenced = if ctx.version >= 4 {
                    error::PRODUCER_FENCED
                } else {
                    error::INVALID_PRODUCER_EPOCH
                };
                resp.error_code = super::txn::coord_code(e, fenced);
            }
        }
        return ctx.respond(&resp);
    }
    // An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on
    // any topic (KIP-679), as Kafka.
    if !ctx.may_cluster(broker, Operation::IdempotentWrite)
        && !ctx.may_any(broker, Operation::Write, ResourceType::Topic)
    {
        resp.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        return ctx.respond(&resp);
    }
    let bump =
        req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1;
    if bump {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return ctx.respond(&resp);
    }
    match broker.next_producer_id().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot reserve producer ids");
            resp.error_code = error::KAFKA_STORAGE_ERROR;
        }
    }
    ctx.respond(&resp)
}
