//! ConnectWise PSA (Manage) destination: a service ticket per incident.
//!
//! The webhook URL is the REST base of the site, e.g.
//! `https://api-na.myconnectwise.net/v4_6_release/apis/3.0`. Every request
//! carries `Authorization: Basic base64("{company_id}+{public_key}:{private_key}")`,
//! the `clientId` header and `Content-Type: application/json`.
//!
//! Per incident (relay.yaml's `incidents.key`, else the event id):
//!
//! | event | request | success |
//! |---|---|---|
//! | first of its incident | `POST /service/tickets` `{"summary", "initialDescription", "board", "company"}` | `201` with the ticket; its `id` is kept |
//! | later, not resolving | `POST /service/tickets/{id}/notes` `{"text", "detailDescriptionFlag": true}` | `201` |
//! | resolving (`status: resolved/closed`, `event_action: resolve`, `resolved: true`) | `PATCH /service/tickets/{id}` `[{"op": "replace", "path": "status", "value": {"name": closed_status}}]` | `200`; the kept id is forgotten |
//!
//! A resolving event with no kept ticket fails its delivery (there is
//! nothing to close). `classify`: 2xx success (a create answer without an
//! `id` fails); 429, 5xx retry; 400 (with ConnectWise's `message` and field
//! errors), 401, 403, 404 and other 4xx fail.
//!
//! Options: `company_id`, `public_key`, `private_key`, `client_id`
//! (required), `board` (required: name or id), `company` (required: the
//! ticket's company, identifier or id), `closed_status` (default `Closed`),
//! `summary` (template; default `[severity] title`).

use base64::Engine as _;
use relay_sdk::text::{one_line, truncate};
use relay_sdk::ticket::{self, TicketState, id_in, is_resolving};
use relay_sdk::{
    Context, Event, Outcome, Payload, Request, Response, StatefulDestination, Target, Verdict,
    parse_options,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// ConnectWise's limit on a ticket summary.
pub const SUMMARY_MAX: usize = 100;
/// Limit on the description and notes sent.
pub const TEXT_MAX: usize = 10_000;
const REASON_MAX: usize = 300;

/// A name or a numeric id.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NameOrId {
    Id(i64),
    Name(String),
}

/// Options of the ConnectWise destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub company_id: String,
    pub public_key: String,
    pub private_key: String,
    pub client_id: String,
    pub board: NameOrId,
    pub company: NameOrId,
    #[serde(default)]
    pub closed_status: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

/// The ConnectWise destination.
#[derive(Debug)]
pub struct ConnectWise {
    authorization: String,
    client_id: String,
    board: Value,
    company: Value,
    closed_status: String,
    summary: Option<String>,
}

fn required(name: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() || v.chars().any(char::is_control) {
        return Err(format!("invalid options: {name}: must not be empty"));
    }
    Ok(v.to_string())
}

fn reference(name: &str, v: &NameOrId, name_key: &str) -> Result<Value, String> {
    match v {
        NameOrId::Id(id) if *id > 0 => Ok(json!({ "id": id })),
        NameOrId::Id(id) => Err(format!("invalid options: {name}: {id} is not a valid id")),
        NameOrId::Name(n) => Ok(json!({ name_key: required(name, n)? })),
    }
}

