//! ArcSight CEF formatter:
//! `CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension`.
//!
//! - Header fields escape `\` and `|`; line breaks become spaces (a header
//!   never spans lines).
//! - Extension values escape `\` and `=`, and encode CR/LF as `\r`/`\n`;
//!   extension keys are fixed identifiers from [`keys::KEYS`].
//! - Severity is 0–10: numbers are rounded and clamped; names map
//!   `info`/`informational` → 1, `low` → 3, `medium` → 5, `high` → 8,
//!   `critical`/`very-high` → 10, anything else (or none) → 0.
//! - `rt` (event time, epoch ms) and `externalId` (event id) are always set.
//! - A mapped value that does not fit its key's type (an IPv4 key given a
//!   host name, say) is left out rather than sent malformed; text is trimmed
//!   and cut to the key's length, counted in characters.
//!
//! Options (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `vendor`, `product`, `version` | `relay`, `relay`, `0.1` | header device fields |
//! | `signature_id_field` | the event type | data path of the Signature ID |
//! | `name_field` | `title` | data path of the Name (falls back to the event type) |
//! | `severity_field` | `severity` | data path of the severity |
//! | `mapping` | `{"msg": "description"}` | CEF key → data path |
//! | `labels` | `{}` | custom field → label, e.g. `{"cs1": "Tenant"}` (emits `cs1Label`) |

pub mod keys;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use relay_sdk::text::{char_len, truncate};
use relay_sdk::time::Timestamp;
use relay_sdk::{Event, Formatter, Payload, parse_options};
use serde::Deserialize;
use serde_json::Value;

use keys::Kind;

/// Length limits of the header fields, in characters.
const VENDOR_MAX: usize = 63;
const PRODUCT_MAX: usize = 63;
const VERSION_MAX: usize = 31;
const SIGNATURE_ID_MAX: usize = 1023;
const NAME_MAX: usize = 512;

/// Options of the CEF formatter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Device Vendor header field.
    pub vendor: String,
    /// Device Product header field.
    pub product: String,
    /// Device Version header field.
    pub version: String,
    /// Data path of the Signature ID (default: the event type).
    pub signature_id_field: Option<String>,
    /// Data path of the Name.
    pub name_field: String,
    /// Data path of the severity.
    pub severity_field: String,
    /// CEF extension key → data path.
    pub mapping: Option<BTreeMap<String, String>>,
    /// Custom field (`cs1`, `cn2`, …) → its label.
    pub labels: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vendor: "relay".into(),
            product: "relay".into(),
            version: "0.1".into(),
            signature_id_field: None,
            name_field: "title".into(),
            severity_field: "severity".into(),
            mapping: None,
            labels: BTreeMap::new(),
        }
    }
}

/// One extension taken from the event: key, its kind, data path, label.
#[derive(Debug)]
struct Mapped {
    key: String,
    kind: Kind,
    path: String,
    label: Option<(String, String)>,
}

/// The CEF formatter.
#[derive(Debug)]
pub struct Cef {
    /// `CEF:0|vendor|product|version|`, escaped once.
    prefix: String,
    signature_id_field: Option<String>,
    name_field: String,
    severity_field: String,
    mapped: Vec<Mapped>,
}

