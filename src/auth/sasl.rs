//! One connection's SASL authentication, as Kafka's server authenticator
//! runs it (KIP-43, KIP-152): a pure state machine the connection layer
//! drives with the SaslHandshake and SaslAuthenticate requests (or, after a
//! SaslHandshake v0, with raw tokens), the randomness and the credential
//! lookup injected.
//!
//! Mechanisms: PLAIN (checked against the SCRAM credentials: the password
//! must derive the stored key of the user's SCRAM-SHA-512 or SCRAM-SHA-256
//! credential) and SCRAM-SHA-256/512.
//!
//! Sessions (KIP-368): with `connections.max.reauth.ms` set, a session
//! expires that long after it was authenticated; the client re-authenticates
//! on the same connection (SaslHandshake, then SaslAuthenticate, at most once
//! a second), with the same mechanism and as the same user.

use std::sync::Arc;

use super::oauth::{parse_initial_response, OAuthValidator};
use super::scram::{Credential, Mechanism, ScramError, ScramServer};

/// A SASL mechanism this broker can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): user and password in one message.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(Mechanism),
    /// OAUTHBEARER (RFC 7628): a bearer token (JWT).
    OAuthBearer,
}

impl SaslMechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism of a SASL name (case-sensitive, as Kafka).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        if name == "PLAIN" {
            return Some(SaslMechanism::Plain);
        }
        if name == "OAUTHBEARER" {
            return Some(SaslMechanism::OAuthBearer);
        }
        Mechanism::from_name(name).map(SaslMechanism::Scram)
    }
}

/// Why a request is refused by the state machine; the connection layer
/// answers with the Kafka error named and, for `IllegalState`, closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslRefusal {
    /// SaslHandshake named a mechanism not enabled (UNSUPPORTED_SASL_MECHANISM);
    /// the answer lists the enabled ones.
    UnsupportedMechanism(String),
    /// A request out of order (ILLEGAL_SASL_STATE), with Kafka's message;
    /// the connection closes.
    IllegalState(String),
    /// A SASL request on an authenticated connection that does not begin a
    /// re-authentication (ILLEGAL_SASL_STATE); the connection stays open.
    AlreadyAuthenticated(String),
}

/// The outcome of one authentication token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// More to exchange: send this challenge.
    Challenge(Vec<u8>),
    /// Authenticated as `principal` (Kafka's `User:<name>`); send `response`.
    Success {
        /// The authenticated user.
        user: String,
        /// The last server message (SCRAM's server-final; empty for PLAIN).
        response: Vec<u8>,
    },
    /// Authentication failed (SASL_AUTHENTICATION_FAILED): `message` goes to
    /// the client; `reason` (never a secret) to the broker's log.
    Failure {
        /// What the client is told, in Kafka's words.
        message: String,
        /// Why, for the log.
        reason: String,
    },
}

/// An authenticated session.
#[derive(Debug, Clone)]
struct Session {
    /// The user.
    user: String,
    /// The mechanism it authenticated with; a re-authentication must use it.
    mechanism: SaslMechanism,
    /// When its SaslHandshake arrived: re-authentications are at least a
    /// second apart.
    began_ms: i64,
    /// When it expires, if sessions have a lifetime.
    expires_ms: Option<i64>,
    /// Its lifetime when it began (SaslAuthenticate's `session_lifetime_ms`).
    lifetime_ms: i64,
}

/// Where a connection is in its authentication.
#[derive(Debug)]
enum Phase {
    /// Waiting for SaslHandshake.
    Handshake,
    /// A mechanism was chosen; waiting for tokens.
    Authenticating {
        /// The mechanism's exchange.
        exchange: Exchange,
        /// The mechanism.
        mechanism: SaslMechanism,
        /// SaslHandshake v0: tokens come as raw frames, not SaslAuthenticate.
        legacy: bool,
        /// When the SaslHandshake arrived.
        began_ms: i64,
        /// The session being renewed, in a re-authentication.
        renewing: Option<Session>,
    },
    /// A re-authentication asked for another mechanism than the session's:
    /// the handshake is answered, the next token fails (as Kafka).
    ReauthBadMechanism {
        /// What the client asked for.
        wanted: SaslMechanism,
        /// What the session used.
        had: SaslMechanism,
    },
    /// Authenticated.
    Done(Session),
    /// Failed: nothing more is accepted.
    Failed,
}

