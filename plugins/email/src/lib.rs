//! Email formatter: an event as a subject, a plain-text body and an HTML
//! body, which the relay sends as one `multipart/alternative` message
//! (`url: smtp://…` or `smtps://…`, DESIGN §18).
//!
//! The payload is JSON (`application/json`):
//!
//! ```json
//! {"subject": "[critical] Impossible travel for j.doe", "text": "…", "html": "<!DOCTYPE html>…"}
//! ```
//!
//! The subject is one line (CR, LF and other control characters become
//! spaces, so event data can never add a header) of at most
//! [`SUBJECT_MAX`] characters. Every piece of event data in the HTML is
//! escaped (`&`, `<`, `>`, `"`, `'`); a link becomes a button only when it
//! is an `http(s)` URL.
//!
//! Layout (both bodies): the title; the summary text; "Incident details"
//! (the seed's `tenant_name`, `user_name`, `incident_time_utc` first, then
//! the other scalar fields); "Steps taken" and "Next steps" when the event
//! has them; a link to the incident; a footer with type, time and id.
//!
//! Options (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `subject_prefix` | none | text put before the subject, e.g. `[relay]` |
//! | `title_field` | `title`, `text` | data path of the title (falls back to the event type) |
//! | `text_field` | `description`, `summary`, `message` | data path of the summary |
//! | `fields` | well-known keys, then the other scalar fields | data paths shown as details |
//! | `link_field` | `incident_link`, `url`, `link` | data path of the link |
//! | `button_text` | `View incident` | link label |

use relay_sdk::card::{CardOptions, is_web_url};
use relay_sdk::text::{one_line, truncate};
use relay_sdk::{Event, Formatter, Payload, parse_options};
use serde::{Deserialize, Serialize};

/// Longest subject, in characters (RFC 5322 recommends lines ≤ 78; encoded
/// words fold, but mail clients show about this much).
pub const SUBJECT_MAX: usize = 200;
/// Longest text of one field or section, in characters.
pub const VALUE_MAX: usize = 4000;
/// At most this many detail fields.
pub const FIELDS_MAX: usize = 30;
/// Longest link made into a button.
const URL_MAX: usize = 2000;

/// Detail fields shown first (the seed's incident variables).
const SEED_FIELDS: &[&str] = &["tenant_name", "user_name", "incident_time_utc"];
/// Data paths of the "Steps taken" and "Next steps" sections.
const STEPS: &[(&str, &str)] = &[("steps_taken", "Steps taken"), ("next_steps", "Next steps")];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    subject_prefix: Option<String>,
    title_field: Option<String>,
    text_field: Option<String>,
    fields: Option<Vec<String>>,
    link_field: Option<String>,
    button_text: Option<String>,
}

/// The email formatter.
#[derive(Debug)]
pub struct Email {
    prefix: Option<String>,
    card: CardOptions,
}

/// What the formatter writes; the relay builds the MIME message from it.
#[derive(Debug, Serialize)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Formatter for Email {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        if let Some(p) = &o.subject_prefix
            && (p.trim().is_empty() || p.chars().any(char::is_control))
        {
            return Err(
                "invalid options: subject_prefix: must be non-empty text on one line".into(),
            );
        }
        let card =
            CardOptions::parse(&serde_json_text(&o).map_err(|e| format!("invalid options: {e}"))?)?;
        Ok(Email {
            prefix: o.subject_prefix,
            card,
        })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Payload::json(&self.mail(event))
    }
}

relay_sdk::export_formatter!(Email);

/// The card options part of `o` as JSON text, for [`CardOptions::parse`]
/// (which checks them and names the field).
fn serde_json_text(o: &Options) -> Result<String, String> {
    #[derive(Serialize)]
    struct Card<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        title_field: Option<&'a String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text_field: Option<&'a String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fields: Option<&'a Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        link_field: Option<&'a String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        button_text: Option<&'a String>,
    }
    let card = Card {
        title_field: o.title_field.as_ref(),
        text_field: o.text_field.as_ref(),
        fields: o.fields.as_ref(),
        link_field: o.link_field.as_ref(),
        button_text: o.button_text.as_ref(),
    };
    Payload::json(&card).map(|p| String::from_utf8_lossy(&p.body).into_owned())
}

