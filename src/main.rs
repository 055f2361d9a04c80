//! The `sluice` binary: parse the config, set up logging, bind, run.

use std::process::ExitCode;

use std::sync::Arc;

use sluice::auth::sasl::SaslMechanism;
use sluice::broker::Broker;
use sluice::config::Config;
use sluice::http::HttpState;
use sluice::net::tls::{TlsAcceptor, TlsSettings};
use sluice::net::Listener;
use tokio::net::TcpListener;

#[global_allocator]
static ALLOC: sluice::alloc::LazyLargeAlloc = sluice::alloc::LazyLargeAlloc;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("scram-users") {
        return sluice::cli::scram_users(std::env::args().skip(1));
    }
    let config = Config::parse_recording_sources();
    if let Err(e) = config.validate() {
        eprintln!("sluice: {e}");
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the metrics listener, loads the data directory, then binds: clients
/// can connect only to a broker that can answer them, while health probes see
/// "not ready" during recovery.
async fn run(config: Config) -> std::io::Result<()> {
    match sluice::sys::raise_open_files_limit() {
        Ok(limit) => tracing::info!(open_files_limit = limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
    // Before anything caches a metric handle: handles taken earlier record nowhere.
    // With the listener off nothing is installed and every handle is a no-op.
    if config.metrics_listen.0.is_some() || config.http_listen.0.is_some() {
        sluice::metrics::install();
    }
    let http = Arc::new(HttpState::default());
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = match config.metrics_listen.0 {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen for metrics on {addr}: {e}"),
                )
            })?;
            tracing::info!(listen = %l.local_addr()?, "metrics listener up (/metrics, /healthz, /readyz)");
            let (state, max) = (http.clone(), config.metrics_connections_max);
            Some(tokio::spawn(async move {
                let stop = async {
                    let _ = http_stopped.await;
                };
                if let Err(e) = sluice::http::serve(l, state, max, stop).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            }))
        }
        None => None,
    };
    let specs = config.listener_specs().map_err(std::io::Error::other)?;
    let mechanisms: Vec<SaslMechanism> = config
        .sasl_enabled_mechanisms
        .split(',')
        .filter_map(|m| SaslMechanism::from_name(m.trim()))
        .collect();
    // TLS files are checked before the data directory is opened: a typo in a
    // path fails at once, not after recovery.
    let tls = if specs.iter().any(|s| s.protocol.is_tls()) || config.http_tls {
        let settings = TlsSettings::from_config(&config).map_err(std::io::Error::other)?;
        let acceptor = TlsAcceptor::load(settings).map_err(std::io::Error::other)?;
        let acceptor = Arc::new(acceptor);
        if config.ssl_reload_interval_ms > 0 {
            let every = std::time::Duration::from_millis(config.ssl_reload_interval_ms);
            tokio::spawn(sluice::net::tls::watch(acceptor.clone(), every));
        }
        Some(acceptor)
    } else {
        None
    };
    // One broker per data directory: a second one would interleave writes.
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", config.data_dir.display()),
        )
    })?;
    let _lock = sluice::sys::lock_data_dir(&config.data_dir).map_err(std::io::Error::other)?;
    let oauth = oauth_validator(&config).await?;
    let broker = Broker::open(config).await?;
    http.set_broker(broker.clone());
    let mut listeners = Vec::new();
    let mut advertised = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let l = match TcpListener::bind(spec.addr).await {
            Ok(l) => l,
            Err(e) => {
                let _ = broker.shutdown().await;
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {} ({}): {e}", spec.addr, spec.name),
                ));
            }
        };
        let bound = l.local_addr()?;
        let adv = spec
            .advertised
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), i32::from(bound.port())));
        tracing::info!(listener = %spec.name, protocol = ?spec.protocol, listen = %bound,
            advertised = %format!("{}:{}", adv.0, adv.1), "listening");
        advertised.push(adv);
        let info = Listener {
            index,
            name: spec.name.clone(),
            sasl: spec.protocol.is_sasl().then(|| mechanisms.clone()),
            tls: spec.protocol.is_tls().then(|| tls.clone()).flatten(),
            oauth: oauth.clone(),
        };
        listeners.push((l, Arc::new(info)));
    }
    broker.set_listeners(advertised);
    // One stop for both: the gateway closes (its consumer instances leave
    // their groups) before the Kafka listeners drain and the logs close.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let gateway = match start_gateway(&broker, oauth.clone(), tls.clone(), stop_rx.clone()).await {
        Ok(g) => g,
        Err(e) => {
            let _ = broker.shutdown().await;
            return Err(e);
        }
    };
    http.set_accepting(true);
    tracing::info!("sluice is ready");
    let mut stop = stop_rx;
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
        if let Some(g) = gateway {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), g).await;
        }
    };
    let result = sluice::server::run_listeners(listeners, broker, shutdown).await;
    http.set_accepting(false);
    let _ = http_stop.send(());
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    result
}

