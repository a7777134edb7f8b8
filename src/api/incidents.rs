//! Incidents (DESIGN §19): `GET /api/v1/incidents` (newest first,
//! optionally `?state=open|acknowledged|resolved`) and
//! `GET /api/v1/incidents/{id}`: state, events, the escalation steps run
//! with their deliveries, who acknowledged and when;
//! `POST /api/v1/incidents/{id}/ack` (admin) and
//! `POST /api/v1/incidents/pagerduty` (PagerDuty's signed v3 webhook, no
//! token: the signature is its authority).
//!
//! Owns: the incident views. Viewers see webhook ids and delivery states
//! only — never a spec, URL, header or secret.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Shared, bad_query};
use crate::event::rfc3339_ms;
use crate::store::{INCIDENT_STATES, Incident, IncidentStep, Storage};

fn view(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "key": i.key,
        "state": i.state,
        "policy": i.policy,
        "opened_at": rfc3339_ms(i.opened_at_ms),
        "events": i.events,
        "last_event_id": i.last_event_id,
        "steps_run": i.next_step,
        "next_step_at": i.next_due_ms.filter(|_| i.state == "open").map(rfc3339_ms),
        "acknowledged_by": i.acked_by,
        "acknowledged_at": i.acked_at_ms.map(rfc3339_ms),
        "resolved_at": i.resolved_at_ms.map(rfc3339_ms),
    })
}

fn step_view(s: &IncidentStep) -> Value {
    json!({
        "kind": s.kind,
        "seq": s.seq,
        "step": s.step_index + 1,
        "round": s.round,
        "event_id": s.event_id,
        "due_at": rfc3339_ms(s.due_ms),
        "ran_at": rfc3339_ms(s.ran_at_ms),
        "skipped": s.skipped,
        "deliveries": s.deliveries,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/incidents?state=…&limit=…`.
pub async fn list(
    State(s): State<Shared>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
    if let Some(state) = &q.state
        && !INCIDENT_STATES.contains(&state.as_str())
    {
        return Err(bad_query(format!(
            "state {state:?} is not one of {}",
            INCIDENT_STATES.join(", ")
        )));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(bad_query(format!("limit {limit} is out of range (1–1000)")));
    }
    let rows = s.store.list_incidents(q.state, limit).await?;
    let data: Vec<Value> = rows.iter().map(view).collect();
    Ok(axum::Json(json!({ "data": data })).into_response())
}

/// The body of `POST /api/v1/incidents/{id}/ack` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Who acknowledges (shown in the incident); default `admin`.
    by: Option<String>,
}

/// `POST /api/v1/incidents/{id}/ack` (admin): stops the chain. 200 with the
/// incident; 409 when it is not open (acknowledged or resolved already).
pub async fn ack(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Option<axum::Json<AckBody>>,
) -> Result<Response, ApiError> {
    let by = body
        .and_then(|b| b.0.by)
        .map(|b| b.trim().chars().take(200).collect::<String>())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "admin".into());
    let incident = acknowledge(&s, &id, &by).await?;
    Ok(axum::Json(view(&incident)).into_response())
}

/// Acknowledges an open incident as `by` (the API's ack and the console's):
/// 404 when no incident has the id, 409 when it is not open.
pub async fn acknowledge(s: &super::AppState, id: &str, by: &str) -> Result<Incident, ApiError> {
    let (changed, incident) = s
        .store
        .ack_incident(id, by, crate::event::now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("incident", id))?;
    if !changed {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!("incident {id} is {}, not open", incident.state),
        ));
    }
    tracing::info!(incident = %id, by = %by, "incident acknowledged");
    Ok(incident)
}

/// `GET /api/v1/incidents/{id}`.
pub async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let detail = s
        .store
        .get_incident(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("incident", &id))?;
    let mut v = view(&detail.incident);
    v["event_ids"] = json!(detail.event_ids);
    v["steps"] = Value::Array(detail.steps.iter().map(step_view).collect());
    Ok(axum::Json(v).into_response())
}

/// `POST /api/v1/incidents/pagerduty`: PagerDuty's v3 webhook. Signed with
/// one of `incidents.pagerduty.secrets` (else 401, nothing changes);
/// `incident.acknowledged` acknowledges the unresolved relay incident whose
/// key is the PagerDuty incident's `incident_key` (the `dedup_key` relay
/// sent); other event types, unknown keys and incidents no longer open are
/// answered 200 with what was done, so PagerDuty does not retry them.
pub async fn pagerduty(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    use crate::incident::pagerduty::{Inbound, read, signed};
    let config = s.config.load();
    let Some(inbound) = &config.incidents.pagerduty else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "inbound PagerDuty webhooks are not enabled (incidents.pagerduty.secrets)",
        ));
    };
    let secrets: Vec<&[u8]> = inbound
        .secrets
        .iter()
        .map(|k| k.expose().as_bytes())
        .collect();
    let header = headers
        .get("x-pagerduty-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signed(&secrets, header, &body) {
        tracing::info!("PagerDuty webhook refused: missing or wrong X-PagerDuty-Signature");
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-PagerDuty-Signature is missing or does not sign this body with a configured secret",
        ));
    }
    let (key, agent) = match read(&body)
        .map_err(|m| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_body", m))?
    {
        Inbound::Ignored(why) => {
            return Ok(axum::Json(json!({"acknowledged": false, "ignored": why})).into_response());
        }
        Inbound::Acknowledged {
            incident_key,
            agent,
        } => (incident_key, agent),
    };
    let Some(id) = s.store.unresolved_incident(&key).await? else {
        return Ok(axum::Json(
            json!({"acknowledged": false, "ignored": "no unresolved incident has this key"}),
        )
        .into_response());
    };
    let by = match agent {
        Some(a) => format!("pagerduty: {a}"),
        None => "pagerduty".into(),
    };
    let Some((changed, incident)) = s
        .store
        .ack_incident(&id, &by, crate::event::now_ms())
        .await?
    else {
        return Ok(
            axum::Json(json!({"acknowledged": false, "ignored": "the incident is gone"}))
                .into_response(),
        );
    };
    if changed {
        tracing::info!(incident = %id, by = %by, "incident acknowledged");
    }
    Ok(axum::Json(json!({"acknowledged": changed, "incident": view(&incident)})).into_response())
}
