//! Formatting: event → payload bytes for one webhook.
//!
//! `json` is the core's own: the webhook's body template (§7) or, without a
//! template, the event itself. Other formats are plugins (see `plugin`).
//!
//! Owns: choosing the formatter and the payload's content type. Pure.

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
            let body = match &webhook.template {
                Some(t) => t.render_json(&event.vars()).map(|(body, w)| {
                    warnings.extend(w);
                    body
                }),
                None => serde_json::to_vec(event),
            }
            .map_err(|e| DeliveryError::Config(format!("cannot serialise the body: {e}")))?;
            Ok(Payload {
                content_type: "application/json".to_owned(),
                body: Bytes::from(body),
            })
        }
        plugin => plugins
            .format(plugin, &webhook.format_options, event)
            .await
            .map_err(|e| e.into_delivery(plugin)),
    }
}
