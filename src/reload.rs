//! relay.yaml hot reload: on a change of the file (notify) or on SIGHUP.
//!
//! The watcher watches the file's *directory*, not the file: editors and
//! deployers replace a file by writing a temporary one and renaming it into
//! place, which a watch on the old inode would miss. It reacts to the file
//! being created, renamed into place or closed after writing — never to
//! opens or reads, or its own read of the file would trigger it again —
//! debounced (~150 ms). A reload whose content hash equals the last one
//! seen is skipped (on SIGHUP, only `network.ca_file` is re-read then).
//!
//! A reload parses and checks the whole file exactly like start-up does
//! ([`Config::parse`]). A bad file is refused: the reason is logged with
//! `file:line:col` and the running configuration stays. A good one is
//! swapped in at once: tokens and limits (`Live`), the catalogue, network
//! policy (SSRF guard exceptions, `allow_http`, `ca_file`), delivery settings, and the
//! webhook registry (file webhooks plus the API's, breaker state kept).
//! `listen`, `storage` and `plugins` cannot change under a running relay:
//! a change there is logged as needing a restart and the old values stay in
//! force.
//!
//! Nothing queued is lost. Deliveries live in the store; a webhook removed
//! from the file is no longer dispatched, and its pending deliveries stay in
//! the store untouched — they resume if a webhook with the same id comes
//! back. Events accepted after the swap go only to the new set.
//!
//! Owns: the watcher, the SIGHUP handler and the swap. Parsing is `config`'s.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::EventKind;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::api::{AppState, Live};
use crate::config::{Config, ConfigError, WebhookSpec};
use crate::deliver::{Deliverer, Guard, Policy};
use crate::store::{Storage, StoreError};

/// SHA-256 of the file's bytes.
pub type Fingerprint = [u8; 32];

/// An extra check a new configuration must pass before it is applied (the
/// plugin host uses it to refuse unknown formats or bad plugin options).
/// The error names the field, e.g. `webhooks[2].format: ...`.
pub type Check = Box<CheckFn>;
pub type CheckFn = dyn Fn(Config) -> CheckFuture + Send + Sync;
/// What a [`Check`] returns: it may call plugins, which are async.
pub type CheckFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Reads and checks the file, and fingerprints what was read.
pub fn load(path: &Path) -> Result<(Config, Fingerprint), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let cfg = crate::check::parse(&text, &path.display().to_string())?;
    Ok((cfg, fingerprint(text.as_bytes())))
}

fn fingerprint(bytes: &[u8]) -> Fingerprint {
    Sha256::digest(bytes).into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    File,
    Signal,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file change",
            Trigger::Signal => "SIGHUP",
        }
    }
}

/// Keeps the watcher alive; dropping it stops watching the file (SIGHUP
/// keeps working while the runtime runs).
pub struct Watching {
    _debouncer: Option<Box<dyn std::any::Any + Send>>,
}

/// Starts watching `path` and listening for SIGHUP. `loaded` is the
/// fingerprint of the file the running configuration came from. Must be
/// called inside the tokio runtime, before the listener accepts requests
/// (so that a SIGHUP is never taken for the default "terminate").
pub fn start(
    path: &Path,
    loaded: Fingerprint,
    state: Arc<AppState>,
    deliverer: Deliverer,
    check: Option<Check>,
) -> Watching {
    // Capacity 1: a trigger that finds one already queued is redundant — the
    // queued reload reads the file as it is when it runs.
    let (tx, mut rx) = mpsc::channel::<Trigger>(1);
    let reloader = Reloader {
        path: path.to_owned(),
        state,
        deliverer,
        check: check.map(Arc::from),
        last: Mutex::new(loaded),
    };
    tokio::spawn(async move {
        while let Some(trigger) = rx.recv().await {
            reloader.run(trigger).await;
        }
    });
    listen_for_sighup(tx.clone());
    let debouncer = match watch(path, tx) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "not watching the configuration file; send SIGHUP to reload it");
            None
        }
    };
    Watching {
        _debouncer: debouncer,
    }
}

#[cfg(unix)]
fn listen_for_sighup(tx: mpsc::Sender<Trigger>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = tx.try_send(Trigger::Signal);
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the file watcher still reloads")
        }
    }
}

#[cfg(not(unix))]
fn listen_for_sighup(_tx: mpsc::Sender<Trigger>) {}

