//! Client connections: framing with a size cap, idle and request deadlines,
//! strictly ordered responses, TLS, and rate-limited logging of refused or
//! closed connections.

pub mod connection;
pub mod jwks;
pub mod log_limit;
pub mod tls;

use std::sync::Arc;

use crate::auth::sasl::SaslMechanism;

/// What a connection knows of the listener it came through.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its position in the broker's listeners (advertised endpoints).
    pub index: usize,
    /// Its name, for logs.
    pub name: String,
    /// The SASL mechanisms it enables; `None` for PLAINTEXT and SSL listeners.
    pub sasl: Option<Vec<SaslMechanism>>,
    /// The TLS configuration of SSL and SASL_SSL listeners.
    pub tls: Option<Arc<tls::TlsAcceptor>>,
    /// How OAUTHBEARER tokens are checked, when it is enabled.
    pub oauth: Option<Arc<crate::auth::oauth::OAuthValidator>>,
}

impl Listener {
    /// The single PLAINTEXT listener (`--listen`).
    pub fn plaintext() -> Listener {
        Listener {
            index: 0,
            name: "PLAINTEXT".into(),
            sasl: None,
            tls: None,
            oauth: None,
        }
    }
}
