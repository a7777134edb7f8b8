//! Prometheus Alertmanager's webhook payload, version 4: one event per
//! alert.
//!
//! Owns: the payload's shape, the id rule and the severity-label mapping.
//!
//! - id: `am-` + 128 bits of SHA-256 over fingerprint, startsAt and status,
//!   so a notification Alertmanager sends again (`repeat_interval`, a retry,
//!   the other member of an HA pair) is deduplicated, while the firing and
//!   the resolved notification of one alert are two events;
//! - time: `startsAt` when firing, `endsAt` when resolved;
//! - data: `status`, `alertname`, `title` (the `summary` annotation, else
//!   the alert name), `severity` (from the `severity` label, see
//!   [`severity`]), `labels`, `annotations`, `startsAt`, `endsAt`,
//!   `generatorURL`, `fingerprint`, and the group's `receiver`, `groupKey`,
//!   `externalURL`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, event_object, hashed_id};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_key: String,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: Status,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Firing,
    Resolved,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// relay's severity scale (critical, high, medium, low, info) from the
/// `severity` label's common values; any other value is kept as written.
pub fn severity(label: &str) -> String {
    match label.to_ascii_lowercase().as_str() {
        "critical" | "page" | "emergency" | "fatal" => "critical",
        "high" | "error" | "major" => "high",
        "warning" | "warn" | "medium" => "medium",
        "low" | "minor" | "notice" => "low",
        "info" | "informational" | "none" | "debug" => "info",
        _ => return label.to_owned(),
    }
    .to_owned()
}

pub(super) fn items(body: Value, event_type: &str) -> Result<Vec<Value>, Problem> {
    let version = body.get("version").cloned();
    match version {
        Some(Value::String(v)) if v == "4" => {}
        Some(other) => {
            return Err((
                "unsupported_version",
                format!(
                    "Alertmanager webhook payload version {other} is not supported (version \"4\" is)"
                ),
            ));
        }
        None => {
            return Err((
                "invalid_payload",
                "not an Alertmanager webhook payload: the field version is missing".into(),
            ));
        }
    }
    let p: Payload = serde_path_to_error::deserialize(body).map_err(|e| {
        (
            "invalid_payload",
            format!(
                "not an Alertmanager webhook payload: {}: {}",
                e.path(),
                e.inner()
            ),
        )
    })?;
    p.alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.fingerprint.is_empty() {
                return Err((
                    "invalid_payload",
                    format!("alerts[{i}].fingerprint is empty"),
                ));
            }
            let status = a.status.as_str();
            let id = hashed_id("am", &[&a.fingerprint, &a.starts_at, status]);
            let time = match a.status {
                Status::Firing => a.starts_at.clone(),
                Status::Resolved => a.ends_at.clone(),
            };
            let alertname = a.labels.get("alertname").cloned().unwrap_or_default();
            let title = a
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_else(|| alertname.clone());
            let severity = a.labels.get("severity").map(|s| severity(s));
            let mut data = json!({
                "status": status,
                "alertname": alertname,
                "title": title,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": a.starts_at,
                "endsAt": a.ends_at,
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
                "receiver": p.receiver,
                "groupKey": p.group_key,
                "externalURL": p.external_url,
            });
            if let (Some(sev), Value::Object(d)) = (severity, &mut data) {
                d.insert("severity".into(), Value::String(sev));
            }
            Ok(event_object(event_type, Some(id), Some(time), data))
        })
        .collect()
}
