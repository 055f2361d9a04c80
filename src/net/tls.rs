//! TLS for SSL and SASL_SSL listeners (rustls): the server certificate and
//! key from a PEM keystore, optional client certificates checked against a PEM
//! truststore (`ssl.client.auth`), the principal a client certificate names,
//! and reloading the files when they change, without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ClientAuth, Config};

use crate::protocol::ANONYMOUS;

/// What the TLS listeners are built from (the `--ssl-*` settings).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM file with the certificate chain and its private key.
    pub keystore: PathBuf,
    /// PEM file of the CAs client certificates must chain to.
    pub truststore: Option<PathBuf>,
    /// Whether clients must, may or must not present a certificate.
    pub client_auth: ClientAuth,
    /// TLS 1.2, TLS 1.3 or both.
    pub protocols: Vec<&'static SupportedProtocolVersion>,
}

impl TlsSettings {
    /// The settings from the broker config; `Err` names what is missing or wrong.
    pub fn from_config(c: &Config) -> Result<TlsSettings, String> {
        let keystore = c.ssl_keystore_location.clone().ok_or(
            "TLS listeners need --ssl-keystore-location (a PEM certificate chain and key)",
        )?;
        if c.ssl_client_auth != ClientAuth::None && c.ssl_truststore_location.is_none() {
            return Err(
                "--ssl-client-auth requested or required needs --ssl-truststore-location".into(),
            );
        }
        let mut protocols = Vec::new();
        for p in c.ssl_enabled_protocols.split(',').map(str::trim) {
            match p {
                "TLSv1.2" => protocols.push(&rustls::version::TLS12),
                "TLSv1.3" => protocols.push(&rustls::version::TLS13),
                "" => {}
                other => {
                    return Err(format!(
                        "--ssl-enabled-protocols: {other} is not TLSv1.2 or TLSv1.3"
                    ))
                }
            }
        }
        if protocols.is_empty() {
            return Err("--ssl-enabled-protocols names no protocol".into());
        }
        Ok(TlsSettings {
            keystore,
            truststore: c.ssl_truststore_location.clone(),
            client_auth: c.ssl_client_auth,
            protocols,
        })
    }
}

/// The files' modification times and lengths when last loaded: a change in
/// either means a reload.
type Stamps = Vec<Option<(SystemTime, u64)>>;

/// The current rustls configuration, swapped whole when the files change;
/// connections take the configuration current when they are accepted.
#[derive(Debug)]
pub struct TlsAcceptor {
    /// Where the files are and how to use them.
    settings: TlsSettings,
    /// The configuration in use and the stamps of the files it came from.
    current: RwLock<(Arc<ServerConfig>, Stamps)>,
}

impl TlsAcceptor {
    /// Loads the keystore (and truststore); `Err` says which file is wrong.
    pub fn load(settings: TlsSettings) -> Result<TlsAcceptor, String> {
        let stamps = stamps(&settings);
        let config = build(&settings)?;
        Ok(TlsAcceptor {
            settings,
            current: RwLock::new((config, stamps)),
        })
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Reloads if a file changed since the last load. `Ok(true)` when a new
    /// configuration is in use; on `Err` the old one stays. Reads files: call it
    /// off the async workers.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let now = stamps(&self.settings);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == now {
            return Ok(false);
        }
        let built = build(&self.settings);
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        // A broken file is reported once, not at every check, until it changes again.
        cur.1 = now;
        cur.0 = built?;
        Ok(true)
    }
}

/// Checks the files every `every` and loads them when they change; a file
/// that does not load is logged and the previous configuration kept.
pub async fn watch(acceptor: Arc<TlsAcceptor>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let a = acceptor.clone();
        match tokio::task::spawn_blocking(move || a.reload_if_changed()).await {
            Ok(Ok(true)) => tracing::info!(
                keystore = %acceptor.settings.keystore.display(),
                "TLS certificates reloaded; new connections use them"
            ),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!("TLS certificates not reloaded, the previous ones stay in use: {e}")
            }
            Err(e) => tracing::warn!(error = %e, "TLS reload task failed"),
        }
    }
}