impl StatefulDestination for ConnectWise {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        let company_id = required("company_id", &o.company_id)?;
        let public_key = required("public_key", &o.public_key)?;
        let private_key = required("private_key", &o.private_key)?;
        if public_key.contains(':') {
            return Err("invalid options: public_key: must not contain ':'".into());
        }
        let client_id = required("client_id", &o.client_id)?;
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{company_id}+{public_key}:{private_key}"));
        if o.summary.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("invalid options: summary: must not be empty (omit it instead)".into());
        }
        Ok(ConnectWise {
            authorization: format!("Basic {credentials}"),
            client_id,
            board: reference("board", &o.board, "name")?,
            company: reference("company", &o.company, "identifier")?,
            closed_status: match &o.closed_status {
                Some(s) => required("closed_status", s)?,
                None => "Closed".to_string(),
            },
            summary: o.summary,
        })
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
        let (method, url, body) = match (is_resolving(&event), kept) {
            (false, None) => (
                "POST",
                format!("{base}/service/tickets"),
                json!({
                    "summary": truncate(&self.summary_of(&event), SUMMARY_MAX),
                    "initialDescription": truncate(&ticket::details(&event), TEXT_MAX),
                    "board": self.board,
                    "company": self.company,
                }),
            ),
            (false, Some(t)) => (
                "POST",
                format!("{base}/service/tickets/{}/notes", t.ticket),
                json!({
                    "text": truncate(&format!("{}\n\n{}", self.summary_of(&event), ticket::details(&event)), TEXT_MAX),
                    "detailDescriptionFlag": true,
                }),
            ),
            (true, Some(t)) => (
                "PATCH",
                format!("{base}/service/tickets/{}", t.ticket),
                json!([{"op": "replace", "path": "status", "value": {"name": self.closed_status}}]),
            ),
            (true, None) => {
                return Err(format!(
                    "no ConnectWise ticket is known for incident {:?}: nothing to close",
                    context.incident_key
                ));
            }
        };
        let body = serde_json::to_vec(&body).map_err(|e| format!("cannot encode: {e}"))?;
        Ok(vec![
            Request::new(method, url)
                .header("Authorization", self.authorization.clone())
                .header("clientId", self.client_id.clone())
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(body),
        ])
    }

    fn classify(&self, response: &Response, context: &Context) -> Verdict {
        match response.status {
            200..=299 => {}
            429 | 500..=599 => return Verdict::keep(Outcome::Retry(response.retry_after_ms())),
            _ => return Verdict::keep(Outcome::Fail(reason(response))),
        }
        let id = id_in(&response.body, "id");
        match TicketState::parse(context.state.as_deref()) {
            None => match id {
                Some(ticket) => Verdict::set(Outcome::Success, TicketState { ticket }.to_state()),
                None => Verdict::keep(Outcome::Fail(format!(
                    "ConnectWise answered {} without a ticket id",
                    response.status
                ))),
            },
            // A note's answer names its ticket in `ticketId`; the status
            // change answers the ticket itself.
            Some(t) if id == Some(t.ticket) && id_in(&response.body, "ticketId").is_none() => {
                Verdict::clear(Outcome::Success)
            }
            Some(_) => Verdict::keep(Outcome::Success),
        }
    }
}

relay_sdk::export_stateful_destination!(ConnectWise);

impl ConnectWise {
    fn summary_of(&self, event: &Event) -> String {
        self.summary
            .as_deref()
            .map(|t| one_line(&event.render(t)))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ticket::summary(event))
    }
}

