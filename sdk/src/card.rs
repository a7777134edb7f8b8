//! What message-card formatters (the Slack and Teams built-ins) share: their
//! options, which data fields they pick for the title, text, link and the
//! field list, and how a data path becomes a label.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::event::scalar_text;
use crate::{Event, parse_options};

/// Keys shown first, in this order, when `fields` is not configured.
pub const PREFERRED_FIELDS: &[&str] = &[
    "severity",
    "status",
    "tenant_name",
    "tenant",
    "category",
    "rule",
    "asset",
    "resource",
    "host",
    "user",
    "source",
];
/// Data paths tried, in order, for the text under the title.
pub const DEFAULT_TEXT_FIELDS: &[&str] = &["description", "summary", "message"];
/// Data paths tried, in order, for the link.
pub const DEFAULT_LINK_FIELDS: &[&str] = &["url", "link"];

/// Options of a card formatter (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardOptions {
    /// Data path of the title (default `title`).
    pub title_field: Option<String>,
    /// Data path of the text under the title.
    pub text_field: Option<String>,
    /// Data paths shown as fields, in order.
    pub fields: Option<Vec<String>>,
    /// Data path of the link.
    pub link_field: Option<String>,
    /// Label of the link button.
    pub button_text: Option<String>,
    /// `auto` (default: the incident layout for events with the seed's
    /// incident variables, see [`CardOptions::is_incident`]), `incident` or
    /// `list` (title, text, one list of fields).
    pub layout: Option<Layout>,
    /// Data path of the "Steps taken" section (default `steps_taken`).
    pub steps_taken_field: Option<String>,
    /// Data path of the "Next steps" section (default `next_steps`).
    pub next_steps_field: Option<String>,
    /// Data path of the severity that gives the card its emphasis
    /// (default `severity`).
    pub severity_field: Option<String>,
}

/// Which layout a card formatter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Auto,
    Incident,
    List,
}

/// Data keys that make an event an incident in the `auto` layout (the
/// seed's notification variables).
pub const INCIDENT_KEYS: &[&str] = &[
    "incident_link",
    "steps_taken",
    "next_steps",
    "incident_time_utc",
];
/// The incident details shown first, with their labels.
pub const INCIDENT_DETAILS: &[(&str, &str)] = &[
    ("tenant_name", "Tenant"),
    ("user_name", "Affected identity"),
    ("incident_time_utc", "Time (UTC)"),
];
/// Data paths tried, in order, for an incident's link.
pub const INCIDENT_LINK_FIELDS: &[&str] = &["incident_link", "url", "link"];
/// Data paths tried, in order, for an incident's summary (the header).
pub const INCIDENT_TITLE_FIELDS: &[&str] = &["title", "text"];

/// How loud a card is: from the event's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Common names (`critical`, `high`, `medium`/`moderate`/`warning`,
    /// `low`, anything else info), case-insensitive; numbers as CVSS-like
    /// scores (≥ 9 critical, ≥ 7 high, ≥ 4 medium, > 0 low).
    pub fn of(text: &str) -> Severity {
        let t = text.trim().to_ascii_lowercase();
        if let Ok(n) = t.parse::<f64>() {
            return match n {
                n if n >= 9.0 => Severity::Critical,
                n if n >= 7.0 => Severity::High,
                n if n >= 4.0 => Severity::Medium,
                n if n > 0.0 => Severity::Low,
                _ => Severity::Info,
            };
        }
        match t.as_str() {
            "critical" | "crit" | "emergency" | "emerg" | "fatal" | "p1" | "sev1" => {
                Severity::Critical
            }
            "high" | "error" | "err" | "major" | "p2" | "sev2" => Severity::High,
            "medium" | "moderate" | "warning" | "warn" | "p3" | "sev3" => Severity::Medium,
            "low" | "minor" | "notice" | "p4" | "sev4" => Severity::Low,
            _ => Severity::Info,
        }
    }
}

/// One incident section ("Steps taken", "Next steps"): its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    pub heading: &'static str,
    /// One entry per step: a list's items, or a text's lines.
    pub items: Vec<String>,
}

