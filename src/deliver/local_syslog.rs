//! The host's own syslog daemon: `url: unix:///dev/log` (any socket path),
//! DESIGN §18. Uses the `syslog` crate where it is correct: its RFC 5424
//! formatter ([`syslog::Formatter5424`]) and its unix transport
//! ([`syslog::unix_custom`]: a datagram socket, or a stream socket with NUL
//! terminators when the daemon listens on one).
//!
//! Owns: composing one message from the event ([`compose`]) and writing it
//! ([`send`]). The crate stamps the current time in the header and takes
//! a numeric MSGID (DESIGN §12 lists what it gets wrong), so the event's own
//! time, type and id go into structured data: one SD element
//! (`relay@32473` unless the `sd_id` option says otherwise) with `event_id`,
//! `event_type`, `event_time` and one param per top-level scalar data field
//! (names made SD-NAMEs, values cut to [`SD_VALUE_MAX`] characters, at most
//! [`SD_PARAMS_MAX`] params and [`SD_BYTES_MAX`] bytes in all); the crate
//! escapes `"`, `\` and `]` in values. MSG is the title on one line.
//!
//! Options (the webhook's `options`, the same names as the `syslog`
//! formatter's; others are accepted and not used here): `facility` (name or
//! 0–23, default `local0`), `severity` (name or 0–7; default from the
//! event's `severity_field`, `severity`), `app_name` (`relay`), `hostname`
//! (the machine's), `sd_id`, `message_field` (`title`, else `text`).
//!
//! **Architecture Invariant:** the write is a blocking call of the crate,
//! so it runs on tokio's blocking pool with the socket's write timeout set
//! to the webhook's `timeout_ms`; no async worker ever waits on the daemon.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use syslog::{Facility, Formatter5424, LogFormat, LoggerBackend, Severity};

use super::error::DeliveryError;
use crate::event::Event;

/// Most SD params per message (besides `event_id`, `event_type`, `event_time`).
pub const SD_PARAMS_MAX: usize = 64;
/// Longest SD param value, in characters.
pub const SD_VALUE_MAX: usize = 1024;
/// Size cap of the SD element's params, in bytes (values counted escaped).
pub const SD_BYTES_MAX: usize = 16 * 1024;
/// Longest MSG, in characters.
pub const MSG_MAX: usize = 4096;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Options {
    facility: Option<Value>,
    severity: Option<Value>,
    severity_field: Option<String>,
    app_name: Option<String>,
    hostname: Option<String>,
    sd_id: Option<String>,
    message_field: Option<String>,
}

const FACILITIES: [Facility; 24] = [
    Facility::LOG_KERN,
    Facility::LOG_USER,
    Facility::LOG_MAIL,
    Facility::LOG_DAEMON,
    Facility::LOG_AUTH,
    Facility::LOG_SYSLOG,
    Facility::LOG_LPR,
    Facility::LOG_NEWS,
    Facility::LOG_UUCP,
    Facility::LOG_CRON,
    Facility::LOG_AUTHPRIV,
    Facility::LOG_FTP,
    Facility::LOG_NTP,
    Facility::LOG_AUDIT,
    Facility::LOG_ALERT,
    Facility::LOG_CLOCK_DAEMON,
    Facility::LOG_LOCAL0,
    Facility::LOG_LOCAL1,
    Facility::LOG_LOCAL2,
    Facility::LOG_LOCAL3,
    Facility::LOG_LOCAL4,
    Facility::LOG_LOCAL5,
    Facility::LOG_LOCAL6,
    Facility::LOG_LOCAL7,
];

const SEVERITIES: [Severity; 8] = [
    Severity::LOG_EMERG,
    Severity::LOG_ALERT,
    Severity::LOG_CRIT,
    Severity::LOG_ERR,
    Severity::LOG_WARNING,
    Severity::LOG_NOTICE,
    Severity::LOG_INFO,
    Severity::LOG_DEBUG,
];

fn facility(v: Option<&Value>) -> Result<Facility, String> {
    match v {
        None => Ok(Facility::LOG_LOCAL0),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|i| FACILITIES.get(usize::try_from(i).ok()?).copied())
            .ok_or_else(|| format!("options.facility: {n} is not 0-23")),
        Some(Value::String(s)) => s
            .to_ascii_lowercase()
            .parse()
            .map_err(|()| format!("options.facility: {s:?} is not a facility name")),
        Some(other) => Err(format!("options.facility: {other} is not a facility")),
    }
}

