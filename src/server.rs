//! Wiring for `relay serve`: open the store, build the webhook registry,
//! start dispatch and the HTTP listener.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

use crate::api::AppState;
use crate::config::Config;
use crate::deliver::{Deliverer, Guard, Policy};
use crate::dispatch::Dispatcher;
use crate::plugin::PluginHost;
use crate::store::{self, Storage, Store};
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
    #[error("{0}")]
    Plugins(String),
    #[error("{0}")]
    Tls(String),
    /// `storage:` names a backend this build cannot use.
    #[error("{0}")]
    Storage(String),
}

/// Starts the plugin host: built-ins, then `*.wasm` files in `plugins.dir`.
/// Precompiled code is cached beside the database.
pub fn start_plugins(cfg: &Config) -> Result<PluginHost, ServeError> {
    let limits = crate::plugin::Limits {
        memory_mb: cfg.plugins.memory_mb,
        timeout_ms: cfg.plugins.timeout_ms,
        fresh: cfg.plugins.isolation == crate::config::Isolation::Fresh,
    };
    let cache = Some(cfg.storage.local_dir().join("plugin-cache"));
    let host = PluginHost::new(limits, cache).map_err(|e| ServeError::Plugins(e.to_string()))?;
    crate::plugin::watch::load_dir(&host, &cfg.plugins.dir.0);
    Ok(host)
}

/// Every webhook's format and destination must be loaded, and accept its
/// options; so must every source's plugin (`source::check`).
pub async fn check_webhook_plugins(cfg: &Config, plugins: &PluginHost) -> Result<(), String> {
    for (i, w) in cfg.webhooks.iter().enumerate() {
        plugins
            .check_webhook(w)
            .await
            .map_err(|(field, message)| format!("webhooks[{i}].{field}: {message}"))?;
    }
    crate::source::check(cfg, plugins).await
}

/// Prunes history older than `retention_days` once an hour (and at start);
/// 0 keeps everything. A pruned event's id can be accepted again.
fn spawn_retention(store: Store, retention_days: u32) {
    if retention_days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = crate::event::now_ms() - i64::from(retention_days) * 86_400_000;
            match store.prune(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, retention_days, "pruned old history"),
                Err(e) => tracing::error!(error = %e, "pruning old history failed"),
            }
        }
    });
}

/// Runs the relay until SIGINT/SIGTERM.
pub async fn serve(config_path: &Path) -> Result<(), ServeError> {
    let (cfg, fingerprint) = crate::reload::load(config_path)?;
    crate::check::dev_tokens(&cfg).map_err(ServeError::Unsafe)?;
    if cfg.auth.tokens.is_empty() {
        tracing::warn!("auth.tokens is empty: every API call will be refused with 401");
    }
    store::check_config(&cfg.storage)
        .map_err(|e| ServeError::Storage(format!("{}: {e}", config_path.display())))?;
    let store = Store::open(&cfg.storage).await?;
    let states = store.load_webhook_states().await?;
    let api_webhooks = store.load_api_webhooks().await?;
    let first_seen = store.load_first_seen().await?;
    let registry = Arc::new(Registry::new(states, first_seen));
    registry.rebuild(&cfg, api_webhooks, &store).await?;
    let deliverer = Deliverer::with_ca_file(
        Guard::new(cfg.network.allow_private.clone()),
        Policy {
            allow_http: cfg.network.allow_http,
        },
        cfg.network.ca_file.as_ref().map(|p| p.0.as_path()),
    )
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    let plugins = start_plugins(&cfg)?;
    check_webhook_plugins(&cfg, &plugins)
        .await
        .map_err(ServeError::Plugins)?;
    let _plugin_watch = match crate::plugin::watch::watch(plugins.clone(), &cfg.plugins.dir.0) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %cfg.plugins.dir.0.display(), error = %e, "not watching the plugins directory; plugin files will not hot-reload");
            None
        }
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        registry.clone(),
        deliverer.clone(),
        plugins.clone(),
        cfg.delivery.clone(),
    );
    dispatcher.set_incidents(cfg.incidents.clone());
    dispatcher.start();
    crate::digester::Digester::new(store.clone(), registry.clone(), dispatcher.clone()).start();
    spawn_retention(store.clone(), cfg.storage.retention_days);
    let state = Arc::new(AppState::new(
        store,
        registry,
        dispatcher,
        plugins.clone(),
        &cfg,
    ));
    let _config_watch = watch_config(config_path, fingerprint, &state, deliverer, plugins);
    let addr = cfg.listen.0;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        listen = %bound,
        webhooks = state.registry.load().len(),
        store = %match &cfg.storage.backend {
            crate::config::StorageBackend::Sqlite(p) => p.0.display().to_string(),
            // The URL may hold a password.
            crate::config::StorageBackend::Postgres(_) => "postgres".to_owned(),
        },
        "relay is listening"
    );
    let listening = Listening {
        max_connections: cfg.limits.max_connections,
        header_read_timeout: Duration::from_millis(cfg.limits.header_read_timeout_ms),
    };
    let connections = listening.serve(
        listener,
        crate::console::router(state.clone()).merge(crate::api::router(state.clone())),
        shutdown_signal(),
    );
    let open = connections.await;
    stop(&state, open, Duration::from_millis(cfg.shutdown_grace_ms)).await;
    tracing::info!("relay stopped");
    Ok(())
}

