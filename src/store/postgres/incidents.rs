//! Incidents and escalation steps on PostgreSQL (DESIGN §19): the SQL
//! behind `Storage::{incident_event, due_steps, run_step, list_incidents,
//! get_incident, ack_incident_by_link, …}`; the tables are migrations 5
//! 6 (`ack_links`) and 7 (`api_escalations`) of `MIGRATIONS`.
//!
//! Owns: the incident statements. An incident's key is serialized by a
//! transaction-scoped advisory lock, so two instances taking the first two
//! events of one key open one incident.

use tokio_postgres::Row;

use super::{PgStore, count_trip, pg_err};

use crate::store::StoredEscalation;
use crate::store::{
    Accepted, DueSteps, Incident, IncidentChange, IncidentDetail, IncidentEvent, IncidentStep,
    LinkAck, NewEvent, StepDelivery, StepRun, StoreError, latest_event,
};

pub(super) const MIGRATION: &str = r#"
-- Incidents and escalation (DESIGN §19).
CREATE TABLE incidents (
    id            TEXT PRIMARY KEY,
    key           TEXT NOT NULL,
    state         TEXT NOT NULL,
    policy        TEXT,
    opened_at     BIGINT NOT NULL,
    events        BIGINT NOT NULL,
    last_event_id TEXT NOT NULL,
    next_step     BIGINT NOT NULL,
    next_due_at   BIGINT,
    acked_by      TEXT,
    acked_at      BIGINT,
    resolved_at   BIGINT
);
CREATE UNIQUE INDEX incidents_key ON incidents (key) WHERE state <> 'resolved';
CREATE INDEX incidents_due ON incidents (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX incidents_opened ON incidents (opened_at);
CREATE TABLE incident_events (
    event_id      TEXT PRIMARY KEY,
    incident_id   TEXT NOT NULL,
    at            BIGINT NOT NULL,
    seq           BIGSERIAL
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, at, seq);
CREATE TABLE escalation_steps (
    incident_id   TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    step_index    BIGINT NOT NULL,
    round         BIGINT NOT NULL,
    event_id      TEXT NOT NULL,
    due_at        BIGINT NOT NULL,
    ran_at        BIGINT NOT NULL,
    skipped       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
"#;

const INCIDENT_COLUMNS: &str = "id, key, state, policy, opened_at, events, last_event_id, next_step, next_due_at, acked_by, acked_at, resolved_at";

fn incident_row(r: &Row) -> Incident {
    Incident {
        id: r.get(0),
        key: r.get(1),
        state: r.get(2),
        policy: r.get(3),
        opened_at_ms: r.get(4),
        events: r.get::<_, i64>(5) as u32,
        last_event_id: r.get(6),
        next_step: r.get::<_, i64>(7) as u32,
        next_due_ms: r.get(8),
        acked_by: r.get(9),
        acked_at_ms: r.get(10),
        resolved_at_ms: r.get(11),
    }
}

/// Migration 6: the nonces of the acknowledgement links used.
pub(super) const MIGRATION_ACK_LINKS: &str = r#"
CREATE TABLE ack_links (
    nonce         TEXT PRIMARY KEY,
    incident_id   TEXT NOT NULL,
    used_at       BIGINT NOT NULL
);
"#;

/// Migration 7: the escalation policies created through the API.
pub(super) const MIGRATION_API_ESCALATIONS: &str = r#"
CREATE TABLE api_escalations (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
"#;

impl PgStore {
    /// Deletes up to `limit` incidents resolved before `cutoff` and what
    /// hangs off them, in one statement; returns how many.
    pub(super) async fn prune_incidents_step(
        &self,
        cutoff: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let limit = limit as i64;
        let rows = self
            .query(
                "WITH gone AS (
                    DELETE FROM incidents WHERE id IN (
                        SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < $1 LIMIT $2
                    ) RETURNING id
                 ), e AS (
                    DELETE FROM incident_events WHERE incident_id IN (SELECT id FROM gone)
                 ), s AS (
                    DELETE FROM escalation_steps WHERE incident_id IN (SELECT id FROM gone)
                 ), l AS (
                    DELETE FROM ack_links WHERE incident_id IN (SELECT id FROM gone)
                 )
                 SELECT count(*) FROM gone",
                &[&cutoff, &limit],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as usize)
    }

    pub(super) async fn list_escalations_impl(&self) -> Result<Vec<StoredEscalation>, StoreError> {
        let rows = self
            .query(
                "SELECT name, spec, created_at FROM api_escalations ORDER BY created_at, name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredEscalation {
                name: r.get(0),
                spec: r.get(1),
                created_at_ms: r.get(2),
            })
            .collect())
    }

    pub(super) async fn insert_escalation_impl(
        &self,
        p: StoredEscalation,
    ) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "INSERT INTO api_escalations (name, spec, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING RETURNING name",
                &[&p.name, &p.spec, &p.created_at_ms],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub(super) async fn delete_escalation_impl(&self, name: &str) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "DELETE FROM api_escalations WHERE name = $1 RETURNING name",
                &[&name],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub(super) async fn ack_incident_by_link_impl(
        &self,
        id: &str,
        nonce: &str,
        by: &str,
        at: i64,
    ) -> Result<LinkAck, StoreError> {
        // One statement: the nonce's insert and the ack commit together;
        // the ack only runs when the insert took the nonce.
        let sql = format!(
            "WITH n AS (
                INSERT INTO ack_links (nonce, incident_id, used_at) VALUES ($4, $1, $3)
                ON CONFLICT (nonce) DO NOTHING RETURNING nonce
             ), a AS (
                UPDATE incidents SET state = 'acknowledged', acked_by = $2, acked_at = $3, next_due_at = NULL
                WHERE id = $1 AND state = 'open' AND EXISTS (SELECT 1 FROM n) RETURNING {INCIDENT_COLUMNS}
             )
             SELECT {INCIDENT_COLUMNS}, true, EXISTS (SELECT 1 FROM n) FROM a
             UNION ALL
             SELECT {INCIDENT_COLUMNS}, false, EXISTS (SELECT 1 FROM n) FROM incidents
             WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM a)
             UNION ALL
             SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, EXISTS (SELECT 1 FROM n)
             WHERE NOT EXISTS (SELECT 1 FROM incidents WHERE id = $1)"
        );
        let rows = self.query(&sql, &[&id, &by, &at, &nonce]).await?;
        let Some(r) = rows.first() else {
            return Err(StoreError::Corrupt("the link's ack returned no row".into()));
        };
        if !r.get::<_, bool>(13) {
            return Ok(LinkAck::Used);
        }
        if r.get::<_, Option<String>>(0).is_none() {
            return Ok(LinkAck::Unknown);
        }
        Ok(LinkAck::Done {
            changed: r.get(12),
            incident: Box::new(incident_row(r)),
        })
    }

    pub(super) async fn incident_of_event_impl(
        &self,
        event_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "SELECT incident_id FROM incident_events WHERE event_id = $1",
                &[&event_id],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    pub(super) async fn unresolved_incident_impl(
        &self,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "SELECT id FROM incidents WHERE key = $1 AND state <> 'resolved'",
                &[&key],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    pub(super) async fn ack_incident_impl(
        &self,
        id: &str,
        by: &str,
        at: i64,
    ) -> Result<Option<(bool, Incident)>, StoreError> {
        let sql = format!(
            "WITH a AS (
                UPDATE incidents SET state = 'acknowledged', acked_by = $2, acked_at = $3, next_due_at = NULL
                WHERE id = $1 AND state = 'open' RETURNING {INCIDENT_COLUMNS}
             )
             SELECT {INCIDENT_COLUMNS}, true FROM a
             UNION ALL
             SELECT {INCIDENT_COLUMNS}, false FROM incidents WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM a)"
        );
        let rows = self.query(&sql, &[&id, &by, &at]).await?;
        Ok(rows
            .first()
            .map(|r| (r.get::<_, bool>(12), incident_row(r))))
    }

    pub(super) async fn incident_event_impl(
        &self,
        e: IncidentEvent,
    ) -> Result<IncidentChange, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        count_trip(&self.trips);
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&e.key])
            .await
            .map_err(pg_err)?;
        count_trip(&self.trips);
        let known = tx
            .query(
                "SELECT incident_id FROM incident_events WHERE event_id = $1",
                &[&e.event_id],
            )
            .await
            .map_err(pg_err)?;
        if !known.is_empty() {
            return Ok(IncidentChange::Untouched);
        }
        count_trip(&self.trips);
        let open = tx
            .query(
                "SELECT id FROM incidents WHERE key = $1 AND state <> 'resolved'",
                &[&e.key],
            )
            .await
            .map_err(pg_err)?;
        let change = match open.first().map(|r| r.get::<_, String>(0)) {
            Some(id) => {
                let state = if e.resolves { Some(e.at_ms) } else { None };
                count_trip(&self.trips);
                tx.execute(
                    "WITH j AS (INSERT INTO incident_events (event_id, incident_id, at) VALUES ($2, $1, $3))
                     UPDATE incidents SET events = events + 1, last_event_id = $2,
                        state = CASE WHEN $4::bigint IS NULL THEN state ELSE 'resolved' END,
                        resolved_at = COALESCE($4::bigint, resolved_at),
                        next_due_at = CASE WHEN $4::bigint IS NULL THEN next_due_at
                                           WHEN next_step > 0 THEN $4::bigint END
                     WHERE id = $1",
                    &[&id, &e.event_id, &e.at_ms, &state],
                )
                .await
                .map_err(pg_err)?;
                if e.resolves {
                    IncidentChange::Resolved(id)
                } else {
                    IncidentChange::Joined(id)
                }
            }
            None => match e.open.as_ref().filter(|_| !e.resolves) {
                None => IncidentChange::Untouched,
                Some(o) => {
                    count_trip(&self.trips);
                    tx.execute(
                        "WITH j AS (INSERT INTO incident_events (event_id, incident_id, at) VALUES ($5, $1, $4))
                         INSERT INTO incidents (id, key, state, policy, opened_at, events, last_event_id, next_step, next_due_at)
                         VALUES ($1, $2, 'open', $3, $4, 1, $5, 0, $6)",
                        &[&o.id, &e.key, &o.policy, &e.at_ms, &e.event_id, &o.first_due_ms],
                    )
                    .await
                    .map_err(pg_err)?;
                    IncidentChange::Opened(o.id.clone())
                }
            },
        };
        count_trip(&self.trips);
        tx.commit().await.map_err(pg_err)?;
        Ok(change)
    }

    pub(super) async fn due_steps_impl(&self, now: i64) -> Result<DueSteps, StoreError> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS}, (SELECT body FROM events WHERE events.id = incidents.last_event_id)
             FROM incidents WHERE next_due_at <= $1 ORDER BY next_due_at LIMIT 256"
        );
        let rows = self.query(&sql, &[&now]).await?;
        let mut due = Vec::with_capacity(rows.len());
        for r in &rows {
            let incident = incident_row(r);
            let event = latest_event(&incident, r.get::<_, Option<String>>(12))?;
            due.push((incident, event));
        }
        let next = self
            .query(
                "SELECT MIN(next_due_at) FILTER (WHERE next_due_at > $1),
                        COUNT(*) FILTER (WHERE state <> 'resolved')
                 FROM incidents",
                &[&now],
            )
            .await?;
        Ok(DueSteps {
            due,
            next_due_ms: next.first().and_then(|r| r.get::<_, Option<i64>>(0)),
            open: next.first().map_or(0, |r| r.get::<_, i64>(1).max(0) as u64),
        })
    }

    pub(super) async fn run_step_impl(
        &self,
        s: StepRun,
    ) -> Result<(Option<Accepted>, NewEvent), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        count_trip(&self.trips);
        let skipped =
            serde_json::to_string(&s.skipped).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (seq, next) = (i64::from(s.seq), i64::from(s.seq) + 1);
        let moved = tx
            .execute(
                "WITH m AS (
                    UPDATE incidents SET next_step = $3, next_due_at = $4
                    WHERE id = $1 AND next_step = $2 AND next_due_at IS NOT NULL
                      AND state IN ('open', 'resolved') RETURNING id
                 )
                 INSERT INTO escalation_steps (incident_id, seq, step_index, round, event_id, due_at, ran_at, skipped, kind)
                 SELECT m.id, $2, $5, $6, $7, $8, $9, $10, $11 FROM m",
                &[
                    &s.incident_id,
                    &seq,
                    &next,
                    &s.next_due_ms,
                    &i64::from(s.step_index),
                    &i64::from(s.round),
                    &s.event.event.id,
                    &s.due_ms,
                    &crate::event::now_ms(),
                    &skipped,
                    &s.kind,
                ],
            )
            .await
            .map_err(pg_err)?;
        if moved == 0 {
            return Ok((None, s.event));
        }
        let accepted = self
            .accept_on(&tx, &[std::slice::from_ref(&s.event)], &Default::default())
            .await?;
        count_trip(&self.trips);
        tx.commit().await.map_err(pg_err)?;
        Ok((accepted.into_iter().flatten().next(), s.event))
    }

    pub(super) async fn list_incidents_impl(
        &self,
        state: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE ($1::text IS NULL OR state = $1)
             ORDER BY opened_at DESC, id DESC LIMIT $2"
        );
        let rows = self.query(&sql, &[&state, &i64::from(limit)]).await?;
        Ok(rows.iter().map(incident_row).collect())
    }

    pub(super) async fn get_incident_impl(
        &self,
        id: &str,
    ) -> Result<Option<IncidentDetail>, StoreError> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
        let rows = self.query(&sql, &[&id]).await?;
        let Some(incident) = rows.first().map(incident_row) else {
            return Ok(None);
        };
        let event_ids = self
            .query(
                "SELECT event_id FROM incident_events WHERE incident_id = $1 ORDER BY at, seq",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let rows = self
            .query(
                "SELECT s.seq, s.step_index, s.round, s.event_id, s.due_at, s.ran_at, s.skipped,
                        d.id, d.webhook_id, d.status, s.kind
                 FROM escalation_steps s LEFT JOIN deliveries d ON d.event_id = s.event_id
                 WHERE s.incident_id = $1 ORDER BY s.seq, d.webhook_id",
                &[&id],
            )
            .await?;
        let mut steps: Vec<IncidentStep> = Vec::new();
        for r in &rows {
            let seq = r.get::<_, i64>(0) as u32;
            if steps.last().is_none_or(|s| s.seq != seq) {
                steps.push(IncidentStep {
                    kind: r.get(10),
                    seq,
                    step_index: r.get::<_, i64>(1) as u32,
                    round: r.get::<_, i64>(2) as u32,
                    event_id: r.get(3),
                    due_ms: r.get(4),
                    ran_at_ms: r.get(5),
                    skipped: serde_json::from_str(&r.get::<_, String>(6)).unwrap_or_default(),
                    deliveries: vec![],
                });
            }
            if let (Some(step), Some(delivery_id)) =
                (steps.last_mut(), r.get::<_, Option<String>>(7))
            {
                step.deliveries.push(StepDelivery {
                    delivery_id,
                    webhook_id: r.get(8),
                    status: r.get(9),
                });
            }
        }
        Ok(Some(IncidentDetail {
            incident,
            event_ids,
            steps,
        }))
    }
}
