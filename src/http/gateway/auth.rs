//! Who is calling: HTTP Basic checked against the SCRAM users (as SASL/PLAIN
//! checks them), or a bearer JWT validated as OAUTHBEARER's, per
//! `--http-auth`. The result is a Kafka principal (`User:name`) the ACLs judge.
//!
//! Checking a password runs PBKDF2 (thousands of HMACs): doing it on every
//! request would cost more than the request. A verified password is cached,
//! as a SHA-256 digest beside the credential it matched, for a few minutes;
//! a changed or removed credential no longer matches, so the entry is useless.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::RestError;
use crate::auth::oauth::OAuthValidator;
use crate::auth::scram::{Credential, Mechanism};
use crate::broker::Broker;
use crate::clock::now_ms;

/// How long a verified password is trusted without PBKDF2.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most cached logins; the cache is emptied when full (a flood of users only
/// costs them their PBKDF2 again).
const CACHE_MAX: usize = 4096;

/// The principal of unauthenticated callers (`--http-auth none`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A password that passed PBKDF2.
struct Verified {
    /// SHA-256 of the password.
    digest: [u8; 32],
    /// The stored key of the credential it matched.
    stored_key: Vec<u8>,
    /// When it was checked.
    at: Instant,
}

/// The gateway's authentication.
pub struct Authenticator {
    /// Accept HTTP Basic.
    basic: bool,
    /// Accept bearer tokens.
    bearer: bool,
    /// Validates bearer tokens.
    oauth: Option<Arc<OAuthValidator>>,
    /// Verified passwords by user.
    cache: Mutex<HashMap<String, Verified>>,
}

impl Authenticator {
    /// From `--http-auth` (`none`, `basic`, `bearer`, `basic,bearer`).
    pub fn new(modes: &str, oauth: Option<Arc<OAuthValidator>>) -> Authenticator {
        let has = |m| modes.split(',').any(|x| x.trim() == m);
        Authenticator {
            basic: has("basic"),
            bearer: has("bearer"),
            oauth,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether callers must authenticate.
    pub fn required(&self) -> bool {
        self.basic || self.bearer
    }

    /// The caller's principal, or 401.
    pub async fn principal(
        &self,
        broker: &Arc<Broker>,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Result<String, RestError> {
        if !self.required() {
            return Ok(ANONYMOUS.to_string());
        }
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(RestError::unauthenticated("Authentication required."));
        };
        let now = now_ms();
        if broker.auth_failures.blocked(peer, now) {
            return Err(RestError::unauthenticated(
                "Too many failed logins from this address; try again later.",
            ));
        }
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let result = if scheme.eq_ignore_ascii_case("basic") && self.basic {
            self.basic_login(broker, rest.trim()).await
        } else if scheme.eq_ignore_ascii_case("bearer") && self.bearer {
            match &self.oauth {
                Some(v) => v
                    .validate(rest.trim(), now)
                    .map(|t| format!("User:{}", t.principal)),
                None => Err("no token validator is configured".into()),
            }
        } else {
            Err(format!("the {scheme} scheme is not accepted"))
        };
        result.map_err(|why| {
            broker.auth_failures.record(peer, now);
            tracing::info!(peer = %peer, reason = %why, "HTTP authentication failed");
            RestError::unauthenticated("Authentication failed: Invalid username or password")
        })
    }

    /// Checks `user:password` (base64) against the SCRAM credentials.
    async fn basic_login(&self, broker: &Arc<Broker>, encoded: &str) -> Result<String, String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "a Basic header that is not base64".to_string())?;
        let text = String::from_utf8(raw).map_err(|_| "a Basic header that is not UTF-8")?;
        let (user, password) = text
            .split_once(':')
            .ok_or("a Basic header without a colon")?;
        if user.is_empty() {
            return Err("an empty user".into());
        }
        // The strongest credential the user has, as SASL/PLAIN.
        let Some((mech, cred)) = [Mechanism::Sha512, Mechanism::Sha256]
            .into_iter()
            .find_map(|m| broker.credentials.get(user, m).map(|c| (m, c)))
        else {
            return Err(format!("unknown user {user:?}"));
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        if self.cached(user, &digest, &cred) {
            return Ok(format!("User:{user}"));
        }
        let (pw, c) = (password.to_string(), cred.clone());
        let ok = tokio::task::spawn_blocking(move || c.matches_password(mech, &pw))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(format!("wrong password for user {user:?}"));
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            user.to_string(),
            Verified {
                digest,
                stored_key: cred.stored_key,
                at: Instant::now(),
            },
        );
        Ok(format!("User:{user}"))
    }

    /// Whether this password was verified recently against this very credential.
    fn cached(&self, user: &str, digest: &[u8; 32], cred: &Credential) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(user).is_some_and(|v| {
            v.at.elapsed() < CACHE_TTL && &v.digest == digest && v.stored_key == cred.stored_key
        })
    }
}
