//! Slack formatter: renders an event as a Block Kit message for an incoming
//! webhook.
//!
//! Layout: a `header` (the title), a `section` with the description, a
//! `section` of up to ten `fields`, a `context` line (type, time, id) and,
//! when the event carries an `http(s)` link, an `actions` block with a button.
//! A top-level `text` fallback is always present. Every text is cut to
//! Slack's limits counting characters, with an ellipsis, and mrkdwn control
//! characters (`&`, `<`, `>`) are escaped, so event data cannot inject
//! mentions or links.
//!
//! Options (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `title_field` | `title` | data path of the header text (falls back to the event type) |
//! | `text_field` | `description`, `summary`, `message` | data path of the section text |
//! | `fields` | well-known keys, then the other scalar fields | data paths shown as fields |
//! | `link_field` | `url`, `link` (incident: `incident_link` first) | data path of the button link |
//! | `button_text` | `View event` (incident: `View incident`) | button label |
//! | `layout` | `auto` | `incident`, `list`, or `auto`: incident when the data has `incident_link`, `steps_taken`, `next_steps` or `incident_time_utc` |
//! | `steps_taken_field` | `steps_taken` | data path of "Steps taken" (text or list) |
//! | `next_steps_field` | `next_steps` | data path of "Next steps" (text or list) |
//! | `severity_field` | `severity` | data path of the severity that sets the emphasis |
//!
//! The incident layout (the seed's alert): a header with a severity marker
//! (🔴 critical, 🟠 high, 🟡 medium, 🔵 low) and the incident summary
//! (`title`, else `text`); the summary text; "Incident details" as fields
//! (Tenant, Affected identity, Time (UTC) first, then the severity and the
//! other fields); a divider; "Steps taken" and "Next steps" as bulleted
//! sections; a button to the incident (`danger` style for critical and high,
//! `primary` otherwise); the context line.

use relay_sdk::card::{CardOptions, Digest, Severity, is_web_url};
use relay_sdk::text::{ELLIPSIS, char_len, one_line};
use relay_sdk::{Event, Formatter, Payload};
use serde::Serialize;

/// Slack's limit on header text.
pub const HEADER_MAX: usize = 150;
/// Slack's limit on a section's text.
pub const SECTION_TEXT_MAX: usize = 3000;
/// Slack's limit on the number of fields in a section.
pub const FIELDS_MAX: usize = 10;
/// Slack's limit on one field's text.
pub const FIELD_MAX: usize = 2000;
/// Slack's limit on a button label.
pub const BUTTON_TEXT_MAX: usize = 75;
/// Slack's limit on a button URL.
pub const URL_MAX: usize = 3000;
/// Limit on a context element's text.
pub const CONTEXT_TEXT_MAX: usize = 3000;
/// Limit on the top-level fallback `text` (Slack's is 40,000; notifications show far less).
pub const FALLBACK_MAX: usize = 3000;
/// Limit on a field label.
const LABEL_MAX: usize = 100;

/// The Slack Block Kit formatter.
#[derive(Debug)]
pub struct Slack {
    options: CardOptions,
}

impl Formatter for Slack {
    fn create(options: &str) -> Result<Self, String> {
        CardOptions::parse(options).map(|options| Slack { options })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Payload::json(&self.message(event))
    }
}

relay_sdk::export_formatter!(Slack);

/// A Block Kit message, serialized straight from these types (building a
/// `serde_json::Value` tree first cost more than the rest of the call).
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    text: String,
    blocks: Vec<Block<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Block<'a> {
    Header {
        text: Text,
    },
    Section {
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<Text>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fields: Vec<Text>,
    },
    Actions {
        elements: [Button<'a>; 1],
    },
    Context {
        elements: [Text; 1],
    },
    Divider {},
}

/// A text object: `plain_text` (with `emoji`) or `mrkdwn`.
#[derive(Debug, Serialize)]
struct Text {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<bool>,
}

impl Text {
    fn plain(text: String) -> Text {
        Text {
            kind: "plain_text",
            text,
            emoji: Some(true),
        }
    }

