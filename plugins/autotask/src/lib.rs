//! Autotask PSA destination: a ticket per incident, through the Autotask
//! REST API.
//!
//! The webhook URL is the zone's REST base, e.g.
//! `https://webservices5.autotask.net/ATServicesRest`. Every request carries
//! the `ApiIntegrationCode`, `UserName` and `Secret` headers and
//! `Content-Type: application/json`.
//!
//! Per incident (relay.yaml's `incidents.key`, else the event id):
//!
//! | event | request | success |
//! |---|---|---|
//! | first of its incident | `POST /V1.0/Tickets` `{"companyID", "queueID", "title", "description", "status", "priority"}` | `200` `{"itemId": N}`; N is kept |
//! | later, not resolving | `POST /V1.0/Tickets/{N}/Notes` `{"title", "description", "noteType", "publish"}` | `200` `{"itemId": note}` |
//! | resolving (`status: resolved/closed`, `event_action: resolve`, `resolved: true`) | `PATCH /V1.0/Tickets` `{"id": N, "status": complete_status}` | `200` `{"itemId": N}`; N is forgotten |
//!
//! A resolving event with no kept ticket fails its delivery. `classify`:
//! 2xx success (a create answer without `itemId` fails); 429, 5xx retry;
//! 400 (Autotask's `errors` quoted), 401, 403, 404 and other 4xx fail.
//! Title ≤ 255 and description ≤ 8,000 characters (Autotask's limits;
//! longer texts are cut with an ellipsis).
//!
//! Options: `integration_code`, `username`, `secret`, `company_id`,
//! `queue_id` (required); `status` (new ticket status, default 1 = New),
//! `complete_status` (default 5 = Complete), `priority` (default 2 =
//! Medium; `priority_map` maps event severities to priority ids), `note_type`
//! (default 1), `publish` (default 1), `title` (template).

use std::collections::BTreeMap;

use relay_sdk::text::{one_line, truncate};
use relay_sdk::ticket::{self, TicketState, id_in, is_resolving};
use relay_sdk::{
    Context, Event, Outcome, Payload, Request, Response, StatefulDestination, Target, Verdict,
    parse_options,
};
use serde::Deserialize;
use serde_json::json;

/// Autotask's limit on a ticket title.
pub const TITLE_MAX: usize = 255;
/// Autotask's limit on a ticket or note description.
pub const DESCRIPTION_MAX: usize = 8000;
const REASON_MAX: usize = 300;

/// Options of the Autotask destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub integration_code: String,
    pub username: String,
    pub secret: String,
    pub company_id: i64,
    pub queue_id: i64,
    #[serde(default = "one")]
    pub status: i64,
    #[serde(default = "five")]
    pub complete_status: i64,
    #[serde(default = "two")]
    pub priority: i64,
    #[serde(default)]
    pub priority_map: BTreeMap<String, i64>,
    #[serde(default = "one")]
    pub note_type: i64,
    #[serde(default = "one")]
    pub publish: i64,
    #[serde(default)]
    pub title: Option<String>,
}

fn one() -> i64 {
    1
}
fn two() -> i64 {
    2
}
fn five() -> i64 {
    5
}

/// The Autotask destination.
#[derive(Debug)]
pub struct Autotask {
    o: Options,
    priority_map: BTreeMap<String, i64>,
}

fn text(name: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(format!("invalid options: {name}: must not be empty"));
    }
    Ok(())
}