impl Formatter for Cef {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        let device = [
            ("vendor", &o.vendor, VENDOR_MAX),
            ("product", &o.product, PRODUCT_MAX),
            ("version", &o.version, VERSION_MAX),
        ];
        for (name, value, max) in device {
            if value.trim().is_empty() {
                return Err(format!("invalid options: {name}: must not be empty"));
            }
            if char_len(value) > max {
                return Err(format!(
                    "invalid options: {name}: longer than {max} characters"
                ));
            }
        }
        for (name, value) in [
            ("name_field", Some(&o.name_field)),
            ("severity_field", Some(&o.severity_field)),
            ("signature_id_field", o.signature_id_field.as_ref()),
        ] {
            if value.is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("invalid options: {name}: must not be empty"));
            }
        }

        let mapping = o
            .mapping
            .unwrap_or_else(|| BTreeMap::from([("msg".to_string(), "description".to_string())]));
        let mut mapped = Vec::with_capacity(mapping.len());
        for (key, path) in mapping {
            let kind = keys::kind(&key).ok_or_else(|| {
                format!("invalid options: mapping.{key}: unknown CEF key `{key}`")
            })?;
            if key == "rt" || key == "externalId" {
                return Err(format!(
                    "invalid options: mapping.{key}: `{key}` is set from the event automatically"
                ));
            }
            if keys::is_label(&key) {
                return Err(format!(
                    "invalid options: mapping.{key}: set labels with the `labels` option"
                ));
            }
            if path.trim().is_empty() {
                return Err(format!("invalid options: mapping.{key}: empty data path"));
            }
            mapped.push(Mapped {
                key,
                kind,
                path,
                label: None,
            });
        }
        for (key, label) in o.labels {
            let label_key = keys::label_key(&key)
                .ok_or_else(|| format!("invalid options: labels.{key}: `{key}` takes no label"))?;
            let Some(Kind::Str(max)) = keys::kind(&label_key) else {
                return Err(format!(
                    "invalid options: labels.{key}: `{key}` takes no label"
                ));
            };
            let label = label.trim().to_string();
            if label.is_empty() || char_len(&label) > max {
                return Err(format!(
                    "invalid options: labels.{key}: must be 1 to {max} characters"
                ));
            }
            let entry = mapped.iter_mut().find(|m| m.key == key).ok_or_else(|| {
                format!("invalid options: labels.{key}: `{key}` is not in `mapping`")
            })?;
            entry.label = Some((label_key, label));
        }

        Ok(Cef {
            prefix: format!(
                "CEF:0|{}|{}|{}|",
                header(&o.vendor, VENDOR_MAX),
                header(&o.product, PRODUCT_MAX),
                header(&o.version, VERSION_MAX)
            ),
            signature_id_field: o.signature_id_field,
            name_field: o.name_field,
            severity_field: o.severity_field,
            mapped,
        })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Ok(Payload::text(self.line(event)?))
    }
}

relay_sdk::export_formatter!(Cef);

impl Cef {
    /// The CEF line for one event (no trailing newline).
    pub fn line(&self, event: &Event) -> Result<String, String> {
        let time = event.timestamp()?;
        let non_empty = |path: &str| event.text(path).filter(|t| !t.trim().is_empty());
        let signature_id = self
            .signature_id_field
            .as_deref()
            .and_then(non_empty)
            .unwrap_or_else(|| event.event_type.clone());
        let name = non_empty(&self.name_field).unwrap_or_else(|| event.event_type.clone());
        let severity = severity(event.get(&self.severity_field));

        let mut line = format!(
            "{}{}|{}|{severity}|rt={}",
            self.prefix,
            header(&signature_id, SIGNATURE_ID_MAX),
            header(&name, NAME_MAX),
            time.unix_millis()
        );
        if let Some(id) = normalize(Kind::Str(40), &Value::String(event.id.clone())) {
            push_extension(&mut line, "externalId", &id);
        }
        for m in &self.mapped {
            let Some(value) = event.get(&m.path).and_then(|v| normalize(m.kind, v)) else {
                continue;
            };
            push_extension(&mut line, &m.key, &value);
            if let Some((label_key, label)) = &m.label {
                push_extension(&mut line, label_key, label);
            }
        }
        Ok(line)
    }
}

