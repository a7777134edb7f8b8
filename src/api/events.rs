//! Explain (DESIGN §17): "why did this alert (not) reach Slack?" in one
//! call. `GET /api/v1/events/{id}`: the event and, per webhook, the
//! decision, the rule behind it and what it points to (delivery ids);
//! `GET /api/v1/events?decision=…&since=…`: recent decisions, newest
//! first, paged by cursor.
//!
//! Owns: the two views. Viewers see webhook ids and names only — never a
//! spec, URL, header or secret.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Shared, bad_query};
use crate::route::Decision;
use crate::store::{DecisionCursor, DecisionQuery, DecisionRecord, Storage};

fn view(d: &DecisionRecord, recorded: bool) -> Value {
    json!({
        "webhook_id": d.webhook_id,
        "webhook_name": d.webhook_name,
        "decision": d.decision,
        "rule": d.rule,
        "ref": d.reference,
        "at": crate::event::rfc3339_ms(d.created_at_ms),
        "recorded": recorded,
    })
}

/// An event with every webhook's decision about it: recorded ones
/// (`true`) and those worked out on request for webhooks the index left
/// out (`false`); `dedup_count` when it is the first event of a dedup
/// window with repeats. The one reading behind `GET /api/v1/events/{id}`
/// and the console's event page.
pub(crate) struct Explained {
    pub event: crate::event::Event,
    pub decisions: Vec<(DecisionRecord, bool)>,
    pub dedup_count: Option<u64>,
}

pub(crate) async fn explained(s: &Shared, id: &str) -> Result<Explained, ApiError> {
    let event = s
        .store
        .get_event(id)
        .await?
        .ok_or_else(|| ApiError::not_found("event", id))?;
    let recorded = s.store.event_decisions(id).await?;
    // When it was routed: its first decision, else its own time.
    let received_ms = recorded
        .iter()
        .map(|d| d.created_at_ms)
        .min()
        .or_else(|| {
            time::OffsetDateTime::parse(&event.time, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        })
        .unwrap_or_else(crate::event::now_ms);
    let webhooks = s.registry.load();
    let worked_out = webhooks
        .table()
        .explain_unrecorded(&event, &recorded, received_ms);
    // routing.dedup: the first event of a window counts its repeats.
    let routing = s.store.routing_of(id).await?;
    Ok(Explained {
        event,
        decisions: recorded
            .into_iter()
            .map(|d| (d, true))
            .chain(worked_out.into_iter().map(|d| (d, false)))
            .collect(),
        dedup_count: (routing.repeats > 0).then(|| routing.repeats + 1),
    })
}

/// `GET /api/v1/events/{id}`.
pub async fn explain(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let e = explained(&s, &id).await?;
    let decisions: Vec<Value> = e.decisions.iter().map(|(d, r)| view(d, *r)).collect();
    let mut view = json!({"event": e.event, "decisions": decisions});
    if let Some(n) = e.dedup_count {
        view["dedup"] = json!({"count": n});
    }
    Ok(axum::Json(view).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    decision: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The store query of a decision listing (`GET /api/v1/events` and the
/// console's events page); a bad value is a 400 naming it.
pub(crate) fn decision_query(
    decision: Option<&str>,
    since: Option<&str>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<DecisionQuery, ApiError> {
    let decision = match decision {
        None => None,
        Some(d) => Some(Decision::parse(d).ok_or_else(|| {
            let all: Vec<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
            bad_query(format!("decision {d:?} is not one of {}", all.join(", ")))
        })?),
    };
    let since_ms = match since {
        None => None,
        Some(t) => Some(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| bad_query(format!("since {t:?} is not an RFC 3339 timestamp")))?,
        ),
    };
    let before = match cursor {
        None => None,
        Some(c) => Some(DecisionCursor::decode(c).ok_or_else(|| {
            bad_query(format!("cursor {c:?} is not a cursor from a previous page"))
        })?),
    };
    if !(1..=1000).contains(&limit) {
        return Err(bad_query(format!("limit {limit} is out of range (1–1000)")));
    }
    Ok(DecisionQuery {
        decision: decision.map(|d| d.as_str().to_owned()),
        since_ms,
        limit,
        before,
    })
}

/// `GET /api/v1/events?decision=…&since=…&limit=…&cursor=…`.
pub async fn list(
    State(s): State<Shared>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
    let query = decision_query(
        q.decision.as_deref(),
        q.since.as_deref(),
        q.limit.unwrap_or(50),
        q.cursor.as_deref(),
    )?;
    let page = s.store.list_decisions(query).await?;
    let data: Vec<Value> = page
        .data
        .iter()
        .map(|d| {
            let mut v = view(&d.record, true);
            if let Value::Object(m) = &mut v {
                m.remove("recorded");
                m.insert("event_id".into(), json!(d.record.event_id));
                m.insert("event_type".into(), json!(d.event_type));
            }
            v
        })
        .collect();
    let next = page.next.map(|c| c.encode());
    Ok(axum::Json(json!({"data": data, "next": next})).into_response())
}