    fn mrkdwn(text: String) -> Text {
        Text {
            kind: "mrkdwn",
            text,
            emoji: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct Button<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Text,
    url: &'a str,
    action_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    style: Option<&'static str>,
}

impl Slack {
    /// Builds the whole message (`text` + `blocks`).
    pub fn message<'a>(&self, event: &'a Event) -> Message<'a> {
        if let Some(d) = Digest::of(event) {
            return digest(event, &d);
        }
        if self.options.is_incident(event) {
            return self.incident(event);
        }
        let title_path = self.options.title_path();
        let title = event
            .scalar(title_path)
            .map(|t| one_line(&t))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| event.event_type.clone());
        let title = if title.trim().is_empty() {
            "Event".to_string()
        } else {
            title
        };

        let text_path = self.options.text_path(event);
        let link_path = self.options.link_path(event);
        let link = link_path
            .and_then(|p| event.str(p))
            .filter(|l| is_web_url(l) && l.chars().count() <= URL_MAX);

        let mut blocks = vec![Block::Header {
            text: Text::plain(relay_sdk::text::truncate(&title, HEADER_MAX)),
        }];

        if let Some(text) = text_path
            .and_then(|p| event.scalar(p))
            .filter(|t| !t.trim().is_empty())
        {
            blocks.push(Block::Section {
                text: Some(Text::mrkdwn(mrkdwn(&text, SECTION_TEXT_MAX))),
                fields: vec![],
            });
        }

        let used = [Some(title_path), text_path, link_path];
        let fields: Vec<Text> = self
            .options
            .fields(event, &used)
            .into_iter()
            .take(FIELDS_MAX)
            .map(|(label, value)| Text::mrkdwn(field_text(&label, &value)))
            .collect();
        if !fields.is_empty() {
            blocks.push(Block::Section { text: None, fields });
        }

        if let Some(url) = link {
            let label = self.options.button_text.as_deref().unwrap_or("View event");
            blocks.push(Block::Actions {
                elements: [Button {
                    kind: "button",
                    text: Text::plain(relay_sdk::text::truncate(&one_line(label), BUTTON_TEXT_MAX)),
                    url,
                    action_id: "relay-open-link",
                    style: None,
                }],
            });
        }

        let context = [event.event_type.as_str(), &event.time, &event.id].join(" · ");
        blocks.push(Block::Context {
            elements: [Text::mrkdwn(mrkdwn(&context, CONTEXT_TEXT_MAX))],
        });

        let fallback = match event.scalar("severity") {
            Some(sev) if !sev.is_empty() => ["[", &one_line(&sev), "] ", &title].concat(),
            _ => title,
        };
        Message {
            text: mrkdwn(&fallback, FALLBACK_MAX),
            blocks,
        }
    }
}

/// The severity marker of an incident header.
fn marker(level: Severity) -> &'static str {
    match level {
        Severity::Critical => "🔴",
        Severity::High => "🟠",
        Severity::Medium => "🟡",
        Severity::Low => "🔵",
        Severity::Info => "⚪",
    }
}

/// Most items shown per steps section.
const STEPS_MAX: usize = 20;

