//! The `sluice` binary: parse the config, set up logging, bind, run.

use std::process::ExitCode;

use clap::Parser;
use sluice::broker::Broker;
use sluice::config::Config;
use tokio::net::TcpListener;

#[global_allocator]
static ALLOC: sluice::alloc::LazyLargeAlloc = sluice::alloc::LazyLargeAlloc;

fn main() -> ExitCode {
    let config = Config::parse();
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

/// Loads the data directory, then binds: clients can connect only to a broker
/// that can answer them.
async fn run(config: Config) -> std::io::Result<()> {
    match sluice::sys::raise_open_files_limit() {
        Ok(limit) => tracing::info!(open_files_limit = limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
    let listen = config.listen;
    let broker = Broker::open(config).await?;
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = broker.shutdown().await;
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {listen}: {e}"),
            ));
        }
    };
    let bound = listener.local_addr()?;
    broker.set_advertised(bound);
    let (host, port) = broker.advertised();
    tracing::info!(listen = %bound, advertised = %format!("{host}:{port}"), "sluice is ready");
    sluice::server::run(listener, broker, shutdown_signal()).await
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
