//! Falco's `http_output` JSON (`json_output: true`): one alert per body, or
//! an array of them.
//!
//! Owns: the alert's shape, the id rule and the priority → severity mapping.
//!
//! - id: Falco's `uuid` when the alert has one; otherwise `falco-` + 128
//!   bits of SHA-256 over time, rule, hostname and output, so the same alert
//!   posted twice is one event;
//! - time: the alert's `time`;
//! - data: `rule`, `priority` (as Falco wrote it), `severity` (relay's
//!   scale, see [`severity`]), `title` (the rule), `output`,
//!   `output_fields` (`{}` when absent), `hostname`, `tags`, `source`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Problem, event_object, hashed_id};

#[derive(Deserialize)]
struct Alert {
    rule: String,
    priority: String,
    output: String,
    time: String,
    #[serde(default)]
    output_fields: Map<String, Value>,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    uuid: Option<String>,
}

/// Falco's priorities on relay's severity scale: emergency, alert and
/// critical → critical; error → high; warning → medium; notice → low;
/// informational (info) and debug → info. `None` for anything else.
pub fn severity(priority: &str) -> Option<&'static str> {
    Some(match priority.to_ascii_lowercase().as_str() {
        "emergency" | "alert" | "critical" => "critical",
        "error" => "high",
        "warning" => "medium",
        "notice" => "low",
        "informational" | "info" | "debug" => "info",
        _ => return None,
    })
}

pub(super) fn items(body: Value, event_type: &str) -> Result<Vec<Value>, Problem> {
    let (alerts, batch) = match body {
        Value::Array(a) => (a, true),
        one => (vec![one], false),
    };
    alerts
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let at = if batch {
                format!("[{i}]")
            } else {
                String::new()
            };
            let a: Alert = serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                let place = match (at.as_str(), path.as_str()) {
                    ("", ".") => String::new(),
                    (at, ".") => format!("{at}: "),
                    (at, path) => format!("{at}{path}: "),
                };
                (
                    "invalid_payload",
                    format!("not a Falco alert: {place}{}", e.inner()),
                )
            })?;
            let severity = severity(&a.priority).ok_or_else(|| {
                (
                    "invalid_payload",
                    format!(
                        "{at}priority {:?} is not a Falco priority (Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug)",
                        a.priority
                    ),
                )
            })?;
            let id = match a.uuid.filter(|u| !u.is_empty()) {
                Some(u) => u,
                None => hashed_id("falco", &[&a.time, &a.rule, &a.hostname, &a.output]),
            };
            let data = json!({
                "rule": a.rule,
                "title": a.rule,
                "priority": a.priority,
                "severity": severity,
                "output": a.output,
                "output_fields": a.output_fields,
                "hostname": a.hostname,
                "tags": a.tags,
                "source": a.source,
            });
            Ok(event_object(event_type, Some(id), Some(a.time), data))
        })
        .collect()
}
