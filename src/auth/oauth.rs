//! SASL/OAUTHBEARER (RFC 7628, KIP-255, KIP-768), pure (time injected): the
//! client's initial response, and the validation of its bearer token, either
//! an unsecured JWT (`alg: none`, Kafka's default validator, for development)
//! or a signed JWT checked against configured keys (a JWKS), issuer and
//! audience. The token's subject becomes the principal; its expiry bounds the
//! session (KIP-368). The keys can be replaced while the broker runs (a
//! JWKS endpoint is re-read periodically, and sooner when a token names a key
//! not in the set); fetching them is the network layer's job.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Verification keys by key id (`kid`), with the algorithm each signs with.
pub type KeySet = HashMap<String, (DecodingKey, Algorithm)>;

/// Called when a token names a key the set does not have.
type UnknownKeyHook = Box<dyn Fn() + Send + Sync>;

/// How bearer tokens are checked.
pub struct OAuthValidator {
    /// The keys of signed tokens; `None`: unsecured tokens only.
    keys: Option<RwLock<Arc<KeySet>>>,
    /// Told when a token names an unknown key (a JWKS refresher fetches the
    /// keys again: the issuer may have rotated them).
    on_unknown_key: OnceLock<UnknownKeyHook>,
    /// Required `iss`, if any.
    issuer: Option<String>,
    /// Accepted `aud` values (one must match), if any.
    audience: Vec<String>,
    /// The claim naming the principal (`sub`).
    sub_claim: String,
    /// Tolerated clock difference for `exp`, `nbf`, `iat`.
    skew_s: u64,
}

impl std::fmt::Debug for OAuthValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthValidator")
            .field("keys", &self.keys.as_ref().map(|k| self.read(k).len()))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// A validated token: who, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The principal's name (the subject claim).
    pub principal: String,
    /// When the token expires (ms).
    pub expires_ms: i64,
}

impl OAuthValidator {
    /// A validator of unsecured tokens (`alg: none`), as Kafka's default
    /// `OAuthBearerUnsecuredValidatorCallbackHandler`.
    pub fn unsecured(sub_claim: &str, skew_s: u64) -> OAuthValidator {
        OAuthValidator {
            keys: None,
            on_unknown_key: OnceLock::new(),
            issuer: None,
            audience: Vec::new(),
            sub_claim: sub_claim.into(),
            skew_s,
        }
    }

    /// A validator of signed tokens checked against `keys` (which may start
    /// empty and be set later with [`OAuthValidator::set_keys`]).
    pub fn signed(
        keys: KeySet,
        issuer: Option<String>,
        audience: Vec<String>,
        sub_claim: &str,
        skew_s: u64,
    ) -> OAuthValidator {
        OAuthValidator {
            keys: Some(RwLock::new(Arc::new(keys))),
            on_unknown_key: OnceLock::new(),
            issuer,
            audience,
            sub_claim: sub_claim.into(),
            skew_s,
        }
    }

    /// Replaces the verification keys (no-op for an unsecured validator).
    pub fn set_keys(&self, keys: KeySet) {
        if let Some(k) = &self.keys {
            *k.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        }
    }

