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
//! | `steps_taken_field`, `next_steps_field`, `severity_field` | `steps_taken`, `next_steps`, `severity` | as for `slack` and `teams` |

use relay_sdk::card::{CardOptions, Severity, is_web_url};
use relay_sdk::text::{one_line, truncate};
use relay_sdk::{Event, Formatter, Payload, parse_options};
use serde::Serialize;

/// Longest subject, in characters (RFC 5322 recommends lines ≤ 78; encoded
/// words fold, but mail clients show about this much).
pub const SUBJECT_MAX: usize = 200;
/// Longest text of one field or section, in characters.
pub const VALUE_MAX: usize = 4000;
/// At most this many detail fields.
pub const FIELDS_MAX: usize = 30;
/// Longest link made into a button.
const URL_MAX: usize = 2000;

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
        // `subject_prefix` is this formatter's own; the rest are the card
        // options the Slack and Teams formatters take.
        let mut map: serde_json::Map<String, serde_json::Value> = if options.trim().is_empty() {
            serde_json::Map::new()
        } else {
            parse_options(options)?
        };
        let prefix = match map.remove("subject_prefix") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(p))
                if !p.trim().is_empty() && !p.chars().any(char::is_control) =>
            {
                Some(p)
            }
            Some(_) => {
                return Err(
                    "invalid options: subject_prefix: must be non-empty text on one line".into(),
                );
            }
        };
        let card = CardOptions::parse(&serde_json::Value::Object(map).to_string())?;
        Ok(Email { prefix, card })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Payload::json(&self.mail(event))
    }
}

relay_sdk::export_formatter!(Email);

/// One section of the message: a heading and its text.
struct Section {
    heading: &'static str,
    text: String,
}

impl Email {
    /// The subject, text and HTML of `event`.
    pub fn mail(&self, event: &Event) -> Mail {
        let card = &self.card;
        let title_path = card.incident_title_path(event);
        let title = event
            .text(title_path)
            .map(|t| one_line(&t))
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| one_line(&event.event_type));
        let severity = card.severity(event);
        let mut subject = String::new();
        if let Some(p) = &self.prefix {
            subject.push_str(p);
            subject.push(' ');
        }
        if let Some((s, _)) = &severity {
            subject.push('[');
            subject.push_str(s);
            subject.push_str("] ");
        }
        subject.push_str(&title);
        let subject = truncate(subject.trim(), SUBJECT_MAX);

        let text_path = card.text_path(event).filter(|p| *p != title_path);
        let summary = text_path
            .and_then(|p| event.text(p))
            .filter(|t| !t.trim().is_empty())
            .map(|t| truncate(&t, VALUE_MAX));
        let link_path = card.incident_link_path(event);
        let link = link_path
            .and_then(|p| event.str(p))
            .filter(|l| is_web_url(l) && l.chars().count() <= URL_MAX);
        let button = card.button_text.as_deref().unwrap_or("View incident");

        let used = [Some(title_path), text_path, link_path];
        let fields: Vec<(String, String)> = card
            .incident_details(event, &used)
            .into_iter()
            .take(FIELDS_MAX)
            .map(|(l, v)| (l, truncate(&v, VALUE_MAX)))
            .collect();
        let sections: Vec<Section> = card
            .steps(event)
            .into_iter()
            .map(|s| Section {
                heading: s.heading,
                text: truncate(
                    &s.items
                        .iter()
                        .map(|i| format!("- {i}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    VALUE_MAX,
                ),
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
                severity.as_ref().map(|(s, l)| (s.as_str(), *l)),
                summary.as_deref(),
                &fields,
                &sections,
                link.map(|l| (l, button)),
                &footer,
            ),
            subject,
        }
    }
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
fn severity_colour(level: Severity) -> &'static str {
    match level {
        Severity::Critical => "#b00020",
        Severity::High => "#d9480f",
        Severity::Medium => "#b7791f",
        Severity::Low => "#2f6f3e",
        Severity::Info => "#4a5568",
    }
}

fn html(
    title: &str,
    severity: Option<(&str, Severity)>,
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
    if let Some((s, level)) = severity {
        h.push_str("<p><span style=\"background:");
        h.push_str(severity_colour(level));
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
            "Next steps\n- Confirm with the user\n",
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