impl StatefulDestination for Autotask {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        text("integration_code", &o.integration_code)?;
        text("username", &o.username)?;
        text("secret", &o.secret)?;
        for (name, v) in [
            ("company_id", o.company_id),
            ("queue_id", o.queue_id),
            ("status", o.status),
            ("complete_status", o.complete_status),
            ("priority", o.priority),
            ("note_type", o.note_type),
        ] {
            if v <= 0 {
                return Err(format!("invalid options: {name}: {v} is not a valid id"));
            }
        }
        if !(0..=1).contains(&o.publish) {
            return Err(format!(
                "invalid options: publish: {} is not 0 or 1",
                o.publish
            ));
        }
        let mut priority_map = BTreeMap::new();
        for (k, v) in &o.priority_map {
            if *v <= 0 {
                return Err(format!(
                    "invalid options: priority_map.{k}: {v} is not a valid id"
                ));
            }
            priority_map.insert(k.trim().to_ascii_lowercase(), *v);
        }
        if o.title.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("invalid options: title: must not be empty (omit it instead)".into());
        }
        Ok(Autotask { o, priority_map })
    }

    fn build(
        &self,
        payload: &Payload,
        target: &Target,
        context: &Context,
    ) -> Result<Vec<Request>, String> {
        let base = target.url.trim().trim_end_matches('/');
        if base.is_empty() {
            return Err("the webhook has no URL".into());
        }
        let event = Event::from_payload(payload);
        let kept = TicketState::parse(context.state.as_deref());
        let o = &self.o;
        let (method, url, body) = match (is_resolving(&event), kept) {
            (false, None) => (
                "POST",
                format!("{base}/V1.0/Tickets"),
                json!({
                    "companyID": o.company_id,
                    "queueID": o.queue_id,
                    "title": truncate(&self.title_of(&event), TITLE_MAX),
                    "description": truncate(&ticket::details(&event), DESCRIPTION_MAX),
                    "status": o.status,
                    "priority": self.priority_of(&event),
                }),
            ),
            (false, Some(t)) => (
                "POST",
                format!("{base}/V1.0/Tickets/{}/Notes", t.ticket),
                json!({
                    "title": truncate(&self.title_of(&event), TITLE_MAX),
                    "description": truncate(&ticket::details(&event), DESCRIPTION_MAX),
                    "noteType": o.note_type,
                    "publish": o.publish,
                }),
            ),
            (true, Some(t)) => (
                "PATCH",
                format!("{base}/V1.0/Tickets"),
                json!({"id": t.ticket, "status": o.complete_status}),
            ),
            (true, None) => {
                return Err(format!(
                    "no Autotask ticket is known for incident {:?}: nothing to close",
                    context.incident_key
                ));
            }
        };
        let body = serde_json::to_vec(&body).map_err(|e| format!("cannot encode: {e}"))?;
        Ok(vec![
            Request::new(method, url)
                .header("ApiIntegrationCode", o.integration_code.trim())
                .header("UserName", o.username.trim())
                .header("Secret", o.secret.trim())
                .header("Content-Type", "application/json")
                .body(body),
        ])
    }

    fn classify(&self, response: &Response, context: &Context) -> Verdict {
        match response.status {
            200..=299 => {}
            429 | 500..=599 => return Verdict::keep(Outcome::Retry(response.retry_after_ms())),
            _ => return Verdict::keep(Outcome::Fail(reason(response))),
        }
        let item = id_in(&response.body, "itemId");
        match TicketState::parse(context.state.as_deref()) {
            None => match item {
                Some(ticket) => Verdict::set(Outcome::Success, TicketState { ticket }.to_state()),
                None => Verdict::keep(Outcome::Fail(format!(
                    "Autotask answered {} without an itemId",
                    response.status
                ))),
            },
            // The status change answers the ticket's own id; a note, its own.
            Some(t) if item == Some(t.ticket) => Verdict::clear(Outcome::Success),
            Some(_) => Verdict::keep(Outcome::Success),
        }
    }
}

relay_sdk::export_stateful_destination!(Autotask);

impl Autotask {
    fn title_of(&self, event: &Event) -> String {
        self.o
            .title
            .as_deref()
            .map(|t| one_line(&event.render(t)))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ticket::summary(event))
    }

    fn priority_of(&self, event: &Event) -> i64 {
        event
            .text("severity")
            .and_then(|s| self.priority_map.get(&s.trim().to_ascii_lowercase()))
            .copied()
            .unwrap_or(self.o.priority)
    }
}

