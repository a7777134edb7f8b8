//! PostgreSQL: the shared store and work queue for several relay instances
//! (DESIGN.md §13).
//!
//! - A pool of connections (`deadpool-postgres`); every statement is
//!   prepared once per connection (`prepare_cached`), so a query is one
//!   round trip.
//! - Versioned migrations ([`MIGRATIONS`]) run at start under a session
//!   advisory lock: one instance migrates at a time.
//! - Work is shared through leases: a delivery row has an `owner` (an
//!   instance id) and `locked_until`. Ingest writes the deliveries it hands
//!   to its own lanes already leased; the poller claims due deliveries with
//!   a short `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)`; a
//!   lease is renewed while its delivery waits or is attempted, and cleared
//!   by the statement that records the attempt — if the owner still holds
//!   it. No row lock is held across an HTTP call. A killed instance's
//!   leases expire and the poller of another instance claims them.
//! - Ingest and recording an attempt are one statement each (CTEs):
//!   one round trip, one transaction; those that arrive while others are
//!   in flight share one statement ([`Group`]). Dedup and digests at
//!   ingest, and a record that may create the catch-all, are short
//!   transactions of their own. `relay_store_round_trips_total` counts
//!   the round trips.
//! - Deliveries written unleased (overflow, resend, replay, re-enable)
//!   `NOTIFY relay_due` in the same transaction; every instance LISTENs on
//!   a connection of its own and wakes its poller; polling stays the
//!   fallback.
//!
//! Owns: the Postgres schema, its migrations, all SQL run on Postgres, the
//! listener connection. Never logs or returns the database password.

mod incidents;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use std::borrow::Cow;
use std::future::Future;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use super::{
    Accepted, Activity, Attempt, AttemptError, AttemptRecord, BreakerChange, Busy, Claimed,
    DecisionCursor, DecisionPage, DecisionQuery, DecisionRecord, Delivery, DueDelivery, DueDigests,
    HistoryQuery, ListedDecision, MemberCursor, NewEvent, PRUNE_BATCH, Page, QueueDepth,
    RoutingRecord, SealedDigest, Start, Status, Storage, StoreError, StoredWebhook, Target,
    WebhookState, catch_all_decision, deduped_decision, digested_decision, is_recorded, merge_page,
    with_memberships,
};
use super::{DueSteps, Incident, IncidentChange, IncidentDetail, IncidentEvent, LinkAck, StepRun};
use crate::event::{Event, now_ms};

/// The channel idle instances listen on.
pub const CHANNEL: &str = "relay_due";
/// Key of the advisory lock held while migrating ("relay" in ASCII).
const MIGRATION_LOCK: i64 = 0x72_656c_6179;
/// Connections per instance.
const POOL_SIZE: usize = 16;
/// Longest wait for a connection (from the pool or a new one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Accept statements in flight at once, per instance; accepts arriving
/// meanwhile wait for the next group. Two, so that one group's WAL flush
/// (accepts commit synchronously) does not hold up the next.
const ACCEPT_SENDERS: usize = 2;
/// Attempt-record statements in flight at once, per instance. One: records
/// commit without waiting for the flush, and one sender makes groups about
/// twice as large as two do, which halves the database's time per record
/// (measured: `cargo bench --bench e2e`, pg_stat_statements).
const RECORD_SENDERS: usize = 1;
/// Most writes in one grouped statement.
const GROUP_MAX: usize = 256;

/// Schema versions, applied in order, each in its own transaction.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    body        TEXT NOT NULL,
    deliveries  INTEGER NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX events_received ON events (received_at, id);
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    webhook_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due_at       BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    owner        TEXT,
    locked_until TIMESTAMPTZ
);
CREATE INDEX deliveries_due ON deliveries (webhook_id, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_final ON deliveries (updated_at) WHERE due_at IS NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE TABLE attempts (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL,
    delivery_id   TEXT NOT NULL,
    webhook_id    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    status_code   INTEGER,
    success       BOOLEAN NOT NULL,
    error_kind    TEXT,
    error_origin  TEXT,
    error_message TEXT,
    retryable     BOOLEAN,
    response_body TEXT,
    duration_ms   BIGINT NOT NULL,
    warnings      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    instance      TEXT
);
-- History pages are newest first by the attempt's time: instances record
-- concurrently, so `seq` (insert order) is not time order.
CREATE INDEX attempts_webhook ON attempts (webhook_id, created_at, seq);
CREATE INDEX attempts_created ON attempts (created_at);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
CREATE TABLE webhook_state (
    webhook_id    TEXT PRIMARY KEY,
    activity      TEXT NOT NULL,
    failure_count INTEGER NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE TABLE config_webhooks (
    webhook_id  TEXT PRIMARY KEY,
    first_seen  BIGINT NOT NULL
);
CREATE TABLE api_webhooks (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    secret      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
-- One attempt as the statements pass it (a JSON array of these).
CREATE TYPE attempt_row AS (
    id text, delivery_id text, webhook_id text, event_id text, event_type text, attempt integer,
    status text, status_code integer, success boolean, error_kind text, error_origin text,
    error_message text, retryable boolean, response_body text, duration_ms bigint, warnings text,
    created_at bigint, instance text
);
-- Wakes every instance's poller (delivered at commit; repeats within one
-- transaction are sent once).
CREATE FUNCTION relay_wake() RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_notify('relay_due', '');
    RETURN 1;
END
$$;
"#,
    ),
    (
        2,
        r#"
CREATE TABLE destination_state (
    webhook_id   TEXT NOT NULL,
    incident_key TEXT NOT NULL,
    state        TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, incident_key)
);
"#,
    ),
    (
        3,
        r#"
-- Routing decisions (DESIGN §17), written in the accept transaction.
CREATE TABLE decisions (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     TEXT NOT NULL,
    webhook_id   TEXT,
    webhook_name TEXT,
    decision     TEXT NOT NULL,
    rule         TEXT,
    ref          TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX decisions_event ON decisions (event_id);
CREATE INDEX decisions_listing ON decisions (decision, created_at, seq);
CREATE INDEX decisions_created ON decisions (created_at);
"#,
    ),
    (
        4,
        r#"
-- Routing (DESIGN §17): digest windows and members, dedup windows and repeats.
CREATE TABLE digests (
    id          TEXT PRIMARY KEY,
    webhook_id  TEXT NOT NULL,
    grp         TEXT NOT NULL,
    state       TEXT NOT NULL,
    count       INTEGER NOT NULL,
    max_events  INTEGER NOT NULL,
    opened_at   BIGINT NOT NULL,
    closes_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX digests_open ON digests (webhook_id, grp) WHERE state = 'open';
CREATE INDEX digests_pending ON digests (state, closes_at) WHERE state <> 'closed';
CREATE TABLE digest_members (
    digest_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (digest_id, seq)
);
CREATE INDEX digest_members_event ON digest_members (event_id);
CREATE TABLE dedup (
    key         TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE deduped (
    event_id    TEXT PRIMARY KEY,
    into_id     TEXT NOT NULL
);
CREATE INDEX deduped_into ON deduped (into_id);
"#,
    ),
    (5, incidents::MIGRATION),
    (6, incidents::MIGRATION_ACK_LINKS),
    (7, incidents::MIGRATION_API_ESCALATIONS),
    (
        8,
        r#"
-- Retention walks the append-only tables in write order (`seq`) and finds
-- an old event's deliveries through `deliveries_event`, as the SQLite store
-- does: these three indexes served retention alone and cost every write a
-- B-tree insert (a finished delivery is a new row version in each index).
DROP INDEX IF EXISTS attempts_created;
DROP INDEX IF EXISTS decisions_created;
DROP INDEX IF EXISTS deliveries_final;
"#,
    ),
    (
        9,
        r#"
-- A `digested` decision is its event's digest membership (issue 15): the
-- member keeps its time, the window its webhook's name; the rows written
-- before move onto the memberships.
ALTER TABLE digest_members ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE digests ADD COLUMN webhook_name TEXT;
UPDATE digest_members m SET created_at = d.created_at FROM decisions d
    WHERE d.decision = 'digested' AND d.event_id = m.event_id AND d.ref = m.digest_id;
UPDATE digests g SET webhook_name = d.webhook_name FROM decisions d
    WHERE d.decision = 'digested' AND d.ref = g.id;
DELETE FROM decisions WHERE decision = 'digested';
CREATE INDEX digest_members_listing ON digest_members (created_at, digest_id, seq);
"#,
    ),
];

fn count_trip(mine: &AtomicU64) {
    crate::metrics::store_round_trip();
    mine.fetch_add(1, Ordering::Relaxed);
}

/// `postgres://user@host:port/db`: what errors and logs show of a URL
/// (never the password, nor the query's options).
pub fn redact(config: &tokio_postgres::Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let db = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// Removes `secret` from a message that may quote it.
fn scrub(message: String, secret: Option<&[u8]>) -> String {
    match secret.and_then(|s| std::str::from_utf8(s).ok()) {
        Some(s) if !s.is_empty() => message.replace(s, "****"),
        _ => message,
    }
}

/// Parses a `storage.postgres` URL. The error never quotes the URL.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::Database(scrub(
            format!(
                "storage.postgres: not a valid PostgreSQL URL ({}); expected postgres://user:password@host:5432/database",
                first_line(&e.to_string())
            ),
            url_password(url).map(str::as_bytes),
        ))
    })?;
    if config.get_hosts().is_empty() {
        return Err(StoreError::Database(
            "storage.postgres: the URL names no host; expected postgres://user:password@host:5432/database".into(),
        ));
    }
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(StoreError::Database(format!(
            "storage.postgres: {}: sslmode=require is not supported yet; connect over a private network or a local socket",
            redact(&config)
        )));
    }
    Ok(config)
}

