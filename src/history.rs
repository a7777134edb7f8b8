//! Delivery history: one row per attempt, and the queries the API reads.
//!
//! Owns: the `attempts` table and the JSON shape of an attempt (DESIGN.md §9).
//! Its SQL runs inside the store's transactions.

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use crate::deliver::DeliveryError;
use crate::event::rfc3339_ms;
use crate::store::StoreError;

/// Largest response body kept per attempt.
pub const RESPONSE_BODY_LIMIT: usize = 4096;

/// The state a delivery is in after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
    Retrying,
    Skipped,
    /// Waiting behind a tripped circuit breaker; sent once re-enabled.
    Paused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Retrying => "retrying",
            Status::Skipped => "skipped",
            Status::Paused => "paused",
        }
    }
    fn parse(s: &str) -> Status {
        match s {
            "succeeded" => Status::Succeeded,
            "retrying" => Status::Retrying,
            "skipped" => Status::Skipped,
            "paused" => Status::Paused,
            _ => Status::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptError {
    pub kind: String,
    /// Where it went wrong: `upstream`, `plugin` or `relay`.
    pub origin: String,
    pub retryable: bool,
    pub message: String,
}

impl From<&DeliveryError> for AttemptError {
    fn from(e: &DeliveryError) -> Self {
        AttemptError {
            kind: e.kind().to_owned(),
            origin: e.origin().as_str().to_owned(),
            retryable: e.retryable(),
            message: e.to_string(),
        }
    }
}

/// One attempt, as recorded and as served by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// 1-based.
    pub attempt: u32,
    pub status: Status,
    pub status_code: Option<u16>,
    pub success: bool,
    pub error: Option<AttemptError>,
    pub response_body: Option<String>,
    pub duration_ms: u64,
    pub warnings: Vec<String>,
    pub created_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

impl AttemptError {
    /// Why a delivery was not attempted: its webhook is disabled (skipped)
    /// or paused by its circuit breaker (waiting).
    pub fn held(paused: bool) -> AttemptError {
        if paused {
            AttemptError {
                kind: "paused".into(),
                origin: "upstream".into(),
                retryable: true,
                message: "webhook paused by its circuit breaker after repeated receiver failures; the delivery waits and is sent once the webhook is re-enabled".into(),
            }
        } else {
            AttemptError {
                kind: "inactive".into(),
                origin: "relay".into(),
                retryable: false,
                message: "webhook is disabled by an operator; delivery skipped, resendable".into(),
            }
        }
    }
}

/// The record of a delivery not attempted because its webhook is disabled
/// (`skipped`) or paused (`paused`); `attempt` is the one that waits.
pub fn held(
    delivery_id: &str,
    webhook_id: &str,
    event: &crate::event::Event,
    attempt: u32,
    paused: bool,
) -> Attempt {
    let now = crate::event::now_ms();
    Attempt {
        id: crate::event::new_id(),
        delivery_id: delivery_id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        attempt,
        status: if paused {
            Status::Paused
        } else {
            Status::Skipped
        },
        status_code: None,
        success: false,
        error: Some(AttemptError::held(paused)),
        response_body: None,
        duration_ms: 0,
        warnings: vec![],
        created_at: rfc3339_ms(now),
        created_at_ms: now,
    }
}

/// Records a skipped or paused attempt for each delivery of `event` that
/// did not start due.
pub fn insert_held(
    conn: &Connection,
    event: &crate::event::Event,
    held: &[crate::store::Held],
) -> Result<(), StoreError> {
    for (delivery_id, webhook_id, start) in held {
        let paused = *start == crate::store::Start::Paused;
        insert(conn, &self::held(delivery_id, webhook_id, event, 1, paused))?;
    }
    Ok(())
}

/// Cuts a response body to [`RESPONSE_BODY_LIMIT`] bytes on a char boundary.
pub fn clip_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(RESPONSE_BODY_LIMIT)]);
    let mut s = text.into_owned();
    while s.len() > RESPONSE_BODY_LIMIT {
        s.pop();
    }
    s
}

