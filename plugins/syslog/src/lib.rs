//! RFC 5424 syslog formatter:
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG`.
//!
//! - TIMESTAMP is the event's own time with fractional seconds (3 digits, 6
//!   when the event has sub-millisecond precision) and its offset.
//! - PRI = facility × 8 + severity; the severity comes from the event's
//!   `severity` (critical → 2 crit, high → 3 err, medium → 4 warning, low → 5
//!   notice, anything else → 6 info) unless fixed by the `severity` option.
//! - Header fields are PRINTUSASCII only (others become `_`), cut to the RFC
//!   lengths (hostname 255, app-name 48, procid 128, msgid 32); an empty one
//!   is the NILVALUE `-`.
//! - One SD element (`[relay@32473 ...]`) holds `event_id` and one param per
//!   top-level scalar data field; param names are sanitised to SD-NAME (≤ 32
//!   PRINTUSASCII, no `=`, `]`, `"` or space), values escape `"`, `\`, `]`.
//!   At most [`SD_PARAMS_MAX`] params, values cut to [`SD_VALUE_MAX`] chars,
//!   the element kept under [`SD_BYTES_MAX`] bytes.
//! - MSG is a UTF-8 BOM then the data's `title` (or the event type), cut to
//!   [`MSG_MAX`] characters.
//! - No framing: the core frames for TCP/TLS (octet counting).
//!
//! Options (all optional): `facility` (name or 0–23, default `local0`),
//! `severity` (name or 0–7, default: from the event), `severity_field`
//! (`severity`), `hostname` (`-`), `app_name` (`relay`), `procid` (`-`),
//! `msgid` (the event type), `sd_id` (`relay@32473`), `message_field`
//! (`title`).

use relay_sdk::text::truncate;
use relay_sdk::{Event, Formatter, Payload, parse_options};
use serde::Deserialize;

/// Longest HOSTNAME (RFC 5424 §6).
pub const HOSTNAME_MAX: usize = 255;
/// Longest APP-NAME.
pub const APP_NAME_MAX: usize = 48;
/// Longest PROCID.
pub const PROCID_MAX: usize = 128;
/// Longest MSGID.
pub const MSGID_MAX: usize = 32;
/// Longest SD-NAME (SD-ID and PARAM-NAME).
pub const SD_NAME_MAX: usize = 32;
/// Most SD params per message.
pub const SD_PARAMS_MAX: usize = 64;
/// Longest SD param value, in characters.
pub const SD_VALUE_MAX: usize = 1024;
/// Size cap of the SD element, in bytes.
pub const SD_BYTES_MAX: usize = 16 * 1024;
/// Longest MSG, in characters.
pub const MSG_MAX: usize = 4096;

const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("audit", 13),
    ("console", 14),
    ("alert", 14),
    ("clock", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

const SEVERITIES: &[(&str, u8)] = &[
    ("emerg", 0),
    ("emergency", 0),
    ("alert", 1),
    ("crit", 2),
    ("critical", 2),
    ("err", 3),
    ("error", 3),
    ("warning", 4),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("informational", 6),
    ("debug", 7),
];

/// A facility or severity given by name or number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Level {
    /// A numeric code.
    Number(u64),
    /// A name such as `local0` or `warning`.
    Name(String),
}

/// Options of the syslog formatter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Facility, name or 0–23.
    pub facility: Level,
    /// Fixed severity, name or 0–7 (default: from the event).
    pub severity: Option<Level>,
    /// Data path of the event severity.
    pub severity_field: String,
    /// HOSTNAME.
    pub hostname: Option<String>,
    /// APP-NAME.
    pub app_name: Option<String>,
    /// PROCID.
    pub procid: Option<String>,
    /// Fixed MSGID (default: the event type).
    pub msgid: Option<String>,
    /// SD-ID of the structured-data element.
    pub sd_id: String,
    /// Data path of the MSG text.
    pub message_field: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            facility: Level::Name("local0".into()),
            severity: None,
            severity_field: "severity".into(),
            hostname: None,
            app_name: Some("relay".into()),
            procid: None,
            msgid: None,
            sd_id: "relay@32473".into(),
            message_field: "title".into(),
        }
    }
}

/// The RFC 5424 formatter.
#[derive(Debug)]
pub struct Syslog {
    facility: u8,
    severity: Option<u8>,
    severity_field: String,
    /// `HOSTNAME APP-NAME PROCID`, ready to print.
    origin: String,
    msgid: Option<String>,
    sd_id: String,
    message_field: String,
}

impl Formatter for Syslog {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        let facility = level(&o.facility, FACILITIES, 23)
            .map_err(|e| format!("invalid options: facility: {e}"))?;
        let severity = o
            .severity
            .as_ref()
            .map(|s| level(s, SEVERITIES, 7))
            .transpose()
            .map_err(|e| format!("invalid options: severity: {e}"))?;
        let hostname = header_option("hostname", o.hostname.as_deref(), HOSTNAME_MAX)?;
        let app_name = header_option("app_name", o.app_name.as_deref(), APP_NAME_MAX)?;
        let procid = header_option("procid", o.procid.as_deref(), PROCID_MAX)?;
        let msgid = match o.msgid.as_deref() {
            Some(m) => Some(header_option("msgid", Some(m), MSGID_MAX)?),
            None => None,
        };
        check_sd_id(&o.sd_id).map_err(|e| format!("invalid options: sd_id: {e}"))?;
        for (name, value) in [
            ("severity_field", &o.severity_field),
            ("message_field", &o.message_field),
        ] {
            if value.trim().is_empty() {
                return Err(format!("invalid options: {name}: must not be empty"));
            }
        }
        Ok(Syslog {
            facility,
            severity,
            severity_field: o.severity_field,
            origin: format!("{hostname} {app_name} {procid}"),
            msgid,
            sd_id: o.sd_id,
            message_field: o.message_field,
        })
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        Ok(Payload::text(self.message(event)?))
    }
}

relay_sdk::export_formatter!(Syslog);

impl Syslog {
    /// The RFC 5424 message for one event, unframed.
    pub fn message(&self, event: &Event) -> Result<String, String> {
        let time = event.timestamp()?;
        let digits = if time.nanos % 1_000_000 == 0 { 3 } else { 6 };
        let severity = self
            .severity
            .unwrap_or_else(|| severity_of(event.str(&self.severity_field)));
        let pri = u16::from(self.facility) * 8 + u16::from(severity);
        let msgid = match &self.msgid {
            Some(m) => m.clone(),
            None => header_field(&event.event_type, MSGID_MAX),
        };
        let msg = event
            .text(&self.message_field)
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| event.event_type.clone());
        Ok(format!(
            "<{pri}>1 {} {} {msgid} {} \u{feff}{}",
            time.format_rfc3339(digits),
            self.origin,
            self.structured_data(event),
            truncate(&msg, MSG_MAX)
        ))
    }

    /// `[sd_id event_id="..." name="value" ...]`.
    fn structured_data(&self, event: &Event) -> String {
        let mut sd = format!("[{}", self.sd_id);
        let mut names: Vec<String> = Vec::new();
        let params = std::iter::once(("event_id", event.id.clone())).chain(event.scalar_fields());
        for (key, value) in params {
            if names.len() >= SD_PARAMS_MAX {
                break;
            }
            let name = sd_name(key);
            if name.is_empty() || names.contains(&name) {
                continue;
            }
            let param = format!(" {name}=\"{}\"", sd_value(&truncate(&value, SD_VALUE_MAX)));
            if sd.len() + param.len() + 1 > SD_BYTES_MAX {
                break;
            }
            sd.push_str(&param);
            names.push(name);
        }
        sd.push(']');
        sd
    }
}

/// Maps an event severity name to a syslog severity.
pub fn severity_of(event_severity: Option<&str>) -> u8 {
    match event_severity
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("critical") => 2,
        Some("high") => 3,
        Some("medium") => 4,
        Some("low") => 5,
        _ => 6,
    }
}

/// Resolves a facility/severity name or number against `names`, up to `max`.
fn level(value: &Level, names: &[(&str, u8)], max: u8) -> Result<u8, String> {
    match value {
        Level::Number(n) => u8::try_from(*n)
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{n} is out of range 0-{max}")),
        Level::Name(name) => {
            let lower = name.trim().to_ascii_lowercase();
            names
                .iter()
                .find(|(n, _)| *n == lower)
                .map(|(_, code)| *code)
                .ok_or_else(|| {
                    let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown name {name:?} (use 0-{max} or one of {})",
                        known.join(", ")
                    )
                })
        }
    }
}

/// A header option: PRINTUSASCII and within `max`, or an error naming it.
fn header_option(name: &str, value: Option<&str>, max: usize) -> Result<String, String> {
    match value {
        None | Some("") => Ok("-".to_string()),
        Some(v) if !v.bytes().all(is_print_us_ascii) => Err(format!(
            "invalid options: {name}: only printable US-ASCII without spaces is allowed"
        )),
        Some(v) if v.len() > max => Err(format!(
            "invalid options: {name}: longer than {max} characters"
        )),
        Some(v) => Ok(v.to_string()),
    }
}

/// A header field from event data: non-PRINTUSASCII characters become `_`,
/// cut to `max`, `-` when empty.
pub fn header_field(raw: &str, max: usize) -> String {
    let field: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii() && is_print_us_ascii(c as u8) {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_string()
    } else {
        field
    }
}

/// An SD-NAME from a data key: PRINTUSASCII except `=`, `]`, `"` (others
/// become `_`), at most 32 characters.
pub fn sd_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii() && is_sd_name_byte(c as u8) {
                c
            } else {
                '_'
            }
        })
        .take(SD_NAME_MAX)
        .collect()
}