/// The password of a `scheme://user:password@host` URL, found without
/// parsing it (for scrubbing an error about a URL that does not parse).
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The error and its causes ("error connecting to server: Connection
/// refused"). tokio-postgres names the server's error, never the password.
fn pg_text(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(format!("postgres: {}", pg_text(&e)))
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    StoreError::Database(match e {
        PoolError::Backend(e) => format!("postgres: {}", pg_text(&e)),
        PoolError::Timeout(_) => format!(
            "postgres: no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        ),
        other => format!("postgres: {other}"),
    })
}

/// Why a statement did not run.
enum Failed {
    /// No connection (pool timeout, server unreachable).
    Pool(deadpool_postgres::PoolError),
    /// The connection failed, or the server refused the statement.
    Pg(tokio_postgres::Error),
    /// The statement's parameters could not be made.
    Store(StoreError),
}

impl Failed {
    /// The server answered and refused the statement (bad data, a
    /// constraint): the same statement would fail again, the connection
    /// is fine.
    fn refused(&self) -> bool {
        matches!(self, Failed::Pg(e) if e.as_db_error().is_some())
    }
}

impl From<Failed> for StoreError {
    fn from(f: Failed) -> StoreError {
        match f {
            Failed::Pool(e) => pool_err(e),
            Failed::Pg(e) => pg_err(e),
            Failed::Store(e) => e,
        }
    }
}

/// A store error's own text, without the `storage error:` of its Display.
fn message(e: StoreError) -> String {
    match e {
        StoreError::Database(m) => m,
        other => other.to_string(),
    }
}

/// The shared store.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The connections of grouped attempt records ([`PgStore::record_group`]):
    /// their sessions commit without waiting for the WAL flush
    /// (`synchronous_commit=off`) and keep one generic plan
    /// (`plan_cache_mode=force_generic_plan`) that never scans a table
    /// (`enable_seqscan=off`).
    record_pool: Pool,
    /// This process's id in `owner` columns.
    owner: Arc<str>,
    /// The connection settings (for the LISTEN connection).
    config: Arc<tokio_postgres::Config>,
    /// The lease of deliveries this instance writes for itself.
    lease_ms: i64,
    /// Round trips of this store (the process-wide count is
    /// `relay_store_round_trips_total`).
    trips: Arc<AtomicU64>,
    /// Accepts waiting to be written together.
    accepts: Arc<Group<AcceptWrite>>,
    /// Attempt records waiting to be written together.
    records: Arc<Group<RecordWrite>>,
}

/// An accept waiting in [`PgStore::accepts`], and where its answer goes.
type AcceptWrite = (
    Vec<NewEvent>,
    oneshot::Sender<Result<(Vec<Accepted>, Vec<NewEvent>), StoreError>>,
);
/// An attempt record waiting in [`PgStore::records`].
type RecordWrite = (
    AttemptRecord,
    oneshot::Sender<Result<Option<WebhookState>, StoreError>>,
);

/// Writes of one kind that arrive while earlier ones are being written
/// wait here and go out together: one statement (one round trip, one
/// transaction, one commit) for up to [`GROUP_MAX`] of them. At most
/// `senders` statements of the kind are in flight; a write that finds one
/// of them free is sent at once, so grouping adds no wait to a write that
/// comes alone. Each caller is answered after its group's commit.
struct Group<W> {
    waiting: std::sync::Mutex<Vec<W>>,
    senders: Arc<Semaphore>,
}

impl<W> Group<W> {
    fn new(senders: usize) -> Group<W> {
        Group {
            waiting: std::sync::Mutex::new(Vec::new()),
            senders: Arc::new(Semaphore::new(senders)),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<W>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `w`. `Some`: a sender's permit, for the caller to start one
    /// ([`Group::send_all`]); `None`: every sender is busy and one of them
    /// takes `w` with its next group.
    fn push(&self, w: W) -> Option<OwnedSemaphorePermit> {
        self.waiting().push(w);
        self.senders.clone().try_acquire_owned().ok()
    }

    /// Sends groups with `send` until nothing waits. A sender gives its
    /// permit back before its last look at the queue, so a write queued
    /// while every permit was held is always taken by one of them.
    async fn send_all<F, Fut>(&self, mut permit: OwnedSemaphorePermit, send: F)
    where
        F: Fn(Vec<W>) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let group: Vec<W> = {
                let mut waiting = self.waiting();
                let n = waiting.len().min(GROUP_MAX);
                waiting.drain(..n).collect()
            };
            if group.is_empty() {
                drop(permit);
                if self.waiting().is_empty() {
                    return;
                }
                match self.senders.clone().try_acquire_owned() {
                    Ok(p) => permit = p,
                    // Another sender holds it and will look again.
                    Err(_) => return,
                }
                continue;
            }
            send(group).await;
        }
    }
}

/// The answer of a write whose sender ended without answering (it
/// panicked): nothing says whether it was committed.
fn unanswered() -> StoreError {
    StoreError::Database("postgres: the write ended without an answer".into())
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("owner", &self.owner)
            .finish()
    }
}

/// A pool of at most `size` connections made with `config`.
fn pool(
    config: tokio_postgres::Config,
    size: usize,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
}

/// Connects once and asks for `SELECT 1` (bounded by [`CONNECT_TIMEOUT`]):
/// `relay check`. The error names the URL without its password.
pub async fn ping(url: &str) -> Result<(), StoreError> {
    let mut config = parse_url(url)?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let shown = redact(&config);
    let secret = config.get_password().map(<[u8]>::to_vec);
    let answered = tokio::time::timeout(CONNECT_TIMEOUT * 2, async {
        let (client, connection) = config.connect(NoTls).await?;
        let task = tokio::spawn(connection);
        let r = client.simple_query("SELECT 1").await.map(|_| ());
        drop(client);
        let _ = task.await;
        r
    })
    .await;
    let message = match answered {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => pg_text(&e),
        Err(_) => format!("no answer within {} s", (CONNECT_TIMEOUT * 2).as_secs()),
    };
    Err(StoreError::Database(scrub(
        format!("storage.postgres: cannot connect to {shown}: {message}"),
        secret.as_deref(),
    )))
}

impl PgStore {
    /// Connects (bounded by [`CONNECT_TIMEOUT`]), runs the migrations and
    /// checks the database answers. Errors name the URL without password.
    /// `lease`: how long ingest, replay and resend lease the due
    /// deliveries they write to this instance (which offers them to its own
    /// lanes; the dispatcher renews them while they wait or are attempted).
    pub async fn connect(url: &str, lease: Duration) -> Result<PgStore, StoreError> {
        let mut config = parse_url(url)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("relay");
        let pg_config = config.clone();
        let shown = redact(&config);
        let secret = config.get_password().map(<[u8]>::to_vec);
        // Attempt records of the happy path commit without waiting for
        // their WAL flush (a server crash costs a resend, at-least-once):
        // a session setting of their own connections. Their one statement
        // keeps one generic plan: left to itself the server plans it anew
        // on every execution (its custom plans look cheaper), which cost
        // more than running it. That one plan is made on the connection's
        // first record, often while `deliveries` holds a few rows and has no
        // statistics yet: a sequential scan then looks cheapest and stays
        // the plan (every record reading the whole table) until an
        // autoanalyze replaces it. Without sequential scans the plan finds
        // its rows through the primary keys whatever the table looked like.
        let mut record_config = config.clone();
        const RECORD_SESSION: &str =
            "-c synchronous_commit=off -c plan_cache_mode=force_generic_plan -c enable_seqscan=off";
        let options = match record_config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {RECORD_SESSION}"),
            _ => RECORD_SESSION.to_owned(),
        };
        record_config.options(options);
        let pool = pool(config, POOL_SIZE)
            .map_err(|e| StoreError::Database(format!("storage.postgres: {shown}: {e}")))?;
        let record_pool = self::pool(record_config, RECORD_SENDERS)
            .map_err(|e| StoreError::Database(format!("storage.postgres: {shown}: {e}")))?;
        let store = PgStore {
            pool,
            record_pool,
            owner: Arc::from(crate::event::new_id()),
            config: Arc::new(pg_config),
            lease_ms: Self::lease_param(lease),
            trips: Arc::default(),
            accepts: Arc::new(Group::new(ACCEPT_SENDERS)),
            records: Arc::new(Group::new(RECORD_SENDERS)),
        };
        store.migrate().await.map_err(|e| {
            StoreError::Database(scrub(
                format!("storage.postgres: cannot use {shown}: {}", message(e)),
                secret.as_deref(),
            ))
        })?;
        Ok(store)
    }

    /// This instance's id in `owner` columns.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease this store was opened with.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms as u64)
    }

    /// Round trips this store has made.
    pub fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Runs one cached statement on a pooled connection ([`PgStore::run`]).
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        Ok(self.run(&client, sql, params).await?)
    }

    /// [`PgStore::query`] for a statement that returns no rows: how many
    /// it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = self.prepared(&client, sql).await?;
        client.execute(&stmt, params).await.map_err(pg_err)
    }

    /// Applies the migrations not applied yet, one instance at a time.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_lock({MIGRATION_LOCK});
                 CREATE TABLE IF NOT EXISTS relay_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);"
            ))
            .await
            .map_err(pg_err)?;
        let result = async {
            let done: Option<i32> = client
                .query_one("SELECT MAX(version) FROM relay_migrations", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| Some(*v) > done) {
                let tx = client.transaction().await.map_err(pg_err)?;
                tx.batch_execute(sql).await.map_err(pg_err)?;
                tx.execute(
                    "INSERT INTO relay_migrations (version, applied_at) VALUES ($1, $2)",
                    &[version, &now_ms()],
                )
                .await
                .map_err(pg_err)?;
                tx.commit().await.map_err(pg_err)?;
                tracing::info!(version, "applied postgres migration");
            }
            Ok::<_, StoreError>(())
        }
        .await;
        let unlock = client
            .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .await
            .map_err(pg_err);
        result.and(unlock)
    }

    /// `lease` as milliseconds for the statements.
    fn lease_param(lease: Duration) -> i64 {
        lease.as_millis().min(i64::MAX as u128) as i64
    }

    /// Fails claimed deliveries whose event no longer exists.
    async fn fail_orphans(&self, ids: &[String]) -> Result<(), StoreError> {
        self.execute(
            "UPDATE deliveries SET status = 'failed', due_at = NULL, updated_at = $2, owner = NULL, locked_until = NULL
             WHERE id = ANY($1) AND due_at IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = deliveries.event_id)",
            &[&ids, &now_ms()],
        )
        .await?;
        Ok(())
    }
}

/// The accept statement ([`PgStore::accept_on`]): the events and their
/// deliveries (`$1`–`$12`), and with `records` the held attempts (`$13`)
/// and the routing decisions (`$14`) of the new events. It answers the
/// new events, then the stored ones among the rest (looked up only when
/// some id was not new).
fn accept_sql(records: bool) -> &'static str {
    const EVENTS: &str = "WITH ev AS (
        INSERT INTO events (id, type, body, deliveries, received_at)
        SELECT id, type, body, n, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[]) AS e(id, type, body, n)
        ON CONFLICT (id) DO NOTHING
        RETURNING id
     ), dl AS (
        INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at, owner, locked_until)
        SELECT d.id, d.event_id, d.webhook_id, d.status, 0, d.due_at, $5, $5,
               CASE WHEN d.status = 'pending' THEN $11::text END,
               CASE WHEN d.status = 'pending' THEN clock_timestamp() + $12::int8 * interval '1 millisecond' END
        FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::int8[])
             AS d(id, event_id, webhook_id, status, due_at)
        WHERE d.event_id IN (SELECT id FROM ev)
     )";
    const RECORDS: &str = ", held AS (
        INSERT INTO attempts (id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code,
            success, error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at, instance)
        SELECT a.* FROM json_populate_recordset(NULL::attempt_row, $13::text::json) a
        WHERE a.event_id IN (SELECT id FROM ev)
     ), dc AS (
        INSERT INTO decisions (event_id, webhook_id, webhook_name, decision, rule, ref, created_at)
        SELECT x.event_id, x.webhook_id, x.webhook_name, x.decision, x.rule, x.ref, x.created_at
        FROM json_to_recordset($14::text::json) AS x(event_id text, webhook_id text, webhook_name text,
             decision text, rule text, ref text, created_at bigint)
        WHERE x.event_id IN (SELECT id FROM ev)
     )";
    const ANSWER: &str = "
     SELECT id, true AS fresh, 0 AS n FROM ev
     UNION ALL
     SELECT id, false, deliveries FROM events
     WHERE (SELECT count(*) FROM ev) < cardinality($1::text[]) AND id = ANY($1)";
    static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        [
            format!("{EVENTS}{ANSWER}"),
            format!("{EVENTS}{RECORDS}{ANSWER}"),
        ]
    });
    &SQL[usize::from(records)]
}

