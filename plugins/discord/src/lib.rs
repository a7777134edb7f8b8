//! Discord formatter: renders an event as a Discord webhook message
//! (`POST https://discord.com/api/webhooks/{id}/{token}`, JSON).
//!
//! Layout: `content` is a one-line summary (`**[severity]** title`); one
//! embed carries the title (linked to the event's `http(s)` link), the
//! description, up to 25 inline fields, a colour by severity, the event
//! time as `timestamp` and a footer (type · id). `allowed_mentions` is
//! `{"parse": []}`, so `@everyone` or a role id in event data pings nobody.
//!
//! Discord's documented limits, counted in characters, each cut with an
//! ellipsis: `content` 2,000; embed title 256, description 4,096, field name
//! 256, field value 1,024, footer 2,048, 25 fields; and 6,000 for all of an
//! embed's texts together (fields are dropped from the end, then the
//! description is cut, until the embed fits). Discord answers `204 No
//! Content` (or `200` with `?wait=true`) on success and `429` with
//! `Retry-After` when rate limited: the core's JSON delivery retries that.
//!
//! Options (all optional): `title_field`, `text_field`, `fields`,
//! `link_field`, `button_text` (unused: Discord webhooks have no buttons; the
//! title links instead), as for the Slack formatter.

use relay_sdk::card::{CardOptions, is_web_url};
use relay_sdk::text::{char_len, one_line, truncate};
use relay_sdk::{Event, Formatter, Payload};
use serde::Serialize;

/// Discord's limit on `content`.
pub const CONTENT_MAX: usize = 2000;
/// Discord's limit on an embed title.
pub const TITLE_MAX: usize = 256;
/// Discord's limit on an embed description.
pub const DESCRIPTION_MAX: usize = 4096;
/// Discord's limit on embed fields.
pub const FIELDS_MAX: usize = 25;
/// Discord's limit on a field name.
pub const FIELD_NAME_MAX: usize = 256;
/// Discord's limit on a field value.
pub const FIELD_VALUE_MAX: usize = 1024;
/// Discord's limit on footer text.
pub const FOOTER_MAX: usize = 2048;
/// Discord's limit on all of an embed's texts together.
pub const EMBED_TOTAL_MAX: usize = 6000;

/// The Discord formatter.
#[derive(Debug)]
pub struct Discord {
    options: CardOptions,
}

impl Formatter for Discord {
    fn create(options: &str) -> Result<Self, String> {
        CardOptions::parse(options).map(|options| Discord { options })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Payload::json(&self.message(event))
    }
}

relay_sdk::export_formatter!(Discord);

/// A Discord webhook message.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    content: String,
    embeds: [Embed<'a>; 1],
    allowed_mentions: AllowedMentions,
}

#[derive(Debug, Serialize)]
struct AllowedMentions {
    parse: [&'static str; 0],
}

#[derive(Debug, Serialize)]
struct Embed<'a> {
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<Field>,
    footer: Footer,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Field {
    name: String,
    value: String,
    inline: bool,
}

#[derive(Debug, Serialize)]
struct Footer {
    text: String,
}

/// Embed colour by severity (Discord takes an integer RGB).
pub fn severity_color(severity: &str) -> Option<u32> {
    match severity.trim().to_ascii_lowercase().as_str() {
        "critical" => Some(0xB0_00_20),
        "high" => Some(0xE6_51_00),
        "medium" => Some(0xF9_A8_25),
        "low" => Some(0x15_65_C0),
        "info" | "informational" => Some(0x75_75_75),
        _ => None,
    }
}

impl Discord {
    /// Builds the whole message.
    pub fn message<'a>(&self, event: &'a Event) -> Message<'a> {
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
        let url = link_path
            .and_then(|p| event.str(p))
            .filter(|l| is_web_url(l));
        let severity = event.text("severity").filter(|s| !s.trim().is_empty());