/// A severity name (syslog names and the usual finding levels) or 0–7.
fn severity_of(v: &Value) -> Option<Severity> {
    match v {
        Value::Number(n) => SEVERITIES.get(usize::try_from(n.as_u64()?).ok()?).copied(),
        Value::String(s) => Some(match s.trim().to_ascii_lowercase().as_str() {
            "emerg" | "emergency" => Severity::LOG_EMERG,
            "alert" => Severity::LOG_ALERT,
            "crit" | "critical" => Severity::LOG_CRIT,
            "err" | "error" | "high" => Severity::LOG_ERR,
            "warning" | "warn" | "medium" => Severity::LOG_WARNING,
            "notice" | "low" => Severity::LOG_NOTICE,
            "debug" => Severity::LOG_DEBUG,
            _ => Severity::LOG_INFO,
        }),
        _ => None,
    }
}

/// An RFC 5424 SD-NAME: printable US-ASCII without `=`, space, `]`, `"`,
/// at most 32 characters; `None` when nothing is left.
fn sd_name(raw: &str) -> Option<String> {
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"') {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    (!name.is_empty() && name.chars().any(|c| c != '_')).then_some(name)
}

/// Header text for the crate (which writes it as is): printable US-ASCII,
/// no spaces, at most `max` characters, `-` when empty.
fn header_field(raw: &str, max: usize) -> String {
    let s: String = raw
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if s.is_empty() { "-".into() } else { s }
}

fn one_line(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// Escaped length of an SD value (the crate escapes `\`, `"` and `]`).
fn escaped_len(v: &str) -> usize {
    v.len()
        + v.bytes()
            .filter(|b| matches!(b, b'\\' | b'"' | b']'))
            .count()
}

/// The RFC 5424 message of `event`, formatted by the crate's
/// [`Formatter5424`] (its timestamp: now; the event's time is in SD).
pub fn compose(event: &Event, options_json: &str) -> Result<Vec<u8>, DeliveryError> {
    let options: Options = if options_json.trim().is_empty() {
        Options::default()
    } else {
        serde_json::from_str(options_json)
            .map_err(|e| DeliveryError::Config(format!("options: {e}")))?
    };
    let facility = facility(options.facility.as_ref()).map_err(DeliveryError::Config)?;
    let lookup = |path: &str| {
        path.split('.')
            .try_fold(&*event.data, |v, seg| v.get(seg))
            .filter(|v| !v.is_null())
    };
    let severity = match &options.severity {
        Some(v) => severity_of(v).ok_or_else(|| {
            DeliveryError::Config(format!("options.severity: {v} is not a severity"))
        })?,
        None => lookup(options.severity_field.as_deref().unwrap_or("severity"))
            .and_then(severity_of)
            .unwrap_or(Severity::LOG_INFO),
    };
    let message_fields = match options.message_field.as_deref() {
        Some(f) => vec![f],
        None => vec!["title", "text"],
    };
    let message = message_fields
        .into_iter()
        .find_map(lookup)
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
            _ => None,
        })
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| event.event_type.clone());

    let mut params = BTreeMap::new();
    params.insert("event_id".to_owned(), event.id.clone());
    params.insert(
        "event_type".to_owned(),
        one_line(&event.event_type, SD_VALUE_MAX),
    );
    params.insert("event_time".to_owned(), event.time.clone());
    let mut bytes: usize = params
        .iter()
        .map(|(k, v)| k.len() + escaped_len(v) + 4)
        .sum();
    let mut added = 0;
    if let Value::Object(map) = &*event.data {
        for (key, value) in map {
            if added == SD_PARAMS_MAX {
                break;
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => continue,
            };
            let Some(name) = sd_name(key) else { continue };
            if params.contains_key(&name) {
                continue;
            }
            let text = one_line(&text, SD_VALUE_MAX);
            let cost = name.len() + escaped_len(&text) + 4;
            if bytes + cost > SD_BYTES_MAX {
                break;
            }
            bytes += cost;
            added += 1;
            params.insert(name, text);
        }
    }
    let sd_id = options.sd_id.as_deref().and_then(sd_name);
    let mut data = BTreeMap::new();
    data.insert(sd_id.unwrap_or_else(|| "relay@32473".into()), params);

    let defaults = Formatter5424::default();
    let formatter = Formatter5424 {
        facility,
        hostname: options
            .hostname
            .as_deref()
            .or(defaults.hostname.as_deref())
            .map(|h| header_field(h, 255)),
        process: header_field(options.app_name.as_deref().unwrap_or("relay"), 48),
        pid: std::process::id(),
    };
    let mut out = Vec::with_capacity(512);
    formatter
        .format(&mut out, severity, (0, data, one_line(&message, MSG_MAX)))
        .map_err(|e| DeliveryError::Config(format!("cannot format the syslog message: {e}")))?;
    Ok(out)
}

