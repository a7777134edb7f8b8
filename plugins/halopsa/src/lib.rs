//! HaloPSA destination: a ticket per incident, through the HaloPSA API.
//!
//! The webhook URL is the Halo resource server, e.g.
//! `https://acme.halopsa.com` (requests go to `{url}/api/...`). Halo's API
//! takes an OAuth2 bearer token from the client-credentials grant: give the
//! webhook `auth: {oauth2: {token_url: https://acme.halopsa.com/auth/token,
//! client_id, client_secret, scope: all}}` and the relay fetches, caches and
//! adds the token; this plugin never sees the secret. The webhook's own
//! headers are passed through (not `Content-Type`).
//!
//! Halo creates and updates with the same call, a JSON **array** of objects:
//!
//! | event | request | success |
//! |---|---|---|
//! | first of its incident | `POST /api/tickets` `[{"summary", "details", "tickettype_id", "client_id", "site_id", "priority_id"}]` | `201` (or `200`) with the ticket; its `id` is kept |
//! | later, not resolving | `POST /api/actions` `[{"ticket_id", "note", "outcome"}]` | `201` with the action |
//! | resolving (`status: resolved/closed`, `event_action: resolve`, `resolved: true`) | `POST /api/tickets` `[{"id", "status_id": closed_status_id}]` | `201` with the ticket; its id is forgotten |
//!
//! A resolving event with no kept ticket fails its delivery. `classify`:
//! 2xx success (a create answer without an `id` fails); 429, 5xx retry;
//! 400, 401, 403, 404 and other 4xx fail. Summary ≤ 255 characters.
//!
//! Options (all optional): `tickettype_id`, `customer_id` (Halo's
//! `client_id` of the ticket), `site_id`, `priority_id` (default for all
//! events) and `priority_map` (severity → `priority_id`), `closed_status_id`
//! (default 9, Halo's "Closed"), `note_outcome` (default `Note`), `summary`
//! (template).

use std::collections::BTreeMap;