pub fn insert(conn: &Connection, a: &Attempt) -> Result<(), StoreError> {
    let warnings =
        serde_json::to_string(&a.warnings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO attempts (id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code,
            success, error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        a.id,
        a.delivery_id,
        a.webhook_id,
        a.event_id,
        a.event_type,
        a.attempt,
        a.status.as_str(),
        a.status_code,
        a.success,
        a.error.as_ref().map(|e| &e.kind),
        a.error.as_ref().map(|e| &e.origin),
        a.error.as_ref().map(|e| &e.message),
        a.error.as_ref().map(|e| e.retryable),
        a.response_body,
        a.duration_ms as i64,
        warnings,
        a.created_at_ms,
    ])?;
    Ok(())
}

const COLUMNS: &str = "seq, id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code, success,
    error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(i64, Attempt)> {
    let kind: Option<String> = r.get(10)?;
    let error = match kind {
        Some(kind) => Some(AttemptError {
            kind,
            origin: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
            message: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
            retryable: r.get::<_, Option<bool>>(13)?.unwrap_or(false),
        }),
        None => None,
    };
    let warnings: String = r.get(16)?;
    let created_at_ms: i64 = r.get(17)?;
    Ok((
        r.get(0)?,
        Attempt {
            id: r.get(1)?,
            delivery_id: r.get(2)?,
            webhook_id: r.get(3)?,
            event_id: r.get(4)?,
            event_type: r.get(5)?,
            attempt: r.get(6)?,
            status: Status::parse(&r.get::<_, String>(7)?),
            status_code: r.get(8)?,
            success: r.get(9)?,
            error,
            response_body: r.get(14)?,
            duration_ms: r.get::<_, i64>(15)? as u64,
            warnings: serde_json::from_str(&warnings).unwrap_or_default(),
            created_at: rfc3339_ms(created_at_ms),
            created_at_ms,
        },
    ))
}

/// Filters for a webhook's history.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub status: Option<Status>,
    pub success: Option<bool>,
    /// Only attempts at or after this time (ms).
    pub since_ms: Option<i64>,
    pub limit: usize,
    /// Only attempts older than this cursor (an opaque sequence number).
    pub before: Option<i64>,
}

/// A page of attempts, newest first, with the cursor of the next page.
pub struct Page {
    pub data: Vec<Attempt>,
    pub next: Option<String>,
}

pub fn list_for_webhook(
    conn: &Connection,
    webhook_id: &str,
    q: &Query,
) -> Result<Page, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM attempts WHERE webhook_id = ?1");
    let mut args: Vec<rusqlite::types::Value> = vec![webhook_id.to_owned().into()];
    if let Some(s) = q.status {
        args.push(s.as_str().to_owned().into());
        sql += &format!(" AND status = ?{}", args.len());
    }
    if let Some(s) = q.success {
        args.push((s as i64).into());
        sql += &format!(" AND success = ?{}", args.len());
    }
    if let Some(t) = q.since_ms {
        args.push(t.into());
        sql += &format!(" AND created_at >= ?{}", args.len());
    }
    if let Some(b) = q.before {
        args.push(b.into());
        sql += &format!(" AND seq < ?{}", args.len());
    }
    let limit = q.limit.clamp(1, 1000);
    sql += &format!(" ORDER BY seq DESC LIMIT {}", limit + 1);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), from_row)?;
    let mut data = Vec::new();
    let mut last_seq = None;
    for row in rows {
        let (seq, a) = row?;
        if data.len() == limit {
            return Ok(Page {
                data,
                next: last_seq.map(|s: i64| s.to_string()),
            });
        }
        last_seq = Some(seq);
        data.push(a);
    }
    Ok(Page { data, next: None })
}

/// Every attempt of one delivery, oldest first.
pub fn list_for_delivery(conn: &Connection, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM attempts WHERE delivery_id = ?1 ORDER BY seq"
    ))?;
    let rows = stmt.query_map([delivery_id], from_row)?;
    rows.map(|r| r.map(|(_, a)| a).map_err(StoreError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_body_keeps_at_most_4_kib_on_a_char_boundary() {
        let body = "é".repeat(5000);
        let s = clip_body(body.as_bytes());
        assert!(s.len() <= RESPONSE_BODY_LIMIT);
        assert!(s.len() >= RESPONSE_BODY_LIMIT - 4);
        assert!(s.chars().all(|c| c == 'é' || c == '\u{FFFD}'));
    }
}