/// `ConnectWise answered 400: Ticket object is invalid (board: …)`.
fn reason(response: &Response) -> String {
    #[derive(Deserialize)]
    struct FieldError {
        field: Option<String>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Answer {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<FieldError>,
    }
    let status = response.status;
    let detail = match serde_json::from_slice::<Answer>(&response.body) {
        Ok(a) => {
            let fields: Vec<String> = a
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.field.as_deref().unwrap_or("?"),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect();
            let mut d = a.message.unwrap_or_default();
            if !fields.is_empty() {
                d = format!("{d} ({})", fields.join("; "));
            }
            d
        }
        Err(_) => response
            .body_text()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    if detail.trim().is_empty() {
        format!("ConnectWise answered {status}")
    } else {
        format!(
            "ConnectWise answered {status}: {}",
            truncate(detail.trim(), REASON_MAX)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing::{self, context, response};

    const OPTS: &str = r#"{"company_id":"acme","public_key":"pub","private_key":"priv","client_id":"1b0e-cid","board":"SOC","company":{"x":1}}"#;
    const GOOD: &str = r#"{"company_id":"acme","public_key":"pub","private_key":"priv","client_id":"1b0e-cid","board":"SOC","company":12}"#;
    const BASE: &str = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0";

    fn build(data: Value, state: Option<&str>) -> Result<Request, String> {
        testing::build_stateful::<ConnectWise>(
            GOOD,
            &testing::event_payload(&testing::event(data)),
            &testing::target(&format!("{BASE}/")),
            &context("INC-1", state),
        )
        .map(|mut r| r.remove(0))
    }

    #[test]
    fn the_first_event_creates_a_ticket_with_the_documented_auth() {
        let r = build(json!({"title": "Brute force", "severity": "high"}), None).unwrap();
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("POST", &*format!("{BASE}/service/tickets"))
        );
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("acme+pub:priv")
        );
        assert_eq!(r.header_value("authorization"), Some(auth.as_str()));
        assert_eq!(r.header_value("clientid"), Some("1b0e-cid"));
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["summary"], "[high] Brute force");
        assert_eq!(b["board"], json!({"name": "SOC"}));
        assert_eq!(b["company"], json!({"id": 12}));
        assert!(
            b["initialDescription"]
                .as_str()
                .unwrap()
                .contains("relay event")
        );
    }

    #[test]
    fn later_events_note_and_a_resolve_closes_the_kept_ticket() {
        let r = build(json!({"title": "again"}), Some(r#"{"ticket":77}"#)).unwrap();
        assert_eq!(r.url, format!("{BASE}/service/tickets/77/notes"));
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["detailDescriptionFlag"], true);
        let r = build(json!({"status": "resolved"}), Some(r#"{"ticket":77}"#)).unwrap();
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("PATCH", &*format!("{BASE}/service/tickets/77"))
        );
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            b,
            json!([{"op": "replace", "path": "status", "value": {"name": "Closed"}}])
        );
        let e = build(json!({"status": "resolved"}), None).unwrap_err();
        assert!(e.contains("INC-1") && e.contains("nothing to close"), "{e}");
    }

    #[test]
    fn classify_keeps_the_created_id_and_forgets_it_on_close() {
        let c = |status, body: &str, state: Option<&str>| {
            testing::classify_stateful::<ConnectWise>(
                GOOD,
                &response(status, &[], body),
                &context("k", state),
            )
            .unwrap()
        };
        assert_eq!(
            c(201, r#"{"id":77,"summary":"x"}"#, None),
            Verdict::set(Outcome::Success, r#"{"ticket":77}"#)
        );
        assert_eq!(
            c(201, r#"{"id":5,"ticketId":77}"#, Some(r#"{"ticket":77}"#)),
            Verdict::keep(Outcome::Success)
        );
        assert_eq!(
            c(200, r#"{"id":77}"#, Some(r#"{"ticket":77}"#)),
            Verdict::clear(Outcome::Success)
        );
        assert!(matches!(c(201, "{}", None).outcome, Outcome::Fail(_)));
        assert_eq!(c(503, "", None), Verdict::keep(Outcome::Retry(None)));
        assert_eq!(c(429, "", None), Verdict::keep(Outcome::Retry(None)));
        assert_eq!(
            c(400, r#"{"code":"InvalidObject","message":"ticket object is invalid","errors":[{"code":"NotFound","message":"Board not found","resource":"ticket","field":"board"}]}"#, None).outcome,
            Outcome::Fail("ConnectWise answered 400: ticket object is invalid (board: Board not found)".into())
        );
    }

    #[test]
    fn options_are_validated_by_name() {
        assert!(ConnectWise::create(OPTS).unwrap_err().contains("company"));
        let err = |patch: Value| {
            let mut o: Value = serde_json::from_str(GOOD).unwrap();
            for (k, v) in patch.as_object().unwrap() {
                o[k] = v.clone();
            }
            ConnectWise::create(&o.to_string()).unwrap_err()
        };
        assert!(err(json!({"private_key": ""})).contains("private_key"));
        assert!(err(json!({"client_id": " "})).contains("client_id"));
        assert!(err(json!({"board": 0})).contains("board"));
        assert!(err(json!({"boards": 1})).contains("unknown field `boards`"));
        assert!(
            ConnectWise::create(r#"{"company_id":"a"}"#)
                .unwrap_err()
                .contains("public_key")
        );
    }
}