use relay_sdk::text::{one_line, truncate};
use relay_sdk::ticket::{self, TicketState, id_in, is_resolving};
use relay_sdk::{
    Context, Event, Outcome, Payload, Request, Response, StatefulDestination, Target, Verdict,
    parse_options,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Limit on a ticket summary.
pub const SUMMARY_MAX: usize = 255;
/// Limit on details and notes sent.
pub const TEXT_MAX: usize = 10_000;
const REASON_MAX: usize = 300;

/// Options of the HaloPSA destination.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default)]
    pub tickettype_id: Option<i64>,
    #[serde(default)]
    pub customer_id: Option<i64>,
    #[serde(default)]
    pub site_id: Option<i64>,
    #[serde(default)]
    pub priority_id: Option<i64>,
    #[serde(default)]
    pub priority_map: BTreeMap<String, i64>,
    #[serde(default)]
    pub closed_status_id: Option<i64>,
    #[serde(default)]
    pub note_outcome: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

/// The HaloPSA destination.
#[derive(Debug)]
pub struct HaloPsa {
    o: Options,
    priority_map: BTreeMap<String, i64>,
    closed_status_id: i64,
    note_outcome: String,
}

#[derive(Debug, Serialize)]
struct NewTicket {
    summary: String,
    details: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tickettype_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority_id: Option<i64>,
}

impl StatefulDestination for HaloPsa {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        for (name, v) in [
            ("tickettype_id", o.tickettype_id),
            ("customer_id", o.customer_id),
            ("site_id", o.site_id),
            ("priority_id", o.priority_id),
            ("closed_status_id", o.closed_status_id),
        ] {
            if let Some(v) = v
                && v <= 0
            {
                return Err(format!("invalid options: {name}: {v} is not a valid id"));
            }
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
        for (name, v) in [("note_outcome", &o.note_outcome), ("summary", &o.summary)] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(format!(
                    "invalid options: {name}: must not be empty (omit it instead)"
                ));
            }
        }
        Ok(HaloPsa {
            closed_status_id: o.closed_status_id.unwrap_or(9),
            note_outcome: o.note_outcome.clone().unwrap_or_else(|| "Note".into()),
            priority_map,
            o,
        })
    }

    fn build(
        &self,
        payload: &Payload,
        target: &Target,
        context: &Context,
    ) -> Result<Vec<Request>, String> {
        let base = target.url.trim().trim_end_matches('/');
        let base = base.strip_suffix("/api").unwrap_or(base);
        if base.is_empty() {
            return Err("the webhook has no URL".into());
        }
        let event = Event::from_payload(payload);
        let kept = TicketState::parse(context.state.as_deref());
        let (path, body) = match (is_resolving(&event), kept) {
            (false, None) => (
                "tickets",
                serde_json::to_vec(&[NewTicket {
                    summary: truncate(&self.summary_of(&event), SUMMARY_MAX),
                    details: truncate(&ticket::details(&event), TEXT_MAX),
                    tickettype_id: self.o.tickettype_id,
                    client_id: self.o.customer_id,
                    site_id: self.o.site_id,
                    priority_id: self.priority_of(&event),
                }]),
            ),
            (false, Some(t)) => (
                "actions",
                serde_json::to_vec(&json!([{
                    "ticket_id": t.ticket,
                    "note": truncate(&format!("{}\n\n{}", self.summary_of(&event), ticket::details(&event)), TEXT_MAX),
                    "outcome": self.note_outcome,
                }])),
            ),
            (true, Some(t)) => (
                "tickets",
                serde_json::to_vec(&json!([{"id": t.ticket, "status_id": self.closed_status_id}])),
            ),
            (true, None) => {
                return Err(format!(
                    "no HaloPSA ticket is known for incident {:?}: nothing to close",
                    context.incident_key
                ));
            }
        };
        let body = body.map_err(|e| format!("cannot encode: {e}"))?;
        let mut request = Request::post(format!("{base}/api/{path}"));
        for (name, value) in &target.headers {
            if !name.eq_ignore_ascii_case("content-type") {
                request = request.header(name.clone(), value.clone());
            }
        }
        Ok(vec![
            request
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
        let id = id_in(&response.body, "id");
        match TicketState::parse(context.state.as_deref()) {
            None => match id {
                Some(ticket) => Verdict::set(Outcome::Success, TicketState { ticket }.to_state()),
                None => Verdict::keep(Outcome::Fail(format!(
                    "HaloPSA answered {} without a ticket id",
                    response.status
                ))),
            },
            // An action's answer names its ticket in `ticket_id`; the
            // status change answers the ticket itself.
            Some(t) if id == Some(t.ticket) && id_in(&response.body, "ticket_id").is_none() => {
                Verdict::clear(Outcome::Success)
            }
            Some(_) => Verdict::keep(Outcome::Success),
        }
    }
}

relay_sdk::export_stateful_destination!(HaloPsa);

impl HaloPsa {
    fn summary_of(&self, event: &Event) -> String {
        self.o
            .summary
            .as_deref()
            .map(|t| one_line(&event.render(t)))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ticket::summary(event))
    }

    fn priority_of(&self, event: &Event) -> Option<i64> {
        event
            .text("severity")
            .and_then(|s| self.priority_map.get(&s.trim().to_ascii_lowercase()))
            .copied()
            .or(self.o.priority_id)
    }
}

