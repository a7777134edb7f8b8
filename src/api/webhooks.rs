//! Webhook management: list, get, create, partial update, delete, and the
//! JSON view of a webhook with its secrets redacted.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ApiError, Shared};
use crate::config::{Role, WebhookSpec};
use crate::event::{new_id, now_ms};
use crate::plugin::Kind;
use crate::store::{Storage, StoredWebhook};
use crate::webhook::{Source, Webhook};

/// Names (of headers, body template keys, option keys) whose values are
/// treated as secrets in viewer responses: `Authorization`, `X-Api-Key`,
/// `X-Auth-Token`, `X-Honeycomb-Team`, `DD-API-KEY`, `routing_key`,
/// `integration_key`, Autotask's `integration_code`, `password`, … Wide on purpose: a value wrongly hidden
/// from a viewer costs little, one wrongly shown is a leak.
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "key",
        "secret",
        "passw",
        "pwd",
        "cookie",
        "signature",
        "credential",
        "session",
        "api",
        "team",
        "license",
        "private",
        "dsn",
        "integration",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// A value that looks like a credential whatever its name: an
/// `Authorization`-style scheme (`Bearer …`, `Basic …`), a well-known key
/// prefix, or a run of 20+ token characters mixing letters and digits (API
/// keys, hex or base64 secrets). Template placeholders (`{{…}}`) and words
/// are left alone.
pub fn looks_like_credential(value: &str) -> bool {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    if ["bearer ", "basic ", "token ", "splunk "]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return true;
    }
    if [
        "xox",
        "sk_",
        "sk-",
        "ghp_",
        "github_pat_",
        "whsec_",
        "akia",
        "hcaik_",
        "hcxik_",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
    {
        return true;
    }
    v.split(|c: char| {
        !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '/' | '=' | '.'))
    })
    .any(|run| {
        run.len() >= 20
            && run.bytes().any(|b| b.is_ascii_digit())
            && run.bytes().any(|b| b.is_ascii_alphabetic())
    })
}

const REDACTED: &str = "[redacted]";

/// The JSON view of a webhook. Secrets never appear; for viewers, these are
/// redacted too: header values whose name looks secret, that look like a
/// credential or that came from `${…}`; body template and option values
/// under secret-looking keys or that look like a credential; the URL's path
/// and query (and its host when it came from `${…}`).
pub fn webhook_view(w: &Webhook, role: Role) -> Value {
    let mut v = serde_json::to_value(&w.spec).unwrap_or_else(|_| json!({}));
    let state = w.breaker.snapshot();
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(w.id));
        m.insert("source".into(), json!(w.source));
        m.insert("is_active".into(), json!(state.is_active()));
        // active, paused (breaker tripped: deliveries wait), disabled
        // (by the API) or disabled_by_file (relay.yaml).
        m.insert("state".into(), json!(state.activity.as_str()));
        m.insert("failure_count".into(), json!(state.failure_count));
        m.insert(
            "created_at".into(),
            json!(crate::event::rfc3339_ms(w.created_at_ms)),
        );
        m.insert(
            "updated_at".into(),
            json!(crate::event::rfc3339_ms(w.updated_at_ms)),
        );
        if m.get("secret").is_some_and(Value::is_null) {
            m.remove("secret");
        }
        if role != Role::Admin {
            if let Some(Value::Object(h)) = m.get_mut("headers") {
                for (k, val) in h.iter_mut() {
                    let credential = val.as_str().is_some_and(looks_like_credential);
                    if looks_secret(k) || credential || w.spec.headers.from_env(k) {
                        *val = json!(REDACTED);
                    }
                }
            }
            for key in ["body", "options", "destination_options"] {
                if let Some(value) = m.get_mut(key) {
                    redact_values(value);
                }
            }
            m.insert("url".into(), json!(w.spec.url.redacted()));
            if let (Some(auth), Some(Value::Object(o))) = (
                &w.spec.auth,
                m.get_mut("auth").and_then(|a| a.get_mut("oauth2")),
            ) {
                // A token URL's path can name the tenant (Entra ID).
                o.insert("token_url".into(), json!(auth.oauth2.token_url.redacted()));
            }
        }
    }
    v
}