/// One section of the message: a heading and its text.
struct Section {
    heading: &'static str,
    text: String,
}

impl Email {
    /// The subject, text and HTML of `event`.
    pub fn mail(&self, event: &Event) -> Mail {
        let title_path = match &self.card.title_field {
            Some(p) => p.as_str(),
            None if event.get("title").is_some() => "title",
            None => "text",
        };
        let title = event
            .text(title_path)
            .map(|t| one_line(&t))
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| one_line(&event.event_type));
        let severity = event
            .text("severity")
            .map(|s| one_line(&s))
            .filter(|s| !s.trim().is_empty());
        let mut subject = String::new();
        if let Some(p) = &self.prefix {
            subject.push_str(p);
            subject.push(' ');
        }
        if let Some(s) = &severity {
            subject.push('[');
            subject.push_str(s);
            subject.push_str("] ");
        }
        subject.push_str(&title);
        let subject = truncate(subject.trim(), SUBJECT_MAX);

        let text_path = self.card.text_path(event).filter(|p| *p != title_path);
        let summary = text_path
            .and_then(|p| event.text(p))
            .filter(|t| !t.trim().is_empty())
            .map(|t| truncate(&t, VALUE_MAX));
        let link_path = match &self.card.link_field {
            Some(p) => Some(p.as_str()),
            None => ["incident_link", "url", "link"]
                .into_iter()
                .find(|p| event.get(p).is_some()),
        };
        let link = link_path
            .and_then(|p| event.str(p))
            .filter(|l| is_web_url(l) && l.chars().count() <= URL_MAX);
        let button = self.card.button_text.as_deref().unwrap_or("View incident");

        let mut used: Vec<Option<&str>> = vec![Some(title_path), text_path, link_path];
        used.extend(STEPS.iter().map(|(p, _)| Some(*p)));
        let fields = self.details(event, &used);
        let sections: Vec<Section> = STEPS
            .iter()
            .filter_map(|(path, heading)| {
                let text = steps_text(event, path)?;
                Some(Section { heading, text })
            })
            .collect();
        let footer = [event.event_type.as_str(), &event.time, &event.id].join(" · ");

        Mail {
            text: plain(
                &title,
                summary.as_deref(),
                &fields,
                &sections,
                link,
                &footer,
            ),
            html: html(
                &title,
                severity.as_deref(),
                summary.as_deref(),
                &fields,
                &sections,
                link.map(|l| (l, button)),
                &footer,
            ),
            subject,
        }
    }

    /// `(label, value)` detail fields: configured, or the seed's incident
    /// fields first, then the card's default order.
    fn details(&self, event: &Event, used: &[Option<&str>]) -> Vec<(String, String)> {
        if self.card.fields.is_some() {
            return self
                .card
                .fields(event, used)
                .into_iter()
                .take(FIELDS_MAX)
                .map(|(l, v)| (l, truncate(&v, VALUE_MAX)))
                .collect();
        }
        let mut out: Vec<(String, String)> = SEED_FIELDS
            .iter()
            .filter_map(|p| {
                let v = event.text(p)?;
                let label = match *p {
                    "tenant_name" => "Tenant",
                    "user_name" => "Affected identity",
                    _ => "Time (UTC)",
                };
                Some((label.to_owned(), v))
            })
            .collect();
        let mut more_used = used.to_vec();
        more_used.extend(SEED_FIELDS.iter().map(|p| Some(*p)));
        out.extend(self.card.fields(event, &more_used));
        out.into_iter()
            .take(FIELDS_MAX)
            .map(|(l, v)| (l, truncate(&v, VALUE_MAX)))
            .collect()
    }
}

