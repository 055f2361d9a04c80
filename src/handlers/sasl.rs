//! SaslHandshake v0-v1 and SaslAuthenticate v0-v2 on a SASL listener: the
//! connection's [`SaslSession`] decides, this encodes Kafka's answers. On a
//! listener without SASL both answer ILLEGAL_SASL_STATE.

use std::net::IpAddr;
use std::sync::Arc;

use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

use super::{sb, Ctx};
use crate::auth::sasl::{AuthStep, SaslRefusal, SaslSession};
use crate::auth::scram::new_nonce;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::protocol::{error, Request, RequestFrame, ResponseFrame};

/// What the connection does after a SASL request.
#[derive(Debug)]
pub struct SaslAnswer {
    /// The response to send.
    pub response: ResponseFrame,
    /// Close the connection after sending it (a failed or refused
    /// authentication, as Kafka does).
    pub close: Option<String>,
    /// Authentication failed: Kafka delays the answer (100 ms) to slow
    /// password guessing.
    pub failed: bool,
}

/// ILLEGAL_SASL_STATE for a SASL request where none is expected.
pub(super) fn illegal_state(ctx: &Ctx, why: &str) -> ResponseFrame {
    if ctx.api_key == kafka_protocol::messages::ApiKey::SaslHandshake {
        let mut r = SaslHandshakeResponse::default();
        r.error_code = error::ILLEGAL_SASL_STATE;
        return ctx.respond(&r);
    }
    let mut r = SaslAuthenticateResponse::default();
    r.error_code = error::ILLEGAL_SASL_STATE;
    r.error_message = Some(sb(why));
    ctx.respond(&r)
}

/// Answers a SaslHandshake or SaslAuthenticate on a SASL listener, from a
/// client at `ip`.
pub fn handle(
    broker: &Arc<Broker>,
    session: &mut SaslSession,
    req: RequestFrame,
    ip: IpAddr,
) -> SaslAnswer {
    let ctx = Ctx::of(&req);
    let now = now_ms();
    let answer = |response, close: Option<String>| SaslAnswer {
        response,
        close,
        failed: false,
    };
    match req.body {
        Request::SaslHandshake(r) => {
            let mut resp = SaslHandshakeResponse::default();
            resp.mechanisms = session.enabled_names().into_iter().map(sb).collect();
            match session.handshake(r.mechanism.as_str(), req.api_version, now) {
                Ok(()) => answer(ctx.respond(&resp), None),
                Err(SaslRefusal::AlreadyAuthenticated(why)) => {
                    tracing::debug!("{why}");
                    resp.error_code = error::ILLEGAL_SASL_STATE;
                    resp.mechanisms.clear();
                    answer(ctx.respond(&resp), None)
                }
                Err(SaslRefusal::UnsupportedMechanism(why)) => {
                    resp.error_code = error::UNSUPPORTED_SASL_MECHANISM;
                    answer(ctx.respond(&resp), Some(why))
                }
                Err(SaslRefusal::IllegalState(why)) => {
                    resp.error_code = error::ILLEGAL_SASL_STATE;
                    answer(ctx.respond(&resp), Some(why))
                }
            }
        }
        Request::SaslAuthenticate(r) => {
            let mut resp = SaslAuthenticateResponse::default();
            let step = authenticate(broker, session, &r.auth_bytes, ip, now);
            match step {
                Ok(AuthStep::Challenge(c)) => {
                    resp.auth_bytes = c.into();
                    answer(ctx.respond(&resp), None)
                }
                Ok(AuthStep::Success { user, response }) => {
                    tracing::debug!(user, "authenticated");
                    resp.auth_bytes = response.into();
                    resp.session_lifetime_ms = session.session_lifetime_ms();
                    answer(ctx.respond(&resp), None)
                }
                Ok(AuthStep::Failure { message, reason }) => {
                    resp.error_code = error::SASL_AUTHENTICATION_FAILED;
                    resp.error_message = Some(sb(message));
                    SaslAnswer {
                        response: ctx.respond(&resp),
                        close: Some(format!("authentication failed: {reason}")),
                        failed: true,
                    }
                }
                Err(SaslRefusal::AlreadyAuthenticated(why)) => {
                    resp.error_code = error::ILLEGAL_SASL_STATE;
                    resp.error_message = Some(sb(why));
                    answer(ctx.respond(&resp), None)
                }
                Err(SaslRefusal::IllegalState(why) | SaslRefusal::UnsupportedMechanism(why)) => {
                    resp.error_code = error::ILLEGAL_SASL_STATE;
                    resp.error_message = Some(sb(why.clone()));
                    answer(ctx.respond(&resp), Some(why))
                }
            }
        }
        _ => answer(
            illegal_state(&ctx, "not a SASL request"),
            Some("not a SASL request".into()),
        ),
    }
}

/// One authentication token from a client at `ip`: refused unchecked while
/// the address has used up its failed authentications, and a failure counted
/// against it.
pub fn authenticate(
    broker: &Broker,
    session: &mut SaslSession,
    token: &[u8],
    ip: IpAddr,
    now: i64,
) -> Result<AuthStep, SaslRefusal> {
    let step = if session.expects_token() && broker.auth_failures.blocked(ip, now) {
        Ok(session.refuse_throttled())
    } else {
        session.authenticate(token, now, new_nonce, |user, mech| {
            broker.credentials.get(user, mech)
        })
    };
    if let Ok(AuthStep::Failure { .. }) = step {
        broker.auth_failures.record(ip, now);
    }
    step
}