/// The running exchange of a mechanism.
#[derive(Debug)]
enum Exchange {
    /// PLAIN: one message.
    Plain,
    /// SCRAM: two client messages.
    Scram(ScramServer),
    /// OAUTHBEARER: one message; a refused token is answered with an error
    /// challenge, then the client's control-A ends the exchange.
    OAuth {
        /// The error JSON sent and the reason, after a refused token.
        refused: Option<(String, String)>,
    },
}

/// One connection's SASL state.
#[derive(Debug)]
pub struct SaslSession {
    /// The mechanisms this listener enables, in the order they are listed.
    enabled: Vec<SaslMechanism>,
    /// Kafka's `connections.max.reauth.ms`: a session's lifetime; 0 = none.
    max_reauth_ms: i64,
    /// How OAUTHBEARER tokens are checked (when it is enabled).
    oauth: Option<Arc<OAuthValidator>>,
    /// Progress.
    phase: Phase,
}

/// Re-authentications closer together than this are refused (as Kafka).
const REAUTH_MIN_INTERVAL_MS: i64 = 1000;

impl SaslSession {
    /// A session on a listener enabling `enabled`, whose sessions last
    /// `max_reauth_ms` (0: until the connection closes).
    pub fn new(enabled: Vec<SaslMechanism>, max_reauth_ms: i64) -> SaslSession {
        SaslSession {
            enabled,
            max_reauth_ms: max_reauth_ms.max(0),
            oauth: None,
            phase: Phase::Handshake,
        }
    }

    /// With OAUTHBEARER tokens checked by `validator`.
    pub fn with_oauth(mut self, validator: Option<Arc<OAuthValidator>>) -> SaslSession {
        self.oauth = validator;
        self
    }

