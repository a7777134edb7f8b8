//! PagerDuty destination: the Events API v2.
//!
//! `build` sends one `POST {url}/v2/enqueue` (the webhook URL, normally
//! `https://events.pagerduty.com`; a URL already ending in `/v2/enqueue` is
//! kept) with `Content-Type: application/json` and:
//!
//! ```json
//! {"routing_key": "…", "event_action": "trigger", "dedup_key": "…",
//!  "payload": {"summary": "…", "source": "…", "severity": "critical",
//!              "timestamp": "…", "component": "…", "group": "…", "class": "…",
//!              "custom_details": {…the event's data…}},
//!  "links": [{"href": "…", "text": "View event"}], "client": "relay"}
//! ```
//!
//! `acknowledge` and `resolve` carry only `routing_key`, `event_action` and
//! `dedup_key`, as the API asks.
//!
//! The payload is the event (`format: json` without a body template sends
//! it whole; with a template, the template's object is taken as the data).
//!
//! - **event_action**, from the event: `data.event_action` when it is
//!   `trigger`, `acknowledge` or `resolve`; else `data.status` `resolved`
//!   or `closed` → `resolve`, `acknowledged` → `acknowledge`; else `trigger`.
//! - **dedup_key**: the `dedup_key` option (a `{{…}}` template over the
//!   event) when set and not empty once rendered, else the incident key the
//!   relay hands over (relay.yaml's `incidents.key`, or the event id). A
//!   trigger and a later resolve of one incident so share a key. At most
//!   255 characters (PagerDuty's limit; longer keys are cut).
//! - **severity**: `data.<severity_field>` (default `severity`) mapped
//!   through `severity_map` (defaults: critical → critical, high → error,
//!   medium → warning, low → info, info → info), else `default_severity`
//!   (default `warning`). Values are compared case-insensitively.
//! - **summary**: the `summary` template, else `title`, `summary` or
//!   `message`, else the event type; one line, at most 1,024 characters.
//!
//! `classify`: 202 (and any 2xx) → success; 429 → retry (after
//! `Retry-After` when given; PagerDuty throttles per routing key); 5xx →
//! retry; 400 (invalid event) and other 4xx → fail with PagerDuty's message
//! and errors.
//!
//! Options: `routing_key` (required, the integration key), `dedup_key`,
//! `summary`, `source` (default `{{host}}`, else `relay`), `component`,
//! `group`, `class` (templates), `severity_field`, `severity_map`,
//! `default_severity`, `link_text`.

use std::collections::BTreeMap;

use relay_sdk::text::{one_line, truncate};
use relay_sdk::{
    Context, Event, Outcome, Payload, Request, Response, StatefulDestination, Target, Verdict,
    parse_options,
};
use serde::{Deserialize, Serialize};

use serde_json::value::RawValue;

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_MAX: usize = 1024;
/// PagerDuty's limit on `dedup_key`.
pub const DEDUP_KEY_MAX: usize = 255;
/// How much of an answer a failure reason quotes.
const REASON_MAX: usize = 300;
/// The severities PagerDuty accepts.
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// Options of the PagerDuty destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The integration (routing) key of the service.
    pub routing_key: String,
    /// Template of the dedup key (default: the incident key).
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// Template of the summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// Template of the source (default `{{host}}`, else `relay`).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    /// Data path of the event's severity (default `severity`).
    #[serde(default)]
    pub severity_field: Option<String>,
    /// Event severity (lower case) → PagerDuty severity.
    #[serde(default)]
    pub severity_map: BTreeMap<String, String>,
    /// Severity when the event's is missing or not in the map.
    #[serde(default)]
    pub default_severity: Option<String>,
    /// Text of the link to the event (default `View event`).
    #[serde(default)]
    pub link_text: Option<String>,
}

/// The PagerDuty destination.
#[derive(Debug)]
pub struct PagerDuty {
    options: Options,
    severity_map: BTreeMap<String, String>,
    default_severity: String,
}

#[derive(Debug, Serialize)]
struct Enqueue<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<PdPayload<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Link<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct PdPayload<'a> {
    summary: String,
    source: String,
    severity: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    /// The event's data as the JSON text it came in (not decoded).
    custom_details: &'a RawValue,
}