/// Writes `message` to the daemon listening on the socket of `url`
/// (`unix:///path`) with the crate's unix transport, within `timeout`.
pub async fn send(url: &str, message: Vec<u8>, timeout: Duration) -> Result<(), DeliveryError> {
    let path = url.strip_prefix("unix://").unwrap_or(url).to_owned();
    let shown = url.to_owned();
    let network = move |reason: String| DeliveryError::Network {
        host: shown.clone(),
        reason,
    };
    let network2 = network.clone();
    let write = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut logger = syslog::unix_custom(Formatter5424::default(), &path)
            .map_err(|e| network(format!("cannot connect to {path}: {e}")))?;
        match &mut logger.backend {
            LoggerBackend::Unix(s) => s.set_write_timeout(Some(timeout)),
            LoggerBackend::UnixStream(s) => s.get_mut().set_write_timeout(Some(timeout)),
            _ => Ok(()),
        }
        .map_err(|e| network(format!("cannot set a write timeout: {e}")))?;
        logger
            .backend
            .write_all(&message)
            .and_then(|()| logger.backend.flush())
            .map_err(|e| network(format!("writing to {path} failed: {e}")))
    });
    match tokio::time::timeout(timeout + Duration::from_millis(100), write).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(network2(format!("the write task failed: {e}"))),
        Err(_) => Err(DeliveryError::Timeout {
            host: url.to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> Event {
        Event {
            id: "0190-ev".into(),
            event_type: "finding.created".into(),
            time: "2026-11-27T22:14:03.120Z".into(),
            data: data.into(),
        }
    }

    #[test]
    fn the_event_time_type_id_and_fields_go_into_structured_data() {
        let m = compose(
            &event(
                json!({"title": "Impossible travel\nfor j.doe", "severity": "critical",
                          "tenant name": "Acme", "quote\"d]": "a\"b]c\\", "n": 5, "obj": {"x": 1}}),
            ),
            r#"{"facility": "auth", "app_name": "relay soc"}"#,
        )
        .unwrap();
        let m = String::from_utf8(m).unwrap();
        // <PRI> = auth (4) * 8 + crit (2) = 34.
        assert!(m.starts_with("<34>1 "), "{m}");
        let fields: Vec<&str> = m.splitn(8, ' ').collect();
        assert_eq!(fields[3], "relay_soc", "{m}");
        assert_eq!(fields[5], "0", "the crate's MSGID is a number");
        assert!(m.contains("event_time=\"2026-11-27T22:14:03.120Z\""), "{m}");
        assert!(m.contains("event_id=\"0190-ev\""), "{m}");
        assert!(m.contains("event_type=\"finding.created\""), "{m}");
        assert!(
            m.contains("title=\"Impossible travel for j.doe\""),
            "one line: {m}"
        );
        assert!(m.contains("tenant_name=\"Acme\""), "{m}");
        assert!(m.contains("quote_d_=\"a\\\"b\\]c\\\\\""), "{m}");
        assert!(m.contains(" n=\"5\""), "{m}");
        assert!(!m.contains("obj="), "objects are not SD params: {m}");
        assert!(m.ends_with("] Impossible travel for j.doe"), "{m}");
    }

    #[test]
    fn huge_events_stay_within_the_sd_limits() {
        let mut data = serde_json::Map::new();
        for i in 0..200 {
            data.insert(format!("f{i:03}"), json!("v".repeat(5000)));
        }
        let m = compose(&event(Value::Object(data)), "").unwrap();
        assert!(m.len() < SD_BYTES_MAX + 512, "{}", m.len());
        let e = compose(&event(json!({})), r#"{"facility": 99}"#).unwrap_err();
        assert!(e.to_string().contains("options.facility"), "{e}");
    }
}