    /// The enabled mechanisms' names (SaslHandshake's answer).
    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|m| m.name()).collect()
    }

    /// The authenticated user, once authenticated.
    pub fn user(&self) -> Option<&str> {
        match &self.phase {
            Phase::Done(s) => Some(&s.user),
            _ => None,
        }
    }

    /// SaslAuthenticate's `session_lifetime_ms` once authenticated: how long
    /// until the client must re-authenticate (0: never).
    pub fn session_lifetime_ms(&self) -> i64 {
        match &self.phase {
            Phase::Done(s) => s.lifetime_ms,
            _ => 0,
        }
    }

    /// Whether the session has expired by `now_ms`: the connection then
    /// serves nothing but a re-authentication.
    pub fn expired(&self, now_ms: i64) -> bool {
        matches!(&self.phase, Phase::Done(Session { expires_ms: Some(e), .. }) if now_ms >= *e)
    }

    /// Whether a token is expected (after a SaslHandshake).
    pub fn expects_token(&self) -> bool {
        matches!(
            self.phase,
            Phase::Authenticating { .. } | Phase::ReauthBadMechanism { .. }
        )
    }

    /// Whether the next frame is a raw token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.phase, Phase::Authenticating { legacy: true, .. })
    }

    /// Whether a request of another API may be served now (not while
    /// re-authenticating).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    /// SaslHandshake (`version` 0: the legacy framing follows) at `now_ms`.
    /// On an authenticated connection it begins a re-authentication if the
    /// session has a lifetime and the last one began a second ago or more.
    pub fn handshake(
        &mut self,
        mechanism: &str,
        version: i16,
        now_ms: i64,
    ) -> Result<(), SaslRefusal> {
        let renewing = match &self.phase {
            Phase::Handshake => None,
            Phase::Done(s)
                if s.expires_ms.is_some() && now_ms - s.began_ms >= REAUTH_MIN_INTERVAL_MS =>
            {
                Some(s.clone())
            }
            Phase::Done(_) => {
                return Err(SaslRefusal::AlreadyAuthenticated(
                    "Unexpected SaslHandshake request after successful authentication".into(),
                ))
            }
            _ => {
                return Err(SaslRefusal::IllegalState(
                    "Unexpected SaslHandshake request".into(),
                ))
            }
        };
        let Some(m) = SaslMechanism::from_name(mechanism).filter(|m| self.enabled.contains(m))
        else {
            return Err(SaslRefusal::UnsupportedMechanism(format!(
                "Unsupported SASL mechanism {mechanism}"
            )));
        };
        if let Some(s) = renewing.as_ref().filter(|s| s.mechanism != m) {
            self.phase = Phase::ReauthBadMechanism {
                wanted: m,
                had: s.mechanism,
            };
            return Ok(());
        }
        let exchange = match m {
            SaslMechanism::Plain => Exchange::Plain,
            SaslMechanism::Scram(s) => Exchange::Scram(ScramServer::new(s)),
            SaslMechanism::OAuthBearer => Exchange::OAuth { refused: None },
        };
        self.phase = Phase::Authenticating {
            exchange,
            mechanism: m,
            legacy: version == 0,
            began_ms: now_ms,
            renewing,
        };
        Ok(())
    }

    /// One authentication token (a SaslAuthenticate's bytes, or a raw frame
    /// after SaslHandshake v0). `nonce` makes SCRAM's server nonce; `lookup`
    /// finds a user's SCRAM credential.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        now_ms: i64,
        nonce: impl FnOnce() -> String,
        lookup: impl Fn(&str, Mechanism) -> Option<Credential>,
    ) -> Result<AuthStep, SaslRefusal> {
        let (exchange, mechanism, began_ms, renewing) = match &mut self.phase {
            Phase::Authenticating {
                exchange,
                mechanism,
                began_ms,
                renewing,
                ..
            } => (exchange, *mechanism, *began_ms, renewing),
            Phase::ReauthBadMechanism { wanted, had } => {
                let step = AuthStep::Failure {
                    message: format!(
                        "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
                        wanted.name(),
                        had.name()
                    ),
                    reason: "re-authentication with another mechanism".into(),
                };
                self.phase = Phase::Failed;
                return Ok(step);
            }
            Phase::Done(_) => {
                return Err(SaslRefusal::AlreadyAuthenticated(
                    "SaslAuthenticate request received after successful authentication".into(),
                ))
            }
            _ => {
                return Err(SaslRefusal::IllegalState(
                    "Unexpected SaslAuthenticate request".into(),
                ))
            }
        };
        let mut token_expiry = None;
        let mut step = match exchange {
            Exchange::Plain => plain(token, &lookup),
            Exchange::Scram(server) => scram(server, token, nonce, &lookup),
            Exchange::OAuth { refused } => {
                let (step, expiry) = oauth(self.oauth.as_deref(), refused, token, now_ms);
                token_expiry = expiry;
                step
            }
        };
        if let (AuthStep::Success { user, .. }, Some(was)) = (&step, renewing.as_ref()) {
            if *user != was.user {
                step = AuthStep::Failure {
                    message: format!(
                        "Cannot change principals during re-authentication from User:{}: User:{}",
                        was.user, user
                    ),
                    reason: format!("re-authentication as {user:?} by {:?}", was.user),
                };
            }
        }
        match &step {
            AuthStep::Success { user, .. } => {
                // KIP-368: the session ends at the earlier of the broker's
                // maximum and the credential's own expiry (a token's exp).
                let expires_ms = match (
                    (self.max_reauth_ms > 0).then(|| now_ms.saturating_add(self.max_reauth_ms)),
                    token_expiry,
                ) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                self.phase = Phase::Done(Session {
                    user: user.clone(),
                    mechanism,
                    began_ms,
                    expires_ms,
                    lifetime_ms: expires_ms.map_or(0, |e| (e - now_ms).max(0)),
                })
            }
            AuthStep::Failure { .. } => self.phase = Phase::Failed,
            AuthStep::Challenge(_) => {}
        }
        Ok(step)
    }

    /// Fails the exchange without looking at the token: the client's address
    /// has used up its failed authentications for now.
    pub fn refuse_throttled(&mut self) -> AuthStep {
        self.phase = Phase::Failed;
        AuthStep::Failure {
            message: "Authentication failed: too many failed authentications from this address; try again later".into(),
            reason: "too many failed authentications from this address".into(),
        }
    }
}

