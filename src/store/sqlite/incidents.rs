//! Incidents and escalation steps on SQLite (DESIGN §19): the schema and
//! the SQL behind `Storage::{incident_event, due_steps, run_step,
//! list_incidents, get_incident, ack_incident_by_link, prune_incidents, …}`.
//!
//! Owns: the `incidents`, `incident_events`, `escalation_steps`,
//! `ack_links` (used link nonces) and `api_escalations` tables.
//! A chain's next step is its incident row's `next_due_at`: no timer lives
//! only in memory.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, Writer, insert_attempt, insert_new};
use crate::store::StoredEscalation;
use crate::store::{
    Accepted, DueSteps, Incident, IncidentChange, IncidentDetail, IncidentEvent, IncidentStep,
    LinkAck, NewEvent, StepDelivery, StepRun, StoreError, latest_event,
};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS incidents (
    id            TEXT PRIMARY KEY,
    key           TEXT NOT NULL,
    state         TEXT NOT NULL,          -- open | acknowledged | resolved
    policy        TEXT,
    opened_at     INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    last_event_id TEXT NOT NULL,
    next_step     INTEGER NOT NULL,       -- the chain's next position
    next_due_at   INTEGER,                -- NULL: the chain ended or stopped
    acked_by      TEXT,
    acked_at      INTEGER,
    resolved_at   INTEGER
);
-- At most one unresolved incident per key: later events join it.
CREATE UNIQUE INDEX IF NOT EXISTS incidents_key ON incidents (key) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS incidents_due ON incidents (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents (opened_at);
CREATE TABLE IF NOT EXISTS incident_events (
    event_id      TEXT PRIMARY KEY,       -- an event belongs to one incident
    incident_id   TEXT NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_events_incident ON incident_events (incident_id, at);
CREATE TABLE IF NOT EXISTS escalation_steps (
    incident_id   TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    step_index    INTEGER NOT NULL,
    round         INTEGER NOT NULL,
    event_id      TEXT NOT NULL,          -- the event the step's deliveries carry
    due_at        INTEGER NOT NULL,
    ran_at        INTEGER NOT NULL,
    skipped       TEXT NOT NULL,          -- JSON list of webhook names
    kind          TEXT NOT NULL,          -- step | resolved
    PRIMARY KEY (incident_id, seq)
) WITHOUT ROWID;
-- The nonces of the acknowledgement links used (a link acks at most once).
CREATE TABLE IF NOT EXISTS ack_links (
    nonce         TEXT PRIMARY KEY,
    incident_id   TEXT NOT NULL,
    used_at       INTEGER NOT NULL
) WITHOUT ROWID;
-- Escalation policies created through the API (spec: JSON).
CREATE TABLE IF NOT EXISTS api_escalations (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
"#;

const INCIDENT_COLUMNS: &str = "id, key, state, policy, opened_at, events, last_event_id, next_step, next_due_at, acked_by, acked_at, resolved_at";

fn incident_row(r: &Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        key: r.get(1)?,
        state: r.get(2)?,
        policy: r.get(3)?,
        opened_at_ms: r.get(4)?,
        events: r.get::<_, i64>(5)? as u32,
        last_event_id: r.get(6)?,
        next_step: r.get::<_, i64>(7)? as u32,
        next_due_ms: r.get(8)?,
        acked_by: r.get(9)?,
        acked_at_ms: r.get(10)?,
        resolved_at_ms: r.get(11)?,
    })
}

fn incident_event(c: &Connection, e: &IncidentEvent) -> Result<IncidentChange, StoreError> {
    let known: Option<String> = c
        .prepare_cached("SELECT incident_id FROM incident_events WHERE event_id = ?1")?
        .query_row([&e.event_id], |r| r.get(0))
        .optional()?;
    if known.is_some() {
        return Ok(IncidentChange::Untouched);
    }
    let open: Option<String> = c
        .prepare_cached("SELECT id FROM incidents WHERE key = ?1 AND state != 'resolved'")?
        .query_row([&e.key], |r| r.get(0))
        .optional()?;
    let id = match open {
        Some(id) => {
            c.prepare_cached(
                "UPDATE incidents SET events = events + 1, last_event_id = ?2 WHERE id = ?1",
            )?
            .execute(params![id, e.event_id])?;
            if e.resolves {
                c.prepare_cached(
                    "UPDATE incidents SET state = 'resolved', resolved_at = ?2,
                        next_due_at = CASE WHEN next_step > 0 THEN ?2 END WHERE id = ?1",
                )?
                .execute(params![id, e.at_ms])?;
            }
            id
        }
        None => {
            let Some(o) = e.open.as_ref().filter(|_| !e.resolves) else {
                return Ok(IncidentChange::Untouched);
            };
            c.prepare_cached(
                "INSERT INTO incidents (id, key, state, policy, opened_at, events, last_event_id, next_step, next_due_at)
                 VALUES (?1, ?2, 'open', ?3, ?4, 1, ?5, 0, ?6)",
            )?
            .execute(params![o.id, e.key, o.policy, e.at_ms, e.event_id, o.first_due_ms])?;
            c.prepare_cached(
                "INSERT INTO incident_events (event_id, incident_id, at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![e.event_id, o.id, e.at_ms])?;
            return Ok(IncidentChange::Opened(o.id.clone()));
        }
    };
    c.prepare_cached(
        "INSERT INTO incident_events (event_id, incident_id, at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![e.event_id, id, e.at_ms])?;
    Ok(if e.resolves {
        IncidentChange::Resolved(id)
    } else {
        IncidentChange::Joined(id)
    })
}

fn due_steps(c: &Connection, now: i64) -> Result<DueSteps, StoreError> {
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS}, (SELECT body FROM events WHERE events.id = incidents.last_event_id)
         FROM incidents WHERE next_due_at <= ?1 ORDER BY next_due_at LIMIT 256"
    );
    let rows: Vec<(Incident, Option<String>)> = c
        .prepare_cached(&sql)?
        .query_map([now], |r| Ok((incident_row(r)?, r.get(12)?)))?
        .collect::<Result<_, _>>()?;
    let mut due = Vec::with_capacity(rows.len());
    for (incident, body) in rows {
        let event = latest_event(&incident, body)?;
        due.push((incident, event));
    }
    let next_due_ms: Option<i64> = c
        .prepare_cached("SELECT MIN(next_due_at) FROM incidents WHERE next_due_at > ?1")?
        .query_row([now], |r| r.get(0))?;
    let open: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM incidents WHERE state != 'resolved'")?
        .query_row([], |r| r.get(0))?;
    Ok(DueSteps {
        due,
        next_due_ms,
        open: open.max(0) as u64,
    })
}

fn run_step(c: &Writer, s: &StepRun) -> Result<Option<Accepted>, StoreError> {
    let moved = c
        .prepare_cached(
            "UPDATE incidents SET next_step = ?3, next_due_at = ?4
             WHERE id = ?1 AND next_step = ?2 AND next_due_at IS NOT NULL
               AND state IN ('open', 'resolved')",
        )?
        .execute(params![s.incident_id, s.seq, s.seq + 1, s.next_due_ms])?;
    if moved == 0 {
        return Ok(None);
    }
    let accepted = insert_new(c, &s.event)?;
    for a in &s.event.held {
        insert_attempt(c, a)?;
    }
    let skipped =
        serde_json::to_string(&s.skipped).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO escalation_steps (incident_id, seq, step_index, round, event_id, due_at, ran_at, skipped, kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        s.incident_id,
        s.seq,
        s.step_index,
        s.round,
        s.event.event.id,
        s.due_ms,
        crate::event::now_ms(),
        skipped,
        s.kind
    ])?;
    Ok(Some(accepted))
}

