//! Wiring for `relay serve`: open the store, build the webhook registry,
//! start dispatch and the HTTP listener.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::api::{AppState, Live};
use crate::config::Config;
use crate::deliver::{Deliverer, Guard, Policy};
use crate::dispatch::Dispatcher;
use crate::store::{self, Store};
use crate::webhook::Registry;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsafe(String),
}

/// The development tokens in the shipped relay.yaml start with `dev-`; they
/// are only accepted when the relay listens on loopback.
fn check_dev_tokens(cfg: &Config) -> Result<(), ServeError> {
    if cfg.listen.0.ip().is_loopback() {
        return Ok(());
    }
    for t in &cfg.auth.tokens {
        if t.token.expose().starts_with("dev-") {
            return Err(ServeError::Unsafe(format!(
                "auth.tokens {:?} uses a development default token but listen is {}: set a real token (e.g. via its environment variable) or listen on 127.0.0.1",
                t.name, cfg.listen.0
            )));
        }
    }
    Ok(())
}

/// Runs the relay until SIGINT/SIGTERM.
pub async fn serve(config_path: &Path) -> Result<(), ServeError> {
    let cfg = Config::load(config_path)?;
    check_dev_tokens(&cfg)?;
    if cfg.auth.tokens.is_empty() {
        tracing::warn!("auth.tokens is empty: every API call will be refused with 401");
    }
    let store = Store::open(&cfg.storage.sqlite.0)?;
    let states = store.read(store::load_webhook_states).await?;
    let api_webhooks = store.read(store::load_api_webhooks).await?;
    let registry = Arc::new(Registry::new(states));
    registry.rebuild(&cfg, api_webhooks);
    let deliverer = Deliverer::new(
        Guard::new(cfg.network.allow_private.clone()),
        Policy {
            allow_http: cfg.network.allow_http,
        },
    );
    let dispatcher = Dispatcher::new(
        store.clone(),
        registry.clone(),
        deliverer,
        cfg.delivery.clone(),
    );
    dispatcher.start();
    let state = Arc::new(AppState {
        store,
        registry,
        dispatcher,
        live: ArcSwap::from_pointee(Live::from_config(&cfg)),
        config: ArcSwap::from_pointee(cfg.clone()),
    });
    let addr = cfg.listen.0;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        listen = %bound,
        webhooks = state.registry.load().list.len(),
        store = %cfg.storage.sqlite.0.display(),
        "relay is listening"
    );
    axum::serve(listener, crate::api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    tracing::info!("relay stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
