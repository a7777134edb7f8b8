//! The console's pages: askama templates (`src/console/templates/`, HTML
//! escaping on for every value) and the view structs they read.
//!
//! Owns: turning webhooks, attempts, events and plugin statuses into text
//! for a page. Every value is plain text here; the templates escape it.
//! Webhook details come from `api::webhook_view` with the viewer's
//! redaction whatever the caller's role: the console shows no secret.

use askama::Template;
use serde_json::Value;

use crate::config::Role;
use crate::store::{Attempt, Delivery};
use crate::webhook::Webhook;

/// One entry of the navigation bar.
pub struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

/// What every signed-in page shows around its content.
pub struct Chrome {
    pub nav: Vec<NavItem>,
    pub role: &'static str,
    pub admin: bool,
    pub csrf: String,
    pub notice: String,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login {
    pub error: String,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
    pub back: String,
}

/// A webhook as the console shows it (viewer redaction).
pub struct WebhookRow {
    pub id: String,
    pub path_id: String,
    pub name: String,
    pub source: String,
    pub state: String,
    pub failure_count: u32,
    pub format: String,
    pub destination: String,
    pub events: String,
    pub filter: String,
    pub url: String,
    pub last_status: String,
    pub last_code: String,
    pub last_at: String,
}

impl WebhookRow {
    pub fn new(w: &Webhook, last: Option<&Attempt>) -> WebhookRow {
        let v = crate::api::webhook_view(w, Role::Viewer);
        let text = |key: &str| match v.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let events = match v.get("event_types") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|t| t.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
            _ => "default".into(),
        };
        let destination = match text("destination") {
            d if d.is_empty() => "http".into(),
            d => d,
        };
        WebhookRow {
            id: w.id.clone(),
            path_id: path_segment(&w.id),
            name: text("name"),
            source: text("source"),
            state: text("state"),
            failure_count: v
                .get("failure_count")
                .and_then(Value::as_u64)
                .unwrap_or_default() as u32,
            format: text("format"),
            destination,
            events,
            filter: text("filter"),
            url: text("url"),
            last_status: last
                .map(|a| a.status.as_str().to_owned())
                .unwrap_or_default(),
            last_code: last
                .and_then(|a| a.status_code)
                .map(|c| c.to_string())
                .unwrap_or_default(),
            last_at: last.map(|a| a.created_at.clone()).unwrap_or_default(),
        }
    }

    /// The request headers a viewer may see: the configured ones
    /// (redacted) and what the relay adds.
    pub fn headers(w: &Webhook) -> Vec<Header> {
        let v = crate::api::webhook_view(w, Role::Viewer);
        let mut out: Vec<Header> = match v.get("headers") {
            Some(Value::Object(h)) => h
                .iter()
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| value.to_string()),
                })
                .collect(),
            _ => Vec::new(),
        };
        if w.spec.secret.is_some() {
            let names: &[&str] = match v.get("signature").and_then(Value::as_str) {
                Some("standard") => &["webhook-id", "webhook-timestamp", "webhook-signature"],
                _ => &["X-Webhook-Id", "X-Webhook-Timestamp"],
            };
            for name in names {
                out.push(Header {
                    name: (*name).into(),
                    value: "[set per attempt]".into(),
                });
            }
            if v.get("signature").and_then(Value::as_str) != Some("standard") {
                let name = v
                    .get("signature_header")
                    .and_then(Value::as_str)
                    .unwrap_or("X-Webhook-Signature");
                out.push(Header {
                    name: name.into(),
                    value: "[redacted]".into(),
                });
            }
        }
        out
    }
}

pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
pub struct Webhooks {
    pub chrome: Chrome,
    pub webhooks: Vec<WebhookRow>,
}

/// One attempt as a row of a webhook's history.
pub struct AttemptRow {
    pub delivery_id: String,
    pub path_delivery: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt: u32,
    pub status: &'static str,
    pub status_code: String,
    pub error: String,
    pub duration_ms: u64,
    pub created_at: String,
}

impl AttemptRow {
    pub fn new(a: &Attempt) -> AttemptRow {
        AttemptRow {
            delivery_id: a.delivery_id.clone(),
            path_delivery: path_segment(&a.delivery_id),
            event_id: a.event_id.clone(),
            event_type: a.event_type.clone(),
            attempt: a.attempt,
            status: a.status.as_str(),
            status_code: a.status_code.map(|c| c.to_string()).unwrap_or_default(),
            error: a.error.as_ref().map(|e| e.kind.clone()).unwrap_or_default(),
            duration_ms: a.duration_ms,
            created_at: a.created_at.clone(),
        }
    }
}