/// Maps an event severity to CEF's 0–10.
pub fn severity(value: Option<&Value>) -> u8 {
    let number = match value {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    if let Some(n) = number.filter(|n| n.is_finite()) {
        // Clamped first, so the cast cannot overflow.
        return n.round().clamp(0.0, 10.0) as u8;
    }
    let name = value
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match name.as_str() {
        "info" | "informational" => 1,
        "low" => 3,
        "medium" | "moderate" => 5,
        "high" => 8,
        "critical" | "very-high" | "very high" => 10,
        _ => 0,
    }
}

/// A header field: cut to `max` characters, `\` and `|` escaped, line
/// breaks replaced by spaces.
pub fn header(raw: &str, max: usize) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in truncate(raw.trim(), max).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An extension value: `\` and `=` escaped, CR and LF encoded as `\r`, `\n`.
pub fn extension_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn push_extension(line: &mut String, key: &str, value: &str) {
    if !line.ends_with('|') {
        line.push(' ');
    }
    line.push_str(key);
    line.push('=');
    line.push_str(&extension_value(value));
}

/// The text of a data value as a key of `kind` wants it, or `None` when it
/// has no value or does not fit the type.
pub fn normalize(kind: Kind, value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    };
    if text.is_empty() {
        return None;
    }
    let integer = || -> Option<i64> {
        match value {
            Value::Number(n) => n.as_i64(),
            _ => text.parse().ok(),
        }
    };
    match kind {
        Kind::Str(max) => Some(truncate(&text, max).trim_start().to_string()),
        Kind::Int => integer()
            .and_then(|n| i32::try_from(n).ok())
            .map(|n| n.to_string()),
        Kind::Long => integer().map(|n| n.to_string()),
        Kind::Port => integer()
            .and_then(|n| u16::try_from(n).ok())
            .map(|n| n.to_string()),
        Kind::Float => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f.to_string()),
        Kind::Ipv4 => text.parse::<Ipv4Addr>().ok().map(|a| a.to_string()),
        Kind::Ipv6 => text.parse::<Ipv6Addr>().ok().map(|a| a.to_string()),
        Kind::Mac => mac(&text),
        Kind::Time => integer()
            .or_else(|| {
                Timestamp::parse_rfc3339(&text)
                    .ok()
                    .map(|t| t.unix_millis())
            })
            .map(|ms| ms.to_string()),
        Kind::Direction => match text.to_ascii_lowercase().as_str() {
            "0" | "inbound" => Some("0".into()),
            "1" | "outbound" => Some("1".into()),
            _ => None,
        },
    }
}

/// `AA-BB-CC-DD-EE-FF` or `aa:bb:…` → `aa:bb:cc:dd:ee:ff`.
fn mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| parts.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::json;

    fn line(options: &str, data: Value) -> String {
        let p = testing::format::<Cef>(options, &testing::event(data)).unwrap();
        assert_eq!(p.content_type, "text/plain");
        String::from_utf8(p.body).unwrap()
    }

    #[test]
    fn ordinary_event() {
        let l = line(
            r#"{"mapping":{"msg":"description","suser":"user","cs1":"tenant_name","src":"ip"},
                "labels":{"cs1":"Tenant"}}"#,
            json!({"title": "SQL injection", "severity": "critical", "description": "a=b\\c\nd",
                   "user": "alice", "tenant_name": "Acme", "ip": "10.0.0.1"}),
        );
        assert_eq!(
            l,
            format!(
                "CEF:0|relay|relay|0.1|finding_added|SQL injection|10|rt=1795341600000 \
                 externalId={} cs1=Acme cs1Label=Tenant msg=a\\=b\\\\c\\nd src=10.0.0.1 suser=alice",
                testing::EVENT_ID
            )
        );
    }

    #[test]
    fn header_escaping_and_defaults() {
        let l = line(
            r#"{"vendor":"Acme|Corp","product":"back\\slash","version":"1","signature_id_field":"rule"}"#,
            json!({"title": "a|b\\c\r\nd", "rule": "R|1"}),
        );
        assert!(
            l.starts_with("CEF:0|Acme\\|Corp|back\\\\slash|1|R\\|1|a\\|b\\\\c  d|0|rt="),
            "{l}"
        );
        let l = line("", json!({}));
        assert!(
            l.starts_with("CEF:0|relay|relay|0.1|finding_added|finding_added|0|rt="),
            "{l}"
        );
        assert!(!l.contains('\n'));
    }

    #[test]
    fn severities() {
        let s = |v: Value| severity(Some(&v));
        assert_eq!(s(json!(7.6)), 8);
        assert_eq!(s(json!(-3)), 0);
        assert_eq!(s(json!(99)), 10);
        assert_eq!(s(json!("4")), 4);
        assert_eq!(s(json!("High")), 8);
        assert_eq!(s(json!("medium")), 5);
        assert_eq!(s(json!("low")), 3);
        assert_eq!(s(json!("informational")), 1);
        assert_eq!(s(json!("critical")), 10);
        assert_eq!(s(json!("weird")), 0);
        assert_eq!(severity(None), 0);
    }

    #[test]
    fn typed_values_are_checked() {
        let n = |k, v: Value| normalize(k, &v);
        assert_eq!(
            n(Kind::Ipv4, json!("10.1.2.3")).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(n(Kind::Ipv4, json!("host.example")), None);
        assert_eq!(
            n(Kind::Ipv6, json!("2001:db8::1")).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(n(Kind::Port, json!(443)).as_deref(), Some("443"));
        assert_eq!(n(Kind::Port, json!("70000")), None);
        assert_eq!(n(Kind::Int, json!(3_000_000_000_i64)), None);
        assert_eq!(
            n(Kind::Long, json!(3_000_000_000_i64)).as_deref(),
            Some("3000000000")
        );
        assert_eq!(n(Kind::Float, json!("1.5")).as_deref(), Some("1.5"));
        assert_eq!(n(Kind::Float, json!("NaN")), None);
        assert_eq!(
            n(Kind::Mac, json!("AA-bb-CC-00-11-22")).as_deref(),
            Some("aa:bb:cc:00:11:22")
        );
        assert_eq!(n(Kind::Mac, json!("AA-bb-CC-00-11")), None);
        assert_eq!(
            n(Kind::Time, json!("1970-01-01T00:00:01.5Z")).as_deref(),
            Some("1500")
        );
        assert_eq!(n(Kind::Time, json!(42)).as_deref(), Some("42"));
        assert_eq!(n(Kind::Direction, json!("outbound")).as_deref(), Some("1"));
        assert_eq!(
            n(Kind::Str(5), json!("  abcdefgh ")).as_deref(),
            Some("abcd…")
        );
        assert_eq!(n(Kind::Str(5), json!("   ")), None);
        assert_eq!(
            n(Kind::Str(50), json!({"a": [1]})).as_deref(),
            Some(r#"{"a":[1]}"#)
        );
        assert_eq!(n(Kind::Str(50), Value::Null), None);
    }

    #[test]
    fn invalid_typed_values_are_left_out() {
        let l = line(
            r#"{"mapping":{"src":"ip","spt":"port"}}"#,
            json!({"ip": "nope", "port": -1}),
        );
        assert!(!l.contains("src=") && !l.contains("spt="), "{l}");
    }

    #[test]
    fn options_are_validated() {
        let err = |o: &str| Cef::create(o).unwrap_err();
        assert!(err(r#"{"mapping":{"bogus":"x"}}"#).contains("unknown CEF key `bogus`"));
        assert!(err(r#"{"mapping":{"rt":"x"}}"#).contains("mapping.rt"));
        assert!(err(r#"{"mapping":{"cs1Label":"x"}}"#).contains("labels"));
        assert!(err(r#"{"mapping":{"msg":""}}"#).contains("mapping.msg"));
        assert!(err(r#"{"labels":{"msg":"M"}}"#).contains("labels.msg"));
        assert!(err(r#"{"labels":{"cs2":"M"}}"#).contains("not in `mapping`"));
        assert!(err(r#"{"mapping":{"cs2":"a"},"labels":{"cs2":""}}"#).contains("labels.cs2"));
        assert!(err(r#"{"vendor":""}"#).contains("vendor"));
        assert!(err(&format!(r#"{{"product":"{}"}}"#, "p".repeat(64))).contains("product"));
        assert!(err(r#"{"severity":"x"}"#).contains("unknown field `severity`"));
        assert!(err(r#"{"mapping":["msg"]}"#).contains("mapping"));
    }

    #[test]
    fn bad_event_time_is_an_error() {
        let mut e = testing::event(json!({}));
        e.time = "yesterday".into();
        let err = Cef::create("").unwrap().format(&e).unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