/// How the listener treats client connections (`limits:` in relay.yaml).
struct Listening {
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Listening {
    /// Accepts connections until `stop` resolves; returns the connections
    /// still open then, for a graceful close.
    ///
    /// Every connection gets hyper's header-read timeout (a request's head
    /// must arrive within `header_read_timeout` of the connection opening or
    /// of the previous answer, so half-sent requests and idle keep-alive
    /// connections are closed), and at most `max_connections` are open at
    /// once: past that, new connections are closed at once and a warning is
    /// logged (at most every 10 s).
    async fn serve(
        self,
        listener: tokio::net::TcpListener,
        router: axum::Router,
        stop: impl std::future::Future<Output = ()>,
    ) -> GracefulShutdown {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        let mut last_warning: Option<Instant> = None;
        tokio::pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = self.max_connections,
                        "connection limit reached (limits.max_connections): new connections are closed until others end"
                    );
                    last_warning = Some(Instant::now());
                }
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let router = router.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let mut router = router.clone();
                    let mut req = req;
                    // The peer's address (the console's sign-in limit).
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    // axum's Router is always ready: no poll_ready needed.
                    async move { tower_service::Service::call(&mut router, req).await }
                });
            let conn = http
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
        }
        graceful
    }
}

/// The graceful stop (DESIGN §9, at-least-once without needless resends):
/// the listener is closed already; ingest now answers 503 with
/// `Retry-After`; requests being answered and attempts in flight get
/// `grace` to finish and be recorded; then the relay exits. Deliveries not
/// attempted yet stay due in the store.
async fn stop(state: &AppState, open: GracefulShutdown, grace: Duration) {
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "stopping: no new connections; finishing requests and attempts in flight"
    );
    state
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let requests = async {
        let _ = tokio::time::timeout(grace, open.shutdown()).await;
    };
    let (_, unrecorded) = tokio::join!(requests, state.dispatcher.drain(grace));
    if unrecorded > 0 {
        tracing::warn!(
            unrecorded,
            "attempts still in flight after shutdown_grace_ms; they will be sent again after restart"
        );
    }
}

/// relay.yaml hot reload (file watcher + SIGHUP, see `reload`). A new
/// configuration must also pass the plugin check of start-up.
fn watch_config(
    path: &Path,
    fingerprint: crate::reload::Fingerprint,
    state: &Arc<AppState>,
    deliverer: Deliverer,
    plugins: PluginHost,
) -> crate::reload::Watching {
    let check: crate::reload::Check = Box::new(move |c| {
        let plugins = plugins.clone();
        Box::pin(async move { check_webhook_plugins(&c, &plugins).await })
    });
    crate::reload::start(path, fingerprint, state.clone(), deliverer, Some(check))
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
