//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them:
//! salted credentials (never the password), and the server side of the
//! four-message exchange as a small state machine with the server nonce
//! injected, so it is tested against the RFC's vectors.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// A SCRAM mechanism, with Kafka's ids (AlterUserScramCredentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-256 (id 1).
    Sha256,
    /// SCRAM-SHA-512 (id 2).
    Sha512,
}

/// Fewest iterations Kafka accepts for a SCRAM credential.
pub const ITERATIONS_MIN: i32 = 4096;
/// Most iterations Kafka accepts (bounds the work one authentication costs).
pub const ITERATIONS_MAX: i32 = 16384;

impl Mechanism {
    /// Both mechanisms.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's id (ScramMechanism).
    pub fn id(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// The mechanism of a Kafka id.
    pub fn from_id(id: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.id() == id)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Mechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
            Mechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Mechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the broker keeps of a SCRAM user (RFC 5802 section 3): enough to
/// check a proof, not enough to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user's salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: i32,
}

impl Credential {
    /// The credential of a salted password (what AlterUserScramCredentials
    /// carries: clients never send the password itself).
    pub fn from_salted_password(
        mech: Mechanism,
        salted: &[u8],
        salt: &[u8],
        iterations: i32,
    ) -> Credential {
        let client_key = mech.hmac(salted, b"Client Key");
        Credential {
            salt: salt.to_vec(),
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// The credential of a password (tools, and PLAIN's check).
    pub fn from_password(
        mech: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: i32,
    ) -> Credential {
        let salted = mech.salted_password(password.as_bytes(), salt, iterations.max(1) as u32);
        Credential::from_salted_password(mech, &salted, salt, iterations)
    }

    /// Whether `password` is this credential's (SASL/PLAIN against the SCRAM
    /// store): constant-time comparison of the stored keys.
    pub fn matches_password(&self, mech: Mechanism, password: &str) -> bool {
        let other = Credential::from_password(mech, password, &self.salt, self.iterations);
        constant_time_eq(&other.stored_key, &self.stored_key)
    }
}

/// Equal slices, compared without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a SCRAM exchange failed. The client is told only that authentication
/// failed; the reason is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar.
    Malformed(&'static str),
    /// Channel binding or an authorization id for another user was asked.
    Unsupported(&'static str),
    /// No credential for this user and mechanism.
    UnknownUser(String),
    /// The client's proof is wrong (wrong password).
    BadProof(String),
    /// A message came after the exchange ended.
    Finished,
}

impl std::fmt::Display for ScramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramError::Malformed(why) => write!(f, "malformed SCRAM message: {why}"),
            ScramError::Unsupported(why) => write!(f, "unsupported SCRAM option: {why}"),
            ScramError::UnknownUser(u) => write!(f, "unknown user {u:?}"),
            ScramError::BadProof(u) => write!(f, "invalid credentials for user {u:?}"),
            ScramError::Finished => write!(f, "the SCRAM exchange is already complete"),
        }
    }
}

/// Where the server is in one exchange.
#[derive(Debug)]
enum Stage {
    /// Waiting for client-first-message.
    First,
    /// Sent server-first-message; waiting for client-final-message.
    Final {
        /// The authenticated-to-be user.
        user: String,
        /// client-first-message-bare, for the AuthMessage.
        client_first_bare: String,
        /// server-first-message, for the AuthMessage.
        server_first: String,
        /// The combined nonce.
        nonce: String,
        /// The user's credential.
        credential: Credential,
    },
    /// Succeeded or failed; nothing more is accepted.
    Done,
}

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramServer {
    /// The mechanism negotiated by SaslHandshake.
    mech: Mechanism,
    /// Progress.
    stage: Stage,
}

/// RFC 5802's `saslname` unescaping: `=2C` is `,` and `=3D` is `=`.
fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("a bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ScramServer {
    /// A new exchange for `mech`.
    pub fn new(mech: Mechanism) -> ScramServer {
        ScramServer {
            mech,
            stage: Stage::First,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Whether the next message is client-first-message.
    pub fn awaits_first(&self) -> bool {
        matches!(self.stage, Stage::First)
    }

    /// Takes client-first-message and answers server-first-message.
    /// `server_nonce` is fresh randomness (printable, no comma); `lookup`
    /// finds the user's credential.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.stage, Stage::First) {
            return Err(ScramError::Finished);
        }
        self.stage = Stage::Done;
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n," then an optional "a=authzid", then ",".
        let rest = match msg.as_bytes().first() {
            Some(b'n') => &msg[1..],
            Some(b'y' | b'p') => return Err(ScramError::Unsupported("channel binding")),
            _ => return Err(ScramError::Malformed("no gs2 header")),
        };
        let rest = rest
            .strip_prefix(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let mut user = None;
        let mut cnonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_once('=')) {
                (0, Some(("n", v))) => user = Some(unescape(v)?),
                (1, Some(("r", v))) if !v.is_empty() => cnonce = Some(v),
                (0 | 1, _) => return Err(ScramError::Malformed("expected n= and r=")),
                // Kafka's one extension, tokenauth=true, asks for delegation
                // token authentication, which is not supported; other
                // extensions are ignored, as Kafka does.
                (_, Some(("tokenauth", "true"))) => {
                    return Err(ScramError::Unsupported("delegation tokens"))
                }
                _ => {}
            }
        }
        let (Some(user), Some(cnonce)) = (user, cnonce) else {
            return Err(ScramError::Malformed("expected n= and r="));
        };
        if let Some(a) = authzid.strip_prefix("a=") {
            if unescape(a)? != user {
                return Err(ScramError::Unsupported(
                    "an authorization id other than the user",
                ));
            }
        } else if !authzid.is_empty() {
            return Err(ScramError::Malformed("bad authorization id"));
        }
        let credential = lookup(&user).ok_or_else(|| ScramError::UnknownUser(user.clone()))?;
        let nonce = format!("{cnonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.stage = Stage::Final {
            user,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            credential,
        };
        Ok(server_first.into_bytes())
    }

