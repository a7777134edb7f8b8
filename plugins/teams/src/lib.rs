//! Microsoft Teams formatter: a Workflows-webhook message carrying an
//! Adaptive Card 1.4.
//!
//! ```json
//! {"type": "message", "attachments": [{
//!   "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
//!   "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
//!     "type": "AdaptiveCard", "version": "1.4",
//!     "body": [title TextBlock, description TextBlock?, FactSet?, context TextBlock],
//!     "actions": [Action.OpenUrl]?}}]}
//! ```
//!
//! The whole message stays under [`MAX_BYTES`] (Teams refuses ~28 KB and
//! more): texts and facts are cut step by step until it fits, whatever the
//! event holds.
//!
//! Options (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `title_field` | `title` | data path of the title (falls back to the event type) |
//! | `text_field` | `description`, `summary`, `message` | data path of the text under the title |
//! | `fields` | well-known keys, then the other scalar fields | data paths shown as facts |
//! | `link_field` | `url`, `link` (incident: `incident_link` first) | data path of the `Action.OpenUrl` link |
//! | `button_text` | `View event` (incident: `View incident`) | action title |
//! | `layout` | `auto` | `incident`, `list`, or `auto`: incident when the data has `incident_link`, `steps_taken`, `next_steps` or `incident_time_utc` |
//! | `steps_taken_field` | `steps_taken` | data path of "Steps taken" (text or list) |
//! | `next_steps_field` | `next_steps` | data path of "Next steps" (text or list) |
//! | `severity_field` | `severity` | data path of the severity that sets the emphasis |
//!
//! The incident layout (the seed's alert): a `Container` styled by severity
//! (`attention` for critical and high, `warning` for medium, `accent`
//! otherwise) holding the severity in capitals (coloured) and the incident
//! summary (`title`, else `text`) in large bold; the summary text;
//! "Incident details" as a `FactSet` (Tenant, Affected identity, Time (UTC)
//! first); "Steps taken" and "Next steps" as bulleted lists; an
//! `Action.OpenUrl` to the incident (`destructive` style for critical and
//! high, `positive` otherwise); the context line.

use relay_sdk::card::{CardOptions, Digest, Severity, Steps, is_web_url};
use relay_sdk::text::{one_line, truncate};
use relay_sdk::{Event, Formatter, Payload};
use serde::Serialize;

/// The serialised message is always strictly smaller than this many bytes.
pub const MAX_BYTES: usize = 28_000;
/// Longest link turned into an action (longer links are dropped, not cut).
const URL_MAX: usize = 2000;
/// Cap on the event type and id shown in the context line.
const META_MAX: usize = 200;

/// Character budgets, from generous to minimal; the first that fits is used.
#[derive(Debug, Clone, Copy)]
struct Budget {
    title: usize,
    text: usize,
    facts: usize,
    fact_title: usize,
    fact_value: usize,
}

const BUDGETS: &[Budget] = &[
    Budget {
        title: 2000,
        text: 8000,
        facts: 50,
        fact_title: 200,
        fact_value: 2000,
    },
    Budget {
        title: 1000,
        text: 4000,
        facts: 30,
        fact_title: 100,
        fact_value: 1000,
    },
    Budget {
        title: 500,
        text: 2000,
        facts: 20,
        fact_title: 100,
        fact_value: 500,
    },
    Budget {
        title: 300,
        text: 1000,
        facts: 10,
        fact_title: 60,
        fact_value: 200,
    },
    Budget {
        title: 150,
        text: 300,
        facts: 5,
        fact_title: 40,
        fact_value: 100,
    },
    // Worst case a few KB: 100 title chars, the context line and a 2000-char URL.
    Budget {
        title: 100,
        text: 0,
        facts: 0,
        fact_title: 0,
        fact_value: 0,
    },
];

/// The Teams Adaptive Card formatter.
#[derive(Debug)]
pub struct Teams {
    options: CardOptions,
}

impl Formatter for Teams {
    fn create(options: &str) -> Result<Self, String> {
        CardOptions::parse(options).map(|options| Teams { options })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        let parts = self.parts(event);
        for budget in BUDGETS {
            let body = serde_json::to_vec(&parts.message(budget))
                .map_err(|e| format!("cannot serialise card: {e}"))?;
            if body.len() < MAX_BYTES {
                return Ok(Payload::new("application/json", body));
            }
        }
        Err(format!("card does not fit in {MAX_BYTES} bytes"))
    }
}

