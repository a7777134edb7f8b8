//! Formatting: event → payload bytes for one webhook.
//!
//! `json` is the core's own: the webhook's body template (§7) or, without a
//! template, the event itself. Other formats are plugins (see `plugin`).
//!
//! Owns: choosing the formatter and the payload's content type, and
//! [`Formatted`]: the bodies one event's deliveries share. Pure.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::deliver::DeliveryError;
use crate::event::Event;
use crate::plugin::{Kind, PluginHost};
use crate::webhook::Webhook;

pub use crate::payload::Payload;

/// Names accepted in a webhook's `format` without looking at the plugins
/// directory: `json` and the built-in formatters.
pub fn known_formats() -> Vec<String> {
    let mut v = vec!["json".to_owned()];
    v.extend(builtin_names(Kind::Formatter));
    v
}

/// Names of the built-in destination plugins.
pub fn known_destinations() -> Vec<String> {
    builtin_names(Kind::Destination)
}

fn builtin_names(kind: Kind) -> Vec<String> {
    crate::plugin::BUILTINS
        .iter()
        .filter(|(_, k, _)| *k == kind.as_str())
        .map(|(n, _, _)| n.to_string())
        .collect()
}

/// The plugin names a `*.wasm` file in `dir` would provide (not compiled:
/// a bad file is refused when the relay loads it).
pub fn file_plugin_names(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| crate::plugin::watch::is_plugin_file(p))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .collect()
}

/// Formats `event` for `webhook`, adding template warnings to `warnings`.
pub async fn format(
    webhook: &Webhook,
    event: &Event,
    plugins: &PluginHost,
    warnings: &mut Vec<String>,
) -> Result<Payload, DeliveryError> {
    match webhook.spec.format.as_str() {
        "json" => {
            let (payload, w) = json(webhook, event)?;
            warnings.extend(w);
            Ok(payload)
        }
        plugin => plugins
            .format(plugin, &webhook.format_options, event)
            .await
            .map_err(|e| e.into_delivery(plugin)),
    }
}

/// [`format`], sharing the core `json` format's bodies through `shared`:
/// the deliveries of one event (a fan-out) to webhooks with equal body
/// templates get the same bytes (`Bytes`: one buffer) and warnings, rendered
/// once. Plugin formats are not shared (a plugin's output is its own
/// business); neither is an event a delivery changed (`data.ack_url`: the
/// caller passes `None`).
pub async fn format_shared(
    webhook: &Webhook,
    event: &Event,
    plugins: &PluginHost,
    warnings: &mut Vec<String>,
    shared: Option<&Formatted>,
) -> Result<Payload, DeliveryError> {
    let Some(shared) = shared.filter(|_| webhook.spec.format == "json") else {
        return format(webhook, event, plugins, warnings).await;
    };
    let (payload, w) = shared.json(webhook, event)?;
    warnings.extend(w);
    Ok(payload)
}

/// The core `json` format: the body template rendered, or the event.
fn json(webhook: &Webhook, event: &Event) -> Result<(Payload, Vec<String>), DeliveryError> {
    let (body, warnings) = match &webhook.template {
        Some(t) => t.render_json(&crate::template::Vars::of(event)),
        None => serde_json::to_vec(event).map(|b| (b, vec![])),
    }
    .map_err(|e| DeliveryError::Config(format!("cannot serialise the body: {e}")))?;
    Ok((
        Payload {
            content_type: "application/json".to_owned(),
            body: Bytes::from(body),
        },
        warnings,
    ))
}

/// The `json` bodies already rendered for one event, by template: shared by
/// that event's deliveries (held by each of their jobs, dropped with the
/// last). At most [`Formatted::MAX`] templates are kept; past that a body
/// is rendered each time.
#[derive(Debug, Default)]
pub struct Formatted {
    done: Mutex<Vec<Rendered>>,
}

#[derive(Debug)]
struct Rendered {
    template: Option<Arc<crate::template::Template>>,
    payload: Payload,
    warnings: Vec<String>,
}

impl Formatted {
    /// Distinct templates kept per event.
    const MAX: usize = 8;

