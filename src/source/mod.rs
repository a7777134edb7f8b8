//! Sources (DESIGN §20): producers that post their own JSON shape to
//! `POST /api/v1/sources/{name}` — Prometheus Alertmanager, Falco, any JSON
//! mapped by pointers, or a WebAssembly `source` plugin.
//!
//! Owns: turning one posted body into events ([`Source::parse`]). Every
//! kind first makes event objects (`type`, `id`, `time`, `data`); those then
//! go through ingest's §5 rules ([`crate::ingest::check_items`]), so a source
//! can produce nothing `POST /api/v1/events` would refuse.
//!
//! **Architecture Invariant:** a source never touches the store or
//! dispatch. `api` reads the body (size limit, auth), calls [`Source::parse`]
//! and hands the events to `ingest::accept`, the same path as
//! `POST /api/v1/events`: same durability, idempotency and 202 rule.
//!
//! Built-in kinds give deterministic ids (Alertmanager: fingerprint +
//! startsAt + status; Falco: a hash of the alert), so a re-sent
//! notification is deduplicated by §5's idempotency.

mod alertmanager;
mod falco;
mod generic;
mod plugin;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::config::{Config, SourceKind, SourceSpec};
use crate::event::Event;
use crate::plugin::{PluginError, PluginHost};

/// Every configured source by name; rebuilt with `Live` on a reload.
#[derive(Default)]
pub struct Sources {
    by_name: HashMap<String, Arc<Source>>,
}

impl Sources {
    /// Compiles `sources:` (already checked by `Config::parse`).
    pub fn from_config(specs: &[SourceSpec]) -> Sources {
        Sources {
            by_name: specs
                .iter()
                .map(|s| (s.name.as_str().to_owned(), Arc::new(Source::new(s))))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Source>> {
        self.by_name.get(name).cloned()
    }
}

/// One source compiled from its [`SourceSpec`].
pub struct Source {
    name: String,
    kind: Kind,
}

enum Kind {
    Alertmanager { event_type: String },
    Falco { event_type: String },
    Generic(generic::Generic),
    Plugin { plugin: String, options: String },
}

/// The event type of Alertmanager events when `type:` does not say.
pub const ALERTMANAGER_TYPE: &str = "alertmanager.alert";
/// The event type of Falco events when `type:` does not say.
pub const FALCO_TYPE: &str = "falco.alert";

/// Why a body was refused. The message always names the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The body is not what this source takes, or an event it makes breaks
    /// §5's rules: the producer's fault (400).
    #[error("source {name:?}: {message}")]
    Refused {
        name: String,
        code: &'static str,
        message: String,
    },
    /// More events than `limits.max_events_per_body` (400).
    #[error(
        "source {name:?}: the body holds {count} events; at most {max} are accepted from one body (limits.max_events_per_body)"
    )]
    TooMany {
        name: String,
        count: usize,
        max: usize,
    },
    /// The source's plugin failed: the relay's side (500), or temporary
    /// (503: not loaded, busy).
    #[error("source {name:?}: plugin {plugin:?} {error}")]
    Plugin {
        name: String,
        plugin: String,
        error: PluginError,
    },
}

impl SourceError {
    /// The machine-readable code of the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Refused { code, .. } => code,
            SourceError::TooMany { .. } => "too_many_events",
            SourceError::Plugin { error, .. } if error.is_temporary() => "source_unavailable",
            SourceError::Plugin { .. } => "source_plugin_failed",
        }
    }

    /// Whether the producer may post the same body again later with
    /// success (a plugin not loaded yet, a busy relay).
    pub fn is_temporary(&self) -> bool {
        matches!(self, SourceError::Plugin { error, .. } if error.is_temporary())
    }

    /// Whether the body itself is at fault (as opposed to the source's plugin).
    pub fn is_producers_fault(&self) -> bool {
        matches!(
            self,
            SourceError::Refused { .. } | SourceError::TooMany { .. }
        )
    }
}

/// What a kind reports before the §5 check: a code and a message.
type Problem = (&'static str, String);

/// What one parse may produce, from `limits:` and `event_types:`.
pub struct Bounds<'a> {
    pub max_events: usize,
    pub catalogue: Option<&'a BTreeMap<String, String>>,
}