relay_sdk::export_formatter!(Teams);

/// What the card shows, before cutting to a budget.
struct Parts {
    title: String,
    text: Option<String>,
    facts: Vec<(String, String)>,
    link: Option<String>,
    button: String,
    context: String,
    /// The incident layout's extras (`None`: the list layout).
    incident: Option<Incident>,
}

struct Incident {
    severity: Option<(String, Severity)>,
    steps: Vec<Steps>,
}

impl Teams {
    fn parts(&self, event: &Event) -> Parts {
        if let Some(d) = Digest::of(event) {
            return digest_parts(event, &d);
        }
        if self.options.is_incident(event) {
            return self.incident_parts(event);
        }
        let title_path = self.options.title_path();
        let title = event
            .text(title_path)
            .map(|t| one_line(&t))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| one_line(&event.event_type));
        let title = if title.is_empty() {
            "Event".to_string()
        } else {
            title
        };

        let text_path = self.options.text_path(event);
        let link_path = self.options.link_path(event);
        let text = text_path
            .and_then(|p| event.text(p))
            .filter(|t| !t.trim().is_empty());
        let link = link_path
            .and_then(|p| event.str(p))
            .filter(|l| is_web_url(l) && l.len() <= URL_MAX)
            .map(str::to_string);

        let used = [Some(title_path), text_path, link_path];
        let facts = self.options.fields(event, &used);

        Parts {
            title,
            text,
            facts,
            link,
            button: self
                .options
                .button_text
                .as_deref()
                .map_or_else(|| "View event".to_string(), one_line),
            context: format!(
                "{} · {} · {}",
                truncate(&one_line(&event.event_type), META_MAX),
                truncate(&one_line(&event.time), META_MAX),
                truncate(&one_line(&event.id), META_MAX)
            ),
            incident: None,
        }
    }

    /// The seed's incident layout (see the module documentation).
    fn incident_parts(&self, event: &Event) -> Parts {
        let o = &self.options;
        let title_path = o.incident_title_path(event);
        let title = event
            .text(title_path)
            .map(|t| one_line(&t))
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| one_line(&event.event_type));
        let title = if title.trim().is_empty() {
            "Incident".to_string()
        } else {
            title
        };
        let text_path = o.text_path(event).filter(|p| *p != title_path);
        let link_path = o.incident_link_path(event);
        let severity_path = o.severity_field.as_deref().unwrap_or("severity");
        let used = [Some(title_path), text_path, link_path, Some(severity_path)];
        Parts {
            title,
            text: text_path
                .and_then(|p| event.text(p))
                .filter(|t| !t.trim().is_empty()),
            facts: o.incident_details(event, &used),
            link: link_path
                .and_then(|p| event.str(p))
                .filter(|l| is_web_url(l) && l.len() <= URL_MAX)
                .map(str::to_string),
            button: o
                .button_text
                .as_deref()
                .map_or_else(|| "View incident".to_string(), one_line),
            context: format!(
                "{} · {} · {}",
                truncate(&one_line(&event.event_type), META_MAX),
                truncate(&one_line(&event.time), META_MAX),
                truncate(&one_line(&event.id), META_MAX)
            ),
            incident: Some(Incident {
                severity: o.severity(event),
                steps: o.steps(event),
            }),
        }
    }
}

/// The Workflows message, serialized straight from these types (a
/// `serde_json::Value` tree cost more than the rest of the call).
#[derive(Debug, Serialize)]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    attachments: [Attachment<'a>; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Attachment<'a> {
    content_type: &'static str,
    /// Always `null`.
    content_url: Option<&'a str>,
    content: Card<'a>,
}

#[derive(Debug, Serialize)]
struct Card<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    body: Vec<Element>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    actions: Vec<OpenUrl<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Element {
    TextBlock(TextBlock),
    FactSet {
        facts: Vec<Fact>,
    },
    Container {
        style: &'static str,
        bleed: bool,
        items: Vec<Element>,
    },
}

#[derive(Debug, Serialize)]
struct TextBlock {
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'static str>,
    #[serde(rename = "isSubtle", skip_serializing_if = "Option::is_none")]
    is_subtle: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'static str>,
    wrap: bool,
}