/// One OAUTHBEARER message: the initial response (a token to check), or the
/// control-A that ends an exchange whose token was refused. With the step,
/// the accepted token's expiry (ms).
fn oauth(
    validator: Option<&OAuthValidator>,
    refused: &mut Option<(String, String)>,
    token: &[u8],
    now_ms: i64,
) -> (AuthStep, Option<i64>) {
    if let Some((json, reason)) = refused.take() {
        let message = if token == [1] {
            json
        } else {
            "Authentication failed: expected control-A after the error challenge".into()
        };
        return (AuthStep::Failure { message, reason }, None);
    }
    let Some(validator) = validator else {
        let step = AuthStep::Failure {
            message: "OAUTHBEARER is not configured on this listener".into(),
            reason: "no OAUTHBEARER validator".into(),
        };
        return (step, None);
    };
    let checked = parse_initial_response(token).and_then(|(authzid, jwt)| {
        let t = validator.validate(&jwt, now_ms)?;
        match authzid {
            Some(a) if a != t.principal => Err(format!(
                "the authorization id {a:?} is not the token's principal"
            )),
            _ => Ok(t),
        }
    });
    match checked {
        Ok(t) => (
            AuthStep::Success {
                user: t.principal,
                response: Vec::new(),
            },
            Some(t.expires_ms),
        ),
        Err(reason) => {
            // RFC 7628: the error goes out as a challenge; the client answers
            // control-A and the exchange then fails with it.
            let json = r#"{"status":"invalid_token"}"#.to_string();
            *refused = Some((json.clone(), format!("OAUTHBEARER token refused: {reason}")));
            (AuthStep::Challenge(json.into_bytes()), None)
        }
    }
}

/// PLAIN's message: `[authzid] NUL authcid NUL password`.
fn plain(token: &[u8], lookup: &dyn Fn(&str, Mechanism) -> Option<Credential>) -> AuthStep {
    let fail = |reason: String| AuthStep::Failure {
        message: "Authentication failed: Invalid username or password".into(),
        reason,
    };
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    let [authzid, user, password] = parts[..] else {
        return AuthStep::Failure {
            message: "Invalid SASL/PLAIN response: expected 3 tokens".into(),
            reason: format!("a PLAIN message of {} parts", parts.len()),
        };
    };
    let (Ok(authzid), Ok(user), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(user),
        std::str::from_utf8(password),
    ) else {
        return fail("a PLAIN message that is not UTF-8".into());
    };
    if user.is_empty() {
        return AuthStep::Failure {
            message: "Authentication failed: username not specified".into(),
            reason: "an empty PLAIN user".into(),
        };
    }
    if !authzid.is_empty() && authzid != user {
        return AuthStep::Failure {
            message: "Authentication failed: Client requested an authorization id that is different from username".into(),
            reason: format!("PLAIN user {user:?} asked to act as another"),
        };
    }
    // The strongest credential the user has.
    let ok = [Mechanism::Sha512, Mechanism::Sha256]
        .into_iter()
        .find_map(|m| lookup(user, m).map(|c| c.matches_password(m, password)));
    match ok {
        Some(true) => AuthStep::Success {
            user: user.to_string(),
            response: Vec::new(),
        },
        Some(false) => fail(format!("wrong password for PLAIN user {user:?}")),
        None => fail(format!("unknown PLAIN user {user:?}")),
    }
}

