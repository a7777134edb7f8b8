//! The console's incidents pages (DESIGN §19, §21): `/ui/incidents` lists
//! incidents (optionally of one state), `/ui/incidents/{id}` shows one with
//! its events and the escalation steps run; an admin sees "Acknowledge"
//! (a POST with the session's CSRF token), which calls the API's
//! `api::acknowledge`.
//!
//! Owns: the two pages and the ack action. Reads what
//! `GET /api/v1/incidents[/{id}]` reads.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::view::{self, IncidentRow, StepRow};
use super::{Console, Session, chrome, done, failure, html};
use crate::api::ApiError;
use crate::store::{INCIDENT_STATES, Storage};

/// Incidents per page (newest first).
const LISTED: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub(super) struct StateFilter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    notice: String,
}

/// `GET /ui/incidents[?state=]`.
pub(super) async fn list(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Query(f): Query<StateFilter>,
) -> Response {
    let state = INCIDENT_STATES
        .iter()
        .find(|s| **s == f.state.trim())
        .map(|s| (*s).to_owned());
    let rows = match c.s.store.list_incidents(state, LISTED).await {
        Ok(r) => r,
        Err(e) => return failure(&session, &ApiError::from(e), "/ui/incidents"),
    };
    let mut options: Vec<(&'static str, &'static str)> = vec![("", "any")];
    options.extend(INCIDENT_STATES.iter().map(|s| (*s, *s)));
    html(
        StatusCode::OK,
        &view::Incidents {
            chrome: chrome(&session, "incidents", Some(&f.notice)),
            state_options: view::choices(&options, f.state.trim()),
            rows: rows.iter().map(IncidentRow::of).collect(),
        },
    )
}

/// `GET /ui/incidents/{id}`.
pub(super) async fn detail(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(f): Query<StateFilter>,
) -> Response {
    let d = match c.s.store.get_incident(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return failure(
                &session,
                &ApiError::not_found("incident", &id),
                "/ui/incidents",
            );
        }
        Err(e) => return failure(&session, &ApiError::from(e), "/ui/incidents"),
    };
    let steps = d
        .steps
        .iter()
        .map(|s| StepRow {
            kind: s.kind.clone(),
            step: s.step_index + 1,
            round: s.round,
            ran_at: crate::event::rfc3339_ms(s.ran_at_ms),
            skipped: s.skipped.join(", "),
            deliveries: s
                .deliveries
                .iter()
                .map(|x| format!("{}: {}", x.webhook_id, x.status))
                .collect::<Vec<_>>()
                .join(", "),
            event_path: view::path_segment(&s.event_id),
        })
        .collect();
    let page = view::IncidentPage {
        chrome: chrome(&session, "incidents", Some(&f.notice)),
        can_ack: d.incident.state == "open",
        incident: IncidentRow::of(&d.incident),
        event_ids: d
            .event_ids
            .iter()
            .map(|e| (e.clone(), view::path_segment(e)))
            .collect(),
        steps,
    };
    html(StatusCode::OK, &page)
}

/// `POST /ui/incidents/{id}/ack` (admin, CSRF checked by the guard).
pub(super) async fn ack(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let back = format!("/ui/incidents/{}", view::path_segment(&id));
    match crate::api::acknowledge(&c.s, &id, "console").await {
        Ok(_) => done(back, "acked"),
        Err(e) => failure(&session, &e, &back),
    }
}