impl Slack {
    /// The seed's incident layout (see the module documentation).
    fn incident<'a>(&self, event: &'a Event) -> Message<'a> {
        let o = &self.options;
        let title_path = o.incident_title_path(event);
        let summary = event
            .scalar(title_path)
            .map(|t| one_line(&t))
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| event.event_type.clone());
        let summary = if summary.trim().is_empty() {
            "Incident".to_string()
        } else {
            summary
        };
        let severity = o.severity(event);
        let header = match &severity {
            Some((_, level)) => [marker(*level), " ", &summary].concat(),
            None => summary.clone(),
        };
        let mut blocks = vec![Block::Header {
            text: Text::plain(relay_sdk::text::truncate(&header, HEADER_MAX)),
        }];
        let text_path = o.text_path(event).filter(|p| *p != title_path);
        if let Some(text) = text_path
            .and_then(|p| event.scalar(p))
            .filter(|t| !t.trim().is_empty())
        {
            blocks.push(Block::Section {
                text: Some(Text::mrkdwn(mrkdwn(&text, SECTION_TEXT_MAX))),
                fields: vec![],
            });
        }
        let link_path = o.incident_link_path(event);
        let severity_path = o.severity_field.as_deref().unwrap_or("severity");
        let used = [Some(title_path), text_path, link_path, Some(severity_path)];
        let mut details = o.incident_details(event, &used);
        if let Some((text, _)) = &severity
            && o.fields.is_none()
        {
            // After the seed's three details: tenant, identity, time.
            let at = details.len().min(3);
            details.insert(at, ("Severity".to_string(), text.to_uppercase()));
        }
        let fields: Vec<Text> = details
            .into_iter()
            .take(FIELDS_MAX)
            .map(|(label, value)| Text::mrkdwn(field_text(&label, &value)))
            .collect();
        if !fields.is_empty() {
            blocks.push(Block::Section {
                text: Some(Text::mrkdwn("*Incident details*".into())),
                fields,
            });
        }
        let steps = o.steps(event);
        if !steps.is_empty() {
            blocks.push(Block::Divider {});
        }
        for s in steps {
            let mut text = String::with_capacity(256);
            text.push('*');
            text.push_str(s.heading);
            text.push('*');
            for item in s.items.iter().take(STEPS_MAX) {
                text.push_str("\n• ");
                text.push_str(item);
            }
            if s.items.len() > STEPS_MAX {
                text.push_str("\n• …");
            }
            // The heading has nothing to escape: escape the whole text once.
            blocks.push(Block::Section {
                text: Some(Text::mrkdwn(mrkdwn(&text, SECTION_TEXT_MAX))),
                fields: vec![],
            });
        }
        let link = link_path
            .and_then(|p| event.str(p))
            .filter(|l| is_web_url(l) && l.chars().count() <= URL_MAX);
        if let Some(url) = link {
            let label = o.button_text.as_deref().unwrap_or("View incident");
            let style = match severity.as_ref().map(|(_, l)| *l) {
                Some(Severity::Critical | Severity::High) => "danger",
                _ => "primary",
            };
            blocks.push(Block::Actions {
                elements: [Button {
                    kind: "button",
                    text: Text::plain(relay_sdk::text::truncate(&one_line(label), BUTTON_TEXT_MAX)),
                    url,
                    action_id: "relay-open-incident",
                    style: Some(style),
                }],
            });
        }
        let context = [event.event_type.as_str(), &event.time, &event.id].join(" · ");
        blocks.push(Block::Context {
            elements: [Text::mrkdwn(mrkdwn(&context, CONTEXT_TEXT_MAX))],
        });
        let fallback = match &severity {
            Some((text, _)) => ["[", text, "] ", &summary].concat(),
            None => summary,
        };
        Message {
            text: mrkdwn(&fallback, FALLBACK_MAX),
            blocks,
        }
    }
}

/// Alerts listed by name in a digest message (the rest are counted).
pub const DIGEST_ITEMS_MAX: usize = 20;
/// Characters of one alert's title in a digest list.
const DIGEST_TITLE_MAX: usize = 150;

/// A digest (relay's `digest` event): a header with the count and group,
/// the group as fields, the alerts as a bulleted list (severity, title,
/// time; at most [`DIGEST_ITEMS_MAX`], then how many more), the context
/// line.
fn digest<'a>(event: &'a Event, d: &Digest) -> Message<'a> {
    let summary = d.summary();
    let mut blocks = vec![Block::Header {
        text: Text::plain(relay_sdk::text::truncate(
            &["📋 ", &summary].concat(),
            HEADER_MAX,
        )),
    }];
    let fields: Vec<Text> = d
        .group
        .iter()
        .take(FIELDS_MAX)
        .map(|(label, value)| Text::mrkdwn(field_text(label, value)))
        .collect();
    if !fields.is_empty() {
        blocks.push(Block::Section { text: None, fields });
    }
    let mut list = String::with_capacity(64 * d.items.len().min(DIGEST_ITEMS_MAX));
    for item in d.items.iter().take(DIGEST_ITEMS_MAX) {
        if !list.is_empty() {
            list.push('\n');
        }
        list.push_str("• ");
        if let Some(sev) = &item.severity {
            list.push('[');
            list.push_str(&relay_sdk::text::truncate(&sev.to_uppercase(), 20));
            list.push_str("] ");
        }
        list.push_str(&relay_sdk::text::truncate(&item.title, DIGEST_TITLE_MAX));
        if !item.time.is_empty() {
            list.push_str(" — ");
            list.push_str(&relay_sdk::text::truncate(&item.time, 40));
        }
    }
    let shown = d.items.len().min(DIGEST_ITEMS_MAX);
    if d.count > shown {
        list.push_str(&format!("\n… and {} more", d.count - shown));
    }
    if !list.is_empty() {
        blocks.push(Block::Section {
            text: Some(Text::mrkdwn(mrkdwn(&list, SECTION_TEXT_MAX))),
            fields: vec![],
        });
    }
    let context = [event.event_type.as_str(), &event.time, &event.id].join(" · ");
    blocks.push(Block::Context {
        elements: [Text::mrkdwn(mrkdwn(&context, CONTEXT_TEXT_MAX))],
    });
    Message {
        text: mrkdwn(&summary, FALLBACK_MAX),
        blocks,
    }
}