    /// The core `json` format of `event` for `webhook`: the body an equal
    /// template rendered before, else rendered now and kept.
    fn json(
        &self,
        webhook: &Webhook,
        event: &Event,
    ) -> Result<(Payload, Vec<String>), DeliveryError> {
        if let Some(done) = self.get(webhook) {
            return Ok(done);
        }
        let (payload, warnings) = json(webhook, event)?;
        self.put(webhook, &payload, &warnings);
        Ok((payload, warnings))
    }

    fn get(&self, webhook: &Webhook) -> Option<(Payload, Vec<String>)> {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.iter()
            .find(|r| r.template == webhook.template)
            .map(|r| (r.payload.clone(), r.warnings.clone()))
    }

    fn put(&self, webhook: &Webhook, payload: &Payload, warnings: &[String]) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.len() < Self::MAX && !done.iter().any(|r| r.template == webhook.template) {
            done.push(Rendered {
                template: webhook.template.clone(),
                payload: payload.clone(),
                warnings: warnings.to_vec(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::{Breaker, Source};
    use serde_json::json;

    fn webhook(id: &str, body: Option<serde_json::Value>) -> Webhook {
        let spec: crate::config::WebhookSpec =
            serde_saphyr::from_str(&format!("name: {id}\nurl: https://x.example\n")).unwrap();
        Webhook {
            id: id.into(),
            spec,
            source: Source::Config,
            template: body.map(|b| Arc::new(crate::template::Template::compile(&b))),
            format_options: "{}".into(),
            destination_options: "{}".into(),
            wants_ack_url: false,
            breaker: Arc::new(Breaker::new(crate::store::WebhookState {
                activity: crate::store::Activity::Active,
                failure_count: 0,
            })),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn event() -> Event {
        Event {
            id: "e1".into(),
            event_type: "finding".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: json!({"title": "t"}).into(),
        }
    }

    /// Issue 21 (fan-out): one event to webhooks with equal templates is
    /// rendered once; they get the very same buffer and the same warnings,
    /// and a webhook with another template gets its own body.
    #[test]
    fn deliveries_of_one_event_with_equal_templates_share_one_rendered_body() {
        let e = event();
        let a = webhook("a", Some(json!({"t": "{{title}}", "m": "{{missing}}"})));
        let b = webhook("b", Some(json!({"t": "{{title}}", "m": "{{missing}}"})));
        let c = webhook("c", Some(json!({"other": "{{id}}"})));
        let plain = webhook("p", None);
        let shared = Formatted::default();
        let (pa, wa) = shared.json(&a, &e).unwrap();
        let (pb, wb) = shared.json(&b, &e).unwrap();
        let (pc, wc) = shared.json(&c, &e).unwrap();
        let (pp, _) = shared.json(&plain, &e).unwrap();
        assert_eq!(pa.body.as_ptr(), pb.body.as_ptr(), "b reused a's bytes");
        assert_eq!(wa, wb);
        assert_eq!(wa.len(), 1, "{wa:?}");
        assert_eq!(&pa.body[..], br#"{"m":"","t":"t"}"#);
        assert_ne!(pc.body.as_ptr(), pa.body.as_ptr());
        assert_eq!(&pc.body[..], br#"{"other":"e1"}"#);
        assert!(wc.is_empty());
        let (alone, _) = json(&plain, &e).unwrap();
        assert_eq!(pp.body, alone.body, "the event itself, as without sharing");
        assert_eq!(shared.done.lock().unwrap().len(), 3);
    }

    /// At most `Formatted::MAX` templates are kept per event; past that a
    /// body is rendered each time, and still right.
    #[test]
    fn past_the_bound_bodies_are_rendered_without_being_kept() {
        let e = event();
        let shared = Formatted::default();
        for i in 0..Formatted::MAX + 3 {
            let w = webhook("w", Some(json!({ "n": i, "t": "{{title}}" })));
            let (p, _) = shared.json(&w, &e).unwrap();
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&p.body).unwrap(),
                json!({"n": i, "t": "t"})
            );
        }
        assert_eq!(shared.done.lock().unwrap().len(), Formatted::MAX);
    }
}