/// Redacts, at any depth, values under secret-looking keys and strings that
/// look like credentials.
fn redact_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if looks_secret(k) && !val.is_null() {
                    *val = json!(REDACTED);
                } else {
                    redact_values(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_values),
        Value::String(s) if looks_like_credential(s) => *v = json!(REDACTED),
        _ => {}
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    let message = if field.is_empty() || message.starts_with(field) {
        message
    } else {
        format!("{field}: {message}")
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook", message)
}

/// Parses and checks a webhook spec posted as JSON. Every failure is a 422
/// whose message names the field.
fn check_spec(s: &super::AppState, value: Value) -> Result<WebhookSpec, ApiError> {
    if !value.is_object() {
        return Err(invalid(
            "",
            "the body must be a JSON object describing a webhook",
        ));
    }
    if let Some(Value::String(body)) = value.get("body")
        && serde_json::from_str::<Value>(body).is_err()
    {
        return Err(invalid("body", "the string is not valid JSON"));
    }
    refuse_interpolation(&value)?;
    let spec: WebhookSpec = serde_path_to_error::deserialize(value).map_err(|e| {
        // The first path segment is the top-level field at fault.
        let message = serde_message(e.inner());
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            return invalid(missing, "is required");
        }
        let field = match e.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
            _ => String::new(),
        };
        invalid(&field, message)
    })?;
    if spec.url.scheme() == "unix" {
        // A socket path names a file of this host: only the operator's
        // relay.yaml may point the relay at one, not an API caller.
        return Err(invalid(
            "url",
            "a unix:// socket can only be configured in relay.yaml",
        ));
    }
    let cfg = s.config.load();
    // Loaded plugins (built-in and hot-loaded files), not just the built-ins.
    let mut formats = vec!["json".to_owned()];
    formats.extend(s.plugins.names(Kind::Formatter));
    let destinations = s.plugins.names(Kind::Destination);
    let ctx = cfg.validation_context(&formats, &destinations);
    crate::check::webhook(&spec, "", &ctx)
        .map_err(|(field, message)| invalid(field.trim_start_matches('.'), message))?;
    Ok(spec)
}

/// The formatter and destination plugins must accept the webhook's
/// `options` / `destination_options` (they parse them once per webhook),
/// as at start-up for webhooks from relay.yaml.
async fn check_plugin_options(s: &super::AppState, spec: &WebhookSpec) -> Result<(), ApiError> {
    s.plugins
        .check_webhook(spec)
        .await
        .map_err(|(field, message)| invalid(field, message))
}

/// `${VAR}` and `$$` in `url`, `headers` and `secret` are relay.yaml's
/// environment interpolation, which the same field types apply. Through the
/// API they would let a caller read the relay's environment (and send it
/// anywhere, or show it to viewers), so they are refused.
fn refuse_interpolation(value: &Value) -> Result<(), ApiError> {
    let bad = |s: &str| s.contains("${") || s.contains("$$");
    let why = "`${...}` and `$$` are relay.yaml environment interpolation and are not accepted through the API; send the value itself";
    for field in ["url", "secret"] {
        if let Some(Value::String(v)) = value.get(field)
            && bad(v)
        {
            return Err(invalid(field, why));
        }
    }
    if let Some(Value::Object(o)) = value.pointer("/auth/oauth2") {
        for (name, v) in o {
            if let Value::String(v) = v
                && bad(v)
            {
                return Err(invalid(&format!("auth.oauth2.{name}"), why));
            }
        }
    }
    if let Some(Value::Object(h)) = value.get("headers") {
        for (name, v) in h {
            if let Value::String(v) = v
                && bad(v)
            {
                return Err(invalid("headers", format!("the value of {name:?}: {why}")));
            }
        }
    }
    Ok(())
}

/// serde_json's messages end with "at line 1 column N"; that position means
/// nothing to an API caller.
fn serde_message(e: &serde_json::Error) -> String {
    let m = e.to_string();
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_owned(),
        None => m,
    }
}

pub async fn list(
    State(s): State<Shared>,
    Extension(role): Extension<Role>,
) -> Result<Response, ApiError> {
    let list: Vec<Value> = s
        .registry
        .load()
        .list()
        .iter()
        .map(|w| webhook_view(w, role))
        .collect();
    Ok(axum::Json(list).into_response())
}

pub async fn get_one(
    State(s): State<Shared>,
    Extension(role): Extension<Role>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let w = s.webhook(&id)?;
    Ok(axum::Json(webhook_view(&w, role)).into_response())
}

fn json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

pub async fn create(
    State(s): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let value = json_body(&body)?;
    if value.get("id").is_some() {
        return Err(invalid("id", "is assigned by the relay; leave it out"));
    }
    let mut spec = check_spec(&s, value)?;
    check_plugin_options(&s, &spec).await?;
    let id = format!("wh_{}", new_id().replace('-', ""));
    spec.id = Some(id.clone());
    let now = now_ms();
    let stored = StoredWebhook {
        spec,
        created_at_ms: now,
        updated_at_ms: now,
    };
    s.store.save_api_webhook(stored.clone()).await?;
    s.upsert_webhook(stored).await;
    let w = s.webhook(&id)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(webhook_view(&w, Role::Admin)),
    )
        .into_response())
}