/// Delivery rows of a batch as column arrays (for `unnest`).
#[derive(Default)]
struct DeliveryColumns<'a> {
    id: Vec<&'a str>,
    event: Vec<&'a str>,
    webhook: Vec<&'a str>,
    status: Vec<&'static str>,
    due: Vec<Option<i64>>,
}

impl<'a> DeliveryColumns<'a> {
    fn push(&mut self, event_id: &'a str, t: &'a Target, now: i64) {
        let (status, due) = start_row(t.start, now);
        self.id.push(&t.delivery_id);
        self.event.push(event_id);
        self.webhook.push(&t.webhook_id);
        self.status.push(status);
        self.due.push(due);
    }
}

impl PgStore {
    /// The statement of [`Storage::record_attempt`] on `c` (one round
    /// trip): the attempt row; the delivery's new state, clearing the
    /// lease, only while this instance still holds it (else the lease
    /// expired and another instance owns the delivery now: its record
    /// decides); the breaker change, counted atomically on the stored row;
    /// a stateful destination's kept state.
    async fn record_attempt_on(
        &self,
        c: &impl Conn,
        record: &AttemptRecord,
    ) -> Result<Option<WebhookState>, StoreError> {
        let attempt = &record.attempt;
        let json = attempts_json(std::slice::from_ref(attempt), Some(&self.owner))?;
        let (op, threshold) = match record.breaker {
            BreakerChange::None => ("", 0),
            BreakerChange::Success { .. } => ("success", 0),
            BreakerChange::Failure { threshold } => ("failure", threshold as i32),
            BreakerChange::Trip => ("trip", 0),
        };
        let rows = self
            .run(
                c,
                "WITH d AS (
                    UPDATE deliveries SET status = $2, attempts = $3, due_at = $4, updated_at = $5, owner = NULL, locked_until = NULL
                    WHERE id = $1 AND owner = $6::text
                    RETURNING id
                 ), a AS (
                    INSERT INTO attempts (id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code,
                        success, error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at, instance)
                    SELECT a.* FROM json_populate_recordset(NULL::attempt_row, $7::text::json) a
                 ), w AS (
                    INSERT INTO webhook_state AS s (webhook_id, activity, failure_count, updated_at)
                    SELECT $8::text,
                           CASE WHEN $9::text = 'trip' OR ($9 = 'failure' AND $10::int4 > 0 AND $10 <= 1) THEN 'paused' ELSE 'active' END,
                           1, $5
                    WHERE $9 IN ('failure', 'trip')
                    ON CONFLICT (webhook_id) DO UPDATE SET
                        failure_count = s.failure_count + 1,
                        activity = CASE
                            WHEN s.activity = 'active' AND ($9 = 'trip' OR ($10 > 0 AND s.failure_count + 1 >= $10))
                            THEN 'paused' ELSE s.activity END,
                        updated_at = $5
                    RETURNING s.activity, s.failure_count
                 ), ok AS (
                    UPDATE webhook_state SET failure_count = 0, updated_at = $5
                    WHERE webhook_id = $8 AND $9 = 'success' AND failure_count > 0
                    RETURNING activity, failure_count
                 ), ds AS (
                    INSERT INTO destination_state (webhook_id, incident_key, state, updated_at)
                    SELECT $8, $11::text, $12::text, $5
                    WHERE $11::text IS NOT NULL AND $12::text IS NOT NULL
                    ON CONFLICT (webhook_id, incident_key) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
                    RETURNING 1
                 ), dc AS (
                    DELETE FROM destination_state
                    WHERE webhook_id = $8 AND incident_key = $11::text AND $12::text IS NULL
                    RETURNING 1
                 ), x AS (SELECT * FROM w UNION ALL SELECT * FROM ok)
                 SELECT (SELECT count(*) FROM d), (SELECT activity FROM x LIMIT 1), (SELECT failure_count FROM x LIMIT 1)",
                &[
                    &attempt.delivery_id,
                    &attempt.status.as_str(),
                    &(attempt.attempt as i32),
                    &record.due_at,
                    &now_ms(),
                    &&*self.owner,
                    &json,
                    &attempt.webhook_id,
                    &op,
                    &threshold,
                    &record.destination_state.as_ref().map(|d| d.incident_key.as_str()),
                    &record
                        .destination_state
                        .as_ref()
                        .and_then(|d| d.state.as_deref()),
                ],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("recording an attempt returned no row".into()))?;
        if row.get::<_, i64>(0) == 0 {
            lease_lost(&attempt.delivery_id);
        }
        Ok(
            match (
                row.get::<_, Option<String>>(1),
                row.get::<_, Option<i32>>(2),
            ) {
                (Some(a), Some(n)) => Some(WebhookState {
                    activity: activity(&a),
                    failure_count: n as u32,
                }),
                _ => None,
            },
        )
    }

    /// The statement of [`Storage::record_paused`] on `c`.
    async fn record_paused_on(&self, c: &impl Conn, attempt: &Attempt) -> Result<(), StoreError> {
        let json = attempts_json(std::slice::from_ref(attempt), Some(&self.owner))?;
        self.run(
            c,
            "WITH d AS (
                UPDATE deliveries SET status = 'paused', updated_at = $2, owner = NULL, locked_until = NULL
                WHERE id = $1 AND due_at IS NOT NULL
                RETURNING id
             ), a AS (
                INSERT INTO attempts (id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code,
                    success, error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at, instance)
                SELECT a.* FROM json_populate_recordset(NULL::attempt_row, $3::text::json) a
             )
             SELECT count(*) FROM d",
            &[&attempt.delivery_id, &now_ms(), &json],
        )
        .await?;
        Ok(())
    }

    /// [`Storage::accept`] for a batch with dedup keys or digests: one
    /// transaction that takes the dedup keys (a repeat is stored with no
    /// delivery), joins the digest windows, then runs the batch statement.
    async fn accept_routed(
        &self,
        mut batch: Vec<NewEvent>,
    ) -> Result<(Vec<Accepted>, Vec<NewEvent>), StoreError> {
        let now = now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let ids: Vec<&str> = batch.iter().map(|e| e.event.id.as_str()).collect();
        let known: std::collections::HashSet<String> = self
            .run(&tx, "SELECT id FROM events WHERE id = ANY($1)", &[&ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut deduped = std::collections::HashMap::new();
        for e in batch.iter_mut() {
            let id = e.event.id.clone();
            if known.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            if let Some(k) = &e.dedup {
                let into: String = self
                    .run(
                        &tx,
                        "INSERT INTO dedup AS d (key, event_id, expires_at) VALUES ($1, $2, $3)
                         ON CONFLICT (key) DO UPDATE SET
                             event_id = CASE WHEN d.expires_at <= $4 THEN excluded.event_id ELSE d.event_id END,
                             expires_at = CASE WHEN d.expires_at <= $4 THEN excluded.expires_at ELSE d.expires_at END
                         RETURNING event_id",
                        &[&k.key, &id, &(now + k.window_ms), &now],
                    )
                    .await?
                    .first()
                    .map(|r| r.get(0))
                    .ok_or_else(|| StoreError::Corrupt("a dedup key returned no row".into()))?;
                if into != id {
                    self.run(
                        &tx,
                        "INSERT INTO deduped (event_id, into_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&id, &into],
                    )
                    .await?;
                    e.targets.clear();
                    e.held.clear();
                    e.digests.clear();
                    // The planned decisions never happened: one for the event.
                    e.decisions = vec![deduped_decision(&id, &into, now)];
                    deduped.insert(id, into);
                    continue;
                }
            }
            for m in &e.digests {
                self.run(
                        &tx,
                        "WITH d AS (
                            INSERT INTO digests AS g (id, webhook_id, grp, state, count, max_events, opened_at, closes_at, webhook_name)
                            VALUES ($1, $2, $3, CASE WHEN $4::int4 <= 1 THEN 'closing' ELSE 'open' END, 1, $4, $5, $6, $8)
                            ON CONFLICT (webhook_id, grp) WHERE state = 'open' DO UPDATE SET
                                count = g.count + 1,
                                state = CASE WHEN g.count + 1 >= g.max_events THEN 'closing' ELSE 'open' END
                            RETURNING id, count
                         )
                         INSERT INTO digest_members (digest_id, seq, event_id, created_at) SELECT id, count, $7, $5 FROM d
                         RETURNING digest_id",
                        &[
                            &crate::event::new_id(),
                            &m.webhook_id,
                            &m.group,
                            &(m.max_events as i32),
                            &now,
                            &(now + m.window_ms),
                            &id,
                            &m.webhook_name,
                        ],
                    )
                    .await?
                    .first()
                    .ok_or_else(|| StoreError::Corrupt("a digest window returned no row".into()))?;
            }
        }
        let accepted = self.accept_on(&tx, &[&batch], &deduped).await?;
        count_trip(&self.trips);
        tx.commit().await.map_err(pg_err)?;
        Ok((accepted.into_iter().next().unwrap_or_default(), batch))
    }

    /// The batch statement of [`Storage::accept`] on `c` (a pooled
    /// connection, or a transaction), for the batches of one or several
    /// callers (one round trip, one transaction): the events (`ON CONFLICT
    /// DO NOTHING`: the id is the idempotency key), their deliveries — due
    /// ones leased to this instance for its lease, since ingest hands them
    /// to its own lanes —, the held attempts and the routing decisions of
    /// new events. An id seen twice (in one batch or two) is new only the
    /// first time. `deduped`: events stored as repeats (id → the event they
    /// repeat). Answers per batch, in order.
    async fn accept_on(
        &self,
        c: &impl Conn,
        parts: &[&[NewEvent]],
        deduped: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<Vec<Accepted>>, Failed> {
        let now = now_ms();
        // Each id's delivery count, from its first occurrence.
        let mut first: std::collections::HashMap<&str, i32> = std::collections::HashMap::new();
        let (mut ids, mut types, mut bodies, mut counts) = (vec![], vec![], vec![], vec![]);
        let mut d = DeliveryColumns::default();
        let mut held = Vec::new();
        let mut decisions = Vec::new();
        for e in parts.iter().flat_map(|p| p.iter()) {
            let n = e.targets.len() as i32;
            if first.contains_key(e.event.id.as_str()) {
                // Later ones are duplicates.
                continue;
            }
            first.insert(e.event.id.as_str(), n);
            ids.push(e.event.id.as_str());
            types.push(e.event.event_type.as_str());
            bodies.push(e.body.as_str());
            counts.push(n);
            for t in &e.targets {
                d.push(&e.event.id, t, now);
            }
            held.extend(e.held.iter().cloned());
            decisions.extend(e.decisions.iter().filter(|d| is_recorded(d)));
        }
        // Most batches hold neither held attempts nor decisions: their
        // statement leaves out the two inserts (each costs the server its
        // setup on every execution).
        let records = !held.is_empty() || !decisions.is_empty();
        let (held_json, decisions_json) = if records {
            (
                attempts_json(&held, Some(&self.owner)).map_err(Failed::Store)?,
                decisions_json(&decisions).map_err(Failed::Store)?,
            )
        } else {
            Default::default()
        };
        let owner: &str = &self.owner;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &ids,
            &types,
            &bodies,
            &counts,
            &now,
            &d.id,
            &d.event,
            &d.webhook,
            &d.status,
            &d.due,
            &owner,
            &self.lease_ms,
        ];
        if records {
            params.extend([&held_json as &(dyn ToSql + Sync), &decisions_json]);
        }
        let rows = self.run(c, accept_sql(records), &params).await?;
        let mut fresh = std::collections::HashSet::new();
        let mut known = std::collections::HashMap::new();
        for r in &rows {
            let id: String = r.get(0);
            if r.get::<_, bool>(1) {
                fresh.insert(id);
            } else {
                known.insert(id, r.get::<_, i32>(2));
            }
        }
        let mut answered = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let mut accepted = Vec::with_capacity(part.len());
            for e in part.iter() {
                let id = &e.event.id;
                if answered.insert(id.as_str()) && fresh.contains(id) {
                    accepted.push(Accepted {
                        id: id.clone(),
                        deliveries: e.targets.len() as u32,
                        duplicate: false,
                        deduped_into: deduped.get(id).cloned(),
                        held: e
                            .targets
                            .iter()
                            .filter(|t| t.start != Start::Due)
                            .map(|t| (t.delivery_id.clone(), t.webhook_id.clone(), t.start))
                            .collect(),
                    });
                    continue;
                }
                let n = match known.get(id) {
                    Some(n) => *n,
                    None if fresh.contains(id) => first.get(id.as_str()).copied().unwrap_or(0),
                    // Stored by a concurrent request after this statement's
                    // snapshot: read its count now.
                    None => self
                        .run(c, "SELECT deliveries FROM events WHERE id = $1", &[id])
                        .await?
                        .first()
                        .map(|r| r.get::<_, i32>(0))
                        .unwrap_or(0),
                };
                accepted.push(Accepted {
                    id: id.clone(),
                    deliveries: n as u32,
                    duplicate: true,
                    held: vec![],
                    deduped_into: None,
                });
            }
            out.push(accepted);
        }
        Ok(out)
    }

    /// Runs `sql` on `c`, prepared once per connection: one round trip
    /// (two when it is prepared on this connection for the first time).
    async fn run(
        &self,
        c: &impl Conn,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Failed> {
        let stmt = self.prepared(c, sql).await?;
        c.query(&stmt, params).await.map_err(Failed::Pg)
    }

    /// `sql` prepared on `c` (from its cache after the first time),
    /// counting the round trip of the preparation and the one that runs it.
    async fn prepared(&self, c: &impl Conn, sql: &str) -> Result<Statement, Failed> {
        let cached = c.statements().size();
        let stmt = c.prepare_cached(sql).await.map_err(Failed::Pg)?;
        if c.statements().size() > cached {
            count_trip(&self.trips);
        }
        count_trip(&self.trips);
        Ok(stmt)
    }
}

