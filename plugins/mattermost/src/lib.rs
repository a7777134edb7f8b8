//! Mattermost formatter: renders an event for a Mattermost incoming webhook
//! (`POST https://mattermost.example/hooks/{key}`, JSON).
//!
//! Layout: `text` is a one-line summary (`#### [severity] title`); one
//! message attachment carries `fallback`, a `color` by severity, the title
//! (with `title_link` when the event has an `http(s)` link), the
//! description as `text`, up to 20 short `fields` and a `footer` (type ·
//! id · time).
//!
//! Event data is Markdown-escaped (`* _ ~ ` [ ] # | < > \`) and every `@`
//! is followed by a zero-width space, so data cannot format the post or
//! mention `@channel`/`@all`. Mattermost's documented limit is 16,383
//! characters per post: `text` and the attachment's texts together stay
//! under it (fields are dropped from the end, then the description is cut).
//! Mattermost answers `200 ok`; the core's JSON delivery treats other
//! answers as usual (5xx/429 retry).
//!
//! Options (all optional): `title_field`, `text_field`, `fields`,
//! `link_field`, `button_text` (unused), as for the Slack formatter.

use relay_sdk::card::{CardOptions, is_web_url};
use relay_sdk::text::{char_len, one_line, truncate};
use relay_sdk::{Event, Formatter, Payload};
use serde::Serialize;

/// Mattermost's limit on a post (message and attachments), in characters.
pub const POST_MAX: usize = 16_383;
/// Limit on the title (Mattermost shows one line).
pub const TITLE_MAX: usize = 256;
/// Fields shown at most.
pub const FIELDS_MAX: usize = 20;
/// Limit on one field value.
pub const FIELD_VALUE_MAX: usize = 1000;
/// Limit on a field title.
const FIELD_TITLE_MAX: usize = 100;

/// The Mattermost formatter.
#[derive(Debug)]
pub struct Mattermost {
    options: CardOptions,
}

impl Formatter for Mattermost {
    fn create(options: &str) -> Result<Self, String> {
        CardOptions::parse(options).map(|options| Mattermost { options })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Payload::json(&self.message(event))
    }
}

relay_sdk::export_formatter!(Mattermost);

/// A Mattermost incoming-webhook message.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    text: String,
    attachments: [Attachment<'a>; 1],
}

#[derive(Debug, Serialize)]
struct Attachment<'a> {
    fallback: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'static str>,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    title_link: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<Field>,
    footer: String,
}

#[derive(Debug, Serialize)]
struct Field {
    short: bool,
    title: String,
    value: String,
}

/// Attachment colour by severity.
pub fn severity_color(severity: &str) -> Option<&'static str> {
    match severity.trim().to_ascii_lowercase().as_str() {
        "critical" => Some("#B00020"),
        "high" => Some("#E65100"),
        "medium" => Some("#F9A825"),
        "low" => Some("#1565C0"),
        "info" | "informational" => Some("#757575"),
        _ => None,
    }
}

/// Escapes Markdown and defuses mentions, then cuts to `max` characters.
pub fn escape(raw: &str, max: usize) -> String {
    let cut = truncate(raw, max);
    let mut out = String::with_capacity(cut.len() + 8);
    for c in cut.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '[' | ']' | '#' | '|' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            c => out.push(c),
        }
    }
    out
}

