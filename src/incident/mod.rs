//! Incidents (DESIGN §19): which events belong together. So far only the
//! incident key, which stateful destinations (the PSA ticket plugins) use
//! to find the ticket an earlier event of the same incident created.
//!
//! Owns: rendering an event's incident key from `incidents.key`. Pure.
//! **Architecture Invariant:** no I/O here; the store keeps per-key state
//! (`store::load_destination_state`), dispatch reads and writes it.

pub mod ack;
pub mod escalation;
pub mod pagerduty;

use crate::config::IncidentsConfig;
use crate::config::escalation::EscalationSpec;
use crate::event::Event;
use crate::store::{IncidentEvent, IncidentOpen};

/// What `event` does to its incident, for `Storage::incident_event`:
/// `None` when no escalation policy is configured (incidents are tracked
/// for escalation; `incidents.key` alone only keys a stateful destination's
/// state). An event opens an incident when a policy selects it (its chain's
/// first step due at once), joins the open incident of its key otherwise,
/// and resolves it when `incidents.resolved_when` selects it.
pub fn plan(
    config: &IncidentsConfig,
    policies: &[EscalationSpec],
    event: &Event,
    now_ms: i64,
    warnings: &mut Vec<String>,
) -> Option<IncidentEvent> {
    if policies.is_empty() {
        return None;
    }
    let open = escalation::policy_for(policies, event).map(|p| IncidentOpen {
        id: crate::event::new_id(),
        policy: Some(p.name.clone()),
        first_due_ms: Some(now_ms),
    });
    Some(IncidentEvent {
        key: key(config, event, warnings),
        event_id: event.id.clone(),
        at_ms: now_ms,
        open,
        resolves: resolves(config, event),
    })
}

/// Whether `event` resolves its incident (`incidents.resolved_when`).
pub fn resolves(config: &IncidentsConfig, event: &Event) -> bool {
    config
        .resolved_when
        .as_ref()
        .is_some_and(|m| crate::route::matcher::matches(m, event))
}

/// The longest incident key kept; longer renderings are cut (at a char
/// boundary) so one event cannot grow the state table's index without bound.
pub const MAX_KEY_BYTES: usize = 512;

/// The incident key of `event`: `incidents.key` rendered with the event's
/// variables (the core's template engine), or the event id when there is
/// no `incidents.key` or it renders empty (a warning then says so).
pub fn key(config: &IncidentsConfig, event: &Event, warnings: &mut Vec<String>) -> String {
    let Some(template) = &config.key else {
        return event.id.clone();
    };
    let mut own = Vec::new();
    let rendered =
        crate::template::render_text(&template.0, &crate::template::Vars::of(event), &mut own);
    if rendered.trim().is_empty() {
        warnings.extend(own);
        warnings.push(format!(
            "incidents.key rendered empty for event {}; its id is its incident key",
            event.id
        ));
        return event.id.clone();
    }
    warnings.extend(own);
    cut(rendered)
}

fn cut(mut key: String) -> String {
    if key.len() > MAX_KEY_BYTES {
        let mut end = MAX_KEY_BYTES;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IncidentKey;
    use serde_json::json;

    fn event(data: serde_json::Value) -> Event {
        Event {
            id: "ev-1".into(),
            event_type: "finding_added".into(),
            time: "2026-11-22T10:00:00Z".into(),
            data: data.into(),
        }
    }

    fn config(key: &str) -> IncidentsConfig {
        IncidentsConfig {
            key: Some(IncidentKey(key.into())),
            ..Default::default()
        }
    }

    #[test]
    fn without_incidents_config_the_key_is_the_event_id() {
        let mut w = Vec::new();
        let k = key(
            &IncidentsConfig::default(),
            &event(json!({"incident_id": "I"})),
            &mut w,
        );
        assert_eq!(k, "ev-1");
        assert!(w.is_empty());
    }

    #[test]
    fn the_key_template_is_rendered_with_the_event() {
        let mut w = Vec::new();
        let k = key(
            &config("{{type}}:{{incident_id}}"),
            &event(json!({"incident_id": "INC-42"})),
            &mut w,
        );
        assert_eq!(k, "finding_added:INC-42");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_key_that_renders_empty_falls_back_to_the_event_id_with_a_warning() {
        let mut w = Vec::new();
        let k = key(&config("{{incident_id}}"), &event(json!({})), &mut w);
        assert_eq!(k, "ev-1");
        assert_eq!(
            w,
            [
                "unknown template variable {{incident_id}} rendered empty",
                "incidents.key rendered empty for event ev-1; its id is its incident key"
            ]
        );
    }

    #[test]
    fn relay_yaml_incidents_key_is_parsed_and_an_empty_or_unknown_field_refused() {
        let c = crate::config::Config::parse("incidents: { key: \"{{incident_id}}\" }\n", "r.yaml")
            .expect("valid");
        assert_eq!(c.incidents, config("{{incident_id}}"));
        let c = crate::config::Config::parse("listen: 127.0.0.1:1\n", "r.yaml").expect("valid");
        assert_eq!(c.incidents, IncidentsConfig::default());
        let e = crate::config::Config::parse("incidents: { key: \" \" }\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("r.yaml:1:") && e.contains("incidents.key must not be empty"),
            "{e}"
        );
        let e = crate::config::Config::parse("incidents: { kye: x }\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kye"), "{e}");
    }

    #[test]
    fn long_keys_are_cut_at_a_char_boundary() {
        let mut w = Vec::new();
        let k = key(
            &config("{{x}}"),
            &event(json!({"x": "é".repeat(400)})),
            &mut w,
        );
        assert_eq!(k.len(), MAX_KEY_BYTES);
        assert!(k.chars().all(|c| c == 'é'));
    }
}