impl CardOptions {
    /// Parses the options; an empty string where a value is given is refused,
    /// naming the field.
    pub fn parse(options: &str) -> Result<CardOptions, String> {
        let options: CardOptions = parse_options(options)?;
        for (name, value) in [
            ("title_field", &options.title_field),
            ("text_field", &options.text_field),
            ("link_field", &options.link_field),
            ("button_text", &options.button_text),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("invalid options: {name}: must not be empty"));
            }
        }
        if let Some(fields) = &options.fields
            && let Some(i) = fields.iter().position(|f| f.trim().is_empty())
        {
            return Err(format!("invalid options: fields[{i}]: must not be empty"));
        }
        for (name, value) in [
            ("steps_taken_field", &options.steps_taken_field),
            ("next_steps_field", &options.next_steps_field),
            ("severity_field", &options.severity_field),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("invalid options: {name}: must not be empty"));
            }
        }
        Ok(options)
    }

    /// Whether `event` gets the incident layout: always with `layout:
    /// incident`, never with `list`, and with `auto` (the default) when its
    /// data has one of [`INCIDENT_KEYS`] (or the configured steps fields).
    pub fn is_incident(&self, event: &Event) -> bool {
        match self.layout.unwrap_or(Layout::Auto) {
            Layout::Incident => true,
            Layout::List => false,
            Layout::Auto => {
                INCIDENT_KEYS.iter().any(|k| event.has(k))
                    || [&self.steps_taken_field, &self.next_steps_field]
                        .into_iter()
                        .flatten()
                        .any(|p| event.has(p))
            }
        }
    }

    /// An incident's summary path: the configured title, else the first of
    /// [`INCIDENT_TITLE_FIELDS`] present, else `title`.
    pub fn incident_title_path<'a>(&'a self, event: &Event) -> &'a str {
        first_present(event, self.title_field.as_deref(), INCIDENT_TITLE_FIELDS).unwrap_or("title")
    }

    /// An incident's link path: the configured one, else the first of
    /// [`INCIDENT_LINK_FIELDS`] present.
    pub fn incident_link_path<'a>(&'a self, event: &Event) -> Option<&'a str> {
        first_present(event, self.link_field.as_deref(), INCIDENT_LINK_FIELDS)
    }

    /// The data paths of the two step sections.
    pub fn steps_paths(&self) -> [&str; 2] {
        [
            self.steps_taken_field.as_deref().unwrap_or("steps_taken"),
            self.next_steps_field.as_deref().unwrap_or("next_steps"),
        ]
    }

    /// "Steps taken" and "Next steps", when the event has them.
    pub fn steps(&self, event: &Event) -> Vec<Steps> {
        let [taken, next] = self.steps_paths();
        [(taken, "Steps taken"), (next, "Next steps")]
            .into_iter()
            .filter_map(|(path, heading)| {
                let items: Vec<String> = match event.get(path)? {
                    Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
                    other => scalar_text(other)?.lines().map(str::to_owned).collect(),
                };
                let items: Vec<String> = items
                    .into_iter()
                    .map(|i| crate::text::one_line(&i))
                    .filter(|i| !i.is_empty())
                    .collect();
                (!items.is_empty()).then_some(Steps { heading, items })
            })
            .collect()
    }

    /// The event's severity (at `severity_field`), when it has one.
    pub fn severity(&self, event: &Event) -> Option<(String, Severity)> {
        let text = event.text(self.severity_field.as_deref().unwrap_or("severity"))?;
        let text = crate::text::one_line(&text);
        (!text.is_empty()).then(|| {
            let level = Severity::of(&text);
            (text, level)
        })
    }

    /// An incident's details as `(label, value)`: the configured `fields`,
    /// else [`INCIDENT_DETAILS`] first (with their labels), then the other
    /// fields as [`CardOptions::fields`] picks them, leaving out `used` and
    /// the step sections.
    pub fn incident_details(&self, event: &Event, used: &[Option<&str>]) -> Vec<(String, String)> {
        let [taken, next] = self.steps_paths();
        let mut skip: Vec<Option<&str>> = used.to_vec();
        skip.extend([Some(taken), Some(next)]);
        if self.fields.is_some() {
            return self.fields(event, &skip);
        }
        let mut out: Vec<(String, String)> = INCIDENT_DETAILS
            .iter()
            .filter(|(p, _)| !skip.contains(&Some(*p)))
            .filter_map(|(p, label)| Some(((*label).to_owned(), event.text(p)?)))
            .collect();
        skip.extend(INCIDENT_DETAILS.iter().map(|(p, _)| Some(*p)));
        out.extend(self.fields(event, &skip));
        out
    }

    /// The data path of the title.
    pub fn title_path(&self) -> &str {
        self.title_field.as_deref().unwrap_or("title")
    }

    /// The configured text path, else the first default present in the data.
    pub fn text_path<'a>(&'a self, event: &Event) -> Option<&'a str> {
        first_present(event, self.text_field.as_deref(), DEFAULT_TEXT_FIELDS)
    }

    /// The configured link path, else the first default present in the data.
    pub fn link_path<'a>(&'a self, event: &Event) -> Option<&'a str> {
        first_present(event, self.link_field.as_deref(), DEFAULT_LINK_FIELDS)
    }

    /// `(label, value)` pairs to show, in display order: the configured
    /// `fields`, else the preferred keys then the other scalar fields, leaving
    /// out the paths already `used` for the title, text and link.
    pub fn fields(&self, event: &Event, used: &[Option<&str>]) -> Vec<(String, String)> {
        if let Some(paths) = &self.fields {
            return paths
                .iter()
                .filter_map(|p| event.text(p).map(|v| (label_of(p), v)))
                .collect();
        }
        // Only the fields shown are turned into text.
        let shown = |key: &str, text: Cow<'_, str>| {
            (!used.contains(&Some(key))).then(|| (label_of(key), text.into_owned()))
        };
        let mut out = Vec::new();
        for key in PREFERRED_FIELDS {
            if let Some(field) = event.scalar(key).and_then(|t| shown(key, t)) {
                out.push(field);
            }
        }
        out.extend(
            event
                .scalars()
                .filter(|(k, _)| !PREFERRED_FIELDS.contains(k))
                .filter_map(|(k, t)| shown(k, t)),
        );
        out
    }
}

