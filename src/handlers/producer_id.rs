//! InitProducerId v0-v5 for idempotent producers. Transactional ids are refused
//! until the transaction coordinator exists.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;
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
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        resp.error_code = error::UNSUPPORTED_VERSION;
        tracing::info!(
            "refusing InitProducerId with a transactional id: transactions are not supported yet"
        );
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