/// Starts the HTTP gateway when `--http-listen` is on; the task ends once
/// `stop` turns true and the gateway has closed.
async fn start_gateway(
    broker: &Arc<Broker>,
    oauth: Option<Arc<sluice::auth::oauth::OAuthValidator>>,
    tls: Option<Arc<TlsAcceptor>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = broker.config.http_listen.0 else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen for HTTP on {addr}: {e}"))
    })?;
    let tls: Option<sluice::http::listener::TlsConfig> = match (broker.config.http_tls, tls) {
        (true, Some(t)) => Some(Arc::new(move || t.config())),
        _ => None,
    };
    tracing::info!(listen = %l.local_addr()?, tls = tls.is_some(), auth = %broker.config.http_auth,
        "HTTP gateway up (REST Proxy v2)");
    let broker = broker.clone();
    Ok(Some(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = sluice::http::gateway::serve(l, broker, oauth, tls, stopped).await {
            tracing::error!(error = %e, "HTTP gateway failed");
        }
    })))
}

/// The OAUTHBEARER validator when the mechanism is enabled: signed tokens
/// against the JWKS (kept fresh by a task), or unsecured ones when allowed.
async fn oauth_validator(
    config: &Config,
) -> std::io::Result<Option<Arc<sluice::auth::oauth::OAuthValidator>>> {
    use sluice::auth::oauth::OAuthValidator;
    let bearer_http =
        config.http_listen.0.is_some() && config.http_auth.split(',').any(|m| m.trim() == "bearer");
    if !bearer_http
        && !config
            .sasl_enabled_mechanisms
            .split(',')
            .any(|m| m.trim() == "OAUTHBEARER")
    {
        return Ok(None);
    }
    let skew = config.sasl_oauthbearer_clock_skew_seconds;
    let sub = &config.sasl_oauthbearer_sub_claim_name;
    let Some((source, schedule)) =
        sluice::net::jwks::JwksSource::from_config(config).map_err(std::io::Error::other)?
    else {
        tracing::warn!("OAUTHBEARER accepts unsecured tokens: anyone can claim any principal");
        return Ok(Some(Arc::new(OAuthValidator::unsecured(sub, skew))));
    };
    let audience = config
        .sasl_oauthbearer_expected_audience
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    // A local file must be right at start (as Kafka's file resolver); an
    // endpoint that cannot be reached yet is retried while the broker runs
    // (as Kafka's refreshing resolver), refusing tokens until it answers.
    let (keys, loaded) = match source.fetch().await {
        Ok(keys) => (keys, true),
        Err(e) if source.is_file() => {
            return Err(std::io::Error::other(format!(
                "the JWKS {}: {e}",
                source.url
            )));
        }
        Err(e) => {
            tracing::error!(url = %source.url, error = %e,
                "cannot fetch the JWKS; OAUTHBEARER logins fail until it can be fetched");
            (Default::default(), false)
        }
    };
    let v = Arc::new(OAuthValidator::signed(
        keys,
        config.sasl_oauthbearer_expected_issuer.clone(),
        audience,
        sub,
        skew,
    ));
    tokio::spawn(sluice::net::jwks::refresh(
        v.clone(),
        source,
        schedule,
        loaded,
    ));
    Ok(Some(v))
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
