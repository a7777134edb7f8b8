//! Google Chat formatter: renders an event for a Google Chat space's
//! incoming webhook (`POST https://chat.googleapis.com/v1/spaces/{space}/messages?key=…&token=…`,
//! JSON) as a message with `text` and one card in `cardsV2`.
//!
//! Layout: `text` is the one-line summary (`[severity] title`, also what
//! notifications show); the card has a `header` (title, subtitle: type and
//! time) and one section with the description (`textParagraph`), one
//! `decoratedText` per field (label as `topLabel`) and, when the event has
//! an `http(s)` link, a `buttonList` with one `openLink` button.
//!
//! Card texts support a small HTML subset: event data is HTML-escaped
//! (`& < > "`). Limits: Google Chat refuses messages over 32,000 bytes and
//! `text` over 4,096 characters; here `text` is cut to 4,096 characters,
//! the description to 4,000, each field to 1,000, at most 20 fields, and the
//! whole message stays under 32,000 bytes (fields dropped from the end,
//! then the description cut). Google Chat answers `200` with the created
//! message.
//!
//! Options (all optional): `title_field`, `text_field`, `fields`,
//! `link_field`, `button_text` (default `View event`), as for Slack.

use relay_sdk::card::{CardOptions, is_web_url};
use relay_sdk::text::{one_line, truncate};
use relay_sdk::{Event, Formatter, Payload};
use serde::Serialize;

/// Google Chat's limit on a message, in bytes of JSON.
pub const MESSAGE_MAX_BYTES: usize = 32_000;
/// Google Chat's limit on `text`, in characters.
pub const TEXT_MAX: usize = 4096;
/// Limit on the card title.
pub const TITLE_MAX: usize = 200;
/// Limit on the description paragraph.
pub const DESCRIPTION_MAX: usize = 4000;
/// Fields shown at most.
pub const FIELDS_MAX: usize = 20;
/// Limit on one field's text.
pub const FIELD_MAX: usize = 1000;
/// Room kept for the JSON around the texts.
const OVERHEAD_BYTES: usize = 1500;

/// The Google Chat formatter.
#[derive(Debug)]
pub struct GoogleChat {
    options: CardOptions,
}

impl Formatter for GoogleChat {
    fn create(options: &str) -> Result<Self, String> {
        CardOptions::parse(options).map(|options| GoogleChat { options })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Payload::json(&self.message(event))
    }
}

relay_sdk::export_formatter!(GoogleChat);