/// The configured path if set, else the first default path present in the data.
fn first_present<'a>(
    event: &Event,
    configured: Option<&'a str>,
    defaults: &'static [&'static str],
) -> Option<&'a str> {
    configured.or_else(|| defaults.iter().copied().find(|p| event.has(p)))
}

/// Turns a data path into a label: `tenant_name` → `Tenant name`.
pub fn label_of(path: &str) -> String {
    if path.is_ascii() {
        // The usual case, without a char iterator per byte.
        let trimmed =
            path.trim_matches(|c: char| c.is_whitespace() || matches!(c, '_' | '-' | '.'));
        if trimmed.is_empty() {
            return path.to_string();
        }
        let mut out = String::with_capacity(trimmed.len());
        for (i, b) in trimmed.bytes().enumerate() {
            out.push(match b {
                b'_' | b'-' | b'.' => ' ',
                b if i == 0 => b.to_ascii_uppercase() as char,
                b => b as char,
            });
        }
        return out;
    }
    let spaced: String = path
        .chars()
        .map(|c| if matches!(c, '_' | '-' | '.') { ' ' } else { c })
        .collect();
    let mut chars = spaced.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => path.to_string(),
    }
}

/// An absolute http(s) URL without spaces or control characters (each
/// formatter applies its own length limit).
pub fn is_web_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A digest event (relay's DESIGN §17): type `digest`, data
/// `{"group": {...}, "count": N, "alerts": [{id, type, time, data}, ...]}`,
/// read for a summary and a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// How many events the digest holds.
    pub count: usize,
    /// The group's values as (label, text), in key order.
    pub group: Vec<(String, String)>,
    /// One line per alert, in arrival order.
    pub items: Vec<DigestItem>,
}

/// One alert of a [`Digest`].
#[derive(Debug, Clone, PartialEq)]
pub struct DigestItem {
    /// Its title (`title`, then `text`, `summary`, `message`, else its type).
    pub title: String,
    /// Its severity, as written, when it has one.
    pub severity: Option<String>,
    pub time: String,
}

