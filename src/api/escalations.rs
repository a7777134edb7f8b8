//! Escalation policies through the API (DESIGN §19, issue 17):
//! `GET /api/v1/escalations` (viewer) lists relay.yaml's and the API's;
//! `POST /api/v1/escalations` and `DELETE /api/v1/escalations/{name}`
//! (admin) create and delete the API's, which are stored
//! (`Storage::{insert,delete,list}_escalation(s)`) and follow relay.yaml's.
//!
//! Owns: checking a posted policy like relay.yaml's (a 422 names the
//! field), and handing the stored ones to dispatch
//! ([`load`]: at start, and after each change).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::config::escalation::EscalationSpec;
use crate::dispatch::Dispatcher;
use crate::store::{Storage, Store, StoreError, StoredEscalation};

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    let message = if field.is_empty() {
        message.to_string()
    } else {
        format!("{field}: {message}")
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_escalation",
        message,
    )
}

/// Reads the stored API policies and hands them to dispatch (a stored spec
/// that no longer parses is skipped, logged).
pub async fn load(store: &Store, dispatcher: &Dispatcher) -> Result<(), StoreError> {
    let stored = store.list_escalations().await?;
    let policies = stored
        .iter()
        .filter_map(|p| match serde_json::from_str::<EscalationSpec>(&p.spec) {
            Ok(spec) => Some(spec),
            Err(e) => {
                tracing::warn!(policy = %p.name, error = %e, "a stored escalation policy does not parse; skipped");
                None
            }
        })
        .collect();
    dispatcher.set_api_escalations(policies);
    Ok(())
}

fn view(p: &EscalationSpec, source: &str) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    v["source"] = json!(source);
    v
}

/// `GET /api/v1/escalations`: every policy in force, in the order they are
/// tried (relay.yaml's first).
pub async fn list(State(s): State<Shared>) -> Response {
    let (file, api) = s.dispatcher.escalation_parts();
    let data: Vec<Value> = file
        .iter()
        .map(|p| view(p, "file"))
        .chain(api.iter().map(|p| view(p, "api")))
        .collect();
    axum::Json(json!({ "data": data })).into_response()
}

/// Parses and checks a posted policy like relay.yaml's: the webhooks it
/// names must exist (by name or id), a 422 names the field.
fn check(s: &super::AppState, value: Value) -> Result<EscalationSpec, ApiError> {
    if !value.is_object() {
        return Err(invalid(
            "",
            "the body must be a JSON object describing an escalation policy",
        ));
    }
    let spec: EscalationSpec = serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            return invalid(missing, "is required");
        }
        let path = e.path().to_string();
        invalid(if path == "." { "" } else { &path }, message)
    })?;
    let webhooks = s.registry.load();
    let is_webhook = |n: &str| {
        webhooks.get(n).is_some()
            || webhooks
                .iter()
                .any(|w| w.spec.name == n || w.id == n || crate::config::slug(&w.spec.name) == n)
    };
    spec.validate("", &is_webhook)
        .map_err(|(field, message)| invalid(field.trim_start_matches('.'), message))?;
    Ok(spec)
}

/// `POST /api/v1/escalations` (admin): 201 with the policy; 422 when it is
/// not valid; 409 when a policy (relay.yaml's or the API's) has its name.
pub async fn create(
    State(s): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let spec = check(&s, super::webhooks::json_body(&body)?)?;
    let conflict = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("an escalation policy is named {:?} already", spec.name),
        )
    };
    let (file, _) = s.dispatcher.escalation_parts();
    if file.iter().any(|p| p.name == spec.name) {
        return Err(conflict());
    }
    let stored = StoredEscalation {
        name: spec.name.clone(),
        spec: serde_json::to_string(&spec).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?,
        created_at_ms: crate::event::now_ms(),
    };
    if !s.store.insert_escalation(stored).await? {
        return Err(conflict());
    }
    load(&s.store, &s.dispatcher).await?;
    tracing::info!(policy = %spec.name, "escalation policy created");
    Ok((StatusCode::CREATED, axum::Json(view(&spec, "api"))).into_response())
}

/// `DELETE /api/v1/escalations/{name}` (admin): 204; 404 when no API
/// policy has the name; 409 for relay.yaml's (edit the file instead).
/// Incidents that follow it end their chain at their next step.
pub async fn delete(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (file, _) = s.dispatcher.escalation_parts();
    if file.iter().any(|p| p.name == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("escalation policy {name:?} is defined in relay.yaml; change it there"),
        ));
    }
    if !s.store.delete_escalation(&name).await? {
        return Err(ApiError::not_found("escalation policy", &name));
    }
    load(&s.store, &s.dispatcher).await?;
    tracing::info!(policy = %name, "escalation policy deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