impl Source {
    fn new(spec: &SourceSpec) -> Source {
        let fixed = |default: &str| {
            spec.event_type
                .clone()
                .unwrap_or_else(|| default.to_owned())
        };
        let kind = match spec.kind {
            SourceKind::Alertmanager => Kind::Alertmanager {
                event_type: fixed(ALERTMANAGER_TYPE),
            },
            SourceKind::Falco => Kind::Falco {
                event_type: fixed(FALCO_TYPE),
            },
            SourceKind::Generic => Kind::Generic(generic::Generic::new(
                spec.map.clone().unwrap_or_default(),
                spec.event_type.clone(),
            )),
            SourceKind::Plugin => Kind::Plugin {
                plugin: spec.plugin.clone().unwrap_or_default(),
                options: spec.options_json(),
            },
        };
        Source {
            name: spec.name.as_str().to_owned(),
            kind,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Turns one posted body into events, checked by §5's rules. Nothing is
    /// stored here.
    pub async fn parse(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        bounds: &Bounds<'_>,
        plugins: &PluginHost,
    ) -> Result<Vec<Event>, SourceError> {
        let items = match &self.kind {
            Kind::Plugin { plugin, options } => {
                plugin::parse(plugins, plugin, options, headers, body, bounds.max_events)
                    .await
                    .map_err(|e| match e {
                        plugin::Failed::Plugin(PluginError::Returned(message)) => self.refused((
                            "source_refused",
                            format!("plugin {plugin:?} refused the body: {message}"),
                        )),
                        plugin::Failed::Plugin(error) => SourceError::Plugin {
                            name: self.name.clone(),
                            plugin: plugin.clone(),
                            error,
                        },
                        plugin::Failed::TooMany(count) => SourceError::TooMany {
                            name: self.name.clone(),
                            count,
                            max: bounds.max_events,
                        },
                    })?
            }
            _ => self.builtin_items(body)?,
        };
        self.check(items, bounds)
    }

    /// The event objects a built-in kind makes of `body`.
    fn builtin_items(&self, body: &[u8]) -> Result<Vec<Value>, SourceError> {
        let value = json(body).map_err(|p| self.refused(p))?;
        match &self.kind {
            Kind::Alertmanager { event_type } => alertmanager::items(value, event_type),
            Kind::Falco { event_type } => falco::items(value, event_type),
            Kind::Generic(g) => g.items(value),
            Kind::Plugin { .. } => {
                Err(("internal", "a plugin source has no built-in parser".into()))
            }
        }
        .map_err(|p| self.refused(p))
    }

    /// The count cap, then §5's rules.
    fn check(&self, items: Vec<Value>, bounds: &Bounds<'_>) -> Result<Vec<Event>, SourceError> {
        if items.len() > bounds.max_events {
            return Err(SourceError::TooMany {
                name: self.name.clone(),
                count: items.len(),
                max: bounds.max_events,
            });
        }
        if items.is_empty() {
            return Err(self.refused(("no_events", "the body holds no events".into())));
        }
        crate::ingest::check_items(items, bounds.catalogue)
            .map_err(|e| self.refused((e.code, e.to_string())))
    }

    fn refused(&self, (code, message): Problem) -> SourceError {
        SourceError::Refused {
            name: self.name.clone(),
            code,
            message,
        }
    }
}

fn json(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body)
        .map_err(|e| ("malformed_json", format!("the body is not valid JSON: {e}")))
}

/// Checks that need more than the file: a built-in source's default event
/// type must be declared when `event_types:` is, and a plugin source's
/// plugin must be a loaded `source` plugin that accepts its options.
/// `Err` names the field (`sources[2].plugin: …`). Run at start and on a
/// reload, like the webhooks' plugin check.
pub async fn check(cfg: &Config, plugins: &PluginHost) -> Result<(), String> {
    for (i, s) in cfg.sources.iter().enumerate() {
        let default = match s.kind {
            SourceKind::Alertmanager => Some(ALERTMANAGER_TYPE),
            SourceKind::Falco => Some(FALCO_TYPE),
            SourceKind::Generic | SourceKind::Plugin => None,
        };
        if let (Some(t), None, Some(cat)) = (default, &s.event_type, &cfg.event_types)
            && !cat.contains_key(t)
        {
            return Err(format!(
                "sources[{i}].type: a {} source's events have type {t:?}, which is not declared under event_types; declare it or set type:",
                s.kind.as_str()
            ));
        }
        if let Some(p) = &s.plugin {
            plugins
                .check_options(crate::plugin::Kind::Source, p, &s.options_json())
                .await
                .map_err(|e| match e {
                    PluginError::Options(_) => format!("sources[{i}].options: {p:?} {e}"),
                    _ => format!("sources[{i}].plugin: {p:?} {e}"),
                })?;
        }
    }
    Ok(())
}

/// An event object as ingest's §5 check takes it.
fn event_object(event_type: &str, id: Option<String>, time: Option<String>, data: Value) -> Value {
    let mut o = serde_json::Map::with_capacity(4);
    o.insert("type".into(), Value::String(event_type.to_owned()));
    if let Some(id) = id {
        o.insert("id".into(), Value::String(id));
    }
    if let Some(t) = time {
        o.insert("time".into(), Value::String(t));
    }
    o.insert("data".into(), data);
    Value::Object(o)
}

/// A deterministic id: `prefix` and the first 128 bits of SHA-256 over the
/// parts (each followed by a NUL, so `("ab","c")` and `("a","bc")` differ).
fn hashed_id(prefix: &str, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    format!("{prefix}-{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests;