fn reason(response: &Response) -> String {
    let body = response.body_text();
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.is_empty() {
        format!("HaloPSA answered {}", response.status)
    } else {
        format!(
            "HaloPSA answered {}: {}",
            response.status,
            truncate(&body, REASON_MAX)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing::{self, context, response};
    use serde_json::Value;

    const OPTS: &str = r#"{"tickettype_id":21,"customer_id":12,"priority_map":{"critical":1}}"#;

    fn build(data: Value, state: Option<&str>) -> Result<(Request, Value), String> {
        let mut target = testing::target("https://acme.halopsa.com/");
        target.headers = vec![
            ("Authorization".into(), "Bearer tok".into()),
            ("Content-Type".into(), "text/plain".into()),
        ];
        testing::build_stateful::<HaloPsa>(
            OPTS,
            &testing::event_payload(&testing::event(data)),
            &target,
            &context("INC-1", state),
        )
        .map(|mut r| {
            let r = r.remove(0);
            let b = serde_json::from_slice(&r.body).unwrap();
            (r, b)
        })
    }

    #[test]
    fn create_note_close_are_json_arrays() {
        let (r, b) = build(json!({"title": "Phish", "severity": "critical"}), None).unwrap();
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("POST", "https://acme.halopsa.com/api/tickets")
        );
        assert_eq!(r.header_value("authorization"), Some("Bearer tok"));
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert_eq!(b[0]["summary"], "[critical] Phish");
        assert_eq!(
            (
                b[0]["tickettype_id"].clone(),
                b[0]["client_id"].clone(),
                b[0]["priority_id"].clone()
            ),
            (json!(21), json!(12), json!(1))
        );
        assert!(b[0].get("site_id").is_none());
        let (r, b) = build(json!({"title": "more"}), Some(r#"{"ticket":55}"#)).unwrap();
        assert_eq!(r.url, "https://acme.halopsa.com/api/actions");
        assert_eq!(
            (b[0]["ticket_id"].clone(), b[0]["outcome"].clone()),
            (json!(55), json!("Note"))
        );
        let (r, b) = build(json!({"status": "resolved"}), Some(r#"{"ticket":55}"#)).unwrap();
        assert_eq!(r.url, "https://acme.halopsa.com/api/tickets");
        assert_eq!(b, json!([{"id": 55, "status_id": 9}]));
        assert!(
            build(json!({"status": "resolved"}), None)
                .unwrap_err()
                .contains("nothing to close")
        );
    }

    #[test]
    fn classify_keeps_and_forgets_the_ticket() {
        let c = |status, body: &str, state: Option<&str>| {
            testing::classify_stateful::<HaloPsa>(
                OPTS,
                &response(status, &[], body),
                &context("k", state),
            )
            .unwrap()
        };
        assert_eq!(
            c(201, r#"{"id":55,"summary":"x"}"#, None),
            Verdict::set(Outcome::Success, r#"{"ticket":55}"#)
        );
        assert_eq!(
            c(201, r#"[{"id":56}]"#, None),
            Verdict::set(Outcome::Success, r#"{"ticket":56}"#)
        );
        assert_eq!(
            c(
                201,
                r#"{"id":900,"ticket_id":55}"#,
                Some(r#"{"ticket":55}"#)
            ),
            Verdict::keep(Outcome::Success)
        );
        assert_eq!(
            c(201, r#"{"id":55,"status_id":9}"#, Some(r#"{"ticket":55}"#)),
            Verdict::clear(Outcome::Success)
        );
        assert_eq!(
            c(401, "", None).outcome,
            Outcome::Fail("HaloPSA answered 401".into())
        );
        assert_eq!(c(503, "", None).outcome, Outcome::Retry(None));
    }

    #[test]
    fn options_are_validated_by_name() {
        assert!(HaloPsa::create("").is_ok());
        assert!(
            HaloPsa::create(r#"{"customer_id":0}"#)
                .unwrap_err()
                .contains("customer_id")
        );
        assert!(
            HaloPsa::create(r#"{"priority_map":{"high":-1}}"#)
                .unwrap_err()
                .contains("priority_map.high")
        );
        assert!(
            HaloPsa::create(r#"{"client_id":1}"#)
                .unwrap_err()
                .contains("unknown field `client_id`")
        );
    }
}
