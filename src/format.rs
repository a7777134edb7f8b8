//! Formatting: event → payload bytes for one webhook.
//!
//! `json` is the core's own: the webhook's body template (§7) or, without a
//! template, the event itself. Other formats are plugins (see `plugin`).
//!
//! Owns: choosing the formatter and the payload's content type. Pure.

use bytes::Bytes;

use crate::deliver::DeliveryError;
use crate::event::Event;
use crate::webhook::Webhook;

/// A formatted body.
#[derive(Debug, Clone)]
pub struct Payload {
    pub content_type: String,
    pub body: Bytes,
}

/// Names accepted in a webhook's `format`.
pub fn known_formats() -> Vec<String> {
    vec!["json".to_owned()]
}

/// Names accepted in a webhook's `destination`.
pub fn known_destinations() -> Vec<String> {
    Vec::new()
}

/// Formats `event` for `webhook`, adding template warnings to `warnings`.
pub fn format(
    webhook: &Webhook,
    event: &Event,
    warnings: &mut Vec<String>,
) -> Result<Payload, DeliveryError> {
    match webhook.spec.format.as_str() {
        "json" => {
            let body = match &webhook.template {
                Some(t) => {
                    let (value, w) = t.render(&event.vars());
                    warnings.extend(w);
                    serde_json::to_vec(&value)
                }
                None => serde_json::to_vec(event),
            }
            .map_err(|e| DeliveryError::Config(format!("cannot serialise the body: {e}")))?;
            Ok(Payload {
                content_type: "application/json".to_owned(),
                body: Bytes::from(body),
            })
        }
        other => Err(DeliveryError::Config(format!(
            "format {other:?} is not loaded"
        ))),
    }
}