/// An SD param value with `"`, `\` and `]` escaped.
pub fn sd_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn check_sd_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > SD_NAME_MAX || !id.bytes().all(is_sd_name_byte) {
        return Err(format!(
            "{id:?} must be 1-{SD_NAME_MAX} printable US-ASCII characters without `=`, `]`, `\"` or space"
        ));
    }
    match id.split_once('@') {
        Some((name, pen))
            if !name.is_empty()
                && !pen.is_empty()
                && pen.bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{id:?} must be name@<private enterprise number>, e.g. relay@32473"
        )),
    }
}

fn is_print_us_ascii(b: u8) -> bool {
    (33..=126).contains(&b)
}

fn is_sd_name_byte(b: u8) -> bool {
    is_print_us_ascii(b) && !matches!(b, b'=' | b']' | b'"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing;
    use serde_json::{Value, json};

    fn message(options: &str, data: Value) -> String {
        let p = testing::format::<Syslog>(options, &testing::event(data)).unwrap();
        assert_eq!(p.content_type, "text/plain");
        String::from_utf8(p.body).unwrap()
    }

    #[test]
    fn ordinary_event() {
        let m = message(
            "",
            json!({"title": "SQL injection", "severity": "critical", "tenant": "Acme"}),
        );
        assert_eq!(
            m,
            format!(
                "<130>1 2026-11-22T10:00:00.000Z - relay - finding_added [relay@32473 event_id=\"{}\" \
                 severity=\"critical\" tenant=\"Acme\" title=\"SQL injection\"] \u{feff}SQL injection",
                testing::EVENT_ID
            )
        );
    }

    #[test]
    fn pri_from_options_and_event() {
        let pri = |o: &str, sev: &str| {
            let m = message(o, json!({"severity": sev}));
            m[1..m.find('>').unwrap()].parse::<u16>().unwrap()
        };
        assert_eq!(pri("", "high"), 16 * 8 + 3);
        assert_eq!(pri("", "medium"), 16 * 8 + 4);
        assert_eq!(pri("", "LOW"), 16 * 8 + 5);
        assert_eq!(pri("", "whatever"), 16 * 8 + 6);
        assert_eq!(pri(r#"{"facility":"auth"}"#, "critical"), 4 * 8 + 2);
        assert_eq!(
            pri(r#"{"facility":23,"severity":"debug"}"#, "critical"),
            23 * 8 + 7
        );
        assert_eq!(pri(r#"{"facility":0,"severity":0}"#, "low"), 0);
    }

    #[test]
    fn options_are_validated() {
        let err = |o: &str| Syslog::create(o).unwrap_err();
        assert!(err(r#"{"facility":"locl0"}"#).contains("facility: unknown name"));
        assert!(err(r#"{"facility":24}"#).contains("facility: 24 is out of range"));
        assert!(err(r#"{"severity":8}"#).contains("severity:"));
        assert!(err(r#"{"hostname":"a b"}"#).contains("hostname"));
        assert!(err(&format!(r#"{{"app_name":"{}"}}"#, "a".repeat(49))).contains("app_name"));
        assert!(err(r#"{"msgid":"é"}"#).contains("msgid"));
        assert!(err(r#"{"sd_id":"relay"}"#).contains("sd_id"));
        assert!(err(r#"{"sd_id":"re lay@1"}"#).contains("sd_id"));
        assert!(err(r#"{"sd_id":"relay@abc"}"#).contains("sd_id"));
        assert!(err(r#"{"framing":"octet"}"#).contains("unknown field `framing`"));
        assert!(
            Syslog::create(r#"{"sd_id":"acme@1.2.3","hostname":"h.example","procid":"42"}"#)
                .is_ok()
        );
    }

    #[test]
    fn sanitising_helpers() {
        assert_eq!(header_field("a b\u{7f}é", 32), "a_b__");
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        assert_eq!(sd_name("a=b]c\"d e"), "a_b_c_d_e");
        assert_eq!(sd_name(&"k".repeat(40)).len(), 32);
        assert_eq!(sd_value(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(severity_of(None), 6);
    }

    #[test]
    fn time_keeps_offset_and_precision() {
        let mut e = testing::event(json!({}));
        e.time = "2026-11-22T11:00:00.123456+01:00".into();
        let m = Syslog::create("").unwrap().message(&e).unwrap();
        assert!(
            m.starts_with("<134>1 2026-11-22T11:00:00.123456+01:00 "),
            "{m}"
        );
        e.time = "not a time".into();
        assert!(Syslog::create("").unwrap().message(&e).is_err());
    }
}