/// The rows of a webhook's history: part of [`Deliveries`] and the
/// fragment the page polls.
#[derive(Template)]
#[template(path = "rows.html")]
pub struct Rows {
    pub rows: Vec<AttemptRow>,
    pub admin: bool,
    pub csrf: String,
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The choices of a `<select>`, the one equal to `current` selected.
pub fn choices(list: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    list.iter()
        .map(|(value, label)| Choice {
            value,
            label,
            selected: *value == current,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "deliveries.html")]
pub struct Deliveries {
    pub chrome: Chrome,
    pub w: WebhookRow,
    pub status_options: Vec<Choice>,
    pub success_options: Vec<Choice>,
    pub since: String,
    pub query_error: String,
    /// Rendered [`Rows`] (escaped by their own template).
    pub rows_html: String,
    /// The fragment URL to poll (first page only), or empty.
    pub poll: String,
    pub older: String,
    pub newest: String,
}

pub struct DeliveryFacts {
    pub id: String,
    pub path_id: String,
    pub webhook_id: String,
    pub status: String,
    pub attempts: u32,
}

impl DeliveryFacts {
    pub fn new(d: &Delivery) -> DeliveryFacts {
        DeliveryFacts {
            id: d.id.clone(),
            path_id: path_segment(&d.id),
            webhook_id: d.webhook_id.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
        }
    }
}

/// An event shown as text: its title (`data.title`, `data.finding.title`,
/// `data.summary`) and its data, pretty-printed.
#[derive(Default)]
pub struct EventFacts {
    pub id: String,
    pub path_id: String,
    pub event_type: String,
    pub time: String,
    pub title: String,
    pub data: String,
}

impl EventFacts {
    pub fn new(e: &crate::event::Event) -> EventFacts {
        let title = ["/title", "/finding/title", "/summary", "/message"]
            .iter()
            .find_map(|p| e.data.pointer(p).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        EventFacts {
            id: e.id.clone(),
            path_id: path_segment(&e.id),
            event_type: e.event_type.clone(),
            time: e.time.clone(),
            title,
            data: serde_json::to_string_pretty(&e.data).unwrap_or_default(),
        }
    }
}

/// One attempt in full.
pub struct AttemptDetail {
    pub attempt: u32,
    pub status: &'static str,
    pub status_code: String,
    pub duration_ms: u64,
    pub error_kind: String,
    pub error_origin: String,
    pub error_retry: &'static str,
    pub error_message: String,
    pub warnings: Vec<String>,
    pub has_body: bool,
    pub response_body: String,
    pub created_at: String,
}

impl AttemptDetail {
    pub fn new(a: &Attempt) -> AttemptDetail {
        let e = a.error.as_ref();
        AttemptDetail {
            attempt: a.attempt,
            status: a.status.as_str(),
            status_code: a
                .status_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none (no response)".into()),
            duration_ms: a.duration_ms,
            error_kind: e.map(|e| e.kind.clone()).unwrap_or_default(),
            error_origin: e.map(|e| e.origin.clone()).unwrap_or_default(),
            error_retry: match e.map(|e| e.retryable) {
                Some(true) => "retried",
                _ => "not retried",
            },
            error_message: e.map(|e| e.message.clone()).unwrap_or_default(),
            warnings: a.warnings.clone(),
            has_body: a.response_body.is_some(),
            response_body: a.response_body.clone().unwrap_or_default(),
            created_at: a.created_at.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "delivery.html")]
pub struct DeliveryPage {
    pub chrome: Chrome,
    pub d: DeliveryFacts,
    /// Empty `path_id` when the webhook is no longer configured.
    pub w: WebhookLink,
    pub event: EventFacts,
    pub headers: Vec<Header>,
    pub attempts: Vec<AttemptDetail>,
}

#[derive(Default)]
pub struct WebhookLink {
    pub path_id: String,
    pub name: String,
}

pub struct PluginRow {
    pub name: String,
    pub kind: &'static str,
    pub sha256: String,
    pub sha256_short: String,
    pub loaded_at: String,
    pub source: String,
    pub last_error: String,
}

impl PluginRow {
    pub fn new(p: &crate::plugin::Status) -> PluginRow {
        let sha256 = p.sha256.clone().unwrap_or_default();
        PluginRow {
            name: p.name.clone(),
            kind: p.kind.map(|k| k.as_str()).unwrap_or("not loaded"),
            sha256_short: sha256.chars().take(16).collect(),
            sha256,
            loaded_at: p.loaded_at.clone().unwrap_or_default(),
            source: p.source.clone().unwrap_or_default(),
            last_error: p.last_error.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "plugins.html")]
pub struct Plugins {
    pub chrome: Chrome,
    pub plugins: Vec<PluginRow>,
}

/// One routing decision, as text.
pub struct DecisionRow {
    pub at: String,
    pub event_id: String,
    pub event_path: String,
    pub event_type: String,
    pub webhook: String,
    /// The webhook's page, when it is still configured.
    pub webhook_path: String,
    pub decision: String,
    pub rule: String,
    pub reference: String,
    /// Worked out on request (the index left the webhook out), not stored.
    pub worked_out: bool,
}

impl DecisionRow {
    /// A decision of `GET /api/v1/events`'s listing.
    pub fn listed(d: &crate::store::ListedDecision) -> DecisionRow {
        let mut row = DecisionRow::of(&d.record, true, |_| false);
        row.event_type = d.event_type.clone().unwrap_or_default();
        row
    }

    /// A decision about one event; `configured` says whether a webhook id
    /// is still configured (its name then links to its page).
    pub fn of(
        d: &crate::store::DecisionRecord,
        recorded: bool,
        configured: impl Fn(&str) -> bool,
    ) -> DecisionRow {
        let webhook_id = d.webhook_id.clone().unwrap_or_default();
        DecisionRow {
            at: crate::event::rfc3339_ms(d.created_at_ms),
            event_id: d.event_id.clone(),
            event_path: path_segment(&d.event_id),
            event_type: String::new(),
            webhook: d
                .webhook_name
                .clone()
                .or_else(|| d.webhook_id.clone())
                .unwrap_or_else(|| "(the event)".into()),
            webhook_path: if !webhook_id.is_empty() && configured(&webhook_id) {
                path_segment(&webhook_id)
            } else {
                String::new()
            },
            decision: d.decision.clone(),
            rule: d.rule.clone().unwrap_or_default(),
            reference: d.reference.clone().unwrap_or_default(),
            worked_out: !recorded,
        }
    }
}

#[derive(Template)]
#[template(path = "events.html")]
pub struct Events {
    pub chrome: Chrome,
    pub decision_options: Vec<Choice>,
    pub since: String,
    pub rows: Vec<DecisionRow>,
    pub older: String,
    pub newest: String,
    pub query_error: String,
}

#[derive(Template)]
#[template(path = "event.html")]
pub struct EventPage {
    pub chrome: Chrome,
    pub event: EventFacts,
    pub decisions: Vec<DecisionRow>,
    /// The repeats a dedup window absorbed, counting this event; empty
    /// without any.
    pub dedup_count: String,
}

/// Percent-encodes one URL path segment (ids from relay.yaml may hold any
/// character).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query string value.
pub fn query_value(s: &str) -> String {
    path_segment(s)
}

/// `?k=v&…` of the pairs whose value is not empty (values encoded), or
/// nothing when all are: the links of a filtered, paged listing.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_text_is_escaped_in_every_page_that_shows_it() {
        let evil = r#"<script>alert(1)</script>"><img src=x onerror=alert(2)>"#;
        let page = DeliveryPage {
            chrome: Chrome {
                nav: vec![],
                role: "viewer",
                admin: false,
                csrf: "c".into(),
                notice: evil.into(),
            },
            d: DeliveryFacts {
                id: evil.into(),
                path_id: path_segment(evil),
                webhook_id: evil.into(),
                status: "failed".into(),
                attempts: 1,
            },
            w: WebhookLink::default(),
            event: EventFacts {
                id: "e".into(),
                path_id: "e".into(),
                event_type: evil.into(),
                time: evil.into(),
                title: evil.into(),
                data: evil.into(),
            },
            headers: vec![Header {
                name: evil.into(),
                value: evil.into(),
            }],
            attempts: vec![],
        }
        .render()
        .expect("renders");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(
            page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{page}"
        );
        let rows = Rows {
            rows: vec![AttemptRow {
                delivery_id: evil.into(),
                path_delivery: path_segment(evil),
                event_id: evil.into(),
                event_type: evil.into(),
                attempt: 1,
                status: "failed",
                status_code: String::new(),
                error: evil.into(),
                duration_ms: 1,
                created_at: evil.into(),
            }],
            admin: true,
            csrf: evil.into(),
        }
        .render()
        .expect("renders");
        assert!(
            !rows.contains("<script>alert") && !rows.contains("<img"),
            "{rows}"
        );
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(path_segment("0193-ab_c.d~"), "0193-ab_c.d~");
    }
}