    /// Takes client-final-message; on a valid proof answers
    /// server-final-message and the authenticated user.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let Stage::Final {
            user,
            client_first_bare,
            server_first,
            nonce,
            credential,
        } = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return Err(ScramError::Finished);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        let r = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        // The gs2 header the client sent, base64: "n,," or "n,a=user,".
        let header_ok = B64
            .decode(binding)
            .ok()
            .is_some_and(|h| h.starts_with(b"n,") && h.ends_with(b","));
        if !header_ok {
            return Err(ScramError::Malformed("bad channel binding"));
        }
        // As Kafka's server: the nonce must end with the combined one
        // (librdkafka before 2.1 sends the client nonce twice).
        if !r.ends_with(&nonce) {
            return Err(ScramError::Malformed("the nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self
            .mech
            .hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadProof(user));
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !constant_time_eq(&self.mech.hash(&client_key), &credential.stored_key) {
            return Err(ScramError::BadProof(user));
        }
        let server_signature = self
            .mech
            .hmac(&credential.server_key, auth_message.as_bytes());
        Ok((
            user,
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        ))
    }
}

/// A fresh server nonce: 20 random bytes as lowercase hex. Alphanumeric,
/// as Kafka's own nonces are: some clients (librdkafka 2.0) mishandle the
/// `+` and `/` that base64 would put in it.
pub fn new_nonce() -> String {
    let mut b = [0u8; 20];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh salt for a credential set from a password (tools and tests).
pub fn new_salt() -> Vec<u8> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_exchange() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::from_password(Mechanism::Sha256, "pencil", &salt, 4096);
        let mut s = ScramServer::new(Mechanism::Sha256);
        let first = s
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                |u| (u == "user").then(|| cred.clone()),
            )
            .unwrap();
        assert_eq!(
            first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, last) = s
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(last, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(s.client_final(b"c=biws"), Err(ScramError::Finished));
    }

    #[test]
    fn wrong_password_unknown_user_and_bad_messages_fail() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::from_password(Mechanism::Sha256, "not pencil", &salt, 4096);
        let mut s = ScramServer::new(Mechanism::Sha256);
        s.client_first(
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            |_| Some(cred.clone()),
        )
        .unwrap();
        let r = s.client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(r, Err(ScramError::BadProof("user".into())));
        let table: [(&[u8], &str); 7] = [
            (b"n,,n=nobody,r=abc", "unknown"),
            (b"y,,n=user,r=abc", "unsupported"),
            (b"n,,r=abc,n=user", "malformed"),
            (b"n,a=other,n=user,r=abc", "unsupported"),
            (b"n,,n=us=2er,r=abc", "malformed"),
            (b"\xff\xfe", "malformed"),
            (b"", "malformed"),
        ];
        for (msg, want) in table {
            let mut s = ScramServer::new(Mechanism::Sha512);
            let err = s
                .client_first(msg, "n", |u| (u == "user").then(|| cred.clone()))
                .unwrap_err();
            assert!(err.to_string().contains(want), "{msg:?}: {err}");
        }
    }

    #[test]
    fn credentials_from_salted_passwords_match_passwords() {
        for mech in Mechanism::ALL {
            let salt = new_salt();
            let salted = mech.salted_password(b"secret", &salt, 4096);
            let cred = Credential::from_salted_password(mech, &salted, &salt, 4096);
            assert_eq!(cred, Credential::from_password(mech, "secret", &salt, 4096));
            assert!(cred.matches_password(mech, "secret"));
            assert!(!cred.matches_password(mech, "Secret"));
            assert_eq!(Mechanism::from_id(mech.id()), Some(mech));
            assert_eq!(Mechanism::from_name(mech.name()), Some(mech));
        }
        assert_eq!(unescape("a=2Cb=3Dc").unwrap(), "a,b=c");
        let n = new_nonce();
        assert!(
            n.len() == 40 && n.chars().all(|c| c.is_ascii_alphanumeric()),
            "{n}"
        );
    }
}