/// `Autotask answered 500: …` quoting Autotask's `errors`.
fn reason(response: &Response) -> String {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        errors: Vec<String>,
    }
    let status = response.status;
    let detail = match serde_json::from_slice::<Answer>(&response.body) {
        Ok(a) => a.errors.join("; "),
        Err(_) => response
            .body_text()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    if detail.trim().is_empty() {
        format!("Autotask answered {status}")
    } else {
        format!(
            "Autotask answered {status}: {}",
            truncate(detail.trim(), REASON_MAX)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing::{self, context, response};
    use serde_json::Value;

    const OPTS: &str = r#"{"integration_code":"ICODE","username":"api@acme.example","secret":"s3cret","company_id":175,"queue_id":29682833,"priority_map":{"critical":4}}"#;
    const BASE: &str = "https://webservices5.autotask.net/ATServicesRest";

    fn build(data: Value, state: Option<&str>) -> Result<(Request, Value), String> {
        testing::build_stateful::<Autotask>(
            OPTS,
            &testing::event_payload(&testing::event(data)),
            &testing::target(BASE),
            &context("INC-1", state),
        )
        .map(|mut r| {
            let r = r.remove(0);
            let b = serde_json::from_slice(&r.body).unwrap();
            (r, b)
        })
    }

    #[test]
    fn create_note_close() {
        let (r, b) = build(json!({"title": "Ransomware", "severity": "critical"}), None).unwrap();
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("POST", &*format!("{BASE}/V1.0/Tickets"))
        );
        assert_eq!(r.header_value("ApiIntegrationCode"), Some("ICODE"));
        assert_eq!(r.header_value("UserName"), Some("api@acme.example"));
        assert_eq!(r.header_value("Secret"), Some("s3cret"));
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        assert_eq!(b["companyID"], 175);
        assert_eq!(b["queueID"], 29682833);
        assert_eq!(b["title"], "[critical] Ransomware");
        assert_eq!(
            (b["status"].clone(), b["priority"].clone()),
            (json!(1), json!(4))
        );
        let (r, b) = build(json!({"title": "more"}), Some(r#"{"ticket":9001}"#)).unwrap();
        assert_eq!(r.url, format!("{BASE}/V1.0/Tickets/9001/Notes"));
        assert_eq!(
            (b["noteType"].clone(), b["publish"].clone()),
            (json!(1), json!(1))
        );
        let (r, b) = build(json!({"resolved": true}), Some(r#"{"ticket":9001}"#)).unwrap();
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("PATCH", &*format!("{BASE}/V1.0/Tickets"))
        );
        assert_eq!(b, json!({"id": 9001, "status": 5}));
        assert!(
            build(json!({"status": "closed"}), None)
                .unwrap_err()
                .contains("nothing to close")
        );
    }

    #[test]
    fn classify_keeps_and_forgets_the_ticket() {
        let c = |status, body: &str, state: Option<&str>| {
            testing::classify_stateful::<Autotask>(
                OPTS,
                &response(status, &[], body),
                &context("k", state),
            )
            .unwrap()
        };
        assert_eq!(
            c(200, r#"{"itemId":9001}"#, None),
            Verdict::set(Outcome::Success, r#"{"ticket":9001}"#)
        );
        assert_eq!(
            c(200, r#"{"itemId":31}"#, Some(r#"{"ticket":9001}"#)),
            Verdict::keep(Outcome::Success)
        );
        assert_eq!(
            c(200, r#"{"itemId":9001}"#, Some(r#"{"ticket":9001}"#)),
            Verdict::clear(Outcome::Success)
        );
        assert!(matches!(c(200, "{}", None).outcome, Outcome::Fail(_)));
        assert_eq!(
            c(500, r#"{"errors":["x"]}"#, None).outcome,
            Outcome::Retry(None)
        );
        assert_eq!(
            c(
                400,
                r#"{"errors":["Value for CompanyID is required."]}"#,
                None
            )
            .outcome,
            Outcome::Fail("Autotask answered 400: Value for CompanyID is required.".into())
        );
    }

    #[test]
    fn options_are_validated_by_name() {
        let err = |o: &str| Autotask::create(o).unwrap_err();
        assert!(err(r#"{"integration_code":"a"}"#).contains("username"));
        assert!(err(&OPTS.replace("\"s3cret\"", "\"\"")).contains("secret"));
        assert!(err(&OPTS.replace("175", "0")).contains("company_id"));
        assert!(err(&OPTS.replace(":4}", ":0}")).contains("priority_map.critical"));
        assert!(err(&OPTS.replace("\"queue_id\"", "\"queue\"")).contains("queue"));
    }
}