        let title = truncate(&title, TITLE_MAX);
        let footer = Footer {
            text: truncate(
                &[event.event_type.as_str(), &event.id].join(" · "),
                FOOTER_MAX,
            ),
        };
        let mut budget = EMBED_TOTAL_MAX - char_len(&title) - char_len(&footer.text);
        let used = [Some(title_path), text_path, link_path];
        let mut fields = Vec::new();
        for (label, value) in self.options.fields(event, &used).into_iter() {
            if fields.len() == FIELDS_MAX {
                break;
            }
            let name = truncate(&one_line(&label), FIELD_NAME_MAX);
            let value = truncate(&value, FIELD_VALUE_MAX);
            // Discord refuses empty field values.
            let value = if value.trim().is_empty() {
                "-".to_string()
            } else {
                value
            };
            let cost = char_len(&name) + char_len(&value);
            if cost > budget {
                break;
            }
            budget -= cost;
            fields.push(Field {
                name,
                value,
                inline: true,
            });
        }
        let description = text_path
            .and_then(|p| event.text(p))
            .filter(|t| !t.trim().is_empty())
            .map(|t| truncate(&t, DESCRIPTION_MAX.min(budget)))
            .filter(|t| !t.is_empty());

        let content = match &severity {
            Some(sev) => format!("**[{}]** {}", one_line(sev), title),
            None => title.clone(),
        };
        Message {
            content: truncate(&content, CONTENT_MAX),
            embeds: [Embed {
                title,
                url,
                description,
                color: severity.as_deref().and_then(severity_color),
                fields,
                footer,
                timestamp: Some(event.time.as_str()).filter(|t| !t.is_empty()),
            }],
            allowed_mentions: AllowedMentions { parse: [] },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::{Value, json};

    fn render(options: &str, data: Value) -> Value {
        let payload = testing::format::<Discord>(options, &testing::event(data)).unwrap();
        assert_eq!(payload.content_type, "application/json");
        serde_json::from_slice(&payload.body).unwrap()
    }

    fn embed_chars(embed: &Value) -> usize {
        let s = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        let mut n = s(&embed["title"]) + s(&embed["description"]) + s(&embed["footer"]["text"]);
        for f in embed["fields"].as_array().into_iter().flatten() {
            n += s(&f["name"]) + s(&f["value"]);
        }
        n
    }

    #[test]
    fn ordinary_event_has_content_and_one_embed() {
        let m = render(
            "",
            json!({"title": "SQL injection", "severity": "critical", "description": "desc",
                   "url": "https://app.example/f/1", "host": "web-01"}),
        );
        assert_eq!(m["content"], "**[critical]** SQL injection");
        let e = &m["embeds"][0];
        assert_eq!(e["title"], "SQL injection");
        assert_eq!(e["url"], "https://app.example/f/1");
        assert_eq!(e["description"], "desc");
        assert_eq!(e["color"], 0xB00020);
        assert_eq!(e["timestamp"], testing::EVENT_TIME);
        assert_eq!(
            e["fields"],
            json!([{"name": "Severity", "value": "critical", "inline": true},
                   {"name": "Host", "value": "web-01", "inline": true}])
        );
        assert_eq!(m["allowed_mentions"], json!({"parse": []}));
        assert_eq!(m["embeds"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn limits_hold_for_huge_events() {
        let mut data = serde_json::Map::new();
        data.insert("title".into(), json!("T".repeat(1000)));
        data.insert("description".into(), json!("d".repeat(10_000)));
        for i in 0..40 {
            data.insert(format!("field_{i:02}"), json!("v".repeat(2000)));
        }
        let m = render("", Value::Object(data));
        assert!(m["content"].as_str().unwrap().chars().count() <= CONTENT_MAX);
        let e = &m["embeds"][0];
        assert_eq!(e["title"].as_str().unwrap().chars().count(), TITLE_MAX);
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= FIELDS_MAX);
        assert!(
            fields
                .iter()
                .all(|f| f["value"].as_str().unwrap().chars().count() <= FIELD_VALUE_MAX)
        );
        assert!(embed_chars(e) <= EMBED_TOTAL_MAX, "{}", embed_chars(e));
    }

    #[test]
    fn mentions_are_not_parsed_and_bad_links_are_dropped() {
        let m = render(
            "",
            json!({"title": "@everyone look", "url": "javascript:alert(1)"}),
        );
        assert_eq!(m["allowed_mentions"]["parse"], json!([]));
        assert!(m["embeds"][0].get("url").is_none());
        assert!(m["embeds"][0].get("color").is_none());
    }

    #[test]
    fn options_are_checked() {
        assert!(Discord::create(r#"{"colour": "red"}"#).is_err());
        assert!(
            Discord::create(r#"{"title_field": ""}"#)
                .unwrap_err()
                .contains("title_field")
        );
    }
}