impl Mattermost {
    /// Builds the whole message.
    pub fn message<'a>(&self, event: &'a Event) -> Message<'a> {
        let title_path = self.options.title_path();
        let raw_title = event
            .text(title_path)
            .map(|t| one_line(&t))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| one_line(&event.event_type));
        let raw_title = if raw_title.is_empty() {
            "Event".to_string()
        } else {
            raw_title
        };
        let text_path = self.options.text_path(event);
        let link_path = self.options.link_path(event);
        let link = link_path
            .and_then(|p| event.str(p))
            .filter(|l| is_web_url(l));
        let severity = event
            .text("severity")
            .map(|s| one_line(&s))
            .filter(|s| !s.is_empty());

        let title = escape(&raw_title, TITLE_MAX);
        let summary = match &severity {
            Some(sev) => format!("[{sev}] {raw_title}"),
            None => raw_title.clone(),
        };
        let text = format!("#### {}", escape(&summary, TITLE_MAX + 32));
        let fallback = truncate(&summary, TITLE_MAX + 32);
        let footer = escape(
            &[event.event_type.as_str(), &event.id, &event.time].join(" · "),
            300,
        );
        // Escaping can double a text's length; the budget counts what is sent.
        let mut budget = POST_MAX
            - char_len(&text)
            - char_len(&fallback)
            - char_len(&title)
            - char_len(&footer)
            - link.map_or(0, char_len);
        let used = [Some(title_path), text_path, link_path];
        let mut fields = Vec::new();
        for (label, value) in self.options.fields(event, &used) {
            if fields.len() == FIELDS_MAX {
                break;
            }
            let field = Field {
                short: true,
                title: escape(&one_line(&label), FIELD_TITLE_MAX),
                value: escape(&value, FIELD_VALUE_MAX),
            };
            let cost = char_len(&field.title) + char_len(&field.value);
            if cost > budget {
                break;
            }
            budget -= cost;
            fields.push(field);
        }
        let description = text_path
            .and_then(|p| event.text(p))
            .filter(|t| !t.trim().is_empty())
            .map(|t| escape(&t, budget / 2))
            .filter(|t| !t.is_empty());
        Message {
            text,
            attachments: [Attachment {
                fallback,
                color: severity.as_deref().and_then(severity_color),
                title,
                title_link: link,
                text: description,
                fields,
                footer,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::{Value, json};

    fn render(data: Value) -> Value {
        let payload = testing::format::<Mattermost>("", &testing::event(data)).unwrap();
        assert_eq!(payload.content_type, "application/json");
        serde_json::from_slice(&payload.body).unwrap()
    }

    fn total_chars(m: &Value) -> usize {
        let s = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        let a = &m["attachments"][0];
        let mut n = s(&m["text"])
            + s(&a["fallback"])
            + s(&a["title"])
            + s(&a["title_link"])
            + s(&a["text"])
            + s(&a["footer"]);
        for f in a["fields"].as_array().into_iter().flatten() {
            n += s(&f["title"]) + s(&f["value"]);
        }
        n
    }

    #[test]
    fn ordinary_event_has_text_and_one_attachment() {
        let m = render(json!({"title": "SQL injection", "severity": "high",
            "description": "found", "url": "https://app.example/f/1", "host": "web-01"}));
        assert_eq!(m["text"], "#### \\[high\\] SQL injection");
        let a = &m["attachments"][0];
        assert_eq!(a["fallback"], "[high] SQL injection");
        assert_eq!(a["color"], "#E65100");
        assert_eq!(a["title"], "SQL injection");
        assert_eq!(a["title_link"], "https://app.example/f/1");
        assert_eq!(a["text"], "found");
        assert_eq!(
            a["fields"],
            json!([{"short": true, "title": "Severity", "value": "high"},
                   {"short": true, "title": "Host", "value": "web-01"}])
        );
    }

    #[test]
    fn markdown_and_mentions_in_data_are_defused() {
        let m =
            render(json!({"title": "@channel *bold* [x](https://evil)", "description": "<!here>"}));
        let a = &m["attachments"][0];
        assert_eq!(
            a["title"],
            "@\u{200B}channel \\*bold\\* \\[x\\](https://evil)"
        );
        assert_eq!(a["text"], "\\<!here\\>");
    }

    #[test]
    fn a_huge_event_stays_within_the_post_limit() {
        let mut data = serde_json::Map::new();
        data.insert("title".into(), json!("T".repeat(1000)));
        data.insert("description".into(), json!("*".repeat(20_000)));
        for i in 0..40 {
            data.insert(format!("f{i:02}"), json!("_".repeat(3000)));
        }
        let m = render(Value::Object(data));
        assert!(total_chars(&m) <= POST_MAX, "{}", total_chars(&m));
        assert!(m["attachments"][0]["fields"].as_array().unwrap().len() <= FIELDS_MAX);
    }
}