/// One SCRAM message.
fn scram(
    server: &mut ScramServer,
    token: &[u8],
    nonce: impl FnOnce() -> String,
    lookup: &dyn Fn(&str, Mechanism) -> Option<Credential>,
) -> AuthStep {
    let mech = server.mechanism();
    let fail = |e: ScramError| {
        AuthStep::Failure {
        message: match e {
            ScramError::UnknownUser(_) | ScramError::BadProof(_) => format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                mech.name()
            ),
            ref other => format!("Authentication failed: {other}"),
        },
        reason: e.to_string(),
    }
    };
    if server.awaits_first() {
        return match server.client_first(token, &nonce(), |u| lookup(u, mech)) {
            Ok(msg) => AuthStep::Challenge(msg),
            Err(e) => fail(e),
        };
    }
    match server.client_final(token) {
        Ok((user, response)) => AuthStep::Success { user, response },
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

    fn all() -> Vec<SaslMechanism> {
        vec![
            SaslMechanism::Plain,
            SaslMechanism::Scram(Mechanism::Sha256),
            SaslMechanism::Scram(Mechanism::Sha512),
        ]
    }

    fn users(user: &str, mech: Mechanism) -> Option<Credential> {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        (user == "user").then(|| Credential::from_password(mech, "pencil", &salt, 4096))
    }

    #[test]
    fn plain_by_table() {
        let table: [(&[u8], Result<&str, &str>); 6] = [
            (b"\0user\0pencil", Ok("user")),
            (b"user\0user\0pencil", Ok("user")),
            (b"\0user\0pen", Err("Invalid username or password")),
            (b"\0nobody\0pencil", Err("Invalid username or password")),
            (b"other\0user\0pencil", Err("authorization id")),
            (b"user\0pencil", Err("expected 3 tokens")),
        ];
        for (token, want) in table {
            let mut s = SaslSession::new(all(), 0);
            s.handshake("PLAIN", 1, 0).unwrap();
            let step = s.authenticate(token, 0, String::new, users).unwrap();
            match (want, step) {
                (Ok(u), AuthStep::Success { user, .. }) => {
                    assert_eq!(user, u);
                    assert_eq!(s.user(), Some(u));
                }
                (Err(m), AuthStep::Failure { message, .. }) => {
                    assert!(message.contains(m), "{token:?}: {message}");
                    assert!(!s.is_authenticated());
                    // Nothing more after a failure.
                    assert!(s
                        .authenticate(b"\0user\0pencil", 0, String::new, users)
                        .is_err());
                }
                (w, step) => panic!("{token:?}: wanted {w:?}, got {step:?}"),
            }
        }
    }

    /// RFC 7677's exchange through the session, then the session is done.
    #[test]
    fn scram_sha_256_by_the_rfc() {
        let mut s = SaslSession::new(all(), 0);
        s.handshake("SCRAM-SHA-256", 1, 0).unwrap();
        assert!(!s.expects_raw_token());
        let step = s
            .authenticate(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                0,
                || "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
                users,
            )
            .unwrap();
        assert!(
            matches!(step, AuthStep::Challenge(ref c) if c.starts_with(b"r=rOprNGfwEbeRWgbNEkqO%hvY"))
        );
        let step = s
            .authenticate(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                0,
                || unreachable!(),
                users,
            )
            .unwrap();
        assert_eq!(
            step,
            AuthStep::Success {
                user: "user".into(),
                response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
        assert!(s.is_authenticated());
        assert_eq!(s.session_lifetime_ms(), 0);
        assert!(!s.expired(i64::MAX));
        // Without a session lifetime there is no re-authentication.
        assert!(matches!(
            s.handshake("PLAIN", 1, 5000),
            Err(SaslRefusal::AlreadyAuthenticated(_))
        ));
    }

    /// Logs `user` in with PLAIN at `now`.
    fn plain_login(s: &mut SaslSession, user: &str, now: i64) -> AuthStep {
        s.handshake("PLAIN", 1, now).unwrap();
        let token = format!("\0{user}\0pencil");
        s.authenticate(token.as_bytes(), now, String::new, |u, m| {
            users(if u == "other" { "user" } else { u }, m)
        })
        .unwrap()
    }

    #[test]
    fn sessions_expire_and_renew_as_kip_368() {
        let mut s = SaslSession::new(all(), 10_000);
        assert!(matches!(
            plain_login(&mut s, "user", 0),
            AuthStep::Success { .. }
        ));
        assert_eq!(s.session_lifetime_ms(), 10_000);
        assert!(!s.expired(9_999));
        assert!(s.expired(10_000));
        // Too soon after the last (re)authentication: refused, connection kept.
        assert!(matches!(
            s.handshake("PLAIN", 1, 500),
            Err(SaslRefusal::AlreadyAuthenticated(_))
        ));
        assert!(matches!(
            s.authenticate(b"", 500, String::new, users),
            Err(SaslRefusal::AlreadyAuthenticated(_))
        ));
        // Renewed as the same user: a new lifetime from now.
        assert!(matches!(
            plain_login(&mut s, "user", 9_000),
            AuthStep::Success { .. }
        ));
        assert!(!s.expired(18_999));
        assert!(s.expired(19_000));
        // While renewing, other requests are not served.
        s.handshake("PLAIN", 1, 12_000).unwrap();
        assert!(!s.is_authenticated());
    }

    #[test]
    fn a_renewal_cannot_change_user_or_mechanism() {
        let mut s = SaslSession::new(all(), 10_000);
        plain_login(&mut s, "user", 0);
        match plain_login(&mut s, "other", 2_000) {
            AuthStep::Failure { message, .. } => {
                assert!(message.contains("Cannot change principals"), "{message}")
            }
            step => panic!("{step:?}"),
        }
        assert!(!s.is_authenticated());

        let mut s = SaslSession::new(all(), 10_000);
        plain_login(&mut s, "user", 0);
        s.handshake("SCRAM-SHA-256", 1, 2_000).unwrap();
        match s.authenticate(b"n,,n=user,r=x", 2_000, || "y".into(), users) {
            Ok(AuthStep::Failure { message, .. }) => {
                assert!(
                    message.contains("not supported for re-authentication"),
                    "{message}"
                )
            }
            step => panic!("{step:?}"),
        }
    }

    #[test]
    fn a_throttled_address_fails_without_a_check() {
        let mut s = SaslSession::new(all(), 0);
        s.handshake("PLAIN", 1, 0).unwrap();
        assert!(matches!(s.refuse_throttled(), AuthStep::Failure { .. }));
        assert!(s
            .authenticate(b"\0user\0pencil", 0, String::new, users)
            .is_err());
    }

    #[test]
    fn handshake_rules() {
        let mut s = SaslSession::new(vec![SaslMechanism::Scram(Mechanism::Sha512)], 0);
        assert_eq!(s.enabled_names(), vec!["SCRAM-SHA-512"]);
        assert!(matches!(
            s.authenticate(b"x", 0, String::new, users),
            Err(SaslRefusal::IllegalState(_))
        ));
        assert!(matches!(
            s.handshake("PLAIN", 1, 0),
            Err(SaslRefusal::UnsupportedMechanism(_))
        ));
        assert!(matches!(
            s.handshake("GSSAPI", 1, 0),
            Err(SaslRefusal::UnsupportedMechanism(_))
        ));
        s.handshake("SCRAM-SHA-512", 0, 0).unwrap();
        assert!(s.expects_raw_token());
        let step = s
            .authenticate(b"n,,n=nobody,r=abc", 0, || "n".into(), users)
            .unwrap();
        assert!(
            matches!(step, AuthStep::Failure { ref message, .. } if message.contains("invalid credentials with SASL mechanism SCRAM-SHA-512")),
            "{step:?}"
        );
    }
}