#[derive(Debug, Serialize)]
struct Link<'a> {
    href: &'a str,
    text: &'a str,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

fn check_severity(field: &str, value: &str) -> Result<String, String> {
    let v = value.trim().to_ascii_lowercase();
    if SEVERITIES.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!(
            "invalid options: {field}: {value:?} is not one of critical, error, warning, info"
        ))
    }
}

impl StatefulDestination for PagerDuty {
    fn create(options: &str) -> Result<Self, String> {
        let options: Options = parse_options(options)?;
        let key = options.routing_key.trim();
        if key.is_empty() {
            return Err("invalid options: routing_key: must not be empty".into());
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("invalid options: routing_key: must not contain spaces".into());
        }
        let mut severity_map: BTreeMap<String, String> = [
            ("critical", "critical"),
            ("high", "error"),
            ("medium", "warning"),
            ("low", "info"),
            ("info", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (from, to) in &options.severity_map {
            let to = check_severity(&format!("severity_map.{from}"), to)?;
            severity_map.insert(from.trim().to_ascii_lowercase(), to);
        }
        let default_severity = match &options.default_severity {
            Some(s) => check_severity("default_severity", s)?,
            None => "warning".to_string(),
        };
        for (name, value) in [
            ("dedup_key", &options.dedup_key),
            ("summary", &options.summary),
            ("source", &options.source),
            ("severity_field", &options.severity_field),
            ("link_text", &options.link_text),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!(
                    "invalid options: {name}: must not be empty (omit it instead)"
                ));
            }
        }
        Ok(PagerDuty {
            options,
            severity_map,
            default_severity,
        })
    }

    fn build(
        &self,
        payload: &Payload,
        target: &Target,
        context: &Context,
    ) -> Result<Vec<Request>, String> {
        let url = endpoint(&target.url)?;
        let event = Event::from_payload(payload);
        let action = action_of(&event);
        let dedup_key = self
            .options
            .dedup_key
            .as_deref()
            .map(|t| event.render(t))
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| context.incident_key.clone());
        let dedup_key = if dedup_key.is_empty() {
            event.id.clone()
        } else {
            dedup_key
        };
        if dedup_key.is_empty() && action != "trigger" {
            return Err(format!(
                "cannot {action}: the event gives no dedup_key and there is no incident key"
            ));
        }
        let dedup_key = truncate(&dedup_key, DEDUP_KEY_MAX);
        let link = ["url", "link"]
            .iter()
            .find_map(|p| event.str(p))
            .filter(|l| relay_sdk::card::is_web_url(l));
        let body = if action == "trigger" {
            let o = &self.options;
            let opt = |t: &Option<String>| {
                t.as_deref()
                    .map(|t| one_line(&event.render(t)))
                    .filter(|s| !s.is_empty())
            };
            let summary = opt(&o.summary)
                .or_else(|| {
                    ["title", "summary", "message"]
                        .iter()
                        .find_map(|p| event.text(p))
                        .map(|t| one_line(&t))
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| {
                    if event.event_type.is_empty() {
                        "relay event".to_string()
                    } else {
                        event.event_type.clone()
                    }
                });
            let source = match &o.source {
                Some(_) => opt(&o.source),
                None => event.text("host").filter(|h| !h.trim().is_empty()),
            }
            .unwrap_or_else(|| "relay".to_string());
            let severity = self.severity(&event);
            Enqueue {
                routing_key: o.routing_key.trim(),
                event_action: action,
                dedup_key,
                payload: Some(PdPayload {
                    summary: truncate(&summary, SUMMARY_MAX),
                    source: truncate(&source, 255),
                    severity,
                    timestamp: Some(event.time.as_str()).filter(|t| !t.is_empty()),
                    component: opt(&o.component),
                    group: opt(&o.group),
                    class: opt(&o.class),
                    custom_details: data_json(&event),
                }),
                links: link
                    .map(|href| Link {
                        href,
                        text: o.link_text.as_deref().unwrap_or("View event"),
                    })
                    .into_iter()
                    .collect(),
                client: Some("relay"),
            }
        } else {
            Enqueue {
                routing_key: self.options.routing_key.trim(),
                event_action: action,
                dedup_key,
                payload: None,
                links: Vec::new(),
                client: None,
            }
        };
        let body =
            serde_json::to_vec(&body).map_err(|e| format!("cannot encode the event: {e}"))?;
        Ok(vec![
            Request::post(url)
                .header("Content-Type", "application/json")
                .body(body),
        ])
    }