/// Partial update: only the fields given change. Webhooks from relay.yaml
/// take only `is_active` (runtime state); anything else is a 409.
pub async fn update(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let Value::Object(changes) = json_body(&body)? else {
        return Err(invalid(
            "",
            "the body must be a JSON object of the fields to change",
        ));
    };
    let current = s.webhook(&id)?;
    if changes.contains_key("id") {
        return Err(invalid("id", "cannot be changed"));
    }
    let active = match changes.get("is_active") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(invalid(
                "is_active",
                format!("must be true or false, not {other}"),
            ));
        }
    };
    let others: Vec<&String> = changes.keys().filter(|k| *k != "is_active").collect();
    if current.source == Source::Config && !others.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "read_only",
            format!(
                "webhook {id:?} comes from relay.yaml and is read-only through the API (fields given: {}); edit the file instead. Only is_active can be changed here.",
                others
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if !others.is_empty() {
        let mut merged = spec_with_secret(&current.spec);
        for (k, v) in &changes {
            merged.insert(k.clone(), v.clone());
        }
        let mut spec = check_spec(&s, Value::Object(merged))?;
        check_plugin_options(&s, &spec).await?;
        spec.id = Some(id.clone());
        let stored = StoredWebhook {
            spec,
            created_at_ms: current.created_at_ms,
            updated_at_ms: now_ms(),
        };
        s.store.save_api_webhook(stored.clone()).await?;
        s.upsert_webhook(stored).await;
    }
    if let Some(a) = active {
        set_active(&s, &current, a).await?;
    }
    let w = s.webhook(&id)?;
    Ok(axum::Json(webhook_view(&w, Role::Admin)).into_response())
}

/// Enables or disables a webhook as an operator (`is_active` through the
/// API, the console's re-enable button): stored, and what waited is woken.
/// The caller refreshes the registry.
pub(crate) async fn set_active(s: &Shared, w: &Webhook, active: bool) -> Result<(), ApiError> {
    let state = w.breaker.set_active(active, crate::store::Operator::Api);
    s.store.save_webhook_state(&w.id, state).await?;
    if active {
        s.dispatcher.wake();
    }
    Ok(())
}

/// The spec as a JSON object with the real secret (for merging updates).
fn spec_with_secret(spec: &WebhookSpec) -> Map<String, Value> {
    let mut m = match serde_json::to_value(spec) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.remove("id");
    crate::config::reveal_auth_secret(spec, &mut m);
    match &spec.secret {
        Some(secret) => {
            m.insert("secret".into(), json!(secret.expose()));
        }
        None => {
            m.remove("secret");
        }
    }
    m
}

pub async fn delete(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let current = s.webhook(&id)?;
    if current.source == Source::Config {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "read_only",
            format!("webhook {id:?} comes from relay.yaml; remove it from the file instead"),
        ));
    }
    s.store.delete_api_webhook(&id).await?;
    s.remove_webhook(&id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::deliver::redact_url;

    #[test]
    fn urls_are_cut_to_scheme_and_host_for_viewers() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/xyz"),
            "https://hooks.slack.com/[redacted]"
        );
        assert_eq!(
            redact_url("https://user:pw@example.com:8443/"),
            "https://example.com:8443"
        );
        assert_eq!(
            redact_url("tcp://siem.internal:6514"),
            "tcp://siem.internal:6514"
        );
    }

    #[test]
    fn secret_looking_header_names_are_recognised() {
        for h in [
            "Authorization",
            "X-Api-Key",
            "X-Auth-Token",
            "plerion-signature",
            "Cookie",
            "X-Honeycomb-Team",
            "DD-API-KEY",
            "X-Session-Id",
            "routing_key",
            "integration_key",
            "password",
        ] {
            assert!(looks_secret(h), "{h}");
        }
        for h in ["Content-Type", "X-Tenant", "Accept", "summary", "severity"] {
            assert!(!looks_secret(h), "{h}");
        }
    }

    #[test]
    fn credential_looking_values_are_recognised_whatever_their_name() {
        for v in [
            "Bearer abc",
            "Basic dXNlcjpwdw==",
            "xoxb-1234",
            "sk_live_abc",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "3f2a9c81d0b7e6a5f4c3b2a1908f7e6d",
            "id=AKIAIOSFODNN7EXAMPLE1",
        ] {
            assert!(looks_like_credential(v), "{v}");
        }
        for v in [
            "{{title}}",
            "critical_finding_notification",
            "New {{type}}: {{title}} ({{severity}})",
            "2026-11-22T10:00:00Z",
            "https://hooks.example.com",
            "",
        ] {
            assert!(!looks_like_credential(v), "{v}");
        }
    }
}