impl Digest {
    /// The digest in `event`, or `None` when it is not one (another type,
    /// or no `alerts` list).
    pub fn of(event: &Event) -> Option<Digest> {
        if event.event_type != "digest" {
            return None;
        }
        let alerts = event.get("alerts")?.as_array()?;
        let group = match event.get("group") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    (
                        label_of(k),
                        scalar_text(v).unwrap_or_else(|| "(none)".to_string()),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let items = alerts
            .iter()
            .map(|a| {
                let data = &a["data"];
                let text = |k: &str| {
                    data.get(k)
                        .and_then(scalar_text)
                        .filter(|t| !t.trim().is_empty())
                };
                let title = ["title", "text", "summary", "message"]
                    .iter()
                    .find_map(|k| text(k))
                    .or_else(|| a["type"].as_str().map(str::to_string))
                    .unwrap_or_default();
                DigestItem {
                    title: crate::text::one_line(&title),
                    severity: text("severity").map(|s| crate::text::one_line(&s)),
                    time: a["time"]
                        .as_str()
                        .map(crate::text::one_line)
                        .unwrap_or_default(),
                }
            })
            .collect::<Vec<_>>();
        let count = event
            .get("count")
            .and_then(Value::as_u64)
            .map_or(items.len(), |n| n as usize);
        Some(Digest {
            count,
            group,
            items,
        })
    }

    /// `Digest: 12 alerts (Tenant name: acme)`.
    pub fn summary(&self) -> String {
        let noun = if self.count == 1 { "alert" } else { "alerts" };
        let mut s = format!("Digest: {} {noun}", self.count);
        if !self.group.is_empty() {
            let group: Vec<String> = self
                .group
                .iter()
                .map(|(l, v)| format!("{l}: {v}"))
                .collect();
            s.push_str(" (");
            s.push_str(&group.join(", "));
            s.push(')');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    #[test]
    fn empty_option_values_are_refused_by_name() {
        assert!(CardOptions::parse("{}").is_ok());
        let e = CardOptions::parse(r#"{"title_field": " "}"#).unwrap_err();
        assert!(e.contains("title_field"), "{e}");
        let e = CardOptions::parse(r#"{"fields": ["a", ""]}"#).unwrap_err();
        assert!(e.contains("fields[1]"), "{e}");
        assert!(CardOptions::parse(r#"{"colour": "red"}"#).is_err());
    }

    #[test]
    fn default_fields_put_preferred_keys_first_and_skip_used_paths() {
        let event =
            testing::event(json!({"zeta": "z", "title": "T", "severity": "high", "host": "h"}));
        let o = CardOptions::default();
        let used = [
            Some(o.title_path()),
            o.text_path(&event),
            o.link_path(&event),
        ];
        let labels: Vec<String> = o
            .fields(&event, &used)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(labels, ["Severity", "Host", "Zeta"]);
    }

    #[test]
    fn labels_and_urls() {
        assert_eq!(label_of("tenant_name"), "Tenant name");
        assert_eq!(label_of("finding.cvss-score"), "Finding cvss score");
        assert_eq!(label_of("_"), "_");
        // The ASCII fast path and the general one agree.
        assert_eq!(label_of(" -host_name. "), "Host name");
        assert_eq!(label_of("a\u{b}"), "A");
        assert_eq!(label_of("énergie_totale"), "Énergie totale");
        assert_eq!(crate::text::one_line(" a\r\nb\tc "), "a b c");
        assert!(is_web_url("https://x.example/a?b=c"));
        assert!(!is_web_url("javascript:alert(1)"));
        assert!(!is_web_url("https://x.example/a b"));
    }

    #[test]
    fn a_digest_reads_its_group_count_and_alert_titles() {
        let event = testing::event_of(
            "digest",
            json!({"group": {"tenant_name": "acme"}, "count": 2, "alerts": [
                {"id": "a", "type": "finding", "time": "t1", "data": {"title": "SQLi", "severity": "high"}},
                {"id": "b", "type": "finding", "time": "t2", "data": {}}]}),
        );
        let d = Digest::of(&event).expect("a digest");
        assert_eq!(d.summary(), "Digest: 2 alerts (Tenant name: acme)");
        assert_eq!(d.items[0].title, "SQLi");
        assert_eq!(d.items[0].severity.as_deref(), Some("high"));
        assert_eq!(
            (d.items[1].title.as_str(), d.items[1].severity.as_deref()),
            ("finding", None)
        );
        assert!(Digest::of(&testing::event(json!({"alerts": []}))).is_none());
    }
}
