//! The acknowledgement link's pages (DESIGN §19): `GET /ui/ack/{token}`
//! shows the incident and a confirmation form; only `POST` acknowledges,
//! so a link preview or mail scanner that fetches the URL acks nothing.
//!
//! Owns: the two handlers and their answers. The token's signature is the
//! only authority (no session, no CSRF token: the form carries nothing a
//! third party could not copy from the link itself); the store honours a
//! link's nonce once (`Storage::ack_incident_by_link`). The token and the
//! secret are never logged.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Console, html, view::AckPage};
use crate::incident::ack::{self, Link, LinkError};
use crate::store::{Incident, LinkAck, Storage};

/// Who the incident shows as having acknowledged through a link.
pub const LINK_ACKER: &str = "link";

fn page(status: StatusCode, title: &str, message: String) -> Response {
    about(status, title, message, None)
}

fn with_incident(status: StatusCode, title: &str, message: String, i: &Incident) -> Response {
    about(status, title, message, Some(i))
}

/// A page without the form: a result or a refusal, with the incident it
/// is about when known.
fn about(status: StatusCode, title: &str, message: String, i: Option<&Incident>) -> Response {
    html(
        status,
        &AckPage {
            title: title.into(),
            message,
            error: !status.is_success(),
            incident: i.map(|i| i.id.clone()).unwrap_or_default(),
            key: i.map(|i| i.key.clone()).unwrap_or_default(),
            state: i.map(|i| i.state.clone()).unwrap_or_default(),
            ..AckPage::default()
        },
    )
}

fn not_open(i: &Incident) -> String {
    match (i.state.as_str(), &i.acked_by) {
        ("acknowledged", Some(by)) => format!("This incident was already acknowledged (by {by})."),
        ("resolved", _) => "This incident is resolved: there is nothing to acknowledge.".into(),
        (state, _) => format!("This incident is {state}: there is nothing to acknowledge."),
    }
}

/// The token checked against the config in force, or the status and text
/// of the page refusing it.
fn check(c: &Console, token: &str) -> Result<Link, (StatusCode, String)> {
    let config = c.s.config.load();
    let Some(settings) = &config.incidents.ack else {
        return Err((
            StatusCode::NOT_FOUND,
            "Acknowledgement links are not enabled on this relay.".into(),
        ));
    };
    let now_s = crate::event::now_ms() / 1000;
    ack::verify(settings.secret.expose().as_bytes(), token, now_s).map_err(|e| {
        let status = match e {
            LinkError::Malformed => StatusCode::NOT_FOUND,
            LinkError::Forged => StatusCode::FORBIDDEN,
            LinkError::Expired => StatusCode::GONE,
        };
        tracing::info!(refused = %e, "acknowledgement link refused");
        (status, format!("Not acknowledged: {e}."))
    })
}

fn refused((status, message): (StatusCode, String)) -> Response {
    page(status, "Link not valid", message)
}

fn store_failed(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "acknowledgement link: store error");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The relay cannot reach its store right now; nothing was acknowledged. Try again in a moment.".into(),
    )
}

/// `GET /ui/ack/{token}`: the confirmation page (acknowledges nothing).
pub(super) async fn confirm(State(c): State<Console>, Path(token): Path<String>) -> Response {
    let link = match check(&c, &token) {
        Ok(l) => l,
        Err(r) => return refused(r),
    };
    let detail = match c.s.store.get_incident(&link.incident_id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "Unknown incident",
                "No incident has this link's id (it may have been pruned).".into(),
            );
        }
        Err(e) => return store_failed(&e),
    };
    let i = &detail.incident;
    if i.state != "open" {
        return with_incident(StatusCode::OK, "Nothing to acknowledge", not_open(i), i);
    }
    html(
        StatusCode::OK,
        &AckPage {
            title: "Acknowledge this incident?".into(),
            message: "Acknowledging stops its escalation: nobody else is notified.".into(),
            incident: i.id.clone(),
            key: i.key.clone(),
            state: i.state.clone(),
            confirm: true,
            action: format!("/ui/ack/{token}"),
            ..AckPage::default()
        },
    )
}

/// `POST /ui/ack/{token}`: acknowledges once.
pub(super) async fn acknowledge(State(c): State<Console>, Path(token): Path<String>) -> Response {
    let link = match check(&c, &token) {
        Ok(l) => l,
        Err(r) => return refused(r),
    };
    let at = crate::event::now_ms();
    match c
        .s
        .store
        .ack_incident_by_link(&link.incident_id, &link.nonce, LINK_ACKER, at)
        .await
    {
        Err(e) => store_failed(&e),
        Ok(LinkAck::Used) => page(
            StatusCode::CONFLICT,
            "Link already used",
            "This link was used already: a link acknowledges once.".into(),
        ),
        Ok(LinkAck::Unknown) => page(
            StatusCode::NOT_FOUND,
            "Unknown incident",
            "No incident has this link's id (it may have been pruned).".into(),
        ),
        Ok(LinkAck::Done {
            changed: false,
            incident,
        }) => with_incident(
            StatusCode::CONFLICT,
            "Nothing to acknowledge",
            not_open(&incident),
            &incident,
        ),
        Ok(LinkAck::Done {
            changed: true,
            incident,
        }) => {
            tracing::info!(incident = %incident.id, by = LINK_ACKER, "incident acknowledged");
            with_incident(
                StatusCode::OK,
                "Acknowledged",
                "Acknowledged: the escalation stopped.".into(),
                &incident,
            )
        }
    }
}