/// The directory a path lives in (`.` for a bare file name).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn watch(
    path: &Path,
    tx: mpsc::Sender<Trigger>,
) -> Result<Box<dyn std::any::Any + Send>, notify::Error> {
    let name: OsString = path
        .file_name()
        .map(|n| n.to_owned())
        .ok_or_else(|| notify::Error::generic("the configuration path has no file name"))?;
    let link = path.to_owned();
    let handler = move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        // A symlinked file (e.g. a Kubernetes ConfigMap) changes by its
        // link target being swapped: any rename or create in the directory.
        let via_link = std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink());
        let hit = events.iter().any(|ev| {
            let names_file = ev
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()));
            match ev.kind {
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    names_file || via_link
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Any) => names_file,
                _ => false,
            }
        });
        if hit {
            let _ = tx.try_send(Trigger::File);
        }
    };
    let mut debouncer = new_debouncer(Duration::from_millis(150), None, handler)?;
    debouncer.watch(dir_of(path), notify::RecursiveMode::NonRecursive)?;
    Ok(Box::new(debouncer))
}

struct Reloader {
    path: PathBuf,
    state: Arc<AppState>,
    deliverer: Deliverer,
    check: Option<Arc<CheckFn>>,
    /// Fingerprint of the last file content applied or refused.
    last: Mutex<Fingerprint>,
}

/// Why a configuration was not applied.
enum Refused {
    /// The file is at fault: it stays refused until its content changes.
    Invalid(String),
    /// The relay could not apply it now (storage): the next trigger retries.
    Store(StoreError),
}

/// What a reload changed, for the log.
#[derive(Debug, Default)]
struct Summary {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
    restart: Vec<String>,
}