/// A field's mrkdwn text, `*Label*\nvalue`, within [`FIELD_MAX`] characters.
fn field_text(label: &str, value: &str) -> String {
    // Written into one buffer: `format!` and the intermediate strings were a
    // third of this plugin's time in wasm.
    let mut out = String::with_capacity(label.len() + value.len() + 8);
    out.push('*');
    push_mrkdwn(&mut out, label, LABEL_MAX);
    let label_chars = char_len(&out[1..]);
    out.push_str("*\n");
    push_mrkdwn(&mut out, value, FIELD_MAX - (label_chars + 3));
    out
}

/// Width of a character once escaped for mrkdwn.
fn escaped_width(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// Escapes `&`, `<`, `>` for mrkdwn and cuts the result to `max_chars`
/// characters (with an ellipsis), never splitting an entity.
pub fn mrkdwn(raw: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(raw.len());
    push_mrkdwn(&mut out, raw, max_chars);
    out
}

/// [`mrkdwn`] appended to `out`.
fn push_mrkdwn(out: &mut String, raw: &str, max_chars: usize) {
    // Most text has nothing to escape and fits: its byte length bounds its
    // character count, so one scan of the bytes decides.
    if raw.len() <= max_chars && !raw.bytes().any(|b| matches!(b, b'&' | b'<' | b'>')) {
        out.push_str(raw);
        return;
    }
    let total: usize = raw.chars().map(escaped_width).sum();
    let limit = if total <= max_chars {
        usize::MAX
    } else {
        max_chars.saturating_sub(1)
    };
    out.reserve(raw.len().min(max_chars * 4));
    let mut used = 0;
    for c in raw.chars() {
        let w = escaped_width(c);
        if used + w > limit {
            break;
        }
        used += w;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    if total > max_chars && max_chars > 0 {
        out.push(ELLIPSIS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::{Value, json};

    fn render(options: &str, data: Value) -> Value {
        let payload = testing::format::<Slack>(options, &testing::event(data)).unwrap();
        assert_eq!(payload.content_type, "application/json");
        serde_json::from_slice(&payload.body).unwrap()
    }

    fn block<'a>(msg: &'a Value, kind: &str) -> Option<&'a Value> {
        msg["blocks"].as_array()?.iter().find(|b| b["type"] == kind)
    }

    #[test]
    fn ordinary_event() {
        let msg = render(
            "",
            json!({"title": "SQL injection in /login", "severity": "critical", "tenant_name": "Acme",
                   "description": "Found by <scanner> & co", "url": "https://app.example/f/1"}),
        );
        assert_eq!(msg["text"], "[critical] SQL injection in /login");
        assert_eq!(
            block(&msg, "header").unwrap()["text"]["text"],
            "SQL injection in /login"
        );
        let section = msg["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(section, "Found by &lt;scanner&gt; &amp; co");
        let fields = block(&msg, "section")
            .map(|_| &msg["blocks"][2]["fields"])
            .unwrap();
        assert_eq!(fields[0]["text"], "*Severity*\ncritical");
        assert_eq!(fields[1]["text"], "*Tenant name*\nAcme");
        assert_eq!(
            fields.as_array().unwrap().len(),
            2,
            "title/url/description are not fields"
        );
        let button = &block(&msg, "actions").unwrap()["elements"][0];
        assert_eq!(button["url"], "https://app.example/f/1");
        let context = block(&msg, "context").unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(context.contains(testing::EVENT_ID) && context.contains(testing::EVENT_TYPE));
    }

    #[test]
    fn no_title_falls_back_to_type_and_no_link_no_button() {
        let msg = render(
            "{}",
            json!({"severity": "low", "link": "javascript:alert(1)"}),
        );
        assert_eq!(
            block(&msg, "header").unwrap()["text"]["text"],
            testing::EVENT_TYPE
        );
        assert!(block(&msg, "actions").is_none());
        assert_eq!(msg["text"], format!("[low] {}", testing::EVENT_TYPE));
    }

    #[test]
    fn hostile_event_stays_within_limits() {
        let mut data = serde_json::Map::new();
        data.insert(
            "title".into(),
            json!("<!channel> ".repeat(500) + &"T".repeat(5000)),
        );
        data.insert("description".into(), json!("&".repeat(5000)));
        for i in 0..40 {
            data.insert(
                format!("field_{i:02}_{}", "k".repeat(300)),
                json!("<&>".repeat(2000)),
            );
        }
        data.insert(
            "url".into(),
            json!(format!("https://x.example/{}", "a".repeat(4000))),
        );
        let msg = render("", Value::Object(data));

        let header = block(&msg, "header").unwrap()["text"]["text"]
            .as_str()
            .unwrap();
        assert_eq!(char_len(header), HEADER_MAX);
        assert!(header.ends_with(ELLIPSIS));
        let section = msg["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(char_len(section) <= SECTION_TEXT_MAX);
        assert!(
            section.trim_end_matches(ELLIPSIS).ends_with("&amp;"),
            "entity split"
        );
        let fields = msg["blocks"][2]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), FIELDS_MAX);
        for f in fields {
            let t = f["text"].as_str().unwrap();
            assert!(char_len(t) <= FIELD_MAX, "{}", char_len(t));
            assert!(!t.contains('<') && !t.contains('>'));
        }
        assert!(
            block(&msg, "actions").is_none(),
            "over-long URL must not become a button"
        );
        assert!(char_len(msg["text"].as_str().unwrap()) <= FALLBACK_MAX);
        assert!(msg["blocks"].as_array().unwrap().len() <= 50);
    }

    #[test]
    fn configured_fields_title_and_button() {
        let msg = render(
            r#"{"title_field":"finding.name","fields":["finding.cvss","missing","tenant"],
                "link_field":"finding.href","button_text":"Open in Console"}"#,
            json!({"finding": {"name": "XSS", "cvss": 7.5, "href": "http://console/x"}, "tenant": "Acme"}),
        );
        assert_eq!(block(&msg, "header").unwrap()["text"]["text"], "XSS");
        let fields = msg["blocks"][1]["fields"].as_array().unwrap();
        let texts: Vec<&str> = fields.iter().map(|f| f["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["*Finding cvss*\n7.5", "*Tenant*\nAcme"]);
        let button = &block(&msg, "actions").unwrap()["elements"][0];
        assert_eq!(button["text"]["text"], "Open in Console");
        assert_eq!(button["url"], "http://console/x");
    }

    fn seed_incident() -> Value {
        json!({"text": "Impossible travel for j.doe", "severity": "high", "tenant_name": "Acme",
               "user_name": "j.doe@acme.example", "incident_time_utc": "2026-11-27 22:14",
               "incident_link": "https://soc.example/i/42",
               "steps_taken": ["Session revoked", "MFA reset <forced>"],
               "next_steps": "Confirm with the user\nClose the incident"})
    }

    #[test]
    fn a_seed_incident_gets_header_details_steps_and_a_button() {
        let msg = render("", seed_incident());
        let kinds: Vec<&str> = msg["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "header", "section", "divider", "section", "section", "actions", "context"
            ]
        );
        assert_eq!(
            msg["blocks"][0]["text"]["text"],
            "🟠 Impossible travel for j.doe"
        );
        assert_eq!(msg["text"], "[high] Impossible travel for j.doe");
        let details = &msg["blocks"][1];
        assert_eq!(details["text"]["text"], "*Incident details*");
        let fields: Vec<&str> = details["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Tenant*\nAcme",
                "*Affected identity*\nj.doe@acme.example",
                "*Time (UTC)*\n2026-11-27 22:14",
                "*Severity*\nHIGH"
            ]
        );
        assert_eq!(
            msg["blocks"][3]["text"]["text"],
            "*Steps taken*\n• Session revoked\n• MFA reset &lt;forced&gt;"
        );
        assert_eq!(
            msg["blocks"][4]["text"]["text"],
            "*Next steps*\n• Confirm with the user\n• Close the incident"
        );
        let button = &msg["blocks"][5]["elements"][0];
        assert_eq!(button["url"], "https://soc.example/i/42");
        assert_eq!(button["text"]["text"], "View incident");
        assert_eq!(button["style"], "danger");
    }

    #[test]
    fn the_incident_layout_follows_its_options() {
        let msg = render(r#"{"layout":"list"}"#, seed_incident());
        assert!(
            msg["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["type"] != "divider")
        );
        let msg = render(
            r#"{"layout":"incident","steps_taken_field":"done","button_text":"Open case"}"#,
            json!({"title": "Low thing", "severity": "low", "done": "Scanned", "url": "https://x.example/1"}),
        );
        assert_eq!(msg["blocks"][0]["text"]["text"], "🔵 Low thing");
        let steps = msg["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| {
                b["text"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("*Steps taken*"))
            })
            .unwrap();
        assert_eq!(steps["text"]["text"], "*Steps taken*\n• Scanned");
        let button = &block(&msg, "actions").unwrap()["elements"][0];
        assert_eq!(
            (button["style"].as_str(), button["text"]["text"].as_str()),
            (Some("primary"), Some("Open case"))
        );
        let e = Slack::create(r#"{"layout":"cards"}"#).unwrap_err();
        assert!(e.contains("layout"), "{e}");
    }

    fn digest_of(n: usize) -> Value {
        let alerts: Vec<Value> = (0..n)
            .map(|i| {
                json!({"id": format!("a{i}"), "type": "finding", "time": "2026-01-01T00:00:00Z",
                            "data": {"title": format!("Finding <{i}>"), "severity": "high"}})
            })
            .collect();
        json!({"group": {"tenant_name": "Acme"}, "count": n, "alerts": alerts})
    }

    #[test]
    fn a_digest_is_a_summary_and_a_list_of_its_alerts() {
        let payload =
            testing::format::<Slack>("", &testing::event_of("digest", digest_of(3))).unwrap();
        let msg: Value = serde_json::from_slice(&payload.body).unwrap();
        assert_eq!(msg["text"], "Digest: 3 alerts (Tenant name: Acme)");
        assert_eq!(
            msg["blocks"][0]["text"]["text"],
            "📋 Digest: 3 alerts (Tenant name: Acme)"
        );
        assert_eq!(msg["blocks"][1]["fields"][0]["text"], "*Tenant name*\nAcme");
        assert_eq!(
            msg["blocks"][2]["text"]["text"],
            "• [HIGH] Finding &lt;0&gt; — 2026-01-01T00:00:00Z\n• [HIGH] Finding &lt;1&gt; — 2026-01-01T00:00:00Z\n• [HIGH] Finding &lt;2&gt; — 2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_long_digest_lists_twenty_and_counts_the_rest() {
        let payload =
            testing::format::<Slack>("", &testing::event_of("digest", digest_of(50))).unwrap();
        let msg: Value = serde_json::from_slice(&payload.body).unwrap();
        let list = msg["blocks"][2]["text"]["text"].as_str().unwrap();
        assert_eq!(list.lines().count(), DIGEST_ITEMS_MAX + 1);
        assert!(list.ends_with("… and 30 more"), "{list}");
    }

    #[test]
    fn bad_options_are_named() {
        let err = Slack::create(r#"{"title":"x"}"#).unwrap_err();
        assert!(err.contains("unknown field `title`"), "{err}");
        let err = Slack::create(r#"{"fields":"severity"}"#).unwrap_err();
        assert!(err.contains("fields"), "{err}");
        let err = Slack::create(r#"{"fields":["a",""]}"#).unwrap_err();
        assert!(err.contains("fields[1]"), "{err}");
        let err = Slack::create(r#"{"button_text":" "}"#).unwrap_err();
        assert!(err.contains("button_text"), "{err}");
    }

    #[test]
    fn mrkdwn_escapes_and_truncates_on_entity_boundaries() {
        assert_eq!(mrkdwn("a<b>&c", 100), "a&lt;b&gt;&amp;c");
        assert_eq!(mrkdwn("abcdef", 4), "abc…");
        assert_eq!(mrkdwn("&&&", 10), "&amp;…");
        assert_eq!(mrkdwn("&&&", 11), "&amp;&amp;…");
        assert_eq!(mrkdwn("&&", 10), "&amp;&amp;");
        assert_eq!(mrkdwn("abc", 0), "");
        // Nothing to escape and within the limit: unchanged.
        assert_eq!(mrkdwn("plain text", 10), "plain text");
        assert_eq!(mrkdwn("plain text", 9), "plain te…");
        // Multi-byte text is counted in characters, not bytes.
        assert_eq!(mrkdwn("ééé", 3), "ééé");
        for max in 0..30 {
            assert!(char_len(&mrkdwn("x<&>y".repeat(5).as_str(), max)) <= max);
        }
    }
}
