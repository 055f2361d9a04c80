//! One connection's SASL authentication, as Kafka's server authenticator
//! runs it (KIP-43, KIP-152): a pure state machine the connection layer
//! drives with the SaslHandshake and SaslAuthenticate requests (or, after a
//! SaslHandshake v0, with raw tokens), the randomness and the credential
//! lookup injected.
//!
//! Mechanisms: PLAIN (checked against the SCRAM credentials: the password
//! must derive the stored key of the user's SCRAM-SHA-512 or SCRAM-SHA-256
//! credential) and SCRAM-SHA-256/512.

use super::scram::{Credential, Mechanism, ScramError, ScramServer};

/// A SASL mechanism this broker can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): user and password in one message.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(Mechanism),
}

impl SaslMechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    /// The mechanism of a SASL name (case-sensitive, as Kafka).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        if name == "PLAIN" {
            return Some(SaslMechanism::Plain);
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
    /// A request out of order (ILLEGAL_SASL_STATE), with Kafka's message.
    IllegalState(String),
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

/// Where a connection is in its authentication.
#[derive(Debug)]
enum Phase {
    /// Waiting for SaslHandshake.
    Handshake,
    /// A mechanism was chosen; waiting for tokens.
    Authenticating {
        /// The mechanism's exchange.
        exchange: Exchange,
        /// SaslHandshake v0: tokens come as raw frames, not SaslAuthenticate.
        legacy: bool,
    },
    /// Authenticated.
    Done {
        /// The user.
        user: String,
    },
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
}

/// One connection's SASL state.
#[derive(Debug)]
pub struct SaslSession {
    /// The mechanisms this listener enables, in the order they are listed.
    enabled: Vec<SaslMechanism>,
    /// Progress.
    phase: Phase,
}

impl SaslSession {
    /// A session on a listener enabling `enabled`.
    pub fn new(enabled: Vec<SaslMechanism>) -> SaslSession {
        SaslSession {
            enabled,
            phase: Phase::Handshake,
        }
    }

    /// The enabled mechanisms' names (SaslHandshake's answer).
    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|m| m.name()).collect()
    }

    /// The authenticated user, once authenticated.
    pub fn user(&self) -> Option<&str> {
        match &self.phase {
            Phase::Done { user } => Some(user),
            _ => None,
        }
    }

    /// Whether the next frame is a raw token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.phase, Phase::Authenticating { legacy: true, .. })
    }

    /// Whether a request of another API may be served now.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    /// SaslHandshake (`version` 0: the legacy framing follows).
    pub fn handshake(&mut self, mechanism: &str, version: i16) -> Result<(), SaslRefusal> {
        if !matches!(self.phase, Phase::Handshake) {
            return Err(SaslRefusal::IllegalState(
                "Unexpected SaslHandshake request".into(),
            ));
        }
        let Some(m) = SaslMechanism::from_name(mechanism).filter(|m| self.enabled.contains(m))
        else {
            return Err(SaslRefusal::UnsupportedMechanism(format!(
                "Unsupported SASL mechanism {mechanism}"
            )));
        };
        let exchange = match m {
            SaslMechanism::Plain => Exchange::Plain,
            SaslMechanism::Scram(s) => Exchange::Scram(ScramServer::new(s)),
        };
        self.phase = Phase::Authenticating {
            exchange,
            legacy: version == 0,
        };
        Ok(())
    }

    /// One authentication token (a SaslAuthenticate's bytes, or a raw frame
    /// after SaslHandshake v0). `nonce` makes SCRAM's server nonce; `lookup`
    /// finds a user's SCRAM credential.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        nonce: impl FnOnce() -> String,
        lookup: impl Fn(&str, Mechanism) -> Option<Credential>,
    ) -> Result<AuthStep, SaslRefusal> {
        let Phase::Authenticating { exchange, .. } = &mut self.phase else {
            return Err(SaslRefusal::IllegalState(
                "Unexpected SaslAuthenticate request".into(),
            ));
        };
        let step = match exchange {
            Exchange::Plain => plain(token, &lookup),
            Exchange::Scram(server) => scram(server, token, nonce, &lookup),
        };
        match &step {
            AuthStep::Success { user, .. } => self.phase = Phase::Done { user: user.clone() },
            AuthStep::Failure { .. } => self.phase = Phase::Failed,
            AuthStep::Challenge(_) => {}
        }
        Ok(step)
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
            let mut s = SaslSession::new(all());
            s.handshake("PLAIN", 1).unwrap();
            let step = s.authenticate(token, String::new, users).unwrap();
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
                        .authenticate(b"\0user\0pencil", String::new, users)
                        .is_err());
                }
                (w, step) => panic!("{token:?}: wanted {w:?}, got {step:?}"),
            }
        }
    }

    /// RFC 7677's exchange through the session, then the session is done.
    #[test]
    fn scram_sha_256_by_the_rfc() {
        let mut s = SaslSession::new(all());
        s.handshake("SCRAM-SHA-256", 1).unwrap();
        assert!(!s.expects_raw_token());
        let step = s
            .authenticate(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
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
        assert!(matches!(
            s.handshake("PLAIN", 1),
            Err(SaslRefusal::IllegalState(_))
        ));
    }

    #[test]
    fn handshake_rules() {
        let mut s = SaslSession::new(vec![SaslMechanism::Scram(Mechanism::Sha512)]);
        assert_eq!(s.enabled_names(), vec!["SCRAM-SHA-512"]);
        assert!(matches!(
            s.authenticate(b"x", String::new, users),
            Err(SaslRefusal::IllegalState(_))
        ));
        assert!(matches!(
            s.handshake("PLAIN", 1),
            Err(SaslRefusal::UnsupportedMechanism(_))
        ));
        assert!(matches!(
            s.handshake("GSSAPI", 1),
            Err(SaslRefusal::UnsupportedMechanism(_))
        ));
        s.handshake("SCRAM-SHA-512", 0).unwrap();
        assert!(s.expects_raw_token());
        let step = s
            .authenticate(b"n,,n=nobody,r=abc", || "n".into(), users)
            .unwrap();
        assert!(
            matches!(step, AuthStep::Failure { ref message, .. } if message.contains("invalid credentials with SASL mechanism SCRAM-SHA-512")),
            "{step:?}"
        );
    }
}