    /// How many verification keys are loaded.
    pub fn key_count(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| self.read(k).len())
    }

    /// Sets what to call when a token names an unknown key (once).
    pub fn on_unknown_key(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_unknown_key.set(Box::new(hook));
    }

    fn read(&self, k: &RwLock<Arc<KeySet>>) -> Arc<KeySet> {
        k.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks a compact JWT at `now_ms`.
    pub fn validate(&self, jwt: &str, now_ms: i64) -> Result<Token, String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err("the token is not a compact JWT (three parts)".into());
        };
        let decode = |p: &str, what: &str| -> Result<serde_json::Value, String> {
            let bytes = B64URL
                .decode(p.trim_end_matches('='))
                .map_err(|_| format!("the token's {what} is not base64url"))?;
            serde_json::from_slice(&bytes).map_err(|_| format!("the token's {what} is not JSON"))
        };
        let head = decode(header, "header")?;
        let claims = match &self.keys {
            None => {
                if head.get("alg").and_then(|a| a.as_str()) != Some("none") || !signature.is_empty()
                {
                    return Err("only unsecured tokens (alg none) are accepted".into());
                }
                decode(payload, "payload")?
            }
            Some(keys) => {
                let keys = self.read(keys);
                let kid = head.get("kid").and_then(|k| k.as_str()).unwrap_or_default();
                let Some((key, alg)) = keys.get(kid) else {
                    if let Some(hook) = self.on_unknown_key.get() {
                        hook();
                    }
                    return Err(format!("no key {kid:?} to verify the token"));
                };
                let mut v = Validation::new(*alg);
                v.leeway = self.skew_s;
                v.validate_nbf = true;
                // A configured issuer or audience must be present, not just
                // right when present (jsonwebtoken skips absent claims).
                v.required_spec_claims = ["exp".to_string()].into_iter().collect();
                if self.issuer.is_some() {
                    v.required_spec_claims.insert("iss".into());
                }
                if !self.audience.is_empty() {
                    v.required_spec_claims.insert("aud".into());
                }
                match &self.issuer {
                    Some(i) => v.set_issuer(&[i]),
                    None => v.iss = None,
                }
                if self.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&self.audience);
                }
                // Expiry is checked below against the injected clock.
                v.validate_exp = false;
                jsonwebtoken::decode::<serde_json::Value>(jwt, key, &v)
                    .map_err(|e| format!("the token is not valid: {e}"))?
                    .claims
            }
        };
        if let Some(i) = &self.issuer {
            if claims.get("iss").and_then(|v| v.as_str()) != Some(i.as_str()) {
                return Err("the token's issuer is not the expected one".into());
            }
        }
        if !self.audience.is_empty() {
            let listed = match claims.get("aud") {
                Some(serde_json::Value::String(a)) => vec![a.as_str()],
                Some(serde_json::Value::Array(v)) => v.iter().filter_map(|a| a.as_str()).collect(),
                _ => Vec::new(),
            };
            if !listed.iter().any(|a| self.audience.iter().any(|e| e == a)) {
                return Err("the token is not for an expected audience".into());
            }
        }
        let exp = claims
            .get("exp")
            .and_then(|e| e.as_f64())
            .ok_or("the token has no numeric exp claim")?;
        let expires_ms = (exp * 1000.0) as i64;
        let skew_ms = i64::try_from(self.skew_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        if expires_ms.saturating_add(skew_ms) <= now_ms {
            return Err("the token has expired".into());
        }
        if let Some(iat) = claims.get("iat") {
            if iat.as_f64().is_none() {
                return Err("the token's iat claim is not a number".into());
            }
        }
        let principal = claims
            .get(&self.sub_claim)
            .and_then(|s| s.as_str())
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("the token has no {} claim", self.sub_claim))?;
        Ok(Token {
            principal: principal.to_string(),
            expires_ms,
        })
    }
}