impl TextBlock {
    fn wrapped(text: String) -> TextBlock {
        TextBlock {
            text,
            weight: None,
            size: None,
            is_subtle: None,
            color: None,
            wrap: true,
        }
    }

    fn heading(text: &str) -> TextBlock {
        TextBlock {
            weight: Some("Bolder"),
            ..TextBlock::wrapped(text.to_owned())
        }
    }
}

#[derive(Debug, Serialize)]
struct Fact {
    title: String,
    value: String,
}

#[derive(Debug, Serialize)]
struct OpenUrl<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    style: Option<&'static str>,
}

/// Alerts listed by name in a digest card (the rest are counted).
pub const DIGEST_ITEMS_MAX: usize = 20;

/// A digest (relay's `digest` event) as the list layout: the summary (count
/// and group) as the title, the alerts as a Markdown list (severity, title,
/// time; at most [`DIGEST_ITEMS_MAX`], then how many more), the group as
/// facts, the context line.
fn digest_parts(event: &Event, d: &Digest) -> Parts {
    let mut list = String::with_capacity(64 * d.items.len().min(DIGEST_ITEMS_MAX));
    for item in d.items.iter().take(DIGEST_ITEMS_MAX) {
        if !list.is_empty() {
            list.push('\n');
        }
        list.push_str("- ");
        if let Some(sev) = &item.severity {
            list.push('[');
            list.push_str(&truncate(&sev.to_uppercase(), 20));
            list.push_str("] ");
        }
        list.push_str(&truncate(&item.title, 150));
        if !item.time.is_empty() {
            list.push_str(" — ");
            list.push_str(&truncate(&item.time, 40));
        }
    }
    let shown = d.items.len().min(DIGEST_ITEMS_MAX);
    if d.count > shown {
        list.push_str(&format!("\n- … and {} more", d.count - shown));
    }
    Parts {
        title: d.summary(),
        text: (!list.is_empty()).then_some(list),
        facts: d.group.clone(),
        link: None,
        button: String::new(),
        context: format!(
            "{} · {} · {}",
            truncate(&one_line(&event.event_type), META_MAX),
            truncate(&one_line(&event.time), META_MAX),
            truncate(&one_line(&event.id), META_MAX)
        ),
        incident: None,
    }
}

/// Items shown per steps section at most.
const STEPS_MAX: usize = 20;