/// A steps field as text: a string as it is, a list as one line per item.
fn steps_text(event: &Event, path: &str) -> Option<String> {
    let value = event.get(path)?;
    let text = match value.as_array() {
        Some(items) => items
            .iter()
            .filter_map(relay_sdk::scalar_text)
            .map(|s| format!("- {}", one_line(&s)))
            .collect::<Vec<_>>()
            .join("\n"),
        None => event.text(path)?,
    };
    (!text.trim().is_empty()).then(|| truncate(&text, VALUE_MAX))
}

fn plain(
    title: &str,
    summary: Option<&str>,
    fields: &[(String, String)],
    sections: &[Section],
    link: Option<&str>,
    footer: &str,
) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(title);
    out.push_str("\n\n");
    if let Some(s) = summary {
        out.push_str(s);
        out.push_str("\n\n");
    }
    if !fields.is_empty() {
        out.push_str("Incident details\n");
        for (label, value) in fields {
            out.push_str(label);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        }
        out.push('\n');
    }
    for s in sections {
        out.push_str(s.heading);
        out.push('\n');
        out.push_str(&s.text);
        out.push_str("\n\n");
    }
    if let Some(l) = link {
        out.push_str(l);
        out.push_str("\n\n");
    }
    out.push_str("-- \n");
    out.push_str(footer);
    out.push('\n');
    out
}

/// HTML-escapes `raw` into `out` (text and attribute values alike).
pub fn escape_into(out: &mut String, raw: &str) {
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Escaped text with line breaks kept as `<br>`.
fn escape_lines_into(out: &mut String, raw: &str) {
    for (i, line) in raw.split('\n').enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        escape_into(out, line.trim_end_matches('\r'));
    }
}

/// Background colour of the severity badge.
fn severity_colour(severity: &str) -> &'static str {
    match severity.to_ascii_lowercase().as_str() {
        "critical" | "crit" | "emergency" | "fatal" => "#b00020",
        "high" | "error" | "major" => "#d9480f",
        "medium" | "moderate" | "warning" | "warn" => "#b7791f",
        "low" | "minor" => "#2f6f3e",
        _ => "#4a5568",
    }
}