impl Reloader {
    fn last(&self) -> Fingerprint {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, f: Fingerprint) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }

    async fn run(&self, trigger: Trigger) {
        let file = self.path.display().to_string();
        let text = match tokio::fs::read(&self.path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && trigger == Trigger::File => {
                // Mid-replacement, or deleted: nothing to load; keep running.
                tracing::warn!(file = %file, "the configuration file is gone; the running configuration is kept");
                return;
            }
            Err(e) => {
                crate::metrics::reload(false);
                tracing::error!(
                    trigger = trigger.as_str(),
                    "configuration reload refused, the running configuration is kept: {file}: cannot read: {e}"
                );
                return;
            }
        };
        let print = fingerprint(&text);
        if print == self.last() {
            if trigger == Trigger::Signal {
                // The file is the same, but the CA file it names may not be.
                let ca = self.state.config.load().network.ca_file.clone();
                match &ca {
                    None => {
                        tracing::info!(file = %file, "SIGHUP: the configuration file is unchanged; nothing to reload")
                    }
                    Some(p) => match self.deliverer.set_ca_file(Some(&p.0)) {
                        Ok(()) => {
                            tracing::info!(file = %file, "SIGHUP: the configuration file is unchanged; network.ca_file re-read")
                        }
                        Err(e) => {
                            tracing::error!(file = %file, "SIGHUP: the configuration file is unchanged; {e} (the CA in use is kept)")
                        }
                    },
                }
            }
            return;
        }
        let parsed = match String::from_utf8(text) {
            Ok(t) => crate::check::parse(&t, &file).map_err(|e| e.to_string()),
            Err(_) => Err(format!("{file}: the file is not UTF-8 text")),
        };
        let cfg = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.remember(print);
                crate::metrics::reload(false);
                tracing::error!(
                    trigger = trigger.as_str(),
                    "configuration reload refused, the running configuration is kept: {e}"
                );
                return;
            }
        };
        match self.apply(cfg).await {
            Ok(summary) => {
                self.remember(print);
                crate::metrics::reload(true);
                let s = &summary;
                tracing::info!(
                    trigger = trigger.as_str(),
                    added = ?s.added,
                    removed = ?s.removed,
                    changed = ?s.changed,
                    webhooks = self.state.registry.load().len(),
                    "configuration reloaded from {file}: applied"
                );
                if !s.restart.is_empty() {
                    tracing::warn!(
                        "{file}: {} changed, which needs a restart to take effect; the running relay keeps the old value until then",
                        s.restart.join(", ")
                    );
                }
            }
            Err(Refused::Invalid(e)) => {
                self.remember(print);
                crate::metrics::reload(false);
                tracing::error!(
                    trigger = trigger.as_str(),
                    "configuration reload refused, the running configuration is kept: {file}: {e}"
                );
            }
            Err(Refused::Store(e)) => {
                crate::metrics::reload(false);
                tracing::error!(trigger = trigger.as_str(), error = %e, "configuration reload failed on storage, the running configuration is kept; it is retried on the next change or SIGHUP");
            }
        }
    }

    /// Swaps `new` in. Holds the registry lock throughout, so an API change
    /// to webhooks cannot interleave with the swap.
    async fn apply(&self, mut new: Config) -> Result<Summary, Refused> {
        let s = &self.state;
        if let Some(check) = &self.check {
            check(new.clone()).await.map_err(Refused::Invalid)?;
        }
        let _guard = s.rebuild.lock().await;
        let old = s.config.load_full();
        let mut summary = Summary::default();
        if new.listen != old.listen {
            summary
                .restart
                .push(format!("listen ({} → {})", old.listen.0, new.listen.0));
            new.listen = old.listen;
        }
        if new.storage != old.storage {
            summary.restart.push("storage".into());
            new.storage = old.storage.clone();
        }
        if new.plugins != old.plugins {
            summary.restart.push("plugins".into());
            new.plugins = old.plugins.clone();
        }
        // The listener's settings are fixed when it starts.
        if (
            new.limits.max_connections,
            new.limits.header_read_timeout_ms,
        ) != (
            old.limits.max_connections,
            old.limits.header_read_timeout_ms,
        ) {
            summary
                .restart
                .push("limits.max_connections / limits.header_read_timeout_ms".into());
            new.limits.max_connections = old.limits.max_connections;
            new.limits.header_read_timeout_ms = old.limits.header_read_timeout_ms;
        }
        crate::check::dev_tokens(&new).map_err(Refused::Invalid)?;
        let api = s.store.load_api_webhooks().await.map_err(Refused::Store)?;

        let before = by_id(old.file_webhooks());
        let after = by_id(new.file_webhooks());
        for (id, spec) in &after {
            match before.get(id) {
                None => summary.added.push(id.clone()),
                Some(old_spec) if old_spec != spec => summary.changed.push(id.clone()),
                Some(_) => {}
            }
        }
        summary.removed = before
            .keys()
            .filter(|id| !after.contains_key(*id))
            .cloned()
            .collect();

        // Network first: a webhook added together with the network exception
        // or CA it needs must never be sent through the old ones.
        self.deliverer
            .set_ca_file(new.network.ca_file.as_ref().map(|p| p.0.as_path()))
            .map_err(|e| Refused::Invalid(e.to_string()))?;
        self.deliverer.reconfigure(
            Guard::new(new.network.allow_private.clone()),
            Policy {
                allow_http: new.network.allow_http,
            },
        );
        s.dispatcher.reconfigure(new.delivery.clone());
        s.dispatcher.set_incidents(new.incidents.clone());
        let new = Arc::new(new);
        s.live.store(Arc::new(Live::from_config(&new)));
        s.config.store(new.clone());
        s.registry
            .rebuild(&new, api, &s.store)
            .await
            .map_err(Refused::Store)?;
        // Deliveries of a webhook that came back are due: let the poller look.
        s.dispatcher.wake();
        drop(_guard);

        if !summary.removed.is_empty() {
            let queue = s
                .store
                .queue_depth(crate::event::now_ms())
                .await
                .unwrap_or_default();
            for id in &summary.removed {
                let pending = queue
                    .iter()
                    .find(|q| &q.webhook_id == id)
                    .map(|q| q.pending)
                    .unwrap_or(0);
                tracing::info!(
                    webhook = %id,
                    pending,
                    "webhook removed from the configuration: no longer dispatched; its pending deliveries stay in the store and resume if it comes back"
                );
            }
        }
        Ok(summary)
    }
}

fn by_id(specs: Vec<WebhookSpec>) -> BTreeMap<String, WebhookSpec> {
    specs
        .into_iter()
        .map(|w| (w.id.clone().unwrap_or_default(), w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(dir_of(Path::new("relay.yaml")), PathBuf::from("."));
        assert_eq!(
            dir_of(Path::new("/etc/relay/relay.yaml")),
            PathBuf::from("/etc/relay")
        );
    }

    #[test]
    fn load_fingerprints_exactly_what_it_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("relay.yaml");
        std::fs::write(&p, "listen: 127.0.0.1:1\n").unwrap();
        let (cfg, print) = load(&p).unwrap();
        assert_eq!(cfg.listen.0.port(), 1);
        assert_eq!(print, fingerprint(b"listen: 127.0.0.1:1\n"));
        std::fs::write(&p, "listen: [\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:", p.display())), "{e}");
    }
}