/// The signing keys of a JWKS document (`{"keys": [...]}`), by key id, and
/// why each other key was skipped. As Kafka's resolver (jose4j), a key this
/// broker cannot verify with (an encryption key, a symmetric key, an unknown
/// algorithm or curve) is skipped rather than failing the whole document:
/// identity providers publish such keys beside their signing keys.
pub fn parse_jwks(jwks_json: &str) -> Result<(KeySet, Vec<String>), String> {
    use jsonwebtoken::jwk::{
        AlgorithmParameters as P, EllipticCurve as C, Jwk, KeyAlgorithm as K, PublicKeyUse,
    };
    let mut doc: serde_json::Value =
        serde_json::from_str(jwks_json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let Some(serde_json::Value::Array(listed)) = doc.get_mut("keys").map(serde_json::Value::take)
    else {
        return Err("not a JWKS document: no keys array".into());
    };
    let mut keys = HashMap::new();
    let mut skipped = Vec::new();
    for value in listed {
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(j) => j,
            Err(e) => {
                skipped.push(format!("key {kid:?}: not a usable key ({e})"));
                continue;
            }
        };
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            skipped.push(format!("key {kid:?}: an encryption key"));
            continue;
        }
        let alg = match (jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), _) => match a {
                K::RS256 => Some(Algorithm::RS256),
                K::RS384 => Some(Algorithm::RS384),
                K::RS512 => Some(Algorithm::RS512),
                K::PS256 => Some(Algorithm::PS256),
                K::PS384 => Some(Algorithm::PS384),
                K::PS512 => Some(Algorithm::PS512),
                K::ES256 => Some(Algorithm::ES256),
                K::ES384 => Some(Algorithm::ES384),
                K::EdDSA => Some(Algorithm::EdDSA),
                // Symmetric and encryption algorithms verify no signature
                // an identity provider makes with a published key.
                _ => None,
            },
            (None, P::RSA(_)) => Some(Algorithm::RS256),
            (None, P::EllipticCurve(ec)) => match ec.curve {
                C::P256 => Some(Algorithm::ES256),
                C::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            (None, P::OctetKeyPair(_)) => Some(Algorithm::EdDSA),
            (None, _) => None,
        };
        let Some(alg) = alg else {
            skipped.push(format!(
                "key {kid:?}: not a signing algorithm this broker verifies"
            ));
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => {
                keys.insert(kid, (key, alg));
            }
            Err(e) => skipped.push(format!("key {kid:?}: {e}")),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "the JWKS document has no usable signing key ({})",
            if skipped.is_empty() {
                "it lists none".to_string()
            } else {
                skipped.join("; ")
            }
        ));
    }
    Ok((keys, skipped))
}