fn html(
    title: &str,
    severity: Option<&str>,
    summary: Option<&str>,
    fields: &[(String, String)],
    sections: &[Section],
    link: Option<(&str, &str)>,
    footer: &str,
) -> String {
    let mut h = String::with_capacity(2048);
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>");
    escape_into(&mut h, title);
    h.push_str("</title></head><body style=\"font-family:Segoe UI,Helvetica,Arial,sans-serif;color:#1a202c\">");
    if let Some(s) = severity {
        h.push_str("<p><span style=\"background:");
        h.push_str(severity_colour(s));
        h.push_str(";color:#fff;padding:2px 8px;border-radius:3px;font-weight:bold\">");
        escape_into(&mut h, &s.to_uppercase());
        h.push_str("</span></p>");
    }
    h.push_str("<h2>");
    escape_into(&mut h, title);
    h.push_str("</h2>");
    if let Some(s) = summary {
        h.push_str("<p>");
        escape_lines_into(&mut h, s);
        h.push_str("</p>");
    }
    if !fields.is_empty() {
        h.push_str("<h3>Incident details</h3><table cellpadding=\"4\">");
        for (label, value) in fields {
            h.push_str("<tr><th align=\"left\">");
            escape_into(&mut h, label);
            h.push_str("</th><td>");
            escape_lines_into(&mut h, value);
            h.push_str("</td></tr>");
        }
        h.push_str("</table>");
    }
    for s in sections {
        h.push_str("<h3>");
        h.push_str(s.heading);
        h.push_str("</h3><p>");
        escape_lines_into(&mut h, &s.text);
        h.push_str("</p>");
    }
    if let Some((url, label)) = link {
        h.push_str("<p><a href=\"");
        escape_into(&mut h, url);
        h.push_str("\" style=\"background:#2b6cb0;color:#fff;padding:8px 14px;border-radius:4px;text-decoration:none\">");
        escape_into(&mut h, &one_line(label));
        h.push_str("</a></p>");
    }
    h.push_str("<hr><p style=\"color:#718096;font-size:12px\">");
    escape_into(&mut h, footer);
    h.push_str("</p></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::{Value, json};

    fn mail(options: &str, data: Value) -> Value {
        let payload = testing::format::<Email>(options, &testing::event(data)).unwrap();
        assert_eq!(payload.content_type, "application/json");
        serde_json::from_slice(&payload.body).unwrap()
    }

    #[test]
    fn a_seed_incident_has_a_subject_details_steps_and_a_link() {
        let m = mail(
            r#"{"subject_prefix":"[SOC]"}"#,
            json!({"text": "Impossible travel for j.doe", "severity": "high",
                   "tenant_name": "Acme", "user_name": "j.doe@acme.example",
                   "incident_time_utc": "2026-11-27 22:14", "incident_link": "https://soc.example/i/42",
                   "steps_taken": ["Session revoked", "MFA reset"], "next_steps": "Confirm with the user"}),
        );
        assert_eq!(m["subject"], "[SOC] [high] Impossible travel for j.doe");
        let text = m["text"].as_str().unwrap();
        for part in [
            "Tenant: Acme\n",
            "Affected identity: j.doe@acme.example\n",
            "Time (UTC): 2026-11-27 22:14\n",
            "Steps taken\n- Session revoked\n- MFA reset\n",
            "Next steps\nConfirm with the user\n",
            "https://soc.example/i/42\n",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        let html = m["html"].as_str().unwrap();
        assert!(
            html.contains("<a href=\"https://soc.example/i/42\""),
            "{html}"
        );
        assert!(html.contains(">View incident</a>"), "{html}");
        assert!(html.contains("<h3>Steps taken</h3><p>- Session revoked<br>- MFA reset</p>"));
        assert!(html.contains("#d9480f"), "high severity is coloured");
    }

    #[test]
    fn hostile_data_is_escaped_in_html_and_cannot_break_the_subject_line() {
        let m = mail(
            "",
            json!({"title": "<script>alert(1)</script>\r\nBcc: victim@example.com",
                   "description": "\"quoted\" & 'single' <b>bold</b>",
                   "url": "javascript:alert(1)", "x<y": "<img src=x onerror=alert(1)>"}),
        );
        let subject = m["subject"].as_str().unwrap();
        assert!(
            !subject.contains('\r') && !subject.contains('\n'),
            "{subject:?}"
        );
        let html = m["html"].as_str().unwrap();
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;quoted&quot; &amp; &#39;single&#39;"));
        assert!(!html.contains("javascript:"), "a non-web link is no button");
    }

    #[test]
    fn limits_hold_for_huge_events() {
        let mut data = serde_json::Map::new();
        data.insert("title".into(), json!("T".repeat(10_000)));
        for i in 0..100 {
            data.insert(format!("f{i}"), json!("v".repeat(10_000)));
        }
        let m = mail("", Value::Object(data));
        assert_eq!(m["subject"].as_str().unwrap().chars().count(), SUBJECT_MAX);
        let details = m["text"].as_str().unwrap().matches("\nF").count();
        assert_eq!(details, FIELDS_MAX);
    }

    #[test]
    fn bad_options_are_named() {
        let e = Email::create(r#"{"subject":"x"}"#).unwrap_err();
        assert!(e.contains("unknown field `subject`"), "{e}");
        let e = Email::create(r#"{"subject_prefix":"a\nb"}"#).unwrap_err();
        assert!(e.contains("subject_prefix"), "{e}");
        let e = Email::create(r#"{"fields":["a",""]}"#).unwrap_err();
        assert!(e.contains("fields[1]"), "{e}");
    }
}