/// A pooled connection or a transaction on one: statements are prepared
/// once per connection, in its statement cache.
trait Conn: deadpool_postgres::GenericClient {
    fn statements(&self) -> &deadpool_postgres::StatementCache;
}

impl Conn for deadpool_postgres::Object {
    fn statements(&self) -> &deadpool_postgres::StatementCache {
        &self.statement_cache
    }
}

impl Conn for deadpool_postgres::Transaction<'_> {
    fn statements(&self) -> &deadpool_postgres::StatementCache {
        &self.statement_cache
    }
}

impl Storage for PgStore {
    /// Batches with dedup keys or digest members take
    /// [`PgStore::accept_routed`]'s transaction. The others wait for a free
    /// sender and go out in groups ([`PgStore::accept_group`]): each caller
    /// is answered after the commit of the statement that wrote its batch.
    async fn accept(
        &self,
        batch: Vec<NewEvent>,
    ) -> Result<(Vec<Accepted>, Vec<NewEvent>), StoreError> {
        if batch
            .iter()
            .any(|e| e.dedup.is_some() || !e.digests.is_empty())
        {
            return self.accept_routed(batch).await;
        }
        let (tx, rx) = oneshot::channel();
        if let Some(permit) = self.accepts.push((batch, tx)) {
            let store = self.clone();
            tokio::spawn(async move {
                let group = store.accepts.clone();
                group
                    .send_all(permit, |writes| store.write_accepts(writes))
                    .await;
            });
        }
        rx.await.unwrap_or_else(|_| Err(unanswered()))
    }

    async fn record_paused(
        &self,
        attempt: Attempt,
        catch_all_target: Option<Target>,
    ) -> Result<(), StoreError> {
        let Some(t) = catch_all_target else {
            let client = self.client().await?;
            return self.record_paused_on(&client, &attempt).await;
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        lock_event(&*tx, &attempt.event_id).await?;
        self.record_paused_on(&tx, &attempt).await?;
        catch_all(&*tx, &attempt.event_id, &t).await?;
        count_trip(&self.trips);
        tx.commit().await.map_err(pg_err)
    }

    async fn due_digests(&self, now: i64) -> Result<DueDigests, StoreError> {
        let rows = self
            .query(
                "(SELECT id, 0 AS k FROM digests WHERE state = 'closing' ORDER BY closes_at LIMIT 256)
                 UNION ALL
                 (SELECT id, 1 FROM digests WHERE state = 'open' AND closes_at <= $1 ORDER BY closes_at LIMIT 256)
                 UNION ALL
                 (SELECT MIN(closes_at)::text, 2 FROM digests WHERE state = 'open' AND closes_at > $1)",
                &[&now],
            )
            .await?;
        let mut out = DueDigests::default();
        for r in rows {
            let id: Option<String> = r.get(0);
            match (r.get::<_, i32>(1), id) {
                (2, Some(t)) => out.next_close_ms = t.parse().ok(),
                (0 | 1, Some(id)) => out.due.push(id),
                _ => {}
            }
        }
        Ok(out)
    }

    async fn seal_digest(&self, id: &str) -> Result<Option<SealedDigest>, StoreError> {
        let rows = self
            .query(
                "WITH s AS (
                    UPDATE digests SET state = 'closing' WHERE id = $1 AND state IN ('open', 'closing')
                    RETURNING webhook_id, grp, opened_at
                 )
                 SELECT s.webhook_id, s.grp, s.opened_at, e.body
                 FROM s LEFT JOIN digest_members m ON m.digest_id = $1
                 LEFT JOIN events e ON e.id = m.event_id
                 ORDER BY m.seq",
                &[&id],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut members = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(body) = r.get::<_, Option<String>>(3) {
                members.push(body);
            }
        }
        Ok(Some(SealedDigest {
            id: id.to_owned(),
            webhook_id: first.get(0),
            group: first.get(1),
            opened_at_ms: first.get(2),
            members,
        }))
    }