fn list(c: &Connection, state: Option<&str>, limit: u32) -> Result<Vec<Incident>, StoreError> {
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE (?1 IS NULL OR state = ?1)
         ORDER BY opened_at DESC, id DESC LIMIT ?2"
    );
    Ok(c.prepare_cached(&sql)?
        .query_map(params![state, limit], incident_row)?
        .collect::<Result<_, _>>()?)
}

fn get(c: &Connection, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
    let Some(incident) = c
        .prepare_cached(&sql)?
        .query_row([id], incident_row)
        .optional()?
    else {
        return Ok(None);
    };
    let event_ids = c
        .prepare_cached(
            "SELECT event_id FROM incident_events WHERE incident_id = ?1 ORDER BY at, rowid",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut steps: Vec<IncidentStep> = c
        .prepare_cached(
            "SELECT seq, step_index, round, event_id, due_at, ran_at, skipped, kind
             FROM escalation_steps WHERE incident_id = ?1 ORDER BY seq",
        )?
        .query_map([id], |r| {
            Ok(IncidentStep {
                kind: r.get(7)?,
                seq: r.get::<_, i64>(0)? as u32,
                step_index: r.get::<_, i64>(1)? as u32,
                round: r.get::<_, i64>(2)? as u32,
                event_id: r.get(3)?,
                due_ms: r.get(4)?,
                ran_at_ms: r.get(5)?,
                skipped: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                deliveries: vec![],
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT id, webhook_id, status FROM deliveries WHERE event_id = ?1 ORDER BY webhook_id",
    )?;
    for s in &mut steps {
        s.deliveries = stmt
            .query_map([&s.event_id], |r| {
                Ok(StepDelivery {
                    delivery_id: r.get(0)?,
                    webhook_id: r.get(1)?,
                    status: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(Some(IncidentDetail {
        incident,
        event_ids,
        steps,
    }))
}

fn ack(
    c: &Connection,
    id: &str,
    by: &str,
    at: i64,
) -> Result<Option<(bool, Incident)>, StoreError> {
    let changed = c
        .prepare_cached(
            "UPDATE incidents SET state = 'acknowledged', acked_by = ?2, acked_at = ?3, next_due_at = NULL
             WHERE id = ?1 AND state = 'open'",
        )?
        .execute(params![id, by, at])?;
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], incident_row)
        .optional()?
        .map(|i| (changed > 0, i)))
}

fn ack_by_link(
    c: &Connection,
    id: &str,
    nonce: &str,
    by: &str,
    at: i64,
) -> Result<LinkAck, StoreError> {
    let fresh = c
        .prepare_cached(
            "INSERT INTO ack_links (nonce, incident_id, used_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (nonce) DO NOTHING",
        )?
        .execute(params![nonce, id, at])?;
    if fresh == 0 {
        return Ok(LinkAck::Used);
    }
    Ok(match ack(c, id, by, at)? {
        None => LinkAck::Unknown,
        Some((changed, incident)) => LinkAck::Done {
            changed,
            incident: Box::new(incident),
        },
    })
}

/// Deletes up to `limit` incidents resolved before `cutoff` and what hangs
/// off them; returns how many.
fn prune_incidents(c: &Connection, cutoff: i64, limit: usize) -> Result<usize, StoreError> {
    c.execute_batch("CREATE TEMP TABLE IF NOT EXISTS pruned_incidents (id TEXT PRIMARY KEY); DELETE FROM pruned_incidents;")?;
    let n = c
        .prepare_cached(
            "INSERT INTO pruned_incidents (id) SELECT id FROM incidents
             WHERE state = 'resolved' AND resolved_at < ?1 LIMIT ?2",
        )?
        .execute(params![cutoff, limit as i64])?;
    if n == 0 {
        return Ok(0);
    }
    for table in ["incident_events", "escalation_steps", "ack_links"] {
        c.prepare_cached(&format!(
            "DELETE FROM {table} WHERE incident_id IN (SELECT id FROM pruned_incidents)"
        ))?
        .execute([])?;
    }
    c.prepare_cached("DELETE FROM incidents WHERE id IN (SELECT id FROM pruned_incidents)")?
        .execute([])?;
    c.execute_batch("DELETE FROM pruned_incidents;")?;
    Ok(n)
}

impl SqliteStore {
    pub(super) async fn prune_incidents_step(
        &self,
        cutoff: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.write(move |c| prune_incidents(c, cutoff, limit)).await
    }

    pub(super) async fn list_escalations_impl(&self) -> Result<Vec<StoredEscalation>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, spec, created_at FROM api_escalations ORDER BY created_at, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredEscalation {
                    name: r.get(0)?,
                    spec: r.get(1)?,
                    created_at_ms: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(super) async fn insert_escalation_impl(
        &self,
        p: StoredEscalation,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT INTO api_escalations (name, spec, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![p.name, p.spec, p.created_at_ms])?
                > 0)
        })
        .await
    }

    pub(super) async fn delete_escalation_impl(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            Ok(
                c.prepare_cached("DELETE FROM api_escalations WHERE name = ?1")?
                    .execute([&name])?
                    > 0,
            )
        })
        .await
    }

    pub(super) async fn ack_incident_by_link_impl(
        &self,
        id: &str,
        nonce: &str,
        by: &str,
        at: i64,
    ) -> Result<LinkAck, StoreError> {
        let (id, nonce, by) = (id.to_owned(), nonce.to_owned(), by.to_owned());
        self.write(move |c| ack_by_link(c, &id, &nonce, &by, at))
            .await
    }

    pub(super) async fn incident_of_event_impl(
        &self,
        event_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let event_id = event_id.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT incident_id FROM incident_events WHERE event_id = ?1")?
                    .query_row([&event_id], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    pub(super) async fn unresolved_incident_impl(
        &self,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached(
                    "SELECT id FROM incidents WHERE key = ?1 AND state != 'resolved'",
                )?
                .query_row([&key], |r| r.get(0))
                .optional()?,
            )
        })
        .await
    }

    pub(super) async fn ack_incident_impl(
        &self,
        id: &str,
        by: &str,
        at: i64,
    ) -> Result<Option<(bool, Incident)>, StoreError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.write(move |c| ack(c, &id, &by, at)).await
    }

    pub(super) async fn incident_event_impl(
        &self,
        change: IncidentEvent,
    ) -> Result<IncidentChange, StoreError> {
        self.write(move |c| incident_event(c, &change)).await
    }

    pub(super) async fn due_steps_impl(&self, now: i64) -> Result<DueSteps, StoreError> {
        self.read(move |c| due_steps(c, now)).await
    }

    pub(super) async fn run_step_impl(
        &self,
        step: StepRun,
    ) -> Result<(Option<Accepted>, NewEvent), StoreError> {
        let (accepted, step) = self.write_with(step, run_step).await?;
        Ok((accepted, step.event))
    }

    pub(super) async fn list_incidents_impl(
        &self,
        state: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        self.read(move |c| list(c, state.as_deref(), limit)).await
    }

    pub(super) async fn get_incident_impl(
        &self,
        id: &str,
    ) -> Result<Option<IncidentDetail>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| get(c, &id)).await
    }
}
