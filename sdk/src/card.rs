//! What message-card formatters (the Slack and Teams built-ins) share: their
//! options, which data fields they pick for the title, text, link and the
//! field list, and how a data path becomes a label.

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
        Ok(options)
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
        let Some(map) = event.data.as_object() else {
            return Vec::new();
        };
        // Only the fields shown are turned into text.
        let shown = |key: &str, value: &Value| {
            if used.contains(&Some(key)) {
                return None;
            }
            scalar_text(value).map(|text| (label_of(key), text))
        };
        let mut out = Vec::with_capacity(map.len());
        for key in PREFERRED_FIELDS {
            if let Some(field) = map.get(*key).and_then(|v| shown(key, v)) {
                out.push(field);
            }
        }
        out.extend(
            map.iter()
                .filter(|(k, _)| !PREFERRED_FIELDS.contains(&k.as_str()))
                .filter_map(|(k, v)| shown(k, v)),
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
    configured.or_else(|| defaults.iter().copied().find(|p| event.get(p).is_some()))
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
}