    fn classify(&self, response: &Response, _context: &Context) -> Verdict {
        Verdict::keep(match response.status {
            200..=299 => Outcome::Success,
            429 => Outcome::Retry(response.retry_after_ms()),
            500..=599 => Outcome::Retry(response.retry_after_ms()),
            _ => Outcome::Fail(reason(response)),
        })
    }
}

relay_sdk::export_stateful_destination!(PagerDuty);

impl PagerDuty {
    fn severity(&self, event: &Event) -> &str {
        let field = self.options.severity_field.as_deref().unwrap_or("severity");
        event
            .text(field)
            .and_then(|s| self.severity_map.get(&s.trim().to_ascii_lowercase()))
            .map_or(self.default_severity.as_str(), String::as_str)
    }
}

/// The Events API action an event asks for.
pub fn action_of(event: &Event) -> &'static str {
    let lower = |p: &str| event.str(p).map(|s| s.trim().to_ascii_lowercase());
    match lower("event_action").as_deref() {
        Some("trigger") => return "trigger",
        Some("acknowledge") => return "acknowledge",
        Some("resolve") => return "resolve",
        _ => {}
    }
    match lower("status").as_deref() {
        Some("resolved" | "closed") => "resolve",
        Some("acknowledged") => "acknowledge",
        _ => "trigger",
    }
}

/// `{base}/v2/enqueue` from the webhook URL.
/// The event's data as raw JSON, `null` when it has none.
fn data_json(event: &Event) -> &RawValue {
    serde_json::from_str(event.data_json()).unwrap_or(RawValue::NULL)
}

fn endpoint(url: &str) -> Result<String, String> {
    let base = url.trim().trim_end_matches('/');
    if base.is_empty() {
        return Err("the webhook has no URL".to_string());
    }
    Ok(if base.ends_with("/v2/enqueue") {
        base.to_string()
    } else {
        format!("{base}/v2/enqueue")
    })
}