/// Modification time and length of each configured file.
fn stamps(s: &TlsSettings) -> Stamps {
    std::iter::once(&s.keystore)
        .chain(s.truststore.iter())
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// Builds a rustls configuration from the files.
fn build(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&s.keystore)?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no CERTIFICATE in the keystore",
            s.keystore.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&s.keystore).map_err(|e| {
        format!(
            "{}: no usable private key (an unencrypted PKCS#8, PKCS#1 or SEC1 PEM key is needed): {e}",
            s.keystore.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&s.protocols)
        .map_err(|e| format!("TLS protocols: {e}"))?;
    let builder = match (&s.truststore, s.client_auth) {
        (Some(path), auth) if auth != ClientAuth::None => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if auth == ClientAuth::Requested {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(
                v.build().map_err(|e| format!("{}: {e}", path.display()))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", s.keystore.display()))?;
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file, in order.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The principal of a client certificate, as Kafka's default
/// `ssl.principal.mapping.rules`: the subject's distinguished name in RFC 2253
/// form (`CN=app,OU=eng,O=Acme`); `ANONYMOUS` without a certificate.
pub fn principal_of(certs: Option<&[CertificateDer<'_>]>) -> String {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return ANONYMOUS.into();
    };
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => rfc2253(cert.subject()),
        // The verifier accepted it, so it parses; a name is still owed.
        Err(_) => ANONYMOUS.into(),
    }
}

/// A distinguished name as Java's `X500Principal.getName()` writes it: the
/// most specific RDN first, `,` between RDNs and `+` inside one, the RFC 2253
/// keywords, other attributes as `OID=#hex` of their DER encoding.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::oid_registry as oids;
    let keyword = |oid: &x509_parser::der_parser::oid::Oid<'_>| -> Option<&'static str> {
        [
            (oids::OID_X509_COMMON_NAME, "CN"),
            (oids::OID_X509_COUNTRY_NAME, "C"),
            (oids::OID_X509_LOCALITY_NAME, "L"),
            (oids::OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
            (oids::OID_X509_ORGANIZATION_NAME, "O"),
            (oids::OID_X509_ORGANIZATIONAL_UNIT, "OU"),
            (oids::OID_X509_STREET_ADDRESS, "STREET"),
            (oids::OID_DOMAIN_COMPONENT, "DC"),
            (oids::OID_USERID, "UID"),
        ]
        .into_iter()
        .find(|(o, _)| o == oid)
        .map(|(_, k)| k)
    };
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    match (keyword(oid), atv.as_str()) {
                        (Some(k), Ok(v)) => format!("{k}={}", escape(v)),
                        _ => format!("{oid}=#{}", der_hex(atv.attr_value())),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, ch) in v.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (i == last && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The DER encoding (tag, length, content) of a value, in lower-case hex.
fn der_hex(v: &x509_parser::der_parser::asn1_rs::Any<'_>) -> String {
    let data = v.data;
    let mut der = vec![v.header.tag().0 as u8];
    match data.len() {
        n if n < 0x80 => der.push(n as u8),
        n => {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            der.push(0x80 | bytes.len() as u8);
            der.extend(bytes);
        }
    }
    der.extend_from_slice(data);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_rfc_2253() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("trail "), "trail\\ ");
    }

    /// A self-signed certificate (public part only; its key was thrown away)
    /// whose subject has an escaped comma, a multi-valued RDN and an
    /// attribute without an RFC 2253 keyword; the RDN's values come in their
    /// DER (sorted) order, as Java writes them.
    const CERT: &str = include_str!("tls_test_cert.pem");

    #[test]
    fn a_certificate_subject_is_its_rfc_2253_name() {
        let der = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        assert_eq!(
            principal_of(Some(&[der])),
            "1.2.840.113549.1.9.1=#160f617070406578616d706c652e636f6d,\
             CN=app+UID=42,OU=eng,O=Acme\\, Inc,C=DE"
        );
    }

    #[test]
    fn no_certificate_is_anonymous() {
        assert_eq!(principal_of(None), "ANONYMOUS");
        assert_eq!(principal_of(Some(&[])), "ANONYMOUS");
    }
}