/// A Google Chat message with one card (cards v2).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message<'a> {
    text: String,
    cards_v2: [CardWithId<'a>; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CardWithId<'a> {
    card_id: &'static str,
    card: Card<'a>,
}

#[derive(Debug, Serialize)]
struct Card<'a> {
    header: Header,
    sections: [Section<'a>; 1],
}

#[derive(Debug, Serialize)]
struct Header {
    title: String,
    subtitle: String,
}

#[derive(Debug, Serialize)]
struct Section<'a> {
    widgets: Vec<Widget<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum Widget<'a> {
    TextParagraph {
        text: String,
    },
    DecoratedText {
        #[serde(rename = "topLabel")]
        top_label: String,
        text: String,
        #[serde(rename = "wrapText")]
        wrap_text: bool,
    },
    ButtonList {
        buttons: [Button<'a>; 1],
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Button<'a> {
    text: String,
    on_click: OnClick<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OnClick<'a> {
    open_link: OpenLink<'a>,
}

#[derive(Debug, Serialize)]
struct OpenLink<'a> {
    url: &'a str,
}

/// HTML-escapes after cutting to `max` characters.
pub fn html(raw: &str, max: usize) -> String {
    let cut = truncate(raw, max);
    if !cut.contains(['&', '<', '>', '"']) {
        return cut;
    }
    let mut out = String::with_capacity(cut.len() + 16);
    for c in cut.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl GoogleChat {
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
            .filter(|l| is_web_url(l) && l.len() <= 2000);
        let severity = event
            .text("severity")
            .map(|s| one_line(&s))
            .filter(|s| !s.is_empty());
        let text = truncate(
            &match &severity {
                Some(sev) => format!("[{sev}] {raw_title}"),
                None => raw_title.clone(),
            },
            TEXT_MAX,
        );
        let header = Header {
            title: html(&raw_title, TITLE_MAX),
            subtitle: html(&format!("{} · {}", event.event_type, event.time), 200),
        };
        let mut budget = MESSAGE_MAX_BYTES.saturating_sub(
            OVERHEAD_BYTES
                + text.len()
                + header.title.len()
                + header.subtitle.len()
                + link.map_or(0, str::len),
        );
        let used = [Some(title_path), text_path, link_path];
        let mut widgets = Vec::new();
        let description = text_path
            .and_then(|p| event.text(p))
            .filter(|t| !t.trim().is_empty());
        for (label, value) in self.options.fields(event, &used) {
            if widgets.len() == FIELDS_MAX {
                break;
            }
            let top_label = html(&one_line(&label), 100);
            let text = html(&value, FIELD_MAX);
            let cost = top_label.len() + text.len() + 80;
            if cost > budget {
                break;
            }
            budget -= cost;
            widgets.push(Widget::DecoratedText {
                top_label,
                text,
                wrap_text: true,
            });
        }
        if let Some(d) = description {
            // Escaping grows a character to at most 6 bytes, and a char is
            // at most 4 bytes: cut so the escaped text fits the bytes left.
            let max_chars = DESCRIPTION_MAX.min(budget / 6);
            let text = html(&d, max_chars);
            if !text.is_empty() {
                widgets.insert(0, Widget::TextParagraph { text });
            }
        }
        if let Some(url) = link {
            let label = self.options.button_text.as_deref().unwrap_or("View event");
            widgets.push(Widget::ButtonList {
                buttons: [Button {
                    text: truncate(&one_line(label), 60),
                    on_click: OnClick {
                        open_link: OpenLink { url },
                    },
                }],
            });
        }
        Message {
            text,
            cards_v2: [CardWithId {
                card_id: "relay-event",
                card: Card {
                    header,
                    sections: [Section { widgets }],
                },
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::{Value, json};

    fn render(data: Value) -> (Value, usize) {
        let payload = testing::format::<GoogleChat>("", &testing::event(data)).unwrap();
        assert_eq!(payload.content_type, "application/json");
        (
            serde_json::from_slice(&payload.body).unwrap(),
            payload.body.len(),
        )
    }

    #[test]
    fn ordinary_event_is_text_and_a_cards_v2_card() {
        let (m, _) = render(json!({"title": "SQL <injection>", "severity": "high",
            "description": "a & b", "url": "https://app.example/f/1", "host": "web-01"}));
        assert_eq!(m["text"], "[high] SQL <injection>");
        let card = &m["cardsV2"][0];
        assert_eq!(card["cardId"], "relay-event");
        assert_eq!(card["card"]["header"]["title"], "SQL &lt;injection&gt;");
        assert_eq!(
            card["card"]["header"]["subtitle"],
            format!("{} · {}", testing::EVENT_TYPE, testing::EVENT_TIME)
        );
        let widgets = card["card"]["sections"][0]["widgets"].as_array().unwrap();
        assert_eq!(widgets[0], json!({"textParagraph": {"text": "a &amp; b"}}));
        assert_eq!(
            widgets[1],
            json!({"decoratedText": {"topLabel": "Severity", "text": "high", "wrapText": true}})
        );
        assert_eq!(
            widgets.last().unwrap(),
            &json!({"buttonList": {"buttons": [{"text": "View event",
                "onClick": {"openLink": {"url": "https://app.example/f/1"}}}]}})
        );
    }

    #[test]
    fn a_huge_event_stays_under_32000_bytes() {
        let mut data = serde_json::Map::new();
        data.insert("title".into(), json!("<".repeat(5000)));
        data.insert("text".into(), json!("x"));
        data.insert("description".into(), json!("&".repeat(50_000)));
        for i in 0..60 {
            data.insert(format!("f{i:02}"), json!("\"".repeat(5000)));
        }
        let (m, len) = render(Value::Object(data));
        assert!(len <= MESSAGE_MAX_BYTES, "{len}");
        assert!(m["text"].as_str().unwrap().chars().count() <= TEXT_MAX);
        assert!(
            m["cardsV2"][0]["card"]["sections"][0]["widgets"]
                .as_array()
                .unwrap()
                .len()
                <= FIELDS_MAX + 1
        );
    }
}