    /// Stores the whole body (`members` is for SQLite).
    async fn finish_digest(
        &self,
        id: &str,
        digest: NewEvent,
        _members: std::ops::Range<usize>,
    ) -> Result<(Option<Accepted>, NewEvent), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let closed = self
            .run(
                &tx,
                "UPDATE digests SET state = 'closed' WHERE id = $1 AND state = 'closing' RETURNING id",
                &[&id],
            )
            .await?;
        if closed.is_empty() {
            return Ok((None, digest));
        }
        let accepted = self
            .accept_on(&tx, &[std::slice::from_ref(&digest)], &Default::default())
            .await?;
        count_trip(&self.trips);
        tx.commit().await.map_err(pg_err)?;
        Ok((accepted.into_iter().flatten().next(), digest))
    }

    async fn routing_of(&self, event_id: &str) -> Result<RoutingRecord, StoreError> {
        let rows = self
            .query(
                "SELECT 0 AS k, into_id AS a, NULL::text AS b FROM deduped WHERE event_id = $1
                 UNION ALL
                 SELECT 1, COUNT(*)::text, NULL FROM deduped WHERE into_id = $1
                 UNION ALL
                 SELECT 2, d.webhook_id, d.id FROM digest_members m JOIN digests d ON d.id = m.digest_id
                 WHERE m.event_id = $1",
                &[&event_id],
            )
            .await?;
        let mut out = RoutingRecord::default();
        for r in rows {
            let a: Option<String> = r.get(1);
            match (r.get::<_, i32>(0), a) {
                (0, into) => out.deduped_into = into,
                (1, n) => out.repeats = n.and_then(|n| n.parse().ok()).unwrap_or(0),
                (_, Some(w)) => out
                    .digests
                    .push((w, r.get::<_, Option<String>>(2).unwrap_or_default())),
                _ => {}
            }
        }
        out.digests.sort();
        Ok(out)
    }

    /// Replay: the deliveries (due ones leased to this instance, which
    /// offers them to its lanes) and their held attempts, in one statement;
    /// nothing when the event is gone.
    async fn add_deliveries(
        &self,
        event_id: &str,
        targets: Vec<Target>,
        held: Vec<Attempt>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut d = DeliveryColumns::default();
        for t in &targets {
            d.push(event_id, t, now);
        }
        let held_json = attempts_json(&held, Some(&self.owner))?;
        let rows = self
            .query(
                "WITH ev AS (SELECT id FROM events WHERE id = $1 FOR SHARE),
                 dl AS (
                    INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at, owner, locked_until)
                    SELECT d.id, $1, d.webhook_id, d.status, 0, d.due_at, $2, $2,
                           CASE WHEN d.status = 'pending' THEN $7::text END,
                           CASE WHEN d.status = 'pending' THEN clock_timestamp() + $8::int8 * interval '1 millisecond' END
                    FROM unnest($3::text[], $4::text[], $5::text[], $6::int8[]) AS d(id, webhook_id, status, due_at)
                    WHERE EXISTS (SELECT 1 FROM ev)
                 ), held AS (
                    INSERT INTO attempts (id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code,
                        success, error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at, instance)
                    SELECT a.* FROM json_populate_recordset(NULL::attempt_row, $9::text::json) a
                    WHERE EXISTS (SELECT 1 FROM ev)
                 )
                 SELECT count(*) FROM ev",
                &[
                    &event_id,
                    &now,
                    &d.id,
                    &d.webhook,
                    &d.status,
                    &d.due,
                    &&*self.owner,
                    &self.lease_ms,
                    &held_json,
                ],
            )
            .await?;
        Ok(rows.first().is_some_and(|r| r.get::<_, i64>(0) > 0))
    }

    /// Due now again, leased to this instance (the API offers it to this
    /// instance's lane).
    async fn resend(&self, delivery_id: &str) -> Result<Option<(Delivery, Event)>, StoreError> {
        let now = now_ms();
        let rows = self
            .query(
                "WITH d AS (
                    UPDATE deliveries SET status = 'pending', due_at = $2, updated_at = $2,
                        owner = $3::text, locked_until = clock_timestamp() + $4::int8 * interval '1 millisecond'
                    WHERE id = $1 AND EXISTS (SELECT 1 FROM events e WHERE e.id = deliveries.event_id)
                    RETURNING id, event_id, webhook_id, attempts
                 )
                 SELECT d.id, d.event_id, d.webhook_id, d.attempts, e.body
                 FROM d JOIN events e ON e.id = d.event_id",
                &[
                    &delivery_id,
                    &now,
                    &&*self.owner,
                    &self.lease_ms,
                ],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let event: Event = serde_json::from_str(&r.get::<_, String>(4))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some((
            Delivery {
                id: r.get(0),
                event_id: r.get(1),
                webhook_id: r.get(2),
                status: "pending".into(),
                attempts: r.get::<_, i32>(3) as u32,
            },
            event,
        )))
    }

    fn on_new_work(&self, wake: Arc<Notify>) {
        self.listen(move || wake.notify_one());
    }

    /// One statement: `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
    /// LOCKED)` sets the lease; the events come back with it. Rows locked
    /// by another transaction and unexpired leases are skipped.
    async fn claim_due(
        &self,
        webhook_id: &str,
        limit: usize,
        lease: Duration,
        busy: Busy,
    ) -> Result<Claimed, StoreError> {
        let rows = self
            .query(
                "WITH c AS (
                    UPDATE deliveries d SET owner = $1::text, locked_until = clock_timestamp() + $2::int8 * interval '1 millisecond'
                    WHERE d.id IN (
                        SELECT id FROM deliveries
                        WHERE webhook_id = $3 AND due_at IS NOT NULL AND due_at <= $4
                          AND (locked_until IS NULL OR locked_until < clock_timestamp())
                        ORDER BY due_at LIMIT $5
                        FOR UPDATE SKIP LOCKED)
                    RETURNING d.id, d.event_id, d.webhook_id, d.attempts, d.due_at
                 )
                 SELECT c.id, c.webhook_id, c.attempts, e.body FROM c LEFT JOIN events e ON e.id = c.event_id
                 ORDER BY c.due_at",
                &[
                    &&*self.owner,
                    &Self::lease_param(lease),
                    &webhook_id,
                    &now_ms(),
                    &(limit as i64),
                ],
            )
            .await?;
        let saturated = rows.len() >= limit;
        let mut due = Vec::with_capacity(rows.len());
        let mut orphans = Vec::new();
        for r in rows {
            let id: String = r.get(0);
            if (busy.contains)(&id) {
                // Already queued here (its lease had lapsed): it stays ours.
                continue;
            }
            match r.get::<_, Option<String>>(3) {
                Some(body) => due.push(DueDelivery {
                    delivery_id: id,
                    webhook_id: r.get(1),
                    attempts: r.get::<_, i32>(2) as u32,
                    event: serde_json::from_str(&body)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                }),
                None => orphans.push(id),
            }
        }
        if !orphans.is_empty() {
            self.fail_orphans(&orphans).await?;
        }
        Ok(Claimed {
            due,
            orphans: orphans.len(),
            saturated,
        })
    }

    /// Extends this instance's leases. A zero `lease` gives them up: the
    /// deliveries are claimable at once, and the other instances are woken.
    async fn renew(&self, delivery_ids: Vec<String>, lease: Duration) -> Result<(), StoreError> {
        if delivery_ids.is_empty() {
            return Ok(());
        }
        if lease.is_zero() {
            self.query(
                "WITH r AS (
                    UPDATE deliveries SET owner = NULL, locked_until = NULL
                    WHERE owner = $1::text AND id = ANY($2) AND due_at IS NOT NULL
                    RETURNING 1
                 )
                 SELECT relay_wake() FROM (SELECT 1 FROM r LIMIT 1) w",
                &[&&*self.owner, &delivery_ids],
            )
            .await?;
            return Ok(());
        }
        self.execute(
            "UPDATE deliveries SET locked_until = clock_timestamp() + $2::int8 * interval '1 millisecond'
             WHERE owner = $1::text AND id = ANY($3) AND due_at IS NOT NULL",
            &[&&*self.owner, &Self::lease_param(lease), &delivery_ids],
        )
        .await?;
        Ok(())
    }

    /// Walks `deliveries_due` from one webhook to the next (two index
    /// probes per webhook with queued deliveries: the next webhook id, its
    /// earliest `due_at`), so it reads neither the whole queue nor, whatever
    /// plan the server makes for a table without statistics yet, the table.
    async fn due_webhooks(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "WITH RECURSIVE w(id) AS (
                    (SELECT webhook_id FROM deliveries WHERE due_at IS NOT NULL ORDER BY webhook_id LIMIT 1)
                    UNION ALL
                    SELECT (SELECT webhook_id FROM deliveries WHERE due_at IS NOT NULL AND webhook_id > w.id
                            ORDER BY webhook_id LIMIT 1)
                    FROM w WHERE w.id IS NOT NULL
                 )
                 SELECT w.id FROM w WHERE w.id IS NOT NULL
                 AND (SELECT d.due_at FROM deliveries d WHERE d.webhook_id = w.id AND d.due_at IS NOT NULL
                      ORDER BY d.due_at LIMIT 1) <= $1",
                &[&now_ms],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn still_due(&self, delivery_id: &str, attempts: u32) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "SELECT 1 FROM deliveries WHERE id = $1 AND attempts = $2 AND due_at IS NOT NULL AND due_at <= $3",
                &[&delivery_id, &(attempts as i32), &now_ms()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Records an attempt. Records of the happy path (the breaker moves
    /// at most back to zero failures, no destination state, no catch-all
    /// to consider) go out in groups ([`PgStore::record_group`]). An
    /// attempt that ends its delivery failed or skipped while a catch-all
    /// is configured locks its event first, so that two instances ending
    /// the last two deliveries of one event at once see each other's
    /// outcome (one of them creates the catch-all); the others are one
    /// statement each ([`PgStore::record_attempt_on`]).
    async fn record_attempt(
        &self,
        record: AttemptRecord,
    ) -> Result<Option<WebhookState>, StoreError> {
        let ends_badly = matches!(record.attempt.status, Status::Failed | Status::Skipped);
        if let Some(t) = record.catch_all.as_ref().filter(|_| ends_badly) {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_err)?;
            lock_event(&*tx, &record.attempt.event_id).await?;
            let state = self.record_attempt_on(&tx, &record).await?;
            catch_all(&*tx, &record.attempt.event_id, t).await?;
            count_trip(&self.trips);
            tx.commit().await.map_err(pg_err)?;
            return Ok(state);
        }
        let groupable = matches!(
            record.breaker,
            BreakerChange::None | BreakerChange::Success { .. }
        ) && record.destination_state.is_none();
        if !groupable {
            let client = self.client().await?;
            return self.record_attempt_on(&client, &record).await;
        }
        let (tx, rx) = oneshot::channel();
        if let Some(permit) = self.records.push((record, tx)) {
            let store = self.clone();
            tokio::spawn(async move {
                let group = store.records.clone();
                group
                    .send_all(permit, |writes| store.write_records(writes))
                    .await;
            });
        }
        rx.await.unwrap_or_else(|_| Err(unanswered()))
    }

    async fn load_api_webhooks(&self) -> Result<Vec<StoredWebhook>, StoreError> {
        let rows = self
            .query(
                "SELECT id, spec, secret, created_at, updated_at FROM api_webhooks",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(0);
            let mut spec: crate::config::WebhookSpec = serde_json::from_str(&r.get::<_, String>(1))
                .map_err(|e| StoreError::Corrupt(format!("webhook {id}: {e}")))?;
            spec.secret = r
                .get::<_, Option<String>>(2)
                .map(crate::config::Secret::new);
            out.push(StoredWebhook {
                spec,
                created_at_ms: r.get(3),
                updated_at_ms: r.get(4),
            });
        }
        Ok(out)
    }

    async fn save_api_webhook(&self, w: StoredWebhook) -> Result<(), StoreError> {
        let id = w
            .spec
            .id
            .clone()
            .ok_or_else(|| StoreError::Conflict("a stored webhook needs an id".into()))?;
        let mut spec = w.spec.clone();
        let secret = spec.secret.take().map(|s| s.expose().to_owned());
        let json = serde_json::to_string(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.execute(
            "INSERT INTO api_webhooks (id, spec, secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET spec = $2, secret = $3, updated_at = $5",
            &[&id, &json, &secret, &w.created_at_ms, &w.updated_at_ms],
        )
        .await?;
        Ok(())
    }

    async fn delete_api_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "WITH w AS (DELETE FROM api_webhooks WHERE id = $1 RETURNING id),
                 d AS (UPDATE deliveries SET status = 'failed', due_at = NULL, updated_at = $2, owner = NULL, locked_until = NULL
                       WHERE webhook_id = $1 AND due_at IS NOT NULL),
                 s AS (DELETE FROM webhook_state WHERE webhook_id = $1)
                 SELECT count(*) FROM w",
                &[&id, &now_ms()],
            )
            .await?;
        Ok(rows.first().is_some_and(|r| r.get::<_, i64>(0) > 0))
    }

    async fn load_webhook_states(&self) -> Result<Vec<(String, WebhookState)>, StoreError> {
        let rows = self
            .query(
                "SELECT webhook_id, activity, failure_count FROM webhook_state ORDER BY webhook_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    WebhookState {
                        activity: activity(&r.get::<_, String>(1)),
                        failure_count: r.get::<_, i32>(2) as u32,
                    },
                )
            })
            .collect())
    }

    /// An operator's decision; re-enabling wakes the instances (the
    /// webhook's waiting deliveries are due).
    async fn save_webhook_state(
        &self,
        webhook_id: &str,
        s: WebhookState,
    ) -> Result<(), StoreError> {
        self.query(
            "WITH s AS (
                INSERT INTO webhook_state (webhook_id, activity, failure_count, updated_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (webhook_id) DO UPDATE SET activity = $2, failure_count = $3, updated_at = $4
                RETURNING activity
             )
             SELECT CASE WHEN activity = 'active' THEN relay_wake() END FROM s",
            &[
                &webhook_id,
                &s.activity.as_str(),
                &(s.failure_count as i32),
                &now_ms(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn load_first_seen(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .query("SELECT webhook_id, first_seen FROM config_webhooks", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn save_rebuilt(
        &self,
        states: Vec<(String, WebhookState)>,
        first_seen: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        let mut s_id = Vec::new();
        let mut s_act = Vec::new();
        let mut s_n = Vec::new();
        for (id, s) in &states {
            s_id.push(id.clone());
            s_act.push(s.activity.as_str());
            s_n.push(s.failure_count as i32);
        }
        let (f_id, f_at): (Vec<String>, Vec<i64>) = first_seen.into_iter().unzip();
        self.query(
            "WITH s AS (
                INSERT INTO webhook_state (webhook_id, activity, failure_count, updated_at)
                SELECT id, act, n, $6 FROM unnest($1::text[], $2::text[], $3::int4[]) AS x(id, act, n)
                ON CONFLICT (webhook_id) DO UPDATE SET activity = excluded.activity, failure_count = excluded.failure_count, updated_at = $6
             ), f AS (
                INSERT INTO config_webhooks (webhook_id, first_seen)
                SELECT id, at FROM unnest($4::text[], $5::int8[]) AS y(id, at)
                ON CONFLICT (webhook_id) DO NOTHING
             )
             SELECT 1",
            &[&s_id, &s_act, &s_n, &f_id, &f_at, &now_ms()],
        )
        .await?;
        Ok(())
    }

    async fn load_destination_state(
        &self,
        webhook_id: &str,
        incident_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "SELECT state FROM destination_state WHERE webhook_id = $1 AND incident_key = $2",
                &[&webhook_id, &incident_key],
            )
            .await?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)))
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let rows = self
            .query("SELECT body FROM events WHERE id = $1", &[&id])
            .await?;
        rows.first()
            .map(|r| {
                serde_json::from_str(&r.get::<_, String>(0))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let rows = self
            .query(
                "SELECT id, event_id, webhook_id, status, attempts FROM deliveries WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(rows.first().map(|r| Delivery {
            id: r.get(0),
            event_id: r.get(1),
            webhook_id: r.get(2),
            status: r.get(3),
            attempts: r.get::<_, i32>(4) as u32,
        }))
    }

    /// Newest first by `created_at` (then `seq`); the cursor is the last
    /// row's `seq`, and the next page starts below that row's position.
    async fn list_attempts(&self, webhook_id: &str, q: HistoryQuery) -> Result<Page, StoreError> {
        let limit = q.limit.clamp(1, 1000) as i64;
        let status = q.status.map(|s| s.as_str());
        let rows = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM attempts WHERE webhook_id = $1
                     AND ($2::text IS NULL OR status = $2) AND ($3::bool IS NULL OR success = $3)
                     AND ($4::int8 IS NULL OR created_at >= $4)
                     AND ($5::int8 IS NULL OR (created_at, seq) < (SELECT c.created_at, c.seq FROM attempts c WHERE c.seq = $5))
                     ORDER BY created_at DESC, seq DESC LIMIT $6"
                ),
                &[
                    &webhook_id,
                    &status,
                    &q.success,
                    &q.since_ms,
                    &q.before,
                    &(limit + 1),
                ],
            )
            .await?;
        let mut data = Vec::new();
        let mut last_seq = None;
        for r in &rows {
            if data.len() as i64 == limit {
                return Ok(Page {
                    data,
                    next: last_seq.map(|s: i64| s.to_string()),
                });
            }
            let (seq, a) = from_row(r);
            last_seq = Some(seq);
            data.push(a);
        }
        Ok(Page { data, next: None })
    }

    async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {COLUMNS} FROM attempts WHERE delivery_id = $1 ORDER BY seq"),
                &[&delivery_id],
            )
            .await?;
        Ok(rows.iter().map(|r| from_row(r).1).collect())
    }

    async fn queue_depth(&self, now: i64) -> Result<Vec<QueueDepth>, StoreError> {
        let rows = self
            .query(
                "SELECT webhook_id, COUNT(*), COUNT(*) FILTER (WHERE due_at <= $1) FROM deliveries
                 WHERE due_at IS NOT NULL GROUP BY webhook_id ORDER BY webhook_id",
                &[&now],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueueDepth {
                webhook_id: r.get(0),
                pending: r.get::<_, i64>(1) as u64,
                due: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    async fn add_decisions(&self, decisions: Vec<DecisionRecord>) -> Result<(), StoreError> {
        let refs: Vec<&DecisionRecord> = decisions.iter().collect();
        let json = decisions_json(&refs)?;
        self.execute(
            "INSERT INTO decisions (event_id, webhook_id, webhook_name, decision, rule, ref, created_at)
             SELECT x.event_id, x.webhook_id, x.webhook_name, x.decision, x.rule, x.ref, x.created_at
             FROM json_to_recordset($1::text::json) AS x(event_id text, webhook_id text, webhook_name text,
                  decision text, rule text, ref text, created_at bigint)",
            &[&json],
        )
        .await
        .map(|_| ())
    }

    /// The rows and the memberships (`digested`) in one round trip.
    async fn event_decisions(&self, event_id: &str) -> Result<Vec<DecisionRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT 0 AS k, seq, event_id, webhook_id, webhook_name, decision, rule, ref, created_at
                 FROM decisions WHERE event_id = $1
                 UNION ALL
                 SELECT 1, m.created_at, m.event_id, g.webhook_id, g.webhook_name, NULL, NULL, m.digest_id, m.created_at
                 FROM digest_members m JOIN digests g ON g.id = m.digest_id WHERE m.event_id = $1
                 ORDER BY 1, 2, 4",
                &[&event_id],
            )
            .await?;
        let (mut recorded, mut memberships) = (Vec::new(), Vec::new());
        for r in &rows {
            if r.get::<_, i32>(0) == 0 {
                recorded.push(decision_from_row(r, 2));
            } else {
                memberships.push(digested_decision(
                    r.get(2),
                    r.get::<_, Option<String>>(3).unwrap_or_default(),
                    r.get(4),
                    r.get::<_, Option<String>>(7).unwrap_or_default(),
                    r.get(8),
                ));
            }
        }
        Ok(with_memberships(recorded, memberships))
    }

    /// The rows and the memberships (`digested`), each read past its own
    /// cursor, merged ([`merge_page`]).
    async fn list_decisions(&self, q: DecisionQuery) -> Result<DecisionPage, StoreError> {
        let limit = q.limit.clamp(1, 1000);
        let from = q.before.clone().unwrap_or_else(DecisionCursor::top);
        let since = q.since_ms.unwrap_or(i64::MIN);
        let mut rows: Vec<(i64, ListedDecision)> = Vec::new();
        if q.decision.as_deref() != Some("digested") {
            rows = self
                .query(
                    "SELECT d.seq, d.event_id, d.webhook_id, d.webhook_name, d.decision, d.rule, d.ref, d.created_at, e.type
                     FROM decisions d LEFT JOIN events e ON e.id = d.event_id
                     WHERE ($1::text IS NULL OR d.decision = $1) AND d.created_at >= $2
                       AND (d.created_at, d.seq) < ($3, $4)
                     ORDER BY d.created_at DESC, d.seq DESC LIMIT $5",
                    &[&q.decision, &since, &from.at_ms, &from.seq, &(limit as i64 + 1)],
                )
                .await?
                .iter()
                .map(|r| {
                    (
                        r.get::<_, i64>(0),
                        ListedDecision {
                            record: decision_from_row(r, 1),
                            event_type: r.get(8),
                        },
                    )
                })
                .collect();
        }
        let mut members: Vec<(MemberCursor, ListedDecision)> = Vec::new();
        if q.decision.as_deref().is_none_or(|d| d == "digested") {
            let m = &from.member;
            members = self
                .query(
                    "SELECT m.created_at, m.digest_id, m.seq::int8, m.event_id, g.webhook_id, g.webhook_name, e.type
                     FROM digest_members m JOIN digests g ON g.id = m.digest_id
                     LEFT JOIN events e ON e.id = m.event_id
                     WHERE m.created_at >= $1 AND (m.created_at, m.digest_id, m.seq::int8) < ($2, $3, $4)
                     ORDER BY m.created_at DESC, m.digest_id DESC, m.seq DESC LIMIT $5",
                    &[&since, &m.at_ms, &m.digest_id, &m.pos, &(limit as i64 + 1)],
                )
                .await?
                .iter()
                .map(|r| {
                    let at = MemberCursor {
                        at_ms: r.get(0),
                        digest_id: r.get(1),
                        pos: r.get(2),
                    };
                    let record = digested_decision(
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        at.digest_id.clone(),
                        at.at_ms,
                    );
                    (
                        at,
                        ListedDecision {
                            record,
                            event_type: r.get(6),
                        },
                    )
                })
                .collect();
        }
        Ok(merge_page(rows, members, limit, from))
    }

    /// Steps of at most [`PRUNE_BATCH`] rows, each its own short statement:
    /// the attempts and decisions written before the cutoff (in `seq`
    /// order), then old events (in `(received_at, id)` order from a
    /// cursor) with their final deliveries, each event once none of its
    /// deliveries is left. Pending work is never deleted.
    async fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let batch = PRUNE_BATCH as i64;
        let mut rows = 0usize;
        for sql in [
            // The append-only logs, oldest first by `seq`: the run of rows
            // from the first up to the first one not older than the cutoff
            // (instances write concurrently, so an attempt a little out of
            // time order waits for the next run).
            "WITH head AS (SELECT seq, created_at FROM attempts ORDER BY seq LIMIT $2)
             DELETE FROM attempts WHERE seq IN (SELECT seq FROM head WHERE seq <
                 coalesce((SELECT min(seq) FROM head WHERE created_at >= $1), 9223372036854775807))",
            "WITH head AS (SELECT seq, created_at FROM decisions ORDER BY seq LIMIT $2)
             DELETE FROM decisions WHERE seq IN (SELECT seq FROM head WHERE seq <
                 coalesce((SELECT min(seq) FROM head WHERE created_at >= $1), 9223372036854775807))",
            // Dedup windows that ended (the next event of a key takes an
            // ended window over anyway).
            "DELETE FROM dedup WHERE key IN
             (SELECT key FROM dedup WHERE expires_at < $1 LIMIT $2)",
        ] {
            loop {
                let n = self.execute(sql, &[&cutoff_ms, &batch]).await?;
                rows += n as usize;
                if n < batch as u64 {
                    break;
                }
            }
        }
        // Old events in the order they came, each with its finished
        // deliveries (found by `deliveries_event`); an event goes once no
        // delivery of it is left and no open digest still reads it.
        let (mut after_at, mut after_id) = (i64::MIN, String::new());
        loop {
            let r = self
                .query(
                    "WITH old AS (
                        SELECT received_at, id FROM events
                        WHERE received_at < $1 AND (received_at, id) > ($2, $3)
                        ORDER BY received_at, id LIMIT $4
                     ), finished AS (
                        DELETE FROM deliveries d USING old WHERE d.event_id = old.id
                        AND d.due_at IS NULL AND d.updated_at < $1
                        RETURNING 1
                     ), del AS (
                        DELETE FROM events e USING old WHERE e.id = old.id
                        -- (the statement's snapshot still shows `finished`'s rows)
                        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                                        AND NOT (d.due_at IS NULL AND d.updated_at < $1))
                        AND NOT EXISTS (SELECT 1 FROM digest_members m JOIN digests g ON g.id = m.digest_id
                                        WHERE m.event_id = e.id AND g.state <> 'closed')
                        RETURNING e.id
                     ), repeats AS (
                        DELETE FROM deduped WHERE event_id IN (SELECT id FROM del) RETURNING 1
                     ), members AS (
                        DELETE FROM digest_members WHERE event_id IN (SELECT id FROM del) RETURNING 1
                     ), windows AS (
                        DELETE FROM digests WHERE state = 'closed' AND id IN (SELECT id FROM del) RETURNING 1
                     ), last AS (SELECT received_at, id FROM old ORDER BY received_at DESC, id DESC LIMIT 1)
                     SELECT (SELECT count(*) FROM old),
                            (SELECT count(*) FROM del) + (SELECT count(*) FROM finished) + (SELECT count(*) FROM repeats)
                              + (SELECT count(*) FROM members) + (SELECT count(*) FROM windows),
                            (SELECT received_at FROM last), (SELECT id FROM last)",
                    &[&cutoff_ms, &after_at, &after_id, &batch],
                )
                .await?;
            let Some(r) = r.first() else { break };
            let looked: i64 = r.get(0);
            rows += r.get::<_, i64>(1) as usize;
            match (r.get::<_, Option<i64>>(2), r.get::<_, Option<String>>(3)) {
                (Some(at), Some(id)) if looked == batch => {
                    after_at = at;
                    after_id = id;
                }
                _ => break,
            }
        }
        Ok(rows)
    }

    async fn incident_event(&self, change: IncidentEvent) -> Result<IncidentChange, StoreError> {
        self.incident_event_impl(change).await
    }
    async fn due_steps(&self, now_ms: i64) -> Result<DueSteps, StoreError> {
        self.due_steps_impl(now_ms).await
    }
    async fn run_step(&self, step: StepRun) -> Result<(Option<Accepted>, NewEvent), StoreError> {
        self.run_step_impl(step).await
    }
    async fn list_incidents(
        &self,
        state: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        self.list_incidents_impl(state, limit).await
    }
    async fn get_incident(&self, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
        self.get_incident_impl(id).await
    }
    async fn ack_incident(
        &self,
        id: &str,
        by: &str,
        at_ms: i64,
    ) -> Result<Option<(bool, Incident)>, StoreError> {
        self.ack_incident_impl(id, by, at_ms).await
    }
    async fn ack_incident_by_link(
        &self,
        id: &str,
        nonce: &str,
        by: &str,
        at_ms: i64,
    ) -> Result<LinkAck, StoreError> {
        self.ack_incident_by_link_impl(id, nonce, by, at_ms).await
    }
    async fn incident_of_event(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        self.incident_of_event_impl(event_id).await
    }
    async fn unresolved_incident(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.unresolved_incident_impl(key).await
    }
    async fn list_escalations(&self) -> Result<Vec<super::StoredEscalation>, StoreError> {
        self.list_escalations_impl().await
    }
    async fn insert_escalation(&self, policy: super::StoredEscalation) -> Result<bool, StoreError> {
        self.insert_escalation_impl(policy).await
    }
    async fn delete_escalation(&self, name: &str) -> Result<bool, StoreError> {
        self.delete_escalation_impl(name).await
    }
    async fn prune_incidents(&self, cutoff_ms: i64, limit: usize) -> Result<usize, StoreError> {
        self.prune_incidents_step(cutoff_ms, limit).await
    }
}

