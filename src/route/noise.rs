//! Noise control beyond the router's pipeline (DESIGN §17): the dedup key
//! and the catch-all's settings (`webhook::Webhooks` finds its target). Dedup itself is decided by the store in the accept
//! transaction (shared by every instance on one database); the catch-all
//! at ingest (no webhook wanted the event, or every delivery starts held)
//! and by the store when dispatch records an attempt that leaves every
//! delivery of the event failed, skipped or paused.
//!
//! Owns: `routing.dedup` and `routing.catch_all` compiled ([`Settings`]).
//! Pure.

use crate::config::RoutingConfig;
use crate::event::Event;
use crate::store::DedupKey;

/// `routing:` compiled: what ingest and dispatch read on every event.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub dedup: Option<Dedup>,
    /// The id of the `routing.catch_all` webhook.
    pub catch_all: Option<String>,
}

/// `routing.dedup` compiled.
#[derive(Debug, Clone)]
pub struct Dedup {
    pub key: String,
    pub window_ms: i64,
}

impl Settings {
    /// Compiles `routing:`; `file_ids` are (name, id) of relay.yaml's
    /// webhooks, to find the catch-all by name or id.
    pub fn new<'a>(
        cfg: &RoutingConfig,
        file_ids: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Settings {
        let catch_all = cfg.catch_all.as_ref().and_then(|want| {
            file_ids
                .into_iter()
                .find(|(name, id)| name == want || id == want || crate::config::slug(name) == *want)
                .map(|(_, id)| id.to_owned())
        });
        Settings {
            dedup: cfg.dedup.as_ref().map(|d| Dedup {
                key: d.key.clone(),
                window_ms: (d.window_s as i64).saturating_mul(1000),
            }),
            catch_all,
        }
    }

    /// The event's dedup key; `None` without `routing.dedup` or when the
    /// key names a field the event lacks (such events are never merged:
    /// an empty part would make unrelated events one).
    pub fn dedup_key(&self, event: &Event) -> Option<DedupKey> {
        let d = self.dedup.as_ref()?;
        let mut missing = Vec::new();
        let key =
            crate::template::render_text(&d.key, &crate::template::Vars::of(event), &mut missing);
        missing.is_empty().then_some(DedupKey {
            key,
            window_ms: d.window_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: serde_json::Value) -> Event {
        Event {
            id: "e1".into(),
            event_type: "incident".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: data.into(),
        }
    }

    fn settings(key: &str) -> Settings {
        let cfg: RoutingConfig =
            serde_saphyr::from_str(&format!("dedup: {{key: \"{key}\", window_s: 60}}\n")).unwrap();
        Settings::new(&cfg, [])
    }

    #[test]
    fn a_dedup_key_is_rendered_from_the_event_and_holds_its_window() {
        let k = settings("{{type}}:{{incident_id}}")
            .dedup_key(&event(json!({"incident_id": 42})))
            .expect("a key");
        assert_eq!((k.key.as_str(), k.window_ms), ("incident:42", 60_000));
    }

    #[test]
    fn an_event_without_a_key_field_is_never_deduplicated() {
        let s = settings("{{type}}:{{incident_id}}");
        assert!(s.dedup_key(&event(json!({"other": 1}))).is_none());
    }

    #[test]
    fn the_catch_all_is_found_by_name_or_id() {
        let cfg: RoutingConfig = serde_saphyr::from_str("catch_all: SOC fallback\n").unwrap();
        let s = Settings::new(&cfg, [("other", "other"), ("SOC fallback", "soc-fallback")]);
        assert_eq!(s.catch_all.as_deref(), Some("soc-fallback"));
        let cfg: RoutingConfig = serde_saphyr::from_str("catch_all: soc-fallback\n").unwrap();
        let s = Settings::new(&cfg, [("SOC fallback", "soc-fallback")]);
        assert_eq!(s.catch_all.as_deref(), Some("soc-fallback"));
    }
}