impl Parts {
    /// The full message, cut to `budget`.
    fn message(&self, budget: &Budget) -> Message<'_> {
        let mut body = match &self.incident {
            None => vec![Element::TextBlock(TextBlock {
                weight: Some("Bolder"),
                size: Some("Medium"),
                ..TextBlock::wrapped(truncate(&self.title, budget.title))
            })],
            Some(incident) => {
                let level = incident.severity.as_ref().map(|(_, l)| *l);
                let (style, color) = match level {
                    Some(Severity::Critical | Severity::High) => ("attention", "Attention"),
                    Some(Severity::Medium) => ("warning", "Warning"),
                    _ => ("accent", "Accent"),
                };
                let mut items = Vec::with_capacity(2);
                if let Some((text, _)) = &incident.severity {
                    items.push(Element::TextBlock(TextBlock {
                        weight: Some("Bolder"),
                        color: Some(color),
                        ..TextBlock::wrapped(truncate(&text.to_uppercase(), 50))
                    }));
                }
                items.push(Element::TextBlock(TextBlock {
                    weight: Some("Bolder"),
                    size: Some("Large"),
                    ..TextBlock::wrapped(truncate(&self.title, budget.title))
                }));
                vec![Element::Container {
                    style,
                    bleed: true,
                    items,
                }]
            }
        };
        if let Some(text) = self.text.as_deref().filter(|_| budget.text > 0) {
            body.push(Element::TextBlock(TextBlock::wrapped(truncate(
                text,
                budget.text,
            ))));
        }
        let facts: Vec<Fact> = self
            .facts
            .iter()
            .take(budget.facts)
            .map(|(k, v)| Fact {
                title: truncate(k, budget.fact_title),
                value: truncate(v, budget.fact_value),
            })
            .collect();
        if !facts.is_empty() {
            if self.incident.is_some() {
                body.push(Element::TextBlock(TextBlock::heading("Incident details")));
            }
            body.push(Element::FactSet { facts });
        }
        if let Some(incident) = self.incident.as_ref().filter(|_| budget.text > 0) {
            for s in &incident.steps {
                body.push(Element::TextBlock(TextBlock::heading(s.heading)));
                let mut list = String::with_capacity(256);
                for (i, item) in s.items.iter().take(STEPS_MAX).enumerate() {
                    if i > 0 {
                        list.push('\n');
                    }
                    list.push_str("- ");
                    list.push_str(item);
                }
                body.push(Element::TextBlock(TextBlock::wrapped(truncate(
                    &list,
                    budget.text,
                ))));
            }
        }
        body.push(Element::TextBlock(TextBlock {
            size: Some("Small"),
            is_subtle: Some(true),
            ..TextBlock::wrapped(self.context.clone())
        }));
        let actions =
            self.link
                .as_deref()
                .map(|url| OpenUrl {
                    kind: "Action.OpenUrl",
                    title: truncate(&self.button, 100),
                    url,
                    style: self.incident.as_ref().map(|i| {
                        match i.severity.as_ref().map(|(_, l)| *l) {
                            Some(Severity::Critical | Severity::High) => "destructive",
                            _ => "positive",
                        }
                    }),
                })
                .into_iter()
                .collect();
        Message {
            kind: "message",
            attachments: [Attachment {
                content_type: "application/vnd.microsoft.card.adaptive",
                content_url: None,
                content: Card {
                    schema: "http://adaptivecards.io/schemas/adaptive-card.json",
                    kind: "AdaptiveCard",
                    version: "1.4",
                    body,
                    actions,
                },
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::{Map, Value, json};

    fn render(options: &str, data: Value) -> (usize, Value) {
        let payload = testing::format::<Teams>(options, &testing::event(data)).unwrap();
        assert_eq!(payload.content_type, "application/json");
        (
            payload.body.len(),
            serde_json::from_slice(&payload.body).unwrap(),
        )
    }

    fn content(msg: &Value) -> &Value {
        &msg["attachments"][0]["content"]
    }

    #[test]
    fn a_digest_is_a_summary_a_list_and_its_group_as_facts() {
        let alerts: Vec<Value> = (0..25)
            .map(|i| {
                json!({"id": format!("a{i}"), "type": "finding", "time": "t",
                            "data": {"title": format!("Finding {i}"), "severity": "low"}})
            })
            .collect();
        let event = testing::event_of(
            "digest",
            json!({"group": {"tenant_name": "Acme"}, "count": 25, "alerts": alerts}),
        );
        let payload = testing::format::<Teams>("", &event).unwrap();
        let msg: Value = serde_json::from_slice(&payload.body).unwrap();
        let c = content(&msg);
        assert_eq!(
            c["body"][0]["text"],
            "Digest: 25 alerts (Tenant name: Acme)"
        );
        let list = c["body"][1]["text"].as_str().unwrap();
        assert_eq!(list.lines().count(), DIGEST_ITEMS_MAX + 1);
        assert!(
            list.starts_with("- [LOW] Finding 0 — t\n- [LOW] Finding 1 — t"),
            "{list}"
        );
        assert!(list.ends_with("- … and 5 more"), "{list}");
        assert_eq!(c["body"][2]["facts"][0]["title"], "Tenant name");
        assert_eq!(c["body"][2]["facts"][0]["value"], "Acme");
    }

    #[test]
    fn a_seed_incident_gets_a_severity_container_details_steps_and_an_action() {
        let (_, msg) = render(
            "",
            json!({"text": "Impossible travel for j.doe", "severity": "critical", "tenant_name": "Acme",
                   "user_name": "j.doe@acme.example", "incident_time_utc": "2026-11-27 22:14",
                   "incident_link": "https://soc.example/i/42",
                   "steps_taken": ["Session revoked", "MFA reset"], "next_steps": "Confirm with the user"}),
        );
        let c = content(&msg);
        let head = &c["body"][0];
        assert_eq!(
            (head["type"].as_str(), head["style"].as_str()),
            (Some("Container"), Some("attention"))
        );
        assert_eq!(head["items"][0]["text"], "CRITICAL");
        assert_eq!(head["items"][0]["color"], "Attention");
        assert_eq!(head["items"][1]["text"], "Impossible travel for j.doe");
        assert_eq!(head["items"][1]["size"], "Large");
        let texts: Vec<&str> = c["body"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert_eq!(
            texts[..5],
            [
                "Incident details",
                "Steps taken",
                "- Session revoked\n- MFA reset",
                "Next steps",
                "- Confirm with the user"
            ]
        );
        let facts: Vec<(&str, &str)> = c["body"][2]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["title"].as_str().unwrap(), f["value"].as_str().unwrap()))
            .collect();
        assert_eq!(
            facts,
            [
                ("Tenant", "Acme"),
                ("Affected identity", "j.doe@acme.example"),
                ("Time (UTC)", "2026-11-27 22:14")
            ]
        );
        let action = &c["actions"][0];
        assert_eq!(action["url"], "https://soc.example/i/42");
        assert_eq!(action["title"], "View incident");
        assert_eq!(action["style"], "destructive");
        let (_, list) = render(
            r#"{"layout":"list"}"#,
            json!({"text": "t", "steps_taken": "s"}),
        );
        assert_eq!(content(&list)["body"][0]["type"], "TextBlock");
    }

    #[test]
    fn ordinary_event() {
        let (_, msg) = render(
            "",
            json!({"title": "SQL injection", "severity": "high", "tenant_name": "Acme",
                   "description": "details", "url": "https://app/f/1"}),
        );
        assert_eq!(msg["type"], "message");
        let att = &msg["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(att["contentUrl"].is_null());
        let card = content(&msg);
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        let title = &card["body"][0];
        assert_eq!(title["text"], "SQL injection");
        assert_eq!(title["weight"], "Bolder");
        assert_eq!(title["size"], "Medium");
        assert_eq!(title["wrap"], true);
        assert_eq!(card["body"][1]["text"], "details");
        assert_eq!(
            card["body"][2]["facts"],
            json!([{"title": "Severity", "value": "high"}, {"title": "Tenant name", "value": "Acme"}])
        );
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(card["actions"][0]["url"], "https://app/f/1");
    }

    #[test]
    fn no_link_no_actions_no_facts() {
        let (_, msg) = render("", json!({"link": "ftp://x"}));
        let card = content(&msg);
        assert!(card.get("actions").is_none());
        assert_eq!(card["body"][0]["text"], testing::EVENT_TYPE);
        assert_eq!(card["body"].as_array().unwrap().len(), 2, "title + context");
    }

    #[test]
    fn hostile_events_stay_under_the_limit() {
        let mut data = Map::new();
        data.insert("title".into(), json!("\u{1}".repeat(5000)));
        data.insert("description".into(), json!("🦀\"\\".repeat(5000)));
        for i in 0..500 {
            data.insert(
                format!("f{i:03}{}", "\u{7f}".repeat(300)),
                json!("\u{2}".repeat(3000)),
            );
        }
        data.insert(
            "url".into(),
            json!(format!("https://x/{}", "a".repeat(1990))),
        );
        let (len, msg) = render("", Value::Object(data));
        assert!(len < MAX_BYTES, "{len}");
        assert_eq!(content(&msg)["body"][0]["weight"], "Bolder");

        let (len, _) = render(
            "",
            json!({"title": "x".repeat(5000), "description": "y".repeat(50_000)}),
        );
        assert!(len < MAX_BYTES, "{len}");
    }

    #[test]
    fn configured_options() {
        let (_, msg) = render(
            r#"{"title_field":"a.t","fields":["a.n","none"],"link_field":"a.u","button_text":"Open"}"#,
            json!({"a": {"t": "T", "n": 3, "u": "https://u"}}),
        );
        let card = content(&msg);
        assert_eq!(card["body"][0]["text"], "T");
        assert_eq!(
            card["body"][1]["facts"],
            json!([{"title": "A n", "value": "3"}])
        );
        assert_eq!(card["actions"][0]["title"], "Open");
        let err = Teams::create(r#"{"color":"red"}"#).unwrap_err();
        assert!(err.contains("unknown field `color`"), "{err}");
        let err = Teams::create(r#"{"fields":[""]}"#).unwrap_err();
        assert!(err.contains("fields[0]"), "{err}");
    }
}