impl PgStore {
    // -----------------------------------------------------------------
    // Grouped writes

    /// Sends one group of accepts and answers each caller; as
    /// [`PgStore::write_records`], each batch alone when the server
    /// refuses the group's statement.
    async fn write_accepts(&self, group: Vec<AcceptWrite>) {
        let written = {
            let parts: Vec<&[NewEvent]> = group.iter().map(|(b, _)| b.as_slice()).collect();
            self.accept_group(&parts).await
        };
        match written {
            Ok(answers) => {
                for ((batch, tx), accepted) in group.into_iter().zip(answers) {
                    let _ = tx.send(Ok((accepted, batch)));
                }
            }
            Err(f) if f.refused() && group.len() > 1 => {
                for (batch, tx) in group {
                    let alone = self.accept_group(&[&batch]).await;
                    let _ = tx.send(
                        alone
                            .map(|mut a| (a.pop().unwrap_or_default(), batch))
                            .map_err(StoreError::from),
                    );
                }
            }
            Err(f) => {
                let e = StoreError::from(f);
                for (_, tx) in group {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }

    /// The batches of several callers in one statement on a pooled
    /// connection ([`PgStore::accept_on`]).
    async fn accept_group(&self, parts: &[&[NewEvent]]) -> Result<Vec<Vec<Accepted>>, Failed> {
        let client = self.pool.get().await.map_err(Failed::Pool)?;
        self.accept_on(&client, parts, &Default::default()).await
    }

    /// Sends one group of attempt records and answers each caller. When
    /// the server refuses the group's statement, each record is sent
    /// alone, so that one bad record fails only itself.
    async fn write_records(&self, group: Vec<RecordWrite>) {
        let written = {
            let records: Vec<&AttemptRecord> = group.iter().map(|(r, _)| r).collect();
            self.record_group(&records).await
        };
        match written {
            Ok(states) => {
                for ((_, tx), state) in group.into_iter().zip(states) {
                    let _ = tx.send(Ok(state));
                }
            }
            Err(f) if f.refused() && group.len() > 1 => {
                for (record, tx) in group {
                    let alone = self.record_group(&[&record]).await;
                    let _ = tx.send(
                        alone
                            .map(|mut s| s.pop().flatten())
                            .map_err(StoreError::from),
                    );
                }
            }
            Err(f) => {
                let e = StoreError::from(f);
                for (_, tx) in group {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }

    /// One statement (one round trip, one transaction) for the records of
    /// several attempts whose breaker change is `None` or `Success`: the
    /// attempt rows; each delivery's new state, clearing its lease, only
    /// while this instance still holds it (as [`PgStore::record_attempt_on`]);
    /// the failure count of their webhooks back to zero where a success
    /// ended a streak. Answers in `records` order. (`d.id = ANY($3)` keeps
    /// the plan on the primary key: a generic plan made while the table
    /// looked empty joins the ids to a sequential scan of every delivery
    /// otherwise, until the next autoanalyze.)
    async fn record_group(
        &self,
        records: &[&AttemptRecord],
    ) -> Result<Vec<Option<WebhookState>>, Failed> {
        let mut c = AttemptColumns::default();
        let mut due = Vec::with_capacity(records.len());
        let mut reset: Vec<&str> = Vec::new();
        for r in records {
            c.push(&r.attempt);
            due.push(r.due_at);
            let webhook = r.attempt.webhook_id.as_str();
            if matches!(r.breaker, BreakerChange::Success { .. }) && !reset.contains(&webhook) {
                reset.push(webhook);
            }
        }
        let (message, body) = (c.message(), c.body());
        let client = self.record_pool.get().await.map_err(Failed::Pool)?;
        let rows = self
            .run(
                &client,
                "WITH d AS (
                    UPDATE deliveries d SET status = r.status, attempts = r.attempt, due_at = r.due_at, updated_at = $1,
                        owner = NULL, locked_until = NULL
                    FROM unnest($3::text[], $4::text[], $5::int4[], $6::int8[]) AS r(id, status, attempt, due_at)
                    WHERE d.id = ANY($3::text[]) AND d.id = r.id AND d.owner = $2::text
                    RETURNING d.id
                 ), a AS (
                    INSERT INTO attempts (id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code,
                        success, error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at, instance)
                    SELECT *, $2::text FROM unnest($7::text[], $3::text[], $8::text[], $9::text[], $10::text[], $5::int4[], $4::text[],
                        $11::int4[], $12::bool[], $13::text[], $14::text[], $15::text[], $16::bool[], $17::text[], $18::int8[],
                        $19::text[], $20::int8[])
                 ), ok AS (
                    UPDATE webhook_state SET failure_count = 0, updated_at = $1
                    WHERE webhook_id = ANY($21::text[]) AND failure_count > 0
                    RETURNING webhook_id, activity, failure_count
                 )
                 SELECT true, id, NULL::text, NULL::int4 FROM d
                 UNION ALL SELECT false, webhook_id, activity, failure_count FROM ok",
                &[
                    &now_ms(),
                    &&*self.owner,
                    &c.delivery_id,
                    &c.status,
                    &c.attempt,
                    &due,
                    &c.id,
                    &c.webhook_id,
                    &c.event_id,
                    &c.event_type,
                    &c.status_code,
                    &c.success,
                    &c.error_kind,
                    &c.error_origin,
                    &message,
                    &c.retryable,
                    &body,
                    &c.duration_ms,
                    &c.warnings,
                    &c.created_at,
                    &reset,
                ],
            )
            .await?;
        let mut moved = std::collections::HashSet::new();
        let mut states = std::collections::HashMap::new();
        for r in &rows {
            let id: String = r.get(1);
            if r.get::<_, bool>(0) {
                moved.insert(id);
            } else if let (Some(a), Some(n)) =
                (r.get::<_, Option<String>>(2), r.get::<_, Option<i32>>(3))
            {
                states.insert(
                    id,
                    WebhookState {
                        activity: activity(&a),
                        failure_count: n as u32,
                    },
                );
            }
        }
        Ok(records
            .iter()
            .map(|r| {
                let a = &r.attempt;
                if !moved.contains(&a.delivery_id) {
                    lease_lost(&a.delivery_id);
                }
                match r.breaker {
                    BreakerChange::Success { .. } => states.get(&a.webhook_id).copied(),
                    _ => None,
                }
            })
            .collect())
    }
}

/// Logs an attempt recorded after its delivery's lease went to another
/// instance.
fn lease_lost(delivery_id: &str) {
    tracing::warn!(delivery = %delivery_id, "the lease on this delivery had expired and another instance took it over: the attempt is recorded in the history, the delivery's state is the new owner's");
}

/// Attempt rows as column arrays (for `unnest`), borrowing the attempts.
#[derive(Default)]
struct AttemptColumns<'a> {
    id: Vec<&'a str>,
    delivery_id: Vec<&'a str>,
    webhook_id: Vec<&'a str>,
    event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    attempt: Vec<i32>,
    status: Vec<&'static str>,
    status_code: Vec<Option<i32>>,
    success: Vec<bool>,
    error_kind: Vec<Option<&'a str>>,
    error_origin: Vec<Option<&'a str>>,
    error_message: Vec<Option<&'a str>>,
    retryable: Vec<Option<bool>>,
    response_body: Vec<Option<&'a str>>,
    duration_ms: Vec<i64>,
    warnings: Vec<String>,
    created_at: Vec<i64>,
}

impl<'a> AttemptColumns<'a> {
    fn push(&mut self, a: &'a Attempt) {
        self.id.push(&a.id);
        self.delivery_id.push(&a.delivery_id);
        self.webhook_id.push(&a.webhook_id);
        self.event_id.push(&a.event_id);
        self.event_type.push(&a.event_type);
        self.attempt.push(a.attempt as i32);
        self.status.push(a.status.as_str());
        self.status_code.push(a.status_code.map(i32::from));
        self.success.push(a.success);
        self.error_kind
            .push(a.error.as_ref().map(|e| e.kind.as_str()));
        self.error_origin
            .push(a.error.as_ref().map(|e| e.origin.as_str()));
        self.error_message
            .push(a.error.as_ref().map(|e| e.message.as_str()));
        self.retryable.push(a.error.as_ref().map(|e| e.retryable));
        self.response_body.push(a.response_body.as_deref());
        self.duration_ms
            .push(a.duration_ms.min(i64::MAX as u64) as i64);
        self.warnings.push(
            no_nul(&serde_json::to_string(&a.warnings).unwrap_or_else(|_| "[]".into()))
                .into_owned(),
        );
        self.created_at.push(a.created_at_ms);
    }

    /// The error messages as Postgres can store them ([`no_nul`]).
    fn message(&self) -> Vec<Option<Cow<'a, str>>> {
        self.error_message.iter().map(|m| m.map(no_nul)).collect()
    }

    /// The response bodies as Postgres can store them ([`no_nul`]).
    fn body(&self) -> Vec<Option<Cow<'a, str>>> {
        self.response_body.iter().map(|b| b.map(no_nul)).collect()
    }
}

/// Postgres text cannot hold a NUL character, and a receiver's answer (a
/// response body, an error quoting it) may contain one: it is kept as
/// U+FFFD, so that the record is written rather than refused.
fn no_nul(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

impl PgStore {
    // -----------------------------------------------------------------
    // Wake-ups

    /// LISTENs on [`CHANNEL`] on a connection of its own and calls `wake`
    /// on every notification; reconnects (1 s, doubling to 30 s) when the
    /// connection is lost, and calls `wake` then too (a notification may
    /// have been missed). Polling stays the fallback.
    fn listen(&self, wake: impl Fn() + Send + 'static) {
        let mut config = (*self.config).clone();
        config.application_name("relay-listen");
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                match config.connect(NoTls).await {
                    Ok((client, mut connection)) => {
                        let listen_sql = format!("LISTEN {CHANNEL}");
                        let subscribe = client.batch_execute(&listen_sql);
                        tokio::pin!(subscribe);
                        let mut subscribed = false;
                        let ended = loop {
                            tokio::select! {
                                r = &mut subscribe, if !subscribed => match r {
                                    Ok(()) => {
                                        subscribed = true;
                                        backoff = Duration::from_secs(1);
                                        // A notification may have been missed
                                        // while not listening.
                                        wake();
                                    }
                                    Err(e) => break Err(e),
                                },
                                m = std::future::poll_fn(|cx| connection.poll_message(cx)) => match m {
                                    Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => wake(),
                                    Some(Ok(_)) => {}
                                    Some(Err(e)) => break Err(e),
                                    None => break Ok(()),
                                },
                            }
                        };
                        match ended {
                            Ok(()) => tracing::warn!(
                                "postgres LISTEN connection closed; polling until it is back"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "postgres LISTEN connection lost; polling until it is back")
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "cannot open the postgres LISTEN connection; polling meanwhile");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        });
    }
}

/// Locks an event's row for the rest of the transaction (catch-all checks
/// see every other instance's committed outcome).
async fn lock_event(
    c: &impl tokio_postgres::GenericClient,
    event_id: &str,
) -> Result<(), StoreError> {
    c.query(
        "SELECT 1 FROM events WHERE id = $1 FOR UPDATE",
        &[&event_id],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// Creates `t`, the catch-all delivery of `event_id`, when no other
/// delivery of the event is pending, retrying or succeeded and the event is
/// in no digest; at most once per event (its id is fixed per event).
async fn catch_all(
    c: &impl tokio_postgres::GenericClient,
    event_id: &str,
    t: &Target,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let (status, due) = start_row(t.start, now);
    let n = c
        .execute(
            "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at)
             SELECT $1, $2, $3, $4, 0, $5, $6, $6
             WHERE EXISTS (SELECT 1 FROM events WHERE id = $2)
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = $2 AND webhook_id <> $3
                             AND status NOT IN ('failed', 'skipped', 'paused'))
             AND NOT EXISTS (SELECT 1 FROM digest_members WHERE event_id = $2)
             ON CONFLICT (id) DO NOTHING",
            &[&t.delivery_id, &event_id, &t.webhook_id, &status, &due, &now],
        )
        .await
        .map_err(pg_err)?;
    if n > 0 {
        let d = catch_all_decision(event_id, t, now);
        c.execute(
            "INSERT INTO decisions (event_id, webhook_id, webhook_name, decision, rule, ref, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&d.event_id, &d.webhook_id, &d.webhook_name, &d.decision, &d.rule, &d.reference, &d.created_at_ms],
        )
        .await
        .map_err(pg_err)?;
        c.query("SELECT relay_wake()", &[]).await.map_err(pg_err)?;
    }
    Ok(n > 0)
}

/// A stored activity; unknown text reads as paused (deliveries wait).
fn activity(s: &str) -> Activity {
    Activity::parse(s).unwrap_or(Activity::Paused)
}

/// How a new delivery row starts: (status, due_at).
fn start_row(start: Start, now: i64) -> (&'static str, Option<i64>) {
    match start {
        Start::Due => ("pending", Some(now)),
        Start::Paused => ("paused", Some(now)),
        Start::Skipped => ("skipped", None),
    }
}

const COLUMNS: &str = "seq, id, delivery_id, webhook_id, event_id, event_type, attempt, status, status_code, success,
    error_kind, error_origin, error_message, retryable, response_body, duration_ms, warnings, created_at";

fn from_row(r: &Row) -> (i64, Attempt) {
    let error = r.get::<_, Option<String>>(10).map(|kind| AttemptError {
        kind,
        origin: r.get::<_, Option<String>>(11).unwrap_or_default(),
        message: r.get::<_, Option<String>>(12).unwrap_or_default(),
        retryable: r.get::<_, Option<bool>>(13).unwrap_or(false),
    });
    let warnings: String = r.get(16);
    let created_at_ms: i64 = r.get(17);
    (
        r.get(0),
        Attempt {
            id: r.get(1),
            delivery_id: r.get(2),
            webhook_id: r.get(3),
            event_id: r.get(4),
            event_type: r.get(5),
            attempt: r.get::<_, i32>(6) as u32,
            status: Status::parse(&r.get::<_, String>(7)),
            status_code: r.get::<_, Option<i32>>(8).map(|c| c as u16),
            success: r.get(9),
            error,
            response_body: r.get(14),
            duration_ms: r.get::<_, i64>(15) as u64,
            warnings: serde_json::from_str(&warnings).unwrap_or_default(),
            created_at: crate::event::rfc3339_ms(created_at_ms),
            created_at_ms,
        },
    )
}

/// Decisions as a JSON array for `json_to_recordset`.
fn decisions_json(decisions: &[&DecisionRecord]) -> Result<String, StoreError> {
    let rows: Vec<serde_json::Value> = decisions
        .iter()
        .map(|d| {
            serde_json::json!({
                "event_id": d.event_id,
                "webhook_id": d.webhook_id,
                "webhook_name": d.webhook_name,
                "decision": d.decision,
                "rule": d.rule,
                "ref": d.reference,
                "created_at": d.created_at_ms,
            })
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decision_from_row(r: &Row, at: usize) -> DecisionRecord {
    DecisionRecord {
        event_id: r.get(at),
        webhook_id: r.get(at + 1),
        webhook_name: r.get(at + 2),
        decision: r.get(at + 3),
        rule: r.get(at + 4),
        reference: r.get(at + 5),
        created_at_ms: r.get(at + 6),
    }
}

/// Attempts as a JSON array of `attempt_row` records (one parameter,
/// expanded by `json_populate_recordset` in the statement).
fn attempts_json(attempts: &[Attempt], instance: Option<&str>) -> Result<String, StoreError> {
    let rows: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            Ok(serde_json::json!({
                "id": a.id,
                "delivery_id": a.delivery_id,
                "webhook_id": a.webhook_id,
                "event_id": a.event_id,
                "event_type": a.event_type,
                "attempt": a.attempt,
                "status": a.status.as_str(),
                "status_code": a.status_code,
                "success": a.success,
                "error_kind": a.error.as_ref().map(|e| &e.kind),
                "error_origin": a.error.as_ref().map(|e| &e.origin),
                "error_message": a.error.as_ref().map(|e| no_nul(&e.message)),
                "retryable": a.error.as_ref().map(|e| e.retryable),
                "response_body": a.response_body.as_deref().map(no_nul),
                "duration_ms": a.duration_ms,
                "warnings": no_nul(&serde_json::to_string(&a.warnings).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                "created_at": a.created_at_ms,
                "instance": instance,
            }))
        })
        .collect::<Result<_, StoreError>>()?;
    serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password_whatever_is_wrong_with_them() {
        let ok = parse_url("postgres://relay:pw%40one@db.internal:6543/relay?application_name=x")
            .expect("a good URL");
        assert_eq!(redact(&ok), "postgres://relay@db.internal:6543/relay");
        assert!(!redact(&ok).contains("pw"));
        for bad in [
            "postgres://relay:Secret1@db:notaport/relay",
            "postgres://relay:Secret1@db:5432/relay?sslmode=bogus",
            "postgres://relay:Secret1@/relay",
        ] {
            let e = parse_url(bad).expect_err(bad).to_string();
            assert!(e.contains("storage.postgres"), "{e}");
            assert!(!e.contains("Secret1"), "{bad}: {e}");
        }
        let e = parse_url("postgres://relay:Secret1@db/relay?sslmode=require")
            .expect_err("TLS is refused")
            .to_string();
        assert!(
            e.contains("sslmode=require") && !e.contains("Secret1"),
            "{e}"
        );
        assert_eq!(url_password("postgres://u:p:q@h/d"), Some("p:q"));
        assert_eq!(url_password("postgres://u@h/d"), None);
        assert_eq!(scrub("x Secret1 y".into(), Some(b"Secret1")), "x **** y");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_with_its_address_and_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let url = format!("postgres://relay:Secret1@127.0.0.1:{port}/relay");
        let e = ping(&url).await.expect_err("nothing listens").to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.contains("Secret1"), "{e}");
        let e = PgStore::connect(&url, Duration::from_secs(60))
            .await
            .expect_err("nothing listens")
            .to_string();
        assert!(
            e.contains("storage.postgres") && !e.contains("Secret1"),
            "{e}"
        );
    }
}