/// `PagerDuty answered 400: Event object is invalid (…)`.
fn reason(response: &Response) -> String {
    let status = response.status;
    let detail = match serde_json::from_slice::<Answer>(&response.body) {
        Ok(a) => {
            let mut d = a.message.unwrap_or_default();
            if !a.errors.is_empty() {
                d = format!("{d} ({})", a.errors.join("; "));
            }
            d
        }
        Err(_) => response
            .body_text()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    let detail = detail.trim();
    if detail.is_empty() {
        format!("PagerDuty answered {status}")
    } else {
        format!(
            "PagerDuty answered {status}: {}",
            truncate(detail, REASON_MAX)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing::{self, context, response};
    use serde_json::{Value, json};

    const OPTS: &str = r#"{"routing_key":"R0UTINGKEY0123456789abcdef012345"}"#;

    fn build(options: &str, data: Value, key: &str) -> Value {
        let payload = testing::event_payload(&testing::event(data));
        let mut r = testing::build_stateful::<PagerDuty>(
            options,
            &payload,
            &testing::target("https://events.pagerduty.com"),
            &context(key, None),
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        let r = r.remove(0);
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "https://events.pagerduty.com/v2/enqueue");
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn a_trigger_carries_payload_severity_and_the_incident_key() {
        let b = build(
            OPTS,
            json!({"title": "Brute force", "severity": "high", "host": "vpn-1",
                   "url": "https://app.example/i/9"}),
            "INC-9",
        );
        assert_eq!(b["routing_key"], "R0UTINGKEY0123456789abcdef012345");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "INC-9");
        assert_eq!(b["payload"]["summary"], "Brute force");
        assert_eq!(b["payload"]["severity"], "error");
        assert_eq!(b["payload"]["source"], "vpn-1");
        assert_eq!(b["payload"]["timestamp"], testing::EVENT_TIME);
        assert_eq!(b["payload"]["custom_details"]["host"], "vpn-1");
        assert_eq!(b["links"][0]["href"], "https://app.example/i/9");
    }

    #[test]
    fn a_resolve_has_only_the_three_fields() {
        let b = build(
            r#"{"routing_key":"rk","dedup_key":"{{type}}/{{incident_id}}"}"#,
            json!({"incident_id": "7", "status": "resolved"}),
            "ignored",
        );
        assert_eq!(
            b,
            json!({"routing_key": "rk", "event_action": "resolve",
                   "dedup_key": format!("{}/7", testing::EVENT_TYPE)})
        );
    }

    #[test]
    fn actions_come_from_the_event() {
        let a = |d: Value| action_of(&testing::event(d));
        assert_eq!(a(json!({})), "trigger");
        assert_eq!(a(json!({"event_action": "Acknowledge"})), "acknowledge");
        assert_eq!(a(json!({"status": "closed"})), "resolve");
        assert_eq!(a(json!({"status": "acknowledged"})), "acknowledge");
        assert_eq!(a(json!({"status": "open"})), "trigger");
        assert_eq!(
            a(json!({"event_action": "bogus", "status": "resolved"})),
            "resolve"
        );
    }

    #[test]
    fn severity_map_and_default() {
        let o =
            r#"{"routing_key":"rk","severity_map":{"High":"critical"},"default_severity":"info"}"#;
        assert_eq!(
            build(o, json!({"severity": "HIGH"}), "k")["payload"]["severity"],
            "critical"
        );
        assert_eq!(
            build(o, json!({"severity": "weird"}), "k")["payload"]["severity"],
            "info"
        );
        assert_eq!(
            build(OPTS, json!({}), "k")["payload"]["severity"],
            "warning"
        );
        assert_eq!(
            build(OPTS, json!({"severity": "critical"}), "k")["payload"]["severity"],
            "critical"
        );
    }

    #[test]
    fn long_texts_are_cut_to_the_api_limits() {
        let b = build(
            r#"{"routing_key":"rk","dedup_key":"{{k}}"}"#,
            json!({"title": "t".repeat(5000), "k": "k".repeat(1000)}),
            "x",
        );
        assert_eq!(
            b["payload"]["summary"].as_str().unwrap().chars().count(),
            SUMMARY_MAX
        );
        assert_eq!(
            b["dedup_key"].as_str().unwrap().chars().count(),
            DEDUP_KEY_MAX
        );
    }

    #[test]
    fn classifies_events_api_answers() {
        let c = |status, headers: &[(&str, &str)], body: &str| {
            testing::classify_stateful::<PagerDuty>(
                OPTS,
                &response(status, headers, body),
                &context("k", None),
            )
            .unwrap()
            .outcome
        };
        assert_eq!(
            c(
                202,
                &[],
                r#"{"status":"success","message":"Event processed","dedup_key":"k"}"#
            ),
            Outcome::Success
        );
        assert_eq!(
            c(429, &[("Retry-After", "3")], ""),
            Outcome::Retry(Some(3000))
        );
        assert_eq!(c(500, &[], ""), Outcome::Retry(None));
        assert_eq!(
            c(400, &[], r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#),
            Outcome::Fail("PagerDuty answered 400: Event object is invalid (Length of 'routing_key' is incorrect (should be 32 characters))".into())
        );
        assert!(matches!(c(404, &[], "nope"), Outcome::Fail(_)));
    }

    #[test]
    fn options_are_validated_by_name() {
        let err = |o: &str| PagerDuty::create(o).unwrap_err();
        assert!(err("{}").contains("routing_key"));
        assert!(err(r#"{"routing_key":" "}"#).contains("routing_key"));
        assert!(
            err(r#"{"routing_key":"k","severity_map":{"high":"urgent"}}"#)
                .contains("severity_map.high")
        );
        assert!(
            err(r#"{"routing_key":"k","default_severity":"low"}"#).contains("default_severity")
        );
        assert!(err(r#"{"routing_key":"k","dedup":"x"}"#).contains("unknown field `dedup`"));
        assert!(err(r#"{"routing_key":"k","summary":""}"#).contains("summary"));
    }
}