/// The client's initial response: `n,[a=authzid],` then `\x01`-separated
/// `key=value` pairs with `auth=Bearer <token>`, ended by `\x01\x01`.
/// Returns (authzid, token).
pub fn parse_initial_response(msg: &[u8]) -> Result<(Option<String>, String), String> {
    let text = std::str::from_utf8(msg).map_err(|_| "the message is not UTF-8".to_string())?;
    let rest = text
        .strip_prefix("n,")
        .ok_or("the message does not start with the GS2 header n,")?;
    let (authz, pairs) = rest.split_once(',').ok_or("the GS2 header is not closed")?;
    let authzid = match authz {
        "" => None,
        a => Some(
            a.strip_prefix("a=")
                .ok_or("a bad authorization identity")?
                .to_string(),
        ),
    };
    let pairs = pairs
        .strip_prefix('\u{1}')
        .and_then(|p| p.strip_suffix("\u{1}\u{1}"))
        .ok_or("the key-value pairs are not framed by control-A")?;
    let mut token = None;
    for kv in pairs.split('\u{1}') {
        let (k, v) = kv.split_once('=').ok_or("a key-value pair without =")?;
        if k == "auth" {
            let t = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or("the auth value is not a Bearer token")?;
            token = Some(t.trim().to_string());
        }
    }
    let token = token.ok_or("no auth=Bearer token")?;
    Ok((authzid, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsecured(claims: &str) -> String {
        format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none"}"#),
            B64URL.encode(claims)
        )
    }

    #[test]
    fn initial_responses_by_table() {
        let ok = "n,,\u{1}auth=Bearer abc.def.\u{1}\u{1}";
        assert_eq!(
            parse_initial_response(ok.as_bytes()),
            Ok((None, "abc.def.".into()))
        );
        let with_authz = "n,a=alice,\u{1}host=h\u{1}auth=Bearer t\u{1}\u{1}";
        assert_eq!(
            parse_initial_response(with_authz.as_bytes()),
            Ok((Some("alice".into()), "t".into()))
        );
        for bad in [
            "",
            "y,,\u{1}auth=Bearer t\u{1}\u{1}",
            "n,,auth=Bearer t",
            "n,,\u{1}x=y\u{1}\u{1}",
        ] {
            assert!(parse_initial_response(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_unknown_key_asks_for_a_refresh() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let v = OAuthValidator::signed(KeySet::new(), None, Vec::new(), "sub", 0);
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        v.on_unknown_key(move || {
            a.fetch_add(1, Ordering::Relaxed);
        });
        let jwt = format!(
            "{}.{}.c2ln",
            B64URL.encode(r#"{"alg":"RS256","kid":"new"}"#),
            B64URL.encode(r#"{"sub":"a","exp":1}"#)
        );
        let e = v.validate(&jwt, 0).unwrap_err();
        assert!(e.contains("no key \"new\""), "{e}");
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        // Unsecured validators have no keys to replace.
        let u = OAuthValidator::unsecured("sub", 0);
        u.set_keys(KeySet::new());
        assert_eq!(u.key_count(), 0);
        assert!(parse_jwks(r#"{"keys":[]}"#).is_err());
        assert!(parse_jwks("not json").is_err());
        assert!(parse_jwks(r#"{"keys":{}}"#).is_err());
    }

    #[test]
    fn keys_that_verify_nothing_are_skipped_not_fatal() {
        // A Keycloak-shaped document: a signing key beside an encryption key,
        // a symmetric key and an algorithm the library does not know.
        // Components are decoded, not checked, until a token is verified.
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri";
        let doc = format!(
            r#"{{"keys":[
              {{"kty":"RSA","kid":"sig","use":"sig","alg":"RS256","n":"{n}","e":"AQAB"}},
              {{"kty":"RSA","kid":"enc","use":"enc","alg":"RSA-OAEP","n":"{n}","e":"AQAB"}},
              {{"kty":"oct","kid":"hmac","alg":"HS256","k":"c2VjcmV0"}},
              {{"kty":"EC","kid":"p521","alg":"ES512","crv":"P-521","x":"AA","y":"AA"}},
              {{"kty":"RSA","kid":"no-alg","n":"{n}","e":"AQAB"}}
            ]}}"#
        );
        let (keys, skipped) = parse_jwks(&doc).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["no-alg", "sig"]);
        assert_eq!(keys["no-alg"].1, Algorithm::RS256);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.contains("encryption")));
    }

    #[test]
    fn unsecured_tokens_by_table() {
        let v = OAuthValidator::unsecured("sub", 30);
        let now = 1_000_000_000_000;
        let table = [
            (
                unsecured(r#"{"sub":"alice","exp":1000000100}"#),
                Ok("alice"),
            ),
            (
                unsecured(r#"{"sub":"alice","exp":999999900}"#),
                Err("expired"),
            ),
            (unsecured(r#"{"sub":"alice","exp":999999990}"#), Ok("alice")), // within the skew
            (unsecured(r#"{"exp":1000000100}"#), Err("no sub")),
            (unsecured(r#"{"sub":"alice"}"#), Err("no numeric exp")),
            (
                unsecured(r#"{"sub":"a","exp":1000000100,"iat":"x"}"#),
                Err("iat"),
            ),
            ("a.b".to_string(), Err("three parts")),
            (
                format!(
                    "{}.{}.sig",
                    B64URL.encode(r#"{"alg":"RS256"}"#),
                    B64URL.encode("{}")
                ),
                Err("unsecured"),
            ),
        ];
        for (jwt, want) in table {
            match (v.validate(&jwt, now), want) {
                (Ok(t), Ok(p)) => assert_eq!(t.principal, p),
                (Err(e), Err(w)) => assert!(e.contains(w), "{jwt}: {e}"),
                (got, w) => panic!("{jwt}: got {got:?}, wanted {w:?}"),
            }
        }
    }
}
